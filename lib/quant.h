/* quant.h - the half-precision and block-quantised tensor types.
 *
 * Computed with: f32, f16, bf16; the 32-element blocks q8_0, q4_0, q4_1,
 * q5_0, q5_1, iq4_nl; the 256-element super-blocks q2_K .. q6_K, iq4_xs
 * (layouts in quant_internal.h, as ggml lays them out).  Written (by
 * parm_quant_row): f32, f16, bf16, q8_0, q4_0.  Each conversion has a
 * plain-loop reference (_ref, quant_ref.c) tested against it.
 */
#ifndef PARM_QUANT_H
#define PARM_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "gguf.h"

/* 1 when parm computes with tensors of type t; the list, for errors:
 * "f32, f16, bf16, q8_0, ...". */
int parm_quant_type_computed(enum parm_ggml_type t);
const char *parm_quant_types_computed(void);
/* 1 when parm_quant_row writes type t (f32, f16, bf16, q8_0, q4_0). */
int parm_quant_type_quantised(enum parm_ggml_type t);
/* general.file_type (llama.cpp's LLAMA_FTYPE) of a model whose matrices
 * are all of type t, for the types parm_quant_row writes; -1 for the others. */
int parm_quant_file_type(enum parm_ggml_type t);

float parm_f16_to_f32(uint16_t h);
uint16_t parm_f32_to_f16(float f);           /* round to nearest even */
float parm_bf16_to_f32(uint16_t h);
uint16_t parm_f32_to_bf16(float f);          /* round to nearest even */

/* out[n] = row of type t with n elements (n a multiple of the block; t
 * one parm_quant_type_computed accepts). */
void parm_dequant_row(float *out, const void *row, enum parm_ggml_type t, int64_t n);
void parm_dequant_row_ref(float *out, const void *row, enum parm_ggml_type t, int64_t n);
/* out (row of type t) = quantised in[n].  Same rounding as ggml's reference
 * quantisers, so a file written here matches one written by llama.cpp. */
void parm_quant_row(void *out, const float *in, enum parm_ggml_type t, int64_t n);

/* y[i * ys] = row . x[i][n] for i < nx: one row of type t (n a multiple of
 * its block) against nx float vectors, the row read in place, so decoding
 * streams quantised weights without writing them out as floats.  Block
 * types read the row once per group of up to 8 vectors (4 without
 * AVX-512) on the SIMD path simd.h chose (PARM_SIMD), each path summing
 * its way; they sum in another order than a plain dot, and where a path
 * contracts multiply-adds their weights may differ from parm_dequant_row's in
 * the last bit. */
void parm_quant_dot(float *y, size_t ys, const void *row, enum parm_ggml_type t,
	       const float *x, int nx, int64_t n);
/* 1 when parm_quant_dot reads a row of type t and length n in place in a fused
 * dot (every block type; f16 and bf16 when n is a multiple of 32). */
int parm_quant_dot_fused(enum parm_ggml_type t, int64_t n);
/* parm_quant_dot on rows consecutive rows of w (rb bytes apart) into y, y + 1,
 * ...: the path is chosen once for them all (decode calls this per tile). */
void parm_quant_dot_rows(float *y, size_t ys, const void *w, size_t rb, int rows, enum parm_ggml_type t,
		    const float *x, int nx, int64_t n);
void parm_quant_dot_ref(float *y, size_t ys, const void *row, enum parm_ggml_type t,
		   const float *x, int nx, int64_t n);

/* Activations as 8-bit integers, for the K types' integer dots in
 * inference (llama.cpp's CPU backend does the same with its q8_K): 256 at a time,
 * x[j] about d q[j] with d = max |x| / 127 over the 256, q rounded to
 * nearest (ties to even); bsum[k] is the sum of q[16 k .. 16 k + 15], which
 * the weights' offsets (q4_K's and q5_K's minimums, q6_K's 32) multiply. */
typedef struct {
	float d;
	int16_t bsum[16];
	int8_t q[256];
} quant_x8;
/* out[n / 256] = x[n] quantised (n a multiple of 256).  A NaN or an
 * infinity in a block makes its d NaN, so the dots stay NaN as they
 * would in floats. */
void parm_quant_x8_row(quant_x8 *out, const float *x, int64_t n);
/* 1 when rows of type t and length n have an integer dot (q4_K, q5_K,
 * q6_K, whole super-blocks). */
int parm_quant_dot_x8_ok(enum parm_ggml_type t, int64_t n);
/* parm_quant_dot_rows against nx quantised vectors x[nx][n / 256]: each
 * super-block's products and offsets summed exactly as integers, then
 * scaled once in floats. */
void parm_quant_dot_x8_rows(float *y, size_t ys, const void *w, size_t rb, int rows,
		       enum parm_ggml_type t, const quant_x8 *x, int nx, int64_t n);
/* The same as plain loops (integers, then doubles), one row. */
void parm_quant_dot_x8_ref(float *y, size_t ys, const void *row, enum parm_ggml_type t,
		      const quant_x8 *x, int nx, int64_t n);

/* Activations as 8-bit integers 32 at a time, as llama.cpp quantises them
 * for q4_0 weights (its q8_0): q = x 127 / max |x| rounded to nearest
 * (ties to even), d = max |x| / 127 rounded to f16, sum = the q added.
 * A NaN or an infinity makes d NaN. */
typedef struct {
	float d;
	int32_t sum;
	int8_t q[32];
} quant_x8_32;
void parm_quant_x8_32_row(quant_x8_32 *out, const float *x, int64_t n);
/* A q4_0 or q8_0 row against quantised vectors x[nx][n / 32] as plain
 * loops. */
void parm_quant_dot_x8_32_ref(float *y, size_t ys, const void *row, enum parm_ggml_type t,
			 const quant_x8_32 *x, int nx, int64_t n);

/* Q4_0 and Q8_0 weights packed eight rows at a time for an integer dot
 * with 8-bit activations, as llama.cpp repacks them: on AVX-512 only
 * (PARM_SIMD), where it is 1.7 to 2 times as fast as the float dot on the
 * rows as stored.  parm_quant_pack_ok: 1 when rows of type t can be packed here
 * (rows a multiple of 8).  parm_quant_pack: the packed copy (the same size as
 * the rows; free it). */
int parm_quant_pack_ok(enum parm_ggml_type t, int64_t rows, int64_t n);
void *parm_quant_pack(const void *w, enum parm_ggml_type t, int64_t rows, int64_t n);
/* y[i * ys + r] = row r . x[i] for r < rows (a multiple of 8) of a packed
 * copy of type t, x[nx][n / 32]. */
void parm_quant_dot_x8_packed(float *y, size_t ys, const void *packed, enum parm_ggml_type t, int rows,
			 const quant_x8_32 *x, int nx, int64_t n);

#endif
