/* parm_quant_dot_avx512.c - parm_quant_dot and quant_dot_x8 for CPUs with AVX-512F,
 * BW, DQ, VL and CD, with AVX2, FMA and F16C (x86-64-v4), whatever the
 * rest of the build targets. */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("arch=x86-64-v4")
#define QUANT_DOT_VARIANT parm_quant_dot_avx512
#include "quant_internal.h"
#define QUANT_X8_VARIANT parm_quant_dot_x8_avx512
#include "quant_x8_internal.h"
#endif
