/* linear.h - a layer's linear map as both forward passes run it (model.c
 * for inference, train.c for training):
 *
 *   y[N][out] = x[N][in] W^T + b + s B M A x'
 *
 * W in any type parm computes (read in place), b an optional bias, and the
 * PBLoRA adapter optional; x' is the adapter's input (x, or x through
 * training's dropout).  Maps that share their input run their matmuls in
 * one parallel pass. */
#ifndef PARM_LINEAR_H
#define PARM_LINEAR_H

#include <parm/model.h>
#include <parm/pblora.h>

typedef struct {
	const void *w;                  /* [out][in] of type */
	const void *packed;             /* inference's packed copy of w, or NULL */
	enum parm_ggml_type type;
	int in, out;
	const float *bias;              /* [out] or NULL */
	const parm_pblora *ad;          /* NULL: no adapter */
	const float *M;                 /* [r][r]: the adapter's mix for alpha */
	float *h, *g;                   /* [N][r] kept for a backward, or NULL */
} parm_linear;

/* A model weight with its bias, no adapter. */
parm_linear parm_linear_of(const parm_weight *w, const float *bias);

/* y[j] = x lin[j] for j < count (at most 3), every map reading x[N][in];
 * inference's: x goes to 8 bits for weights with an integer dot
 * (kernels.h). */
void parm_linear_forward(float *const *y, const parm_linear *lin, int count, const float *x, int n);

/* The two halves, for training (whose adapters read x through a dropout
 * mask of their own): y[j] = x W^T + b for each map, then one adapter's
 * y += s B M A x' (no-op without one). */
void parm_linear_base(float *const *y, const parm_linear *lin, int count, const float *x, int n);
void parm_linear_adapter(float *y, const parm_linear *lin, const float *x_adapter, int n);

#endif
