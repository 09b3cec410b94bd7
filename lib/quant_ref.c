/* quant_ref.c - the plain-loop references: every type's dequantiser as a
 * function of one element's index, and the dot products over them.
 *
 * Written from ggml's formulas element by element, with no structure
 * shared with the fast paths (quant.c, quant_internal.h), which the tests
 * hold to these bit for bit; these in turn are held against gguf-py's
 * numpy dequantisers (tests/quant-ref.py).  Each weight is computed in
 * the order ggml's dequantize_row_* computes it (no contraction: c11).
 */
#include "quant_dot.h"
#include "quant_internal.h"
#include <parm/util.h>

#include <stdlib.h>

/* Low or high nibble of a 32-element block's 16 bytes, for element j. */
static int nibble(const uint8_t *qs, int j)
{
	return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
}

static float q8_0_at(const void *row, int64_t i)
{
	const block_q8_0 *b = (const block_q8_0 *)row + i / QK;
	return parm_f16_to_f32(b->d) * b->qs[i % QK];
}

static float q4_0_at(const void *row, int64_t i)
{
	const block_q4_0 *b = (const block_q4_0 *)row + i / QK;
	return parm_f16_to_f32(b->d) * (nibble(b->qs, i % QK) - 8);
}

static float q4_1_at(const void *row, int64_t i)
{
	const block_q4_1 *b = (const block_q4_1 *)row + i / QK;
	return nibble(b->qs, i % QK) * parm_f16_to_f32(b->d) + parm_f16_to_f32(b->m);
}

/* Q5_0 and Q5_1: element j's fifth bit is bit j of the 32-bit qh. */
static int q5_value(const uint8_t *qh, const uint8_t *qs, int j)
{
	return nibble(qs, j) | ((qh[j / 8] >> (j % 8)) & 1) << 4;
}

static float q5_0_at(const void *row, int64_t i)
{
	const block_q5_0 *b = (const block_q5_0 *)row + i / QK;
	return (q5_value(b->qh, b->qs, i % QK) - 16) * parm_f16_to_f32(b->d);
}

static float q5_1_at(const void *row, int64_t i)
{
	const block_q5_1 *b = (const block_q5_1 *)row + i / QK;
	return q5_value(b->qh, b->qs, i % QK) * parm_f16_to_f32(b->d) + parm_f16_to_f32(b->m);
}

static float iq4_nl_at(const void *row, int64_t i)
{
	const block_iq4_nl *b = (const block_iq4_nl *)row + i / QK;
	return parm_f16_to_f32(b->d) * iq4nl_levels[nibble(b->qs, i % QK)];
}

/* In a super-block, Q2_K, Q3_K and Q6_K walk two halves of 128; within a
 * half, group g (of 4) of 32 elements takes bits 2 g of 32 bytes, and
 * each 16 has its own scale: number 8 half + 2 g + (e % 32) / 16. */
struct k_pos {
	int half, group, l, scale;
};

static struct k_pos k_pos(int e)
{
	struct k_pos p = { e / 128, e % 128 / 32, e % 32, 0 };
	p.scale = 8 * p.half + 2 * p.group + p.l / 16;
	return p;
}

static float q2_K_at(const void *row, int64_t i)
{
	const block_q2_K *b = (const block_q2_K *)row + i / QK_K;
	struct k_pos p = k_pos(i % QK_K);
	int q = (b->qs[32 * p.half + p.l] >> 2 * p.group) & 3, sc = b->scales[p.scale];
	return parm_f16_to_f32(b->d) * (sc & 15) * q - parm_f16_to_f32(b->dmin) * (sc >> 4);
}

static float q3_K_at(const void *row, int64_t i)
{
	const block_q3_K *b = (const block_q3_K *)row + i / QK_K;
	struct k_pos p = k_pos(i % QK_K);
	int q = (b->qs[32 * p.half + p.l] >> 2 * p.group) & 3;
	int high = (b->hmask[p.l] >> (4 * p.half + p.group)) & 1;
	return parm_f16_to_f32(b->d) * k3_scale(b->scales, p.scale) * (q - (high ? 0 : 4));
}

/* Q4_K and Q5_K: 8 sub-blocks of 32; pairs share 32 bytes, low nibble
 * first. */
static float q4_K_at(const void *row, int64_t i)
{
	const block_q4_K *b = (const block_q4_K *)row + i / QK_K;
	int e = i % QK_K, s = e / 32, sc, m;
	int q = (b->qs[32 * (s / 2) + e % 32] >> 4 * (s % 2)) & 15;
	k4_scale_min(b->scales, s, &sc, &m);
	return parm_f16_to_f32(b->d) * sc * q - parm_f16_to_f32(b->dmin) * m;
}

static float q5_K_at(const void *row, int64_t i)
{
	const block_q5_K *b = (const block_q5_K *)row + i / QK_K;
	int e = i % QK_K, s = e / 32, sc, m;
	int q = (b->qs[32 * (s / 2) + e % 32] >> 4 * (s % 2)) & 15;
	q += ((b->qh[e % 32] >> s) & 1) * 16;
	k4_scale_min(b->scales, s, &sc, &m);
	return parm_f16_to_f32(b->d) * sc * q - parm_f16_to_f32(b->dmin) * m;
}

/* Q6_K: group g of a half takes the low (g < 2) or high nibble of ql
 * bytes 32 (g % 2) .. and bits 2 g of qh. */
static float q6_K_at(const void *row, int64_t i)
{
	const block_q6_K *b = (const block_q6_K *)row + i / QK_K;
	struct k_pos p = k_pos(i % QK_K);
	int lo = (b->ql[64 * p.half + 32 * (p.group % 2) + p.l] >> 4 * (p.group / 2)) & 15;
	int hi = (b->qh[32 * p.half + p.l] >> 2 * p.group) & 3;
	return parm_f16_to_f32(b->d) * b->scales[p.scale] * ((lo | hi << 4) - 32);
}

static float iq4_xs_at(const void *row, int64_t i)
{
	const block_iq4_xs *b = (const block_iq4_xs *)row + i / QK_K;
	int e = i % QK_K, s = e / 32;
	int lo = (b->scales_l[s / 2] >> 4 * (s % 2)) & 15, hi = (b->scales_h >> 2 * s) & 3;
	return parm_f16_to_f32(b->d) * ((lo | hi << 4) - 32) * iq4nl_levels[nibble(b->qs + 16 * s, e % 32)];
}

static float f32_at(const void *row, int64_t i)
{
	return ((const float *)row)[i];
}

static float f16_at(const void *row, int64_t i)
{
	return parm_f16_to_f32(((const uint16_t *)row)[i]);
}

static float bf16_at(const void *row, int64_t i)
{
	return parm_bf16_to_f32(((const uint16_t *)row)[i]);
}

typedef float element_fn(const void *row, int64_t i);

static element_fn *element_of(enum parm_ggml_type t)
{
	switch ((int)t) {
	case PARM_GGML_F32: return f32_at;
	case PARM_GGML_F16: return f16_at;
	case PARM_GGML_BF16: return bf16_at;
	case PARM_GGML_Q8_0: return q8_0_at;
	case PARM_GGML_Q4_0: return q4_0_at;
	case PARM_GGML_Q4_1: return q4_1_at;
	case PARM_GGML_Q5_0: return q5_0_at;
	case PARM_GGML_Q5_1: return q5_1_at;
	case PARM_GGML_IQ4_NL: return iq4_nl_at;
	case PARM_GGML_Q2_K: return q2_K_at;
	case PARM_GGML_Q3_K: return q3_K_at;
	case PARM_GGML_Q4_K: return q4_K_at;
	case PARM_GGML_Q5_K: return q5_K_at;
	case PARM_GGML_Q6_K: return q6_K_at;
	case PARM_GGML_IQ4_XS: return iq4_xs_at;
	}
	return NULL;
}

void parm_dequant_row_ref(float *out, const void *row, enum parm_ggml_type t, int64_t n)
{
	element_fn *at = element_of(t);
	for (int64_t i = 0; i < n; i++)
		out[i] = at(row, i);
}

void parm_quant_dot_ref(float *y, size_t ys, const void *row, enum parm_ggml_type t,
		   const float *x, int nx, int64_t n)
{
	float *w = parm_xmalloc(n * sizeof *w);
	parm_dequant_row_ref(w, row, t, n);
	for (int i = 0; i < nx; i++) {
		double sum = 0;
		for (int64_t k = 0; k < n; k++)
			sum += (double)w[k] * x[i * n + k];
		y[i * ys] = (float)sum;
	}
	free(w);
}
