/* gguf.h - GGUF (llama.cpp's model format) reader and writer.
 *
 * The reader maps the file and checks every count, offset and size before
 * use, so a truncated or corrupt file fails with one line naming the file
 * and the problem (through parm_fail) rather than a bad read.  Tensor data
 * is used in place from the mapping.
 */
#ifndef PARM_GGUF_H
#define PARM_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum parm_gguf_vtype {                  /* metadata value types, as on disk */
	PARM_GGUF_U8, PARM_GGUF_I8, PARM_GGUF_U16, PARM_GGUF_I16, PARM_GGUF_U32,
	PARM_GGUF_I32, PARM_GGUF_F32, PARM_GGUF_BOOL, PARM_GGUF_STRING,
	PARM_GGUF_ARRAY, PARM_GGUF_U64, PARM_GGUF_I64, PARM_GGUF_F64,
	PARM_GGUF_NVTYPES
};

/* Every tensor type ggml defines: a file holding any of them parses (its
 * sizes are known); quant.h says which ones parm computes with. */
enum parm_ggml_type {
	PARM_GGML_F32 = 0, PARM_GGML_F16 = 1, PARM_GGML_Q4_0 = 2,
	PARM_GGML_Q4_1 = 3, PARM_GGML_Q5_0 = 6, PARM_GGML_Q5_1 = 7,
	PARM_GGML_Q8_0 = 8, PARM_GGML_Q8_1 = 9, PARM_GGML_Q2_K = 10,
	PARM_GGML_Q3_K = 11, PARM_GGML_Q4_K = 12, PARM_GGML_Q5_K = 13,
	PARM_GGML_Q6_K = 14, PARM_GGML_Q8_K = 15, PARM_GGML_IQ2_XXS = 16,
	PARM_GGML_IQ2_XS = 17, PARM_GGML_IQ3_XXS = 18, PARM_GGML_IQ1_S = 19,
	PARM_GGML_IQ4_NL = 20, PARM_GGML_IQ3_S = 21, PARM_GGML_IQ2_S = 22,
	PARM_GGML_IQ4_XS = 23, PARM_GGML_I8 = 24, PARM_GGML_I16 = 25,
	PARM_GGML_I32 = 26, PARM_GGML_I64 = 27, PARM_GGML_F64 = 28,
	PARM_GGML_IQ1_M = 29, PARM_GGML_BF16 = 30, PARM_GGML_TQ1_0 = 34,
	PARM_GGML_TQ2_0 = 35, PARM_GGML_MXFP4 = 39, PARM_GGML_NVFP4 = 40,
	PARM_GGML_Q1_0 = 41, PARM_GGML_Q2_0 = 42
};

#define PARM_GGUF_MAX_DIMS 4

typedef struct {
	const char *name;               /* NUL-terminated copy */
	enum parm_ggml_type type;
	int n_dims;
	int64_t ne[PARM_GGUF_MAX_DIMS];      /* ne[0] is the contiguous (input) dim */
	int64_t n_elements;
	size_t nbytes;
	const void *data;               /* into the mapping (reader) */
} parm_gguf_tensor;

typedef struct parm_gguf parm_gguf;

parm_gguf *parm_gguf_open(const char *path);         /* NULL + parm_error */
/* The same parse on size bytes at buf, which must outlive the file (tensor
 * data points into it); name stands for the path in messages. */
parm_gguf *parm_gguf_open_mem(const void *buf, size_t size, const char *name);
void parm_gguf_close(parm_gguf *g);
/* The mapping's pages of [p, p + n) are not needed now: the process lets
 * them go (read again from the file if touched).  No-op on a buffer. */
void parm_gguf_forget(const parm_gguf *g, const void *p, size_t n);
const char *parm_gguf_path(const parm_gguf *g);
size_t parm_gguf_data_offset(const parm_gguf *g);    /* file offset of the tensor data section */

/* Metadata.  Getters return 0, or -1 with parm_error set when the key is
 * missing or of an incompatible type.  Integer getters accept every
 * integer type (u32 and u64 alike) and range-check into the result. */
int parm_gguf_n_kv(const parm_gguf *g);
const char *parm_gguf_kv_key(const parm_gguf *g, int i);
enum parm_gguf_vtype parm_gguf_kv_type(const parm_gguf *g, int i);
int parm_gguf_find_key(const parm_gguf *g, const char *key);        /* -1: none */
int parm_gguf_get_int(const parm_gguf *g, const char *key, int64_t *out);
int parm_gguf_get_float(const parm_gguf *g, const char *key, double *out);
int parm_gguf_get_bool(const parm_gguf *g, const char *key, int *out);
int parm_gguf_get_str(const parm_gguf *g, const char *key, const char **s, size_t *len);
/* Arrays: element type and count; numeric elements are read by index. */
int parm_gguf_get_arr(const parm_gguf *g, const char *key, enum parm_gguf_vtype *etype, uint64_t *n);
int parm_gguf_arr_int(const parm_gguf *g, const char *key, uint64_t i, int64_t *out);
int parm_gguf_arr_float(const parm_gguf *g, const char *key, uint64_t i, double *out);
int parm_gguf_arr_str(const parm_gguf *g, const char *key, uint64_t i, const char **s, size_t *len);

int parm_gguf_n_tensors(const parm_gguf *g);
const parm_gguf_tensor *parm_gguf_tensor_at(const parm_gguf *g, int i);
const parm_gguf_tensor *parm_gguf_find_tensor(const parm_gguf *g, const char *name); /* NULL: none (no error set) */

/* Tensor type facts. */
const char *parm_ggml_type_name(enum parm_ggml_type t);  /* "f32", "q8_0", NULL if unknown */
int parm_ggml_type_from_name(const char *name);      /* -1 if unknown */
int parm_ggml_type_block(enum parm_ggml_type t);          /* elements per block: 1 to 256 */
size_t parm_ggml_type_block_bytes(enum parm_ggml_type t); /* bytes per block */
size_t parm_ggml_row_bytes(enum parm_ggml_type t, int64_t n); /* n a multiple of block */

/* Writer.  Values are copied at the call; tensor data is copied too unless
 * added with parm_gguf_w_tensor_ref.  parm_gguf_w_save writes PATH.tmp then renames,
 * so a failed write never leaves a half file behind. */
typedef struct parm_gguf_writer parm_gguf_writer;

parm_gguf_writer *parm_gguf_w_new(void);
void parm_gguf_w_free(parm_gguf_writer *w);
void parm_gguf_w_set_u32(parm_gguf_writer *w, const char *key, uint32_t v);
void parm_gguf_w_set_i32(parm_gguf_writer *w, const char *key, int32_t v);
void parm_gguf_w_set_u64(parm_gguf_writer *w, const char *key, uint64_t v);
void parm_gguf_w_set_f32(parm_gguf_writer *w, const char *key, float v);
void parm_gguf_w_set_bool(parm_gguf_writer *w, const char *key, int v);
void parm_gguf_w_set_str(parm_gguf_writer *w, const char *key, const char *s);
/* Any fixed-size scalar type (u8 ... f64, bool); v points at one value of it. */
void parm_gguf_w_set_val(parm_gguf_writer *w, const char *key, enum parm_gguf_vtype type, const void *v);
void parm_gguf_w_set_arr(parm_gguf_writer *w, const char *key, enum parm_gguf_vtype etype, const void *data, uint64_t n); /* numeric */
void parm_gguf_w_set_arr_str(parm_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n);
/* Copy one key (any type, arrays included) from an open file. */
int parm_gguf_w_copy_kv(parm_gguf_writer *w, const parm_gguf *g, const char *key);
/* Copy g's keys and reference its tensors (g must stay open until w is
 * saved): those for which keep(ctx, name, is_tensor) is non-zero, or all
 * when keep is NULL.  0, or -1 + parm_error. */
int parm_gguf_w_copy_file(parm_gguf_writer *w, const parm_gguf *g,
		     int (*keep)(void *ctx, const char *name, int is_tensor), void *ctx);
/* Data is f32 for PARM_GGML_F32, else already in the target type's layout.
 * Trailing dimensions of 1 are not written (ggml's rule), so n_dims reads
 * back as the number of dimensions up to the last one above 1. */
void parm_gguf_w_tensor(parm_gguf_writer *w, const char *name, enum parm_ggml_type type,
		   int n_dims, const int64_t *ne, const void *data);
void parm_gguf_w_tensor_ref(parm_gguf_writer *w, const char *name, enum parm_ggml_type type,
		       int n_dims, const int64_t *ne, const void *data);
int parm_gguf_w_save(parm_gguf_writer *w, const char *path);  /* 0, or -1 + parm_error */

#endif
