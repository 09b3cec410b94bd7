/* test_safetensors - the safetensors reader and writer: a written file
 * reads back to the values (f32 exactly, bf16 as rounded), f16 and bf16
 * decode known bit patterns, and every malformed file is one error naming
 * the file and the problem. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "quant_dot.h"
#include <parm/safetensors.h>
#include "tap.h"
#include <parm/util.h>

static char tmpdir[] = "/tmp/parm-st-XXXXXX";
static char path[256];

static void test_round_trip(void)
{
	float a[6] = { 1, -2.5f, 3.25f, 0, 1e-3f, 7 }, b[3] = { 0.1f, -0.2f, 0.3f };
	parm_st_out out[3] = {
		{ "layers.0.q_proj.pblora_A", PARM_ST_F32, 2, { 2, 3 }, a },
		{ "layers.0.q_proj.pblora_W2", PARM_ST_BF16, 1, { 3 }, b },
		{ "empty", PARM_ST_F32, 2, { 0, 4 }, a },
	};
	ok(parm_st_write(path, out, 3) == 0, "write 3 tensors (f32, bf16, empty)");
	parm_safetensors *st = parm_st_open(path);
	if (!ok(st != NULL, "read them back%s%s", st ? "" : ": ", st ? "" : parm_error()))
		return;
	const parm_st_tensor *ta = parm_st_find(st, "layers.0.q_proj.pblora_A");
	const parm_st_tensor *tb = parm_st_find(st, "layers.0.q_proj.pblora_W2");
	ok(parm_st_count(st) == 3 && ta && tb && parm_st_find(st, "empty") &&
	   !parm_st_find(st, "nope"), "3 tensors by name, in file order first %s",
	   parm_st_count(st) ? parm_st_at(st, 0)->name : "-");
	float got[6];
	int same = ta && ta->dtype == PARM_ST_F32 && ta->n_dims == 2 && ta->shape[0] == 2 &&
		   ta->shape[1] == 3 && ta->numel == 6;
	if (same) {
		parm_st_to_f32(ta, got);
		same = !memcmp(got, a, sizeof a);
	}
	ok(same, "f32: shape [2, 3] and the values exactly");
	same = tb && tb->dtype == PARM_ST_BF16 && tb->numel == 3;
	for (int i = 0; same && i < 3; i++) {
		parm_st_to_f32(tb, got);
		same = got[i] == parm_bf16_to_f32(parm_f32_to_bf16(b[i]));
	}
	ok(same, "bf16: the values rounded to nearest even");
	parm_st_close(st);
}

/* Write raw bytes: an 8-byte length, a header text, then data. */
static void write_raw(const char *header, long len_field, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	uint8_t len[8];
	size_t hl = strlen(header);
	if (len_field < 0)
		len_field = (long)hl;
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)((unsigned long)len_field >> (8 * i));
	fwrite(len, 1, 8, f);
	fwrite(header, 1, hl, f);
	fwrite(data, 1, n, f);
	fclose(f);
}

static void test_half_patterns(void)
{
	uint16_t h[3] = { 0x3C00, 0xC000, 0x7BFF }, bf[2] = { 0x3F80, 0xC0A0 };
	uint8_t data[10];
	memcpy(data, h, 6);
	memcpy(data + 6, bf, 4);
	write_raw("{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
		  "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]},"
		  "\"__metadata__\":{\"format\":\"pt\"}}", -1, data, 10);
	parm_safetensors *st = parm_st_open(path);
	float f[3] = { 0 }, g[2] = { 0 };
	if (st && parm_st_find(st, "h") && parm_st_find(st, "b")) {
		parm_st_to_f32(parm_st_find(st, "h"), f);
		parm_st_to_f32(parm_st_find(st, "b"), g);
	}
	ok(st && parm_st_count(st) == 2 && f[0] == 1 && f[1] == -2 && f[2] == 65504 && g[0] == 1 &&
	   g[1] == -5, "f16 0x3C00 0xC000 0x7BFF = 1 -2 65504, bf16 0x3F80 0xC0A0 = 1 -5, "
	   "__metadata__ skipped");
	parm_st_close(st);
}

/* A malformed file: NULL, and the one message names the file and says what. */
static void bad(const char *what, const char *header, long len_field, size_t data_bytes,
		const char *expect)
{
	static uint8_t zeros[64];
	write_raw(header, len_field, zeros, data_bytes);
	parm_safetensors *st = parm_st_open(path);
	const char *e = st ? "" : parm_error();
	ok(!st && strstr(e, path) && strstr(e, expect) && !strchr(e, '\n'), "%s: %s", what,
	   st ? "accepted" : e);
	parm_st_close(st);
}

static void test_bad_files(void)
{
	FILE *f = fopen(path, "wb");
	fwrite("abc", 1, 3, f);
	fclose(f);
	parm_safetensors *st = parm_st_open(path);
	ok(!st && strstr(parm_error(), "not a safetensors file"), "3 bytes: %s",
	   st ? "accepted" : parm_error());
	parm_st_close(st);
	bad("header longer than the file", "{}", 1000, 0, "header of 1000 bytes");
	bad("header not JSON", "{\"a\":", -1, 0, "header is not valid JSON");
	bad("header a JSON array", "[1, 2]", -1, 0, "not a JSON object");
	bad("unknown dtype", "{\"t\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", -1, 8,
	    "tensor 't': no dtype parm reads");
	bad("negative size", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, 4,
	    "shape is not a list of sizes");
	bad("offsets outside the data", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
	    -1, 8, "outside the 8 bytes of data");
	bad("size unlike the shape", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
	    -1, 8, "8 bytes for 3 F32 elements");
	bad("offsets not a pair", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", -1, 4,
	    "data_offsets is not [begin, end]");
	bad("overlapping tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
	    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", -1, 16,
	    "tensors 'a' and 'b' overlap");
	bad("a name twice", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8,
	    "header is not valid JSON: duplicate object key");
	st = parm_st_open(tmpdir);
	ok(!st && strstr(parm_error(), tmpdir), "a directory: %s", st ? "accepted" : parm_error());
	parm_st_close(st);
}

int main(void)
{
	char cmd[300];
	if (!mkdtemp(tmpdir))
		return perror("mkdtemp"), 1;
	snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmpdir);
	test_round_trip();
	test_half_patterns();
	test_bad_files();
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", tmpdir);
	return tap_done();
}
