/* parm_quant_dot_portable.c - parm_quant_dot on any CPU: gcc's 16-byte vectors, no
 * FMA (x86: SSE2 at most: no FMA). */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("arch=x86-64")
#endif
#define QUANT_DOT_VARIANT parm_quant_dot_portable
#include "quant_internal.h"
