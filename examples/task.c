/* task.c - the commands every controlled task program shares (task.h):
 * options, generating prompts, corpus and pairs from the task's own
 * generator, labelling pairs by its oracles with Bradley-Terry noise, and
 * scoring records as parm-eval's --scorer protocol asks. */
#include "task.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <parm/prompts.h>
#include <parm/rng.h>
#include <parm/util.h>

/* ---- Helpers for the task programs ---- */

int task_pick(uint64_t *rng, int n)
{
	return (int)(parm_splitmix64(rng) % (uint64_t)n);
}

char *task_fill(const char *tmpl, const char *word)
{
	size_t wl = strlen(word), n = 0;
	char *out = parm_xmalloc(strlen(tmpl) * (wl + 1) + 1);
	for (const char *p = tmpl; *p; ) {
		if (!strncmp(p, "{o}", 3)) {
			memcpy(out + n, word, wl);
			n += wl;
			p += 3;
		} else {
			out[n++] = *p++;
		}
	}
	out[n] = 0;
	return out;
}

char *task_append(char *s, const char *sep, const char *text)
{
	s = parm_xrealloc(s, strlen(s) + strlen(sep) + strlen(text) + 1);
	return strcat(strcat(s, sep), text);
}

int task_has_word(const char *text, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
		if ((p == text || !isalpha((unsigned char)p[-1])) && !isalpha((unsigned char)p[n]))
			return 1;
	return 0;
}

/* ---- Options ---- */

struct opts {
	uint64_t seed;
	long n;
	double tau;
	int all_objectives, all, raw, ties_coin;
	const char *tmpl, *field;
};

static void usage(const struct task *t, FILE *f)
{
	const char *n = t->name;
	fprintf(f,
"usage: %s prompts [-s SEED] [-n N | --all]\n"
"       %s corpus  [-s SEED] [-n N] [--raw] [-T TEMPLATE]\n"
"       %s pairs   [-s SEED] [-n N]\n"
"       %s label   [-s SEED] [--tau T] [-k] [--ties drop|coin] [A.jsonl B.jsonl]\n"
"       %s score   [-f FIELD] OBJECTIVE\n"
"       %s info    the template, objectives and prompt count, as sh assignments\n"
"%s (see examples/README.md).\n"
"Objectives (label field):", n, n, n, n, n, n, t->what);
	for (int i = 0; i < t->n_objectives; i++)
		fprintf(f, " %s (%s)%s", t->objectives[i].name, t->objectives[i].label_field,
			i >= t->n_labelled ? " [-k]" : "");
	fprintf(f, "\n"
"  -s, --seed S      random seed (default 1)\n"
"  -n, --count N     records to write (default: prompts %ld, corpus %ld, pairs %ld)\n"
"      --all         prompts: every prompt once, in order\n"
"      --raw         corpus: the prompt field unwrapped (no template)\n"
"  -T, --template T  corpus: the template, {prompt} marks the prompt\n"
"  -t, --tau T       label: Bradley-Terry temperature (default 0.5; 0: no noise)\n"
"  -k, --all-objectives  label: every objective, those marked [-k] too\n"
"  -f, --field F     score: the field to score (default response)\n"
"      --ties W      label: a pair tied on an objective is dropped (default) or\n"
"                    labelled by a coin\n"
"  -h, --help        show this help\n", t->n_prompts, t->corpus_docs, t->n_pairs);
}

static void parse_opts(int argc, char **argv, const struct task *t, struct opts *o)
{
	static const struct option lo[] = {
		{ "seed", 1, 0, 's' }, { "count", 1, 0, 'n' }, { "tau", 1, 0, 't' },
		{ "all-objectives", 0, 0, 'k' }, { "template", 1, 0, 'T' }, { "all", 0, 0, 'a' },
		{ "raw", 0, 0, 'r' }, { "field", 1, 0, 'f' }, { "ties", 1, 0, 'x' },
		{ "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	int c;
	*o = (struct opts){ .seed = 1, .n = -1, .tau = 0.5, .tmpl = t->template, .field = "response" };
	while ((c = getopt_long(argc, argv, "s:n:t:kT:f:h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o->seed = (uint64_t)parm_opt_long("--seed", optarg, 0, 0x7fffffffffffffffL); break;
		case 'n': o->n = parm_opt_long("--count", optarg, 0, 100000000L); break;
		case 't': o->tau = parm_opt_float("--tau", optarg, 0, 1e6); break;
		case 'k': o->all_objectives = 1; break;
		case 'T': o->tmpl = optarg; break;
		case 'a': o->all = 1; break;
		case 'r': o->raw = 1; break;
		case 'f': o->field = optarg; break;
		case 'x':
			if (strcmp(optarg, "drop") && strcmp(optarg, "coin"))
				parm_usage_error("--ties: '%s' is neither drop nor coin", optarg);
			o->ties_coin = !strcmp(optarg, "coin");
			break;
		case 'h': usage(t, stdout); exit(0);
		default: parm_usage_error("unknown option");
		}
	}
}

/* ---- Generating ---- */

static void put_record(json_t *rec)
{
	char *s = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	puts(s);
	free(s);
	json_decref(rec);
}

static void cmd_prompts(const struct task *t, const struct opts *o)
{
	uint64_t rng = o->seed;
	long n = o->all ? t->n_prompts : o->n >= 0 ? o->n : t->n_prompts;
	for (long i = 0; i < n; i++) {
		char *p = t->prompt(o->all ? i : t->random_prompt(&rng));
		put_record(json_pack("{s:s}", "prompt", p));
		free(p);
	}
}

static void cmd_corpus(const struct task *t, const struct opts *o)
{
	uint64_t rng = o->seed;
	for (long i = 0, n = o->n >= 0 ? o->n : t->corpus_docs; i < n; i++) {
		long k = t->random_prompt(&rng);
		char *p = t->prompt(k), *r = t->response(&rng, k);
		char *wrapped = o->raw ? parm_xstrdup(p) : parm_apply_template(o->tmpl, p);
		put_record(json_pack("{s:s, s:s}", "prompt", wrapped, "response", r));
		free(wrapped);
		free(p);
		free(r);
	}
}

static void cmd_pairs(const struct task *t, const struct opts *o)
{
	uint64_t rng = o->seed;
	for (long i = 0, n = o->n >= 0 ? o->n : t->n_pairs; i < n; i++) {
		long k = t->random_prompt(&rng);
		char *p = t->prompt(k), *r0 = t->response(&rng, k), *r1 = t->response(&rng, k);
		put_record(json_pack("{s:s, s:s, s:s}", "prompt", p, "response_0", r0, "response_1", r1));
		free(p);
		free(r0);
		free(r1);
	}
}

/* ---- Reading records ---- */

/* The next JSON object of f (blank lines skipped); NULL at the end. */
static json_t *next_record(FILE *f, const char *name, long *lineno)
{
	static char *line;
	static size_t cap;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) >= 0) {
		json_error_t err;
		json_t *rec;
		++*lineno;
		if (strspn(line, " \t\r\n") == (size_t)n)
			continue;
		rec = json_loads(line, JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &err);
		if (!json_is_object(rec))
			parm_die("%s:%ld: not a JSON object%s%s", name, *lineno, rec ? "" : ": ",
			    rec ? "" : err.text);
		return rec;
	}
	if (ferror(f))
		parm_die("%s: read error", name);
	return NULL;
}

/* A string field, or "" when absent or not a string (a scorer gives
 * garbage a score, never an error). */
static json_t *field(json_t *rec, const char *key)
{
	json_t *v = json_object_get(rec, key);
	return json_is_string(v) ? json_incref(v) : json_string("");
}

/* Its text for the oracles: lower case, NUL bytes read as spaces. */
static char *oracle_text(json_t *s)
{
	size_t n = json_string_length(s);
	char *out = parm_xmemdup(json_string_value(s), n + 1);
	for (size_t i = 0; i < n; i++)
		out[i] = out[i] ? (char)tolower((unsigned char)out[i]) : ' ';
	return out;
}

/* One oracle's score of a record's field. */
static double score_field(const struct task *t, int obj, json_t *rec, const char *key)
{
	json_t *ps = field(rec, "prompt"), *rs = field(rec, key);
	char *prompt = oracle_text(ps), *text = oracle_text(rs);
	double r = t->score(obj, prompt, text);
	free(prompt);
	free(text);
	json_decref(ps);
	json_decref(rs);
	return r;
}

static void cmd_score(const struct task *t, const char *name, const char *key)
{
	int obj = -1;
	long lineno = 0;
	json_t *rec;
	for (int i = 0; i < t->n_objectives; i++)
		if (!strcmp(name, t->objectives[i].name))
			obj = i;
	if (obj < 0)
		parm_usage_error("score: no objective '%s' (%s --help lists them)", name, t->name);
	while ((rec = next_record(stdin, "<stdin>", &lineno))) {
		printf("%g\n", score_field(t, obj, rec, key));
		json_decref(rec);
	}
}

/* ---- Labelling ---- */

/* Which response is better: 0 or 1 with P(0) = sigmoid((r0 - r1) / tau),
 * or -1 for a tie that is dropped. */
static int bt_label(uint64_t *rng, double r0, double r1, const struct opts *o)
{
	double u = parm_splitmix_uniform(rng), p;
	if (r0 == r1)
		return o->ties_coin ? u < 0.5 ? 0 : 1 : -1;
	p = o->tau > 0 ? 1 / (1 + exp(-(r0 - r1) / o->tau)) : r0 > r1;
	return u < p ? 0 : 1;
}

/* pair holds prompt, response_0 and response_1; labelled, it is added to
 * out (the strings passed through as they came, NUL bytes and all). */
static void label_pair(const struct task *t, uint64_t *rng, json_t *pair,
		       const struct opts *o, json_t *out)
{
	int k = o->all_objectives ? t->n_objectives : t->n_labelled, label[16], tie = 0;
	for (int i = 0; i < k; i++) {
		label[i] = bt_label(rng, score_field(t, i, pair, "response_0"),
				    score_field(t, i, pair, "response_1"), o);
		tie |= label[i] < 0;
	}
	if (tie)
		return;
	for (int i = 0; i < k; i++)
		json_object_set_new(pair, t->objectives[i].label_field, json_integer(label[i]));
	json_array_append(out, pair);
}

/* A pair from two records of generations (prompt, response). */
static json_t *join(json_t *a, json_t *b)
{
	return json_pack("{s:o, s:o, s:o}", "prompt", field(a, "prompt"),
			 "response_0", field(a, "response"), "response_1", field(b, "response"));
}

static FILE *open_or_die(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		parm_die("%s: cannot open: %s", path, strerror(errno));
	return f;
}

/* Pairs on stdin (prompt, response_0, response_1), or two files of
 * generations (prompt, response) read side by side.  Nothing is written
 * until all is read, so an error leaves stdout empty. */
static void cmd_label(const struct task *t, const struct opts *o, int nfiles, char **files)
{
	uint64_t rng = o->seed;
	long line_a = 0, line_b = 0;
	FILE *a = nfiles ? open_or_die(files[0]) : stdin, *b = nfiles ? open_or_die(files[1]) : NULL;
	json_t *ra, *rb, *out = json_array();
	size_t i;
	json_t *rec;
	while ((ra = next_record(a, nfiles ? files[0] : "<stdin>", &line_a))) {
		json_t *pair = ra;
		if (b) {
			if (!(rb = next_record(b, files[1], &line_b)))
				parm_die("%s: fewer records than %s", files[1], files[0]);
			pair = join(ra, rb);
			json_decref(ra);
			json_decref(rb);
		}
		label_pair(t, &rng, pair, o, out);
		json_decref(pair);
	}
	if (b && next_record(b, files[1], &line_b))
		parm_die("%s: more records than %s", files[1], files[0]);
	json_array_foreach(out, i, rec)
		put_record(json_incref(rec));
	json_decref(out);
}

/* What the scripts need to know, as sh assignments (examples/demo.sh,
 * make-pairs.sh: eval "$(TASK info)"). */
static void cmd_info(const struct task *t)
{
	if (strchr(t->template, '\''))
		parm_die("the template holds a quote");
	printf("TASK_NAME=%s\nTASK_TEMPLATE='%s'\nTASK_PROMPTS=%ld\nTASK_DOCS=%ld\n", t->name,
	       t->template, t->n_prompts, t->corpus_docs);
	for (int all = 0; all < 2; all++) {
		printf("TASK_%sOBJECTIVES='", all ? "ALL_" : "");
		for (int i = 0; i < (all ? t->n_objectives : t->n_labelled); i++)
			printf("%s%s=%s", i ? " " : "", t->objectives[i].name, t->objectives[i].label_field);
		puts("'");
	}
}

static void need_args(int n, int lo, int hi, const char *what)
{
	if (n < lo || n > hi || (lo == 0 && hi == 2 && n == 1))
		parm_usage_error("%s", what);
}

int task_main(int argc, char **argv, const struct task *t)
{
	struct opts o;
	const char *cmd;
	int nargs;
	parm_setprog(t->name);
	if (t->n_objectives > 16)
		parm_die("more than 16 objectives");
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(t, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	cmd = argv[1];
	parse_opts(argc - 1, argv + 1, t, &o);
	nargs = argc - 1 - optind;
	if (!strcmp(cmd, "prompts") || !strcmp(cmd, "corpus") || !strcmp(cmd, "pairs") ||
	    !strcmp(cmd, "info"))
		need_args(nargs, 0, 0, "prompts, corpus, pairs and info take no file arguments");
	if (!strcmp(cmd, "info"))
		cmd_info(t);
	else if (!strcmp(cmd, "prompts"))
		cmd_prompts(t, &o);
	else if (!strcmp(cmd, "corpus"))
		cmd_corpus(t, &o);
	else if (!strcmp(cmd, "pairs"))
		cmd_pairs(t, &o);
	else if (!strcmp(cmd, "label")) {
		need_args(nargs, 0, 2, "label: give two files of generations, or none (pairs on stdin)");
		cmd_label(t, &o, nargs, argv + 1 + optind);
	} else if (!strcmp(cmd, "score")) {
		need_args(nargs, 1, 1, "score: name one objective");
		cmd_score(t, argv[1 + optind], o.field);
	} else
		parm_usage_error("unknown command '%s'", cmd);
	if (fflush(stdout) || ferror(stdout))
		parm_die("cannot write the output");
	return 0;
}
