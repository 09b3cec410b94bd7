/* rand_blocks.h - random blocks of the block types parm_quant_row does not
 * write (Q4_1 ... IQ4_XS): random bytes, with each block's f16 scale (and
 * min) set apart so none is a nan or an inf.  For tests; header-only. */
#ifndef PARM_TEST_RAND_BLOCKS_H
#define PARM_TEST_RAND_BLOCKS_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <parm/gguf.h>
#include "quant_dot.h"

static uint64_t rand_blocks_state = 0x2545f4914f6cdd1dULL;

static uint32_t rand_blocks_u32(void)
{
	uint64_t *s = &rand_blocks_state;
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s >> 32;
}

/* Byte offsets of a block's f16 scale and min (-1: none). */
static void rand_blocks_halves(enum parm_ggml_type t, int *d, int *m)
{
	*m = -1;
	switch ((int)t) {
	case PARM_GGML_Q2_K: *d = 80, *m = 82; break;
	case PARM_GGML_Q3_K: *d = 108; break;
	case PARM_GGML_Q6_K: *d = 208; break;
	case PARM_GGML_Q4_1: case PARM_GGML_Q5_1: case PARM_GGML_Q4_K: case PARM_GGML_Q5_K: *d = 0, *m = 2; break;
	default: *d = 0; break;
	}
}

/* A scale for block b: with extremes, every third block the largest half,
 * its negative, zero, the smallest subnormal, -0 or one; otherwise
 * uniform in (-scale, scale). */
static uint16_t rand_blocks_half(int b, int extremes, float scale)
{
	static const uint16_t odd[] = { 0x7bff, 0xfbff, 0x0000, 0x0001, 0x8000, 0x3c00 };
	if (extremes && b % 3 == 0)
		return odd[(b / 3) % 6];
	return parm_f32_to_f16(scale * ((rand_blocks_u32() + 0.5f) / 2147483648.0f - 1));
}

/* row = n elements (a multiple of t's block) of random blocks of type t. */
static void rand_blocks(uint8_t *row, enum parm_ggml_type t, int64_t n, int extremes, float scale)
{
	int64_t nb = n / parm_ggml_type_block(t);
	size_t bb = parm_ggml_type_block_bytes(t);
	int d, m;
	rand_blocks_halves(t, &d, &m);
	for (size_t i = 0; i < (size_t)nb * bb; i++)
		row[i] = rand_blocks_u32();
	for (int64_t b = 0; b < nb; b++) {
		uint16_t h = rand_blocks_half((int)b, extremes, scale);
		memcpy(row + b * bb + d, &h, 2);
		if (m >= 0) {
			h = rand_blocks_half((int)b + 1, extremes, scale);
			memcpy(row + b * bb + m, &h, 2);
		}
	}
}

#endif
