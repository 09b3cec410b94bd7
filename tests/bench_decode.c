/* bench_decode.c - decode speed of random llama models beside the memory
 * bandwidth bound: a token must read every weight once, so tokens/s can
 * be at most bandwidth / weight bytes (times the batch, which shares the
 * read).  usage: bench_decode VOCAB.gguf [CACHE_DIR] */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <parm/model.h>
#include <parm/sample.h>
#include <parm/util.h>
#include "bench_pipe.h"

enum { STEPS = 24, WARM = 4, MAX_BATCH = 8 };

/* Bytes moved per second by a big memcpy (read + write), best of 5. */
static double copy_bandwidth(void)
{
	size_t n = (size_t)256 << 20;
	char *a = parm_xmalloc(n), *b = parm_xmalloc(n);
	double best = 0;
	memset(a, 1, n);
	memset(b, 2, n);
	for (int i = 0; i < 5; i++) {
		double t = parm_now();
		memcpy(b, a, n);
		t = parm_now() - t;
		best = 2.0 * n / t > best ? 2.0 * n / t : best;
	}
	free(a);
	free(b);
	return best;
}

/* Bytes read per second by sweeps that sum a big buffer with 8-wide
 * vectors, one part per thread, best of 5: decoding only reads weights,
 * so this is its bound. */
typedef float v8f __attribute__((vector_size(32)));

struct sweep { const v8f *a; size_t count; float sum; };

static void *sweep_part(void *p)
{
	struct sweep *sw = p;
	v8f s0 = { 0 }, s1 = s0, s2 = s0, s3 = s0;
	for (size_t i = 0; i + 4 <= sw->count; i += 4)
		s0 += sw->a[i], s1 += sw->a[i + 1], s2 += sw->a[i + 2], s3 += sw->a[i + 3];
	s0 += s1 + s2 + s3;
	sw->sum = s0[0] + s0[7];
	return NULL;
}

static double read_bandwidth(int threads)
{
	size_t n = (size_t)512 << 20, count = n / sizeof(v8f);
	v8f *a = parm_xmalloc(n);
	struct sweep sw[64];
	pthread_t tid[64];
	double best = 0;
	memset(a, 0, n);
	threads = threads < 1 ? 1 : threads > 64 ? 64 : threads;
	for (int r = 0; r < 5; r++) {
		double t = parm_now();
		for (int i = 0; i < threads; i++) {
			sw[i] = (struct sweep){ a + count / threads * i, count / threads, 0 };
			pthread_create(&tid[i], NULL, sweep_part, &sw[i]);
		}
		for (int i = 0; i < threads; i++)
			pthread_join(tid[i], NULL);
		t = parm_now() - t;
		best = n / t > best ? n / t : best;
	}
	free(a);
	return best;
}

/* Tokens per second of greedy decoding with `batch` slots in step. */
static double decode_rate(const parm_model *m, int batch)
{
	int V = m->cfg.n_vocab, tokens[MAX_BATCH], slot[MAX_BATCH];
	float *logits = parm_xmalloc((size_t)batch * V * sizeof *logits);
	parm_kv *kv = parm_kv_new(m, batch, STEPS + WARM + 2);
	double t = 0;
	for (int s = 0; s < batch; s++)
		tokens[s] = 1 + 100 * s, slot[s] = s;
	for (int step = 0; step < STEPS + WARM; step++) {
		double t0 = parm_now();
		if (parm_forward(m, kv, batch, tokens, slot, NULL, logits) != batch)
			parm_die("forward: %s", parm_error());
		if (step >= WARM)
			t += parm_now() - t0;
		for (int s = 0; s < batch; s++)
			tokens[s] = parm_argmax(logits + (size_t)s * V, NULL, V);
	}
	parm_kv_free(kv);
	free(logits);
	return (double)STEPS * batch / t;
}

/* Tokens per second of one prefill of p tokens (best of three): the
 * prompt's last position's logits, as a prompt needs.  One cache serves
 * every run, emptied between them, as in a process that reads prompt
 * after prompt (and as llama-bench reuses its context): the first run
 * pays for mapping its pages. */
enum { PREFILL = 128, PREFILL_LONG = 512 };

static double prefill_rate(const parm_model *m, int p)
{
	int *tokens = parm_xmalloc(p * sizeof *tokens), *slot = parm_xcalloc(p, sizeof *slot);
	float *logits = parm_xmalloc((size_t)m->cfg.n_vocab * sizeof *logits);
	uint8_t *want = parm_xcalloc(p, 1);
	double best = 1e30;
	want[p - 1] = 1;
	for (int i = 0; i < p; i++)
		tokens[i] = 1 + (i * 7919) % (m->cfg.n_vocab - 1);
	parm_kv *kv = parm_kv_new(m, 1, p);
	for (int rep = 0; rep < 3; rep++) {
		parm_kv_clear(kv, 0);
		double t0 = parm_now();
		if (parm_forward(m, kv, p, tokens, slot, want, logits) != 1)
			parm_die("prefill: %s", parm_error());
		double t = parm_now() - t0;
		best = t < best ? t : best;
	}
	parm_kv_free(kv);
	free(tokens), free(slot), free(logits), free(want);
	return p / best;
}

/* Tokens per second of greedy decoding through the real pipe
 * (bench_pipe.h); 0 when it failed. */
static double pipe_rate(const char *path, int threads)
{
	char args[4400];
	snprintf(args, sizeof args, "-t %d '%s'", threads, path);
	double ms = bench_pipe_ms(args, "", 3);
	return ms > 0 ? 1e3 / ms : 0;
}

/* llama.cpp's own llama-bench on the same file, same threads: decode of
 * 32 tokens (tg) and prefills of PREFILL and PREFILL_LONG tokens (pp),
 * tokens/s; 0 when it is not built (tests/bench.sh builds it in the
 * cached llama.cpp). */
static void llama_bench(const char *path, int threads, double *tg, double *pp, double *pp_long)
{
	char cmd[8400], line[4096];
	const char *home = getenv("HOME");
	*tg = *pp = *pp_long = 0;
	snprintf(cmd, sizeof cmd, "'%s/.cache/parm/llama.cpp/build/bin/llama-bench' -m '%s' -t %d "
		 "-p %d,%d -n 32 -r 3 -o csv 2>/dev/null", home ? home : "", path, threads, PREFILL,
		 PREFILL_LONG);
	FILE *f = popen(cmd, "r");
	int col_p = -1, col_g = -1, col_ts = -1;
	while (f && fgets(line, sizeof line, f)) {
		int col = 0, n_prompt = -1, n_gen = -1;
		double ts = 0;
		for (char *save, *field = strtok_r(line, ",\n", &save); field;
		     field = strtok_r(NULL, ",\n", &save), col++) {
			size_t len = strlen(field);
			if (len >= 2 && *field == '"' && field[len - 1] == '"')
				field[len - 1] = 0, field++;
			if (!strcmp(field, "n_prompt")) col_p = col;
			else if (!strcmp(field, "n_gen")) col_g = col;
			else if (!strcmp(field, "avg_ts")) col_ts = col;
			else if (col == col_p) n_prompt = atoi(field);
			else if (col == col_g) n_gen = atoi(field);
			else if (col == col_ts) ts = atof(field);
		}
		if (n_prompt == 0 && n_gen > 0)
			*tg = ts;
		else if (n_prompt == PREFILL && n_gen == 0)
			*pp = ts;
		else if (n_prompt == PREFILL_LONG && n_gen == 0)
			*pp_long = ts;
	}
	if (f)
		pclose(f);
}

/* llama.cpp's llama-batched-bench: aggregate decode tokens/s of 1 and of
 * 8 sequences at once (16-token prompts, 32 tokens each); 0 when it is
 * not built. */
static void llama_batched(const char *path, int threads, double *tg1, double *tg8)
{
	char cmd[8400], line[4096];
	const char *home = getenv("HOME");
	*tg1 = *tg8 = 0;
	snprintf(cmd, sizeof cmd, "'%s/.cache/parm/llama.cpp/build/bin/llama-batched-bench' -m '%s' "
		 "-t %d -c 1024 -b 512 -ub 512 -npp 16 -ntg 32 -npl 1,8 --output-format jsonl 2>&1",
		 home ? home : "", path, threads);
	FILE *f = popen(cmd, "r");
	while (f && fgets(line, sizeof line, f)) {
		const char *pl = strstr(line, "\"pl\": "), *tg = strstr(line, "\"speed_tg\": ");
		if (*line != '{' || !pl || !tg)
			continue;
		if (atoi(pl + 6) == 1)
			*tg1 = atof(tg + 12);
		else if (atoi(pl + 6) == 8)
			*tg8 = atof(tg + 12);
	}
	if (f)
		pclose(f);
}

struct bench_model {
	const char *name;
	int dim, layers, heads, kv_heads, ff;
	enum parm_ggml_type type;
	const char *quantize;   /* made by llama-quantize from the f32 model: its type name */
};

static const char *ensure_model(const struct bench_model *b, const char *cache, const char *vocab_path);

/* The f32 model of the same shape through the cached llama-quantize
 * (tests/llamacpp.sh builds it), as users make a Q4_K_M; NULL when it
 * is not built. */
static const char *quantized_model(const struct bench_model *b, const char *cache,
				   const char *vocab_path)
{
	static char path[4200], tool[4200], cmd[32768];
	struct stat st;
	const char *home = getenv("HOME");
	snprintf(path, sizeof path, "%s/%s-%s-v1.gguf", cache, b->name, b->quantize);
	if (stat(path, &st) == 0)
		return path;
	snprintf(tool, sizeof tool, "%s/.cache/parm/llama.cpp/bin/llama-quantize", home ? home : "");
	if (access(tool, X_OK))
		return NULL;
	struct bench_model f = *b;
	f.type = PARM_GGML_F32;
	f.quantize = NULL;
	const char *src = ensure_model(&f, cache, vocab_path);
	fprintf(stderr, "bench: creating %s\n", path);
	snprintf(cmd, sizeof cmd, "'%s' '%s' '%s.tmp' %s 2 >/dev/null 2>&1 && mv '%s.tmp' '%s'",
		 tool, src, path, b->quantize, path, path);
	if (system(cmd) != 0)
		parm_die("llama-quantize %s failed", b->quantize);
	return path;
}

static const char *ensure_model(const struct bench_model *b, const char *cache, const char *vocab_path)
{
	static char path[4200];
	struct stat st;
	if (b->quantize)
		return quantized_model(b, cache, vocab_path);
	snprintf(path, sizeof path, "%s/%s-%s-v1.gguf", cache, b->name, parm_ggml_type_name(b->type));
	if (stat(path, &st) == 0)
		return path;
	parm_gguf *vocab = parm_gguf_open(vocab_path);
	if (!vocab)
		parm_die("%s", parm_error());
	parm_config c = { .dim = b->dim, .n_layers = b->layers, .n_heads = b->heads,
			  .n_kv_heads = b->kv_heads, .ff = b->ff, .n_ctx = 512,
			  .rms_eps = 1e-5f, .rope_theta = 10000 };
	fprintf(stderr, "bench: creating %s\n", path);
	if (parm_model_init(path, vocab, &c, b->type, 1) < 0)
		parm_die("%s", parm_error());
	parm_gguf_close(vocab);
	return path;
}

/* Peak RSS of a child that loads path and decodes at batch 1 (ctx KV_CTX),
 * in MB, beside the file size and the KV cache it needs: decoding holds
 * the file mapped and little else. */
enum { KV_CTX = STEPS + WARM + 2 };

static void print_rss(const char *path, double *rss, double *file, double *kv)
{
	struct stat st;
	struct rusage ru;
	int status;
	*rss = *file = *kv = 0;
	/* a fresh process (exec, not just fork: the thread pool does not
	 * survive a fork) that only loads and decodes */
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);      /* its rate is not this table's */
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		execl("/proc/self/exe", "bench_decode", "--decode-only", path, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || status != 0 || stat(path, &st) < 0)
		return;
	parm_model *m = parm_model_load(path);
	if (!m)
		return;
	const parm_config *c = &m->cfg;
	*kv = 2.0 * c->n_layers * c->n_kv_heads * (c->dim / c->n_heads) * KV_CTX * 4 / 1e6;
	*rss = ru.ru_maxrss * 1024.0 / 1e6;
	*file = st.st_size / 1e6;
	parm_model_free(m);
}

static char side_by_side[16][160];     /* rows of the llama.cpp table */
static char llama_rows[16][128];       /* llama-bench's own figures */
static char batched_rows[16][128];     /* against llama-batched-bench */
static int bench_threads;
static int n_side;

static void bench_one(const struct bench_model *b, const char *cache, const char *vocab,
		      double bandwidth)
{
	const char *path = ensure_model(b, cache, vocab);
	if (!path) {
		printf("%-6s %-6s (skipped: no llama-quantize in ~/.cache/parm; make llamacpp)\n",
		       b->name, b->quantize);
		return;
	}
	parm_model *m = parm_model_load(path);
	if (!m)
		parm_die("%s", parm_error());
	double bytes = (double)parm_model_bytes_per_token(m);
	double r1 = decode_rate(m, 1), r8 = decode_rate(m, 8), rss, file, kv;
	print_rss(path, &rss, &file, &kv);
	double pf = prefill_rate(m, PREFILL), pf_long = prefill_rate(m, PREFILL_LONG), tg, pp, pp_long;
	double piped = pipe_rate(path, bench_threads);
	double btg1, btg8;
	llama_bench(path, bench_threads, &tg, &pp, &pp_long);
	llama_batched(path, bench_threads, &btg1, &btg8);
	snprintf(batched_rows[n_side], sizeof batched_rows[0],
		 "%-6s %-6s %8.1f %8.1f %6.2f %8.1f %8.1f %6.2f %6.2f", b->name,
		 b->quantize ? b->quantize : parm_ggml_type_name(b->type), r8, btg8, btg8 > 0 ? r8 / btg8 : 0,
		 r1, btg1, r8 / r1, btg1 > 0 ? btg8 / btg1 : 0);
	snprintf(side_by_side[n_side++], sizeof side_by_side[0],
		 "%-6s %-6s %7.1f %6.2f %7.1f %6.2f %6.2f %7.1f %6.2f %7.1f %6.2f", b->name,
		 b->quantize ? b->quantize : parm_ggml_type_name(b->type), r1, tg > 0 ? r1 / tg : 0,
		 piped, tg > 0 ? piped / tg : 0, piped > 0 ? r1 / piped : 0, pf, pp > 0 ? pf / pp : 0,
		 pf_long, pp_long > 0 ? pf_long / pp_long : 0);
	snprintf(llama_rows[n_side - 1], sizeof llama_rows[0], "%-6s %-6s %9.1f %9.1f %9.1f", b->name,
		 b->quantize ? b->quantize : parm_ggml_type_name(b->type), tg, pp, pp_long);
	printf("%-6s %-6s %8.1f %9.1f %9.1f %9.1f %5.0f%% %9.1f %8.0f %8.0f %5.2f\n", b->name,
	       b->quantize ? b->quantize : parm_ggml_type_name(b->type), bytes / 1e6, bandwidth / bytes, r1, r8,
	       100 * r1 / (bandwidth / bytes), r8 / r1, rss, file, rss / (file + kv));
	fflush(stdout);
	parm_model_free(m);
}

int main(int argc, char **argv)
{
	static const struct bench_model models[] = {
		{ "tiny", 64, 2, 4, 2, 192, PARM_GGML_F32, NULL },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_F32, NULL },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_F16, NULL },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_BF16, NULL },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_Q8_0, NULL },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_Q4_0, NULL },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_Q4_K, "Q4_K_M" },
		{ "134M", 768, 12, 12, 12, 2048, PARM_GGML_Q6_K, "Q6_K" },
	};
	char cache[4096];
	const char *home = getenv("HOME");
	parm_setprog(argv[0]);
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "--decode-only")) {
		if (getenv("BENCH_THREADS"))
			parm_set_threads(atoi(getenv("BENCH_THREADS")));
		parm_model *m = parm_model_load(argv[2]);
		int batch = argc == 4 ? atoi(argv[3]) : 1;
		double rate = m && batch > 0 ? decode_rate(m, batch) : 0;
		printf("%.1f tok/s\n", rate);
		return rate > 0 ? 0 : 1;
	}
	if (argc == 3 && !strcmp(argv[1], "--prefill-only")) {
		parm_model *m = parm_model_load(argv[2]);
		if (!m)
			return 1;
		printf("pp%d %.1f pp%d %.1f tok/s\n", PREFILL, prefill_rate(m, PREFILL), PREFILL_LONG,
		       prefill_rate(m, PREFILL_LONG));
		return 0;
	}
	if (argc < 2)
		parm_die("usage: bench_decode VOCAB.gguf [CACHE_DIR]\n"
		    "       bench_decode --decode-only MODEL.gguf [BATCH]\n"
		    "       bench_decode --prefill-only MODEL.gguf");
	snprintf(cache, sizeof cache, "%s", argc > 2 ? argv[2] : "");
	if (!cache[0]) {
		snprintf(cache, sizeof cache, "%s/.cache/parm/bench", home ? home : "/tmp");
		char parent[4200];
		snprintf(parent, sizeof parent, "%s/.cache/parm", home ? home : "/tmp");
		mkdir(parent, 0777);
	}
	mkdir(cache, 0777);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	bench_threads = cpus > 0 ? (int)cpus : 1;
	parm_set_threads(bench_threads);
	double copy = copy_bandwidth(), bw = read_bandwidth((int)cpus);
	printf("memcpy %.1f GB/s (read + write), read sweep %.1f GB/s; bound = read / weight bytes\n",
	       copy / 1e9, bw / 1e9);
	printf("%ld threads; tok/s of greedy decode, batch8 = aggregate over 8 sequences\n"
	       "(a model that fits in cache may beat the DRAM bound)\n", cpus);
	printf("peak RSS of a process decoding at batch 1 (MB), the file (MB), and\n"
	       "RSS / (file + KV cache): at most 1.10 means nothing but the mapping stays\n");
	printf("%-6s %-6s %8s %9s %9s %9s %6s %9s %8s %8s %5s\n", "model", "type", "MB/tok",
	       "bound", "batch1", "batch8", "b1/bd", "b8/b1", "rss", "file", "r/f+kv");
	for (size_t i = 0; i < sizeof models / sizeof *models; i++)
		bench_one(&models[i], cache, argv[1], bw);
	printf("\nagainst llama.cpp's llama-bench on the same files, %ld threads, in this run:\n"
	       "tok/s and parm / llama.cpp (0: llama-bench not built); tg: decode at batch 1\n"
	       "in-process (32 tokens for llama-bench); pipe: parm-logits | parm-sample, greedy,\n"
	       "80 tokens less 16; in/pi: in-process over pipe; pp: prefill of %d and %d\n",
	       cpus, PREFILL, PREFILL_LONG);
	printf("%-6s %-6s %7s %6s %7s %6s %6s %7s %6s %7s %6s\n", "model", "type", "tg", "ratio",
	       "pipe", "ratio", "in/pi", "pp128", "ratio", "pp512", "ratio");
	for (int i = 0; i < n_side; i++)
		puts(side_by_side[i]);
	printf("\nllama-bench's figures, tok/s\n%-6s %-6s %9s %9s %9s\n", "model", "type", "tg",
	       "pp128", "pp512");
	for (int i = 0; i < n_side; i++)
		puts(llama_rows[i]);
	printf("\n8 sequences decoded at once against llama-batched-bench (aggregate tok/s;\n"
	       "its 16-token prompts, ours 1 token): b8/b1 = batch 8 over batch 1\n"
	       "%-6s %-6s %8s %8s %6s %8s %8s %6s %6s\n", "model", "type", "parm-b8", "llama-b8",
	       "ratio", "parm-b1", "llama-b1", "b8/b1", "llama");
	for (int i = 0; i < n_side; i++)
		puts(batched_rows[i]);
	return 0;
}
