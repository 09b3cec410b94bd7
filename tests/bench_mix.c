/* bench_mix.c - what ARM guidance costs per decoded token, as a ratio to
 * the base alone: PARM (k = 2, 3; merged and unmerged) against GenARM
 * (2 and 3 ARMs, one pass each).  The ARMs' backbone is the base's own
 * shape (the ~134M llama of bench_decode, cached in ~/.cache/parm/bench).
 * A step is what parm-logits and parm-mix do for it: the base forward,
 * each ARM's forward and log_softmax, and the mix of the rows; no pipes.
 * Timed in CPU seconds on one thread (median step), so a busy machine
 * shifts the ratios little.
 * usage: bench_mix VOCAB.gguf [CACHE_DIR] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <parm/arm.h>
#include <parm/mix.h>
#include <parm/model.h>
#include <parm/sample.h>
#include <parm/rng.h>
#include <parm/stream.h>
#include <parm/util.h>
#include "bench_pipe.h"

enum { STEPS = 10, WARM = 2, REPEATS = 3, MAX_BATCH = 4, MAX_GUIDES = 3 };

static const char *ensure_model(const char *cache, const char *vocab_path, enum parm_ggml_type t)
{
	static char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/134M-%s-v1.gguf", cache, parm_ggml_type_name(t));
	if (stat(path, &st) == 0)
		return path;
	parm_gguf *vocab = parm_gguf_open(vocab_path);
	parm_config c = { .dim = 768, .n_layers = 12, .n_heads = 12, .n_kv_heads = 12,
			  .ff = 2048, .n_ctx = 512, .rms_eps = 1e-5f, .rope_theta = 10000 };
	fprintf(stderr, "bench: creating %s\n", path);
	if (!vocab || parm_model_init(path, vocab, &c, t, 1) < 0)
		parm_die("%s", parm_error());
	parm_gguf_close(vocab);
	return path;
}

/* An ARM on the backbone with k objectives and random non-zero B. */
static parm_arm *random_arm(const char *backbone, int k, uint64_t seed)
{
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = k;
	o.seed = seed;
	parm_arm *a = parm_arm_new(backbone, &o);
	if (!a)
		parm_die("%s", parm_error());
	uint64_t s = seed;
	for (int i = 0; i < a->backbone->cfg.n_layers * a->n_targets; i++) {
		parm_pblora *p = &a->adapters[i];
		for (int j = 0; j < p->out * (p->r1 + p->r2); j++)
			p->B[j] = 0.01f * (float)(parm_splitmix64(&s) >> 40) / (1 << 24);
	}
	return a;
}

static parm_guide *make_guide(const char *backbone, int k, int merge, uint64_t seed)
{
	parm_arm *a = random_arm(backbone, k, seed);
	float alpha[3] = { 1.0f / k, 1.0f / k, 1.0f / k };
	parm_guide *g = parm_guide_new(a, alpha, 1.0f, merge);
	if (!g)
		parm_die("%s", parm_error());
	return g;
}

/* CPU seconds of the process: on one thread, a measure that other jobs
 * on a shared machine disturb far less than wall time. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median seconds per step of decoding `batch` sequences with the guides. */
static double step_time(const parm_model *base, parm_guide **g, int n_g, int batch)
{
	int V = base->cfg.n_vocab, tokens[MAX_BATCH], slot[MAX_BATCH];
	parm_header h = { .n_vocab = V, .fingerprint = parm_tok_fingerprint(base->tok) };
	parm_kv *kv = parm_kv_new(base, batch, STEPS + WARM + 2);
	float *logits = parm_xmalloc((size_t)batch * V * sizeof *logits);
	float *lp = parm_xmalloc((size_t)(n_g ? n_g : 1) * batch * V * sizeof *lp);
	parm_step steps[MAX_BATCH];
	parm_record rec = { .type = PARM_REC_ROUND, .n_steps = batch, .steps = steps };
	double t[STEPS];
	for (int j = 0; j < n_g; j++)
		if (parm_guide_begin(g[j], &h, STEPS + WARM + 2) < 0)
			parm_die("%s", parm_error());
	for (int s = 0; s < batch; s++) {
		tokens[s] = 1 + 100 * s, slot[s] = s;
		for (int j = 0; j < n_g; j++)
			parm_guide_start(g[j], s, &tokens[s], 1);
	}
	for (int step = 0; step < STEPS + WARM; step++) {
		double t0 = cpu_now();
		if (parm_forward(base, kv, batch, tokens, slot, NULL, logits) != batch)
			parm_die("forward: %s", parm_error());
		for (int s = 0; s < batch; s++)
			steps[s] = (parm_step){ .seq = s, .tok = step ? tokens[s] : -1,
						.logits = logits + (size_t)s * V };
		if (parm_mix_round(g, n_g, &rec, V, lp) < 0)
			parm_die("%s", parm_error());
		if (step >= WARM)
			t[step - WARM] = cpu_now() - t0;
		for (int s = 0; s < batch; s++)
			tokens[s] = parm_argmax(logits + (size_t)s * V, NULL, V);
	}
	for (int s = 0; s < batch; s++)
		for (int j = 0; j < n_g; j++)
			parm_guide_end(g[j], s);
	parm_kv_free(kv);
	free(logits);
	free(lp);
	qsort(t, STEPS, sizeof *t, cmp_double);
	return t[STEPS / 2];            /* the median: the machine may be busy */
}

struct setup { const char *name; int k, n_arms, merge; };

static void bench_type(const char *cache, const char *vocab, enum parm_ggml_type type)
{
	static const struct setup setups[] = {
		{ "base alone", 0, 0, 1 },
		{ "PARM k=2 merged", 2, 1, 1 }, { "PARM k=2 unmerged", 2, 1, 0 },
		{ "PARM k=3 merged", 3, 1, 1 }, { "PARM k=3 unmerged", 3, 1, 0 },
		{ "GenARM 2 ARMs", 1, 2, 1 }, { "GenARM 3 ARMs", 1, 3, 1 },
	};
	const char *path = ensure_model(cache, vocab, type);
	parm_model *base = parm_model_load(path);
	if (!base)
		parm_die("%s", parm_error());
	double base_t[2] = { 0, 0 };
	int batches[2] = { 1, MAX_BATCH };
	printf("\nbase 134M %s (dim 768, 12 layers, vocab 32000); ARM backbones the same model\n",
	       parm_ggml_type_name(type));
	printf("%-20s %12s %8s %12s %8s\n", "setup", "ms/step b1", "ratio",
	       "ms/step b4", "ratio");
	for (size_t i = 0; i < sizeof setups / sizeof *setups; i++) {
		const struct setup *su = &setups[i];
		double ms[2];
		for (int b = 0; b < 2; b++) {
			parm_guide *g[MAX_GUIDES];
			for (int j = 0; j < su->n_arms; j++)
				g[j] = make_guide(path, su->k, su->merge, 11 + j);
			ms[b] = INFINITY;       /* the best of the repeats' medians */
			for (int r = 0; r < REPEATS; r++)
				ms[b] = fmin(ms[b], 1e3 * step_time(base, g, su->n_arms, batches[b]));
			for (int j = 0; j < su->n_arms; j++)
				parm_guide_free(g[j]);
			if (i == 0)
				base_t[b] = ms[b];
		}
		printf("%-20s %12.1f %8.2f %12.1f %8.2f\n", su->name, ms[0], ms[0] / base_t[0],
		       ms[1], ms[1] / base_t[1]);
		fflush(stdout);
	}
	parm_model_free(base);
}

/* ---- the same through the real pipe: parm-logits | parm-mix | parm-sample ---- */

/* ARM files for the pipes, made once beside the base in the cache. */
static const char *arm_file(const char *cache, const char *base, const char *name, int k,
			    uint64_t seed)
{
	static char path[8][4400];
	static int next;
	struct stat st;
	char *p = path[next++ % 8];
	snprintf(p, sizeof path[0], "%s/arm-%s.gguf", cache, name);
	if (stat(p, &st) == 0)
		return p;
	fprintf(stderr, "bench: creating %s\n", p);
	parm_arm *a = random_arm(base, k, seed);
	if (parm_arm_save(a, p, 0) < 0)
		parm_die("%s", parm_error());
	parm_arm_free(a);
	return p;
}

static void bench_pipes(const char *cache, const char *vocab)
{
	const char *base = ensure_model(cache, vocab, PARM_GGML_F32);
	const char *k2 = arm_file(cache, base, "f32-k2", 2, 11), *k3 = arm_file(cache, base, "f32-k3", 3, 11);
	const char *g[3];
	char mix[5][13000];
	for (int j = 0; j < 3; j++) {
		char name[16];
		snprintf(name, sizeof name, "f32-g%d", j + 1);
		g[j] = arm_file(cache, base, name, 1, 11 + j);
	}
	snprintf(mix[0], sizeof mix[0], "%s", "");
	snprintf(mix[1], sizeof mix[1], "-p 0.5,0.5 '%s'", k2);
	snprintf(mix[2], sizeof mix[2], "-p 0.34,0.33,0.33 '%s'", k3);
	snprintf(mix[3], sizeof mix[3], "-a '%s:0.5' -a '%s:0.5'", g[0], g[1]);
	snprintf(mix[4], sizeof mix[4], "-a '%s:0.34' -a '%s:0.33' -a '%s:0.33'", g[0], g[1], g[2]);
	static const char *names[] = { "base alone", "PARM k=2", "PARM k=3", "GenARM 2 ARMs",
				       "GenARM 3 ARMs" };
	double ms[5];
	char quoted_base[4200];
	snprintf(quoted_base, sizeof quoted_base, "'%s'", base);
	printf("\nthe same through the real pipe, f32, every stage on all processors:\n"
	       "parm-logits | [parm-mix] | parm-sample, greedy, wall ms per token (80 tokens\n"
	       "less 16, best of two); ratio = time / base alone\n%-20s %12s %8s\n", "setup",
	       "ms/token", "ratio");
	for (int i = 0; i < 5; i++) {
		ms[i] = bench_pipe_ms(quoted_base, mix[i], 2);
		printf("%-20s %12.1f %8.2f\n", names[i], ms[i], ms[0] > 0 ? ms[i] / ms[0] : 0);
		fflush(stdout);
	}
	if (ms[3] > 0 && ms[4] > 0)
		printf("PARM / GenARM: k=2 %.2f (goal <= 0.70), k=3 %.2f (goal <= 0.55)\n",
		       ms[1] / ms[3], ms[2] / ms[4]);
}

int main(int argc, char **argv)
{
	char cache[4096];
	const char *home = getenv("HOME");
	parm_setprog(argv[0]);
	if (argc < 2)
		parm_die("usage: bench_mix VOCAB.gguf [CACHE_DIR]");
	snprintf(cache, sizeof cache, "%s", argc > 2 ? argv[2] : "");
	if (!cache[0]) {
		char parent[4200];
		snprintf(parent, sizeof parent, "%s/.cache/parm", home ? home : "/tmp");
		mkdir(parent, 0777);
		snprintf(cache, sizeof cache, "%s/.cache/parm/bench", home ? home : "/tmp");
	}
	mkdir(cache, 0777);
	parm_set_threads(1);
	printf("guided decoding, median CPU ms per step (base forward + ARM forwards +\n"
	       "log_softmax + mix), one thread; ratio = time / base alone at the same batch\n");
	bench_type(cache, argv[1], PARM_GGML_F32);
	bench_type(cache, argv[1], PARM_GGML_Q8_0);
	bench_pipes(cache, argv[1]);
	return 0;
}
