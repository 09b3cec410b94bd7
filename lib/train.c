/* train.c - the trainable view of a model: parameters, the training
 * forward and backward over a packed batch.  Legend in model.h; N = tokens
 * of the packed batch, S = its sequences. */
#include <parm/train.h>
#include "linear.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant_dot.h"
#include <parm/util.h>

void parm_adapter_opts_default(parm_adapter_opts *o, int k)
{
	*o = (parm_adapter_opts){ .k = k, .r1 = 4, .r2 = 4, .lora_alpha = 8, .dropout = 0.05f,
				  .targets = PARM_TARGETS_DEFAULT, .seed = 42 };
}

/* One linear map of a layer (linear.h: weight, bias, adapter): the weight
 * a trainable f32 copy or frozen in place, the bias frozen; in the
 * adapters kind its PBLoRA, whose activations lin.h, lin.g are kept. */
typedef struct {
	parm_linear lin;
	float *dw;                      /* NULL: frozen */
	int in, out;
	int has_adapter;
	parm_pblora ad, dad;            /* parameters and their gradients */
} tlinear;

typedef struct {
	const float *attn_norm, *ffn_norm, *q_norm, *k_norm;
	float *d_attn_norm, *d_ffn_norm;
	tlinear lin[PARM_T_COUNT];
	/* activations kept for the backward pass, [N][...]; q0, k0 are q and
	 * k before their norms (qwen3: NULL otherwise) */
	float *res0, *xn1, *q, *k, *v, *q0, *k0, *att, *lse, *res1, *xn2, *gate, *up;
} tlayer;

struct parm_trainer {
	const parm_model *m;
	int full, training, max_seqs, max_len, max_tokens;
	int fresh;                      /* on an ARM: initialise its adapters */
	parm_adapter_opts ao;
	float *alpha;                   /* [k] */
	uint64_t n_forward;             /* makes each forward's dropout masks new */
	float *params, *grads;
	size_t n_params;
	parm_arm *arm;                  /* params[] is its own (not ours), or NULL */
	parm_train_tensor *tensors;
	int n_tensors;
	const void *embd, *out_w, *out_norm;
	enum parm_ggml_type embd_type, out_type;
	float *d_embd, *d_out, *d_out_norm;
	tlayer *layers;
	float *act;                     /* every activation, one allocation */
	float *resf, *xnf;              /* final residual and its norm */
	float *scratch;                 /* backward buffers */
	float *drop;                    /* dropout: input and gradient, [N][wide] each */
	int *tokens, *pos, *start, *len, *rows, *targets, *row_bt; /* packed batch */
	int n, n_seq, n_rows, B, T;
	float *chunk;                   /* logits and their gradient, [C][V] x 2 */
	int chunk_rows;
	float *pw;                      /* frozen output: E_p[W] per wanted row, [N][D] */
	int pw_ok;                      /* pw is the last forward's */
};

/* ---- parameters: one allocation carved into named tensors ---- */

static parm_train_tensor *add_tensor(parm_trainer *t, const char *name, int64_t cols,
				     int64_t rows, int decay)
{
	t->tensors = parm_xrealloc(t->tensors, (t->n_tensors + 1) * sizeof *t->tensors);
	parm_train_tensor *p = &t->tensors[t->n_tensors++];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	p->count = (size_t)cols * rows;
	p->n_dims = rows > 1 ? 2 : 1;
	p->ne[0] = cols;
	p->ne[1] = rows;
	p->decay = decay;
	p->data = (float *)(uintptr_t)t->n_params;      /* offset until carved */
	t->n_params += p->count;
	return p;
}

static void carve_tensors(parm_trainer *t)
{
	t->params = t->arm ? t->arm->params : parm_xcalloc(t->n_params ? t->n_params : 1, sizeof(float));
	t->grads = parm_xcalloc(t->n_params ? t->n_params : 1, sizeof(float));
	for (int i = 0; i < t->n_tensors; i++) {
		size_t off = (size_t)(uintptr_t)t->tensors[i].data;
		t->tensors[i].data = t->params + off;
		t->tensors[i].grad = t->grads + off;
	}
}

/* An f32 copy of a model weight into a carved tensor. */
static void copy_weight(float *dst, const parm_weight *w)
{
	size_t rb = parm_ggml_row_bytes(w->type, w->cols);
	for (int64_t r = 0; r < w->rows; r++)
		parm_dequant_row(dst + r * w->cols, (const char *)w->data + r * rb, w->type, w->cols);
}

static int tied_output(const parm_model *m)
{
	return m->output.data == m->token_embd.data;
}

/* Full kind: declare every weight, carve, copy, then point the views. */
static void setup_full(parm_trainer *t)
{
	const parm_model *m = t->m;
	const parm_config *c = &m->cfg;
	char name[64];
	int L = c->n_layers, per = 2 + PARM_T_COUNT;
	add_tensor(t, "token_embd.weight", c->dim, c->n_vocab, 1);
	add_tensor(t, "output_norm.weight", c->dim, 1, 0);
	if (!tied_output(m))
		add_tensor(t, "output.weight", c->dim, c->n_vocab, 1);
	for (int l = 0; l < L; l++) {
		const parm_layer *pl = &m->layers[l];
		snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
		add_tensor(t, name, c->dim, 1, 0);
		snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
		add_tensor(t, name, c->dim, 1, 0);
		for (int k = 0; k < PARM_T_COUNT; k++) {
			const parm_weight *w = parm_layer_proj(pl, k);
			snprintf(name, sizeof name, "blk.%d.%s.weight", l, parm_target_name(k));
			add_tensor(t, name, w->cols, w->rows, 1);
		}
	}
	carve_tensors(t);
	parm_train_tensor *ts = t->tensors;
	int base = tied_output(m) ? 2 : 3;
	copy_weight(ts[0].data, &m->token_embd);
	memcpy(ts[1].data, m->output_norm.data, c->dim * sizeof(float));
	if (!tied_output(m))
		copy_weight(ts[2].data, &m->output);
	t->embd = ts[0].data, t->embd_type = PARM_GGML_F32, t->d_embd = ts[0].grad;
	t->out_norm = ts[1].data, t->d_out_norm = ts[1].grad;
	t->out_w = ts[base - 1].data, t->out_type = PARM_GGML_F32;
	t->d_out = tied_output(m) ? ts[0].grad : ts[2].grad;
	for (int l = 0; l < L; l++) {
		tlayer *tl = &t->layers[l];
		parm_train_tensor *lt = ts + base + l * per;
		memcpy(lt[0].data, m->layers[l].attn_norm.data, c->dim * sizeof(float));
		memcpy(lt[1].data, m->layers[l].ffn_norm.data, c->dim * sizeof(float));
		tl->attn_norm = lt[0].data, tl->d_attn_norm = lt[0].grad;
		tl->ffn_norm = lt[1].data, tl->d_ffn_norm = lt[1].grad;
		for (int k = 0; k < PARM_T_COUNT; k++) {
			const parm_weight *w = parm_layer_proj(&m->layers[l], k);
			copy_weight(lt[2 + k].data, w);
			tl->lin[k] = (tlinear){ .lin = { .w = lt[2 + k].data, .type = PARM_GGML_F32,
							 .in = (int)w->cols, .out = (int)w->rows },
						.dw = lt[2 + k].grad, .in = (int)w->cols,
						.out = (int)w->rows };
		}
	}
}

/* Adapters kind: the backbone in place, four tensors per adapter. */
static void setup_adapters(parm_trainer *t)
{
	const parm_model *m = t->m;
	const parm_adapter_opts *o = &t->ao;
	int r = o->r1 + o->r2, L = m->cfg.n_layers;
	static const char *const part[4] = { "pblora_A", "pblora_B", "pblora_W1", "pblora_W2" };
	int first[L][PARM_T_COUNT];
	char name[64];
	for (int l = 0; l < L; l++)
		for (int k = 0; k < PARM_T_COUNT; k++) {
			const parm_weight *w = parm_layer_proj(&m->layers[l], k);
			int64_t shape[4][2] = { { w->cols, r }, { r, w->rows }, { o->r1, o->r1 },
						{ (int64_t)o->r2 * o->r2, o->k } };
			first[l][k] = t->n_tensors;
			if (!(o->targets >> k & 1))
				continue;
			for (int p = 0; p < 4; p++) {
				snprintf(name, sizeof name, "blk.%d.%s.%s", l, parm_target_name(k), part[p]);
				add_tensor(t, name, shape[p][0], shape[p][1], 1);
			}
		}
	carve_tensors(t);
	for (int l = 0; l < L; l++) {
		tlayer *tl = &t->layers[l];
		tl->attn_norm = m->layers[l].attn_norm.data;
		tl->ffn_norm = m->layers[l].ffn_norm.data;
		tl->q_norm = m->layers[l].q_norm;
		tl->k_norm = m->layers[l].k_norm;
		for (int k = 0; k < PARM_T_COUNT; k++) {
			const parm_weight *w = parm_layer_proj(&m->layers[l], k);
			tlinear *lin = &tl->lin[k];
			*lin = (tlinear){ .lin = parm_linear_of(w, m->layers[l].bias[k]),
					  .in = (int)w->cols, .out = (int)w->rows };
			if (!(o->targets >> k & 1))
				continue;
			parm_train_tensor *a = &t->tensors[first[l][k]];
			lin->has_adapter = 1;
			parm_pblora_carve(&lin->ad, a->data, lin->in, lin->out, o->k, o->r1, o->r2, o->lora_alpha);
			parm_pblora_carve(&lin->dad, a->grad, lin->in, lin->out, o->k, o->r1, o->r2, o->lora_alpha);
			if (!t->arm || t->fresh)
				parm_pblora_init(&lin->ad, o->seed ^ ((uint64_t)(l * PARM_T_COUNT + k + 1) << 32));
			lin->lin.M = parm_xmalloc((size_t)r * r * sizeof(float));
			lin->lin.ad = &lin->ad;
		}
	}
	t->embd = m->token_embd.data, t->embd_type = m->token_embd.type;
	t->out_w = m->output.data, t->out_type = m->output.type;
	t->out_norm = m->output_norm.data;
}

/* ---- activations: one allocation for the capacity ---- */

static void alloc_activations(parm_trainer *t)
{
	const parm_config *c = &t->m->cfg;
	size_t N = t->max_tokens, D = c->dim, F = c->ff, H = c->n_heads;
	size_t Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c), r = t->full ? 0 : t->ao.r1 + t->ao.r2;
	size_t n_ad = 0, qk0 = t->m->layers[0].q_norm ? Dq + kvd : 0;
	for (int k = 0; k < PARM_T_COUNT && !t->full; k++)
		n_ad += t->ao.targets >> k & 1;
	size_t per_layer = N * (4 * D + 2 * Dq + 2 * kvd + qk0 + H + 2 * F + 2 * r * n_ad);
	float *p = t->act = parm_xmalloc((per_layer * c->n_layers + 2 * N * D) * sizeof(float));
	for (int l = 0; l < c->n_layers; l++) {
		tlayer *tl = &t->layers[l];
		float **bufs[] = { &tl->res0, &tl->xn1, &tl->res1, &tl->xn2 };
		for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
			*bufs[i] = p, p += N * D;
		tl->q = p, p += N * Dq;
		tl->att = p, p += N * Dq;
		tl->k = p, p += N * kvd;
		tl->v = p, p += N * kvd;
		if (qk0) {
			tl->q0 = p, p += N * Dq;
			tl->k0 = p, p += N * kvd;
		}
		tl->lse = p, p += N * H;
		tl->gate = p, p += N * F;
		tl->up = p, p += N * F;
		for (int k = 0; k < PARM_T_COUNT; k++)
			if (tl->lin[k].has_adapter) {
				tl->lin[k].lin.h = p, p += N * r;
				tl->lin[k].lin.g = p, p += N * r;
			}
	}
	t->resf = p, p += N * D;
	t->xnf = p;
	/* backward (carve_scratch): dres, dxn [N][D]; dq, datt, dq0 [N][Dq];
	 * dk, dv, dk0 [N][kvd]; dgate, dup, hb [N][F]; the forward's [N][D]
	 * and [N][F] temporaries reuse its start */
	t->scratch = parm_xmalloc(N * (2 * D + 3 * Dq + 3 * kvd + 3 * F) * sizeof(float));
	size_t wide = F > D ? F : D;
	wide = Dq > wide ? Dq : wide;
	t->drop = parm_xmalloc(2 * N * wide * sizeof(float));
	t->chunk_rows = (int)(((size_t)8 << 20) / c->n_vocab);
	t->chunk_rows = t->chunk_rows < 16 ? 16 : t->chunk_rows > 512 ? 512 : t->chunk_rows;
	t->chunk = parm_xmalloc((size_t)2 * t->chunk_rows * (c->n_vocab + D) * sizeof(float));
	if (!t->full)
		t->pw = parm_xmalloc(N * D * sizeof(float));
	t->tokens = parm_xmalloc(N * sizeof(int) * 5 + (size_t)t->max_seqs * 2 * sizeof(int));
	t->pos = t->tokens + N;
	t->rows = t->pos + N;
	t->targets = t->rows + N;
	t->row_bt = t->targets + N;
	t->start = t->row_bt + N;
	t->len = t->start + t->max_seqs;
}

/* The full kind trains and writes the plain llama layout; what else a
 * model carries (frozen, or lost on writing) is refused by name. */
static const char *full_unsupported(const parm_model *m)
{
	if (m->output_bias)
		return "output.bias";
	if (m->rope_freqs || m->rope_long)
		return "rope frequency factors";
	if (!parm_gguf_find_tensor(m->file, "blk.0.attn_q.weight") ||
	    !parm_gguf_find_tensor(m->file, "blk.0.ffn_gate.weight"))
		return "fused projections";
	for (int l = 0; l < m->cfg.n_layers; l++) {
		const parm_layer *pl = &m->layers[l];
		if (pl->q_norm)
			return "attn_q_norm and attn_k_norm";
		for (int p = 0; p < PARM_N_PROJ; p++)
			if (pl->bias[p])
				return "biases";
	}
	return NULL;
}

static parm_trainer *trainer_new(const parm_model *m, const parm_adapter_opts *o,
				 int max_seqs, int max_len, parm_arm *arm, int fresh)
{
	if (max_seqs < 1 || max_len < 2)
		return parm_failp("trainer: batch of %d sequences of %d tokens (need >= 1 and >= 2)",
				  max_seqs, max_len);
	if (o && (o->k < 1 || o->r1 < 0 || o->r2 < 0 || o->r1 + o->r2 < 1 ||
		  !(o->dropout >= 0 && o->dropout < 1) || (o->targets >> PARM_T_COUNT)))
		return parm_failp("trainer: bad adapter options (k %d, r1 %d, r2 %d, dropout %g, targets %#x)",
				  o->k, o->r1, o->r2, o->dropout, o->targets);
	if (!o && full_unsupported(m))
		return parm_failcp(PARM_EUNSUPPORTED, "trainer: training every weight of this %s model is not implemented "
				  "(it has %s); train adapters on it instead", m->arch->name,
				  full_unsupported(m));
	parm_trainer *t = parm_xcalloc(1, sizeof *t);
	t->m = m;
	t->arm = arm;
	t->fresh = fresh;
	t->full = !o;
	t->training = 1;
	t->max_seqs = max_seqs;
	t->max_len = max_len;
	t->max_tokens = max_seqs * max_len;
	t->layers = parm_xcalloc(m->cfg.n_layers, sizeof *t->layers);
	if (o) {
		t->ao = *o;
		if (!t->ao.targets)
			t->ao.targets = PARM_TARGETS_DEFAULT;
		t->alpha = parm_xmalloc(o->k * sizeof *t->alpha);
		for (int i = 0; i < o->k; i++)
			t->alpha[i] = 1.0f / o->k;
		setup_adapters(t);
	} else {
		setup_full(t);
	}
	alloc_activations(t);
	return t;
}

parm_trainer *parm_train_new_full(const parm_model *m, int max_seqs, int max_len)
{
	return trainer_new(m, NULL, max_seqs, max_len, NULL, 0);
}

parm_trainer *parm_train_new_adapters(const parm_model *m, const parm_adapter_opts *o,
				      int max_seqs, int max_len)
{
	parm_adapter_opts def;
	if (!o) {
		parm_adapter_opts_default(&def, 1);
		o = &def;
	}
	return trainer_new(m, o, max_seqs, max_len, NULL, 0);
}

/* Whether the trainer's adapters are the ARM's, one for one: the same
 * targets, shapes and place in the one parameter array. */
static int same_store(parm_trainer *t, const parm_arm *arm)
{
	if (t->n_params != arm->n_params)
		return 0;
	for (int l = 0; l < arm->backbone->cfg.n_layers; l++)
		for (int k = 0; k < PARM_T_COUNT; k++) {
			const parm_pblora *pa = parm_arm_adapter(arm, l, (enum parm_target)k);
			const parm_pblora *pt = parm_train_adapter(t, l, k);
			if (!pa != !pt || (pa && (pa->A != pt->A || pa->in != pt->in ||
						  pa->out != pt->out)))
				return 0;
		}
	return 1;
}

parm_trainer *parm_train_new_on_arm(parm_arm *arm, const parm_adapter_opts *o, int max_seqs,
				    int max_len, int fresh)
{
	parm_adapter_opts ao = *o;
	ao.k = arm->k, ao.r1 = arm->r1, ao.r2 = arm->r2, ao.lora_alpha = arm->lora_alpha;
	ao.targets = 0;
	for (int i = 0; i < arm->n_targets; i++)
		ao.targets |= 1u << arm->targets[i];
	parm_trainer *t = trainer_new(arm->backbone, &ao, max_seqs, max_len, arm, fresh);
	if (t && !same_store(t, arm)) {
		parm_train_free(t);
		return parm_failp("trainer: the ARM's adapters are not laid out as the trainer's");
	}
	return t;
}

void parm_train_free(parm_trainer *t)
{
	if (!t)
		return;
	for (int l = 0; l < t->m->cfg.n_layers; l++)
		for (int k = 0; k < PARM_T_COUNT; k++)
			free((float *)t->layers[l].lin[k].lin.M);
	free(t->layers);
	free(t->tensors);
	if (!t->arm)
		free(t->params);
	free(t->grads);
	free(t->alpha);
	free(t->act);
	free(t->scratch);
	free(t->drop);
	free(t->chunk);
	free(t->pw);
	free(t->tokens);
	free(t);
}

size_t parm_train_n_params(const parm_trainer *t) { return t->n_params; }
float *parm_train_params(parm_trainer *t) { return t->params; }
float *parm_train_grads(parm_trainer *t) { return t->grads; }
int parm_train_n_tensors(const parm_trainer *t) { return t->n_tensors; }
void parm_train_set_training(parm_trainer *t, int on) { t->training = on; }

const parm_train_tensor *parm_train_tensor_at(const parm_trainer *t, int i)
{
	return i >= 0 && i < t->n_tensors ? &t->tensors[i] : NULL;
}

void parm_train_zero_grad(parm_trainer *t)
{
	memset(t->grads, 0, t->n_params * sizeof(float));
}

int parm_train_set_pref(parm_trainer *t, const float *alpha)
{
	if (t->full)
		return parm_fail("trainer: a preference vector needs adapters (this trainer is full)");
	memcpy(t->alpha, alpha, t->ao.k * sizeof *alpha);
	return 0;
}

parm_pblora *parm_train_adapter(parm_trainer *t, int layer, int target)
{
	if (t->full || layer < 0 || layer >= t->m->cfg.n_layers || target < 0 ||
	    target >= PARM_T_COUNT || !t->layers[layer].lin[target].has_adapter)
		return NULL;
	return &t->layers[layer].lin[target].ad;
}

/* ---- the packed batch ---- */

static int pack_batch(parm_trainer *t, const int *tokens, const int *lengths, int B, int T,
		      const uint8_t *want)
{
	int V = t->m->cfg.n_vocab;
	if (B < 1 || B > t->max_seqs || T < 2 || T > t->max_len)
		return parm_fail("trainer: batch of %d x %d tokens does not fit the trainer's %d x %d",
				 B, T, t->max_seqs, t->max_len);
	t->n = t->n_rows = 0;
	for (int b = 0; b < B; b++) {
		if (lengths[b] < 1 || lengths[b] > T)
			return parm_fail("trainer: sequence %d has length %d (1..%d)", b, lengths[b], T);
		t->start[b] = t->n;
		t->len[b] = lengths[b];
		for (int i = 0; i < lengths[b]; i++) {
			int tok = tokens[(size_t)b * T + i];
			if (tok < 0 || tok >= V)
				return parm_fail("trainer: token %d at [%d][%d] is out of range (0..%d)",
						 tok, b, i, V - 1);
			t->tokens[t->n] = tok;
			t->pos[t->n++] = i;
		}
		for (int i = 0; i + 1 < lengths[b]; i++) {
			size_t bt = (size_t)b * (T - 1) + i;
			if (want && !want[bt])
				continue;
			t->rows[t->n_rows] = t->start[b] + i;
			t->targets[t->n_rows] = tokens[(size_t)b * T + i + 1];
			t->row_bt[t->n_rows++] = (int)bt;
		}
	}
	t->n_seq = B;
	t->B = B;
	t->T = T;
	return 0;
}

/* ---- a linear map with its adapter ---- */

static int dropout_on(const parm_trainer *t)
{
	return !t->full && t->training && t->ao.dropout > 0;
}

static uint64_t dropout_seed(const parm_trainer *t, int layer, int target)
{
	uint64_t s = t->ao.seed * 0x9e3779b97f4a7c15ULL ^ t->n_forward * 0xbf58476d1ce4e5b9ULL;
	return s ^ ((uint64_t)(layer * PARM_T_COUNT + target + 1) * 0x94d049bb133111ebULL);
}

/* The adapter's input: x, or x through this layer's dropout mask. */
static const float *adapter_input(const parm_trainer *t, const tlinear *lin, const float *x,
				  int l, int k, float *buf)
{
	if (!dropout_on(t))
		return x;
	parm_pblora_dropout(buf, x, t->ao.dropout, dropout_seed(t, l, k), (size_t)t->n * lin->in);
	return buf;
}

/* y[k] = x W_k^T + b_k (+ adapter) for the targets first .. first +
 * count - 1, which share their input x. */
static void linear_forward(parm_trainer *t, int l, int first, int count, float *const *y,
			   const float *x)
{
	tlayer *tl = &t->layers[l];
	parm_linear lin[3];
	for (int j = 0; j < count; j++)
		lin[j] = tl->lin[first + j].lin;
	parm_linear_base(y, lin, count, x, t->n);
	for (int j = 0; j < count; j++) {
		tlinear *tlin = &tl->lin[first + j];
		if (tlin->has_adapter)
			parm_linear_adapter(y[j], &tlin->lin, adapter_input(t, tlin, x, l, first + j, t->drop),
					    t->n);
	}
}

/* dx += dy W (+ the adapter's share), dW and the adapter's gradients +=;
 * a bias is frozen and passes dy through unchanged. */
static void linear_backward(parm_trainer *t, int l, int k, float *dx, const float *dy,
			    const float *x)
{
	tlinear *lin = &t->layers[l].lin[k];
	const float *M = lin->lin.M;
	parm_matmul_backward(dx, lin->dw, dy, x, lin->lin.w, lin->lin.type, t->n, lin->in, lin->out);
	if (!lin->has_adapter)
		return;
	if (!dropout_on(t)) {
		parm_pblora_backward(dx, &lin->dad, dy, x, lin->lin.h, lin->lin.g, &lin->ad, M, t->alpha, t->n);
		return;
	}
	float *xd = t->drop, *dxd = xd + (size_t)t->max_tokens * lin->in;
	size_t count = (size_t)t->n * lin->in;
	uint64_t seed = dropout_seed(t, l, k);
	parm_pblora_dropout(xd, x, t->ao.dropout, seed, count);
	memset(dxd, 0, count * sizeof *dxd);
	parm_pblora_backward(dxd, &lin->dad, dy, xd, lin->lin.h, lin->lin.g, &lin->ad, M, t->alpha, t->n);
	parm_pblora_dropout_backward(dx, dxd, t->ao.dropout, seed, count);
}

/* ---- forward ---- */

static void add_rows(float *y, const float *a, const float *b, size_t count)
{
	for (size_t i = 0; i < count; i++)
		y[i] = a[i] + b[i];
}

/* qwen3's per-head q/k norms (keeping their inputs), then rope. */
static void position_qk(parm_trainer *t, tlayer *tl, const parm_rope *rp)
{
	const parm_config *c = &t->m->cfg;
	int n = t->n, hd = parm_cfg_hd(c);
	if (tl->q_norm) {
		memcpy(tl->q0, tl->q, (size_t)n * parm_cfg_qdim(c) * sizeof(float));
		memcpy(tl->k0, tl->k, (size_t)n * parm_cfg_kvdim(c) * sizeof(float));
		parm_rmsnorm_forward(tl->q, tl->q0, tl->q_norm, n * c->n_heads, hd, c->rms_eps);
		parm_rmsnorm_forward(tl->k, tl->k0, tl->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
	}
	parm_rope_forward(tl->q, t->pos, n, c->n_heads, hd, rp);
	parm_rope_forward(tl->k, t->pos, n, c->n_kv_heads, hd, rp);
}

/* res_out = res0 + attention(res0) + ffn(...), keeping the activations. */
static void layer_forward(parm_trainer *t, int l, float *res_out)
{
	const parm_config *c = &t->m->cfg;
	tlayer *tl = &t->layers[l];
	int n = t->n, D = c->dim;
	float *tmp = t->scratch;        /* [N][D] */
	parm_rope rp = parm_model_rope(t->m, t->max_len);
	parm_rmsnorm_forward(tl->xn1, tl->res0, tl->attn_norm, n, D, c->rms_eps);
	float *qkv[3] = { tl->q, tl->k, tl->v };
	linear_forward(t, l, PARM_T_Q, 3, qkv, tl->xn1);
	position_qk(t, tl, &rp);
	parm_attention_train_forward(tl->att, tl->lse, tl->q, tl->k, tl->v, t->start, t->len,
				t->n_seq, c->n_heads, c->n_kv_heads, parm_cfg_hd(c));
	linear_forward(t, l, PARM_T_O, 1, &tmp, tl->att);
	add_rows(tl->res1, tl->res0, tmp, (size_t)n * D);
	parm_rmsnorm_forward(tl->xn2, tl->res1, tl->ffn_norm, n, D, c->rms_eps);
	float *gu[2] = { tl->gate, tl->up };
	linear_forward(t, l, PARM_T_GATE, 2, gu, tl->xn2);
	float *hb = t->scratch + (size_t)t->max_tokens * D;     /* [N][F] */
	parm_swiglu_forward(hb, tl->gate, tl->up, (int64_t)n * c->ff);
	linear_forward(t, l, PARM_T_DOWN, 1, &tmp, hb);
	add_rows(res_out, tl->res1, tmp, (size_t)n * D);
}

static void zero_rows(float *p, size_t count)
{
	memset(p, 0, count * sizeof *p);
}

/* Rows r0 .. r0 + nc of the wanted positions: their normed final states
 * gathered into cx[C][D] and their logits into logits[C][V]. */
static void chunk_logits(parm_trainer *t, float *logits, float *cx, int r0, int nc)
{
	int D = t->m->cfg.dim;
	for (int i = 0; i < nc; i++)
		memcpy(cx + (size_t)i * D, t->xnf + (size_t)t->rows[r0 + i] * D, D * sizeof(float));
	parm_matmul_forward(logits, cx, t->out_w, t->out_type, nc, D, t->m->cfg.n_vocab);
	const float *b = t->m->output_bias;     /* qwen2's, frozen */
	for (int i = 0; b && i < nc; i++)
		for (int v = 0; v < t->m->cfg.n_vocab; v++)
			logits[(size_t)i * t->m->cfg.n_vocab + v] += b[v];
}

/* A frozen output needs only dx from its backward, and for a row with
 * dlogp g that is g (onehot(target) - softmax) W = g (W[target] - P W):
 * while training, the forward keeps P W of every wanted row (one matmul,
 * where the backward would recompute the logits and multiply again). */
static void keep_expected_rows(parm_trainer *t, float *logits, const float *lp, int r0, int nc)
{
	int V = t->m->cfg.n_vocab, D = t->m->cfg.dim;
	for (int i = 0; i < nc; i++) {
		float *x = logits + (size_t)i * V, lse = x[t->targets[r0 + i]] - lp[i];
		for (int k = 0; k < V; k++)
			x[k] -= lse;
		parm_vexp(x, x, V);          /* the row's softmax */
	}
	float *pw = t->pw + (size_t)r0 * D;
	zero_rows(pw, (size_t)nc * D);
	parm_matmul_backward(pw, NULL, logits, NULL, t->out_w, t->out_type, nc, D, V);
}

static void output_forward(parm_trainer *t, float *logp)
{
	const parm_config *c = &t->m->cfg;
	int C = t->chunk_rows, V = c->n_vocab;
	float *logits = t->chunk, *cx = logits + (size_t)2 * C * V;
	float lp[512];
	parm_rmsnorm_forward(t->xnf, t->resf, t->out_norm, t->n, c->dim, c->rms_eps);
	t->pw_ok = t->pw && t->training;
	memset(logp, 0, (size_t)t->B * (t->T - 1) * sizeof *logp);
	for (int r0 = 0; r0 < t->n_rows; r0 += C) {
		int nc = t->n_rows - r0 < C ? t->n_rows - r0 : C;
		chunk_logits(t, logits, cx, r0, nc);
		parm_logprob_forward(lp, logits, t->targets + r0, nc, V);
		for (int i = 0; i < nc; i++)
			logp[t->row_bt[r0 + i]] = lp[i];
		if (t->pw_ok)
			keep_expected_rows(t, logits, lp, r0, nc);
	}
}

static void mix_adapters(parm_trainer *t)
{
	for (int l = 0; l < t->m->cfg.n_layers && !t->full; l++)
		for (int k = 0; k < PARM_T_COUNT; k++) {
			tlinear *lin = &t->layers[l].lin[k];
			if (lin->has_adapter)
				parm_pblora_mix((float *)lin->lin.M, &lin->ad, t->alpha);
		}
}

void parm_train_set_forward_count(parm_trainer *t, uint64_t n)
{
	t->n_forward = n;
}

/* OpenBLAS's results change with its thread count (kernels.c's gemm_pool):
 * forward and backward keep it on one thread, so the sgemm calls made here
 * (the adapters') give the same bits whatever --threads is, and the big
 * ones run on the kernel pool in fixed blocks. */
static int blas_single(void)
{
	int n = openblas_get_num_threads();
	if (n != 1)
		openblas_set_num_threads(1);
	return n;
}

static void blas_restore(int n)
{
	if (n != 1)
		openblas_set_num_threads(n);
}

int parm_train_forward(parm_trainer *t, const int *tokens, const int *lengths,
		       int B, int T, const uint8_t *want, float *logp)
{
	const parm_config *c = &t->m->cfg;
	if (pack_batch(t, tokens, lengths, B, T, want) < 0)
		return -1;
	t->n_forward++;
	int blas = blas_single();
	mix_adapters(t);
	parm_embed_forward(t->layers[0].res0, t->embd, t->embd_type, t->tokens, t->n, c->dim);
	for (int l = 0; l < c->n_layers; l++)
		layer_forward(t, l, l + 1 < c->n_layers ? t->layers[l + 1].res0 : t->resf);
	output_forward(t, logp);
	blas_restore(blas);
	return 0;
}

/* ---- backward ---- */

typedef struct {
	float *dres, *dxn, *dq, *datt, *dq0, *dk, *dv, *dk0, *dgate, *dup, *hb;
} grads_scratch;

static grads_scratch carve_scratch(parm_trainer *t)
{
	const parm_config *c = &t->m->cfg;
	size_t N = t->max_tokens, D = c->dim, F = c->ff, Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c);
	float *p = t->scratch;
	grads_scratch s;
	s.dres = p, p += N * D;
	s.dxn = p, p += N * D;
	s.dq = p, p += N * Dq;
	s.datt = p, p += N * Dq;
	s.dq0 = p, p += N * Dq;
	s.dk = p, p += N * kvd;
	s.dv = p, p += N * kvd;
	s.dk0 = p, p += N * kvd;
	s.dgate = p, p += N * F;
	s.dup = p, p += N * F;
	s.hb = p;
	return s;
}

static void zero(float *p, size_t count)
{
	memset(p, 0, count * sizeof *p);
}

/* dq, dk (gradients of the roped q, k) become those of the projections'
 * outputs: rope turned back, then qwen3's q/k norms (into dq0, dk0). */
static void unposition_qk(parm_trainer *t, const tlayer *tl, grads_scratch *s)
{
	const parm_config *c = &t->m->cfg;
	int n = t->n, hd = parm_cfg_hd(c);
	parm_rope rp = parm_model_rope(t->m, t->max_len);
	parm_rope_backward(s->dq, t->pos, n, c->n_heads, hd, &rp);
	parm_rope_backward(s->dk, t->pos, n, c->n_kv_heads, hd, &rp);
	if (!tl->q_norm)
		return;
	zero(s->dq0, (size_t)n * parm_cfg_qdim(c));
	zero(s->dk0, (size_t)n * parm_cfg_kvdim(c));
	parm_rmsnorm_backward(s->dq0, NULL, s->dq, tl->q0, tl->q_norm, n * c->n_heads, hd, c->rms_eps);
	parm_rmsnorm_backward(s->dk0, NULL, s->dk, tl->k0, tl->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
	float *swap = s->dq;
	s->dq = s->dq0, s->dq0 = swap;
	swap = s->dk;
	s->dk = s->dk0, s->dk0 = swap;
}

/* dres (the gradient of the layer's output) becomes that of its input. */
static void layer_backward(parm_trainer *t, int l, grads_scratch *s)
{
	const parm_config *c = &t->m->cfg;
	tlayer *tl = &t->layers[l];
	int n = t->n, D = c->dim, F = c->ff, Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c);
	/* feed-forward: res_out = res1 + down(swiglu(gate(xn2), up(xn2))); a
	 * frozen down without adapter needs no input, so none is recomputed */
	if (tl->lin[PARM_T_DOWN].dw || tl->lin[PARM_T_DOWN].has_adapter)
		parm_swiglu_forward(s->hb, tl->gate, tl->up, (int64_t)n * F);
	float *dhb = s->dup, *dup = s->hb;      /* hb is free once down is done */
	zero(dhb, (size_t)n * F);
	linear_backward(t, l, PARM_T_DOWN, dhb, s->dres, s->hb);
	zero(s->dgate, (size_t)n * F);
	zero(dup, (size_t)n * F);
	parm_swiglu_backward(s->dgate, dup, dhb, tl->gate, tl->up, (int64_t)n * F);
	zero(s->dxn, (size_t)n * D);
	linear_backward(t, l, PARM_T_GATE, s->dxn, s->dgate, tl->xn2);
	linear_backward(t, l, PARM_T_UP, s->dxn, dup, tl->xn2);
	parm_rmsnorm_backward(s->dres, tl->d_ffn_norm, s->dxn, tl->res1, tl->ffn_norm, n, D, c->rms_eps);
	/* attention: res1 = res0 + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))) */
	zero(s->datt, (size_t)n * Dq);
	linear_backward(t, l, PARM_T_O, s->datt, s->dres, tl->att);
	zero(s->dq, (size_t)n * Dq);
	zero(s->dk, (size_t)n * kvd);
	zero(s->dv, (size_t)n * kvd);
	parm_attention_train_backward(s->dq, s->dk, s->dv, s->datt, tl->q, tl->k, tl->v, tl->att,
				 tl->lse, t->start, t->len, t->n_seq, c->n_heads, c->n_kv_heads,
				 parm_cfg_hd(c));
	grads_scratch qk = *s;          /* unposition_qk may swap its buffers */
	unposition_qk(t, tl, &qk);
	zero(s->dxn, (size_t)n * D);
	linear_backward(t, l, PARM_T_Q, s->dxn, qk.dq, tl->xn1);
	linear_backward(t, l, PARM_T_K, s->dxn, qk.dk, tl->xn1);
	linear_backward(t, l, PARM_T_V, s->dxn, s->dv, tl->xn1);
	parm_rmsnorm_backward(s->dres, tl->d_attn_norm, s->dxn, tl->res0, tl->attn_norm, n, D, c->rms_eps);
}

/* dxnf[row] += g (W[target] - P W) for the wanted rows (see above). */
static void output_backward_kept(parm_trainer *t, const float *dlogp, float *dxnf)
{
	int D = t->m->cfg.dim;
	size_t rb = parm_ggml_row_bytes(t->out_type, D);
	float *w = t->chunk;
	for (int i = 0; i < t->n_rows; i++) {
		float g = dlogp[t->row_bt[i]], *dst = dxnf + (size_t)t->rows[i] * D;
		const float *pw = t->pw + (size_t)i * D;
		if (g == 0)
			continue;
		parm_dequant_row(w, (const char *)t->out_w + (size_t)t->targets[i] * rb, t->out_type, D);
		for (int e = 0; e < D; e++)
			dst[e] += g * (w[e] - pw[e]);
	}
}

/* The logits' gradient a chunk at a time, into dxnf[N][D] (zeroed here). */
static void output_backward(parm_trainer *t, const float *dlogp, float *dxnf)
{
	const parm_config *c = &t->m->cfg;
	int C = t->chunk_rows, V = c->n_vocab, D = c->dim;
	float *logits = t->chunk, *dlogits = logits + (size_t)C * V;
	float *cx = dlogits + (size_t)C * V, *dcx = cx + (size_t)C * D;
	float g[512];
	zero(dxnf, (size_t)t->n * D);
	if (t->pw_ok) {
		output_backward_kept(t, dlogp, dxnf);
		return;
	}
	for (int r0 = 0; r0 < t->n_rows; r0 += C) {
		int nc = t->n_rows - r0 < C ? t->n_rows - r0 : C, any = 0;
		for (int i = 0; i < nc; i++)
			any |= (g[i] = dlogp[t->row_bt[r0 + i]]) != 0;
		if (!any)
			continue;
		chunk_logits(t, logits, cx, r0, nc);
		zero(dlogits, (size_t)nc * V);
		parm_logprob_backward(dlogits, g, logits, t->targets + r0, nc, V);
		zero(dcx, (size_t)nc * D);
		parm_matmul_backward(dcx, t->d_out, dlogits, cx, t->out_w, t->out_type, nc, D, V);
		for (int i = 0; i < nc; i++) {
			float *dst = dxnf + (size_t)t->rows[r0 + i] * D;
			for (int e = 0; e < D; e++)
				dst[e] += dcx[(size_t)i * D + e];
		}
	}
}

void parm_train_backward(parm_trainer *t, const float *dlogp)
{
	const parm_config *c = &t->m->cfg;
	grads_scratch s = carve_scratch(t);
	int blas = blas_single();
	output_backward(t, dlogp, s.dxn);
	zero(s.dres, (size_t)t->n * c->dim);
	parm_rmsnorm_backward(s.dres, t->d_out_norm, s.dxn, t->resf, t->out_norm, t->n, c->dim,
			 c->rms_eps);
	for (int l = c->n_layers - 1; l >= 0; l--)
		layer_backward(t, l, &s);
	if (t->d_embd)
		parm_embed_backward(t->d_embd, s.dres, t->tokens, t->n, c->dim);
	blas_restore(blas);
}

int64_t parm_train_tokens(const parm_trainer *t)
{
	return t->n;
}

/* 6 flops per parameter and token for the matmuls (2 forward, 4 backward),
 * the output layer once more for the recomputed logits, attention's
 * Q K^T and P V (forward 4 L^2 hd per head, backward twice that plus the
 * recomputed scores), and the adapters' O(r) products. */
double parm_train_flops(const parm_trainer *t)
{
	const parm_config *c = &t->m->cfg;
	double D = c->dim, F = c->ff, hd = parm_cfg_hd(c), Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c);
	double layer = D * Dq * 2 + 2 * D * kvd + 3 * D * F, flops = 0;
	flops += 6.0 * t->n * layer * c->n_layers;
	flops += 8.0 * t->n_rows * D * c->n_vocab;
	for (int s = 0; s < t->n_seq; s++)
		flops += 5.0 * t->len[s] * (double)t->len[s] * hd * c->n_heads * c->n_layers;
	for (int l = 0; l < c->n_layers && !t->full; l++)
		for (int k = 0; k < PARM_T_COUNT; k++) {
			const tlinear *lin = &t->layers[l].lin[k];
			if (lin->has_adapter)
				flops += 6.0 * t->n * (t->ao.r1 + t->ao.r2) * (lin->in + lin->out);
		}
	return flops;
}

/* ---- writing a trained full model ---- */

static int copy_metadata(parm_gguf_writer *w, const parm_gguf *src, enum parm_ggml_type type)
{
	for (int i = 0; i < parm_gguf_n_kv(src); i++) {
		const char *key = parm_gguf_kv_key(src, i);
		if (strcmp(key, "general.file_type") && parm_gguf_w_copy_kv(w, src, key) < 0)
			return -1;
	}
	if (parm_quant_file_type(type) >= 0)
		parm_gguf_w_set_u32(w, "general.file_type", (uint32_t)parm_quant_file_type(type));
	return 0;
}

static void write_tensor(parm_gguf_writer *w, const parm_train_tensor *p, enum parm_ggml_type type)
{
	if (p->n_dims == 1 || type == PARM_GGML_F32) {
		parm_gguf_w_tensor(w, p->name, PARM_GGML_F32, p->n_dims, p->ne, p->data);
		return;
	}
	size_t rb = parm_ggml_row_bytes(type, p->ne[0]);
	char *q = parm_xmalloc(rb * p->ne[1]);
	for (int64_t r = 0; r < p->ne[1]; r++)
		parm_quant_row(q + r * rb, p->data + r * p->ne[0], type, p->ne[0]);
	parm_gguf_w_tensor(w, p->name, type, p->n_dims, p->ne, q);
	free(q);
}

int parm_train_save_model(const parm_trainer *t, const char *path, enum parm_ggml_type type)
{
	int blk = parm_ggml_type_block(type), rc;
	if (!t->full)
		return parm_fail("%s: only a fully trained model is written as a model", path);
	if (!parm_ggml_type_name(type) || blk <= 0 || !parm_quant_type_quantised(type))
		return parm_fail("%s: cannot write weights of type %d", path, (int)type);
	for (int i = 0; i < t->n_tensors; i++)
		if (t->tensors[i].n_dims == 2 && t->tensors[i].ne[0] % blk)
			return parm_fail("%s: %s has %lld columns, not a multiple of %s's block of %d",
					 path, t->tensors[i].name, (long long)t->tensors[i].ne[0],
					 parm_ggml_type_name(type), blk);
	parm_gguf_writer *w = parm_gguf_w_new();
	if (copy_metadata(w, t->m->file, type) < 0) {
		parm_gguf_w_free(w);
		return -1;
	}
	for (int i = 0; i < t->n_tensors; i++)
		write_tensor(w, &t->tensors[i], type);
	rc = parm_gguf_w_save(w, path);
	parm_gguf_w_free(w);
	return rc;
}
