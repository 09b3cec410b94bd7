/* dataset.h - training data: JSONL and text read through libarchive, LM
 * corpora, preference pairs with k named objectives, seeded splits and
 * epoch orders.
 *
 * Every input path may be plain, compressed (gzip, xz, zstd, bzip2, ...),
 * or a tar/zip archive whose members are read in archive order; "-" is
 * stdin.  Records know where they came from: "file:line" or
 * "file:member:line", and that origin leads every message about them.
 */
#ifndef PARM_DATASET_H
#define PARM_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "tokenizer.h"

/* ---- Input: one path, member by member, line by line ---- */

typedef struct parm_input parm_input;

parm_input *parm_input_open(const char *path);          /* NULL + parm_error */
/* The same on size bytes at buf (kept until closed); name is for messages. */
parm_input *parm_input_open_mem(const void *buf, size_t size, const char *name);
void parm_input_close(parm_input *in);
/* Advance to the next member (call once before the first): 1 a member is
 * ready, 0 no more, -1 + parm_error.  A single file, compressed or not, has
 * exactly one member. */
int parm_input_next_member(parm_input *in);
const char *parm_input_path(const parm_input *in);
const char *parm_input_member(const parm_input *in);    /* NULL: not an archive */
/* The next line of the member, without its "\n" (and "\r"), NUL-terminated,
 * valid until the next call; lines may be any length.  1 a line, 0 end of
 * member, -1 + parm_error (read error, NUL byte in a line). */
int parm_input_getline(parm_input *in, const char **line, size_t *len);
/* The bytes read from the member and not yet consumed (at least one
 * unless the member is empty), without consuming them; 0 or -1. */
int parm_input_peek(parm_input *in, const char **bytes, size_t *n);
/* The rest of the member as one malloc'd NUL-terminated string. */
int parm_input_slurp(parm_input *in, char **text, size_t *len);

/* ---- Malformed records: fatal under strict, else skipped and counted ---- */

typedef struct {
	int strict;             /* the first malformed record fails the load */
	/* Told about each skipped record ("f.jsonl:3: bad JSON: ..."), e.g.
	 * to print it; NULL: count only.  The library never prints. */
	void (*on_skip)(void *ctx, const char *msg);
	void *ctx;
	long n_skipped;         /* out: records skipped */
} parm_badrecs;

/* Report one malformed record.  Strict: parm_fail(msg) and -1; else the
 * record is counted, on_skip told, and 0 returned (the caller skips it). */
int parm_badrec(parm_badrecs *bad, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Called for every JSON object record with its origin ("f:7" or
 * "f.tar:a.jsonl:7").  Return 0 to go on, -1 + parm_error to stop; a
 * record the callback finds malformed goes to parm_badrec and returns
 * what parm_badrec returned. */
typedef int (*parm_record_fn)(void *ctx, json_t *obj, const char *origin);

/* Read every record of the JSONL files paths[n].  Blank lines are not
 * records; bad JSON or a non-object line is malformed (see parm_badrecs).
 * A file (or member) whose first non-blank byte is '[' is read as one JSON
 * array of records instead (origins "file:record N"; bad JSON there is
 * fatal).
 * Returns the number of records given to fn, or -1 + parm_error. */
long parm_jsonl_foreach(const char *const *paths, int n, parm_badrecs *bad,
			parm_record_fn fn, void *ctx);
/* The same for the rest of the input's current member. */
long parm_input_jsonl(parm_input *in, parm_badrecs *bad, parm_record_fn fn, void *ctx);

/* ---- LM corpus ---- */

enum parm_lm_layout {
	PARM_LM_PACK,           /* documents back to back, cut in windows */
	PARM_LM_TRUNCATE,       /* one sequence per document, its head kept */
};

enum parm_doc_format {
	PARM_DOC_AUTO,          /* JSONL if the file or member name has ".json"
				 * (".jsonl", ".ndjson", ".json.gz"...), or for
				 * stdin if its first byte is '{'; else text */
	PARM_DOC_TEXT,          /* each file (or member) is one document */
	PARM_DOC_JSONL,         /* "text", or "prompt" + "response" */
};

/* The documents of a corpus, as parm_lm_load reads them (below): each
 * file or archive member whole as text, or, for JSONL, each record's
 * "text", or its "prompt" (not NULL then) and "response".  fn returns 0,
 * or -1 + parm_error to stop; a record with neither goes to bad.
 * Returns the documents read, or -1 + parm_error. */
typedef int (*parm_doc_fn)(void *ctx, const char *prompt, const char *text, size_t len);
long parm_corpus_foreach(const char *const *paths, int n, enum parm_doc_format fmt,
			 parm_badrecs *bad, parm_doc_fn fn, void *ctx);

typedef struct {
	int max_len;            /* tokens per sequence (>= 2) */
	enum parm_lm_layout layout;
	enum parm_doc_format format;
} parm_lm_opts;

/* A document is BOS (if the tokenizer adds one) + its tokens + EOS.  A JSONL
 * record holds a string "text", or strings "prompt" and "response": the text
 * is prompt immediately followed by response, and the loss falls on the
 * response tokens and EOS only.  A text file (or archive member) is one
 * document, whole.
 *
 * Sequence i is tok[start[i] .. start[i]+len[i]); the model reads it and
 * predicts tok[j] from tok[<j] for j >= 1 wherever loss[j] is 1 (BOS and
 * prompt tokens have loss 0).  PACK: all documents in one stream cut into
 * windows of max_len overlapping by one token, so every token is predicted
 * exactly once (attention crosses document boundaries, as in GPT-2
 * pre-training); the last window may be shorter.  TRUNCATE: one sequence per
 * document, its first max_len tokens (cut documents are counted). */
typedef struct {
	int *tok;
	unsigned char *loss;
	long n_tok;
	long *start;
	int *len;
	long n_seq;
	long n_docs, n_truncated, n_loss_tokens;
} parm_lm_data;

int parm_lm_load(parm_lm_data *d, const parm_tokenizer *t,
		 const char *const *paths, int n, const parm_lm_opts *o,
		 parm_badrecs *bad);
void parm_lm_free(parm_lm_data *d);

/* ---- Preference pairs with k named objectives ---- */

#define PARM_MAX_OBJECTIVES 16

/* NAME=FIELD: the record's FIELD says which response is better for NAME
 * (0 or 1: int, "0"/"1", false/true; null: no label).  NAME=@FILE: every
 * pair of FILE is labelled for NAME only, better response first. */
typedef struct {
	char *name;
	char *field;            /* NULL for a file objective */
	char *file;             /* NULL for a field objective */
} parm_objective;

typedef struct {
	parm_objective obj[PARM_MAX_OBJECTIVES];
	int k;
} parm_objectives;

/* Add one "NAME=FIELD" or "NAME=@FILE"; -1 + parm_error on a bad spec, a
 * repeated name or too many. */
int parm_objectives_add(parm_objectives *o, const char *spec);
/* The spec parm_objectives_add reads back: "NAME=FIELD" or "NAME=@FILE",
 * malloc'd. */
char *parm_objective_spec(const parm_objective *ob);
/* PKU-SafeRLHF's: helpful=better_response_id, harmless=safer_response_id. */
void parm_objectives_default(parm_objectives *o);
int parm_objective_index(const parm_objectives *o, const char *name); /* -1: none */
void parm_objectives_free(parm_objectives *o);

enum { PARM_LABEL_NONE = -1 };

typedef struct {
	char *prompt;           /* as in the record */
	char *resp[2];          /* y0, y1 */
	signed char label[PARM_MAX_OBJECTIVES]; /* better response 0/1, or NONE */
	int preformatted;       /* prompt already is the conversation text (HH) */
	char *origin;           /* "file:line" */
	/* Filled by parm_pairs_tokenize: seq[j] = prompt + resp[j] tokens, of
	 * length n_seq[j]; the response (which the ARM loss sums over) is
	 * seq[j][resp_start[j] ..]. */
	int *seq[2];
	int n_seq[2], resp_start[2];
} parm_pair;

typedef struct {
	parm_pair *pair;
	long n;
	long n_dropped, n_truncated;    /* by parm_pairs_tokenize */
} parm_pairs;

/* Load pairs: paths[n] are PKU-SafeRLHF-style records (string fields
 * "prompt", "response_0", "response_1" and one label field per field
 * objective); each file objective's FILE holds pairs with string fields
 * "chosen" and "rejected" (and, optionally, "prompt": then both are
 * responses to it) or, HH-RLHF's way, whole conversations in which the prompt
 * is the common text up to and including the last "\n\nAssistant:".
 * A record lacking a field is malformed (names the objective, the field and
 * the record); a field objective whose field is in no record of a file is an
 * error.  DATA paths given with no field objective are an error. */
int parm_pairs_load(parm_pairs *p, const parm_objectives *o,
		    const char *const *paths, int n, parm_badrecs *bad);

enum parm_overlong { PARM_OVERLONG_DROP, PARM_OVERLONG_TRUNCATE };

typedef struct {
	const char *tmpl;       /* "{prompt}" template; NULL: PARM_PAIR_TEMPLATE */
	int max_len;            /* tokens of prompt + response; 0: no limit */
	enum parm_overlong overlong;
	const char *chat;       /* a chat template (chat.h) to use instead, or NULL */
	const char *system;     /* its system message, or NULL */
} parm_pair_opts;

#define PARM_PAIR_TEMPLATE "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"

/* Tokenise every pair as the official code (TRL's DPOTrainer) does: the
 * templated prompt (HH prompts are used as they are; with a chat template,
 * one user turn and the assistant's opened, special tokens parsed) with BOS if the
 * tokenizer adds one, then each response tokenised together with the prompt
 * so word boundaries merge as they will when the response is generated,
 * then EOS.  A pair with a sequence over max_len is dropped, or truncated
 * (responses cut at max_len, losing their EOS; a prompt that leaves no room
 * for one response token drops the pair).  Dropped pairs leave the set;
 * both counts are kept. */
int parm_pairs_tokenize(parm_pairs *p, const parm_tokenizer *t, const parm_pair_opts *o);
void parm_pairs_free(parm_pairs *p);

/* ---- Splits and epoch orders ---- */

/* held given as a fraction (< 1) or a count (>= 1) of n; -1 if out of range. */
long parm_heldout_count(long n, double held);
/* A seeded split of 0..n-1: n_held indices to held[], the rest to train[],
 * each in increasing order.  The same (n, n_held, seed) gives the same split. */
void parm_split(long *train, long *held, long n, long n_held, uint64_t seed);
/* order[n] = a permutation of 0..n-1 that depends only on (seed, epoch, n),
 * so a resumed run sees the same order. */
void parm_epoch_order(long *order, long n, uint64_t seed, long epoch);

#endif
