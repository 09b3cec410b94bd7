/* parm-train - create models, train base LMs and ARMs.  Modes: init (a
 * llama model with random weights and a given tokenizer), lm (full-
 * parameter next-token training), arm (PARM / GenARM reward models on
 * preference pairs), vocab (a byte-level BPE vocabulary) and accuracy
 * (parm-eval accuracy by another name). */
#include <parm/arm.h>
#include <parm/bpe_train.h>
#include <parm/export.h>
#include <parm/peft.h>
#include <parm/prompts.h>
#include <parm/chat.h>
#include <parm/dataset.h>
#include <parm/gguf.h>
#include <parm/model.h>
#include <parm/quant.h>
#include <parm/trainer.h>
#include <parm/util.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
"usage: parm-train init --vocab FILE.gguf --dim D --layers L --heads H\n"
"                       [--kv-heads G] [--head-dim N] [--ff F] [--ctx N]\n"
"                       [--arch A] [--type TYPE] [--seed S] -o OUT.gguf\n"
"       parm-train lm [options] -o OUT.gguf MODEL.gguf CORPUS...\n"
"       parm-train arm [options] -o ARM.gguf BACKBONE.gguf DATA...\n"
"       parm-train accuracy [options] ARM.gguf PAIRS...\n"
"       parm-train vocab [--size N] -o VOCAB.gguf CORPUS...\n"
"       parm-train export [--pref A] [--peft] -o OUT ARM.gguf\n"
"       parm-train import [-O NAME=FIELD]... [--beta X] [-T T] -o ARM.gguf BACKBONE.gguf DIR\n"
"init: write a model with random weights (normal, std 0.02; norms 1) and\n"
"the tokenizer of FILE.gguf, loadable here and by llama.cpp.\n"
"      --arch A         llama, qwen2 (q/k/v biases), qwen3 (q/k norms) or\n"
"                       phi3 (fused qkv and gate||up) (default llama)\n"
"  -v, --vocab FILE     a GGUF file holding tokenizer.* metadata\n"
"  -d, --dim D          embedding width\n"
"  -l, --layers L       transformer blocks\n"
"  -H, --heads H        attention heads (D divisible by H unless --head-dim)\n"
"  -G, --kv-heads G     key/value heads, dividing H (default H)\n"
"      --head-dim N     width of a head (default D / H)\n"
"  -f, --ff F           feed-forward width (default 8D/3 rounded up to 32)\n"
"  -c, --ctx N          context length (default 512)\n"
"      --type TYPE      f32, f16, bf16, q8_0 or q4_0 (default f32)\n"
"  -s, --seed S         random seed (default 1)\n"
"  -o, --output FILE    the model to write\n"
"lm: train every weight on next-token prediction (text files, or JSONL\n"
"with \"text\" or \"prompt\" + \"response\", loss on the response).\n"
"arm: train PBLoRA adapters on preference pairs (PARM for k > 1\n"
"objectives, GenARM for k = 1).  accuracy: parm-eval accuracy, the same\n"
"command with the same options and output (see parm-eval --help).\n"
"vocab: learn a byte-level BPE vocabulary of --size N tokens (default 1024)\n"
"from corpora read as lm reads them, for init --vocab (--strict: stop at\n"
"a malformed record).\n"
"export: the ARM as llama.cpp LoRA adapters for llama-server --lora: the\n"
"agnostic part and one per objective (OUT.agnostic.gguf, OUT.NAME.gguf;\n"
"at alpha, scales 1, alpha_1, ...), or with -p, --pref A one adapter\n"
"merged at A (OUT.gguf); the paths written go to stdout.  --peft: the\n"
"directory OUT in the official code's peft format (adapter_config.json,\n"
"adapter_model.safetensors); with --pref, one ordinary LoRA merged at A\n"
"in peft's format (vLLM's --lora-modules).  import: such a directory (the official\n"
"code's save_pretrained) as a parm ARM on BACKBONE; -O names the\n"
"objectives in order, --beta sets beta (default 0.01), -T the prompt\n"
"template it was trained with (default the official code's, PKU's).\n"
"Training options (lm and arm):\n"
"  -o, --output FILE        the model or ARM to write\n"
"      --steps N            optimiser steps (default: --epochs worth)\n"
"      --epochs N           passes over the training set (default 2)\n"
"  -b, --batch N            examples per micro-batch (default 32)\n"
"      --accum N            micro-batches per step (default 1)\n"
"      --lr X               peak learning rate (default 5e-4)\n"
"      --warmup N           warm-up steps of the cosine schedule (default 20)\n"
"      --weight-decay X     AdamW weight decay (default 0.05)\n"
"      --clip X             gradient norm clip, 0 off (default 1)\n"
"  -s, --seed S             split, order, alpha and dropout seed (default 42)\n"
"  -t, --threads N          threads (default: all processors)\n"
"  -L, --max-length N       tokens per sequence (default 1024; lm: <= ctx)\n"
"      --heldout X          held-out fraction (< 1) or count (arm 0.05, lm 0)\n"
"      --eval-every N       held-out evaluation every N steps (default 50)\n"
"      --log-every N        progress line every N steps off a tty (default 10)\n"
"      --checkpoint FILE    checkpoint path (default OUT.ckpt; removed once\n"
"                           OUT is written)\n"
"      --checkpoint-every N checkpoint every N steps (default 100; 0: end only)\n"
"      --resume             continue from the checkpoint\n"
"      --strict             stop at the first malformed record\n"
"lm only:\n"
"      --type TYPE          output weight type (default: the input's)\n"
"arm only:\n"
"  -O, --objective N=FIELD  objective N labelled by FIELD, or N=@FILE of\n"
"                           chosen/rejected pairs (repeatable; default\n"
"                           helpful=better_response_id\n"
"                           harmless=safer_response_id)\n"
"  -T, --template T         prompt template with {prompt} (default PKU's), or\n"
"                           chat: the backbone's own chat template\n"
"      --system TEXT        the system message of --template chat\n"
"      --overlong drop|truncate  pairs over --max-length (default drop)\n"
"      --r1 N, --r2 N       PBLoRA ranks (default 4, 4)\n"
"      --lora-alpha X       adapter scale lora_alpha / r2 (default 8)\n"
"      --dropout X          adapter input dropout (default 0.05)\n"
"      --targets LIST       q,k,v,o,gate,up,down or all (default q,k,v)\n"
"      --beta X             reward scale in the loss (default 0.01)\n"
"      --dirichlet C        PARM: alpha ~ Dirichlet(C, ..., C) per micro-batch\n"
"                           (default 0.5, the official code's)\n"
"      --vertex P           PARM: alpha is a vertex e_i (i uniform) with\n"
"                           probability P instead (default 0)\n"
"      --embed-backbone     copy the backbone into the ARM file\n"

"  -h, --help               show this help\n"
"  -V, --version            show the version\n";

struct init_opts {
	const char *vocab, *out;
	long dim, layers, heads, kv_heads, head_dim, ff, ctx, seed;
	int arch;
	enum parm_ggml_type type;
};

static int arch_opt(const char *arg)
{
	int a = parm_arch_find(arg, strlen(arg));
	if (a < 0)
		parm_die("--arch: unknown architecture '%s' (%s)", arg, parm_arch_names());
	return a;
}

static long int_opt(const char *name, const char *arg, long lo, long hi)
{
	long v;
	if (parm_parse_long(arg, lo, hi, &v) < 0)
		parm_die("%s: expected an integer from %ld to %ld, got '%s'", name, lo, hi, arg);
	return v;
}

static enum parm_ggml_type type_opt(const char *arg)
{
	int t = parm_ggml_type_from_name(arg);
	if (t < 0)
		parm_die("--type: unknown type '%s' (f32, f16, bf16, q8_0 or q4_0)", arg);
	if (!parm_quant_type_quantised((enum parm_ggml_type)t))
		parm_die("--type: parm-train does not write %s (f32, f16, bf16, q8_0 or q4_0; "
		    "llama-quantize makes the others from an f32 model)", arg);
	return (enum parm_ggml_type)t;
}

/* What every subcommand's option loop shares: help, version, a missing
 * value and an unknown option (usage errors, status 2). */
static _Noreturn void common_option(int c, char **argv)
{
	if (c == 'h') {
		fputs(usage_text, stdout);
		exit(0);
	}
	if (c == 'V') {
		puts("parm-train " PARM_VERSION);
		exit(fflush(stdout) != 0);
	}
	if (c == ':')
		parm_usage_error("option '%s' needs a value", argv[optind - 1]);
	parm_usage_error("unknown option '%s'", argv[optind - 1]);
}

static void parse_init(int argc, char **argv, struct init_opts *o)
{
	static const struct option longopts[] = {
		{"vocab", 1, 0, 'v'}, {"dim", 1, 0, 'd'}, {"layers", 1, 0, 'l'},
		{"heads", 1, 0, 'H'}, {"kv-heads", 1, 0, 'G'}, {"ff", 1, 0, 'f'},
		{"ctx", 1, 0, 'c'}, {"type", 1, 0, 'y'}, {"seed", 1, 0, 's'},
		{"output", 1, 0, 'o'}, {"arch", 1, 0, 'a'}, {"head-dim", 1, 0, 'D'},
		{"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
	int c;
	*o = (struct init_opts){ .ctx = 512, .seed = 1, .type = PARM_GGML_F32 };
	opterr = 0;
	/* --type and --arch are long only: -t is threads, -a an ARM (parm(7)) */
	while ((c = getopt_long(argc, argv, ":v:d:l:H:G:f:c:s:o:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': o->arch = arch_opt(optarg); break;
		case 'D': o->head_dim = int_opt("--head-dim", optarg, 2, 1024); break;
		case 'v': o->vocab = optarg; break;
		case 'd': o->dim = int_opt("--dim", optarg, 2, 1 << 16); break;
		case 'l': o->layers = int_opt("--layers", optarg, 1, 1024); break;
		case 'H': o->heads = int_opt("--heads", optarg, 1, 1024); break;
		case 'G': o->kv_heads = int_opt("--kv-heads", optarg, 1, 1024); break;
		case 'f': o->ff = int_opt("--ff", optarg, 1, 1 << 18); break;
		case 'c': o->ctx = int_opt("--ctx", optarg, 1, 1 << 24); break;
		case 'y': o->type = type_opt(optarg); break;
		case 's': o->seed = int_opt("--seed", optarg, 0, 0x7fffffffffffffffL); break;
		case 'o': o->out = optarg; break;
		default: common_option(c, argv);
		}
	}
	if (optind < argc)
		parm_die("unexpected argument '%s'", argv[optind]);
}

/* Every size that cannot make a model, named by its option. */
static void check_init(struct init_opts *o)
{
	const char *missing = !o->vocab ? "--vocab" : !o->dim ? "--dim" : !o->layers ? "--layers" :
			      !o->heads ? "--heads" : !o->out ? "-o" : NULL;
	if (missing)
		parm_die("init: %s is required (see parm-train --help)", missing);
	if (!o->kv_heads)
		o->kv_heads = o->heads;
	if (!o->ff)
		o->ff = (8 * o->dim / 3 + 31) / 32 * 32;
	if (!o->head_dim && o->dim % o->heads)
		parm_die("--dim %ld is not divisible by --heads %ld", o->dim, o->heads);
	if (o->heads % o->kv_heads)
		parm_die("--heads %ld is not divisible by --kv-heads %ld", o->heads, o->kv_heads);
	long hd = o->head_dim ? o->head_dim : o->dim / o->heads;
	if (hd % 2)
		parm_die("head dim %ld must be even for rope", hd);
	if (o->type != PARM_GGML_F32 && o->type != PARM_GGML_F16 && o->type != PARM_GGML_BF16) {
		if (o->dim % 32)
			parm_die("--dim %ld must be a multiple of 32 for %s", o->dim, parm_ggml_type_name(o->type));
		if (o->ff % 32)
			parm_die("--ff %ld must be a multiple of 32 for %s", o->ff, parm_ggml_type_name(o->type));
		if (hd * o->heads % 32)
			parm_die("heads x head dim %ld must be a multiple of 32 for %s", hd * o->heads,
			    parm_ggml_type_name(o->type));
	}
}

static int cmd_init(int argc, char **argv)
{
	struct init_opts o;
	parse_init(argc, argv, &o);
	check_init(&o);
	parm_gguf *vocab = parm_gguf_open(o.vocab);
	if (!vocab)
		parm_die("%s", parm_error());
	parm_config cfg = { .dim = o.dim, .n_layers = o.layers, .n_heads = o.heads,
			    .n_kv_heads = o.kv_heads, .ff = o.ff, .n_ctx = o.ctx,
			    .rms_eps = 1e-5f, .rope_theta = 10000, .arch = o.arch,
			    .head_dim = (int)o.head_dim };
	if (parm_model_init(o.out, vocab, &cfg, o.type, (uint64_t)o.seed) < 0)
		parm_die("%s", parm_error());
	parm_gguf_close(vocab);
	return 0;
}

/* ---- vocab ---- */

static void check_output_path(const char *path);

/* A document into the BPE counts: prompt and response joined, as
 * parm-train lm reads them. */
static int vocab_doc(void *ctx, const char *prompt, const char *text, size_t len)
{
	if (!prompt) {
		parm_bpe_add(ctx, text, len);
		return 0;
	}
	size_t np = strlen(prompt);
	char *joined = parm_xmalloc(np + len + 1);
	memcpy(joined, prompt, np);
	memcpy(joined + np, text, len);
	parm_bpe_add(ctx, joined, np + len);
	free(joined);
	return 0;
}

static int cmd_vocab(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"size", 1, 0, 'z'}, {"output", 1, 0, 'o'}, {"strict", 0, 0, 'S'},
		{"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
	parm_badrecs bad = { .strict = 0 };
	const char *out = NULL;
	long size = 1024;
	int c, reached;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'z': size = int_opt("--size", optarg, PARM_BPE_MIN_VOCAB, 1 << 20); break;
		case 'o': out = optarg; break;
		case 'S': bad.strict = 1; break;
		default: common_option(c, argv);
		}
	}
	if (!out)
		parm_die("vocab: -o is required (see parm-train --help)");
	if (optind == argc)
		parm_die("vocab: no corpus given");
	check_output_path(out);
	parm_bpe *b = parm_bpe_new();
	long docs = parm_corpus_foreach((const char *const *)argv + optind, argc - optind,
					PARM_DOC_AUTO, &bad, vocab_doc, b);
	if (docs < 0 || (reached = parm_bpe_learn(b, (int)size)) < 0 || parm_bpe_save(b, out) < 0)
		parm_die("%s", parm_error());
	if (bad.n_skipped)
		parm_warn("vocab: %ld malformed records skipped", bad.n_skipped);
	parm_warn("vocab: %ld documents, %d tokens (%d merges)%s", docs, reached, parm_bpe_n_merges(b),
	     reached < size ? ": no pair occurs twice more" : "");
	parm_bpe_free(b);
	return 0;
}

/* ---- lm, arm and accuracy ---- */

enum mode { MODE_LM, MODE_ARM };

struct train_opts {
	enum mode mode;
	const char *out, *ckpt, *tmpl, *system;
	int chat;               /* --template chat */
	parm_loop_opts loop;
	long threads, max_len, log_every;
	double heldout;
	int strict, embed, type, overlong, have_objectives;
	parm_objectives objs;
	parm_adapter_opts ad;
	double beta;
	parm_pref_dist dist;    /* how PARM draws alpha */
	char **inputs;          /* MODEL/BACKBONE/ARM then data */
	int n_inputs;
};

enum {
	O_STEPS = 256, O_EPOCHS, O_BATCH, O_ACCUM, O_LR, O_WARMUP, O_WD, O_CLIP, O_SEED,
	O_THREADS, O_MAXLEN, O_HELD, O_EVAL, O_LOG, O_CKPT, O_CKPT_EVERY, O_RESUME, O_STRICT,
	O_TYPE, O_OBJ, O_TEMPLATE, O_OVERLONG, O_R1, O_R2, O_LALPHA, O_DROPOUT, O_TARGETS,
	O_BETA, O_EMBED, O_SYSTEM, O_DIRICHLET, O_VERTEX,
};

static const struct option train_longopts[] = {
	{"output", 1, 0, 'o'}, {"steps", 1, 0, O_STEPS}, {"epochs", 1, 0, O_EPOCHS},
	{"batch", 1, 0, O_BATCH}, {"accum", 1, 0, O_ACCUM}, {"lr", 1, 0, O_LR},
	{"warmup", 1, 0, O_WARMUP}, {"weight-decay", 1, 0, O_WD}, {"clip", 1, 0, O_CLIP},
	{"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS}, {"max-length", 1, 0, O_MAXLEN},
	{"heldout", 1, 0, O_HELD}, {"eval-every", 1, 0, O_EVAL}, {"log-every", 1, 0, O_LOG},
	{"checkpoint", 1, 0, O_CKPT}, {"checkpoint-every", 1, 0, O_CKPT_EVERY},
	{"resume", 0, 0, O_RESUME}, {"strict", 0, 0, O_STRICT}, {"type", 1, 0, O_TYPE},
	{"objective", 1, 0, O_OBJ}, {"template", 1, 0, O_TEMPLATE},
	{"overlong", 1, 0, O_OVERLONG}, {"r1", 1, 0, O_R1}, {"r2", 1, 0, O_R2},
	{"lora-alpha", 1, 0, O_LALPHA}, {"dropout", 1, 0, O_DROPOUT},
	{"targets", 1, 0, O_TARGETS}, {"beta", 1, 0, O_BETA},
	{"embed-backbone", 0, 0, O_EMBED}, {"system", 1, 0, O_SYSTEM},
	{"dirichlet", 1, 0, O_DIRICHLET}, {"vertex", 1, 0, O_VERTEX},
	{"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};

static void train_defaults(struct train_opts *o, enum mode mode)
{
	*o = (struct train_opts){ .mode = mode, .max_len = 1024, .log_every = 10,
				  .heldout = mode == MODE_LM ? 0 : 0.05, .type = -1,
				  .beta = 0.01, .dist = PARM_PREF_OFFICIAL,
				  .threads = sysconf(_SC_NPROCESSORS_ONLN) };
	o->loop = (parm_loop_opts){ .epochs = 2, .batch = 32, .accum = 1, .lr = 5e-4f,
				    .weight_decay = 0.05f, .clip = 1, .warmup = 20, .seed = 42,
				    .eval_every = 50, .ckpt_every = 100 };
	parm_adapter_opts_default(&o->ad, 1);
	o->ad.targets = PARM_TARGETS_DEFAULT;
}

/* Options every training mode shares; 0 if c is not one of them. */
static int loop_option(struct train_opts *o, int c, const char *a)
{
	parm_loop_opts *l = &o->loop;
	switch (c) {
	case O_STEPS: l->steps = parm_opt_long("--steps", a, 1, 1L << 40); break;
	case O_EPOCHS: l->epochs = parm_opt_long("--epochs", a, 1, 1L << 30); break;
	case O_BATCH: l->batch = (int)parm_opt_long("--batch", a, 1, 1 << 16); break;
	case O_ACCUM: l->accum = (int)parm_opt_long("--accum", a, 1, 1 << 16); break;
	case O_LR: l->lr = (float)parm_opt_float("--lr", a, 0, 10); break;
	case O_WARMUP: l->warmup = parm_opt_long("--warmup", a, 0, 1L << 40); break;
	case O_WD: l->weight_decay = (float)parm_opt_float("--weight-decay", a, 0, 10); break;
	case O_CLIP: l->clip = (float)parm_opt_float("--clip", a, 0, 1e9); break;
	case O_SEED: l->seed = (uint64_t)parm_opt_long("--seed", a, 0, 0x7fffffffffffffffL); break;
	case O_THREADS: o->threads = parm_opt_long("--threads", a, 1, 4096); break;
	case O_MAXLEN: o->max_len = parm_opt_long("--max-length", a, 2, 1 << 24); break;
	case O_HELD: o->heldout = parm_opt_float("--heldout", a, 0, 1e12); break;
	case O_EVAL: l->eval_every = parm_opt_long("--eval-every", a, 0, 1L << 40); break;
	case O_LOG: o->log_every = parm_opt_long("--log-every", a, 1, 1L << 40); break;
	case O_CKPT: o->ckpt = a; break;
	case O_CKPT_EVERY: l->ckpt_every = parm_opt_long("--checkpoint-every", a, 0, 1L << 40); break;
	case O_RESUME: l->resume = 1; break;
	case O_STRICT: o->strict = 1; break;
	case 'o': o->out = a; break;
	default: return 0;
	}
	return 1;
}

static int arm_option(struct train_opts *o, int c, const char *a)
{
	switch (c) {
	case O_OBJ:
		if (parm_objectives_add(&o->objs, a) < 0)
			parm_usage_error("--objective: %s", parm_error());
		o->have_objectives = 1;
		break;
	case O_TEMPLATE:
		if (parm_check_template(a) < 0)
			parm_usage_error("--template: %s", parm_error());
		o->chat = !strcmp(a, "chat");
		o->tmpl = o->chat ? NULL : a;
		break;
	case O_SYSTEM:
		o->system = a;
		break;
	case O_OVERLONG:
		if (strcmp(a, "drop") && strcmp(a, "truncate"))
			parm_usage_error("--overlong: expected drop or truncate, got '%s'", a);
		o->overlong = !strcmp(a, "drop") ? PARM_OVERLONG_DROP : PARM_OVERLONG_TRUNCATE;
		break;
	case O_R1: o->ad.r1 = (int)parm_opt_long("--r1", a, 1, 4096); break;
	case O_R2: o->ad.r2 = (int)parm_opt_long("--r2", a, 1, 4096); break;
	case O_LALPHA: o->ad.lora_alpha = (float)parm_opt_float("--lora-alpha", a, 1e-9, 1e9); break;
	case O_DROPOUT: o->ad.dropout = (float)parm_opt_float("--dropout", a, 0, 0.99); break;
	case O_TARGETS:
		if (parm_parse_targets(a, &o->ad.targets) < 0)
			parm_usage_error("--targets: %s", parm_error());
		break;
	case O_BETA: o->beta = parm_opt_float("--beta", a, 1e-9, 1e9); break;
	case O_DIRICHLET: o->dist.conc = parm_opt_float("--dirichlet", a, 0.01, 1e3); break;
	case O_VERTEX: o->dist.vertex = parm_opt_float("--vertex", a, 0, 1); break;
	case O_EMBED: o->embed = 1; break;
	default: return 0;
	}
	return 1;
}

/* Options a mode does not take are refused by name. */
static int option_allowed(enum mode m, int c)
{
	if (c == O_TYPE)
		return m == MODE_LM;
	if (c == O_DIRICHLET || c == O_VERTEX)
		return m == MODE_ARM;
	if (c >= O_OBJ && c <= O_EMBED)
		return m == MODE_ARM;
	return 1;
}

/* A short option as its long one's code (li: its index, for messages). */
static int short_option(int c, int *li)
{
	static const int letters[][2] = { { 'b', O_BATCH }, { 's', O_SEED }, { 't', O_THREADS },
					   { 'L', O_MAXLEN }, { 'O', O_OBJ }, { 'T', O_TEMPLATE } };
	for (size_t i = 0; i < sizeof letters / sizeof *letters; i++)
		if (c == letters[i][0])
			c = letters[i][1];
	for (int i = 0; train_longopts[i].name; i++)
		if (train_longopts[i].val == c)
			*li = i;
	return c;
}

static void parse_train(int argc, char **argv, struct train_opts *o, enum mode mode)
{
	int c, li = -1;
	train_defaults(o, mode);
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:b:s:t:L:O:T:hV", train_longopts, &li)) != -1) {
		if (c == 'h') {
			fputs(usage_text, stdout);
			exit(fflush(stdout) != 0);
		}
		if (c == 'V') {
			puts("parm-train " PARM_VERSION);
			exit(fflush(stdout) != 0);
		}
		c = short_option(c, &li);
		if (c == ':')
			parm_usage_error("option '%s' needs a value", argv[optind - 1]);
		if (c == '?')
			parm_usage_error("%s: unknown option '--%s'", argv[0], train_longopts[li].name);
		if (!option_allowed(mode, c))
			parm_usage_error("%s: unknown option '--%s'", argv[0], train_longopts[li].name);
		if (c == O_TYPE)
			o->type = type_opt(optarg);
		else if (!loop_option(o, c, optarg) && !arm_option(o, c, optarg))
			parm_usage_error("unknown option '%s'", argv[optind - 1]);
	}
	o->inputs = argv + optind;
	o->n_inputs = argc - optind;
	if (o->n_inputs < 1)
		parm_usage_error("%s: no %s given", argv[0], mode == MODE_LM ? "model" :
			    "backbone");
	if (!o->out)
		parm_usage_error("%s: -o OUT is required", argv[0]);
	if (!o->have_objectives)
		parm_objectives_default(&o->objs);
}

/* ---- shared pieces ---- */

#define MAX_SKIP_SHOWN 5

struct skips {
	char *first[MAX_SKIP_SHOWN];
	int n;
};

static void on_skip(void *ctx, const char *msg)
{
	struct skips *s = ctx;
	if (s->n < MAX_SKIP_SHOWN)
		s->first[s->n++] = parm_xstrdup(msg);
}

static void report_skips(const parm_badrecs *bad, struct skips *s)
{
	if (!bad->n_skipped)
		return;
	parm_warn("skipped %ld malformed record%s (--strict stops at the first)", bad->n_skipped,
	     bad->n_skipped == 1 ? "" : "s");
	for (int i = 0; i < s->n; i++) {
		parm_warn("  %s", s->first[i]);
		free(s->first[i]);
	}
	s->n = 0;
}

/* A "key=value" line of the checkpoint fingerprint. */
static void fp_add(char **fp, size_t *len, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fp_add(char **fp, size_t *len, const char *key, const char *fmt, ...)
{
	char val[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof val, fmt, ap);
	va_end(ap);
	size_t n = strlen(key) + strlen(val) + 3;
	*fp = parm_xrealloc(*fp, *len + n);
	*len += (size_t)snprintf(*fp + *len, n, "%s=%s\n", key, val);
}

/* Every option and input that changes the trained weights. */
static char *fingerprint(const struct train_opts *o)
{
	char *fp = parm_xstrdup("");
	size_t n = 0;
	const parm_loop_opts *l = &o->loop;
	struct stat st;
	fp_add(&fp, &n, "mode", "%s", o->mode == MODE_LM ? "lm" : "arm");
	char key[32];
	for (int i = 0; i < o->n_inputs; i++) {
		snprintf(key, sizeof key, i ? "data %d" : "model", i);
		fp_add(&fp, &n, key, "%s (%lld bytes)", o->inputs[i],
		       stat(o->inputs[i], &st) ? -1LL : (long long)st.st_size);
	}
	fp_add(&fp, &n, "steps", "%ld", l->steps);
	fp_add(&fp, &n, "epochs", "%ld", l->epochs);
	fp_add(&fp, &n, "batch", "%d", l->batch);
	fp_add(&fp, &n, "accum", "%d", l->accum);
	fp_add(&fp, &n, "lr", "%.9g", (double)l->lr);
	fp_add(&fp, &n, "warmup", "%ld", l->warmup);
	fp_add(&fp, &n, "weight-decay", "%.9g", (double)l->weight_decay);
	fp_add(&fp, &n, "clip", "%.9g", (double)l->clip);
	fp_add(&fp, &n, "seed", "%llu", (unsigned long long)l->seed);
	fp_add(&fp, &n, "max-length", "%ld", o->max_len);
	fp_add(&fp, &n, "heldout", "%.9g", o->heldout);
	fp_add(&fp, &n, "strict", "%d", o->strict);
	if (o->mode == MODE_ARM) {
		for (int i = 0; i < o->objs.k; i++) {
			char *spec = parm_objective_spec(&o->objs.obj[i]);
			snprintf(key, sizeof key, "objective %d", i + 1);
			fp_add(&fp, &n, key, "%s", spec);
			free(spec);
		}
		fp_add(&fp, &n, "template", "%s", o->chat ? "chat" : o->tmpl ? o->tmpl : PARM_PAIR_TEMPLATE);
		if (o->system)
			fp_add(&fp, &n, "system", "%s", o->system);
		fp_add(&fp, &n, "overlong", "%d", o->overlong);
		fp_add(&fp, &n, "pblora", "r1 %d r2 %d alpha %.9g dropout %.9g targets %#x",
		       o->ad.r1, o->ad.r2, (double)o->ad.lora_alpha, (double)o->ad.dropout,
		       o->ad.targets);
		fp_add(&fp, &n, "beta", "%.9g", o->beta);
		if (memcmp(&o->dist, &PARM_PREF_OFFICIAL, sizeof o->dist))
			fp_add(&fp, &n, "alpha", "dirichlet %.9g vertex %.9g", o->dist.conc,
			       o->dist.vertex);
	}
	return fp;
}

/* Refuse a checkpoint of another run before any data is read. */
static void check_resume(const struct train_opts *o)
{
	parm_ckpt c;
	if (access(o->ckpt, F_OK))
		parm_die("--resume: no checkpoint %s", o->ckpt);
	if (parm_ckpt_load(o->ckpt, &c) < 0)
		parm_die("%s", parm_error());
	const char *why = parm_ckpt_mismatch(c.fingerprint, o->loop.fingerprint);
	if (why)
		parm_die("%s: made by a different run (%s); remove it or use the same options",
		    o->ckpt, why);
	parm_ckpt_free(&c);
}

/* Refuse an output path that cannot be written now rather than after all
 * the training: a directory, a missing or read-only directory to put it in.
 * Files are written as PATH.tmp then renamed, so the directory's
 * permissions are what count, not those of an old file at PATH. */
static void check_output_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		parm_die("%s: is a directory", path);
	char *dir = parm_xstrdup(path), *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else
		slash[slash == dir] = '\0';    /* "/x" lives in "/" */
	if (stat(dir, &st) != 0)
		parm_die("%s: cannot write: %s: %s", path, dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		parm_die("%s: cannot write: %s is not a directory", path, dir);
	if (access(dir, W_OK | X_OK) != 0)
		parm_die("%s: cannot write: %s: %s", path, dir, strerror(errno));
	free(dir);
}

/* OUT is written: its checkpoint (three times an ARM's size) has done
 * its work. */
static void drop_checkpoint(const struct train_opts *o)
{
	if (unlink(o->ckpt) < 0 && errno != ENOENT)
		parm_warn("%s: cannot remove the checkpoint: %s", o->ckpt, strerror(errno));
}

static void setup_loop(struct train_opts *o, char **ckpt_buf)
{
	if (!o->ckpt) {
		size_t n = strlen(o->out) + 6;
		*ckpt_buf = parm_xmalloc(n);
		snprintf(*ckpt_buf, n, "%s.ckpt", o->out);
		o->ckpt = *ckpt_buf;
	}
	check_output_path(o->out);
	check_output_path(o->ckpt);
	o->loop.ckpt_path = o->ckpt;
	o->loop.fingerprint = fingerprint(o);
	if (o->loop.resume)
		check_resume(o);
	parm_set_threads((int)o->threads);
}

/* A seeded train / held-out split of n examples. */
static long split(const struct train_opts *o, long n, long **train, long **held)
{
	long n_held = parm_heldout_count(n, o->heldout);
	if (n < 1)
		parm_die("no training examples in the data");
	if (n_held < 0 || n_held >= n)
		parm_die("--heldout %g leaves no training examples out of %ld", o->heldout, n);
	*train = parm_xmalloc(sizeof(long) * (size_t)(n + 1));
	*held = parm_xmalloc(sizeof(long) * (size_t)(n_held + 1));
	parm_split(*train, *held, n, n_held, o->loop.seed);
	return n_held;
}

/* Test hook, for tests/t_train.sh: PARM_TEST_KILL_AFTER_CHECKPOINT=N makes
 * the trainer SIGKILL itself right after writing the checkpoint of step N,
 * so a crash lands at a chosen step whatever the machine's speed. */
static void report_then_test_kill(void *prog, const parm_report *r)
{
	parm_progress_report(prog, r);
	const char *kill_at = getenv("PARM_TEST_KILL_AFTER_CHECKPOINT");
	if (r->checkpointed && kill_at && atol(kill_at) == r->step)
		raise(SIGKILL);
}

static void run_loop(parm_trainer *t, parm_task *task, struct train_opts *o, double *metric)
{
	parm_progress prog;
	parm_progress_init(&prog, stderr, isatty(2), o->log_every);
	task->report = report_then_test_kill;
	task->rctx = &prog;
	if (parm_loop_run(t, task, &o->loop, metric) < 0)
		parm_die("%s", parm_error());
}

/* ---- lm ---- */

/* parm_gguf_w_save writes PATH.tmp and renames it: a failed or killed save
 * leaves no half-written model at PATH. */
static void save_model(parm_trainer *t, const char *path, enum parm_ggml_type type)
{
	if (parm_train_save_model(t, path, type) < 0)
		parm_die("%s", parm_error());
}

static enum parm_ggml_type model_type(const parm_model *m)
{
	return m->layers[0].wq.type;
}

static int cmd_lm(int argc, char **argv)
{
	struct train_opts o;
	char *ckpt_buf = NULL;
	parse_train(argc, argv, &o, MODE_LM);
	if (o.n_inputs < 2)
		parm_usage_error("lm: no corpus given");
	setup_loop(&o, &ckpt_buf);
	parm_model *m = parm_model_load(o.inputs[0]);
	if (!m)
		parm_die("%s", parm_error());
	if (o.max_len > m->cfg.n_ctx)
		o.max_len = m->cfg.n_ctx;
	struct skips sk = { 0 };
	parm_badrecs bad = { .strict = o.strict, .on_skip = on_skip, .ctx = &sk };
	parm_lm_opts lo = { .max_len = (int)o.max_len, .layout = PARM_LM_PACK };
	parm_lm_data d;
	if (parm_lm_load(&d, m->tok, (const char *const *)o.inputs + 1, o.n_inputs - 1, &lo, &bad) < 0)
		parm_die("%s", parm_error());
	report_skips(&bad, &sk);
	long *train, *held, n_held = split(&o, d.n_seq, &train, &held);
	parm_warn("lm: %ld documents, %ld loss tokens, %ld sequences (%ld held out)", d.n_docs,
	     d.n_loss_tokens, d.n_seq, n_held);
	parm_trainer *t = parm_train_new_full(m, o.loop.batch, (int)o.max_len);
	if (!t)
		parm_die("%s", parm_error());
	parm_lm_task lt;
	parm_task task;
	parm_lm_task_init(&task, &lt, &d, train, d.n_seq - n_held, held, n_held, o.loop.batch);
	run_loop(t, &task, &o, NULL);
	save_model(t, o.out, o.type >= 0 ? (enum parm_ggml_type)o.type : model_type(m));
	drop_checkpoint(&o);
	parm_lm_task_free(&lt);
	parm_train_free(t);
	parm_lm_free(&d);
	parm_model_free(m);
	free(train);
	free(held);
	free(ckpt_buf);
	free((char *)o.loop.fingerprint);
	parm_objectives_free(&o.objs);
	return 0;
}

/* ---- arm ---- */

static void load_pairs(parm_pairs *p, const struct train_opts *o, const parm_model *backbone,
		       int n_data)
{
	const parm_tokenizer *tok = backbone->tok;
	char *chat = o->chat ? parm_chat_template_of(backbone->file) : NULL;
	if (o->chat && !chat)
		parm_die("--template chat: %s", parm_error());
	if (chat && !parm_chat_detect(chat))
		parm_die("--template chat: %s's chat template is not one parm recognises (%s)",
		    parm_gguf_path(backbone->file), parm_chat_names());
	struct skips sk = { 0 };
	parm_badrecs bad = { .strict = o->strict, .on_skip = on_skip, .ctx = &sk };
	if (parm_pairs_load(p, &o->objs, (const char *const *)o->inputs + 1, n_data, &bad) < 0)
		parm_die("%s", parm_error());
	report_skips(&bad, &sk);
	parm_pair_opts po = { .tmpl = o->tmpl, .chat = chat, .system = o->system,
			      .max_len = (int)o->max_len, .overlong = (enum parm_overlong)o->overlong };
	if (parm_pairs_tokenize(p, tok, &po) < 0)
		parm_die("%s", parm_error());
	free(chat);
	if (p->n_dropped || p->n_truncated)
		parm_warn("pairs over --max-length %ld: %ld dropped, %ld truncated", o->max_len,
		     p->n_dropped, p->n_truncated);
	if (p->n < 1)
		parm_die("no preference pairs to train on");
}

static parm_arm *new_arm(const struct train_opts *o)
{
	const char *names[PARM_MAX_OBJECTIVES];
	for (int i = 0; i < o->objs.k; i++)
		names[i] = o->objs.obj[i].name;
	parm_arm_options ao;
	parm_arm_default_options(&ao);
	ao.k = o->objs.k;
	ao.r1 = o->ad.r1;
	ao.r2 = o->ad.r2;
	ao.lora_alpha = o->ad.lora_alpha;
	ao.beta = (float)o->beta;
	ao.objectives = names;
	ao.targets = o->ad.targets;
	ao.seed = o->loop.seed;
	parm_arm *arm = parm_arm_new(o->inputs[0], &ao);
	if (!arm)
		parm_die("%s", parm_error());
	return arm;
}

static void set_provenance(parm_arm *arm, const struct train_opts *o, long total, long n_train)
{
	char buf[64], *data = parm_xstrdup("");
	size_t n = 1;
	for (int i = 1; i < o->n_inputs; i++) {
		n += strlen(o->inputs[i]) + 1;
		data = parm_xrealloc(data, n);
		if (i > 1)
			strcat(data, ",");
		strcat(data, o->inputs[i]);
	}
	for (int i = 0; i < o->objs.k; i++)
		if (o->objs.obj[i].file) {
			n += strlen(o->objs.obj[i].file) + 1;
			data = parm_xrealloc(data, n);
			strcat(strcat(data, *data ? "," : ""), o->objs.obj[i].file);
		}
	parm_arm_set_info(arm, "data", data);
	snprintf(buf, sizeof buf, "%ld", total);
	parm_arm_set_info(arm, "steps", buf);
	snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->loop.seed);
	parm_arm_set_info(arm, "seed", buf);
	snprintf(buf, sizeof buf, "%ld", n_train);
	parm_arm_set_info(arm, "pairs", buf);
	snprintf(buf, sizeof buf, "%g", (double)o->loop.lr);
	parm_arm_set_info(arm, "lr", buf);
	if (arm->k > 1) {
		snprintf(buf, sizeof buf, "dirichlet %g vertex %g", o->dist.conc, o->dist.vertex);
		parm_arm_set_info(arm, "alpha", buf);
	}
	parm_arm_set_info(arm, "tool", "parm-train arm " PARM_VERSION);
	parm_arm_set_info(arm, "template", o->chat ? "chat" : o->tmpl ? o->tmpl : PARM_PAIR_TEMPLATE);
	parm_arm_record_labels(arm, &o->objs);
	if (o->system)
		parm_arm_set_info(arm, "system", o->system);
	free(data);
}

/* The held-out metrics' names: for k > 1 the matrix "B@A", objective B's
 * accuracy at alpha = e_A (row A); for k = 1 the objective's name. */
static char **metric_names(const parm_objectives *objs)
{
	int k = objs->k;
	char **names = parm_xcalloc((size_t)k * k, sizeof *names);
	for (int i = 0; i < k; i++)
		for (int j = 0; j < k; j++) {
			size_t n = strlen(objs->obj[j].name) + strlen(objs->obj[i].name) + 2;
			names[i * k + j] = parm_xmalloc(n);
			if (k > 1)
				snprintf(names[i * k + j], n, "%s@%s", objs->obj[j].name, objs->obj[i].name);
			else
				snprintf(names[i * k + j], n, "%s", objs->obj[j].name);
		}
	return names;
}

/* What tells a PARM that learnt alpha from one that did not: the last
 * held-out accuracy matrix, and the norms of dW's agnostic and aware
 * parts (near-zero aware parts: alpha changes nothing).  Reported and
 * stored in the ARM (parm.train.heldout_accuracy, parm.train.delta_norms). */
static void record_diagnostics(parm_arm *arm, const char *const *names, const double *metric,
			       int n_metrics, long n_held)
{
	double agnostic, aware[PARM_MAX_OBJECTIVES];
	char buf[2048];
	int len = 0;
	parm_arm_delta_norms(arm, &agnostic, aware);
	len += snprintf(buf + len, sizeof buf - len, "agnostic %.6g", agnostic);
	for (int i = 0; i < arm->k && len < (int)sizeof buf - 64; i++)
		len += snprintf(buf + len, sizeof buf - len, " %s %.6g", arm->objectives[i], aware[i]);
	parm_arm_set_info(arm, "delta_norms", buf);
	parm_warn("arm: |dW| %s", buf);
	if (!metric)
		return;
	len = 0;
	for (int i = 0; i < n_metrics && len < (int)sizeof buf - 64; i++)
		len += snprintf(buf + len, sizeof buf - len, "%s%s %.4f", i ? " " : "", names[i], metric[i]);
	parm_arm_set_info(arm, "heldout_accuracy", buf);
	/* An objective ranked at chance at its own vertex is not learnt; in
	 * a PARM its gradients are then noise the other objectives share. */
	double se = 0.5 / sqrt((double)n_held);
	for (int i = 0; i < arm->k; i++) {
		double acc = metric[arm->k > 1 ? i * arm->k + i : 0];
		if (fabs(acc - 0.5) < 2 * se)
			parm_warn("arm: objective '%s' looks unlearnt: held-out accuracy %.3f at its vertex "
			     "is within 2 standard errors (%.3f) of chance over %ld pairs",
			     arm->objectives[i], acc, se, n_held);
	}
}

static int cmd_arm(int argc, char **argv)
{
	struct train_opts o;
	char *ckpt_buf = NULL;
	parse_train(argc, argv, &o, MODE_ARM);
	setup_loop(&o, &ckpt_buf);
	parm_arm *arm = new_arm(&o);
	parm_pairs p;
	load_pairs(&p, &o, arm->backbone, o.n_inputs - 1);
	long *train, *held, n_held = split(&o, p.n, &train, &held);
	long n_train = p.n - n_held;
	parm_warn("arm: %ld pairs (%ld held out), k = %d", p.n, n_held, o.objs.k);
	o.ad.k = o.objs.k;
	o.ad.seed = o.loop.seed;
	/* the trainer trains the ARM's own adapters: nothing to copy after */
	parm_trainer *t = parm_train_new_on_arm(arm, &o.ad, 2 * o.loop.batch,
						parm_pairs_max_len(&p), 1);
	if (!t)
		parm_die("%s", parm_error());
	parm_arm_task at;
	parm_task task;
	int k = o.objs.k;
	char **names = metric_names(&o.objs);
	double *metric = parm_xcalloc((size_t)k * k, sizeof *metric);
	parm_arm_task_init(&task, &at, &p, train, n_train, held, n_held, k, o.beta,
			   o.loop.batch);
	at.dist = o.dist;
	task.metric_names = (const char *const *)names;
	run_loop(t, &task, &o, task.n_metrics ? metric : NULL);
	set_provenance(arm, &o, parm_loop_total_steps(&o.loop, n_train), n_train);
	record_diagnostics(arm, (const char *const *)names, task.n_metrics ? metric : NULL,
			   task.n_metrics, n_held);
	for (int i = 0; i < k * k; i++)
		free(names[i]);
	free(names);
	free(metric);
	if (parm_arm_save(arm, o.out, o.embed) < 0)
		parm_die("%s", parm_error());
	drop_checkpoint(&o);
	parm_arm_task_free(&at);
	parm_train_free(t);
	parm_pairs_free(&p);
	parm_arm_free(arm);
	free(train);
	free(held);
	free(ckpt_buf);
	free((char *)o.loop.fingerprint);
	parm_objectives_free(&o.objs);
	return 0;
}

/* ---- accuracy ---- */

/* parm-train accuracy is parm-eval accuracy: one command, one output.  Run
 * the parm-eval beside this program (or else the one on PATH) as parm-train,
 * so that its messages name the tool the user typed. */
static int cmd_accuracy(int argc, char **argv)
{
	char self[4096], path[4096 + 16];
	char **args = parm_xcalloc((size_t)argc + 2, sizeof *args);
	args[0] = (char *)"parm-train";
	memcpy(args + 1, argv, (size_t)argc * sizeof *argv);
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = 0;
		char *slash = strrchr(self, '/');
		if (slash) {
			snprintf(path, sizeof path, "%.*s/parm-eval", (int)(slash - self), self);
			execv(path, args);
		}
	}
	execvp("parm-eval", args);
	parm_die("accuracy is parm-eval accuracy, and parm-eval is neither beside parm-train nor on PATH: %s",
	    strerror(errno));
}

/* ---- export ---- */

/* OUT.gguf -> OUT.PART.gguf: one file per adapter of the split export. */
static char *part_path(const char *out, const char *part)
{
	size_t n = strlen(out);
	if (n > 5 && !strcmp(out + n - 5, ".gguf"))
		n -= 5;
	size_t len = n + strlen(part) + 8;
	char *p = parm_xmalloc(len);
	snprintf(p, len, "%.*s.%s.gguf", (int)n, out, part);
	return p;
}

/* Objective i's part name (i < 0: the agnostic part): its own, unless a
 * file name could not hold it or it would be taken for another. */
static void part_name(char *buf, size_t size, const parm_arm *arm, int i)
{
	const char *name = i < 0 ? "agnostic" : arm->objectives[i];
	if (i >= 0 && (strchr(name, '/') || name[0] == '.' || !strcmp(name, "agnostic")))
		snprintf(buf, size, "objective%d", i + 1);
	else
		snprintf(buf, size, "%s", name);
}

/* The split export: OUT.agnostic.gguf, then one file per objective; their
 * paths on stdout in the order llama-server numbers them (--lora ids). */
static void export_split(const parm_arm *arm, const char *out)
{
	for (int i = -1; i < arm->k; i++) {
		char name[256];
		part_name(name, sizeof name, arm, i);
		char *path = part_path(out, name);
		check_output_path(path);
		if (parm_arm_export_lora(arm, i, NULL, path) < 0)
			parm_die("%s", parm_error());
		puts(path);
		free(path);
	}
	parm_warn("export: %d LoRA adapters of %s: serve with llama-server -m %s and a --lora for "
	     "each, in this order; at alpha, give id 0 scale 1 and id i scale alpha_i",
	     arm->k + 1, arm->path, arm->backbone_path);
}

static int cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", 1, 0, 'o'}, {"pref", 1, 0, 'p'}, {"peft", 0, 0, 'P'}, {"help", 0, 0, 'h'},
		{"version", 0, 0, 'V'}, {0, 0, 0, 0}};
	const char *out = NULL, *pref = NULL;
	int c, peft = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:p:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'p': pref = optarg; break;
		case 'P': peft = 1; break;
		default: common_option(c, argv);
		}
	}
	if (!out)
		parm_usage_error("export: -o is required (see parm-train --help)");
	if (optind != argc - 1)
		parm_usage_error("export: %s", optind == argc ? "no ARM given" : "one ARM at a time");
	parm_arm *arm = parm_arm_load(argv[optind]);
	if (!arm)
		parm_die("%s", parm_error());
	float alpha[PARM_MAX_OBJECTIVES];
	if (pref && parm_arm_parse_pref(arm, pref, alpha) < 0)
		parm_die("--pref: %s", parm_error());
	if (peft) {
		if ((pref ? parm_arm_export_peft_lora(arm, alpha, out) : parm_arm_export_peft(arm, out)) < 0)
			parm_die("%s", parm_error());
		puts(out);
	} else if (!pref)
		export_split(arm, out);
	else {
		check_output_path(out);
		if (parm_arm_export_lora(arm, -1, alpha, out) < 0)
			parm_die("%s", parm_error());
		puts(out);
	}
	parm_arm_free(arm);
	return fflush(stdout) != 0 || ferror(stdout);
}

/* ---- import ---- */

/* The official code's checkpoint directory as a parm ARM on BACKBONE;
 * -O names the objectives in order (and records their label fields). */
static int cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"output", 1, 0, 'o'}, {"objective", 1, 0, 'O'}, {"beta", 1, 0, 'B'},
		{"template", 1, 0, 'T'}, {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0, 0, 0, 0}};
	const char *out = NULL, *names[PARM_MAX_OBJECTIVES], *tmpl = PARM_PAIR_TEMPLATE;
	parm_objectives objs = { 0 };
	double beta = 0.01;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:O:T:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'T':
			if (parm_check_template(optarg) < 0)
				parm_usage_error("--template: %s", parm_error());
			tmpl = optarg;
			break;
		case 'O':
			if (parm_objectives_add(&objs, optarg) < 0)
				parm_usage_error("--objective: %s", parm_error());
			break;
		case 'B': beta = parm_opt_float("--beta", optarg, 1e-9, 1e9); break;
		default: common_option(c, argv);
		}
	}
	if (!out)
		parm_usage_error("import: -o is required (see parm-train --help)");
	if (optind != argc - 2)
		parm_usage_error("import: give the backbone and the checkpoint directory");
	check_output_path(out);
	for (int i = 0; i < objs.k; i++)
		names[i] = objs.obj[i].name;
	parm_arm *arm = parm_arm_import_peft(argv[optind + 1], argv[optind],
					     objs.k ? names : NULL, (float)beta);
	if (!arm)
		parm_die("%s", parm_error());
	if (objs.k && objs.k != arm->k)
		parm_die("import: %d --objective for a checkpoint of %d objectives", objs.k, arm->k);
	if (objs.k)
		parm_arm_record_labels(arm, &objs);
	parm_arm_set_info(arm, "template", tmpl);       /* the layout it learnt from */
	if (parm_arm_save(arm, out, 0) < 0)
		parm_die("%s", parm_error());
	parm_arm_free(arm);
	parm_objectives_free(&objs);
	return 0;
}

int main(int argc, char **argv)
{
	parm_setprog(argv[0]);
	if (argc < 2)
		parm_usage_error("no mode given");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage_text, stdout);
		return fflush(stdout) || ferror(stdout);
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
		puts("parm-train " PARM_VERSION);
		return fflush(stdout) || ferror(stdout);
	}
	if (!strcmp(argv[1], "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(argv[1], "lm"))
		return cmd_lm(argc - 1, argv + 1);
	if (!strcmp(argv[1], "arm"))
		return cmd_arm(argc - 1, argv + 1);
	if (!strcmp(argv[1], "accuracy"))
		return cmd_accuracy(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vocab"))
		return cmd_vocab(argc - 1, argv + 1);
	if (!strcmp(argv[1], "export"))
		return cmd_export(argc - 1, argv + 1);
	if (!strcmp(argv[1], "import"))
		return cmd_import(argc - 1, argv + 1);
	parm_usage_error("unknown mode '%s' (init, lm, arm, accuracy, vocab, export or import)", argv[1]);
}
