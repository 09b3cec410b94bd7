/* pblora.h - preference-aware bilinear LoRA (PARM, ICML 2025) on one
 * linear layer W[out][in], k objectives, ranks r1 (preference-agnostic)
 * and r2 (preference-aware), r = r1 + r2:
 *
 *   W2(a)  = sum_i a_i W2[i]                       (r2 x r2)
 *   M(a)   = blockdiag(W1, W2(a))                  (r x r)
 *   dW(a)  = B M(a) A                              (out x in)
 *   y      = W x + s dW(a) x,   s = lora_alpha / r2
 *
 * Never a dense dW per step: the adapter costs O(r (in + out)) per token.
 * A GenARM ARM is the k = 1 case.  Initialisation as the official code:
 * A, W1, W2 Kaiming-uniform (PyTorch Linear default, a = sqrt 5), B = 0.
 */
#ifndef PARM_PBLORA_H
#define PARM_PBLORA_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	int in, out, k, r1, r2;
	float scale;            /* lora_alpha / r2 */
	float *A;               /* [r][in] */
	float *B;               /* [out][r] */
	float *W1;              /* [r1][r1] */
	float *W2;              /* [k][r2 * r2] */
} parm_pblora;

/* Shapes set, pointers carved from params[parm_pblora_n_params()] in the order
 * A, B, W1, W2 (so a gradient buffer carved the same way lines up). */
size_t parm_pblora_n_params(int in, int out, int k, int r1, int r2);
void parm_pblora_carve(parm_pblora *p, float *params, int in, int out, int k,
		  int r1, int r2, float lora_alpha);
void parm_pblora_init(parm_pblora *p, uint64_t seed);

/* Squared Frobenius norms of the two parts of dW: *agnostic of
 * s B[:, :r1] W1 A[:r1], aware[i] of s B[:, r1:] W2[i] A[r1:] (the part
 * objective i adds at alpha = e_i), through r x r Gram matrices (no dense
 * dW).  A PARM whose aware parts stay near 0 ignores alpha. */
void parm_pblora_delta_norms(const parm_pblora *p, double *agnostic, double *aware);

/* M[r][r] = blockdiag(W1, W2(alpha)), alpha[k]. */
void parm_pblora_mix(float *M, const parm_pblora *p, const float *alpha);

/* y[N][out] += s B M A x for x[N][in]; h[N][r] = A x and g[N][r] = M h are
 * kept for the backward pass. */
void parm_pblora_forward(float *y, float *h, float *g, const float *x,
		    const parm_pblora *p, const float *M, int n);
/* Gradients accumulate (+=) into grad (carved like p) and, when dx is not
 * NULL, into dx[N][in]. */
void parm_pblora_backward(float *dx, parm_pblora *grad, const float *dy,
		     const float *x, const float *h, const float *g,
		     const parm_pblora *p, const float *M, const float *alpha, int n);

/* W[out][in] += s B M A: merge the adapter for a fixed alpha. */
void parm_pblora_merge(float *W, const parm_pblora *p, const float *M);

/* Inverted dropout on the adapter input (the official code applies it to
 * x before dW, one mask per adapted layer): xd[count] = x * keep / (1 -
 * rate).  The mask is a pure function of (seed, element), so the backward
 * pass, dx[count] += dxd * keep / (1 - rate), regenerates it. */
void parm_pblora_dropout(float *xd, const float *x, float rate, uint64_t seed, size_t count);
void parm_pblora_dropout_backward(float *dx, const float *dxd, float rate, uint64_t seed,
			     size_t count);

#endif
