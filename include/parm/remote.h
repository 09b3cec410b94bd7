/* remote.h - a base model served over HTTP: llama.cpp's server or an
 * OpenAI-compatible one (vLLM), asked for the top-K next-token
 * log-probabilities of token-id sequences (never re-tokenised text).
 *
 * Requests for the sequences of one round go out together (libcurl multi),
 * one easy handle per slot, reused so connections stay alive.  Connection
 * errors, 429 and 5xx are retried with exponential backoff; other 4xx are
 * not, and their message is passed on.  Every failure is one line naming
 * the URL and what was wrong.  TLS verification is always on, against the
 * system's CAs and those of opts.cacert (given to libcurl in memory,
 * CURLOPT_CAINFO_BLOB: no temporary file).
 */
#ifndef PARM_REMOTE_H
#define PARM_REMOTE_H

#include "stream.h"
#include "tokenizer.h"

enum parm_api { PARM_API_LLAMACPP, PARM_API_OPENAI };

typedef struct {
	const char *url;        /* server root, e.g. http://127.0.0.1:8080
				   (openai: a trailing /v1 is accepted) */
	enum parm_api api;
	int top_k;              /* log-probabilities asked for per step */
	int n_slots;            /* sequences requested at once */
	double timeout;         /* seconds per request (connect: at most 10) */
	int retries;            /* extra attempts after a retryable failure */
	const char *cacert;     /* PEM CA certificates trusted besides the
				   system's, or NULL (unreadable or no
				   certificate: parm_remote_new fails) */
	const char *api_key;    /* sent as a bearer token, or NULL */
	const char *model;      /* openai "model"; NULL: the server's first */
	const parm_tokenizer *tok;      /* the vocabulary (see parm_remote_step) */
	const float *lora;      /* llamacpp: the scales of the server's LoRA
				   adapters (llama-server --lora, by id) sent
				   with every request, or NULL */
	int n_lora;
} parm_remote_opts;

/* "llamacpp" or "openai" as an enum parm_api; -1 + parm_error else. */
int parm_remote_api(const char *name);
/* The same for the tools' --api option: a usage error (status 2) else. */
enum parm_api parm_opt_api(const char *arg);

typedef struct parm_remote parm_remote;

/* Set up and ask the server what it serves (GET /v1/models where there is
 * one: model name, context length, vocabulary size).  NULL + parm_error. */
parm_remote *parm_remote_new(const parm_remote_opts *o);
void parm_remote_free(parm_remote *r);

const char *parm_remote_url(const parm_remote *r);     /* the completion URL */
int parm_remote_slots(const parm_remote *r);    /* opts.n_slots: asked at once */
int parm_remote_ctx(const parm_remote *r);      /* context per sequence, 0 unknown */

/* Does the server tokenise like t?  A probe text is tokenised on the
 * server (POST /tokenize, where it has one) and locally; 0 when they agree
 * or the server cannot tokenise, -1 + parm_error naming the first
 * difference (or a failed request). */
int parm_remote_check_tokenizer(parm_remote *r, const parm_tokenizer *t, const char *name);

/* One step for n sequences (n <= n_slots) at once: sequence i is
 * tokens[i][0..len[i]).  steps[i] gets sparse ids and log-probabilities
 * (k <= top_k entries, best first; the storage belongs to r and lasts until
 * the next call); seq and tok are left alone.  Ids are checked against
 * n_vocab.  llama.cpp's server holds back a token whose text ends in an
 * incomplete UTF-8 sequence, and with it the log-probabilities; when its
 * greedy choice is one, the step is asked again with every such token of
 * the vocabulary banned from the choice (the log-probabilities come from
 * the raw logits, so they stay as they were).  0, or -1 + parm_error. */
int parm_remote_step(parm_remote *r, int n, const int *const *tokens, const int *len,
		     int n_vocab, parm_step *steps);

/* Requests sent and seconds spent waiting for replies (for benchmarks). */

#endif
