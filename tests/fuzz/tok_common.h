/* tok_common.h - the tokenizer harnesses' shared body (tok_spm.c,
 * tok_bpe.c): one vocabulary fixture loaded once, text tokenised. */
#ifndef PARM_FUZZ_TOK_COMMON_H
#define PARM_FUZZ_TOK_COMMON_H

#include "fuzz.h"
#include <parm/tokenizer.h>
#include <parm/util.h>

#include <stdlib.h>
#include <string.h>

static parm_tokenizer *fuzz_load_tokenizer(const char *fixture)
{
	parm_gguf *g = fuzz_open_fixture(fixture);
	parm_tokenizer *t = parm_tokenizer_load(g);
	if (!t)
		fuzz_abort(parm_error());
	parm_gguf_close(g);          /* the tokenizer keeps copies */
	return t;
}

/* Tokenise text[n] once (BOS when n is odd, so both ways are visited), as
 * parm_tokenize's callers do: room for n + 2 ids, and when the text needs
 * more (invalid UTF-8 becomes U+FFFD, three byte tokens) again with room for
 * what it said, which must then be what it gives.  Every id is checked and
 * decoded. */
static void fuzz_tokenize(const parm_tokenizer *t, const uint8_t *text, size_t n)
{
	/* a private copy of exactly n bytes: the tokenizer must not read past */
	char *copy = malloc(n ? n : 1);
	int cap = (int)n + 2, add_bos = (int)(n & 1);
	int *ids = malloc(cap * sizeof *ids);
	memcpy(copy, text, n);
	int got = parm_tokenize(t, copy, n, add_bos, ids, cap);
	if (got > cap) {
		ids = realloc(ids, got * sizeof *ids);
		if (parm_tokenize(t, copy, n, add_bos, ids, got) != got)
			abort();        /* the count must not change between calls */
	}
	for (int i = 0; i < got; i++) {
		size_t len;
		if (ids[i] < 0 || ids[i] >= parm_tok_n_vocab(t) || !parm_tok_piece(t, ids[i], &len))
			abort();
	}
	free(ids);
	free(copy);
}

#endif
