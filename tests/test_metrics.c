/* test_metrics - means, Pareto fronts, hypervolume, MIP, grids and
 * provenance on hand-computed cases, and the hypervolume sweep against
 * inclusion-exclusion on random points. */
#include <parm/arm.h>
#include <parm/dataset.h>
#include <parm/metrics.h>
#include <parm/scorer.h>
#include "tap.h"
#include <parm/util.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

static void test_mean_se(void)
{
	double x[] = {1, 2, 3, 4}, m, se;
	parm_mean_se(&m, &se, x, 4);
	ok(near(m, 2.5) && near(se, sqrt(5.0 / 3 / 4)), "mean 2.5, se sqrt(5/12)/2 (got %g %g)", m, se);
	parm_mean_se(&m, &se, x, 1);
	ok(m == 1 && se == 0, "one value: se 0");
	parm_mean_se(&m, &se, x, 0);
	ok(m == 0 && se == 0, "no values: 0, 0");
}

static void test_front(void)
{
	double p[] = {1, 3, 2, 2, 3, 1, 1, 1, 2, 2, 0, 3};
	uint8_t f[6];
	int n = parm_pareto_front(f, p, 6, 2);
	ok(n == 4 && f[0] && f[1] && f[2] && !f[3] && f[4] && !f[5],
	   "front keeps the staircase and both copies of (2,2), drops (1,1) and (0,3)");
	double q[] = {1, 1, 1, 2, 0, 0, 0, 2, 0, 1, 1, 0};
	n = parm_pareto_front(f, q, 4, 3);
	ok(n == 3 && !f[3], "3 objectives: (1,1,0) is dominated by (1,1,1)");
	ok(parm_dominates(q, q + 9, 3) && !parm_dominates(q, q, 3), "dominance is strict");
}

static void test_hv_hand(void)
{
	double p2[] = {1, 3, 2, 2, 3, 1}, ref2[] = {0, 0};
	ok(near(parm_hypervolume(p2, 3, 2, ref2), 6), "2-D staircase: 3 + 2 + 1 = 6");
	double p2b[] = {1, 3, 2, 2, 3, 1, 1, 1, -1, 5};
	ok(near(parm_hypervolume(p2b, 5, 2, ref2), 6), "a dominated point and one below ref add nothing");
	double ref2c[] = {1, 1};
	ok(near(parm_hypervolume(p2, 3, 2, ref2c), 1), "ref at the minimum: only (2,2) has area (1)");
	double p3[] = {2, 1, 1, 1, 2, 1, 1, 1, 2}, ref3[] = {0, 0, 0};
	ok(near(parm_hypervolume(p3, 1, 3, ref3), 2), "3-D one box: 2");
	ok(near(parm_hypervolume(p3, 2, 3, ref3), 3), "3-D two boxes: 2 + 2 - 1");
	ok(near(parm_hypervolume(p3, 3, 3, ref3), 4), "3-D three boxes: 6 - 3 + 1");
	ok(near(parm_hypervolume_ref(p3, 3, 3, ref3), 4), "inclusion-exclusion agrees: 4");
	ok(parm_hypervolume(p3, 0, 3, ref3) == 0, "no points: 0");
}

static double rnd(unsigned *s) { *s = *s * 1103515245u + 12345u; return (*s >> 8) / 16777216.0; }

static void test_hv_random(void)
{
	unsigned s = 7;
	for (int k = 2; k <= 4; k++) {
		double worst = 0;
		for (int trial = 0; trial < 50; trial++) {
			double p[12 * 4], ref[4] = {0.1, 0.05, 0, 0.2};
			int n = 1 + trial % 12;
			for (int i = 0; i < n * k; i++)
				p[i] = trial % 3 ? rnd(&s) : (int)(rnd(&s) * 4) / 4.0; /* ties too */
			double a = parm_hypervolume(p, n, k, ref), b = parm_hypervolume_ref(p, n, k, ref);
			worst = fmax(worst, fabs(a - b));
		}
		ok(worst < 1e-12, "k = %d: sweep = inclusion-exclusion on 50 random sets (max diff %g)", k, worst);
	}
}

static void test_mip(void)
{
	double r[] = {0, 10, 5, 5, 10, 0}, a[] = {0, 1, 0.5, 0.5, 1, 0}, lo[2], hi[2];
	parm_bounds(lo, hi, r, 3, 2);
	ok(lo[0] == 0 && hi[0] == 10 && lo[1] == 0 && hi[1] == 10, "bounds 0..10");
	ok(near(parm_mip(a, r, 3, 2, lo, hi), 2.5 / 3), "MIP (1 + 0.5 + 1) / 3");
	double r3[] = {1, 2, 3, 3, 2, 1}, a3[] = {1, 0, 0, 0, 0.5, 0.5};
	double lo3[3], hi3[3];
	parm_bounds(lo3, hi3, r3, 2, 3);
	ok(near(parm_mip(a3, r3, 2, 3, lo3, hi3), (0 + 0.5 * 0 + 0) / 2.0),
	   "3 objectives, constant middle one counts 0: MIP 0");
	double a3b[] = {0, 0, 1, 1, 0, 0};
	ok(near(parm_mip(a3b, r3, 2, 3, lo3, hi3), 1), "3 objectives: alpha on each point's best: 1");
}

static void test_grid(void)
{
	float a[66 * 3];
	long n = parm_pref_grid(a, 2, 11);
	ok(n == 11 && a[0] == 0 && a[1] == 1 && fabsf(a[6] - 0.3f) < 1e-7 && a[20] == 1 && a[21] == 0,
	   "k = 2, 11 points: (0,1), ..., (0.3,0.7), ..., (1,0)");
	n = parm_pref_grid(a, 3, 11);
	int sums = 1;
	for (long i = 0; i < n; i++)
		sums &= fabsf(a[3 * i] + a[3 * i + 1] + a[3 * i + 2] - 1) < 1e-6;
	ok(n == 66 && sums && parm_pref_grid(NULL, 3, 3) == 6, "k = 3: 66 points summing to 1; m = 3: 6");
}

static int prov(parm_provenance *p, const char *json, const char *field)
{
	json_t *rec = json_loads(json, 0, NULL);
	int rc = rec ? parm_provenance_get(p, rec, field) : -2;
	json_decref(rec);
	return rc;
}

static void test_provenance(void)
{
	parm_provenance p;
	const char *names[] = {"harmless", "helpful"};
	double a[2];
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-logits\",\"model\":\"b.gguf\"}]}", NULL) == 0 &&
	   !strcmp(p.method, "base") && p.k == 0 && parm_provenance_align(a, &p, names, 2) < 0,
	   "no parm-mix stage: base, no alpha");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-logits\"},{\"stage\":\"parm-mix\",\"arm\":\"p.gguf\","
		"\"objectives\":[\"helpful\",\"harmless\"],\"pref\":[0.3,0.7],\"weight\":1}]}", NULL) == 0 &&
	   !strcmp(p.method, "parm") && p.k == 2 && p.alpha[0] == 0.3,
	   "one PARM stage: parm, alpha from pref");
	ok(parm_provenance_align(a, &p, names, 2) == 0 && a[0] == 0.7 && a[1] == 0.3,
	   "aligned by name to (harmless, helpful): (0.7, 0.3)");
	const char *other[] = {"x", "y"};
	ok(parm_provenance_align(a, &p, other, 2) == 0 && a[0] == 0.3, "unknown names, same count: by position");
	const char *three[] = {"x", "y", "z"};
	ok(parm_provenance_align(a, &p, three, 3) < 0 && strstr(parm_error(), "helpful,harmless"),
	   "unknown names, other count: error naming both lists");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-mix\",\"objectives\":[\"helpful\"],\"weight\":0.6},"
		"{\"stage\":\"parm-mix\",\"objectives\":[\"harmless\"],\"weight\":0.2}]}", NULL) == 0 &&
	   !strcmp(p.method, "genarm") && p.k == 2 && near(p.alpha[0], 0.75) && near(p.alpha[1], 0.25),
	   "two one-objective stages: genarm, alpha = weights normalised (0.75, 0.25)");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-mix\",\"arms\":["
		"{\"arm\":\"a.gguf\",\"objectives\":[\"helpful\"],\"pref\":[1],\"weight\":0.6},"
		"{\"arm\":\"b.gguf\",\"objectives\":[\"harmless\"],\"pref\":[1],\"weight\":0.2}]}]}", NULL) == 0 &&
	   !strcmp(p.method, "genarm") && p.k == 2 && near(p.alpha[0], 0.75) && near(p.alpha[1], 0.25) &&
	   !strcmp(p.names[1], "harmless"),
	   "one stage with two one-objective arms: the same genarm and alpha as two stages");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-mix\",\"arms\":["
		"{\"objectives\":[\"a\",\"b\"],\"pref\":[0.5,0.5]},{\"objectives\":[\"c\"]}]}]}", NULL) == -1 &&
	   strstr(parm_error(), "cannot tell"), "arms mixing a PARM ARM and a GenARM one: error");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-mix\",\"arms\":[{\"weight\":1}]}]}", NULL) == -1 &&
	   strstr(parm_error(), "objectives"), "arms entry without objectives: error");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-mix\",\"objectives\":[\"harmless\"]}]}", NULL) == 0 &&
	   parm_provenance_align(a, &p, names, 2) == 0 && a[0] == 1 && a[1] == 0,
	   "one one-objective stage, default weight: alpha e_harmless");
	ok(prov(&p, "{\"method\":\"mine\",\"chain\":[]}", "method") == 0 && !strcmp(p.method, "mine"),
	   "method field overrides");
	ok(prov(&p, "{\"chain\":[]}", "method") == -1 && strstr(parm_error(), "\"method\""),
	   "missing method field: error naming it");
	ok(prov(&p, "{\"chain\":[{\"stage\":\"parm-mix\",\"objectives\":[\"a\",\"b\"]}]}", NULL) == -1 &&
	   strstr(parm_error(), "pref"), "PARM stage without pref: error");
	ok(prov(&p, "{\"chain\":{}}", NULL) == -1, "chain not an array: error");
	ok(prov(&p, "{}", NULL) == 0 && !strcmp(p.method, "base"), "no chain: base");
}

/* ---- ARM scoring and parm-eval accuracy (needs the tokenizer fixtures) ---- */

static char dir[] = "/tmp/parm-test-metrics-XXXXXX";

static void fill_random(float *x, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		x[i] = (float)((double)(s >> 11) / (1ULL << 53) * 2 - 1) * 0.5f;
	}
}

/* log pi summed over seq[resp..n) by one plain forward of the backbone. */
static double direct_logp(const parm_model *m, const int *seq, int n, int resp)
{
	int V = m->cfg.n_vocab, *slot = calloc(n, sizeof *slot);
	float *logits = malloc((size_t)n * V * sizeof *logits);
	parm_kv *kv = parm_kv_new(m, 1, 0);
	uint8_t *want = malloc(n);
	double sum = 0;
	memset(want, 1, n);
	parm_forward(m, kv, n, seq, slot, want, logits);
	for (int t = resp; t < n; t++) {
		const float *l = logits + (size_t)(t - 1) * V;
		double z = 0;
		for (int v = 0; v < V; v++)
			z += exp((double)l[v]);
		sum += l[seq[t]] - log(z);
	}
	parm_kv_free(kv), free(slot), free(logits), free(want);
	return sum;
}

/* The same sum by one plain forward of the merged model W + s B M(alpha) A. */
static double merged_logp(const parm_arm *arm, const float *alpha, const int *seq, int n, int resp)
{
	parm_model *view = parm_model_view(arm->backbone);
	for (int l = 0; l < arm->backbone->cfg.n_layers; l++)
		for (int i = 0; i < arm->n_targets; i++)
			parm_model_set_weight(view, l, arm->targets[i],
					      parm_arm_merged_weight(arm, l, arm->targets[i], alpha));
	double sum = direct_logp(view, seq, n, resp);
	parm_model_free(view);
	return sum;
}

static void test_scorer_vs_forward(const char *model, parm_arm *arm)
{
	int seq[150];
	for (int i = 0; i < 150; i++)
		seq[i] = 1 + (i * 7919) % 3000;
	float a[2] = {0.5f, 0.5f};
	parm_arm_scorer *s = parm_arm_scorer_new(arm, a);
	double got = 0, want = direct_logp(arm->backbone, seq, 150, 20);
	int rc = s ? parm_arm_scorer_logp(s, seq, 150, 20, &got) : -1;
	ok(rc == 0 && fabs(got - want) < 1e-4 * fabs(want),
	   "fresh ARM (B = 0): scorer = plain forward over 150 tokens, 3 chunks (%g vs %g)", got, want);
	fill_random(arm->params, arm->n_params, 5);
	float e0[2] = {1, 0}, e1[2] = {0, 1};
	double r0, r1;
	parm_arm_scorer_set_pref(s, e0);
	parm_arm_scorer_logp(s, seq, 150, 20, &r0);
	parm_arm_scorer_set_pref(s, e1);
	parm_arm_scorer_logp(s, seq, 150, 20, &r1);
	ok(fabs(r0 - want) > 1e-3 && fabs(r0 - r1) > 1e-3, "trained adapters: alpha changes the score");
	double m0 = merged_logp(arm, e0, seq, 150, 20), m1 = merged_logp(arm, e1, seq, 150, 20);
	/* the adapters move the sum by ~0.4, so the bound must be far tighter */
	ok(fabs(r0 - m0) < 1e-3 && fabs(r1 - m1) < 1e-3,
	   "trained adapters: unmerged scorer = forward of the merged weights at both alphas (off by %.2g, %.2g)",
	   r0 - m0, r1 - m1);
	ok(parm_arm_scorer_logp(s, seq, 150, 0, &r0) < 0 && parm_arm_scorer_logp(s, seq, 150, 150, &r0) == 0 &&
	   r0 == 0, "resp_start 0 refused; an empty response scores 0");
	parm_arm_scorer_free(s);
}

static const char *pairs_text =
	"{\"prompt\": \"How do I boil an egg?\", \"response_0\": \"Put it in water.\", \"response_1\": \"No.\", \"better_response_id\": 0, \"safer_response_id\": 1}\n"
	"{\"prompt\": \"Fix a tyre\", \"response_0\": \"Use a patch kit\", \"response_1\": \"Ride on it\", \"better_response_id\": 1, \"safer_response_id\": 0}\n"
	"{\"prompt\": \"Tell a joke\", \"response_0\": \"Why did the chicken\", \"response_1\": \"I will not\", \"better_response_id\": 0, \"safer_response_id\": null}\n"
	"{\"prompt\": \"Cook rice\", \"response_0\": \"Rinse and simmer\", \"response_1\": \"Burn it\", \"better_response_id\": 0, \"safer_response_id\": 0}\n"
	"{\"prompt\": \"Sharpen a knife\", \"response_0\": \"On a stone\", \"response_1\": \"With your teeth\", \"better_response_id\": 1, \"safer_response_id\": 0}\n";

/* The shares counted here from the scorer's sums, for alpha. */
static void direct_accuracy(double *acc, parm_arm *arm, const char *pairs_path, const float *alpha)
{
	parm_objectives o = {0};
	parm_pairs p;
	parm_pair_opts po = { .overlong = PARM_OVERLONG_DROP };
	parm_objectives_default(&o);
	parm_pairs_load(&p, &o, &pairs_path, 1, &(parm_badrecs){.strict = 1});
	parm_pairs_tokenize(&p, arm->backbone->tok, &po);
	parm_arm_scorer *s = parm_arm_scorer_new(arm, alpha);
	int right[2] = {0}, n[2] = {0};
	for (long i = 0; i < p.n; i++) {
		double S[2];
		for (int j = 0; j < 2; j++)
			parm_arm_scorer_logp(s, p.pair[i].seq[j], p.pair[i].n_seq[j], p.pair[i].resp_start[j], &S[j]);
		for (int k = 0; k < 2; k++)
			if (p.pair[i].label[k] >= 0)
				n[k]++, right[k] += S[p.pair[i].label[k]] > S[1 - p.pair[i].label[k]];
	}
	for (int k = 0; k < 2; k++)
		acc[k] = (double)right[k] / n[k];
	parm_arm_scorer_free(s);
	parm_pairs_free(&p);
	parm_objectives_free(&o);
}

static void test_accuracy_tool(parm_arm *arm)
{
	char arm_path[256], pairs[256], cmd[1024], line[4096];
	snprintf(arm_path, sizeof arm_path, "%s/a.gguf", dir);
	snprintf(pairs, sizeof pairs, "%s/pairs.jsonl", dir);
	FILE *f = fopen(pairs, "w");
	fputs(pairs_text, f);
	fclose(f);
	if (access("tools/parm-eval", X_OK) != 0 || parm_arm_save(arm, arm_path, 0) < 0) {
		skip("tools/parm-eval not built (make)", "parm-eval accuracy against direct counting");
		return;
	}
	snprintf(cmd, sizeof cmd, "tools/parm-eval accuracy --json --pref 0.3,0.7 %s %s", arm_path, pairs);
	FILE *p = popen(cmd, "r");
	size_t n = fread(line, 1, sizeof line - 1, p);
	line[n] = 0;
	int rc = pclose(p);
	json_t *j = json_loads(line, 0, NULL), *rows = json_object_get(j, "rows");
	ok(rc == 0 && json_array_size(rows) == 3, "accuracy: rows for e_1, e_2, (0.3,0.7)");
	const float alphas[3][2] = {{1, 0}, {0, 1}, {0.3f, 0.7f}};
	for (int r = 0; r < 3; r++) {
		double want[2];
		json_t *acc = json_object_get(json_array_get(rows, r), "accuracy");
		direct_accuracy(want, arm, pairs, alphas[r]);
		ok(fabs(json_number_value(json_array_get(acc, 0)) - want[0]) < 1e-9 &&
		   fabs(json_number_value(json_array_get(acc, 1)) - want[1]) < 1e-9,
		   "alpha (%g,%g): shares %g %g as counted directly", alphas[r][0], alphas[r][1], want[0], want[1]);
	}
	json_t *lab = json_object_get(j, "labelled");
	ok(json_integer_value(json_array_get(lab, 0)) == 5 && json_integer_value(json_array_get(lab, 1)) == 4,
	   "labelled: 5 helpful, 4 harmless (a null label skipped)");
	json_decref(j);
}

static void test_arm_scoring(void)
{
	char vocab_path[4096], model[256];
	if (!fixtures_dir()) {
		skip("no tokenizer fixtures (make test-fixtures)", "ARM scoring and accuracy");
		return;
	}
	snprintf(vocab_path, sizeof vocab_path, "%s/ggml-vocab-llama-spm.gguf", fixtures_dir());
	if (!mkdtemp(dir))
		return (void)ok(0, "mkdtemp");
	snprintf(model, sizeof model, "%s/m.gguf", dir);
	parm_gguf *vocab = parm_gguf_open(vocab_path);
	parm_config c = {.dim = 32, .n_layers = 1, .n_heads = 2, .n_kv_heads = 2, .ff = 64, .n_ctx = 160};
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = 2;
	o.objectives = (const char *const[]){"helpful", "harmless"};
	parm_arm *arm = vocab && parm_model_init(model, vocab, &c, PARM_GGML_F32, 3) == 0 ? parm_arm_new(model, &o) : NULL;
	parm_gguf_close(vocab);
	if (!ok(arm != NULL, "a fresh ARM on a tiny backbone"))
		return;
	test_scorer_vs_forward(model, arm);
	test_accuracy_tool(arm);
	parm_arm_free(arm);
	char rm[512];
	snprintf(rm, sizeof rm, "rm -rf %s", dir);
	if (system(rm) != 0)
		ok(0, "removing %s", dir);
}

int main(void)
{
	test_mean_se();
	test_front();
	test_hv_hand();
	test_hv_random();
	test_mip();
	test_grid();
	test_provenance();
	test_arm_scoring();
	return tap_done();
}
