/* kernels_plain.c - kernels.c's vector kernels on any CPU, no FMA (x86:
 * SSE2 at most). */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("arch=x86-64")
#endif
/* 32-byte vectors passed between static functions: no ABI is at stake */
#pragma GCC diagnostic ignored "-Wpsabi"
#define KERNELS_VARIANT parm_kernels_vec_plain
#include "kernels_internal.h"
