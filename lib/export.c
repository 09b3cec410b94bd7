/* export.c - an ARM as llama.cpp LoRA adapters (export.h).
 *
 * PBLoRA is affine in alpha: s B M(alpha) A with M(alpha) =
 * blockdiag(W1, sum_i alpha_i W2[i]) splits into s B[:, :r1] W1 A[:r1]
 * plus alpha_i s B[:, r1:] W2[i] A[r1:] for each i.  Each part is an
 * ordinary LoRA, delta = B' A' with A' rows of A and B' = s B[:, block]
 * Mblock, which a llama.cpp server applies at a scale per request.
 */
#include <parm/export.h>
#include <parm/util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bp[out][n] = s B[:, c0 : c0 + n] Mb, Mb[n][n] row-major with row
 * stride ld (W1, W2[i] or the whole M). */
static void part_b(float *Bp, const parm_pblora *p, int c0, int n, const float *Mb, int ld)
{
	int r = p->r1 + p->r2;
	for (int o = 0; o < p->out; o++) {
		const float *b = p->B + (size_t)o * r + c0;
		for (int j = 0; j < n; j++) {
			double acc = 0;
			for (int m = 0; m < n; m++)
				acc += (double)b[m] * Mb[(size_t)m * ld + j];
			Bp[(size_t)o * n + j] = (float)(p->scale * acc);
		}
	}
}

int parm_lora_part(const parm_pblora *p, int which, const float *M, float *Bp, int *c0)
{
	int r = p->r1 + p->r2;
	if (M) {
		part_b(Bp, p, 0, r, M, r);
		*c0 = 0;
		return r;
	}
	if (which < 0) {
		part_b(Bp, p, 0, p->r1, p->W1, p->r1);
		*c0 = 0;
		return p->r1;
	}
	part_b(Bp, p, p->r1, p->r2, p->W2 + (size_t)which * p->r2 * p->r2, p->r2);
	*c0 = p->r1;
	return p->r2;
}

/* Where a target's rows sit in the backbone file: its own tensor, or a
 * row range of a fused one (attn_qkv holds q, k, v; phi3's ffn_up holds
 * gate then up), as model.c reads them. */
struct place {
	char name[96];
	int64_t row0, rows;     /* the target's first row, the tensor's rows */
};

static int target_place(struct place *pl, const parm_arm *arm, int l, enum parm_target t)
{
	const parm_model *m = arm->backbone;
	const parm_config *c = &m->cfg;
	int64_t Dq = parm_cfg_qdim(c), kvd = parm_cfg_kvdim(c), F = c->ff;
	int qkv = t == PARM_T_ATTN_Q || t == PARM_T_ATTN_K || t == PARM_T_ATTN_V;
	int gate_up = t == PARM_T_FFN_GATE || t == PARM_T_FFN_UP;
	snprintf(pl->name, sizeof pl->name, "blk.%d.attn_qkv.weight", l);
	if (qkv && parm_gguf_find_tensor(m->file, pl->name)) {
		pl->row0 = t == PARM_T_ATTN_Q ? 0 : t == PARM_T_ATTN_K ? Dq : Dq + kvd;
		pl->rows = Dq + 2 * kvd;
		return 0;
	}
	snprintf(pl->name, sizeof pl->name, "blk.%d.ffn_gate.weight", l);
	if (gate_up && (m->arch->need & PARM_PART_FUSED_UP) && !parm_gguf_find_tensor(m->file, pl->name)) {
		snprintf(pl->name, sizeof pl->name, "blk.%d.ffn_up.weight", l);
		pl->row0 = t == PARM_T_FFN_GATE ? 0 : F;
		pl->rows = 2 * F;
		return 0;
	}
	snprintf(pl->name, sizeof pl->name, "blk.%d.%s.weight", l, parm_target_name(t));
	if (!parm_gguf_find_tensor(m->file, pl->name))
		return parm_fail("%s: no tensor %s in %s", arm->path ? arm->path : "ARM", pl->name,
				 parm_gguf_path(m->file));
	pl->row0 = 0;
	pl->rows = parm_target_weight(m, l, t)->rows;
	return 0;
}

static void set_keys(parm_gguf_writer *w, const parm_arm *arm, int which, const float *alpha)
{
	char buf[1024];
	parm_gguf_w_set_str(w, "general.type", "adapter");
	parm_gguf_w_set_str(w, "general.architecture", arm->backbone->arch->name);
	parm_gguf_w_set_str(w, "adapter.type", "lora");
	if (alpha) {
		size_t used = 0;
		for (int i = 0; i < arm->k && used < sizeof buf; i++)
			used += snprintf(buf + used, sizeof buf - used, "%s%.9g", i ? "," : "", alpha[i]);
		parm_gguf_w_set_str(w, "parm.export.pref", buf);
	}
	parm_gguf_w_set_str(w, "parm.export.part", alpha ? "merged" : which < 0 ? "agnostic" :
		       arm->objectives[which]);
	if (arm->path)
		parm_gguf_w_set_str(w, "parm.export.arm", arm->path);
}

/* One LoRA pair for the tensor of place pl, from the adapters of layer l
 * that sit in it: A rows stacked, each B' in its rows and its rank's
 * columns (zero elsewhere).  Returns the rank; the arrays go to *a, *b. */
static int tensor_lora(const parm_arm *arm, int l, const struct place *pl, int which,
		       const float *alpha, float **a, float **b)
{
	int r = arm->r1 + arm->r2, rank = 0, in = 0;
	float *M = alpha ? parm_xmalloc((size_t)r * r * sizeof *M) : NULL;
	*a = *b = NULL;
	for (int i = 0; i < arm->n_targets; i++) {
		const parm_pblora *p = &arm->adapters[l * arm->n_targets + i];
		struct place here;
		if (target_place(&here, arm, l, arm->targets[i]) < 0 || strcmp(here.name, pl->name))
			continue;
		float *Bp = parm_xmalloc((size_t)p->out * r * sizeof *Bp);
		int c0, n;
		if (M)
			parm_pblora_mix(M, p, alpha);
		n = parm_lora_part(p, which, M, Bp, &c0);
		in = p->in;
		*a = parm_xrealloc(*a, (size_t)(rank + n) * in * sizeof **a);
		memcpy(*a + (size_t)rank * in, p->A + (size_t)c0 * in, (size_t)n * in * sizeof **a);
		/* widen B to rank + n columns, then place this B' */
		float *wide = parm_xcalloc((size_t)pl->rows * (rank + n), sizeof *wide);
		for (int64_t o = 0; *b && o < pl->rows; o++)
			memcpy(wide + o * (rank + n), *b + o * rank, (size_t)rank * sizeof *wide);
		for (int o = 0; o < p->out; o++)
			memcpy(wide + (here.row0 + o) * (rank + n) + rank, Bp + (size_t)o * n,
			       (size_t)n * sizeof *wide);
		free(*b);
		*b = wide;
		rank += n;
		free(Bp);
	}
	free(M);
	return rank;
}

int parm_arm_export_lora(const parm_arm *arm, int which, const float *alpha, const char *path)
{
	parm_gguf_writer *w = parm_gguf_w_new();
	int L = arm->backbone->cfg.n_layers, rc = 0, n_owned = 0, alpha_rank = 0;
	float **owned = parm_xcalloc((size_t)2 * L * arm->n_targets, sizeof *owned);
	char tname[128];
	for (int l = 0; l < L && rc == 0; l++)
		for (int i = 0; i < arm->n_targets && rc == 0; i++) {
			struct place pl, first;
			if ((rc = target_place(&pl, arm, l, arm->targets[i])) < 0)
				break;
			int seen = 0;   /* a fused tensor is written with its first target */
			for (int j = 0; j < i && !seen; j++)
				seen = target_place(&first, arm, l, arm->targets[j]) == 0 &&
				       !strcmp(first.name, pl.name);
			if (seen)
				continue;
			float *a, *b;
			int rank = tensor_lora(arm, l, &pl, which, alpha, &a, &b);
			int64_t in = arm->adapters[l * arm->n_targets + i].in;
			int64_t ne_a[2] = { in, rank }, ne_b[2] = { rank, pl.rows };
			owned[n_owned++] = a, owned[n_owned++] = b;
			/* llama.cpp scales a pair by the file's one adapter.lora.alpha
			 * over the pair's rank: alpha is the first pair's rank (so 1
			 * exactly), and a fused tensor's wider pair carries rank /
			 * alpha in its B */
			if (!alpha_rank)
				alpha_rank = rank;
			for (int64_t e = 0; rank != alpha_rank && e < pl.rows * rank; e++)
				b[e] *= (float)rank / (float)alpha_rank;
			snprintf(tname, sizeof tname, "%s.lora_a", pl.name);
			parm_gguf_w_tensor_ref(w, tname, PARM_GGML_F32, 2, ne_a, a);
			snprintf(tname, sizeof tname, "%s.lora_b", pl.name);
			parm_gguf_w_tensor_ref(w, tname, PARM_GGML_F32, 2, ne_b, b);
		}
	if (rc == 0) {
		parm_gguf_w_set_f32(w, "adapter.lora.alpha", (float)alpha_rank);
		set_keys(w, arm, which, alpha);
		rc = parm_gguf_w_save(w, path);
	}
	parm_gguf_w_free(w);
	for (int i = 0; i < n_owned; i++)
		free(owned[i]);
	free(owned);
	return rc;
}
