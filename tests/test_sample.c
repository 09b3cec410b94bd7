/* test_sample.c - the sampler: greedy, filters, the distribution of draws,
 * reproducibility, and the fast path against the sorting reference. */
#include <parm/sample.h>
#include <parm/util.h>
#include "kernels.h"
#include "tap.h"

#include <math.h>
#include <string.h>

#define N_DRAWS 200000

static void *scratch;

static int sample(float temp, int top_k, float top_p, float min_p, parm_rng *rng,
		  const float *logits, const int32_t *ids, int n)
{
	parm_sampler s = { temp, top_k, top_p, min_p };
	return parm_sample(&s, rng, logits, ids, n, scratch);
}

static void test_greedy(void)
{
	float x[] = { 1, 3, -2, 3, NAN, 2 };
	int32_t ids[] = { 50, 40, 30, 20, 10, 0 };
	float none[] = { -INFINITY, NAN, -INFINITY };
	parm_rng rng;
	parm_rng_seed(&rng, 1);
	ok(sample(0, 0, 1, 0, &rng, x, NULL, 6) == 1, "greedy: argmax, lowest index of a tie");
	ok(sample(0, 0, 1, 0, &rng, x, ids, 6) == 20, "greedy with ids: the tie goes to the lowest id");
	ok(sample(0, 0, 1, 0, &rng, none, NULL, 3) == -1, "greedy with nothing choosable: -1");
	ok(sample(1, 0, 1, 0, &rng, none, NULL, 3) == -1, "sampling with nothing choosable: -1");
	ok(sample(1, 40, 0.9f, 0.1f, &rng, none, NULL, 3) == -1, "filtered, nothing choosable: -1");
}

static void test_top_k_1(void)
{
	float x[1000];
	parm_rng rng, data;
	int same = 1;
	parm_rng_seed(&rng, 2);
	parm_rng_seed(&data, 3);
	for (int t = 0; t < 200; t++) {
		for (int i = 0; i < 1000; i++)
			x[i] = (float)(parm_rng_uniform(&data) * 4);
		same &= sample(1.5f, 1, 1, 0, &rng, x, NULL, 1000) ==
			sample(0, 0, 1, 0, &rng, x, NULL, 1000);
	}
	ok(same, "top-k 1 at temperature 1.5 always equals greedy (200 vectors)");
}

/* Pearson chi-square of counts[n] against probabilities p[n] */
static double chi_square(const int *counts, const double *p, int n, int draws)
{
	double chi = 0;
	for (int i = 0; i < n; i++) {
		double e = p[i] * draws;
		if (e > 0)
			chi += (counts[i] - e) * (counts[i] - e) / e;
		else if (counts[i])
			return INFINITY;
	}
	return chi;
}

/* draw N_DRAWS times and compare with softmax(x / temp) restricted to keep[] */
static double histogram_chi(float temp, int top_k, float top_p, float min_p,
			    const float *x, const int *keep, int n, uint64_t seed)
{
	int counts[16] = { 0 };
	double p[16], z = 0;
	parm_rng rng;
	parm_rng_seed(&rng, seed);
	for (int d = 0; d < N_DRAWS; d++) {
		int t = sample(temp, top_k, top_p, min_p, &rng, x, NULL, n);
		if (t < 0 || t >= n)
			return INFINITY;
		counts[t]++;
	}
	for (int i = 0; i < n; i++)
		z += p[i] = keep[i] && isfinite(x[i]) ? exp(x[i] / temp) : 0;
	for (int i = 0; i < n; i++)
		p[i] /= z;
	return chi_square(counts, p, n, N_DRAWS);
}

static void test_histograms(void)
{
	/* probabilities at temperature 1: .5 .3 .15 .05 (and one -inf) */
	float x[] = { logf(0.5f), logf(0.3f), -INFINITY, logf(0.15f), logf(0.05f) };
	int all[] = { 1, 1, 1, 1, 1 };
	int top2[] = { 1, 1, 0, 0, 0 };
	int top3[] = { 1, 1, 0, 1, 0 };
	double chi;
	/* 4 free categories (3 degrees of freedom): P(chi > 16.3) = 0.001 */
	chi = histogram_chi(1, 0, 1, 0, x, all, 5, 11);
	ok(chi < 16.3, "temperature 1: draws follow the softmax (chi2 %.2f, 3 dof)", chi);
	chi = histogram_chi(0.5f, 0, 1, 0, x, all, 5, 12);
	ok(chi < 16.3, "temperature 0.5: draws follow softmax(x/0.5) (chi2 %.2f)", chi);
	chi = histogram_chi(2, 0, 1, 0, x, all, 5, 13);
	ok(chi < 16.3, "temperature 2: draws follow softmax(x/2) (chi2 %.2f)", chi);
	chi = histogram_chi(1, 2, 1, 0, x, top2, 5, 14);
	ok(chi < 10.8, "top-k 2 keeps the two largest (chi2 %.2f, 1 dof)", chi);
	chi = histogram_chi(1, 0, 0.7f, 0, x, top2, 5, 15);
	ok(chi < 10.8, "top-p 0.7 keeps .5 and .3 (chi2 %.2f)", chi);
	chi = histogram_chi(1, 0, 0.81f, 0, x, top3, 5, 16);
	ok(chi < 13.8, "top-p 0.81 keeps .5 .3 .15 (chi2 %.2f)", chi);
	chi = histogram_chi(1, 0, 1, 0.25f, x, top3, 5, 17);
	ok(chi < 13.8, "min-p 0.25 drops .05 < .125 (chi2 %.2f)", chi);
	chi = histogram_chi(1, 0, 1, 0.5f, x, top2, 5, 18);
	ok(chi < 10.8, "min-p 0.5 keeps .5 and .3 >= .25 (chi2 %.2f)", chi);
	chi = histogram_chi(0.5f, 0, 0.7f, 0, x, top2, 5, 19);
	ok(chi < 10.8, "top-p is judged before temperature (0.5 sharpens only the kept; chi2 %.2f)",
	   chi);
}

static void test_min_p_alone(void)
{
	float x[] = { logf(0.5f), logf(0.3f), -INFINITY, logf(0.15f), logf(0.05f) };
	parm_rng rng;
	int bad = 0;
	parm_rng_seed(&rng, 5);
	for (int d = 0; d < 20000; d++) {
		int t = sample(1, 0, 1, 0.7f, &rng, x, NULL, 5);
		bad += t != 0;
	}
	ok(bad == 0, "min-p 0.7 (0.3 < 0.35) always picks the top token");
}

static void test_posinf(void)
{
	float x[] = { 5, INFINITY, 3, INFINITY };
	parm_rng rng;
	int c[4] = { 0 };
	parm_rng_seed(&rng, 6);
	for (int d = 0; d < 10000; d++) {
		int t = sample(1, 0, 0.9f, 0.05f, &rng, x, NULL, 4);
		if (t >= 0)
			c[t]++;
	}
	ok(c[0] == 0 && c[2] == 0 && c[1] > 4500 && c[3] > 4500,
	   "+inf logits win, equally (%d %d)", c[1], c[3]);
}

static void test_reproducible(void)
{
	float x[100];
	parm_rng a, b, data;
	int same = 1, differ = 0;
	parm_rng_seed(&data, 7);
	for (int i = 0; i < 100; i++)
		x[i] = (float)parm_rng_uniform(&data);
	parm_rng_seed(&a, 42);
	parm_rng_seed(&b, 42);
	for (int d = 0; d < 1000; d++)
		same &= sample(0.8f, 20, 0.9f, 0.01f, &a, x, NULL, 100) ==
			sample(0.8f, 20, 0.9f, 0.01f, &b, x, NULL, 100);
	ok(same, "same seed, same 1000 draws");
	parm_rng_seed(&b, 43);
	for (int d = 0; d < 100; d++)
		differ += sample(1, 0, 1, 0, &a, x, NULL, 100) != sample(1, 0, 1, 0, &b, x, NULL, 100);
	ok(differ > 50, "another seed, other draws (%d of 100 differ)", differ);
	parm_rng_seed(&a, 0);
	ok(parm_rng_next(&a) != 0 && parm_rng_uniform(&a) < 1, "seed 0 gives a working generator");
}

/* random logits: quantised ones make ties, some -inf */
static void fill_logits(float *x, int n, parm_rng *data, int ties)
{
	for (int i = 0; i < n; i++) {
		double u = parm_rng_uniform(data) * 12 - 6;
		x[i] = ties ? (float)floor(u) : (float)u;
		if (parm_rng_uniform(data) < 0.05)
			x[i] = -INFINITY;
	}
}

static void shuffle_ids(int32_t *ids, int n, parm_rng *data)
{
	for (int i = 0; i < n; i++)
		ids[i] = i * 3 + 1;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(parm_rng_next(data) % (i + 1));
		int32_t t = ids[i];
		ids[i] = ids[j], ids[j] = t;
	}
}

static void test_against_reference(int n, int ties, int sparse)
{
	static const parm_sampler settings[] = {
		{ 1, 0, 1, 0 }, { 0.7f, 40, 1, 0 }, { 1, 0, 0.9f, 0 }, { 1, 0, 1, 0.05f },
		{ 0.8f, 40, 0.95f, 0.05f }, { 1.3f, 5, 0.5f, 0 }, { 1, 0, 0, 0 },
		{ 1, 1000, 0.3f, 0.2f }, { 0.1f, 3, 1, 0.9f }, { 2, 0, 0.99f, 0 },
	};
	float *x = parm_xmalloc(n * sizeof *x);
	int32_t *ids = sparse ? parm_xmalloc(n * sizeof *ids) : NULL;
	parm_rng data, a, b;
	int same = 0, trials = 0;
	parm_rng_seed(&data, 100 + n + ties);
	int vectors = n > 10000 ? 2 : n > 1000 ? 10 : 30;  /* the reference sorts: slow */
	for (int t = 0; t < vectors; t++) {
		fill_logits(x, n, &data, ties);
		if (ids)
			shuffle_ids(ids, n, &data);
		for (size_t k = 0; k < sizeof settings / sizeof *settings; k++) {
			parm_rng_seed(&a, t * 100 + k);
			parm_rng_seed(&b, t * 100 + k);
			for (int d = 0; d < 5; d++, trials++)
				same += parm_sample(&settings[k], &a, x, ids, n, scratch) ==
					parm_sample_ref(&settings[k], &b, x, ids, n);
		}
	}
	ok(same == trials, "n=%d%s%s: fast path equals the sorting reference in %d of %d draws",
	   n, ties ? " with ties" : "", sparse ? " with ids" : "", same, trials);
	free(x);
	free(ids);
}

static void test_log_softmax(void)
{
	float x[] = { 1000, 999, -INFINITY, 998 };
	float y[] = { -INFINITY, -INFINITY };
	double sum = 0;
	parm_log_softmax_forward(x, x, 1, 4);
	for (int i = 0; i < 4; i++)
		sum += exp(x[i]);
	ok(fabs(sum - 1) < 1e-6 && x[2] == -INFINITY && fabsf(x[0] - x[1] - 1) < 1e-4,
	   "log_softmax of large logits: stable, sums to 1, -inf stays");
	parm_log_softmax_forward(y, y, 1, 2);
	ok(y[0] == -INFINITY && y[1] == -INFINITY, "log_softmax of all -inf leaves them");
}

static void bench(void)
{
	int n = 32000;
	float *x = parm_xmalloc(n * sizeof *x);
	parm_rng data, rng;
	parm_sampler s = { 0.8f, 40, 0.95f, 0.05f }, p = { 1, 0, 0.9f, 0 };
	double t0;
	parm_rng_seed(&data, 9);
	parm_rng_seed(&rng, 9);
	fill_logits(x, n, &data, 0);
	t0 = parm_now();
	for (int i = 0; i < 200; i++)
		parm_sample(&s, &rng, x, NULL, n, scratch);
	printf("# top-k 40, top-p, min-p over 32000: %.1f us per draw\n",
	       (parm_now() - t0) / 200 * 1e6);
	t0 = parm_now();
	for (int i = 0; i < 200; i++)
		parm_sample(&p, &rng, x, NULL, n, scratch);
	printf("# top-p 0.9 alone over 32000: %.1f us per draw\n", (parm_now() - t0) / 200 * 1e6);
	free(x);
}

int main(void)
{
	scratch = parm_xmalloc(parm_sample_scratch(40000));
	test_greedy();
	test_top_k_1();
	test_histograms();
	test_min_p_alone();
	test_posinf();
	test_reproducible();
	test_against_reference(7, 1, 0);
	test_against_reference(300, 1, 1);
	test_against_reference(3000, 0, 0);
	test_against_reference(3000, 1, 1);
	test_against_reference(32000, 0, 0);
	test_against_reference(32000, 1, 1);
	test_log_softmax();
	bench();
	free(scratch);
	return tap_done();
}
