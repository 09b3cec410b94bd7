/* tok_bpe.c - fuzz the byte-level BPE tokenizer and its pre-tokenizers: the
 * first byte picks the vocabulary fixture (GPT-2, Llama 3, Qwen2: each its
 * own pre-tokenizer regex), the rest is the text. */
#include "fuzz.h"
#include "tok_common.h"

static const char *const vocabs[] = {
	"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf",
};
#define N_VOCABS (sizeof vocabs / sizeof vocabs[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static parm_tokenizer *t[N_VOCABS];
	if (!t[0])
		for (size_t i = 0; i < N_VOCABS; i++)
			t[i] = fuzz_load_tokenizer(vocabs[i]);
	if (size == 0)
		return 0;
	fuzz_tokenize(t[data[0] % N_VOCABS], data + 1, size - 1);
	return 0;
}
