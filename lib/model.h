/* model.h - the llama-architecture transformer: load from GGUF, a KV cache
 * with several sequence slots, and a batched forward pass.
 *
 * Weights stay in the file's mapping in their own type (f32, f16, bf16,
 * q8_0, q4_0); matmuls dequantise a tile of rows at a time into scratch and
 * hand it to OpenBLAS, so no f32 copy of the model is ever made.
 *
 * Shapes: D = dim, L = layers, H = heads, G = kv heads, hd = D / H,
 * F = feed-forward, V = vocab, N = tokens in a batch.
 */
#ifndef PARM_MODEL_H
#define PARM_MODEL_H

#include <stdint.h>
#include "gguf.h"
#include "pblora.h"
#include "tokenizer.h"

typedef struct {
	int dim, n_layers, n_heads, n_kv_heads, ff, n_vocab, n_ctx;
	float rms_eps, rope_theta;
} parm_config;

typedef struct {                        /* one weight matrix, [rows][cols] */
	const void *data;
	enum ggml_type type;
	int64_t rows, cols;             /* out, in */
} parm_weight;

typedef struct {
	parm_weight attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
} parm_layer;

typedef struct parm_model {
	parm_config cfg;
	gguf_file *file;
	parm_tokenizer *tok;
	parm_weight token_embd, output_norm, output; /* output may alias token_embd */
	parm_layer *layers;
	float *norms;                   /* f32 copies of f16/bf16 norm vectors */
	const float *rope_freqs;        /* [hd/2] divisors of rope's angles, or NULL */
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

/* The projections of a layer an adapter can sit on, in the order of
 * arm.h's enum parm_target (q k v o gate up down). */
#define PARM_N_PROJ 7
const parm_weight *parm_layer_proj(const parm_layer *l, int proj);

/* Unmerged adapters for a forward pass: ad[layer * PARM_N_PROJ + proj]
 * adds s B M A x to that projection's output (p NULL: none), M[r][r] the
 * mix for the current preference (pblora_mix).  O(r (in + out)) a token. */
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
int parm_kv_slots(const parm_kv *kv);

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

/* Write a llama model with seeded random weights (std 0.02, norms 1) and
 * the tokenizer copied from vocab; type applies to the 2-D weights. */
int parm_model_init(const char *out_path, const gguf_file *vocab,
		    const parm_config *cfg, enum ggml_type type, uint64_t seed);

#endif
