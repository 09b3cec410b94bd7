/* peft.c - an ARM in the official code's peft format (peft.h). */
#include <parm/peft.h>
#include <parm/export.h>
#include <parm/safetensors.h>
#include <parm/util.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Hugging Face's module of each target (arm.h's enum order). */
static const char *const hf_section[PARM_N_TARGETS] = {
	"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp" };
static const char *const hf_module[PARM_N_TARGETS] = {
	"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" };

static void key(char *buf, size_t size, int l, int t, const char *part)
{
	snprintf(buf, size, "base_model.model.model.layers.%d.%s.%s.pblora_%s", l, hf_section[t],
		 hf_module[t], part);
}

/* The Hugging Face row of GGUF row g of q or k: llama.cpp's converter
 * interleaves each head's two rotate-half halves (row h hd + 2j + s comes
 * from h hd + s hd/2 + j). */
static int64_t hf_row(int64_t g, int hd)
{
	int64_t h = g / hd, w = g % hd;
	return h * hd + (w % 2) * (hd / 2) + w / 2;
}

/* Whether target t's output rows are permuted between the two layouts. */
static int permuted(const parm_arm *arm, int t)
{
	return !arm->backbone->arch->rope_neox && (t == PARM_T_ATTN_Q || t == PARM_T_ATTN_K);
}

/* The fused layouts (phi3's qkv_proj, gate_up_proj) have no counterpart. */
static int check_unfused(const parm_arm *arm)
{
	char name[64];
	snprintf(name, sizeof name, "blk.0.attn_qkv.weight");
	if (parm_gguf_find_tensor(arm->backbone->file, name) ||
	    (arm->backbone->arch->need & PARM_PART_FUSED_UP))
		return parm_fail("%s: a backbone with fused projections (%s's qkv_proj, gate_up_proj) "
				 "has no peft layout parm writes or reads", parm_gguf_path(arm->backbone->file),
				 arm->backbone->arch->name);
	return 0;
}

/* ---- export ---- */

static int write_json(FILE *f, void *ctx)
{
	return json_dumpf(ctx, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 ? -1 : 0;
}

/* The adapted modules by their Hugging Face names. */
static json_t *target_modules(const parm_arm *arm)
{
	json_t *mods = json_array();
	for (int i = 0; i < arm->n_targets; i++)
		json_array_append_new(mods, json_string(hf_module[arm->targets[i]]));
	return mods;
}

/* adapter_config.json: c (stolen), then what both kinds share. */
static int save_config(json_t *c, const parm_arm *arm, const char *path)
{
	json_object_set_new(c, "target_modules", target_modules(arm));
	json_object_set_new(c, "bias", json_string("none"));
	json_object_set_new(c, "fan_in_fan_out", json_false());
	json_object_set_new(c, "base_model_name_or_path",
			    json_string(arm->backbone_path ? arm->backbone_path : ""));
	json_object_set_new(c, "inference_mode", json_true());
	int rc = parm_write_atomic(path, write_json, c);
	json_decref(c);
	return rc;
}

static json_t *pblora_config(const parm_arm *arm)
{
	return json_pack("{s:s, s:s, s:i, s:i, s:i, s:f, s:f}",
		"peft_type", "PBLORA", "task_type", "CAUSAL_LM", "r1", arm->r1, "r2", arm->r2,
		"obj_num", arm->k, "lora_alpha", (double)arm->lora_alpha, "lora_dropout", 0.0);
}

/* dir/adapter_model.safetensors of t[n], then dir/adapter_config.json of
 * the config c (stolen). */
static int save_checkpoint(const parm_arm *arm, const char *dir, const parm_st_out *t, int n,
			   json_t *c)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
	if (parm_st_write(path, t, n) < 0) {
		json_decref(c);
		return -1;
	}
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	return save_config(c, arm, path);
}

/* B in Hugging Face's row order: a copy, permuted for q and k. */
static float *hf_b(const parm_arm *arm, const parm_pblora *p, int t)
{
	int r = p->r1 + p->r2, hd = parm_cfg_hd(&arm->backbone->cfg);
	float *b = parm_xmalloc((size_t)p->out * r * sizeof *b);
	for (int64_t g = 0; g < p->out; g++)
		memcpy(b + (permuted(arm, t) ? hf_row(g, hd) : g) * r, p->B + g * r, r * sizeof *b);
	return b;
}

/* The directory of a checkpoint, for an ARM that has a peft layout. */
static int prepare_dir(const parm_arm *arm, const char *dir)
{
	if (check_unfused(arm) < 0)
		return -1;
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		return parm_failc(PARM_ESYS, "%s: %s", dir, strerror(errno));
	return 0;
}

int parm_arm_export_peft(const parm_arm *arm, const char *dir)
{
	int L = arm->backbone->cfg.n_layers, n = 0, r = arm->r1 + arm->r2, rc;
	if (prepare_dir(arm, dir) < 0)
		return -1;
	parm_st_out *t = parm_xcalloc((size_t)4 * L * arm->n_targets, sizeof *t);
	char (*names)[128] = parm_xcalloc((size_t)4 * L * arm->n_targets, sizeof *names);
	float **owned = parm_xcalloc((size_t)L * arm->n_targets, sizeof *owned);
	for (int l = 0; l < L; l++)
		for (int i = 0; i < arm->n_targets; i++) {
			const parm_pblora *p = &arm->adapters[l * arm->n_targets + i];
			int tg = arm->targets[i];
			float *b = owned[l * arm->n_targets + i] = hf_b(arm, p, tg);
			const struct { const char *part; int64_t d0, d1; const float *data; } parts[4] = {
				{ "A", r, p->in, p->A }, { "B", p->out, r, b },
				{ "W1", p->r1, p->r1, p->W1 }, { "W2", p->k, (int64_t)p->r2 * p->r2, p->W2 } };
			for (int j = 0; j < 4; j++, n++) {
				key(names[n], sizeof names[n], l, tg, parts[j].part);
				t[n] = (parm_st_out){ names[n], PARM_ST_F32, 2, { parts[j].d0, parts[j].d1 },
						      parts[j].data };
			}
		}
	rc = save_checkpoint(arm, dir, t, n, pblora_config(arm));
	for (int i = 0; i < L * arm->n_targets; i++)
		free(owned[i]);
	free(owned), free(names), free(t);
	return rc;
}

/* ---- export as one merged LoRA ---- */

static json_t *lora_config(const parm_arm *arm)
{
	int r = arm->r1 + arm->r2;
	return json_pack("{s:s, s:s, s:i, s:i, s:f}", "peft_type", "LORA", "task_type", "CAUSAL_LM",
			 "r", r, "lora_alpha", r, "lora_dropout", 0.0);
}

int parm_arm_export_peft_lora(const parm_arm *arm, const float *alpha, const char *dir)
{
	int L = arm->backbone->cfg.n_layers, n = 0, r = arm->r1 + arm->r2, rc, c0;
	int hd = parm_cfg_hd(&arm->backbone->cfg);
	if (prepare_dir(arm, dir) < 0)
		return -1;
	parm_st_out *t = parm_xcalloc((size_t)2 * L * arm->n_targets, sizeof *t);
	char (*names)[160] = parm_xcalloc((size_t)2 * L * arm->n_targets, sizeof *names);
	float **owned = parm_xcalloc((size_t)L * arm->n_targets, sizeof *owned);
	float *M = parm_xmalloc((size_t)r * r * sizeof *M), *Bp = NULL;
	for (int l = 0; l < L; l++)
		for (int i = 0; i < arm->n_targets; i++) {
			const parm_pblora *p = &arm->adapters[l * arm->n_targets + i];
			int tg = arm->targets[i];
			float *b = owned[l * arm->n_targets + i] = parm_xmalloc((size_t)p->out * r * sizeof *b);
			Bp = parm_xrealloc(Bp, (size_t)p->out * r * sizeof *Bp);
			parm_pblora_mix(M, p, alpha);
			parm_lora_part(p, -1, M, Bp, &c0);
			for (int64_t g = 0; g < p->out; g++)     /* Hugging Face's row order */
				memcpy(b + (permuted(arm, tg) ? hf_row(g, hd) : g) * r, Bp + g * r,
				       r * sizeof *b);
			snprintf(names[n], sizeof names[n], "base_model.model.model.layers.%d.%s.%s.lora_A.weight",
				 l, hf_section[tg], hf_module[tg]);
			t[n] = (parm_st_out){ names[n], PARM_ST_F32, 2, { r, p->in }, p->A };
			n++;
			snprintf(names[n], sizeof names[n], "base_model.model.model.layers.%d.%s.%s.lora_B.weight",
				 l, hf_section[tg], hf_module[tg]);
			t[n] = (parm_st_out){ names[n], PARM_ST_F32, 2, { p->out, r }, b };
			n++;
		}
	rc = save_checkpoint(arm, dir, t, n, lora_config(arm));
	for (int i = 0; i < L * arm->n_targets; i++)
		free(owned[i]);
	free(owned), free(names), free(t), free(M), free(Bp);
	return rc;
}

/* ---- import ---- */

static int config_int(json_t *c, const char *key, const char *path, int lo, int hi, int *out)
{
	json_t *v = json_object_get(c, key);
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return parm_fail("%s: \"%s\" is not an integer from %d to %d", path, key, lo, hi);
	*out = (int)json_integer_value(v);
	return 0;
}

/* target_modules -> the ARM's target mask. */
static int config_targets(json_t *c, const char *path, unsigned *mask)
{
	json_t *mods = json_object_get(c, "target_modules");
	size_t i;
	json_t *m;
	*mask = 0;
	if (!json_is_array(mods) || json_array_size(mods) == 0)
		return parm_fail("%s: \"target_modules\" is not a list of module names", path);
	json_array_foreach(mods, i, m) {
		int t = -1;
		for (int j = 0; j < PARM_N_TARGETS && json_is_string(m); j++)
			if (!strcmp(json_string_value(m), hf_module[j]))
				t = j;
		if (t < 0)
			return parm_failc(PARM_EUNSUPPORTED, "%s: target module %s is not one parm adapts (q_proj ... "
					 "down_proj)", path, json_is_string(m) ? json_string_value(m) : "?");
		*mask |= 1u << t;
	}
	return 0;
}

/* The PBLoRA settings of adapter_config.json; what changes the maths and
 * is not implemented is refused by name. */
static int read_config(const char *path, parm_arm_options *o)
{
	json_error_t err;
	json_t *c = json_load_file(path, 0, &err);
	json_t *bias, *fifo, *layers, *alpha;
	int rc = 0;
	if (!json_is_object(c))
		rc = parm_fail("%s: %s", path, c ? "not a JSON object" : err.text);
	else if (!json_is_string(json_object_get(c, "peft_type")) ||
		 strcmp(json_string_value(json_object_get(c, "peft_type")), "PBLORA"))
		rc = parm_fail("%s: peft_type is not PBLORA", path);
	else if ((bias = json_object_get(c, "bias")) && !(json_is_string(bias) &&
							   !strcmp(json_string_value(bias), "none")))
		rc = parm_failc(PARM_EUNSUPPORTED, "%s: bias other than \"none\" is not implemented", path);
	else if ((fifo = json_object_get(c, "fan_in_fan_out")) && json_is_true(fifo))
		rc = parm_failc(PARM_EUNSUPPORTED, "%s: fan_in_fan_out is not implemented", path);
	else if ((layers = json_object_get(c, "layers_to_transform")) && !json_is_null(layers))
		rc = parm_failc(PARM_EUNSUPPORTED, "%s: layers_to_transform is not implemented", path);
	else if (!json_is_number(alpha = json_object_get(c, "lora_alpha")) ||
		 !(json_number_value(alpha) > 0))
		rc = parm_fail("%s: \"lora_alpha\" is not a positive number", path);
	else if (config_int(c, "r1", path, 1, 4096, &o->r1) < 0 ||
		 config_int(c, "r2", path, 1, 4096, &o->r2) < 0 ||
		 config_int(c, "obj_num", path, 1, 64, &o->k) < 0 ||
		 config_targets(c, path, &o->targets) < 0)
		rc = -1;
	else
		o->lora_alpha = (float)json_number_value(alpha);
	json_decref(c);
	return rc;
}

/* One tensor into dst[d0][d1] (rows through perm when hd > 0). */
static int read_part(const parm_safetensors *st, const char *name, const char *path,
		     int64_t d0, int64_t d1, float *dst, int hd, uint8_t *used)
{
	const parm_st_tensor *t = parm_st_find(st, name);
	if (!t)
		return parm_fail("%s: no tensor %s", path, name);
	if (t->n_dims != 2 || t->shape[0] != d0 || t->shape[1] != d1)
		return parm_fail("%s: %s is not [%lld, %lld]", path, name, (long long)d0, (long long)d1);
	used[t - parm_st_at(st, 0)] = 1;
	float *f = parm_xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof *f);
	parm_st_to_f32(t, f);
	for (int64_t g = 0; g < d0; g++)
		memcpy(dst + g * d1, f + (hd ? hf_row(g, hd) : g) * d1, (size_t)d1 * sizeof *f);
	free(f);
	return 0;
}

static int read_adapters(parm_arm *arm, const parm_safetensors *st, const char *path)
{
	int L = arm->backbone->cfg.n_layers, r = arm->r1 + arm->r2;
	int hd = parm_cfg_hd(&arm->backbone->cfg), rc = 0;
	uint8_t *used = parm_xcalloc(parm_st_count(st) + 1, 1);
	char name[160];
	for (int l = 0; l < L && rc == 0; l++)
		for (int i = 0; i < arm->n_targets && rc == 0; i++) {
			parm_pblora *p = &arm->adapters[l * arm->n_targets + i];
			int t = arm->targets[i];
			key(name, sizeof name, l, t, "A");
			rc = read_part(st, name, path, r, p->in, p->A, 0, used);
			key(name, sizeof name, l, t, "B");
			rc = rc ? rc : read_part(st, name, path, p->out, r, p->B, permuted(arm, t) ? hd : 0, used);
			key(name, sizeof name, l, t, "W1");
			rc = rc ? rc : read_part(st, name, path, p->r1, p->r1, p->W1, 0, used);
			key(name, sizeof name, l, t, "W2");
			rc = rc ? rc : read_part(st, name, path, p->k, (int64_t)p->r2 * p->r2, p->W2, 0, used);
		}
	for (int i = 0; rc == 0 && i < parm_st_count(st); i++)
		if (!used[i])
			rc = parm_fail("%s: tensor %s is not a PBLoRA weight of this backbone's layers", path,
				       parm_st_at(st, i)->name);
	free(used);
	return rc;
}

parm_arm *parm_arm_import_peft(const char *dir, const char *backbone_path,
			       const char *const *names, float beta)
{
	char path[4096];
	parm_arm_options o;
	parm_arm_default_options(&o);
	snprintf(path, sizeof path, "%s/adapter_config.json", dir);
	if (read_config(path, &o) < 0)
		return NULL;
	o.objectives = names;
	o.beta = beta;
	parm_arm *arm = parm_arm_new(backbone_path, &o);
	if (!arm)
		return NULL;
	snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
	parm_safetensors *st = check_unfused(arm) < 0 ? NULL : parm_st_open(path);
	if (!st || read_adapters(arm, st, path) < 0) {
		parm_st_close(st);
		parm_arm_free(arm);
		return NULL;
	}
	parm_st_close(st);
	parm_arm_set_info(arm, "imported", dir);
	return arm;
}
