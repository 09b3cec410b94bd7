/* test_train.c - whole-model gradient checks on a tiny llama (full and
 * PBLoRA-only training, the ARM pair loss), agreement with the inference
 * forward, a few SGD steps, and writing the trained model; adapters on
 * tiny qwen2, qwen3 and phi3 models. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include <parm/model.h>
#include "tap.h"
#include <parm/train.h>
#include <parm/util.h>

enum { B = 4, T = 8, P = 2, K = 2 };
static const int lengths[B] = { 8, 6, 7, 5 }, prompt_len[B] = { 3, 3, 2, 2 };
static const int8_t labels[P * K] = { 0, 1, 1, -1 };
static const float alpha[K] = { 0.3f, 0.7f };
static int tokens[B * T];
static uint64_t rng = 4242;

static float frand(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((rng >> 40) * 0x1.0p-24 * 2 - 1);
}

static int irand(int n)
{
	return (int)((frand() + 1) / 2 * n) % n;
}

/* The ARM loss of the batch; with grads, its gradient accumulated. */
static double arm_loss(parm_trainer *t, int grads)
{
	float logp[B * (T - 1)], dlogp[B * (T - 1)] = { 0 };
	uint8_t want[B * (T - 1)];
	parm_response_mask(want, prompt_len, lengths, B, T);
	if (parm_train_forward(t, tokens, lengths, B, T, want, logp) < 0)
		parm_die("%s", parm_error());
	double loss = parm_arm_loss(dlogp, logp, prompt_len, lengths, P, T, labels, K, alpha,
				    0.5, NULL, NULL, NULL);
	if (grads)
		parm_train_backward(t, dlogp);
	return loss;
}

/* Central differences (step h) on sampled coordinates of every tensor: a
 * few at random and the largest gradients (an embedding's used rows). */
static double grad_check(parm_trainer *t, const char *what, int per_tensor, double h)
{
	parm_train_zero_grad(t);
	arm_loss(t, 1);
	double max_diff = 0, max_g = 1e-9;
	int checked = 0;
	for (int ti = 0; ti < parm_train_n_tensors(t); ti++) {
		const parm_train_tensor *p = parm_train_tensor_at(t, ti);
		size_t pick[16];
		for (int j = 0; j < per_tensor / 2; j++)
			pick[j] = (size_t)irand((int)p->count);
		for (int j = per_tensor / 2; j < per_tensor; j++) {         /* large gradients */
			size_t best = pick[0];
			for (int tries = 0; tries < 2000; tries++) {
				size_t c = (size_t)irand((int)p->count);
				if (fabsf(p->grad[c]) > fabsf(p->grad[best]))
					best = c;
			}
			pick[j] = best;
		}
		for (int j = 0; j < per_tensor; j++) {
			float *v = &p->data[pick[j]], keep = *v;
			*v = keep + (float)h;
			double up = arm_loss(t, 0);
			*v = keep - (float)h;
			double down = arm_loss(t, 0);
			*v = keep;
			double num = (up - down) / (2 * h);
			max_diff = fmax(max_diff, fabs(num - p->grad[pick[j]]));
			max_g = fmax(max_g, fabs(num));
			checked++;
		}
	}
	printf("# %s: %d coordinates in %d tensors, max |grad - fd| / max |fd| = %.2e (max |fd| %.2e)\n",
	       what, checked, parm_train_n_tensors(t), max_diff / max_g, max_g);
	return max_diff / max_g;
}

/* The trainer's log-probs equal log-softmax of the inference logits. */
static void check_against_inference(const parm_model *m, parm_trainer *t)
{
	int V = m->cfg.n_vocab, n = lengths[1];
	float logp[B * (T - 1)], *logits = parm_xmalloc((size_t)n * V * sizeof *logits);
	int slot[T] = { 0 };
	uint8_t want[T];
	memset(want, 1, sizeof want);
	parm_kv *kv = parm_kv_new(m, 1, 16);
	parm_train_forward(t, tokens, lengths, B, T, NULL, logp);
	parm_forward(m, kv, n, tokens + T, slot, want, logits);
	double err = 0;
	for (int i = 0; i + 1 < n; i++) {
		float lp;
		parm_logprob_forward(&lp, logits + (size_t)i * V, &tokens[T + i + 1], 1, V);
		err = fmax(err, fabs(lp - logp[(T - 1) + i]));
	}
	ok(err < 1e-4, "training forward equals the inference forward (max |dlogp| %.1e)", err);
	parm_kv_free(kv);
	free(logits);
}

/* Plain SGD on the ARM loss: the loss falls. */
static void sgd_steps(parm_trainer *t, const char *what, float lr)
{
	float *w = parm_train_params(t), *g = parm_train_grads(t);
	double first = 0, last = 0;
	for (int step = 0; step < 8; step++) {
		parm_train_zero_grad(t);
		last = arm_loss(t, 1);
		if (!step)
			first = last;
		for (size_t i = 0; i < parm_train_n_params(t); i++)
			w[i] -= lr * g[i];
	}
	ok(last < first - 1e-3, "%s: 8 SGD steps lower the ARM loss (%.4f -> %.4f)", what, first, last);
}

static parm_model *tiny_arch_model(char *path, int arch, int head_dim);
static parm_model *tiny_model(char *path)
{
	return tiny_arch_model(path, PARM_ARCH_LLAMA, 0);
}

static parm_model *tiny_arch_model(char *path, int arch, int head_dim)
{
	char vocab_path[4096];
	snprintf(vocab_path, sizeof vocab_path, "%s/ggml-vocab-llama-spm.gguf", fixtures_dir());
	parm_gguf *vocab = parm_gguf_open(vocab_path);
	if (!vocab)
		return NULL;
	parm_config cfg = { .dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .ff = 64,
			    .n_ctx = 64, .rms_eps = 1e-5f, .rope_theta = 10000, .arch = arch,
			    .head_dim = head_dim };
	int rc = parm_model_init(path, vocab, &cfg, PARM_GGML_F32, 7);
	parm_gguf_close(vocab);
	return rc < 0 ? NULL : parm_model_load(path);
}

static void test_full(parm_model *m, const char *dir)
{
	parm_trainer *t = parm_train_new_full(m, B, T);
	check_against_inference(m, t);
	/* random weights of std 0.02 give near-uniform outputs: scale the
	 * matrices up so the check sees real curvature */
	for (int i = 0; i < parm_train_n_tensors(t); i++) {
		const parm_train_tensor *p = parm_train_tensor_at(t, i);
		for (size_t j = 0; j < p->count; j++)
			p->data[j] *= p->n_dims == 2 ? 10 : 1 + 0.2f * frand();
	}
	double err = grad_check(t, "full", 8, 1e-2);
	ok(err < 2e-2, "full training: whole-model gradient matches finite differences (%.1e)", err);
	sgd_steps(t, "full", 0.5f);
	char path[4200];
	snprintf(path, sizeof path, "%s/trained.gguf", dir);
	ok(parm_train_save_model(t, path, PARM_GGML_F32) == 0, "trained model written");
	parm_model *m2 = parm_model_load(path);
	ok(m2 != NULL, "trained model loads back%s%s", m2 ? "" : ": ", m2 ? "" : parm_error());
	if (m2) {
		parm_trainer *t2 = parm_train_new_full(m2, B, T);
		float a[B * (T - 1)], b[B * (T - 1)];
		parm_train_forward(t, tokens, lengths, B, T, NULL, a);
		parm_train_forward(t2, tokens, lengths, B, T, NULL, b);
		ok(!memcmp(a, b, sizeof a), "the written model computes the trained log-probs");
		parm_train_free(t2);
		parm_model_free(m2);
	}
	unlink(path);
	parm_train_free(t);
}

/* A frozen output's backward from the rows kept by a training forward
 * equals the one that recomputes the logits (training off). */
static void check_output_paths(parm_trainer *t)
{
	size_t n = parm_train_n_params(t);
	float *kept = parm_xmalloc(n * sizeof *kept), *g = parm_train_grads(t);
	parm_train_zero_grad(t);
	arm_loss(t, 1);
	memcpy(kept, g, n * sizeof *kept);
	parm_train_set_training(t, 0);
	parm_train_zero_grad(t);
	arm_loss(t, 1);
	parm_train_set_training(t, 1);
	double d = 0, big = 1e-12;
	for (size_t i = 0; i < n; i++)
		d = fmax(d, fabs(kept[i] - g[i])), big = fmax(big, fabs(g[i]));
	ok(d / big < 1e-4, "frozen output: kept expected rows give the recomputed gradient (%.1e)",
	   d / big);
	free(kept);
}

/* Adapters on every target, no dropout, at the test's alpha. */
static parm_trainer *every_target_trainer(const parm_model *m)
{
	parm_adapter_opts o;
	parm_adapter_opts_default(&o, K);
	o.targets = (1u << PARM_T_COUNT) - 1;
	o.dropout = 0;
	parm_trainer *t = parm_train_new_adapters(m, &o, B, T);
	parm_train_set_pref(t, alpha);
	return t;
}

static void test_adapters(parm_model *m)
{
	parm_trainer *t = every_target_trainer(m);
	float logp0[B * (T - 1)], logp1[B * (T - 1)];
	parm_trainer *full = parm_train_new_full(m, B, T);
	parm_train_forward(t, tokens, lengths, B, T, NULL, logp0);
	parm_train_forward(full, tokens, lengths, B, T, NULL, logp1);
	ok(!memcmp(logp0, logp1, sizeof logp0), "fresh adapters (B = 0) leave the model unchanged");
	parm_train_free(full);
	for (int i = 0; i < parm_train_n_tensors(t); i++) {
		const parm_train_tensor *p = parm_train_tensor_at(t, i);
		for (size_t j = 0; j < p->count && strstr(p->name, "pblora_B"); j++)
			p->data[j] = 0.3f * frand();
	}
	double err = grad_check(t, "adapters", 3, 1e-2);
	ok(err < 2e-2, "PBLoRA training: adapter gradients match finite differences (%.1e)", err);
	check_output_paths(t);
	ok(parm_train_adapter(t, 1, PARM_T_DOWN) != NULL && parm_train_adapter(t, 5, 0) == NULL,
	   "adapters are found by layer and target");
	sgd_steps(t, "adapters", 2.0f);
	parm_train_free(t);
}

/* Adapters on every target of a qwen2 (biases, NEOX rope), qwen3 (q/k
 * norms, head dim 12 against dim / heads 8) and phi3 (fused attn_qkv and
 * gate||up, whose q, k, v, gate and up adapters sit on their row ranges)
 * model: the training forward equals inference, the gradients finite
 * differences; training every weight is refused by name. */
static void test_architectures(const char *dir)
{
	static const struct { int arch, hd; const char *needle; } archs[] = {
		{ PARM_ARCH_QWEN2, 0, "(it has biases)" },
		{ PARM_ARCH_QWEN3, 12, "(it has attn_q_norm and attn_k_norm)" },
		{ PARM_ARCH_PHI3, 0, "(it has fused projections)" },
	};
	char path[4200];
	for (size_t i = 0; i < sizeof archs / sizeof *archs; i++) {
		const char *name = parm_arch_at(archs[i].arch)->name;
		snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
		parm_model *m = tiny_arch_model(path, archs[i].arch, archs[i].hd);
		if (!ok(m != NULL, "%s: tiny model made%s%s", name, m ? "" : ": ", m ? "" : parm_error()))
			continue;
		parm_trainer *full = parm_train_new_full(m, B, T);
		ok(!full && strstr(parm_error(), archs[i].needle), "%s: training every weight is refused: %s",
		   name, full ? "(made)" : parm_error());
		parm_train_free(full);
		parm_trainer *t = every_target_trainer(m);
		printf("# %s\n", name);
		check_against_inference(m, t);
		for (int k = 0; k < parm_train_n_tensors(t); k++) {
			const parm_train_tensor *p = parm_train_tensor_at(t, k);
			for (size_t j = 0; j < p->count && strstr(p->name, "pblora_B"); j++)
				p->data[j] = 0.3f * frand();
		}
		/* qwen3's q/k norms curve more: h = 1e-2 leaves 1.3e-2 of
		 * truncation error there, 3e-3 under 2e-3 on all three */
		double err = grad_check(t, name, 3, 3e-3);
		ok(err < 2e-2, "%s: adapter gradients match finite differences (%.1e)", name, err);
		parm_train_free(t);
		parm_model_free(m);
		unlink(path);
	}
}

int main(void)
{
	char dir[] = "/tmp/parm-train-XXXXXX", path[4200];
	if (!fixtures_dir() || !mkdtemp(dir)) {
		ok(0, "no vocab fixtures or no temp dir");
		return tap_done();
	}
	snprintf(path, sizeof path, "%s/tiny.gguf", dir);
	parm_model *m = tiny_model(path);
	if (!ok(m != NULL, "tiny model made%s%s", m ? "" : ": ", m ? "" : parm_error()))
		return tap_done();
	for (int i = 0; i < B * T; i++)
		tokens[i] = 3 + irand(m->cfg.n_vocab - 3);
	parm_set_threads(1);
	test_full(m, dir);
	test_adapters(m);
	test_architectures(dir);
	parm_model_free(m);
	unlink(path);
	rmdir(dir);
	return tap_done();
}
