/* remote_internal.h - remote.c's parser of one step's reply, exposed for
 * its fuzz harness (tests/fuzz/remote.c).  Private: not installed. */
#ifndef PARM_REMOTE_INTERNAL_H
#define PARM_REMOTE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <parm/remote.h>

typedef struct {
	enum parm_api api;
	int llamacpp;           /* the server is llama.cpp (its own fields) */
	int top_k;              /* entries kept, at most */
	const char *url;        /* for messages */
} parm_reply_opts;

/* The JSON reply body[len] to one step's request: its top log-probabilities,
 * best first, into ids[top_k] and vals[top_k], ids checked against n_vocab.
 * Returns the count (>= 1); -2 when the step must be asked again with the
 * held-back tokens banned (only when !banned; see parm_remote_step); or
 * -1 + parm_error. */
int parm_remote_parse_step(const parm_reply_opts *o, const char *body, size_t len,
			   int n_vocab, int banned, int32_t *ids, float *vals);

#endif
