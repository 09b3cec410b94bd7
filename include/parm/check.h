/* check.h - does a stream fit a model?  Shared by every stage that runs a
 * model on a stream it did not make (parm-sample --vocab, parm-mix). */
#ifndef PARM_CHECK_H
#define PARM_CHECK_H

#include "stream.h"
#include "tokenizer.h"

/* 0 when the stream's vocabulary size and tokenizer fingerprint equal the
 * tokenizer's; else -1 and a message giving both sizes and fingerprints. */
int parm_check_tokenizer(const parm_header *h, const parm_tokenizer *t, const char *name);

#endif
