/* llama-ref - llama.cpp as an independent reference for the tests.
 *
 *   llama-ref tokenize MODEL.gguf < text     ids of all of stdin, no BOS,
 *                                            special tokens not parsed
 *   llama-ref tokenize-all MODEL.gguf < texts  the same for NUL-terminated
 *                                            texts, one line of ids each
 *   llama-ref logits MODEL.gguf [--lora ADAPTER.gguf SCALE]... ID...
 *                                            n_tokens * n_vocab raw f32,
 *                                            every position's logits row,
 *                                            with LoRA adapters at scales
 *   llama-ref tokenize-special MODEL.gguf < text  ids, special tokens parsed
 *   llama-ref tokenize-all-special MODEL.gguf < texts  the same, one line each
 *   llama-ref eog MODEL.gguf                 the end-of-generation ids
 *   llama-ref chat MODEL.gguf [TEMPLATE] < messages   the templated text
 *                                            (assistant turn opened) of
 *                                            NUL-separated role, content
 *                                            pairs; TEMPLATE a built-in
 *                                            name, else the model's own
 *
 * Built by tests/llamacpp.sh against the llama.cpp it builds; uses llama.h
 * only.  The KV cache is f32 and flash attention off, so the only rounding
 * llama.cpp adds beyond ours is its own matmul path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llama.h"

static void fail(const char *msg, const char *arg)
{
	fprintf(stderr, "llama-ref: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
	exit(1);
}

/* Keep llama.cpp quiet unless it reports an error (or LLAMA_REF_VERBOSE). */
static void log_errors(enum ggml_log_level level, const char *text, void *data)
{
	(void)data;
	if (level == GGML_LOG_LEVEL_ERROR || getenv("LLAMA_REF_VERBOSE"))
		fputs(text, stderr);
}

static struct llama_model *load(const char *path, int vocab_only)
{
	struct llama_model_params mp = llama_model_default_params();
	struct llama_model *model;
	mp.vocab_only = vocab_only;
	mp.n_gpu_layers = 0;
	model = llama_model_load_from_file(path, mp);
	if (!model)
		fail("cannot load model", path);
	return model;
}

static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap);
	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap)
			buf = realloc(buf, cap *= 2);
	}
	if (!buf)
		fail("out of memory", NULL);
	*len = n;
	return buf;
}

static int parse_special;              /* tokenize-special */

/* One line: the ids of text[len]. */
static void print_ids(const struct llama_vocab *vocab, const char *text, size_t len)
{
	int32_t max = (int32_t)len + 16, n, i;
	llama_token *ids = malloc(sizeof *ids * max);
	n = llama_tokenize(vocab, text, (int32_t)len, ids, max, false, parse_special);
	if (n < 0) {            /* -n is the room it needs */
		max = -n;
		ids = realloc(ids, sizeof *ids * max);
		n = llama_tokenize(vocab, text, (int32_t)len, ids, max, false, parse_special);
	}
	if (n < 0)
		fail("llama_tokenize failed", NULL);
	for (i = 0; i < n; i++)
		printf(i ? " %d" : "%d", ids[i]);
	putchar('\n');
	free(ids);
}

/* all: stdin holds NUL-terminated texts, one line of ids each. */
static int tokenize(const char *path, int all)
{
	struct llama_model *model = load(path, 1);
	const struct llama_vocab *vocab = llama_model_get_vocab(model);
	size_t len, at, end;
	char *text = read_all(stdin, &len);
	if (!all)
		print_ids(vocab, text, len);
	for (at = 0; all && at < len; at = end + 1) {
		end = at + strnlen(text + at, len - at);
		print_ids(vocab, text + at, end - at);
	}
	free(text);
	llama_model_free(model);
	return fflush(stdout) ? 1 : 0;
}

static struct llama_context *context_for(struct llama_model *model, int n)
{
	struct llama_context_params cp = llama_context_default_params();
	struct llama_context *ctx;
	cp.n_ctx = n < 64 ? 64 : n;
	cp.n_batch = cp.n_ubatch = n;
	cp.n_seq_max = 1;
	cp.n_threads = cp.n_threads_batch = 2;
	cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
	cp.type_k = cp.type_v = GGML_TYPE_F32;
	cp.no_perf = true;
	ctx = llama_init_from_model(model, cp);
	if (!ctx)
		fail("cannot create a context", NULL);
	return ctx;
}

enum { MAX_LORA = 16 };

/* Leading "--lora FILE SCALE" triples of args[n] loaded on ctx; the
 * number of args they took. */
static int set_loras(struct llama_model *model, struct llama_context *ctx, int n, char **args)
{
	struct llama_adapter_lora *ad[MAX_LORA];
	float scale[MAX_LORA];
	int used = 0, k = 0;
	while (used + 3 <= n && !strcmp(args[used], "--lora")) {
		char *end;
		if (k == MAX_LORA)
			fail("too many adapters", args[used + 1]);
		if (!(ad[k] = llama_adapter_lora_init(model, args[used + 1])))
			fail("cannot load the adapter", args[used + 1]);
		scale[k] = strtof(args[used + 2], &end);
		if (*end || end == args[used + 2])
			fail("bad scale", args[used + 2]);
		k++, used += 3;
	}
	if (k && llama_set_adapters_lora(ctx, ad, (size_t)k, scale) != 0)
		fail("cannot set the adapters", NULL);
	return used;
}

static int logits(const char *path, int n, char **args)
{
	struct llama_model *model = load(path, 0);
	int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
	struct llama_context *ctx = context_for(model, n);
	int used = set_loras(model, ctx, n, args);
	struct llama_batch batch;
	int i;
	n -= used, args += used;
	if (n < 1)
		fail("no token ids", path);
	batch = llama_batch_init(n, 0, 1);
	for (i = 0; i < n; i++) {
		char *end;
		long id = strtol(args[i], &end, 10);
		if (*end || end == args[i] || id < 0 || id >= n_vocab)
			fail("bad token id", args[i]);
		batch.token[i] = (llama_token)id;
		batch.pos[i] = i;
		batch.n_seq_id[i] = 1;
		batch.seq_id[i][0] = 0;
		batch.logits[i] = 1;
	}
	batch.n_tokens = n;
	if (llama_decode(ctx, batch) != 0)
		fail("llama_decode failed", path);
	for (i = 0; i < n; i++) {
		const float *row = llama_get_logits_ith(ctx, i);
		if (!row || fwrite(row, sizeof *row, n_vocab, stdout) != (size_t)n_vocab)
			fail("cannot write logits", NULL);
	}
	llama_batch_free(batch);
	llama_free(ctx);
	llama_model_free(model);
	return fflush(stdout) ? 1 : 0;
}

static int eog(const char *path)
{
	struct llama_model *model = load(path, 1);
	const struct llama_vocab *vocab = llama_model_get_vocab(model);
	int first = 1;
	for (llama_token id = 0; id < llama_vocab_n_tokens(vocab); id++)
		if (llama_vocab_is_eog(vocab, id)) {
			printf(first ? "%d" : " %d", id);
			first = 0;
		}
	putchar('\n');
	llama_model_free(model);
	return fflush(stdout) ? 1 : 0;
}

/* stdin: role NUL content NUL ...; stdout: the template applied. */
static int chat(const char *path, const char *name)
{
	struct llama_model *model = load(path, 1);
	const char *tmpl = name ? name : llama_model_chat_template(model, NULL);
	size_t len, at, n = 0;
	char *text = read_all(stdin, &len);
	struct llama_chat_message msg[64];
	for (at = 0; at < len && n < 64; n++) {
		msg[n].role = text + at;
		at += strnlen(text + at, len - at) + 1;
		if (at >= len)
			fail("a role without content", NULL);
		msg[n].content = text + at;
		at += strnlen(text + at, len - at) + 1;
	}
	if (!tmpl)
		fail("the model has no chat template", path);
	int32_t need = llama_chat_apply_template(tmpl, msg, n, true, NULL, 0);
	if (need < 0)
		fail("template not supported", name ? name : "(the model's)");
	char *out = malloc((size_t)need + 1);
	llama_chat_apply_template(tmpl, msg, n, true, out, need + 1);
	fwrite(out, 1, (size_t)need, stdout);
	free(out);
	free(text);
	llama_model_free(model);
	return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
	int rc;
	const char *mode = argc >= 3 ? argv[1] : "";
	int is_tok = !strcmp(mode, "tokenize") || !strcmp(mode, "tokenize-special");
	int is_all = !strcmp(mode, "tokenize-all") || !strcmp(mode, "tokenize-all-special");
	int is_logits = argc >= 4 && !strcmp(mode, "logits");
	int is_eog = !strcmp(mode, "eog"), is_chat = !strcmp(mode, "chat");
	if (!is_tok && !is_all && !is_logits && !is_eog && !is_chat)
		fail("usage: llama-ref tokenize[-all][-special]|eog|chat MODEL | "
		     "llama-ref logits MODEL ID...", NULL);
	parse_special = strstr(mode, "-special") != NULL;
	llama_log_set(log_errors, NULL);
	llama_backend_init();
	if (is_eog)
		rc = eog(argv[2]);
	else if (is_chat)
		rc = chat(argv[2], argc > 3 ? argv[3] : NULL);
	else if (!is_logits)
		rc = tokenize(argv[2], is_all);
	else
		rc = logits(argv[2], argc - 3, argv + 3);
	llama_backend_free();
	return rc;
}
