/* arch.h - the transformer architectures parm reads, one table entry each:
 * the GGUF key prefix, the parts a layer may or must carry beyond llama's
 * (biases, per-head q/k norms, fused projections, rope factors), and how
 * rope pairs a head's values.  model.c loads and runs any entry and
 * train.c trains it; adding an architecture of this family is an entry
 * here, plus a kernel for anything new (README, "Architectures"). */
#ifndef PARM_ARCH_H
#define PARM_ARCH_H

#include <stddef.h>

enum {                                  /* parts of a layer */
	PARM_PART_QKV_BIAS = 1 << 0,    /* attn_{q,k,v}.bias (or attn_qkv.bias) */
	PARM_PART_O_BIAS = 1 << 1,      /* attn_output.bias */
	PARM_PART_FFN_BIAS = 1 << 2,    /* ffn_{gate,up,down}.bias */
	PARM_PART_QK_NORM = 1 << 3,     /* attn_q_norm, attn_k_norm: RMS over each head */
	PARM_PART_FUSED_QKV = 1 << 4,   /* attn_qkv [D][Dq + 2 kvd]: q rows, k rows, v rows */
	PARM_PART_FUSED_UP = 1 << 5,    /* ffn_up [D][2F]: gate rows, then up rows */
	PARM_PART_ROPE_FREQS = 1 << 6,  /* rope_freqs [hd/2] (Llama 3.1+) */
	PARM_PART_ROPE_LONG = 1 << 7,   /* rope_factors_{long,short} [hd/2] (LongRoPE) */
	PARM_PART_OUTPUT_BIAS = 1 << 8, /* output.bias [V] */
};

typedef struct {
	const char *name;               /* general.architecture and key prefix */
	unsigned allow, need;           /* parts a file may have, must have */
	int rope_neox;                  /* rope pairs (i, i + hd/2), not (2i, 2i+1) */
} parm_arch;

enum { PARM_ARCH_LLAMA, PARM_ARCH_QWEN2, PARM_ARCH_QWEN3, PARM_ARCH_PHI3, PARM_N_ARCH };

const parm_arch *parm_arch_at(int id);          /* NULL when out of range */
int parm_arch_find(const char *name, size_t len); /* id, or -1 */
const char *parm_arch_names(void);              /* "llama, qwen2, qwen3, phi3" */

#endif
