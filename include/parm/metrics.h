/* metrics.h - what parm-eval computes from scores: means with standard
 * errors, Pareto fronts, hypervolume, MIP, preference grids, and the
 * method and preference vector a generated record came from (read from
 * parm-sample's provenance chain).
 *
 * Points are rows of pts[n][k], one coordinate per objective, every
 * objective maximised.
 */
#ifndef PARM_METRICS_H
#define PARM_METRICS_H

#include <stdint.h>
#include <jansson.h>

/* Mean of x[n] and its standard error s / sqrt(n), s the sample standard
 * deviation (n - 1 in the denominator); n < 2 gives se 0, n 0 mean 0. */
void parm_mean_se(double *mean, double *se, const double *x, long n);

/* 1 if a is at least b in every coordinate and above it in one. */
int parm_dominates(const double *a, const double *b, int k);
/* front[i] = 1 if no point dominates pts[i] (equal points both stay);
 * returns the number on the front. */
int parm_pareto_front(uint8_t *front, const double *pts, int n, int k);

/* The volume of the region dominated by pts[n][k] and above ref[k]:
 * the union of the boxes [ref, p].  A coordinate at or below ref adds
 * nothing.  Exact: a sweep for k = 2, slicing along the last objective
 * for k >= 3 (fine for the tens of points of an alpha grid). */
double parm_hypervolume(const double *pts, int n, int k, const double *ref);
/* The same by inclusion-exclusion over all 2^n - 1 subsets: the plain
 * reference the tests check the sweep against (n <= 20). */
double parm_hypervolume_ref(const double *pts, int n, int k, const double *ref);

/* lo[k], hi[k] = per-objective minimum and maximum of pts[n][k]. */
void parm_bounds(double *lo, double *hi, const double *pts, int n, int k);
/* Mean inner product: mean over the n points of <alpha_i, r^_i>, with
 * r^ = (r - lo) / (hi - lo) per objective (0 where hi == lo). */
double parm_mip(const double *alpha, const double *pts, int n, int k,
		const double *lo, const double *hi);

/* The simplex grid of step 1/(m-1): every alpha[k] with entries in
 * {0, 1/(m-1), ..., 1} summing to 1, the first objective slowest and
 * ascending, so k = 2, m = 11 gives (0,1), (0.1,0.9), ..., (1,0).
 * Returns the count, C(m + k - 2, k - 1); alpha NULL counts only. */
long parm_pref_grid(float *alpha, int k, int m);

/* ---- Provenance: which method made a record, at which alpha ---- */

#define PARM_PROV_MAX 16

typedef struct {
	char method[64];        /* "base", "parm", "genarm", or the method field */
	int k;                  /* objectives the guidance named; 0: none */
	char names[PARM_PROV_MAX][64];
	double alpha[PARM_PROV_MAX];
	/* What else made the record ("" where the chain does not say): the
	 * base (parm-logits' model or server), the ARM file guiding each
	 * objective, and the guidance strength (a PARM's weight, GenARM's
	 * summed weights; 0 for the base).  Records of one method that differ
	 * in these are not one method. */
	char base[256];
	char arm[PARM_PROV_MAX][256];
	double strength;
} parm_provenance;

/* Read rec's "chain" (parm-sample --jsonl).  Each parm-mix stage holds its
 * ARMs (guides): one ARM as the stage's own "objectives", "pref" and
 * "weight", several (one-stage GenARM) as an "arms" array of objects with
 * those fields; both forms read alike.  No ARM is "base" (k = 0); one
 * ARM of k >= 2 objectives is "parm" with alpha its "pref"; one or more
 * ARMs of one objective each, in one stage or chained, are "genarm",
 * objective i named by ARM i with alpha_i = weight_i / sum of weights
 * ("weight" defaults to 1).  method_field (NULL: none) names a
 * string field of rec that overrides the method (alpha still comes from
 * the chain).  A missing chain counts as no stages.  -1 + parm_error (no
 * origin: the caller adds it) on a chain it cannot read. */
int parm_provenance_get(parm_provenance *p, const json_t *rec, const char *method_field);

/* Reorder p's alpha to the objectives names[k]: by name when every
 * objective p names is among names (others get 0), else by position when
 * p names exactly k; alpha_out[k].  p->k == 0 gives -1 without an error
 * (no alpha); a mismatch -1 + parm_error naming both lists. */
int parm_provenance_align(double *alpha_out, const parm_provenance *p,
			  const char *const *names, int k);

#endif
