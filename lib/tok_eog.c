/* tok_eog.c - the tokens that end generation, found as llama.cpp's
 * vocabulary loader finds them (src/llama-vocab.cpp, "special_eog_ids"):
 *   - the ids named by tokenizer.ggml.{eos,eot,eom}_token_id;
 *   - FIM's pad, repo and file-separator tokens, named by their
 *     tokenizer.ggml.fim_*_token_id keys or else found by text;
 *   - every token whose text is one of the end-of-turn texts below;
 *   - less "<|end|>" when the vocabulary also has "<|return|>" and
 *     "<|call|>" (gpt-oss) or "<|calls|>" and "<|flush|>" (solar-open),
 *     where "<|end|>" closes a message and not the reply;
 *   - less "</s>" beside "<|tool_response>" (gemma4, paddleocr).
 * tests/test_llamacpp.c holds the result against llama.cpp's
 * llama_vocab_is_eog on every fixture vocabulary. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include <parm/util.h>

static const char *const eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
	"<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
	"_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
	"<turn|>", "<|tool_response>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
	"[e~[",
};

/* FIM tokens that end generation, each by key or else by its texts. */
static const struct {
	const char *key;
	const char *texts[5];
} fim_eog[] = {
	{ "tokenizer.ggml.fim_pad_token_id", { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]" } },
	{ "tokenizer.ggml.fim_rep_token_id", { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>" } },
	{ "tokenizer.ggml.fim_sep_token_id", { "<|file_sep|>" } },
};

static void add_eog(parm_tokenizer *t, int id)
{
	if (id < 0 || id >= t->n_vocab || parm_tok_is_eog(t, id))
		return;
	t->eog = parm_xrealloc(t->eog, (t->n_eog + 1) * sizeof *t->eog);
	t->eog[t->n_eog++] = id;
}

static void remove_eog(parm_tokenizer *t, int id)
{
	for (int i = 0; i < t->n_eog; i++)
		if (t->eog[i] == id) {
			t->eog[i] = t->eog[--t->n_eog];
			return;
		}
}

static int find_text(const parm_tokenizer *t, const char *s)
{
	return s ? parm_tok_find(t, s, strlen(s)) : -1;
}

/* An id from a key, or -1 when absent or out of range. */
static int key_id(const parm_gguf *g, const char *key, int n_vocab)
{
	int64_t v;
	if (parm_gguf_find_key(g, key) < 0 || parm_gguf_get_int(g, key, &v) < 0 || v < 0 || v >= n_vocab)
		return -1;
	return (int)v;
}

static void find_fim_eog(parm_tokenizer *t, const parm_gguf *g)
{
	for (size_t f = 0; f < sizeof fim_eog / sizeof *fim_eog; f++) {
		int id = key_id(g, fim_eog[f].key, t->n_vocab);
		for (int k = 0; id < 0 && k < 5; k++)
			id = find_text(t, fim_eog[f].texts[k]);
		add_eog(t, id);
	}
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

void parm_tok_find_eog(parm_tokenizer *t, const parm_gguf *g)
{
	find_fim_eog(t, g);
	for (size_t i = 0; i < sizeof eog_texts / sizeof *eog_texts; i++)
		add_eog(t, find_text(t, eog_texts[i]));
	add_eog(t, t->eos);
	add_eog(t, key_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab));
	add_eog(t, key_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab));
	int end = find_text(t, "<|end|>");
	int ret = parm_tok_is_eog(t, find_text(t, "<|return|>")), call = parm_tok_is_eog(t, find_text(t, "<|call|>"));
	int calls = parm_tok_is_eog(t, find_text(t, "<|calls|>")), flush = parm_tok_is_eog(t, find_text(t, "<|flush|>"));
	if (parm_tok_is_eog(t, end) && ((ret && call) || (calls && flush)))
		remove_eog(t, end);
	int s_end = find_text(t, "</s>");
	if (parm_tok_is_eog(t, s_end) && parm_tok_is_eog(t, find_text(t, "<|tool_response>")))
		remove_eog(t, s_end);
	if (t->n_eog)
		qsort(t->eog, t->n_eog, sizeof *t->eog, cmp_int);
}

int parm_tok_is_eog(const parm_tokenizer *t, int id)
{
	for (int i = 0; id >= 0 && i < t->n_eog; i++)
		if (t->eog[i] == id)
			return 1;
	return 0;
}

const int *parm_tok_eog(const parm_tokenizer *t, int *n)
{
	*n = t->n_eog;
	return t->eog;
}
