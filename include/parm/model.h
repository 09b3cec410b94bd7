/* model.h - the llama-family transformer (llama, qwen2, qwen3, phi3: see
 * arch.h): load from GGUF, a KV cache with several sequence slots, and a
 * batched forward pass.
 *
 * Weights stay in the file's mapping in their own type (f32, f16, bf16 and
 * the quantised types of quant.h); matmuls dequantise a tile of rows at a
 * time into scratch and hand it to OpenBLAS, so no f32 copy of the model
 * is ever made.  A fused projection (phi3's attn_qkv, its gate||up) is read
 * as separate weights over its row ranges.
 *
 * Shapes: D = dim, L = layers, H = heads, G = kv heads, hd = head dim
 * (D / H unless the file says otherwise), Dq = H hd, kvd = G hd,
 * F = feed-forward, V = vocab, N = tokens in a batch.
 */
#ifndef PARM_MODEL_H
#define PARM_MODEL_H

#include <stdint.h>
#include "arch.h"
#include "gguf.h"
#include "pblora.h"
#include "tokenizer.h"

/* How a model rotates q and k.  Pair i of a head turns by
 * pos * base^(-2i/hd) / factors[i] (factors NULL: 1).  The pairs are
 * adjacent, (x[2i], x[2i+1]), in ggml's "normal" rope (llama), and half a
 * head apart, (x[i], x[i + hd/2]), in its NEOX rope (qwen2, qwen3, phi3).
 * mscale multiplies both cos and sin (LongRoPE's attention factor; 1
 * otherwise), as ggml_rope_ext does with its attn_factor. */
typedef struct {
	float base, mscale;
	const float *factors;           /* [hd/2] or NULL */
	int neox;
} parm_rope;

typedef struct {
	int dim, n_layers, n_heads, n_kv_heads, ff, n_vocab, n_ctx;
	float rms_eps, rope_theta;
	int arch;                       /* PARM_ARCH_* (0: llama) */
	int head_dim;                   /* 0 (init): dim / n_heads */
	float rope_mscale;              /* rope.scaling.attn_factor (0 or 1: none) */
	int rope_ctx_orig;              /* LongRoPE: past it, the long factors */
} parm_config;

/* The head dim, Dq = H hd and kvd = G hd of a loaded config. */
static inline int parm_cfg_hd(const parm_config *c) { return c->head_dim ? c->head_dim : c->dim / c->n_heads; }
static inline int parm_cfg_qdim(const parm_config *c) { return c->n_heads * parm_cfg_hd(c); }
static inline int parm_cfg_kvdim(const parm_config *c) { return c->n_kv_heads * parm_cfg_hd(c); }

typedef struct {                        /* one weight matrix, [rows][cols] */
	const void *data;
	enum parm_ggml_type type;
	int64_t rows, cols;             /* out, in */
	const void *packed;             /* inference's packed copy (parm_quant_pack) or NULL */
} parm_weight;

/* A layer; bias[p] is projection p's (PARM_N_PROJ order) or NULL, q_norm
 * and k_norm the per-head RMS norms [hd] (qwen3) or NULL.  Vectors are f32
 * (f16/bf16 ones converted at load). */
typedef struct {
	parm_weight attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
	const float *bias[7];
	const float *q_norm, *k_norm;
} parm_layer;

typedef struct parm_model {
	parm_config cfg;
	parm_gguf *file;
	parm_tokenizer *tok;
	const parm_arch *arch;
	parm_weight token_embd, output_norm, output; /* output may alias token_embd */
	const float *output_bias;       /* [V] or NULL */
	parm_layer *layers;
	float **vecs;                   /* f32 copies of f16/bf16 vectors */
	int n_vecs;
	const float *rope_freqs;        /* [hd/2] divisors of rope's angles, or NULL */
	const float *rope_long;         /* LongRoPE's factors past rope_ctx_orig */
	/* A view (parm_model_view) shares the parent's file, tokenizer and
	 * norms and owns only its layer table and the f32 weights put in it. */
	const struct parm_model *parent;
	float **owned;
	int n_owned;
} parm_model;

parm_model *parm_model_load(const char *path);  /* NULL + parm_error */
void parm_model_free(parm_model *m);

/* A KV cache of n_slots independent sequences, each up to n_ctx tokens. */
typedef struct parm_kv parm_kv;
parm_kv *parm_kv_new(const parm_model *m, int n_slots, int n_ctx);
void parm_kv_free(parm_kv *kv);
void parm_kv_clear(parm_kv *kv, int slot);      /* empty one slot */
int parm_kv_len(const parm_kv *kv, int slot);   /* tokens held */
int parm_kv_ctx(const parm_kv *kv);

/* One forward pass over N tokens from any mix of slots.  Token i goes to
 * slot[i] at that slot's next position (tokens of one slot in order).
 * For each i with want[i] != 0 (want NULL: the last token of each slot in
 * the batch), the next-token logits are written to the next row of
 * logits[n_out][V], in batch order.  Returns the number of rows written,
 * or -1 + parm_error (a slot would pass its context: nothing is changed). */
int parm_forward(const parm_model *m, parm_kv *kv, int n, const int *tokens,
		 const int *slot, const uint8_t *want, float *logits);

/* How m rotates q and k in a context of n_ctx positions (LongRoPE picks
 * its factors by it). */
parm_rope parm_model_rope(const parm_model *m, int n_ctx);

/* The projections of a layer an adapter can sit on, in the order of
 * arm.h's enum parm_target (q k v o gate up down). */
#define PARM_N_PROJ 7
const parm_weight *parm_layer_proj(const parm_layer *l, int proj);

/* Unmerged adapters for a forward pass: ad[layer * PARM_N_PROJ + proj]
 * adds s B M A x to that projection's output (p NULL: none), M[r][r] the
 * mix for the current preference (parm_pblora_mix).  O(r (in + out)) a token. */
typedef struct {
	const parm_pblora *p;
	const float *M;
} parm_adapter;

/* parm_forward with adapters (ad NULL: exactly parm_forward). */
int parm_forward_adapted(const parm_model *m, const parm_adapter *ad, parm_kv *kv,
			 int n, const int *tokens, const int *slot,
			 const uint8_t *want, float *logits);

/* The merged path: a view of m (m must outlive it) whose weights are m's
 * until parm_model_set_weight replaces one projection of one layer by an
 * f32 [rows][cols] array of the same shape, which the view then owns.
 * parm_model_free frees a view's own parts only. */
parm_model *parm_model_view(const parm_model *m);
int parm_model_set_weight(parm_model *view, int layer, int proj, float *f32);

/* Grow a cache to n_slots (never shrinks); held slots keep their tokens. */
void parm_kv_grow(parm_kv *kv, int n_slots);

/* Bytes of weights one decode step reads (every matmul, the output
 * included, one embedding row): the memory-bandwidth cost of a token. */
size_t parm_model_bytes_per_token(const parm_model *m);

/* The tokens of one forward pass, queued one by one: the arrays that
 * parm_forward takes, grown as needed.  Set n = 0 to start a new batch. */
typedef struct {
	int n, cap;
	int *tokens, *slot;
	uint8_t *want;
} parm_batch;
void parm_batch_push(parm_batch *b, int tok, int slot, int want);
void parm_batch_free(parm_batch *b);

/* Threads for matmuls and attention (OpenBLAS and our own loops). */
void parm_set_threads(int n);

/* Write a model of cfg->arch with seeded random weights (std 0.02, norms
 * 1, biases and q/k norms random too, so they matter), in the layout
 * llama.cpp's converter writes, and the tokenizer copied from vocab; type
 * applies to the 2-D weights. */
int parm_model_init(const char *out_path, const parm_gguf *vocab,
		    const parm_config *cfg, enum parm_ggml_type type, uint64_t seed);

#endif
