/* metrics.c - means, Pareto fronts, hypervolume, MIP, preference grids
 * and provenance (see metrics.h). */
#include <parm/metrics.h>
#include <parm/util.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

void parm_mean_se(double *mean, double *se, const double *x, long n)
{
	double sum = 0, ss = 0;
	for (long i = 0; i < n; i++)
		sum += x[i];
	*mean = n ? sum / n : 0;
	for (long i = 0; i < n; i++)
		ss += (x[i] - *mean) * (x[i] - *mean);
	*se = n >= 2 ? sqrt(ss / (n - 1) / n) : 0;
}

int parm_dominates(const double *a, const double *b, int k)
{
	int better = 0;
	for (int j = 0; j < k; j++) {
		if (a[j] < b[j])
			return 0;
		better |= a[j] > b[j];
	}
	return better;
}

int parm_pareto_front(uint8_t *front, const double *pts, int n, int k)
{
	int count = 0;
	for (int i = 0; i < n; i++) {
		front[i] = 1;
		for (int j = 0; j < n && front[i]; j++)
			if (parm_dominates(pts + (size_t)j * k, pts + (size_t)i * k, k))
				front[i] = 0;
		count += front[i];
	}
	return count;
}

/* Sort the n rows of pts (stride k) by coordinate c, descending.
 * Insertion sort: alpha grids hold tens of points. */
static void sort_rows_desc(double *pts, int n, int k, int c)
{
	double row[64];
	for (int i = 1; i < n; i++) {
		memcpy(row, pts + (size_t)i * k, k * sizeof *row);
		int j = i;
		for (; j > 0 && pts[(size_t)(j - 1) * k + c] < row[c]; j--)
			memcpy(pts + (size_t)j * k, pts + (size_t)(j - 1) * k, k * sizeof *row);
		memcpy(pts + (size_t)j * k, row, k * sizeof *row);
	}
}

/* The recursion on the first d coordinates of rows of stride k, all
 * strictly above ref.  pts is reordered. */
static double hv_rec(double *pts, int n, int d, int k, const double *ref)
{
	if (n == 0)
		return 0;
	if (d == 1) {
		double best = ref[0];
		for (int i = 0; i < n; i++)
			best = fmax(best, pts[(size_t)i * k]);
		return best - ref[0];
	}
	sort_rows_desc(pts, n, k, d - 1);
	if (d == 2) {   /* a sweep down the second coordinate */
		/* sorted by coordinate 1 descending: the strip of point i is
		 * [ref0, xbest_i] x [y_{i+1}, y_i], xbest_i the best x so far */
		double vol = 0, xbest = ref[0];
		for (int i = 0; i < n; i++) {
			const double *p = pts + (size_t)i * k;
			double ynext = i + 1 < n ? pts[(size_t)(i + 1) * k + 1] : ref[1];
			xbest = fmax(xbest, p[0]);
			vol += (xbest - ref[0]) * (p[1] - ynext);
		}
		return vol;
	}
	/* slab i lies between the i-th and (i+1)-th last coordinates; the
	 * points above it are the first i + 1 */
	double vol = 0;
	double *sub = parm_xmalloc((size_t)n * k * sizeof *sub);
	for (int i = 0; i < n; i++) {
		double top = pts[(size_t)i * k + d - 1];
		double next = i + 1 < n ? pts[(size_t)(i + 1) * k + d - 1] : ref[d - 1];
		if (top > next) {
			memcpy(sub, pts, (size_t)(i + 1) * k * sizeof *sub);
			vol += (top - next) * hv_rec(sub, i + 1, d - 1, k, ref);
		}
	}
	free(sub);
	return vol;
}

/* Copy the points strictly above ref in every coordinate to a new array. */
static double *points_above(const double *pts, int n, int k, const double *ref, int *m)
{
	double *out = parm_xmalloc(((size_t)n * k + 1) * sizeof *out);
	*m = 0;
	for (int i = 0; i < n; i++) {
		const double *p = pts + (size_t)i * k;
		int above = 1;
		for (int j = 0; j < k; j++)
			above &= p[j] > ref[j];
		if (above)
			memcpy(out + (size_t)(*m)++ * k, p, k * sizeof *p);
	}
	return out;
}

double parm_hypervolume(const double *pts, int n, int k, const double *ref)
{
	int m;
	if (k < 1 || k > 64)
		return 0;
	double *work = points_above(pts, n, k, ref, &m);
	double vol = hv_rec(work, m, k, k, ref);
	free(work);
	return vol;
}

double parm_hypervolume_ref(const double *pts, int n, int k, const double *ref)
{
	double vol = 0, lo[64];
	if (n > 20 || k > 64)
		return NAN;
	for (unsigned long s = 1; s < (1ul << n); s++) {
		int first = 1, bits = 0;
		for (int i = 0; i < n; i++) {
			if (!(s >> i & 1))
				continue;
			bits++;
			for (int j = 0; j < k; j++)
				lo[j] = first ? pts[(size_t)i * k + j] : fmin(lo[j], pts[(size_t)i * k + j]);
			first = 0;
		}
		double box = 1;
		for (int j = 0; j < k; j++)
			box *= fmax(0, lo[j] - ref[j]);
		vol += bits & 1 ? box : -box;
	}
	return vol;
}

void parm_bounds(double *lo, double *hi, const double *pts, int n, int k)
{
	for (int j = 0; j < k; j++) {
		lo[j] = n ? pts[j] : 0;
		hi[j] = lo[j];
		for (int i = 1; i < n; i++) {
			lo[j] = fmin(lo[j], pts[(size_t)i * k + j]);
			hi[j] = fmax(hi[j], pts[(size_t)i * k + j]);
		}
	}
}

double parm_mip(const double *alpha, const double *pts, int n, int k,
		const double *lo, const double *hi)
{
	double sum = 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < k; j++) {
			double r = pts[(size_t)i * k + j];
			double span = hi[j] - lo[j];
			sum += alpha[(size_t)i * k + j] * (span > 0 ? (r - lo[j]) / span : 0);
		}
	return n ? sum / n : 0;
}

/* Fill alpha rows for objectives j.. with `left` steps still to give. */
static void grid_rec(float *alpha, long *count, float *cur, int j, int k, int left, int steps)
{
	if (j == k - 1) {
		cur[j] = (float)left / steps;
		if (alpha)
			memcpy(alpha + *count * k, cur, k * sizeof *cur);
		(*count)++;
		return;
	}
	for (int s = 0; s <= left; s++) {
		cur[j] = (float)s / steps;
		grid_rec(alpha, count, cur, j + 1, k, left - s, steps);
	}
}

long parm_pref_grid(float *alpha, int k, int m)
{
	float cur[PARM_PROV_MAX];
	long count = 0;
	if (k < 1 || k > PARM_PROV_MAX || m < 2)
		return 0;
	grid_rec(alpha, &count, cur, 0, k, m - 1, m - 1);
	return count;
}

/* ---- provenance ---- */

static int is_mix_stage(const json_t *stage)
{
	const char *name = json_string_value(json_object_get(stage, "stage"));
	return name && !strcmp(name, "parm-mix");
}

static int stage_objectives(const json_t *stage, int i)
{
	json_t *obj = json_object_get(stage, "objectives");
	if (!json_is_array(obj) || json_array_size(obj) < 1)
		return parm_fail("chain stage %d (parm-mix) has no \"objectives\" array", i);
	for (size_t j = 0; j < json_array_size(obj); j++)
		if (!json_is_string(json_array_get(obj, j)))
			return parm_fail("chain stage %d: objective %zu is not a string", i, j);
	return (int)json_array_size(obj);
}

static int set_name(parm_provenance *p, int j, const char *name)
{
	if (j >= PARM_PROV_MAX)
		return parm_fail("the chain names more than %d objectives", PARM_PROV_MAX);
	snprintf(p->names[j], sizeof p->names[j], "%s", name);
	return 0;
}

/* One PARM stage: alpha is its "pref". */
static int read_parm_stage(parm_provenance *p, const json_t *stage, int i, int k)
{
	json_t *obj = json_object_get(stage, "objectives");
	json_t *pref = json_object_get(stage, "pref");
	if (!json_is_array(pref) || (int)json_array_size(pref) != k)
		return parm_fail("chain stage %d (parm-mix) has no \"pref\" array of %d numbers", i, k);
	for (int j = 0; j < k; j++) {
		json_t *a = json_array_get(pref, j);
		if (!json_is_number(a))
			return parm_fail("chain stage %d: pref entry %d is not a number", i, j);
		if (set_name(p, j, json_string_value(json_array_get(obj, j))) < 0)
			return -1;
		p->alpha[j] = json_number_value(a);
	}
	p->k = k;
	snprintf(p->method, sizeof p->method, "parm");
	return 0;
}

/* Single-objective guides (stages or "arms" entries): alpha from their
 * weights. */
static int read_genarm_stages(parm_provenance *p, json_t *const *stages, int n)
{
	double total = 0;
	for (int i = 0; i < n; i++) {
		json_t *w = json_object_get(stages[i], "weight");
		const char *name = json_string_value(json_array_get(json_object_get(stages[i], "objectives"), 0));
		if (w && !json_is_number(w))
			return parm_fail("a parm-mix ARM's \"weight\" is not a number");
		p->alpha[i] = w ? json_number_value(w) : 1;
		if (!(p->alpha[i] >= 0))
			return parm_fail("a parm-mix ARM has a negative weight");
		total += p->alpha[i];
		if (set_name(p, i, name) < 0)
			return -1;
		for (int j = 0; j < i; j++)
			if (!strcmp(p->names[j], p->names[i]))
				return parm_fail("two parm-mix ARMs guide the same objective '%s'", name);
	}
	if (!(total > 0))
		return parm_fail("the parm-mix ARMs' weights sum to 0");
	for (int i = 0; i < n; i++)
		p->alpha[i] /= total;
	p->k = n;
	snprintf(p->method, sizeof p->method, "genarm");
	return 0;
}

/* Add one guide (a chained stage, or one entry of a stage's "arms") to
 * mix[]; *multi counts the guides of several objectives. */
static int add_guide(json_t **mix, int *n, int *multi, json_t *guide, int i)
{
	int k = stage_objectives(guide, i);
	if (k < 0)
		return -1;
	if (*n == PARM_PROV_MAX)
		return parm_fail("the chain has more than %d parm-mix ARMs", PARM_PROV_MAX);
	*multi += k > 1;
	mix[(*n)++] = guide;
	return 0;
}

/* parm-mix writes one ARM's fields into the stage itself, several ARMs as
 * an "arms" array of the same fields: both are a list of guides. */
static int add_mix_stage(json_t **mix, int *n, int *multi, json_t *stage, int i)
{
	json_t *arms = json_object_get(stage, "arms");
	if (!arms)
		return add_guide(mix, n, multi, stage, i);
	if (!json_is_array(arms) || json_array_size(arms) < 1)
		return parm_fail("chain stage %d (parm-mix): \"arms\" is not an array of ARMs", i);
	for (size_t j = 0; j < json_array_size(arms); j++) {
		json_t *arm = json_array_get(arms, j);
		if (!json_is_object(arm))
			return parm_fail("chain stage %d (parm-mix): arms entry %zu is not an object", i, j);
		if (add_guide(mix, n, multi, arm, i) < 0)
			return -1;
	}
	return 0;
}

/* p->base from the chain's parm-logits stage; the strength from the
 * guides' weights (1 when absent). */
static void describe_setup(parm_provenance *p, const json_t *chain, json_t *const *mix, int n)
{
	for (size_t i = 0; chain && i < json_array_size(chain); i++) {
		json_t *st = json_array_get(chain, i);
		const char *name = json_string_value(json_object_get(st, "stage"));
		const char *model = json_string_value(json_object_get(st, "model"));
		const char *remote = json_string_value(json_object_get(st, "remote"));
		if (name && !strcmp(name, "parm-logits") && (model || remote))
			snprintf(p->base, sizeof p->base, "%s%s%s", remote ? remote : "",
				 remote && model ? " " : "", model ? model : "");
	}
	for (int i = 0; i < n; i++) {
		json_t *w = json_object_get(mix[i], "weight");
		p->strength += w && json_is_number(w) ? json_number_value(w) : 1;
	}
}

/* Each objective's ARM file, once the names are known. */
static void name_arms(parm_provenance *p, json_t *const *mix, int n)
{
	for (int i = 0; i < p->k; i++) {
		json_t *guide = mix[n == 1 ? 0 : i < n ? i : n - 1];
		const char *arm = json_string_value(json_object_get(guide, "arm"));
		snprintf(p->arm[i], sizeof p->arm[i], "%s", arm ? arm : "");
	}
}

static int read_chain(parm_provenance *p, const json_t *chain)
{
	json_t *mix[PARM_PROV_MAX];
	int n = 0, multi = 0;
	if (chain && !json_is_array(chain))
		return parm_fail("\"chain\" is not an array");
	for (size_t i = 0; chain && i < json_array_size(chain); i++) {
		json_t *stage = json_array_get(chain, i);
		if (is_mix_stage(stage) && add_mix_stage(mix, &n, &multi, stage, (int)i) < 0)
			return -1;
	}
	describe_setup(p, chain, mix, n);
	if (n == 0)
		return snprintf(p->method, sizeof p->method, "base"), 0;
	if (multi && !(multi == 1 && n == 1))
		return parm_fail("the chain mixes %d parm-mix ARMs, %d of several objectives: "
				 "cannot tell the method (name it with a method field)", n, multi);
	int rc = multi ? read_parm_stage(p, mix[0], 0, stage_objectives(mix[0], 0)) :
		 read_genarm_stages(p, mix, n);
	if (rc == 0)
		name_arms(p, mix, n);
	return rc;
}

int parm_provenance_get(parm_provenance *p, const json_t *rec, const char *method_field)
{
	memset(p, 0, sizeof *p);
	if (read_chain(p, json_object_get(rec, "chain")) < 0)
		return -1;
	if (method_field) {
		const char *m = json_string_value(json_object_get(rec, method_field));
		if (!m)
			return parm_fail("no string field \"%s\" (the method field)", method_field);
		snprintf(p->method, sizeof p->method, "%s", m);
	}
	return 0;
}

static void join_names(char *buf, size_t size, const char (*names)[64], const char *const *list, int k)
{
	size_t used = 0;
	buf[0] = 0;
	for (int j = 0; j < k && used < size; j++)
		used += snprintf(buf + used, size - used, "%s%s", j ? "," : "",
				 names ? names[j] : list[j]);
}

int parm_provenance_align(double *alpha_out, const parm_provenance *p,
			  const char *const *names, int k)
{
	int pos[PARM_PROV_MAX], by_name = 1;
	if (p->k == 0)
		return -1;
	for (int i = 0; i < p->k; i++) {
		pos[i] = -1;
		for (int j = 0; j < k; j++)
			if (!strcmp(p->names[i], names[j]))
				pos[i] = j;
		by_name &= pos[i] >= 0;
	}
	if (!by_name && p->k != k) {
		char have[512], want[512];
		join_names(have, sizeof have, p->names, NULL, p->k);
		join_names(want, sizeof want, NULL, names, k);
		return parm_fail("the chain's objectives (%s) do not match the scores' (%s)", have, want);
	}
	for (int j = 0; j < k; j++)
		alpha_out[j] = 0;
	for (int i = 0; i < p->k; i++)
		alpha_out[by_name ? pos[i] : i] += p->alpha[i];
	return 0;
}
