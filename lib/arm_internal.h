/* arm_internal.h - reading an ARM from an open GGUF onto a given backbone,
 * exposed for the fuzz harness (tests/fuzz/arm.c), which parses ARM files
 * from memory.  Private: not installed. */
#ifndef PARM_ARM_INTERNAL_H
#define PARM_ARM_INTERNAL_H

#include <parm/arm.h>
#include <parm/gguf.h>

/* The ARM g describes: hyperparameters, adapters, provenance.  backbone
 * NULL: loaded as the file says (embedded or referenced), as parm_arm_load
 * does.  Given: used as it is and still the caller's, so set
 * arm->backbone = NULL before parm_arm_free.  NULL + parm_error. */
parm_arm *parm_arm_from_gguf(const parm_gguf *g, parm_model *backbone);

#endif
