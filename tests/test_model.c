/* test_model.c - tiny random llama models: batched forward equals one
 * token at a time, prefill equals decode, types agree, a plain reference
 * forward agrees, and bad models fail with a message naming the problem. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include <parm/model.h>
#include "quant_dot.h"
#include "tap.h"
#include <parm/util.h>

enum { D = 64, L = 2, H = 4, G = 2, F = 192, CTX = 64 };

static char dir[64];
static int V;

static const char *tmp_path(const char *name)
{
	static char buf[8][128];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
	return buf[k];
}

static double rel_err(const float *a, const float *b, size_t n)
{
	double e = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		e = d > e || d != d ? d : e;
		m = fabs(b[i]) > m ? fabs(b[i]) : m;
	}
	return e / (m > 0 ? m : 1);
}

/* Logits of every position of seq, fed one token per call, in slot 0. */
static float *one_at_a_time(const parm_model *m, const int *seq, int len)
{
	parm_kv *kv = parm_kv_new(m, 1, CTX);
	float *out = parm_xmalloc((size_t)len * V * sizeof *out);
	int slot = 0;
	for (int i = 0; i < len; i++)
		parm_forward(m, kv, 1, &seq[i], &slot, NULL, out + (size_t)i * V);
	parm_kv_free(kv);
	return out;
}

/* (a) three slots of different lengths, interleaved, in one batch. */
static void test_batched(const parm_model *m)
{
	int lens[3] = { 5, 2, 7 }, seqs[3][8], tokens[14], slot[14], where[14];
	uint8_t want[14];
	float *ref[3], *got = parm_xmalloc((size_t)14 * V * sizeof *got);
	int n = 0;
	for (int s = 0; s < 3; s++)
		for (int i = 0; i < 8; i++)
			seqs[s][i] = (s * 7919 + i * 104729 + 3) % V;
	for (int s = 0; s < 3; s++)
		ref[s] = one_at_a_time(m, seqs[s], lens[s] + 1);
	for (int i = 0; i < 7; i++)             /* round robin over slots */
		for (int s = 0; s < 3; s++)
			if (i < lens[s]) {
				tokens[n] = seqs[s][i], slot[n] = s, want[n] = 1;
				where[n++] = s * 8 + i;
			}
	parm_kv *kv = parm_kv_new(m, 3, CTX);
	int rows = parm_forward(m, kv, n, tokens, slot, want, got);
	double e = 0;
	for (int i = 0; i < n; i++) {
		double ei = rel_err(got + (size_t)i * V, ref[where[i] / 8] + (size_t)(where[i] % 8) * V, V);
		e = ei > e ? ei : e;
	}
	ok(rows == n && e < 1e-5, "batch of 3 slots (lengths 5, 2, 7) equals one token at a time: %d rows, rel err %.2g", rows, e);
	/* then one decode step for every slot, want NULL: the last of each */
	for (int s = 0; s < 3; s++)
		tokens[s] = seqs[s][lens[s]], slot[s] = 2 - s;
	tokens[0] = seqs[2][lens[2]], tokens[2] = seqs[0][lens[0]];
	rows = parm_forward(m, kv, 3, tokens, slot, NULL, got);
	e = 0;
	for (int i = 0; i < 3; i++) {
		int s = slot[i];
		double ei = rel_err(got + (size_t)i * V, ref[s] + (size_t)lens[s] * V, V);
		e = ei > e ? ei : e;
	}
	ok(rows == 3 && e < 1e-5, "then a decode step of all slots equals one at a time: rel err %.2g", e);
	ok(parm_kv_len(kv, 0) == 6 && parm_kv_len(kv, 1) == 3 && parm_kv_len(kv, 2) == 8,
	   "cache lengths follow (%d %d %d)", parm_kv_len(kv, 0), parm_kv_len(kv, 1), parm_kv_len(kv, 2));
	parm_kv_free(kv);
	for (int s = 0; s < 3; s++)
		free(ref[s]);
	free(got);
}

/* (b) a whole prompt in one call equals token by token. */
static void test_prefill(const parm_model *m, const int *prompt, int len, const float *ref)
{
	int slot[16] = { 0 };
	float *got = parm_xmalloc((size_t)len * V * sizeof *got);
	uint8_t want[16];
	memset(want, 1, sizeof want);
	parm_kv *kv = parm_kv_new(m, 1, CTX);
	int rows = parm_forward(m, kv, len, prompt, slot, want, got);
	ok(rows == len && rel_err(got, ref, (size_t)len * V) < 1e-5,
	   "prefill of %d tokens equals token by token: rel err %.2g", len, rel_err(got, ref, (size_t)len * V));
	parm_kv_clear(kv, 0);
	rows = parm_forward(m, kv, len, prompt, slot, NULL, got);
	ok(rows == 1 && rel_err(got, ref + (size_t)(len - 1) * V, V) < 1e-5,
	   "want NULL gives only the last token's logits (%d row)", rows);
	parm_kv_free(kv);
	free(got);
}

/* ---- (d) a plain reference forward, straight from the GGUF ---- */

static float *weights_f32(const parm_gguf *g, const char *name)
{
	const parm_gguf_tensor *t = parm_gguf_find_tensor(g, name);
	int64_t rows = t->n_dims > 1 ? t->ne[1] : 1;
	size_t rb = parm_ggml_row_bytes(t->type, t->ne[0]);
	float *f = parm_xmalloc((size_t)t->n_elements * sizeof *f);
	for (int64_t r = 0; r < rows; r++)
		parm_dequant_row_ref(f + r * t->ne[0], (const char *)t->data + r * rb, t->type, t->ne[0]);
	return f;
}

static float *layer_w(const parm_gguf *g, int l, const char *what)
{
	char name[64];
	snprintf(name, sizeof name, "blk.%d.%s.weight", l, what);
	return weights_f32(g, name);
}

/* y[rows] = W[rows][cols] x */
static void ref_matvec(double *y, const float *w, const double *x, int rows, int cols)
{
	for (int r = 0; r < rows; r++) {
		y[r] = 0;
		for (int c = 0; c < cols; c++)
			y[r] += w[(size_t)r * cols + c] * x[c];
	}
}

static void ref_rmsnorm(double *y, const double *x, const float *w)
{
	double ss = 0;
	for (int i = 0; i < D; i++)
		ss += x[i] * x[i];
	for (int i = 0; i < D; i++)
		y[i] = x[i] / sqrt(ss / D + 1e-5) * w[i];
}

static void ref_rope(double *v, int heads, int pos)
{
	int hd = D / H;
	for (int h = 0; h < heads; h++)
		for (int i = 0; i < hd / 2; i++) {
			double th = pos * pow(10000, -2.0 * i / hd), *p = v + h * hd + 2 * i;
			double a = p[0], b = p[1];
			p[0] = a * cos(th) - b * sin(th);
			p[1] = a * sin(th) + b * cos(th);
		}
}

/* Attention of position t over k, v [T][G*hd], for every head. */
static void ref_attend(double *out, const double *q, double (*k)[D], double (*v)[D], int t)
{
	int hd = D / H, kvd = G * hd;
	for (int h = 0; h < H; h++) {
		int g = h / (H / G);
		double s[CTX], max = -1e300, sum = 0;
		for (int u = 0; u <= t; u++) {
			s[u] = 0;
			for (int e = 0; e < hd; e++)
				s[u] += q[h * hd + e] * k[u][g * hd + e];
			s[u] /= sqrt(hd);
			max = s[u] > max ? s[u] : max;
		}
		for (int u = 0; u <= t; u++)
			sum += s[u] = exp(s[u] - max);
		for (int e = 0; e < hd; e++) {
			out[h * hd + e] = 0;
			for (int u = 0; u <= t; u++)
				out[h * hd + e] += s[u] / sum * v[u][g * hd + e];
		}
		(void)kvd;
	}
}

static void ref_layer(const parm_gguf *g, int l, double (*x)[D], int T)
{
	float *an = layer_w(g, l, "attn_norm"), *wq = layer_w(g, l, "attn_q"),
	      *wk = layer_w(g, l, "attn_k"), *wv = layer_w(g, l, "attn_v"),
	      *wo = layer_w(g, l, "attn_output"), *fn = layer_w(g, l, "ffn_norm"),
	      *wg = layer_w(g, l, "ffn_gate"), *wu = layer_w(g, l, "ffn_up"),
	      *wd = layer_w(g, l, "ffn_down");
	int kvd = G * (D / H);
	static double q[CTX][D], k[CTX][D], v[CTX][D], xn[D], att[D], o[D], gt[F], up[F];
	for (int t = 0; t < T; t++) {
		ref_rmsnorm(xn, x[t], an);
		ref_matvec(q[t], wq, xn, D, D);
		ref_matvec(k[t], wk, xn, kvd, D);
		ref_matvec(v[t], wv, xn, kvd, D);
		ref_rope(q[t], H, t);
		ref_rope(k[t], G, t);
	}
	for (int t = 0; t < T; t++) {
		ref_attend(att, q[t], k, v, t);
		ref_matvec(o, wo, att, D, D);
		for (int i = 0; i < D; i++)
			x[t][i] += o[i];
		ref_rmsnorm(xn, x[t], fn);
		ref_matvec(gt, wg, xn, F, D);
		ref_matvec(up, wu, xn, F, D);
		for (int i = 0; i < F; i++)
			gt[i] = gt[i] / (1 + exp(-gt[i])) * up[i];
		ref_matvec(o, wd, gt, D, F);
		for (int i = 0; i < D; i++)
			x[t][i] += o[i];
	}
	free(an), free(wq), free(wk), free(wv), free(wo), free(fn), free(wg), free(wu), free(wd);
}

static float *ref_forward(const char *path, const int *tokens, int T)
{
	parm_gguf *g = parm_gguf_open(path);
	float *emb = weights_f32(g, "token_embd.weight"), *on = weights_f32(g, "output_norm.weight");
	float *out = weights_f32(g, "output.weight"), *logits = parm_xmalloc((size_t)T * V * sizeof *logits);
	static double x[CTX][D], xn[D];
	for (int t = 0; t < T; t++)
		for (int i = 0; i < D; i++)
			x[t][i] = emb[(size_t)tokens[t] * D + i];
	for (int l = 0; l < L; l++)
		ref_layer(g, l, x, T);
	for (int t = 0; t < T; t++) {
		ref_rmsnorm(xn, x[t], on);
		for (int r = 0; r < V; r++) {
			double s = 0;
			for (int i = 0; i < D; i++)
				s += out[(size_t)r * D + i] * xn[i];
			logits[(size_t)t * V + r] = (float)s;
		}
	}
	free(emb), free(on), free(out);
	parm_gguf_close(g);
	return logits;
}

/* ---- (e) bad models: a good one rewritten with one thing wrong ---- */

static int rewrite(const parm_gguf *good, const char *out, const char *arch,
		   const char *drop, const char *reshape)
{
	parm_gguf_writer *w = parm_gguf_w_new();
	for (int i = 0; i < parm_gguf_n_kv(good); i++)
		parm_gguf_w_copy_kv(w, good, parm_gguf_kv_key(good, i));
	if (arch)
		parm_gguf_w_set_str(w, "general.architecture", arch);
	for (int i = 0; i < parm_gguf_n_tensors(good); i++) {
		const parm_gguf_tensor *t = parm_gguf_tensor_at(good, i);
		int64_t ne[PARM_GGUF_MAX_DIMS];
		memcpy(ne, t->ne, sizeof ne);
		if (drop && !strcmp(t->name, drop))
			continue;
		if (reshape && !strcmp(t->name, reshape))
			ne[0] /= 2, ne[1] *= 2;
		parm_gguf_w_tensor_ref(w, t->name, t->type, t->n_dims, ne, t->data);
	}
	int rc = parm_gguf_w_save(w, out);
	parm_gguf_w_free(w);
	return rc;
}

static void expect_bad(const parm_gguf *good, const char *what, const char *arch,
		       const char *drop, const char *reshape, const char *needle)
{
	const char *path = tmp_path("bad.gguf");
	if (rewrite(good, path, arch, drop, reshape) < 0) {
		ok(0, "%s: cannot write the bad model: %s", what, parm_error());
		return;
	}
	parm_model *m = parm_model_load(path);
	ok(!m && strstr(parm_error(), needle), "%s fails: %s", what, m ? "(loaded)" : parm_error());
	parm_model_free(m);
	unlink(path);
}

/* The good model with tensor name stored as type t (zero bytes): a type
 * parm does not compute is refused by name, with the list it does. */
static void expect_bad_type(const parm_gguf *good, const char *name, enum parm_ggml_type t,
			    const char *needle)
{
	const char *path = tmp_path("bad.gguf");
	parm_gguf_writer *w = parm_gguf_w_new();
	char *zeros = NULL;
	for (int i = 0; i < parm_gguf_n_kv(good); i++)
		parm_gguf_w_copy_kv(w, good, parm_gguf_kv_key(good, i));
	for (int i = 0; i < parm_gguf_n_tensors(good); i++) {
		const parm_gguf_tensor *g = parm_gguf_tensor_at(good, i);
		if (strcmp(g->name, name)) {
			parm_gguf_w_tensor_ref(w, g->name, g->type, g->n_dims, g->ne, g->data);
			continue;
		}
		zeros = calloc(1, parm_ggml_row_bytes(t, g->ne[0]) * (g->n_elements / g->ne[0]));
		parm_gguf_w_tensor(w, g->name, t, g->n_dims, g->ne, zeros);
	}
	int rc = parm_gguf_w_save(w, path);
	parm_gguf_w_free(w);
	free(zeros);
	parm_model *m = rc < 0 ? NULL : parm_model_load(path);
	ok(!m && rc == 0 && strstr(parm_error(), needle), "%s as %s fails: %s", name,
	   parm_ggml_type_name(t), m ? "(loaded)" : parm_error());
	parm_model_free(m);
	unlink(path);
}

/* The good model plus one tensor (a copy of output_norm under name) or
 * one f32 key: what llama.cpp would apply and parm does not is refused
 * with needle in the error (NULL: it changes nothing and loads). */
static void expect_bad_extra(const parm_gguf *good, const char *tensor, const char *key,
			     float value, const char *needle)
{
	const char *path = tmp_path("bad.gguf");
	parm_gguf_writer *w = parm_gguf_w_new();
	for (int i = 0; i < parm_gguf_n_kv(good); i++)
		parm_gguf_w_copy_kv(w, good, parm_gguf_kv_key(good, i));
	if (key)
		parm_gguf_w_set_f32(w, key, value);
	for (int i = 0; i < parm_gguf_n_tensors(good); i++) {
		const parm_gguf_tensor *g = parm_gguf_tensor_at(good, i);
		parm_gguf_w_tensor_ref(w, g->name, g->type, g->n_dims, g->ne, g->data);
		if (tensor && !strcmp(g->name, "output_norm.weight"))
			parm_gguf_w_tensor_ref(w, tensor, g->type, g->n_dims, g->ne, g->data);
	}
	int rc = parm_gguf_w_save(w, path);
	parm_gguf_w_free(w);
	parm_model *m = rc < 0 ? NULL : parm_model_load(path);
	if (needle)
		ok(!m && rc == 0 && strstr(parm_error(), needle), "%s fails: %s",
		   tensor ? tensor : key, m ? "(loaded)" : parm_error());
	else
		ok(m != NULL, "%s = %g changes nothing: loads (%s)", key, value,
		   m ? "loaded" : parm_error());
	parm_model_free(m);
	unlink(path);
}

static void test_bad_models(const char *good_path)
{
	parm_gguf *good = parm_gguf_open(good_path);
	expect_bad(good, "wrong architecture", "gpt2", NULL, NULL,
		   "architecture 'gpt2' is not supported (parm reads llama, qwen2, qwen3, phi3)");
	expect_bad(good, "gemma2", "gemma2", NULL, NULL,
		   "architecture 'gemma2' is not supported (parm reads llama, qwen2, qwen3, phi3)");
	expect_bad(good, "missing tensor", NULL, "blk.1.ffn_up.weight", NULL,
		   "'blk.1.ffn_up.weight' is missing");
	expect_bad(good, "wrong shape", NULL, NULL, "blk.0.attn_k.weight", "'blk.0.attn_k.weight' has shape");
	expect_bad_type(good, "blk.1.attn_v.weight", PARM_GGML_MXFP4,
			"'blk.1.attn_v.weight' has type mxfp4, which parm does not compute "
			"(it does f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q2_K, "
			"q3_K, q4_K, q5_K, q6_K, iq4_xs)");
	expect_bad_extra(good, "blk.1.attn_q_norm.weight", NULL, 0,
			 "tensor 'blk.1.attn_q_norm.weight' is not implemented");
	expect_bad_extra(good, "rope_freqs.weight", NULL, 0,
			 "tensor 'rope_freqs.weight' must be f32 [8], not f32 [64]");
	expect_bad_extra(good, "blk.0.attn_qkv.bias", NULL, 0,
			 "tensor 'blk.0.attn_qkv.bias' is not implemented (a llama model here");
	expect_bad_extra(good, "blk.0.ffn_gate.bias", NULL, 0,
			 "tensor 'blk.0.ffn_gate.bias' has shape [64, 1], expected [");
	expect_bad_extra(good, "rope_factors_long.weight", NULL, 0,
			 "tensor 'rope_factors_long.weight' is not implemented");
	expect_bad_extra(good, "blk.9.attn_q.weight", NULL, 0,
			 "tensor 'blk.9.attn_q.weight' is not implemented");
	expect_bad_extra(good, NULL, "llama.rope.scaling.factor", 8,
			 "llama.rope.scaling.factor = 8: rope scaling is not implemented");
	expect_bad_extra(good, NULL, "llama.rope.scale_linear", 2,
			 "llama.rope.scale_linear = 2: rope scaling is not implemented");
	expect_bad_extra(good, NULL, "llama.rope.scaling.factor", 1, NULL);
	expect_bad_type(good, "blk.0.ffn_norm.weight", PARM_GGML_Q8_0,
			"'blk.0.ffn_norm.weight' has type q8_0; a vector must be f32, f16 or bf16");
	const char *tied = tmp_path("tied.gguf");
	rewrite(good, tied, NULL, "output.weight", NULL);
	parm_model *m = parm_model_load(tied);
	ok(m && m->output.data == m->token_embd.data, "no output.weight: output tied to token_embd");
	parm_model_free(m);
	unlink(tied);
	parm_gguf_close(good);
}

static void test_overflow(const parm_model *m, const int *prompt)
{
	parm_kv *kv = parm_kv_new(m, 2, 8);
	int slot[8] = { 0 }, bad_slot = 2;
	float *a = parm_xmalloc((size_t)2 * V * sizeof *a), *b = parm_xmalloc((size_t)2 * V * sizeof *b);
	parm_forward(m, kv, 6, prompt, slot, NULL, a);
	int rc = parm_forward(m, kv, 3, prompt, slot, NULL, a);
	ok(rc == -1 && parm_kv_len(kv, 0) == 6 && strstr(parm_error(), "context"),
	   "context overflow: -1, nothing changed (%s)", parm_error());
	ok(parm_forward(m, kv, 1, prompt, &bad_slot, NULL, a) == -1, "slot out of range: -1 (%s)", parm_error());
	parm_forward(m, kv, 2, prompt + 6, slot, NULL, a);
	float *ref = one_at_a_time(m, prompt, 8);
	ok(rel_err(a, ref + (size_t)7 * V, V) < 1e-5, "after the refusals the slot continues as if untouched");
	free(ref), free(a), free(b);
	parm_kv_free(kv);
}

static parm_model *make_model(const parm_gguf *vocab, const char *name, enum parm_ggml_type t)
{
	parm_config c = { .dim = D, .n_layers = L, .n_heads = H, .n_kv_heads = G, .ff = F,
			  .n_ctx = CTX, .rms_eps = 1e-5f, .rope_theta = 10000 };
	if (parm_model_init(tmp_path(name), vocab, &c, t, 7) < 0) {
		ok(0, "init %s: %s", name, parm_error());
		return NULL;
	}
	parm_model *m = parm_model_load(tmp_path(name));
	ok(m != NULL, "init and load %s model%s%s", parm_ggml_type_name(t), m ? "" : ": ", m ? "" : parm_error());
	return m;
}

static void cleanup(void)
{
	const char *names[] = { "f32.gguf", "f16.gguf", "q8_0.gguf", "bad.gguf", "tied.gguf" };
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		unlink(tmp_path(names[i]));
	rmdir(dir);
}

static void run(const parm_gguf *vocab)
{
	enum { P = 9 };
	int prompt[16] = { 1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203 };
	parm_model *m = make_model(vocab, "f32.gguf", PARM_GGML_F32);
	parm_model *m16 = make_model(vocab, "f16.gguf", PARM_GGML_F16);
	parm_model *m8 = make_model(vocab, "q8_0.gguf", PARM_GGML_Q8_0);
	if (!m || !m16 || !m8)
		return;
	V = m->cfg.n_vocab;
	ok(V == 32000 && m->cfg.dim == D && m->cfg.n_kv_heads == G && m->cfg.ff == F,
	   "config read back: V %d, D %d, G %d, F %d", V, m->cfg.dim, m->cfg.n_kv_heads, m->cfg.ff);
	float *ref = one_at_a_time(m, prompt, P);
	test_batched(m);
	test_prefill(m, prompt, P, ref);
	float *r16 = one_at_a_time(m16, prompt, P), *r8 = one_at_a_time(m8, prompt, P);
	ok(rel_err(r16, ref, (size_t)P * V) < 5e-3, "f16 model near the f32 one: rel err %.2g", rel_err(r16, ref, (size_t)P * V));
	ok(rel_err(r8, ref, (size_t)P * V) < 3e-2, "q8_0 model near the f32 one: rel err %.2g", rel_err(r8, ref, (size_t)P * V));
	float *plain = ref_forward(tmp_path("f32.gguf"), prompt, P);
	ok(rel_err(ref, plain, (size_t)P * V) < 1e-5, "plain reference forward agrees (f32): rel err %.2g", rel_err(ref, plain, (size_t)P * V));
	free(plain);
	plain = ref_forward(tmp_path("q8_0.gguf"), prompt, P);
	parm_kernels_set_int8(0);    /* the reference's activations are floats too */
	float *r8f = one_at_a_time(m8, prompt, P);
	parm_kernels_set_int8(1);
	ok(rel_err(r8f, plain, (size_t)P * V) < 1e-5, "plain reference forward agrees (q8_0, "
	   "PARM_INT8=0): rel err %.2g", rel_err(r8f, plain, (size_t)P * V));
	free(r8f);
	test_overflow(m, prompt);
	test_bad_models(tmp_path("f32.gguf"));
	free(plain), free(ref), free(r16), free(r8);
	parm_model_free(m), parm_model_free(m16), parm_model_free(m8);
}

int main(void)
{
	char vocab_path[4200];
	const char *fx = fixtures_dir();
	if (!fx) {
		skip("no llama.cpp vocab fixtures (make fixtures)", "tiny random models");
		return tap_done();
	}
	snprintf(vocab_path, sizeof vocab_path, "%s/ggml-vocab-llama-spm.gguf", fx);
	parm_gguf *vocab = parm_gguf_open(vocab_path);
	if (!ok(vocab != NULL, "open %s", vocab_path))
		return tap_done();
	snprintf(dir, sizeof dir, "%s", "/tmp/parm-test-model.XXXXXX");
	if (!mkdtemp(dir))
		parm_die("mkdtemp: cannot make a temp dir");
	parm_set_threads(2);
	run(vocab);
	cleanup();
	parm_gguf_close(vocab);
	return tap_done();
}
