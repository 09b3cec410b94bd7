/* arch.c - the architecture table (arch.h), after llama.cpp's loaders in
 * src/models/{llama,qwen2,qwen3,phi3}.cpp: what each may carry is what
 * llama.cpp creates for it, so a file it loads loads here and a part it
 * would not read is refused here too. */
#include <parm/arch.h>

#include <string.h>

static const parm_arch archs[PARM_N_ARCH] = {
	[PARM_ARCH_LLAMA] = { "llama", PARM_PART_QKV_BIAS | PARM_PART_O_BIAS | PARM_PART_FFN_BIAS |
				       PARM_PART_FUSED_QKV | PARM_PART_ROPE_FREQS, 0, 0 },
	[PARM_ARCH_QWEN2] = { "qwen2", PARM_PART_QKV_BIAS | PARM_PART_FUSED_QKV |
				       PARM_PART_OUTPUT_BIAS, 0, 1 },
	[PARM_ARCH_QWEN3] = { "qwen3", PARM_PART_QKV_BIAS | PARM_PART_FUSED_QKV | PARM_PART_QK_NORM,
			      PARM_PART_QK_NORM, 1 },
	[PARM_ARCH_PHI3] = { "phi3", PARM_PART_QKV_BIAS | PARM_PART_FUSED_QKV | PARM_PART_FUSED_UP |
				     PARM_PART_ROPE_LONG, PARM_PART_FUSED_UP, 1 },
};

const parm_arch *parm_arch_at(int id)
{
	return id >= 0 && id < PARM_N_ARCH ? &archs[id] : NULL;
}

int parm_arch_find(const char *name, size_t len)
{
	for (int i = 0; i < PARM_N_ARCH; i++)
		if (strlen(archs[i].name) == len && !memcmp(archs[i].name, name, len))
			return i;
	return -1;
}

const char *parm_arch_names(void)
{
	return "llama, qwen2, qwen3, phi3";
}
