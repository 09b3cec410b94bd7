/* quant.c - half precision, bfloat16 and the block-quantised types: which
 * ones parm computes with, their fast dequantisers and fused dots.
 *
 * The scalar conversions work on the bits so they are exact on any host;
 * parm_dequant_row is the matmul hot path (weights are dequantised a tile of
 * rows at a time), so it uses F16C on the SIMD paths that have it and is
 * otherwise written as loops gcc vectorises.  The fused dot products are
 * built once per SIMD path (quant_internal.h) and the one parm_simd()
 * chose runs.  Every fast path is checked against its plain-loop reference
 * in tests/test_quant.c, on every path the CPU has.
 */
#include "quant_dot.h"
#include "quant_internal.h"
#include "simd.h"
#include <parm/util.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define X86 1
#endif

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

float parm_f16_to_f32(uint16_t h)
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

uint16_t parm_f32_to_f16(float f)
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

float parm_bf16_to_f32(uint16_t h)
{
	return bits_float((uint32_t)h << 16);
}

uint16_t parm_f32_to_bf16(float f)
{
	uint32_t x = float_bits(f);
	if ((x & 0x7fffffff) > 0x7f800000)
		return (x >> 16) | 0x40;        /* force quiet so it stays a nan */
	return (x + 0x7fff + ((x >> 16) & 1)) >> 16;
}

/* The types parm computes with, in the order the errors list them. */
static const enum parm_ggml_type computed[] = {
	PARM_GGML_F32, PARM_GGML_F16, PARM_GGML_BF16, PARM_GGML_Q8_0, PARM_GGML_Q4_0, PARM_GGML_Q4_1, PARM_GGML_Q5_0,
	PARM_GGML_Q5_1, PARM_GGML_IQ4_NL, PARM_GGML_Q2_K, PARM_GGML_Q3_K, PARM_GGML_Q4_K, PARM_GGML_Q5_K, PARM_GGML_Q6_K,
	PARM_GGML_IQ4_XS,
};

int parm_quant_type_computed(enum parm_ggml_type t)
{
	for (size_t i = 0; i < sizeof computed / sizeof *computed; i++)
		if (computed[i] == t)
			return 1;
	return 0;
}

int parm_quant_type_quantised(enum parm_ggml_type t)
{
	return t == PARM_GGML_F32 || t == PARM_GGML_F16 || t == PARM_GGML_BF16 || t == PARM_GGML_Q8_0 || t == PARM_GGML_Q4_0;
}

int parm_quant_file_type(enum parm_ggml_type t)
{
	switch ((int)t) {
	case PARM_GGML_F32: return 0;
	case PARM_GGML_F16: return 1;
	case PARM_GGML_Q4_0: return 2;
	case PARM_GGML_Q8_0: return 7;
	case PARM_GGML_BF16: return 32;
	}
	return -1;
}

static char computed_list[256];
static pthread_once_t computed_list_once = PTHREAD_ONCE_INIT;

static void fill_computed_list(void)
{
	size_t at = 0;
	for (size_t i = 0; i < sizeof computed / sizeof *computed; i++)
		at += snprintf(computed_list + at, sizeof computed_list - at, "%s%s",
			       i ? ", " : "", parm_ggml_type_name(computed[i]));
}

const char *parm_quant_types_computed(void)
{
	pthread_once(&computed_list_once, fill_computed_list);
	return computed_list;
}

/* Dequantisation: the fast paths. */

/* F16C converts exactly, as the table does: the two give the same bits. */
#ifdef X86
__attribute__((target("avx,f16c")))
static void dequant_f16_f16c(float *out, const uint16_t *in, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(in + i));
		_mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
	}
	for (; i < n; i++)
		out[i] = _cvtsh_ss(in[i]);
}
#endif

static float f16_table[1 << 16];        /* every half's value, filled once */
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;

static void fill_f16_table(void)
{
	for (uint32_t h = 0; h < 1 << 16; h++)
		f16_table[h] = parm_f16_to_f32(h);
}

static void dequant_f16(float *out, const uint16_t *in, int64_t n)
{
#ifdef X86
	if (parm_simd() >= PARM_SIMD_AVX2) {
		dequant_f16_f16c(out, in, n);
		return;
	}
#endif
	pthread_once(&f16_table_once, fill_f16_table);
	for (int64_t i = 0; i < n; i++)
		out[i] = f16_table[in[i]];
}

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
		out[i] = parm_bf16_to_f32(in[i]);
}

static void dequant_q8_0(float *restrict out, const block_q8_0 *restrict b, int64_t n)
{
	for (int64_t k = 0; k < n / QK; k++) {
		const float d = parm_f16_to_f32(b[k].d);
		const int8_t *qs = b[k].qs;
		float *o = out + k * QK;
		for (int j = 0; j < QK; j++)
			o[j] = d * qs[j];
	}
}

static void dequant_q4_0(float *restrict out, const block_q4_0 *restrict b, int64_t n)
{
	for (int64_t k = 0; k < n / QK; k++) {
		const float d = parm_f16_to_f32(b[k].d);
		const uint8_t *qs = b[k].qs;
		float *o = out + k * QK;
		for (int j = 0; j < QK / 2; j++) {
			o[j] = d * ((qs[j] & 15) - 8);
			o[j + QK / 2] = d * ((qs[j] >> 4) - 8);
		}
	}
}

/* The other block types: their scalar unpackers, a chunk of 32 at a time. */
static chunk_fn *chunk_of(enum parm_ggml_type t)
{
	switch ((int)t) {
	case PARM_GGML_Q4_1: return chunk_q4_1;
	case PARM_GGML_Q5_0: return chunk_q5_0;
	case PARM_GGML_Q5_1: return chunk_q5_1;
	case PARM_GGML_IQ4_NL: return chunk_iq4_nl;
	case PARM_GGML_Q2_K: return chunk_q2_K;
	case PARM_GGML_Q3_K: return chunk_q3_K;
	case PARM_GGML_Q4_K: return chunk_q4_K;
	case PARM_GGML_Q5_K: return chunk_q5_K;
	case PARM_GGML_Q6_K: return chunk_q6_K;
	case PARM_GGML_IQ4_XS: return chunk_iq4_xs;
	}
	return NULL;
}

void parm_dequant_row(float *out, const void *row, enum parm_ggml_type t, int64_t n)
{
	chunk_fn *chunk = chunk_of(t);
	if (chunk) {
		for (int64_t c = 0; c < n / QK; c++)
			chunk(out + c * QK, row, c);
		return;
	}
	switch ((int)t) {
	case PARM_GGML_F32:
		memcpy(out, row, n * sizeof(float));
		break;
	case PARM_GGML_F16:
		dequant_f16(out, row, n);
		break;
	case PARM_GGML_BF16:
		dequant_bf16(out, row, n);
		break;
	case PARM_GGML_Q8_0:
		dequant_q8_0(out, row, n);
		break;
	case PARM_GGML_Q4_0:
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
		b[k].d = parm_f32_to_f16(d);
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
		b[k].d = parm_f32_to_f16(d);
		for (int j = 0; j < QK / 2; j++) {
			int8_t lo = (int8_t)(x[j] * id + 8.5f);
			int8_t hi = (int8_t)(x[j + QK / 2] * id + 8.5f);
			b[k].qs[j] = (lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4;
		}
	}
}

void parm_quant_row(void *out, const float *in, enum parm_ggml_type t, int64_t n)
{
	uint16_t *h = out;
	switch ((int)t) {
	case PARM_GGML_F32:
		memcpy(out, in, n * sizeof(float));
		break;
	case PARM_GGML_F16:
		for (int64_t i = 0; i < n; i++)
			h[i] = parm_f32_to_f16(in[i]);
		break;
	case PARM_GGML_BF16:
		for (int64_t i = 0; i < n; i++)
			h[i] = parm_f32_to_bf16(in[i]);
		break;
	case PARM_GGML_Q8_0:
		quant_q8_0(out, in, n);
		break;
	case PARM_GGML_Q4_0:
		quant_q4_0(out, in, n);
		break;
	}
}

/* Fused dot products: see quant_internal.h, built once per SIMD path. */

/* f32, and f16 or bf16 rows not a multiple of 32: a chunk at a time onto
 * the stack. */
static void dot_dequant(float *y, size_t ys, const void *row, enum parm_ggml_type t,
			const float *x, int nx, int64_t n)
{
	enum { CHUNK = 256 };
	float w[CHUNK];
	for (int i = 0; i < nx; i++)
		y[i * ys] = 0;
	for (int64_t k = 0; k < n; k += CHUNK) {
		int64_t len = n - k < CHUNK ? n - k : CHUNK;
		parm_dequant_row(w, (const char *)row + parm_ggml_row_bytes(t, k), t, len);
		for (int i = 0; i < nx; i++) {
			float sum = 0;
			for (int64_t j = 0; j < len; j++)
				sum += w[j] * x[i * n + k + j];
			y[i * ys] += sum;
		}
	}
}

int parm_quant_dot_fused(enum parm_ggml_type t, int64_t n)
{
	if (t == PARM_GGML_F16 || t == PARM_GGML_BF16)
		return n % QK == 0;
	return parm_ggml_type_block(t) > 1 && parm_quant_type_computed(t);
}

static quant_dot_fn *quant_dot_path;   /* Q8_0 and Q4_0, on parm_simd()'s path */
static pthread_once_t quant_dot_once = PTHREAD_ONCE_INIT;

static void choose_quant_dot(void)
{
	quant_dot_fn *paths[] = {
		[PARM_SIMD_PORTABLE] = parm_quant_dot_portable,
#ifdef X86
		[PARM_SIMD_AVX2] = parm_quant_dot_avx2,
		[PARM_SIMD_AVX512] = parm_quant_dot_avx512,
#endif
	};
	quant_dot_path = paths[parm_simd()];
}

void parm_quant_dot_rows(float *y, size_t ys, const void *w, size_t rb, int rows, enum parm_ggml_type t,
		    const float *x, int nx, int64_t n)
{
	pthread_once(&quant_dot_once, choose_quant_dot);
	quant_dot_fn *dot = parm_quant_dot_fused(t, n) ? quant_dot_path : dot_dequant;
	for (int r = 0; r < rows; r++)
		dot(y + r, ys, (const char *)w + (size_t)r * rb, t, x, nx, n);
}

void parm_quant_dot(float *y, size_t ys, const void *row, enum parm_ggml_type t,
	       const float *x, int nx, int64_t n)
{
	parm_quant_dot_rows(y, ys, row, 0, 1, t, x, nx, n);
}
