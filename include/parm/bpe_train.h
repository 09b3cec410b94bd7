/* bpe_train.h - learn a byte-level BPE vocabulary (GPT-2's kind) from text
 * and write it as a GGUF vocabulary file that this toolkit's tokenizer and
 * llama.cpp both load: tokenizer.ggml.model "gpt2", pre "gpt-2".
 *
 * Text is cut into words by the gpt-2 pre-tokeniser (the one the tokenizer
 * uses, so training and encoding agree), each word starting as its UTF-8
 * bytes.  Every round merges the most frequent adjacent pair over all words
 * (ties: the pair of lowest left id, then lowest right id), until the
 * vocabulary is full or no pair occurs twice.  Deterministic: the same text
 * in the same order gives the same file, byte for byte.
 *
 * The vocabulary: ids 0..255 are the 256 single bytes (id b is byte b, as
 * GPT-2's printable codepoint), so every byte string can be encoded; then
 * the merged tokens in the order learned (a merge whose result is already
 * a token reuses it); then the control tokens <|startoftext|> (BOS, added
 * to prompts) and <|endoftext|> (EOS).
 */
#ifndef PARM_BPE_TRAIN_H
#define PARM_BPE_TRAIN_H

#include <stddef.h>

#define PARM_BPE_BOS "<|startoftext|>"
#define PARM_BPE_EOS "<|endoftext|>"
#define PARM_BPE_MIN_VOCAB 258          /* the bytes and the two controls */

typedef struct parm_bpe parm_bpe;

parm_bpe *parm_bpe_new(void);
void parm_bpe_free(parm_bpe *b);

/* Count the words of text[len] (any bytes; invalid UTF-8 is read as
 * U+FFFD, as the tokenizer reads it). */
void parm_bpe_add(parm_bpe *b, const char *text, size_t len);

/* Learn merges until the vocabulary (bytes, merges and the two control
 * tokens) holds n_vocab tokens or no pair occurs twice.  Returns the
 * vocabulary size reached, or -1 + parm_error (n_vocab below
 * PARM_BPE_MIN_VOCAB, or called twice). */
int parm_bpe_learn(parm_bpe *b, int n_vocab);

/* What was learned: merge i as GGUF stores it ("left right", in GPT-2's
 * printable codepoints), and token id's text. */
int parm_bpe_n_merges(const parm_bpe *b);
const char *parm_bpe_merge(const parm_bpe *b, int i);
int parm_bpe_n_vocab(const parm_bpe *b);
const char *parm_bpe_token(const parm_bpe *b, int id);

/* Write the vocabulary as a GGUF file with no tensors (llama architecture
 * placeholders, as llama.cpp's vocab-only files have): 0 or -1 + parm_error. */
int parm_bpe_save(const parm_bpe *b, const char *path);

/* All in one: count texts[n] (lens[i] bytes each), learn, save to path.
 * Returns the vocabulary size, or -1 + parm_error. */
int parm_bpe_train(const char *const *texts, const size_t *lens, size_t n,
		   int n_vocab, const char *path);

#endif
