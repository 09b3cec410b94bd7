/* sample.h - choosing the next token from logits.
 *
 * The order of the filters is llama.cpp's: top-k, top-p, min-p, then
 * temperature; temperature 0 is greedy (argmax, lowest id on ties).
 */
#ifndef PARM_SAMPLE_H
#define PARM_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include "rng.h"

typedef struct {
	float temperature;      /* 0: greedy */
	int top_k;              /* 0: off */
	float top_p;            /* 1: off */
	float min_p;            /* 0: off */
} parm_sampler;


/* Choose among n candidates with logits[n] (-inf entries are never
 * chosen); ids[n] names them (NULL: the index is the id).  scratch holds
 * 2n floats + n ints worth of bytes (parm_sample_scratch(n)).  Returns the
 * chosen id, or -1 when every logit is -inf or NaN. */
size_t parm_sample_scratch(int n);
int parm_sample(const parm_sampler *s, parm_rng *rng, const float *logits,
		const int32_t *ids, int n, void *scratch);

/* The same choice the plain way (sort everything, cut, draw): the
 * reference parm_sample is tested against; same rng use, same result. */
int parm_sample_ref(const parm_sampler *s, parm_rng *rng, const float *logits,
		    const int32_t *ids, int n);

/* Greedy: the id of the largest logit, the smallest id on ties; -1 when
 * every logit is -inf or NaN.  ids as for parm_sample. */
int parm_argmax(const float *logits, const int32_t *ids, int n);


#endif
