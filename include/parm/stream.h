/* stream.h - the parm stream: msgpack records on a pipe (man parm-stream.5).
 *
 * A stream is a header, then records: START (a sequence joins), ROUND (one
 * step for every sequence in flight: the token appended since its previous
 * step and next-token logits, dense or sparse), END (a sequence is done)
 * and FIN (the producer finished cleanly).  Chosen tokens go back to the
 * producer over the feedback channel the header names (a FIFO).
 *
 * The reader tells "need more bytes" from "bad input": a stream that stops
 * at a record boundary before FIN, or inside a record, is "unexpected end of
 * stream"; bytes that are not a valid record are "malformed".  Sizes are
 * bounded before anything is allocated (by the header's vocabulary once it
 * is read), and a record begun but silent for PARM_STREAM_TIMEOUT seconds
 * is an error, never a wait forever.
 */
#ifndef PARM_STREAM_H
#define PARM_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define PARM_STREAM_MAGIC "parm-stream"
#define PARM_STREAM_VERSION 1

typedef struct {
	int version;
	int n_vocab;
	uint64_t fingerprint;           /* parm_tok_fingerprint of the tokenizer */
	int bos, eos;                   /* -1 if none */
	int *eog, n_eog;                /* ids that end generation (eos among
					 * them; absent in a stream: eos alone) */
	char **pieces;                  /* [n_vocab] decoded bytes of each token */
	uint32_t *piece_len;            /* [n_vocab] */
	char *feedback;                 /* FIFO path for chosen tokens, or NULL */
	int n_chain;
	char **chain;                   /* [n_chain] one JSON object per stage */
} parm_header;

enum parm_rec { PARM_REC_START, PARM_REC_ROUND, PARM_REC_END, PARM_REC_FIN };

typedef struct {
	int seq;                        /* sequence id */
	int tok;                        /* token appended since last step, -1 none */
	int sparse;                     /* 0: logits[n_vocab]; 1: ids/logits[k] */
	int k;                          /* sparse entries (the rest are -inf) */
	float *logits;
	int32_t *ids;
} parm_step;

typedef struct {
	enum parm_rec type;
	/* START */
	int seq;
	char *prompt;                   /* the prompt text as given (NUL-ended) */
	int *tokens;                    /* prompt tokens (template applied, BOS) */
	int n_tokens;
	char *meta;                     /* JSON object text of passed-through fields, or NULL */
	/* ROUND */
	int n_steps;
	parm_step *steps;
	/* END (seq too) */
	int tok;                        /* last token appended, -1 none */
	int length;                     /* tokens generated */
	char *reason;                   /* "eos", "length", "stop", "ctx" */
} parm_record;

/* Reading.  Functions return 0, or -1 with parm_error set; the record and
 * header own their memory until the next call / parm_header_free.  Record
 * fields point into buffers the reader owns and reuses.  After FIN,
 * parm_read_record returns FIN again without reading.  parm_header_free
 * frees every field, each piece and chain entry separately (pieces are
 * NUL-ended beyond piece_len for convenience). */
typedef struct parm_reader parm_reader;
parm_reader *parm_reader_new(int fd);
/* While it waits for input, the reader also watches out_fd (the stage's
 * own output): when that reader goes away, reading fails with errno EPIPE,
 * so a middle stage leaves as soon as the sampler does. */
void parm_reader_watch(parm_reader *r, int out_fd);
void parm_reader_free(parm_reader *r);
int parm_read_header(parm_reader *r, parm_header *h);
int parm_read_record(parm_reader *r, parm_record *rec);
/* 1 when reading failed on an abort record: the stage before failed and
 * gave its own error, so the tool leaves without another
 * (parm_exit_failed). */
int parm_reader_upstream_failed(const parm_reader *r);
void parm_header_free(parm_header *h);
/* Whether tok ends generation by the header's list. */
int parm_header_is_eog(const parm_header *h, int tok);

/* Writing: records are buffered; parm_flush writes them out.  Every
 * function returns 0, or -1 with errno EPIPE when the reader went away
 * (tools exit quietly), or another errno + parm_error. */
typedef struct parm_writer parm_writer;
parm_writer *parm_writer_new(int fd);
/* A failing stage's last word, an abort record, when fd is a pipe (not a
 * file or a terminal): the next stage then leaves without an error of its
 * own.  Whatever the stream held before; for parm_on_die. */
void parm_write_abort(int fd);
/* The stream on fd (standard output) must reach a sampler, which answers
 * on the feedback channel: a file, a terminal or a device cannot.  0, or
 * -1 + parm_error saying so (at once, rather than after the timeout). */
int parm_check_stream_output(int fd);
void parm_writer_free(parm_writer *w);
int parm_write_header(parm_writer *w, const parm_header *h);
int parm_write_start(parm_writer *w, int seq, const char *prompt,
		     const int *tokens, int n_tokens, const char *meta);
int parm_write_round(parm_writer *w, int n_steps, const parm_step *steps, int n_vocab);
int parm_write_end(parm_writer *w, int seq, int tok, int length, const char *reason);
int parm_write_fin(parm_writer *w);
/* Any record as read: how a middle stage passes START, END and FIN on
 * (and a ROUND it did not change). */
int parm_write_record(parm_writer *w, const parm_record *rec, int n_vocab);
int parm_flush(parm_writer *w);

/* PARM_STREAM_TIMEOUT in milliseconds (default 120 s): how long a record
 * may stall half-received, and how long a producer waits for a sampler to
 * open the feedback channel. */
int parm_stream_timeout(void);

/* Copy a header, adding one stage to the provenance chain. */
void parm_header_copy(parm_header *dst, const parm_header *src, const char *stage_json);

/* Feedback channel.  The producer makes a FIFO in a private directory
 * (removed by parm_feedback_remove, also called from its signal handler,
 * and as soon as the sampler says hello); the sampler connects as soon as
 * it has read the header and sends a hello (msgpack nil).  A choice is
 * the msgpack array [seq, token, stop]: stop = 1 when the sampler ended the
 * sequence itself (a stop string matched). */
typedef struct { int seq, tok, stop; } parm_choice;
typedef struct parm_feedback parm_feedback;
parm_feedback *parm_feedback_create(void);              /* producer */
const char *parm_feedback_path(const parm_feedback *f);
/* Wait for n choices (any order); out_fd is polled too, so a reader that
 * went away ends the wait (-1, errno EPIPE), and so does a sampler that
 * closed the channel (it said why itself, or left on purpose).  No sampler
 * connected within parm_stream_timeout() of creation: -1, another errno. */
int parm_feedback_recv(parm_feedback *f, int out_fd, parm_choice *c, int n);
void parm_feedback_remove(parm_feedback *f);            /* unlink FIFO and dir;
							   async-signal-safe */
void parm_feedback_free(parm_feedback *f);      /* closes; removes if created here */
parm_feedback *parm_feedback_connect(const char *path); /* sampler */
int parm_feedback_send(parm_feedback *f, const parm_choice *c, int n);

#endif
