/* gguf.c - GGUF reader and writer.
 *
 * The reader maps the file read-only and walks it with a cursor that knows
 * where the mapping ends: every count, length and offset is checked against
 * the bytes that remain before it is used, so a corrupt file costs one
 * parm_fail line, never a read past the end.  Values stay in the mapping
 * except strings, which are copied once so callers get NUL-terminated text.
 *
 * The layout (ggml's gguf.cpp): "GGUF", u32 version, u64 n_tensors, u64 n_kv;
 * n_kv of { string key, u32 type, value }; n_tensors of { string name,
 * u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }; padding to the
 * alignment; the data section, which tensor offsets are relative to.
 * A string is u64 length + bytes; an array is u32 type + u64 n + items.
 */
#include <parm/gguf.h>
#include <parm/util.h>

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c uses GGUF's little-endian values in place: little-endian hosts only"
#endif

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGML_MAX_NAME 64        /* llama.cpp's tensor name limit, NUL included */
#define MIN_KV_BYTES 13         /* u64 key length, u32 type, 1-byte value */
#define MIN_TENSOR_INFO_BYTES 24 /* u64 name length, u32 n_dims, u32 type, u64 offset */

struct gstr {
	const char *s;
	size_t len;
};

struct gguf_kv {
	char *key;
	enum parm_gguf_vtype type;
	const uint8_t *raw;     /* the value as on disk, after its type: copied by parm_gguf_w_copy_kv */
	size_t raw_len;
	enum parm_gguf_vtype etype;  /* arrays: element type; scalars: type */
	uint64_t n;             /* arrays: element count; scalars: 1 */
	const uint8_t *items;   /* scalar value or first array element */
	struct gstr *strs;      /* strings: n NUL-terminated copies in arena */
	char *arena;
};

struct parm_gguf {
	char *path;
	const uint8_t *map;
	size_t size;
	int mapped;             /* map is ours to munmap (else the caller's buffer) */
	int n_kv, n_tensors;
	struct gguf_kv *kv;
	parm_gguf_tensor *tensors;
	size_t alignment, data_start;
};

struct cursor {
	const uint8_t *p, *end;
	const char *path;
	char where[128];        /* what is being read, for "truncated in ..." */
};

static const char *const vtype_names[PARM_GGUF_NVTYPES] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string",
	"array", "u64", "i64", "f64",
};

/* Bytes per value of a fixed-size type; 0 for string and array. */
static const size_t vtype_size[PARM_GGUF_NVTYPES] = {
	1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8,
};

static const char *vtype_name(enum parm_gguf_vtype t)
{
	return (unsigned)t < PARM_GGUF_NVTYPES ? vtype_names[t] : "invalid";
}

/* Tensor types. */

struct type_info {
	enum parm_ggml_type type;
	const char *name;
	int block;
	size_t block_bytes;
};

/* Names, block sizes and bytes as ggml-common.h has them (QK_K = 256). */
static const struct type_info type_table[] = {
	{ PARM_GGML_F32, "f32", 1, 4 },
	{ PARM_GGML_F16, "f16", 1, 2 },
	{ PARM_GGML_Q4_0, "q4_0", 32, 2 + 16 },
	{ PARM_GGML_Q4_1, "q4_1", 32, 2 + 2 + 16 },
	{ PARM_GGML_Q5_0, "q5_0", 32, 2 + 4 + 16 },
	{ PARM_GGML_Q5_1, "q5_1", 32, 2 + 2 + 4 + 16 },
	{ PARM_GGML_Q8_0, "q8_0", 32, 2 + 32 },
	{ PARM_GGML_Q8_1, "q8_1", 32, 2 + 2 + 32 },
	{ PARM_GGML_Q2_K, "q2_K", 256, 16 + 64 + 2 + 2 },
	{ PARM_GGML_Q3_K, "q3_K", 256, 32 + 64 + 12 + 2 },
	{ PARM_GGML_Q4_K, "q4_K", 256, 2 + 2 + 12 + 128 },
	{ PARM_GGML_Q5_K, "q5_K", 256, 2 + 2 + 12 + 32 + 128 },
	{ PARM_GGML_Q6_K, "q6_K", 256, 128 + 64 + 16 + 2 },
	{ PARM_GGML_Q8_K, "q8_K", 256, 4 + 256 + 32 },
	{ PARM_GGML_IQ2_XXS, "iq2_xxs", 256, 2 + 64 },
	{ PARM_GGML_IQ2_XS, "iq2_xs", 256, 2 + 64 + 8 },
	{ PARM_GGML_IQ3_XXS, "iq3_xxs", 256, 2 + 64 + 32 },
	{ PARM_GGML_IQ1_S, "iq1_s", 256, 2 + 32 + 16 },
	{ PARM_GGML_IQ4_NL, "iq4_nl", 32, 2 + 16 },
	{ PARM_GGML_IQ3_S, "iq3_s", 256, 2 + 64 + 32 + 8 + 4 },
	{ PARM_GGML_IQ2_S, "iq2_s", 256, 2 + 64 + 16 },
	{ PARM_GGML_IQ4_XS, "iq4_xs", 256, 2 + 2 + 4 + 128 },
	{ PARM_GGML_I8, "i8", 1, 1 },
	{ PARM_GGML_I16, "i16", 1, 2 },
	{ PARM_GGML_I32, "i32", 1, 4 },
	{ PARM_GGML_I64, "i64", 1, 8 },
	{ PARM_GGML_F64, "f64", 1, 8 },
	{ PARM_GGML_IQ1_M, "iq1_m", 256, 32 + 16 + 8 },
	{ PARM_GGML_BF16, "bf16", 1, 2 },
	{ PARM_GGML_TQ1_0, "tq1_0", 256, 2 + 4 * 13 },
	{ PARM_GGML_TQ2_0, "tq2_0", 256, 2 + 64 },
	{ PARM_GGML_MXFP4, "mxfp4", 32, 1 + 16 },
	{ PARM_GGML_NVFP4, "nvfp4", 64, 4 + 32 },
	{ PARM_GGML_Q1_0, "q1_0", 128, 2 + 16 },
	{ PARM_GGML_Q2_0, "q2_0", 64, 2 + 16 },
};

static const struct type_info *type_info(enum parm_ggml_type t)
{
	for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
		if (type_table[i].type == t)
			return &type_table[i];
	return NULL;
}

const char *parm_ggml_type_name(enum parm_ggml_type t)
{
	const struct type_info *ti = type_info(t);
	return ti ? ti->name : NULL;
}

int parm_ggml_type_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
		if (!strcasecmp(type_table[i].name, name))
			return type_table[i].type;
	return -1;
}

int parm_ggml_type_block(enum parm_ggml_type t)
{
	const struct type_info *ti = type_info(t);
	return ti ? ti->block : 0;
}

size_t parm_ggml_type_block_bytes(enum parm_ggml_type t)
{
	const struct type_info *ti = type_info(t);
	return ti ? ti->block_bytes : 0;
}

size_t parm_ggml_row_bytes(enum parm_ggml_type t, int64_t n)
{
	const struct type_info *ti = type_info(t);
	return ti ? (size_t)(n / ti->block) * ti->block_bytes : 0;
}

/* The cursor: each read fails cleanly when the file has fewer bytes left. */

static int need(struct cursor *c, uint64_t n)
{
	if (n > (uint64_t)(c->end - c->p))
		return parm_fail("%s: truncated in %s", c->path, c->where);
	return 0;
}

static int read_u32(struct cursor *c, uint32_t *v)
{
	if (need(c, 4) < 0)
		return -1;
	memcpy(v, c->p, 4);
	c->p += 4;
	return 0;
}

static int read_u64(struct cursor *c, uint64_t *v)
{
	if (need(c, 8) < 0)
		return -1;
	memcpy(v, c->p, 8);
	c->p += 8;
	return 0;
}

/* A string stays in the mapping: *s points at len bytes, not NUL-terminated. */
static int read_str(struct cursor *c, const char **s, uint64_t *len)
{
	if (read_u64(c, len) < 0 || need(c, *len) < 0)
		return -1;
	*s = (const char *)c->p;
	c->p += *len;
	return 0;
}

static char *strndup_x(const char *s, size_t len)
{
	char *d = parm_xmalloc(len + 1);
	memcpy(d, s, len);
	d[len] = 0;
	return d;
}

/* Read n strings into kv->strs, as NUL-terminated copies in one arena:
 * one pass to check and measure, one to copy. */
static int read_strings(struct cursor *c, struct gguf_kv *kv, uint64_t n)
{
	struct cursor again = *c;
	const char *s;
	uint64_t len, total = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (read_str(c, &s, &len) < 0)
			return -1;
		total += len + 1;       /* bounded by the file size: no overflow */
	}
	kv->strs = parm_xmalloc((n ? n : 1) * sizeof *kv->strs);
	kv->arena = parm_xmalloc(total ? total : 1);
	char *dst = kv->arena;
	for (uint64_t i = 0; i < n; i++) {
		read_str(&again, &s, &len);
		memcpy(dst, s, len);
		dst[len] = 0;
		kv->strs[i] = (struct gstr){ dst, len };
		dst += len + 1;
	}
	kv->n = n;
	return 0;
}

static int read_array(struct cursor *c, struct gguf_kv *kv)
{
	uint32_t etype;
	uint64_t n;
	if (read_u32(c, &etype) < 0 || read_u64(c, &n) < 0)
		return -1;
	if (etype == PARM_GGUF_ARRAY)
		return parm_failc(PARM_EUNSUPPORTED, "%s: nested arrays are not supported (%s)", c->path, c->where);
	if (etype >= PARM_GGUF_NVTYPES)
		return parm_fail("%s: bad array element type %u in %s", c->path, etype, c->where);
	kv->etype = etype;
	size_t min_size = etype == PARM_GGUF_STRING ? 8 : vtype_size[etype];
	if (n > (uint64_t)(c->end - c->p) / min_size)
		return parm_fail("%s: truncated in %s (array of %llu items)",
				 c->path, c->where, (unsigned long long)n);
	if (etype == PARM_GGUF_STRING)
		return read_strings(c, kv, n);
	kv->n = n;
	kv->items = c->p;
	c->p += n * min_size;
	return 0;
}

static int read_value(struct cursor *c, struct gguf_kv *kv)
{
	kv->raw = c->p;
	kv->etype = kv->type;
	kv->n = 1;
	if (kv->type == PARM_GGUF_ARRAY) {
		if (read_array(c, kv) < 0)
			return -1;
	} else if (kv->type == PARM_GGUF_STRING) {
		if (read_strings(c, kv, 1) < 0)
			return -1;
	} else {
		if (need(c, vtype_size[kv->type]) < 0)
			return -1;
		kv->items = c->p;
		c->p += vtype_size[kv->type];
	}
	kv->raw_len = c->p - kv->raw;
	return 0;
}

static int read_kv(struct cursor *c, parm_gguf *g, int i)
{
	struct gguf_kv *kv = &g->kv[i];
	const char *key;
	uint64_t len;
	uint32_t type;
	snprintf(c->where, sizeof c->where, "kv %d", i);
	if (read_str(c, &key, &len) < 0)
		return -1;
	kv->key = strndup_x(key, len);
	snprintf(c->where, sizeof c->where, "kv %d ('%.60s')", i, kv->key);
	if (read_u32(c, &type) < 0)
		return -1;
	if (type >= PARM_GGUF_NVTYPES)
		return parm_fail("%s: bad value type %u in %s", c->path, type, c->where);
	kv->type = type;
	if (read_value(c, kv) < 0)
		return -1;
	for (int j = 0; j < i; j++)
		if (!strcmp(g->kv[j].key, kv->key))
			return parm_fail("%s: duplicate key '%s'", c->path, kv->key);
	return 0;
}

/* Tensor infos. */

static int read_dims(struct cursor *c, parm_gguf_tensor *t)
{
	uint32_t n_dims;
	if (read_u32(c, &n_dims) < 0)
		return -1;
	if (n_dims > PARM_GGUF_MAX_DIMS)
		return parm_fail("%s: tensor '%s' has %u dimensions (at most %d)",
				 c->path, t->name, n_dims, PARM_GGUF_MAX_DIMS);
	t->n_dims = n_dims;
	for (int j = 0; j < PARM_GGUF_MAX_DIMS; j++) {
		uint64_t ne = 1;
		if (j < (int)n_dims && read_u64(c, &ne) < 0)
			return -1;
		if (ne > INT64_MAX)
			return parm_fail("%s: tensor '%s' dimension %d is too large",
					 c->path, t->name, j);
		t->ne[j] = ne;
	}
	return 0;
}

/* n_elements and nbytes from type and shape, with overflow checks. */
static int tensor_size(const char *path, parm_gguf_tensor *t)
{
	const struct type_info *ti = type_info(t->type);
	int64_t n = 1;
	for (int j = 0; j < PARM_GGUF_MAX_DIMS; j++)
		if (__builtin_mul_overflow(n, t->ne[j], &n))
			return parm_fail("%s: tensor '%s' is too large", path, t->name);
	if (t->ne[0] % ti->block)
		return parm_fail("%s: tensor '%s' row of %lld is not a multiple of %s's block of %d",
				 path, t->name, (long long)t->ne[0], ti->name, ti->block);
	t->n_elements = n;
	if (__builtin_mul_overflow((uint64_t)(n / ti->block), ti->block_bytes, &t->nbytes))
		return parm_fail("%s: tensor '%s' is too large", path, t->name);
	return 0;
}

static int read_tensor_info(struct cursor *c, parm_gguf *g, int i, uint64_t *offset)
{
	parm_gguf_tensor *t = &g->tensors[i];
	const char *name;
	uint64_t len;
	uint32_t type;
	snprintf(c->where, sizeof c->where, "tensor info %d", i);
	if (read_str(c, &name, &len) < 0)
		return -1;
	t->name = strndup_x(name, len);
	if (read_dims(c, t) < 0 || read_u32(c, &type) < 0 || read_u64(c, offset) < 0)
		return -1;
	t->type = type;
	if (!type_info(t->type))
		return parm_fail("%s: unknown tensor type %u in '%s' (not a ggml type)",
				 c->path, type, t->name);
	return tensor_size(c->path, t);
}

static int check_tensor_data(parm_gguf *g, parm_gguf_tensor *t, uint64_t offset)
{
	size_t data_size = g->size - g->data_start;
	if (offset % g->alignment)
		return parm_fail("%s: tensor '%s' data offset %llu is not aligned to %zu",
				 g->path, t->name, (unsigned long long)offset, g->alignment);
	if (offset > data_size || t->nbytes > data_size - offset)
		return parm_fail("%s: tensor '%s' data out of bounds", g->path, t->name);
	t->data = g->map + g->data_start + offset;
	return 0;
}

static int read_tensor_infos(struct cursor *c, parm_gguf *g)
{
	uint64_t *offsets = parm_xmalloc((g->n_tensors + 1) * sizeof *offsets);
	int rc = -1;
	for (int i = 0; i < g->n_tensors; i++) {
		if (read_tensor_info(c, g, i, &offsets[i]) < 0)
			goto out;
		for (int j = 0; j < i; j++)
			if (!strcmp(g->tensors[j].name, g->tensors[i].name)) {
				parm_fail("%s: duplicate tensor '%s'", g->path, g->tensors[i].name);
				goto out;
			}
	}
	size_t pos = c->p - g->map;
	g->data_start = (pos + g->alignment - 1) / g->alignment * g->alignment;
	if (g->data_start > g->size) {
		/* Vocabulary-only files may end before the padding. */
		if (g->n_tensors) {
			parm_fail("%s: truncated before the tensor data", g->path);
			goto out;
		}
		g->data_start = g->size;
	}
	for (int i = 0; i < g->n_tensors; i++)
		if (check_tensor_data(g, &g->tensors[i], offsets[i]) < 0)
			goto out;
	rc = 0;
out:
	free(offsets);
	return rc;
}

/* The header. */

static int read_header(struct cursor *c, uint64_t *n_tensors, uint64_t *n_kv)
{
	uint32_t version;
	snprintf(c->where, sizeof c->where, "header");
	if (c->end - c->p < 4 || memcmp(c->p, "GGUF", 4))
		return parm_fail("%s: not a GGUF file (bad magic)", c->path);
	c->p += 4;
	if (read_u32(c, &version) < 0)
		return -1;
	if (version == 1)
		return parm_failc(PARM_EUNSUPPORTED, "%s: GGUF version 1 is not supported", c->path);
	if (version > 0xffff && !(version & 0xffff))
		return parm_failc(PARM_EUNSUPPORTED, "%s: big-endian GGUF files are not supported", c->path);
	if (version != 2 && version != 3)
		return parm_failc(PARM_EUNSUPPORTED, "%s: unsupported GGUF version %u", c->path, version);
	if (read_u64(c, n_tensors) < 0 || read_u64(c, n_kv) < 0)
		return -1;
	uint64_t left = c->end - c->p;
	if (*n_kv > left / MIN_KV_BYTES || *n_kv > INT_MAX)
		return parm_fail("%s: truncated in header (kv count %llu is more than the file holds)",
				 c->path, (unsigned long long)*n_kv);
	if (*n_tensors > left / MIN_TENSOR_INFO_BYTES || *n_tensors > INT_MAX)
		return parm_fail("%s: truncated in header (tensor count %llu is more than the file holds)",
				 c->path, (unsigned long long)*n_tensors);
	return 0;
}

static int read_alignment(parm_gguf *g)
{
	int64_t a;
	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (parm_gguf_find_key(g, "general.alignment") < 0)
		return 0;
	if (parm_gguf_get_int(g, "general.alignment", &a) < 0)
		return -1;
	if (a <= 0 || (a & (a - 1)) || a > (1 << 30))
		return parm_fail("%s: general.alignment %lld is not a power of two",
				 g->path, (long long)a);
	g->alignment = a;
	return 0;
}

static int parse(parm_gguf *g)
{
	/* An empty file has no mapping: map + 0 would be NULL + 0, undefined. */
	if (!g->size)
		return parm_fail("%s: empty file", g->path);
	struct cursor c = { g->map, g->map + g->size, g->path, "" };
	uint64_t n_tensors = 0, n_kv = 0;
	if (read_header(&c, &n_tensors, &n_kv) < 0)
		return -1;
	g->kv = parm_xcalloc(n_kv, sizeof *g->kv);
	g->tensors = parm_xcalloc(n_tensors, sizeof *g->tensors);
	for (g->n_kv = 0; g->n_kv < (int)n_kv; g->n_kv++)
		if (read_kv(&c, g, g->n_kv) < 0) {
			g->n_kv++;      /* so parm_gguf_close frees the partial entry */
			return -1;
		}
	if (read_alignment(g) < 0)
		return -1;
	g->n_tensors = n_tensors;
	return read_tensor_infos(&c, g);
}

static int map_file(parm_gguf *g)
{
	const void *m;
	if (parm_map_file(g->path, &m, &g->size) < 0)
		return -1;
	g->map = m;
	g->mapped = m != NULL;
	return 0;
}

parm_gguf *parm_gguf_open(const char *path)
{
	parm_gguf *g = parm_xcalloc(1, sizeof *g);
	g->path = parm_xstrdup(path);
	if (map_file(g) < 0 || parse(g) < 0) {
		parm_gguf_close(g);
		return NULL;
	}
	return g;
}

parm_gguf *parm_gguf_open_mem(const void *buf, size_t size, const char *name)
{
	parm_gguf *g = parm_xcalloc(1, sizeof *g);
	g->path = parm_xstrdup(name);
	g->map = buf;
	g->size = size;
	if (parse(g) < 0) {
		parm_gguf_close(g);
		return NULL;
	}
	return g;
}

void parm_gguf_close(parm_gguf *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_kv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].strs);
		free(g->kv[i].arena);
	}
	for (int i = 0; g->tensors && i < g->n_tensors; i++)
		free((char *)g->tensors[i].name);
	free(g->kv);
	free(g->tensors);
	if (g->mapped)
		parm_unmap_file(g->map, g->size);
	free(g->path);
	free(g);
}

void parm_gguf_forget(const parm_gguf *g, const void *p, size_t n)
{
	const long page = sysconf(_SC_PAGESIZE);
	if (!g->mapped || page <= 0 || n == 0)
		return;
	uintptr_t from = ((uintptr_t)p + page - 1) / page * page, to = ((uintptr_t)p + n) / page * page;
	if (to > from)          /* read-only and private: the file has the bytes */
		madvise((void *)from, to - from, MADV_DONTNEED);
}

const char *parm_gguf_path(const parm_gguf *g)
{
	return g->path;
}

size_t parm_gguf_data_offset(const parm_gguf *g)
{
	return g->data_start;
}

/* Metadata getters. */

int parm_gguf_n_kv(const parm_gguf *g)
{
	return g->n_kv;
}

const char *parm_gguf_kv_key(const parm_gguf *g, int i)
{
	return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

enum parm_gguf_vtype parm_gguf_kv_type(const parm_gguf *g, int i)
{
	return i >= 0 && i < g->n_kv ? g->kv[i].type : PARM_GGUF_NVTYPES;
}

int parm_gguf_find_key(const parm_gguf *g, const char *key)
{
	for (int i = 0; i < g->n_kv; i++)
		if (!strcmp(g->kv[i].key, key))
			return i;
	return -1;
}

static const struct gguf_kv *get_kv(const parm_gguf *g, const char *key)
{
	int i = parm_gguf_find_key(g, key);
	if (i < 0)
		return parm_failp("%s: key '%s' not found", g->path, key);
	return &g->kv[i];
}

/* A value of type t at p as int64: 0, 1 when t is not an integer type,
 * 2 when it does not fit. */
static int load_int(const uint8_t *p, enum parm_gguf_vtype t, int64_t *out)
{
	union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32;
		int32_t i32; uint64_t u64; int64_t i64; } v;
	if (t >= PARM_GGUF_NVTYPES || !vtype_size[t] || t == PARM_GGUF_F32 || t == PARM_GGUF_F64 || t == PARM_GGUF_BOOL)
		return 1;
	memcpy(&v, p, vtype_size[t]);
	switch (t) {
	case PARM_GGUF_U8: *out = v.u8; break;
	case PARM_GGUF_I8: *out = v.i8; break;
	case PARM_GGUF_U16: *out = v.u16; break;
	case PARM_GGUF_I16: *out = v.i16; break;
	case PARM_GGUF_U32: *out = v.u32; break;
	case PARM_GGUF_I32: *out = v.i32; break;
	case PARM_GGUF_I64: *out = v.i64; break;
	default:
		if (v.u64 > INT64_MAX)
			return 2;
		*out = v.u64;
	}
	return 0;
}

static int load_float(const uint8_t *p, enum parm_gguf_vtype t, double *out)
{
	float f;
	if (t == PARM_GGUF_F32) {
		memcpy(&f, p, 4);
		*out = f;
	} else if (t == PARM_GGUF_F64) {
		memcpy(out, p, 8);
	} else {
		return 1;
	}
	return 0;
}

static int int_result(const parm_gguf *g, const char *key, int rc, enum parm_gguf_vtype t)
{
	if (rc == 1)
		return parm_fail("%s: key '%s' is %s, expected an integer", g->path, key, vtype_name(t));
	if (rc == 2)
		return parm_fail("%s: key '%s' is out of range for a signed 64-bit integer", g->path, key);
	return 0;
}

int parm_gguf_get_int(const parm_gguf *g, const char *key, int64_t *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return -1;
	return int_result(g, key, load_int(kv->items, kv->type, out), kv->type);
}

int parm_gguf_get_float(const parm_gguf *g, const char *key, double *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return -1;
	if (load_float(kv->items, kv->type, out))
		return parm_fail("%s: key '%s' is %s, expected a float", g->path, key, vtype_name(kv->type));
	return 0;
}

int parm_gguf_get_bool(const parm_gguf *g, const char *key, int *out)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return -1;
	if (kv->type != PARM_GGUF_BOOL)
		return parm_fail("%s: key '%s' is %s, expected a bool", g->path, key, vtype_name(kv->type));
	*out = kv->items[0] != 0;
	return 0;
}

int parm_gguf_get_str(const parm_gguf *g, const char *key, const char **s, size_t *len)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return -1;
	if (kv->type != PARM_GGUF_STRING)
		return parm_fail("%s: key '%s' is %s, expected a string", g->path, key, vtype_name(kv->type));
	*s = kv->strs[0].s;
	if (len)
		*len = kv->strs[0].len;
	return 0;
}

int parm_gguf_get_arr(const parm_gguf *g, const char *key, enum parm_gguf_vtype *etype, uint64_t *n)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return -1;
	if (kv->type != PARM_GGUF_ARRAY)
		return parm_fail("%s: key '%s' is %s, expected an array", g->path, key, vtype_name(kv->type));
	if (etype)
		*etype = kv->etype;
	if (n)
		*n = kv->n;
	return 0;
}

/* The array kv for key, with i checked against its length. */
static const struct gguf_kv *get_arr_item(const parm_gguf *g, const char *key, uint64_t i)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return NULL;
	if (kv->type != PARM_GGUF_ARRAY)
		return parm_failp("%s: key '%s' is %s, expected an array", g->path, key, vtype_name(kv->type));
	if (i >= kv->n)
		return parm_failp("%s: index %llu out of range in array '%s' of %llu",
				  g->path, (unsigned long long)i, key, (unsigned long long)kv->n);
	return kv;
}

int parm_gguf_arr_int(const parm_gguf *g, const char *key, uint64_t i, int64_t *out)
{
	const struct gguf_kv *kv = get_arr_item(g, key, i);
	if (!kv)
		return -1;
	if (kv->etype == PARM_GGUF_STRING)
		return int_result(g, key, 1, kv->etype);
	return int_result(g, key, load_int(kv->items + i * vtype_size[kv->etype], kv->etype, out), kv->etype);
}

int parm_gguf_arr_float(const parm_gguf *g, const char *key, uint64_t i, double *out)
{
	const struct gguf_kv *kv = get_arr_item(g, key, i);
	if (!kv)
		return -1;
	if (kv->etype == PARM_GGUF_STRING || load_float(kv->items + i * vtype_size[kv->etype], kv->etype, out))
		return parm_fail("%s: array '%s' holds %s, expected floats", g->path, key, vtype_name(kv->etype));
	return 0;
}

int parm_gguf_arr_str(const parm_gguf *g, const char *key, uint64_t i, const char **s, size_t *len)
{
	const struct gguf_kv *kv = get_arr_item(g, key, i);
	if (!kv)
		return -1;
	if (kv->etype != PARM_GGUF_STRING)
		return parm_fail("%s: array '%s' holds %s, expected strings", g->path, key, vtype_name(kv->etype));
	*s = kv->strs[i].s;
	if (len)
		*len = kv->strs[i].len;
	return 0;
}

/* Tensors. */

int parm_gguf_n_tensors(const parm_gguf *g)
{
	return g->n_tensors;
}

const parm_gguf_tensor *parm_gguf_tensor_at(const parm_gguf *g, int i)
{
	return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const parm_gguf_tensor *parm_gguf_find_tensor(const parm_gguf *g, const char *name)
{
	for (int i = 0; i < g->n_tensors; i++)
		if (!strcmp(g->tensors[i].name, name))
			return &g->tensors[i];
	return NULL;
}

/* The writer.  Each value is kept serialised as it goes on disk (after its
 * type), so a key copied from a file is its raw bytes. */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (!n)
		return;
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = parm_xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void buf_u32(struct buf *b, uint32_t v)
{
	buf_put(b, &v, 4);
}

static void buf_u64(struct buf *b, uint64_t v)
{
	buf_put(b, &v, 8);
}

static void buf_str(struct buf *b, const char *s, size_t len)
{
	buf_u64(b, len);
	buf_put(b, s, len);
}

struct wkv {
	char *key;
	enum parm_gguf_vtype type;
	struct buf value;
};

struct wtensor {
	char *name;
	enum parm_ggml_type type;
	int n_dims;
	int64_t ne[PARM_GGUF_MAX_DIMS];
	size_t nbytes;
	const void *data;
	void *owned;            /* the copy, unless added by reference */
};

struct parm_gguf_writer {
	struct wkv *kv;
	int n_kv;
	struct wtensor *t;
	int n_t;
	char *error;            /* the first bad call, reported by parm_gguf_w_save */
};

parm_gguf_writer *parm_gguf_w_new(void)
{
	return parm_xcalloc(1, sizeof(parm_gguf_writer));
}

void parm_gguf_w_free(parm_gguf_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].value.p);
	}
	for (int i = 0; i < w->n_t; i++) {
		free(w->t[i].name);
		free(w->t[i].owned);
	}
	free(w->kv);
	free(w->t);
	free(w->error);
	free(w);
}

__attribute__((format(printf, 2, 3)))
static void w_error(parm_gguf_writer *w, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	if (w->error)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	w->error = parm_xstrdup(msg);
}

/* The value slot for key, emptied: a key set twice keeps its place. */
static struct buf *w_slot(parm_gguf_writer *w, const char *key, enum parm_gguf_vtype type)
{
	struct wkv *kv = NULL;
	for (int i = 0; i < w->n_kv && !kv; i++)
		if (!strcmp(w->kv[i].key, key))
			kv = &w->kv[i];
	if (!kv) {
		w->kv = parm_xrealloc(w->kv, (w->n_kv + 1) * sizeof *w->kv);
		kv = &w->kv[w->n_kv++];
		*kv = (struct wkv){ parm_xstrdup(key), type, { NULL, 0, 0 } };
	}
	kv->type = type;
	kv->value.n = 0;
	return &kv->value;
}

void parm_gguf_w_set_u32(parm_gguf_writer *w, const char *key, uint32_t v)
{
	buf_u32(w_slot(w, key, PARM_GGUF_U32), v);
}

void parm_gguf_w_set_i32(parm_gguf_writer *w, const char *key, int32_t v)
{
	buf_put(w_slot(w, key, PARM_GGUF_I32), &v, 4);
}

void parm_gguf_w_set_u64(parm_gguf_writer *w, const char *key, uint64_t v)
{
	buf_u64(w_slot(w, key, PARM_GGUF_U64), v);
}

void parm_gguf_w_set_f32(parm_gguf_writer *w, const char *key, float v)
{
	buf_put(w_slot(w, key, PARM_GGUF_F32), &v, 4);
}

void parm_gguf_w_set_bool(parm_gguf_writer *w, const char *key, int v)
{
	uint8_t b = v != 0;
	buf_put(w_slot(w, key, PARM_GGUF_BOOL), &b, 1);
}

void parm_gguf_w_set_str(parm_gguf_writer *w, const char *key, const char *s)
{
	buf_str(w_slot(w, key, PARM_GGUF_STRING), s, strlen(s));
}

void parm_gguf_w_set_val(parm_gguf_writer *w, const char *key, enum parm_gguf_vtype type, const void *v)
{
	if ((unsigned)type >= PARM_GGUF_NVTYPES || !vtype_size[type]) {
		w_error(w, "key '%s': %s is not a fixed-size type", key, vtype_name(type));
		return;
	}
	buf_put(w_slot(w, key, type), v, vtype_size[type]);
}

void parm_gguf_w_set_arr(parm_gguf_writer *w, const char *key, enum parm_gguf_vtype etype, const void *data, uint64_t n)
{
	if ((unsigned)etype >= PARM_GGUF_NVTYPES || !vtype_size[etype]) {
		w_error(w, "array '%s': element type %s is not numeric", key, vtype_name(etype));
		return;
	}
	struct buf *b = w_slot(w, key, PARM_GGUF_ARRAY);
	buf_u32(b, etype);
	buf_u64(b, n);
	buf_put(b, data, n * vtype_size[etype]);
}

void parm_gguf_w_set_arr_str(parm_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n)
{
	struct buf *b = w_slot(w, key, PARM_GGUF_ARRAY);
	buf_u32(b, PARM_GGUF_STRING);
	buf_u64(b, n);
	for (uint64_t i = 0; i < n; i++)
		buf_str(b, strs[i], lens ? lens[i] : strlen(strs[i]));
}

int parm_gguf_w_copy_kv(parm_gguf_writer *w, const parm_gguf *g, const char *key)
{
	const struct gguf_kv *kv = get_kv(g, key);
	if (!kv)
		return -1;
	buf_put(w_slot(w, key, kv->type), kv->raw, kv->raw_len);
	return 0;
}

int parm_gguf_w_copy_file(parm_gguf_writer *w, const parm_gguf *g,
		     int (*keep)(void *ctx, const char *name, int is_tensor), void *ctx)
{
	for (int i = 0; i < parm_gguf_n_kv(g); i++) {
		const char *key = parm_gguf_kv_key(g, i);
		if ((!keep || keep(ctx, key, 0)) && parm_gguf_w_copy_kv(w, g, key) < 0)
			return -1;
	}
	for (int i = 0; i < parm_gguf_n_tensors(g); i++) {
		const parm_gguf_tensor *t = parm_gguf_tensor_at(g, i);
		if (!keep || keep(ctx, t->name, 1))
			parm_gguf_w_tensor_ref(w, t->name, t->type, t->n_dims, t->ne, t->data);
	}
	return 0;
}

/* A tensor the reader (ours and llama.cpp's) will accept, or an error. */
static int w_check_tensor(parm_gguf_writer *w, const char *name, enum parm_ggml_type type,
			  int n_dims, const int64_t *ne)
{
	const struct type_info *ti = type_info(type);
	if (strlen(name) >= GGML_MAX_NAME)
		w_error(w, "tensor name '%s' is longer than %d bytes", name, GGML_MAX_NAME - 1);
	else if (!ti)
		w_error(w, "unknown tensor type %d in '%s' (not a ggml type)", (int)type, name);
	else if (n_dims < 1 || n_dims > PARM_GGUF_MAX_DIMS)
		w_error(w, "tensor '%s' has %d dimensions (1 to %d)", name, n_dims, PARM_GGUF_MAX_DIMS);
	else if (ne[0] % ti->block)
		w_error(w, "tensor '%s' row of %lld is not a multiple of %s's block of %d",
			name, (long long)ne[0], ti->name, ti->block);
	if (w->error)
		return -1;
	for (int j = 0; j < n_dims; j++)
		if (ne[j] < 0)
			w_error(w, "tensor '%s' has a negative dimension", name);
	for (int i = 0; i < w->n_t; i++)
		if (!strcmp(w->t[i].name, name))
			w_error(w, "duplicate tensor '%s'", name);
	return w->error ? -1 : 0;
}

static struct wtensor *w_add_tensor(parm_gguf_writer *w, const char *name, enum parm_ggml_type type,
				    int n_dims, const int64_t *ne, const void *data)
{
	if (w_check_tensor(w, name, type, n_dims, ne) < 0)
		return NULL;
	w->t = parm_xrealloc(w->t, (w->n_t + 1) * sizeof *w->t);
	struct wtensor *t = &w->t[w->n_t++];
	*t = (struct wtensor){ .name = parm_xstrdup(name), .type = type, .n_dims = n_dims, .data = data };
	int64_t n = 1;
	for (int j = 0; j < PARM_GGUF_MAX_DIMS; j++) {
		t->ne[j] = j < n_dims ? ne[j] : 1;
		n *= t->ne[j];
	}
	/* Trailing 1s are dropped, as ggml does, so our files match its byte for byte. */
	while (t->n_dims > 1 && t->ne[t->n_dims - 1] == 1)
		t->n_dims--;
	t->nbytes = parm_ggml_row_bytes(type, n);
	return t;
}

void parm_gguf_w_tensor(parm_gguf_writer *w, const char *name, enum parm_ggml_type type,
		   int n_dims, const int64_t *ne, const void *data)
{
	struct wtensor *t = w_add_tensor(w, name, type, n_dims, ne, data);
	if (t)
		t->data = t->owned = parm_xmemdup(data, t->nbytes);
}

void parm_gguf_w_tensor_ref(parm_gguf_writer *w, const char *name, enum parm_ggml_type type,
		       int n_dims, const int64_t *ne, const void *data)
{
	w_add_tensor(w, name, type, n_dims, ne, data);
}

/* general.alignment if the caller set one, else 32; llama.cpp insists on a
 * u32 power of two, and so does the writer. */
static int w_alignment(const parm_gguf_writer *w, size_t *align)
{
	*align = GGUF_DEFAULT_ALIGNMENT;
	for (int i = 0; i < w->n_kv; i++) {
		uint32_t a;
		if (strcmp(w->kv[i].key, "general.alignment"))
			continue;
		if (w->kv[i].type != PARM_GGUF_U32)
			return -1;
		memcpy(&a, w->kv[i].value.p, 4);
		if (!a || (a & (a - 1)) || a > (1u << 30))
			return -1;
		*align = a;
	}
	return 0;
}

static void write_pad(FILE *f, uint64_t pos, size_t align)
{
	static const char zeros[4096];
	size_t pad = (align - pos % align) % align;
	fwrite(zeros, 1, pad, f);
}

/* Everything before the data: header, kvs, tensor infos, padding. */
static void write_meta(const parm_gguf_writer *w, FILE *f, size_t align)
{
	struct buf b = { 0 };
	buf_put(&b, "GGUF", 4);
	buf_u32(&b, 3);
	buf_u64(&b, w->n_t);
	buf_u64(&b, w->n_kv);
	for (int i = 0; i < w->n_kv; i++) {
		buf_str(&b, w->kv[i].key, strlen(w->kv[i].key));
		buf_u32(&b, w->kv[i].type);
		buf_put(&b, w->kv[i].value.p, w->kv[i].value.n);
	}
	uint64_t offset = 0;
	for (int i = 0; i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		buf_str(&b, t->name, strlen(t->name));
		buf_u32(&b, t->n_dims);
		for (int j = 0; j < t->n_dims; j++)
			buf_u64(&b, t->ne[j]);
		buf_u32(&b, t->type);
		buf_u64(&b, offset);
		offset += (t->nbytes + align - 1) / align * align;
	}
	fwrite(b.p, 1, b.n, f);
	write_pad(f, b.n, align);
	free(b.p);
}

struct save { const parm_gguf_writer *w; size_t align; };

static int write_file(FILE *f, void *ctx)
{
	const struct save *sv = ctx;
	write_meta(sv->w, f, sv->align);
	for (int i = 0; i < sv->w->n_t; i++) {
		fwrite(sv->w->t[i].data, 1, sv->w->t[i].nbytes, f);
		write_pad(f, sv->w->t[i].nbytes, sv->align);
	}
	return ferror(f) ? -1 : 0;
}

int parm_gguf_w_save(parm_gguf_writer *w, const char *path)
{
	struct save sv = { w, 0 };
	if (w->error)
		return parm_fail("%s: %s", path, w->error);
	if (w_alignment(w, &sv.align) < 0)
		return parm_fail("%s: general.alignment must be a u32 power of two", path);
	return parm_write_atomic(path, write_file, &sv);
}
