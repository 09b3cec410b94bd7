/* arm_train.c - moving PBLoRA adapters between a trainer (train.h) and an
 * ARM file (arm.h): both carve A, B, W1, W2 with pblora_carve, so an
 * adapter copies as four arrays once its shape is checked. */
#include "trainer.h"

#include <string.h>

#include "util.h"

static int same_shape(const parm_pblora *a, const parm_pblora *b)
{
	return a->in == b->in && a->out == b->out && a->k == b->k && a->r1 == b->r1 &&
	       a->r2 == b->r2;
}

static void copy_adapter(parm_pblora *dst, const parm_pblora *src)
{
	int r = src->r1 + src->r2;
	memcpy(dst->A, src->A, sizeof(float) * (size_t)r * (size_t)src->in);
	memcpy(dst->B, src->B, sizeof(float) * (size_t)src->out * (size_t)r);
	memcpy(dst->W1, src->W1, sizeof(float) * (size_t)src->r1 * (size_t)src->r1);
	memcpy(dst->W2, src->W2, sizeof(float) * (size_t)src->k * (size_t)src->r2 * (size_t)src->r2);
}

/* Copy every adapter one way (to_arm) or the other, checking that both
 * sides adapt the same matrices with the same shapes. */
static int transfer(parm_arm *arm, parm_trainer *t, int to_arm)
{
	int L = arm->backbone->cfg.n_layers;
	for (int l = 0; l < L; l++)
		for (int g = 0; g < PARM_N_TARGETS; g++) {
			parm_pblora *pa = parm_arm_adapter(arm, l, (enum parm_target)g);
			parm_pblora *pt = parm_train_adapter(t, l, g);
			if (!pa != !pt || (pa && !same_shape(pa, pt)))
				return parm_fail("ARM and trainer adapters differ at layer %d, %s",
						 l, parm_target_name((enum parm_target)g));
			if (pa)
				copy_adapter(to_arm ? pa : pt, to_arm ? pt : pa);
		}
	return 0;
}

int parm_arm_from_trainer(parm_arm *arm, parm_trainer *t)
{
	return transfer(arm, t, 1);
}

int parm_trainer_from_arm(parm_trainer *t, const parm_arm *arm)
{
	return transfer((parm_arm *)arm, t, 0);
}

void parm_adapter_opts_of_arm(parm_adapter_opts *o, const parm_arm *arm)
{
	parm_adapter_opts_default(o, arm->k);
	o->r1 = arm->r1;
	o->r2 = arm->r2;
	o->lora_alpha = arm->lora_alpha;
	o->dropout = 0;
	o->targets = 0;
	for (int i = 0; i < arm->n_targets; i++)
		o->targets |= 1u << arm->targets[i];
}
