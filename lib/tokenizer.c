/* tokenizer.c - load a tokenizer from GGUF metadata the way llama.cpp's
 * llama_vocab::load does (defaults, flags, special tokens), look tokens and
 * merges up in hash tables, and drive the SPM or BPE encoder over the
 * fragments left once user-defined tokens are split out. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <parm/gguf.h>
#include "tok_internal.h"
#include "unicode.h"
#include <parm/util.h>

/* Growable arrays and the merge queue. */

void parm_idvec_push(struct idvec *o, int id)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 256;
		o->v = parm_xrealloc(o->v, o->cap * sizeof *o->v);
	}
	o->v[o->n++] = id;
}

static int pair_before(const struct tok_pair *a, const struct tok_pair *b)
{
	return a->key > b->key || (a->key == b->key && a->left < b->left);
}

/* A 4-ary heap: half the depth of a binary one, and the four children of
 * a node share a cache line, which matters with millions of pairs. */
#define HEAP_D 4

void parm_heap_push(struct tok_heap *h, struct tok_pair p)
{
	size_t i;
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 64;
		h->v = parm_xrealloc(h->v, h->cap * sizeof *h->v);
	}
	for (i = h->n++; i > 0 && pair_before(&p, &h->v[(i - 1) / HEAP_D]); i = (i - 1) / HEAP_D)
		h->v[i] = h->v[(i - 1) / HEAP_D];
	h->v[i] = p;
}

static struct tok_pair heap_pop(struct tok_heap *h)
{
	struct tok_pair top = h->v[0], last = h->v[--h->n];
	size_t i = 0, c;
	while ((c = HEAP_D * i + 1) < h->n) {
		size_t best = c, end = c + HEAP_D < h->n ? c + HEAP_D : h->n;
		for (size_t k = c + 1; k < end; k++)
			if (pair_before(&h->v[k], &h->v[best]))
				best = k;
		if (!pair_before(&h->v[best], &last))
			break;
		h->v[i] = h->v[best];
		i = best;
	}
	h->v[i] = last;
	return top;
}

void parm_tok_merge_all(struct tok_sym *sym, struct tok_heap *heap,
		   void (*try_pair)(void *work, int left, int right), void *work)
{
	while (heap->n) {
		struct tok_pair p = heap_pop(heap);
		struct tok_sym *l = &sym[p.left], *r = &sym[p.right];
		if (!l->n || !r->n || l->n + r->n != p.size)
			continue;       /* one side merged since: stale */
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			sym[r->next].prev = p.left;
		try_pair(work, l->prev, p.left);
		try_pair(work, p.left, l->next);
	}
}

/* Hash tables: token text -> id, (left, right) -> merge rank. */

/* Eight bytes at a time, multiply-mixed: token lookups are the inner loop
 * of both encoders, and FNV's byte steps showed in profiles. */
static uint64_t mix(uint64_t h)
{
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ULL;
	h ^= h >> 32;
	return h;
}

static uint64_t hash_bytes(uint64_t h, const char *s, size_t n)
{
	uint64_t w;
	h ^= n * 0x9e3779b97f4a7c15ULL;
	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = mix(h ^ w);
	}
	w = 0;
	memcpy(&w, s, n);
	return mix(h ^ w ^ (uint64_t)n << 56);
}

static void idtab_init(struct idtab *tab, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n)
		cap *= 2;
	tab->slot = parm_xcalloc(cap, sizeof *tab->slot);
	tab->mask = (uint32_t)(cap - 1);
}

static const char *tok_str(const parm_tokenizer *t, int id)
{
	return t->arena + t->text_off[id];
}

int parm_tok_find(const parm_tokenizer *t, const char *s, size_t n)
{
	uint32_t i = (uint32_t)hash_bytes(PARM_FNV_SEED, s, n) & t->vocab.mask;
	for (uint32_t id; (id = t->vocab.slot[i]); i = (i + 1) & t->vocab.mask)
		if (t->text_len[id - 1] == n && !memcmp(tok_str(t, (int)id - 1), s, n))
			return (int)id - 1;
	return -1;
}

static uint64_t merge_hash(const char *l, size_t ln, const char *r, size_t rn)
{
	uint64_t h = hash_bytes(PARM_FNV_SEED, l, ln);
	h = hash_bytes(h ^ (ln * 0x9e3779b97f4a7c15ULL), " ", 1);
	return hash_bytes(h, r, rn);
}

static int merge_is(const parm_tokenizer *t, int k, const char *l, size_t ln,
		    const char *r, size_t rn)
{
	const struct merge *m = &t->merges[k];
	return m->left_len == ln && m->right_len == rn &&
	       !memcmp(t->arena + m->left, l, ln) && !memcmp(t->arena + m->right, r, rn);
}

int parm_tok_merge_rank(const parm_tokenizer *t, const char *l, size_t ln,
		   const char *r, size_t rn)
{
	uint32_t i = (uint32_t)merge_hash(l, ln, r, rn) & t->merge_tab.mask;
	for (uint32_t k; (k = t->merge_tab.slot[i]); i = (i + 1) & t->merge_tab.mask)
		if (merge_is(t, (int)k - 1, l, ln, r, rn))
			return (int)k - 1;
	return -1;
}

/* Loading.  Token and merge texts go into one arena, addressed by offset. */

struct arena {
	char *p;
	size_t used, cap;
};

static size_t arena_add(struct arena *a, const char *s, size_t n)
{
	size_t at = a->used;
	if (!a->cap)
		a->p = parm_xmalloc(a->cap = 4096);  /* doubles: small vocabularies stay small */
	while (a->used + n + 1 > a->cap)
		a->p = parm_xrealloc(a->p, a->cap *= 2);
	memcpy(a->p + at, s, n);
	a->p[at + n] = 0;
	a->used += n + 1;
	return at;
}

static int get_str(const parm_gguf *g, const char *key, const char **s, size_t *n)
{
	if (parm_gguf_find_key(g, key) < 0) {
		*s = "";
		*n = 0;
		return 0;
	}
	return parm_gguf_get_str(g, key, s, n);
}

static int str_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && !memcmp(s, lit, n);
}

static int set_kind(parm_tokenizer *t, const parm_gguf *g)
{
	const char *m, *p;
	size_t mn, pn;
	if (parm_gguf_find_key(g, "tokenizer.ggml.model") < 0)
		return parm_fail("%s: no tokenizer.ggml.model: not a model with a vocabulary", parm_gguf_path(g));
	if (parm_gguf_get_str(g, "tokenizer.ggml.model", &m, &mn) || get_str(g, "tokenizer.ggml.pre", &p, &pn))
		return -1;
	if (str_is(m, mn, "llama")) {
		t->kind = PARM_TOK_SPM;
		t->bos = 1, t->eos = 2, t->add_bos = 1, t->add_space_prefix = 1;
		return 0;
	}
	if (!str_is(m, mn, "gpt2"))
		return parm_failc(PARM_EUNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported (only llama and gpt2)",
				 parm_gguf_path(g), (int)mn, m);
	t->kind = PARM_TOK_BPE;
	t->bos = 11, t->eos = 11;       /* llama.cpp's defaults for gpt2 */
	if (pn == 0 || str_is(p, pn, "default"))
		t->pre = PRETOK_DEFAULT;
	else if (str_is(p, pn, "gpt-2") || str_is(p, pn, "phi-2"))
		t->pre = PRETOK_GPT2;
	else if (str_is(p, pn, "llama-bpe") || str_is(p, pn, "llama3") || str_is(p, pn, "llama-v3")) {
		t->pre = PRETOK_LLAMA3;
		t->ignore_merges = 1, t->add_bos = 1;
	} else if (str_is(p, pn, "qwen2") || str_is(p, pn, "deepseek-r1-qwen"))
		t->pre = PRETOK_QWEN2;
	else
		return parm_failc(PARM_EUNSUPPORTED, "%s: tokenizer.ggml.pre '%.*s' is not supported "
				 "(known: default, gpt-2, llama-bpe, qwen2)", parm_gguf_path(g), (int)pn, p);
	return 0;
}

/* An optional numeric array of n entries, else the fallback value. */
static int read_numbers(const parm_gguf *g, const char *key, size_t n, float *fv, int32_t *iv,
			int32_t fallback)
{
	enum parm_gguf_vtype et;
	uint64_t len;
	for (size_t i = 0; i < n; i++) {
		if (fv)
			fv[i] = 0;
		else
			iv[i] = fallback;
	}
	if (parm_gguf_find_key(g, key) < 0)
		return 0;
	if (parm_gguf_get_arr(g, key, &et, &len))
		return -1;
	if (len < n)
		return parm_fail("%s: %s has %llu entries for %zu tokens", parm_gguf_path(g), key,
				 (unsigned long long)len, n);
	for (size_t i = 0; i < n; i++) {
		double d;
		int64_t v;
		if (fv && parm_gguf_arr_float(g, key, i, &d))
			return -1;
		if (!fv && parm_gguf_arr_int(g, key, i, &v))
			return -1;
		if (fv)
			fv[i] = (float)d;
		else
			iv[i] = (int32_t)v;
	}
	return 0;
}

/* Token texts into the arena; empty ones are named as llama.cpp names them. */
static int read_tokens(parm_tokenizer *t, const parm_gguf *g, struct arena *a)
{
	enum parm_gguf_vtype et;
	uint64_t n;
	if (parm_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n))
		return -1;
	if (et != PARM_GGUF_STRING || n == 0 || n > 0x7fffffff)
		return parm_fail("%s: tokenizer.ggml.tokens is not a non-empty array of strings", parm_gguf_path(g));
	t->n_vocab = (int)n;
	t->text_off = parm_xmalloc(n * sizeof *t->text_off);
	t->text_len = parm_xmalloc(n * sizeof *t->text_len);
	for (uint64_t i = 0; i < n; i++) {
		const char *s;
		size_t len;
		char empty[32];
		if (parm_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len))
			return -1;
		if (len == 0) {
			len = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%llu]", (unsigned long long)i);
			s = empty;
		}
		t->text_off[i] = arena_add(a, s, len);
		t->text_len[i] = (uint32_t)len;
	}
	t->arena = a->p;
	return 0;
}

static int index_tokens(parm_tokenizer *t, const parm_gguf *g)
{
	idtab_init(&t->vocab, (size_t)t->n_vocab);
	for (int id = 0; id < t->n_vocab; id++) {
		const char *s = tok_str(t, id);
		uint32_t i;
		if (parm_tok_find(t, s, t->text_len[id]) >= 0)
			return parm_fail("%s: token '%s' appears twice in the vocabulary (id %d and %d)",
					 parm_gguf_path(g), s, parm_tok_find(t, s, t->text_len[id]), id);
		i = (uint32_t)hash_bytes(PARM_FNV_SEED, s, t->text_len[id]) & t->vocab.mask;
		while (t->vocab.slot[i])
			i = (i + 1) & t->vocab.mask;
		t->vocab.slot[i] = (uint32_t)id + 1;
	}
	return 0;
}

/* Merges "left right" (split at the first space after the first byte, as
 * llama.cpp does), indexed so that the first of duplicates wins. */
static int read_merges(parm_tokenizer *t, const parm_gguf *g, struct arena *a)
{
	enum parm_gguf_vtype et;
	uint64_t n;
	if (parm_gguf_find_key(g, "tokenizer.ggml.merges") < 0)
		return parm_fail("%s: gpt2 tokenizer without tokenizer.ggml.merges", parm_gguf_path(g));
	if (parm_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n))
		return -1;
	if (et != PARM_GGUF_STRING || n > 0x7fffffff)
		return parm_fail("%s: tokenizer.ggml.merges is not an array of strings", parm_gguf_path(g));
	t->n_merges = (int)n;
	t->merges = parm_xmalloc((n + 1) * sizeof *t->merges);
	for (uint64_t i = 0; i < n; i++) {
		const char *s, *sp;
		size_t len, cut, at;
		if (parm_gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &len))
			return -1;
		sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
		cut = sp ? (size_t)(sp - s) : 0;
		at = arena_add(a, s, len);
		if (a->used > 0xffffffffu)
			return parm_fail("%s: tokenizer texts over 4 GB", parm_gguf_path(g));
		t->merges[i] = (struct merge){ (uint32_t)at, (uint32_t)cut,
					       (uint32_t)(at + cut + 1), sp ? (uint32_t)(len - cut - 1) : 0 };
	}
	t->arena = a->p;
	return 0;
}

static void index_merges(parm_tokenizer *t)
{
	idtab_init(&t->merge_tab, (size_t)t->n_merges);
	for (int k = 0; k < t->n_merges; k++) {
		const struct merge *m = &t->merges[k];
		const char *l = t->arena + m->left, *r = t->arena + m->right;
		uint32_t i;
		if (parm_tok_merge_rank(t, l, m->left_len, r, m->right_len) >= 0)
			continue;
		i = (uint32_t)merge_hash(l, m->left_len, r, m->right_len) & t->merge_tab.mask;
		while (t->merge_tab.slot[i])
			i = (i + 1) & t->merge_tab.mask;
		t->merge_tab.slot[i] = (uint32_t)k + 1;
	}
}

/* A special id from metadata; out of range ones keep the default, and a
 * default out of range means none. */
static int read_special(const parm_gguf *g, const char *key, int *id, int n_vocab)
{
	int64_t v;
	if (*id >= n_vocab)
		*id = -1;
	if (parm_gguf_find_key(g, key) < 0)
		return 0;
	if (parm_gguf_get_int(g, key, &v))
		return -1;
	if (v >= 0 && v < n_vocab)
		*id = (int)v;
	return 0;
}

static int read_flags(parm_tokenizer *t, const parm_gguf *g)
{
	if (read_special(g, "tokenizer.ggml.bos_token_id", &t->bos, t->n_vocab) ||
	    read_special(g, "tokenizer.ggml.eos_token_id", &t->eos, t->n_vocab))
		return -1;
	if (parm_gguf_find_key(g, "tokenizer.ggml.add_bos_token") >= 0 &&
	    parm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos))
		return -1;
	if (parm_gguf_find_key(g, "tokenizer.ggml.add_space_prefix") >= 0 &&
	    parm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix))
		return -1;
	return 0;
}

/* Texts llama.cpp takes for end-of-generation, FIM and the like, and so
 * marks as control tokens whatever their stored type. */
static const char *const control_names[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
	"<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|eom_id|>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"<end_of_utterance>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
	"</s>", "<eos>", "<turn|>", "<|tool_response>", "[e~[",
	"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xe2\x96\x81<PRE>",
	"<|code_prefix|>", "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>",
	"<fim_suffix>", "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>",
	"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xe2\x96\x81<MID>",
	"<|code_middle|>", "<|middle|>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>",
	"<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
	"<reponame>", "<|file_sep|>",
	"<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
	"<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
	"<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
};

static int is_control_name(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof control_names / sizeof *control_names; i++)
		if (str_is(s, n, control_names[i]))
			return 1;
	return 0;
}

static int longer_first(const void *a, const void *b, void *tp)
{
	const parm_tokenizer *t = tp;
	int x = *(const int *)a, y = *(const int *)b;
	if (t->text_len[x] != t->text_len[y])
		return t->text_len[x] > t->text_len[y] ? -1 : 1;
	return x - y;
}

static int name_has_phi3(const parm_gguf *g)
{
	const char *s;
	size_t n;
	char low[256];
	if (parm_gguf_find_key(g, "general.name") < 0 || parm_gguf_get_str(g, "general.name", &s, &n))
		return 0;
	if (n >= sizeof low)
		n = sizeof low - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)s[i]);
	low[n] = 0;
	return strstr(low, "phi-3") || strstr(low, "phi3");
}

/* Control marks, and the user-defined tokens that llama.cpp splits out of
 * the text before tokenising it, longest first; with the control ones,
 * what it splits out when asked to parse special tokens. */
static void classify_tokens(parm_tokenizer *t, const parm_gguf *g)
{
	t->is_control = parm_xcalloc((size_t)t->n_vocab, 1);
	t->splitters = parm_xmalloc((size_t)t->n_vocab * sizeof *t->splitters);
	t->specials = parm_xmalloc((size_t)t->n_vocab * sizeof *t->specials);
	for (int id = 0; id < t->n_vocab; id++) {
		const char *s = tok_str(t, id);
		int ty = t->type[id];
		t->is_control[id] = ty == TT_CONTROL || ty == TT_UNKNOWN ||
				    is_control_name(s, t->text_len[id]);
		if (str_is(s, t->text_len[id], "<|channel|>") || str_is(s, t->text_len[id], "<|message|>") ||
		    str_is(s, t->text_len[id], "<|start|>") || str_is(s, t->text_len[id], "<|constrain|>")) {
			t->is_control[id] = 0;  /* llama.cpp's gpt-oss rule */
			ty = TT_USER_DEFINED;
		}
		if (ty == TT_USER_DEFINED && !t->is_control[id])
			t->splitters[t->n_splitters++] = id;
		if (t->is_control[id] || ty == TT_USER_DEFINED)
			t->specials[t->n_specials++] = id;
	}
	qsort_r(t->splitters, (size_t)t->n_splitters, sizeof *t->splitters, longer_first, t);
	t->rstrip_splitters = name_has_phi3(g);
	qsort_r(t->specials, (size_t)t->n_specials, sizeof *t->specials, longer_first, t);
}

/* The bytes a token decodes to. */
static size_t bpe_piece(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t off = 0; off < n; ) {
		char u[4];
		uint32_t c = parm_utf8_next(s, n, &off);
		int b = parm_ucp_to_byte(c), k = parm_utf8_put(u, c);
		if (b >= 0) {
			out[o++] = (char)b;
			continue;
		}
		o += (size_t)sprintf(out + o, "[UNK_BYTE_0x");   /* as llama.cpp */
		for (int j = 0; j < k; j++)
			o += (size_t)sprintf(out + o, "%02x", (unsigned char)u[j]);
		memcpy(out + o, s, n);
		o += n;
		out[o++] = ']';
	}
	return o;
}

static size_t spm_piece(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (i + 2 < n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
			out[o++] = ' ';
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	return o;
}

static size_t token_piece(const parm_tokenizer *t, int id, char *out)
{
	const char *s = tok_str(t, id);
	size_t n = t->text_len[id];
	int ty = t->type[id];
	if (t->is_control[id])
		return 0;
	if (ty == TT_USER_DEFINED) {
		memcpy(out, s, n);
		return n;
	}
	if (ty == TT_BYTE) {
		out[0] = (char)strtol(n >= 5 ? (char[3]){ s[3], s[4], 0 } : "0", NULL, 16);
		return 1;
	}
	if (ty != TT_NORMAL)
		return 0;
	return t->kind == PARM_TOK_SPM ? spm_piece(s, n, out) : bpe_piece(s, n, out);
}

static void build_pieces(parm_tokenizer *t)
{
	size_t cap = 4096, used = 0;
	char *tmp = NULL;
	size_t tmp_cap = 0;
	t->pieces = parm_xmalloc(cap);
	t->piece_off = parm_xmalloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
	for (int id = 0; id < t->n_vocab; id++) {
		size_t len = t->text_len[id], worst = len * (len + 32) + 64, n;
		if (tmp_cap < worst)
			tmp = parm_xrealloc(tmp, tmp_cap = worst);
		n = token_piece(t, id, tmp);
		while (used + n + 1 > cap)
			t->pieces = parm_xrealloc(t->pieces, cap *= 2);
		memcpy(t->pieces + used, tmp, n);
		t->pieces[used + n] = 0;
		t->piece_off[id] = used;
		used += n + 1;
	}
	t->piece_off[t->n_vocab] = used;
	free(tmp);
}

static void build_byte_maps(parm_tokenizer *t)
{
	for (int b = 0; b < 256; b++) {
		char u[4], hex[8];
		int k = parm_utf8_put(u, parm_byte_to_ucp((unsigned char)b));
		memcpy(t->byte_utf8[b], u, 2);
		t->byte_utf8_len[b] = (unsigned char)k;
		snprintf(hex, sizeof hex, "<0x%02X>", b);
		t->byte_token[b] = parm_tok_find(t, hex, 6);
		if (t->byte_token[b] < 0)
			t->byte_token[b] = parm_tok_find(t, (char[1]){ (char)b }, 1);
	}
}

static void fingerprint(parm_tokenizer *t)
{
	uint64_t h = PARM_FNV_SEED;
	unsigned char w[4];
	uint32_t v[2] = { (uint32_t)t->kind, (uint32_t)t->n_vocab };
	for (int i = 0; i < 2; i++) {
		for (int k = 0; k < 4; k++)
			w[k] = (unsigned char)(v[i] >> 8 * k);
		h = parm_fnv1a(h, w, 4);
	}
	for (int id = 0; id < t->n_vocab; id++) {
		for (int k = 0; k < 4; k++)
			w[k] = (unsigned char)(t->text_len[id] >> 8 * k);
		h = parm_fnv1a(h, w, 4);
		h = parm_fnv1a(h, tok_str(t, id), t->text_len[id]);
	}
	t->fingerprint = h;
}

static int load_into(parm_tokenizer *t, const parm_gguf *g)
{
	struct arena a = {0};
	int rc = set_kind(t, g) || read_tokens(t, g, &a);
	t->arena = a.p;                 /* freed with t, even after a failure */
	if (rc)
		return -1;
	t->score = parm_xmalloc((size_t)t->n_vocab * sizeof *t->score);
	t->type = parm_xmalloc((size_t)t->n_vocab * sizeof *t->type);
	if (read_numbers(g, "tokenizer.ggml.scores", (size_t)t->n_vocab, t->score, NULL, 0) ||
	    read_numbers(g, "tokenizer.ggml.token_type", (size_t)t->n_vocab, NULL, t->type, TT_NORMAL) ||
	    index_tokens(t, g) || read_flags(t, g))
		return -1;
	if (t->kind == PARM_TOK_BPE) {
		rc = read_merges(t, g, &a);
		t->arena = a.p;
		if (rc)
			return -1;
		index_merges(t);
	}
	classify_tokens(t, g);
	parm_tok_find_eog(t, g);
	build_pieces(t);
	build_byte_maps(t);
	fingerprint(t);
	return 0;
}

parm_tokenizer *parm_tokenizer_load(const parm_gguf *g)
{
	parm_tokenizer *t = parm_xcalloc(1, sizeof *t);
	if (load_into(t, g)) {
		parm_tokenizer_free(t);
		return NULL;
	}
	return t;
}

void parm_tokenizer_free(parm_tokenizer *t)
{
	if (!t)
		return;
	free(t->arena);
	free(t->text_off);
	free(t->text_len);
	free(t->score);
	free(t->type);
	free(t->is_control);
	free(t->pieces);
	free(t->piece_off);
	free(t->vocab.slot);
	free(t->merges);
	free(t->merge_tab.slot);
	free(t->splitters);
	free(t->specials);
	free(t->eog);
	free(t);
}

/* Queries. */

int parm_tok_n_vocab(const parm_tokenizer *t) { return t->n_vocab; }
enum parm_tok_kind parm_tok_kind(const parm_tokenizer *t) { return t->kind; }
int parm_tok_bos(const parm_tokenizer *t) { return t->bos; }
int parm_tok_eos(const parm_tokenizer *t) { return t->eos; }
int parm_tok_add_bos(const parm_tokenizer *t) { return t->add_bos; }
uint64_t parm_tok_fingerprint(const parm_tokenizer *t) { return t->fingerprint; }

int parm_tok_type(const parm_tokenizer *t, int id)
{
	return id >= 0 && id < t->n_vocab ? t->type[id] : -1;
}

const char *parm_tok_text(const parm_tokenizer *t, int id, size_t *len)
{
	if (id < 0 || id >= t->n_vocab) {
		if (len)
			*len = 0;
		return "";
	}
	if (len)
		*len = t->text_len[id];
	return tok_str(t, id);
}

const char *parm_tok_piece(const parm_tokenizer *t, int id, size_t *len)
{
	if (id < 0 || id >= t->n_vocab) {
		if (len)
			*len = 0;
		return "";
	}
	if (len)
		*len = t->piece_off[id + 1] - t->piece_off[id] - 1;
	return t->pieces + t->piece_off[id];
}

/* Encoding.  First the text is cut into fragments around user-defined
 * tokens (llama.cpp's tokenizer_st_partition with parse_special off):
 * each such token in turn, longest first, is split out of every text
 * fragment left; then each text fragment is encoded on its own. */

struct frag {
	int id;                         /* -1: text [off, off + len) */
	size_t off, len;
};

struct fraglist {
	struct frag *v;
	size_t n, cap;
};

static void frag_push(struct fraglist *l, struct frag f)
{
	if (f.id < 0 && f.len == 0)
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = parm_xrealloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = f;
}

/* llama.cpp strips with isspace() in the C locale. */
static int c_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Phi-3's special tokens eat the whitespace after them, but for these
 * three (llama.cpp's attributes by model name). */
static int rstrips(const parm_tokenizer *t, int id)
{
	const char *s = tok_str(t, id);
	size_t n = t->text_len[id];
	return t->rstrip_splitters && !str_is(s, n, "<unk>") && !str_is(s, n, "<s>") &&
	       !str_is(s, n, "<|endoftext|>");
}

static void split_fragment(const parm_tokenizer *t, int id, const char *text, struct frag f,
			   struct fraglist *out)
{
	const char *tok = tok_str(t, id);
	size_t n = t->text_len[id];
	while (f.len) {
		const char *hit = memmem(text + f.off, f.len, tok, n);
		size_t at;
		if (!hit)
			break;
		at = (size_t)(hit - text);
		frag_push(out, (struct frag){ -1, f.off, at - f.off });
		frag_push(out, (struct frag){ id, 0, 0 });
		f.len -= at + n - f.off;
		f.off = at + n;
		while (rstrips(t, id) && f.len && c_space(text[f.off]))
			f.off++, f.len--;
	}
	frag_push(out, f);
}

static int occurs(const char *text, size_t len, const char *s, size_t n)
{
	return memmem(text, len, s, n) != NULL;
}

static struct fraglist partition(const parm_tokenizer *t, const char *text, size_t len,
				 int parse_special)
{
	struct fraglist cur = {0};
	const int *split = parse_special ? t->specials : t->splitters;
	int n_split = parse_special ? t->n_specials : t->n_splitters;
	frag_push(&cur, (struct frag){ -1, 0, len });
	for (int k = 0; k < n_split; k++) {
		int id = split[k];
		struct fraglist next = {0};
		if (!occurs(text, len, tok_str(t, id), t->text_len[id]))
			continue;
		for (size_t i = 0; i < cur.n; i++) {
			if (cur.v[i].id >= 0)
				frag_push(&next, cur.v[i]);
			else
				split_fragment(t, id, text, cur.v[i], &next);
		}
		free(cur.v);
		cur = next;
	}
	return cur;
}

/* SPM: spaces become U+2581, and a space goes first at the start of the
 * text and after a split-out token when add_space_prefix says so. */
static int encode_spm_fragment(const parm_tokenizer *t, const char *s, size_t n, int prefix,
			       struct idvec *out)
{
	char *buf = parm_xmalloc(3 * n + 4);
	size_t o = 0;
	int rc;
	if (prefix)
		memcpy(buf, "\xe2\x96\x81", 3), o = 3;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			memcpy(buf + o, "\xe2\x96\x81", 3), o += 3;
		else
			buf[o++] = s[i];
	}
	rc = parm_spm_encode(t, buf, o, out);
	free(buf);
	return rc;
}

static int encode_all(const parm_tokenizer *t, const char *text, size_t len, int parse_special,
		      struct idvec *out)
{
	struct fraglist frags = partition(t, text, len, parse_special);
	int after_special = 1, rc = 0;
	for (size_t i = 0; i < frags.n && rc == 0; i++) {
		struct frag f = frags.v[i];
		if (f.id >= 0) {
			parm_idvec_push(out, f.id);
			after_special = 1;
		} else if (t->kind == PARM_TOK_SPM) {
			rc = encode_spm_fragment(t, text + f.off, f.len,
						 t->add_space_prefix && after_special, out);
			after_special = 0;
		} else {
			rc = parm_bpe_encode(t, text + f.off, f.len, out);
		}
	}
	free(frags.v);
	return rc;
}

static int tokenize(const parm_tokenizer *t, const char *text, size_t len, int add_bos,
		    int parse_special, int *ids, int max)
{
	struct idvec out = {0};
	int rc = 0;
	if (add_bos) {
		if (t->bos < 0)
			return parm_fail("tokenizer: BOS requested but the vocabulary has none");
		parm_idvec_push(&out, t->bos);
	}
	if (len)
		rc = encode_all(t, text, len, parse_special, &out);
	if (rc == 0 && out.n > 0x7fffffff)
		rc = parm_fail("tokenizer: text of %zu bytes gives too many tokens", len);
	if (rc == 0)
		for (size_t i = 0; i < out.n && (int)i < max; i++)
			ids[i] = out.v[i];
	free(out.v);
	return rc ? -1 : (int)out.n;
}

int parm_tokenize(const parm_tokenizer *t, const char *text, size_t len,
		  int add_bos, int *ids, int max)
{
	return tokenize(t, text, len, add_bos, 0, ids, max);
}

int parm_tokenize_special(const parm_tokenizer *t, const char *text, size_t len,
			  int add_bos, int *ids, int max)
{
	return tokenize(t, text, len, add_bos, 1, ids, max);
}
