/* lists.c - a controlled task with three objectives, one of them about
 * order: a prompt asks for things of a kind (fruits, birds, tools, ...); a
 * response lists one to eight of them, one in ten of another kind
 * or one twice, sometimes in alphabetical order, sometimes with a
 * courteous sentence after.
 *
 * The oracles:
 *   complete  +1 per distinct item of the kind asked for, -1 per distinct
 *             item of another kind;
 *   brief     -1/4 per word (runs of letters);
 *   sorted    over the items in the order written (repeats too): +1 per
 *             neighbour pair in alphabetical order, -1 per pair out of it.
 * complete and brief pull against each other; sorted rewards long lists
 * only when they are in order.  The commands and options are task.c's;
 * see examples/README.md. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../task.h"
#include <parm/util.h>

#define N_ITEMS 10
#define MAX_LIST 8

struct kind {
	const char *name;
	const char *items[N_ITEMS];     /* in alphabetical order */
};

static const struct kind kinds[] = {
	{ "fruits", { "apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum" } },
	{ "animals", { "bear", "cat", "dog", "fox", "horse", "lion", "mouse", "rabbit", "tiger", "wolf" } },
	{ "colours", { "black", "blue", "brown", "green", "grey", "pink", "purple", "red", "white", "yellow" } },
	{ "tools", { "axe", "chisel", "drill", "file", "hammer", "ladder", "pliers", "saw", "spanner", "wrench" } },
	{ "vegetables", { "bean", "cabbage", "carrot", "celery", "leek", "onion", "pea", "potato", "radish", "turnip" } },
	{ "instruments", { "banjo", "cello", "drum", "flute", "guitar", "harp", "oboe", "piano", "trumpet", "violin" } },
	{ "sports", { "boxing", "cricket", "golf", "hockey", "judo", "rowing", "rugby", "skiing", "surfing", "tennis" } },
	{ "birds", { "crow", "duck", "eagle", "goose", "heron", "owl", "parrot", "robin", "swan", "wren" } },
	{ "flowers", { "aster", "daisy", "iris", "lily", "lotus", "orchid", "poppy", "rose", "tulip", "violet" } },
	{ "drinks", { "cider", "cocoa", "coffee", "juice", "lemonade", "milk", "soda", "tea", "water", "wine" } },
};
#define N_KINDS ((int)TASK_LEN(kinds))

static const char *const phrasings[] = {
	"Name some {o}.", "List a few {o}.", "Which {o} do you know?", "Tell me some {o}, please.",
};
#define N_PHRASINGS ((int)TASK_LEN(phrasings))

static const char *const openers[] = { "Sure:", "Here you go:", "Okay, here are some:", "", "" };
static const char *const closers[] = {
	"I hope that helps.", "There are many more.", "Let me know if you want others.",
};

/* ---- Generating ---- */

static long random_prompt(uint64_t *rng)
{
	return task_pick(rng, N_KINDS * N_PHRASINGS);
}

static char *prompt_text(long index)
{
	return task_fill(phrasings[index % N_PHRASINGS], kinds[index / N_PHRASINGS].name);
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One to eight items, nine in ten of the kind asked for, drawn with
 * replacement;
 * alphabetical three times in ten: "a, b, c and d." */
static char *response_text(uint64_t *rng, long index)
{
	const char *items[MAX_LIST];
	int kind = (int)(index / N_PHRASINGS), n = 1 + task_pick(rng, MAX_LIST);
	char *out = parm_xstrdup("");
	for (int i = 0; i < n; i++) {
		int k = task_pick(rng, 10) < 9 ? kind : task_pick(rng, N_KINDS);
		items[i] = kinds[k].items[task_pick(rng, N_ITEMS)];
	}
	if (task_pick(rng, 10) < 3)
		qsort(items, (size_t)n, sizeof *items, by_text);
	const char *opener = openers[task_pick(rng, (int)TASK_LEN(openers))];
	if (*opener)
		out = task_append(out, " ", opener);
	for (int i = 0; i < n; i++) {
		char item[32];
		snprintf(item, sizeof item, "%s", items[i]);
		if (!*opener && i == 0)
			item[0] = (char)toupper((unsigned char)item[0]);
		out = task_append(out, i == 0 ? " " : i == n - 1 ? " and " : ", ", item);
	}
	out = task_append(out, "", ".");
	if (task_pick(rng, 10) < 3)
		out = task_append(out, " ", closers[task_pick(rng, (int)TASK_LEN(closers))]);
	return out;
}

/* ---- The oracles ---- */

enum objective { COMPLETE, BRIEF, SORTED };

/* The kind a prompt asks for, or -1. */
static int find_kind(const char *prompt)
{
	for (int k = 0; k < N_KINDS; k++)
		if (task_has_word(prompt, kinds[k].name))
			return k;
	return -1;
}

/* The next run of letters in *p (advanced past it), its length in *n;
 * NULL at the end. */
static const char *next_word(const char **p, size_t *n)
{
	const char *s = *p;
	while (*s && !isalpha((unsigned char)*s))
		s++;
	if (!*s)
		return NULL;
	*n = 0;
	while (isalpha((unsigned char)s[*n]))
		++*n;
	*p = s + *n;
	return s;
}

/* The item a word is, as kind * N_ITEMS + index, or -1. */
static int find_item(const char *w, size_t n)
{
	for (int k = 0; k < N_KINDS; k++)
		for (int i = 0; i < N_ITEMS; i++)
			if (strlen(kinds[k].items[i]) == n && !strncmp(kinds[k].items[i], w, n))
				return k * N_ITEMS + i;
	return -1;
}

static double oracle(int obj, const char *prompt, const char *text)
{
	char seen[N_KINDS * N_ITEMS] = { 0 };
	int kind = find_kind(prompt), last = -1;
	double complete = 0, words = 0, order = 0;
	size_t n;
	for (const char *p = text, *w; (w = next_word(&p, &n)); ) {
		int item = find_item(w, n);
		words++;
		if (item < 0)
			continue;
		if (!seen[item])
			complete += kind >= 0 && item / N_ITEMS == kind ? 1 : -1;
		seen[item] = 1;
		if (last >= 0) {
			int c = strcmp(kinds[last / N_ITEMS].items[last % N_ITEMS],
				       kinds[item / N_ITEMS].items[item % N_ITEMS]);
			order += c < 0 ? 1 : c > 0 ? -1 : 0;
		}
		last = item;
	}
	return obj == COMPLETE ? complete : obj == BRIEF ? -words / 4 : order;
}

static const struct task_objective objectives[] = {
	{ "complete", "complete_response_id" },
	{ "brief", "brief_response_id" },
	{ "sorted", "sorted_response_id" },
};

static const struct task lists = {
	.name = "lists",
	.what = "A controlled task with three objectives: lists of things, their length and order",
	.template = "Q: {prompt} A:",
	.objectives = objectives, .n_objectives = 3, .n_labelled = 3,
	.n_prompts = N_KINDS * N_PHRASINGS, .corpus_docs = 6000, .n_pairs = 1000,
	.random_prompt = random_prompt, .prompt = prompt_text, .response = response_text,
	.score = oracle,
};

int main(int argc, char **argv)
{
	return task_main(argc, argv, &lists);
}
