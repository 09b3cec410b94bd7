/* export.c - an ARM as llama.cpp LoRA adapters (export.h).
 *
 * PBLoRA is affine in alpha: s B M(alpha) A with M(alpha) =
 * blockdiag(W1, sum_i alpha_i W2[i]) splits into s B[:, :r1] W1 A[:r1]
 * plus alpha_i s B[:, r1:] W2[i] A[r1:] for each i.  Each part is an
 * ordinary LoRA, delta = B' A' with A' rows of A and B' = s B[:, block]
 * Mblock, which a llama.cpp server applies at a scale per request.
 */
#include "export.h"
#include "util.h"

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

/* Rows [c0, c0 + n) of A, and B' for the part: which < 0 the agnostic
 * part, else objective which's aware part, or with M the whole adapter. */
static int part_of(const parm_pblora *p, int which, const float *M, float *Bp, int *c0)
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

/* The backbone tensor an adapter sits on, by its GGUF name; a projection
 * read from a fused tensor (attn_qkv, gate||up) has none of its own. */
static int weight_name(char *buf, size_t size, const parm_arm *arm, int l, enum parm_target t)
{
	snprintf(buf, size, "blk.%d.%s.weight", l, parm_target_name(t));
	if (!gguf_find_tensor(arm->backbone->file, buf))
		return parm_fail("%s: %s is read from a fused tensor of %s; LoRA export of fused "
				 "projections is not implemented", arm->path ? arm->path : "ARM", buf,
				 gguf_path(arm->backbone->file));
	return 0;
}

static void set_keys(gguf_writer *w, const parm_arm *arm, int which, const float *alpha, int rank)
{
	char buf[1024];
	gguf_w_set_str(w, "general.type", "adapter");
	gguf_w_set_str(w, "general.architecture", arm->backbone->arch->name);
	gguf_w_set_str(w, "adapter.type", "lora");
	/* llama.cpp scales by alpha / rank: rank / rank is exactly 1, so the
	 * scale of a request is the factor applied, as alpha_i must be */
	gguf_w_set_f32(w, "adapter.lora.alpha", (float)rank);
	if (alpha) {
		size_t used = 0;
		for (int i = 0; i < arm->k && used < sizeof buf; i++)
			used += snprintf(buf + used, sizeof buf - used, "%s%.9g", i ? "," : "", alpha[i]);
		gguf_w_set_str(w, "parm.export.pref", buf);
	}
	gguf_w_set_str(w, "parm.export.part", alpha ? "merged" : which < 0 ? "agnostic" :
		       arm->objectives[which]);
	if (arm->path)
		gguf_w_set_str(w, "parm.export.arm", arm->path);
}

int parm_arm_export_lora(const parm_arm *arm, int which, const float *alpha, const char *path)
{
	gguf_writer *w = gguf_w_new();
	int L = arm->backbone->cfg.n_layers, r = arm->r1 + arm->r2, rc = 0, rank = 0;
	float *M = alpha ? xmalloc((size_t)r * r * sizeof *M) : NULL;
	float **owned = xcalloc((size_t)L * arm->n_targets, sizeof *owned);
	char name[128], tname[160];
	for (int l = 0; l < L && rc == 0; l++)
		for (int i = 0; i < arm->n_targets && rc == 0; i++) {
			const parm_pblora *p = &arm->adapters[l * arm->n_targets + i];
			float *Bp = owned[l * arm->n_targets + i] = xmalloc((size_t)p->out * r * sizeof *Bp);
			int c0;
			if ((rc = weight_name(name, sizeof name, arm, l, arm->targets[i])) < 0)
				break;
			if (M)
				pblora_mix(M, p, alpha);
			rank = part_of(p, which, M, Bp, &c0);
			int64_t ne_a[2] = { p->in, rank }, ne_b[2] = { rank, p->out };
			snprintf(tname, sizeof tname, "%s.lora_a", name);
			gguf_w_tensor_ref(w, tname, GGML_F32, 2, ne_a, p->A + (size_t)c0 * p->in);
			snprintf(tname, sizeof tname, "%s.lora_b", name);
			gguf_w_tensor_ref(w, tname, GGML_F32, 2, ne_b, Bp);
		}
	if (rc == 0) {
		set_keys(w, arm, which, alpha, rank);
		rc = gguf_w_save(w, path);
	}
	gguf_w_free(w);
	for (int i = 0; i < L * arm->n_targets; i++)
		free(owned[i]);
	free(owned);
	free(M);
	return rc;
}
