/* safetensors.h - Hugging Face's tensor files (what peft's save_pretrained
 * writes, adapter_model.safetensors): 8 bytes of little-endian header
 * length N, N bytes of JSON (an object: for each tensor name {"dtype",
 * "shape", "data_offsets": [begin, end]} relative to the data after the
 * header, and an optional "__metadata__" of strings), then the data.
 *
 * Read through a read-only mapping and checked as GGUF files are: the
 * header's length against the file, the JSON, each entry's dtype, shape
 * and offsets (inside the data, the size the shape and dtype make, no two
 * overlapping), duplicate names; every bad file is one error naming it.
 */
#ifndef PARM_SAFETENSORS_H
#define PARM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum parm_st_dtype { PARM_ST_F32, PARM_ST_F16, PARM_ST_BF16 };
#define PARM_ST_MAX_DIMS 8

typedef struct {
	char *name;
	enum parm_st_dtype dtype;
	int n_dims;
	int64_t shape[PARM_ST_MAX_DIMS];
	int64_t numel;
	const void *data;               /* numel elements of dtype, in the mapping */
} parm_st_tensor;

typedef struct parm_safetensors parm_safetensors;

/* Open and check path.  NULL + parm_error. */
parm_safetensors *parm_st_open(const char *path);
void parm_st_close(parm_safetensors *st);
int parm_st_count(const parm_safetensors *st);
const parm_st_tensor *parm_st_at(const parm_safetensors *st, int i);   /* in file order */
const parm_st_tensor *parm_st_find(const parm_safetensors *st, const char *name); /* NULL: none */
/* A tensor's elements as floats, out[numel]. */
void parm_st_to_f32(const parm_st_tensor *t, float *out);

/* Write tensors (f32 data, numel from shape) atomically (path.tmp, then
 * rename): header padded with spaces to a multiple of 8, data in the
 * order given, dtype as asked (f32 or bf16, rounded to nearest even).
 * 0, or -1 + parm_error. */
typedef struct {
	const char *name;
	enum parm_st_dtype dtype;
	int n_dims;
	int64_t shape[PARM_ST_MAX_DIMS];
	const float *data;
} parm_st_out;
int parm_st_write(const char *path, const parm_st_out *t, int n);

#endif
