/* test_backward.c - every backward kernel against central finite
 * differences of its (double-accumulating) reference forward, and every
 * optimised backward against its plain-loop reference. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "quant_dot.h"
#include "tap.h"
#include <parm/util.h>

static uint64_t rng = 12345;

static float frand(void)        /* uniform in [-1, 1) */
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((rng >> 40) * 0x1.0p-24 * 2 - 1);
}

static float *rand_vec(size_t n, float scale)
{
	float *v = parm_xmalloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = frand() * scale;
	return v;
}

static float *zeros(size_t n)
{
	return parm_xcalloc(n, sizeof(float));
}

/* A forward under test: fills out[] from the inputs it holds in ctx. */
typedef void fwd_fn(void *ctx, float *out);

static double weighted(fwd_fn *f, void *ctx, float *out, const float *r, size_t n_out)
{
	double s = 0;
	f(ctx, out);
	for (size_t i = 0; i < n_out; i++)
		s += (double)r[i] * out[i];
	return s;
}

/* max |analytic - numeric| / max |numeric| over (up to 300 sampled)
 * coordinates of x, the loss being sum r * out. */
static double fd_error(fwd_fn *f, void *ctx, float *x, size_t nx, const float *grad,
		       const float *r, size_t n_out, float h)
{
	float *out = parm_xmalloc(n_out * sizeof *out);
	double max_diff = 0, max_num = 1e-6;
	size_t step = nx > 300 ? nx / 300 : 1;
	for (size_t i = 0; i < nx; i += step) {
		float keep = x[i];
		x[i] = keep + h;
		double up = weighted(f, ctx, out, r, n_out);
		x[i] = keep - h;
		double down = weighted(f, ctx, out, r, n_out);
		x[i] = keep;
		double num = (up - down) / (2.0 * h);
		max_diff = fmax(max_diff, fabs(num - grad[i]));
		max_num = fmax(max_num, fabs(num));
	}
	free(out);
	return max_diff / max_num;
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
	double d = 0, m = 1e-6;
	for (size_t i = 0; i < n; i++) {
		d = fmax(d, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return d / m;
}

static void report(const char *op, double err, double tol)
{
	printf("# %-22s max rel err %.2e\n", op, err);
	ok(err < tol, "%s backward matches finite differences (%.1e < %.0e)", op, err, tol);
}

/* ---- matmul ---- */

typedef struct { float *x; const void *w; enum parm_ggml_type t; int n, in, out; } mm_ctx;

static void mm_fwd(void *c, float *out)
{
	mm_ctx *m = c;
	parm_matmul_forward_ref(out, m->x, m->w, m->t, m->n, m->in, m->out);
}

static void test_matmul(void)
{
	int n = 5, in = 64, out = 24;
	float *x = rand_vec((size_t)n * in, 1), *w = rand_vec((size_t)out * in, 0.5f);
	float *r = rand_vec((size_t)n * out, 1), *dx = zeros((size_t)n * in), *dw = zeros((size_t)out * in);
	float *dx2 = zeros((size_t)n * in), *dw2 = zeros((size_t)out * in);
	mm_ctx c = { x, w, PARM_GGML_F32, n, in, out };
	parm_matmul_backward(dx, dw, r, x, w, PARM_GGML_F32, n, in, out);
	parm_matmul_backward_ref(dx2, dw2, r, x, w, PARM_GGML_F32, n, in, out);
	ok(max_rel_diff(dx, dx2, (size_t)n * in) < 1e-5 && max_rel_diff(dw, dw2, (size_t)out * in) < 1e-5,
	   "parm_matmul_backward equals its reference (f32)");
	report("matmul dx (f32)", fd_error(mm_fwd, &c, x, (size_t)n * in, dx, r, (size_t)n * out, 1e-2f), 1e-3);
	report("matmul dW (f32)", fd_error(mm_fwd, &c, w, (size_t)out * in, dw, r, (size_t)n * out, 1e-2f), 1e-3);
	/* a frozen q8_0 weight read in place: dx only */
	size_t rb = parm_ggml_row_bytes(PARM_GGML_Q8_0, in);
	char *q = parm_xmalloc(rb * out);
	for (int o = 0; o < out; o++)
		parm_quant_row(q + o * rb, w + (size_t)o * in, PARM_GGML_Q8_0, in);
	memset(dx, 0, (size_t)n * in * sizeof *dx);
	memset(dx2, 0, (size_t)n * in * sizeof *dx2);
	parm_matmul_backward(dx, NULL, r, x, q, PARM_GGML_Q8_0, n, in, out);
	parm_matmul_backward_ref(dx2, NULL, r, x, q, PARM_GGML_Q8_0, n, in, out);
	ok(max_rel_diff(dx, dx2, (size_t)n * in) < 1e-5, "parm_matmul_backward equals its reference (q8_0)");
	c = (mm_ctx){ x, q, PARM_GGML_Q8_0, n, in, out };
	report("matmul dx (q8_0)", fd_error(mm_fwd, &c, x, (size_t)n * in, dx, r, (size_t)n * out, 1e-2f), 1e-3);
	/* accumulation: a second call adds the same again */
	parm_matmul_backward(dx, NULL, r, x, q, PARM_GGML_Q8_0, n, in, out);
	for (size_t i = 0; i < (size_t)n * in; i++)
		dx2[i] *= 2;
	ok(max_rel_diff(dx, dx2, (size_t)n * in) < 1e-5, "parm_matmul_backward accumulates");
	free(x), free(w), free(r), free(dx), free(dw), free(dx2), free(dw2), free(q);
}

/* Shapes past the blocks of the pool's gemm (256 x 128 of C, k in chunks
 * of 512 on the AVX-512 path): against the reference, accumulating onto
 * what dx and dw held, and the same bits on 1 and 3 threads. */
static void test_matmul_blocks(int n, int in, int out)
{
	float *x = rand_vec((size_t)n * in, 1), *w = rand_vec((size_t)out * in, 0.5f);
	float *r = rand_vec((size_t)n * out, 1);
	float *dx = rand_vec((size_t)n * in, 1), *dw = rand_vec((size_t)out * in, 1);
	float *dx2 = parm_xmalloc((size_t)n * in * sizeof *dx2), *dw2 = parm_xmalloc((size_t)out * in * sizeof *dw2);
	float *dx3 = parm_xmalloc((size_t)n * in * sizeof *dx3), *dw3 = parm_xmalloc((size_t)out * in * sizeof *dw3);
	memcpy(dx2, dx, (size_t)n * in * sizeof *dx), memcpy(dx3, dx, (size_t)n * in * sizeof *dx);
	memcpy(dw2, dw, (size_t)out * in * sizeof *dw), memcpy(dw3, dw, (size_t)out * in * sizeof *dw);
	parm_kernels_set_threads(1);
	parm_matmul_backward(dx, dw, r, x, w, PARM_GGML_F32, n, in, out);
	parm_kernels_set_threads(3);
	parm_matmul_backward(dx3, dw3, r, x, w, PARM_GGML_F32, n, in, out);
	parm_kernels_set_threads(2);
	parm_matmul_backward_ref(dx2, dw2, r, x, w, PARM_GGML_F32, n, in, out);
	ok(max_rel_diff(dx, dx2, (size_t)n * in) < 1e-5 && max_rel_diff(dw, dw2, (size_t)out * in) < 1e-5,
	   "parm_matmul_backward N=%d in=%d out=%d (+=) equals its reference", n, in, out);
	ok(!memcmp(dx, dx3, (size_t)n * in * sizeof *dx) && !memcmp(dw, dw3, (size_t)out * in * sizeof *dw),
	   "parm_matmul_backward N=%d in=%d out=%d: 1 and 3 threads agree bitwise", n, in, out);
	free(x), free(w), free(r), free(dx), free(dw), free(dx2), free(dw2), free(dx3), free(dw3);
}

/* ---- embedding ---- */

typedef struct { float *table; const int *tok; int n, d; } emb_ctx;

static void emb_fwd(void *c, float *out)
{
	emb_ctx *e = c;
	parm_embed_forward(out, e->table, PARM_GGML_F32, e->tok, e->n, e->d);
}

static void test_embed(void)
{
	int V = 7, d = 8, tok[6] = { 3, 1, 3, 0, 6, 3 };
	float *table = rand_vec((size_t)V * d, 1), *r = rand_vec(6 * d, 1), *dt = zeros((size_t)V * d);
	emb_ctx c = { table, tok, 6, d };
	parm_embed_backward(dt, r, tok, 6, d);
	report("embedding", fd_error(emb_fwd, &c, table, (size_t)V * d, dt, r, 6 * d, 1e-2f), 1e-4);
	free(table), free(r), free(dt);
}

/* ---- rmsnorm ---- */

typedef struct { float *x, *w; int n, d; } rms_ctx;

static void rms_fwd(void *c, float *out)
{
	rms_ctx *m = c;
	parm_rmsnorm_forward_ref(out, m->x, m->w, m->n, m->d, 1e-5f);
}

static void test_rmsnorm(void)
{
	int n = 4, d = 40;
	float *x = rand_vec((size_t)n * d, 2), *w = rand_vec(d, 1), *r = rand_vec((size_t)n * d, 1);
	float *dx = zeros((size_t)n * d), *dw = zeros(d), *dx2 = zeros((size_t)n * d), *dw2 = zeros(d);
	rms_ctx c = { x, w, n, d };
	parm_rmsnorm_backward(dx, dw, r, x, w, n, d, 1e-5f);
	parm_rmsnorm_backward_ref(dx2, dw2, r, x, w, n, d, 1e-5f);
	ok(max_rel_diff(dx, dx2, (size_t)n * d) < 1e-5 && max_rel_diff(dw, dw2, d) < 1e-5,
	   "parm_rmsnorm_backward equals its reference");
	report("rmsnorm dx", fd_error(rms_fwd, &c, x, (size_t)n * d, dx, r, (size_t)n * d, 1e-3f), 1e-3);
	report("rmsnorm dw", fd_error(rms_fwd, &c, w, d, dw, r, (size_t)n * d, 1e-3f), 1e-3);
	free(x), free(w), free(r), free(dx), free(dw), free(dx2), free(dw2);
}

/* ---- rope ---- */

typedef struct { float *x; const int *pos; int n, heads, hd; parm_rope rp; } rope_ctx;

static void rope_fwd(void *c, float *out)
{
	rope_ctx *m = c;
	memcpy(out, m->x, (size_t)m->n * m->heads * m->hd * sizeof *out);
	parm_rope_forward_ref(out, m->pos, m->n, m->heads, m->hd, &m->rp);
}

/* Every variant: factors (Llama 3.1, LongRoPE), NEOX pairs, mscale. */
static void test_rope(void)
{
	int n = 4, heads = 3, hd = 8, pos[4] = { 0, 1, 5, 17 };
	size_t count = (size_t)n * heads * hd;
	float *x = rand_vec(count, 1), *r = rand_vec(count, 1), *dx = parm_xmalloc(count * sizeof *dx);
	static const float ff[4] = { 1, 2.5f, 4, 8 };
	for (int v = 0; v < 8; v++) {
		rope_ctx c = { x, pos, n, heads, hd,
			       { .base = 10000, .mscale = v & 4 ? 1.19f : 1, .factors = v & 1 ? ff : NULL,
				 .neox = v >> 1 & 1 } };
		char what[96];
		snprintf(what, sizeof what, "rope%s%s%s", c.rp.factors ? " with frequency factors" : "",
			 c.rp.neox ? ", neox" : "", c.rp.mscale != 1 ? ", mscale" : "");
		memcpy(dx, r, count * sizeof *dx);
		parm_rope_backward(dx, pos, n, heads, hd, &c.rp);
		report(what, fd_error(rope_fwd, &c, x, count, dx, r, count, 1e-2f), 1e-3);
	}
	free(x), free(r), free(dx);
}

/* ---- training attention ---- */

typedef struct { float *q, *k, *v, *lse; const int *start, *len; int n_seq, H, G, hd; } att_ctx;

static void att_fwd(void *c, float *out)
{
	att_ctx *a = c;
	parm_attention_train_forward_ref(out, a->lse, a->q, a->k, a->v, a->start, a->len, a->n_seq,
				    a->H, a->G, a->hd);
}

static void test_attention(void)
{
	int start[3] = { 0, 6, 9 }, len[3] = { 6, 3, 1 }, N = 10, H = 4, G = 2, hd = 8;
	size_t nq = (size_t)N * H * hd, nk = (size_t)N * G * hd;
	float *q = rand_vec(nq, 1), *k = rand_vec(nk, 1), *v = rand_vec(nk, 1), *r = rand_vec(nq, 1);
	float *out = zeros(nq), *out2 = zeros(nq), *lse = zeros((size_t)N * H), *lse2 = zeros((size_t)N * H);
	float *g[6];
	for (int i = 0; i < 6; i++)
		g[i] = zeros(i % 3 == 0 ? nq : nk);
	parm_attention_train_forward(out, lse, q, k, v, start, len, 3, H, G, hd);
	parm_attention_train_forward_ref(out2, lse2, q, k, v, start, len, 3, H, G, hd);
	ok(max_rel_diff(out, out2, nq) < 1e-5 && max_rel_diff(lse, lse2, (size_t)N * H) < 1e-5,
	   "parm_attention_train_forward equals its reference");
	parm_attention_train_backward(g[0], g[1], g[2], r, q, k, v, out, lse, start, len, 3, H, G, hd);
	parm_attention_train_backward_ref(g[3], g[4], g[5], r, q, k, v, out2, lse2, start, len, 3, H, G, hd);
	ok(max_rel_diff(g[0], g[3], nq) < 1e-5 && max_rel_diff(g[1], g[4], nk) < 1e-5 &&
	   max_rel_diff(g[2], g[5], nk) < 1e-5, "parm_attention_train_backward equals its reference");
	att_ctx c = { q, k, v, lse2, start, len, 3, H, G, hd };
	report("attention dq", fd_error(att_fwd, &c, q, nq, g[0], r, nq, 1e-2f), 1e-3);
	report("attention dk", fd_error(att_fwd, &c, k, nk, g[1], r, nq, 1e-2f), 1e-3);
	report("attention dv", fd_error(att_fwd, &c, v, nk, g[2], r, nq, 1e-2f), 1e-3);
	free(q), free(k), free(v), free(r), free(out), free(out2), free(lse), free(lse2);
	for (int i = 0; i < 6; i++)
		free(g[i]);
}

/* ---- swiglu ---- */

typedef struct { float *gate, *up; int n; } sw_ctx;

static void sw_fwd(void *c, float *out)
{
	sw_ctx *s = c;
	parm_swiglu_forward_ref(out, s->gate, s->up, s->n);
}

static void test_swiglu(void)
{
	int n = 50;
	float *gate = rand_vec(n, 4), *up = rand_vec(n, 2), *r = rand_vec(n, 1);
	float *dg = zeros(n), *du = zeros(n);
	sw_ctx c = { gate, up, n };
	parm_swiglu_backward(dg, du, r, gate, up, n);
	report("swiglu dgate", fd_error(sw_fwd, &c, gate, n, dg, r, n, 1e-3f), 1e-3);
	report("swiglu dup", fd_error(sw_fwd, &c, up, n, du, r, n, 1e-3f), 1e-3);
	free(gate), free(up), free(r), free(dg), free(du);
	/* blocks over the pool, vector bodies and a tail, one output NULL */
	int big = 3 * 8192 + 13;
	float *gate2 = rand_vec(big, 12), *up2 = rand_vec(big, 2), *r2 = rand_vec(big, 1);
	float *dg2 = rand_vec(big, 1), *du2 = zeros(big), *dg3 = zeros(big), *du3 = zeros(big);
	memcpy(dg3, dg2, big * sizeof *dg3);
	parm_swiglu_backward(dg2, du2, r2, gate2, up2, big);
	parm_swiglu_backward_ref(dg3, du3, r2, gate2, up2, big);
	ok(max_rel_diff(dg2, dg3, big) < 1e-6 && max_rel_diff(du2, du3, big) < 1e-6,
	   "parm_swiglu_backward accumulates as its reference (%.1e, %.1e)",
	   max_rel_diff(dg2, dg3, big), max_rel_diff(du2, du3, big));
	memset(du2, 0, big * sizeof *du2);
	parm_swiglu_backward(NULL, du2, r2, gate2, up2, big);
	ok(max_rel_diff(du2, du3, big) < 1e-6, "parm_swiglu_backward without dgate");
	free(gate2), free(up2), free(r2), free(dg2), free(du2), free(dg3), free(du3);
}

/* ---- log-softmax, log-prob gather, cross-entropy ---- */

typedef struct { float *x; const int *tgt; int n, v, which; } ls_ctx;

static void ls_fwd(void *c, float *out)
{
	ls_ctx *s = c;
	if (s->which == 0)
		parm_log_softmax_forward_ref(out, s->x, s->n, s->v);
	else if (s->which == 1)
		parm_logprob_forward_ref(out, s->x, s->tgt, s->n, s->v);
	else
		parm_crossentropy_forward(out, s->x, s->tgt, s->n, s->v);
}

static void test_softmax_family(void)
{
	int n = 3, v = 37, tgt[3] = { 0, 36, 11 };
	size_t count = (size_t)n * v;
	float *x = rand_vec(count, 3), *r = rand_vec(count, 1), *out = zeros(count), *dx = zeros(count);
	float *dx2 = zeros(count), *lp = zeros(n), *lp2 = zeros(n);
	ls_ctx c = { x, tgt, n, v, 0 };
	parm_log_softmax_forward(out, x, n, v);
	parm_log_softmax_backward(dx, r, out, n, v);
	report("log_softmax", fd_error(ls_fwd, &c, x, count, dx, r, count, 1e-2f), 1e-3);
	memset(dx, 0, count * sizeof *dx);
	parm_logprob_forward(lp, x, tgt, n, v);
	parm_logprob_forward_ref(lp2, x, tgt, n, v);
	ok(max_rel_diff(lp, lp2, n) < 1e-5, "parm_logprob_forward equals its reference");
	parm_logprob_backward(dx, r, x, tgt, n, v);
	parm_logprob_backward_ref(dx2, r, x, tgt, n, v);
	ok(max_rel_diff(dx, dx2, count) < 1e-5, "parm_logprob_backward equals its reference");
	c.which = 1;
	report("logprob gather", fd_error(ls_fwd, &c, x, count, dx, r, n, 1e-2f), 1e-3);
	memset(dx, 0, count * sizeof *dx);
	parm_crossentropy_backward(dx, r, x, tgt, n, v);
	c.which = 2;
	report("cross-entropy", fd_error(ls_fwd, &c, x, count, dx, r, n, 1e-2f), 1e-3);
	free(x), free(r), free(out), free(dx), free(dx2), free(lp), free(lp2);
}

/* ---- parm_vexp (the log-probs' exp) against exp in double and expf ---- */

static void test_vexp(void)
{
	enum { N = 400003 };
	static float x[N], y[N], y2[N];
	double worst = 0, worst_x = 0;
	for (int i = 0; i < N; i++)     /* every normal result, and some below */
		x[i] = -103.0f + 192.0f * i / (N - 1);
	x[0] = -INFINITY, x[1] = INFINITY, x[2] = NAN, x[3] = 0, x[4] = -0.0f;
	parm_vexp(y, x, N);
	parm_vexp_ref(y2, x, N);
	for (int i = 5; i < N; i++) {
		double e = exp((double)x[i]);
		if (e < 0x1p-126 || e > 0x1.fffffep127)
			continue;
		double rel = fabs(y[i] - e) / e;
		if (rel > worst)
			worst = rel, worst_x = x[i];
	}
	printf("# parm_vexp: max relative error %.2e at %g (expf: %.2e there)\n", worst, worst_x,
	       fabs(expf((float)worst_x) - exp(worst_x)) / exp(worst_x));
	ok(worst < 2.5e-7, "parm_vexp within 2.5e-7 relative of exp for normal results (%.2e)", worst);
	ok(y[0] == 0 && isinf(y[1]) && isnan(y[2]) && y[3] == 1 && y[4] == 1,
	   "parm_vexp of -inf, inf, nan, 0, -0: %g %g %g %g %g", y[0], y[1], y[2], y[3], y[4]);
	double under = 0;
	for (int i = 5; i < N; i++)
		if (exp((double)x[i]) < 0x1p-126)
			under = fmax(under, fabs(y[i] - y2[i]));
	ok(under < 0x1p-126, "parm_vexp underflows like expf (max diff %.1e)", under);
	float tail[5] = { 1, 2, 3, 4, 5 };
	parm_vexp(tail, tail, 3);
	ok(fabsf(tail[2] - expf(3)) < 1e-5f && tail[3] == 4, "parm_vexp in place, a short tail only");
}

/* The log-prob kernels at a vocabulary's size: vector bodies, tails,
 * rows spread over threads, large logits. */
static void test_logprob_wide(void)
{
	int n = 9, v = 32003, tgt[9] = { 0, 32002, 5, 77, 31999, 1, 2, 3, 16000 };
	size_t count = (size_t)n * v;
	float *x = rand_vec(count, 30), *g = rand_vec(n, 1), *dx = zeros(count), *dx2 = zeros(count);
	float lp[9], lp2[9];
	g[4] = 0;
	parm_logprob_forward(lp, x, tgt, n, v);
	parm_logprob_forward_ref(lp2, x, tgt, n, v);
	ok(max_rel_diff(lp, lp2, n) < 1e-5, "parm_logprob_forward at V = %d equals its reference (%.1e)",
	   v, max_rel_diff(lp, lp2, n));
	parm_logprob_backward(dx, g, x, tgt, n, v);
	parm_logprob_backward_ref(dx2, g, x, tgt, n, v);
	ok(max_rel_diff(dx, dx2, count) < 1e-5, "parm_logprob_backward at V = %d equals its reference (%.1e)",
	   v, max_rel_diff(dx, dx2, count));
	free(x), free(g), free(dx), free(dx2);
}

int main(void)
{
	test_vexp();
	test_logprob_wide();
	test_matmul();
	test_matmul_blocks(300, 200, 600);
	test_matmul_blocks(13, 45, 1100);
	test_embed();
	test_rmsnorm();
	test_rope();
	test_attention();
	test_swiglu();
	test_softmax_family();
	return tap_done();
}
