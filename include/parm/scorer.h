/* scorer.h - scoring generated text: external scorer commands (JSONL in,
 * one number per line out) and an ARM used as a reward model
 * (r = beta * sum of log pi over the response tokens).
 */
#ifndef PARM_SCORER_H
#define PARM_SCORER_H

#include "arm.h"

/* Run command through /bin/sh once: write records[n] (one JSON object
 * each, no newline) to its stdin, a line each, while reading its stdout
 * (both at once, so neither pipe can fill and stall the other), and parse
 * one finite number per line into scores[n].  Its stderr is ours.
 * Errors (-1 + parm_error) name the scorer as "scorer NAME (COMMAND)" and
 * the record concerned by origins[i] ("file:line"): a non-number, fewer
 * lines than records, more lines, a non-zero exit or a signal. */
int parm_run_scorer(double *scores, const char *name, const char *command,
		    const char *const *records, const char *const *origins, long n);

/* An ARM as a reward model at a fixed alpha: its backbone run by
 * parm_forward_adapted with the adapters unmerged (parm_arm_adapters:
 * s B M(alpha) A x beside each adapted matrix, no dropout), so nothing
 * the size of a weight matrix is copied. */
typedef struct parm_arm_scorer parm_arm_scorer;

/* alpha[arm->k]; the ARM must outlive the scorer, which reads its
 * adapters in place (changes to arm->params take effect at the next
 * parm_arm_scorer_set_pref). */
parm_arm_scorer *parm_arm_scorer_new(const parm_arm *arm, const float *alpha);
/* Mix again for another alpha (cheap: r x r a matrix); returns 0. */
int parm_arm_scorer_set_pref(parm_arm_scorer *s, const float *alpha);
void parm_arm_scorer_free(parm_arm_scorer *s);
/* *sum = sum of log pi(seq[t] | seq[<t]) over t in [resp_start, n)
 * (1 <= resp_start <= n); multiply by arm->beta for the reward.
 * -1 + parm_error if n passes the model's context. */
int parm_arm_scorer_logp(parm_arm_scorer *s, const int *seq, int n, int resp_start,
			 double *sum);

#endif
