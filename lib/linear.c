/* linear.c - the linear map both forwards share (legend in linear.h). */
#include "linear.h"

#include <stdlib.h>

#include "kernels.h"
#include <parm/util.h>

parm_linear parm_linear_of(const parm_weight *w, const float *bias)
{
	return (parm_linear){ .w = w->data, .packed = w->packed, .type = w->type,
			      .in = (int)w->cols, .out = (int)w->rows, .bias = bias };
}

static void add_bias(float *y, const float *b, int n, int out)
{
	for (int i = 0; i < n; i++)
		for (int k = 0; k < out; k++)
			y[(size_t)i * out + k] += b[k];
}

/* h and g are scratch when the caller keeps none. */
void parm_linear_adapter(float *y, const parm_linear *l, const float *x, int n)
{
	if (!l->ad)
		return;
	size_t r = l->ad->r1 + l->ad->r2;
	float *scratch = l->h ? NULL : parm_xmalloc(2 * (size_t)n * r * sizeof *scratch);
	float *h = l->h ? l->h : scratch, *g = l->h ? l->g : scratch + (size_t)n * r;
	parm_pblora_forward(y, h, g, x, l->ad, l->M, n);
	free(scratch);
}

/* x8: inference's choice of 8-bit activations (kernels.h). */
static void linear_base(float *const *y, const parm_linear *lin, int count, const float *x,
			int n, int x8)
{
	matmul_job jobs[3] = { { 0 } };
	for (int j = 0; j < count; j++)
		jobs[j] = (matmul_job){ y[j], x, lin[j].w, lin[j].type, lin[j].in, lin[j].out, x8,
					lin[j].packed };
	parm_matmul_many_forward(jobs, count, n);
	for (int j = 0; j < count; j++)
		if (lin[j].bias)
			add_bias(y[j], lin[j].bias, n, lin[j].out);
}

void parm_linear_base(float *const *y, const parm_linear *lin, int count, const float *x, int n)
{
	linear_base(y, lin, count, x, n, 0);
}

void parm_linear_forward(float *const *y, const parm_linear *lin, int count, const float *x, int n)
{
	linear_base(y, lin, count, x, n, 1);
	for (int j = 0; j < count; j++)
		parm_linear_adapter(y[j], &lin[j], x, n);
}
