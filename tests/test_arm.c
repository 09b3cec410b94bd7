/* test_arm.c - ARM files: create, save embedded and referenced, load back
 * bit-exact; a moved or changed backbone, a broken file and a bad
 * preference each fail with one line naming the problem; merged weights
 * equal W + s B M A computed with plain loops. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <parm/arm.h>
#include "quant_dot.h"
#include "tap.h"
#include <parm/util.h>

static char dir[64];

static const char *tmp_path(const char *name)
{
	static char buf[256][128];     /* a ring: callers keep a few at once */
	static int k;
	k = (k + 1) % 256;
	snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
	return buf[k];
}

/* The condition is evaluated before parm_error() is read (argument order
 * is unspecified in C); a failing check prints the library's message. */
#define GOOD(c, ...) do { int c_ = (c); if (!ok(c_, __VA_ARGS__)) \
	printf("# error: %s\n", parm_error()); } while (0)
#define REFUSED(c, ...) do { int c_ = (c); char m_[256]; \
	snprintf(m_, sizeof m_, __VA_ARGS__); ok(c_, "%s: %s", m_, parm_error()); } while (0)

static int has(const char *msg, const char *what)
{
	return msg && strstr(msg, what) != NULL;
}

static int make_backbone(const char *path, int dim, uint64_t seed)
{
	char vocab_path[4096];
	snprintf(vocab_path, sizeof vocab_path, "%s/ggml-vocab-llama-spm.gguf", fixtures_dir());
	parm_gguf *vocab = parm_gguf_open(vocab_path);
	parm_config c = { .dim = dim, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
			  .ff = 96, .n_ctx = 64 };
	int rc = vocab ? parm_model_init(path, vocab, &c, PARM_GGML_F16, seed) : -1;
	parm_gguf_close(vocab);
	return rc;
}

static void fill_random(float *x, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		x[i] = (float)((double)(s >> 11) / (1ULL << 53) * 2 - 1);
	}
}

static parm_arm *new_arm(const char *backbone, int k, unsigned targets, uint64_t seed)
{
	static const char *const names[] = { "helpful", "harmless", "honest" };
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = k, o.r1 = 2, o.r2 = 3, o.lora_alpha = 6, o.beta = 0.05f;
	o.objectives = k > 1 ? names : NULL;
	o.targets = targets;
	o.seed = seed;
	parm_arm *a = parm_arm_new(backbone, &o);
	if (a)
		fill_random(a->params, a->n_params, seed);
	return a;
}

/* Everything a load must give back, bit for bit. */
static int same_arm(const parm_arm *a, const parm_arm *b)
{
	if (a->k != b->k || a->r1 != b->r1 || a->r2 != b->r2 || a->lora_alpha != b->lora_alpha ||
	    a->beta != b->beta || a->n_targets != b->n_targets || a->n_params != b->n_params ||
	    a->n_info != b->n_info || a->backbone->cfg.n_layers != b->backbone->cfg.n_layers)
		return 0;
	for (int i = 0; i < a->k; i++)
		if (strcmp(a->objectives[i], b->objectives[i]))
			return 0;
	for (int i = 0; i < a->n_targets; i++)
		if (a->targets[i] != b->targets[i])
			return 0;
	for (int i = 0; i < a->n_info; i++) {
		const char *v = parm_arm_get_info(b, a->info_key[i]);
		if (!v || strcmp(v, a->info_val[i]))
			return 0;
	}
	return !memcmp(a->params, b->params, a->n_params * sizeof *a->params);
}

static void test_new(const char *base)
{
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = 2;
	parm_arm *a = parm_arm_new(base, &o);
	GOOD(a != NULL, "new ARM, k = 2, defaults");
	if (!a)
		return;
	size_t zeros_b = 0, zeros_a = 0, nb = 0, na = 0;
	for (int i = 0; i < a->backbone->cfg.n_layers * a->n_targets; i++) {
		const parm_pblora *p = &a->adapters[i];
		for (int j = 0; j < p->out * (p->r1 + p->r2); j++, nb++)
			zeros_b += p->B[j] == 0;
		for (int j = 0; j < p->in * (p->r1 + p->r2); j++, na++)
			zeros_a += p->A[j] == 0;
	}
	ok(a->n_targets == 3 && a->targets[0] == PARM_T_ATTN_Q && a->targets[2] == PARM_T_ATTN_V,
	   "default targets q, k, v");
	ok(zeros_b == nb && zeros_a < na / 100, "init: B = 0, A random (%zu of %zu zeros)",
	   zeros_a, na);
	ok(!strcmp(a->objectives[1], "objective2") && parm_arm_objective_index(a, "objective2") == 1 &&
	   parm_arm_objective_index(a, "nope") == -1, "default objective names, index lookup");
	parm_arm_free(a);
	o.r2 = 0;
	REFUSED(!parm_arm_new(base, &o) && has(parm_error(), "r2 = 0"), "r2 = 0 refused");
	o.r2 = 4;
	o.objectives = (const char *const[]){ "a=b", "c" };
	REFUSED(!parm_arm_new(base, &o) && has(parm_error(), "'a=b'"), "objective with '=' refused");
	o.objectives = (const char *const[]){ "x", "x" };
	REFUSED(!parm_arm_new(base, &o) && has(parm_error(), "twice"), "repeated objective refused");
}

static void test_round_trip(const char *base, int k, unsigned targets)
{
	parm_arm *a = new_arm(base, k, targets, 7 + k);
	GOOD(a != NULL, "k = %d: new ARM", k);
	if (!a)
		return;
	parm_arm_set_info(a, "steps", "123");
	parm_arm_set_info(a, "data", "pairs.jsonl.gz");
	const char *emb = tmp_path(k == 1 ? "emb1.gguf" : "emb2.gguf");
	const char *ref = tmp_path(k == 1 ? "ref1.gguf" : "ref2.gguf");
	GOOD(parm_arm_save(a, emb, 1) == 0, "k = %d: save embedded", k);
	GOOD(parm_arm_save(a, ref, 0) == 0, "k = %d: save referenced", k);
	parm_arm *e = parm_arm_load(emb), *r = parm_arm_load(ref);
	GOOD(e && e->embedded && same_arm(a, e), "k = %d: embedded loads back bit-exact", k);
	GOOD(r && !r->embedded && same_arm(a, r), "k = %d: referenced loads back bit-exact", k);
	ok(r && !strcmp(r->backbone_sha256, a->backbone_sha256) && strlen(r->backbone_sha256) == 64,
	   "k = %d: digest %s", k, r ? r->backbone_sha256 : "");
	parm_model *m = parm_model_load(emb);
	ok(m && m->cfg.n_layers == a->backbone->cfg.n_layers && m->cfg.n_vocab == a->backbone->cfg.n_vocab,
	   "k = %d: an embedded ARM is a plain llama model to parm_model_load", k);
	parm_model_free(m);
	if (e) {        /* re-save from its own file: old parm keys and adapters dropped */
		const char *emb_again = tmp_path("emb_again.gguf");
		parm_arm *e2 = parm_arm_save(e, emb_again, 1) == 0 ? parm_arm_load(emb_again) : NULL;
		GOOD(e2 && same_arm(a, e2), "k = %d: embedded ARM re-saved embedded", k);
		parm_arm_free(e2);
		REFUSED(parm_arm_save(e, tmp_path("x.gguf"), 0) < 0 && has(parm_error(), "embedded"),
			"k = %d: embedded ARM cannot be saved referenced", k);
	}
	parm_arm_free(a);
	parm_arm_free(e);
	parm_arm_free(r);
}

/* The referenced file carries the tokenizer: a stage can fingerprint it
 * without opening the backbone. */
static void test_tokenizer_copy(const char *base)
{
	parm_gguf *g = parm_gguf_open(tmp_path("ref2.gguf"));
	parm_tokenizer *t = g ? parm_tokenizer_load(g) : NULL;
	parm_model *m = parm_model_load(base);
	ok(t && m && parm_tok_fingerprint(t) == parm_tok_fingerprint(m->tok),
	   "referenced ARM's tokenizer fingerprint equals the backbone's");
	ok(g && parm_gguf_find_tensor(g, "blk.0.attn_q.weight") == NULL &&
	   parm_gguf_find_tensor(g, "blk.1.attn_v.pblora_w2") != NULL,
	   "referenced ARM holds adapters, not backbone tensors");
	if (t)
		parm_tokenizer_free(t);
	parm_model_free(m);
	parm_gguf_close(g);
}

static void test_relative_path(const char *base)
{
	const char *stored;
	size_t len;
	mkdir(tmp_path("sub"), 0700);
	parm_arm *a = new_arm(base, 2, PARM_TARGETS_DEFAULT, 3);
	int saved = a && parm_arm_save(a, tmp_path("sub/arm.gguf"), 0) == 0;
	parm_gguf *g = saved ? parm_gguf_open(tmp_path("sub/arm.gguf")) : NULL;
	GOOD(g && parm_gguf_get_str(g, "parm.backbone.path", &stored, &len) == 0 &&
	   len == strlen("../base.gguf") && !memcmp(stored, "../base.gguf", len),
	   "backbone path stored relative to the ARM's directory");
	parm_gguf_close(g);
	parm_arm *b = saved ? parm_arm_load(tmp_path("sub/arm.gguf")) : NULL;
	GOOD(b && same_arm(a, b), "ARM in a subdirectory finds ../base.gguf");
	parm_arm_free(a);
	parm_arm_free(b);
}

static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char buf[1 << 16];
	size_t n;
	while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	int rc = in && out ? 0 : -1;
	if (in)
		fclose(in);
	if (out && fclose(out))
		rc = -1;
	return rc;
}

/* Flip one byte of a tensor's data in place (the file stays a valid GGUF). */
static void corrupt_byte(const char *path, long where)
{
	FILE *f = fopen(path, "r+b");
	int c;
	if (!f)
		return;
	fseek(f, where, SEEK_END);
	c = fgetc(f);
	fseek(f, where, SEEK_END);
	fputc(c ^ 0x40, f);
	fclose(f);
}

static void test_backbone_checks(const char *base)
{
	const char *b2 = tmp_path("base2.gguf"), *arm = tmp_path("arm_b2.gguf");
	copy_file(base, b2);
	parm_arm *a = new_arm(b2, 2, PARM_TARGETS_DEFAULT, 5);
	GOOD(a && parm_arm_save(a, arm, 0) == 0, "ARM on a copy of the backbone");
	parm_arm_free(a);
	corrupt_byte(b2, -100);
	a = parm_arm_load(arm);
	const char *msg = parm_error();
	REFUSED(!a && has(msg, "SHA-256") && has(msg, "base2.gguf") && has(msg, arm),
		"changed backbone");
	parm_arm_free(a);
	unlink(b2);
	a = parm_arm_load(arm);
	REFUSED(!a && has(parm_error(), "base2.gguf") && has(parm_error(), "No such file"),
		"missing backbone");
	parm_arm_free(a);
}

/* Copy an ARM file, leaving out one tensor and letting edit() change keys. */
/* Everything but the tensor named ctx (NULL: everything). */
static int keep_but(void *ctx, const char *name, int is_tensor)
{
	return !is_tensor || !ctx || strcmp(ctx, name);
}

static int rewrite(const char *from, const char *to, const char *drop,
		   void (*edit)(parm_gguf_writer *w))
{
	parm_gguf *g = parm_gguf_open(from);
	if (!g)
		return -1;
	parm_gguf_writer *w = parm_gguf_w_new();
	parm_gguf_w_copy_file(w, g, keep_but, (void *)drop);
	if (edit)
		edit(w);
	int rc = parm_gguf_w_save(w, to);
	parm_gguf_w_free(w);
	parm_gguf_close(g);
	return rc;
}

static void edit_k3(parm_gguf_writer *w)
{
	const char *names[] = { "a", "b", "c" };
	parm_gguf_w_set_u32(w, "parm.objective_count", 3);
	parm_gguf_w_set_arr_str(w, "parm.objectives", names, NULL, 3);
}

static void edit_target(parm_gguf_writer *w)
{
	const char *names[] = { "attn_q", "attn_x", "attn_v" };
	parm_gguf_w_set_arr_str(w, "parm.pblora.targets", names, NULL, 3);
}

static void edit_version(parm_gguf_writer *w)
{
	parm_gguf_w_set_u32(w, "parm.format_version", 99);
}

static void edit_layers(parm_gguf_writer *w)
{
	parm_gguf_w_set_u32(w, "parm.block_count", 3);
}

static void edit_names(parm_gguf_writer *w)
{
	const char *names[] = { "helpful" };
	parm_gguf_w_set_arr_str(w, "parm.objectives", names, NULL, 1);
}

static char other_path[256], other_sha[65];

static void edit_backbone(parm_gguf_writer *w)
{
	parm_gguf_w_set_str(w, "parm.backbone.path", other_path);
	parm_gguf_w_set_str(w, "parm.backbone.sha256", other_sha);
}

static void expect_fail(const char *src, const char *drop, void (*edit)(parm_gguf_writer *),
			const char *want, const char *what)
{
	const char *bad = tmp_path("bad.gguf");
	parm_arm *a = rewrite(src, bad, drop, edit) == 0 ? parm_arm_load(bad) : NULL;
	REFUSED(!a && has(parm_error(), bad) && has(parm_error(), want), "%s", what);
	parm_arm_free(a);
}

static void test_bad_files(const char *base, const char *small)
{
	const char *ref = tmp_path("ref2.gguf");
	expect_fail(ref, "blk.1.attn_k.pblora_b", NULL, "'blk.1.attn_k.pblora_b' is missing",
		    "missing tensor");
	expect_fail(ref, NULL, edit_k3, "k = 3", "k in metadata differs from W2");
	expect_fail(ref, NULL, edit_names, "1 entries", "objective names of the wrong length");
	expect_fail(ref, NULL, edit_target, "unknown target 'attn_x'", "unknown target name");
	expect_fail(ref, NULL, edit_version, "version 99", "future format version");
	expect_fail(ref, NULL, edit_layers, "3 layers", "layer count differs from the backbone");
	expect_fail(base, NULL, NULL, "not an ARM file", "a plain model is not an ARM");
	/* The wide adapters pointed at a narrower backbone (its true digest). */
	parm_arm *a = new_arm(small, 2, PARM_TARGETS_DEFAULT, 9);
	parm_gguf *g = a && parm_arm_save(a, tmp_path("narrow.gguf"), 0) == 0
		? parm_gguf_open(tmp_path("narrow.gguf")) : NULL;
	const char *p, *h;
	size_t pl, hl;
	if (g && !parm_gguf_get_str(g, "parm.backbone.path", &p, &pl) &&
	    !parm_gguf_get_str(g, "parm.backbone.sha256", &h, &hl)) {
		snprintf(other_path, sizeof other_path, "%.*s", (int)pl, p);
		snprintf(other_sha, sizeof other_sha, "%.*s", (int)hl, h);
		expect_fail(ref, NULL, edit_backbone, "the backbone's attn_q is 32 x 32",
			    "backbone whose shapes do not fit");
	} else {
		GOOD(0, "ARM on the narrow backbone");
	}
	parm_gguf_close(g);
	parm_arm_free(a);
}

static void test_prefs(void)
{
	const char *const names[] = { "helpful", "harmless" };
	float al[3] = { -1, -1, -1 };
	ok(parm_parse_pref("0.7,0.3", 2, names, al) == 0 && al[0] == 0.7f && al[1] == 0.3f,
	   "pref 0.7,0.3");
	ok(parm_parse_pref("harmless=0.3, helpful=0.7", 2, names, al) == 0 && al[0] == 0.7f &&
	   al[1] == 0.3f, "pref by name, any order");
	ok(parm_parse_pref("harmless=1", 2, names, al) == 0 && al[0] == 0 && al[1] == 1,
	   "pref: objectives not named get 0");
	ok(parm_parse_pref("1", 1, NULL, al) == 0 && al[0] == 1, "pref k = 1");
	ok(parm_parse_pref("0.1,0.2,0.7", 3, NULL, al) == 0, "pref k = 3, sum 1 in doubles");
	struct { const char *s, *want, *what; } bad[] = {
		{ "0.5", "1 value for 2", "too few" },
		{ "0.2,0.3,0.5", "more than 2", "too many" },
		{ "1.2,-0.2", "negative", "negative" },
		{ "0.7,0.4", "sum to 1.1", "bad sum" },
		{ "helpful=0.7,kind=0.3", "unknown objective 'kind'", "unknown name" },
		{ "helpful=0.5,helpful=0.5", "twice", "repeated name" },
		{ "helpful=0.5,0.5", "mixes", "mixed forms" },
		{ "0.5,abc", "'abc' is not a number", "junk" },
		{ "", "empty", "empty" },
		{ " ", "empty", "blank" },
		{ "0.5,,0.5", "entry 2 is empty", "an empty entry (issue 14)" },
		{ "0.5,0.5,", "entry 3 is empty", "a trailing comma" },
		{ ",1", "entry 1 is empty", "a leading comma" },
		{ "nan,0", "not a number", "nan" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		al[0] = al[1] = -1;
		int rc = parm_parse_pref(bad[i].s, 2, names, al);
		REFUSED(rc < 0 && has(parm_error(), bad[i].want) && al[0] == -1,
			"pref '%s' (%s)", bad[i].s, bad[i].what);
	}
	unsigned mask;
	ok(parm_parse_targets("q,k,v,o,gate,up,down", &mask) == 0 && mask == 127 &&
	   parm_parse_targets("attn_q,ffn_up", &mask) == 0 &&
	   mask == (1u << PARM_T_ATTN_Q | 1u << PARM_T_FFN_UP), "target lists");
	REFUSED(parm_parse_targets("q,wx", &mask) < 0 && has(parm_error(), "'wx'"), "unknown target");
}

/* W + s B blockdiag(W1, sum_j alpha_j W2[j]) A with plain loops. */
static double merged_error(const parm_arm *a, int l, enum parm_target t, const float *alpha)
{
	const parm_pblora *p = parm_arm_adapter(a, l, t);
	const parm_weight *w = parm_target_weight(a->backbone, l, t);
	float *got = parm_arm_merged_weight(a, l, t, alpha);
	int r = p->r1 + p->r2, r2 = p->r2;
	double M[16][16] = { { 0 } }, err = 0, mx = 0;
	if (!got || r > 16)
		return INFINITY;
	for (int i = 0; i < p->r1; i++)
		for (int j = 0; j < p->r1; j++)
			M[i][j] = p->W1[i * p->r1 + j];
	for (int q = 0; q < p->k; q++)
		for (int i = 0; i < r2; i++)
			for (int j = 0; j < r2; j++)
				M[p->r1 + i][p->r1 + j] += alpha[q] * p->W2[q * r2 * r2 + i * r2 + j];
	const uint16_t *W = w->data;
	for (int o = 0; o < p->out; o++)
		for (int i = 0; i < p->in; i++) {
			double d = parm_f16_to_f32(W[o * p->in + i]);
			for (int x = 0; x < r; x++)
				for (int y = 0; y < r; y++)
					d += p->scale * p->B[o * r + x] * M[x][y] * p->A[y * p->in + i];
			err = fmax(err, fabs(d - got[o * p->in + i]));
			mx = fmax(mx, fabs(d));
		}
	free(got);
	return err / mx;
}

static void test_merged(const char *base)
{
	parm_arm *a = new_arm(base, 3, (1u << PARM_N_TARGETS) - 1, 11);
	float alpha[3] = { 0.2f, 0.5f, 0.3f };
	double worst = 0;
	if (!a) {
		GOOD(0, "merged: new ARM");
		return;
	}
	for (int l = 0; l < a->backbone->cfg.n_layers; l++)
		for (int t = 0; t < PARM_N_TARGETS; t++)
			worst = fmax(worst, merged_error(a, l, t, alpha));
	ok(worst < 1e-5, "merged W + s B M A equals the plain loops, every target (rel err %.2g)", worst);
	parm_arm_free(a);
	a = new_arm(base, 2, PARM_TARGETS_DEFAULT, 12);
	REFUSED(a && !parm_arm_merged_weight(a, 0, PARM_T_FFN_UP, alpha) && has(parm_error(), "ffn_up"),
		"merged weight of a target not adapted");
	parm_arm_free(a);
}

int main(void)
{
	if (!fixtures_dir()) {
		skip("no llama.cpp vocab fixtures (make fixtures)", "ARM tests");
		return tap_done();
	}
	snprintf(dir, sizeof dir, "/tmp/parm-arm-XXXXXX");
	if (!mkdtemp(dir))
		return ok(0, "mkdtemp"), tap_done();
	char base[128], small[128];     /* kept past tmp_path's ring */
	snprintf(base, sizeof base, "%s", tmp_path("base.gguf"));
	snprintf(small, sizeof small, "%s", tmp_path("small.gguf"));
	GOOD(make_backbone(base, 64, 1) == 0 && make_backbone(small, 32, 2) == 0, "tiny backbones");
	test_new(base);
	test_round_trip(base, 2, PARM_TARGETS_DEFAULT);
	test_round_trip(base, 1, (1u << PARM_N_TARGETS) - 1);
	test_tokenizer_copy(base);
	test_relative_path(base);
	test_backbone_checks(base);
	test_bad_files(base, small);
	test_prefs();
	test_merged(base);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		ok(0, "remove %s", dir);
	return tap_done();
}
