/* remote.c - fuzz the parser of a remote server's reply to one step
 * (llama.cpp's /completion, OpenAI-style /v1/completions as vLLM and
 * llama.cpp write them).  The input's length picks the API, the server and
 * whether held-back tokens were banned, so each input costs one parse and
 * the mutations that change lengths visit every way. */
#include "fuzz.h"
#include "remote_internal.h"

#define TOP_K 8
#define N_VOCAB 50000

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const parm_reply_opts opts[] = {
		{ PARM_API_LLAMACPP, 1, TOP_K, "http://fuzz/completion" },
		{ PARM_API_OPENAI, 0, TOP_K, "http://fuzz/v1/completions" },
		{ PARM_API_OPENAI, 1, TOP_K, "http://fuzz/v1/completions" },
		{ PARM_API_OPENAI, 0, 1, "http://fuzz/v1/completions" },
	};
	int32_t ids[TOP_K];
	float vals[TOP_K];
	const parm_reply_opts *o = &opts[size % 4];
	int banned = size / 4 % 2;
	int n = parm_remote_parse_step(o, (const char *)data, size, N_VOCAB, banned, ids, vals);
	if (n > o->top_k)
		__builtin_trap();
	for (int i = 0; i < n; i++)
		sink += vals[i] + (float)ids[i];
	return 0;
}
