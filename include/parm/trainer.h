/* trainer.h - the training loop behind parm-train lm and arm: batches,
 * gradient accumulation, AdamW steps on a cosine schedule, held-out
 * evaluation, progress reports and resumable checkpoints.
 *
 * Everything a step does is a function of (options, data, step number):
 * the epoch order comes from parm_epoch_order(seed, epoch), a micro-batch's
 * preference vector and dropout masks from (seed, step, micro-batch), so a
 * run resumed from a checkpoint (parameters, AdamW m, v and step) computes
 * exactly what an uninterrupted run computes, bit for bit.
 *
 * Steps and epochs: an optimiser step takes batch * accum examples of the
 * epoch order (the last step of an epoch takes what is left), in accum
 * micro-batches of up to batch examples, each weighted by its share of the
 * step's examples, so the step's gradient is the mean over its examples.
 */
#ifndef PARM_TRAINER_H
#define PARM_TRAINER_H

#include <stdint.h>
#include <stdio.h>
#include "arm.h"
#include "dataset.h"
#include "optim.h"
#include "train.h"

typedef struct {
	long steps;             /* optimiser steps; 0: epochs * steps per epoch */
	long epochs;
	int batch, accum;       /* examples per micro-batch, micro-batches per step */
	float lr, weight_decay, clip;
	long warmup;            /* linear warm-up steps of the cosine schedule */
	uint64_t seed;
	long eval_every;        /* held-out evaluation every N steps (0: only at the end) */
	long ckpt_every;        /* checkpoint every N steps (0: only at the end) */
	const char *ckpt_path;  /* NULL: no checkpoints */
	int resume;             /* continue from ckpt_path */
	/* "key=value\n" lines of every option that changes the result; a
	 * checkpoint made with other lines is refused, naming the first. */
	const char *fingerprint;
} parm_loop_opts;

/* What a report says; the loop calls report() after every step (and once
 * with step = start before the first, with the first evaluation). */
typedef struct {
	long step, total, steps_per_epoch;
	long epoch;             /* 1-based: the epoch the last step was in */
	double loss;            /* of this step; NAN before the first */
	float lr, grad_norm;
	double tokens_per_s, elapsed, eta;      /* seconds */
	int n_metrics;
	const char *const *metric_names;
	const double *metric;   /* NULL until the first evaluation */
	int evaluated;          /* this report follows a fresh evaluation */
	int checkpointed, final;
} parm_report;

/* A task: the examples and what a micro-batch does with them. */
typedef struct {
	void *ctx;
	long n_train;
	/* Forward and backward over training examples idx[n], gradients
	 * accumulated times weight; returns the loss (before weighting) and
	 * adds the tokens processed to *tokens.  key is unique to (step,
	 * micro-batch), for anything random.  -1 + parm_error: NAN. */
	double (*micro)(void *ctx, parm_trainer *t, const long *idx, int n, float weight,
			uint64_t key, int64_t *tokens);
	/* Held-out metrics into metric[n_metrics]; -1 + parm_error. */
	int (*eval)(void *ctx, parm_trainer *t, double *metric);
	int n_metrics;          /* 0: no evaluation */
	const char *const *metric_names;
	void (*report)(void *rctx, const parm_report *r);
	void *rctx;
} parm_task;

long parm_loop_steps_per_epoch(long n_train, int batch, int accum);
long parm_loop_total_steps(const parm_loop_opts *o, long n_train);

/* Train t on task; on return the parameters are the final ones and the
 * final checkpoint (if any) is written.  metric (may be NULL) gets the last
 * evaluation.  -1 + parm_error (a refused checkpoint, a bad batch...). */
int parm_loop_run(parm_trainer *t, const parm_task *task, const parm_loop_opts *o,
		  double *metric);

/* ---- checkpoints (checkpoint.c) ---- */

typedef struct {
	char *fingerprint;
	long step, epoch, pos;  /* steps done; epoch and position in its order */
	uint64_t rng;           /* the seed the keys derive from */
	size_t n_params;
	float *params, *m, *v;  /* [n_params] each */
	long adam_step;
} parm_ckpt;

/* Written to PATH.tmp, flushed, synced and renamed over PATH. */
int parm_ckpt_save(const char *path, const parm_ckpt *c);
int parm_ckpt_load(const char *path, parm_ckpt *c);     /* allocates */
/* The same from an open seekable stream (fmemopen too); name is for messages. */
int parm_ckpt_read(FILE *f, const char *name, parm_ckpt *c);
void parm_ckpt_free(parm_ckpt *c);
/* NULL if the fingerprints agree, else a message naming the first
 * option that differs (static buffer). */
const char *parm_ckpt_mismatch(const char *saved, const char *now);

/* ---- tasks (train_tasks.c) ---- */

/* LM: sequences of d by index; metric: held-out loss (nats per token). */
typedef struct {
	const parm_lm_data *d;
	const long *train_idx, *held;
	long n_held;
	int batch, max_len;
	int *tok, *len;         /* scratch */
	uint8_t *mask;
	float *logp, *dlogp;
} parm_lm_task;

void parm_lm_task_init(parm_task *task, parm_lm_task *lt, const parm_lm_data *d,
		       const long *train, long n_train, const long *held, long n_held,
		       int batch);
void parm_lm_task_free(parm_lm_task *lt);

/* How PARM draws alpha for a micro-batch: with probability vertex a
 * vertex e_i (i uniform), else from Dirichlet(conc, ..., conc).  The
 * official code's: Dirichlet(0.5), no vertices. */
typedef struct {
	double conc, vertex;
} parm_pref_dist;
#define PARM_PREF_OFFICIAL ((parm_pref_dist){ .conc = 0.5, .vertex = 0 })

/* alpha[k] drawn from d, a pure function of key. */
void parm_pref_draw(float *alpha, int k, const parm_pref_dist *d, uint64_t key);

/* ARM: pairs by index, PARM's loss with alpha drawn from dist per
 * micro-batch (k > 1) or GenARM's (k = 1); metrics: held-out preference
 * accuracy, for k > 1 the k x k matrix metric[i k + j] = objective j's at
 * alpha = e_i (a PARM that ignores alpha has equal rows), for k = 1 the
 * one objective's. */
typedef struct {
	const parm_pairs *p;
	const long *train_idx, *held;
	long n_held;
	int k, batch, max_len;
	double beta;
	parm_pref_dist dist;    /* PARM_PREF_OFFICIAL unless set after init */
	int *tok, *len, *plen;  /* scratch */
	int8_t *label;
	uint8_t *want;
	float *logp, *dlogp, *S;
} parm_arm_task;

void parm_arm_task_init(parm_task *task, parm_arm_task *at, const parm_pairs *p,
			const long *train, long n_train, const long *held, long n_held,
			int k, double beta, int batch);
void parm_arm_task_free(parm_arm_task *at);
/* Longest sequence of the pairs (tokens). */
int parm_pairs_max_len(const parm_pairs *p);

/* Preference accuracy of pairs idx[n] at alpha: for each objective i,
 * correct[i] of labelled[i] pairs rank the winner higher, margin[i] the
 * sum of beta (S_w - S_l) over them.  Training mode is turned off. */
int parm_arm_accuracy(parm_arm_task *at, parm_trainer *t, const long *idx, long n,
		      const float *alpha, long *correct, long *labelled, double *margin);

/* ---- trainers on ARMs (arm_train.c; parm_train_new_on_arm) ---- */

/* The adapter options matching an ARM's (dropout 0: for evaluation). */
void parm_adapter_opts_of_arm(parm_adapter_opts *o, const parm_arm *arm);
/* Record in the ARM the objectives' label fields (or files) it is trained
 * on (parm.train.labels, one NAME=FIELD or NAME=@FILE per line). */
void parm_arm_record_labels(parm_arm *arm, const parm_objectives *o);
/* Those an ARM recorded, into o (for an ARM that recorded none, written
 * before ARMs did, PKU-SafeRLHF's of the objectives it has); -1 +
 * parm_error on a bad record. */
int parm_arm_labels(const parm_arm *arm, parm_objectives *o);

/* ---- progress (progress.c) ---- */

/* Prints reports to f: on a terminal one line redrawn in place (at most
 * ten times a second, and at every evaluation); otherwise a line every
 * log_every steps, after every evaluation and at the end. */
typedef struct {
	FILE *f;
	int tty;
	long log_every;
	double last_draw, loss_sum;
	long loss_n;
} parm_progress;

void parm_progress_init(parm_progress *p, FILE *f, int tty, long log_every);
void parm_progress_report(void *p, const parm_report *r);

#endif
