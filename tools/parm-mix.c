/* parm-mix - a middle stage: add ARM guidance (PARM at a preference, or
 * GenARM ARMs) to the logits of a parm stream. */
#include <parm/mix.h>
#include <parm/model.h>
#include <parm/prompts.h>
#include <parm/stream.h>
#include <parm/util.h>

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
"usage: parm-mix [options] [ARM.gguf] < STREAM > STREAM\n"
"       parm-mix --remote URL --vocab FILE.gguf [options] < STREAM > STREAM\n"
"Add the guidance of autoregressive reward models to a parm stream:\n"
"each step's logits become log_softmax(in) + W log_softmax(ARM(. | pref)),\n"
"renormalised.  A PARM takes a preference over its objectives; several\n"
"ARMs (GenARM) are added together.\n"
"  -p, --pref A,B,...   preference for ARM: k numbers >= 0 summing to 1,\n"
"                       or NAME=V,... (objectives not named get 0);\n"
"                       needed when ARM has more than one objective\n"
"  -w, --weight W       guidance weight for ARM (default 1; 0 passes the\n"
"                       stream through unchanged)\n"
"  -a, --arm FILE:W[:PREF]  another ARM with weight W (and preference PREF\n"
"                       for a PARM); repeatable\n"
"      --merge          merge the adapters into f32 copies of the adapted\n"
"                       matrices once at start (default for f32/f16/bf16\n"
"                       backbones)\n"
"      --no-merge       run the adapters beside the frozen weights (default\n"
"                       for quantised backbones)\n"
"  -t, --threads N      threads for the forward pass (default: all cores)\n"
"ARM on a server (llama-server with the adapters of parm-train export, in\n"
"order; each request scales them 1, A, B, ...):\n"
"  -r, --remote URL     ask the server at URL for the ARM's log-probabilities\n"
"      --vocab FILE     the ARM's tokenizer (a GGUF file: the ARM's own)\n"
"      --api API        llamacpp (default) or openai (--model: an adapter\n"
"                       merged at the preference)\n"
"  -k, --top-k K        log-probabilities per step (default 100); the rest of\n"
"                       the vocabulary shares the mass left\n"
"  -b, --batch N        requests at once (default 8)\n"
"      --model NAME     the openai \"model\" (default: the server's first)\n"
"      --timeout S      give up on a request after S seconds (default 600)\n"
"      --retries N      retry connection errors, 429 and 5xx N times (default 4)\n"
"      --cacert FILE    trust the CA certificates in FILE (PEM) too\n"
"  PARM_API_KEY in the environment is sent as a bearer token.\n"
"  -h, --help           show this help\n"
"  -V, --version        show the version\n";

struct spec {                   /* one ARM as given on the command line */
	const char *path, *pref;
	float weight;
	char *owned;                /* --arm's copy that path and pref point into */
};

struct opts {
	struct spec *arms;
	int n_arms, merge;
	long threads;
	/* --remote */
	const char *remote, *vocab, *cacert, *model_name;
	enum parm_api api;
	long top_k, batch, retries;
	double timeout;
	const char *pref;
	float weight;
	int weight_set;
};

/* FILE:W or FILE:W:PREF (a preference has no ':'; a weight is a number). */
static struct spec parse_arm_spec(const char *arg)
{
	char *s = parm_xstrdup(arg), *last = strrchr(s, ':');
	struct spec sp = { .pref = NULL };
	double w;
	if (!last || last == s)
		parm_usage_error("--arm '%s': expected FILE:WEIGHT or FILE:WEIGHT:PREF", arg);
	*last = '\0';
	if (parm_parse_float(last + 1, &w) < 0) {
		sp.pref = last + 1;
		if (!(last = strrchr(s, ':')) || last == s)
			parm_usage_error("--arm '%s': expected FILE:WEIGHT or FILE:WEIGHT:PREF", arg);
		*last = '\0';
		if (parm_parse_float(last + 1, &w) < 0)
			parm_usage_error("--arm '%s': weight '%s' is not a number", arg, last + 1);
	}
	if (!isfinite(w) || fabs(w) > 1000)
		parm_usage_error("--arm '%s': weight must be in [-1000, 1000]", arg);
	sp.path = sp.owned = s;
	sp.weight = (float)w;
	return sp;
}

/* --remote: the server is the one ARM; its preference is k numbers. */
static void check_remote_args(const struct opts *o, int n_files)
{
	if (!o->remote)
		parm_usage_error("--vocab goes with --remote");
	if (!o->vocab)
		parm_usage_error("--remote needs --vocab FILE.gguf (the ARM's tokenizer)");
	if (n_files > 0 || o->n_arms > 0)
		parm_usage_error("--remote takes the place of an ARM file: one ARM, on the server");
	if (o->merge != PARM_MERGE_AUTO)
		parm_usage_error("--merge and --no-merge are for an ARM run here");
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"pref", 1, 0, 'p'}, {"weight", 1, 0, 'w'}, {"arm", 1, 0, 'a'},
		{"no-merge", 0, 0, 'M'}, {"merge", 0, 0, 'E'}, {"threads", 1, 0, 't'},
		{"help", 0, 0, 'h'}, {"version", 0, 0, 'V'},
		{"remote", 1, 0, 'r'}, {"vocab", 1, 0, 'v'}, {"api", 1, 0, 'A'},
		{"top-k", 1, 0, 'k'}, {"batch", 1, 0, 'b'}, {"model", 1, 0, 'N'},
		{"timeout", 1, 0, 'O'}, {"retries", 1, 0, 'R'}, {"cacert", 1, 0, 'C'},
		{0, 0, 0, 0}};
	int c;
	*o = (struct opts){ .merge = PARM_MERGE_AUTO, .weight = 1, .top_k = 100, .batch = 8,
			    .retries = 4, .timeout = 600 };
	o->arms = parm_xcalloc(argc + 1, sizeof *o->arms);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":p:w:a:t:r:k:b:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': o->pref = optarg; break;
		case 'w': o->weight = parm_opt_float("--weight", optarg, -1000, 1000), o->weight_set = 1; break;
		case 'a': o->arms[o->n_arms++] = parse_arm_spec(optarg); break;
		case 'M': o->merge = 0; break;
		case 'E': o->merge = 1; break;
		case 't': o->threads = parm_opt_long("--threads", optarg, 1, 1024); break;
		case 'r': o->remote = optarg; break;
		case 'v': o->vocab = optarg; break;
		case 'A': o->api = parm_opt_api(optarg); break;
		case 'k': o->top_k = parm_opt_long("--top-k", optarg, 1, 1 << 20); break;
		case 'b': o->batch = parm_opt_long("--batch", optarg, 1, 4096); break;
		case 'N': o->model_name = optarg; break;
		case 'O': o->timeout = parm_opt_float("--timeout", optarg, 0.001, 1e6); break;
		case 'R': o->retries = parm_opt_long("--retries", optarg, 0, 100); break;
		case 'C': o->cacert = optarg; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': puts("parm-mix " PARM_VERSION); exit(0);
		case ':': parm_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: parm_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (o->remote || o->vocab) {
		check_remote_args(o, argc - optind);
		return;
	}
	if (optind < argc - 1)
		parm_usage_error("more than one ARM given (use --arm FILE:WEIGHT for more)");
	if (optind == argc - 1)
		o->arms[o->n_arms++] = (struct spec){ argv[optind], o->pref, o->weight, NULL };
	else if (o->pref || o->weight_set)
		parm_usage_error("--pref and --weight apply to the ARM argument, and none was given");
	if (o->n_arms == 0)
		parm_usage_error("no ARM given");
}

static void check_write(int rc);

/* Failing, tell the next stage (parm-logits' abort_output). */
static void abort_output(void)
{
	parm_write_abort(STDOUT_FILENO);
}

/* Reading failed: the stage before failed and said so (pass that on,
 * quietly), or our reader left (quiet too), or the error. */
static void read_failed(const parm_reader *in)
{
	if (parm_reader_upstream_failed(in))
		parm_exit_failed();
	check_write(-1);
}

static void check_write(int rc)
{
	if (rc == 0)
		return;
	if (errno == EPIPE)             /* the reader went away: not our error */
		parm_exit_quietly();
	parm_die("%s", parm_error());
}

/* The base's context, from the first stage that records one (0: none). */
static int stream_ctx(const parm_header *h)
{
	for (int i = 0; i < h->n_chain; i++) {
		json_t *j = json_loads(h->chain[i], 0, NULL);
		json_int_t ctx = json_integer_value(json_object_get(j, "ctx"));
		json_decref(j);
		if (ctx > 0 && ctx < (1 << 30))
			return (int)ctx;
	}
	return 0;
}

/* The parm-logits flags that lay prompts out as layout. */
static const char *layout_flags(const char *layout, char *buf, size_t size)
{
	if (!strcmp(layout, "chat"))
		return "--chat";
	if (!strcmp(layout, "{prompt}"))
		return "no -T";
	snprintf(buf, size, "-T '%s'", layout);
	return buf;
}

/* An ARM scores text laid out as it learnt (parm.train.template); guiding
 * prompts the base saw otherwise (the chain's parm-logits stage: -T, --chat
 * or neither) works, quietly worse.  Say so, once per ARM. */
static void check_layout(const parm_header *h, parm_guide *const *g, int n)
{
	json_t *stage = NULL;
	for (int i = 0; i < h->n_chain && !stage; i++) {
		json_t *j = json_loads(h->chain[i], 0, NULL);
		const char *name = json_string_value(json_object_get(j, "stage"));
		if (name && !strcmp(name, "parm-logits"))
			stage = j;
		else
			json_decref(j);
	}
	if (!stage)
		return;
	const char *tmpl = json_string_value(json_object_get(stage, "template"));
	const char *base = json_object_get(stage, "chat") ? "chat" : tmpl ? tmpl : "{prompt}";
	for (int i = 0; i < n; i++) {
		const parm_arm *arm = parm_guide_arm(g[i]);
		const char *trained = arm ? parm_arm_get_info(arm, "template") : NULL;
		char b1[256], b2[256], b3[256];
		if (trained && strcmp(trained, base))
			parm_warn("%s learnt from prompts laid out as %s, but the base was given %s "
			     "(parm-logits %s lays them out alike)", arm->path,
			     parm_layout_words(trained, b1, sizeof b1), parm_layout_words(base, b2, sizeof b2),
			     layout_flags(trained, b3, sizeof b3));
	}
	json_decref(stage);
}

struct run {
	parm_guide **g;
	int n_guides;
	parm_reader *in;
	parm_writer *out;
	parm_header h;
	float *lp;
	size_t lp_cap;
};

static void guide_round(struct run *r, parm_record *rec)
{
	size_t need = (size_t)r->n_guides * rec->n_steps * r->h.n_vocab;
	if (need > r->lp_cap)
		r->lp = parm_xrealloc(r->lp, (r->lp_cap = need) * sizeof *r->lp);
	if (parm_mix_round(r->g, r->n_guides, rec, r->h.n_vocab, r->lp) < 0)
		parm_die("%s", parm_error());
}

/* Pass every record on, guided; flush after each, so a round is never
 * held back waiting for input (the sampler's choice comes after it). */
static void mix_stream(struct run *r)
{
	parm_record rec;
	do {
		if (parm_read_record(r->in, &rec) < 0)
			read_failed(r->in);
		for (int j = 0; j < r->n_guides; j++) {
			if (rec.type == PARM_REC_START &&
			    parm_guide_start(r->g[j], rec.seq, rec.tokens, rec.n_tokens) < 0)
				parm_die("%s", parm_error());
			if (rec.type == PARM_REC_END)
				parm_guide_end(r->g[j], rec.seq);
		}
		if (rec.type == PARM_REC_ROUND)
			guide_round(r, &rec);
		check_write(parm_write_record(r->out, &rec, r->h.n_vocab));
		check_write(parm_flush(r->out));
	} while (rec.type != PARM_REC_FIN);
}

static void free_run(struct run *r)
{
	for (int i = 0; i < r->n_guides; i++)
		parm_guide_free(r->g[i]);
	free(r->g);
	free(r->lp);
	parm_reader_free(r->in);
	parm_writer_free(r->out);
	parm_header_free(&r->h);
}

static void free_opts(struct opts *o)
{
	for (int i = 0; i < o->n_arms; i++)
		free(o->arms[i].owned);
	free(o->arms);
}

/* The ARM on a server, at --pref. */
static parm_guide *remote_guide(const struct opts *o)
{
	parm_remote_opts ro = {.url = o->remote, .api = o->api, .top_k = (int)o->top_k,
		.n_slots = (int)o->batch, .timeout = o->timeout, .retries = (int)o->retries,
		.cacert = o->cacert, .api_key = getenv("PARM_API_KEY"), .model = o->model_name};
	parm_guide *g = parm_guide_remote(&ro, o->vocab, o->pref, o->weight);
	if (!g)
		parm_die("%s", parm_error());
	return g;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct run r = { 0 };
	parm_header out;
	parm_setprog(argv[0]);
	parm_on_die(abort_output);
	parse_args(argc, argv, &o);
	/* said at once, not after loading the ARMs and waiting for ever */
	if (isatty(STDIN_FILENO))
		parm_die("standard input is a terminal; pipe a stream into it (parm-logits MODEL < prompts | parm-mix ...)");
	if (isatty(STDOUT_FILENO))
		parm_die("standard output is a terminal; pipe it into a sampler such as parm-sample");
	if (o.threads)
		parm_set_threads((int)o.threads);
	signal(SIGPIPE, SIG_IGN);
	r.n_guides = o.remote ? 1 : o.n_arms;
	r.g = parm_xcalloc(r.n_guides, sizeof *r.g);
	if (o.remote)
		r.g[0] = remote_guide(&o);
	for (int i = 0; i < o.n_arms && !o.remote; i++)
		if (!(r.g[i] = parm_guide_load(o.arms[i].path, o.arms[i].pref, o.arms[i].weight,
					       o.merge)))
			parm_die("%s", parm_error());
	r.in = parm_reader_new(STDIN_FILENO);
	parm_reader_watch(r.in, STDOUT_FILENO);
	if (parm_read_header(r.in, &r.h) < 0)
		read_failed(r.in);
	int ctx = stream_ctx(&r.h);
	check_layout(&r.h, r.g, r.n_guides);
	for (int i = 0; i < r.n_guides; i++)
		if (parm_guide_begin(r.g[i], &r.h, ctx) < 0)
			parm_die("%s", parm_error());
	char *stage = parm_mix_stage_json(r.g, r.n_guides);
	parm_header_copy(&out, &r.h, stage);
	free(stage);
	r.out = parm_writer_new(STDOUT_FILENO);
	check_write(parm_write_header(r.out, &out));
	check_write(parm_flush(r.out));
	mix_stream(&r);
	parm_header_free(&out);
	free_run(&r);
	free_opts(&o);
	return 0;
}
