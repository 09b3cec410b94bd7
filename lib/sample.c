/* sample.c - choosing the next token: llama.cpp's filter order (top-k,
 * top-p, min-p, temperature) without sorting the vocabulary.
 *
 * Candidates are ordered by logit, larger first, ties by smaller id: a
 * strict total order, so "the top j" is one well-defined set.  top-k and
 * top-p find their cut with quickselect (expected O(n)); the kept set is
 * then rebuilt in index order by one scan, so the draw sees the same
 * sequence as the plain reference (parm_sample_ref), which sorts.
 */
#include <parm/sample.h>
#include <parm/util.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared pieces ---- */

size_t parm_sample_scratch(int n)
{
	return (size_t)n * (2 * sizeof(float) + sizeof(int));
}

static int id_of(const int32_t *ids, int i)
{
	return ids ? ids[i] : i;
}

/* a comes before b: larger logit, or equal logit and smaller id */
static int before(float va, int ida, float vb, int idb)
{
	return va > vb || (va == vb && ida < idb);
}

int parm_argmax(const float *logits, const int32_t *ids, int n)
{
	int best = -1;
	for (int i = 0; i < n; i++) {
		if (isnan(logits[i]) || logits[i] == -INFINITY)
			continue;
		if (best < 0 || before(logits[i], id_of(ids, i), logits[best], id_of(ids, best)))
			best = i;
	}
	return best < 0 ? -1 : id_of(ids, best);
}

/* Whether logits[i] can be chosen, and the value it is chosen by: when
 * any logit is +inf only those can, all equally likely. */
static int candidate_value(float x, int any_posinf, float *v)
{
	if (isnan(x) || x == -INFINITY || (any_posinf && x != INFINITY))
		return 0;
	*v = any_posinf ? 0.0f : x;
	return 1;
}

static int has_posinf(const float *logits, int n)
{
	for (int i = 0; i < n; i++)
		if (logits[i] == INFINITY)
			return 1;
	return 0;
}

/* Draw from softmax(v[m] / temperature), walking in the given order.
 * w[m] is scratch.  One uniform draw, always. */
static int draw(const float *v, const int *idx, const int32_t *ids, int m,
		float temperature, parm_rng *rng, float *w)
{
	float max = v[0];
	double sum = 0, u;
	int last = 0;
	for (int j = 1; j < m; j++)
		max = v[j] > max ? v[j] : max;
	for (int j = 0; j < m; j++) {
		w[j] = expf((v[j] - max) / temperature);
		sum += w[j];
	}
	u = parm_rng_uniform(rng) * sum;
	for (int j = 0; j < m; j++) {
		if (w[j] > 0)
			last = j;
		u -= w[j];
		if (u < 0)
			return id_of(ids, idx[j]);
	}
	return id_of(ids, idx[last]);   /* rounding left u at >= 0 */
}

/* threshold of min-p on logits whose largest is max: p >= min_p * p_max */
static float min_p_threshold(float max, float min_p)
{
	if (min_p <= 0)
		return -INFINITY;
	return min_p >= 1 ? max : max + logf(min_p);
}

/* ---- quickselect on the candidate arrays ---- */

typedef struct {
	float *v;               /* [m] logits */
	float *w;               /* [m] unnormalised probabilities (top-p) */
	int *idx;               /* [m] positions in the caller's arrays */
	const int32_t *ids;
} cands;

static inline int cand_before(const cands *c, int a, int b)
{
	if (c->v[a] != c->v[b])
		return c->v[a] > c->v[b];
	return before(c->v[a], id_of(c->ids, c->idx[a]), c->v[b], id_of(c->ids, c->idx[b]));
}

static inline void cand_swap(cands *c, int a, int b)
{
	float v = c->v[a], w = c->w[a];
	int i = c->idx[a];
	c->v[a] = c->v[b], c->w[a] = c->w[b], c->idx[a] = c->idx[b];
	c->v[b] = v, c->w[b] = w, c->idx[b] = i;
}

/* Partition [lo, hi) around a median-of-three pivot; returns its final
 * place p: [lo, p) come before it, (p, hi) after. */
static int partition(cands *c, int lo, int hi)
{
	int mid = lo + (hi - lo) / 2, last = hi - 1, p = lo;
	if (cand_before(c, mid, lo))
		cand_swap(c, mid, lo);
	if (cand_before(c, last, lo))
		cand_swap(c, last, lo);
	if (cand_before(c, mid, last))
		cand_swap(c, mid, last);        /* median now at last */
	for (int j = lo; j < last; j++)
		if (cand_before(c, j, last))
			cand_swap(c, j, p++);
	cand_swap(c, p, last);
	return p;
}

/* The smallest j such that the first j of [lo, hi) in order weigh >= need
 * (weights in c->w); they end up in [lo, lo + j). */
static int select_top_weight(cands *c, int lo, int hi, double need)
{
	int start = lo;
	while (lo < hi) {
		int p = partition(c, lo, hi);
		double mass = 0;
		for (int j = lo; j < p; j++)
			mass += c->w[j];
		if (mass >= need) {
			hi = p;
			continue;
		}
		need -= mass;
		if (c->w[p] >= need)
			return p + 1 - start;
		need -= c->w[p];
		lo = p + 1;
	}
	return hi - start;      /* only by rounding: keep what was proven needed */
}

#define N_BUCKETS 256

typedef struct {
	float max;
	float scale;
} buckets;

static int bucket_of(const buckets *b, float v)
{
	int k = (int)((b->max - v) * b->scale);
	return k < 0 ? 0 : k >= N_BUCKETS ? N_BUCKETS - 1 : k;
}

/* Move the candidates of buckets [0, below) to the front, those of bucket
 * `below` after them; returns how many went to the front, *n_in how many
 * are in bucket `below`. */
static int gather_buckets(cands *c, int m, const buckets *b, int below, int *n_in)
{
	int front = 0, mid;
	for (int j = 0; j < m; j++)
		if (bucket_of(b, c->v[j]) < below)
			cand_swap(c, j, front++);
	mid = front;
	for (int j = front; j < m; j++)
		if (bucket_of(b, c->v[j]) == below)
			cand_swap(c, j, mid++);
	*n_in = mid - front;
	return front;
}

/* select_top_weight over [0, m), first narrowed to one bucket of logits:
 * buckets are in order, so the cut lies in the bucket where the running
 * weight crosses need, and only that bucket needs a quickselect. */
static int cut_top(cands *c, int m, double need)
{
	double mass[N_BUCKETS] = { 0 }, before = 0;
	float max = c->v[0], min = c->v[0];
	int crossing = 0, front, n_in;
	for (int j = 1; j < m; j++) {
		max = c->v[j] > max ? c->v[j] : max;
		min = c->v[j] < min ? c->v[j] : min;
	}
	buckets b = { max, N_BUCKETS / (max - min) };
	if (m < 4 * N_BUCKETS || !isfinite(b.scale))
		return select_top_weight(c, 0, m, need);
	for (int j = 0; j < m; j++)
		mass[bucket_of(&b, c->v[j])] += c->w[j];
	while (crossing < N_BUCKETS - 1 && before + mass[crossing] < need)
		before += mass[crossing++];
	front = gather_buckets(c, m, &b, crossing, &n_in);
	return front + select_top_weight(c, front, front + n_in, need - before);
}

/* top-k over c[0, m): the first k in order go to [0, k) */
static int apply_top_k(cands *c, int m, int k)
{
	for (int j = 0; j < m; j++)
		c->w[j] = 1;
	return cut_top(c, m, k);
}

/* the last of [0, m) in order */
static int last_in_order(const cands *c, int m)
{
	int last = 0;
	for (int j = 1; j < m; j++)
		if (cand_before(c, last, j))
			last = j;
	return last;
}

/* ---- the fast path ---- */

/* top-p over c[0, m): keep the smallest top set with probability >= p */
static int apply_top_p(cands *c, int m, float top_p)
{
	float max = c->v[0];
	double z = 0;
	if (top_p <= 0)
		return apply_top_k(c, m, 1);
	for (int j = 1; j < m; j++)
		max = c->v[j] > max ? c->v[j] : max;
	for (int j = 0; j < m; j++)
		z += c->w[j] = expf(c->v[j] - max);
	return cut_top(c, m, top_p * z);
}

static int collect(cands *c, const float *logits, int n, int any_posinf)
{
	int m = 0;
	for (int i = 0; i < n; i++)
		if (candidate_value(logits[i], any_posinf, &c->v[m]))
			c->idx[m++] = i;
	return m;
}

/* Rebuild the kept set in index order: candidates not after the boundary
 * (bv, bid) in order and at or above the min-p threshold. */
static int rebuild(cands *c, const float *logits, int n, int any_posinf,
		   float bv, int bid, float threshold)
{
	int m = 0;
	for (int i = 0; i < n; i++) {
		float v;
		if (!candidate_value(logits[i], any_posinf, &v) || v < threshold ||
		    before(bv, bid, v, id_of(c->ids, i)))
			continue;
		c->v[m] = v;
		c->idx[m++] = i;
	}
	return m;
}

/* min-p without a cut: the candidates are still in index order */
static int keep_at_least(cands *c, int m, float threshold)
{
	int kept = 0;
	for (int j = 0; j < m; j++)
		if (c->v[j] >= threshold) {
			c->v[kept] = c->v[j];
			c->idx[kept++] = c->idx[j];
		}
	return kept;
}

int parm_sample(const parm_sampler *s, parm_rng *rng, const float *logits,
		const int32_t *ids, int n, void *scratch)
{
	int any_posinf = has_posinf(logits, n), m, cut;
	cands c = { .idx = scratch, .ids = ids };
	c.v = (float *)(c.idx + n);
	c.w = c.v + n;
	if (s->temperature <= 0)
		return parm_argmax(logits, ids, n);
	if ((m = collect(&c, logits, n, any_posinf)) == 0)
		return -1;
	cut = m;
	if (s->top_k > 0 && s->top_k < cut)
		cut = apply_top_k(&c, cut, s->top_k);
	if (s->top_p < 1)
		cut = apply_top_p(&c, cut, s->top_p);
	float max = c.v[0];
	for (int j = 1; j < cut; j++)
		max = c.v[j] > max ? c.v[j] : max;
	float threshold = min_p_threshold(max, s->min_p);
	if (cut < m) {
		int b = last_in_order(&c, cut);
		m = rebuild(&c, logits, n, any_posinf, c.v[b], id_of(ids, c.idx[b]), threshold);
	} else if (threshold > -INFINITY) {
		m = keep_at_least(&c, m, threshold);
	}
	return draw(c.v, c.idx, ids, m, s->temperature, rng, c.w);
}

/* ---- the plain reference: sort everything, cut, draw ---- */

typedef struct {
	float v;
	int idx, id;
} ref_cand;

static int by_order(const void *a, const void *b)
{
	const ref_cand *x = a, *y = b;
	return before(x->v, x->id, y->v, y->id) ? -1 : before(y->v, y->id, x->v, x->id);
}

static int by_index(const void *a, const void *b)
{
	const ref_cand *x = a, *y = b;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* llama.cpp's top-p on a sorted list: softmax, cumulative sum */
static int ref_top_p(const ref_cand *c, int m, float top_p)
{
	double z = 0, cum = 0;
	for (int j = 0; j < m; j++)
		z += expf(c[j].v - c[0].v);
	for (int j = 0; j < m; j++) {
		cum += expf(c[j].v - c[0].v) / z;
		if (cum >= top_p)
			return j + 1;
	}
	return m;
}

int parm_sample_ref(const parm_sampler *s, parm_rng *rng, const float *logits,
		    const int32_t *ids, int n)
{
	int any_posinf = has_posinf(logits, n), m = 0, kept = 0, r;
	ref_cand *c = parm_xmalloc(n * sizeof *c);
	if (s->temperature <= 0)
		return free(c), parm_argmax(logits, ids, n);
	for (int i = 0; i < n; i++)
		if (candidate_value(logits[i], any_posinf, &c[m].v))
			c[m].idx = i, c[m++].id = id_of(ids, i);
	if (m == 0)
		return free(c), -1;
	qsort(c, m, sizeof *c, by_order);
	if (s->top_k > 0 && s->top_k < m)
		m = s->top_k;
	if (s->top_p < 1)
		m = s->top_p <= 0 ? 1 : ref_top_p(c, m, s->top_p);
	float threshold = min_p_threshold(c[0].v, s->min_p);
	for (int j = 0; j < m; j++)
		if (c[j].v >= threshold)
			c[kept++] = c[j];
	qsort(c, kept, sizeof *c, by_index);
	float *v = parm_xmalloc(2 * kept * sizeof *v);
	int *idx = parm_xmalloc(kept * sizeof *idx);
	for (int j = 0; j < kept; j++)
		v[j] = c[j].v, idx[j] = c[j].idx;
	r = draw(v, idx, ids, kept, s->temperature, rng, v + kept);
	free(v), free(idx), free(c);
	return r;
}
