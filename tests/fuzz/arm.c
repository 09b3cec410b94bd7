/* arm.c - fuzz the ARM reader: the input is an ARM GGUF (metadata and
 * PBLoRA tensor descriptions), read from memory onto a fixed tiny backbone
 * (fuzz.h) the seeds are made for; a loaded ARM is used once. */
#include "fuzz.h"
#include "arm_internal.h"
#include <parm/gguf.h>

#include <stdlib.h>

static volatile float sink;

static void use(const parm_arm *a)
{
	float *alpha = calloc(a->k, sizeof *alpha);
	alpha[0] = 1;
	for (int i = 0; i < a->k; i++)
		sink += (float)parm_arm_objective_index(a, a->objectives[i]);
	float *w = parm_arm_merged_weight(a, 0, a->targets[0], alpha);
	sink += w ? w[0] : 0;
	free(w);
	free(alpha);
	sink += parm_arm_get_info(a, "steps") != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parm_model *backbone = fuzz_backbone();
	parm_gguf *g = parm_gguf_open_mem(size ? data : NULL, size, "fuzz-arm.gguf");
	if (!g)
		return 0;
	parm_arm *a = parm_arm_from_gguf(g, backbone);
	if (a) {
		use(a);
		a->backbone = NULL;     /* the harness's, for every input */
		parm_arm_free(a);
	}
	parm_gguf_close(g);
	return 0;
}
