/* reviews.c - a controlled task whose objectives are carried by word
 * choice spread through free text: a prompt asks about a thing; a response
 * is one to four loosely built sentences whose adjectives, intensifiers and
 * openers each carry a sentiment and a register.  The writer's voice ties
 * the two together: casual voices mostly praise, formal ones mostly find
 * fault, and formal praise is rare, so "positive" and "formal" conflict in
 * what the base learns, though not in what could be written.
 *
 * The oracles (both read the text, so garbled text scores too):
 *   positive  +1 per distinct positive adjective, -1 per negative one; a
 *             "not" just before an adjective turns its sign;
 *   formal    +1 per distinct formal word, -1 per distinct casual one.
 * The commands and options are task.c's; see examples/README.md. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "../task.h"
#include <parm/util.h>

enum reg { CASUAL, PLAIN, FORMAL, N_REGS };
enum mood { PRAISE, FAULT, MIXED };

static const char *const things[] = {
	"phone", "laptop", "hotel", "movie", "cafe", "book", "bike", "headphones", "camera", "sofa",
	"game", "restaurant", "jacket", "tent", "blender", "printer", "museum", "concert", "watch", "backpack",
};
static const char *const phrasings[] = {
	"Write a short review of the {o}.", "What do you think of the {o}?",
	"How was the {o}?", "Tell me about your new {o}.",
};
#define N_THINGS ((long)TASK_LEN(things))
#define N_PHRASINGS ((long)TASK_LEN(phrasings))

struct word {
	const char *text;
	int sentiment;          /* +1, 0, -1 (adjectives) */
	enum reg reg;
};

static const struct word adjectives[] = {
	{ "awesome", 1, CASUAL }, { "cool", 1, CASUAL }, { "sweet", 1, CASUAL },
	{ "rad", 1, CASUAL }, { "neat", 1, CASUAL }, { "killer", 1, CASUAL },
	{ "good", 1, PLAIN }, { "great", 1, PLAIN }, { "nice", 1, PLAIN },
	{ "lovely", 1, PLAIN }, { "pleasant", 1, PLAIN },
	{ "excellent", 1, FORMAL }, { "exemplary", 1, FORMAL }, { "admirable", 1, FORMAL },
	{ "commendable", 1, FORMAL }, { "superb", 1, FORMAL },
	{ "crappy", -1, CASUAL }, { "lame", -1, CASUAL }, { "junky", -1, CASUAL },
	{ "sucky", -1, CASUAL }, { "meh", -1, CASUAL },
	{ "bad", -1, PLAIN }, { "poor", -1, PLAIN }, { "awful", -1, PLAIN },
	{ "weak", -1, PLAIN }, { "ugly", -1, PLAIN },
	{ "unsatisfactory", -1, FORMAL }, { "deficient", -1, FORMAL }, { "inadequate", -1, FORMAL },
	{ "substandard", -1, FORMAL }, { "regrettable", -1, FORMAL },
	{ "alright", 0, CASUAL }, { "okay", 0, PLAIN }, { "average", 0, PLAIN },
	{ "ordinary", 0, PLAIN }, { "acceptable", 0, FORMAL }, { "adequate", 0, FORMAL },
};

static const struct word intensifiers[] = {
	{ "totally", 0, CASUAL }, { "super", 0, CASUAL }, { "real", 0, CASUAL }, { "hella", 0, CASUAL },
	{ "very", 0, PLAIN }, { "quite", 0, PLAIN }, { "really", 0, PLAIN },
	{ "remarkably", 0, FORMAL }, { "exceptionally", 0, FORMAL },
	{ "considerably", 0, FORMAL }, { "notably", 0, FORMAL },
};

static const struct word openers[] = {
	{ "honestly", 0, CASUAL }, { "dude", 0, CASUAL }, { "lol", 0, CASUAL }, { "man", 0, CASUAL },
	{ "well", 0, PLAIN }, { "so", 0, PLAIN }, { "also", 0, PLAIN },
	{ "overall", 0, FORMAL }, { "furthermore", 0, FORMAL }, { "in summary", 0, FORMAL },
	{ "admittedly", 0, FORMAL },
};

static const char *const subjects[] = {
	"the {o}", "it", "the price", "the design", "the quality", "the service", "the size", "the colour",
};
static const char *const verbs[] = { "is", "was", "feels", "seems", "looks" };

/* ---- Generating ---- */

static long random_prompt(uint64_t *rng)
{
	return task_pick(rng, (int)(N_THINGS * N_PHRASINGS));
}

static char *prompt_text(long index)
{
	return task_fill(phrasings[index % N_PHRASINGS], things[index / N_PHRASINGS]);
}

/* A register for one word in voice v: mostly the voice's own. */
static enum reg pick_reg(uint64_t *rng, enum reg v)
{
	if (v == PLAIN)
		return task_pick(rng, 10) < 8 ? PLAIN : task_pick(rng, 2) ? CASUAL : FORMAL;
	return task_pick(rng, 10) < 7 ? v : PLAIN;
}

/* A word of list (n entries) with this register and sentiment, at random;
 * the plain register's when it has none. */
static const char *pick_word(uint64_t *rng, const struct word *list, size_t n, enum reg reg, int sentiment)
{
	const char *found[16];
	int m = 0;
	for (size_t i = 0; i < n; i++)
		if (list[i].reg == reg && list[i].sentiment == sentiment && m < 16)
			found[m++] = list[i].text;
	if (!m)
		return reg == PLAIN ? "okay" : pick_word(rng, list, n, PLAIN, sentiment);
	return found[task_pick(rng, m)];
}

/* An adjective saying what the mood says (mixed: either, at random). */
static const char *pick_adjective(uint64_t *rng, enum reg v, enum mood m)
{
	int s = m == PRAISE ? 1 : m == FAULT ? -1 : task_pick(rng, 2) ? 1 : -1;
	if (task_pick(rng, 100) < 15)
		s = 0;
	return pick_word(rng, adjectives, TASK_LEN(adjectives), pick_reg(rng, v), s);
}

/* One sentence: [opener,] subject verb [intensifier] adjective, [but ...]. */
static char *sentence(uint64_t *rng, const char *thing, enum reg v, enum mood m)
{
	char *s = parm_xcalloc(1, 1), *subj;
	int form = task_pick(rng, 4);
	if (task_pick(rng, 2))
		s = task_append(task_append(s, "", pick_word(rng, openers, TASK_LEN(openers),
							  pick_reg(rng, v), 0)), "", ",");
	subj = task_fill(subjects[task_pick(rng, TASK_LEN(subjects))], thing);
	s = task_append(task_append(s, *s ? " " : "", subj), " ", verbs[task_pick(rng, TASK_LEN(verbs))]);
	free(subj);
	if (form == 3) {        /* negated: the opposite word, so the sense holds */
		enum mood opp = m == PRAISE ? FAULT : m == FAULT ? PRAISE : MIXED;
		s = task_append(task_append(s, " ", "not"), " ", pick_adjective(rng, v, opp));
	} else {
		if (task_pick(rng, 10) < 4)
			s = task_append(s, " ", pick_word(rng, intensifiers, TASK_LEN(intensifiers),
							   pick_reg(rng, v), 0));
		s = task_append(s, " ", pick_adjective(rng, v, m));
	}
	if (form == 2) {
		subj = task_fill(subjects[task_pick(rng, TASK_LEN(subjects))], thing);
		s = task_append(task_append(task_append(s, "", ", but"), " ", subj), " ",
				verbs[task_pick(rng, TASK_LEN(verbs))]);
		s = task_append(s, " ", pick_adjective(rng, v, m == PRAISE ? FAULT : m == FAULT ? PRAISE : MIXED));
		free(subj);
	}
	s = task_append(s, "", v == CASUAL && task_pick(rng, 3) == 0 ? "!" : ".");
	s[0] = (char)toupper((unsigned char)s[0]);
	return s;
}

/* One to four sentences in one voice and mood; casual voices mostly
 * praise, formal ones mostly find fault. */
static char *response_text(uint64_t *rng, long index)
{
	static const int praise[N_REGS] = { 6, 3, 2 }, fault[N_REGS] = { 2, 3, 6 };
	enum reg v = (enum reg)task_pick(rng, N_REGS);
	int u = task_pick(rng, 10), n = 1 + task_pick(rng, 4);
	enum mood m = u < praise[v] ? PRAISE : u < praise[v] + fault[v] ? FAULT : MIXED;
	char *out = parm_xcalloc(1, 1);
	for (int i = 0; i < n; i++) {
		char *s = sentence(rng, things[index / N_PHRASINGS], v, m);
		out = task_append(out, " ", s);
		free(s);
	}
	return out;
}

/* ---- The oracles ---- */

enum objective { POSITIVE, FORMALITY };

/* Where word occurs in text as a whole word: bit 0 plainly, bit 1 right
 * after "not ". */
static int occurrences(const char *text, const char *word)
{
	size_t n = strlen(word);
	int seen = 0;
	for (const char *p = strstr(text, word); p; p = strstr(p + 1, word)) {
		if ((p > text && isalpha((unsigned char)p[-1])) || isalpha((unsigned char)p[n]))
			continue;
		int negated = p - text >= 4 && !strncmp(p - 4, "not ", 4) &&
			(p - text == 4 || !isalpha((unsigned char)p[-5]));
		seen |= negated ? 2 : 1;
	}
	return seen;
}

static double positivity(const char *text)
{
	double r = 0;
	for (size_t i = 0; i < TASK_LEN(adjectives); i++) {
		int seen = occurrences(text, adjectives[i].text);
		r += adjectives[i].sentiment * ((seen & 1) - ((seen & 2) >> 1));
	}
	return r;
}

static double sum_register(const char *text, const struct word *list, size_t n)
{
	double r = 0;
	for (size_t i = 0; i < n; i++)
		if (list[i].reg != PLAIN && task_has_word(text, list[i].text))
			r += list[i].reg == FORMAL ? 1 : -1;
	return r;
}

static double oracle(int obj, const char *prompt, const char *text)
{
	if (obj == POSITIVE)
		return positivity(text);
	return sum_register(text, adjectives, TASK_LEN(adjectives)) +
		sum_register(text, intensifiers, TASK_LEN(intensifiers)) +
		sum_register(text, openers, TASK_LEN(openers));
}

static const struct task_objective objectives[] = {
	{ "positive", "positive_response_id" },
	{ "formal", "formal_response_id" },
};

static const struct task reviews = {
	.name = "reviews",
	.what = "A controlled task in free text: reviews whose word choice carries sentiment and register",
	.template = "USER: {prompt} ASSISTANT:",
	.objectives = objectives, .n_objectives = 2, .n_labelled = 2,
	.n_prompts = N_THINGS * N_PHRASINGS, .corpus_docs = 3000, .n_pairs = 1000,
	.random_prompt = random_prompt, .prompt = prompt_text, .response = response_text,
	.score = oracle,
};

int main(int argc, char **argv)
{
	return task_main(argc, argv, &reviews);
}
