/* kernels_fma.c - kernels.c's vector kernels for the AVX2 and AVX-512
 * paths (x86-64-v3: AVX2, FMA), whatever the rest of the build targets. */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("arch=x86-64-v3")
#define KERNELS_VARIANT parm_kernels_vec_fma
#include "kernels_internal.h"
#endif
