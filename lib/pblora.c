/* pblora.c - preference-aware bilinear LoRA: the maths of pblora.h.
 *
 * Shapes and initialisation follow the official layer, PBLoraLayer in the
 * PEFT fork of Baijiong-Lin/PARM (peft/src/peft/tuners/pblora/layer.py:
 * update_layer, reset_lora_parameters, forward):
 *   pblora_A [r1+r2][in], pblora_B [out][r1+r2], pblora_W1 [r1][r1],
 *   pblora_W2 [k][r2*r2]; A, W1, W2 kaiming_uniform_(a = sqrt 5), B = 0;
 *   result = W x + F.linear(dropout(x), dW) * lora_alpha / r2.
 * kaiming_uniform_ with a = sqrt 5 draws U(-b, b), b = 1 / sqrt(fan_in),
 * fan_in = size(1): in for A, r1 for W1 and r2*r2 for W2 (the whole row of
 * the [k][r2*r2] parameter, not r2).  The official forward builds the dense
 * dW per call; here x goes through A, M and B, O(r (in + out)) per token.
 */
#include <parm/rng.h>
#include <parm/pblora.h>

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <parm/util.h>

size_t parm_pblora_n_params(int in, int out, int k, int r1, int r2)
{
	size_t r = (size_t)r1 + r2;
	return r * in + (size_t)out * r + (size_t)r1 * r1 + (size_t)k * r2 * r2;
}

void parm_pblora_carve(parm_pblora *p, float *params, int in, int out, int k,
		  int r1, int r2, float lora_alpha)
{
	int r = r1 + r2;
	*p = (parm_pblora){ .in = in, .out = out, .k = k, .r1 = r1, .r2 = r2,
			    .scale = r2 > 0 ? lora_alpha / r2 : lora_alpha };
	p->A = params;
	p->B = p->A + (size_t)r * in;
	p->W1 = p->B + (size_t)out * r;
	p->W2 = p->W1 + (size_t)r1 * r1;
}

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's kaiming_uniform_(a = sqrt 5). */
static void kaiming_uniform(float *w, size_t count, int fan_in, uint64_t *s)
{
	double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0;
	for (size_t i = 0; i < count; i++) {
		double u = parm_splitmix_uniform(s);   /* [0, 1) */
		w[i] = (float)((2 * u - 1) * bound);
	}
}

void parm_pblora_init(parm_pblora *p, uint64_t seed)
{
	int r = p->r1 + p->r2;
	uint64_t s = seed;
	kaiming_uniform(p->A, (size_t)r * p->in, p->in, &s);
	memset(p->B, 0, (size_t)p->out * r * sizeof(float));
	kaiming_uniform(p->W1, (size_t)p->r1 * p->r1, p->r1, &s);
	kaiming_uniform(p->W2, (size_t)p->k * p->r2 * p->r2, p->r2 * p->r2, &s);
}

/* ||B_b W A_b||^2 for the rows [off, off + rb) of A and columns of B,
 * = tr(GB W GA W^T) with GB = B_b^T B_b and GA = A_b A_b^T. */
static double block_norm2(const parm_pblora *p, int off, int rb, const float *W)
{
	int r = p->r1 + p->r2;
	double *GB = parm_xcalloc((size_t)3 * rb * rb + 1, sizeof *GB), *GA = GB + rb * rb, *T = GA + rb * rb;
	for (int o = 0; o < p->out; o++)
		for (int a = 0; a < rb; a++)
			for (int b = 0; b < rb; b++)
				GB[a * rb + b] += (double)p->B[(size_t)o * r + off + a] * p->B[(size_t)o * r + off + b];
	for (int a = 0; a < rb; a++)
		for (int b = 0; b < rb; b++)
			for (int c = 0; c < p->in; c++)
				GA[a * rb + b] += (double)p->A[(size_t)(off + a) * p->in + c] *
						  p->A[(size_t)(off + b) * p->in + c];
	for (int b = 0; b < rb; b++)            /* T = W GA */
		for (int d = 0; d < rb; d++)
			for (int c = 0; c < rb; c++)
				T[b * rb + d] += W[b * rb + c] * GA[c * rb + d];
	double sum = 0;                         /* sum GB[a][b] (T W^T)[b][a] */
	for (int a = 0; a < rb; a++)
		for (int b = 0; b < rb; b++)
			for (int d = 0; d < rb; d++)
				sum += GB[a * rb + b] * T[b * rb + d] * W[a * rb + d];
	free(GB);
	return sum;
}

void parm_pblora_delta_norms(const parm_pblora *p, double *agnostic, double *aware)
{
	double s2 = (double)p->scale * p->scale;
	*agnostic = p->r1 ? s2 * block_norm2(p, 0, p->r1, p->W1) : 0;
	for (int i = 0; i < p->k; i++)
		aware[i] = p->r2 ? s2 * block_norm2(p, p->r1, p->r2, p->W2 + (size_t)i * p->r2 * p->r2) : 0;
}

void parm_pblora_mix(float *M, const parm_pblora *p, const float *alpha)
{
	int r1 = p->r1, r2 = p->r2, r = r1 + r2;
	memset(M, 0, (size_t)r * r * sizeof(float));
	for (int i = 0; i < r1; i++)
		for (int j = 0; j < r1; j++)
			M[i * r + j] = p->W1[i * r1 + j];
	for (int i = 0; i < r2; i++)
		for (int j = 0; j < r2; j++) {
			float sum = 0;
			for (int o = 0; o < p->k; o++)
				sum += alpha[o] * p->W2[(size_t)o * r2 * r2 + i * r2 + j];
			M[(r1 + i) * r + r1 + j] = sum;
		}
}

void parm_pblora_forward(float *y, float *h, float *g, const float *x,
		    const parm_pblora *p, const float *M, int n)
{
	int r = p->r1 + p->r2;
	if (n <= 0)
		return;
	/* h[N][r] = x A^T;  g[N][r] = h M^T;  y += s g B^T */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, p->in, 1.0f,
		    x, p->in, p->A, p->in, 0.0f, h, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, r, 1.0f,
		    h, r, M, r, 0.0f, g, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, p->out, r, p->scale,
		    g, r, p->B, r, 1.0f, y, p->out);
}

/* dW1 += dM[:r1, :r1];  dW2[i] += alpha_i dM[r1:, r1:]. */
static void mix_backward(parm_pblora *grad, const float *dM, const parm_pblora *p,
			 const float *alpha)
{
	int r1 = p->r1, r2 = p->r2, r = r1 + r2;
	for (int i = 0; i < r1; i++)
		for (int j = 0; j < r1; j++)
			grad->W1[i * r1 + j] += dM[i * r + j];
	for (int o = 0; o < p->k; o++)
		for (int i = 0; i < r2; i++)
			for (int j = 0; j < r2; j++)
				grad->W2[(size_t)o * r2 * r2 + i * r2 + j] +=
					alpha[o] * dM[(r1 + i) * r + r1 + j];
}

void parm_pblora_backward(float *dx, parm_pblora *grad, const float *dy,
		     const float *x, const float *h, const float *g,
		     const parm_pblora *p, const float *M, const float *alpha, int n)
{
	int r = p->r1 + p->r2;
	if (n <= 0)
		return;
	float *dg = parm_xmalloc(((size_t)2 * n * r + (size_t)r * r) * sizeof(float));
	float *dh = dg + (size_t)n * r, *dM = dh + (size_t)n * r;
	/* dB += s dy^T g;  dg = s dy B */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->out, r, n, p->scale,
		    dy, p->out, g, r, 1.0f, grad->B, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, p->out, p->scale,
		    dy, p->out, p->B, r, 0.0f, dg, r);
	/* dM = dg^T h;  dh = dg M */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, r, n, 1.0f,
		    dg, r, h, r, 0.0f, dM, r);
	mix_backward(grad, dM, p, alpha);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, r, 1.0f,
		    dg, r, M, r, 0.0f, dh, r);
	/* dA += dh^T x;  dx += dh A */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, p->in, n, 1.0f,
		    dh, r, x, p->in, 1.0f, grad->A, p->in);
	if (dx)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, p->in, r, 1.0f,
			    dh, r, p->A, p->in, 1.0f, dx, p->in);
	free(dg);
}

void parm_pblora_merge(float *W, const parm_pblora *p, const float *M)
{
	int r = p->r1 + p->r2;
	float *MA = parm_xmalloc((size_t)r * p->in * sizeof *MA);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, p->in, r, 1.0f,
		    M, r, p->A, p->in, 0.0f, MA, p->in);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->out, p->in, r, p->scale,
		    p->B, r, MA, p->in, 1.0f, W, p->in);
	free(MA);
}

/* ---- dropout on the adapter input ---- */

/* A counter-based hash: element i of a mask is a pure function of (seed,
 * i), so the backward pass regenerates the mask instead of storing it. */
static inline int dropout_keep(uint64_t seed, uint64_t i, uint32_t threshold)
{
	uint64_t s = seed ^ (i * 0xd1342543de82ef95ULL);
	return (uint32_t)(parm_splitmix64(&s) >> 32) >= threshold;
}

static uint32_t dropout_threshold(float rate)
{
	return (uint32_t)(rate * 4294967296.0 > 4294967295.0 ? 4294967295.0 : rate * 4294967296.0);
}

void parm_pblora_dropout(float *xd, const float *x, float rate, uint64_t seed, size_t count)
{
	uint32_t th = dropout_threshold(rate);
	float keep_scale = rate < 1 ? 1.0f / (1.0f - rate) : 0.0f;
	for (size_t i = 0; i < count; i++)
		xd[i] = dropout_keep(seed, i, th) ? x[i] * keep_scale : 0.0f;
}

void parm_pblora_dropout_backward(float *dx, const float *dxd, float rate, uint64_t seed,
			     size_t count)
{
	uint32_t th = dropout_threshold(rate);
	float keep_scale = rate < 1 ? 1.0f / (1.0f - rate) : 0.0f;
	for (size_t i = 0; i < count; i++)
		if (dropout_keep(seed, i, th))
			dx[i] += dxd[i] * keep_scale;
}
