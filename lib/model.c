/* model.c - the llama transformer: load from GGUF, the KV cache, the
 * batched forward pass, and random initialisation.  Legend in model.h. */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "rng.h"
#include "util.h"

/* ---- loading ---- */

/* An integer hyper-parameter; def < 0 means the key is required. */
static int hparam_int(const gguf_file *g, const char *key, int64_t def, int *out)
{
	int64_t v;
	if (gguf_find_key(g, key) < 0) {
		if (def < 0)
			return parm_fail("%s: missing key %s", gguf_path(g), key);
		*out = (int)def;
		return 0;
	}
	if (gguf_get_int(g, key, &v) < 0)
		return -1;
	if (v <= 0 || v > (1 << 30))
		return parm_fail("%s: %s = %lld is out of range", gguf_path(g), key, (long long)v);
	*out = (int)v;
	return 0;
}

static int hparam_float(const gguf_file *g, const char *key, double def, float *out)
{
	double v = def;
	if (gguf_find_key(g, key) >= 0 && gguf_get_float(g, key, &v) < 0)
		return -1;
	if (!(v > 0) || !isfinite(v))
		return parm_fail("%s: %s = %g is out of range", gguf_path(g), key, v);
	*out = (float)v;
	return 0;
}

static int check_architecture(const gguf_file *g)
{
	const char *arch;
	size_t len;
	if (gguf_get_str(g, "general.architecture", &arch, &len) < 0)
		return parm_fail("%s: no general.architecture", gguf_path(g));
	if (len != 5 || memcmp(arch, "llama", 5))
		return parm_fail("%s: architecture '%.*s' is not supported (llama only)",
				 gguf_path(g), (int)len, arch);
	return 0;
}

/* Keys that change the maths and are not implemented: refused by name,
 * never ignored (llama.cpp applies them; parm's logits would differ). */
static int check_unimplemented_keys(const gguf_file *g)
{
	const char *s;
	size_t len;
	double f;
	int64_t n;
	static const char *const factors[] = { "llama.rope.scaling.factor", "llama.rope.scale_linear" };
	for (size_t i = 0; i < sizeof factors / sizeof *factors; i++)
		if (gguf_get_float(g, factors[i], &f) == 0 && f != 0 && f != 1)
			return parm_fail("%s: %s = %g: rope scaling is not implemented",
					 gguf_path(g), factors[i], f);
	if (gguf_get_str(g, "llama.rope.scaling.type", &s, &len) == 0 &&
	    strcmp(s, "none") && strcmp(s, "linear"))
		return parm_fail("%s: llama.rope.scaling.type = %s is not implemented", gguf_path(g), s);
	if (gguf_get_int(g, "llama.expert_count", &n) == 0 && n > 0)
		return parm_fail("%s: llama.expert_count = %lld: mixture-of-experts layers are not "
				 "implemented", gguf_path(g), (long long)n);
	return 0;
}

static int read_config(parm_config *c, const gguf_file *g)
{
	if (check_architecture(g) < 0 ||
	    hparam_int(g, "llama.embedding_length", -1, &c->dim) < 0 ||
	    hparam_int(g, "llama.block_count", -1, &c->n_layers) < 0 ||
	    hparam_int(g, "llama.attention.head_count", -1, &c->n_heads) < 0 ||
	    hparam_int(g, "llama.attention.head_count_kv", c->n_heads, &c->n_kv_heads) < 0 ||
	    hparam_int(g, "llama.feed_forward_length", -1, &c->ff) < 0 ||
	    hparam_int(g, "llama.context_length", -1, &c->n_ctx) < 0 ||
	    hparam_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5, &c->rms_eps) < 0 ||
	    hparam_float(g, "llama.rope.freq_base", 10000, &c->rope_theta) < 0)
		return -1;
	if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2)
		return parm_fail("%s: embedding_length %d, head_count %d and head_count_kv %d do not fit together",
				 gguf_path(g), c->dim, c->n_heads, c->n_kv_heads);
	int rope_dims, hd = c->dim / c->n_heads;
	if (hparam_int(g, "llama.rope.dimension_count", hd, &rope_dims) < 0)
		return -1;
	if (rope_dims != hd)
		return parm_fail("%s: llama.rope.dimension_count %d differs from the head dim %d (partial rope is not supported)",
				 gguf_path(g), rope_dims, hd);
	int key_len, value_len;
	if (hparam_int(g, "llama.attention.key_length", hd, &key_len) < 0 ||
	    hparam_int(g, "llama.attention.value_length", hd, &value_len) < 0)
		return -1;
	if (key_len != hd || value_len != hd)
		return parm_fail("%s: attention key/value length %d/%d differs from the head dim %d "
				 "(not implemented)", gguf_path(g), key_len, value_len, hd);
	return check_unimplemented_keys(g);
}

/* A tensor of the given shape: rows 0 means a 1-D vector of cols. */
static int find_weight(parm_weight *w, const gguf_file *g, const char *name,
		       int64_t cols, int64_t rows)
{
	const gguf_tensor *t = gguf_find_tensor(g, name);
	int want_dims = rows ? 2 : 1;
	if (!t)
		return parm_fail("%s: tensor '%s' is missing", gguf_path(g), name);
	if (t->n_dims != want_dims || t->ne[0] != cols || (rows && t->ne[1] != rows))
		return parm_fail("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]",
				 gguf_path(g), name, (long long)t->ne[0],
				 (long long)(t->n_dims > 1 ? t->ne[1] : 1),
				 (long long)cols, (long long)(rows ? rows : 1));
	int vec_ok = t->type == GGML_F32 || t->type == GGML_F16 || t->type == GGML_BF16;
	if (rows && !quant_type_computed(t->type))
		return parm_fail("%s: tensor '%s' has type %s, which parm does not compute "
				 "(it does %s)", gguf_path(g), name, ggml_type_name(t->type),
				 quant_types_computed());
	if (!rows && !vec_ok)
		return parm_fail("%s: tensor '%s' has type %s; a vector must be f32, f16 or bf16",
				 gguf_path(g), name, ggml_type_name(t->type));
	*w = (parm_weight){ t->data, t->type, rows ? rows : 1, cols };
	return 0;
}

static const char *const layer_tensors[] = {
	"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
	"ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
};

/* Layer i's tensors, in layer_tensors' order. */
static int find_layer(parm_layer *l, const gguf_file *g, int i, const parm_config *c)
{
	int hd = c->dim / c->n_heads, kvd = c->n_kv_heads * hd;
	struct { parm_weight *w; int64_t cols, rows; } want[] = {
		{ &l->attn_norm, c->dim, 0 }, { &l->wq, c->dim, c->dim }, { &l->wk, c->dim, kvd },
		{ &l->wv, c->dim, kvd }, { &l->wo, c->dim, c->dim }, { &l->ffn_norm, c->dim, 0 },
		{ &l->w_gate, c->dim, c->ff }, { &l->w_up, c->dim, c->ff }, { &l->w_down, c->ff, c->dim },
	};
	_Static_assert(sizeof want / sizeof *want == sizeof layer_tensors / sizeof *layer_tensors,
		       "one name per weight");
	char name[96];
	for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
		snprintf(name, sizeof name, "blk.%d.%s.weight", i, layer_tensors[k]);
		if (find_weight(want[k].w, g, name, want[k].cols, want[k].rows) < 0)
			return -1;
	}
	return 0;
}

/* Whether name is one of the tensors a llama model of n_layers uses. */
static int is_llama_tensor(const char *name, int n_layers)
{
	int layer, end = 0;
	char part[32];
	if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output_norm.weight") ||
	    !strcmp(name, "output.weight") || !strcmp(name, "rope_freqs.weight"))
		return 1;
	/* an ARM with its backbone embedded reads as the plain backbone: its
	 * adapters (arm.h) are parm's own, not part of the llama layer */
	if (strstr(name, ".pblora_"))
		return 1;
	if (sscanf(name, "blk.%d.%31[a-z_].weight%n", &layer, part, &end) != 2 ||
	    name[end] || layer < 0 || layer >= n_layers)
		return 0;
	for (size_t k = 0; k < sizeof layer_tensors / sizeof *layer_tensors; k++)
		if (!strcmp(part, layer_tensors[k]))
			return 1;
	return 0;
}

/* A tensor the forward does not use changes the maths it stands for
 * (Llama 3.1's rope_freqs, biases, ...): refused by name, never skipped. */
static int check_no_other_tensors(const gguf_file *g, int n_layers)
{
	for (int i = 0; i < gguf_n_tensors(g); i++) {
		const char *name = gguf_tensor_at(g, i)->name;
		if (!is_llama_tensor(name, n_layers))
			return parm_fail("%s: tensor '%s' is not implemented (a llama layer here has "
					 "no such part; its logits would be wrong)", gguf_path(g), name);
	}
	return 0;
}

/* Llama 3.1+: rope_freqs.weight, one f32 divisor per rotated pair. */
static int find_rope_freqs(parm_model *m)
{
	const gguf_tensor *t = gguf_find_tensor(m->file, "rope_freqs.weight");
	int half = m->cfg.dim / m->cfg.n_heads / 2;
	if (!t)
		return 0;
	if (t->type != GGML_F32 || t->n_dims != 1 || t->ne[0] != half)
		return parm_fail("%s: tensor 'rope_freqs.weight' must be f32 [%d], not %s [%lld]",
				 gguf_path(m->file), half, ggml_type_name(t->type), (long long)t->ne[0]);
	const float *f = t->data;
	for (int k = 0; k < half; k++)
		if (!(f[k] > 0) || !isfinite(f[k]))
			return parm_fail("%s: rope_freqs.weight[%d] = %g is not a positive factor",
					 gguf_path(m->file), k, f[k]);
	m->rope_freqs = f;
	return 0;
}

static int find_weights(parm_model *m)
{
	const gguf_file *g = m->file;
	const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
	if (!emb)
		return parm_fail("%s: tensor 'token_embd.weight' is missing", gguf_path(g));
	if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 30))
		return parm_fail("%s: tensor 'token_embd.weight' has a bad shape", gguf_path(g));
	m->cfg.n_vocab = (int)emb->ne[1];
	if (find_weight(&m->token_embd, g, "token_embd.weight", m->cfg.dim, m->cfg.n_vocab) < 0 ||
	    find_weight(&m->output_norm, g, "output_norm.weight", m->cfg.dim, 0) < 0)
		return -1;
	if (!gguf_find_tensor(g, "output.weight"))
		m->output = m->token_embd;
	else if (find_weight(&m->output, g, "output.weight", m->cfg.dim, m->cfg.n_vocab) < 0)
		return -1;
	m->layers = xcalloc(m->cfg.n_layers, sizeof *m->layers);
	for (int i = 0; i < m->cfg.n_layers; i++)
		if (find_layer(&m->layers[i], g, i, &m->cfg) < 0)
			return -1;
	return find_rope_freqs(m) < 0 ? -1 : check_no_other_tensors(g, m->cfg.n_layers);
}

/* The kernels take f32 norm vectors; f16/bf16 ones get a small copy. */
static void norms_to_f32(parm_model *m)
{
	int d = m->cfg.dim, k = 0;
	m->norms = xmalloc((size_t)(2 * m->cfg.n_layers + 1) * d * sizeof(float));
	parm_weight *all[2 * m->cfg.n_layers + 1];
	all[0] = &m->output_norm;
	for (int i = 0; i < m->cfg.n_layers; i++) {
		all[1 + 2 * i] = &m->layers[i].attn_norm;
		all[2 + 2 * i] = &m->layers[i].ffn_norm;
	}
	for (int i = 0; i < 2 * m->cfg.n_layers + 1; i++) {
		if (all[i]->type == GGML_F32)
			continue;
		float *f = m->norms + (size_t)k++ * d;
		dequant_row(f, all[i]->data, all[i]->type, d);
		all[i]->data = f;
		all[i]->type = GGML_F32;
	}
}

static int load_tokenizer(parm_model *m)
{
	m->tok = parm_tokenizer_load(m->file);
	if (!m->tok)
		return -1;
	if (parm_tok_n_vocab(m->tok) != m->cfg.n_vocab)
		return parm_fail("%s: token_embd has %d rows but the tokenizer has %d tokens",
				 gguf_path(m->file), m->cfg.n_vocab, parm_tok_n_vocab(m->tok));
	return 0;
}

parm_model *parm_model_load(const char *path)
{
	parm_model *m;
	if (parm_check_address_limit() < 0)
		return NULL;
	m = xcalloc(1, sizeof *m);
	if (!(m->file = gguf_open(path)) || read_config(&m->cfg, m->file) < 0 ||
	    find_weights(m) < 0 || load_tokenizer(m) < 0) {
		parm_model_free(m);
		return NULL;
	}
	norms_to_f32(m);
	return m;
}

void parm_model_free(parm_model *m)
{
	if (!m)
		return;
	if (!m->parent) {
		if (m->tok)
			parm_tokenizer_free(m->tok);
		if (m->file)
			gguf_close(m->file);
		free(m->norms);
	}
	for (int i = 0; i < m->n_owned; i++)
		free(m->owned[i]);
	free(m->owned);
	free(m->layers);
	free(m);
}

const parm_weight *parm_layer_proj(const parm_layer *l, int proj)
{
	const parm_weight *all[PARM_N_PROJ] = {
		&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down,
	};
	return proj >= 0 && proj < PARM_N_PROJ ? all[proj] : NULL;
}

parm_model *parm_model_view(const parm_model *m)
{
	parm_model *v = xmalloc(sizeof *v);
	*v = *m;
	v->parent = m;
	v->layers = xmemdup(m->layers, (size_t)m->cfg.n_layers * sizeof *m->layers);
	v->owned = NULL;
	v->n_owned = 0;
	return v;
}

int parm_model_set_weight(parm_model *v, int layer, int proj, float *f32)
{
	if (!v->parent)
		return parm_fail("set weight: the model is not a view");
	if (layer < 0 || layer >= v->cfg.n_layers || proj < 0 || proj >= PARM_N_PROJ)
		return parm_fail("set weight: no projection %d in layer %d", proj, layer);
	parm_weight *w = (parm_weight *)parm_layer_proj(&v->layers[layer], proj);
	v->owned = xrealloc(v->owned, (v->n_owned + 1) * sizeof *v->owned);
	v->owned[v->n_owned++] = f32;
	w->data = f32;
	w->type = GGML_F32;
	return 0;
}

size_t parm_model_bytes_per_token(const parm_model *m)
{
	const parm_config *c = &m->cfg;
	int hd = c->dim / c->n_heads, kvd = c->n_kv_heads * hd;
	size_t per_layer = ggml_row_bytes(m->layers[0].wq.type, c->dim) * (c->dim + 2 * kvd) +
			   ggml_row_bytes(m->layers[0].wo.type, c->dim) * c->dim +
			   ggml_row_bytes(m->layers[0].w_gate.type, c->dim) * 2 * c->ff +
			   ggml_row_bytes(m->layers[0].w_down.type, c->ff) * c->dim;
	return per_layer * c->n_layers +
	       ggml_row_bytes(m->output.type, c->dim) * (c->n_vocab + 1);
}

void parm_set_threads(int n)
{
	kernels_set_threads(n);
	openblas_set_num_threads(n < 1 ? 1 : n);
}

/* ---- the KV cache: f32 K and V, [slot][layer][pos][G*hd] ---- */

struct parm_kv {
	int n_slots, n_ctx, n_layers, kv_dim;
	int *len;                       /* [slot] tokens held */
	float *k, *v;
};

parm_kv *parm_kv_new(const parm_model *m, int n_slots, int n_ctx)
{
	parm_kv *kv;
	if (n_ctx <= 0)
		n_ctx = m->cfg.n_ctx;
	if (n_slots < 1)
		return parm_failp("KV cache: %d slots (need at least 1)", n_slots);
	kv = xcalloc(1, sizeof *kv);
	kv->n_slots = n_slots;
	kv->n_ctx = n_ctx;
	kv->n_layers = m->cfg.n_layers;
	kv->kv_dim = m->cfg.n_kv_heads * (m->cfg.dim / m->cfg.n_heads);
	size_t count = (size_t)n_slots * kv->n_layers * n_ctx * kv->kv_dim;
	kv->len = xcalloc(n_slots, sizeof *kv->len);
	kv->k = xcalloc(count, sizeof(float));
	kv->v = xcalloc(count, sizeof(float));
	return kv;
}

void parm_kv_free(parm_kv *kv)
{
	if (!kv)
		return;
	free(kv->len);
	free(kv->k);
	free(kv->v);
	free(kv);
}

void parm_kv_clear(parm_kv *kv, int slot)
{
	if (slot >= 0 && slot < kv->n_slots)
		kv->len[slot] = 0;
}

int parm_kv_len(const parm_kv *kv, int slot)
{
	return slot >= 0 && slot < kv->n_slots ? kv->len[slot] : 0;
}

int parm_kv_ctx(const parm_kv *kv)
{
	return kv->n_ctx;
}

int parm_kv_slots(const parm_kv *kv)
{
	return kv->n_slots;
}

/* Slots are the outermost dimension, so growing appends. */
void parm_kv_grow(parm_kv *kv, int n_slots)
{
	if (n_slots <= kv->n_slots)
		return;
	size_t per_slot = (size_t)kv->n_layers * kv->n_ctx * kv->kv_dim, old = kv->n_slots;
	kv->k = xrealloc(kv->k, n_slots * per_slot * sizeof(float));
	kv->v = xrealloc(kv->v, n_slots * per_slot * sizeof(float));
	kv->len = xrealloc(kv->len, n_slots * sizeof *kv->len);
	memset(kv->len + old, 0, (n_slots - old) * sizeof *kv->len);
	kv->n_slots = n_slots;
}

static size_t kv_offset(const parm_kv *kv, int slot, int layer, int pos)
{
	return (((size_t)slot * kv->n_layers + layer) * kv->n_ctx + pos) * kv->kv_dim;
}

/* ---- the forward pass ---- */

/* Activations of one batch, carved from one allocation. */
typedef struct {
	float *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2; /* [N][...] */
	int *pos;
	const float **kc, **vc;
	void *mem;
} batch;

static void batch_alloc(batch *b, const parm_config *c, int n)
{
	size_t d = c->dim, kvd = (size_t)c->n_kv_heads * (c->dim / c->n_heads), f = c->ff;
	size_t floats = n * (5 * d + 2 * kvd + 2 * f);
	float *p = b->mem = xmalloc(floats * sizeof(float) + n * (sizeof(int) + 2 * sizeof(float *)));
	b->x = p, p += n * d;
	b->xb = p, p += n * d;
	b->xb2 = p, p += n * d;
	b->q = p, p += n * d;
	b->att = p, p += n * d;
	b->k = p, p += n * kvd;
	b->v = p, p += n * kvd;
	b->hb = p, p += n * f;
	b->hb2 = p, p += n * f;
	b->kc = (const float **)p;
	b->vc = b->kc + n;
	b->pos = (int *)(b->vc + n);
}

/* Positions of each token; -1 when the batch is bad (nothing changed). */
static int batch_positions(batch *b, const parm_model *m, const parm_kv *kv, int n,
			   const int *tokens, const int *slot)
{
	int *next = xcalloc(kv->n_slots, sizeof *next);
	int bad = 0;
	for (int i = 0; i < n && !bad; i++) {
		if (slot[i] < 0 || slot[i] >= kv->n_slots)
			bad = parm_fail("forward: slot %d out of range (0..%d)", slot[i], kv->n_slots - 1);
		else if (tokens[i] < 0 || tokens[i] >= m->cfg.n_vocab)
			bad = parm_fail("forward: token %d out of range (0..%d)", tokens[i], m->cfg.n_vocab - 1);
		else if ((b->pos[i] = kv->len[slot[i]] + next[slot[i]]++) >= kv->n_ctx)
			bad = parm_fail("forward: slot %d would pass its context of %d tokens",
					slot[i], kv->n_ctx);
	}
	free(next);
	return bad;
}

static void add_into(float *x, const float *y, size_t count)
{
	for (size_t i = 0; i < count; i++)
		x[i] += y[i];
}

/* y[n][out] += s B M A x from the adapter on (layer l, proj), if any. */
static void adapt(float *y, const float *x, const parm_adapter *ad, int l, int proj, int n)
{
	const parm_adapter *a = ad ? &ad[l * PARM_N_PROJ + proj] : NULL;
	if (!a || !a->p)
		return;
	size_t r = a->p->r1 + a->p->r2;
	float *h = xmalloc(2 * n * r * sizeof *h);
	pblora_forward(y, h, h + n * r, x, a->p, a->M, n);
	free(h);
}

static void attention_block(const parm_model *m, const parm_adapter *ad, parm_kv *kv,
			    batch *b, int l, const int *slot, int n)
{
	const parm_config *c = &m->cfg;
	const parm_layer *w = &m->layers[l];
	int hd = c->dim / c->n_heads, kvd = kv->kv_dim;
	rmsnorm_forward(b->xb, b->x, w->attn_norm.data, n, c->dim, c->rms_eps);
	matmul_job qkv[3] = {
		{ b->q, b->xb, w->wq.data, w->wq.type, c->dim, c->dim },
		{ b->k, b->xb, w->wk.data, w->wk.type, c->dim, kvd },
		{ b->v, b->xb, w->wv.data, w->wv.type, c->dim, kvd },
	};
	matmul_many_forward(qkv, 3, n);
	adapt(b->q, b->xb, ad, l, 0, n);
	adapt(b->k, b->xb, ad, l, 1, n);
	adapt(b->v, b->xb, ad, l, 2, n);
	rope_forward(b->q, b->pos, n, c->n_heads, hd, c->rope_theta, m->rope_freqs);
	rope_forward(b->k, b->pos, n, c->n_kv_heads, hd, c->rope_theta, m->rope_freqs);
	for (int i = 0; i < n; i++) {
		size_t off = kv_offset(kv, slot[i], l, b->pos[i]);
		memcpy(kv->k + off, b->k + (size_t)i * kvd, kvd * sizeof(float));
		memcpy(kv->v + off, b->v + (size_t)i * kvd, kvd * sizeof(float));
		b->kc[i] = kv->k + kv_offset(kv, slot[i], l, 0);
		b->vc[i] = kv->v + kv_offset(kv, slot[i], l, 0);
	}
	attention_forward(b->att, b->q, b->kc, b->vc, b->pos, n, c->n_heads, c->n_kv_heads, hd);
	matmul_forward(b->xb2, b->att, w->wo.data, w->wo.type, n, c->dim, c->dim);
	adapt(b->xb2, b->att, ad, l, 3, n);
	add_into(b->x, b->xb2, (size_t)n * c->dim);
}

static void ffn_block(const parm_model *m, const parm_adapter *ad, batch *b, int l, int n)
{
	const parm_config *c = &m->cfg;
	const parm_layer *w = &m->layers[l];
	rmsnorm_forward(b->xb, b->x, w->ffn_norm.data, n, c->dim, c->rms_eps);
	matmul_job gate_up[2] = {
		{ b->hb, b->xb, w->w_gate.data, w->w_gate.type, c->dim, c->ff },
		{ b->hb2, b->xb, w->w_up.data, w->w_up.type, c->dim, c->ff },
	};
	matmul_many_forward(gate_up, 2, n);
	adapt(b->hb, b->xb, ad, l, 4, n);
	adapt(b->hb2, b->xb, ad, l, 5, n);
	swiglu_forward(b->hb, b->hb, b->hb2, (int64_t)n * c->ff);
	matmul_forward(b->xb2, b->hb, w->w_down.data, w->w_down.type, n, c->ff, c->dim);
	adapt(b->xb2, b->hb, ad, l, 6, n);
	add_into(b->x, b->xb2, (size_t)n * c->dim);
}

/* Logits of the wanted rows: gather them, norm, project. */
static int output_logits(const parm_model *m, batch *b, int n, const int *slot,
			 const uint8_t *want, float *logits)
{
	const parm_config *c = &m->cfg;
	int n_out = 0;
	for (int i = 0; i < n; i++) {
		int wanted = want ? want[i] != 0 : 1;
		for (int j = i + 1; !want && j < n && wanted; j++)
			wanted = slot[j] != slot[i];
		if (wanted)
			memcpy(b->xb + (size_t)n_out++ * c->dim, b->x + (size_t)i * c->dim,
			       c->dim * sizeof(float));
	}
	rmsnorm_forward(b->xb, b->xb, m->output_norm.data, n_out, c->dim, c->rms_eps);
	matmul_forward(logits, b->xb, m->output.data, m->output.type, n_out, c->dim, c->n_vocab);
	return n_out;
}

int parm_forward(const parm_model *m, parm_kv *kv, int n, const int *tokens,
		 const int *slot, const uint8_t *want, float *logits)
{
	return parm_forward_adapted(m, NULL, kv, n, tokens, slot, want, logits);
}

int parm_forward_adapted(const parm_model *m, const parm_adapter *ad, parm_kv *kv,
			 int n, const int *tokens, const int *slot,
			 const uint8_t *want, float *logits)
{
	batch b;
	if (n <= 0)
		return 0;
	batch_alloc(&b, &m->cfg, n);
	if (batch_positions(&b, m, kv, n, tokens, slot) < 0) {
		free(b.mem);
		return -1;
	}
	embed_forward(b.x, m->token_embd.data, m->token_embd.type, tokens, n, m->cfg.dim);
	for (int l = 0; l < m->cfg.n_layers; l++) {
		attention_block(m, ad, kv, &b, l, slot, n);
		ffn_block(m, ad, &b, l, n);
	}
	int n_out = output_logits(m, &b, n, slot, want, logits);
	for (int i = 0; i < n; i++)
		kv->len[slot[i]] = b.pos[i] + 1 > kv->len[slot[i]] ? b.pos[i] + 1 : kv->len[slot[i]];
	free(b.mem);
	return n_out;
}

/* ---- random initialisation ---- */

/* count normal(0, std) samples by Box-Muller, in pairs. */
static void fill_normal(float *out, size_t count, float std, uint64_t *s)
{
	for (size_t i = 0; i < count; i += 2) {
		double u1 = parm_splitmix_uniform(s) + 0x1.0p-53;    /* (0, 1] */
		double u2 = parm_splitmix_uniform(s);
		double r = sqrt(-2 * log(u1)) * std;
		out[i] = (float)(r * cos(2 * M_PI * u2));
		if (i + 1 < count)
			out[i + 1] = (float)(r * sin(2 * M_PI * u2));
	}
}

/* A [rows][cols] tensor of random weights in type t (ne[0] = cols). */
static void add_random(gguf_writer *w, const char *name, enum ggml_type t,
		       int64_t cols, int64_t rows, uint64_t *s)
{
	int64_t ne[2] = { cols, rows };
	float *f = xmalloc((size_t)(cols * rows) * sizeof *f);
	fill_normal(f, (size_t)(cols * rows), 0.02f, s);
	if (t == GGML_F32) {
		gguf_w_tensor(w, name, t, 2, ne, f);
	} else {
		size_t rb = ggml_row_bytes(t, cols);
		char *q = xmalloc(rb * rows);
		for (int64_t r = 0; r < rows; r++)
			quant_row(q + r * rb, f + r * cols, t, cols);
		gguf_w_tensor(w, name, t, 2, ne, q);
		free(q);
	}
	free(f);
}

static void add_ones(gguf_writer *w, const char *name, int64_t n)
{
	float *f = xmalloc((size_t)n * sizeof *f);
	for (int64_t i = 0; i < n; i++)
		f[i] = 1.0f;
	gguf_w_tensor(w, name, GGML_F32, 1, &n, f);
	free(f);
}

static int check_init_config(const parm_config *c, enum ggml_type t)
{
	int blk = ggml_type_block(t);
	if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
	    c->ff <= 0 || c->n_ctx <= 0)
		return parm_fail("model init: every size must be positive");
	if (c->dim % c->n_heads)
		return parm_fail("model init: dim %d is not divisible by heads %d", c->dim, c->n_heads);
	if (c->n_heads % c->n_kv_heads)
		return parm_fail("model init: heads %d is not divisible by kv heads %d",
				 c->n_heads, c->n_kv_heads);
	if ((c->dim / c->n_heads) % 2)
		return parm_fail("model init: head dim %d is odd", c->dim / c->n_heads);
	if (!ggml_type_name(t) || blk <= 0 || !quant_type_quantised(t))
		return parm_fail("model init: cannot write tensors of type %s (f32, f16, bf16, "
				 "q8_0 or q4_0)", ggml_type_name(t) ? ggml_type_name(t) : "unknown");
	if (c->dim % blk || c->ff % blk)
		return parm_fail("model init: dim %d and ff %d must be multiples of %d for %s",
				 c->dim, c->ff, blk, ggml_type_name(t));
	return 0;
}

static void set_hparams(gguf_writer *w, const parm_config *c, int n_vocab, enum ggml_type t)
{
	gguf_w_set_str(w, "general.architecture", "llama");
	gguf_w_set_str(w, "general.name", "parm-random");
	if (quant_file_type(t) >= 0)
		gguf_w_set_u32(w, "general.file_type", (uint32_t)quant_file_type(t));
	gguf_w_set_u32(w, "llama.context_length", c->n_ctx);
	gguf_w_set_u32(w, "llama.embedding_length", c->dim);
	gguf_w_set_u32(w, "llama.block_count", c->n_layers);
	gguf_w_set_u32(w, "llama.feed_forward_length", c->ff);
	gguf_w_set_u32(w, "llama.attention.head_count", c->n_heads);
	gguf_w_set_u32(w, "llama.attention.head_count_kv", c->n_kv_heads);
	gguf_w_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_eps > 0 ? c->rms_eps : 1e-5f);
	gguf_w_set_f32(w, "llama.rope.freq_base", c->rope_theta > 0 ? c->rope_theta : 10000.0f);
	gguf_w_set_u32(w, "llama.rope.dimension_count", c->dim / c->n_heads);
	gguf_w_set_u32(w, "llama.vocab_size", n_vocab);
}

static int copy_tokenizer(gguf_writer *w, const gguf_file *vocab, int *n_vocab)
{
	enum gguf_vtype et;
	uint64_t n;
	if (gguf_get_arr(vocab, "tokenizer.ggml.tokens", &et, &n) < 0)
		return parm_fail("%s: no tokenizer.ggml.tokens", gguf_path(vocab));
	if (n < 1 || n > (1 << 30))
		return parm_fail("%s: %llu tokens", gguf_path(vocab), (unsigned long long)n);
	*n_vocab = (int)n;
	for (int i = 0; i < gguf_n_kv(vocab); i++) {
		const char *key = gguf_kv_key(vocab, i);
		if (!strncmp(key, "tokenizer.", 10) && gguf_w_copy_kv(w, vocab, key) < 0)
			return -1;
	}
	return 0;
}

/* The weights, in llama.cpp's order and names; draws do not depend on the
 * type, so one seed gives the same model in every type. */
static void add_weights(gguf_writer *w, const parm_config *c, int V, enum ggml_type t, uint64_t seed)
{
	int kvd = c->n_kv_heads * (c->dim / c->n_heads);
	uint64_t s = seed;
	char name[96];
	add_random(w, "token_embd.weight", t, c->dim, V, &s);
	add_ones(w, "output_norm.weight", c->dim);
	add_random(w, "output.weight", t, c->dim, V, &s);
	for (int l = 0; l < c->n_layers; l++) {
#define NAME(x) (snprintf(name, sizeof name, "blk.%d." x ".weight", l), name)
		add_ones(w, NAME("attn_norm"), c->dim);
		add_random(w, NAME("attn_q"), t, c->dim, c->dim, &s);
		add_random(w, NAME("attn_k"), t, c->dim, kvd, &s);
		add_random(w, NAME("attn_v"), t, c->dim, kvd, &s);
		add_random(w, NAME("attn_output"), t, c->dim, c->dim, &s);
		add_ones(w, NAME("ffn_norm"), c->dim);
		add_random(w, NAME("ffn_gate"), t, c->dim, c->ff, &s);
		add_random(w, NAME("ffn_down"), t, c->ff, c->dim, &s);
		add_random(w, NAME("ffn_up"), t, c->dim, c->ff, &s);
#undef NAME
	}
}

int parm_model_init(const char *out_path, const gguf_file *vocab,
		    const parm_config *cfg, enum ggml_type type, uint64_t seed)
{
	int n_vocab = 0, rc;
	if (check_init_config(cfg, type) < 0)
		return -1;
	gguf_writer *w = gguf_w_new();
	if (copy_tokenizer(w, vocab, &n_vocab) < 0 ||
	    (cfg->n_vocab > 0 && cfg->n_vocab != n_vocab &&
	     parm_fail("model init: vocab %d differs from the tokenizer's %d tokens",
		       cfg->n_vocab, n_vocab) < 0)) {
		gguf_w_free(w);
		return -1;
	}
	set_hparams(w, cfg, n_vocab, type);
	add_weights(w, cfg, n_vocab, type, seed);
	rc = gguf_w_save(w, out_path);
	gguf_w_free(w);
	return rc;
}

void parm_batch_push(parm_batch *b, int tok, int slot, int want)
{
	if (b->n == b->cap) {
		b->cap = 2 * b->cap + 64;
		b->tokens = xrealloc(b->tokens, b->cap * sizeof *b->tokens);
		b->slot = xrealloc(b->slot, b->cap * sizeof *b->slot);
		b->want = xrealloc(b->want, b->cap);
	}
	b->tokens[b->n] = tok;
	b->slot[b->n] = slot;
	b->want[b->n] = want;
	b->n++;
}

void parm_batch_free(parm_batch *b)
{
	free(b->tokens), free(b->slot), free(b->want);
	*b = (parm_batch){0};
}
