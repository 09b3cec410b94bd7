/* test_mix - ARM guidance: the mixing maths against plain loops, the
 * runner's ARM log-probs against independent forwards (a fresh whole-
 * context pass, and train.h's forward at alpha = e_i), merged against
 * unmerged, and tools/parm-mix on small streams made here (dense and
 * sparse, W = 0, chained stages).  The base (dim 64, 4 layers) is larger
 * than the ARMs' backbone (dim 32, 2 layers): weak-to-strong.
 *
 * Also a helper for the shell tests:
 *   test_mix --make-arm BACKBONE.gguf K TARGETS SEED OUT.gguf
 * writes an ARM with random (non-zero) B, referenced backbone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <jansson.h>

#include <parm/arm.h>
#include <parm/mix.h>
#include <parm/model.h>
#include <parm/rng.h>
#include <parm/stream.h>
#include "kernels.h"
#include "tap.h"
#include <parm/train.h>
#include <parm/trainer.h>
#include <parm/util.h>

static char dir[256];

static char *path_in(const char *name)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];
	snprintf(p, 512, "%s/%s", dir, name);
	return p;
}

static float uniform(uint64_t *s)
{
	return (float)((parm_splitmix64(s) >> 11) * 0x1.0p-53) * 2 - 1;
}

/* ---- fixtures: models, ARMs, streams ---- */

static int make_arch_model(const char *out, const char *vocab, int dim, int layers,
			   uint64_t seed, int arch, int head_dim);
static int make_model(const char *out, const char *vocab, int dim, int layers, uint64_t seed)
{
	return make_arch_model(out, vocab, dim, layers, seed, PARM_ARCH_LLAMA, 0);
}

static int make_arch_model(const char *out, const char *vocab, int dim, int layers,
			   uint64_t seed, int arch, int head_dim)
{
	parm_gguf *v = parm_gguf_open(vocab);
	parm_config c = { .dim = dim, .n_layers = layers, .n_heads = 4, .n_kv_heads = 2,
			  .ff = 2 * dim, .n_ctx = 64, .arch = arch, .head_dim = head_dim };
	int rc = v ? parm_model_init(out, v, &c, PARM_GGML_F32, seed) : -1;
	parm_gguf_close(v);
	return rc;
}

static int make_arm(const char *backbone, int k, const char *targets, uint64_t seed,
		    const char *out)
{
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = k;
	o.seed = seed;
	static const char *names[] = { "helpful", "harmless", "honest" };
	o.objectives = names;
	if (parm_parse_targets(targets, &o.targets) < 0)
		return -1;
	parm_arm *a = parm_arm_new(backbone, &o);
	if (!a)
		return -1;
	uint64_t s = seed * 7919;
	for (int i = 0; i < a->backbone->cfg.n_layers * a->n_targets; i++) {
		parm_pblora *p = &a->adapters[i];
		for (int j = 0; j < p->out * (p->r1 + p->r2); j++)
			p->B[j] = 0.2f * uniform(&s);
	}
	int rc = parm_arm_save(a, out, 0);
	parm_arm_free(a);
	return rc;
}

struct seqdef { const char *prompt; int toks[3]; int n_toks; };
/* Token ids are taken modulo the vocabulary size (fit_tokens): the
 * fixture's vocabulary may be small. */
static struct seqdef seqs[2] = {
	{ "Hello world", { 450, 1576, 29892 }, 3 },
	{ "How do I boil an egg?", { 3869, 13 }, 2 },
};

static void write_header(parm_writer *w, const parm_model *m)
{
	parm_header h = { .version = PARM_STREAM_VERSION, .n_vocab = m->cfg.n_vocab,
			  .fingerprint = parm_tok_fingerprint(m->tok),
			  .bos = parm_tok_bos(m->tok), .eos = parm_tok_eos(m->tok) };
	char *chain[1] = { "{\"stage\":\"parm-logits\",\"model\":\"base.gguf\",\"ctx\":64}" };
	h.pieces = parm_xmalloc(h.n_vocab * sizeof *h.pieces);
	h.piece_len = parm_xmalloc(h.n_vocab * sizeof *h.piece_len);
	for (int i = 0; i < h.n_vocab; i++) {
		size_t len;
		h.pieces[i] = (char *)parm_tok_piece(m->tok, i, &len);
		h.piece_len[i] = len;
	}
	h.n_chain = 1;
	h.chain = chain;
	parm_write_header(w, &h);
	free(h.pieces);
	free(h.piece_len);
}

/* Top-K of a row (K small: selection by repeated max). */
static void top_k(int32_t *ids, float *vals, const float *row, int V, int K)
{
	for (int j = 0; j < K; j++) {
		int best = -1;
		for (int v = 0; v < V; v++) {
			int used = 0;
			for (int i = 0; i < j && !used; i++)
				used = ids[i] == v;
			if (!used && (best < 0 || row[v] > row[best]))
				best = v;
		}
		ids[j] = best;
		vals[j] = row[best];
	}
}

/* The stream of both sequences, logits from the base model: round 0
 * brings both prompts, round r feeds seqs[i].toks[r - 1]; sequence 1
 * ends a round before sequence 0.  sparse: top-K steps. */
static int make_stream(const char *out, const parm_model *base, int sparse)
{
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), V = base->cfg.n_vocab, K = 12;
	parm_writer *w = parm_writer_new(fd);
	parm_kv *kv = parm_kv_new(base, 2, 64);
	float *logits = parm_xmalloc(2 * (size_t)V * sizeof *logits), vals[2][12];
	int32_t ids[2][12];
	int toks[64], slot[64], n;
	write_header(w, base);
	for (int r = 0; r <= 3; r++) {
		parm_step steps[2];
		int n_steps = 0;
		n = 0;
		for (int i = 0; i < 2; i++) {
			const struct seqdef *sd = &seqs[i];
			if (r == 0) {
				int p[32], np = parm_tokenize(base->tok, sd->prompt, strlen(sd->prompt), 1, p, 32);
				parm_write_start(w, i, sd->prompt, p, np, NULL);
				for (int j = 0; j < np; j++)
					toks[n] = p[j], slot[n++] = i;
			} else if (r - 1 < sd->n_toks) {
				toks[n] = sd->toks[r - 1], slot[n++] = i;
			} else {
				continue;
			}
			steps[n_steps++] = (parm_step){ .seq = i, .tok = r ? sd->toks[r - 1] : -1 };
		}
		parm_forward(base, kv, n, toks, slot, NULL, logits);
		for (int i = 0; i < n_steps; i++) {
			steps[i].logits = logits + (size_t)i * V;
			if (sparse) {
				top_k(ids[i], vals[i], steps[i].logits, V, K);
				steps[i].sparse = 1, steps[i].k = K;
				steps[i].ids = ids[i], steps[i].logits = vals[i];
			}
		}
		parm_write_round(w, n_steps, steps, V);
		for (int i = 0; i < 2; i++)
			if (r == seqs[i].n_toks)
				parm_write_end(w, i, -1, 0, "length");
	}
	parm_write_fin(w);
	int rc = parm_flush(w);
	parm_writer_free(w);
	parm_kv_free(kv);
	free(logits);
	close(fd);
	return rc;
}

/* ---- reading a stream back ---- */

struct row { int seq, round, sparse, k; float *logits; int32_t *ids; };
struct parsed { parm_header h; struct row *rows; int n_rows; char *starts[2]; int *ptok[2], np[2]; };

static int parse_stream(const char *file, struct parsed *p)
{
	int fd = open(file, O_RDONLY), round = 0;
	parm_reader *r = fd >= 0 ? parm_reader_new(fd) : NULL;
	parm_record rec;
	memset(p, 0, sizeof *p);
	if (!r || parm_read_header(r, &p->h) < 0)
		return -1;
	p->rows = parm_xcalloc(64, sizeof *p->rows);
	for (;;) {
		if (parm_read_record(r, &rec) < 0)
			return -1;
		if (rec.type == PARM_REC_FIN)
			break;
		if (rec.type == PARM_REC_START && rec.seq < 2) {
			p->ptok[rec.seq] = parm_xmemdup(rec.tokens, rec.n_tokens * sizeof(int));
			p->np[rec.seq] = rec.n_tokens;
		}
		if (rec.type != PARM_REC_ROUND)
			continue;
		for (int i = 0; i < rec.n_steps && p->n_rows < 64; i++) {
			parm_step *s = &rec.steps[i];
			int n = s->sparse ? s->k : p->h.n_vocab;
			p->rows[p->n_rows++] = (struct row){ s->seq, round, s->sparse, s->k,
				parm_xmemdup(s->logits, n * sizeof(float)),
				s->sparse ? parm_xmemdup(s->ids, n * sizeof(int32_t)) : NULL };
		}
		round++;
	}
	parm_reader_free(r);
	close(fd);
	return 0;
}

static void free_parsed(struct parsed *p)
{
	for (int i = 0; i < p->n_rows; i++)
		free(p->rows[i].logits), free(p->rows[i].ids);
	free(p->rows);
	free(p->ptok[0]), free(p->ptok[1]);
	parm_header_free(&p->h);
}

/* The context a row's ARM pass sees: prompt + toks up to its round. */
static int context_of(const struct parsed *p, const struct row *r, int *ctx)
{
	int n = p->np[r->seq];
	memcpy(ctx, p->ptok[r->seq], n * sizeof *ctx);
	for (int j = 0; j < r->round; j++)
		ctx[n++] = seqs[r->seq].toks[j];
	return n;
}

/* ---- references ---- */

/* ARM log-probs after ctx by a fresh whole-context unmerged pass. */
static void arm_logp_fresh(float *lp, const parm_arm *a, const float *alpha,
			   const int *ctx, int n)
{
	int L = a->backbone->cfg.n_layers, r = a->r1 + a->r2, slot[64] = { 0 };
	parm_adapter *ad = parm_xcalloc((size_t)L * PARM_N_PROJ, sizeof *ad);
	float *M = parm_xmalloc((size_t)L * a->n_targets * r * r * sizeof *M);
	for (int l = 0; l < L; l++)
		for (int i = 0; i < a->n_targets; i++) {
			float *Mi = M + ((size_t)l * a->n_targets + i) * r * r;
			parm_pblora_mix(Mi, &a->adapters[l * a->n_targets + i], alpha);
			ad[l * PARM_N_PROJ + a->targets[i]] = (parm_adapter){ &a->adapters[l * a->n_targets + i], Mi };
		}
	parm_kv *kv = parm_kv_new(a->backbone, 1, 64);
	parm_forward_adapted(a->backbone, ad, kv, n, ctx, slot, NULL, lp);
	parm_log_softmax_forward(lp, lp, 1, a->backbone->cfg.n_vocab);
	parm_kv_free(kv);
	free(ad);
	free(M);
}

static void ref_log_softmax(double *out, const float *x, int n)
{
	double mx = -INFINITY, s = 0;
	for (int i = 0; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (int i = 0; i < n; i++)
		s += exp(x[i] - mx);
	for (int i = 0; i < n; i++)
		out[i] = x[i] - mx - log(s);
}

/* ---- tests ---- */

static void test_maths(void)
{
	float x[6] = { 1, -2, 0.5f, -INFINITY, 3, 0 }, lp1[6], lp2[6], row[6];
	double ref[6], acc[6];
	uint64_t s = 5;
	for (int i = 0; i < 6; i++)
		lp1[i] = -1 - uniform(&s), lp2[i] = -2 + uniform(&s);
	const float *lps[2] = { lp1, lp2 };
	float w[2] = { 0.7f, -0.3f };
	memcpy(row, x, sizeof row);
	parm_mix_row(row, NULL, 6, lps, w, 2);
	ref_log_softmax(ref, x, 6);
	for (int i = 0; i < 6; i++)
		acc[i] = ref[i] + 0.7 * lp1[i] - 0.3 * lp2[i];
	float accf[6];
	for (int i = 0; i < 6; i++)
		accf[i] = (float)acc[i];
	ref_log_softmax(ref, accf, 6);
	double err = 0;
	for (int i = 0; i < 6; i++)
		if (i != 3)
			err = fmax(err, fabs(row[i] - ref[i]));
	ok(err < 1e-5 && row[3] == -INFINITY, "parm_mix_row dense against plain loops (err %.2g), -inf stays", err);
	int32_t ids[3] = { 4, 0, 2 };
	float sp[3] = { 2, 1, -1 }, spx[3];
	memcpy(spx, sp, sizeof sp);
	parm_mix_row(sp, ids, 3, lps, w, 2);
	for (int i = 0; i < 3; i++)
		spx[i] = spx[i] + 0.7f * lp1[ids[i]] - 0.3f * lp2[ids[i]];
	ref_log_softmax(ref, spx, 3);
	err = 0;
	for (int i = 0; i < 3; i++)
		err = fmax(err, fabs(sp[i] - ref[i]));
	ok(err < 1e-5, "parm_mix_row sparse: guidance gathered at the ids (err %.2g)", err);
	float ninf[2] = { -INFINITY, -INFINITY };
	parm_log_softmax_forward(ninf, ninf, 1, 2);
	ok(ninf[0] == -INFINITY && ninf[1] == -INFINITY, "a row of only -inf is left alone");
}

static int run(const char *cmd)
{
	char full[2048];
	snprintf(full, sizeof full, "cd %s && %s 2>err.txt", dir, cmd);
	return system(full);
}

/* Every row of out against log_softmax(log_softmax(in) + w * a(alpha)). */
static double mixed_error(const struct parsed *in, const struct parsed *out,
			  const parm_arm *a, const float *alpha, float w)
{
	int V = in->h.n_vocab, ctx[64];
	float *lp = parm_xmalloc((size_t)V * sizeof *lp), *row = parm_xmalloc((size_t)V * sizeof *row);
	double err = in->n_rows == out->n_rows && in->n_rows > 0 ? 0 : INFINITY;
	for (int i = 0; i < in->n_rows && err < INFINITY; i++) {
		const struct row *ri = &in->rows[i], *ro = &out->rows[i];
		int n = ri->sparse ? ri->k : V;
		if (ro->sparse != ri->sparse || ro->k != ri->k || ro->seq != ri->seq ||
		    (ri->sparse && memcmp(ri->ids, ro->ids, n * sizeof *ri->ids)))
			return INFINITY;
		arm_logp_fresh(lp, a, alpha, ctx, context_of(in, ri, ctx));
		memcpy(row, ri->logits, n * sizeof *row);
		parm_log_softmax_forward(row, row, 1, n);
		for (int j = 0; j < n; j++)
			row[j] += w * lp[ri->sparse ? ri->ids[j] : j];
		parm_log_softmax_forward(row, row, 1, n);
		for (int j = 0; j < n; j++)
			err = fmax(err, fabs(row[j] - ro->logits[j]));
	}
	free(lp);
	free(row);
	return err;
}

static void test_tool_mix(const parm_arm *parm2, int sparse)
{
	const char *in = sparse ? "sparse.stream" : "dense.stream";
	char cmd[512];
	struct parsed pi, po;
	float alpha[2] = { 0.3f, 0.7f };
	snprintf(cmd, sizeof cmd, "%s/tools/parm-mix --pref 0.3,0.7 --weight 1.5 parm2.gguf < %s > mixed.stream",
		 getenv("PWD"), in);
	int rc = run(cmd);
	ok(rc == 0, "parm-mix runs on a %s stream", sparse ? "sparse" : "dense");
	if (rc || parse_stream(path_in(in), &pi) < 0 || parse_stream(path_in("mixed.stream"), &po) < 0) {
		ok(0, "%s output parsed", in);
		return;
	}
	double err = mixed_error(&pi, &po, parm2, alpha, 1.5f);
	ok(err < 2e-4, "%s: every row is log_softmax(log_softmax(in) + W a), %d rows (err %.2g)",
	   in, pi.n_rows, err);
	json_t *j = json_loads(po.h.chain[po.h.n_chain - 1], 0, NULL);
	json_t *pref = json_object_get(j, "pref");
	ok(po.h.n_chain == 2 && !strcmp(json_string_value(json_object_get(j, "stage")), "parm-mix") &&
	   json_real_value(json_object_get(j, "weight")) == 1.5 &&
	   json_real_value(json_array_get(pref, 1)) == 0.7 &&
	   json_is_true(json_object_get(j, "merged")) &&
	   !strcmp(json_string_value(json_array_get(json_object_get(j, "objectives"), 0)), "helpful"),
	   "%s: the chain records ARM, objectives, pref, weight, merged", in);
	json_decref(j);
	free_parsed(&pi);
	free_parsed(&po);
}

/* Whether every logit agrees within tol relative; *err gets the largest
 * relative difference seen. */
static int same_rows(const struct parsed *a, const struct parsed *b, double tol, double *err)
{
	int same = 1;
	*err = 0;
	if (a->n_rows != b->n_rows || a->n_rows == 0)
		return 0;
	for (int i = 0; i < a->n_rows; i++) {
		int n = a->rows[i].sparse ? a->rows[i].k : a->h.n_vocab;
		if (a->rows[i].sparse != b->rows[i].sparse || a->rows[i].k != b->rows[i].k)
			return 0;
		for (int j = 0; j < n; j++) {
			double x = a->rows[i].logits[j], y = b->rows[i].logits[j];
			double d = x == y ? 0 : isfinite(x - y) ? fabs(x - y) / fmax(1, fabs(x)) : INFINITY;
			same &= d <= tol;
			*err = fmax(*err, d);
		}
	}
	return same;
}

static int compare_outputs(const char *cmd_a, const char *cmd_b, double tol, double *err)
{
	struct parsed a, b;
	char cmd[1024];
	const char *pwd = getenv("PWD");
	snprintf(cmd, sizeof cmd, "PATH=%s/tools:$PATH; %s > a.stream", pwd, cmd_a);
	if (run(cmd))
		return 0;
	snprintf(cmd, sizeof cmd, "PATH=%s/tools:$PATH; %s > b.stream", pwd, cmd_b);
	if (run(cmd) || parse_stream(path_in("a.stream"), &a) < 0 ||
	    parse_stream(path_in("b.stream"), &b) < 0)
		return 0;
	int same = same_rows(&a, &b, tol, err);
	free_parsed(&a);
	free_parsed(&b);
	return same;
}

static void test_tool_compose(void)
{
	double err;
	int same;
	ok(compare_outputs("parm-mix --weight 0 parm2.gguf --pref 1,0 < dense.stream",
			   "cat dense.stream", 0, &err),
	   "W = 0: logits byte-identical to the input");
	ok(compare_outputs("parm-mix --weight 0 parm2.gguf --pref 1,0 < sparse.stream",
			   "cat sparse.stream", 0, &err),
	   "W = 0 on a sparse stream: unchanged");
	ok(compare_outputs("parm-mix --pref 0.2,0.8 parm2.gguf < dense.stream",
			   "parm-mix --no-merge --pref 0.2,0.8 parm2.gguf < dense.stream", 1e-5, &err),
	   "merged and unmerged agree within 1e-5 relative (k = 2, q k v)");
	ok(compare_outputs("parm-mix --pref harmless=0.6,helpful=0.4,honest=0 parm3.gguf < dense.stream",
			   "parm-mix --no-merge --pref 0.4,0.6,0 parm3.gguf < dense.stream", 1e-5, &err),
	   "merged and unmerged agree within 1e-5 relative (k = 3, every target; names)");
	same = compare_outputs("parm-mix --arm parm2.gguf:0.5:0.5,0.5 --arm arm1.gguf:0.7 < dense.stream",
			       "parm-mix --weight 0.5 --pref 0.5,0.5 parm2.gguf < dense.stream | parm-mix --arm arm1.gguf:0.7",
			       1e-5, &err);
	ok(same, "GenARM: one stage with two ARMs equals two chained stages (err %.2g)", err);
	same = compare_outputs("parm-mix --arm arm1.gguf:0.7 --arm parm3.gguf:-0.4:0,0,1 < sparse.stream",
			       "parm-mix --arm parm3.gguf:-0.4:0,0,1 < sparse.stream | parm-mix arm1.gguf -w 0.7",
			       1e-5, &err);
	ok(same, "sparse: one stage equals chained stages, in either order (err %.2g)", err);
}

/* lp of the runner at alpha = e_i against train.h's forward with set_pref. */
static void test_pref_basis(const parm_arm *a, const struct parsed *in)
{
	parm_adapter_opts o;
	parm_adapter_opts_of_arm(&o, a);
	/* the trainer over the ARM's own adapters: nothing copied */
	parm_trainer *t = parm_train_new_on_arm((parm_arm *)a, &o, 4, 32, 0);
	parm_train_set_training(t, 0);
	for (int e = 0; e < a->k; e++) {
		char pref[16];
		snprintf(pref, sizeof pref, e ? "0,1" : "1,0");
		parm_guide *g = parm_guide_load(a->path, pref, 1, 1);
		float alpha[2] = { e == 0, e == 1 };
		parm_train_set_pref(t, alpha);
		parm_guide_begin(g, &in->h, 0);
		parm_guide_start(g, 0, in->ptok[0], in->np[0]);
		double err = 0;
		int V = in->h.n_vocab, cand[4] = { 450 % V, 13 % V, 29892 % V, 1 };
		float *lp = parm_xmalloc((size_t)V * sizeof *lp);
		for (int r = 0; r <= 2; r++) {
			parm_step st = { .seq = 0, .tok = r ? seqs[0].toks[r - 1] : -1 };
			parm_guide_round(g, 1, &st, lp);
			/* the same context + each candidate, as 4 sequences */
			int toks[4][32], lens[4], ctx[32];
			struct row rw = { .seq = 0, .round = r };
			int n = context_of(in, &rw, ctx);
			float logp[4][31];
			for (int b = 0; b < 4; b++) {
				memcpy(toks[b], ctx, n * sizeof *ctx);
				toks[b][n] = cand[b];
				lens[b] = n + 1;
			}
			parm_train_forward(t, &toks[0][0], lens, 4, 32, NULL, &logp[0][0]);
			for (int b = 0; b < 4; b++)
				err = fmax(err, fabs(logp[b][n - 1] - lp[cand[b]]));
		}
		ok(err < 1e-4, "alpha = e_%d: the runner's log-probs equal train.h's forward with that alpha (err %.2g)",
		   e + 1, err);
		free(lp);
		parm_guide_free(g);
	}
	parm_train_free(t);
}

/* The runner's own batched incremental passes against fresh passes. */
static void test_runner_on(const struct parsed *in, const char *arm, const char *pref,
			   const char *what, int merge)
{
	parm_guide *g = parm_guide_load(path_in(arm), pref, 1, merge);
	if (!g || parm_guide_begin(g, &in->h, 0) < 0) {
		ok(0, "guide loads: %s", parm_error());
		return;
	}
	int V = in->h.n_vocab, ctx[64], round = 0, i = 0;
	float *lp = parm_xmalloc(2 * (size_t)V * sizeof *lp), *ref = parm_xmalloc((size_t)V * sizeof *ref);
	double err = 0;
	parm_guide_start(g, 0, in->ptok[0], in->np[0]);
	parm_guide_start(g, 1, in->ptok[1], in->np[1]);
	while (i < in->n_rows) {
		parm_step st[2];
		int n = 0, first = i;
		for (; i < in->n_rows && in->rows[i].round == round; i++)
			st[n++] = (parm_step){ .seq = in->rows[i].seq,
				.tok = round ? seqs[in->rows[i].seq].toks[round - 1] : -1 };
		parm_guide_round(g, n, st, lp);
		for (int j = 0; j < n; j++) {
			arm_logp_fresh(ref, parm_guide_arm(g), parm_guide_alpha(g), ctx,
				       context_of(in, &in->rows[first + j], ctx));
			for (int v = 0; v < V; v++)
				err = fmax(err, fabs(lp[(size_t)j * V + v] - ref[v]) / fmax(1, fabs(ref[v])));
		}
		round++;
	}
	ok(err < 1e-5, "runner (%s, %s): batched incremental rounds equal fresh unmerged passes (rel err %.2g)",
	   merge ? "merged" : "unmerged", what, err);
	free(lp);
	free(ref);
	parm_guide_free(g);
}

static void test_runner(const struct parsed *in, int merge)
{
	test_runner_on(in, "parm3.gguf", "0.1,0.6,0.3", "k = 3, every target", merge);
}

/* ARMs on a qwen2, qwen3 and phi3 backbone (same vocabulary as the llama
 * base: weak-to-strong across architectures), adapters on every target
 * (on phi3 the q, k, v adapters sit on attn_qkv's row ranges, gate and up
 * on ffn_up's): runner against fresh passes merged and unmerged, against
 * the trainer at alpha = e_i, and parm-mix merged against unmerged. */
static void test_architectures(const char *vocab, const struct parsed *in)
{
	static const struct { int arch, hd; } archs[] = {
		{ PARM_ARCH_QWEN2, 0 }, { PARM_ARCH_QWEN3, 12 }, { PARM_ARCH_PHI3, 0 },
	};
	char model[64], arm[64], what[96], a[200], b[200];
	for (size_t i = 0; i < sizeof archs / sizeof *archs; i++) {
		const char *name = parm_arch_at(archs[i].arch)->name;
		snprintf(model, sizeof model, "%s.gguf", name);
		snprintf(arm, sizeof arm, "%s-arm.gguf", name);
		if (make_arch_model(path_in(model), vocab, 32, 2, 31 + i, archs[i].arch, archs[i].hd) < 0 ||
		    make_arm(path_in(model), 2, "all", 41 + i, path_in(arm)) < 0) {
			ok(0, "%s ARM made: %s", name, parm_error());
			continue;
		}
		snprintf(what, sizeof what, "%s backbone, k = 2, every target", name);
		test_runner_on(in, arm, "0.3,0.7", what, 1);
		test_runner_on(in, arm, "0.3,0.7", what, 0);
		parm_arm *parm = parm_arm_load(path_in(arm));
		if (parm)
			test_pref_basis(parm, in);
		parm_arm_free(parm);
		snprintf(a, sizeof a, "parm-mix --pref 0.3,0.7 %s < dense.stream", arm);
		snprintf(b, sizeof b, "parm-mix --no-merge --pref 0.3,0.7 %s < dense.stream", arm);
		double err = 0;
		int same = compare_outputs(a, b, 1e-5, &err);
		ok(same, "%s: parm-mix merged and unmerged agree within 1e-5 relative (err %.2g)",
		   what, err);
	}
}

static void test_errors(const struct parsed *in)
{
	parm_guide *g = parm_guide_load(path_in("parm2.gguf"), NULL, 1, 1);
	ok(!g && strstr(parm_error(), "needs a preference") && strstr(parm_error(), "helpful"),
	   "k = 2 without a preference: error naming the objectives (%s)", parm_error());
	g = parm_guide_load(path_in("parm2.gguf"), "0.5,0.6", 1, 1);
	ok(!g, "a preference not summing to 1 is refused (%s)", parm_error());
	g = parm_guide_load(path_in("arm1.gguf"), NULL, 1, 0);
	parm_guide_begin(g, &in->h, 0);
	float *lp = parm_xmalloc((size_t)in->h.n_vocab * sizeof *lp);
	parm_step st = { .seq = 5, .tok = 3 };
	ok(parm_guide_round(g, 1, &st, lp) < 0 && strstr(parm_error(), "not in flight"),
	   "a step for an unknown sequence is an error");
	int long_prompt[70] = { 1 };
	parm_guide_start(g, 5, long_prompt, 70);
	ok(parm_guide_round(g, 1, &st, lp) < 0 && strstr(parm_error(), "context of 64"),
	   "a sequence past the ARM's context: clear error (%s)", parm_error());
	free(lp);
	parm_guide_free(g);
}

static void fit_tokens(int V)
{
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < seqs[i].n_toks; j++)
			seqs[i].toks[j] %= V;
}

static int make_fixtures(const char *vocab, const parm_model **base_out)
{
	if (make_model(path_in("base.gguf"), vocab, 64, 4, 11) < 0 ||
	    make_model(path_in("small.gguf"), vocab, 32, 2, 12) < 0 ||
	    make_arm(path_in("small.gguf"), 2, "q,k,v", 21, path_in("parm2.gguf")) < 0 ||
	    make_arm(path_in("small.gguf"), 3, "all", 22, path_in("parm3.gguf")) < 0 ||
	    make_arm(path_in("small.gguf"), 1, "q,v", 23, path_in("arm1.gguf")) < 0)
		return -1;
	parm_model *base = parm_model_load(path_in("base.gguf"));
	if (base)
		fit_tokens(base->cfg.n_vocab);
	if (!base || make_stream(path_in("dense.stream"), base, 0) < 0 ||
	    make_stream(path_in("sparse.stream"), base, 1) < 0)
		return -1;
	*base_out = base;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 7 && !strcmp(argv[1], "--make-arm")) {
		if (make_arm(argv[2], atoi(argv[3]), argv[4], strtoull(argv[5], NULL, 10), argv[6]) < 0) {
			fprintf(stderr, "test_mix: %s\n", parm_error());
			return 1;
		}
		return 0;
	}
	const char *fx = fixtures_dir();
	char vocab[4200];
	const parm_model *base = NULL;
	test_maths();
	if (!fx) {
		skip("no tokenizer fixtures (make fixtures)", "parm-mix on streams");
		return tap_done();
	}
	snprintf(vocab, sizeof vocab, "%s/ggml-vocab-llama-spm.gguf", fx);
	snprintf(dir, sizeof dir, "/tmp/test_mix.XXXXXX");
	if (!mkdtemp(dir) || make_fixtures(vocab, &base) < 0) {
		ok(0, "fixtures: %s", parm_error());
		return tap_done();
	}
	parm_set_threads(2);
	struct parsed in;
	parse_stream(path_in("dense.stream"), &in);
	parm_arm *parm2 = parm_arm_load(path_in("parm2.gguf"));
	test_runner(&in, 1);
	test_runner(&in, 0);
	test_architectures(vocab, &in);
	test_pref_basis(parm2, &in);
	test_tool_mix(parm2, 0);
	test_tool_mix(parm2, 1);
	test_tool_compose();
	test_errors(&in);
	free_parsed(&in);
	parm_arm_free(parm2);
	parm_model_free((parm_model *)base);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "%s rm -rf %s", getenv("KEEP") ? "echo" : "", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_mix: could not remove %s\n", dir);
	return tap_done();
}
