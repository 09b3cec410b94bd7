/* parm-eval - preference accuracy of an ARM on held-out pairs, and
 * scores of generated responses aggregated over the alpha grid (mean
 * rewards with standard errors, hypervolume, MIP, Pareto fronts, a plot). */
#include <parm/arm.h>
#include <parm/chat.h>
#include <parm/dataset.h>
#include <parm/metrics.h>
#include <parm/prompts.h>
#include <parm/scorer.h>
#include <parm/svg.h>
#include <parm/trainer.h>
#include <parm/util.h>

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PARM_VERSION
#define PARM_VERSION "dev"
#endif

static const char usage_text[] =
"usage: parm-eval accuracy [options] ARM.gguf PAIRS...\n"
"       parm-eval score [options] RESULTS.jsonl...\n"
"accuracy: the share of preference pairs the ARM ranks right (S_w > S_l,\n"
"S = sum of log pi over the response), per objective, at alpha = e_i and\n"
"at any alpha asked for.\n"
"  -O, --objective NAME=FIELD|NAME=@FILE  label fields (default: those the ARM\n"
"                       was trained on)\n"
"  -T, --template TEXT  prompt template, {prompt} marks the prompt, or chat:\n"
"                       the backbone's chat template (default: the ARM's)\n"
"      --system TEXT    the system message of the chat template (default:\n"
"                       the ARM's, as trained)\n"
"  -L, --max-length N   drop pairs longer than N tokens (default: the context)\n"
"      --overlong drop|truncate  pairs over --max-length (default drop)\n"
"  -g, --grid M         also the M-point simplex grid (11: (0,1), (0.1,0.9), ...)\n"
"  -p, --pref ALPHA     also at ALPHA ('0.3,0.7' or 'helpful=0.3,...'; repeatable)\n"
"      --details        also, per objective, the pairs labelled for it and the\n"
"                       mean reward margin beta (S_w - S_l)\n"
"score: score parm-sample --json records, group them by method and alpha\n"
"(from the provenance chain) and compare the methods.\n"
"      --scorer NAME=COMMAND  a command (run by /bin/sh) reading the records\n"
"                       as JSONL on stdin and printing one number per line\n"
"      --reward NAME=ARM.gguf[@ALPHA]  an ARM as reward model: beta * sum of\n"
"                       log pi over the response (ALPHA needed when k > 1)\n"
"  -T, --template TEXT  for --reward: lay prompts out (default: as the ARM\n"
"                       learnt, else the chain's parm-logits template);\n"
"                       --system as for accuracy\n"
"      --method-field F take the method from the records' field F\n"
"  -R, --ref A,B,...    hypervolume reference point (default: per-objective\n"
"                       minimum over all points compared)\n"
"      --records        print each record's scores instead of the summary\n"
"  -P, --plot FILE.svg  draw the fronts of the methods compared\n"
"both:\n"
"  -j, --json           JSON (JSONL with --records) instead of TSV\n"
"  -t, --threads N      threads for the model (default: all)\n"
"  -h, --help           show this help\n"
"  -V, --version        show the version\n";

enum { OPT_OVERLONG = 256, OPT_RECORDS, OPT_SCORER, OPT_REWARD, OPT_METHOD, OPT_SYSTEM, OPT_DETAILS };

struct opts {
	/* accuracy */
	parm_objectives obj;
	long max_len, grid;
	int truncate, n_prefs, details;
	char **prefs;
	const char *system;
	/* score */
	char **scorers;         /* "NAME=COMMAND" or "@NAME=ARM[@ALPHA]" */
	int n_scorers, records;
	const char *method_field, *ref, *plot;
	/* both */
	const char *tmpl;
	int json;
	char **args;
	int n_args;
};

static void add_objective(struct opts *o, const char *spec)
{
	if (parm_objectives_add(&o->obj, spec) < 0)
		parm_usage_error("--objective: %s", parm_error());
}

static void add_scorer(struct opts *o, const char *spec, int arm)
{
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || !eq[1])
		parm_usage_error("--%s: expected NAME=%s, got '%s'", arm ? "reward" : "scorer",
			    arm ? "ARM.gguf[@ALPHA]" : "COMMAND", spec);
	if (o->n_scorers == PARM_PROV_MAX)
		parm_usage_error("more than %d scorers", PARM_PROV_MAX);
	for (int i = 0; i < o->n_scorers; i++) {
		const char *s = o->scorers[i] + (o->scorers[i][0] == '@');
		if (!strncmp(s, spec, eq - spec + 1))
			parm_usage_error("scorer name '%.*s' given twice", (int)(eq - spec), spec);
	}
	size_t len = strlen(spec) + 2;
	char *s = parm_xmalloc(len);
	snprintf(s, len, "%s%s", arm ? "@" : "", spec);
	o->scorers[o->n_scorers++] = s;
}

static const char *long_name(const struct option *o, int c)
{
	static char buf[64];
	for (; o->name; o++)
		if (o->val == c)
			return snprintf(buf, sizeof buf, "--%s", o->name), buf;
	return "?";
}

/* c among the 0-ended list[] */
static int int_in(int c, const int *list)
{
	for (; *list; list++)
		if (*list == c)
			return 1;
	return 0;
}

/* -T: a template with {prompt}, or chat. */
static const char *template_opt(const char *arg)
{
	if (parm_check_template(arg) < 0)
		parm_usage_error("--template: %s", parm_error());
	return arg;
}

static void parse_args(int argc, char **argv, struct opts *o, int accuracy)
{
	static const struct option longopts[] = {
		{"objective", 1, 0, 'O'}, {"template", 1, 0, 'T'}, {"max-length", 1, 0, 'L'},
		{"overlong", 1, 0, OPT_OVERLONG}, {"grid", 1, 0, 'g'}, {"pref", 1, 0, 'p'},
		{"scorer", 1, 0, OPT_SCORER}, {"reward", 1, 0, OPT_REWARD},
		{"method-field", 1, 0, OPT_METHOD}, {"system", 1, 0, OPT_SYSTEM},
		{"details", 0, 0, OPT_DETAILS},
		{"ref", 1, 0, 'R'}, {"records", 0, 0, OPT_RECORDS}, {"plot", 1, 0, 'P'},
		{"json", 0, 0, 'j'}, {"threads", 1, 0, 't'}, {"help", 0, 0, 'h'},
		{"version", 0, 0, 'V'}, {0, 0, 0, 0}};
	const char *acc_only = "OLgp", *score_only = "RP";
	const int acc_long_only[] = {OPT_OVERLONG, OPT_DETAILS, 0},
		  score_long_only[] = {OPT_RECORDS, OPT_SCORER, OPT_REWARD, OPT_METHOD, 0};
	int c;
	o->prefs = parm_xcalloc(argc, sizeof *o->prefs);
	o->scorers = parm_xcalloc(PARM_PROV_MAX, sizeof *o->scorers);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":O:T:L:g:p:R:P:jt:hV", longopts, NULL)) != -1) {
		if ((c < 256 && c != ':' && c != '?' && strchr(accuracy ? score_only : acc_only, c)) ||
		    (c >= 256 && int_in(c, accuracy ? score_long_only : acc_long_only)))
			parm_usage_error("option '%s' is for parm-eval %s", long_name(longopts, c),
				    accuracy ? "score" : "accuracy");
		switch (c) {
		case 'O': add_objective(o, optarg); break;
		case 'T': o->tmpl = template_opt(optarg); break;
		case 'L': o->max_len = parm_opt_long("--max-length", optarg, 2, 1 << 24); break;
		case OPT_OVERLONG:
			if (strcmp(optarg, "drop") && strcmp(optarg, "truncate"))
				parm_usage_error("--overlong: drop or truncate, not '%s'", optarg);
			o->truncate = !strcmp(optarg, "truncate");
			break;
		case 'g': o->grid = parm_opt_long("--grid", optarg, 2, 1001); break;
		case 'p': o->prefs[o->n_prefs++] = optarg; break;
		case OPT_SCORER: add_scorer(o, optarg, 0); break;
		case OPT_REWARD: add_scorer(o, optarg, 1); break;
		case OPT_METHOD: o->method_field = optarg; break;
		case OPT_SYSTEM: o->system = optarg; break;
		case OPT_DETAILS: o->details = 1; break;
		case 'R': o->ref = optarg; break;
		case OPT_RECORDS: o->records = 1; break;
		case 'P': o->plot = optarg; break;
		case 'j': o->json = 1; break;
		case 't': parm_set_threads((int)parm_opt_long("--threads", optarg, 1, 1024)); break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': puts("parm-eval " PARM_VERSION); exit(0);
		case ':': parm_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: parm_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	o->args = argv + optind;
	o->n_args = argc - optind;
}

static void opts_free(struct opts *o)
{
	for (int i = 0; i < o->n_scorers; i++)
		free(o->scorers[i]);
	free(o->scorers), free(o->prefs);
	parm_objectives_free(&o->obj);
}

/* ---- output ---- */

static void finish_output(void)
{
	if (fflush(stdout) == EOF || ferror(stdout)) {
		if (errno == EPIPE)
			parm_exit_quietly();
		parm_die("error writing output: %s", strerror(errno));
	}
}

static void print_json(json_t *j, int flags)
{
	char *s = json_dumps(j, flags | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
	puts(s);
	free(s);
	json_decref(j);
}

static json_t *json_doubles(const double *x, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_real(x[i]));
	return a;
}

/* "0.3,0.7" */
static void format_alpha(char *buf, size_t size, const double *alpha, int k)
{
	size_t used = 0;
	buf[0] = 0;
	for (int j = 0; j < k && used < size; j++)
		used += snprintf(buf + used, size - used, "%s%.4g", j ? "," : "", alpha[j]);
}

/* ---- accuracy ---- */

struct acc_run {
	parm_arm *arm;
	parm_pairs pairs;
	int obj_of[PARM_PROV_MAX];      /* ARM objective i -> pair label index */
	int n_alpha;
	float *alpha;                   /* [n_alpha][k] */
	long *correct, *labelled;       /* [n_alpha][k] */
	double *margin;                 /* [n_alpha][k] sum of beta (S_w - S_l) */
};

/* Map the ARM's objectives onto the pairs' labels: by name, or by position
 * when no name matches and the counts agree. */
static void match_objectives(struct acc_run *r, const parm_objectives *obj)
{
	int k = r->arm->k, named = 0;
	for (int i = 0; i < k; i++)
		named += (r->obj_of[i] = parm_objective_index(obj, r->arm->objectives[i])) >= 0;
	if (named == k)
		return;
	if (named == 0 && obj->k == k) {
		for (int i = 0; i < k; i++)
			r->obj_of[i] = i;
		return;
	}
	for (int i = 0; i < k; i++)
		if (r->obj_of[i] < 0)
			parm_die("%s: objective '%s' has no labels in the pairs (name it with --objective %s=FIELD)",
			    r->arm->path, r->arm->objectives[i], r->arm->objectives[i]);
}

static void add_alpha(struct acc_run *r, const float *a)
{
	int k = r->arm->k;
	for (int i = 0; i < r->n_alpha; i++)
		if (!memcmp(r->alpha + (size_t)i * k, a, k * sizeof *a))
			return;
	r->alpha = parm_xrealloc(r->alpha, (size_t)(r->n_alpha + 1) * k * sizeof *a);
	memcpy(r->alpha + (size_t)r->n_alpha++ * k, a, k * sizeof *a);
}

/* e_i, then the grid, then each --pref. */
static void list_alphas(struct acc_run *r, const struct opts *o)
{
	int k = r->arm->k;
	float a[PARM_PROV_MAX];
	for (int i = 0; i < k; i++) {
		for (int j = 0; j < k; j++)
			a[j] = i == j;
		add_alpha(r, a);
	}
	if (o->grid) {
		long n = parm_pref_grid(NULL, k, (int)o->grid);
		float *g = parm_xmalloc((size_t)n * k * sizeof *g);
		parm_pref_grid(g, k, (int)o->grid);
		for (long i = 0; i < n; i++)
			add_alpha(r, g + i * k);
		free(g);
	}
	for (int i = 0; i < o->n_prefs; i++) {
		if (parm_arm_parse_pref(r->arm, o->prefs[i], a) < 0)
			parm_usage_error("--pref: %s", parm_error());
		add_alpha(r, a);
	}
}

/* The prompt layout: tmpl (-T; chat: the backbone's chat template), else
 * the one the ARM was trained with (parm.train.template and .system); a
 * -T other than that is said, once. */
static void prompt_layout(parm_pair_opts *po, char **chat, const parm_arm *arm,
			  const char *given, const char *system)
{
	const char *trained = parm_arm_get_info(arm, "template");
	const char *tmpl = given ? given : trained;
	char b1[256], b2[256];
	*chat = NULL;
	po->tmpl = tmpl;
	po->system = system;
	if (tmpl && !strcmp(tmpl, "chat")) {
		if (!(*chat = parm_chat_template_of(arm->backbone->file)))
			parm_die("%s: %s: %s", arm->path, given ? "--template chat" :
			    "trained with its backbone's chat template", parm_error());
		if (!parm_chat_detect(*chat))
			parm_die("%s: the backbone's chat template is not one parm recognises (%s)",
			    arm->path, parm_chat_names());
		po->tmpl = NULL;
		po->chat = *chat;
		if (!po->system && !given)
			po->system = parm_arm_get_info(arm, "system");
	}
	if (given && trained && strcmp(given, trained))
		parm_warn("%s learnt from prompts laid out as %s, but --template gives it %s",
		     arm->path, parm_layout_words(trained, b1, sizeof b1),
		     parm_layout_words(given, b2, sizeof b2));
}

/* Say so when -O labels an objective from another field (or file) than
 * the ARM learnt it from. */
static void check_labels(const parm_arm *arm, const parm_objectives *given)
{
	parm_objectives learnt = { 0 };
	if (!parm_arm_get_info(arm, "labels") || parm_arm_labels(arm, &learnt) < 0)
		return;
	for (int i = 0; i < given->k; i++) {
		int j = parm_objective_index(&learnt, given->obj[i].name);
		if (j < 0)
			continue;
		char *g = parm_objective_spec(&given->obj[i]), *l = parm_objective_spec(&learnt.obj[j]);
		if (strcmp(g, l))
			parm_warn("%s learnt objective %s from %s, but --objective labels it by %s", arm->path,
			     given->obj[i].name, strchr(l, '=') + 1, strchr(g, '=') + 1);
		free(g), free(l);
	}
	parm_objectives_free(&learnt);
}

static void load_pairs(struct acc_run *r, struct opts *o)
{
	parm_badrecs bad = {.strict = 1};
	char *chat;
	parm_pair_opts po = { .max_len = (int)o->max_len,
			      .overlong = o->truncate ? PARM_OVERLONG_TRUNCATE : PARM_OVERLONG_DROP };
	prompt_layout(&po, &chat, r->arm, o->tmpl, o->system);
	if (!po.max_len)
		po.max_len = r->arm->backbone->cfg.n_ctx;
	if (o->obj.k == 0 && parm_arm_labels(r->arm, &o->obj) < 0)  /* those it learnt from */
		parm_die("%s", parm_error());
	check_labels(r->arm, &o->obj);
	match_objectives(r, &o->obj);
	if (parm_pairs_load(&r->pairs, &o->obj, (const char *const *)o->args + 1, o->n_args - 1, &bad) < 0 ||
	    parm_pairs_tokenize(&r->pairs, r->arm->backbone->tok, &po) < 0)
		parm_die("%s", parm_error());
	free(chat);
	if (r->pairs.n == 0)
		parm_die("no pairs to evaluate (%ld dropped as longer than %d tokens)", r->pairs.n_dropped, po.max_len);
}

/* Count the pairs ranked right at alpha number ai. */
static void count_pairs(struct acc_run *r, parm_arm_scorer *s, int ai)
{
	int k = r->arm->k;
	for (long p = 0; p < r->pairs.n; p++) {
		const parm_pair *q = &r->pairs.pair[p];
		double S[2];
		for (int j = 0; j < 2; j++)
			if (parm_arm_scorer_logp(s, q->seq[j], q->n_seq[j], q->resp_start[j], &S[j]) < 0)
				parm_die("%s: %s", q->origin, parm_error());
		for (int i = 0; i < k; i++) {
			int w = q->label[r->obj_of[i]];
			if (w == PARM_LABEL_NONE)
				continue;
			r->labelled[ai * k + i]++;
			r->correct[ai * k + i] += S[w] > S[1 - w];
			r->margin[ai * k + i] += r->arm->beta * (S[w] - S[1 - w]);
		}
	}
}

static double share(long a, long b) { return b ? (double)a / b : 0; }

/* A row per alpha: the share ranked right per objective, then with
 * --details the pairs counted and the mean margins (JSON has all always). */
static void print_accuracy_row(const struct acc_run *r, int a, int details, json_t *rows)
{
	int k = r->arm->k;
	double alpha[PARM_PROV_MAX], acc[PARM_PROV_MAX], margin[PARM_PROV_MAX];
	char text[256];
	for (int i = 0; i < k; i++) {
		long n = r->labelled[a * k + i];
		alpha[i] = r->alpha[a * k + i];
		acc[i] = share(r->correct[a * k + i], n);
		margin[i] = n ? r->margin[a * k + i] / n : 0;
	}
	if (rows) {
		json_array_append_new(rows, json_pack("{s:o, s:o, s:o}", "alpha", json_doubles(alpha, k),
						      "accuracy", json_doubles(acc, k),
						      "margin", json_doubles(margin, k)));
		return;
	}
	format_alpha(text, sizeof text, alpha, k);
	fputs(text, stdout);
	for (int i = 0; i < k; i++)
		printf("\t%.4f", acc[i]);
	for (int i = 0; i < k && details; i++)
		printf("\t%ld", r->labelled[a * k + i]);
	for (int i = 0; i < k && details; i++)
		printf("\t%.6g", margin[i]);
	putchar('\n');
}

static void print_accuracy(const struct acc_run *r, const struct opts *o)
{
	int k = r->arm->k;
	json_t *rows = o->json ? json_array() : NULL;
	if (!o->json) {
		fputs("alpha", stdout);
		for (int i = 0; i < k; i++)
			printf("\t%s", r->arm->objectives[i]);
		for (int i = 0; i < k && o->details; i++)
			printf("\t%s:pairs", r->arm->objectives[i]);
		for (int i = 0; i < k && o->details; i++)
			printf("\t%s:margin", r->arm->objectives[i]);
		putchar('\n');
	}
	for (int a = 0; a < r->n_alpha; a++)
		print_accuracy_row(r, a, o->details, rows);
	if (o->json) {
		json_t *names = json_array(), *lab = json_array();
		for (int i = 0; i < k; i++) {
			json_array_append_new(names, json_string(r->arm->objectives[i]));
			json_array_append_new(lab, json_integer(r->labelled[i]));
		}
		print_json(json_pack("{s:s, s:o, s:I, s:o, s:o}", "arm", r->arm->path, "objectives", names,
				     "pairs", (json_int_t)r->pairs.n, "labelled", lab, "rows", rows), JSON_COMPACT);
	}
}

static int run_accuracy(struct opts *o)
{
	struct acc_run r = {0};
	if (o->n_args < 2)
		parm_usage_error("%s", "accuracy needs an ARM and at least one pairs file");
	if (!(r.arm = parm_arm_load(o->args[0])))
		parm_die("%s", parm_error());
	load_pairs(&r, o);
	list_alphas(&r, o);
	int k = r.arm->k;
	r.correct = parm_xcalloc((size_t)r.n_alpha * k, sizeof *r.correct);
	r.labelled = parm_xcalloc((size_t)r.n_alpha * k, sizeof *r.labelled);
	r.margin = parm_xcalloc((size_t)r.n_alpha * k, sizeof *r.margin);
	parm_arm_scorer *s = parm_arm_scorer_new(r.arm, r.alpha);
	if (!s)
		parm_die("%s: %s", o->args[0], parm_error());
	for (int a = 0; a < r.n_alpha; a++) {
		if (parm_arm_scorer_set_pref(s, r.alpha + (size_t)a * k) < 0)
			parm_die("%s: %s", o->args[0], parm_error());
		count_pairs(&r, s, a);
	}
	print_accuracy(&r, o);
	finish_output();
	parm_arm_scorer_free(s);
	parm_pairs_free(&r.pairs);
	parm_arm_free(r.arm);
	free(r.alpha), free(r.correct), free(r.labelled), free(r.margin);
	return 0;
}

/* ---- score ---- */

struct records {
	json_t **rec;
	char **origin, **line;
	long n, cap;
};

static int keep_record(void *ctx, json_t *obj, const char *origin)
{
	struct records *r = ctx;
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 64;
		r->rec = parm_xrealloc(r->rec, r->cap * sizeof *r->rec);
		r->origin = parm_xrealloc(r->origin, r->cap * sizeof *r->origin);
		r->line = parm_xrealloc(r->line, r->cap * sizeof *r->line);
	}
	r->rec[r->n] = json_incref(obj);
	r->origin[r->n] = parm_xstrdup(origin);
	r->line[r->n++] = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	return 0;
}

static const char *record_string(const struct records *r, long i, const char *field)
{
	const char *s = json_string_value(json_object_get(r->rec[i], field));
	if (!s)
		parm_die("%s: no string field \"%s\"", r->origin[i], field);
	return s;
}

/* The template the base saw: the chain's parm-logits stage's, if any. */
static const char *chain_template(const json_t *rec)
{
	json_t *chain = json_object_get(rec, "chain");
	for (size_t i = 0; i < json_array_size(chain); i++) {
		json_t *t = json_object_get(json_array_get(chain, i), "template");
		if (json_is_string(t))
			return json_string_value(t);
	}
	return "{prompt}";
}

/* Record i as the ARM's tokens: the prompt laid out (layout, else the
 * chain's template) + response, EOS kept only when the response stopped
 * there. */
static void tokenize_record(parm_pairs *one, const struct records *r, long i,
			    const parm_tokenizer *tok, const parm_pair_opts *layout)
{
	const char *resp = record_string(r, i, "response");
	const char *stop = json_string_value(json_object_get(r->rec[i], "stop"));
	parm_pair_opts po = { .tmpl = chain_template(r->rec[i]), .overlong = PARM_OVERLONG_DROP };
	if (layout)
		po = *layout;
	parm_pair *q = &one->pair[0];
	memset(q, 0, sizeof *q);
	q->prompt = parm_xstrdup(record_string(r, i, "prompt"));
	q->resp[0] = parm_xstrdup(resp);
	q->resp[1] = parm_xstrdup("");
	q->origin = parm_xstrdup(r->origin[i]);
	one->n = 1;
	if (parm_pairs_tokenize(one, tok, &po) < 0)
		parm_die("%s: %s", r->origin[i], parm_error());
	int eos = parm_tok_eos(tok);
	if (stop && strcmp(stop, "eos") && q->n_seq[0] > q->resp_start[0] && q->seq[0][q->n_seq[0] - 1] == eos)
		q->n_seq[0]--;
}

/* spec "ARM.gguf[@ALPHA]" */
static void score_with_arm(double *out, const char *name, const char *spec,
			   const struct records *r, const struct opts *o)
{
	char *path = parm_xstrdup(spec), *at = strrchr(path, '@');
	float alpha[PARM_MAX_OBJECTIVES];
	if (at)
		*at++ = 0;
	parm_arm *arm = parm_arm_load(path);
	if (!arm)
		parm_die("--reward %s: %s", name, parm_error());
	if (!at && arm->k > 1)
		parm_usage_error("--reward %s: %s has %d objectives: give ALPHA (%s@0.5,0.5)", name, path, arm->k, path);
	if (!at)
		alpha[0] = 1;
	else if (parm_arm_parse_pref(arm, at, alpha) < 0)
		parm_usage_error("--reward %s: %s", name, parm_error());
	parm_arm_scorer *s = parm_arm_scorer_new(arm, alpha);
	if (!s)
		parm_die("--reward %s: %s: %s", name, path, parm_error());
	/* the ARM scores text laid out as it learnt; an ARM that recorded
	 * nothing sees the prompts as the base did */
	parm_pair_opts layout = { .overlong = PARM_OVERLONG_DROP };
	char *chat = NULL;
	int own = o->tmpl || parm_arm_get_info(arm, "template");
	if (own)
		prompt_layout(&layout, &chat, arm, o->tmpl, o->system);
	parm_pairs one = {parm_xcalloc(1, sizeof *one.pair), 0, 0, 0};
	for (long i = 0; i < r->n; i++) {
		tokenize_record(&one, r, i, arm->backbone->tok, own ? &layout : NULL);
		const parm_pair *q = &one.pair[0];
		if (parm_arm_scorer_logp(s, q->seq[0], q->n_seq[0], q->resp_start[0], &out[i]) < 0)
			parm_die("%s: --reward %s: %s", r->origin[i], name, parm_error());
		out[i] *= arm->beta;
		parm_pairs_free(&one);
		one.pair = parm_xcalloc(1, sizeof *one.pair);
	}
	parm_pairs_free(&one);
	parm_arm_scorer_free(s);
	parm_arm_free(arm);
	free(chat);
	free(path);
}

/* scores[n_scorers][n] */
static double *score_all(const struct opts *o, const struct records *r, char **names)
{
	double *scores = parm_xmalloc(((size_t)o->n_scorers * r->n + 1) * sizeof *scores);
	for (int j = 0; j < o->n_scorers; j++) {
		int arm = o->scorers[j][0] == '@';
		char *spec = o->scorers[j] + arm, *eq = strchr(spec, '=');
		names[j] = parm_xmemdup(spec, eq - spec + 1);
		names[j][eq - spec] = 0;
		if (arm)
			score_with_arm(scores + (size_t)j * r->n, names[j], eq + 1, r, o);
		else if (parm_run_scorer(scores + (size_t)j * r->n, names[j], eq + 1,
					 (const char *const *)r->line, (const char *const *)r->origin, r->n) < 0)
			parm_die("%s", parm_error());
	}
	return scores;
}

/* ---- grouping and the summary ---- */

struct group {
	char method[64];
	int has_alpha, front, method_rank;
	double alpha[PARM_PROV_MAX], mean[PARM_PROV_MAX], se[PARM_PROV_MAX];
	long n, *idx;
};

struct summary {
	int k, n_groups;
	const char *const *names;
	struct group *g;
	double *pts;                    /* [n_groups][k] means */
	double ref[PARM_PROV_MAX], lo[PARM_PROV_MAX], hi[PARM_PROV_MAX];
	int ref_given;                  /* -R, else ref = lo */
};

static struct group *find_group(struct summary *s, const parm_provenance *p, const double *alpha)
{
	int k = s->k, rank = s->n_groups;
	for (int i = 0; i < s->n_groups; i++) {
		struct group *g = &s->g[i];
		if (strcmp(g->method, p->method))
			continue;
		rank = g->method_rank;
		if (g->has_alpha == (alpha != NULL) && (!alpha || !memcmp(g->alpha, alpha, k * sizeof *alpha)))
			return g;
	}
	s->g = parm_xrealloc(s->g, (s->n_groups + 1) * sizeof *s->g);
	struct group *g = memset(&s->g[s->n_groups++], 0, sizeof *g);
	snprintf(g->method, sizeof g->method, "%s", p->method);
	g->method_rank = rank;
	g->has_alpha = alpha != NULL;
	if (alpha)
		memcpy(g->alpha, alpha, k * sizeof *alpha);
	return g;
}

/* What each method was first seen made with: its base, strength and
 * the ARM of each objective. */
struct setups {
	int n;
	parm_provenance first[64];
	int n_arms[64];
	char obj[64][PARM_PROV_MAX][64], arm[64][PARM_PROV_MAX][256];
};

static void differ(const char *origin, const char *method, const char *what, const char *now,
		   const char *before)
{
	parm_die("%s: a '%s' record made with %s %s, earlier ones with %s: not one method "
	    "(name them with --method-field)", origin, method, what, now, before);
}

/* The ARM of each objective, remembered or checked against memory. */
static void check_arms(struct setups *st, int m, const parm_provenance *p, const char *origin)
{
	for (int i = 0; i < p->k; i++) {
		int j = 0;
		while (j < st->n_arms[m] && strcmp(st->obj[m][j], p->names[i]))
			j++;
		if (j == st->n_arms[m] && j < PARM_PROV_MAX) {
			snprintf(st->obj[m][j], sizeof st->obj[m][j], "%s", p->names[i]);
			snprintf(st->arm[m][j], sizeof st->arm[m][j], "%s", p->arm[i]);
			st->n_arms[m]++;
		} else if (j < st->n_arms[m] && *p->arm[i] && *st->arm[m][j] &&
			   strcmp(p->arm[i], st->arm[m][j])) {
			differ(origin, p->method, "the ARM", p->arm[i], st->arm[m][j]);
		}
	}
}

/* Records of one method made with another base, ARM file or guidance
 * strength would be averaged as one: refused, naming both. */
static void check_setup(struct setups *st, const parm_provenance *p, const char *origin,
			const char *method_field)
{
	int m = 0;
	if (method_field)
		return;                 /* the user names the methods */
	while (m < st->n && strcmp(st->first[m].method, p->method))
		m++;
	if (m == st->n) {
		if (m == 64)
			return;
		st->first[st->n++] = *p;
	}
	const parm_provenance *f = &st->first[m];
	char a[32], b[32];
	if (*p->base && *f->base && strcmp(p->base, f->base))
		differ(origin, p->method, "the base", p->base, f->base);
	if (fabs(p->strength - f->strength) > 1e-6 * fmax(1, fabs(f->strength))) {
		snprintf(a, sizeof a, "%g", p->strength);
		snprintf(b, sizeof b, "%g", f->strength);
		differ(origin, p->method, "guidance weight", a, b);
	}
	check_arms(st, m, p, origin);
}

static void group_records(struct summary *s, const struct records *r, const char *method_field)
{
	static struct setups setups;
	for (long i = 0; i < r->n; i++) {
		parm_provenance p;
		double alpha[PARM_PROV_MAX];
		if (parm_provenance_get(&p, r->rec[i], method_field) < 0)
			parm_die("%s: %s", r->origin[i], parm_error());
		int has = parm_provenance_align(alpha, &p, s->names, s->k) == 0;
		if (!has && p.k)
			parm_die("%s: %s", r->origin[i], parm_error());
		check_setup(&setups, &p, r->origin[i], method_field);
		struct group *g = find_group(s, &p, has ? alpha : NULL);
		g->idx = parm_xrealloc(g->idx, (g->n + 1) * sizeof *g->idx);
		g->idx[g->n++] = i;
	}
}

/* Methods in order of first appearance, alpha ascending within one. */
static int group_order(const void *a, const void *b)
{
	const struct group *x = a, *y = b;
	if (x->method_rank != y->method_rank)
		return x->method_rank - y->method_rank;
	for (int j = 0; j < PARM_PROV_MAX; j++)
		if (x->alpha[j] != y->alpha[j])
			return x->alpha[j] < y->alpha[j] ? -1 : 1;
	return 0;
}

static void group_means(struct summary *s, const double *scores, long n_rec)
{
	double *x = parm_xmalloc((n_rec + 1) * sizeof *x);
	s->pts = parm_xmalloc(((size_t)s->n_groups * s->k + 1) * sizeof *s->pts);
	for (int gi = 0; gi < s->n_groups; gi++) {
		struct group *g = &s->g[gi];
		for (int j = 0; j < s->k; j++) {
			for (long i = 0; i < g->n; i++)
				x[i] = scores[(size_t)j * n_rec + g->idx[i]];
			parm_mean_se(&g->mean[j], &g->se[j], x, g->n);
			s->pts[(size_t)gi * s->k + j] = g->mean[j];
		}
	}
	free(x);
}

static void parse_ref(struct summary *s, const char *ref)
{
	int n = parm_parse_floats(ref, s->ref, s->k);
	if (n < 0)
		parm_usage_error("--ref: %s", parm_error());
	if (n != s->k)
		parm_usage_error("--ref: expected %d numbers, got '%s'", s->k, ref);
}

/* One method: its groups are s->g[first .. first + n). */
struct method_stats { double hv, mip; int has_mip, n_front; };

static struct method_stats method_stats(struct summary *s, int first, int n)
{
	struct method_stats m = {0};
	int k = s->k;
	const double *pts = s->pts + (size_t)first * k;
	uint8_t *front = parm_xmalloc(n);
	double *alpha = parm_xmalloc((size_t)n * k * sizeof *alpha);
	m.n_front = parm_pareto_front(front, pts, n, k);
	m.hv = parm_hypervolume(pts, n, k, s->ref);
	m.has_mip = 1;
	for (int i = 0; i < n; i++) {
		s->g[first + i].front = front[i];
		m.has_mip &= s->g[first + i].has_alpha;
		memcpy(alpha + (size_t)i * k, s->g[first + i].alpha, k * sizeof *alpha);
	}
	if (m.has_mip)
		m.mip = parm_mip(alpha, pts, n, k, s->lo, s->hi);
	free(front), free(alpha);
	return m;
}

static int method_end(const struct summary *s, int first)
{
	int e = first + 1;
	while (e < s->n_groups && !strcmp(s->g[e].method, s->g[first].method))
		e++;
	return e;
}

static void tsv_groups(const struct summary *s)
{
	fputs("method\talpha\tn", stdout);
	for (int j = 0; j < s->k; j++)
		printf("\t%s\t%s_se", s->names[j], s->names[j]);
	fputs("\tfront\n", stdout);
	for (int gi = 0; gi < s->n_groups; gi++) {
		const struct group *g = &s->g[gi];
		char alpha[256] = "-";
		if (g->has_alpha)
			format_alpha(alpha, sizeof alpha, g->alpha, s->k);
		printf("%s\t%s\t%ld", g->method, alpha, g->n);
		for (int j = 0; j < s->k; j++)
			printf("\t%.6g\t%.6g", g->mean[j], g->se[j]);
		printf("\t%d\n", g->front);
	}
}

static json_t *json_group(const struct summary *s, const struct group *g)
{
	return json_pack("{s:s, s:o, s:I, s:o, s:o, s:b}", "method", g->method,
			 "alpha", g->has_alpha ? json_doubles(g->alpha, s->k) : json_null(),
			 "n", (json_int_t)g->n, "mean", json_doubles(g->mean, s->k),
			 "se", json_doubles(g->se, s->k), "front", g->front);
}

static json_t *json_method(const char *name, int points, struct method_stats m)
{
	return json_pack("{s:s, s:i, s:i, s:f, s:o}", "method", name, "points", points,
			 "front", m.n_front, "hv", m.hv, "mip", m.has_mip ? json_real(m.mip) : json_null());
}

/* Against the default reference (each objective's minimum over every
 * point) a method whose every point is lowest on some objective spans
 * nothing: hv 0 however wide its front.  Say so, and how to choose one. */
static void hint_zero_hv(const struct summary *s, const struct method_stats *m,
			 const int *first, int n_methods)
{
	for (int i = 0; !s->ref_given && i < n_methods; i++)
		if (method_end(s, first[i]) - first[i] > 1 && m[i].hv == 0) {
			parm_warn("method '%s' has hypervolume 0 against the per-objective minimum: "
			     "each of its points is the lowest on some objective; -R sets a "
			     "reference point below them all", s->g[first[i]].method);
			return;
		}
}

static void print_summary(struct summary *s, int json)
{
	json_t *methods = json_array(), *groups = json_array(), *names = json_array();
	struct method_stats m[64];
	int first[64], n_methods = 0;
	for (int f = 0; f < s->n_groups && n_methods < 64; f = method_end(s, f)) {
		first[n_methods] = f;
		m[n_methods++] = method_stats(s, f, method_end(s, f) - f);
	}
	hint_zero_hv(s, m, first, n_methods);
	if (!json) {
		tsv_groups(s);
		fputs("\nmethod\tpoints\tfront\thv\tmip\n", stdout);
	}
	for (int i = 0; i < n_methods; i++) {
		int n = method_end(s, first[i]) - first[i];
		const char *name = s->g[first[i]].method;
		if (json)
			json_array_append_new(methods, json_method(name, n, m[i]));
		else if (m[i].has_mip)
			printf("%s\t%d\t%d\t%.6g\t%.6g\n", name, n, m[i].n_front, m[i].hv, m[i].mip);
		else
			printf("%s\t%d\t%d\t%.6g\t-\n", name, n, m[i].n_front, m[i].hv);
	}
	for (int gi = 0; json && gi < s->n_groups; gi++)
		json_array_append_new(groups, json_group(s, &s->g[gi]));
	for (int j = 0; j < s->k; j++)
		json_array_append_new(names, json_string(s->names[j]));
	if (json)
		print_json(json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "objectives", names,
				     "ref", json_doubles(s->ref, s->k), "min", json_doubles(s->lo, s->k),
				     "max", json_doubles(s->hi, s->k), "groups", groups, "methods", methods),
			   JSON_INDENT(1));
	else
		json_decref(groups), json_decref(methods), json_decref(names);
}

static void plot(const struct summary *s, const char *path)
{
	parm_plot_series series[64];
	char **labels = parm_xcalloc(s->n_groups + 1, sizeof *labels);
	uint8_t *front = parm_xmalloc(s->n_groups + 1);
	int n = 0;
	for (int f = 0; f < s->n_groups && n < 64; f = method_end(s, f), n++) {
		int e = method_end(s, f);
		for (int i = f; i < e; i++) {
			front[i] = s->g[i].front;
			if (s->g[i].has_alpha) {
				char buf[256];
				/* with two objectives alpha_1 says it all */
				format_alpha(buf, sizeof buf, s->g[i].alpha, s->k == 2 ? 1 : s->k);
				labels[i] = parm_xstrdup(buf);
			}
		}
		series[n] = (parm_plot_series){s->g[f].method, e - f, s->pts + (size_t)f * s->k,
					       (const char *const *)labels + f, front + f};
	}
	char title[256];
	snprintf(title, sizeof title, "Mean rewards; points labelled with \u03b1%s%s",
		 s->k == 2 ? " of " : "", s->k == 2 ? s->names[0] : "");
	if (parm_plot_svg(path, title, s->names, s->k, series, n) < 0)
		parm_die("--plot: %s", parm_error());
	for (int i = 0; i < s->n_groups; i++)
		free(labels[i]);
	free(labels), free(front);
}


static void summarise(const struct opts *o, const struct records *r, const double *scores,
		      const char *const *names)
{
	struct summary s = {.k = o->n_scorers, .names = names};
	group_records(&s, r, o->method_field);
	qsort(s.g, s.n_groups, sizeof *s.g, group_order);
	group_means(&s, scores, r->n);
	parm_bounds(s.lo, s.hi, s.pts, s.n_groups, s.k);
	memcpy(s.ref, s.lo, sizeof s.ref);
	if (o->ref)
		parse_ref(&s, o->ref);
	s.ref_given = o->ref != NULL;
	print_summary(&s, o->json);
	if (o->plot)
		plot(&s, o->plot);
	for (int i = 0; i < s.n_groups; i++)
		free(s.g[i].idx);
	free(s.g), free(s.pts);
}

static void print_records(const struct opts *o, const struct records *r, const double *scores,
			  char **names)
{
	int k = o->n_scorers;
	if (!o->json) {
		fputs("record", stdout);
		for (int j = 0; j < k; j++)
			printf("\t%s", names[j]);
		putchar('\n');
	}
	for (long i = 0; i < r->n; i++) {
		if (o->json) {
			json_t *sc = json_object();
			for (int j = 0; j < k; j++)
				json_object_set_new(sc, names[j], json_real(scores[(size_t)j * r->n + i]));
			json_object_set_new(r->rec[i], "scores", sc);
			print_json(json_incref(r->rec[i]), JSON_COMPACT);
			continue;
		}
		fputs(r->origin[i], stdout);
		for (int j = 0; j < k; j++)
			printf("\t%.6g", scores[(size_t)j * r->n + i]);
		putchar('\n');
	}
}

static int run_score(struct opts *o)
{
	struct records r = {0};
	parm_badrecs bad = {.strict = 1};
	char *names[PARM_PROV_MAX];
	if (o->n_scorers == 0)
		parm_usage_error("%s", "score needs at least one --scorer or --reward");
	if (o->n_args < 1)
		parm_usage_error("%s", "score needs a results file (- for stdin)");
	if (o->records && o->plot)
		parm_usage_error("%s", "--plot draws the summary, not --records");
	if (o->plot && o->n_scorers < 2)
		parm_usage_error("--plot: a plot needs 2 or more scores, there is %d", o->n_scorers);
	if (o->ref) {
		struct summary check = {.k = o->n_scorers};
		parse_ref(&check, o->ref);
	}
	if (parm_jsonl_foreach((const char *const *)o->args, o->n_args, &bad, keep_record, &r) < 0)
		parm_die("%s", parm_error());
	if (r.n == 0)
		parm_die("no records in %s%s", o->args[0], o->n_args > 1 ? " ..." : "");
	double *scores = score_all(o, &r, names);
	if (o->records)
		print_records(o, &r, scores, names);
	else
		summarise(o, &r, scores, (const char *const *)names);
	finish_output();
	for (long i = 0; i < r.n; i++)
		json_decref(r.rec[i]), free(r.origin[i]), free(r.line[i]);
	for (int j = 0; j < o->n_scorers; j++)
		free(names[j]);
	free(r.rec), free(r.origin), free(r.line), free(scores);
	return 0;
}


int main(int argc, char **argv)
{
	struct opts o = {0};
	parm_setprog(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		fputs(usage_text, stdout), exit(0);
	if (argc >= 2 && (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")))
		puts("parm-eval " PARM_VERSION), exit(0);
	if (argc < 2)
		parm_usage_error("%s", "say what to do: accuracy or score");
	int accuracy = !strcmp(argv[1], "accuracy");
	if (!accuracy && strcmp(argv[1], "score"))
		parm_usage_error("unknown mode '%s' (accuracy or score)", argv[1]);
	parse_args(argc - 1, argv + 1, &o, accuracy);
	int rc = accuracy ? run_accuracy(&o) : run_score(&o);
	opts_free(&o);
	return rc;
}
