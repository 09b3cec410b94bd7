/* quant.h - the half-precision and block-quantised tensor types.
 *
 * Q8_0: blocks of 32 along a row, { f16 d; int8 q[32] }, x = d * q.
 * Q4_0: blocks of 32, { f16 d; uint8 q[16] }, x[j] = d * ((q[j] & 15) - 8),
 *       x[j + 16] = d * ((q[j] >> 4) - 8), as ggml lays them out.
 * Each conversion has a plain-loop reference (_ref) tested against it.
 */
#ifndef PARM_QUANT_H
#define PARM_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "gguf.h"

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);           /* round to nearest even */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);          /* round to nearest even */

/* out[n] = row of type t with n elements (n a multiple of the block). */
void dequant_row(float *out, const void *row, enum ggml_type t, int64_t n);
void dequant_row_ref(float *out, const void *row, enum ggml_type t, int64_t n);
/* out (row of type t) = quantised in[n].  Same rounding as ggml's reference
 * quantisers, so a file written here matches one written by llama.cpp. */
void quant_row(void *out, const float *in, enum ggml_type t, int64_t n);

/* y[i * ys] = row . x[i][n] for i < nx: one row of type t (n a multiple of
 * its block) against nx float vectors, the row read in place, so decoding
 * streams quantised weights without writing them out as floats.  Q8_0 and
 * Q4_0 read the row once per group of up to 8 vectors (4 without AVX-512)
 * on the SIMD path simd.h chose (PARM_SIMD), each path summing its way,
 * and use dequant_row's weights, but sum in another order, so they differ
 * from a plain dot in the last bits. */
void quant_dot(float *y, size_t ys, const void *row, enum ggml_type t,
	       const float *x, int nx, int64_t n);
void quant_dot_ref(float *y, size_t ys, const void *row, enum ggml_type t,
		   const float *x, int nx, int64_t n);

#endif
