/* mix.h - ARM guidance on a logit stream (parm-mix): the mixing maths and
 * the runner that keeps an ARM's KV cache in step with the stream.
 *
 * For each step of a round, with in the logits that came down the pipe
 * and a_j = log_softmax(ARM_j(. | context, alpha_j)) over the full
 * vocabulary:
 *
 *   out = log_softmax(log_softmax(in) + sum_j w_j a_j)
 *
 * The output is renormalised log-probabilities, so chaining stages (one
 * ARM each) gives the same rows as one stage with all of them: the
 * inner log_softmax only shifts a row by a constant.  A sparse step
 * (top-K ids) is guided on its K candidates only, a_j gathered at the
 * ids, and the softmax runs over the K; it stays sparse.  -inf entries
 * stay -inf.
 *
 * A guide runs one ARM: merged (dW(alpha) added into f32 copies of the
 * adapted matrices once, so a step is a plain forward) or unmerged (the
 * adapters run beside the frozen weights, O(r) a token).  Each sequence
 * gets a KV slot at START; its prompt runs through the ARM in the round
 * it first appears, then each step's token.
 */
#ifndef PARM_MIX_H
#define PARM_MIX_H

#include <stdint.h>
#include "arm.h"
#include "remote.h"
#include "stream.h"

/* acc[n] += w * lp[ids[j]] (ids NULL: lp[j]). */
void parm_mix_add_guidance(float *acc, const float *lp, const int32_t *ids, int n, float w);
/* The whole formula above for one step: row[n] in place (ids NULL:
 * dense, n = V), lp[n_guides] the ARMs' log-prob rows over the full
 * vocabulary, w[n_guides]. */
void parm_mix_row(float *row, const int32_t *ids, int n, const float *const *lp,
	     const float *w, int n_guides);

typedef struct parm_guide parm_guide;

/* merge: 1 merged, 0 unmerged, PARM_MERGE_AUTO merged when every adapted
 * matrix of the backbone is f32, f16 or bf16 (a merged f32 copy of a
 * quantised matrix costs more memory and bandwidth than the adapters). */
#define PARM_MERGE_AUTO (-1)

/* Load an ARM file and get it ready at preference pref ("0.7,0.3",
 * "helpful=0.7,harmless=0.3"; NULL allowed only when k = 1, meaning (1)),
 * weight w.  NULL + parm_error. */
parm_guide *parm_guide_load(const char *path, const char *pref, float w, int merge);
/* The same for an ARM in memory, which the guide then owns (freed with
 * it, also on failure), at alpha[k] (not checked). */
parm_guide *parm_guide_new(parm_arm *arm, const float *alpha, float w, int merge);
/* A guide whose ARM is served (remote.h: o names the server, o->top_k
 * the log-probabilities asked per step, o->n_slots the requests at once).
 * With llamacpp the server holds the k + 1 adapters parm-train export
 * wrote, loaded in that order (llama-server --lora), and each request
 * gives them the scales 1, alpha_1, ..., alpha_k; with openai, o->model
 * names the adapter (one merged at alpha).  The ARM's row for a step is
 * the server's top-K, the rest of the vocabulary sharing the mass left
 * evenly, never above the K-th: a candidate of the base outside them is
 * guided down, not banned.  vocab_path: a GGUF holding the ARM's
 * tokenizer, which the server's and the stream's must match; when it is
 * the ARM file, its objectives name pref's entries (as parm_guide_load),
 * else pref is k numbers (NULL: k = 1).  o's lora and tok are set, used
 * and reset.  NULL + parm_error. */
parm_guide *parm_guide_remote(parm_remote_opts *o, const char *vocab_path, const char *pref,
			      float w);
void parm_guide_free(parm_guide *g);
const parm_arm *parm_guide_arm(const parm_guide *g);    /* NULL: remote */
const float *parm_guide_alpha(const parm_guide *g);     /* [k] */

/* The stream's tokenizer must be the ARM's; ctx (0: the ARM's) bounds
 * the KV cache.  Call after the header; calling again (a new stream)
 * drops every sequence. */
int parm_guide_begin(parm_guide *g, const parm_header *h, int ctx);
/* A sequence joins (START) / leaves (END). */
int parm_guide_start(parm_guide *g, int seq, const int *tokens, int n_tokens);
void parm_guide_end(parm_guide *g, int seq);
/* One batched forward for the steps of a round: lp[n_steps][V] gets
 * log_softmax of the ARM's next-token logits for each step's sequence,
 * after its prompt (first round) and the step's tok.  -1 + parm_error
 * (unknown sequence, a sequence past the ARM's context, ...). */
int parm_guide_round(parm_guide *g, int n_steps, const parm_step *steps, float *lp);

/* The stage's provenance object (malloc'd JSON text):
 * one guide: {"stage":"parm-mix","arm":..,"objectives":[..],"pref":[..],
 * "weight":W,"merged":b}; several: {"stage":"parm-mix","arms":[{...}]}. */
char *parm_mix_stage_json(parm_guide *const *g, int n);

/* Guide every step of a ROUND record in place with all the guides
 * (weights all 0: nothing changes, no ARM runs).  lp is scratch of
 * n_guides * n_steps * V floats.  -1 + parm_error. */
int parm_mix_round(parm_guide *const *g, int n_guides, parm_record *rec, int V, float *lp);

#endif
