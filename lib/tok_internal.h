/* tok_internal.h - what tokenizer.c, tok_spm.c, tok_bpe.c and pretok.c
 * share: the tokenizer's innards, the merge queue and the pre-tokenisers.
 * Not part of libparm's interface. */
#ifndef PARM_TOK_INTERNAL_H
#define PARM_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <parm/tokenizer.h>

/* GGUF tokenizer.ggml.token_type values */
enum { TT_UNDEFINED, TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED,
       TT_UNUSED, TT_BYTE };

/* The pre-tokeniser regexes of llama.cpp we support (tokenizer.ggml.pre). */
enum pretok { PRETOK_DEFAULT, PRETOK_GPT2, PRETOK_LLAMA3, PRETOK_QWEN2 };

/* Open-addressing table of ids (slot holds id + 1, 0 is empty); the keys
 * live elsewhere and are compared by the caller's lookup function. */
struct idtab {
	uint32_t *slot;
	uint32_t mask;
};

struct merge {                          /* "left right" of rank = index */
	uint32_t left, left_len, right, right_len;  /* offsets in the arena */
};

struct parm_tokenizer {
	enum parm_tok_kind kind;
	enum pretok pre;
	int n_vocab;
	char *arena;                    /* token texts, then merge texts */
	size_t *text_off;               /* [n_vocab] */
	uint32_t *text_len;
	float *score;
	int32_t *type;                  /* as stored in the GGUF */
	unsigned char *is_control;      /* control or unknown: decodes to "" */
	char *pieces;                   /* decoded token bytes */
	size_t *piece_off;              /* [n_vocab + 1] */
	struct idtab vocab;
	struct merge *merges;
	int n_merges;
	struct idtab merge_tab;
	int bos, eos, add_bos, add_space_prefix, ignore_merges;
	int *splitters;                 /* user-defined tokens split out first */
	int n_splitters;
	int rstrip_splitters;           /* Phi-3: eat whitespace after them */
	int *specials;                  /* splitters and control tokens, longest
					 * first: what parse_special splits out */
	int n_specials;
	char byte_utf8[256][2];         /* GPT-2 byte -> its codepoint's UTF-8 */
	unsigned char byte_utf8_len[256];
	int byte_token[256];            /* SPM: <0xNN> ids */
	uint64_t fingerprint;
	int *eog;                       /* end-of-generation ids, ascending */
	int n_eog;
};

/* Fill t->eog (tok_eog.c), once the vocabulary is indexed. */
void parm_tok_find_eog(parm_tokenizer *t, const parm_gguf *g);

/* A growable list of ids. */
struct idvec {
	int *v;
	size_t n, cap;
};
void parm_idvec_push(struct idvec *o, int id);

int parm_tok_find(const parm_tokenizer *t, const char *s, size_t n);  /* -1: none */
int parm_tok_merge_rank(const parm_tokenizer *t, const char *l, size_t ln,
		   const char *r, size_t rn);                     /* -1: none */

/* Symbols being merged: a doubly linked list over a byte string. */
struct tok_sym {
	int prev, next;
	uint32_t off, n;
};

/* Max-first queue of candidate merges; ties go to the leftmost pair. */
struct tok_pair {
	float key;
	int left, right;
	uint32_t size;
};
struct tok_heap {
	struct tok_pair *v;
	size_t n, cap;
};
void parm_heap_push(struct tok_heap *h, struct tok_pair p);

/* Apply the queued merges best first, skipping stale ones; after each,
 * offer the merged symbol's new neighbour pairs to try_pair (which pushes
 * a pair when the encoder's vocabulary or merge table knows it).  The one
 * merge loop of SentencePiece and byte-level BPE. */
void parm_tok_merge_all(struct tok_sym *sym, struct tok_heap *heap,
		   void (*try_pair)(void *work, int left, int right), void *work);

/* Split one fragment of text into symbols and merge; append ids. */
int parm_spm_encode(const parm_tokenizer *t, const char *text, size_t len, struct idvec *out);
int parm_bpe_encode(const parm_tokenizer *t, const char *text, size_t len, struct idvec *out);

/* Pre-tokenise cpts[n]: appends the words' lengths, in codepoints. */
struct seglist {
	size_t *len;
	size_t n, cap;
};
void parm_pretok_split(enum pretok kind, const uint32_t *cpts, size_t n, struct seglist *out);

#endif
