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

#endif
