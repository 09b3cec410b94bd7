/* train.h - a trainable view of a parm_model: forward and backward over a
 * batch of B sequences of up to T tokens, with the parameters and their
 * gradients in two flat arrays an optimiser can walk.
 *
 * Two kinds:
 *   full      every weight copied to f32 and trained (embeddings, norms,
 *             matrices, output; a tied output shares the embedding);
 *   adapters  the backbone frozen in place (its parm_weight data, any type)
 *             and PBLoRA adapters (pblora.h) on chosen matrices of every
 *             layer; params[] holds only the adapters.
 *
 * The batch is packed: sequence b contributes its lengths[b] tokens, so
 * padding costs nothing.  forward() returns logp[b][t] = log p(token t+1 |
 * tokens <= t) and keeps what backward() needs: per layer the residual
 * stream, the normed inputs, q/k/v, the attention output and its row
 * log-sum-exps (probabilities are recomputed, never stored as T x T),
 * the FFN gate and up, and the adapters' A x and M A x.  Logits are never
 * held for the whole batch: they are made a chunk of rows at a time in
 * forward (for the log-probs) and made again in backward (for the
 * gradient), which costs one more output matmul and saves N x V floats.
 * A frozen output (adapters) needs only dx = g (W[target] - P W) per row:
 * while training is on, the forward keeps P W [N][D] and the backward
 * makes no logits (the forward's one extra matmul replaces two).
 */
#ifndef PARM_TRAIN_H
#define PARM_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"
#include "pblora.h"

/* The matrices of a layer an adapter can sit on (bit i of a target mask):
 * arm.h's enum parm_target, parm_target_name and parm_target_from_name
 * (one definition for both, so a program can train and save ARMs), under
 * the short names this file uses. */
#include "arm.h"
enum {
	PARM_T_Q = PARM_T_ATTN_Q, PARM_T_K = PARM_T_ATTN_K, PARM_T_V = PARM_T_ATTN_V,
	PARM_T_O = PARM_T_ATTN_OUTPUT, PARM_T_GATE = PARM_T_FFN_GATE,
	PARM_T_UP = PARM_T_FFN_UP, PARM_T_DOWN = PARM_T_FFN_DOWN, PARM_T_COUNT = PARM_N_TARGETS
};

typedef struct {
	int k, r1, r2;          /* objectives and ranks (official: 4, 4) */
	float lora_alpha;       /* scale = lora_alpha / r2 (official: 8) */
	float dropout;          /* on the adapter input while training (0.05) */
	unsigned targets;       /* mask of 1 << PARM_T_*; 0 means the default */
	uint64_t seed;          /* initialisation and dropout masks */
} parm_adapter_opts;
void parm_adapter_opts_default(parm_adapter_opts *o, int k);   /* the official ones */

/* One named tensor of params[] and its gradient in grads[]. */
typedef struct {
	char name[64];          /* GGUF name ("blk.0.attn_q.weight"), or for an
				 * adapter "blk.0.attn_q.pblora_A" (_B, _W1, _W2) */
	float *data, *grad;
	size_t count;
	int n_dims;
	int64_t ne[2];          /* ne[0] = columns, as GGUF */
	int decay;              /* 1: matrices and adapters; 0: norm vectors */
} parm_train_tensor;

typedef struct parm_trainer parm_trainer;

/* Capacity: up to max_seqs sequences of up to max_len tokens each.  The
 * model must outlive the trainer (adapters read its weights in place). */
parm_trainer *parm_train_new_full(const parm_model *m, int max_seqs, int max_len);
parm_trainer *parm_train_new_adapters(const parm_model *m, const parm_adapter_opts *o,
				      int max_seqs, int max_len);
/* The adapters kind over an ARM (arm.h) as its one store: params[] is
 * arm->params, so what the trainer trains is the ARM, with no copy either
 * way.  o gives dropout and seed (its k, ranks, scale and targets are the
 * ARM's); fresh initialises the adapters as parm_train_new_adapters does,
 * else the ARM's values are trained on or evaluated.  The ARM must outlive
 * the trainer. */
parm_trainer *parm_train_new_on_arm(parm_arm *arm, const parm_adapter_opts *o, int max_seqs,
				    int max_len, int fresh);
void parm_train_free(parm_trainer *t);

size_t parm_train_n_params(const parm_trainer *t);
float *parm_train_params(parm_trainer *t);
float *parm_train_grads(parm_trainer *t);
int parm_train_n_tensors(const parm_trainer *t);
const parm_train_tensor *parm_train_tensor_at(const parm_trainer *t, int i);
void parm_train_zero_grad(parm_trainer *t);

/* Dropout is applied only while training is on (default on). */
void parm_train_set_training(parm_trainer *t, int on);
/* Dropout masks depend on (seed, a count of forward passes).  A training
 * loop sets the count before each training forward from its own position
 * (step, micro-batch), so a resumed run draws the masks an uninterrupted
 * run drew, whatever evaluations ran in between. */
void parm_train_set_forward_count(parm_trainer *t, uint64_t n);
/* alpha[k] for every adapter, used from the next forward on (default: the
 * uniform vector 1/k).  -1 + parm_error if the trainer has no adapters. */
int parm_train_set_pref(parm_trainer *t, const float *alpha);
/* The adapter on (layer, target), NULL if none (for writing ARM files). */
parm_pblora *parm_train_adapter(parm_trainer *t, int layer, int target);

/* tokens[B][T] (row b's first lengths[b] are used, 1 <= lengths[b] <= T),
 * want[B][T-1] (NULL: every position) says which log-probs are needed;
 * logp[B][T-1] gets them, 0 elsewhere.  -1 + parm_error on a bad batch. */
int parm_train_forward(parm_trainer *t, const int *tokens, const int *lengths,
		       int B, int T, const uint8_t *want, float *logp);
/* Gradients of the last forward from dlogp[B][T-1] (positions not wanted
 * or beyond a length are ignored) ACCUMULATE into grads. */
void parm_train_backward(parm_trainer *t, const float *dlogp);
/* Tokens of the last forward (sum of lengths) and their model FLOPs for
 * forward + backward (2 per multiply-add; the logits' recomputation and
 * attention included), for throughput reports. */
int64_t parm_train_tokens(const parm_trainer *t);
double parm_train_flops(const parm_trainer *t);

/* Full kind: write the trained model as a GGUF llama model, metadata and
 * tokenizer copied from the source file, 2-D weights in type (f32, f16,
 * bf16, q8_0, q4_0), norms in f32.  -1 + parm_error. */
int parm_train_save_model(const parm_trainer *t, const char *path, enum parm_ggml_type type);

/* ---- losses (train_loss.c): each returns the loss and ADDS its gradient
 * wrt logp[B][T-1] into dlogp[B][T-1] (which may be NULL) ---- */

/* Mean next-token cross-entropy over the positions with mask[b][t] != 0
 * (mask NULL: every position t + 1 < lengths[b]).  *count gets the number
 * of positions (may be NULL); no positions: loss 0. */
float parm_loss_lm(float *dlogp, const float *logp, const uint8_t *mask,
		   const int *lengths, int B, int T, int *count);

/* The response's summed log-prob: S[b] = sum of logp[b][t] over t + 1 in
 * [prompt_len[b], lengths[b]) (the response tokens), no length
 * normalisation.  response_mask fills want/mask[B][T-1] for those. */
void parm_seq_scores(float *S, const float *logp, const int *prompt_len,
		     const int *lengths, int B, int T);
void parm_response_mask(uint8_t *mask, const int *prompt_len, const int *lengths,
			int B, int T);

/* The pair loss L = -log sigmoid(beta (Sw - Sl)); *dSw, *dSl its gradient. */
double parm_pair_loss(double Sw, double Sl, double beta, double *dSw, double *dSl);

/* PARM's loss over P pairs of a batch laid out as sequences 2p and 2p+1
 * (the pair's response 0 and 1, same prompt): label[p][i] in {0, 1} names
 * the winning response for objective i, or -1 when the pair has no label
 * for it; then that objective's term skips the pair, its mean runs over
 * the pairs that have a label, and an objective no pair labels adds 0.
 *   loss = sum_i alpha[i] mean_{p labelled for i} L_i(p)
 * loss_obj[k] (may be NULL) gets each mean L_i, correct[k] (may be NULL)
 * the number of pairs where Sw > Sl, labelled[k] (may be NULL) the pairs
 * labelled.  The gradient flows into the response positions of dlogp. */
double parm_arm_loss(float *dlogp, const float *logp, const int *prompt_len,
		     const int *lengths, int P, int T, const int8_t *label, int k,
		     const float *alpha, double beta, double *loss_obj, int *correct,
		     int *labelled);

#endif
