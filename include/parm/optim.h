/* optim.h - AdamW with PyTorch's semantics, global-norm gradient clipping
 * and HF's cosine schedule with linear warm-up.
 *
 * The official PARM code trains through the HF Trainer with its defaults:
 * torch AdamW (β1 0.9, β2 0.999, ε 1e-8), max_grad_norm 1.0, and weight
 * decay on every parameter but biases and norm weights.  PBLoRA trains only
 * A, B, W1 and W2, so there every parameter is decayed; for full LM training
 * the caller puts norm weights in a group with decay off.
 */
#ifndef PARM_OPTIM_H
#define PARM_OPTIM_H

#include <stddef.h>

/* One AdamW update of n parameters at step t (1-based, after increment),
 * exactly torch.optim.AdamW (single-tensor path):
 *   p -= lr*wd*p;  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;
 *   p -= lr/(1-β1^t) * m / (sqrt(v)/sqrt(1-β2^t) + ε).
 * param, m, v: [n], updated in place; grad: [n]. */
void parm_adamw_update(float *param, float *m, float *v, const float *grad, size_t n,
		  float lr, float beta1, float beta2, float eps, float wd, long t);
/* Plain-loop reference in double, the formula as written above. */
void parm_adamw_update_ref(float *param, float *m, float *v, const float *grad, size_t n,
		      float lr, float beta1, float beta2, float eps, float wd, long t);

typedef struct {
	float *param, *grad;    /* borrowed, [n] each */
	size_t n;
	int decay;              /* weight decay applies to this group */
} parm_param_group;

/* The optimiser state is m[n_total], v[n_total] (groups in the order they
 * were added, back to back) and step (updates done): a checkpoint saves and
 * restores exactly these. */
typedef struct {
	float beta1, beta2, eps, weight_decay;
	parm_param_group *group;
	int n_groups;
	float *m, *v;
	size_t n_total;
	long step;
} parm_adamw;

/* Torch's defaults for betas and eps; weight_decay as given. */
void parm_adamw_init(parm_adamw *o, float weight_decay);
/* Add a group (before the first step: m and v grow to fit, zeroed). */
void parm_adamw_add(parm_adamw *o, float *param, float *grad, size_t n, int decay);
void parm_adamw_free(parm_adamw *o);
void parm_adamw_zero_grad(parm_adamw *o);
/* step++ then update every group with learning rate lr. */
void parm_adamw_step(parm_adamw *o, float lr);

/* Global L2 norm of all groups' gradients, and if it is over max_norm
 * (> 0) scale them by max_norm / (norm + 1e-6), as torch's
 * clip_grad_norm_.  Returns the norm before clipping. */
float parm_clip_grad_norm(parm_adamw *o, float max_norm);
/* The norm of a set of arrays, for callers without an optimiser. */
double parm_grad_norm(const parm_adamw *o);

/* HF get_cosine_schedule_with_warmup: the learning rate for the update
 * that follows `step` completed updates (0-based, so the first update of a
 * warm-up uses 0): peak*step/warmup while step < warmup, then
 * peak * 0.5 * (1 + cos(pi * (step-warmup)/(total-warmup))), floored at 0. */
float parm_cosine_lr(long step, long warmup, long total, float peak);

#endif
