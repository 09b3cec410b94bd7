/* model.c - the llama-family transformer: load any architecture of
 * arch.h from GGUF, the KV cache, the batched forward pass, and random
 * initialisation.  Legend in model.h. */
#include <parm/model.h>

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "linear.h"
#include "quant_dot.h"
#include <parm/rng.h>
#include <parm/util.h>

/* ---- loading ---- */

/* An integer hyper-parameter; def < 0 means the key is required. */
static int hparam_int(const parm_gguf *g, const char *key, int64_t def, int *out)
{
	int64_t v;
	if (parm_gguf_find_key(g, key) < 0) {
		if (def < 0)
			return parm_fail("%s: missing key %s", parm_gguf_path(g), key);
		*out = (int)def;
		return 0;
	}
	if (parm_gguf_get_int(g, key, &v) < 0)
		return -1;
	if (v <= 0 || v > (1 << 30))
		return parm_fail("%s: %s = %lld is out of range", parm_gguf_path(g), key, (long long)v);
	*out = (int)v;
	return 0;
}

static int hparam_float(const parm_gguf *g, const char *key, double def, float *out)
{
	double v = def;
	if (parm_gguf_find_key(g, key) >= 0 && parm_gguf_get_float(g, key, &v) < 0)
		return -1;
	if (!(v > 0) || !isfinite(v))
		return parm_fail("%s: %s = %g is out of range", parm_gguf_path(g), key, v);
	*out = (float)v;
	return 0;
}

/* A file being loaded: which tensors the model has taken (every other one
 * is refused by name: a part parm does not run would change the maths). */
typedef struct {
	parm_model *m;
	const parm_gguf *g;
	uint8_t *used;                  /* [n_tensors] */
	char key[128];
} loader;

/* "<arch>.<suffix>", the key of an architecture's hyper-parameter. */
static const char *arch_key(loader *ld, const char *suffix)
{
	snprintf(ld->key, sizeof ld->key, "%s.%s", ld->m->arch->name, suffix);
	return ld->key;
}

static int read_architecture(loader *ld)
{
	const char *arch;
	size_t len;
	if (parm_gguf_get_str(ld->g, "general.architecture", &arch, &len) < 0)
		return parm_fail("%s: no general.architecture", parm_gguf_path(ld->g));
	int id = parm_arch_find(arch, len);
	if (id < 0)
		return parm_failc(PARM_EUNSUPPORTED, "%s: architecture '%.*s' is not supported (parm reads %s)",
				 parm_gguf_path(ld->g), (int)len, arch, parm_arch_names());
	ld->m->cfg.arch = id;
	ld->m->arch = parm_arch_at(id);
	return 0;
}

/* Keys that change the maths and are not implemented: refused by name,
 * never ignored (llama.cpp applies them; parm's logits would differ). */
static int check_unimplemented_keys(loader *ld)
{
	const char *s;
	size_t len;
	double f;
	int64_t n;
	static const char *const factors[] = { "rope.scaling.factor", "rope.scale_linear" };
	for (size_t i = 0; i < sizeof factors / sizeof *factors; i++)
		if (parm_gguf_get_float(ld->g, arch_key(ld, factors[i]), &f) == 0 && f != 0 && f != 1)
			return parm_failc(PARM_EUNSUPPORTED, "%s: %s = %g: rope scaling is not implemented",
					 parm_gguf_path(ld->g), ld->key, f);
	if (parm_gguf_get_str(ld->g, arch_key(ld, "rope.scaling.type"), &s, &len) == 0 &&
	    !(len == 4 && !memcmp(s, "none", 4)) && !(len == 6 && !memcmp(s, "linear", 6)))
		return parm_failc(PARM_EUNSUPPORTED, "%s: %s = %.*s is not implemented", parm_gguf_path(ld->g), ld->key,
				 (int)len, s);
	if (parm_gguf_get_int(ld->g, arch_key(ld, "expert_count"), &n) == 0 && n > 0)
		return parm_failc(PARM_EUNSUPPORTED, "%s: %s = %lld: mixture-of-experts layers are not implemented",
				 parm_gguf_path(ld->g), ld->key, (long long)n);
	return 0;
}

static int read_sizes(loader *ld, parm_config *c)
{
	const parm_gguf *g = ld->g;
	if (hparam_int(g, arch_key(ld, "embedding_length"), -1, &c->dim) < 0 ||
	    hparam_int(g, arch_key(ld, "block_count"), -1, &c->n_layers) < 0 ||
	    hparam_int(g, arch_key(ld, "attention.head_count"), -1, &c->n_heads) < 0 ||
	    hparam_int(g, arch_key(ld, "attention.head_count_kv"), c->n_heads, &c->n_kv_heads) < 0 ||
	    hparam_int(g, arch_key(ld, "feed_forward_length"), -1, &c->ff) < 0 ||
	    hparam_int(g, arch_key(ld, "context_length"), -1, &c->n_ctx) < 0 ||
	    hparam_float(g, arch_key(ld, "attention.layer_norm_rms_epsilon"), 1e-5, &c->rms_eps) < 0 ||
	    hparam_float(g, arch_key(ld, "rope.freq_base"), 10000, &c->rope_theta) < 0 ||
	    hparam_float(g, arch_key(ld, "rope.scaling.attn_factor"), 1, &c->rope_mscale) < 0 ||
	    hparam_int(g, arch_key(ld, "rope.scaling.original_context_length"), c->n_ctx,
		       &c->rope_ctx_orig) < 0)
		return -1;
	if (c->n_heads % c->n_kv_heads)
		return parm_fail("%s: head_count %d is not a multiple of head_count_kv %d",
				 parm_gguf_path(g), c->n_heads, c->n_kv_heads);
	return 0;
}

/* The head dim: key_length (qwen3's differs from dim / heads), which the
 * value length and the rotated dims must equal. */
static int read_head_dim(loader *ld, parm_config *c)
{
	const parm_gguf *g = ld->g;
	int hd = c->dim % c->n_heads ? 0 : c->dim / c->n_heads, value_len, rope_dims;
	if (hparam_int(g, arch_key(ld, "attention.key_length"), hd ? hd : -1, &c->head_dim) < 0)
		return -1;
	hd = c->head_dim;
	if (hd % 2 || hd > 1024)
		return parm_fail("%s: head dim %d (must be even and at most 1024)", parm_gguf_path(g), hd);
	if (hparam_int(g, arch_key(ld, "attention.value_length"), hd, &value_len) < 0 ||
	    hparam_int(g, arch_key(ld, "rope.dimension_count"), hd, &rope_dims) < 0)
		return -1;
	if (value_len != hd)
		return parm_failc(PARM_EUNSUPPORTED, "%s: attention value length %d differs from the key length %d "
				 "(not implemented)", parm_gguf_path(g), value_len, hd);
	if (rope_dims != hd)
		return parm_fail("%s: %s %d differs from the head dim %d (partial rope is not "
				 "implemented)", parm_gguf_path(g), ld->key, rope_dims, hd);
	return 0;
}

static int read_config(loader *ld)
{
	parm_config *c = &ld->m->cfg;
	if (read_architecture(ld) < 0 || read_sizes(ld, c) < 0 || read_head_dim(ld, c) < 0)
		return -1;
	return check_unimplemented_keys(ld);
}

/* The tensor called name, marked as taken; NULL if absent (no error). */
static const parm_gguf_tensor *take_tensor(loader *ld, const char *name)
{
	const parm_gguf_tensor *t = parm_gguf_find_tensor(ld->g, name);
	if (t)
		ld->used[t - parm_gguf_tensor_at(ld->g, 0)] = 1;
	return t;
}

/* A matrix [rows][cols] of a type parm computes. */
static int find_weight(loader *ld, parm_weight *w, const char *name, int64_t cols, int64_t rows)
{
	const parm_gguf *g = ld->g;
	const parm_gguf_tensor *t = take_tensor(ld, name);
	if (!t)
		return parm_fail("%s: tensor '%s' is missing", parm_gguf_path(g), name);
	if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
		return parm_fail("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]",
				 parm_gguf_path(g), name, (long long)t->ne[0],
				 (long long)(t->n_dims > 1 ? t->ne[1] : 1), (long long)cols, (long long)rows);
	if (!parm_quant_type_computed(t->type))
		return parm_failc(PARM_EUNSUPPORTED, "%s: tensor '%s' has type %s, which parm does not compute "
				 "(it does %s)", parm_gguf_path(g), name, parm_ggml_type_name(t->type),
				 parm_quant_types_computed());
	*w = (parm_weight){ t->data, t->type, rows, cols, NULL };
	return 0;
}

/* A vector [len] as f32 (f16/bf16 converted, the copy kept by the model);
 * *out NULL when absent and optional. */
static int find_vector(loader *ld, const float **out, const char *name, int64_t len, int required)
{
	const parm_gguf *g = ld->g;
	const parm_gguf_tensor *t = take_tensor(ld, name);
	*out = NULL;
	if (!t)
		return required ? parm_fail("%s: tensor '%s' is missing", parm_gguf_path(g), name) : 0;
	if (t->n_dims != 1 || t->ne[0] != len)
		return parm_fail("%s: tensor '%s' has shape [%lld, %lld], expected [%lld]",
				 parm_gguf_path(g), name, (long long)t->ne[0],
				 (long long)(t->n_dims > 1 ? t->ne[1] : 1), (long long)len);
	if (t->type != PARM_GGML_F32 && t->type != PARM_GGML_F16 && t->type != PARM_GGML_BF16)
		return parm_fail("%s: tensor '%s' has type %s; a vector must be f32, f16 or bf16",
				 parm_gguf_path(g), name, parm_ggml_type_name(t->type));
	if (t->type == PARM_GGML_F32) {
		*out = t->data;
		return 0;
	}
	parm_model *m = ld->m;
	float *f = parm_xmalloc((size_t)len * sizeof *f);
	parm_dequant_row(f, t->data, t->type, len);
	m->vecs = parm_xrealloc(m->vecs, (m->n_vecs + 1) * sizeof *m->vecs);
	m->vecs[m->n_vecs++] = f;
	*out = f;
	return 0;
}

/* A norm vector as a parm_weight (f32 [1][len]). */
static int find_norm(loader *ld, parm_weight *w, const char *name, int64_t len)
{
	const float *f;
	if (find_vector(ld, &f, name, len, 1) < 0)
		return -1;
	*w = (parm_weight){ f, PARM_GGML_F32, 1, len, NULL };
	return 0;
}

/* Rows [first, first + rows) of a matrix: a weight of their own (a row is
 * whole blocks, so any type splits). */
static parm_weight weight_rows(const parm_weight *w, int64_t first, int64_t rows)
{
	return (parm_weight){ (const char *)w->data + first * parm_ggml_row_bytes(w->type, w->cols),
			      w->type, rows, w->cols, NULL };
}

#define LAYER_NAME(buf, i, part) (snprintf(buf, sizeof buf, "blk.%d.%s", i, part), buf)

static int allowed(const loader *ld, unsigned part)
{
	return (ld->m->arch->allow & part) != 0;
}

/* q, k and v: attn_qkv split by rows where the file fuses them, else
 * three tensors; their biases as the architecture allows. */
static int find_qkv(loader *ld, parm_layer *l, int i)
{
	const parm_config *c = &ld->m->cfg;
	int D = c->dim, Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c);
	char name[96];
	if (allowed(ld, PARM_PART_FUSED_QKV) &&
	    parm_gguf_find_tensor(ld->g, LAYER_NAME(name, i, "attn_qkv.weight"))) {
		parm_weight qkv;
		const float *b = NULL;
		if (find_weight(ld, &qkv, name, D, Dq + 2 * kvd) < 0 ||
		    (allowed(ld, PARM_PART_QKV_BIAS) &&
		     find_vector(ld, &b, LAYER_NAME(name, i, "attn_qkv.bias"), Dq + 2 * kvd, 0) < 0))
			return -1;
		l->wq = weight_rows(&qkv, 0, Dq);
		l->wk = weight_rows(&qkv, Dq, kvd);
		l->wv = weight_rows(&qkv, Dq + kvd, kvd);
		if (allowed(ld, PARM_PART_QKV_BIAS) && b)
			l->bias[0] = b, l->bias[1] = b + Dq, l->bias[2] = b + Dq + kvd;
		return 0;
	}
	static const char *const parts[3] = { "attn_q", "attn_k", "attn_v" };
	parm_weight *w[3] = { &l->wq, &l->wk, &l->wv };
	int rows[3] = { Dq, kvd, kvd };
	for (int p = 0; p < 3; p++) {
		snprintf(name, sizeof name, "blk.%d.%s.weight", i, parts[p]);
		if (find_weight(ld, w[p], name, D, rows[p]) < 0)
			return -1;
		snprintf(name, sizeof name, "blk.%d.%s.bias", i, parts[p]);
		if (allowed(ld, PARM_PART_QKV_BIAS) && find_vector(ld, &l->bias[p], name, rows[p], 0) < 0)
			return -1;
	}
	return 0;
}

/* gate, up, down: phi3 stacks gate and up in one ffn_up [D][2F]. */
static int find_ffn(loader *ld, parm_layer *l, int i)
{
	const parm_config *c = &ld->m->cfg;
	char name[96];
	if (allowed(ld, PARM_PART_FUSED_UP)) {
		parm_weight up;
		if (find_weight(ld, &up, LAYER_NAME(name, i, "ffn_up.weight"), c->dim, 2 * (int64_t)c->ff) < 0)
			return -1;
		l->w_gate = weight_rows(&up, 0, c->ff);
		l->w_up = weight_rows(&up, c->ff, c->ff);
	} else if (find_weight(ld, &l->w_gate, LAYER_NAME(name, i, "ffn_gate.weight"), c->dim, c->ff) < 0 ||
		   find_weight(ld, &l->w_up, LAYER_NAME(name, i, "ffn_up.weight"), c->dim, c->ff) < 0) {
		return -1;
	}
	if (find_weight(ld, &l->w_down, LAYER_NAME(name, i, "ffn_down.weight"), c->ff, c->dim) < 0)
		return -1;
	if (!allowed(ld, PARM_PART_FFN_BIAS))
		return 0;
	return find_vector(ld, &l->bias[4], LAYER_NAME(name, i, "ffn_gate.bias"), c->ff, 0) < 0 ||
	       find_vector(ld, &l->bias[5], LAYER_NAME(name, i, "ffn_up.bias"), c->ff, 0) < 0 ||
	       find_vector(ld, &l->bias[6], LAYER_NAME(name, i, "ffn_down.bias"), c->dim, 0) < 0 ? -1 : 0;
}

/* Layer i: norms, attention, feed-forward, each part as the arch allows. */
static int find_layer(loader *ld, parm_layer *l, int i)
{
	const parm_config *c = &ld->m->cfg;
	int hd = parm_cfg_hd(c), qk_norm = allowed(ld, PARM_PART_QK_NORM);
	int need_qk_norm = (ld->m->arch->need & PARM_PART_QK_NORM) != 0;
	char name[96];
	if (find_norm(ld, &l->attn_norm, LAYER_NAME(name, i, "attn_norm.weight"), c->dim) < 0 ||
	    find_qkv(ld, l, i) < 0 ||
	    (qk_norm && find_vector(ld, &l->q_norm, LAYER_NAME(name, i, "attn_q_norm.weight"), hd, need_qk_norm) < 0) ||
	    (qk_norm && find_vector(ld, &l->k_norm, LAYER_NAME(name, i, "attn_k_norm.weight"), hd, need_qk_norm) < 0) ||
	    find_weight(ld, &l->wo, LAYER_NAME(name, i, "attn_output.weight"), parm_cfg_qdim(c), c->dim) < 0 ||
	    (allowed(ld, PARM_PART_O_BIAS) &&
	     find_vector(ld, &l->bias[3], LAYER_NAME(name, i, "attn_output.bias"), c->dim, 0) < 0) ||
	    find_norm(ld, &l->ffn_norm, LAYER_NAME(name, i, "ffn_norm.weight"), c->dim) < 0)
		return -1;
	if ((l->q_norm == NULL) != (l->k_norm == NULL))
		return parm_fail("%s: layer %d has one of attn_q_norm and attn_k_norm", parm_gguf_path(ld->g), i);
	return find_ffn(ld, l, i);
}

/* Rope's frequency factors: Llama 3.1+'s rope_freqs, or LongRoPE's short
 * and long ones; positive and finite. */
static int find_rope_factors(loader *ld)
{
	parm_model *m = ld->m;
	int half = parm_cfg_hd(&m->cfg) / 2;
	const float **slot[2] = { &m->rope_freqs, &m->rope_long };
	const char *names[2] = { "rope_freqs.weight", NULL };
	if (allowed(ld, PARM_PART_ROPE_LONG))
		names[0] = "rope_factors_short.weight", names[1] = "rope_factors_long.weight";
	else if (!allowed(ld, PARM_PART_ROPE_FREQS))
		return 0;
	for (int s = 0; s < 2 && names[s]; s++) {
		const parm_gguf_tensor *t = parm_gguf_find_tensor(ld->g, names[s]);
		if (!t)
			continue;
		if (t->type != PARM_GGML_F32 || t->n_dims != 1 || t->ne[0] != half)
			return parm_fail("%s: tensor '%s' must be f32 [%d], not %s [%lld]", parm_gguf_path(ld->g),
					 names[s], half, parm_ggml_type_name(t->type), (long long)t->ne[0]);
		take_tensor(ld, names[s]);
		const float *f = t->data;
		for (int k = 0; k < half; k++)
			if (!(f[k] > 0) || !isfinite(f[k]))
				return parm_fail("%s: %s[%d] = %g is not a positive factor",
						 parm_gguf_path(ld->g), names[s], k, f[k]);
		*slot[s] = f;
	}
	return 0;
}

/* Every tensor not taken is a part parm would not run: refused by name.
 * An ARM with its backbone embedded reads as the plain backbone: its
 * adapters (arm.h, ".pblora_") are parm's own. */
static int check_all_taken(const loader *ld)
{
	for (int i = 0; i < parm_gguf_n_tensors(ld->g); i++) {
		const char *name = parm_gguf_tensor_at(ld->g, i)->name;
		if (!ld->used[i] && !strstr(name, ".pblora_"))
			return parm_failc(PARM_EUNSUPPORTED, "%s: tensor '%s' is not implemented (a %s model here has no "
					 "such part; its logits would be wrong)", parm_gguf_path(ld->g), name,
					 ld->m->arch->name);
	}
	return 0;
}

static int find_output(loader *ld)
{
	parm_model *m = ld->m;
	const parm_gguf *g = ld->g;
	const parm_gguf_tensor *emb = parm_gguf_find_tensor(g, "token_embd.weight");
	if (!emb)
		return parm_fail("%s: tensor 'token_embd.weight' is missing", parm_gguf_path(g));
	if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 30))
		return parm_fail("%s: tensor 'token_embd.weight' has a bad shape", parm_gguf_path(g));
	m->cfg.n_vocab = (int)emb->ne[1];
	if (find_weight(ld, &m->token_embd, "token_embd.weight", m->cfg.dim, m->cfg.n_vocab) < 0 ||
	    find_norm(ld, &m->output_norm, "output_norm.weight", m->cfg.dim) < 0)
		return -1;
	if (!parm_gguf_find_tensor(g, "output.weight"))
		m->output = m->token_embd;
	else if (find_weight(ld, &m->output, "output.weight", m->cfg.dim, m->cfg.n_vocab) < 0)
		return -1;
	return allowed(ld, PARM_PART_OUTPUT_BIAS) ?
	       find_vector(ld, &m->output_bias, "output.bias", m->cfg.n_vocab, 0) : 0;
}

static int find_weights(loader *ld)
{
	parm_model *m = ld->m;
	if (find_output(ld) < 0)
		return -1;
	m->layers = parm_xcalloc(m->cfg.n_layers, sizeof *m->layers);
	for (int i = 0; i < m->cfg.n_layers; i++)
		if (find_layer(ld, &m->layers[i], i) < 0)
			return -1;
	return find_rope_factors(ld) < 0 ? -1 : check_all_taken(ld);
}

/* A matrix packed for inference's integer dot where this CPU has one
 * (parm_quant_pack), the copy owned by the model; the mapped rows are let go
 * until training or a merge reads them. */
static void pack_weight(parm_model *m, parm_weight *w)
{
	if (!parm_quant_pack_ok(w->type, w->rows, w->cols) || !parm_kernels_int8())
		return;
	void *p = parm_quant_pack(w->data, w->type, w->rows, w->cols);
	m->owned = parm_xrealloc(m->owned, (m->n_owned + 1) * sizeof *m->owned);
	m->owned[m->n_owned++] = p;
	w->packed = p;
	if (w->data != m->token_embd.data)      /* the embedding's rows are read per token */
		parm_gguf_forget(m->file, w->data, (size_t)parm_ggml_row_bytes(w->type, w->cols) * w->rows);
}

static void pack_weights(parm_model *m)
{
	for (int l = 0; l < m->cfg.n_layers; l++)
		for (int p = 0; p < PARM_N_PROJ; p++)
			pack_weight(m, (parm_weight *)parm_layer_proj(&m->layers[l], p));
	pack_weight(m, &m->output);
}

static int load_tokenizer(parm_model *m)
{
	m->tok = parm_tokenizer_load(m->file);
	if (!m->tok)
		return -1;
	if (parm_tok_n_vocab(m->tok) != m->cfg.n_vocab)
		return parm_fail("%s: token_embd has %d rows but the tokenizer has %d tokens",
				 parm_gguf_path(m->file), m->cfg.n_vocab, parm_tok_n_vocab(m->tok));
	return 0;
}

parm_model *parm_model_load(const char *path)
{
	parm_model *m;
	if (parm_check_address_limit() < 0)
		return NULL;
	m = parm_xcalloc(1, sizeof *m);
	if (!(m->file = parm_gguf_open(path))) {
		parm_model_free(m);
		return NULL;
	}
	loader ld = { m, m->file, parm_xcalloc(parm_gguf_n_tensors(m->file) + 1, 1), "" };
	int rc = read_config(&ld) < 0 || find_weights(&ld) < 0 || load_tokenizer(m) < 0 ? -1 : 0;
	free(ld.used);
	if (rc < 0) {
		parm_model_free(m);
		return NULL;
	}
	pack_weights(m);
	return m;
}

parm_rope parm_model_rope(const parm_model *m, int n_ctx)
{
	const parm_config *c = &m->cfg;
	int long_ctx = (m->arch->allow & PARM_PART_ROPE_LONG) && n_ctx > c->rope_ctx_orig;
	return (parm_rope){ .base = c->rope_theta,
			      .mscale = c->rope_mscale > 0 ? c->rope_mscale : 1,
			      .factors = long_ctx ? m->rope_long : m->rope_freqs,
			      .neox = m->arch->rope_neox };
}

void parm_model_free(parm_model *m)
{
	if (!m)
		return;
	if (!m->parent) {
		if (m->tok)
			parm_tokenizer_free(m->tok);
		if (m->file)
			parm_gguf_close(m->file);
		for (int i = 0; i < m->n_vecs; i++)
			free(m->vecs[i]);
		free(m->vecs);
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
	parm_model *v = parm_xmalloc(sizeof *v);
	*v = *m;
	v->parent = m;
	v->layers = parm_xmemdup(m->layers, (size_t)m->cfg.n_layers * sizeof *m->layers);
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
	v->owned = parm_xrealloc(v->owned, (v->n_owned + 1) * sizeof *v->owned);
	v->owned[v->n_owned++] = f32;
	w->data = f32;
	w->type = PARM_GGML_F32;
	w->packed = NULL;
	return 0;
}

size_t parm_model_bytes_per_token(const parm_model *m)
{
	const parm_config *c = &m->cfg;
	size_t per_layer = 0;
	for (int p = 0; p < PARM_N_PROJ; p++) {
		const parm_weight *w = parm_layer_proj(&m->layers[0], p);
		per_layer += parm_ggml_row_bytes(w->type, w->cols) * w->rows;
	}
	return per_layer * c->n_layers +
	       parm_ggml_row_bytes(m->output.type, c->dim) * (c->n_vocab + 1);
}

void parm_set_threads(int n)
{
	parm_kernels_set_threads(n);
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
	kv = parm_xcalloc(1, sizeof *kv);
	kv->n_slots = n_slots;
	kv->n_ctx = n_ctx;
	kv->n_layers = m->cfg.n_layers;
	kv->kv_dim = parm_cfg_kvdim(&m->cfg);
	size_t count = (size_t)n_slots * kv->n_layers * n_ctx * kv->kv_dim;
	kv->len = parm_xcalloc(n_slots, sizeof *kv->len);
	kv->k = parm_xcalloc(count, sizeof(float));
	kv->v = parm_xcalloc(count, sizeof(float));
	/* each new position writes every layer's rows: a page fault per
	 * token and layer in small pages, dear under a hypervisor */
	parm_advise_huge(kv->k, count * sizeof(float));
	parm_advise_huge(kv->v, count * sizeof(float));
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

/* Slots are the outermost dimension, so growing appends. */
void parm_kv_grow(parm_kv *kv, int n_slots)
{
	if (n_slots <= kv->n_slots)
		return;
	size_t per_slot = (size_t)kv->n_layers * kv->n_ctx * kv->kv_dim, old = kv->n_slots;
	kv->k = parm_xrealloc(kv->k, n_slots * per_slot * sizeof(float));
	kv->v = parm_xrealloc(kv->v, n_slots * per_slot * sizeof(float));
	parm_advise_huge(kv->k, n_slots * per_slot * sizeof(float));
	parm_advise_huge(kv->v, n_slots * per_slot * sizeof(float));
	kv->len = parm_xrealloc(kv->len, n_slots * sizeof *kv->len);
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
	size_t d = c->dim, dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c), f = c->ff;
	size_t wide = dq > d ? dq : d;  /* xb2 holds wo's input or output */
	size_t floats = n * (2 * d + wide + 2 * dq + 2 * kvd + 2 * f);
	float *p = b->mem = parm_xmalloc(floats * sizeof(float) + n * (sizeof(int) + 2 * sizeof(float *)));
	b->x = p, p += n * d;
	b->xb = p, p += n * d;
	b->xb2 = p, p += n * wide;
	b->q = p, p += n * dq;
	b->att = p, p += n * dq;
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
	int *next = parm_xcalloc(kv->n_slots, sizeof *next);
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

/* The linear maps of layer l, projections first .. first + count - 1,
 * each with its bias and adapter (if any), which share their input x. */
static void layer_linear(const parm_model *m, const parm_adapter *ad, int l, int first,
			 int count, float *const *y, const float *x, int n)
{
	parm_linear lin[3];
	for (int j = 0; j < count; j++) {
		int p = first + j;
		const parm_adapter *a = ad ? &ad[l * PARM_N_PROJ + p] : NULL;
		lin[j] = parm_linear_of(parm_layer_proj(&m->layers[l], p), m->layers[l].bias[p]);
		if (a && a->p)
			lin[j].ad = a->p, lin[j].M = a->M;
	}
	parm_linear_forward(y, lin, count, x, n);
}

/* qwen3's q/k norm (RMS over each head, before rope), then rope. */
static void position_qk(const parm_layer *w, const parm_config *c, const parm_rope *rp,
			float *q, float *k, const int *pos, int n)
{
	int hd = parm_cfg_hd(c);
	if (w->q_norm) {
		parm_rmsnorm_forward(q, q, w->q_norm, n * c->n_heads, hd, c->rms_eps);
		parm_rmsnorm_forward(k, k, w->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
	}
	parm_rope_forward(q, pos, n, c->n_heads, hd, rp);
	parm_rope_forward(k, pos, n, c->n_kv_heads, hd, rp);
}

static void attention_block(const parm_model *m, const parm_adapter *ad, parm_kv *kv,
			    batch *b, int l, const int *slot, int n)
{
	const parm_config *c = &m->cfg;
	const parm_layer *w = &m->layers[l];
	int hd = parm_cfg_hd(c), kvd = kv->kv_dim;
	parm_rope rp = parm_model_rope(m, kv->n_ctx);
	parm_rmsnorm_forward(b->xb, b->x, w->attn_norm.data, n, c->dim, c->rms_eps);
	float *qkv[3] = { b->q, b->k, b->v };
	layer_linear(m, ad, l, 0, 3, qkv, b->xb, n);
	position_qk(w, c, &rp, b->q, b->k, b->pos, n);
	for (int i = 0; i < n; i++) {
		size_t off = kv_offset(kv, slot[i], l, b->pos[i]);
		memcpy(kv->k + off, b->k + (size_t)i * kvd, kvd * sizeof(float));
		memcpy(kv->v + off, b->v + (size_t)i * kvd, kvd * sizeof(float));
		b->kc[i] = kv->k + kv_offset(kv, slot[i], l, 0);
		b->vc[i] = kv->v + kv_offset(kv, slot[i], l, 0);
	}
	parm_attention_forward(b->att, b->q, b->kc, b->vc, b->pos, n, c->n_heads, c->n_kv_heads, hd);
	layer_linear(m, ad, l, 3, 1, &b->xb2, b->att, n);
	add_into(b->x, b->xb2, (size_t)n * c->dim);
}

static void ffn_block(const parm_model *m, const parm_adapter *ad, batch *b, int l, int n)
{
	const parm_config *c = &m->cfg;
	const parm_layer *w = &m->layers[l];
	parm_rmsnorm_forward(b->xb, b->x, w->ffn_norm.data, n, c->dim, c->rms_eps);
	float *gate_up[2] = { b->hb, b->hb2 };
	layer_linear(m, ad, l, 4, 2, gate_up, b->xb, n);
	parm_swiglu_forward(b->hb, b->hb, b->hb2, (int64_t)n * c->ff);
	layer_linear(m, ad, l, 6, 1, &b->xb2, b->hb, n);
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
	parm_rmsnorm_forward(b->xb, b->xb, m->output_norm.data, n_out, c->dim, c->rms_eps);
	parm_linear out = parm_linear_of(&m->output, m->output_bias);
	parm_linear_forward(&logits, &out, 1, b->xb, n_out);
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
	parm_embed_forward(b.x, m->token_embd.data, m->token_embd.type, tokens, n, m->cfg.dim);
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
static void add_random(parm_gguf_writer *w, const char *name, enum parm_ggml_type t,
		       int64_t cols, int64_t rows, uint64_t *s)
{
	int64_t ne[2] = { cols, rows };
	float *f = parm_xmalloc((size_t)(cols * rows) * sizeof *f);
	fill_normal(f, (size_t)(cols * rows), 0.02f, s);
	if (t == PARM_GGML_F32) {
		parm_gguf_w_tensor(w, name, t, 2, ne, f);
	} else {
		size_t rb = parm_ggml_row_bytes(t, cols);
		char *q = parm_xmalloc(rb * rows);
		for (int64_t r = 0; r < rows; r++)
			parm_quant_row(q + r * rb, f + r * cols, t, cols);
		parm_gguf_w_tensor(w, name, t, 2, ne, q);
		free(q);
	}
	free(f);
}

static void add_ones(parm_gguf_writer *w, const char *name, int64_t n)
{
	float *f = parm_xmalloc((size_t)n * sizeof *f);
	for (int64_t i = 0; i < n; i++)
		f[i] = 1.0f;
	parm_gguf_w_tensor(w, name, PARM_GGML_F32, 1, &n, f);
	free(f);
}

/* A vector of n values 1 + normal(0, std): a norm (std 0: all ones). */
static void add_norm(parm_gguf_writer *w, const char *name, int64_t n, float std, uint64_t *s)
{
	float *f = parm_xmalloc((size_t)n * sizeof *f);
	fill_normal(f, (size_t)n, std, s);
	for (int64_t i = 0; i < n; i++)
		f[i] = std ? 1.0f + f[i] : 1.0f;
	parm_gguf_w_tensor(w, name, PARM_GGML_F32, 1, &n, f);
	free(f);
}

/* A bias vector of n values normal(0, 0.1): large enough to matter. */
static void add_bias(parm_gguf_writer *w, const char *name, int64_t n, uint64_t *s)
{
	float *f = parm_xmalloc((size_t)n * sizeof *f);
	fill_normal(f, (size_t)n, 0.1f, s);
	parm_gguf_w_tensor(w, name, PARM_GGML_F32, 1, &n, f);
	free(f);
}

static int check_init_config(const parm_config *c, enum parm_ggml_type t)
{
	int blk = parm_ggml_type_block(t);
	if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
	    c->ff <= 0 || c->n_ctx <= 0 || c->head_dim < 0)
		return parm_fail("model init: every size must be positive");
	if (!parm_arch_at(c->arch))
		return parm_fail("model init: no architecture %d", c->arch);
	if (!c->head_dim && c->dim % c->n_heads)
		return parm_fail("model init: dim %d is not divisible by heads %d", c->dim, c->n_heads);
	if (c->n_heads % c->n_kv_heads)
		return parm_fail("model init: heads %d is not divisible by kv heads %d",
				 c->n_heads, c->n_kv_heads);
	if (parm_cfg_hd(c) % 2)
		return parm_fail("model init: head dim %d is odd", parm_cfg_hd(c));
	if (!parm_ggml_type_name(t) || blk <= 0 || !parm_quant_type_quantised(t))
		return parm_fail("model init: cannot write tensors of type %s (f32, f16, bf16, "
				 "q8_0 or q4_0)", parm_ggml_type_name(t) ? parm_ggml_type_name(t) : "unknown");
	if (c->dim % blk || c->ff % blk || parm_cfg_qdim(c) % blk)
		return parm_fail("model init: dim %d, ff %d and heads x head dim %d must be multiples "
				 "of %d for %s", c->dim, c->ff, parm_cfg_qdim(c), blk, parm_ggml_type_name(t));
	return 0;
}

static void set_hparams(parm_gguf_writer *w, const parm_config *c, int n_vocab, enum parm_ggml_type t)
{
	const char *arch = parm_arch_at(c->arch)->name;
	char key[96];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, arch), key)
	parm_gguf_w_set_str(w, "general.architecture", arch);
	parm_gguf_w_set_str(w, "general.name", "parm-random");
	if (parm_quant_file_type(t) >= 0)
		parm_gguf_w_set_u32(w, "general.file_type", (uint32_t)parm_quant_file_type(t));
	parm_gguf_w_set_u32(w, KEY("context_length"), c->n_ctx);
	parm_gguf_w_set_u32(w, KEY("embedding_length"), c->dim);
	parm_gguf_w_set_u32(w, KEY("block_count"), c->n_layers);
	parm_gguf_w_set_u32(w, KEY("feed_forward_length"), c->ff);
	parm_gguf_w_set_u32(w, KEY("attention.head_count"), c->n_heads);
	parm_gguf_w_set_u32(w, KEY("attention.head_count_kv"), c->n_kv_heads);
	parm_gguf_w_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps > 0 ? c->rms_eps : 1e-5f);
	parm_gguf_w_set_f32(w, KEY("rope.freq_base"), c->rope_theta > 0 ? c->rope_theta : 10000.0f);
	parm_gguf_w_set_u32(w, KEY("rope.dimension_count"), parm_cfg_hd(c));
	if (c->head_dim && c->head_dim * c->n_heads != c->dim) {
		parm_gguf_w_set_u32(w, KEY("attention.key_length"), c->head_dim);
		parm_gguf_w_set_u32(w, KEY("attention.value_length"), c->head_dim);
	}
	if (c->rope_mscale > 0 && c->rope_mscale != 1)
		parm_gguf_w_set_f32(w, KEY("rope.scaling.attn_factor"), c->rope_mscale);
	parm_gguf_w_set_u32(w, KEY("vocab_size"), n_vocab);
#undef KEY
}

static int copy_tokenizer(parm_gguf_writer *w, const parm_gguf *vocab, int *n_vocab)
{
	enum parm_gguf_vtype et;
	uint64_t n;
	if (parm_gguf_get_arr(vocab, "tokenizer.ggml.tokens", &et, &n) < 0)
		return parm_fail("%s: no tokenizer.ggml.tokens", parm_gguf_path(vocab));
	if (n < 1 || n > (1 << 30))
		return parm_fail("%s: %llu tokens", parm_gguf_path(vocab), (unsigned long long)n);
	*n_vocab = (int)n;
	for (int i = 0; i < parm_gguf_n_kv(vocab); i++) {
		const char *key = parm_gguf_kv_key(vocab, i);
		if (!strncmp(key, "tokenizer.", 10) && parm_gguf_w_copy_kv(w, vocab, key) < 0)
			return -1;
	}
	return 0;
}

/* One layer's tensors in llama.cpp's names and its converter's layout:
 * phi3 fuses q||k||v into attn_qkv and gate||up into ffn_up; qwen2 adds
 * q/k/v biases, qwen3 per-head q/k norms.  A llama layer draws exactly
 * what it always drew, so one seed keeps giving the same model. */
static void add_layer(parm_gguf_writer *w, const parm_config *c, int l, enum parm_ggml_type t, uint64_t *s)
{
	int D = c->dim, Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c), hd = parm_cfg_hd(c);
	int phi3 = c->arch == PARM_ARCH_PHI3;
	char name[96];
#define NAME(x) (snprintf(name, sizeof name, "blk.%d." x, l), name)
	add_ones(w, NAME("attn_norm.weight"), D);
	if (phi3) {
		add_random(w, NAME("attn_qkv.weight"), t, D, Dq + 2 * kvd, s);
	} else {
		add_random(w, NAME("attn_q.weight"), t, D, Dq, s);
		add_random(w, NAME("attn_k.weight"), t, D, kvd, s);
		add_random(w, NAME("attn_v.weight"), t, D, kvd, s);
	}
	if (c->arch == PARM_ARCH_QWEN2) {
		add_bias(w, NAME("attn_q.bias"), Dq, s);
		add_bias(w, NAME("attn_k.bias"), kvd, s);
		add_bias(w, NAME("attn_v.bias"), kvd, s);
	}
	if (c->arch == PARM_ARCH_QWEN3) {
		add_norm(w, NAME("attn_q_norm.weight"), hd, 0.2f, s);
		add_norm(w, NAME("attn_k_norm.weight"), hd, 0.2f, s);
	}
	add_random(w, NAME("attn_output.weight"), t, Dq, D, s);
	add_ones(w, NAME("ffn_norm.weight"), D);
	if (phi3) {
		add_random(w, NAME("ffn_up.weight"), t, D, 2 * (int64_t)c->ff, s);
		add_random(w, NAME("ffn_down.weight"), t, c->ff, D, s);
	} else {
		add_random(w, NAME("ffn_gate.weight"), t, D, c->ff, s);
		add_random(w, NAME("ffn_down.weight"), t, c->ff, D, s);
		add_random(w, NAME("ffn_up.weight"), t, D, c->ff, s);
	}
#undef NAME
}

/* The weights; draws do not depend on the type, so one seed gives the same
 * model in every type. */
static void add_weights(parm_gguf_writer *w, const parm_config *c, int V, enum parm_ggml_type t, uint64_t seed)
{
	uint64_t s = seed;
	add_random(w, "token_embd.weight", t, c->dim, V, &s);
	add_ones(w, "output_norm.weight", c->dim);
	add_random(w, "output.weight", t, c->dim, V, &s);
	for (int l = 0; l < c->n_layers; l++)
		add_layer(w, c, l, t, &s);
}

int parm_model_init(const char *out_path, const parm_gguf *vocab,
		    const parm_config *cfg, enum parm_ggml_type type, uint64_t seed)
{
	int n_vocab = 0, rc;
	if (check_init_config(cfg, type) < 0)
		return -1;
	parm_gguf_writer *w = parm_gguf_w_new();
	if (copy_tokenizer(w, vocab, &n_vocab) < 0 ||
	    (cfg->n_vocab > 0 && cfg->n_vocab != n_vocab &&
	     parm_fail("model init: vocab %d differs from the tokenizer's %d tokens",
		       cfg->n_vocab, n_vocab) < 0)) {
		parm_gguf_w_free(w);
		return -1;
	}
	set_hparams(w, cfg, n_vocab, type);
	add_weights(w, cfg, n_vocab, type, seed);
	rc = parm_gguf_w_save(w, out_path);
	parm_gguf_w_free(w);
	return rc;
}

void parm_batch_push(parm_batch *b, int tok, int slot, int want)
{
	if (b->n == b->cap) {
		b->cap = 2 * b->cap + 64;
		b->tokens = parm_xrealloc(b->tokens, b->cap * sizeof *b->tokens);
		b->slot = parm_xrealloc(b->slot, b->cap * sizeof *b->slot);
		b->want = parm_xrealloc(b->want, b->cap);
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
