/* bpe_train.c - byte-level BPE training (see bpe_train.h).
 *
 * The corpus is kept as its distinct words with their counts, so a round
 * costs one pass over the distinct words however large the text was.  Pair
 * counts are recounted each round rather than updated: simpler, and the
 * vocabularies this is for (a few thousand tokens) keep it well under a
 * second.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <parm/bpe_train.h>
#include <parm/gguf.h>
#include "tok_internal.h"
#include "unicode.h"
#include <parm/util.h>

struct bpe_word {
	char *bytes;                    /* the word as read, for lookup */
	size_t len;
	int *sym;                       /* current token ids */
	int n_sym;
	long count;
};

/* Open addressing: slot holds index + 1, 0 is empty. */
struct table {
	uint32_t *slot;
	size_t mask;
};

struct pair_count {
	uint64_t key;                   /* left << 32 | right */
	long count;
};

struct parm_bpe {
	struct bpe_word *word;
	size_t n_words, cap_words;
	struct table words;
	size_t n_positions;             /* sum of word lengths, for the pair table */
	char **tok;                     /* NUL-terminated token texts */
	int n_tok;
	char **merge;
	int n_merges, learned;
};

static uint64_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	return x ^ (x >> 33);
}

static void table_init(struct table *t, size_t min_slots)
{
	size_t n = 64;
	while (n < 2 * min_slots)
		n *= 2;
	free(t->slot);
	t->slot = parm_xcalloc(n, sizeof *t->slot);
	t->mask = n - 1;
}

parm_bpe *parm_bpe_new(void)
{
	parm_bpe *b = parm_xcalloc(1, sizeof *b);
	table_init(&b->words, 1024);
	return b;
}

void parm_bpe_free(parm_bpe *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n_words; i++) {
		free(b->word[i].bytes);
		free(b->word[i].sym);
	}
	for (int i = 0; i < b->n_tok; i++)
		free(b->tok[i]);
	for (int i = 0; i < b->n_merges; i++)
		free(b->merge[i]);
	free(b->word);
	free(b->words.slot);
	free(b->tok);
	free(b->merge);
	free(b);
}

/* ---- Counting words ---- */

static void rehash_words(parm_bpe *b)
{
	table_init(&b->words, b->n_words * 2);
	for (size_t i = 0; i < b->n_words; i++) {
		const struct bpe_word *w = &b->word[i];
		size_t s = parm_fnv1a(PARM_FNV_SEED, w->bytes, w->len) & b->words.mask;
		while (b->words.slot[s])
			s = (s + 1) & b->words.mask;
		b->words.slot[s] = (uint32_t)i + 1;
	}
}

static void new_word(parm_bpe *b, size_t slot, const char *s, size_t n)
{
	struct bpe_word *w;
	if (b->n_words == b->cap_words) {
		b->cap_words = b->cap_words ? 2 * b->cap_words : 256;
		b->word = parm_xrealloc(b->word, b->cap_words * sizeof *b->word);
	}
	w = &b->word[b->n_words];
	*w = (struct bpe_word){ parm_xmemdup(s, n), n, parm_xmalloc(n * sizeof *w->sym), (int)n, 1 };
	for (size_t i = 0; i < n; i++)
		w->sym[i] = (unsigned char)s[i];
	b->words.slot[slot] = (uint32_t)++b->n_words;
	b->n_positions += n;
	if (2 * b->n_words > b->words.mask)
		rehash_words(b);
}

static void count_word(parm_bpe *b, const char *s, size_t n)
{
	size_t slot = parm_fnv1a(PARM_FNV_SEED, s, n) & b->words.mask;
	uint32_t i;
	while ((i = b->words.slot[slot])) {
		struct bpe_word *w = &b->word[i - 1];
		if (w->len == n && !memcmp(w->bytes, s, n)) {
			w->count++;
			return;
		}
		slot = (slot + 1) & b->words.mask;
	}
	new_word(b, slot, s, n);
}

void parm_bpe_add(parm_bpe *b, const char *text, size_t len)
{
	struct seglist words = {0};
	uint32_t *cpts = parm_xmalloc((len + 1) * sizeof *cpts);
	char *utf8 = parm_xmalloc(4 * len + 4);
	size_t n = 0, at = 0;
	for (size_t off = 0; off < len; )
		cpts[n++] = parm_utf8_next(text, len, &off);
	parm_pretok_split(PRETOK_GPT2, cpts, n, &words);
	for (size_t i = 0; i < words.n; i++) {
		size_t bytes = 0;
		for (size_t j = 0; j < words.len[i]; j++)
			bytes += (size_t)parm_utf8_put(utf8 + bytes, cpts[at + j]);
		count_word(b, utf8, bytes);
		at += words.len[i];
	}
	free(words.len);
	free(utf8);
	free(cpts);
}

/* ---- Learning ---- */

static void add_token(parm_bpe *b, char *text)
{
	b->tok = parm_xrealloc(b->tok, (size_t)(b->n_tok + 1) * sizeof *b->tok);
	b->tok[b->n_tok++] = text;
}

static char *byte_text(unsigned char byte)
{
	char *s = parm_xmalloc(5);
	s[parm_utf8_put(s, parm_byte_to_ucp(byte))] = 0;
	return s;
}

static int find_token(const parm_bpe *b, const char *s)
{
	for (int i = 0; i < b->n_tok; i++)     /* a few thousand: linear is fine */
		if (!strcmp(b->tok[i], s))
			return i;
	return -1;
}

/* Count every adjacent pair; returns the best (most frequent, then lowest
 * left id, then lowest right id) in *best, its count as the result. */
static long best_pair(const parm_bpe *b, struct pair_count *tab, size_t mask, uint64_t *best)
{
	long best_n = 0;
	memset(tab, 0, (mask + 1) * sizeof *tab);
	for (size_t i = 0; i < b->n_words; i++) {
		const struct bpe_word *w = &b->word[i];
		for (int j = 0; j + 1 < w->n_sym; j++) {
			uint64_t key = (uint64_t)w->sym[j] << 32 | (uint32_t)w->sym[j + 1];
			size_t s = hash64(key) & mask;
			while (tab[s].count && tab[s].key != key)
				s = (s + 1) & mask;
			tab[s].key = key;
			tab[s].count += w->count;
			if (tab[s].count > best_n || (tab[s].count == best_n && key < *best)) {
				best_n = tab[s].count;
				*best = key;
			}
		}
	}
	return best_n;
}

/* Replace every non-overlapping (left, right), left to right, by id. */
static void apply_merge(parm_bpe *b, int left, int right, int id)
{
	for (size_t i = 0; i < b->n_words; i++) {
		struct bpe_word *w = &b->word[i];
		int out = 0;
		for (int j = 0; j < w->n_sym; j++) {
			if (j + 1 < w->n_sym && w->sym[j] == left && w->sym[j + 1] == right) {
				w->sym[out++] = id;
				j++;
			} else {
				w->sym[out++] = w->sym[j];
			}
		}
		w->n_sym = out;
	}
}

/* Merge left+right: record the merge, find or make the token. */
static void learn_merge(parm_bpe *b, int left, int right)
{
	size_t ln = strlen(b->tok[left]), rn = strlen(b->tok[right]);
	char *merged = parm_xmalloc(ln + rn + 1), *rule = parm_xmalloc(ln + rn + 2);
	int id;
	memcpy(merged, b->tok[left], ln);
	memcpy(merged + ln, b->tok[right], rn + 1);
	memcpy(rule, b->tok[left], ln);
	rule[ln] = ' ';
	memcpy(rule + ln + 1, b->tok[right], rn + 1);
	b->merge = parm_xrealloc(b->merge, (size_t)(b->n_merges + 1) * sizeof *b->merge);
	b->merge[b->n_merges++] = rule;
	if ((id = find_token(b, merged)) >= 0) {
		free(merged);
	} else {
		id = b->n_tok;
		add_token(b, merged);
	}
	apply_merge(b, left, right, id);
}

int parm_bpe_learn(parm_bpe *b, int n_vocab)
{
	size_t mask = 63;
	struct pair_count *tab;
	if (n_vocab < PARM_BPE_MIN_VOCAB)
		return parm_fail("BPE vocabulary of %d tokens: at least %d needed "
				 "(256 bytes and 2 control tokens)", n_vocab, PARM_BPE_MIN_VOCAB);
	if (b->learned)
		return parm_fail("BPE merges already learned");
	b->learned = 1;
	for (int byte = 0; byte < 256; byte++)
		add_token(b, byte_text((unsigned char)byte));
	while (mask < 2 * b->n_positions)
		mask = 2 * mask + 1;
	tab = parm_xmalloc((mask + 1) * sizeof *tab);
	while (b->n_tok < n_vocab - 2) {
		uint64_t best = UINT64_MAX;
		if (best_pair(b, tab, mask, &best) < 2)
			break;
		learn_merge(b, (int)(best >> 32), (int)(uint32_t)best);
	}
	free(tab);
	add_token(b, parm_xstrdup(PARM_BPE_BOS));
	add_token(b, parm_xstrdup(PARM_BPE_EOS));
	return b->n_tok;
}

int parm_bpe_n_merges(const parm_bpe *b) { return b->n_merges; }
int parm_bpe_n_vocab(const parm_bpe *b) { return b->n_tok; }

const char *parm_bpe_merge(const parm_bpe *b, int i)
{
	return i >= 0 && i < b->n_merges ? b->merge[i] : NULL;
}

const char *parm_bpe_token(const parm_bpe *b, int id)
{
	return id >= 0 && id < b->n_tok ? b->tok[id] : NULL;
}

/* ---- Writing ---- */

/* llama.cpp reads an architecture's hyper-parameters even for a vocab-only
 * load; these describe no model (parm-train init takes only tokenizer.*). */
static void set_placeholders(parm_gguf_writer *w)
{
	parm_gguf_w_set_str(w, "general.architecture", "llama");
	parm_gguf_w_set_str(w, "general.name", "parm byte-level BPE vocabulary");
	parm_gguf_w_set_u32(w, "llama.context_length", 512);
	parm_gguf_w_set_u32(w, "llama.embedding_length", 64);
	parm_gguf_w_set_u32(w, "llama.block_count", 1);
	parm_gguf_w_set_u32(w, "llama.feed_forward_length", 192);
	parm_gguf_w_set_u32(w, "llama.attention.head_count", 1);
	parm_gguf_w_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
}

static void set_tokens(parm_gguf_writer *w, const parm_bpe *b)
{
	int32_t *type = parm_xmalloc((size_t)b->n_tok * sizeof *type);
	for (int i = 0; i < b->n_tok; i++)
		type[i] = i >= b->n_tok - 2 ? TT_CONTROL : TT_NORMAL;
	parm_gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)b->tok, NULL,
			   (uint64_t)b->n_tok);
	parm_gguf_w_set_arr(w, "tokenizer.ggml.token_type", PARM_GGUF_I32, type, (uint64_t)b->n_tok);
	parm_gguf_w_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)b->merge, NULL,
			   (uint64_t)b->n_merges);
	free(type);
}

int parm_bpe_save(const parm_bpe *b, const char *path)
{
	parm_gguf_writer *w;
	int rc;
	if (!b->learned)
		return parm_fail("%s: no BPE merges learned yet", path);
	w = parm_gguf_w_new();
	set_placeholders(w);
	parm_gguf_w_set_str(w, "tokenizer.ggml.model", "gpt2");
	parm_gguf_w_set_str(w, "tokenizer.ggml.pre", "gpt-2");
	set_tokens(w, b);
	parm_gguf_w_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)b->n_tok - 2);
	parm_gguf_w_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)b->n_tok - 1);
	parm_gguf_w_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
	parm_gguf_w_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
	rc = parm_gguf_w_save(w, path);
	parm_gguf_w_free(w);
	return rc;
}

int parm_bpe_train(const char *const *texts, const size_t *lens, size_t n,
		   int n_vocab, const char *path)
{
	parm_bpe *b = parm_bpe_new();
	int size;
	for (size_t i = 0; i < n; i++)
		parm_bpe_add(b, texts[i], lens[i]);
	size = parm_bpe_learn(b, n_vocab);
	if (size >= 0 && parm_bpe_save(b, path) < 0)
		size = -1;
	parm_bpe_free(b);
	return size;
}
