/* arm_train.c - a trainer's adapter options from an ARM's (the trainer
 * then works on the ARM's own adapters: parm_train_new_on_arm). */
#include "trainer.h"

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
