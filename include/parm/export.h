/* export.h - an ARM as llama.cpp LoRA adapters, which an unmodified
 * llama-server applies with a scale per request.
 *
 * A PARM of k objectives is exactly k + 1 LoRA adapters: the
 * preference-agnostic one (rank r1), to be applied at scale 1, and one per
 * objective i (rank r2), at scale alpha_i; their sum is the ARM at alpha.
 * Or, for one fixed alpha, a single merged adapter of rank r1 + r2 at
 * scale 1.
 *
 * Files are llama.cpp's LoRA GGUF: general.type "adapter",
 * general.architecture the backbone's, adapter.type "lora", and for each
 * adapted tensor blk.N.T.weight the f32 tensors .lora_a (ne {in, rank})
 * and .lora_b (ne {rank, rows}).  A fused tensor (attn_qkv; phi3's
 * ffn_up, gate then up) gets one pair: the A rows of the adapters in it
 * stacked, each B in its own rows and columns.  llama.cpp scales a pair
 * by adapter.lora.alpha / its rank: alpha is the first pair's rank, so
 * the factor is exactly 1, and a pair of another rank (a fused one among
 * plain ones) carries rank / alpha in its B.  parm.export.part (agnostic,
 * an objective's name or merged), parm.export.pref (merged) and
 * parm.export.arm record what it is.  The backbone's rows are in GGUF
 * order, as llama.cpp reads them, so nothing is permuted.
 */
#ifndef PARM_EXPORT_H
#define PARM_EXPORT_H

#include "arm.h"

/* Write one adapter of arm to path (atomically): alpha != NULL the merged
 * adapter at alpha[k]; else which = -1 the agnostic part, which = i the
 * aware part of objective i.  -1 + parm_error. */
int parm_arm_export_lora(const parm_arm *arm, int which, const float *alpha, const char *path);

/* One adapter part as an ordinary LoRA delta = B' A': A' is rows [*c0,
 * *c0 + n) of p->A and Bp[out][n] = s B[:, block] Mblock, for which < 0
 * the agnostic part, which = i objective i's aware part, or with M
 * (parm_pblora_mix at some alpha) the whole adapter.  Returns n. */
int parm_lora_part(const parm_pblora *p, int which, const float *M, float *Bp, int *c0);

#endif
