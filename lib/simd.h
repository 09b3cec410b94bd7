/* simd.h - which of the hand-vectorised kernel paths runs.
 *
 * quant.c and kernels.c are compiled for every path the target can run
 * (AVX-512, AVX2 with FMA, portable) and call the one chosen here, once
 * per process: the best the CPU has, or the environment's PARM_SIMD
 * (avx512, avx2 or portable) when it asks for less.  A request above what
 * the CPU has is clamped to what it has, and an unknown value is ignored,
 * so no setting can make a kernel fault on an instruction the CPU lacks.
 * The paths differ in the last bits of sums (lanes, FMA); running the
 * tests on each shows a result that depends on them.
 */
#ifndef PARM_SIMD_H
#define PARM_SIMD_H

enum parm_simd { PARM_SIMD_PORTABLE, PARM_SIMD_AVX2, PARM_SIMD_AVX512 };

/* The path in use: chosen on the first call, thread-safe. */
enum parm_simd parm_simd(void);
/* The best path this CPU runs. */
enum parm_simd parm_simd_best(void);
/* What a PARM_SIMD value picks on a CPU whose best is best (NULL, "" or
 * an unknown name: best). */
enum parm_simd parm_simd_choose(const char *request, enum parm_simd best);
/* 1 when the path is avx512 and the CPU has AVX512_BF16 (vdpbf16ps). */
int parm_simd_bf16(void);
/* "avx512", "avx2" or "portable". */
const char *parm_simd_name(enum parm_simd s);

#endif
