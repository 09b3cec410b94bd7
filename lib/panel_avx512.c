/* panel_avx512.c - matmuls of float weights on the AVX-512 path,
 * whatever the rest of the build targets.  A prompt's: W's rows
 * transposed into panels of 32, 12 tokens against a panel at a time (24
 * accumulators of 16 floats).  A few tokens' (decoding a batch): two rows
 * of W read in place against up to 8 tokens at a time.
 *
 * Why not OpenBLAS's sgemm: where the environment pins OpenBLAS to its
 * Haswell kernels (8-wide), a CPU with full-width AVX-512 runs at half its
 * rate; and f16 or bf16 weights have no OpenBLAS gemm at all, so they
 * were dequantised into a tile for it anyway.  Here that tile is written
 * transposed (the panel), and the 16-wide FMAs read it in place: measured
 * 1.8-2x OpenBLAS's sgemm on a 512 x 768 x 2048 product (Zen 5, one
 * thread).  parm_matmul_forward_ref is the plain-loop reference (test_kernels). */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("arch=x86-64-v4")
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels_internal.h"

/* dst[16][ds] = src[16][ss] transposed: dst[c][r] = src[r][c]. */
static void transpose16(float *dst, size_t ds, const float *src, size_t ss)
{
	__m512 r[16], t[16];
	for (int i = 0; i < 16; i++)
		r[i] = _mm512_loadu_ps(src + i * ss);
	for (int i = 0; i < 16; i += 2) {       /* 32-bit pairs within lanes */
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	for (int i = 0; i < 16; i += 4) {       /* 64-bit pairs: column m of 4 rows */
		r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]),
							   _mm512_castps_pd(t[i + 2])));
		r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]),
							       _mm512_castps_pd(t[i + 2])));
		r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]),
							       _mm512_castps_pd(t[i + 3])));
		r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]),
							       _mm512_castps_pd(t[i + 3])));
	}
	/* r[4q + m], lane L: column 4L + m of rows 4q..4q+3 */
	for (int m = 0; m < 4; m++) {
		__m512 even01 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
		__m512 odd01 = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xdd);
		__m512 even23 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
		__m512 odd23 = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xdd);
		_mm512_storeu_ps(dst + m * ds, _mm512_shuffle_f32x4(even01, even23, 0x88));
		_mm512_storeu_ps(dst + (8 + m) * ds, _mm512_shuffle_f32x4(even01, even23, 0xdd));
		_mm512_storeu_ps(dst + (4 + m) * ds, _mm512_shuffle_f32x4(odd01, odd23, 0x88));
		_mm512_storeu_ps(dst + (12 + m) * ds, _mm512_shuffle_f32x4(odd01, odd23, 0xdd));
	}
}

/* panel[words][32] = w[rows][ws] transposed (the first words of each
 * row), rows <= 32, the missing rows 0: 32-bit words, floats or pairs of
 * bf16, moved as bits. */
void parm_panel_pack_avx512(void *panel, const void *w, size_t ws, int rows, int words)
{
	int k = 0;
	if (rows == 32)
		for (; k + 16 <= words; k += 16) {
			transpose16((float *)panel + (size_t)k * PANEL_ROWS, PANEL_ROWS,
				    (const float *)w + k, ws);
			transpose16((float *)panel + (size_t)k * PANEL_ROWS + 16, PANEL_ROWS,
				    (const float *)w + 16 * ws + k, ws);
		}
	for (; k < words; k++)
		for (int r = 0; r < PANEL_ROWS; r++) {
			uint32_t word = 0;
			if (r < rows)
				memcpy(&word, (const char *)w + ((size_t)r * ws + k) * 4, 4);
			memcpy((char *)panel + ((size_t)k * PANEL_ROWS + r) * 4, &word, 4);
		}
}

/* panel[words][32] = b[words][bs] (columns 0..cols, cols <= 32, the rest
 * 0): a panel from a matrix whose columns are already W's rows. */
void parm_panel_copy_avx512(float *panel, const float *b, size_t bs, int cols, int words)
{
	__mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
	__mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
	for (int k = 0; k < words; k++) {
		_mm512_storeu_ps(panel + (size_t)k * PANEL_ROWS,
				 _mm512_maskz_loadu_ps(m0, b + (size_t)k * bs));
		_mm512_storeu_ps(panel + (size_t)k * PANEL_ROWS + 16,
				 _mm512_maskz_loadu_ps(m1, b + (size_t)k * bs + 16));
	}
}

enum { PANEL_TOKENS = 12 };     /* 24 accumulators, 2 weights, 1 broadcast */

/* Accumulators a0, a1 of nt tokens into y (masked), added to what it
 * holds when acc is set. */
static inline __attribute__((always_inline)) void
panel_store(float *y, size_t ys, __m512 *a0, __m512 *a1, int nt, __mmask16 m0, __mmask16 m1,
	    int acc)
{
#pragma GCC unroll 12
	for (int i = 0; i < nt; i++) {
		float *yi = y + (size_t)i * ys;
		if (acc) {
			a0[i] = _mm512_add_ps(a0[i], _mm512_maskz_loadu_ps(m0, yi));
			a1[i] = _mm512_add_ps(a1[i], _mm512_maskz_loadu_ps(m1, yi + 16));
		}
		_mm512_mask_storeu_ps(yi, m0, a0[i]);
		_mm512_mask_storeu_ps(yi + 16, m1, a1[i]);
	}
}

/* acc += w * x: an FMA, or for bf16 pairs the bf16 dot */
static inline __attribute__((always_inline)) __m512
row_madd(__m512 acc, __m512 w, __m512 x, enum rows_kind kind)
{
	if (kind == ROWS_BF16) {
		__asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(w), "v"(x));
		return acc;
	}
	return _mm512_fmadd_ps(w, x, acc);
}

/* The word of x (a float, or a pair of bf16) at i, k broadcast. */
static inline __attribute__((always_inline)) __m512
x_word(const float *x, size_t xs, int i, int k, int x_cols)
{
	float v;
	memcpy(&v, x_cols ? x + (size_t)k * xs + i : x + (size_t)i * xs + k, sizeof v);
	return _mm512_set1_ps(v);
}

/* y[nt][ys] (columns where the masks say) (+)= x . panel over the panel's
 * words, x's tokens as rows (x[nt][xs]) or, with x_cols, as columns
 * (x[words][xs]); floats, or with ROWS_BF16 pairs of bf16 (vdpbf16ps adds
 * both products of a pair into each float lane).  nt and the rest
 * constants once inlined, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void
panel_block_x(float *y, size_t ys, const float *x, size_t xs, int words, const float *p, int nt,
	      __mmask16 m0, __mmask16 m1, int acc, int x_cols, enum rows_kind kind)
{
	__m512 a0[PANEL_TOKENS], a1[PANEL_TOKENS];
#pragma GCC unroll 12
	for (int i = 0; i < nt; i++)
		a0[i] = a1[i] = _mm512_setzero_ps();
	for (int k = 0; k < words; k++) {
		__m512 w0 = _mm512_loadu_ps(p + (size_t)k * PANEL_ROWS);
		__m512 w1 = _mm512_loadu_ps(p + (size_t)k * PANEL_ROWS + 16);
#pragma GCC unroll 12
		for (int i = 0; i < nt; i++) {
			__m512 xb = x_word(x, xs, i, k, x_cols);
			a0[i] = row_madd(a0[i], w0, xb, kind);
			a1[i] = row_madd(a1[i], w1, xb, kind);
		}
	}
	panel_store(y, ys, a0, a1, nt, m0, m1, acc);
}

static inline __attribute__((always_inline)) void
panel_block(float *y, size_t ys, const float *x, size_t xs, int words, const float *p, int nt,
	    __mmask16 m0, __mmask16 m1, int acc)
{
	panel_block_x(y, ys, x, xs, words, p, nt, m0, m1, acc, 0, ROWS_F32);
}

static inline __attribute__((always_inline)) void
panel_block_cols(float *y, size_t ys, const float *x, size_t xs, int words, const float *p,
		 int nt, __mmask16 m0, __mmask16 m1, int acc)
{
	panel_block_x(y, ys, x, xs, words, p, nt, m0, m1, acc, 1, ROWS_F32);
}

static inline __attribute__((always_inline)) void
panel_block_bf16(float *y, size_t ys, const float *x, size_t xs, int words, const float *p,
		 int nt, __mmask16 m0, __mmask16 m1, int acc)
{
	panel_block_x(y, ys, x, xs, words, p, nt, m0, m1, acc, 0, ROWS_BF16);
}

#define PANEL_CASE(block, nt) \
	case nt: block(y, ys, x, xs, words, p, nt, m0, m1, acc); break;
#define PANEL_CASES(block) \
	PANEL_CASE(block, 1) PANEL_CASE(block, 2) PANEL_CASE(block, 3) PANEL_CASE(block, 4) \
	PANEL_CASE(block, 5) PANEL_CASE(block, 6) PANEL_CASE(block, 7) PANEL_CASE(block, 8) \
	PANEL_CASE(block, 9) PANEL_CASE(block, 10) PANEL_CASE(block, 11) PANEL_CASE(block, 12)

static void panel_tokens(float *y, size_t ys, const float *x, size_t xs, int nt, int words,
			 const float *p, __mmask16 m0, __mmask16 m1, int acc, int x_cols)
{
	if (x_cols)
		switch (nt) {
		PANEL_CASES(panel_block_cols)
		}
	else
		switch (nt) {
		PANEL_CASES(panel_block)
		}
}

static void panel_tokens_bf16(float *y, size_t ys, const float *x, size_t xs, int nt, int words,
			      const float *p, __mmask16 m0, __mmask16 m1, int acc)
{
	switch (nt) {
	PANEL_CASES(panel_block_bf16)
	}
}

/* See kernels_internal.h.  Tokens outside, panels inside: 12 tokens' x
 * stay in L1 while the panels stream from L2. */
void parm_panel_matmul_avx512(const panel_args *a)
{
	for (int t = 0; t < a->n; t += PANEL_TOKENS) {
		int nt = a->n - t < PANEL_TOKENS ? a->n - t : PANEL_TOKENS;
		const uint32_t *xt = (const uint32_t *)a->x + (a->x_cols ? (size_t)t : (size_t)t * a->xs);
		for (int r = 0; r < a->rows; r += PANEL_ROWS) {
			int nr = a->rows - r < PANEL_ROWS ? a->rows - r : PANEL_ROWS;
			uint32_t mask = nr == 32 ? 0xffffffffu : (1u << nr) - 1;
			const uint32_t *p = (const uint32_t *)a->panels + (size_t)r * a->words;
			float *y = a->y + (size_t)t * a->ys + r;
			if (a->bf16)
				panel_tokens_bf16(y, a->ys, (const float *)xt, a->xs, nt, a->words,
						  (const float *)p, (__mmask16)mask, (__mmask16)(mask >> 16),
						  a->accumulate);
			else
				panel_tokens(y, a->ys, (const float *)xt, a->xs, nt, a->words,
					     (const float *)p, (__mmask16)mask, (__mmask16)(mask >> 16),
					     a->accumulate, a->x_cols);
		}
	}
}

/* ---- a few tokens: rows in place ---- */

/* The first m (a mask) of the 16 words at w + k as floats: f32 as is, f16
 * converted; bf16 pairs stay pairs for vdpbf16ps. */
static inline __attribute__((always_inline)) __m512
row_words(const void *w, int k, __mmask16 m, enum rows_kind kind)
{
	if (kind == ROWS_F16)
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k));
	return _mm512_maskz_loadu_ps(m, (const float *)w + k);
}

/* Accumulators a[u][i] (+)= the 16 words at k, for nt tokens and one or two
 * rows; m masks the words past the row's end. */
#define ROWS_STEP(a0, a1, k, m) do {                                                 \
		__m512 v0 = row_words(w0, k, m, kind), v1 = two ? row_words(w1, k, m, kind) : v0; \
		_Pragma("GCC unroll 8")                                                      \
		for (int i = 0; i < nt; i++) {                                               \
			__m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)i * words + (k));   \
			a0[i] = row_madd(a0[i], v0, xv, kind);                               \
			if (two)                                                             \
				a1[i] = row_madd(a1[i], v1, xv, kind);                       \
		}                                                                            \
	} while (0)

/* y[nt][ys] (columns 0, 1 or just 0) = x[nt][words] . rows w0, w1; nt and
 * two constants once inlined.  x: floats, or bf16 pairs with bf16 rows.
 * With few tokens, U accumulators a token and row (k unrolled), so that
 * at least 8 independent sums hide the FMA's latency. */
static inline __attribute__((always_inline)) void
rows_block(float *y, size_t ys, const float *x, int words, const void *w0, const void *w1,
	   size_t ahead, int nt, int two, enum rows_kind kind)
{
	const int wb = kind == ROWS_F16 ? 2 : 4;       /* bytes of a word */
	enum { U_MAX = 4 };
	const int U = nt * (1 + two) >= 8 ? 1 : nt * (1 + two) >= 4 ? 2 : 4;
	__m512 a0[U_MAX][8], a1[U_MAX][8];
	int k = 0;
#pragma GCC unroll 4
	for (int u = 0; u < U; u++)
#pragma GCC unroll 8
		for (int i = 0; i < nt; i++)
			a0[u][i] = a1[u][i] = _mm512_setzero_ps();
	for (; k + 16 * U <= words; k += 16 * U)
#pragma GCC unroll 4
		for (int u = 0; u < U; u++) {
			/* the next two rows, as far along: W streams from memory */
			_mm_prefetch((const char *)w0 + ahead + (size_t)(k + 16 * u) * wb, _MM_HINT_T0);
			_mm_prefetch((const char *)w1 + ahead + (size_t)(k + 16 * u) * wb, _MM_HINT_T0);
			ROWS_STEP(a0[u], a1[u], k + 16 * u, (__mmask16)0xffff);
		}
	for (; k < words; k += 16)
		ROWS_STEP(a0[0], a1[0], k,
			  words - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (words - k)) - 1));
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++) {
#pragma GCC unroll 4
		for (int u = 1; u < U; u++) {
			a0[0][i] = _mm512_add_ps(a0[0][i], a0[u][i]);
			a1[0][i] = _mm512_add_ps(a1[0][i], a1[u][i]);
		}
		y[(size_t)i * ys] = _mm512_reduce_add_ps(a0[0][i]);
		if (two)
			y[(size_t)i * ys + 1] = _mm512_reduce_add_ps(a1[0][i]);
	}
}

#define ROWS_CASE(nt, kind) \
	case nt: rows_block(y, ys, x, words, w0, w1, ahead, nt, two, kind); break;
#define ROWS_CASES(kind) \
	ROWS_CASE(1, kind) ROWS_CASE(2, kind) ROWS_CASE(3, kind) ROWS_CASE(4, kind) \
	ROWS_CASE(5, kind) ROWS_CASE(6, kind) ROWS_CASE(7, kind) ROWS_CASE(8, kind)

static void rows_tokens(float *y, size_t ys, const float *x, int nt, int words, const void *w0,
			const void *w1, size_t ahead, int two, enum rows_kind kind)
{
	if (kind == ROWS_F32)
		switch (nt) { ROWS_CASES(ROWS_F32) }
	else if (kind == ROWS_F16)
		switch (nt) { ROWS_CASES(ROWS_F16) }
	else
		switch (nt) { ROWS_CASES(ROWS_BF16) }
}

/* y[n][ys] (columns 0..rows) = x[n][in] W^T, W's rows rb bytes apart, read
 * in place: f32, f16, or bf16 with x in bf16 too (in even). */
void parm_rows_matmul_avx512(float *y, size_t ys, const void *x, int n, const void *w, size_t rb,
			int rows, int in, enum rows_kind kind)
{
	int words = kind == ROWS_BF16 ? in / 2 : in;   /* f16: halves */
	for (int t = 0; t < n; t += 8) {
		int nt = n - t < 8 ? n - t : 8;
		const float *xt = (const float *)x + (size_t)t * words;
		for (int r = 0; r < rows; r += 2) {
			const char *w0 = (const char *)w + (size_t)r * rb;
			rows_tokens(y + (size_t)t * ys + r, ys, xt, nt, words, w0, w0 + rb, 2 * rb,
				    rows - r >= 2, kind);
		}
	}
}
#endif
