/* jsonl.c - fuzz the JSONL / dataset readers: the input is a data file
 * (plain, compressed or an archive: libarchive decides), read one of four
 * ways, picked by its length (mutations that change it visit them all):
 *   0 from memory (parm_input_open_mem) as JSONL records;
 *   1 from memory as lines, then the rest slurped;
 *   2 as a path (a memfd) by parm_pairs_load, both as PKU-SafeRLHF records
 *     and as a chosen/rejected file objective, then tokenised;
 *   3 by parm_lm_load as a JSONL corpus, packed or truncated.
 * Bad records are skipped (not strict), as the tools' default. */
#include "fuzz.h"
#include <parm/dataset.h>
#include "tok_common.h"
#include <parm/util.h>

#include <stdio.h>

#define MAX_TOKENIZED 4096      /* inputs larger are read, not tokenised */

static volatile uint64_t sink;

static int on_record(void *ctx, json_t *obj, const char *origin)
{
	sink += json_object_size(obj) + (uint8_t)origin[0];
	return 0;
}

static void read_records(const uint8_t *data, size_t size)
{
	parm_badrecs bad = { 0 };
	parm_input *in = parm_input_open_mem(data, size, "fuzz.jsonl");
	if (!in)
		return;
	while (parm_input_next_member(in) > 0 && parm_input_jsonl(in, &bad, on_record, NULL) >= 0)
		;
	parm_input_close(in);
}

static void read_lines(const uint8_t *data, size_t size)
{
	const char *line;
	size_t len;
	char *rest;
	parm_input *in = parm_input_open_mem(data, size, "fuzz.txt");
	if (!in)
		return;
	while (parm_input_next_member(in) > 0) {
		for (int i = 0; i < 3 && parm_input_getline(in, &line, &len) > 0; i++)
			sink += len + (uint8_t)line[len];
		if (parm_input_slurp(in, &rest, &len) == 0)
			free(rest);
	}
	parm_input_close(in);
}

static void load_pairs(const char *path, const parm_tokenizer *t, int tokenize)
{
	static parm_objectives o;
	static char spec[128];
	parm_badrecs bad = { 0 };
	parm_pairs p;
	if (!o.k) {
		parm_objectives_default(&o);
		snprintf(spec, sizeof spec, "hh=@%s", path);
		if (parm_objectives_add(&o, spec) < 0)
			fuzz_abort(parm_error());
	}
	if (parm_pairs_load(&p, &o, &path, 1, &bad) < 0)
		return;
	parm_pair_opts po = { .max_len = 64, .overlong = PARM_OVERLONG_TRUNCATE };
	if (tokenize)
		parm_pairs_tokenize(&p, t, &po);
	parm_pairs_free(&p);
}

static void load_lm(const char *path, const parm_tokenizer *t, int layout)
{
	parm_badrecs bad = { 0 };
	parm_lm_opts o = { .max_len = 16, .layout = layout, .format = PARM_DOC_JSONL };
	parm_lm_data d;
	if (parm_lm_load(&d, t, &path, 1, &o, &bad) == 0)
		parm_lm_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static parm_tokenizer *t;
	if (!t)
		t = fuzz_load_tokenizer("ggml-vocab-llama-spm.gguf");
	switch (size % 4) {
	case 0:
		read_records(data, size);
		break;
	case 1:
		read_lines(data, size);
		break;
	case 2:
		fuzz_memfd(data, size);
		load_pairs(fuzz_memfd_path(), t, size <= MAX_TOKENIZED);
		break;
	default:
		fuzz_memfd(data, size);
		if (size <= MAX_TOKENIZED)
			load_lm(fuzz_memfd_path(), t, size / 4 % 2 ? PARM_LM_PACK : PARM_LM_TRUNCATE);
	}
	return 0;
}
