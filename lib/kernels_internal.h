/* kernels_internal.h - the hand-vectorised kernels of kernels.c (gcc's
 * 8-wide vectors), compiled once per kind of CPU arithmetic.
 *
 * kernels_fma.c (the AVX2 and AVX-512 paths: both have FMA and these
 * vectors are 8 wide on both, so they give the same bits) and
 * kernels_plain.c (the portable path) each set their target with #pragma
 * GCC target and include this file with KERNELS_VARIANT defined to the
 * name of their table; kernels.c calls through the table parm_simd()'s
 * path uses.  Everything below that is static, so each file has its own
 * copy built for its own instructions.
 */
#ifndef PARM_KERNELS_INTERNAL_H
#define PARM_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* parm_swiglu_backward's arrays (see kernels.h). */
typedef struct {
	float *dgate, *dup;
	const float *dout, *gate, *up;
} swiglu_range;

typedef struct {
	/* y[n][ys] (columns 0..rows) = x[n][in] w[rows][in]^T, two tokens at a time */
	void (*dot_rows)(float *y, int ys, const float *x, int n, const float *w, int rows, int in);
	/* parm_swiglu_backward on elements i0 .. i1 */
	void (*swiglu_bwd_range)(const swiglu_range *w, int64_t i0, int64_t i1);
	void (*vexp)(float *y, const float *x, int64_t count);
	/* the row's max, and *log_sum = log sum exp(x - max): the one
	 * log-softmax, (x - max) - log_sum (log-softmax, log-probs, attention) */
	float (*row_max_logsum)(const float *x, int v, float *log_sum);
	/* out[v] = softmax(x[v]), in place or not */
	void (*softmax_row)(float *out, const float *x, int v);
	/* dx[v] -= g softmax(x[v]) */
	void (*logprob_row_backward)(float *dx, const float *x, float g, int v);
} kernels_vec;

extern const kernels_vec parm_kernels_vec_plain;
#if defined(__x86_64__) || defined(__i386__)
extern const kernels_vec parm_kernels_vec_fma;
#endif

/* The AVX-512 path's prompt matmul (panel_avx512.c): W's rows transposed
 * into panels of PANEL_ROWS 32-bit words, panel[words][32], then FMAs (or
 * bf16 pair dots) 16 rows wide. */
enum { PANEL_ROWS = 32 };
#if defined(__x86_64__) || defined(__i386__)
/* panel[words][32] = w[rows][ws] transposed, in 32-bit words, rows <= 32,
 * missing rows 0 */
void parm_panel_pack_avx512(void *panel, const void *w, size_t ws, int rows, int words);
/* panel[words][32] = b[words][bs], columns 0..cols (<= 32), the rest 0 */
void parm_panel_copy_avx512(float *panel, const float *b, size_t bs, int cols, int words);
/* y[n][ys] (columns 0..rows) = (or += with accumulate) x[n][xs] . W, W in
 * panels [ceil(rows / 32)][words][32] over the first words of each x row
 * (with x_cols, x[words][xs]: the tokens are x's columns; floats only):
 * floats, or with bf16 set x and W in bf16, a pair of k a word
 * (vdpbf16ps).  xs and words count 32-bit words. */
typedef struct {
	float *y;
	size_t ys;
	const void *x;
	size_t xs;
	const void *panels;
	int n, rows, words, bf16, accumulate, x_cols;
} panel_args;
void parm_panel_matmul_avx512(const panel_args *a);
/* y[n][ys] (columns 0..rows) = x[n][in] W^T for a few tokens, W's rows
 * read in place, rb bytes apart: f32, f16, or bf16 with x in bf16 */
enum rows_kind { ROWS_F32, ROWS_F16, ROWS_BF16 };
void parm_rows_matmul_avx512(float *y, size_t ys, const void *x, int n, const void *w, size_t rb,
			int rows, int in, enum rows_kind kind);
#endif

#endif

#ifdef KERNELS_VARIANT
#include <math.h>
#include <string.h>

/* a += v * x is one FMA where the CPU has it; the portable path rounds the
 * product and the sum apart, as every CPU can, so it gives the same bits
 * everywhere. */
#ifdef __FMA__
#define CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define CONTRACT
#endif

/* ---- matmul: few tokens (decode), 4 rows x 2 tokens at a time ---- */

typedef float v8f __attribute__((vector_size(32)));

static inline v8f load8(const float *p)
{
	v8f v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline float hsum8(v8f v)
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* One row of w against one or two tokens of x; in a multiple of 32.  A
 * single row at a time reads W as one sequential stream, which the
 * hardware prefetcher follows at full memory speed. */
CONTRACT
static void dot_1x2(float *y, int ys, const float *x, const float *w, int in, int two)
{
	const float *x1 = two ? x + in : x;
	v8f a0 = { 0 }, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, v;
	for (int k = 0; k < in; k += 32) {
		__builtin_prefetch(w + k + 1024);
		__builtin_prefetch(w + k + 1040);
		v = load8(w + k), a0 += v * load8(x + k), b0 += v * load8(x1 + k);
		v = load8(w + k + 8), a1 += v * load8(x + k + 8), b1 += v * load8(x1 + k + 8);
		v = load8(w + k + 16), a2 += v * load8(x + k + 16), b2 += v * load8(x1 + k + 16);
		v = load8(w + k + 24), a3 += v * load8(x + k + 24), b3 += v * load8(x1 + k + 24);
	}
	y[0] = hsum8((a0 + a1) + (a2 + a3));
	if (two)
		y[ys] = hsum8((b0 + b1) + (b2 + b3));
}

static float dot_plain(const float *x, const float *w, int in)
{
	float sum = 0;
	for (int k = 0; k < in; k++)
		sum += x[k] * w[k];
	return sum;
}

/* y[n][ys] (columns 0..rows) = x[n][in] w[rows][in]^T */
static void dot_rows(float *y, int ys, const float *x, int n, const float *w, int rows, int in)
{
	for (int t = 0; t < n; t += 2) {
		int two = n - t >= 2;
		for (int r = 0; r < rows; r++) {
			float *yr = y + (size_t)t * ys + r;
			const float *xt = x + (size_t)t * in, *wr = w + (size_t)r * in;
			if (in % 32 == 0)
				dot_1x2(yr, ys, xt, wr, in, two);
			else
				for (int u = 0; u <= two; u++)
					yr[(size_t)u * ys] = dot_plain(xt + (size_t)u * in, wr, in);
		}
	}
}

/* ---- exp with 8-wide vectors: x = n ln2 + r, |r| <= ln2 / 2, e^r by
 * Cephes' expf polynomial, 2^n as two exponent-built factors so every n
 * in range stays a normal float and tiny results underflow gradually ---- */

typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f splat8(float a)
{
	return (v8f){ a, a, a, a, a, a, a, a };
}

static inline v8f select8(v8i mask, v8f a, v8f b)
{
	return (v8f)((mask & (v8i)a) | (~mask & (v8i)b));
}

CONTRACT
static inline v8f exp8(v8f x)
{
	v8f xc = select8(x > splat8(88.8f), splat8(88.8f), x);
	xc = select8(xc < splat8(-104.0f), splat8(-104.0f), xc);
	v8f t = xc * splat8(1.44269504088896341f) + splat8(0x1.8p23f);    /* round */
	v8f nf = t - splat8(0x1.8p23f);
	v8i n = (v8i)t - 0x4b400000, n1 = n >> 1, n2 = n - n1;
	v8f r = xc - nf * splat8(0.693359375f);
	r = r - nf * splat8(-2.12194440e-4f);
	v8f p = splat8(1.9875691500e-4f);
	p = p * r + splat8(1.3981999507e-3f);
	p = p * r + splat8(8.3334519073e-3f);
	p = p * r + splat8(4.1665795894e-2f);
	p = p * r + splat8(1.6666665459e-1f);
	p = p * r + splat8(5.0000001201e-1f);
	p = p * (r * r) + r + splat8(1.0f);
	v8f y = p * (v8f)((n1 + 127) << 23) * (v8f)((n2 + 127) << 23);
	return select8(x != x, x, y);                   /* NaN stays NaN */
}

/* ---- swiglu backward ---- */

/* Elements i0 .. i1 (i1 - i0 a multiple of 8, but for the last block). */
CONTRACT
static void swiglu_bwd_range(const swiglu_range *w, int64_t i0, int64_t i1)
{
	int64_t i = i0;
	for (; i + 8 <= i1; i += 8) {
		v8f g = load8(w->gate + i), u = load8(w->up + i), d = load8(w->dout + i);
		v8f sig = splat8(1.0f) / (splat8(1.0f) + exp8(-g)), a;
		if (w->dup) {
			a = load8(w->dup + i) + d * g * sig;
			memcpy(w->dup + i, &a, sizeof a);
		}
		if (w->dgate) {
			a = load8(w->dgate + i) + d * u * sig * (splat8(1.0f) + g * (splat8(1.0f) - sig));
			memcpy(w->dgate + i, &a, sizeof a);
		}
	}
	for (; i < i1; i++) {
		float g = w->gate[i], sig = 1.0f / (1.0f + exp8(splat8(-g))[0]);
		if (w->dup)
			w->dup[i] += w->dout[i] * g * sig;
		if (w->dgate)
			w->dgate[i] += w->dout[i] * w->up[i] * sig * (1.0f + g * (1.0f - sig));
	}
}

/* ---- exp, log-sum-exp, log-prob backward ---- */

/* The last count % 8 elements as a vector padded with pad. */
static inline v8f load_tail8(const float *p, int count, float pad)
{
	float buf[8];
	for (int i = 0; i < 8; i++)
		buf[i] = i < count ? p[i] : pad;
	return load8(buf);
}

static void vexp8(float *y, const float *x, int64_t count)
{
	int64_t i = 0;
	for (; i + 8 <= count; i += 8) {
		v8f e = exp8(load8(x + i));
		memcpy(y + i, &e, sizeof e);
	}
	if (i < count) {
		v8f e = exp8(load_tail8(x + i, (int)(count - i), 0));
		memcpy(y + i, &e, (size_t)(count - i) * sizeof *y);
	}
}

static float row_max8(const float *x, int v)
{
	v8f m = splat8(-INFINITY);
	int k = 0;
	for (; k + 8 <= v; k += 8) {
		v8f a = load8(x + k);
		m = select8(a > m, a, m);
	}
	float best = -INFINITY;
	for (; k < v; k++)
		best = x[k] > best ? x[k] : best;
	for (int i = 0; i < 8; i++)
		best = m[i] > best ? m[i] : best;
	return best;
}

/* log sum exp of a row, the sum in 8 float lanes. */
static float row_max_logsum(const float *x, int v, float *log_sum)
{
	float m = row_max8(x, v);
	v8f sum = splat8(0), vm = splat8(m);
	int k = 0;
	for (; k + 8 <= v; k += 8)
		sum += exp8(load8(x + k) - vm);
	if (k < v)
		sum += exp8(load_tail8(x + k, v - k, -INFINITY) - vm);
	*log_sum = logf(hsum8(sum));
	return m;
}

/* out = softmax(x), 8 at a time (attention's rows). */
static void softmax_row(float *out, const float *x, int v)
{
	v8f vm = splat8(row_max8(x, v)), sum = splat8(0), e;
	int k = 0;
	for (; k + 8 <= v; k += 8) {
		e = exp8(load8(x + k) - vm);
		memcpy(out + k, &e, sizeof e);
		sum += e;
	}
	if (k < v) {
		e = exp8(load_tail8(x + k, v - k, -INFINITY) - vm);
		memcpy(out + k, &e, (size_t)(v - k) * sizeof *out);
		sum += e;
	}
	v8f inv = splat8(1.0f / hsum8(sum));
	for (k = 0; k + 8 <= v; k += 8) {
		e = load8(out + k) * inv;
		memcpy(out + k, &e, sizeof e);
	}
	for (; k < v; k++)
		out[k] *= inv[0];
}

/* dx -= g softmax(x), 8 at a time. */
CONTRACT
static void logprob_row_backward(float *dx, const float *x, float g, int v)
{
	float log_sum, m = row_max_logsum(x, v, &log_sum);
	v8f lse = splat8(m + log_sum), vg = splat8(g);
	int k = 0;
	for (; k + 8 <= v; k += 8) {
		v8f d = load8(dx + k) - vg * exp8(load8(x + k) - lse);
		memcpy(dx + k, &d, sizeof d);
	}
	for (; k < v; k++)
		dx[k] -= g * exp8(splat8(x[k]) - lse)[0];
}

const kernels_vec KERNELS_VARIANT = {
	.dot_rows = dot_rows,
	.swiglu_bwd_range = swiglu_bwd_range,
	.vexp = vexp8,
	.row_max_logsum = row_max_logsum,
	.softmax_row = softmax_row,
	.logprob_row_backward = logprob_row_backward,
};
#endif
