/* parm-train - create models, train base LMs and ARMs.  Modes so far:
 * init (a llama model with random weights and a given tokenizer). */
#include "gguf.h"
#include "model.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
"usage: parm-train init --vocab FILE.gguf --dim D --layers L --heads H\n"
"                       [--kv-heads G] [--ff F] [--ctx N] [--type TYPE]\n"
"                       [--seed S] -o OUT.gguf\n"
"Write a llama model with random weights (normal, std 0.02; norms 1) and\n"
"the tokenizer of FILE.gguf, loadable here and by llama.cpp.\n"
"  -v, --vocab FILE     a GGUF file holding tokenizer.* metadata\n"
"  -d, --dim D          embedding width\n"
"  -l, --layers L       transformer blocks\n"
"  -H, --heads H        attention heads (D divisible by H)\n"
"  -G, --kv-heads G     key/value heads, dividing H (default H)\n"
"  -f, --ff F           feed-forward width (default 8D/3 rounded up to 32)\n"
"  -c, --ctx N          context length (default 512)\n"
"  -t, --type TYPE      f32, f16, bf16, q8_0 or q4_0 (default f32)\n"
"  -s, --seed S         random seed (default 1)\n"
"  -o, --output FILE    the model to write\n"
"  -h, --help           show this help\n";

struct init_opts {
	const char *vocab, *out;
	long dim, layers, heads, kv_heads, ff, ctx, seed;
	enum ggml_type type;
};

static long int_opt(const char *name, const char *arg, long lo, long hi)
{
	long v;
	if (parm_parse_long(arg, lo, hi, &v) < 0)
		die("%s: expected an integer from %ld to %ld, got '%s'", name, lo, hi, arg);
	return v;
}

static enum ggml_type type_opt(const char *arg)
{
	int t = ggml_type_from_name(arg);
	if (t != GGML_F32 && t != GGML_F16 && t != GGML_BF16 && t != GGML_Q8_0 && t != GGML_Q4_0)
		die("--type: unknown type '%s' (f32, f16, bf16, q8_0 or q4_0)", arg);
	return (enum ggml_type)t;
}

static void parse_init(int argc, char **argv, struct init_opts *o)
{
	static const struct option longopts[] = {
		{"vocab", 1, 0, 'v'}, {"dim", 1, 0, 'd'}, {"layers", 1, 0, 'l'},
		{"heads", 1, 0, 'H'}, {"kv-heads", 1, 0, 'G'}, {"ff", 1, 0, 'f'},
		{"ctx", 1, 0, 'c'}, {"type", 1, 0, 't'}, {"seed", 1, 0, 's'},
		{"output", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	int c;
	*o = (struct init_opts){ .ctx = 512, .seed = 1, .type = GGML_F32 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":v:d:l:H:G:f:c:t:s:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'v': o->vocab = optarg; break;
		case 'd': o->dim = int_opt("--dim", optarg, 2, 1 << 16); break;
		case 'l': o->layers = int_opt("--layers", optarg, 1, 1024); break;
		case 'H': o->heads = int_opt("--heads", optarg, 1, 1024); break;
		case 'G': o->kv_heads = int_opt("--kv-heads", optarg, 1, 1024); break;
		case 'f': o->ff = int_opt("--ff", optarg, 1, 1 << 18); break;
		case 'c': o->ctx = int_opt("--ctx", optarg, 1, 1 << 24); break;
		case 't': o->type = type_opt(optarg); break;
		case 's': o->seed = int_opt("--seed", optarg, 0, 0x7fffffffffffffffL); break;
		case 'o': o->out = optarg; break;
		case 'h': fputs(usage_text, stdout); exit(0);
		case ':': die("option '%s' needs a value", argv[optind - 1]);
		default: die("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'", argv[optind]);
}

/* Every size that cannot make a model, named by its option. */
static void check_init(struct init_opts *o)
{
	const char *missing = !o->vocab ? "--vocab" : !o->dim ? "--dim" : !o->layers ? "--layers" :
			      !o->heads ? "--heads" : !o->out ? "-o" : NULL;
	if (missing)
		die("init: %s is required (see parm-train --help)", missing);
	if (!o->kv_heads)
		o->kv_heads = o->heads;
	if (!o->ff)
		o->ff = (8 * o->dim / 3 + 31) / 32 * 32;
	if (o->dim % o->heads)
		die("--dim %ld is not divisible by --heads %ld", o->dim, o->heads);
	if (o->heads % o->kv_heads)
		die("--heads %ld is not divisible by --kv-heads %ld", o->heads, o->kv_heads);
	if ((o->dim / o->heads) % 2)
		die("head dim %ld (--dim / --heads) must be even for rope", o->dim / o->heads);
	if (o->type != GGML_F32 && o->type != GGML_F16 && o->type != GGML_BF16) {
		if (o->dim % 32)
			die("--dim %ld must be a multiple of 32 for %s", o->dim, ggml_type_name(o->type));
		if (o->ff % 32)
			die("--ff %ld must be a multiple of 32 for %s", o->ff, ggml_type_name(o->type));
	}
}

static int cmd_init(int argc, char **argv)
{
	struct init_opts o;
	parse_init(argc, argv, &o);
	check_init(&o);
	gguf_file *vocab = gguf_open(o.vocab);
	if (!vocab)
		die("%s", parm_error());
	parm_config cfg = { .dim = o.dim, .n_layers = o.layers, .n_heads = o.heads,
			    .n_kv_heads = o.kv_heads, .ff = o.ff, .n_ctx = o.ctx,
			    .rms_eps = 1e-5f, .rope_theta = 10000 };
	if (parm_model_init(o.out, vocab, &cfg, o.type, (uint64_t)o.seed) < 0)
		die("%s", parm_error());
	gguf_close(vocab);
	return 0;
}

int main(int argc, char **argv)
{
	parm_setprog(argv[0]);
	if (argc < 2)
		die("no mode given (see parm-train --help)");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage_text, stdout);
		return fflush(stdout) || ferror(stdout);
	}
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	die("unknown mode '%s'", argv[1]);
}
