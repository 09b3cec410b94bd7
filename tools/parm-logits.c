/* parm-logits - run a base model on prompts and drive the generation loop:
 * emit a parm stream of next-token logits, read the chosen tokens back.
 * The base is a local GGUF model (dense logits) or a server asked over
 * HTTP (--remote: sparse top-K log-probabilities). */
#include <parm/arm.h>
#include <parm/model.h>
#include <parm/prompts.h>
#include <parm/chat.h>
#include <parm/remote.h>
#include <parm/stream.h>
#include <parm/util.h>

#include <getopt.h>
#include <poll.h>
#include <jansson.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
"usage: parm-logits [options] MODEL.gguf < PROMPTS\n"
"       parm-logits --remote URL --vocab FILE.gguf [options] < PROMPTS\n"
"       parm-logits --tokenize MODEL.gguf|--vocab FILE.gguf < TEXT\n"
"Run MODEL on each prompt (a line of text, or a JSONL record with a\n"
"\"prompt\" field) and write a parm stream of next-token logits for a\n"
"sampler such as parm-sample, reading its choices back.\n"
"  -n, --max-tokens N   tokens to generate per prompt (default 128)\n"
"  -b, --batch N        sequences in flight at once (default 8)\n"
"  -c, --ctx N          context length (default: the model's)\n"
"  -t, --threads N      threads for the forward pass (default: all cores)\n"
"  -T, --template TEXT  wrap each prompt; {prompt} marks where it goes\n"
"      --chat           each prompt is a user's turn in the model's own chat\n"
"                       template (tokenizer.chat_template), the reply opened\n"
"      --chat-template T  the same with T: a built-in name (chatml, llama3,\n"
"                       phi3, ...) or a template's text\n"
"      --system TEXT    a system turn before each prompt (with --chat)\n"
"  -p, --pref A         MODEL is an ARM: run its backbone with its adapters\n"
"                       at preference A (sample from the ARM itself)\n"
"      --no-bos         do not start prompts with the BOS token\n"
"      --tokenize       print the token ids of stdin and exit (any GGUF with\n"
"                       tokenizer.* keys will do, weights or not)\n"
"Remote base (the -b sequences are requested at once):\n"
"  -r, --remote URL     ask a server at URL instead of running MODEL\n"
"      --api API        llamacpp (POST /completion, default) or openai\n"
"                       (POST /v1/completions, e.g. vLLM)\n"
"  -k, --top-k K        log-probabilities per step (default 20)\n"
"      --lora S,S,...   llamacpp: the scales of the server's LoRA adapters\n"
"                       (llama-server --lora, in order) for every request\n"
"      --vocab FILE     the tokenizer (a GGUF file: the ARM's or the base's)\n"
"      --model NAME     the openai \"model\" (default: the server's first)\n"
"      --timeout S      give up on a request after S seconds (default 600)\n"
"      --retries N      retry connection errors, 429 and 5xx N times (default 4)\n"
"      --cacert FILE    trust the CA certificates in FILE (PEM) too\n"
"  PARM_API_KEY in the environment is sent as a bearer token.\n"
"  -h, --help           show this help\n"
"  -V, --version        show the version\n";

struct opts {
	long max_tokens, batch, ctx, threads;
	const char *tmpl, *model_path;
	int chat;                   /* --chat or --chat-template */
	const char *chat_tmpl, *system; /* the template (resolved in main) */
	const char *chat_name;      /* its built-in name, for the chain */
	int no_bos, tokenize;
	/* --remote */
	const char *remote, *vocab, *cacert, *model_name;
	const char *lora;           /* --lora: the server's adapter scales */
	const char *pref;           /* --pref: MODEL is an ARM, run at it */
	enum parm_api api;
	long top_k, retries;
	double timeout;
};

struct slot {                   /* one sequence in flight */
	int busy, seq;
	int pending;                /* token to feed next round, -1 none */
	int answered;               /* the sampler chose for it this round */
	long generated;
	int *hist, len, cap;        /* every token fed so far (a remote base
				       is sent the whole sequence each step) */
};

static parm_feedback *feedback;

/* Every way out removes the feedback FIFO: exit (atexit), a fatal signal
 * (parm_set_cleanup) and an interrupt (on_signal). */
static void remove_feedback(void)
{
	if (feedback)
		parm_feedback_remove(feedback);
}

/* Failing, tell the next stage, which then leaves without an error of its
 * own (it would only say the stream ended early). */
static void abort_output(void)
{
	parm_write_abort(STDOUT_FILENO);
}

static void on_signal(int sig)
{
	remove_feedback();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void check_args(const struct opts *o, int n_models)
{
	if (o->remote && n_models > 0)
		parm_usage_error("--remote takes the place of a model file; give only --vocab");
	if (o->remote && !o->vocab)
		parm_usage_error("--remote needs --vocab FILE.gguf (the tokenizer)");
	if (!o->remote && o->vocab && !o->tokenize)
		parm_usage_error("--vocab goes with --remote");
	if (o->tmpl && !strstr(o->tmpl, "{prompt}"))
		parm_usage_error("--template: '%s' has no {prompt} (every prompt would be lost)", o->tmpl);
	if (o->tmpl && o->chat)
		parm_usage_error("--template and --chat exclude each other");
	if (o->system && !o->chat)
		parm_usage_error("--system goes with --chat or --chat-template");
	if (o->lora && (!o->remote || o->api != PARM_API_LLAMACPP))
		parm_usage_error("--lora goes with --remote and the llamacpp API (the adapters' scales per request)");
	if (o->pref && (o->remote || o->tokenize))
		parm_usage_error("--pref runs an ARM file here; with --remote, --lora gives the server's scales");
	if (o->remote || (o->tokenize && o->vocab && n_models == 0))
		return;
	if (n_models != 1)
		parm_usage_error("%s", n_models == 0 ? "no model given" : "more than one model given");
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"max-tokens", 1, 0, 'n'}, {"batch", 1, 0, 'b'}, {"ctx", 1, 0, 'c'},
		{"threads", 1, 0, 't'}, {"template", 1, 0, 'T'}, {"no-bos", 0, 0, 'B'},
		{"tokenize", 0, 0, 'z'}, {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'},
		{"remote", 1, 0, 'r'}, {"api", 1, 0, 'A'}, {"top-k", 1, 0, 'k'},
		{"vocab", 1, 0, 'v'}, {"model", 1, 0, 'M'}, {"timeout", 1, 0, 'O'},
		{"retries", 1, 0, 'R'}, {"cacert", 1, 0, 'C'}, {"chat", 0, 0, 'H'},
		{"chat-template", 1, 0, 'E'}, {"system", 1, 0, 'S'}, {"lora", 1, 0, 'L'},
		{"pref", 1, 0, 'p'}, {0, 0, 0, 0}};
	int c;
	*o = (struct opts){.max_tokens = 128, .batch = 8, .top_k = 20, .retries = 4,
			   .timeout = 600};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:b:c:t:T:r:k:p:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': o->max_tokens = parm_opt_long("--max-tokens", optarg, 1, 1 << 24); break;
		case 'b': o->batch = parm_opt_long("--batch", optarg, 1, 4096); break;
		case 'c': o->ctx = parm_opt_long("--ctx", optarg, 1, 1 << 24); break;
		case 't': o->threads = parm_opt_long("--threads", optarg, 1, 1024); break;
		case 'T': o->tmpl = optarg; break;
		case 'B': o->no_bos = 1; break;
		case 'z': o->tokenize = 1; break;
		case 'r': o->remote = optarg; break;
		case 'A': o->api = parm_opt_api(optarg); break;
		case 'k': o->top_k = parm_opt_long("--top-k", optarg, 1, 1 << 20); break;
		case 'v': o->vocab = optarg; break;
		case 'M': o->model_name = optarg; break;
		case 'O': o->timeout = parm_opt_float("--timeout", optarg, 0.001, 1e6); break;
		case 'R': o->retries = parm_opt_long("--retries", optarg, 0, 100); break;
		case 'C': o->cacert = optarg; break;
		case 'H': o->chat = 1; break;
		case 'E': o->chat = 1, o->chat_tmpl = optarg; break;
		case 'S': o->system = optarg; break;
		case 'L': o->lora = optarg; break;
		case 'p': o->pref = optarg; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': puts("parm-logits " PARM_VERSION); exit(0);
		case ':': parm_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: parm_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	check_args(o, argc - optind);
	o->model_path = argv[optind];
}

/* --tokenize: all of stdin, newlines included, no BOS. */
static int tokenize_stdin(const parm_tokenizer *tok)
{
	size_t len = 0, cap = 1 << 16, got;
	char *text = parm_xmalloc(cap);
	while ((got = fread(text + len, 1, cap - len, stdin)) > 0)
		if ((len += got) == cap)
			text = parm_xrealloc(text, cap *= 2);
	if (ferror(stdin))
		parm_die("error reading standard input");
	int n = parm_tokenize(tok, text, len, 0, NULL, 0);
	int *ids = parm_xmalloc((n > 0 ? n : 1) * sizeof *ids);
	if (n < 0 || parm_tokenize(tok, text, len, 0, ids, n) != n)
		parm_die("%s", parm_error());
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

enum { MAX_LORA = 64 };          /* --lora scales */

struct base {                   /* what gives the logits */
	const parm_tokenizer *tok;
	parm_gguf *vocab_file;      /* --vocab's, with a remote base */
	int n_vocab, n_ctx;
	parm_model *m;              /* a local model (dense logits) ... */
	parm_kv *kv;
	parm_arm *arm;              /* --pref: m is its backbone, run with */
	parm_adapter *ad;           /* its adapters at the preference */
	float *M, *alpha;
	parm_remote *remote;        /* ... or a server (sparse log-probs) */
};

/* --chat's template: --chat-template's, or the model's own (*own, to be
 * freed); either must be one parm lays out. */
static void resolve_chat(struct opts *o, const parm_gguf *g, char **own)
{
	if (!o->chat_tmpl && !(o->chat_tmpl = *own = parm_chat_template_of(g)))
		parm_die("--chat: %s (name one with --chat-template)", parm_error());
	parm_chat_msg probe = { "user", "" };
	char *text = parm_chat_apply(o->chat_tmpl, &probe, 1, 1);
	if (!text)
		parm_die("--chat: %s", parm_error());
	free(text);
	o->chat_name = parm_chat_detect(o->chat_tmpl);
}

static struct job *tokenize_prompts(const parm_tokenizer *tok, const struct opts *o,
				    parm_prompt *p, long n, int n_ctx)
{
	struct job *jobs = parm_xcalloc(n, sizeof *jobs);
	int add_bos = !o->no_bos && parm_tok_add_bos(tok) && parm_tok_bos(tok) >= 0;
	/* a chat template's text holds special tokens: parsed, as llama.cpp does */
	int (*encode)(const parm_tokenizer *, const char *, size_t, int, int *, int) =
		o->chat ? parm_tokenize_special : parm_tokenize;
	for (long i = 0; i < n; i++) {
		char *text = o->chat ? parm_chat_prompt(o->chat_tmpl, o->system, p[i].text) :
			     parm_apply_template(o->tmpl, p[i].text);
		if (!text)
			parm_die("%s", parm_error());
		int need = encode(tok, text, strlen(text), add_bos, NULL, 0);
		if (need < 0)
			parm_die("stdin:%ld: %s", p[i].line, parm_error());
		jobs[i].tokens = parm_xmalloc((need + 1) * sizeof(int));
		jobs[i].n_tokens = encode(tok, text, strlen(text), add_bos, jobs[i].tokens, need);
		free(text);
		if (jobs[i].n_tokens == 0)
			parm_die("stdin:%ld: the prompt has no tokens (use BOS or a template)", p[i].line);
		if (jobs[i].n_tokens >= n_ctx)
			parm_die("stdin:%ld: prompt is %d tokens, longer than the context (%d)",
			    p[i].line, jobs[i].n_tokens, n_ctx);
	}
	return jobs;
}

static char *stage_json(const struct opts *o, const struct base *b)
{
	json_t *j = json_pack("{s:s}", "stage", "parm-logits");
	if (o->remote) {
		json_object_set_new(j, "remote", json_string(parm_remote_url(b->remote)));
		json_object_set_new(j, "api", json_string(o->api == PARM_API_OPENAI ? "openai" : "llamacpp"));
		if (o->model_name)
			json_object_set_new(j, "model", json_string(o->model_name));
		json_object_set_new(j, "vocab", json_string(o->vocab));
		json_object_set_new(j, "top_k", json_integer(o->top_k));
		if (o->lora)
			json_object_set_new(j, "lora", json_string(o->lora));
	} else if (b->arm) {
		json_t *pref = json_array();
		for (int i = 0; i < b->arm->k; i++)
			json_array_append_new(pref, json_real(b->alpha[i]));
		json_object_set_new(j, "arm", json_string(o->model_path));
		json_object_set_new(j, "pref", pref);
	} else {
		json_object_set_new(j, "model", json_string(o->model_path));
	}
	json_object_set_new(j, "n_vocab", json_integer(b->n_vocab));
	json_object_set_new(j, "max_tokens", json_integer(o->max_tokens));
	json_object_set_new(j, "ctx", json_integer(b->n_ctx));
	if (o->tmpl)
		json_object_set_new(j, "template", json_string(o->tmpl));
	if (o->chat)
		json_object_set_new(j, "chat", json_string(o->chat_name));
	if (o->system)
		json_object_set_new(j, "system", json_string(o->system));
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return s;
}

static void make_header(parm_header *h, const parm_tokenizer *tok, int V, char *stage)
{
	memset(h, 0, sizeof *h);
	h->version = PARM_STREAM_VERSION;
	h->n_vocab = V;
	h->fingerprint = parm_tok_fingerprint(tok);
	h->bos = parm_tok_bos(tok);
	h->eos = parm_tok_eos(tok);
	h->eog = (int *)parm_tok_eog(tok, &h->n_eog);
	h->pieces = parm_xmalloc(V * sizeof *h->pieces);
	h->piece_len = parm_xmalloc(V * sizeof *h->piece_len);
	for (int i = 0; i < V; i++) {
		size_t len;
		h->pieces[i] = (char *)parm_tok_piece(tok, i, &len);
		h->piece_len[i] = len;
	}
	h->feedback = (char *)parm_feedback_path(feedback);
	h->n_chain = 1;
	h->chain = parm_xmalloc(sizeof *h->chain);
	h->chain[0] = stage;
}

/* The generation loop.  State lives here; one round per iteration. */
struct gen {
	struct base *b;
	const struct opts *o;
	parm_writer *w;
	parm_prompt *prompts;
	struct job *jobs;
	long n_jobs, next_job;
	struct slot *slots;
	int n_slots;
	const parm_tokenizer *tok;      /* its end-of-generation tokens end a reply */
	parm_batch batch;           /* one round's tokens */
	float *logits;
	const int **seq_tokens;     /* remote: each wanted slot's sequence */
	int *seq_len;
	parm_step *steps;
	parm_choice *choices;
};

static void check_write(int rc)
{
	if (rc == 0)
		return;
	if (errno == EPIPE)             /* the reader went away: not our error */
		parm_exit_quietly();
	parm_die("%s", parm_error());
}

/* The sampler left (or our reader did): end the stream there, so that a
 * stage between us (parm-mix) ends as quietly as we do, even when it
 * cannot see its own reader gone yet (a shell holding the pipe, as in
 * { parm-sample; echo; } | head); the FIN is best effort. */
static void end_early(struct gen *g)
{
	int err = errno;
	if (err == EPIPE && parm_write_fin(g->w) == 0)
		parm_flush(g->w);
	errno = err;
	check_write(-1);
}

/* Queue a token for this round's pass, and keep it in the slot's history
 * (a remote server is sent whole sequences). */
static void push_token(struct gen *g, int tok, int slot, int want)
{
	struct slot *sl = &g->slots[slot];
	if (sl->len == sl->cap)
		sl->hist = parm_xrealloc(sl->hist, (sl->cap = sl->cap ? 2 * sl->cap : 64) * sizeof *sl->hist);
	sl->hist[sl->len++] = tok;
	parm_batch_push(&g->batch, tok, slot, want);
}

/* Give free slots the next prompts, announcing each with a START record,
 * and queue their prompt tokens. */
static void start_sequences(struct gen *g)
{
	for (int s = 0; s < g->n_slots && g->next_job < g->n_jobs; s++) {
		if (g->slots[s].busy)
			continue;
		long j = g->next_job++;
		struct job *job = &g->jobs[j];
		struct slot *sl = &g->slots[s];
		if (g->b->kv)
			parm_kv_clear(g->b->kv, s);
		*sl = (struct slot){.busy = 1, .seq = (int)j, .pending = -1,
				    .hist = sl->hist, .cap = sl->cap};
		check_write(parm_write_start(g->w, (int)j, g->prompts[j].text,
					     job->tokens, job->n_tokens, g->prompts[j].meta));
		for (int i = 0; i < job->n_tokens; i++)
			push_token(g, job->tokens[i], s, i == job->n_tokens - 1);
		free(job->tokens);
		job->tokens = NULL;
	}
}

/* Fill g->steps for the queued tokens: one step per wanted token, in
 * queue order.  Returns the number of steps, or -1 + parm_error. */
static int local_steps(struct gen *g)
{
	const parm_batch *b = &g->batch;
	int n_steps = 0, V = g->b->n_vocab;
	if (parm_forward_adapted(g->b->m, g->b->ad, g->b->kv, b->n, b->tokens, b->slot, b->want,
				 g->logits) < 0)
		return -1;
	for (int i = 0; i < b->n; i++) {
		if (!b->want[i])
			continue;
		g->steps[n_steps] = (parm_step){.logits = g->logits + (size_t)n_steps * V};
		n_steps++;
	}
	return n_steps;
}

/* The server sees whole sequences; it keeps its own cache of prefixes. */
static int remote_steps(struct gen *g)
{
	const parm_batch *b = &g->batch;
	int n_steps = 0;
	for (int i = 0; i < b->n; i++) {
		if (!b->want[i])
			continue;
		struct slot *sl = &g->slots[b->slot[i]];
		g->seq_tokens[n_steps] = sl->hist;
		g->seq_len[n_steps++] = sl->len;
	}
	if (parm_remote_step(g->b->remote, n_steps, g->seq_tokens, g->seq_len,
			     g->b->n_vocab, g->steps) < 0)
		return -1;
	return n_steps;
}

/* One round: a step for every busy slot, one ROUND record.
 * Returns the number of steps (0: nothing left to do). */
static int run_round(struct gen *g)
{
	const parm_batch *b = &g->batch;
	int n_steps;
	g->batch.n = 0;
	for (int s = 0; s < g->n_slots; s++)
		if (g->slots[s].busy && g->slots[s].pending >= 0)
			push_token(g, g->slots[s].pending, s, 1);
	start_sequences(g);
	if (b->n == 0)
		return 0;
	n_steps = g->b->remote ? remote_steps(g) : local_steps(g);
	if (n_steps < 0)
		parm_die("%s", parm_error());
	for (int i = 0, k = 0; i < b->n; i++) {
		if (!b->want[i])
			continue;
		struct slot *sl = &g->slots[b->slot[i]];
		g->steps[k].seq = sl->seq;
		g->steps[k++].tok = sl->pending;
	}
	check_write(parm_write_round(g->w, n_steps, g->steps, g->b->n_vocab));
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
	int V = g->b->n_vocab, n_ctx = g->b->n_ctx;
	for (int s = 0; s < g->n_slots; s++)
		g->slots[s].answered = 0;
	for (int i = 0; i < n_steps; i++) {
		parm_choice *c = &g->choices[i];
		struct slot *sl = find_seq(g, c->seq);
		if (!sl || sl->answered || c->tok < 0 || c->tok >= V)
			parm_die("feedback: bad choice (sequence %d, token %d)", c->seq, c->tok);
		const char *reason = NULL;
		sl->answered = 1;
		sl->pending = c->tok;
		sl->generated++;
		if (parm_tok_is_eog(g->tok, c->tok))
			reason = "eos";
		else if (c->stop)
			reason = "stop";
		else if (sl->generated >= g->o->max_tokens)
			reason = "length";
		else if (sl->len + 1 > n_ctx)
			reason = "ctx";
		if (reason) {
			check_write(parm_write_end(g->w, sl->seq, c->tok, (int)sl->generated, reason));
			sl->busy = 0;
		}
	}
}

static void generate(struct gen *g)
{
	int V = g->b->n_vocab, n_steps;
	if (!g->b->remote)
		g->logits = parm_xmalloc((size_t)g->n_slots * V * sizeof *g->logits);
	g->seq_tokens = parm_xmalloc(g->n_slots * sizeof *g->seq_tokens);
	g->seq_len = parm_xmalloc(g->n_slots * sizeof *g->seq_len);
	g->steps = parm_xmalloc(g->n_slots * sizeof *g->steps);
	g->choices = parm_xmalloc(g->n_slots * sizeof *g->choices);
	g->slots = parm_xcalloc(g->n_slots, sizeof *g->slots);
	while ((n_steps = run_round(g)) > 0) {
		/* the sampler or our reader left: they said why, or meant to */
		if (parm_feedback_recv(feedback, STDOUT_FILENO, g->choices, n_steps) < 0)
			end_early(g);
		apply_choices(g, n_steps);
	}
	check_write(parm_write_fin(g->w));
	check_write(parm_flush(g->w));
}

static const parm_tokenizer *load_vocab(struct base *b, const char *path)
{
	parm_tokenizer *t;
	b->vocab_file = parm_gguf_open(path);
	if (!b->vocab_file || !(t = parm_tokenizer_load(b->vocab_file)))
		parm_die("%s", parm_error());
	return b->tok = t;          /* the file stays open: the tokenizer uses it */
}

static void free_base(struct base *b)
{
	parm_kv_free(b->kv);
	if (b->arm)
		parm_arm_free(b->arm);         /* and with it m, its backbone */
	else
		parm_model_free(b->m);
	free(b->ad);
	free(b->M);
	free(b->alpha);
	parm_remote_free(b->remote);
	if (b->vocab_file) {
		parm_tokenizer_free((parm_tokenizer *)b->tok);
		parm_gguf_close(b->vocab_file);
	}
}

static void free_gen(struct gen *g)
{
	for (long i = 0; i < g->n_jobs; i++)
		free(g->jobs[i].tokens);
	for (int s = 0; g->slots && s < g->n_slots; s++)
		free(g->slots[s].hist);
	free(g->jobs);
	free(g->slots);
	free(g->logits);
	free(g->seq_tokens);
	free(g->seq_len);
	free(g->steps);
	free(g->choices);
	parm_batch_free(&g->batch);
	parm_writer_free(g->w);
	parm_prompts_free(g->prompts, g->n_jobs);
}

/* make_header's: the pieces are the tokenizer's own */
static void free_header(parm_header *h)
{
	free(h->pieces);
	free(h->piece_len);
	free(h->chain[0]);
	free(h->chain);
}

/* --pref: the model is an ARM, its backbone run with its adapters at the
 * preference (unmerged: O(r) a token beside the frozen weights). */
static void open_arm(struct base *b, const struct opts *o)
{
	if (!(b->arm = parm_arm_load(o->model_path)))
		parm_die("%s", parm_error());
	b->alpha = parm_xmalloc((size_t)b->arm->k * sizeof *b->alpha);
	if (parm_arm_parse_pref(b->arm, o->pref, b->alpha) < 0)
		parm_usage_error("--pref: %s", parm_error());
	b->m = b->arm->backbone;
	b->ad = parm_arm_adapters(b->arm, b->alpha, &b->M);
}

static void open_local(struct base *b, const struct opts *o)
{
	if (o->pref)
		open_arm(b, o);
	else if (!(b->m = parm_model_load(o->model_path)))
		parm_die("%s", parm_error());
	b->tok = b->m->tok;
	b->n_vocab = b->m->cfg.n_vocab;
	b->n_ctx = o->ctx ? (int)o->ctx : b->m->cfg.n_ctx;
	if (o->threads)
		parm_set_threads((int)o->threads);
}

static void open_remote(struct base *b, const struct opts *o, int n_slots)
{
	double scale[MAX_LORA];
	float lora[MAX_LORA];
	int n_lora = o->lora ? parm_parse_floats(o->lora, scale, MAX_LORA) : 0;
	if (n_lora < 0)
		parm_usage_error("--lora: %s", parm_error());
	for (int i = 0; i < n_lora; i++)
		lora[i] = (float)scale[i];
	load_vocab(b, o->vocab);
	parm_remote_opts ro = {.url = o->remote, .api = o->api, .top_k = (int)o->top_k,
		.n_slots = n_slots, .timeout = o->timeout, .retries = (int)o->retries,
		.cacert = o->cacert, .api_key = getenv("PARM_API_KEY"), .model = o->model_name,
		.tok = b->tok, .lora = lora, .n_lora = n_lora};
	b->n_vocab = parm_tok_n_vocab(b->tok);
	if (!(b->remote = parm_remote_new(&ro)) ||
	    parm_remote_check_tokenizer(b->remote, b->tok, o->vocab) < 0)
		parm_die("%s", parm_error());
	b->n_ctx = o->ctx ? (int)o->ctx : parm_remote_ctx(b->remote);
	if (b->n_ctx <= 0)          /* unknown: the server says when it is full */
		b->n_ctx = 1 << 30;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct base b = {0};
	parm_setprog(argv[0]);
	parm_on_die(abort_output);
	parse_args(argc, argv, &o);
	if (o.tokenize) {
		/* only the tokenizer is read: a vocabulary-only GGUF, or one of an
		 * architecture parm does not run, tokenizes as llama-tokenize's */
		int rc = tokenize_stdin(load_vocab(&b, o.model_path ? o.model_path : o.vocab));
		free_base(&b);
		return rc;
	}
	if (isatty(STDOUT_FILENO))
		parm_die("standard output is a terminal; pipe it into a sampler such as parm-sample");
	if (!o.remote)
		open_local(&b, &o);

	parm_prompt *prompts;
	long n = parm_read_prompts(stdin, "stdin", &prompts);
	if (n < 0)
		parm_die("%s", parm_error());
	struct gen g = {.b = &b, .o = &o, .prompts = prompts, .n_jobs = n,
			.n_slots = (int)(o.batch < n ? o.batch : (n ? n : 1))};
	if (o.remote)
		open_remote(&b, &o, g.n_slots);
	else if (!(b.kv = parm_kv_new(b.m, g.n_slots, b.n_ctx)))
		parm_die("%s", parm_error());
	g.tok = b.tok;
	char *own = NULL;
	if (o.chat)
		resolve_chat(&o, b.m ? b.m->file : b.vocab_file, &own);
	g.jobs = tokenize_prompts(b.tok, &o, prompts, n, b.n_ctx);
	free(own);

	if (parm_check_stream_output(STDOUT_FILENO) < 0)
		parm_die("%s", parm_error());
	signal(SIGPIPE, SIG_IGN);
	if (!(feedback = parm_feedback_create()))
		parm_die("%s", parm_error());
	atexit(remove_feedback);
	parm_set_cleanup(remove_feedback);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);

	parm_header h;
	make_header(&h, b.tok, b.n_vocab, stage_json(&o, &b));
	g.w = parm_writer_new(STDOUT_FILENO);
	check_write(parm_write_header(g.w, &h));
	generate(&g);
	parm_feedback_free(feedback);
	feedback = NULL;
	free_header(&h);
	free_gen(&g);
	free_base(&b);
	return 0;
}
