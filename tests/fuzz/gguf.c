/* gguf.c - fuzz the GGUF reader: parm_gguf_open_mem on the input, then every
 * getter on every key and every byte range a tensor claims, and the
 * tokenizer when the metadata names one (it reads the most metadata). */
#include "fuzz.h"
#include <parm/gguf.h>
#include <parm/tokenizer.h>

#include <string.h>

#define MAX_ITEMS 4096          /* array elements read per key */

static volatile uint64_t sink;  /* keeps the reads from being optimised out */

static void read_array(const parm_gguf *g, const char *key)
{
	enum parm_gguf_vtype et;
	uint64_t n;
	if (parm_gguf_get_arr(g, key, &et, &n) < 0)
		return;
	for (uint64_t i = 0; i < n && i < MAX_ITEMS; i++) {
		int64_t v;
		double f;
		const char *s;
		size_t len;
		if (parm_gguf_arr_int(g, key, i, &v) == 0)
			sink += (uint64_t)v;
		if (parm_gguf_arr_float(g, key, i, &f) == 0)
			sink += (uint64_t)(f == f);
		if (parm_gguf_arr_str(g, key, i, &s, &len) == 0)
			sink += len ? (uint8_t)s[len - 1] + (uint8_t)s[len] : 0;
	}
	parm_gguf_arr_int(g, key, n, NULL);  /* out of range: an error, not a read */
}

static void read_kv(const parm_gguf *g, int i, parm_gguf_writer *w)
{
	const char *key = parm_gguf_kv_key(g, i), *s;
	int64_t v;
	double f;
	int b;
	size_t len;
	sink += parm_gguf_kv_type(g, i) + (parm_gguf_find_key(g, key) == i);
	if (parm_gguf_get_int(g, key, &v) == 0)
		sink += (uint64_t)v;
	if (parm_gguf_get_float(g, key, &f) == 0)
		sink += (uint64_t)(f == f);
	if (parm_gguf_get_bool(g, key, &b) == 0)
		sink += b;
	if (parm_gguf_get_str(g, key, &s, &len) == 0)
		sink += strlen(s) == len;
	read_array(g, key);
	parm_gguf_w_copy_kv(w, g, key);
}

/* The first and last byte of each tensor's data: inside the input. */
static void read_tensors(const parm_gguf *g)
{
	for (int i = 0; i < parm_gguf_n_tensors(g); i++) {
		const parm_gguf_tensor *t = parm_gguf_tensor_at(g, i);
		const uint8_t *d = t->data;
		sink += strlen(t->name) + (parm_gguf_find_tensor(g, t->name) != NULL);
		if (t->nbytes)
			sink += d[0] + d[t->nbytes - 1];
	}
}

static void try_tokenizer(const parm_gguf *g)
{
	static const char text[] = "Hello world! 123 naïve\n\t<s> 日本語";
	int ids[256];
	if (parm_gguf_find_key(g, "tokenizer.ggml.model") < 0)
		return;
	parm_tokenizer *t = parm_tokenizer_load(g);
	if (!t)
		return;
	int n = parm_tokenize(t, text, sizeof text - 1, 1, ids, 256);
	for (int i = 0; i < n && i < 256; i++) {
		size_t len;
		parm_tok_piece(t, ids[i], &len);
		sink += len;
	}
	sink += parm_tok_fingerprint(t);
	parm_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an empty file has no mapping: its buffer is NULL, as parm_gguf_open's is */
	parm_gguf *g = parm_gguf_open_mem(size ? data : NULL, size, "fuzz.gguf");
	if (!g)
		return 0;
	parm_gguf_writer *w = parm_gguf_w_new();
	for (int i = 0; i < parm_gguf_n_kv(g); i++)
		read_kv(g, i, w);
	parm_gguf_w_free(w);
	read_tensors(g);
	try_tokenizer(g);
	parm_gguf_close(g);
	return 0;
}
