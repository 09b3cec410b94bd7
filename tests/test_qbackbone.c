/* test_qbackbone.c - a frozen quantised backbone under the forward, ARM
 * training and guidance: a model whose matrices are random q4_K and q6_K
 * blocks (Q4_K_M's two types), against the same model dequantised to f32
 * (the same weights exactly, so only the order of sums differs):
 *   - the forward, prefill (dequantised tiles into sgemm) and decode (the
 *     fused dots reading blocks in place) with float activations, and
 *     both with 8-bit ones (integer dots: only near);
 *   - PBLoRA training (QLoRA: the backward goes through dequantised tiles,
 *     never an f32 copy of the model): log-probs and every gradient;
 *   - the guide parm-mix runs, merged (the adapted matrices dequantised
 *     and merged once) and unmerged (adapters beside the blocks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <parm/arm.h>
#include <parm/gguf.h>
#include "kernels.h"
#include <parm/mix.h>
#include <parm/model.h>
#include "quant_dot.h"
#include "rand_blocks.h"
#include <parm/rng.h>
#include "simd.h"
#include <parm/stream.h>
#include "tap.h"
#include <parm/tokenizer.h>
#include <parm/train.h>
#include <parm/util.h>

enum { DIM = 256, LAYERS = 2, FF = 512, CTX = 64, B = 3, T = 16 };

static char dir[64];

static const char *path_in(const char *name)
{
	static char p[4][128];
	static int i;
	i = (i + 1) % 4;
	snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
	return p[i];
}

/* Q4_K_M keeps v, down and the output in q6_K, the rest in q4_K.  Scales
 * give weights of about 0.02, as a trained model's. */
static enum parm_ggml_type type_of(const char *name, float *scale)
{
	int six = strstr(name, "attn_v") || strstr(name, "ffn_down") || !strcmp(name, "output.weight");
	*scale = six ? 2e-5f : 1e-4f;
	return six ? PARM_GGML_Q6_K : PARM_GGML_Q4_K;
}

/* q.gguf: src's matrices as random blocks; f.gguf: their f32 values. */
static int make_pair(const char *src, const char *q_path, const char *f_path)
{
	parm_gguf *g = parm_gguf_open(src);
	if (!g)
		return -1;
	parm_gguf_writer *wq = parm_gguf_w_new(), *wf = parm_gguf_w_new();
	for (int i = 0; i < parm_gguf_n_kv(g); i++) {
		parm_gguf_w_copy_kv(wq, g, parm_gguf_kv_key(g, i));
		parm_gguf_w_copy_kv(wf, g, parm_gguf_kv_key(g, i));
	}
	for (int i = 0; i < parm_gguf_n_tensors(g); i++) {
		const parm_gguf_tensor *t = parm_gguf_tensor_at(g, i);
		if (t->n_dims != 2) {
			parm_gguf_w_tensor_ref(wq, t->name, t->type, t->n_dims, t->ne, t->data);
			parm_gguf_w_tensor_ref(wf, t->name, t->type, t->n_dims, t->ne, t->data);
			continue;
		}
		float scale;
		enum parm_ggml_type ty = type_of(t->name, &scale);
		size_t rb = parm_ggml_row_bytes(ty, t->ne[0]);
		uint8_t *q = parm_xmalloc(rb * t->ne[1]);
		float *f = parm_xmalloc((size_t)t->n_elements * sizeof *f);
		rand_blocks(q, ty, t->n_elements, 0, scale);
		for (int64_t r = 0; r < t->ne[1]; r++)
			parm_dequant_row_ref(f + r * t->ne[0], q + r * rb, ty, t->ne[0]);
		parm_gguf_w_tensor(wq, t->name, ty, 2, t->ne, q);
		parm_gguf_w_tensor(wf, t->name, PARM_GGML_F32, 2, t->ne, f);
		free(q);
		free(f);
	}
	int rc = parm_gguf_w_save(wq, q_path) < 0 || parm_gguf_w_save(wf, f_path) < 0 ? -1 : 0;
	parm_gguf_w_free(wq);
	parm_gguf_w_free(wf);
	parm_gguf_close(g);
	return rc;
}

static int make_fixtures(const char *vocab)
{
	parm_gguf *v = parm_gguf_open(vocab);
	parm_config c = { .dim = DIM, .n_layers = LAYERS, .n_heads = 4, .n_kv_heads = 2,
			  .ff = FF, .n_ctx = CTX };
	int rc = v ? parm_model_init(path_in("src.gguf"), v, &c, PARM_GGML_F32, 5) : -1;
	parm_gguf_close(v);
	return rc < 0 ? -1 : make_pair(path_in("src.gguf"), path_in("q.gguf"), path_in("f.gguf"));
}

/* Largest |a - b| over the rms of b. */
static double rel_rms(const float *a, const float *b, size_t n)
{
	double worst = 0, sq = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]);
		worst = e > worst || e != e ? e : worst;
		sq += (double)b[i] * b[i];
	}
	return worst / sqrt(sq / n + 1e-30);
}

/* Logits of every position of ids: one prefill of n, or n decode steps. */
static float *logits(const parm_model *m, const int *ids, int n, int decode)
{
	int V = m->cfg.n_vocab, slot[CTX] = { 0 };
	uint8_t want[CTX];
	float *out = parm_xmalloc((size_t)n * V * sizeof *out);
	parm_kv *kv = parm_kv_new(m, 1, CTX);
	memset(want, 1, sizeof want);
	for (int i = 0; i < n; i += decode ? 1 : n)
		parm_forward(m, kv, decode ? 1 : n, ids + i, slot, want, out + (size_t)i * V);
	parm_kv_free(kv);
	return out;
}

/* rms of a - b over the rms of b. */
static double rms_ratio(const float *a, const float *b, size_t n)
{
	double d2 = 0, b2 = 0;
	for (size_t i = 0; i < n; i++) {
		d2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		b2 += (double)b[i] * b[i];
	}
	return sqrt(d2 / (b2 + 1e-30));
}

/* Prefill and decode with float activations sum the same weights as the
 * f32 copy, in another order; with 8-bit activations (the default) each
 * input of a K-quant matrix is rounded to 1/254 of its largest, as
 * llama.cpp does: near the copy, not equal to it.  But a prompt on the
 * avx512 path takes float panels, faster there than the integer dots. */
static void test_forward(const parm_model *q, const parm_model *f)
{
	static const char *how[] = { "prefill", "decode" };
	int ids[20];
	size_t n = (size_t)20 * q->cfg.n_vocab;
	for (int i = 0; i < 20; i++)
		ids[i] = (i * 7919 + 3) % q->cfg.n_vocab;
	float *b = logits(f, ids, 20, 1);
	for (int int8 = 0; int8 < 2; int8++)
		for (int decode = 0; decode < 2; decode++) {
			int rounded = int8 && (decode || parm_simd() < PARM_SIMD_AVX512);
			parm_kernels_set_int8(int8);
			float *a = logits(q, ids, 20, decode);
			double e = rounded ? rms_ratio(a, b, n) : rel_rms(a, b, n);
			if (rounded)
				ok(e > 1e-6 && e < 0.05, "%s (8-bit activations, integer dots) on q4_K/q6_K "
				   "blocks: near their f32 copy, not equal (rms diff %.2g x rms)", how[decode], e);
			else
				ok(e < 1e-4, "%s (float activations, %s) on q4_K/q6_K blocks = on "
				   "their f32 copy (max diff %.2g x rms)", how[decode],
				   int8 ? "avx512 prompt panels" : "PARM_INT8=0", e);
			free(a);
		}
	free(b);
}

static parm_trainer *trainer_on(const parm_model *m)
{
	parm_adapter_opts o;
	parm_adapter_opts_default(&o, 2);
	o.targets = ((1u << PARM_T_COUNT) - 1);
	parm_trainer *t = parm_train_new_adapters(m, &o, B, T);
	uint64_t s = 99;
	for (int l = 0; l < LAYERS; l++)
		for (int k = 0; k < PARM_T_COUNT; k++) {
			parm_pblora *p = parm_train_adapter(t, l, k);
			for (int j = 0; p && j < p->out * (p->r1 + p->r2); j++)
				p->B[j] = 0.05f * (float)((parm_splitmix64(&s) >> 11) * 0x1.0p-53 - 0.5);
		}
	parm_train_set_training(t, 0);
	float alpha[2] = { 0.3f, 0.7f };
	parm_train_set_pref(t, alpha);
	return t;
}

static void test_training(const parm_model *q, const parm_model *f)
{
	parm_trainer *tq = trainer_on(q), *tf = trainer_on(f);
	int tokens[B * T], lengths[B] = { T, T - 3, T - 7 };
	float lq[B * (T - 1)], lf[B * (T - 1)], dl[B * (T - 1)];
	for (int i = 0; i < B * T; i++)
		tokens[i] = (i * 104729 + 11) % q->cfg.n_vocab;
	for (int i = 0; i < B * (T - 1); i++)
		dl[i] = (float)((i * 37) % 11) / 11 - 0.5f;
	int ok_q = parm_train_forward(tq, tokens, lengths, B, T, NULL, lq) == 0;
	int ok_f = parm_train_forward(tf, tokens, lengths, B, T, NULL, lf) == 0;
	ok(ok_q && ok_f && rel_rms(lq, lf, B * (T - 1)) < 1e-4,
	   "PBLoRA training forward on q4_K/q6_K = on the f32 copy (%.2g x rms)",
	   ok_q && ok_f ? rel_rms(lq, lf, B * (T - 1)) : -1.0);
	parm_train_zero_grad(tq);
	parm_train_zero_grad(tf);
	parm_train_backward(tq, dl);
	parm_train_backward(tf, dl);
	size_t n = parm_train_n_params(tq);
	double e = n == parm_train_n_params(tf) ? rel_rms(parm_train_grads(tq), parm_train_grads(tf), n) : 1;
	ok(e < 1e-4, "every adapter gradient through dequantised tiles = through the f32 copy "
	   "(%zu gradients, %.2g x rms)", n, e);
	parm_train_free(tq);
	parm_train_free(tf);
}

static int make_arm(const char *backbone, const char *out)
{
	parm_arm_options o;
	parm_arm_default_options(&o);
	static const char *names[] = { "helpful", "harmless" };
	o.k = 2;
	o.seed = 7;
	o.objectives = names;
	o.targets = ((1u << PARM_T_COUNT) - 1);
	parm_arm *a = parm_arm_new(backbone, &o);
	if (!a)
		return -1;
	uint64_t s = 3;
	for (int i = 0; i < LAYERS * a->n_targets; i++) {
		parm_pblora *p = &a->adapters[i];
		for (int j = 0; j < p->out * (p->r1 + p->r2); j++)
			p->B[j] = 0.05f * (float)((parm_splitmix64(&s) >> 11) * 0x1.0p-53 - 0.5);
	}
	int rc = parm_arm_save(a, out, 0);
	parm_arm_free(a);
	return rc;
}

/* The header parm-logits would write for m. */
static void header_of(parm_header *h, const parm_model *m)
{
	*h = (parm_header){ .version = PARM_STREAM_VERSION, .n_vocab = m->cfg.n_vocab,
			    .fingerprint = parm_tok_fingerprint(m->tok),
			    .bos = parm_tok_bos(m->tok), .eos = parm_tok_eos(m->tok) };
	h->pieces = parm_xmalloc(h->n_vocab * sizeof *h->pieces);
	h->piece_len = parm_xmalloc(h->n_vocab * sizeof *h->piece_len);
	for (int i = 0; i < h->n_vocab; i++) {
		size_t len;
		h->pieces[i] = (char *)parm_tok_piece(m->tok, i, &len);
		h->piece_len[i] = len;
	}
}

/* The guide's log-probs over a few rounds of one sequence. */
static float *guide_rounds(const char *arm, int merge, const parm_header *h, int rounds)
{
	static const int prompt[] = { 1, 450, 1576, 29892 }, next[] = { 13, 3869, 338, 263 };
	parm_guide *g = parm_guide_load(arm, "0.3,0.7", 1, merge);
	if (!g || parm_guide_begin(g, h, CTX) < 0 || parm_guide_start(g, 0, prompt, 4) < 0) {
		parm_guide_free(g);
		return NULL;
	}
	float *lp = parm_xmalloc((size_t)rounds * h->n_vocab * sizeof *lp);
	for (int r = 0; r < rounds; r++) {
		parm_step st = { .seq = 0, .tok = r ? next[r - 1] : -1 };
		parm_guide_round(g, 1, &st, lp + (size_t)r * h->n_vocab);
	}
	parm_guide_free(g);
	return lp;
}

static void test_guide(const parm_model *f)
{
	parm_header h;
	if (make_arm(path_in("q.gguf"), path_in("arm-q.gguf")) < 0 ||
	    make_arm(path_in("f.gguf"), path_in("arm-f.gguf")) < 0) {
		ok(0, "ARMs on both backbones: %s", parm_error());
		ok(0, "no ARMs");
		return;
	}
	header_of(&h, f);
	parm_kernels_set_int8(0);    /* the same sums as the copy's but for their order */
	float *ref = guide_rounds(path_in("arm-f.gguf"), 1, &h, 4);
	for (int merge = 1; merge >= 0; merge--) {
		float *lp = guide_rounds(path_in("arm-q.gguf"), merge, &h, 4);
		double e = lp && ref ? rel_rms(lp, ref, (size_t)4 * h.n_vocab) : -1;
		ok(lp && ref && e < 1e-4, "parm-mix's guide on the q4_K/q6_K backbone, %s, = on the "
		   "f32 copy (k = 2, every target; %.2g x rms)",
		   merge ? "merged into f32 copies of the adapted matrices" : "unmerged", e);
		free(lp);
	}
	parm_kernels_set_int8(1);
	free(ref);
	free(h.pieces);
	free(h.piece_len);
}

int main(void)
{
	const char *fx = fixtures_dir();
	char vocab[4200];
	if (!fx) {
		skip("no tokenizer fixtures (make fixtures)", "quantised backbones");
		return tap_done();
	}
	snprintf(vocab, sizeof vocab, "%s/ggml-vocab-llama-spm.gguf", fx);
	snprintf(dir, sizeof dir, "/tmp/test_qbackbone.XXXXXX");
	if (!mkdtemp(dir) || make_fixtures(vocab) < 0) {
		ok(0, "fixtures: %s", parm_error());
		return tap_done();
	}
	parm_set_threads(2);
	parm_model *q = parm_model_load(path_in("q.gguf")), *f = parm_model_load(path_in("f.gguf"));
	ok(q && f && q->layers[0].wq.type == PARM_GGML_Q4_K && q->layers[0].wv.type == PARM_GGML_Q6_K,
	   "a backbone of q4_K and q6_K blocks loads (%s)", q && f ? "q4_K, q6_K" : parm_error());
	if (q && f) {
		test_forward(q, f);
		test_training(q, f);
		test_guide(f);
	}
	parm_model_free(q);
	parm_model_free(f);
	static const char *names[] = { "src.gguf", "q.gguf", "f.gguf", "arm-q.gguf", "arm-f.gguf" };
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		unlink(path_in(names[i]));
	rmdir(dir);
	return tap_done();
}
