/* mix_remote.c - a guide whose ARM runs on a server (mix.h,
 * parm_guide_remote): each step's sequence, whole, is sent to the server,
 * which answers the ARM's top-K next-token log-probabilities. */
#include "mix_internal.h"
#include <parm/check.h>
#include <parm/util.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_vocab(parm_guide *g, const char *path)
{
	g->vocab_path = parm_xstrdup(path);
	if (!(g->vocab_file = parm_gguf_open(path)) || !(g->tok = parm_tokenizer_load(g->vocab_file)))
		return -1;
	g->V = parm_tok_n_vocab(g->tok);
	return 0;
}

/* The objectives: the vocabulary file's, when it is the ARM (its
 * parm.objectives), else objective1 ... for the k numbers of pref. */
static int objectives(parm_guide *g, const char *pref)
{
	enum parm_gguf_vtype t;
	uint64_t n;
	if (parm_gguf_find_key(g->vocab_file, "parm.objectives") >= 0) {
		if (parm_gguf_get_arr(g->vocab_file, "parm.objectives", &t, &n) < 0 || n < 1 || n > 64)
			return parm_fail("%s: parm.objectives is not a list of names", g->vocab_path);
		g->k = (int)n;
		g->names = parm_xcalloc(n, sizeof *g->names);
		for (uint64_t i = 0; i < n; i++) {
			const char *s;
			size_t len;
			if (parm_gguf_arr_str(g->vocab_file, "parm.objectives", i, &s, &len) < 0)
				return -1;
			g->names[i] = parm_xmemdup(s, len + 1);
			g->names[i][len] = 0;
		}
		return 0;
	}
	g->k = 1;
	for (const char *p = pref; p && *p; p++)
		g->k += *p == ',';
	g->names = parm_xcalloc(g->k, sizeof *g->names);
	for (int i = 0; i < g->k; i++) {
		char buf[32];
		snprintf(buf, sizeof buf, "objective%d", i + 1);
		g->names[i] = parm_xstrdup(buf);
	}
	return 0;
}

static int set_remote_pref(parm_guide *g, const char *pref)
{
	g->alpha = parm_xmalloc((size_t)g->k * sizeof *g->alpha);
	if (pref)
		return parm_parse_pref(pref, g->k, (const char *const *)g->names, g->alpha);
	if (g->k > 1)
		return parm_fail("%s: a PARM with %d objectives needs a preference, e.g. --pref %s",
				 g->vocab_path, g->k, g->k == 2 ? "0.5,0.5" : "1,0,...");
	g->alpha[0] = 1;
	return 0;
}

/* The server, asked with the LoRA scales 1, alpha_1, ... (llamacpp). */
static int connect_remote(parm_guide *g, parm_remote_opts *o)
{
	float *scale = parm_xmalloc((size_t)(g->k + 1) * sizeof *scale);  /* copied by the remote */
	scale[0] = 1;
	memcpy(scale + 1, g->alpha, (size_t)g->k * sizeof *scale);
	o->lora = o->api == PARM_API_LLAMACPP ? scale : NULL;
	o->n_lora = o->api == PARM_API_LLAMACPP ? g->k + 1 : 0;
	o->tok = g->tok;
	int rc = (g->remote = parm_remote_new(o)) ? 0 : -1;
	if (rc == 0)
		rc = parm_remote_check_tokenizer(g->remote, g->tok, g->vocab_path);
	o->lora = NULL;
	o->n_lora = 0;
	free(scale);
	return rc;
}

parm_guide *parm_guide_remote(parm_remote_opts *o, const char *vocab_path, const char *pref,
			      float w)
{
	parm_guide *g = parm_xcalloc(1, sizeof *g);
	g->w = w;
	if (load_vocab(g, vocab_path) < 0 || objectives(g, pref) < 0 ||
	    set_remote_pref(g, pref) < 0 || connect_remote(g, o) < 0) {
		parm_guide_free(g);
		return NULL;
	}
	return g;
}

void parm_mix_remote_free(parm_guide *g)
{
	parm_remote_free(g->remote);
	if (g->tok)
		parm_tokenizer_free(g->tok);
	parm_gguf_close(g->vocab_file);
	free(g->vocab_path);
	for (int i = 0; g->names && i < g->k; i++)
		free(g->names[i]);
	free(g->names);
}

int parm_mix_remote_begin(parm_guide *g, const parm_header *h)
{
	if (parm_check_tokenizer(h, g->tok, g->vocab_path) < 0)
		return -1;
	for (int i = 0; i < g->n_slots; i++)   /* a new stream: start afresh */
		free(g->slots[i].prompt);
	free(g->slots);
	g->n_slots = 1;
	g->slots = parm_xmalloc(sizeof *g->slots);
	g->slots[0] = (struct gslot){ .seq = -1 };
	return 0;
}

/* Append the step's token to its sequence: the sequence so far, whole. */
static struct gslot *extend(parm_guide *g, const parm_step *st)
{
	struct gslot *sl = NULL;
	for (int s = 0; s < g->n_slots && !sl; s++)
		if (g->slots[s].seq == st->seq)
			sl = &g->slots[s];
	if (!sl) {
		parm_fail("malformed stream: step for sequence %d, which is not in flight", st->seq);
		return NULL;
	}
	if (st->tok < 0)
		return sl;
	if (sl->n_prompt == sl->cap)
		sl->prompt = parm_xrealloc(sl->prompt, (size_t)(sl->cap = sl->cap ? 2 * sl->cap : 64) *
				      sizeof *sl->prompt);
	sl->prompt[sl->n_prompt++] = st->tok;
	return sl;
}

/* row[V]: the server's top-K log-probabilities at their ids, and for the
 * rest of the vocabulary the mass left spread evenly, never above the
 * K-th (so a token the server did not list is guided down, not banned). */
static void fill_row(float *row, int V, const parm_step *top)
{
	double left = 1, least = 0;
	for (int j = 0; j < top->k; j++) {
		left -= exp(top->logits[j]);
		least = j == 0 || top->logits[j] < least ? top->logits[j] : least;
	}
	double rest = V > top->k ? log(fmax(left, DBL_MIN) / (V - top->k)) : least;
	rest = top->k && rest > least ? least : rest;
	for (int i = 0; i < V; i++)
		row[i] = (float)rest;
	for (int j = 0; j < top->k; j++)
		row[top->ids[j]] = top->logits[j];
}

int parm_mix_remote_round(parm_guide *g, int n_steps, const parm_step *steps, float *lp)
{
	const int *seqs[n_steps > 0 ? n_steps : 1];
	int len[n_steps > 0 ? n_steps : 1];
	parm_step top[n_steps > 0 ? n_steps : 1];
	int ctx = parm_remote_ctx(g->remote);
	for (int i = 0; i < n_steps; i++) {
		struct gslot *sl = extend(g, &steps[i]);
		if (!sl)
			return -1;
		if (ctx > 0 && sl->n_prompt >= ctx)
			return parm_fail("%s: sequence %d passes the server's context of %d tokens "
					 "(shorten the prompts or --max-tokens)",
					 parm_remote_url(g->remote), steps[i].seq, ctx);
		seqs[i] = sl->prompt;
		len[i] = sl->n_prompt;
	}
	for (int i = 0; i < n_steps; ) {       /* as many at once as the server's slots */
		int n = parm_remote_slots(g->remote);
		n = n_steps - i < n ? n_steps - i : n;
		if (parm_remote_step(g->remote, n, seqs + i, len + i, g->V, top) < 0)
			return -1;
		for (int j = 0; j < n; j++)
			fill_row(lp + (size_t)(i + j) * g->V, g->V, &top[j]);
		i += n;
	}
	return 0;
}

json_t *parm_mix_remote_json(const parm_guide *g, json_t *j)
{
	json_object_set_new(j, "remote", json_string(parm_remote_url(g->remote)));
	json_object_set_new(j, "vocab", json_string(g->vocab_path));
	return j;
}
