/* quant_dot.h - the dot products on rows of quantised weights, read in
 * place, and the 8-bit activations of the integer dots: the inner loops
 * of the kernels (kernels.c), private to the library.  The public half,
 * the types and their conversions, is <parm/quant.h>.
 */
#ifndef PARM_QUANT_DOT_H
#define PARM_QUANT_DOT_H

#include <stddef.h>
#include <stdint.h>
#include <parm/quant.h>

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
