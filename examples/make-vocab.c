/* make-vocab.c - train a byte-level BPE vocabulary on JSONL documents
 * ("text", or "prompt" and "response": the two joined, as parm-train lm
 * reads them) and write it as a GGUF vocabulary (lib/bpe_train.h).
 *
 *   make-vocab [-n N_VOCAB] -o VOCAB.gguf CORPUS.jsonl...
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "bpe_train.h"
#include "dataset.h"
#include "util.h"

static const char usage_text[] =
"usage: make-vocab [-n N_VOCAB] -o VOCAB.gguf CORPUS.jsonl...\n"
"Learn a byte-level BPE vocabulary of N_VOCAB tokens (default 1024) from\n"
"JSONL documents (\"text\", or \"prompt\" + \"response\"; - is stdin) and\n"
"write it as a GGUF vocabulary for parm-train init --vocab.\n"
"  -n, --vocab-size N   tokens, bytes and BOS/EOS included (default 1024)\n"
"  -o, --output FILE    the vocabulary to write\n"
"  -h, --help           show this help\n";

static void add_string(json_t *obj, const char *key, char **buf, size_t *len)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v))
		return;
	*buf = xrealloc(*buf, *len + json_string_length(v) + 1);
	memcpy(*buf + *len, json_string_value(v), json_string_length(v));
	*len += json_string_length(v);
}

/* One document: "text", else prompt immediately followed by response. */
static int add_record(void *ctx, json_t *obj, const char *origin)
{
	parm_bpe *b = ctx;
	char *text = NULL;
	size_t len = 0;
	add_string(obj, "text", &text, &len);
	if (!len) {
		add_string(obj, "prompt", &text, &len);
		add_string(obj, "response", &text, &len);
	}
	if (!text)
		return parm_fail("%s: no \"text\" and no \"prompt\"/\"response\" strings", origin);
	parm_bpe_add(b, text, len);
	free(text);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "vocab-size", 1, 0, 'n' }, { "output", 1, 0, 'o' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
	};
	parm_badrecs bad = { .strict = 1 };
	const char *out = NULL;
	long n_vocab = 1024, docs;
	parm_bpe *b;
	int c, size;
	parm_setprog(argv[0]);
	while ((c = getopt_long(argc, argv, "n:o:h", lo, NULL)) != -1) {
		switch (c) {
		case 'n': n_vocab = opt_long("--vocab-size", optarg, PARM_BPE_MIN_VOCAB, 1 << 20); break;
		case 'o': out = optarg; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage_error("unknown option");
		}
	}
	if (!out || optind == argc)
		usage_error("give -o VOCAB.gguf and at least one corpus file");
	b = parm_bpe_new();
	docs = parm_jsonl_foreach((const char *const *)argv + optind, argc - optind, &bad, add_record, b);
	if (docs < 0 || (size = parm_bpe_learn(b, (int)n_vocab)) < 0 || parm_bpe_save(b, out) < 0)
		die("%s", parm_error());
	fprintf(stderr, "%s: %ld documents, %d tokens (%d merges) written to %s\n",
		parm_progname, docs, size, parm_bpe_n_merges(b), out);
	parm_bpe_free(b);
	return 0;
}
