/* optim.c - AdamW, gradient clipping, cosine schedule */
#include <parm/optim.h>
#include <parm/util.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The bias corrections and step size are hoisted out of the loop and the
 * loop body has no branches, so it vectorises; the order of operations is
 * torch's, in float as torch does for float32 parameters. */
void parm_adamw_update(float *param, float *m, float *v, const float *grad, size_t n,
		  float lr, float beta1, float beta2, float eps, float wd, long t)
{
	double bc1 = 1.0 - pow(beta1, (double)t);
	double bc2 = 1.0 - pow(beta2, (double)t);
	float decay = 1.0f - lr * wd;
	float step_size = (float)(lr / bc1);
	float bc2_sqrt = (float)sqrt(bc2);
	float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
	for (size_t i = 0; i < n; i++) {
		float g = grad[i];
		float mi = m[i] + a1 * (g - m[i]);
		float vi = beta2 * v[i] + a2 * g * g;
		m[i] = mi;
		v[i] = vi;
		param[i] = param[i] * decay - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
	}
}

void parm_adamw_update_ref(float *param, float *m, float *v, const float *grad, size_t n,
		      float lr, float beta1, float beta2, float eps, float wd, long t)
{
	for (size_t i = 0; i < n; i++) {
		double p = param[i], g = grad[i];
		double mi = beta1 * (double)m[i] + (1 - (double)beta1) * g;
		double vi = beta2 * (double)v[i] + (1 - (double)beta2) * g * g;
		double mhat = mi / (1 - pow(beta1, (double)t));
		double vhat = vi / (1 - pow(beta2, (double)t));
		p -= (double)lr * wd * p;
		p -= lr * mhat / (sqrt(vhat) + eps);
		m[i] = (float)mi;
		v[i] = (float)vi;
		param[i] = (float)p;
	}
}

void parm_adamw_init(parm_adamw *o, float weight_decay)
{
	memset(o, 0, sizeof *o);
	o->beta1 = 0.9f;
	o->beta2 = 0.999f;
	o->eps = 1e-8f;
	o->weight_decay = weight_decay;
}

void parm_adamw_add(parm_adamw *o, float *param, float *grad, size_t n, int decay)
{
	o->group = parm_xrealloc(o->group, (size_t)(o->n_groups + 1) * sizeof *o->group);
	o->group[o->n_groups++] = (parm_param_group){ param, grad, n, decay };
	o->m = parm_xrealloc(o->m, (o->n_total + n) * sizeof *o->m);
	o->v = parm_xrealloc(o->v, (o->n_total + n) * sizeof *o->v);
	memset(o->m + o->n_total, 0, n * sizeof *o->m);
	memset(o->v + o->n_total, 0, n * sizeof *o->v);
	o->n_total += n;
}

void parm_adamw_free(parm_adamw *o)
{
	free(o->group);
	free(o->m);
	free(o->v);
	memset(o, 0, sizeof *o);
}

void parm_adamw_zero_grad(parm_adamw *o)
{
	for (int i = 0; i < o->n_groups; i++)
		memset(o->group[i].grad, 0, o->group[i].n * sizeof(float));
}

void parm_adamw_step(parm_adamw *o, float lr)
{
	size_t off = 0;
	o->step++;
	for (int i = 0; i < o->n_groups; i++) {
		parm_param_group *g = &o->group[i];
		parm_adamw_update(g->param, o->m + off, o->v + off, g->grad, g->n, lr,
			     o->beta1, o->beta2, o->eps,
			     g->decay ? o->weight_decay : 0.0f, o->step);
		off += g->n;
	}
}

double parm_grad_norm(const parm_adamw *o)
{
	double sum = 0;
	for (int i = 0; i < o->n_groups; i++)
		for (size_t j = 0; j < o->group[i].n; j++)
			sum += (double)o->group[i].grad[j] * o->group[i].grad[j];
	return sqrt(sum);
}

float parm_clip_grad_norm(parm_adamw *o, float max_norm)
{
	double norm = parm_grad_norm(o);
	if (max_norm > 0 && norm > max_norm) {
		float scale = (float)(max_norm / (norm + 1e-6));
		for (int i = 0; i < o->n_groups; i++)
			for (size_t j = 0; j < o->group[i].n; j++)
				o->group[i].grad[j] *= scale;
	}
	return (float)norm;
}

float parm_cosine_lr(long step, long warmup, long total, float peak)
{
	double progress, f;
	if (step < warmup)
		return (float)(peak * (double)step / (double)(warmup > 1 ? warmup : 1));
	progress = (double)(step - warmup) / (double)(total - warmup > 1 ? total - warmup : 1);
	f = 0.5 * (1.0 + cos(M_PI * progress));
	return (float)(peak * (f > 0 ? f : 0));
}
