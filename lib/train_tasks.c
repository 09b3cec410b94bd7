/* train_tasks.c - what a micro-batch does for parm-train lm (next-token
 * loss on packed sequences) and parm-train arm (PARM's preference loss
 * with a randomly drawn alpha), and their held-out evaluations. */
#include <parm/trainer.h>

#include <math.h>
#include <string.h>

#include <parm/util.h>

/* ---- randomness that is a pure function of a key ---- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)      /* in (0, 1) */
{
	return ((double)(splitmix(s) >> 11) + 0.5) * 0x1.0p-53;
}

/* Gamma(a) for a >= 1, Marsaglia and Tsang. */
static double gamma_ge1(uint64_t *s, double a)
{
	double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
	for (;;) {
		double u1 = uniform01(s), u2 = uniform01(s);
		double x = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2), v = 1 + c * x;
		if (v <= 0)
			continue;
		v = v * v * v;
		double u = uniform01(s);
		if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
			return d * v;
	}
}

void parm_pref_draw(float *alpha, int k, const parm_pref_dist *d, uint64_t key)
{
	double g[PARM_MAX_OBJECTIVES], sum = 0, c = d->conc;
	uint64_t s = key;
	if (d->vertex > 0 && uniform01(&s) < d->vertex) {
		int v = (int)(uniform01(&s) * k);
		for (int i = 0; i < k; i++)
			alpha[i] = i == v;
		return;
	}
	for (int i = 0; i < k; i++) {
		/* Gamma(c) = Gamma(c + 1) U^(1/c); the official c = 0.5 as u * u,
		 * rounded once on every libm (glibc's pow(u, 2) is not: it
		 * differs in the last bit for about 1 draw in 1200) */
		double u = uniform01(&s);
		g[i] = c >= 1 ? gamma_ge1(&s, c) : gamma_ge1(&s, c + 1) * (c == 0.5 ? u * u : pow(u, 1 / c));
		sum += g[i];
	}
	for (int i = 0; i < k; i++)
		alpha[i] = sum > 0 ? (float)(g[i] / sum) : 1.0f / (float)k;
}

static void scale(float *x, size_t n, float w)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= w;
}

/* ---- LM ---- */

static int lm_pack(parm_lm_task *lt, const long *idx, int n)
{
	const parm_lm_data *d = lt->d;
	int T = 2;
	for (int b = 0; b < n; b++)
		T = d->len[idx[b]] > T ? d->len[idx[b]] : T;
	memset(lt->mask, 0, (size_t)(unsigned)n * (unsigned)(T - 1));
	for (int b = 0; b < n; b++) {
		long s = d->start[idx[b]];
		int len = d->len[idx[b]];
		lt->len[b] = len;
		memcpy(lt->tok + (size_t)b * (size_t)T, d->tok + s, sizeof(int) * (size_t)len);
		for (int j = len; j < T; j++)
			lt->tok[(size_t)b * (size_t)T + (size_t)j] = 0;
		for (int j = 1; j < len; j++)
			lt->mask[(size_t)b * (size_t)(T - 1) + (size_t)j - 1] = d->loss[s + j];
	}
	return T;
}

static double lm_micro(void *ctx, parm_trainer *t, const long *pos, int n, float weight,
		       uint64_t key, int64_t *tokens)
{
	parm_lm_task *lt = ctx;
	long idx[n];
	for (int i = 0; i < n; i++)
		idx[i] = lt->train_idx[pos[i]];
	int T = lm_pack(lt, idx, n);
	size_t nl = (size_t)n * (size_t)(T - 1);
	if (parm_train_forward(t, lt->tok, lt->len, n, T, lt->mask, lt->logp) < 0)
		return NAN;
	memset(lt->dlogp, 0, nl * sizeof(float));
	double loss = parm_loss_lm(lt->dlogp, lt->logp, lt->mask, lt->len, n, T, NULL);
	scale(lt->dlogp, nl, weight);
	parm_train_backward(t, lt->dlogp);
	*tokens += parm_train_tokens(t);
	return loss;
}

static int lm_eval(void *ctx, parm_trainer *t, double *metric)
{
	parm_lm_task *lt = ctx;
	double sum = 0;
	long count = 0;
	parm_train_set_training(t, 0);
	for (long a = 0; a < lt->n_held; a += lt->batch) {
		int n = (int)(lt->n_held - a < lt->batch ? lt->n_held - a : lt->batch), c = 0;
		int T = lm_pack(lt, lt->held + a, n);
		if (parm_train_forward(t, lt->tok, lt->len, n, T, lt->mask, lt->logp) < 0)
			return -1;
		double l = parm_loss_lm(NULL, lt->logp, lt->mask, lt->len, n, T, &c);
		sum += l * c;
		count += c;
	}
	metric[0] = count ? sum / (double)count : NAN;
	return 0;
}

void parm_lm_task_init(parm_task *task, parm_lm_task *lt, const parm_lm_data *d,
		       const long *train, long n_train, const long *held, long n_held,
		       int batch)
{
	static const char *const names[] = { "held-out loss" };
	int max_len = 2;
	for (long i = 0; i < d->n_seq; i++)
		max_len = d->len[i] > max_len ? d->len[i] : max_len;
	size_t cells = (size_t)batch * (size_t)max_len;
	*lt = (parm_lm_task){ .d = d, .train_idx = train, .held = held, .n_held = n_held, .batch = batch,
			      .max_len = max_len };
	lt->tok = parm_xmalloc(cells * sizeof(int));
	lt->len = parm_xmalloc((size_t)batch * sizeof(int));
	lt->mask = parm_xmalloc(cells);
	lt->logp = parm_xmalloc(cells * sizeof(float));
	lt->dlogp = parm_xmalloc(cells * sizeof(float));
	*task = (parm_task){ .ctx = lt, .n_train = n_train, .micro = lm_micro, .eval = lm_eval,
			     .n_metrics = n_held ? 1 : 0, .metric_names = names };
}

void parm_lm_task_free(parm_lm_task *lt)
{
	free(lt->tok);
	free(lt->len);
	free(lt->mask);
	free(lt->logp);
	free(lt->dlogp);
}

/* ---- ARM ---- */

int parm_pairs_max_len(const parm_pairs *p)
{
	int m = 2;
	for (long i = 0; i < p->n; i++)
		for (int j = 0; j < 2; j++)
			m = p->pair[i].n_seq[j] > m ? p->pair[i].n_seq[j] : m;
	return m;
}

/* Pairs idx[n] (indices into the pairs) as 2n sequences; returns T. */
static int arm_pack(parm_arm_task *at, const long *idx, int n)
{
	int T = 2;
	for (int p = 0; p < n; p++)
		for (int j = 0; j < 2; j++)
			T = at->p->pair[idx[p]].n_seq[j] > T ? at->p->pair[idx[p]].n_seq[j] : T;
	for (int p = 0; p < n; p++) {
		const parm_pair *pr = &at->p->pair[idx[p]];
		for (int j = 0; j < 2; j++) {
			int b = 2 * p + j;
			int *row = at->tok + (size_t)b * (size_t)T;
			memcpy(row, pr->seq[j], sizeof(int) * (size_t)pr->n_seq[j]);
			memset(row + pr->n_seq[j], 0, sizeof(int) * (size_t)(T - pr->n_seq[j]));
			at->len[b] = pr->n_seq[j];
			at->plen[b] = pr->resp_start[j];
		}
		for (int i = 0; i < at->k; i++)
			at->label[p * at->k + i] = pr->label[i];
	}
	parm_response_mask(at->want, at->plen, at->len, 2 * n, T);
	return T;
}

/* Map a micro-batch's positions in the epoch order to pair indices. */
static void arm_indices(long *out, const parm_arm_task *at, const long *pos, int n)
{
	for (int i = 0; i < n; i++)
		out[i] = at->train_idx[pos[i]];
}

static double arm_micro(void *ctx, parm_trainer *t, const long *pos, int n, float weight,
			uint64_t key, int64_t *tokens)
{
	parm_arm_task *at = ctx;
	long idx[n];
	float alpha[PARM_MAX_OBJECTIVES] = { 1 };
	arm_indices(idx, at, pos, n);
	if (at->k > 1)
		parm_pref_draw(alpha, at->k, &at->dist, key);
	if (parm_train_set_pref(t, alpha) < 0)
		return NAN;
	int T = arm_pack(at, idx, n);
	size_t nl = (size_t)(2 * n) * (size_t)(T - 1);
	if (parm_train_forward(t, at->tok, at->len, 2 * n, T, at->want, at->logp) < 0)
		return NAN;
	memset(at->dlogp, 0, nl * sizeof(float));
	double loss = parm_arm_loss(at->dlogp, at->logp, at->plen, at->len, n, T, at->label,
				    at->k, alpha, at->beta, NULL, NULL, NULL);
	scale(at->dlogp, nl, weight);
	parm_train_backward(t, at->dlogp);
	*tokens += parm_train_tokens(t);
	return loss;
}

static void arm_tally(const parm_arm_task *at, int n, int T, long *correct, long *labelled,
		      double *margin)
{
	parm_seq_scores(at->S, at->logp, at->plen, at->len, 2 * n, T);
	for (int p = 0; p < n; p++)
		for (int i = 0; i < at->k; i++) {
			int w = at->label[p * at->k + i];
			if (w < 0)
				continue;
			double m = at->beta * (at->S[2 * p + w] - at->S[2 * p + 1 - w]);
			labelled[i]++;
			correct[i] += m > 0;
			margin[i] += m;
		}
}

int parm_arm_accuracy(parm_arm_task *at, parm_trainer *t, const long *idx, long n,
		      const float *alpha, long *correct, long *labelled, double *margin)
{
	for (int i = 0; i < at->k; i++) {
		correct[i] = labelled[i] = 0;
		margin[i] = 0;
	}
	parm_train_set_training(t, 0);
	if (parm_train_set_pref(t, alpha) < 0)
		return -1;
	for (long a = 0; a < n; a += at->batch) {
		int m = (int)(n - a < at->batch ? n - a : at->batch);
		int T = arm_pack(at, idx + a, m);
		if (parm_train_forward(t, at->tok, at->len, 2 * m, T, at->want, at->logp) < 0)
			return -1;
		arm_tally(at, m, T, correct, labelled, margin);
	}
	return 0;
}

static int arm_eval(void *ctx, parm_trainer *t, double *metric)
{
	parm_arm_task *at = ctx;
	for (int i = 0; i < at->k; i++) {
		float alpha[PARM_MAX_OBJECTIVES] = { 0 };
		long correct[PARM_MAX_OBJECTIVES], labelled[PARM_MAX_OBJECTIVES];
		double margin[PARM_MAX_OBJECTIVES];
		alpha[i] = 1;
		if (parm_arm_accuracy(at, t, at->held, at->n_held, alpha, correct, labelled, margin) < 0)
			return -1;
		for (int j = 0; j < at->k; j++)
			metric[at->k > 1 ? i * at->k + j : 0] =
				labelled[j] ? (double)correct[j] / (double)labelled[j] : NAN;
	}
	return 0;
}

void parm_arm_task_init(parm_task *task, parm_arm_task *at, const parm_pairs *p,
			const long *train, long n_train, const long *held, long n_held,
			int k, double beta, int batch)
{
	int max_len = parm_pairs_max_len(p);
	size_t seqs = 2 * (size_t)batch, cells = seqs * (size_t)max_len;
	*at = (parm_arm_task){ .p = p, .train_idx = train, .held = held, .n_held = n_held,
			       .k = k, .batch = batch, .max_len = max_len, .beta = beta,
			       .dist = PARM_PREF_OFFICIAL };
	at->tok = parm_xmalloc(cells * sizeof(int));
	at->len = parm_xmalloc(seqs * sizeof(int));
	at->plen = parm_xmalloc(seqs * sizeof(int));
	at->label = parm_xmalloc((size_t)batch * (size_t)k);
	at->want = parm_xmalloc(cells);
	at->logp = parm_xmalloc(cells * sizeof(float));
	at->dlogp = parm_xmalloc(cells * sizeof(float));
	at->S = parm_xmalloc(seqs * sizeof(float));
	*task = (parm_task){ .ctx = at, .n_train = n_train, .micro = arm_micro, .eval = arm_eval,
			     .n_metrics = n_held ? (k > 1 ? k * k : 1) : 0 };
}

void parm_arm_task_free(parm_arm_task *at)
{
	free(at->tok);
	free(at->len);
	free(at->plen);
	free(at->label);
	free(at->want);
	free(at->logp);
	free(at->dlogp);
	free(at->S);
}
