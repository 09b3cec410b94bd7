/* arm_train.c - what a trainer or an evaluation takes from an ARM: its
 * adapter options (the trainer then works on the ARM's own adapters:
 * parm_train_new_on_arm) and the label fields it learnt its objectives
 * from. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <parm/trainer.h>
#include <parm/util.h>

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

void parm_arm_record_labels(parm_arm *arm, const parm_objectives *o)
{
	char *buf = parm_xstrdup("");
	for (int i = 0; i < o->k; i++) {
		char *spec = parm_objective_spec(&o->obj[i]);
		buf = parm_xrealloc(buf, strlen(buf) + strlen(spec) + 2);
		strcat(strcat(buf, i ? "\n" : ""), spec);
		free(spec);
	}
	parm_arm_set_info(arm, "labels", buf);
	free(buf);
}

int parm_arm_labels(const parm_arm *arm, parm_objectives *o)
{
	const char *rec = parm_arm_get_info(arm, "labels");
	memset(o, 0, sizeof *o);
	if (!rec) {             /* the defaults, those of them the ARM has */
		parm_objectives def = { 0 };
		parm_objectives_default(&def);
		for (int i = 0; i < def.k; i++)
			if (parm_arm_objective_index(arm, def.obj[i].name) >= 0) {
				char spec[128];
				snprintf(spec, sizeof spec, "%s=%s", def.obj[i].name, def.obj[i].field);
				parm_objectives_add(o, spec);
			}
		parm_objectives_free(&def);
		return 0;
	}
	char *copy = parm_xstrdup(rec), *save = NULL;
	for (char *spec = strtok_r(copy, "\n", &save); spec; spec = strtok_r(NULL, "\n", &save))
		if (parm_objectives_add(o, spec) < 0) {
			parm_objectives_free(o);
			free(copy);
			return parm_failc(parm_errcode(), "%s: its recorded label fields: %s", arm->path, parm_error());
		}
	free(copy);
	return 0;
}
