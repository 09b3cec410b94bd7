/* parm-sample - read a parm stream, choose each next token, send it back
 * to the producer, and print the responses in input order. */
#include <parm/check.h>
#include <parm/gguf.h>
#include <parm/sample.h>
#include <parm/stream.h>
#include <parm/util.h>

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
"usage: parm-sample [options] < STREAM\n"
"Choose tokens from a parm stream (from parm-logits or parm-mix), send\n"
"them back to parm-logits, and print one response per prompt, in order.\n"
"      --temp T         temperature, 0 is greedy (default 0.8)\n"
"  -k, --top-k K        keep the K most likely tokens (default 40; 0 off)\n"
"      --top-p P        keep the smallest set with probability P (default 0.95)\n"
"      --min-p P        drop tokens below P times the best (default 0.05)\n"
"  -s, --seed S         random seed (default 1)\n"
"  -S, --stop STRING    end a response where STRING appears (repeatable)\n"
"  -j, --json           print JSON records, one a line, instead of text\n"
"  -v, --vocab FILE     refuse a stream whose tokenizer is not FILE's\n"
"  -h, --help           show this help\n"
"  -V, --version        show the version\n";

struct opts {
	parm_sampler sampler;
	unsigned long long seed;
	char **stops;
	int n_stops, jsonl;
	const char *vocab;
};

struct seq {                    /* a response being built */
	int live, done;
	char *prompt, *meta, *reason;
	int *tokens, n_tokens, cap_tokens;
	char *text;
	size_t len, cap;
	parm_rng rng;
};




/* Long-only options: -t, -p and -m mean threads, pref and the like in the
 * other tools (parm(7), OPTIONS). */
enum { O_TEMP = 256, O_TOP_P, O_MIN_P };

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{"temp", 1, 0, O_TEMP}, {"temperature", 1, 0, O_TEMP}, {"top-k", 1, 0, 'k'},
		{"top-p", 1, 0, O_TOP_P}, {"min-p", 1, 0, O_MIN_P}, {"seed", 1, 0, 's'},
		{"stop", 1, 0, 'S'}, {"json", 0, 0, 'j'}, {"jsonl", 0, 0, 'j'}, {"vocab", 1, 0, 'v'},
		{"help", 0, 0, 'h'}, {"version", 0, 0, 'V'},
		{0, 0, 0, 0}};
	int c;
	*o = (struct opts){.sampler = {.temperature = 0.8f, .top_k = 40,
				       .top_p = 0.95f, .min_p = 0.05f}, .seed = 1};
	o->stops = parm_xcalloc(argc, sizeof *o->stops);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":k:s:S:jv:hV", longopts, NULL)) != -1) {
		switch (c) {
		case O_TEMP: o->sampler.temperature = parm_opt_float("--temp", optarg, 0, 1e6); break;
		case 'k': o->sampler.top_k = (int)parm_opt_long("--top-k", optarg, 0, 1 << 30); break;
		case O_TOP_P: o->sampler.top_p = parm_opt_float("--top-p", optarg, 0, 1); break;
		case O_MIN_P: o->sampler.min_p = parm_opt_float("--min-p", optarg, 0, 1); break;
		case 's': o->seed = parm_opt_long("--seed", optarg, 0, LONG_MAX); break;
		case 'S':
			if (!*optarg)
				parm_usage_error("%s", "--stop: empty string");
			o->stops[o->n_stops++] = optarg;
			break;
		case 'j': o->jsonl = 1; break;
		case 'v': o->vocab = optarg; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case 'V': puts("parm-sample " PARM_VERSION); exit(0);
		case ':': parm_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: parm_usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		parm_usage_error("unexpected argument '%s'", argv[optind]);
}

/* The sampler's state over the whole stream. */
struct run {
	struct opts *o;
	parm_header h;
	parm_feedback *fb;
	char *no_fb;                    /* why fb could not connect */
	struct seq *seqs;
	int n_seqs, next_print;
	parm_choice *choices;
	int cap_choices;
	void *scratch;
	size_t scratch_size;
	json_t *chain;
};

static struct seq *get_seq(struct run *r, int id, int create)
{
	if (id < 0 || id > (1 << 28))
		parm_die("malformed stream: sequence id %d", id);
	if (id >= r->n_seqs) {
		if (!create)
			parm_die("malformed stream: record for unknown sequence %d", id);
		int n = id + 1 > 2 * r->n_seqs ? id + 1 : 2 * r->n_seqs;
		r->seqs = parm_xrealloc(r->seqs, n * sizeof *r->seqs);
		memset(r->seqs + r->n_seqs, 0, (n - r->n_seqs) * sizeof *r->seqs);
		r->n_seqs = n;
	}
	struct seq *s = &r->seqs[id];
	if (create ? s->live || s->done : !s->live)
		parm_die("malformed stream: sequence %d %s", id, create ? "started twice" : "is not in flight");
	return s;
}

static void start_seq(struct run *r, const parm_record *rec)
{
	struct seq *s = get_seq(r, rec->seq, 1);
	s->live = 1;
	s->prompt = parm_xstrdup(rec->prompt ? rec->prompt : "");
	s->meta = rec->meta ? parm_xstrdup(rec->meta) : NULL;
	parm_rng_seed(&s->rng, r->o->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(rec->seq + 1)));
}

static void append_token(struct run *r, struct seq *s, int tok)
{
	if (s->n_tokens == s->cap_tokens)
		s->tokens = parm_xrealloc(s->tokens, (s->cap_tokens = 2 * s->cap_tokens + 16) * sizeof(int));
	s->tokens[s->n_tokens++] = tok;
	if (parm_header_is_eog(&r->h, tok))
		return;
	size_t n = r->h.piece_len[tok];
	if (s->len + n + 1 > s->cap)
		s->text = parm_xrealloc(s->text, s->cap = 2 * (s->len + n) + 64);
	memcpy(s->text + s->len, r->h.pieces[tok], n);
	s->len += n;
	s->text[s->len] = '\0';
}

/* A stop string anywhere in the text ends the response just before it. */
static int cut_at_stop(const struct opts *o, struct seq *s)
{
	for (int i = 0; i < o->n_stops; i++) {
		char *hit = s->text ? memmem(s->text, s->len, o->stops[i], strlen(o->stops[i])) : NULL;
		if (hit) {
			s->len = hit - s->text;
			s->text[s->len] = '\0';
			return 1;
		}
	}
	return 0;
}

static void choose_round(struct run *r, const parm_record *rec)
{
	if (rec->n_steps > r->cap_choices)
		r->choices = parm_xrealloc(r->choices, (r->cap_choices = rec->n_steps) * sizeof *r->choices);
	for (int i = 0; i < rec->n_steps; i++) {
		const parm_step *st = &rec->steps[i];
		struct seq *s = get_seq(r, st->seq, 0);
		int n = st->sparse ? st->k : r->h.n_vocab;
		if (parm_sample_scratch(n) > r->scratch_size)
			r->scratch = parm_xrealloc(r->scratch, r->scratch_size = parm_sample_scratch(n));
		int tok = parm_sample(&r->o->sampler, &s->rng, st->logits,
				      st->sparse ? st->ids : NULL, n, r->scratch);
		if (tok < 0)
			parm_die("sequence %d: every logit is -inf or NaN", st->seq);
		append_token(r, s, tok);
		r->choices[i] = (parm_choice){.seq = st->seq, .tok = tok,
					      .stop = cut_at_stop(r->o, s)};
	}
	if (!r->fb)
		parm_die("%s", r->no_fb ? r->no_fb :
		    "the stream has no feedback channel: its producer takes no choices");
	if (parm_feedback_send(r->fb, r->choices, rec->n_steps) < 0)
		parm_die(errno == EPIPE ? "the producer closed the feedback channel" : "%s", parm_error());
}

/* Valid UTF-8 for JSON: invalid bytes become U+FFFD. */
static json_t *json_text(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	if (j)
		return j;
	char *clean = parm_xmalloc(3 * len + 1), *o = clean;
	for (size_t i = 0; i < len; ) {
		size_t n = 1;
		while (n <= 4 && i + n <= len && !(j = json_stringn(s + i, n)))
			n++;
		if (j) {
			memcpy(o, s + i, n), o += n, i += n;
			json_decref(j);
		} else {
			memcpy(o, "\xef\xbf\xbd", 3), o += 3, i++;
		}
	}
	j = json_stringn(clean, o - clean);
	free(clean);
	return j;
}

static void print_jsonl(struct run *r, int id, struct seq *s)
{
	json_t *rec = json_object(), *ids = json_array();
	if (s->meta) {
		json_t *meta = json_loads(s->meta, 0, NULL);
		if (json_is_object(meta))
			json_object_update(rec, meta);
		json_decref(meta);
	}
	for (int i = 0; i < s->n_tokens; i++)
		json_array_append_new(ids, json_integer(s->tokens[i]));
	if (!json_object_get(rec, "id"))        /* a record's own id is kept */
		json_object_set_new(rec, "id", json_integer(id));
	json_object_set_new(rec, "prompt", json_text(s->prompt, strlen(s->prompt)));
	json_object_set_new(rec, "response", json_text(s->text ? s->text : "", s->len));
	json_object_set_new(rec, "tokens", ids);
	json_object_set_new(rec, "stop", json_string(s->reason));
	json_object_set(rec, "chain", r->chain);
	/* 15 digits: 0.7 prints as 0.7, and any float still reads back exactly */
	char *line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	fputs(line, stdout);
	putchar('\n');
	free(line);
	json_decref(rec);
}

/* Print finished responses in sequence order, so the output lines up with
 * the input whatever order sequences finish in. */
static void print_ready(struct run *r)
{
	while (r->next_print < r->n_seqs && r->seqs[r->next_print].done) {
		struct seq *s = &r->seqs[r->next_print];
		if (r->o->jsonl)
			print_jsonl(r, r->next_print, s);
		else {
			fwrite(s->text ? s->text : "", 1, s->len, stdout);
			putchar('\n');
		}
		free(s->prompt), free(s->meta), free(s->reason), free(s->tokens), free(s->text);
		memset(s, 0, sizeof *s);
		s->done = 2;
		r->next_print++;
	}
	if (fflush(stdout) == EOF || ferror(stdout)) {
		if (errno == EPIPE)     /* the reader went away: not our error */
			parm_exit_quietly();
		parm_die("error writing output: %s", strerror(errno));
	}
}

static void end_seq(struct run *r, const parm_record *rec)
{
	struct seq *s = get_seq(r, rec->seq, 0);
	if (rec->tok != (s->n_tokens ? s->tokens[s->n_tokens - 1] : -1))
		parm_die("malformed stream: sequence %d ended on token %d, not the one chosen", rec->seq, rec->tok);
	s->live = 0;
	s->done = 1;
	s->reason = parm_xstrdup(rec->reason);
	print_ready(r);
}

/* A float option as typed (0.7, not 0.69999998807907104). */
static double shown(float x)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%.6g", (double)x);
	return strtod(buf, NULL);
}

/* Reading failed: quietly when the stage before failed and said why. */
static void read_failed(const parm_reader *in)
{
	if (parm_reader_upstream_failed(in))
		parm_exit_failed();
	parm_die("%s", parm_error());
}

/* The stream's chain, then this stage: how it sampled. */
static void load_chain(struct run *r)
{
	const parm_sampler *sp = &r->o->sampler;
	r->chain = json_array();
	for (int i = 0; i < r->h.n_chain; i++) {
		json_t *stage = json_loads(r->h.chain[i], 0, NULL);
		json_array_append_new(r->chain, stage ? stage : json_string(r->h.chain[i]));
	}
	json_t *me = json_pack("{s:s, s:f, s:i, s:f, s:f, s:I}", "stage", "parm-sample",
			       "temperature", shown(sp->temperature), "top_k", sp->top_k,
			       "top_p", shown(sp->top_p), "min_p", shown(sp->min_p),
			       "seed", (json_int_t)r->o->seed);
	if (r->o->n_stops) {
		json_t *stops = json_array();
		for (int i = 0; i < r->o->n_stops; i++)
			json_array_append_new(stops, json_string(r->o->stops[i]));
		json_object_set_new(me, "stop", stops);
	}
	json_array_append_new(r->chain, me);
}

static void check_vocab(const parm_header *h, const char *path)
{
	parm_gguf *g = parm_gguf_open(path);
	parm_tokenizer *t = g ? parm_tokenizer_load(g) : NULL;
	if (!t || parm_check_tokenizer(h, t, path) < 0)
		parm_die("%s", parm_error());
	parm_tokenizer_free(t);
	parm_gguf_close(g);
}

static void free_run(struct run *r)
{
	for (int i = 0; i < r->n_seqs; i++) {     /* all printed and freed, bar a crash */
		struct seq *s = &r->seqs[i];
		free(s->prompt), free(s->meta), free(s->reason), free(s->tokens), free(s->text);
	}
	free(r->seqs);
	free(r->choices);
	free(r->scratch);
	free(r->no_fb);
	json_decref(r->chain);
	parm_feedback_free(r->fb);
	parm_header_free(&r->h);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct run r = {.o = &o};
	parm_record rec;
	parm_setprog(argv[0]);
	parse_args(argc, argv, &o);
	if (isatty(STDIN_FILENO))
		parm_die("standard input is a terminal; pipe a stream into it (parm-logits MODEL < prompts | parm-sample)");
	signal(SIGPIPE, SIG_IGN);
	parm_reader *in = parm_reader_new(STDIN_FILENO);
	if (parm_read_header(in, &r.h) < 0)
		read_failed(in);
	/* connect before anything can refuse the stream: when we exit, the
	 * producer sees the channel close and ends too (exit closes our stdin
	 * before this descriptor, so a stage between us sees us gone first) */
	if (r.h.feedback && !(r.fb = parm_feedback_connect(r.h.feedback)))
		r.no_fb = parm_xstrdup(parm_error()); /* a producer with no prompts is gone */
	if (o.vocab)
		check_vocab(&r.h, o.vocab);
	load_chain(&r);
	for (;;) {
		if (parm_read_record(in, &rec) < 0)
			read_failed(in);
		if (rec.type == PARM_REC_FIN)
			break;
		if (rec.type == PARM_REC_START)
			start_seq(&r, &rec);
		else if (rec.type == PARM_REC_ROUND)
			choose_round(&r, &rec);
		else
			end_seq(&r, &rec);
	}
	for (int i = 0; i < r.n_seqs; i++)
		if (r.seqs[i].live)
			parm_die("malformed stream: sequence %d never ended", i);
	print_ready(&r);
	parm_reader_free(in);
	free_run(&r);
	free(o.stops);
	return 0;
}
