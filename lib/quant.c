/* quant.c - half precision, bfloat16 and the Q8_0 / Q4_0 block types.
 *
 * The scalar conversions work on the bits so they are exact on any host;
 * dequant_row is the matmul hot path (weights are dequantised a tile of
 * rows at a time), so it uses F16C where the compiler targets it and is
 * otherwise written as loops gcc vectorises.  Every fast path is checked
 * bit for bit against dequant_row_ref in tests/test_quant.c.
 */
#include "quant.h"
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__F16C__) || defined(__AVX__)
#include <immintrin.h>
#endif

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

static uint32_t float_bits(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return x;
}

static float bits_float(uint32_t x)
{
	float f;
	memcpy(&f, &x, 4);
	return f;
}

float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
	if (exp == 0x1f && mant)        /* nan: quieted, payload kept, as F16C does */
		return bits_float(sign | 0x7fc00000 | mant << 13);
	if (exp == 0x1f)
		return bits_float(sign | 0x7f800000);
	if (exp == 0) {                 /* zero, subnormal: mant * 2^-24, exact */
		float f = (float)mant * 0x1p-24f;
		return sign ? -f : f;
	}
	return bits_float(sign | (exp + 112) << 23 | mant << 13);
}

/* |x| below 2^-14: a half subnormal, round(|x| * 2^24) to nearest even. */
static uint16_t f16_subnormal(uint32_t ax)
{
	uint32_t exp = ax >> 23;
	uint32_t mant = (ax & 0x7fffff) | 0x800000;
	uint32_t shift = 126 - exp;     /* >= 14 since exp <= 112 */
	if (exp == 0 || shift > 24)     /* below 2^-25: rounds to zero */
		return 0;
	uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1);
	uint32_t half = 1u << (shift - 1);
	if (rem > half || (rem == half && (r & 1)))
		r++;                    /* may reach 0x400, the smallest normal */
	return r;
}

uint16_t f32_to_f16(float f)
{
	uint32_t x = float_bits(f);
	uint16_t sign = (x >> 16) & 0x8000;
	uint32_t ax = x & 0x7fffffff;
	if (ax > 0x7f800000)            /* nan: keep it quiet and the top payload */
		return sign | 0x7e00 | ((ax >> 13) & 0x3ff);
	if (ax >= 0x477ff000)           /* 65520 and up round to inf */
		return sign | 0x7c00;
	if (ax < 0x38800000)
		return sign | f16_subnormal(ax);
	ax -= 112u << 23;               /* rebias the exponent from 127 to 15 */
	return sign | ((ax + 0xfff + ((ax >> 13) & 1)) >> 13);
}

float bf16_to_f32(uint16_t h)
{
	return bits_float((uint32_t)h << 16);
}

uint16_t f32_to_bf16(float f)
{
	uint32_t x = float_bits(f);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (x >> 16) | 0x40;        /* force quiet so it stays a nan */
	return (x + 0x7fff + ((x >> 16) & 1)) >> 16;
}

/* Dequantisation: the plain loops. */

static void dequant_f16_ref(float *out, const uint16_t *in, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = f16_to_f32(in[i]);
}

static void dequant_q8_0_ref(float *out, const block_q8_0 *b, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		out[i] = f16_to_f32(b[i / QK].d) * b[i / QK].qs[i % QK];
}

static void dequant_q4_0_ref(float *out, const block_q4_0 *b, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		const block_q4_0 *blk = &b[i / QK];
		int j = i % QK;
		int q = j < QK / 2 ? blk->qs[j] & 15 : blk->qs[j - QK / 2] >> 4;
		out[i] = f16_to_f32(blk->d) * (q - 8);
	}
}

void dequant_row_ref(float *out, const void *row, enum ggml_type t, int64_t n)
{
	switch (t) {
	case GGML_F32:
		for (int64_t i = 0; i < n; i++)
			out[i] = ((const float *)row)[i];
		break;
	case GGML_F16:
		dequant_f16_ref(out, row, n);
		break;
	case GGML_BF16:
		for (int64_t i = 0; i < n; i++)
			out[i] = bf16_to_f32(((const uint16_t *)row)[i]);
		break;
	case GGML_Q8_0:
		dequant_q8_0_ref(out, row, n);
		break;
	case GGML_Q4_0:
		dequant_q4_0_ref(out, row, n);
		break;
	}
}

/* Dequantisation: the fast paths. */

#ifdef __F16C__
static void dequant_f16(float *out, const uint16_t *in, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(in + i));
		_mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
	}
	for (; i < n; i++)
		out[i] = _cvtsh_ss(in[i]);
}
#else
static float f16_table[1 << 16];        /* every half's value, filled once */
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;

static void fill_f16_table(void)
{
	for (uint32_t h = 0; h < 1 << 16; h++)
		f16_table[h] = f16_to_f32(h);
}

static void dequant_f16(float *out, const uint16_t *in, int64_t n)
{
	pthread_once(&f16_table_once, fill_f16_table);
	for (int64_t i = 0; i < n; i++)
		out[i] = f16_table[in[i]];
}
#endif

/* Fixed-length chunks: gcc -O2 only vectorises loops with a known count. */
static void dequant_bf16(float *restrict out, const uint16_t *restrict in, int64_t n)
{
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		uint32_t x[16];
		for (int j = 0; j < 16; j++)
			x[j] = (uint32_t)in[i + j] << 16;
		memcpy(out + i, x, sizeof x);
	}
	for (; i < n; i++)
		out[i] = bf16_to_f32(in[i]);
}

static void dequant_q8_0(float *restrict out, const block_q8_0 *restrict b, int64_t n)
{
	for (int64_t k = 0; k < n / QK; k++) {
		const float d = f16_to_f32(b[k].d);
		const int8_t *qs = b[k].qs;
		float *o = out + k * QK;
		for (int j = 0; j < QK; j++)
			o[j] = d * qs[j];
	}
}

static void dequant_q4_0(float *restrict out, const block_q4_0 *restrict b, int64_t n)
{
	for (int64_t k = 0; k < n / QK; k++) {
		const float d = f16_to_f32(b[k].d);
		const uint8_t *qs = b[k].qs;
		float *o = out + k * QK;
		for (int j = 0; j < QK / 2; j++) {
			o[j] = d * ((qs[j] & 15) - 8);
			o[j + QK / 2] = d * ((qs[j] >> 4) - 8);
		}
	}
}

void dequant_row(float *out, const void *row, enum ggml_type t, int64_t n)
{
	switch (t) {
	case GGML_F32:
		memcpy(out, row, n * sizeof(float));
		break;
	case GGML_F16:
		dequant_f16(out, row, n);
		break;
	case GGML_BF16:
		dequant_bf16(out, row, n);
		break;
	case GGML_Q8_0:
		dequant_q8_0(out, row, n);
		break;
	case GGML_Q4_0:
		dequant_q4_0(out, row, n);
		break;
	}
}

/* Quantisation: ggml's reference quantisers (quantize_row_q8_0_ref and
 * quantize_row_q4_0_ref), so files match llama.cpp's byte for byte.  Both
 * multiply by the reciprocal of the unrounded scale, as ggml does. */

static void quant_q8_0(block_q8_0 *b, const float *in, int64_t n)
{
	for (int64_t k = 0; k < n / QK; k++) {
		const float *x = in + k * QK;
		float amax = 0.0f;
		for (int j = 0; j < QK; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		const float d = amax / 127;
		const float id = d ? 1.0f / d : 0.0f;
		b[k].d = f32_to_f16(d);
		for (int j = 0; j < QK; j++)
			b[k].qs[j] = (int8_t)roundf(x[j] * id);
	}
}

/* The scale maps the value of largest magnitude, sign kept, to -8. */
static void quant_q4_0(block_q4_0 *b, const float *in, int64_t n)
{
	for (int64_t k = 0; k < n / QK; k++) {
		const float *x = in + k * QK;
		float amax = 0.0f, max = 0.0f;
		for (int j = 0; j < QK; j++)
			if (amax < fabsf(x[j])) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		const float d = max / -8;
		const float id = d ? 1.0f / d : 0.0f;
		b[k].d = f32_to_f16(d);
		for (int j = 0; j < QK / 2; j++) {
			int8_t lo = (int8_t)(x[j] * id + 8.5f);
			int8_t hi = (int8_t)(x[j + QK / 2] * id + 8.5f);
			b[k].qs[j] = (lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4;
		}
	}
}

void quant_row(void *out, const float *in, enum ggml_type t, int64_t n)
{
	uint16_t *h = out;
	switch (t) {
	case GGML_F32:
		memcpy(out, in, n * sizeof(float));
		break;
	case GGML_F16:
		for (int64_t i = 0; i < n; i++)
			h[i] = f32_to_f16(in[i]);
		break;
	case GGML_BF16:
		for (int64_t i = 0; i < n; i++)
			h[i] = f32_to_bf16(in[i]);
		break;
	case GGML_Q8_0:
		quant_q8_0(out, in, n);
		break;
	case GGML_Q4_0:
		quant_q4_0(out, in, n);
		break;
	}
}

/* Fused dot products: a quantised row against float vectors, read in place.
 * A block is unpacked and scaled into registers once, then multiplied into
 * every vector of the group, so the weights are never written out as floats
 * and batched decode reads each row once, not once per vector or pair.
 * A block is NV registers of VL floats (zmm, ymm, or gcc's 16-byte vectors
 * elsewhere); fp-contract lets a += w * x be an FMA where there is one.
 * GROUP is the vectors per pass over a row and SPLIT the sums per block
 * and vector: enough independent adds to hide the FMA latency, few enough
 * that the sums and a block stay in registers. */

void quant_dot_ref(float *y, size_t ys, const void *row, enum ggml_type t,
		   const float *x, int nx, int64_t n)
{
	float *w = xmalloc(n * sizeof *w);
	dequant_row_ref(w, row, t, n);
	for (int i = 0; i < nx; i++) {
		double sum = 0;
		for (int64_t k = 0; k < n; k++)
			sum += (double)w[k] * x[i * n + k];
		y[i * ys] = (float)sum;
	}
	free(w);
}

#if defined(__AVX512F__)
enum { VL = 16, GROUP = 8, SPLIT = 2 };
#elif defined(__AVX2__) && defined(__FMA__)
enum { VL = 8, GROUP = 4, SPLIT = 2 };
#else
enum { VL = 4, GROUP = 4, SPLIT = 1 };
#endif
enum { NV = QK / VL };

typedef float vf __attribute__((vector_size(VL * sizeof(float))));

#define FUSED __attribute__((always_inline, optimize("fp-contract=fast"))) static inline

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

/* Other types: dequantised a chunk at a time onto the stack. */
static void dot_dequant(float *y, size_t ys, const void *row, enum ggml_type t,
			const float *x, int nx, int64_t n)
{
	enum { CHUNK = 256 };
	float w[CHUNK];
	for (int i = 0; i < nx; i++)
		y[i * ys] = 0;
	for (int64_t k = 0; k < n; k += CHUNK) {
		int64_t len = n - k < CHUNK ? n - k : CHUNK;
		dequant_row(w, (const char *)row + ggml_row_bytes(t, k), t, len);
		for (int i = 0; i < nx; i++) {
			float sum = 0;
			for (int64_t j = 0; j < len; j++)
				sum += w[j] * x[i * n + k + j];
			y[i * ys] += sum;
		}
	}
}

__attribute__((optimize("fp-contract=fast")))
void quant_dot(float *y, size_t ys, const void *row, enum ggml_type t,
	       const float *x, int nx, int64_t n)
{
	if (t == GGML_Q8_0)
		dot_groups(y, ys, row, sizeof(block_q8_0), unpack_q8_0, x, nx, n);
	else if (t == GGML_Q4_0)
		dot_groups(y, ys, row, sizeof(block_q4_0), unpack_q4_0, x, nx, n);
	else
		dot_dequant(y, ys, row, t, x, nx, n);
}
