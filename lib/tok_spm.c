/* tok_spm.c - SentencePiece BPE as llama.cpp's llm_tokenizer_spm does it:
 * start from UTF-8 characters, repeatedly merge the adjacent pair whose
 * concatenation is the vocabulary token of highest score (leftmost first
 * on ties), then emit each symbol's token, or its bytes as <0xNN> tokens
 * when the symbol is not in the vocabulary. */
#include <stdlib.h>
#include <string.h>
#include "tok_internal.h"
#include "unicode.h"
#include <parm/util.h>

struct spm_work {
	const parm_tokenizer *t;
	const char *text;
	struct tok_sym *sym;
	struct tok_heap heap;
};

static void try_pair(void *work, int left, int right)
{
	struct spm_work *w = work;
	struct tok_sym *l, *r;
	int id;
	if (left < 0 || right < 0)
		return;
	l = &w->sym[left];
	r = &w->sym[right];
	id = parm_tok_find(w->t, w->text + l->off, l->n + r->n);
	if (id < 0)
		return;
	parm_heap_push(&w->heap, (struct tok_pair){ w->t->score[id], left, right, l->n + r->n });
}

static void merge_all(struct spm_work *w)
{
	parm_tok_merge_all(w->sym, &w->heap, try_pair, w);
}

static int emit_symbol(const parm_tokenizer *t, const char *s, size_t n, struct idvec *out)
{
	int id = parm_tok_find(t, s, n);
	if (id >= 0) {
		parm_idvec_push(out, id);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		id = t->byte_token[(unsigned char)s[i]];
		if (id < 0)
			return parm_fail("tokenizer: no byte token <0x%02X> in the vocabulary",
					 (unsigned char)s[i]);
		parm_idvec_push(out, id);
	}
	return 0;
}

/* text is already escaped (spaces as U+2581) and prefixed. */
int parm_spm_encode(const parm_tokenizer *t, const char *text, size_t len, struct idvec *out)
{
	struct spm_work w = { t, text, parm_xmalloc((len + 1) * sizeof *w.sym), {0} };
	int n = 0, rc = 0;
	for (size_t off = 0; off < len; n++) {
		size_t cl = (size_t)parm_utf8_len((unsigned char)text[off]);
		if (cl > len - off)
			cl = len - off;
		w.sym[n] = (struct tok_sym){ n - 1, off + cl == len ? -1 : n + 1,
					     (uint32_t)off, (uint32_t)cl };
		off += cl;
	}
	for (int i = 1; i < n; i++)
		try_pair(&w, i - 1, i);
	merge_all(&w);
	for (int i = n ? 0 : -1; i >= 0 && rc == 0; i = w.sym[i].next)
		rc = emit_symbol(t, text + w.sym[i].off, w.sym[i].n, out);
	free(w.sym);
	free(w.heap.v);
	return rc;
}
