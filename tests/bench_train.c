/* bench_train.c - training throughput beside the machine's sgemm peak.
 *
 *   sgemm  the best of a few 2048^3 products, on the kernels' thread count;
 *   arm    PARM on the ~134M model of bench_decode: PBLoRA (r1 = r2 = 4,
 *          q, k, v, k = 2) on the frozen backbone, pairs of sequences,
 *          forward + ARM loss + backward + AdamW on the adapters;
 *   lm     full training of a small model (dim 256, 4 layers), LM loss.
 *
 * Achieved GFLOP/s counts the work actually done: parm_train_flops() for
 * full training; for adapters the same minus the frozen weights' dW,
 * which is never computed, so 2 N P forward + 2 N P for dx over the
 * layers, and 4 per multiply-add of the output layer's wanted rows
 * (the logits, and P W kept for the backward: train.h).
 * usage: bench_train VOCAB.gguf [CACHE_DIR] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels.h"
#include <parm/model.h>
#include <parm/optim.h>
#include <parm/train.h>
#include <parm/util.h>

enum { SGEMM_N = 2048 };

/* CPU seconds of the process: beside wall time it shows whether other
 * work on the machine took cores from a measurement. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* GFLOP/s of the best product by wall time, and *per_cpu the best by
 * CPU time (flops per CPU second times threads: what the cores give when
 * they are ours, whatever else the machine runs). */
static double sgemm_peak(int threads, double *per_cpu)
{
	size_t n = SGEMM_N;
	float *a = parm_xmalloc(n * n * sizeof *a), *b = parm_xmalloc(n * n * sizeof *b),
	      *c = parm_xmalloc(n * n * sizeof *c);
	double best = 0, flops = 2.0 * n * n * n;
	*per_cpu = 0;
	for (size_t i = 0; i < n * n; i++)
		a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
	openblas_set_num_threads(threads);
	for (int r = 0; r < 4; r++) {
		double t = parm_now(), cpu = cpu_now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n,
			    1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
		t = parm_now() - t, cpu = cpu_now() - cpu;
		best = flops / t > best ? flops / t : best;
		*per_cpu = flops / cpu * threads > *per_cpu ? flops / cpu * threads : *per_cpu;
	}
	free(a);
	free(b);
	free(c);
	return best;
}

struct bench_model {
	const char *name;
	int dim, layers, heads, ff;
};

/* The model file, made once (the 134M one is bench_decode's). */
static parm_model *load_model(const struct bench_model *b, const char *cache, const char *vocab_path)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s-f32-v1.gguf", cache, b->name);
	if (stat(path, &st) != 0) {
		parm_gguf *vocab = parm_gguf_open(vocab_path);
		if (!vocab)
			parm_die("%s", parm_error());
		parm_config c = { .dim = b->dim, .n_layers = b->layers, .n_heads = b->heads,
				  .n_kv_heads = b->heads, .ff = b->ff, .n_ctx = 512,
				  .rms_eps = 1e-5f, .rope_theta = 10000 };
		fprintf(stderr, "bench: creating %s\n", path);
		if (parm_model_init(path, vocab, &c, PARM_GGML_F32, 1) < 0)
			parm_die("%s", parm_error());
		parm_gguf_close(vocab);
	}
	parm_model *m = parm_model_load(path);
	if (!m)
		parm_die("%s", parm_error());
	return m;
}

/* A batch of P pairs: sequences 2p, 2p + 1 share a prompt of T / 4
 * tokens, responses random; labels disagree between the objectives. */
struct batch {
	int B, T, *tokens, *lengths, *prompt_len;
	int8_t *label;
	uint8_t *want;
	float *logp, *dlogp;
};

static struct batch make_batch(int B, int T, int V)
{
	struct batch b = { .B = B, .T = T };
	uint64_t s = 7;
	b.tokens = parm_xmalloc((size_t)B * T * sizeof *b.tokens);
	b.lengths = parm_xmalloc(B * sizeof *b.lengths);
	b.prompt_len = parm_xmalloc(B * sizeof *b.prompt_len);
	b.label = parm_xmalloc(B * sizeof *b.label);
	b.want = parm_xmalloc((size_t)B * (T - 1));
	b.logp = parm_xmalloc((size_t)B * (T - 1) * sizeof *b.logp);
	b.dlogp = parm_xmalloc((size_t)B * (T - 1) * sizeof *b.dlogp);
	for (int i = 0; i < B; i++) {
		b.lengths[i] = T;
		b.prompt_len[i] = T / 4;
		b.label[i] = (int8_t)(i & 1);
		for (int j = 0; j < T; j++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			b.tokens[(size_t)i * T + j] = 1 + (int)((s >> 33) % (uint64_t)(V - 1));
		}
		if (i & 1)      /* the pair's prompt */
			memcpy(b.tokens + (size_t)i * T, b.tokens + (size_t)(i - 1) * T,
			       b.prompt_len[i] * sizeof *b.tokens);
	}
	return b;
}

static void free_batch(struct batch *b)
{
	free(b->tokens);
	free(b->lengths);
	free(b->prompt_len);
	free(b->label);
	free(b->want);
	free(b->logp);
	free(b->dlogp);
}

static void add_groups(parm_adamw *o, parm_trainer *t)
{
	for (int i = 0; i < parm_train_n_tensors(t); i++) {
		const parm_train_tensor *p = parm_train_tensor_at(t, i);
		parm_adamw_add(o, p->data, p->grad, p->count, p->decay);
	}
}

/* One optimiser step; arm: the PARM loss on pairs, else the LM loss.
 * secs[3] gets the time of forward + loss, backward, clip + AdamW. */
static double train_step(parm_trainer *t, parm_adamw *o, struct batch *b, int arm, double *secs)
{
	static const float alpha[2] = { 0.3f, 0.7f };
	double loss;
	int P = b->B / 2;
	double t0 = parm_now();
	memset(b->dlogp, 0, (size_t)b->B * (b->T - 1) * sizeof *b->dlogp);
	parm_adamw_zero_grad(o);
	if (arm) {
		parm_response_mask(b->want, b->prompt_len, b->lengths, b->B, b->T);
		parm_train_set_pref(t, alpha);
	}
	if (parm_train_forward(t, b->tokens, b->lengths, b->B, b->T, arm ? b->want : NULL,
			       b->logp) < 0)
		parm_die("%s", parm_error());
	if (arm)
		loss = parm_arm_loss(b->dlogp, b->logp, b->prompt_len, b->lengths, P, b->T,
				     b->label, 2, alpha, 0.05, NULL, NULL, NULL);
	else
		loss = parm_loss_lm(b->dlogp, b->logp, NULL, b->lengths, b->B, b->T, NULL);
	double t1 = parm_now();
	parm_train_backward(t, b->dlogp);
	double t2 = parm_now();
	parm_clip_grad_norm(o, 1.0f);
	parm_adamw_step(o, 1e-4f);
	secs[0] = t1 - t0, secs[1] = t2 - t1, secs[2] = parm_now() - t2;
	return loss;
}

/* The work done: dW of frozen weights is skipped (see the top). */
static double work_flops(const parm_trainer *t, const parm_model *m, int arm, int n_rows)
{
	const parm_config *c = &m->cfg;
	double D = c->dim, F = c->ff, kvd = c->n_kv_heads * (D / c->n_heads);
	double flops = parm_train_flops(t);
	if (arm)
		flops -= 2.0 * parm_train_tokens(t) * c->n_layers * (2 * D * D + 2 * D * kvd + 3 * D * F) +
			 4.0 * n_rows * D * c->n_vocab;
	return flops;
}

static void bench_train(const char *what, const struct bench_model *bm, const char *cache,
			const char *vocab, int B, int T, int steps, int arm)
{
	int threads = parm_kernels_threads();
	double peak_cpu, peak = sgemm_peak(threads, &peak_cpu);
	parm_model *m = load_model(bm, cache, vocab);
	parm_adapter_opts ao;
	parm_adapter_opts_default(&ao, 2);
	parm_trainer *t = arm ? parm_train_new_adapters(m, &ao, B, T) : parm_train_new_full(m, B, T);
	if (!t)
		parm_die("%s", parm_error());
	parm_adamw o;
	parm_adamw_init(&o, 0.01f);
	add_groups(&o, t);
	struct batch b = make_batch(B, T, m->cfg.n_vocab);
	int rows = arm ? B * (T - T / 4) : B * (T - 1);
	double best[3] = { 1e30, 1e30, 1e30 }, loss = 0, cpu = 0;
	for (int s = 0; s < steps; s++) {     /* best of: the first one warms up */
		double secs[3], c0 = cpu_now();
		loss = train_step(t, &o, &b, arm, secs);
		if (secs[0] + secs[1] + secs[2] < best[0] + best[1] + best[2]) {
			memcpy(best, secs, sizeof best);
			cpu = cpu_now() - c0;
		}
	}
	double tokens = (double)parm_train_tokens(t), flops = work_flops(t, m, arm, rows);
	double step = best[0] + best[1] + best[2];
	printf("%-4s %-8s %6.1fM %3dx%-4d %5.2f %5.2f %5.2f %6.2f %4.0f%% %7.0f %6.1f %5.1f %5.2f %5.2f %7.3f\n",
	       what, bm->name, parm_train_n_params(t) / 1e6, B, T, best[0], best[1], best[2],
	       step, 100 * cpu / step / threads, tokens / step, flops / step / 1e9,
	       peak / 1e9, flops / step / peak, flops / cpu * threads / peak_cpu, loss);
	fflush(stdout);
	free_batch(&b);
	parm_adamw_free(&o);
	parm_train_free(t);
	parm_model_free(m);
}

static double big_file_mb(const char *cache)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/134M-f32-v1.gguf", cache);
	return stat(path, &st) == 0 ? st.st_size / 1e6 : 0;
}

static void cache_dir(char *cache, size_t size, const char *arg)
{
	const char *home = getenv("HOME");
	snprintf(cache, size, "%s", arg ? arg : "");
	if (cache[0])
		return;
	snprintf(cache, size, "%s/.cache/parm", home ? home : "/tmp");
	mkdir(cache, 0777);
	snprintf(cache + strlen(cache), size - strlen(cache), "/bench");
	mkdir(cache, 0777);
}

/* Peak RSS (MB) of a fresh process that runs one row (exec, not just
 * fork: the kernel threads do not survive a fork); -1 if it failed. */
static double row_in_child(const char *row, char **argv)
{
	struct rusage ru;
	int status;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "bench_train", "--row", row, argv[1], argv[2] ? argv[2] : "",
		      (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || status != 0)
		return -1;
	return ru.ru_maxrss * 1024.0 / 1e6;
}

int main(int argc, char **argv)
{
	static const struct bench_model big = { "134M", 768, 12, 12, 2048 },
					small = { "small256", 256, 4, 4, 768 };
	char cache[4096];
	parm_setprog(argv[0]);
	if (argc >= 4 && !strcmp(argv[1], "--row")) {   /* one row, in a child */
		cache_dir(cache, sizeof cache, argc > 4 && argv[4][0] ? argv[4] : NULL);
		if (!strcmp(argv[2], "arm"))
			bench_train("arm", &big, cache, argv[3], 8, 256, 2, 1);
		else
			bench_train("lm", &small, cache, argv[3], 8, 256, 4, 0);
		return 0;
	}
	if (argc < 2)
		parm_die("usage: bench_train VOCAB.gguf [CACHE_DIR]");
	cache_dir(cache, sizeof cache, argc > 2 ? argv[2] : NULL);
	int threads = parm_kernels_threads();
	printf("OpenBLAS %s core, %d threads; peak = best sgemm %dx%dx%d just before the row\n",
	       openblas_get_corename(), threads, SGEMM_N, SGEMM_N, SGEMM_N);
	printf("best of a few steps: seconds of forward + loss, backward, clip + AdamW;\n"
	       "cpu = CPU time / (wall x threads) of that step (low: the machine was busy);\n"
	       "/peak = GF/s / peak by wall time, /pkcpu the same by CPU time (robust when busy)\n");
	printf("%-4s %-8s %7s %8s %5s %5s %5s %6s %5s %7s %6s %5s %5s %5s %7s\n", "mode", "model",
	       "params", "batch", "fwd", "bwd", "opt", "step", "cpu", "tok/s", "GF/s", "peak",
	       "/peak", "/pkcpu", "loss");
	double rss_arm = row_in_child("arm", argv), rss_lm = row_in_child("lm", argv);
	if (rss_arm < 0 || rss_lm < 0)
		parm_die("a row failed");
	printf("peak RSS of the process: arm %.0f MB (the 134M f32 model's file is %.0f MB), "
	       "lm %.0f MB\n", rss_arm, big_file_mb(cache), rss_lm);
	return 0;
}
