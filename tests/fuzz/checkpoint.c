/* checkpoint.c - fuzz the checkpoint reader: parm_ckpt_read on the input
 * through fmemopen; a loaded checkpoint's arrays are read end to end. */
#include "fuzz.h"
#include <parm/trainer.h>

#include <stdio.h>
#include <unistd.h>

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parm_ckpt c;
	/* fmemopen refuses a size of 0; an empty file is fuzz_memfd's job */
	FILE *f = size ? fmemopen((void *)data, size, "rb") : fdopen(dup(fuzz_memfd(data, 0)), "rb");
	if (!f)
		return 0;
	if (parm_ckpt_read(f, "fuzz.ckpt", &c) == 0) {
		for (size_t i = 0; i < c.n_params; i++)
			sink += c.params[i] + c.m[i] + c.v[i];
		sink += (float)(c.step + c.epoch + c.pos + c.adam_step) + c.fingerprint[0];
		parm_ckpt_free(&c);
	}
	fclose(f);
	return 0;
}
