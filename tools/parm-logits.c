/* parm-logits - run a base model on prompts and drive the generation loop:
 * emit a parm stream of next-token logits, read the chosen tokens back. */
#include "model.h"
#include "prompts.h"
#include "stream.h"
#include "util.h"

#include <getopt.h>
#include <poll.h>
#include <jansson.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
"usage: parm-logits [options] MODEL.gguf < PROMPTS\n"
"       parm-logits --tokenize MODEL.gguf < TEXT\n"
"Run MODEL on each prompt (a line of text, or a JSONL record with a\n"
"\"prompt\" field) and write a parm stream of next-token logits for a\n"
"sampler such as parm-sample, reading its choices back.\n"
"  -n, --max-tokens N   tokens to generate per prompt (default 128)\n"
"  -b, --batch N        sequences in flight at once (default 8)\n"
"  -c, --ctx N          context length (default: the model's)\n"
"  -t, --threads N      threads for the forward pass (default: all cores)\n"
"  -T, --template TEXT  wrap each prompt; {prompt} marks where it goes\n"
"      --no-bos         do not start prompts with the BOS token\n"
"      --tokenize       print the token ids of stdin and exit\n"
"  -h, --help           show this help\n"
"  -V, --version        show the version\n";

struct opts {
	long max_tokens, batch, ctx, threads;
	const char *tmpl, *model_path;
	int no_bos, tokenize;
};

struct slot {                   /* one sequence in flight */
	int busy, seq;
	int pending;                /* token to feed next round, -1 none */
	int answered;               /* the sampler chose for it this round */
	long generated;
};

static parm_feedback *feedback;

static void on_signal(int sig)
{
	if (feedback)
		parm_feedback_remove(feedback);
	signal(sig, SIG_DFL);
	raise(sig);
}



static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"max-tokens", 1, 0, 'n'}, {"batch", 1, 0, 'b'}, {"ctx", 1, 0, 'c'},
		{"threads", 1, 0, 't'}, {"template", 1, 0, 'T'}, {"no-bos", 0, 0, 'B'},
		{"tokenize", 0, 0, 'k'}, {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'},
		{0, 0, 0, 0}};
	int c;
	*o = (struct opts){.max_tokens = 128, .batch = 8};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:b:c:t:T:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o->max_tokens = opt_long("--max-tokens", optarg, 1, 1 << 24); break;
		case 'b': o->batch = opt_long("--batch", optarg, 1, 4096); break;
		case 'c': o->ctx = opt_long("--ctx", optarg, 1, 1 << 24); break;
		case 't': o->threads = opt_long("--threads", optarg, 1, 1024); break;
		case 'T': o->tmpl = optarg; break;
		case 'B': o->no_bos = 1; break;
		case 'k': o->tokenize = 1; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': puts("parm-logits " PARM_VERSION); exit(0);
		case ':': usage_error("option '%s' needs a value", argv[optind - 1]);
		default: usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		usage_error("%s", optind >= argc ? "no model given" : "more than one model given");
	o->model_path = argv[optind];
}

/* --tokenize: all of stdin, newlines included, no BOS. */
static int tokenize_stdin(const parm_tokenizer *tok)
{
	size_t len = 0, cap = 1 << 16, got;
	char *text = xmalloc(cap);
	while ((got = fread(text + len, 1, cap - len, stdin)) > 0)
		if ((len += got) == cap)
			text = xrealloc(text, cap *= 2);
	if (ferror(stdin))
		die("error reading standard input");
	int n = parm_tokenize(tok, text, len, 0, NULL, 0);
	int *ids = xmalloc((n > 0 ? n : 1) * sizeof *ids);
	if (n < 0 || parm_tokenize(tok, text, len, 0, ids, n) != n)
		die("%s", parm_error());
	for (int i = 0; i < n; i++)
		printf(i ? " %d" : "%d", ids[i]);
	putchar('\n');
	free(ids);
	free(text);
	return 0;
}

struct job {                    /* a tokenised prompt waiting for a slot */
	int *tokens, n_tokens;
};

static struct job *tokenize_prompts(const parm_model *m, const struct opts *o,
				    parm_prompt *p, long n, int n_ctx)
{
	struct job *jobs = xcalloc(n, sizeof *jobs);
	int add_bos = !o->no_bos && parm_tok_add_bos(m->tok) && parm_tok_bos(m->tok) >= 0;
	for (long i = 0; i < n; i++) {
		char *text = parm_apply_template(o->tmpl, p[i].text);
		int need = parm_tokenize(m->tok, text, strlen(text), add_bos, NULL, 0);
		if (need < 0)
			die("stdin:%ld: %s", p[i].line, parm_error());
		jobs[i].tokens = xmalloc((need + 1) * sizeof(int));
		jobs[i].n_tokens = parm_tokenize(m->tok, text, strlen(text), add_bos,
						 jobs[i].tokens, need);
		free(text);
		if (jobs[i].n_tokens == 0)
			die("stdin:%ld: the prompt has no tokens (use BOS or a template)", p[i].line);
		if (jobs[i].n_tokens >= n_ctx)
			die("stdin:%ld: prompt is %d tokens, longer than the context (%d)",
			    p[i].line, jobs[i].n_tokens, n_ctx);
	}
	return jobs;
}

static char *stage_json(const struct opts *o, const parm_model *m, int n_ctx)
{
	json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i}", "stage", "parm-logits",
			      "model", o->model_path, "n_vocab", m->cfg.n_vocab,
			      "max_tokens", (json_int_t)o->max_tokens, "ctx", n_ctx);
	if (o->tmpl)
		json_object_set_new(j, "template", json_string(o->tmpl));
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return s;
}

static void make_header(parm_header *h, const parm_model *m, char *stage)
{
	int V = m->cfg.n_vocab;
	memset(h, 0, sizeof *h);
	h->version = PARM_STREAM_VERSION;
	h->n_vocab = V;
	h->fingerprint = parm_tok_fingerprint(m->tok);
	h->bos = parm_tok_bos(m->tok);
	h->eos = parm_tok_eos(m->tok);
	h->pieces = xmalloc(V * sizeof *h->pieces);
	h->piece_len = xmalloc(V * sizeof *h->piece_len);
	for (int i = 0; i < V; i++) {
		size_t len;
		h->pieces[i] = (char *)parm_tok_piece(m->tok, i, &len);
		h->piece_len[i] = len;
	}
	h->feedback = (char *)parm_feedback_path(feedback);
	h->n_chain = 1;
	h->chain = xmalloc(sizeof *h->chain);
	h->chain[0] = stage;
}

/* The generation loop.  State lives here; one round per iteration. */
struct gen {
	const parm_model *m;
	const struct opts *o;
	parm_kv *kv;
	parm_writer *w;
	parm_prompt *prompts;
	struct job *jobs;
	long n_jobs, next_job;
	struct slot *slots;
	int n_slots, eos;
	/* per-round batch */
	int *tokens, *slot_of, cap;
	uint8_t *want;
	float *logits;
	parm_step *steps;
	parm_choice *choices;
};

static void check_write(int rc)
{
	if (rc == 0)
		return;
	if (errno == EPIPE) {           /* the reader went away: not our error */
		parm_feedback_remove(feedback);
		exit(0);
	}
	parm_feedback_remove(feedback);
	die("%s", parm_error());
}

static void push_token(struct gen *g, int *n, int tok, int slot, int want)
{
	if (*n == g->cap) {
		g->cap *= 2;
		g->tokens = xrealloc(g->tokens, g->cap * sizeof *g->tokens);
		g->slot_of = xrealloc(g->slot_of, g->cap * sizeof *g->slot_of);
		g->want = xrealloc(g->want, g->cap);
	}
	g->tokens[*n] = tok;
	g->slot_of[*n] = slot;
	g->want[*n] = want;
	(*n)++;
}

/* Give free slots the next prompts, announcing each with a START record,
 * and queue their prompt tokens. */
static void start_sequences(struct gen *g, int *n)
{
	for (int s = 0; s < g->n_slots && g->next_job < g->n_jobs; s++) {
		if (g->slots[s].busy)
			continue;
		long j = g->next_job++;
		struct job *job = &g->jobs[j];
		parm_kv_clear(g->kv, s);
		g->slots[s] = (struct slot){.busy = 1, .seq = (int)j, .pending = -1};
		check_write(parm_write_start(g->w, (int)j, g->prompts[j].text,
					     job->tokens, job->n_tokens, g->prompts[j].meta));
		for (int i = 0; i < job->n_tokens; i++)
			push_token(g, n, job->tokens[i], s, i == job->n_tokens - 1);
		free(job->tokens);
		job->tokens = NULL;
	}
}

/* One round: a forward pass over every busy slot, one ROUND record.
 * Returns the number of steps (0: nothing left to do). */
static int run_round(struct gen *g)
{
	int n = 0, n_steps = 0, V = g->m->cfg.n_vocab;
	for (int s = 0; s < g->n_slots; s++)
		if (g->slots[s].busy && g->slots[s].pending >= 0)
			push_token(g, &n, g->slots[s].pending, s, 1);
	start_sequences(g, &n);
	if (n == 0)
		return 0;
	if (parm_forward(g->m, g->kv, n, g->tokens, g->slot_of, g->want, g->logits) < 0) {
		parm_feedback_remove(feedback);
		die("%s", parm_error());
	}
	for (int i = 0; i < n; i++) {
		if (!g->want[i])
			continue;
		struct slot *sl = &g->slots[g->slot_of[i]];
		g->steps[n_steps] = (parm_step){.seq = sl->seq, .tok = sl->pending,
			.logits = g->logits + (size_t)n_steps * V};
		n_steps++;
	}
	check_write(parm_write_round(g->w, n_steps, g->steps, V));
	check_write(parm_flush(g->w));
	return n_steps;
}

static struct slot *find_seq(struct gen *g, int seq)
{
	for (int s = 0; s < g->n_slots; s++)
		if (g->slots[s].busy && g->slots[s].seq == seq)
			return &g->slots[s];
	return NULL;
}

/* Apply the sampler's choices: feed them next round, or end sequences. */
static void apply_choices(struct gen *g, int n_steps)
{
	int V = g->m->cfg.n_vocab, n_ctx = parm_kv_ctx(g->kv);
	for (int s = 0; s < g->n_slots; s++)
		g->slots[s].answered = 0;
	for (int i = 0; i < n_steps; i++) {
		parm_choice *c = &g->choices[i];
		struct slot *sl = find_seq(g, c->seq);
		if (!sl || sl->answered || c->tok < 0 || c->tok >= V) {
			parm_feedback_remove(feedback);
			die("feedback: bad choice (sequence %d, token %d)", c->seq, c->tok);
		}
		const char *reason = NULL;
		sl->answered = 1;
		sl->pending = c->tok;
		sl->generated++;
		if (c->tok == g->eos)
			reason = "eos";
		else if (c->stop)
			reason = "stop";
		else if (sl->generated >= g->o->max_tokens)
			reason = "length";
		else if (parm_kv_len(g->kv, (int)(sl - g->slots)) + 1 > n_ctx)
			reason = "ctx";
		if (reason) {
			check_write(parm_write_end(g->w, sl->seq, c->tok, (int)sl->generated, reason));
			sl->busy = 0;
		}
	}
}

/* A sampler that exits closes the feedback channel and its input at about
 * the same time; when its input is gone too, it left on purpose (or said
 * why itself), so we leave quietly. */
static int reader_gone(int fd)
{
	struct pollfd p = {fd, 0, 0};
	return poll(&p, 1, 200) == 1 && (p.revents & (POLLERR | POLLHUP));
}

static void generate(struct gen *g)
{
	int V = g->m->cfg.n_vocab, n_steps;
	g->cap = 256;
	g->tokens = xmalloc(g->cap * sizeof *g->tokens);
	g->slot_of = xmalloc(g->cap * sizeof *g->slot_of);
	g->want = xmalloc(g->cap);
	g->logits = xmalloc((size_t)g->n_slots * V * sizeof *g->logits);
	g->steps = xmalloc(g->n_slots * sizeof *g->steps);
	g->choices = xmalloc(g->n_slots * sizeof *g->choices);
	g->slots = xcalloc(g->n_slots, sizeof *g->slots);
	while ((n_steps = run_round(g)) > 0) {
		if (parm_feedback_recv(feedback, STDOUT_FILENO, g->choices, n_steps) < 0) {
			parm_feedback_remove(feedback);
			if (errno == EPIPE || reader_gone(STDOUT_FILENO))
				exit(0);
			die("%s", parm_error());
		}
		apply_choices(g, n_steps);
	}
	check_write(parm_write_fin(g->w));
	check_write(parm_flush(g->w));
}

int main(int argc, char **argv)
{
	struct opts o;
	parm_setprog(argv[0]);
	parse_args(argc, argv, &o);
	parm_model *m = parm_model_load(o.model_path);
	if (!m)
		die("%s", parm_error());
	if (o.tokenize)
		return tokenize_stdin(m->tok);
	if (isatty(STDOUT_FILENO))
		die("standard output is a terminal; pipe it into a sampler such as parm-sample");
	if (o.threads)
		parm_set_threads((int)o.threads);

	parm_prompt *prompts;
	long n = parm_read_prompts(stdin, "stdin", &prompts);
	if (n < 0)
		die("%s", parm_error());
	int n_ctx = o.ctx ? (int)o.ctx : m->cfg.n_ctx;
	struct gen g = {.m = m, .o = &o, .prompts = prompts, .n_jobs = n,
			.n_slots = (int)(o.batch < n ? o.batch : (n ? n : 1)),
			.eos = parm_tok_eos(m->tok)};
	g.jobs = tokenize_prompts(m, &o, prompts, n, n_ctx);
	g.kv = parm_kv_new(m, g.n_slots, n_ctx);
	if (!g.kv)
		die("%s", parm_error());

	signal(SIGPIPE, SIG_IGN);
	if (!(feedback = parm_feedback_create()))
		die("%s", parm_error());
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);

	parm_header h;
	make_header(&h, m, stage_json(&o, m, n_ctx));
	g.w = parm_writer_new(STDOUT_FILENO);
	check_write(parm_write_header(g.w, &h));
	generate(&g);
	parm_feedback_remove(feedback);
	return 0;
}
