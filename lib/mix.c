/* mix.c - ARM guidance: the mixing maths and the ARM runner (mix.h). */
#include <parm/mix.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <parm/check.h>
#include "mix_internal.h"
#include "kernels.h"
#include <parm/model.h>
#include <parm/util.h>

/* ---- the maths ---- */

void parm_mix_add_guidance(float *acc, const float *lp, const int32_t *ids, int n, float w)
{
	for (int i = 0; i < n; i++)
		acc[i] += w * lp[ids ? ids[i] : i];
}

void parm_mix_row(float *row, const int32_t *ids, int n, const float *const *lp,
	     const float *w, int n_guides)
{
	parm_log_softmax_forward(row, row, 1, n);
	for (int j = 0; j < n_guides; j++)
		parm_mix_add_guidance(row, lp[j], ids, n, w[j]);
	parm_log_softmax_forward(row, row, 1, n);
}

/* ---- the runner ---- */

static int build_merged(parm_guide *g)
{
	const parm_arm *a = g->arm;
	g->view = parm_model_view(a->backbone);
	for (int l = 0; l < a->backbone->cfg.n_layers; l++)
		for (int i = 0; i < a->n_targets; i++) {
			float *f = parm_arm_merged_weight(a, l, a->targets[i], g->alpha);
			if (!f || parm_model_set_weight(g->view, l, a->targets[i], f) < 0)
				return -1;
		}
	return 0;
}

static const char *arm_name(const parm_guide *g)
{
	return g->arm->path ? g->arm->path : "the ARM";
}

static int set_pref(parm_guide *g, const char *pref)
{
	parm_arm *a = g->arm;
	g->alpha = parm_xmalloc(a->k * sizeof *g->alpha);
	if (pref)
		return parm_arm_parse_pref(a, pref, g->alpha);
	if (a->k > 1) {
		char names[512] = "";
		for (int i = 0; i < a->k && strlen(names) < 400; i++)
			snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
				 i ? ", " : "", a->objectives[i]);
		return parm_fail("%s: a PARM with %d objectives (%s) needs a preference, e.g. --pref %s",
				 a->path, a->k, names, a->k == 2 ? "0.5,0.5" : "1,0,...");
	}
	g->alpha[0] = 1;
	return 0;
}

/* Whether every matrix the ARM adapts is stored as floats. */
static int adapted_are_float(const parm_arm *a)
{
	for (int l = 0; l < a->backbone->cfg.n_layers; l++)
		for (int i = 0; i < a->n_targets; i++) {
			enum parm_ggml_type t = parm_target_weight(a->backbone, l, a->targets[i])->type;
			if (t != PARM_GGML_F32 && t != PARM_GGML_F16 && t != PARM_GGML_BF16)
				return 0;
		}
	return 1;
}

static parm_guide *guide_ready(parm_guide *g)
{
	if (g->merged == PARM_MERGE_AUTO)
		g->merged = adapted_are_float(g->arm);
	if (g->merged && build_merged(g) < 0) {
		parm_guide_free(g);
		return NULL;
	}
	if (!g->merged)
		g->ad = parm_arm_adapters(g->arm, g->alpha, &g->M);
	return g;
}

parm_guide *parm_guide_load(const char *path, const char *pref, float w, int merge)
{
	parm_guide *g = parm_xcalloc(1, sizeof *g);
	g->w = w;
	g->merged = merge;
	if (!(g->arm = parm_arm_load(path)) || set_pref(g, pref) < 0) {
		parm_guide_free(g);
		return NULL;
	}
	return guide_ready(g);
}

parm_guide *parm_guide_new(parm_arm *arm, const float *alpha, float w, int merge)
{
	parm_guide *g = parm_xcalloc(1, sizeof *g);
	g->arm = arm;
	g->w = w;
	g->merged = merge;
	g->alpha = parm_xmemdup(alpha, arm->k * sizeof *alpha);
	return guide_ready(g);
}

void parm_guide_free(parm_guide *g)
{
	if (!g)
		return;
	parm_mix_remote_free(g);        /* its parts, if any (all NULL-safe) */
	for (int i = 0; i < g->n_slots; i++)
		free(g->slots[i].prompt);
	free(g->slots);
	parm_kv_free(g->kv);
	parm_model_free(g->view);
	parm_arm_free(g->arm);
	free(g->alpha), free(g->ad), free(g->M);
	parm_batch_free(&g->batch), free(g->logits);
	free(g);
}

const parm_arm *parm_guide_arm(const parm_guide *g) { return g->arm; }
const float *parm_guide_alpha(const parm_guide *g) { return g->alpha; }

int parm_guide_begin(parm_guide *g, const parm_header *h, int ctx)
{
	if (!g->arm)
		return parm_mix_remote_begin(g, h);
	const parm_model *b = g->arm->backbone;
	if (parm_check_tokenizer(h, b->tok, arm_name(g)) < 0)
		return -1;
	g->V = b->cfg.n_vocab;
	if (ctx <= 0 || ctx > b->cfg.n_ctx)
		ctx = b->cfg.n_ctx;
	for (int i = 0; i < g->n_slots; i++)   /* a new stream: start afresh */
		free(g->slots[i].prompt);
	free(g->slots);
	parm_kv_free(g->kv);
	g->kv = parm_kv_new(b, 1, ctx);
	g->n_slots = 1;
	g->slots = parm_xmalloc(sizeof *g->slots);
	g->slots[0] = (struct gslot){ .seq = -1 };
	return g->kv ? 0 : -1;
}

static int find_slot(const parm_guide *g, int seq)
{
	for (int s = 0; s < g->n_slots; s++)
		if (g->slots[s].seq == seq)
			return s;
	return -1;
}

int parm_guide_start(parm_guide *g, int seq, const int *tokens, int n_tokens)
{
	if (seq < 0 || find_slot(g, seq) >= 0)
		return parm_fail("malformed stream: sequence %d started twice", seq);
	int s = find_slot(g, -1);
	if (s < 0) {                    /* all busy: double the cache */
		s = g->n_slots;
		if (g->kv)
			parm_kv_grow(g->kv, 2 * g->n_slots);
		g->slots = parm_xrealloc(g->slots, 2 * g->n_slots * sizeof *g->slots);
		for (int i = g->n_slots; i < 2 * g->n_slots; i++)
			g->slots[i] = (struct gslot){ .seq = -1 };
		g->n_slots *= 2;
	}
	if (g->kv)
		parm_kv_clear(g->kv, s);
	g->slots[s] = (struct gslot){ .seq = seq, .n_prompt = n_tokens, .cap = n_tokens,
		.prompt = parm_xmemdup(tokens, (n_tokens ? n_tokens : 1) * sizeof *tokens) };
	return 0;
}

void parm_guide_end(parm_guide *g, int seq)
{
	int s = find_slot(g, seq);
	if (s < 0)
		return;
	free(g->slots[s].prompt);
	g->slots[s] = (struct gslot){ .seq = -1 };
	if (g->kv)
		parm_kv_clear(g->kv, s);
}

/* Queue what one step's sequence has not yet shown the ARM: its prompt
 * (first round) and the step's token. */
static int queue_step(parm_guide *g, const parm_step *st)
{
	int s = find_slot(g, st->seq);
	if (s < 0)
		return parm_fail("malformed stream: step for sequence %d, which is not in flight",
				 st->seq);
	struct gslot *sl = &g->slots[s];
	int add = (sl->prompt ? sl->n_prompt : 0) + (st->tok >= 0);
	if (add == 0)
		return parm_fail("malformed stream: sequence %d has a step with no new token", st->seq);
	if (parm_kv_len(g->kv, s) + add > parm_kv_ctx(g->kv))
		return parm_fail("%s: sequence %d passes the ARM's context of %d tokens "
				 "(shorten the prompts or --max-tokens)",
				 arm_name(g), st->seq, parm_kv_ctx(g->kv));
	for (int i = 0; sl->prompt && i < sl->n_prompt; i++)
		parm_batch_push(&g->batch, sl->prompt[i], s, --add == 0);
	if (st->tok >= 0)
		parm_batch_push(&g->batch, st->tok, s, 1);
	free(sl->prompt);
	sl->prompt = NULL;
	return 0;
}

int parm_guide_round(parm_guide *g, int n_steps, const parm_step *steps, float *lp)
{
	if (!g->arm)
		return parm_mix_remote_round(g, n_steps, steps, lp);
	parm_batch *b = &g->batch;
	const parm_model *m = g->view ? g->view : g->arm->backbone;
	b->n = 0;
	for (int i = 0; i < n_steps; i++) {
		for (int j = 0; j < i; j++)
			if (steps[j].seq == steps[i].seq)
				return parm_fail("malformed stream: sequence %d twice in a round",
						 steps[i].seq);
		if (queue_step(g, &steps[i]) < 0)
			return -1;
	}
	int rows = parm_forward_adapted(m, g->ad, g->kv, b->n, b->tokens, b->slot, b->want, lp);
	if (rows < 0)
		return -1;
	for (int i = 0; i < rows; i++)
		parm_log_softmax_forward(lp + (size_t)i * g->V, lp + (size_t)i * g->V, 1, g->V);
	return 0;
}

/* ---- the stage ---- */

/* A float as JSON with no binary noise: 0.3f prints as 0.3. */
static json_t *json_float(float x)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%.7g", x);
	return json_real(strtod(buf, NULL));
}

static json_t *guide_json(const parm_guide *g, json_t *j)
{
	json_t *pref = json_array();
	int k = g->arm ? g->arm->k : g->k;
	for (int i = 0; i < k; i++)
		json_array_append_new(pref, json_float(g->alpha[i]));
	json_t *obj = json_array();
	for (int i = 0; i < k; i++)
		json_array_append_new(obj, json_string(g->arm ? g->arm->objectives[i] : g->names[i]));
	if (g->arm)
		json_object_set_new(j, "arm", json_string(g->arm->path ? g->arm->path : ""));
	else
		parm_mix_remote_json(g, j);
	json_object_set_new(j, "objectives", obj);
	json_object_set_new(j, "pref", pref);
	json_object_set_new(j, "weight", json_float(g->w));
	if (g->arm)
		json_object_set_new(j, "merged", json_boolean(g->merged));
	return j;
}

char *parm_mix_stage_json(parm_guide *const *g, int n)
{
	json_t *j = json_pack("{s:s}", "stage", "parm-mix");
	if (n == 1) {
		guide_json(g[0], j);
	} else {
		json_t *arms = json_array();
		for (int i = 0; i < n; i++)
			json_array_append_new(arms, guide_json(g[i], json_object()));
		json_object_set_new(j, "arms", arms);
	}
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7));
	json_decref(j);
	return s;
}

int parm_mix_round(parm_guide *const *g, int n_guides, parm_record *rec, int V, float *lp)
{
	const float *rows[n_guides > 0 ? n_guides : 1];
	float w[n_guides > 0 ? n_guides : 1];
	int active = 0;
	size_t stride = (size_t)rec->n_steps * V;
	for (int j = 0; j < n_guides; j++) {
		if (g[j]->w == 0)       /* contributes nothing: never run */
			continue;
		if (parm_guide_round(g[j], rec->n_steps, rec->steps, lp + active * stride) < 0)
			return -1;
		w[active++] = g[j]->w;
	}
	if (!active)
		return 0;
	for (int i = 0; i < rec->n_steps; i++) {
		parm_step *st = &rec->steps[i];
		for (int j = 0; j < active; j++)
			rows[j] = lp + j * stride + (size_t)i * V;
		parm_mix_row(st->logits, st->sparse ? st->ids : NULL, st->sparse ? st->k : V,
			rows, w, active);
	}
	return 0;
}
