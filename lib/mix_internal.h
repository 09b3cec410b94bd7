/* mix_internal.h - the guide's insides, shared by mix.c (an ARM run
 * here) and mix_remote.c (an ARM on a server). */
#ifndef PARM_MIX_INTERNAL_H
#define PARM_MIX_INTERNAL_H

#include <parm/mix.h>
#include <parm/remote.h>
#include <jansson.h>

struct gslot {                  /* one sequence's place in the KV cache */
	int seq;                /* -1: free */
	int *prompt, n_prompt;  /* to feed in its first round; NULL after
				   (remote: the whole sequence so far) */
	int cap;                /* remote: room in prompt */
};

struct parm_guide {
	parm_arm *arm;
	float w, *alpha;
	int merged;
	parm_model *view;       /* merged: the backbone with dW(alpha) added */
	parm_adapter *ad;       /* unmerged: [n_layers * PARM_N_PROJ] */
	float *M;               /* unmerged: the mixes the adapters point at */
	parm_kv *kv;
	int V;
	struct gslot *slots;
	int n_slots;
	parm_batch batch;           /* one round's tokens */
	float *logits;
	size_t logits_cap;
	/* remote (mix_remote.c): arm is NULL */
	parm_remote *remote;
	parm_gguf *vocab_file;
	parm_tokenizer *tok;    /* the ARM's vocabulary, from vocab_file */
	int k;                  /* objectives: alpha's length */
	char **names;           /* [k] */
	char *vocab_path;
};

/* mix_remote.c's parts of the guide's life, called by mix.c's when
 * g->remote. */
int parm_mix_remote_begin(parm_guide *g, const parm_header *h);
int parm_mix_remote_round(parm_guide *g, int n_steps, const parm_step *steps, float *lp);
void parm_mix_remote_free(parm_guide *g);
json_t *parm_mix_remote_json(const parm_guide *g, json_t *j);


#endif
