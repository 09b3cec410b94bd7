/* tok_bpe.c - byte-level BPE as llama.cpp's llm_tokenizer_bpe does it:
 * pre-tokenise into words, write each word's bytes as GPT-2's printable
 * codepoints, then within the word repeatedly merge the adjacent pair of
 * lowest merge rank (leftmost first on ties).  A symbol left that is not a
 * token falls back to its single bytes, where those are tokens. */
#include <stdlib.h>
#include <string.h>
#include "tok_internal.h"
#include "unicode.h"
#include <parm/util.h>

struct bpe_work {
	const parm_tokenizer *t;
	char *word;                     /* byte-encoded word */
	size_t len, cap;
	struct tok_sym *sym;
	size_t sym_cap;
	struct tok_heap heap;
};

static void try_pair(void *work, int left, int right)
{
	struct bpe_work *w = work;
	struct tok_sym *l, *r;
	int rank;
	if (left < 0 || right < 0)
		return;
	l = &w->sym[left];
	r = &w->sym[right];
	rank = parm_tok_merge_rank(w->t, w->word + l->off, l->n, w->word + r->off, r->n);
	if (rank < 0)
		return;
	/* a float holds ranks below 2^24 exactly; lower rank goes first */
	parm_heap_push(&w->heap, (struct tok_pair){ -(float)rank, left, right, l->n + r->n });
}

static void merge_all(struct bpe_work *w)
{
	parm_tok_merge_all(w->sym, &w->heap, try_pair, w);
}

/* The word's codepoints as UTF-8, each byte as GPT-2's codepoint. */
static void byte_encode(struct bpe_work *w, const uint32_t *cpts, size_t n)
{
	const parm_tokenizer *t = w->t;
	w->len = 0;
	if (w->cap < n * 8) {
		w->cap = n * 8;
		w->word = parm_xrealloc(w->word, w->cap);
	}
	for (size_t i = 0; i < n; i++) {
		char u[4];
		int k = parm_utf8_put(u, cpts[i]);
		for (int j = 0; j < k; j++) {
			unsigned char b = (unsigned char)u[j];
			memcpy(w->word + w->len, t->byte_utf8[b], t->byte_utf8_len[b]);
			w->len += t->byte_utf8_len[b];
		}
	}
}

static int split_symbols(struct bpe_work *w)
{
	int n = 0;
	if (w->sym_cap < w->len + 1) {
		w->sym_cap = w->len + 1;
		w->sym = parm_xrealloc(w->sym, w->sym_cap * sizeof *w->sym);
	}
	for (size_t off = 0; off < w->len; n++) {
		size_t cl = (size_t)parm_utf8_len((unsigned char)w->word[off]);
		if (cl > w->len - off)
			cl = w->len - off;
		w->sym[n] = (struct tok_sym){ n - 1, off + cl == w->len ? -1 : n + 1,
					      (uint32_t)off, (uint32_t)cl };
		off += cl;
	}
	return n;
}

static void emit_symbol(const parm_tokenizer *t, const char *s, size_t n, struct idvec *out)
{
	int id = parm_tok_find(t, s, n);
	if (id >= 0) {
		parm_idvec_push(out, id);
		return;
	}
	for (size_t i = 0; i < n; i++)          /* as llama.cpp: raw bytes */
		if ((id = parm_tok_find(t, s + i, 1)) >= 0)
			parm_idvec_push(out, id);
}

static void encode_word(struct bpe_work *w, const uint32_t *cpts, size_t n, struct idvec *out)
{
	int id, nsym;
	byte_encode(w, cpts, n);
	if (w->t->ignore_merges && (id = parm_tok_find(w->t, w->word, w->len)) >= 0) {
		parm_idvec_push(out, id);
		return;
	}
	nsym = split_symbols(w);
	for (int i = 1; i < nsym; i++)
		try_pair(w, i - 1, i);
	merge_all(w);
	for (int i = nsym ? 0 : -1; i >= 0; i = w->sym[i].next)
		emit_symbol(w->t, w->word + w->sym[i].off, w->sym[i].n, out);
}

int parm_bpe_encode(const parm_tokenizer *t, const char *text, size_t len, struct idvec *out)
{
	struct bpe_work w = { .t = t };
	struct seglist words = {0};
	uint32_t *cpts = parm_xmalloc((len + 1) * sizeof *cpts);
	size_t n = 0, start = 0;
	for (size_t off = 0; off < len; )
		cpts[n++] = parm_utf8_next(text, len, &off);
	parm_pretok_split(t->pre, cpts, n, &words);
	for (size_t i = 0; i < words.n; i++) {
		encode_word(&w, cpts + start, words.len[i], out);
		start += words.len[i];
	}
	free(words.len);
	free(cpts);
	free(w.word);
	free(w.sym);
	free(w.heap.v);
	return 0;
}
