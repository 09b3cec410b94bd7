/* rng.h - the random numbers of libparm: reproducible on every machine.
 *
 * splitmix64 is the one stream generator (weights' initialisation, data
 * orders, dropout masks, seeding); parm_rng is xoshiro256** seeded by it,
 * for long draws such as sampling. */
#ifndef PARM_RNG_H
#define PARM_RNG_H

#include <stdint.h>

/* Advance *state and return the next 64 random bits. */
uint64_t parm_splitmix64(uint64_t *state);
/* Uniform in [0, 1) with 53 bits, from splitmix64. */
double parm_splitmix_uniform(uint64_t *state);

typedef struct { uint64_t s[4]; } parm_rng;
void parm_rng_seed(parm_rng *r, uint64_t seed);
uint64_t parm_rng_next(parm_rng *r);
double parm_rng_uniform(parm_rng *r);   /* [0, 1) */

#endif
