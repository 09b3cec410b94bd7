/* simd.c - the SIMD path chosen once per process; see simd.h. */
#include "simd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
	[PARM_SIMD_PORTABLE] = "portable",
	[PARM_SIMD_AVX2] = "avx2",
	[PARM_SIMD_AVX512] = "avx512",
};

const char *parm_simd_name(enum parm_simd s)
{
	return s >= PARM_SIMD_PORTABLE && s <= PARM_SIMD_AVX512 ? names[s] : "unknown";
}

/* Each path's files are built for an x86-64 level (quant_dot_*.c,
 * kernels_*.c): v4 (AVX-512 F, BW, DQ, VL, CD) for avx512, v3 (AVX2, FMA,
 * F16C, BMI) for avx2, so the CPU must have the whole level.  The
 * compiler's checks include the OS's saving of the wider registers. */
enum parm_simd parm_simd_best(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("x86-64-v4"))
		return PARM_SIMD_AVX512;
	if (__builtin_cpu_supports("x86-64-v3"))
		return PARM_SIMD_AVX2;
#endif
	return PARM_SIMD_PORTABLE;
}

enum parm_simd parm_simd_choose(const char *request, enum parm_simd best)
{
	for (int s = PARM_SIMD_PORTABLE; request && s <= PARM_SIMD_AVX512; s++)
		if (!strcmp(request, names[s]))
			return (enum parm_simd)s < best ? (enum parm_simd)s : best;
	return best;
}

static enum parm_simd chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose_once(void)
{
	chosen = parm_simd_choose(getenv("PARM_SIMD"), parm_simd_best());
}

enum parm_simd parm_simd(void)
{
	pthread_once(&chosen_once, choose_once);
	return chosen;
}

static int bf16_dot;
static pthread_once_t bf16_once = PTHREAD_ONCE_INIT;

static void check_bf16(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	bf16_dot = parm_simd() == PARM_SIMD_AVX512 && __builtin_cpu_supports("avx512bf16");
#endif
}

/* Asked for every matmul job of every pass: the CPU is asked once. */
int parm_simd_bf16(void)
{
	pthread_once(&bf16_once, check_bf16);
	return bf16_dot;
}
