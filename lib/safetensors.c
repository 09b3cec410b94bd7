/* safetensors.c - read and write safetensors files (safetensors.h). */
#include <parm/safetensors.h>
#include "quant_dot.h"
#include <parm/util.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The header may not be larger than this (the format's own limit). */
#define MAX_HEADER (100u << 20)

struct parm_safetensors {
	char *path;
	const uint8_t *map;
	size_t size;
	parm_st_tensor *t;
	int n;
};

static const struct { const char *name; enum parm_st_dtype dtype; int bytes; } dtypes[] = {
	{ "F32", PARM_ST_F32, 4 }, { "F16", PARM_ST_F16, 2 }, { "BF16", PARM_ST_BF16, 2 },
};

static int dtype_bytes(enum parm_st_dtype d)
{
	return dtypes[d].bytes;
}

static int parse_dtype(const char *s, enum parm_st_dtype *d)
{
	for (size_t i = 0; s && i < sizeof dtypes / sizeof *dtypes; i++)
		if (!strcmp(s, dtypes[i].name)) {
			*d = dtypes[i].dtype;
			return 0;
		}
	return -1;
}

/* shape: an array of at most PARM_ST_MAX_DIMS non-negative integers. */
static int parse_shape(parm_st_tensor *t, json_t *shape)
{
	if (!json_is_array(shape) || json_array_size(shape) > PARM_ST_MAX_DIMS)
		return -1;
	t->n_dims = (int)json_array_size(shape);
	t->numel = 1;
	for (int i = 0; i < t->n_dims; i++) {
		json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0 ||
		    json_integer_value(d) > (INT64_C(1) << 40))
			return -1;
		t->shape[i] = json_integer_value(d);
		if (t->shape[i] && t->numel > (INT64_C(1) << 40) / t->shape[i])
			return -1;
		t->numel *= t->shape[i];
	}
	return 0;
}

/* One header entry: dtype, shape, offsets inside data[data_size]. */
static int parse_entry(parm_safetensors *st, parm_st_tensor *t, const char *name, json_t *e,
		       const uint8_t *data, size_t data_size, size_t *begin)
{
	json_t *off = json_object_get(e, "data_offsets");
	if (!json_is_object(e) || parse_dtype(json_string_value(json_object_get(e, "dtype")),
					       &t->dtype) < 0)
		return parm_fail("%s: tensor '%s': no dtype parm reads (F32, F16, BF16)", st->path, name);
	if (parse_shape(t, json_object_get(e, "shape")) < 0)
		return parm_fail("%s: tensor '%s': shape is not a list of sizes", st->path, name);
	if (!json_is_array(off) || json_array_size(off) != 2 ||
	    !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
		return parm_fail("%s: tensor '%s': data_offsets is not [begin, end]", st->path, name);
	json_int_t b = json_integer_value(json_array_get(off, 0));
	json_int_t end = json_integer_value(json_array_get(off, 1));
	if (b < 0 || end < b || (size_t)end > data_size)
		return parm_fail("%s: tensor '%s': data_offsets [%lld, %lld] outside the %zu bytes of "
				 "data", st->path, name, (long long)b, (long long)end, data_size);
	if ((uint64_t)(end - b) != (uint64_t)t->numel * dtype_bytes(t->dtype))
		return parm_fail("%s: tensor '%s': %lld bytes for %lld %s elements", st->path, name,
				 (long long)(end - b), (long long)t->numel, dtypes[t->dtype].name);
	t->name = parm_xstrdup(name);
	t->data = data + b;
	*begin = (size_t)b;
	return 0;
}

struct span { size_t begin, end; int i; };

static int by_begin(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	return (x->begin > y->begin) - (x->begin < y->begin);
}

/* No two tensors share bytes (empty ones aside): in order of their first
 * byte, each starts at or past the furthest end so far. */
static int check_overlaps(const parm_safetensors *st, const size_t *begin)
{
	struct span *s = parm_xmalloc((st->n ? st->n : 1) * sizeof *s);
	int rc = 0, n = 0;
	for (int i = 0; i < st->n; i++)
		if (st->t[i].numel)
			s[n++] = (struct span){ begin[i], begin[i] + st->t[i].numel *
						dtype_bytes(st->t[i].dtype), i };
	qsort(s, n, sizeof *s, by_begin);
	for (int i = 1, far = 0; i < n && rc == 0; i++) {
		if (s[i].begin < s[far].end)
			rc = parm_fail("%s: tensors '%s' and '%s' overlap", st->path,
				       st->t[s[far].i].name, st->t[s[i].i].name);
		if (s[i].end > s[far].end)
			far = i;
	}
	free(s);
	return rc;
}

static int parse_header(parm_safetensors *st, json_t *h, const uint8_t *data, size_t data_size)
{
	const char *name;
	json_t *e;
	size_t *begin = parm_xmalloc((json_object_size(h) + 1) * sizeof *begin);
	int rc = 0;
	st->t = parm_xcalloc(json_object_size(h) + 1, sizeof *st->t);
	json_object_foreach(h, name, e) {
		if (!strcmp(name, "__metadata__"))
			continue;
		if ((rc = parse_entry(st, &st->t[st->n], name, e, data, data_size, &begin[st->n])) < 0)
			break;
		st->n++;
	}
	if (rc == 0)
		rc = check_overlaps(st, begin);
	free(begin);
	return rc;
}

static int parse(parm_safetensors *st)
{
	uint64_t len = 0;
	if (st->size < 8)
		return parm_fail("%s: not a safetensors file (%zu bytes)", st->path, st->size);
	for (int i = 7; i >= 0; i--)
		len = len << 8 | st->map[i];
	if (len > MAX_HEADER || len > st->size - 8)
		return parm_fail("%s: header of %llu bytes in a file of %zu", st->path,
				 (unsigned long long)len, st->size);
	json_error_t err;
	json_t *h = json_loadb((const char *)st->map + 8, len, JSON_REJECT_DUPLICATES, &err);
	if (!h)
		return parm_fail("%s: header is not valid JSON: %s", st->path, err.text);
	if (!json_is_object(h)) {
		json_decref(h);
		return parm_fail("%s: header is not a JSON object", st->path);
	}
	int rc = parse_header(st, h, st->map + 8 + len, st->size - 8 - len);
	json_decref(h);
	return rc;
}

parm_safetensors *parm_st_open(const char *path)
{
	parm_safetensors *st = parm_xcalloc(1, sizeof *st);
	const void *map;
	st->path = parm_xstrdup(path);
	if (parm_map_file(path, &map, &st->size) < 0) {
		parm_st_close(st);
		return NULL;
	}
	st->map = map;
	if (parse(st) < 0) {
		parm_st_close(st);
		return NULL;
	}
	return st;
}

void parm_st_close(parm_safetensors *st)
{
	if (!st)
		return;
	for (int i = 0; i < st->n; i++)
		free(st->t[i].name);
	free(st->t);
	parm_unmap_file(st->map, st->size);
	free(st->path);
	free(st);
}

int parm_st_count(const parm_safetensors *st) { return st->n; }
const parm_st_tensor *parm_st_at(const parm_safetensors *st, int i) { return &st->t[i]; }

const parm_st_tensor *parm_st_find(const parm_safetensors *st, const char *name)
{
	for (int i = 0; i < st->n; i++)
		if (!strcmp(st->t[i].name, name))
			return &st->t[i];
	return NULL;
}

void parm_st_to_f32(const parm_st_tensor *t, float *out)
{
	const uint8_t *p = t->data;
	for (int64_t i = 0; i < t->numel; i++) {
		uint32_t u;
		uint16_t h;
		switch (t->dtype) {
		case PARM_ST_F32:
			memcpy(&u, p + 4 * i, 4);
			memcpy(&out[i], &u, 4);
			break;
		case PARM_ST_F16:
			memcpy(&h, p + 2 * i, 2);
			out[i] = parm_f16_to_f32(h);
			break;
		case PARM_ST_BF16:
			memcpy(&h, p + 2 * i, 2);
			out[i] = parm_bf16_to_f32(h);
			break;
		}
	}
}

/* ---- writing ---- */

struct wctx { const parm_st_out *t; int n; char *header; size_t hlen; };

static int64_t out_numel(const parm_st_out *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->n_dims; i++)
		n *= t->shape[i];
	return n;
}

/* The JSON header, padded with spaces to a multiple of 8. */
static char *make_header(const parm_st_out *t, int n, size_t *len)
{
	json_t *h = json_object();
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		json_t *shape = json_array();
		for (int d = 0; d < t[i].n_dims; d++)
			json_array_append_new(shape, json_integer(t[i].shape[d]));
		size_t bytes = (size_t)out_numel(&t[i]) * dtype_bytes(t[i].dtype);
		json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I, I]}", "dtype",
			dtypes[t[i].dtype].name, "shape", shape, "data_offsets", (json_int_t)off,
			(json_int_t)(off + bytes)));
		off += bytes;
	}
	char *s = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(h);
	size_t raw = strlen(s), padded = (raw + 7) / 8 * 8;
	s = parm_xrealloc(s, padded + 1);
	memset(s + raw, ' ', padded - raw);
	s[padded] = 0;
	*len = padded;
	return s;
}

static int write_body(FILE *f, void *ctx)
{
	const struct wctx *w = ctx;
	uint8_t len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)((uint64_t)w->hlen >> (8 * i));
	fwrite(len, 1, 8, f);
	fwrite(w->header, 1, w->hlen, f);
	for (int i = 0; i < w->n; i++) {
		const parm_st_out *t = &w->t[i];
		for (int64_t e = 0; e < out_numel(t); e++) {
			uint16_t b16;
			if (t->dtype == PARM_ST_F32) {
				fwrite(&t->data[e], 4, 1, f);
				continue;
			}
			b16 = t->dtype == PARM_ST_BF16 ? parm_f32_to_bf16(t->data[e]) : parm_f32_to_f16(t->data[e]);
			fwrite(&b16, 2, 1, f);
		}
	}
	return ferror(f) ? -1 : 0;
}

int parm_st_write(const char *path, const parm_st_out *t, int n)
{
	struct wctx w = { t, n, NULL, 0 };
	w.header = make_header(t, n, &w.hlen);
	int rc = parm_write_atomic(path, write_body, &w);
	free(w.header);
	return rc;
}
