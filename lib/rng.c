/* rng.c - splitmix64, and xoshiro256** seeded by it */
#include <parm/rng.h>

uint64_t parm_splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double parm_splitmix_uniform(uint64_t *state)
{
	return (parm_splitmix64(state) >> 11) * 0x1.0p-53;
}

void parm_rng_seed(parm_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = parm_splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t parm_rng_next(parm_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double parm_rng_uniform(parm_rng *r)
{
	return (parm_rng_next(r) >> 11) * 0x1.0p-53;
}
