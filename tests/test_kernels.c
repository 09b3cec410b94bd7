/* test_kernels.c - every fast kernel against its plain-loop reference;
 * the vector kernels of every SIMD path the CPU has, each against it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_internal.h"
#include "quant_dot.h"
#include "simd.h"
#include "tap.h"
#include <parm/util.h>

static uint64_t rng_state = 42;

static float urand(void)                /* [-1, 1) */
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((rng_state >> 40) * 0x1.0p-24) * 2 - 1;
}

static float *rand_vec(size_t n, float scale)
{
	float *v = parm_xmalloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = urand() * scale;
	return v;
}

/* Largest |a - b| relative to the largest |b| (or absolute when b ~ 0). */
static double max_err(const float *a, const float *b, size_t n, double *abs_out)
{
	double e = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (!(d <= e))
			e = d;          /* NaN propagates as a failure */
		if (fabs(b[i]) > m)
			m = fabs(b[i]);
	}
	*abs_out = e;
	return e / (m > 1e-30 ? m : 1);
}

static int close_enough(const char *what, const float *a, const float *b, size_t n, double tol)
{
	double abs_e, rel = max_err(a, b, n, &abs_e);
	return ok(rel <= tol, "%s: max abs err %.3g, rel %.3g (tol %.1g)", what, abs_e, rel, tol);
}

static void test_matmul(enum parm_ggml_type t, int n, int in, int out)
{
	size_t rb = parm_ggml_row_bytes(t, in);
	float *x = rand_vec((size_t)n * in, 1), *wf = rand_vec((size_t)out * in, 0.1f);
	char *w = parm_xmalloc(rb * out);
	float *y = parm_xcalloc((size_t)n * out, sizeof *y), *yr = parm_xcalloc((size_t)n * out, sizeof *yr);
	for (int r = 0; r < out; r++) {
		if (t == PARM_GGML_F32)
			memcpy(w + r * rb, wf + (size_t)r * in, rb);
		else
			parm_quant_row(w + r * rb, wf + (size_t)r * in, t, in);
	}
	parm_matmul_forward(y, x, w, t, n, in, out);
	parm_matmul_forward_ref(yr, x, w, t, n, in, out);
	char what[96];
	snprintf(what, sizeof what, "matmul %s N=%d in=%d out=%d", parm_ggml_type_name(t), n, in, out);
	close_enough(what, y, yr, (size_t)n * out, 1e-5);
	free(x), free(wf), free(w), free(y), free(yr);
}

/* Tiles are the same whatever the thread count: results agree bitwise. */
/* bf16 weights at inference (x8 set): on the AVX-512 path with the bf16
 * dot, x is rounded to bf16 as well, as llama.cpp does (panels for a
 * prompt, rows in place for 2..8 tokens): held to the plain loop on that
 * rounded x.  A lone token, and other paths, keep x in floats. */
static void test_matmul_bf16_dot(int n, int in, int out)
{
	float *x = rand_vec((size_t)n * in, 1), *wf = rand_vec((size_t)out * in, 0.1f);
	uint16_t *w = parm_xmalloc((size_t)out * in * sizeof *w), *xb = parm_xmalloc((size_t)n * in * sizeof *xb);
	float *y = parm_xcalloc((size_t)n * out, sizeof *y), *yr = parm_xcalloc((size_t)n * out, sizeof *yr);
	float *xr = parm_xmalloc((size_t)n * in * sizeof *xr);
	int rounded = n >= 2 && parm_simd_bf16();
	parm_quant_row(w, wf, PARM_GGML_BF16, (int64_t)out * in);
	parm_quant_row(xb, x, PARM_GGML_BF16, (int64_t)n * in);
	parm_dequant_row(xr, xb, PARM_GGML_BF16, (int64_t)n * in);
	matmul_job job = { .y = y, .x = x, .w = w, .t = PARM_GGML_BF16, .in = in, .out = out, .x8 = 1 };
	parm_matmul_many_forward(&job, 1, n);
	parm_matmul_forward_ref(yr, rounded ? xr : x, w, PARM_GGML_BF16, n, in, out);
	char what[120];
	snprintf(what, sizeof what, "matmul bf16 at inference N=%d in=%d out=%d (x %s)", n, in, out,
		 rounded ? "in bf16, vdpbf16ps" : "in floats");
	close_enough(what, y, yr, (size_t)n * out, 1e-5);
	free(x), free(wf), free(w), free(xb), free(y), free(yr), free(xr);
}

static void test_matmul_threads(int n)
{
	int in = 256, out = 1000;
	float *x = rand_vec((size_t)n * in, 1), *w = rand_vec((size_t)out * in, 0.1f);
	float *y1 = parm_xmalloc((size_t)n * out * sizeof *y1), *y2 = parm_xmalloc((size_t)n * out * sizeof *y2);
	parm_kernels_set_threads(1);
	parm_matmul_forward(y1, x, w, PARM_GGML_F32, n, in, out);
	parm_kernels_set_threads(3);
	parm_matmul_forward(y2, x, w, PARM_GGML_F32, n, in, out);
	parm_kernels_set_threads(2);
	ok(!memcmp(y1, y2, (size_t)n * out * sizeof *y1),
	   "matmul N=%d: 1 and 3 threads agree bitwise", n);
	free(x), free(w), free(y1), free(y2);
}

static void test_rmsnorm(void)
{
	int n = 7, d = 100;
	float *x = rand_vec((size_t)n * d, 3), *w = rand_vec(d, 1);
	float *y = parm_xmalloc((size_t)n * d * sizeof *y), *yr = parm_xmalloc((size_t)n * d * sizeof *yr);
	parm_rmsnorm_forward(y, x, w, n, d, 1e-5f);
	parm_rmsnorm_forward_ref(yr, x, w, n, d, 1e-5f);
	close_enough("rmsnorm", y, yr, (size_t)n * d, 1e-6);
	parm_rmsnorm_forward(x, x, w, n, d, 1e-5f);
	close_enough("rmsnorm in place", x, yr, (size_t)n * d, 1e-6);
	free(x), free(w), free(y), free(yr);
}

static void test_rope(void)
{
	int n = 4, heads = 3, hd = 16, pos[4] = { 0, 1, 37, 500 };
	size_t count = (size_t)n * heads * hd;
	float *x = rand_vec(count, 1), *a = parm_xmemdup(x, count * 4), *b = parm_xmemdup(x, count * 4);
	float ff[8] = { 1, 1, 1.5f, 2, 4, 8, 8, 8 };
	parm_rope plain = { .base = 10000, .mscale = 1 };
	parm_rope_forward(a, pos, n, heads, hd, &plain);
	parm_rope_forward_ref(b, pos, n, heads, hd, &plain);
	close_enough("rope", a, b, count, 1e-6);
	/* every variant a model can ask for: factors (Llama 3.1's rope_freqs,
	 * Phi-3's LongRoPE), NEOX pairs (qwen2, qwen3, phi3), attention factor */
	for (int v = 1; v < 8; v++) {
		parm_rope rp = { .base = 10000, .mscale = v & 4 ? 1.19f : 1,
				   .factors = v & 1 ? ff : NULL, .neox = v >> 1 & 1 };
		float *c = parm_xmemdup(x, count * 4), *d = parm_xmemdup(x, count * 4);
		char what[96];
		snprintf(what, sizeof what, "rope%s%s%s", rp.factors ? ", frequency factors" : "",
			 rp.neox ? ", neox" : "", rp.mscale != 1 ? ", mscale" : "");
		parm_rope_forward(c, pos, n, heads, hd, &rp);
		parm_rope_forward_ref(d, pos, n, heads, hd, &rp);
		close_enough(what, c, d, count, 1e-6);
		free(c), free(d);
	}
	parm_rope fp = { .base = 10000, .mscale = 1, .factors = ff }, np = { .base = 10000, .mscale = 1, .neox = 1 };
	float *c = parm_xmemdup(x, count * 4), *e = parm_xmemdup(x, count * 4);
	parm_rope_forward(c, pos, n, heads, hd, &fp);
	parm_rope_forward(e, pos, n, heads, hd, &np);
	float *v5 = x + (size_t)heads * hd + 10, *r5 = c + (size_t)heads * hd + 10;
	double t5 = pow(10000, -2.0 * 5 / hd) / 8;      /* position 1, pair 5, factor 8 */
	ok(fabs(r5[0] - (v5[0] * cos(t5) - v5[1] * sin(t5))) < 1e-6,
	   "a frequency factor divides its pair's angle");
	ok(!memcmp(a, x, (size_t)heads * hd * 4), "rope at position 0 is the identity");
	/* position 1, pair 0 turns by exactly 1 radian */
	float *v = x + (size_t)heads * hd, *r = a + (size_t)heads * hd, *rn = e + (size_t)heads * hd;
	float want0 = v[0] * cosf(1) - v[1] * sinf(1);
	ok(fabsf(r[0] - want0) < 1e-6f, "rope rotates adjacent pairs (x0, x1) by pos * base^0");
	float want_neox = v[0] * cosf(1) - v[hd / 2] * sinf(1);
	ok(fabsf(rn[0] - want_neox) < 1e-6f && fabsf(rn[hd / 2] - (v[0] * sinf(1) + v[hd / 2] * cosf(1))) < 1e-6f,
	   "neox rope rotates (x0, x[hd/2]) by pos * base^0");
	free(x), free(a), free(b), free(c), free(e);
}

static void test_attention(void)
{
	enum { N = 5, H = 4, G = 2, HD = 8, T = 40 };
	int pos[N] = { 0, 3, 4, 39, 10 };
	float *cache_k[2], *cache_v[2];
	const float *kc[N], *vc[N];
	for (int s = 0; s < 2; s++) {
		cache_k[s] = rand_vec((size_t)T * G * HD, 2);
		cache_v[s] = rand_vec((size_t)T * G * HD, 1);
	}
	for (int i = 0; i < N; i++)
		kc[i] = cache_k[i % 2], vc[i] = cache_v[i % 2];
	float *q = rand_vec((size_t)N * H * HD, 2);
	float *o = parm_xcalloc((size_t)N * H * HD, 4), *or = parm_xcalloc((size_t)N * H * HD, 4);
	parm_attention_forward(o, q, kc, vc, pos, N, H, G, HD);
	parm_attention_forward_ref(or, q, kc, vc, pos, N, H, G, HD);
	close_enough("attention (GQA, mixed positions)", o, or, (size_t)N * H * HD, 1e-5);
	/* at position 0 the output is V[0] of the head's kv group */
	ok(fabsf(o[2 * HD] - cache_v[0][1 * HD]) < 1e-6f, "attention at pos 0 copies V of kv head h/(H/G)");
	for (int s = 0; s < 2; s++)
		free(cache_k[s]), free(cache_v[s]);
	free(q), free(o), free(or);
}

/* A prompt's runs (consecutive positions of one cache) go through the
 * blocked sgemms: two runs longer than a block, one cut short by another
 * sequence's token, and lone tokens between them. */
static void test_attention_runs(void)
{
	enum { H = 6, G = 3, HD = 16, T = 80 };
	int pos[128], n = 0;
	float *cache_k[2], *cache_v[2];
	const float *kc[128], *vc[128];
	for (int s = 0; s < 2; s++) {
		cache_k[s] = rand_vec((size_t)T * G * HD, 2);
		cache_v[s] = rand_vec((size_t)T * G * HD, 1);
	}
	for (int p = 5; p < 45; p++)            /* 40: a block and 8 */
		kc[n] = cache_k[0], vc[n] = cache_v[0], pos[n++] = p;
	kc[n] = cache_k[1], vc[n] = cache_v[1], pos[n++] = 70;
	for (int p = 0; p < 70; p++)            /* 70 from the start */
		kc[n] = cache_k[1], vc[n] = cache_v[1], pos[n++] = p;
	kc[n] = cache_k[0], vc[n] = cache_v[0], pos[n++] = 45;
	float *q = rand_vec((size_t)n * H * HD, 2);
	float *o = parm_xcalloc((size_t)n * H * HD, 4), *or = parm_xcalloc((size_t)n * H * HD, 4);
	parm_attention_forward(o, q, kc, vc, pos, n, H, G, HD);
	parm_attention_forward_ref(or, q, kc, vc, pos, n, H, G, HD);
	close_enough("attention of prompts (runs in blocks, lone tokens between)", o, or,
		     (size_t)n * H * HD, 1e-5);
	for (int s = 0; s < 2; s++)
		free(cache_k[s]), free(cache_v[s]);
	free(q), free(o), free(or);
}

static void test_swiglu_softmax(void)
{
	int n = 3, v = 1000;
	float *g = rand_vec((size_t)n * v, 8), *u = rand_vec((size_t)n * v, 2);
	float *a = parm_xmalloc((size_t)n * v * 4), *b = parm_xmalloc((size_t)n * v * 4);
	parm_swiglu_forward(a, g, u, (int64_t)n * v);
	parm_swiglu_forward_ref(b, g, u, (int64_t)n * v);
	close_enough("swiglu", a, b, (size_t)n * v, 1e-6);
	g[5] = 80;                      /* a peaked row */
	parm_softmax_forward(a, g, n, v);
	parm_softmax_forward_ref(b, g, n, v);
	close_enough("softmax", a, b, (size_t)n * v, 1e-6);
	parm_log_softmax_forward(a, g, n, v);
	parm_log_softmax_forward_ref(b, g, n, v);
	close_enough("log_softmax", a, b, (size_t)n * v, 1e-6);
	double sum = 0;
	for (int k = 0; k < v; k++)
		sum += exp(a[v + k]);
	ok(fabs(sum - 1) < 1e-5, "log_softmax row sums to 1 in probability (%.8f)", sum);
	/* one log-softmax: a log-prob is its row's entry, bit for bit, also
	 * on a row far from 0, where x - (max + log_sum) would lose bits */
	for (int k = 0; k < v; k++)
		g[v + k] += 3000;
	int *tgt = parm_xmalloc((size_t)n * sizeof *tgt), same = 1;
	float *lp = parm_xmalloc((size_t)n * sizeof *lp);
	for (int i = 0; i < n; i++)
		tgt[i] = (i * 7919) % v;
	parm_log_softmax_forward(a, g, n, v);
	parm_logprob_forward(lp, g, tgt, n, v);
	for (int i = 0; i < n; i++)
		same &= memcmp(&lp[i], &a[(size_t)i * v + tgt[i]], sizeof *lp) == 0;
	ok(same, "parm_logprob_forward gives parm_log_softmax_forward's entries bit for bit");
	parm_log_softmax_forward_ref(b, g, n, v);
	close_enough("log_softmax of a row offset by 3000", a + v, b + v, (size_t)v, 1e-6);
	free(tgt), free(lp);
	free(g), free(u), free(a), free(b);
}

/* One path's vector kernels (kv, called directly whatever PARM_SIMD says)
 * against the references, on lengths with and without a tail of 8. */
static void test_vec_path(const kernels_vec *kv, const char *path)
{
	enum { N = 3, IN = 96, ROWS = 37, V = 1003 };
	char what[96];
	float *x = rand_vec((size_t)N * IN, 1), *w = rand_vec((size_t)ROWS * IN, 0.1f);
	float *y = parm_xcalloc((size_t)N * ROWS, sizeof *y), *yr = parm_xcalloc((size_t)N * ROWS, sizeof *yr);
	kv->dot_rows(y, ROWS, x, N, w, ROWS, IN);
	parm_matmul_forward_ref(yr, x, w, PARM_GGML_F32, N, IN, ROWS);
	snprintf(what, sizeof what, "%s: dot_rows (decode matmul, 3 tokens)", path);
	close_enough(what, y, yr, (size_t)N * ROWS, 1e-5);

	float *a = rand_vec(V, 30), *e = parm_xmalloc(V * sizeof *e), *er = parm_xmalloc(V * sizeof *er);
	kv->vexp(e, a, V);
	parm_vexp_ref(er, a, V);
	snprintf(what, sizeof what, "%s: parm_vexp", path);
	close_enough(what, e, er, V, 1e-6);

	kv->softmax_row(e, a, V);
	parm_softmax_forward_ref(er, a, 1, V);
	snprintf(what, sizeof what, "%s: softmax_row", path);
	close_enough(what, e, er, V, 1e-6);

	int tgt = 17;
	float log_sum, m = kv->row_max_logsum(a, V, &log_sum), lp = (a[tgt] - m) - log_sum, lpr;
	parm_logprob_forward_ref(&lpr, a, &tgt, 1, V);
	snprintf(what, sizeof what, "%s: row_max_logsum (log-prob forward)", path);
	close_enough(what, &lp, &lpr, 1, 1e-6);

	float *dx = parm_xcalloc(V, sizeof *dx), *dxr = parm_xcalloc(V, sizeof *dxr), g = 0.7f;
	kv->logprob_row_backward(dx, a, g, V);
	dx[tgt] += g;
	parm_logprob_backward_ref(dxr, &g, a, &tgt, 1, V);
	snprintf(what, sizeof what, "%s: logprob_row_backward", path);
	close_enough(what, dx, dxr, V, 1e-5);

	float *u = rand_vec(V, 2), *d = rand_vec(V, 1);
	float *dg = parm_xcalloc(V, sizeof *dg), *du = parm_xcalloc(V, sizeof *du);
	float *dgr = parm_xcalloc(V, sizeof *dgr), *dur = parm_xcalloc(V, sizeof *dur);
	swiglu_range r = { .dgate = dg, .dup = du, .dout = d, .gate = a, .up = u };
	kv->swiglu_bwd_range(&r, 0, V);
	parm_swiglu_backward_ref(dgr, dur, d, a, u, V);
	snprintf(what, sizeof what, "%s: swiglu backward, dgate", path);
	close_enough(what, dg, dgr, V, 1e-5);
	snprintf(what, sizeof what, "%s: swiglu backward, dup", path);
	close_enough(what, du, dur, V, 1e-5);
	free(x), free(w), free(y), free(yr), free(a), free(e), free(er), free(dx), free(dxr);
	free(u), free(d), free(dg), free(du), free(dgr), free(dur);
}

/* The portable kernels; the FMA ones where the CPU has AVX2 (its AVX-512
 * path runs the same ones). */
static void test_vec_paths(void)
{
	printf("# simd path %s, the CPU's best %s\n", parm_simd_name(parm_simd()),
	       parm_simd_name(parm_simd_best()));
	test_vec_path(&parm_kernels_vec_plain, "portable (no FMA)");
#if defined(__x86_64__) || defined(__i386__)
	if (parm_simd_best() >= PARM_SIMD_AVX2)
		test_vec_path(&parm_kernels_vec_fma, "avx2 and avx512 (FMA)");
	else
#endif
		skip("the CPU has no AVX2 and FMA", "vector kernels with FMA");
}

int main(void)
{
	static const enum parm_ggml_type types[] = { PARM_GGML_F32, PARM_GGML_F16, PARM_GGML_BF16, PARM_GGML_Q8_0, PARM_GGML_Q4_0 };
	(void)fixtures_dir;
	parm_kernels_set_threads(2);
	for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
		test_matmul(types[i], 1, 96, 300);
		test_matmul(types[i], 9, 160, 77);
		test_matmul(types[i], 3, 2048, 40);
	}
	test_matmul(PARM_GGML_F32, 8, 100, 37);     /* in not a multiple of 8 */
	test_matmul(PARM_GGML_F16, 2, 36, 5);
	test_matmul(PARM_GGML_Q8_0, 8, 800, 50);    /* fused decode dot: one pass of 8 or two of 4, odd blocks */
	test_matmul(PARM_GGML_Q4_0, 7, 800, 50);    /* passes of 4, 2 and 1 */
	test_matmul(PARM_GGML_Q8_0, 6, 800, 50);    /* 4 and 2 */
	/* prompts (panels on the AVX-512 path): 12 tokens a block and the
	 * rest, panels of 32 rows and a short one, tiles of W, in not a
	 * multiple of 16 */
	test_matmul(PARM_GGML_F32, 40, 100, 70);
	test_matmul(PARM_GGML_F32, 25, 96, 600);
	test_matmul(PARM_GGML_F16, 13, 768, 130);
	test_matmul(PARM_GGML_BF16, 24, 64, 33);
	test_matmul(PARM_GGML_Q8_0, 12, 1024, 200);
	test_matmul_bf16_dot(40, 100, 70);
	test_matmul_bf16_dot(13, 768, 130);
	test_matmul_bf16_dot(4, 64, 33);
	test_matmul_bf16_dot(1, 770, 9);
	test_matmul_bf16_dot(7, 770, 9);
	test_matmul_threads(5);        /* decode's dots */
	test_matmul_threads(30);       /* a prompt's */
	test_rmsnorm();
	test_rope();
	test_attention();
	test_attention_runs();
	test_swiglu_softmax();
	test_vec_paths();
	return tap_done();
}
