/* task.h - a controlled multi-objective task: what each task program
 * (world/world.c, reviews/reviews.c, lists/lists.c) defines.  task.c is
 * the rest, the same for all: the commands
 *
 *   TASK prompts   prompts, one JSONL record each
 *   TASK corpus    prompt + response documents for pretraining a base
 *   TASK pairs     two generated responses per prompt (unlabelled)
 *   TASK label     label pairs with the oracles and Bradley-Terry noise
 *   TASK score O   the oracle for objective O, parm-eval's scorer protocol
 *   TASK info      what the scripts need to know, as sh assignments
 *
 * their options, the labelling and the reading of records.  Everything is
 * deterministic given --seed (splitmix64 from libparm). */
#ifndef PARM_EXAMPLES_TASK_H
#define PARM_EXAMPLES_TASK_H

#include <stddef.h>
#include <stdint.h>

struct task_objective {
	const char *name;               /* as `TASK score` names it */
	const char *label_field;        /* the pair's field: 0 or 1, the better */
};

struct task {
	const char *name;               /* the program, in messages */
	const char *what;               /* one line for --help */
	const char *template;           /* corpus prompts are wrapped in it */
	const struct task_objective *objectives;
	int n_objectives;
	int n_labelled;                 /* labelled by default; -k: all */
	long n_prompts;                 /* distinct prompts (prompts --all) */
	long corpus_docs, n_pairs;      /* the defaults of -n */
	/* a random prompt's index (< n_prompts), and the prompt of an index */
	long (*random_prompt)(uint64_t *rng);
	char *(*prompt)(long index);
	/* a response to prompt index, starting with a space as a model's
	 * continuation does; malloc'd */
	char *(*response)(uint64_t *rng, long index);
	/* objective's reward for text (both lower case, NUL bytes as spaces) */
	double (*score)(int objective, const char *prompt, const char *text);
};

int task_main(int argc, char **argv, const struct task *t);

/* helpers for the task programs */
#define TASK_LEN(a) (sizeof (a) / sizeof *(a))
int task_pick(uint64_t *rng, int n);                    /* uniform in [0, n) */
char *task_fill(const char *tmpl, const char *word);    /* {o} replaced */
char *task_append(char *s, const char *sep, const char *text);  /* s sep text */
int task_has_word(const char *text, const char *word);  /* as whole words */

#endif
