/* quant_internal.h - the Q8_0 / Q4_0 blocks, and the fused dot products
 * of quant_dot compiled once per SIMD path.
 *
 * quant_dot_avx512.c, quant_dot_avx2.c and quant_dot_portable.c each set
 * their target (#pragma GCC target, which also sets __AVX512F__, __FMA__
 * and the like) and include this file with QUANT_DOT_VARIANT defined to
 * the name of their entry point; quant.c calls the one parm_simd() chose.
 * Everything below that is static, so each file has its own copy built
 * for its own instructions.
 */
#ifndef PARM_QUANT_INTERNAL_H
#define PARM_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "gguf.h"
#include "quant.h"

#define QK 32                   /* elements per Q8_0 / Q4_0 block */

/* On-disk blocks, as ggml lays them out (no padding: 34 and 18 bytes). */
typedef struct {
	uint16_t d;
	int8_t qs[QK];
} block_q8_0;

typedef struct {
	uint16_t d;
	uint8_t qs[QK / 2];
} block_q4_0;

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes");

/* quant_dot for t = GGML_Q8_0 or GGML_Q4_0, on one path. */
typedef void quant_dot_fn(float *y, size_t ys, const void *row, enum ggml_type t,
			  const float *x, int nx, int64_t n);
quant_dot_fn quant_dot_portable;
#if defined(__x86_64__) || defined(__i386__)
quant_dot_fn quant_dot_avx2, quant_dot_avx512;
#endif

#endif

#ifdef QUANT_DOT_VARIANT
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* Fused dot products: a quantised row against float vectors, read in place.
 * A block is unpacked and scaled into registers once, then multiplied into
 * every vector of the group, so the weights are never written out as floats
 * and batched decode reads each row once, not once per vector or pair.
 * A block is NV registers of VL floats (zmm, ymm, or gcc's 16-byte vectors
 * elsewhere).  GROUP is the vectors per pass over a row and SPLIT the sums
 * per block and vector: enough independent adds to hide the FMA latency,
 * few enough that the sums and a block stay in registers. */

#if defined(__AVX512F__)
enum { VL = 16, GROUP = 8, SPLIT = 2 };
#elif defined(__AVX2__) && defined(__FMA__)
enum { VL = 8, GROUP = 4, SPLIT = 2 };
#else
enum { VL = 4, GROUP = 4, SPLIT = 1 };
#endif
enum { NV = QK / VL };

typedef float vf __attribute__((vector_size(VL * sizeof(float))));

/* a += w * x is one FMA where the path has it; the portable path rounds
 * the product and the sum apart, as every CPU can, so it gives the same
 * bits everywhere. */
#ifdef __FMA__
#define CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define CONTRACT
#endif
#define FUSED __attribute__((always_inline)) CONTRACT static inline

FUSED vf loadv(const float *p)
{
	vf v;
	memcpy(&v, p, sizeof v);
	return v;
}

/* A block's scale, converted inline: this runs once per 32 weights. */
FUSED float block_scale(uint16_t h)
{
#ifdef __F16C__
	return _cvtsh_ss(h);
#else
	return f16_to_f32(h);
#endif
}

/* Halving, not a loop: a serial chain of adds costs as much as a short
 * row's worth of blocks, once per row and vector. */
FUSED float hsum(vf v)
{
#if defined(__AVX512F__)
	__m512 z;
	memcpy(&z, &v, sizeof z);
	return _mm512_reduce_add_ps(z);
#elif defined(__AVX2__) && defined(__FMA__)
	__m256 a;
	memcpy(&a, &v, sizeof a);
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
#else
	return (v[0] + v[1]) + (v[2] + v[3]);
#endif
}

/* VL signed bytes as floats.  Spelled out: gcc's __builtin_convertvector
 * widens bytes to floats one element at a time. */
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
FUSED vf widen_i8(const int8_t *q)
{
	vf v;
#if defined(__AVX512F__)
	__m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
#else
	__m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
#endif
	memcpy(&v, &f, sizeof v);
	return v;
}
#endif

/* Block b as w[j] = its elements j * VL .. j * VL + VL - 1, scaled: each
 * weight is f32(d) * q rounded once, the value dequant_row_ref gives. */
typedef void unpack_fn(vf w[NV], const void *b);

FUSED void unpack_q8_0(vf w[NV], const void *p)
{
	const block_q8_0 *b = p;
	const float d = block_scale(b->d);
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#pragma GCC unroll 8
	for (int j = 0; j < NV; j++)
		w[j] = widen_i8(b->qs + j * VL) * d;
#else
	float f[QK];            /* a whole block: a loop gcc vectorises */
	for (int j = 0; j < QK; j++)
		f[j] = d * b->qs[j];
	memcpy(w, f, sizeof f);
#endif
}

/* Q4_0 nibbles are split on 32-bit lanes (x86 has no byte shift), and
 * (q - 8) * d is one fused q * d - 8d: 8d is exact, so it rounds once. */
#if defined(__AVX512F__)
FUSED void unpack_q4_0(vf w[NV], const void *p)
{
	const block_q4_0 *b = p;
	const __m512 d = _mm512_set1_ps(block_scale(b->d)), off = -8 * d;
	__m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->qs));
	__m512 f[2] = {
		_mm512_cvtepi32_ps(_mm512_and_si512(q, _mm512_set1_epi32(15))),
		_mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4)),
	};
	for (int j = 0; j < 2; j++)
		f[j] = _mm512_fmadd_ps(f[j], d, off);
	memcpy(w, f, sizeof f);
}
#elif defined(__AVX2__) && defined(__FMA__)
FUSED void unpack_q4_0(vf w[NV], const void *p)
{
	const block_q4_0 *b = p;
	const __m256 d = _mm256_set1_ps(block_scale(b->d)), off = -8 * d;
	const __m256i m = _mm256_set1_epi32(15);
	__m128i raw = _mm_loadu_si128((const __m128i *)b->qs);
	__m256i q0 = _mm256_cvtepu8_epi32(raw), q1 = _mm256_cvtepu8_epi32(_mm_srli_si128(raw, 8));
	__m256 f[4] = {
		_mm256_cvtepi32_ps(_mm256_and_si256(q0, m)), _mm256_cvtepi32_ps(_mm256_and_si256(q1, m)),
		_mm256_cvtepi32_ps(_mm256_srli_epi32(q0, 4)), _mm256_cvtepi32_ps(_mm256_srli_epi32(q1, 4)),
	};
	for (int j = 0; j < 4; j++)
		f[j] = _mm256_fmadd_ps(f[j], d, off);
	memcpy(w, f, sizeof f);
}
#else
FUSED void unpack_q4_0(vf w[NV], const void *p)
{
	const block_q4_0 *b = p;
	const float d = block_scale(b->d);
	float f[QK];
	for (int j = 0; j < QK / 2; j++) {
		f[j] = d * ((b->qs[j] & 15) - 8);
		f[j + QK / 2] = d * ((b->qs[j] >> 4) - 8);
	}
	memcpy(w, f, sizeof f);
}
#endif

/* acc[i][u][*] += block . x[i] for i < nt, over s sums. */
FUSED void dot_block(vf acc[GROUP][2][2], const char *blk, unpack_fn *unpack,
		     const float *x, int64_t n, int nt, int u, int s)
{
	vf w[NV];
	unpack(w, blk);
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NV; j++)
			acc[i][u][j % s] += w[j] * loadv(x + i * n + j * VL);
}

/* y[i * ys] = row . x[i] for i < nt (a constant once inlined), the row
 * read once for all of them; one vector alternates two blocks' sums. */
FUSED void dot_group(float *y, size_t ys, const char *row, size_t bb, unpack_fn *unpack,
		     const float *x, int64_t n, const int nt)
{
	const int steps = nt == 1 ? 2 : 1, s = nt <= 2 ? 2 : SPLIT;
	vf acc[GROUP][2][2] = { 0 };
	int64_t nb = n / QK, k = 0;
	for (; k + steps <= nb; k += steps) {
		/* 4 KB ahead, into the next rows of the tile: the hardware
		 * prefetcher alone leaves the stream short of memory speed */
		__builtin_prefetch(row + k * bb + 4096);
#pragma GCC unroll 2
		for (int u = 0; u < steps; u++)
			dot_block(acc, row + (k + u) * bb, unpack, x + (k + u) * QK, n, nt, u, s);
	}
	for (; k < nb; k++)
		dot_block(acc, row + k * bb, unpack, x + k * QK, n, nt, 0, s);
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
		y[i * ys] = hsum(acc[i][0][0] + acc[i][0][1] + acc[i][1][0] + acc[i][1][1]);
}

/* The vectors a group at a time (the row stays in L1 for the next group). */
FUSED void dot_groups(float *y, size_t ys, const void *row, size_t bb, unpack_fn *unpack,
		      const float *x, int nx, int64_t n)
{
	for (int i = 0; i < nx;) {
		int left = nx - i;
		const float *xi = x + (size_t)i * n;
		float *yi = y + (size_t)i * ys;
		if (left >= 8 && GROUP >= 8)
			dot_group(yi, ys, row, bb, unpack, xi, n, 8), i += 8;
		else if (left >= 4)
			dot_group(yi, ys, row, bb, unpack, xi, n, 4), i += 4;
		else if (left >= 2)
			dot_group(yi, ys, row, bb, unpack, xi, n, 2), i += 2;
		else
			dot_group(yi, ys, row, bb, unpack, xi, n, 1), i += 1;
	}
}

CONTRACT
void QUANT_DOT_VARIANT(float *y, size_t ys, const void *row, enum ggml_type t,
		       const float *x, int nx, int64_t n)
{
	if (t == GGML_Q8_0)
		dot_groups(y, ys, row, sizeof(block_q8_0), unpack_q8_0, x, nx, n);
	else
		dot_groups(y, ys, row, sizeof(block_q4_0), unpack_q4_0, x, nx, n);
}
#endif
