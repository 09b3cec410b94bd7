/* test_metrics - means, Pareto fronts, hypervolume, MIP, grids and
 * provenance on hand-computed cases, and the hypervolume sweep against
 * inclusion-exclusion on random points. */
#include "metrics.h"
#include "tap.h"
#include "util.h"

#include <math.h>
#include <string.h>

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

int main(void)
{
	test_mean_se();
	test_front();
	test_hv_hand();
	test_hv_random();
	test_mip();
	test_grid();
	test_provenance();
	return tap_done();
}
