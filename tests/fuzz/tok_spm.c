/* tok_spm.c - fuzz the SentencePiece tokenizer: the input is text, encoded
 * with the Llama 2 vocabulary fixture (loaded once), with and without BOS;
 * every id must be in the vocabulary and decode to a piece. */
#include "fuzz.h"
#include "tok_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static parm_tokenizer *t;
	if (!t)
		t = fuzz_load_tokenizer("ggml-vocab-llama-spm.gguf");
	fuzz_tokenize(t, data, size);
	return 0;
}
