/* test_pblora.c - PBLoRA against the dense formula
 * y = W x + s B blockdiag(W1, sum_i a_i W2_i) A x, computed naively. */
#include <math.h>
#include <string.h>

#include <parm/pblora.h>
#include "tap.h"
#include <parm/util.h>

static uint64_t rng = 777;

static float frand(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((rng >> 40) * 0x1.0p-24 * 2 - 1);
}

/* dW[out][in] = s B M A, naively in double, M built by hand. */
static void dense_delta(double *dW, const parm_pblora *p, const float *alpha)
{
	int r1 = p->r1, r2 = p->r2, r = r1 + r2;
	double M[64][64] = { { 0 } };
	for (int i = 0; i < r1; i++)
		for (int j = 0; j < r1; j++)
			M[i][j] = p->W1[i * r1 + j];
	for (int o = 0; o < p->k; o++)
		for (int i = 0; i < r2; i++)
			for (int j = 0; j < r2; j++)
				M[r1 + i][r1 + j] += alpha[o] * p->W2[o * r2 * r2 + i * r2 + j];
	for (int a = 0; a < p->out; a++)
		for (int b = 0; b < p->in; b++) {
			double s = 0;
			for (int i = 0; i < r; i++)
				for (int j = 0; j < r; j++)
					s += p->B[a * r + i] * M[i][j] * p->A[j * p->in + b];
			dW[(size_t)a * p->in + b] = p->scale * s;
		}
}

/* sum over rows and outputs of rw * (s B M A x), in double. */
static double adapter_loss(const parm_pblora *p, const float *alpha, const float *x,
			   const float *rw, int n)
{
	double *dW = parm_xmalloc((size_t)p->out * p->in * sizeof *dW), loss = 0;
	dense_delta(dW, p, alpha);
	for (int t = 0; t < n; t++)
		for (int a = 0; a < p->out; a++) {
			double y = 0;
			for (int b = 0; b < p->in; b++)
				y += dW[(size_t)a * p->in + b] * x[(size_t)t * p->in + b];
			loss += rw[(size_t)t * p->out + a] * y;
		}
	free(dW);
	return loss;
}

static double check_case(int in, int out, int k, int r1, int r2, int n)
{
	size_t np = parm_pblora_n_params(in, out, k, r1, r2);
	float *params = parm_xcalloc(np, sizeof *params), *grads = parm_xcalloc(np, sizeof *grads);
	float *x = parm_xmalloc((size_t)n * in * sizeof *x), *rw = parm_xmalloc((size_t)n * out * sizeof *rw);
	float *y = parm_xcalloc((size_t)n * out, sizeof *y), *dx = parm_xcalloc((size_t)n * in, sizeof *dx);
	float *h = parm_xmalloc((size_t)n * (r1 + r2) * sizeof *h), *g = parm_xmalloc((size_t)n * (r1 + r2) * sizeof *g);
	float *M = parm_xmalloc((size_t)(r1 + r2) * (r1 + r2) * sizeof *M), alpha[8];
	double *dW = parm_xmalloc((size_t)out * in * sizeof *dW);
	parm_pblora p, gp;
	parm_pblora_carve(&p, params, in, out, k, r1, r2, 8.0f);
	parm_pblora_carve(&gp, grads, in, out, k, r1, r2, 8.0f);
	parm_pblora_init(&p, 99);
	int zero_b = 1;
	for (int i = 0; i < out * (r1 + r2); i++)
		zero_b &= p.B[i] == 0;
	parm_pblora_mix(M, &p, (float[8]){ 1 });
	memset(y, 0, (size_t)n * out * sizeof *y);
	for (int i = 0; i < n * in; i++)
		x[i] = frand();
	parm_pblora_forward(y, h, g, x, &p, M, n);
	int zero_y = 1;
	for (int i = 0; i < n * out; i++)
		zero_y &= y[i] == 0;
	ok(zero_b && zero_y, "init (k=%d): B = 0, so dW = 0 and the adapter adds nothing", k);
	double bound = 1 / sqrt(in), maxA = 0;
	for (int i = 0; i < (r1 + r2) * in; i++)
		maxA = fmax(maxA, fabs(p.A[i]));
	ok(maxA <= bound && maxA > 0.8 * bound, "A is U(-1/sqrt(in), 1/sqrt(in)) (max %.3f, bound %.3f)",
	   maxA, bound);
	for (size_t i = 0; i < np; i++)
		params[i] = frand() * 0.5f;
	float sum = 0;
	for (int i = 0; i < k; i++)
		sum += alpha[i] = 0.1f + (float)i;
	for (int i = 0; i < k; i++)
		alpha[i] /= sum;
	parm_pblora_mix(M, &p, alpha);
	/* forward equals W x + dense dW x (W = 0 here: y starts at 0) */
	memset(y, 0, (size_t)n * out * sizeof *y);
	parm_pblora_forward(y, h, g, x, &p, M, n);
	dense_delta(dW, &p, alpha);
	double err = 0;
	for (int t = 0; t < n; t++)
		for (int a = 0; a < out; a++) {
			double ref = 0;
			for (int b = 0; b < in; b++)
				ref += dW[(size_t)a * in + b] * x[(size_t)t * in + b];
			err = fmax(err, fabs(ref - y[(size_t)t * out + a]) / (1 + fabs(ref)));
		}
	ok(err < 1e-5, "forward (k=%d, r1=%d, r2=%d) equals the dense formula (err %.1e)", k, r1, r2, err);
	/* merge equals forward */
	float *W = parm_xcalloc((size_t)out * in, sizeof *W);
	parm_pblora_merge(W, &p, M);
	double merr = 0;
	for (size_t i = 0; i < (size_t)out * in; i++)
		merr = fmax(merr, fabs(W[i] - dW[i]));
	ok(merr < 1e-5, "merge equals the dense dW (err %.1e)", merr);
	/* backward against finite differences of the dense loss */
	for (int i = 0; i < n * out; i++)
		rw[i] = frand();
	parm_pblora_backward(dx, &gp, rw, x, h, g, &p, M, alpha, n);
	double max_diff = 0, max_num = 1e-9;
	float hstep = 1e-2f;
	for (size_t i = 0; i < np + (size_t)n * in; i++) {
		float *v = i < np ? &params[i] : &x[i - np];
		float an = i < np ? grads[i] : dx[i - np], keep = *v;
		*v = keep + hstep;
		double up = adapter_loss(&p, alpha, x, rw, n);
		*v = keep - hstep;
		double down = adapter_loss(&p, alpha, x, rw, n);
		*v = keep;
		double num = (up - down) / (2 * hstep);
		max_diff = fmax(max_diff, fabs(num - an));
		max_num = fmax(max_num, fabs(num));
	}
	free(params), free(grads), free(x), free(rw), free(y), free(dx), free(h), free(g);
	free(M), free(dW), free(W);
	return max_diff / max_num;
}

static void test_dropout(void)
{
	enum { N = 20000 };
	float *x = parm_xmalloc(N * sizeof *x), *xd = parm_xmalloc(N * sizeof *xd), *dx = parm_xcalloc(N, sizeof *dx);
	int dropped = 0, consistent = 1;
	for (int i = 0; i < N; i++)
		x[i] = 1;
	parm_pblora_dropout(xd, x, 0.25f, 5, N);
	parm_pblora_dropout_backward(dx, x, 0.25f, 5, N);
	for (int i = 0; i < N; i++) {
		dropped += xd[i] == 0;
		consistent &= xd[i] == dx[i] && (xd[i] == 0 || fabsf(xd[i] - 1 / 0.75f) < 1e-6f);
	}
	ok(abs(dropped - N / 4) < N / 50, "dropout drops about a quarter (%d of %d)", dropped, N);
	ok(consistent, "dropout backward regenerates the forward's mask and scale");
	free(x), free(xd), free(dx);
}

/* The norms of dW's agnostic part (alpha = 0 leaves only it) and each
 * objective's aware part (dW(e_i) - dW(0)) against the dense dW. */
static void test_delta_norms(int in, int out, int k, int r1, int r2)
{
	size_t np = parm_pblora_n_params(in, out, k, r1, r2);
	float *params = parm_xcalloc(np, sizeof *params), alpha[8] = { 0 };
	parm_pblora p;
	parm_pblora_carve(&p, params, in, out, k, r1, r2, 8.0f);
	for (size_t i = 0; i < np; i++)
		params[i] = frand();
	double *d0 = parm_xmalloc((size_t)out * in * sizeof *d0), *di = parm_xmalloc((size_t)out * in * sizeof *di);
	double ag, aw[8], worst = 0;
	parm_pblora_delta_norms(&p, &ag, aw);
	dense_delta(d0, &p, alpha);
	double ref = 0;
	for (size_t c = 0; c < (size_t)out * in; c++)
		ref += d0[c] * d0[c];
	worst = fabs(ag - ref) / fmax(ref, 1e-30);
	for (int i = 0; i < k; i++) {
		alpha[i] = 1;
		dense_delta(di, &p, alpha);
		alpha[i] = 0;
		ref = 0;
		for (size_t c = 0; c < (size_t)out * in; c++)
			ref += (di[c] - d0[c]) * (di[c] - d0[c]);
		worst = fmax(worst, fabs(aw[i] - ref) / fmax(ref, 1e-30));
	}
	ok(worst < 1e-9 && ag > 0 && aw[0] > 0, "delta norms (k=%d r1=%d r2=%d): agnostic and aware "
	   "parts equal the dense dW's (rel err %.1e)", k, r1, r2, worst);
	free(params), free(d0), free(di);
}

int main(void)
{
	double e1 = check_case(32, 24, 2, 4, 4, 3);
	printf("# pblora k=2 r1=4 r2=4: max rel err %.2e\n", e1);
	ok(e1 < 1e-3, "backward matches finite differences (k=2)");
	double e2 = check_case(16, 8, 1, 2, 3, 2);
	printf("# pblora k=1 r1=2 r2=3: max rel err %.2e\n", e2);
	ok(e2 < 1e-3, "backward matches finite differences (k=1, the GenARM case)");
	double e3 = check_case(16, 8, 3, 0, 2, 2);
	printf("# pblora k=3 r1=0 r2=2: max rel err %.2e\n", e3);
	ok(e3 < 1e-3, "backward matches finite differences (k=3, no agnostic block)");
	test_dropout();
	test_delta_norms(32, 24, 2, 4, 4);
	test_delta_norms(20, 12, 3, 2, 5);
	return tap_done();
}
