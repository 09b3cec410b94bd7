/* arm.h - ARM files: a PARM (k objectives) or GenARM (k = 1) reward model,
 * i.e. PBLoRA adapters on a frozen llama backbone, stored as GGUF.
 *
 * Two layouts:
 *   embedded    the file is a complete llama GGUF (general.architecture,
 *               llama.*, tokenizer.*, every backbone tensor) plus the
 *               parm.* keys and the adapter tensors; llama.cpp and
 *               parm_model_load read it as the plain backbone.
 *   referenced  the file holds the parm.* keys, the adapter tensors and a
 *               copy of the backbone's tokenizer.* keys (so a stage can
 *               check the tokenizer fingerprint with parm_gguf_open +
 *               parm_tokenizer_load on the ARM file alone); the backbone
 *               is named by path, relative to the ARM file's directory
 *               unless absolute, and its SHA-256 is checked at load.
 *
 * Metadata (format version 1):
 *   parm.format_version          u32     1
 *   parm.objective_count         u32     k
 *   parm.objectives              [str]   k objective names, unique
 *   parm.block_count             u32     backbone layers the adapters cover
 *   parm.pblora.r1               u32     preference-agnostic rank (>= 1)
 *   parm.pblora.r2               u32     preference-aware rank (>= 1)
 *   parm.pblora.lora_alpha       f32     scale s = lora_alpha / r2
 *   parm.pblora.targets          [str]   subset of attn_q attn_k attn_v
 *                                        attn_output ffn_gate ffn_up ffn_down
 *   parm.beta                    f32     reward scale: r = beta sum log pi
 *   parm.backbone.embedded       bool
 *   parm.backbone.path           str     referenced only
 *   parm.backbone.sha256         str     referenced only, 64 hex digits
 *   parm.backbone.size           u64     referenced only, bytes
 *   parm.train.NAME              str     free-form provenance (optional):
 *                                        steps, data, seed, ... see
 *                                        parm_arm_set_info
 * Tensors, f32, for each layer N and target T (ne[0] is the contiguous
 * dim, so the C shapes of pblora.h read right to left):
 *   blk.N.T.pblora_a    ne {in, r}        A  [r][in],  r = r1 + r2
 *   blk.N.T.pblora_b    ne {r, out}       B  [out][r]
 *   blk.N.T.pblora_w1   ne {r1, r1}       W1 [r1][r1]
 *   blk.N.T.pblora_w2   ne {r2*r2, k}     W2 [k][r2*r2]
 * A referenced file also has general.type = "adapter".
 */
#ifndef PARM_ARM_H
#define PARM_ARM_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"
#include "pblora.h"

#define PARM_ARM_VERSION 1

enum parm_target {                      /* bit i of a target mask */
	PARM_T_ATTN_Q, PARM_T_ATTN_K, PARM_T_ATTN_V, PARM_T_ATTN_OUTPUT,
	PARM_T_FFN_GATE, PARM_T_FFN_UP, PARM_T_FFN_DOWN, PARM_N_TARGETS
};
#define PARM_TARGETS_DEFAULT ((1u << PARM_T_ATTN_Q) | (1u << PARM_T_ATTN_K) | (1u << PARM_T_ATTN_V))

const char *parm_target_name(enum parm_target t);      /* "attn_q" */
int parm_target_from_name(const char *name);            /* -1: unknown */
/* "q,k,v,o,gate,up,down" or the GGUF names ("attn_q,ffn_up"), or "all";
 * -1 + parm_error naming the bad entry. */
int parm_parse_targets(const char *s, unsigned *mask);
/* The backbone weight a target adapts in one layer. */
const parm_weight *parm_target_weight(const parm_model *m, int layer, enum parm_target t);

typedef struct {
	int k, r1, r2;
	float lora_alpha, beta;
	const char *const *objectives;  /* [k]; NULL: "objective1" ... */
	unsigned targets;               /* mask of 1 << parm_target */
	uint64_t seed;                  /* for parm_pblora_init */
} parm_arm_options;

/* k 1, r1 = r2 = 4, lora_alpha 8, beta 0.01, q,k,v, seed 1 (SPEC 1). */
void parm_arm_default_options(parm_arm_options *o);

typedef struct parm_arm {
	int k, r1, r2;
	float lora_alpha, beta;
	char **objectives;              /* [k] */
	int n_targets;
	enum parm_target targets[PARM_N_TARGETS]; /* [n_targets], in enum order */
	parm_model *backbone;           /* owned */
	int embedded;                   /* backbone read from the ARM file */
	char *path;                     /* ARM file loaded, NULL if fresh */
	char *backbone_path;            /* as opened (cwd-relative or absolute) */
	char backbone_sha256[65];       /* hex; "" until first needed */
	/* Adapters [n_layers][n_targets] (layer-major, targets in the order
	 * above), carved from params in that order, each as parm_pblora_carve
	 * lays out A, B, W1, W2: a gradient buffer of n_params carved the
	 * same way lines up with them (see parm_arm_carve). */
	parm_pblora *adapters;
	float *params;
	size_t n_params;
	int n_info;                     /* provenance: parm.train.KEY = VAL */
	char **info_key, **info_val;
} parm_arm;

/* A fresh ARM on the backbone at backbone_path (loaded and owned by the
 * ARM), adapters initialised with parm_pblora_init (B = 0, so dW = 0). */
parm_arm *parm_arm_new(const char *backbone_path, const parm_arm_options *o);
/* Load an ARM file, its backbone (checking a referenced one's SHA-256)
 * and its adapters.  NULL + one line naming the file and the problem. */
parm_arm *parm_arm_load(const char *path);
/* Write the ARM atomically (PATH.tmp + rename).  embed_backbone copies
 * the backbone's keys and tensors in; otherwise the backbone is named by
 * a path relative to PATH's directory (absolute when they share only /)
 * and hashed once (cached in backbone_sha256).  An ARM whose backbone is
 * embedded in its own file cannot be saved referenced. */
int parm_arm_save(parm_arm *arm, const char *path, int embed_backbone);
void parm_arm_free(parm_arm *arm);

/* The adapter of layer l, target t; NULL if t is not adapted. */
parm_pblora *parm_arm_adapter(const parm_arm *arm, int l, enum parm_target t);
/* Carve a buffer of arm->n_params floats (a gradient, Adam moments) into
 * adapters[n_layers * n_targets] shaped like the ARM's. */
void parm_arm_carve(const parm_arm *arm, parm_pblora *out, float *buf);

int parm_arm_objective_index(const parm_arm *arm, const char *name); /* -1: none */

/* Frobenius norms of the ARM's dW parts over all its adapters (root of
 * the summed squares): the agnostic one and each objective's aware one
 * (parm_pblora_delta_norms). */
void parm_arm_delta_norms(const parm_arm *arm, double *agnostic, double *aware);
/* Provenance strings, saved as parm.train.KEY; set replaces. */
void parm_arm_set_info(parm_arm *arm, const char *key, const char *val);
const char *parm_arm_get_info(const parm_arm *arm, const char *key); /* NULL: none */

/* A preference vector: "0.7,0.3" (k numbers in objective order) or
 * "helpful=0.7,harmless=0.3" (names; objectives not named get 0).
 * Entries must be finite, >= 0 and sum to 1 within 1e-6: nothing is
 * normalised, a wrong vector is an error (wrong count, negative, bad sum,
 * unknown or repeated name, mixed forms).  names may be NULL (numbers
 * only).  alpha[k] is written only on success. */
int parm_parse_pref(const char *s, int k, const char *const *names, float *alpha);
int parm_arm_parse_pref(const parm_arm *arm, const char *s, float *alpha);

/* The merged fast path: a new f32 [out][in] array (parm_xmalloc; free it)
 * holding W + s B M(alpha) A for layer l, target t, with W the backbone
 * weight dequantised.  NULL + parm_error if t is not adapted. */
float *parm_arm_merged_weight(const parm_arm *arm, int l, enum parm_target t,
			      const float *alpha);

/* The unmerged path: adapters[n_layers * PARM_N_PROJ] for
 * parm_forward_adapted at preference alpha[k], pointing at the ARM's
 * adapters (so it must outlive them) and at the mixes, stored in *M
 * (both parm_xmalloc; free both).  After alpha or the adapters change,
 * parm_arm_mix_adapters refills *M in place. */
parm_adapter *parm_arm_adapters(const parm_arm *arm, const float *alpha, float **M);
void parm_arm_mix_adapters(const parm_arm *arm, const float *alpha, float *M);

/* SHA-256 of a whole file, streamed, as 64 hex digits + NUL in hex[65];
 * size gets the byte count when not NULL. */
int parm_sha256_file(const char *path, char hex[65], uint64_t *size);

#endif
