/* dataset.c - LM corpora, preference pairs, splits and epoch orders */
#include <parm/dataset.h>
#include <parm/chat.h>
#include <parm/prompts.h>
#include <parm/rng.h>
#include <parm/util.h>

#include <stdlib.h>
#include <string.h>

/* ---- Tokenising ---- */

/* All ids of text[len], malloc'd (room for one more, for EOS). */
static int *tokenize_as(const parm_tokenizer *t, const char *text, size_t len,
			int add_bos, int special, int *n)
{
	int (*encode)(const parm_tokenizer *, const char *, size_t, int, int *, int) =
		special ? parm_tokenize_special : parm_tokenize;
	int cap = (int)len + 8, got;
	int *ids = parm_xmalloc((size_t)(cap + 1) * sizeof *ids);
	if ((got = encode(t, text, len, add_bos, ids, cap)) > cap) {
		ids = parm_xrealloc(ids, (size_t)(got + 1) * sizeof *ids);
		got = encode(t, text, len, add_bos, ids, got);
	}
	if (got < 0)
		return free(ids), NULL;
	*n = got;
	return ids;
}

static int *tokenize(const parm_tokenizer *t, const char *text, size_t len,
		     int add_bos, int *n)
{
	return tokenize_as(t, text, len, add_bos, 0, n);
}

static int common_prefix(const int *a, int na, const int *b, int nb)
{
	int i = 0;
	while (i < na && i < nb && a[i] == b[i])
		i++;
	return i;
}

/* prompt + response tokenised together, as TRL does, so that the word
 * boundary between them merges as it will when the response is generated;
 * the response starts where the tokens stop agreeing with the prompt's own.
 * EOS is appended.  Returns the ids (n, *resp_start) or NULL. */
static int *tokenize_joined(const parm_tokenizer *t, const char *prompt,
			    const char *resp, int special, int *n, int *resp_start)
{
	size_t pl = strlen(prompt), rl = strlen(resp);
	char *text = parm_xmalloc(pl + rl + 1);
	int np, *p, *ids;
	memcpy(text, prompt, pl);
	memcpy(text + pl, resp, rl + 1);
	p = tokenize_as(t, prompt, pl, parm_tok_add_bos(t), special, &np);
	ids = p ? tokenize_as(t, text, pl + rl, parm_tok_add_bos(t), special, n) : NULL;
	free(text);
	if (!ids)
		return free(p), NULL;
	*resp_start = common_prefix(p, np, ids, *n);
	free(p);
	if (parm_tok_eos(t) >= 0)
		ids[(*n)++] = parm_tok_eos(t);
	return ids;
}

/* ---- LM corpus ---- */

typedef struct {
	parm_lm_data *d;
	const parm_tokenizer *t;
	long cap, *doc_start, doc_cap;
} lm_builder;

static void lm_append(lm_builder *b, const int *ids, int n, int loss_from)
{
	parm_lm_data *d = b->d;
	if (d->n_tok + n > b->cap) {
		b->cap = 2 * (d->n_tok + n) + 1024;
		d->tok = parm_xrealloc(d->tok, b->cap * sizeof *d->tok);
		d->loss = parm_xrealloc(d->loss, b->cap);
	}
	if (d->n_docs + 2 > b->doc_cap) {
		b->doc_cap = 2 * (d->n_docs + 2);
		b->doc_start = parm_xrealloc(b->doc_start, b->doc_cap * sizeof *b->doc_start);
	}
	b->doc_start[d->n_docs++] = d->n_tok;
	memcpy(d->tok + d->n_tok, ids, (size_t)n * sizeof *ids);
	for (int i = 0; i < n; i++)
		d->loss[d->n_tok + i] = i >= loss_from;
	d->n_tok += n;
	b->doc_start[d->n_docs] = d->n_tok;
}

/* A document: BOS (not a target) + text + EOS, or a prompt (not targets)
 * followed by its response + EOS. */
static int lm_add_doc(void *ctx, const char *prompt, const char *text, size_t len)
{
	lm_builder *b = ctx;
	int n, from, *ids;
	if (prompt) {
		ids = tokenize_joined(b->t, prompt, text, 0, &n, &from);
	} else {
		ids = tokenize(b->t, text, len, parm_tok_add_bos(b->t), &n);
		from = ids && n > 0 && ids[0] == parm_tok_bos(b->t) && parm_tok_add_bos(b->t);
		if (ids && parm_tok_eos(b->t) >= 0)
			ids[n++] = parm_tok_eos(b->t);
	}
	if (!ids)
		return -1;
	lm_append(b, ids, n, from);
	free(ids);
	return 0;
}

/* ---- a corpus, document by document ---- */

typedef struct {
	parm_badrecs *bad;
	parm_doc_fn fn;
	void *ctx;
	long n;
} corpus_walk;

static int corpus_record(void *ctx, json_t *obj, const char *origin)
{
	corpus_walk *w = ctx;
	json_t *text = json_object_get(obj, "text");
	json_t *prompt = json_object_get(obj, "prompt");
	json_t *resp = json_object_get(obj, "response");
	if (json_is_string(text)) {
		w->n++;
		return w->fn(w->ctx, NULL, json_string_value(text), json_string_length(text));
	}
	if (json_is_string(prompt) && json_is_string(resp)) {
		w->n++;
		return w->fn(w->ctx, json_string_value(prompt), json_string_value(resp),
			     json_string_length(resp));
	}
	return parm_badrec(w->bad, "%s: no string field 'text' (nor 'prompt' and 'response')",
			   origin);
}

static int name_is_json(const char *name)
{
	return name && strstr(name, ".json");
}

/* Does text (the first n bytes of a document) start as JSONL does: its
 * first line a JSON object (or, past the bytes seen, at least starting
 * with '{')?  Plain text whose first line is a whole JSON object is rare;
 * a JSONL corpus read as one text document would train silently wrong. */
static int looks_like_jsonl(const char *text, size_t n)
{
	const char *nl = memchr(text, '\n', n);
	if (n == 0 || text[0] != '{')
		return 0;
	if (!nl)
		return 1;
	json_t *first = json_loadb(text, (size_t)(nl - text), 0, NULL);
	int yes = json_is_object(first);
	json_decref(first);
	return yes;
}

/* Read the input's current member as JSONL or as one text document. */
static int corpus_member(corpus_walk *w, parm_input *in, enum parm_doc_format fmt)
{
	const char *name = parm_input_member(in) ? parm_input_member(in) : parm_input_path(in);
	const char *head;
	size_t n;
	char *text;
	int json = fmt == PARM_DOC_JSONL || (fmt == PARM_DOC_AUTO && name_is_json(name));
	if (fmt == PARM_DOC_AUTO && !json) {    /* by its content: JSONL whatever the name */
		if (parm_input_peek(in, &head, &n) < 0)
			return -1;
		json = looks_like_jsonl(head, n);
	}
	if (json)
		return parm_input_jsonl(in, w->bad, corpus_record, w) < 0 ? -1 : 0;
	if (parm_input_slurp(in, &text, &n) < 0)
		return -1;
	w->n++;
	int rc = w->fn(w->ctx, NULL, text, n);
	free(text);
	return rc;
}

long parm_corpus_foreach(const char *const *paths, int n, enum parm_doc_format fmt,
			 parm_badrecs *bad, parm_doc_fn fn, void *ctx)
{
	corpus_walk w = { .bad = bad, .fn = fn, .ctx = ctx };
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		parm_input *in = parm_input_open(paths[i]);
		if (!in)
			rc = -1;
		while (in && (rc = parm_input_next_member(in)) > 0)
			if (corpus_member(&w, in, fmt) < 0) {
				rc = -1;
				break;
			}
		parm_input_close(in);
	}
	return rc < 0 ? -1 : w.n;
}

static void lm_add_seq(parm_lm_data *d, long start, int len, long *cap)
{
	if (d->n_seq == *cap) {
		*cap = *cap ? 2 * *cap : 256;
		d->start = parm_xrealloc(d->start, *cap * sizeof *d->start);
		d->len = parm_xrealloc(d->len, *cap * sizeof *d->len);
	}
	d->start[d->n_seq] = start;
	d->len[d->n_seq++] = len;
	for (int j = 1; j < len; j++)
		d->n_loss_tokens += d->loss[start + j];
}

static void lm_cut(parm_lm_data *d, const long *doc_start, const parm_lm_opts *o)
{
	long cap = 0;
	if (o->layout == PARM_LM_PACK) {
		for (long s = 0; s + 1 < d->n_tok; s += o->max_len - 1)
			lm_add_seq(d, s, (int)(d->n_tok - s < o->max_len ? d->n_tok - s : o->max_len), &cap);
		return;
	}
	for (long i = 0; i < d->n_docs; i++) {
		long len = doc_start[i + 1] - doc_start[i];
		if (len > o->max_len)
			d->n_truncated++, len = o->max_len;
		if (len >= 2)
			lm_add_seq(d, doc_start[i], (int)len, &cap);
	}
}

int parm_lm_load(parm_lm_data *d, const parm_tokenizer *t,
		 const char *const *paths, int n, const parm_lm_opts *o,
		 parm_badrecs *bad)
{
	lm_builder b = { .d = d, .t = t };
	memset(d, 0, sizeof *d);
	if (o->max_len < 2)
		return parm_fail("LM sequences need at least 2 tokens, not %d", o->max_len);
	int rc = parm_corpus_foreach(paths, n, o->format, bad, lm_add_doc, &b) < 0 ? -1 : 0;
	if (rc == 0)
		lm_cut(d, b.doc_start, o);
	free(b.doc_start);
	if (rc < 0)
		parm_lm_free(d);
	return rc < 0 ? -1 : 0;
}

void parm_lm_free(parm_lm_data *d)
{
	free(d->tok);
	free(d->loss);
	free(d->start);
	free(d->len);
	memset(d, 0, sizeof *d);
}

/* ---- Objectives ---- */

char *parm_objective_spec(const parm_objective *ob)
{
	const char *src = ob->field ? ob->field : ob->file;
	size_t n = strlen(ob->name) + strlen(src) + 3;
	char *spec = parm_xmalloc(n);
	snprintf(spec, n, "%s=%s%s", ob->name, ob->field ? "" : "@", src);
	return spec;
}

int parm_objectives_add(parm_objectives *o, const char *spec)
{
	const char *eq = strchr(spec, '=');
	parm_objective *ob;
	if (!eq || eq == spec || !eq[1] || (eq[1] == '@' && !eq[2]))
		return parm_fail("objective '%s': expected NAME=FIELD or NAME=@FILE", spec);
	if (o->k == PARM_MAX_OBJECTIVES)
		return parm_fail("objective '%s': at most %d objectives", spec,
				 PARM_MAX_OBJECTIVES);
	char *name = parm_xmemdup(spec, (size_t)(eq - spec) + 1);
	name[eq - spec] = '\0';
	if (parm_objective_index(o, name) >= 0) {
		parm_fail("objective '%s' named twice", name);
		return free(name), -1;
	}
	ob = &o->obj[o->k++];
	ob->name = name;
	ob->field = eq[1] == '@' ? NULL : parm_xstrdup(eq + 1);
	ob->file = eq[1] == '@' ? parm_xstrdup(eq + 2) : NULL;
	return 0;
}

void parm_objectives_default(parm_objectives *o)
{
	parm_objectives_add(o, "helpful=better_response_id");
	parm_objectives_add(o, "harmless=safer_response_id");
}

int parm_objective_index(const parm_objectives *o, const char *name)
{
	for (int i = 0; i < o->k; i++)
		if (!strcmp(o->obj[i].name, name))
			return i;
	return -1;
}

void parm_objectives_free(parm_objectives *o)
{
	for (int i = 0; i < o->k; i++) {
		free(o->obj[i].name);
		free(o->obj[i].field);
		free(o->obj[i].file);
	}
	memset(o, 0, sizeof *o);
}

/* ---- Loading pairs ---- */

typedef struct {
	parm_pairs *p;
	long cap;
	const parm_objectives *o;
	int file_obj;           /* reading this objective's file; -1: DATA */
	int found[PARM_MAX_OBJECTIVES]; /* field seen in the current file */
	parm_badrecs *bad;
} pair_builder;

static parm_pair *new_pair(pair_builder *b, const char *origin)
{
	parm_pairs *p = b->p;
	if (p->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 256;
		p->pair = parm_xrealloc(p->pair, b->cap * sizeof *p->pair);
	}
	parm_pair *q = &p->pair[p->n++];
	memset(q, 0, sizeof *q);
	memset(q->label, PARM_LABEL_NONE, sizeof q->label);
	q->origin = parm_xstrdup(origin);
	return q;
}

/* A label: 0/1 as int, "0"/"1" or bool; null is no label.  -2: bad. */
static int parse_label(const json_t *v)
{
	const char *s;
	if (json_is_null(v))
		return PARM_LABEL_NONE;
	if (json_is_boolean(v))
		return json_is_true(v);
	if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
		return (int)json_integer_value(v);
	if (json_is_string(v) && (s = json_string_value(v)) &&
	    (!strcmp(s, "0") || !strcmp(s, "1")))
		return s[0] - '0';
	return -2;
}

static const char *string_field(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* The labels of a DATA record; -1 malformed (reported), 0 ok. */
static int field_labels(pair_builder *b, const json_t *obj, const char *origin,
			signed char *label)
{
	for (int i = 0; i < b->o->k; i++) {
		const parm_objective *ob = &b->o->obj[i];
		json_t *v;
		if (!ob->field)
			continue;
		if (!(v = json_object_get(obj, ob->field)))
			return parm_badrec(b->bad, "%s: objective '%s': no field '%s'",
					   origin, ob->name, ob->field), -1;
		b->found[i] = 1;
		if ((label[i] = parse_label(v)) == -2)
			return parm_badrec(b->bad, "%s: objective '%s': field '%s' is not 0 or 1",
					   origin, ob->name, ob->field), -1;
	}
	return 0;
}

static int data_record(void *ctx, json_t *obj, const char *origin)
{
	pair_builder *b = ctx;
	static const char *const need[] = { "prompt", "response_0", "response_1" };
	signed char label[PARM_MAX_OBJECTIVES];
	memset(label, PARM_LABEL_NONE, sizeof label);
	for (int i = 0; i < 3; i++)
		if (!string_field(obj, need[i]))
			return parm_badrec(b->bad, "%s: no string field '%s'", origin, need[i]);
	if (field_labels(b, obj, origin, label) < 0)
		return b->bad->strict ? -1 : 0;
	parm_pair *q = new_pair(b, origin);
	q->prompt = parm_xstrdup(string_field(obj, "prompt"));
	q->resp[0] = parm_xstrdup(string_field(obj, "response_0"));
	q->resp[1] = parm_xstrdup(string_field(obj, "response_1"));
	memcpy(q->label, label, sizeof label);
	return 0;
}

/* HH-RLHF: the prompt is the common text up to and including the last
 * "\n\nAssistant:" (as GenARM's and DPO's extract_anthropic_prompt take
 * it, but never past where chosen and rejected part). */
static size_t hh_prompt_end(const char *chosen, const char *rejected)
{
	static const char mark[] = "\n\nAssistant:";
	size_t common = 0, end = 0, ml = sizeof mark - 1;
	while (chosen[common] && chosen[common] == rejected[common])
		common++;
	for (const char *s = chosen; (s = strstr(s, mark)) && (size_t)(s - chosen) + ml <= common; s++)
		end = (size_t)(s - chosen) + ml;
	return end;
}

static int file_record(void *ctx, json_t *obj, const char *origin)
{
	pair_builder *b = ctx;
	const char *chosen = string_field(obj, "chosen");
	const char *rejected = string_field(obj, "rejected");
	const char *prompt = string_field(obj, "prompt");
	const char *name = b->o->obj[b->file_obj].name;
	size_t end = 0;
	if (!chosen || !rejected)
		return parm_badrec(b->bad, "%s: objective '%s': no string field '%s'",
				   origin, name, chosen ? "rejected" : "chosen");
	if (!prompt && !(end = hh_prompt_end(chosen, rejected)))
		return parm_badrec(b->bad, "%s: objective '%s': chosen and rejected share "
				   "no prompt ending in \"\\n\\nAssistant:\"", origin, name);
	parm_pair *q = new_pair(b, origin);
	if (prompt) {
		q->prompt = parm_xstrdup(prompt);
	} else {
		q->prompt = parm_xmemdup(chosen, end + 1);
		q->prompt[end] = '\0';
		q->preformatted = 1;
	}
	q->resp[0] = parm_xstrdup(chosen + end);
	q->resp[1] = parm_xstrdup(rejected + end);
	q->label[b->file_obj] = 0;
	return 0;
}

static int load_data_file(pair_builder *b, const char *path)
{
	memset(b->found, 0, sizeof b->found);
	if (parm_jsonl_foreach(&path, 1, b->bad, data_record, b) < 0)
		return -1;
	for (int i = 0; i < b->o->k; i++)
		if (b->o->obj[i].field && !b->found[i])
			return parm_fail("%s: objective '%s': no record has a field '%s'",
					 path, b->o->obj[i].name, b->o->obj[i].field);
	return 0;
}

static int has_field_objective(const parm_objectives *o)
{
	for (int i = 0; i < o->k; i++)
		if (o->obj[i].field)
			return 1;
	return 0;
}

int parm_pairs_load(parm_pairs *p, const parm_objectives *o,
		    const char *const *paths, int n, parm_badrecs *bad)
{
	pair_builder b = { .p = p, .o = o, .bad = bad, .file_obj = -1 };
	memset(p, 0, sizeof *p);
	if (n > 0 && !has_field_objective(o))
		return parm_fail("%s: every objective names its own file (NAME=@FILE), "
				 "so no data file can be read by field", paths[0]);
	for (int i = 0; i < n; i++)
		if (load_data_file(&b, paths[i]) < 0)
			return parm_pairs_free(p), -1;
	for (b.file_obj = 0; b.file_obj < o->k; b.file_obj++) {
		const char *file = o->obj[b.file_obj].file;
		if (file && parm_jsonl_foreach(&file, 1, bad, file_record, &b) < 0)
			return parm_pairs_free(p), -1;
	}
	return 0;
}

static void pair_clear(parm_pair *q)
{
	free(q->prompt);
	free(q->resp[0]);
	free(q->resp[1]);
	free(q->origin);
	free(q->seq[0]);
	free(q->seq[1]);
}

void parm_pairs_free(parm_pairs *p)
{
	for (long i = 0; i < p->n; i++)
		pair_clear(&p->pair[i]);
	free(p->pair);
	memset(p, 0, sizeof *p);
}

/* ---- Tokenising pairs ---- */

/* 1 keep, 0 drop (max_len policy), -1 error. */
static int tokenize_pair(parm_pair *q, const parm_tokenizer *t,
			 const parm_pair_opts *o, long *n_truncated)
{
	int chat = o->chat && !q->preformatted;
	char *prompt = q->preformatted ? parm_xstrdup(q->prompt) :
		chat ? parm_chat_prompt(o->chat, o->system, q->prompt) :
		parm_apply_template(o->tmpl ? o->tmpl : PARM_PAIR_TEMPLATE, q->prompt);
	int cut = 0;
	if (!prompt)
		return parm_failc(parm_errcode(), "%s: %s", q->origin, parm_error());
	for (int j = 0; j < 2; j++) {
		q->seq[j] = tokenize_joined(t, prompt, q->resp[j], chat, &q->n_seq[j], &q->resp_start[j]);
		if (!q->seq[j])
			return free(prompt), parm_failc(parm_errcode(), "%s: %s", q->origin, parm_error());
	}
	free(prompt);
	for (int j = 0; j < 2; j++) {
		if (!o->max_len || q->n_seq[j] <= o->max_len)
			continue;
		if (o->overlong == PARM_OVERLONG_DROP || q->resp_start[j] >= o->max_len)
			return 0;
		q->n_seq[j] = o->max_len;
		cut = 1;
	}
	*n_truncated += cut;
	return 1;
}

int parm_pairs_tokenize(parm_pairs *p, const parm_tokenizer *t, const parm_pair_opts *o)
{
	long kept = 0;
	for (long i = 0; i < p->n; i++) {
		parm_pair q = p->pair[i];
		int rc = tokenize_pair(&q, t, o, &p->n_truncated);
		if (rc < 0) {
			for (long j = i; j < p->n; j++)
				p->pair[kept++] = j == i ? q : p->pair[j];
			p->n = kept;
			return -1;
		}
		if (rc == 0) {
			pair_clear(&q);
			p->n_dropped++;
			continue;
		}
		p->pair[kept++] = q;
	}
	p->n = kept;
	return 0;
}

/* ---- Splits and epoch orders ---- */

/* Uniform in [0, bound), without modulo bias. */
static uint64_t below(uint64_t *s, uint64_t bound)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % bound, x;
	while ((x = parm_splitmix64(s)) >= limit)
		;
	return x % bound;
}

/* Fisher-Yates over 0..n-1 from a state derived from (seed, stream, k). */
static void permute(long *order, long n, uint64_t seed, uint64_t stream, uint64_t k)
{
	uint64_t s = seed ^ 0x5eed5eed5eed5eedULL;
	s = parm_splitmix64(&s) ^ stream;
	s = parm_splitmix64(&s) ^ k;
	for (long i = 0; i < n; i++)
		order[i] = i;
	for (long i = n - 1; i > 0; i--) {
		long j = (long)below(&s, (uint64_t)i + 1), tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
}

long parm_heldout_count(long n, double held)
{
	double c = held < 1 ? held * (double)n + 0.5 : held;
	if (held < 0 || c > (double)n || c != c)
		return -1;
	return (long)c;
}

void parm_split(long *train, long *held, long n, long n_held, uint64_t seed)
{
	long *order = parm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *order);
	unsigned char *is_held = parm_xcalloc((size_t)(n > 0 ? n : 1), 1);
	long nt = 0, nh = 0;
	permute(order, n, seed, 1, 0);
	for (long i = 0; i < n_held && i < n; i++)
		is_held[order[i]] = 1;
	for (long i = 0; i < n; i++) {
		if (is_held[i])
			held[nh++] = i;
		else
			train[nt++] = i;
	}
	free(order);
	free(is_held);
}

void parm_epoch_order(long *order, long n, uint64_t seed, long epoch)
{
	permute(order, n, seed, 2, (uint64_t)epoch);
}
