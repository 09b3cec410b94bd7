/* test_peft - the official code's checkpoint format against PyTorch: an ARM
 * exported as its peft directory and imported back gives, here, the logits
 * tests/peft-ref.py computes with the official PBLoRA formula on a Hugging
 * Face-layout llama (q and k rows un-permuted) in PyTorch. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <parm/arm.h>
#include <parm/peft.h>
#include <parm/rng.h>
#include "tap.h"
#include <parm/util.h>

#define N_SEQ 16

static char tmpdir[] = "/tmp/parm-peft-XXXXXX";

static int make_model(const char *out)
{
	char vocab[4096];
	snprintf(vocab, sizeof vocab, "%s/ggml-vocab-llama-spm.gguf", fixtures_dir());
	parm_gguf *v = parm_gguf_open(vocab);
	parm_tokenizer *tok = v ? parm_tokenizer_load(v) : NULL;
	parm_config c = { .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ff = 96,
			  .n_ctx = 64, .rms_eps = 1e-5f, .rope_theta = 10000.0f };
	int rc = -1;
	if (tok) {
		c.n_vocab = parm_tok_n_vocab(tok);
		rc = parm_model_init(out, v, &c, PARM_GGML_F32, 11);
		parm_tokenizer_free(tok);
	}
	parm_gguf_close(v);
	return rc;
}

/* k = 2, every target, every weight drawn (B too: the adapters must move
 * the logits). */
static parm_arm *random_arm(const char *backbone, const char *out)
{
	static const char *names[] = { "helpful", "harmless" };
	parm_arm_options o;
	parm_arm_default_options(&o);
	o.k = 2, o.r1 = 2, o.r2 = 3, o.objectives = names;
	parm_parse_targets("all", &o.targets);
	parm_arm *a = parm_arm_new(backbone, &o);
	uint64_t s = 7;
	for (size_t i = 0; a && i < a->n_params; i++)
		a->params[i] = 0.3f * (float)(parm_splitmix_uniform(&s) - 0.5);
	if (a && parm_arm_save(a, out, 0) < 0) {
		parm_arm_free(a);
		return NULL;
	}
	return a;
}

static float *our_logits(const parm_arm *a, const float *alpha, const int *ids)
{
	int V = a->backbone->cfg.n_vocab, slot[N_SEQ] = { 0 };
	uint8_t want[N_SEQ];
	float *M, *out = parm_xmalloc((size_t)N_SEQ * V * sizeof *out);
	parm_adapter *ad = alpha ? parm_arm_adapters(a, alpha, &M) : NULL;
	parm_kv *kv = parm_kv_new(a->backbone, 1, 64);
	memset(want, 1, sizeof want);
	if (parm_forward_adapted(a->backbone, ad, kv, N_SEQ, ids, slot, want, out) != N_SEQ) {
		free(out);
		out = NULL;
	}
	parm_kv_free(kv);
	if (ad)
		free(ad), free(M);
	return out;
}

static float *ref_logits(const char *model, const char *ckpt, const float *alpha,
			 const int *ids, int V)
{
	char cmd[8192], *p = cmd;
	const char *home = getenv("HOME");
	size_t want = (size_t)N_SEQ * V;
	float *out = parm_xmalloc(want * sizeof *out);
	p += snprintf(p, sizeof cmd, "/usr/bin/python3 tests/peft-ref.py '%s/.cache/parm/llama.cpp/src/"
		      "gguf-py' '%s' '%s' %.9g,%.9g", home ? home : "", model, ckpt, alpha[0], alpha[1]);
	for (int i = 0; i < N_SEQ; i++)
		p += sprintf(p, " %d", ids[i]);
	FILE *f = popen(cmd, "r");
	size_t got = f ? fread(out, sizeof *out, want, f) : 0;
	if ((f && pclose(f) != 0) || got != want) {
		free(out);
		return NULL;
	}
	return out;
}

static double max_diff(const float *a, const float *b, size_t n, double *rms)
{
	double m = 0, sq = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]);
		m = e > m || isnan(e) ? (isnan(e) ? INFINITY : e) : m;
		sq += (double)b[i] * b[i];
	}
	*rms = sqrt(sq / n);
	return m;
}

static void check(const parm_arm *imported, const char *model, const char *ckpt, const float *alpha,
		  const char *what)
{
	int ids[N_SEQ], V = imported->backbone->cfg.n_vocab;
	for (int i = 0; i < N_SEQ; i++)
		ids[i] = (int)((i * 7919L + 101) % V);
	float *ours = our_logits(imported, alpha, ids), *plain = our_logits(imported, NULL, ids);
	float *ref = ref_logits(model, ckpt, alpha, ids, V);
	double rms, moved_rms;
	if (!ours || !plain || !ref) {
		ok(0, "alpha (%g, %g): %s", alpha[0], alpha[1],
		   !ref ? "tests/peft-ref.py failed" : parm_error());
	} else {
		double d = max_diff(ours, ref, (size_t)N_SEQ * V, &rms);
		double moved = max_diff(ours, plain, (size_t)N_SEQ * V, &moved_rms);
		ok(d <= 1e-4 * rms && moved >= 100 * 1e-4 * rms,
		   "%s at (%g, %g) against PyTorch on the Hugging Face layout: max |diff| %.3g = "
		   "%.3g x rms %.3g (limit 1e-4 x rms; the adapters move the logits by %.3g)",
		   what, alpha[0], alpha[1], d, d / rms, rms, moved);
	}
	free(ours), free(plain), free(ref);
}

int main(void)
{
	char model[256], armf[256], ckpt[256], cmd[300];
	static const float alphas[][2] = { { 1, 0 }, { 0.3f, 0.7f } };
	if (!fixtures_dir()) {
		skip("tokenizer fixtures not found (make test-fixtures)", "peft checkpoints against PyTorch");
		return tap_done();
	}
	if (system("/usr/bin/python3 -c 'import torch, numpy' 2>/dev/null") != 0) {
		skip("/usr/bin/python3 has no torch (make check installs python3-torch)",
		     "peft checkpoints against PyTorch");
		return tap_done();
	}
	if (!mkdtemp(tmpdir))
		return perror("mkdtemp"), 1;
	snprintf(model, sizeof model, "%s/m.gguf", tmpdir);
	snprintf(armf, sizeof armf, "%s/arm.gguf", tmpdir);
	snprintf(ckpt, sizeof ckpt, "%s/ckpt", tmpdir);
	parm_arm *a = NULL, *b = NULL;
	if (make_model(model) < 0 || !(a = random_arm(model, armf)) ||
	    parm_arm_export_peft(a, ckpt) < 0 || !(b = parm_arm_import_peft(ckpt, model, NULL, 0.01f)))
		ok(0, "an ARM exported as a peft checkpoint and imported: %s", parm_error());
	else
		for (size_t i = 0; i < sizeof alphas / sizeof *alphas; i++)
			check(b, model, ckpt, alphas[i], "imported ARM");
	snprintf(ckpt, sizeof ckpt, "%s/merged", tmpdir);
	if (a && parm_arm_export_peft_lora(a, alphas[1], ckpt) < 0)
		ok(0, "the ARM merged at (0.3, 0.7) as one ordinary peft LoRA: %s", parm_error());
	else if (a)
		check(a, model, ckpt, alphas[1], "ARM merged into one ordinary peft LoRA");
	parm_arm_free(a);
	parm_arm_free(b);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", tmpdir);
	return tap_done();
}
