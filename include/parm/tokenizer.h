/* tokenizer.h - tokenizers read from GGUF metadata, with ids identical to
 * llama.cpp's: tokenizer.ggml.model "llama" (SentencePiece with scores and
 * byte fallback) and "gpt2" (byte-level BPE with merges; pre-tokenizers
 * default gpt-2, llama-bpe, qwen2).
 *
 * As in llama.cpp, user-defined tokens (GGUF token_type 4) found in the
 * text are split out before encoding, while control tokens are not parsed;
 * an unknown tokenizer.ggml.pre fails the load, naming the value.
 */
#ifndef PARM_TOKENIZER_H
#define PARM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include "gguf.h"

typedef struct parm_tokenizer parm_tokenizer;

enum parm_tok_kind { PARM_TOK_SPM, PARM_TOK_BPE };

parm_tokenizer *parm_tokenizer_load(const parm_gguf *g);  /* NULL + parm_error */
void parm_tokenizer_free(parm_tokenizer *t);

int parm_tok_n_vocab(const parm_tokenizer *t);
enum parm_tok_kind parm_tok_kind(const parm_tokenizer *t);
int parm_tok_bos(const parm_tokenizer *t);      /* -1 if none */
int parm_tok_eos(const parm_tokenizer *t);      /* -1 if none */
int parm_tok_add_bos(const parm_tokenizer *t);  /* tokenizer.ggml.add_bos_token */

/* The tokens that end generation (EOS, end-of-turn tokens such as
 * <|im_end|> and <|eot_id|>, ...), as llama.cpp's llama_vocab_is_eog:
 * *n ids, ascending. */
const int *parm_tok_eog(const parm_tokenizer *t, int *n);
int parm_tok_is_eog(const parm_tokenizer *t, int id);

/* Encode text[len] (special tokens not parsed, as llama.cpp's tests do).
 * add_bos nonzero puts BOS first (pass parm_tok_add_bos(t) to follow the
 * model).  Writes at most max ids (ids may be NULL when max is 0); returns
 * the number the text needs (which may be more than max: call again with
 * room), or -1 + parm_error. */
int parm_tokenize(const parm_tokenizer *t, const char *text, size_t len,
		  int add_bos, int *ids, int max);
/* The same, special tokens parsed (llama.cpp's parse_special): the text
 * of a control or user-defined token ("<|im_start|>") becomes that token,
 * as chat templates need. */
int parm_tokenize_special(const parm_tokenizer *t, const char *text, size_t len,
			  int add_bos, int *ids, int max);

/* The bytes a token stands for when text is decoded ("▁" is a space, a
 * <0x0A> byte token is "\n", byte-level BPE maps back to raw bytes).
 * Control tokens (BOS, EOS, ...) decode to nothing. */
const char *parm_tok_piece(const parm_tokenizer *t, int id, size_t *len);
/* The token's text as stored in the vocabulary ("▁the", "Ġthe"). */
const char *parm_tok_text(const parm_tokenizer *t, int id, size_t *len);
int parm_tok_type(const parm_tokenizer *t, int id); /* GGUF token_type; -1 out of range */

/* Fingerprint: kind, vocabulary size and every token's text, hashed.
 * Two models whose fingerprints agree tokenise alike.  Precisely: FNV-1a
 * (parm_fnv1a from PARM_FNV_SEED) over kind and n_vocab as 4-byte little-
 * endian words, then for each token its length (4 bytes LE) and bytes. */
uint64_t parm_tok_fingerprint(const parm_tokenizer *t);

#endif
