/* test_gguf.c - write every value and tensor type and read it back; read
 * llama.cpp's vocab files; truncate and corrupt a file every way we can
 * think of and check the reader fails with the file's name, never a crash. */
#include <parm/gguf.h>
#include "quant_dot.h"
#include "tap.h"
#include <parm/util.h>

#include <fcntl.h>
#include <pthread.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];
	snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
	return p;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = fwrite(p, 1, n, f);
	return fclose(f) || w != n ? -1 : 0;
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*n = ftell(f);
	rewind(f);
	uint8_t *p = parm_xmalloc(*n);
	if (fread(p, 1, *n, f) != *n)
		*n = 0;
	fclose(f);
	return p;
}

/* parm_gguf_open(path) fails and its message names the file and holds `what`. */
static int fails_with(const char *path, const char *what)
{
	parm_gguf *g = parm_gguf_open(path);
	if (g) {
		parm_gguf_close(g);
		return 0;
	}
	return strstr(parm_error(), path) && (!what || strstr(parm_error(), what));
}

/* The sample file: every value type, arrays, and a tensor of every type. */

static const char *const sample_strs[] = { "hello", "", "▁wörld", "a\nb" };
static const int64_t sample_ne[][2] = { { 64, 3 }, { 32, 2 }, { 96, 1 }, { 33, 5 }, { 7, 1 } };
static const enum parm_ggml_type sample_types[] = { PARM_GGML_Q8_0, PARM_GGML_Q4_0, PARM_GGML_F16, PARM_GGML_BF16, PARM_GGML_F32 };
static const char *const sample_names[] = { "blk.0.attn_q.weight", "q4", "half", "brain", "plain" };
#define N_SAMPLE_TENSORS 5

static float sample_value(int t, int64_t i)
{
	return sinf(i * 0.37f + t) * (1 + t);
}

static void *sample_tensor_data(int t)
{
	int64_t n = sample_ne[t][0] * sample_ne[t][1];
	float *f = parm_xmalloc(n * sizeof *f);
	for (int64_t i = 0; i < n; i++)
		f[i] = sample_value(t, i);
	void *q = parm_xmalloc(parm_ggml_row_bytes(sample_types[t], n) + 1);
	parm_quant_row(q, f, sample_types[t], n);
	free(f);
	return q;
}

static void set_sample_values(parm_gguf_writer *w)
{
	uint8_t u8 = 250; int8_t i8 = -100; uint16_t u16 = 65000; int16_t i16 = -32000;
	int64_t i64 = -5000000000LL; double f64 = 2.718281828459045; uint64_t big = 1ULL << 63;
	parm_gguf_w_set_val(w, "v.u8", PARM_GGUF_U8, &u8);
	parm_gguf_w_set_val(w, "v.i8", PARM_GGUF_I8, &i8);
	parm_gguf_w_set_val(w, "v.u16", PARM_GGUF_U16, &u16);
	parm_gguf_w_set_val(w, "v.i16", PARM_GGUF_I16, &i16);
	parm_gguf_w_set_u32(w, "v.u32", 4000000000u);
	parm_gguf_w_set_i32(w, "v.i32", -2000000000);
	parm_gguf_w_set_f32(w, "v.f32", 0.25f);
	parm_gguf_w_set_bool(w, "v.bool", 1);
	parm_gguf_w_set_str(w, "v.str", "llama");
	parm_gguf_w_set_u64(w, "v.u64", 1ULL << 40);
	parm_gguf_w_set_val(w, "v.i64", PARM_GGUF_I64, &i64);
	parm_gguf_w_set_val(w, "v.f64", PARM_GGUF_F64, &f64);
	parm_gguf_w_set_u64(w, "v.big", big);
	parm_gguf_w_set_u32(w, "v.replaced", 1);
	parm_gguf_w_set_u32(w, "v.replaced", 2);     /* set twice: the second value wins */
}

static void set_sample_arrays(parm_gguf_writer *w)
{
	int32_t ints[5] = { -1, 0, 1, INT32_MAX, INT32_MIN };
	float floats[3] = { 1.5f, -0.0f, 1e30f };
	double doubles[2] = { 1e300, -1e-300 };
	uint8_t bools[3] = { 1, 0, 1 };
	uint64_t u64s[2] = { 0, UINT64_MAX };
	int16_t i16s[2] = { -7, 7 };
	size_t lens[4] = { 5, 0, strlen(sample_strs[2]), 3 };
	parm_gguf_w_set_arr(w, "a.i32", PARM_GGUF_I32, ints, 5);
	parm_gguf_w_set_arr(w, "a.f32", PARM_GGUF_F32, floats, 3);
	parm_gguf_w_set_arr(w, "a.f64", PARM_GGUF_F64, doubles, 2);
	parm_gguf_w_set_arr(w, "a.bool", PARM_GGUF_BOOL, bools, 3);
	parm_gguf_w_set_arr(w, "a.u64", PARM_GGUF_U64, u64s, 2);
	parm_gguf_w_set_arr(w, "a.i16", PARM_GGUF_I16, i16s, 2);
	parm_gguf_w_set_arr(w, "a.empty", PARM_GGUF_U8, NULL, 0);
	parm_gguf_w_set_arr_str(w, "a.str", sample_strs, lens, 4);
	parm_gguf_w_set_arr_str(w, "a.str_nolens", sample_strs, NULL, 4);
}

static int write_sample(const char *path)
{
	parm_gguf_writer *w = parm_gguf_w_new();
	void *data[N_SAMPLE_TENSORS];
	set_sample_values(w);
	set_sample_arrays(w);
	for (int t = 0; t < N_SAMPLE_TENSORS; t++) {
		data[t] = sample_tensor_data(t);
		int n_dims = sample_ne[t][1] > 1 ? 2 : 1;
		if (t % 2)
			parm_gguf_w_tensor(w, sample_names[t], sample_types[t], n_dims, sample_ne[t], data[t]);
		else
			parm_gguf_w_tensor_ref(w, sample_names[t], sample_types[t], n_dims, sample_ne[t], data[t]);
	}
	int rc = parm_gguf_w_save(w, path);
	parm_gguf_w_free(w);
	for (int t = 0; t < N_SAMPLE_TENSORS; t++)
		free(data[t]);
	return rc;
}

/* Reading the sample back. */

static int int_is(const parm_gguf *g, const char *key, int64_t want)
{
	int64_t v = 0;
	return parm_gguf_get_int(g, key, &v) == 0 && v == want;
}

static void check_scalars(const parm_gguf *g)
{
	double d;
	int b;
	const char *s;
	size_t len;
	ok(int_is(g, "v.u8", 250) && int_is(g, "v.i8", -100) && int_is(g, "v.u16", 65000)
	   && int_is(g, "v.i16", -32000), "u8, i8, u16, i16 read back as integers");
	ok(int_is(g, "v.u32", 4000000000LL) && int_is(g, "v.i32", -2000000000)
	   && int_is(g, "v.u64", 1LL << 40) && int_is(g, "v.i64", -5000000000LL),
	   "u32, i32, u64, i64 read back as integers");
	ok(parm_gguf_get_float(g, "v.f32", &d) == 0 && d == 0.25, "f32 reads back");
	ok(parm_gguf_get_float(g, "v.f64", &d) == 0 && d == 2.718281828459045, "f64 reads back exactly");
	ok(parm_gguf_get_bool(g, "v.bool", &b) == 0 && b == 1, "bool reads back");
	ok(parm_gguf_get_str(g, "v.str", &s, &len) == 0 && len == 5 && !strcmp(s, "llama"), "string reads back");
	ok(int_is(g, "v.replaced", 2), "a key set twice keeps the second value");
	ok(parm_gguf_find_key(g, "v.replaced") == 13 && parm_gguf_n_kv(g) == 23, "... in its first place (%d kvs)", parm_gguf_n_kv(g));
	ok(parm_gguf_kv_type(g, parm_gguf_find_key(g, "v.i16")) == PARM_GGUF_I16, "parm_gguf_kv_type");
	ok(!strcmp(parm_gguf_kv_key(g, 0), "v.u8") && parm_gguf_kv_key(g, 99) == NULL, "parm_gguf_kv_key in order, NULL past the end");
}

static void check_getter_errors(const parm_gguf *g)
{
	int64_t v;
	double d;
	int b;
	const char *s;
	ok(parm_gguf_get_int(g, "v.big", &v) < 0 && strstr(parm_error(), "v.big"), "u64 above INT64_MAX fails: %s", parm_error());
	ok(parm_gguf_get_int(g, "v.f32", &v) < 0 && strstr(parm_error(), "'v.f32' is f32, expected an integer"),
	   "int getter refuses a float: %s", parm_error());
	ok(parm_gguf_get_int(g, "v.bool", &v) < 0, "int getter refuses a bool");
	ok(parm_gguf_get_float(g, "v.u32", &d) < 0 && strstr(parm_error(), "expected a float"), "float getter refuses an int: %s", parm_error());
	ok(parm_gguf_get_bool(g, "v.u8", &b) < 0 && strstr(parm_error(), "expected a bool"), "bool getter refuses an int");
	ok(parm_gguf_get_str(g, "a.str", &s, NULL) < 0 && strstr(parm_error(), "is array, expected a string"), "str getter refuses an array: %s", parm_error());
	ok(parm_gguf_get_int(g, "nope", &v) < 0 && strstr(parm_error(), "'nope' not found")
	   && strstr(parm_error(), parm_gguf_path(g)), "missing key: %s", parm_error());
	ok(parm_gguf_find_key(g, "nope") == -1, "parm_gguf_find_key of a missing key is -1");
}

static void check_arrays(const parm_gguf *g)
{
	enum parm_gguf_vtype et;
	uint64_t n;
	int64_t v;
	double d;
	const char *s;
	size_t len;
	int good = 1;
	ok(parm_gguf_get_arr(g, "a.i32", &et, &n) == 0 && et == PARM_GGUF_I32 && n == 5, "array type and count");
	ok(parm_gguf_arr_int(g, "a.i32", 3, &v) == 0 && v == INT32_MAX && parm_gguf_arr_int(g, "a.i32", 4, &v) == 0
	   && v == INT32_MIN, "array ints");
	ok(parm_gguf_arr_int(g, "a.i32", 5, &v) < 0 && strstr(parm_error(), "out of range"), "index past the end: %s", parm_error());
	ok(parm_gguf_arr_float(g, "a.f32", 2, &d) == 0 && d == 1e30f && parm_gguf_arr_float(g, "a.f64", 1, &d) == 0
	   && d == -1e-300, "array floats (f32 and f64)");
	ok(parm_gguf_arr_int(g, "a.u64", 1, &v) < 0 && parm_gguf_arr_int(g, "a.u64", 0, &v) == 0 && v == 0, "u64 array range-checked");
	ok(parm_gguf_arr_int(g, "a.i16", 0, &v) == 0 && v == -7, "i16 array");
	ok(parm_gguf_get_arr(g, "a.bool", &et, &n) == 0 && et == PARM_GGUF_BOOL && n == 3, "bool array");
	ok(parm_gguf_get_arr(g, "a.empty", &et, &n) == 0 && et == PARM_GGUF_U8 && n == 0, "empty array");
	ok(parm_gguf_arr_float(g, "a.i32", 0, &d) < 0 && parm_gguf_arr_str(g, "a.i32", 0, &s, &len) < 0
	   && parm_gguf_arr_int(g, "a.str", 0, &v) < 0, "element type mismatches fail");
	for (int i = 0; i < 4; i++)
		good &= parm_gguf_arr_str(g, "a.str", i, &s, &len) == 0 && len == strlen(sample_strs[i])
			&& !strcmp(s, sample_strs[i]);
	for (int i = 0; i < 4; i++)
		good &= parm_gguf_arr_str(g, "a.str_nolens", i, &s, &len) == 0 && !strcmp(s, sample_strs[i]);
	ok(good, "arrays of strings, including an empty one, read back NUL-terminated");
	ok(parm_gguf_get_arr(g, "v.u8", &et, &n) < 0, "get_arr of a scalar fails");
}

static int tensor_matches(const parm_gguf_tensor *t, int i)
{
	int64_t n = sample_ne[i][0] * sample_ne[i][1];
	void *want = sample_tensor_data(i);
	int same = t && t->type == sample_types[i] && t->ne[0] == sample_ne[i][0]
		&& t->ne[1] == sample_ne[i][1] && t->ne[2] == 1 && t->n_elements == n
		&& t->nbytes == parm_ggml_row_bytes(t->type, n) && !memcmp(t->data, want, t->nbytes)
		&& (uintptr_t)t->data % 32 == 0;
	free(want);
	return same;
}

static void check_tensors(const parm_gguf *g)
{
	int good = parm_gguf_n_tensors(g) == N_SAMPLE_TENSORS;
	for (int i = 0; good && i < N_SAMPLE_TENSORS; i++)
		good = tensor_matches(parm_gguf_tensor_at(g, i), i) && !strcmp(parm_gguf_tensor_at(g, i)->name, sample_names[i]);
	ok(good, "tensors of every type read back in order, aligned, with the same bytes");
	ok(parm_gguf_find_tensor(g, "q4") == parm_gguf_tensor_at(g, 1) && !parm_gguf_find_tensor(g, "none")
	   && !parm_gguf_tensor_at(g, 5), "parm_gguf_find_tensor, parm_gguf_tensor_at bounds");
	const parm_gguf_tensor *t = parm_gguf_find_tensor(g, "q4");
	float out[64];
	parm_dequant_row(out, t->data, t->type, 32);
	ok(fabsf(out[5] - sample_value(1, 5)) < 0.3f, "a q4_0 row dequantises near the original");
	ok(parm_gguf_tensor_at(g, 1)->n_dims == 2 && parm_gguf_tensor_at(g, 2)->n_dims == 1, "n_dims kept");
}

static void test_round_trip(void)
{
	const char *path = tmp_path("sample.gguf");
	ok(write_sample(path) == 0, "write the sample: %s", parm_error());
	ok(access(tmp_path("sample.gguf.tmp"), F_OK) < 0, "no .tmp file left behind");
	parm_gguf *g = parm_gguf_open(path);
	if (!ok(g != NULL, "open the sample: %s", g ? "" : parm_error()))
		return;
	ok(!strcmp(parm_gguf_path(g), path), "parm_gguf_path");
	check_scalars(g);
	check_getter_errors(g);
	check_arrays(g);
	check_tensors(g);
	parm_gguf_close(g);
}

/* Writer errors and alignment. */

static void test_writer_errors(void)
{
	float x[64] = { 0 };
	int64_t ne[2] = { 33, 1 };
	char long_name[80];
	struct { const char *what; void (*add)(parm_gguf_writer *, const char *, enum parm_ggml_type, int, const int64_t *, const void *);
		 const char *name; enum parm_ggml_type type; int n_dims; } bad[] = {
		{ "not a multiple", parm_gguf_w_tensor, "odd", PARM_GGML_Q8_0, 1 },
		{ "dimensions", parm_gguf_w_tensor, "dims", PARM_GGML_F32, 5 },
		{ "longer than", parm_gguf_w_tensor_ref, long_name, PARM_GGML_F32, 1 },
		{ "unknown tensor type 5", parm_gguf_w_tensor, "k", (enum parm_ggml_type)5, 1 },
	};
	memset(long_name, 'x', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = 0;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		parm_gguf_writer *w = parm_gguf_w_new();
		bad[i].add(w, bad[i].name, bad[i].type, bad[i].n_dims, ne, x);
		ok(parm_gguf_w_save(w, tmp_path("bad.gguf")) < 0 && strstr(parm_error(), bad[i].what)
		   && access(tmp_path("bad.gguf"), F_OK) < 0, "writer refuses: %s", parm_error());
		parm_gguf_w_free(w);
	}
	parm_gguf_writer *w = parm_gguf_w_new();
	parm_gguf_w_tensor(w, "t", PARM_GGML_F32, 1, ne, x);
	parm_gguf_w_tensor(w, "t", PARM_GGML_F32, 1, ne, x);
	ok(parm_gguf_w_save(w, tmp_path("dup.gguf")) < 0 && strstr(parm_error(), "duplicate"), "duplicate tensor: %s", parm_error());
	parm_gguf_w_free(w);
	w = parm_gguf_w_new();
	ok(parm_gguf_w_save(w, "/nonexistent-dir/x.gguf") < 0 && strstr(parm_error(), "x.gguf.tmp"),
	   "save into a missing directory: %s", parm_error());
	parm_gguf_w_set_u32(w, "general.alignment", 48);
	ok(parm_gguf_w_save(w, tmp_path("a48.gguf")) < 0 && strstr(parm_error(), "power of two"), "alignment 48 refused");
	parm_gguf_w_free(w);
}

static void test_alignment(void)
{
	float x[64];
	int64_t ne[3] = { 3, 1, 1 };
	for (int i = 0; i < 64; i++)
		x[i] = i;
	parm_gguf_writer *w = parm_gguf_w_new();
	parm_gguf_w_set_u32(w, "general.alignment", 256);
	parm_gguf_w_tensor(w, "a", PARM_GGML_F32, 1, ne, x);
	parm_gguf_w_tensor(w, "b", PARM_GGML_F32, 3, ne, x + 3);     /* 3 x 1 x 1 */
	ok(parm_gguf_w_save(w, tmp_path("a256.gguf")) == 0, "save with alignment 256");
	parm_gguf_w_free(w);
	parm_gguf *g = parm_gguf_open(tmp_path("a256.gguf"));
	const parm_gguf_tensor *a = g ? parm_gguf_find_tensor(g, "a") : NULL, *b = g ? parm_gguf_find_tensor(g, "b") : NULL;
	ok(a && b && (const char *)b->data - (const char *)a->data == 256 && (uintptr_t)a->data % 256 == 0
	   && ((const float *)b->data)[2] == 5, "general.alignment 256 honoured by writer and reader");
	ok(b && b->n_dims == 1 && b->ne[1] == 1 && b->n_elements == 3, "trailing dimensions of 1 dropped, as ggml does");
	parm_gguf_close(g);
}

/* llama.cpp's vocab files, and copying their tokenizer into a new file. */

static void check_vocab(const char *dir, const char *file, const char *model, uint64_t n_tokens)
{
	char path[4096];
	const char *s;
	uint64_t n = 0;
	snprintf(path, sizeof path, "%s/%s", dir, file);
	parm_gguf *g = parm_gguf_open(path);
	if (!ok(g != NULL, "open %s: %s", file, g ? "" : parm_error()))
		return;
	ok(parm_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL) == 0 && !strcmp(s, model),
	   "%s: tokenizer.ggml.model = %s", file, model);
	ok(parm_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n) == 0 && n == n_tokens,
	   "%s: %llu tokens", file, (unsigned long long)n);
	ok(parm_gguf_n_tensors(g) == 0, "%s: no tensors", file);
	parm_gguf_close(g);
}

static int same_tokenizer(const parm_gguf *a, const parm_gguf *b)
{
	uint64_t na, nb;
	const char *sa, *sb;
	size_t la, lb;
	double fa, fb;
	if (parm_gguf_get_arr(a, "tokenizer.ggml.tokens", NULL, &na) || parm_gguf_get_arr(b, "tokenizer.ggml.tokens", NULL, &nb) || na != nb)
		return 0;
	for (uint64_t i = 0; i < na; i++) {
		if (parm_gguf_arr_str(a, "tokenizer.ggml.tokens", i, &sa, &la) || parm_gguf_arr_str(b, "tokenizer.ggml.tokens", i, &sb, &lb)
		    || la != lb || memcmp(sa, sb, la))
			return 0;
		if (parm_gguf_arr_float(a, "tokenizer.ggml.scores", i, &fa) || parm_gguf_arr_float(b, "tokenizer.ggml.scores", i, &fb) || fa != fb)
			return 0;
	}
	return 1;
}

static void test_copy_vocab(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/ggml-vocab-llama-spm.gguf", dir);
	parm_gguf *v = parm_gguf_open(path);
	if (!ok(v != NULL, "open llama-spm for copying"))
		return;
	parm_gguf_writer *w = parm_gguf_w_new();
	int copied = 0, failed = 0;
	parm_gguf_w_set_str(w, "general.architecture", "llama");
	for (int i = 0; i < parm_gguf_n_kv(v); i++)
		if (!strncmp(parm_gguf_kv_key(v, i), "tokenizer.", 10))
			copied++, failed |= parm_gguf_w_copy_kv(w, v, parm_gguf_kv_key(v, i));
	ok(!failed && copied == 10, "copied %d tokenizer.* keys", copied);
	ok(parm_gguf_w_copy_kv(w, v, "no.such.key") < 0 && strstr(parm_error(), "no.such.key"), "copying a missing key fails");
	ok(parm_gguf_w_save(w, tmp_path("copy.gguf")) == 0, "save the copy");
	parm_gguf_w_free(w);
	parm_gguf *c = parm_gguf_open(tmp_path("copy.gguf"));
	int add_bos = 0;
	ok(c && same_tokenizer(v, c) && parm_gguf_get_bool(c, "tokenizer.ggml.add_bos_token", &add_bos) == 0 && add_bos,
	   "the copy has the same tokens, scores and flags");
	parm_gguf_close(c);
	parm_gguf_close(v);
}

static void test_vocab_fixtures(void)
{
	const char *dir = fixtures_dir();
	if (!dir) {
		skip("no fixtures: set PARM_FIXTURES or run make fixtures", "llama.cpp vocab files");
		return;
	}
	check_vocab(dir, "ggml-vocab-llama-spm.gguf", "llama", 32000);
	check_vocab(dir, "ggml-vocab-gpt-2.gguf", "gpt2", 50257);
	check_vocab(dir, "ggml-vocab-qwen2.gguf", "gpt2", 151936);
	test_copy_vocab(dir);
}

/* Bad files. */

static void test_not_gguf(void)
{
	const char *empty = tmp_path("empty.gguf"), *text = tmp_path("text.gguf");
	write_bytes(empty, "", 0);
	write_bytes(text, "hello, world\n", 13);
	ok(fails_with(empty, "empty file"), "empty file: %s", parm_error());
	ok(fails_with(text, "not a GGUF file (bad magic)"), "bad magic: %s", parm_error());
	ok(fails_with(tmpdir, "Is a directory"), "directory: %s", parm_error());
	ok(fails_with(tmp_path("missing.gguf"), "No such file"), "missing file: %s", parm_error());
	write_bytes(text, "GGU", 3);
	ok(fails_with(text, "bad magic"), "3-byte file: %s", parm_error());
}

/* parm_gguf_open_mem parses a buffer as parm_gguf_open parses the file; an empty one
 * (NULL, 0) is "empty file", not NULL + 0 (issue 9 item 5). */
static void test_open_mem(void)
{
	size_t n;
	uint8_t *file = read_bytes(tmp_path("sample.gguf"), &n);
	/* tensor data is used in place: the buffer's alignment is the data's */
	uint8_t *img = file ? aligned_alloc(64, (n + 63) / 64 * 64) : NULL;
	if (img)
		memcpy(img, file, n);
	free(file);
	parm_gguf *g = img ? parm_gguf_open_mem(img, n, "memory sample") : NULL;
	ok(g != NULL, "the sample opens from memory");
	if (g) {
		check_scalars(g);
		check_arrays(g);
		check_tensors(g);
		ok(!strcmp(parm_gguf_path(g), "memory sample"), "named as given");
		parm_gguf_close(g);
	}
	g = parm_gguf_open_mem(NULL, 0, "nothing");
	ok(!g && strstr(parm_error(), "nothing: empty file"), "empty buffer: %s", parm_error());
	g = img ? parm_gguf_open_mem(img, n / 2, "half") : NULL;
	ok(!g && strstr(parm_error(), "half: truncated"), "half a sample: %s", parm_error());
	free(img);
}

/* Patch `len` bytes at `at` in a copy of the sample and open it. */
static int patched_fails(const uint8_t *img, size_t n, size_t at, const void *val, size_t len, const char *what)
{
	uint8_t *copy = parm_xmemdup(img, n);
	const char *path = tmp_path("patched.gguf");
	memcpy(copy + at, val, len);
	write_bytes(path, copy, n);
	free(copy);
	return fails_with(path, what);
}

static size_t find(const uint8_t *img, size_t n, const char *s)
{
	const uint8_t *p = memmem(img, n, s, strlen(s));
	return p ? (size_t)(p - img) : 0;
}

static void test_patched_fields(const uint8_t *img, size_t n)
{
	uint64_t huge = UINT64_MAX, big = 1ULL << 40;
	uint32_t v1 = 1, v2 = 2, v_be = 0x03000000, t12 = 5, t_nested = PARM_GGUF_ARRAY, dims = 5, bad_vtype = 99;
	uint64_t off_unaligned = 4, off_far = 1ULL << 50;
	ok(patched_fails(img, n, 8, &huge, 8, "tensor count"), "huge tensor count: %s", parm_error());
	ok(patched_fails(img, n, 16, &big, 8, "kv count"), "huge kv count: %s", parm_error());
	ok(patched_fails(img, n, 4, &v1, 4, "version 1"), "GGUF v1 refused: %s", parm_error());
	ok(patched_fails(img, n, 4, &v_be, 4, "big-endian"), "big-endian refused: %s", parm_error());
	ok(!patched_fails(img, n, 4, &v2, 4, NULL), "the same file marked v2 opens");
	ok(patched_fails(img, n, 24, &huge, 8, "truncated in kv 0"), "huge key length: %s", parm_error());
	size_t key = find(img, n, "v.u8");
	ok(patched_fails(img, n, key + 4, &bad_vtype, 4, "bad value type 99"), "bad value type: %s", parm_error());
	size_t arr = find(img, n, "a.str_nolens") + 12 + 4;
	ok(patched_fails(img, n, arr, &t_nested, 4, "nested arrays"), "nested array: %s", parm_error());
	ok(patched_fails(img, n, arr + 4, &huge, 8, "truncated in kv"), "huge array count: %s", parm_error());
	ok(patched_fails(img, n, arr + 12, &big, 8, "truncated in kv"), "huge string length in an array: %s", parm_error());
	size_t ti = find(img, n, "blk.0.attn_q.weight") + 19;  /* n_dims, ne[2], type, offset */
	ok(patched_fails(img, n, ti, &dims, 4, "5 dimensions"), "5 dimensions: %s", parm_error());
	ok(patched_fails(img, n, ti + 4, &huge, 8, "too large"), "dimension above INT64_MAX: %s", parm_error());
	ok(patched_fails(img, n, ti + 4, &big, 8, "out of bounds"), "dimension past the data: %s", parm_error());
	ok(patched_fails(img, n, ti + 20, &t12, 4, "unknown tensor type 5 in 'blk.0.attn_q.weight'"),
	   "unsupported type: %s", parm_error());
	ok(patched_fails(img, n, ti + 24, &off_unaligned, 8, "not aligned"), "unaligned offset: %s", parm_error());
	ok(patched_fails(img, n, ti + 24, &off_far, 8, "tensor 'blk.0.attn_q.weight' data out of bounds"),
	   "offset past the end: %s", parm_error());
	int64_t odd = 33;
	ok(patched_fails(img, n, ti + 4, &odd, 8, "not a multiple"), "q8_0 row of 33: %s", parm_error());
	ok(patched_fails(img, n, find(img, n, "brain"), "plain", 5, "duplicate tensor 'plain'"), "duplicate tensor name: %s", parm_error());
	ok(patched_fails(img, n, find(img, n, "v.i8"), "v.u8", 4, "duplicate key 'v.u8'"), "duplicate key: %s", parm_error());
}

/* Where the data section starts, and where the last tensor's bytes end
 * (after that only padding: a cut there leaves a good file). */
static int data_bounds(const char *path, size_t *data_start, size_t *data_end)
{
	parm_gguf *g = parm_gguf_open(path);
	if (!g)
		return -1;
	const parm_gguf_tensor *first = parm_gguf_tensor_at(g, 0), *last = parm_gguf_tensor_at(g, parm_gguf_n_tensors(g) - 1);
	*data_start = parm_gguf_data_offset(g);
	*data_end = *data_start + ((const uint8_t *)last->data - (const uint8_t *)first->data) + last->nbytes;
	parm_gguf_close(g);
	return 0;
}

static void test_truncation(const uint8_t *img, size_t data_start, size_t data_end)
{
	const char *path = tmp_path("trunc.gguf");
	int bad = 0, tried = 0;
	size_t last = 0;
	/* every byte of the header, kvs, tensor infos and padding, then some of the data */
	for (size_t len = 0; len < data_end; len += len < data_start + 64 ? 1 : 97) {
		write_bytes(path, img, len);
		tried++;
		if (!fails_with(path, NULL)) {
			bad++;
			last = len;
		}
	}
	ok(bad == 0, "%d truncations before byte %zu all fail naming the file (%d did not, last at %zu)",
	   tried, data_end, bad, last);
	write_bytes(path, img, data_end);
	ok(!fails_with(path, NULL), "a cut in the last tensor's padding leaves a good file");
	write_bytes(path, img, data_start + 10);
	ok(fails_with(path, "data out of bounds"), "cut in the data: %s", parm_error());
	write_bytes(path, img, 30);
	ok(fails_with(path, "truncated in header (kv count 23"), "cut in the first key: %s", parm_error());
	write_bytes(path, img, 20);
	ok(fails_with(path, "truncated in header"), "cut in the header: %s", parm_error());
}

/* Random damage: the reader may accept or refuse, but must stay in bounds
 * (every tensor's bytes are touched, so valgrind would see a bad read). */
static void test_random_damage(const uint8_t *img, size_t n, size_t data_start)
{
	const char *path = tmp_path("fuzz.gguf");
	uint64_t state = 12345;
	int refused = 0, accepted = 0, unnamed = 0;
	uint8_t *copy = parm_xmalloc(n);
	for (int iter = 0; iter < 1500; iter++) {
		memcpy(copy, img, n);
		int flips = 1 + iter % 4;
		for (int k = 0; k < flips; k++) {
			state = state * 6364136223846793005ULL + 1442695040888963407ULL;
			size_t at = (state >> 33) % data_start;
			copy[at] = iter % 3 ? copy[at] ^ (1u << (state >> 29 & 7)) : 0xff;
		}
		write_bytes(path, copy, n);
		parm_gguf *g = parm_gguf_open(path);
		if (!g) {
			refused++;
			unnamed += !strstr(parm_error(), path);
			continue;
		}
		accepted++;
		unsigned sum = 0;
		for (int t = 0; t < parm_gguf_n_tensors(g); t++)
			for (size_t b = 0; b < parm_gguf_tensor_at(g, t)->nbytes; b++)
				sum += ((const uint8_t *)parm_gguf_tensor_at(g, t)->data)[b];
		for (int i = 0; i < parm_gguf_n_kv(g); i++)
			sum += strlen(parm_gguf_kv_key(g, i));
		(void)sum;
		parm_gguf_close(g);
	}
	free(copy);
	ok(unnamed == 0 && refused > 0, "1500 damaged files: %d refused (all naming the file), %d accepted, none crashed",
	   refused, accepted);
}

static void test_corruption(void)
{
	const char *path = tmp_path("sample.gguf");
	size_t n = 0;
	uint8_t *img = read_bytes(path, &n);
	size_t data_start = 0, data_end = 0;
	data_bounds(path, &data_start, &data_end);
	if (!ok(img && n > 0 && data_start > 0 && data_start % 32 == 0 && data_end < n,
		"sample image: %zu bytes, data at %zu", n, data_start)) {
		free(img);
		return;
	}
	test_patched_fields(img, n);
	test_truncation(img, data_start, data_end);
	test_random_damage(img, n, data_start);
	free(img);
}

static void remove_tmpdir(void)
{
	static const char *const names[] = {
		"sample.gguf", "bad.gguf", "dup.gguf", "a48.gguf", "a256.gguf", "copy.gguf", "empty.gguf",
		"text.gguf", "patched.gguf", "trunc.gguf", "fuzz.gguf",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		unlink(tmp_path(names[i]));
	ok(rmdir(tmpdir) == 0, "temporary directory removed (nothing else left in it)");
}

static void *fail_in_thread(void *arg)
{
	parm_fail("the other thread's error");
	*(int *)arg = strcmp(parm_error(), "the other thread's error") == 0;
	return NULL;
}

/* The last error is per thread: a failure in one (a kernel worker, a
 * caller's thread) leaves another's message alone. */
static void test_error_per_thread(void)
{
	pthread_t th;
	int seen = 0;
	parm_fail("this thread's error");
	pthread_create(&th, NULL, fail_in_thread, &seen);
	pthread_join(th, NULL);
	ok(seen && !strcmp(parm_error(), "this thread's error"),
	   "the last error is per thread (%s)", parm_error());
}

int main(void)
{
	test_error_per_thread();
	strcpy(tmpdir, "/tmp/parm-test-gguf-XXXXXX");
	if (!mkdtemp(tmpdir))
		parm_die("mkdtemp: cannot make a temporary directory");
	test_round_trip();
	test_writer_errors();
	test_alignment();
	test_vocab_fixtures();
	test_not_gguf();
	test_open_mem();
	test_corruption();
	remove_tmpdir();
	return tap_done();
}
