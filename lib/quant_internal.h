/* quant_internal.h - the block layouts of every type quant.c computes, a
 * scalar unpacker per type, and the fused dot products of parm_quant_dot
 * compiled once per SIMD path.
 *
 * parm_quant_dot_avx512.c, parm_quant_dot_avx2.c and parm_quant_dot_portable.c each set
 * their target (#pragma GCC target, which also sets __AVX512F__, __FMA__
 * and the like) and include this file with QUANT_DOT_VARIANT defined to
 * the name of their entry point; quant.c calls the one parm_simd() chose.
 * Everything below is static, so each file has its own copy built for its
 * own instructions.
 */
#ifndef PARM_QUANT_INTERNAL_H
#define PARM_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <parm/gguf.h>
#include "quant_dot.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

#define QK 32                   /* elements per block of the 32-wide types */
#define QK_K 256                /* elements per super-block of the K and IQ4_XS types */

/* On-disk blocks, as ggml-common.h lays them out (no padding).  A half is
 * a uint16_t f16; the K types keep 16 or 8 sub-block scales (6 bits packed
 * into 12 bytes for Q3_K, Q4_K and Q5_K). */
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[QK / 2]; } block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4], qs[QK / 2]; } block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4], qs[QK / 2]; } block_q5_1;
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_iq4_nl;
typedef struct { uint8_t scales[QK_K / 16], qs[QK_K / 4]; uint16_t d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[QK_K / 8], qs[QK_K / 4], scales[12]; uint16_t d; } block_q3_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12], qs[QK_K / 2]; } block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12], qh[QK_K / 8], qs[QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[QK_K / 2], qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;
typedef struct { uint16_t d, scales_h; uint8_t scales_l[QK_K / 64], qs[QK_K / 2]; } block_iq4_xs;

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 is 20 bytes");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 is 22 bytes");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 is 24 bytes");
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K is 84 bytes");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K is 110 bytes");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K is 144 bytes");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K is 176 bytes");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K is 210 bytes");
_Static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs is 136 bytes");

/* IQ4_NL and IQ4_XS: a 4-bit index into these levels (ggml's kvalues_iq4nl). */
static const int8_t iq4nl_levels[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* An f16 scale: F16C where the file's target has it, else the bit-exact
 * conversion; both give the same float. */
static inline float half_to_float(uint16_t h)
{
#if defined(__F16C__)
	return _cvtsh_ss(h);
#else
	return parm_f16_to_f32(h);
#endif
}

/* Q4_K and Q5_K: sub-block j's 6-bit scale and min from the 12 bytes. */
static inline void k4_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
		*m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
	}
}

/* Q3_K: sub-block j's (of 16) signed scale: 4 low bits from bytes 0-7,
 * 2 high bits from bytes 8-11, minus 32. */
static inline int k3_scale(const uint8_t *q, int j)
{
	int lo = j < 8 ? q[j] & 15 : q[j - 8] >> 4;
	int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
	return (lo | hi << 4) - 32;
}

/* The scalar unpackers: f[0..31] = elements 32 c .. 32 c + 31 of a row,
 * each weight computed in the order ggml's dequantize_row_* computes it,
 * so in quant.c (no contraction) they give its bits.  parm_dequant_row runs
 * them; the fused dots use them for types without a vector unpacker. */
typedef void chunk_fn(float *restrict f, const void *restrict row, int64_t c);

static inline void chunk_q4_1(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q4_1 *b = (const block_q4_1 *)row + c;
	const float d = half_to_float(b->d), m = half_to_float(b->m);
	for (int j = 0; j < QK / 2; j++) {
		f[j] = (b->qs[j] & 15) * d + m;
		f[j + QK / 2] = (b->qs[j] >> 4) * d + m;
	}
}

static inline void chunk_q5_0(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q5_0 *b = (const block_q5_0 *)row + c;
	const float d = half_to_float(b->d);
	uint32_t qh;
	memcpy(&qh, b->qh, 4);
	for (int j = 0; j < QK / 2; j++) {
		f[j] = ((int)((b->qs[j] & 15) | ((qh >> j) & 1) << 4) - 16) * d;
		f[j + QK / 2] = ((int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16) * d;
	}
}

static inline void chunk_q5_1(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q5_1 *b = (const block_q5_1 *)row + c;
	const float d = half_to_float(b->d), m = half_to_float(b->m);
	uint32_t qh;
	memcpy(&qh, b->qh, 4);
	for (int j = 0; j < QK / 2; j++) {
		f[j] = (int)((b->qs[j] & 15) | ((qh >> j) & 1) << 4) * d + m;
		f[j + QK / 2] = (int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) * d + m;
	}
}

static inline void chunk_iq4_nl(float *restrict f, const void *restrict row, int64_t c)
{
	const block_iq4_nl *b = (const block_iq4_nl *)row + c;
	const float d = half_to_float(b->d);
	for (int j = 0; j < QK / 2; j++) {
		f[j] = d * iq4nl_levels[b->qs[j] & 15];
		f[j + QK / 2] = d * iq4nl_levels[b->qs[j] >> 4];
	}
}

/* Q2_K: 32 elements are 2 bits at one shift of 32 bytes, in two halves
 * of 16 with a 4-bit scale and a 4-bit min each. */
static inline void chunk_q2_K(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q2_K *b = (const block_q2_K *)row + c / 8;
	const int s = c % 8, shift = 2 * (s % 4);
	const uint8_t *q = b->qs + 32 * (s / 4);
	const float d = half_to_float(b->d), dmin = half_to_float(b->dmin);
	for (int h = 0; h < 2; h++) {
		const int sc = b->scales[2 * s + h];
		const float dl = d * (sc & 15), ml = dmin * (sc >> 4);
		for (int l = 0; l < 16; l++)
			f[16 * h + l] = dl * ((q[16 * h + l] >> shift) & 3) - ml;
	}
}

/* Q3_K: Q2_K's 2 bits plus a high bit from hmask (clear means minus 4). */
static inline void chunk_q3_K(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q3_K *b = (const block_q3_K *)row + c / 8;
	const int s = c % 8, shift = 2 * (s % 4);
	const uint8_t *q = b->qs + 32 * (s / 4), bit = 1 << s;
	const float d = half_to_float(b->d);
	for (int h = 0; h < 2; h++) {
		const float dl = d * k3_scale(b->scales, 2 * s + h);
		for (int l = 16 * h; l < 16 * h + 16; l++)
			f[l] = dl * (((q[l] >> shift) & 3) - (b->hmask[l] & bit ? 0 : 4));
	}
}

static inline void chunk_q4_K(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q4_K *b = (const block_q4_K *)row + c / 8;
	const int s = c % 8, shift = 4 * (s % 2);
	const uint8_t *q = b->qs + 32 * (s / 2);
	int sc, m;
	k4_scale_min(b->scales, s, &sc, &m);
	const float dl = half_to_float(b->d) * sc, ml = half_to_float(b->dmin) * m;
	for (int l = 0; l < 32; l++)
		f[l] = dl * ((q[l] >> shift) & 15) - ml;
}

static inline void chunk_q5_K(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q5_K *b = (const block_q5_K *)row + c / 8;
	const int s = c % 8, shift = 4 * (s % 2);
	const uint8_t *q = b->qs + 32 * (s / 2);
	int sc, m;
	k4_scale_min(b->scales, s, &sc, &m);
	const float dl = half_to_float(b->d) * sc, ml = half_to_float(b->dmin) * m;
	for (int l = 0; l < 32; l++)
		f[l] = dl * (((q[l] >> shift) & 15) + ((b->qh[l] >> s) & 1) * 16) - ml;
}

/* Q6_K: 4 low bits from ql, 2 high from qh, minus 32; an int8 scale per 16. */
static inline void chunk_q6_K(float *restrict f, const void *restrict row, int64_t c)
{
	const block_q6_K *b = (const block_q6_K *)row + c / 8;
	const int s = c % 8, half = s / 4, j = s % 4;
	const uint8_t *ql = b->ql + 64 * half + 32 * (j % 2), *qh = b->qh + 32 * half;
	const int lshift = 4 * (j / 2), hshift = 2 * j;
	const float d = half_to_float(b->d);
	for (int h = 0; h < 2; h++) {
		const float dl = d * b->scales[8 * half + 2 * j + h];
		for (int l = 16 * h; l < 16 * h + 16; l++)
			f[l] = dl * ((int)(((ql[l] >> lshift) & 15) | ((qh[l] >> hshift) & 3) << 4) - 32);
	}
}

static inline void chunk_iq4_xs(float *restrict f, const void *restrict row, int64_t c)
{
	const block_iq4_xs *b = (const block_iq4_xs *)row + c / 8;
	const int s = c % 8;
	const int ls = ((b->scales_l[s / 2] >> 4 * (s % 2)) & 15) | ((b->scales_h >> 2 * s) & 3) << 4;
	const float dl = half_to_float(b->d) * (ls - 32);
	const uint8_t *q = b->qs + 16 * s;
	for (int j = 0; j < 16; j++) {
		f[j] = dl * iq4nl_levels[q[j] & 15];
		f[j + 16] = dl * iq4nl_levels[q[j] >> 4];
	}
}

/* F16 and BF16 rows, 32 elements at a time, for the fused dots. */
typedef struct { uint16_t h[QK]; } block_f16;
typedef struct { uint16_t h[QK]; } block_bf16;

static inline void chunk_f16(float *restrict f, const void *restrict row, int64_t c)
{
	const uint16_t *h = (const uint16_t *)row + c * QK;
	for (int j = 0; j < QK; j++)
		f[j] = half_to_float(h[j]);
}

static inline void chunk_bf16(float *restrict f, const void *restrict row, int64_t c)
{
	const uint16_t *h = (const uint16_t *)row + c * QK;
	for (int j = 0; j < QK; j++) {
		uint32_t bits = (uint32_t)h[j] << 16;
		memcpy(&f[j], &bits, 4);
	}
}

/* parm_quant_dot for every type but f32 (f16 and bf16 rows of a multiple of
 * 32), on one path. */
typedef void quant_dot_fn(float *y, size_t ys, const void *row, enum parm_ggml_type t,
			  const float *x, int nx, int64_t n);
quant_dot_fn parm_quant_dot_portable;
#if defined(__x86_64__) || defined(__i386__)
quant_dot_fn parm_quant_dot_avx2, parm_quant_dot_avx512;
#endif
/* parm_quant_dot_x8_rows on one vector path (quant_x8_internal.h). */
typedef void quant_dot_x8_fn(float *y, size_t ys, const void *w, size_t rb, int rows,
			     enum parm_ggml_type t, const quant_x8 *x, int nx, int64_t n);
#if defined(__x86_64__) || defined(__i386__)
quant_dot_x8_fn parm_quant_dot_x8_avx2, parm_quant_dot_x8_avx512;
/* parm_quant_dot_x8_packed on AVX-512, with the VNNI instruction or without. */
typedef void quant_dot_x8_packed_fn(float *y, size_t ys, const void *packed, enum parm_ggml_type t,
				    int rows, const quant_x8_32 *x, int nx, int64_t n);
quant_dot_x8_packed_fn parm_quant_dot_x8_packed_avx512, parm_quant_dot_x8_packed_vnni;
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

/* Chunk c of a row (its 32 elements from 32 c) as w[j] = elements j * VL
 * .. j * VL + VL - 1.  Q8_0 and Q4_0 have their own, each weight f32(d) * q
 * rounded once, the value parm_dequant_row_ref gives; the other types go
 * through their scalar unpacker (the weights may round differently where
 * the path contracts a multiply-add). */
/* A super-block's scales, decoded once for its 8 chunks (vector paths):
 * the multiplier and the offset of each 16 of its elements. */
typedef struct {
	float d[16], m[16];
} kscales;

typedef void unpack_fn(vf w[NV], const char *row, int64_t c, const kscales *ks);
typedef void prep_fn(kscales *ks, const char *row, int64_t sb);

FUSED void unpack_q8_0_block(vf w[NV], const void *p)
{
	const block_q8_0 *b = p;
	const float d = half_to_float(b->d);
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
FUSED void unpack_q4_0_block(vf w[NV], const void *p)
{
	const block_q4_0 *b = p;
	const __m512 d = _mm512_set1_ps(half_to_float(b->d)), off = -8 * d;
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
FUSED void unpack_q4_0_block(vf w[NV], const void *p)
{
	const block_q4_0 *b = p;
	const __m256 d = _mm256_set1_ps(half_to_float(b->d)), off = -8 * d;
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
FUSED void unpack_q4_0_block(vf w[NV], const void *p)
{
	const block_q4_0 *b = p;
	const float d = half_to_float(b->d);
	float f[QK];
	for (int j = 0; j < QK / 2; j++) {
		f[j] = d * ((b->qs[j] & 15) - 8);
		f[j + QK / 2] = d * ((b->qs[j] >> 4) - 8);
	}
	memcpy(w, f, sizeof f);
}
#endif

FUSED void unpack_q8_0(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	unpack_q8_0_block(w, row + c * sizeof(block_q8_0));
}

FUSED void unpack_q4_0(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	unpack_q4_0_block(w, row + c * sizeof(block_q4_0));
}

#define UNPACK_BY_CHUNK(type)                                                  \
	FUSED void unpack_##type(vf w[NV], const char *row, int64_t c,         \
				 const kscales *ks)                            \
	{                                                                      \
		float f[QK];                                                   \
		chunk_##type(f, row, c);                                       \
		memcpy(w, f, sizeof f);                                        \
	}

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
/* The vector unpackers: bytes widened to 32-bit lanes, bits picked with
 * shifts and masks there, converted once, scaled with one multiply-add
 * (so a weight may differ from the scalar unpacker's in the last bit). */
typedef int32_t vi __attribute__((vector_size(VL * sizeof(int32_t))));

/* VL unsigned bytes as 32-bit lanes. */
FUSED vi widen_u8(const uint8_t *q)
{
	vi v;
#if defined(__AVX512F__)
	__m512i z = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)q));
#else
	__m256i z = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q));
#endif
	memcpy(&v, &z, sizeof v);
	return v;
}

FUSED vf to_float(vi v)
{
	return __builtin_convertvector(v, vf);
}

/* Lane l of vector j within a chunk holds element j * VL + l. */
FUSED vi lane_index(int j)
{
	vi v;
	for (int l = 0; l < VL; l++)
		v[l] = j * VL + l;
	return v;
}

/* The 32 4-bit values of a 32-block: low nibbles of 16 bytes, then high. */
FUSED vi nibbles32(const uint8_t *qs, int j)
{
	return (widen_u8(qs + j * VL % 16) >> (j * VL >= 16 ? 4 : 0)) & 15;
}

/* Q5_0 / Q5_1: element e's fifth bit is bit e of the 32-bit qh. */
FUSED vi fifth_bits(const uint8_t *qh4, int j)
{
	uint32_t qh;
	memcpy(&qh, qh4, 4);
	vi all = { 0 };
	return (((all + (int32_t)qh) >> lane_index(j)) & 1) << 4;
}

FUSED void unpack_q4_1(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q4_1 *b = (const block_q4_1 *)row + c;
	const float d = half_to_float(b->d), m = half_to_float(b->m);
	for (int j = 0; j < NV; j++)
		w[j] = to_float(nibbles32(b->qs, j)) * d + m;
}

FUSED void unpack_q5_0(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q5_0 *b = (const block_q5_0 *)row + c;
	const float d = half_to_float(b->d);
	for (int j = 0; j < NV; j++)
		w[j] = to_float((nibbles32(b->qs, j) | fifth_bits(b->qh, j)) - 16) * d;
}

FUSED void unpack_q5_1(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q5_1 *b = (const block_q5_1 *)row + c;
	const float d = half_to_float(b->d), m = half_to_float(b->m);
	for (int j = 0; j < NV; j++)
		w[j] = to_float(nibbles32(b->qs, j) | fifth_bits(b->qh, j)) * d + m;
}

/* The 16 IQ4 levels, looked up by 4-bit index: one permute of a zmm, or
 * two of a ymm and a blend on the index's top bit. */
FUSED vf iq4_levels(vi idx)
{
	static const float lv[16] = {
		-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
	};
	__typeof__(idx) i = idx;
	vf out;
#if defined(__AVX512F__)
	__m512i x;
	memcpy(&x, &i, sizeof x);
	__m512 r = _mm512_permutexvar_ps(x, _mm512_loadu_ps(lv));
#else
	__m256i x;
	memcpy(&x, &i, sizeof x);
	__m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(lv), x);
	__m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(lv + 8), x);
	__m256 r = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(x, 28)));
#endif
	memcpy(&out, &r, sizeof out);
	return out;
}

FUSED void unpack_iq4_nl(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_iq4_nl *b = (const block_iq4_nl *)row + c;
	const float d = half_to_float(b->d);
	for (int j = 0; j < NV; j++)
		w[j] = iq4_levels(nibbles32(b->qs, j)) * d;
}

/* The K types: prep decodes a super-block's scales once; each chunk then
 * only widens its bits.  Scale index 2 s + h: chunk s, its half h. */
FUSED void prep_iq4_xs(kscales *ks, const char *row, int64_t sb)
{
	const block_iq4_xs *b = (const block_iq4_xs *)row + sb;
	const float d = half_to_float(b->d);
#pragma GCC unroll 8
	for (int s = 0; s < 8; s++) {
		int ls = ((b->scales_l[s / 2] >> 4 * (s % 2)) & 15) | ((b->scales_h >> 2 * s) & 3) << 4;
		ks->d[2 * s] = ks->d[2 * s + 1] = d * (ls - 32);
	}
}

FUSED void unpack_iq4_xs(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_iq4_xs *b = (const block_iq4_xs *)row + c / 8;
	const int s = c % 8;
	for (int j = 0; j < NV; j++)
		w[j] = iq4_levels(nibbles32(b->qs + 16 * s, j)) * ks->d[2 * s];
}

/* Q2_K, Q3_K and Q6_K: each 16 of the 32 has its own scale. */
FUSED int half_of(int j)
{
	return j * VL / 16;
}

FUSED void prep_q2_K(kscales *ks, const char *row, int64_t sb)
{
	const block_q2_K *b = (const block_q2_K *)row + sb;
	const float d = half_to_float(b->d), dmin = half_to_float(b->dmin);
	for (int i = 0; i < 16; i++) {
		ks->d[i] = d * (b->scales[i] & 15);
		ks->m[i] = dmin * (b->scales[i] >> 4);
	}
}

FUSED void unpack_q2_K(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q2_K *b = (const block_q2_K *)row + c / 8;
	const int s = c % 8, shift = 2 * (s % 4);
	const uint8_t *q = b->qs + 32 * (s / 4);
	for (int j = 0; j < NV; j++) {
		const int i = 2 * s + half_of(j);
		w[j] = to_float((widen_u8(q + j * VL) >> shift) & 3) * ks->d[i] - ks->m[i];
	}
}

FUSED void prep_q3_K(kscales *ks, const char *row, int64_t sb)
{
	const block_q3_K *b = (const block_q3_K *)row + sb;
	const float d = half_to_float(b->d);
	for (int i = 0; i < 16; i++)
		ks->d[i] = d * k3_scale(b->scales, i);
}

FUSED void unpack_q3_K(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q3_K *b = (const block_q3_K *)row + c / 8;
	const int s = c % 8, shift = 2 * (s % 4);
	const uint8_t *q = b->qs + 32 * (s / 4);
	for (int j = 0; j < NV; j++) {
		vi lo = (widen_u8(q + j * VL) >> shift) & 3;
		vi high = (widen_u8(b->hmask + j * VL) >> s) & 1;
		w[j] = to_float(lo - 4 + 4 * high) * ks->d[2 * s + half_of(j)];
	}
}

/* Q4_K and Q5_K: one scale and min per 32, kept in both halves' slots. */
FUSED void prep_k4(kscales *ks, uint16_t dh, uint16_t dminh, const uint8_t *scales)
{
	const float d = half_to_float(dh), dmin = half_to_float(dminh);
#pragma GCC unroll 8
	for (int s = 0; s < 8; s++) {
		int sc, m;
		k4_scale_min(scales, s, &sc, &m);
		ks->d[2 * s] = ks->d[2 * s + 1] = d * sc;
		ks->m[2 * s] = ks->m[2 * s + 1] = dmin * m;
	}
}

FUSED void prep_q4_K(kscales *ks, const char *row, int64_t sb)
{
	const block_q4_K *b = (const block_q4_K *)row + sb;
	prep_k4(ks, b->d, b->dmin, b->scales);
}

FUSED void unpack_q4_K(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q4_K *b = (const block_q4_K *)row + c / 8;
	const int s = c % 8, shift = 4 * (s % 2);
	const uint8_t *q = b->qs + 32 * (s / 2);
	for (int j = 0; j < NV; j++)
		w[j] = to_float((widen_u8(q + j * VL) >> shift) & 15) * ks->d[2 * s] - ks->m[2 * s];
}

FUSED void prep_q5_K(kscales *ks, const char *row, int64_t sb)
{
	const block_q5_K *b = (const block_q5_K *)row + sb;
	prep_k4(ks, b->d, b->dmin, b->scales);
}

FUSED void unpack_q5_K(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q5_K *b = (const block_q5_K *)row + c / 8;
	const int s = c % 8, shift = 4 * (s % 2);
	const uint8_t *q = b->qs + 32 * (s / 2);
	for (int j = 0; j < NV; j++) {
		vi v = ((widen_u8(q + j * VL) >> shift) & 15) | ((widen_u8(b->qh + j * VL) >> s) & 1) << 4;
		w[j] = to_float(v) * ks->d[2 * s] - ks->m[2 * s];
	}
}

/* Q6_K's int8 scale i belongs to 16 elements: the same index 2 s + h. */
FUSED void prep_q6_K(kscales *ks, const char *row, int64_t sb)
{
	const block_q6_K *b = (const block_q6_K *)row + sb;
	const float d = half_to_float(b->d);
	for (int i = 0; i < 16; i++)
		ks->d[i] = d * b->scales[i];
}

FUSED void unpack_q6_K(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const block_q6_K *b = (const block_q6_K *)row + c / 8;
	const int s = c % 8, half = s / 4, g = s % 4;
	const uint8_t *ql = b->ql + 64 * half + 32 * (g % 2), *qh = b->qh + 32 * half;
	const int lshift = 4 * (g / 2), hshift = 2 * g;
	for (int j = 0; j < NV; j++) {
		vi v = ((widen_u8(ql + j * VL) >> lshift) & 15) | ((widen_u8(qh + j * VL) >> hshift) & 3) << 4;
		w[j] = to_float(v - 32) * ks->d[2 * s + half_of(j)];
	}
}
/* F16: F16C converts 16 (8) at once; BF16 is the top half of an f32. */
FUSED void unpack_f16(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const uint16_t *h = (const uint16_t *)row + c * QK;
	for (int j = 0; j < NV; j++) {
#if defined(__AVX512F__)
		__m512 f = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + j * VL)));
#else
		__m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + j * VL)));
#endif
		memcpy(&w[j], &f, sizeof f);
	}
}

FUSED void unpack_bf16(vf w[NV], const char *row, int64_t c, const kscales *ks)
{
	const uint16_t *h = (const uint16_t *)row + c * QK;
	for (int j = 0; j < NV; j++) {
#if defined(__AVX512F__)
		__m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(
			_mm256_loadu_si256((const __m256i *)(h + j * VL))), 16);
#else
		__m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(
			_mm_loadu_si128((const __m128i *)(h + j * VL))), 16);
#endif
		memcpy(&w[j], &v, sizeof v);
	}
}
#define PREP(type) prep_##type
#else
#define PREP(type) NULL         /* the scalar unpackers decode their own scales */
UNPACK_BY_CHUNK(q4_1)
UNPACK_BY_CHUNK(q5_0)
UNPACK_BY_CHUNK(q5_1)
UNPACK_BY_CHUNK(iq4_nl)
UNPACK_BY_CHUNK(q2_K)
UNPACK_BY_CHUNK(q3_K)
UNPACK_BY_CHUNK(q4_K)
UNPACK_BY_CHUNK(q5_K)
UNPACK_BY_CHUNK(q6_K)
UNPACK_BY_CHUNK(iq4_xs)
UNPACK_BY_CHUNK(f16)
UNPACK_BY_CHUNK(bf16)
#endif

/* acc[i][u][*] += chunk c . x[i] for i < nt, over s sums. */
FUSED void dot_block(vf acc[GROUP][2][2], const char *row, int64_t c, unpack_fn *unpack,
		     const kscales *ks, const float *x, int64_t n, int nt, int u, int s)
{
	vf w[NV];
	unpack(w, row, c, ks);
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
#pragma GCC unroll 8
		for (int j = 0; j < NV; j++)
			acc[i][u][j % s] += w[j] * loadv(x + i * n + j * VL);
}

/* y[i * ys] = row . x[i] for i < nt (a constant once inlined), the row
 * read once for all of them; one vector alternates two chunks' sums.  A
 * block of bb bytes holds cpb chunks (1, or 8 in a super-block). */
FUSED void dot_group(float *y, size_t ys, const char *row, size_t bb, int cpb, prep_fn *prep,
		     unpack_fn *unpack, const float *x, int64_t n, const int nt)
{
	const int steps = nt == 1 ? 2 : 1, s = nt <= 2 ? 2 : SPLIT;
	vf acc[GROUP][2][2] = { 0 };
	kscales ks;
	int64_t nb = n / QK, k = 0;
	if (prep) {     /* super-blocks: 8 chunks, unrolled, so each knows its place */
		for (int64_t b = 0; b < nb / 8; b++) {
			__builtin_prefetch(row + b * bb + 4096);
			prep(&ks, row, b);
#pragma GCC unroll 8
			for (int u = 0; u < 8; u++)
				dot_block(acc, row, 8 * b + u, unpack, &ks, x + (8 * b + u) * QK, n, nt,
					  nt == 1 ? u % 2 : 0, s);
		}
		k = nb;
	}
	for (; k + steps <= nb; k += steps) {
		/* 4 KB ahead, into the next rows of the tile: the hardware
		 * prefetcher alone leaves the stream short of memory speed */
		__builtin_prefetch(row + k / cpb * bb + 4096);
#pragma GCC unroll 2
		for (int u = 0; u < steps; u++)
			dot_block(acc, row, k + u, unpack, &ks, x + (k + u) * QK, n, nt, u, s);
	}
	for (; k < nb; k++)     /* only 32-blocks: a super-block row has 8 per block */
		dot_block(acc, row, k, unpack, &ks, x + k * QK, n, nt, 0, s);
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
		y[i * ys] = hsum(acc[i][0][0] + acc[i][0][1] + acc[i][1][0] + acc[i][1][1]);
}

/* The vectors a group at a time (the row stays in L1 for the next group). */
FUSED void dot_groups(float *y, size_t ys, const void *row, size_t bb, int cpb, prep_fn *prep,
		      unpack_fn *unpack, const float *x, int nx, int64_t n)
{
	for (int i = 0; i < nx;) {
		int left = nx - i;
		const float *xi = x + (size_t)i * n;
		float *yi = y + (size_t)i * ys;
		if (left >= 8 && GROUP >= 8)
			dot_group(yi, ys, row, bb, cpb, prep, unpack, xi, n, 8), i += 8;
		else if (left >= 4)
			dot_group(yi, ys, row, bb, cpb, prep, unpack, xi, n, 4), i += 4;
		else if (left >= 2)
			dot_group(yi, ys, row, bb, cpb, prep, unpack, xi, n, 2), i += 2;
		else
			dot_group(yi, ys, row, bb, cpb, prep, unpack, xi, n, 1), i += 1;
	}
}

#define DOT_TYPE(T, type, cpb, prep)                                           \
	case PARM_GGML_##T:                                                          \
		dot_groups(y, ys, row, sizeof(block_##type), cpb, prep, unpack_##type, \
			   x, nx, n);                                           \
		break;

CONTRACT
void QUANT_DOT_VARIANT(float *y, size_t ys, const void *row, enum parm_ggml_type t,
		       const float *x, int nx, int64_t n)
{
	switch ((int)t) {
	DOT_TYPE(Q8_0, q8_0, 1, NULL)
	DOT_TYPE(Q4_0, q4_0, 1, NULL)
	DOT_TYPE(Q4_1, q4_1, 1, NULL)
	DOT_TYPE(Q5_0, q5_0, 1, NULL)
	DOT_TYPE(Q5_1, q5_1, 1, NULL)
	DOT_TYPE(IQ4_NL, iq4_nl, 1, NULL)
	DOT_TYPE(Q2_K, q2_K, 8, PREP(q2_K))
	DOT_TYPE(Q3_K, q3_K, 8, PREP(q3_K))
	DOT_TYPE(Q4_K, q4_K, 8, PREP(q4_K))
	DOT_TYPE(Q5_K, q5_K, 8, PREP(q5_K))
	DOT_TYPE(Q6_K, q6_K, 8, PREP(q6_K))
	DOT_TYPE(IQ4_XS, iq4_xs, 8, PREP(iq4_xs))
	DOT_TYPE(F16, f16, 1, NULL)
	DOT_TYPE(BF16, bf16, 1, NULL)
	}
}
#endif
