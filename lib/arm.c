/* arm.c - ARM files (PARM / GenARM reward models): create, load, save,
 * preference vectors and merged weights.  The format is in arm.h. */
#include <parm/arm.h>
#include "arm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "quant_dot.h"
#include <parm/util.h>

#define MAX_OBJECTIVES 256
#define MAX_RANK 4096

/* ---- targets ---- */

static const char *const target_names[PARM_N_TARGETS] = {
	"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};
/* Short names for the command line, and the official code's (HF) names. */
static const char *const target_short[PARM_N_TARGETS] = {
	"q", "k", "v", "o", "gate", "up", "down",
};
static const char *const target_hf[PARM_N_TARGETS] = {
	"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

const char *parm_target_name(enum parm_target t)
{
	return (unsigned)t < PARM_N_TARGETS ? target_names[t] : NULL;
}

int parm_target_from_name(const char *name)
{
	for (int t = 0; t < PARM_N_TARGETS; t++)
		if (!strcmp(name, target_names[t]) || !strcmp(name, target_short[t]) ||
		    !strcmp(name, target_hf[t]))
			return t;
	return -1;
}

int parm_parse_targets(const char *s, unsigned *mask)
{
	unsigned m = 0;
	char *copy = parm_xstrdup(s), *save = NULL;
	if (!strcmp(s, "all"))
		m = (1u << PARM_N_TARGETS) - 1;
	for (char *tok = m ? NULL : strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int t = parm_target_from_name(tok);
		if (t < 0) {
			parm_fail("targets '%s': unknown target '%s' (q k v o gate up down, "
				  "attn_q ... ffn_down, or all)", s, tok);
			free(copy);
			return -1;
		}
		m |= 1u << t;
	}
	free(copy);
	if (!m)
		return parm_fail("targets '%s': no target named", s);
	*mask = m;
	return 0;
}

/* Targets and model.h's projections are numbered alike: q k v o gate up down. */
_Static_assert(PARM_N_TARGETS == PARM_N_PROJ, "targets and projections differ");

const parm_weight *parm_target_weight(const parm_model *m, int layer, enum parm_target t)
{
	return parm_layer_proj(&m->layers[layer], t);
}

/* ---- SHA-256 ---- */

static void hex_digest(char hex[65], const unsigned char *md)
{
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Stream the file through the digest in big reads: backbones are GBs. */
static int digest_fd(EVP_MD_CTX *ctx, int fd, const char *path, uint64_t *size)
{
	enum { CHUNK = 8 << 20 };
	char *buf = parm_xmalloc(CHUNK);
	uint64_t total = 0;
	ssize_t n;
	while ((n = read(fd, buf, CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || !EVP_DigestUpdate(ctx, buf, (size_t)n)) {
			free(buf);
			return parm_failc(PARM_ESYS, "%s: %s", path, n < 0 ? strerror(errno) : "SHA-256 failed");
		}
		total += (uint64_t)n;
	}
	free(buf);
	if (size)
		*size = total;
	return 0;
}

int parm_sha256_file(const char *path, char hex[65], uint64_t *size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	int fd = open(path, O_RDONLY), rc = -1;
	if (fd < 0)
		return parm_failc(PARM_ESYS, "%s: %s", path, strerror(errno));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		parm_fail("%s: SHA-256 is not available", path);
	else if (digest_fd(ctx, fd, path, size) == 0) {
		if (EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 32) {
			hex_digest(hex, md);
			rc = 0;
		} else {
			parm_fail("%s: SHA-256 failed", path);
		}
	}
	EVP_MD_CTX_free(ctx);
	close(fd);
	return rc;
}

/* ---- the ARM object ---- */

void parm_arm_default_options(parm_arm_options *o)
{
	*o = (parm_arm_options){ .k = 1, .r1 = 4, .r2 = 4, .lora_alpha = 8.0f,
				 .beta = 0.01f, .targets = PARM_TARGETS_DEFAULT, .seed = 1 };
}

/* Objective names appear in "name=value" preferences: no '=' or ','. */
static int check_objective(const char *where, char *const *names, int i)
{
	const char *s = names[i];
	if (!*s || strpbrk(s, "=, \t\n"))
		return parm_fail("%s: objective name '%s' must be non-empty, without '=', ',' or spaces",
				 where, s);
	for (int j = 0; j < i; j++)
		if (!strcmp(names[j], s))
			return parm_fail("%s: objective '%s' is named twice", where, s);
	return 0;
}

static int check_hparams(const char *where, const parm_arm *a)
{
	if (a->k < 1 || a->k > MAX_OBJECTIVES)
		return parm_fail("%s: k = %d objectives (1 to %d)", where, a->k, MAX_OBJECTIVES);
	if (a->r1 < 1 || a->r1 > MAX_RANK || a->r2 < 1 || a->r2 > MAX_RANK)
		return parm_fail("%s: ranks r1 = %d, r2 = %d (each 1 to %d)", where, a->r1, a->r2, MAX_RANK);
	if (!(a->lora_alpha > 0) || !isfinite(a->lora_alpha))
		return parm_fail("%s: lora_alpha %g must be positive", where, a->lora_alpha);
	if (!(a->beta > 0) || !isfinite(a->beta))
		return parm_fail("%s: beta %g must be positive", where, a->beta);
	if (a->n_targets < 1)
		return parm_fail("%s: no target modules", where);
	for (int i = 0; i < a->k; i++)
		if (check_objective(where, a->objectives, i) < 0)
			return -1;
	return 0;
}

static void set_targets(parm_arm *a, unsigned mask)
{
	a->n_targets = 0;
	for (int t = 0; t < PARM_N_TARGETS; t++)
		if (mask & (1u << t))
			a->targets[a->n_targets++] = t;
}

static int target_slot(const parm_arm *a, enum parm_target t)
{
	for (int i = 0; i < a->n_targets; i++)
		if (a->targets[i] == t)
			return i;
	return -1;
}

void parm_arm_delta_norms(const parm_arm *a, double *agnostic, double *aware)
{
	double ag, aw[MAX_OBJECTIVES];
	*agnostic = 0;
	for (int i = 0; i < a->k; i++)
		aware[i] = 0;
	for (int i = 0; i < a->backbone->cfg.n_layers * a->n_targets; i++) {
		parm_pblora_delta_norms(&a->adapters[i], &ag, aw);
		*agnostic += ag;
		for (int o = 0; o < a->k; o++)
			aware[o] += aw[o];
	}
	*agnostic = sqrt(*agnostic);
	for (int o = 0; o < a->k; o++)
		aware[o] = sqrt(aware[o]);
}

void parm_arm_carve(const parm_arm *a, parm_pblora *out, float *buf)
{
	size_t off = 0;
	for (int l = 0; l < a->backbone->cfg.n_layers; l++)
		for (int i = 0; i < a->n_targets; i++) {
			const parm_weight *w = parm_target_weight(a->backbone, l, a->targets[i]);
			parm_pblora *p = &out[l * a->n_targets + i];
			parm_pblora_carve(p, buf + off, (int)w->cols, (int)w->rows, a->k, a->r1, a->r2,
				     a->lora_alpha);
			off += parm_pblora_n_params((int)w->cols, (int)w->rows, a->k, a->r1, a->r2);
		}
}

/* Size params for the backbone and carve the adapters from it (zeroed). */
static void alloc_adapters(parm_arm *a)
{
	a->n_params = 0;
	for (int l = 0; l < a->backbone->cfg.n_layers; l++)
		for (int i = 0; i < a->n_targets; i++) {
			const parm_weight *w = parm_target_weight(a->backbone, l, a->targets[i]);
			a->n_params += parm_pblora_n_params((int)w->cols, (int)w->rows, a->k, a->r1, a->r2);
		}
	a->params = parm_xcalloc(a->n_params ? a->n_params : 1, sizeof *a->params);
	a->adapters = parm_xcalloc((size_t)a->backbone->cfg.n_layers * a->n_targets, sizeof *a->adapters);
	parm_arm_carve(a, a->adapters, a->params);
}

static void default_names(parm_arm *a, const char *const *names)
{
	char buf[32];
	a->objectives = parm_xcalloc(a->k, sizeof *a->objectives);
	for (int i = 0; i < a->k; i++) {
		snprintf(buf, sizeof buf, "objective%d", i + 1);
		a->objectives[i] = parm_xstrdup(names && names[i] ? names[i] : buf);
	}
}

parm_arm *parm_arm_new(const char *backbone_path, const parm_arm_options *o)
{
	if (o->k < 1 || o->k > MAX_OBJECTIVES)
		return parm_failp("new ARM: k = %d objectives (1 to %d)", o->k, MAX_OBJECTIVES);
	parm_arm *a = parm_xcalloc(1, sizeof *a);
	a->k = o->k, a->r1 = o->r1, a->r2 = o->r2;
	a->lora_alpha = o->lora_alpha, a->beta = o->beta;
	set_targets(a, o->targets & ((1u << PARM_N_TARGETS) - 1));
	default_names(a, o->objectives);
	if (check_hparams("new ARM", a) < 0 ||
	    !(a->backbone = parm_model_load(backbone_path))) {
		parm_arm_free(a);
		return NULL;
	}
	a->backbone_path = parm_xstrdup(backbone_path);
	alloc_adapters(a);
	for (int i = 0; i < a->backbone->cfg.n_layers * a->n_targets; i++)
		parm_pblora_init(&a->adapters[i], o->seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1));
	return a;
}

void parm_arm_free(parm_arm *a)
{
	if (!a)
		return;
	for (int i = 0; a->objectives && i < a->k; i++)
		free(a->objectives[i]);
	for (int i = 0; i < a->n_info; i++) {
		free(a->info_key[i]);
		free(a->info_val[i]);
	}
	free(a->objectives);
	free(a->info_key);
	free(a->info_val);
	parm_model_free(a->backbone);
	free(a->path);
	free(a->backbone_path);
	free(a->adapters);
	free(a->params);
	free(a);
}

parm_pblora *parm_arm_adapter(const parm_arm *a, int l, enum parm_target t)
{
	int i = target_slot(a, t);
	if (i < 0 || l < 0 || l >= a->backbone->cfg.n_layers)
		return NULL;
	return &a->adapters[l * a->n_targets + i];
}

int parm_arm_objective_index(const parm_arm *a, const char *name)
{
	for (int i = 0; i < a->k; i++)
		if (!strcmp(a->objectives[i], name))
			return i;
	return -1;
}

void parm_arm_set_info(parm_arm *a, const char *key, const char *val)
{
	for (int i = 0; i < a->n_info; i++)
		if (!strcmp(a->info_key[i], key)) {
			free(a->info_val[i]);
			a->info_val[i] = parm_xstrdup(val);
			return;
		}
	a->info_key = parm_xrealloc(a->info_key, (a->n_info + 1) * sizeof *a->info_key);
	a->info_val = parm_xrealloc(a->info_val, (a->n_info + 1) * sizeof *a->info_val);
	a->info_key[a->n_info] = parm_xstrdup(key);
	a->info_val[a->n_info++] = parm_xstrdup(val);
}

const char *parm_arm_get_info(const parm_arm *a, const char *key)
{
	for (int i = 0; i < a->n_info; i++)
		if (!strcmp(a->info_key[i], key))
			return a->info_val[i];
	return NULL;
}

/* ---- paths ---- */

/* The directory part of path ("." when it has none), as a new string. */
static char *dir_of(const char *path)
{
	char *copy = parm_xstrdup(path), *d = parm_xstrdup(dirname(copy));
	free(copy);
	return d;
}

/* Split a canonical absolute path into its components, in place. */
static int components(char *path, char **out, int max)
{
	int n = 0;
	for (char *save = NULL, *c = strtok_r(path, "/", &save); c && n < max;
	     c = strtok_r(NULL, "/", &save))
		out[n++] = c;
	return n;
}

/* to as seen from the directory from; both canonical absolute paths.
 * Absolute when they share nothing but the root. */
static char *relative_path(const char *from, const char *to)
{
	enum { MAXC = 256 };
	char *f = parm_xstrdup(from), *t = parm_xstrdup(to), *fc[MAXC], *tc[MAXC];
	int nf = components(f, fc, MAXC), nt = components(t, tc, MAXC), c = 0;
	while (c < nf && c < nt - 1 && !strcmp(fc[c], tc[c]))
		c++;
	char *out = parm_xmalloc(3 * (size_t)nf + strlen(to) + 2), *q = out;
	if (c == 0) {
		strcpy(out, to);
	} else {
		for (int i = c; i < nf; i++, q += 3)
			memcpy(q, "../", 3);
		for (int i = c; i < nt; i++)
			q += sprintf(q, "%s%s", tc[i], i + 1 < nt ? "/" : "");
	}
	free(f);
	free(t);
	return out;
}

/* The backbone path to store in an ARM written to arm_path. */
static char *stored_backbone_path(const char *arm_path, const char *backbone)
{
	char *dir = dir_of(arm_path), *rdir = realpath(dir, NULL), *rb = realpath(backbone, NULL);
	char *out = NULL;
	if (!rdir)
		parm_failc(PARM_ESYS, "%s: directory %s: %s", arm_path, dir, strerror(errno));
	else if (!rb)
		parm_failc(PARM_ESYS, "%s: backbone %s: %s", arm_path, backbone, strerror(errno));
	else
		out = relative_path(rdir, rb);
	free(dir);
	free(rdir);
	free(rb);
	return out;
}

/* The stored path as openable from here: relative to the ARM's directory. */
static char *resolve_backbone(const char *arm_path, const char *stored)
{
	char *dir = dir_of(arm_path);
	if (stored[0] == '/' || !strcmp(dir, ".")) {
		free(dir);
		return parm_xstrdup(stored);
	}
	char *out = parm_xmalloc(strlen(dir) + strlen(stored) + 2);
	sprintf(out, "%s/%s", dir, stored);
	free(dir);
	return out;
}

/* ---- saving ---- */

static void write_parm_keys(parm_gguf_writer *w, const parm_arm *a)
{
	const char *tn[PARM_N_TARGETS];
	char key[256];
	for (int i = 0; i < a->n_targets; i++)
		tn[i] = target_names[a->targets[i]];
	parm_gguf_w_set_u32(w, "parm.format_version", PARM_ARM_VERSION);
	parm_gguf_w_set_u32(w, "parm.objective_count", a->k);
	parm_gguf_w_set_arr_str(w, "parm.objectives", (const char *const *)a->objectives, NULL, a->k);
	parm_gguf_w_set_u32(w, "parm.block_count", a->backbone->cfg.n_layers);
	parm_gguf_w_set_u32(w, "parm.pblora.r1", a->r1);
	parm_gguf_w_set_u32(w, "parm.pblora.r2", a->r2);
	parm_gguf_w_set_f32(w, "parm.pblora.lora_alpha", a->lora_alpha);
	parm_gguf_w_set_arr_str(w, "parm.pblora.targets", tn, NULL, a->n_targets);
	parm_gguf_w_set_f32(w, "parm.beta", a->beta);
	for (int i = 0; i < a->n_info; i++) {
		snprintf(key, sizeof key, "parm.train.%s", a->info_key[i]);
		parm_gguf_w_set_str(w, key, a->info_val[i]);
	}
}

static void adapter_name(char *buf, size_t n, int l, enum parm_target t, const char *part)
{
	snprintf(buf, n, "blk.%d.%s.pblora_%s", l, target_names[t], part);
}

static void write_adapters(parm_gguf_writer *w, const parm_arm *a)
{
	char name[96];
	for (int l = 0; l < a->backbone->cfg.n_layers; l++)
		for (int i = 0; i < a->n_targets; i++) {
			const parm_pblora *p = &a->adapters[l * a->n_targets + i];
			int r = p->r1 + p->r2;
			int64_t ne_a[2] = { p->in, r }, ne_b[2] = { r, p->out };
			int64_t ne_w1[2] = { p->r1, p->r1 }, ne_w2[2] = { (int64_t)p->r2 * p->r2, p->k };
			adapter_name(name, sizeof name, l, a->targets[i], "a");
			parm_gguf_w_tensor_ref(w, name, PARM_GGML_F32, 2, ne_a, p->A);
			adapter_name(name, sizeof name, l, a->targets[i], "b");
			parm_gguf_w_tensor_ref(w, name, PARM_GGML_F32, 2, ne_b, p->B);
			adapter_name(name, sizeof name, l, a->targets[i], "w1");
			parm_gguf_w_tensor_ref(w, name, PARM_GGML_F32, 2, ne_w1, p->W1);
			adapter_name(name, sizeof name, l, a->targets[i], "w2");
			parm_gguf_w_tensor_ref(w, name, PARM_GGML_F32, 2, ne_w2, p->W2);
		}
}

static int is_adapter_tensor(const char *name)
{
	return strstr(name, ".pblora_") != NULL;
}

static int is_backbone_part(void *ctx, const char *name, int is_tensor)
{
	return is_tensor ? !is_adapter_tensor(name) : strncmp(name, "parm.", 5) != 0;
}

/* Every backbone key and tensor except an earlier ARM's own. */
static int write_backbone(parm_gguf_writer *w, const parm_gguf *g)
{
	if (parm_gguf_w_copy_file(w, g, is_backbone_part, NULL) < 0)
		return -1;
	parm_gguf_w_set_bool(w, "parm.backbone.embedded", 1);
	return 0;
}

/* Hashing a large backbone takes seconds: once per ARM, then its size. */
static int backbone_digest(parm_arm *a, uint64_t *size)
{
	struct stat st;
	if (!a->backbone_sha256[0])
		return parm_sha256_file(a->backbone_path, a->backbone_sha256, size);
	if (stat(a->backbone_path, &st) < 0)
		return parm_failc(PARM_ESYS, "%s: %s", a->backbone_path, strerror(errno));
	*size = (uint64_t)st.st_size;
	return 0;
}

static int write_reference(parm_gguf_writer *w, parm_arm *a, const char *path)
{
	const parm_gguf *g = a->backbone->file;
	uint64_t size = 0;
	if (a->embedded)
		return parm_fail("%s: the backbone of %s is embedded in it; save the ARM embedded",
				 path, a->path);
	char *stored = stored_backbone_path(path, a->backbone_path);
	if (!stored)
		return -1;
	if (backbone_digest(a, &size) < 0) {
		free(stored);
		return -1;
	}
	for (int i = 0; i < parm_gguf_n_kv(g); i++) {
		const char *key = parm_gguf_kv_key(g, i);
		if (!strncmp(key, "tokenizer.", 10) && parm_gguf_w_copy_kv(w, g, key) < 0) {
			free(stored);
			return -1;
		}
	}
	parm_gguf_w_set_str(w, "general.type", "adapter");
	parm_gguf_w_set_bool(w, "parm.backbone.embedded", 0);
	parm_gguf_w_set_str(w, "parm.backbone.path", stored);
	parm_gguf_w_set_str(w, "parm.backbone.sha256", a->backbone_sha256);
	parm_gguf_w_set_u64(w, "parm.backbone.size", size);
	free(stored);
	return 0;
}

int parm_arm_save(parm_arm *a, const char *path, int embed_backbone)
{
	parm_gguf_writer *w = parm_gguf_w_new();
	int rc = embed_backbone ? write_backbone(w, a->backbone->file)
				: write_reference(w, a, path);
	if (rc == 0) {
		write_parm_keys(w, a);
		write_adapters(w, a);
		rc = parm_gguf_w_save(w, path);
	}
	parm_gguf_w_free(w);
	return rc;
}

/* ---- loading ---- */

/* A u32-ish key in [lo, hi]; missing is an error naming the key. */
static int get_int_key(const parm_gguf *g, const char *key, int lo, int hi, int *out)
{
	int64_t v;
	if (parm_gguf_find_key(g, key) < 0)
		return parm_fail("%s: missing key %s", parm_gguf_path(g), key);
	if (parm_gguf_get_int(g, key, &v) < 0)
		return -1;
	if (v < lo || v > hi)
		return parm_fail("%s: %s = %lld is out of range [%d, %d]", parm_gguf_path(g), key,
				 (long long)v, lo, hi);
	*out = (int)v;
	return 0;
}

static int get_float_key(const parm_gguf *g, const char *key, float *out)
{
	double v;
	if (parm_gguf_find_key(g, key) < 0)
		return parm_fail("%s: missing key %s", parm_gguf_path(g), key);
	if (parm_gguf_get_float(g, key, &v) < 0)
		return -1;
	*out = (float)v;
	return 0;
}

/* A string array key of exactly n entries, each copied to out[i]. */
static int get_str_array(const parm_gguf *g, const char *key, int n, char **out)
{
	enum parm_gguf_vtype et;
	uint64_t len;
	if (parm_gguf_find_key(g, key) < 0)
		return parm_fail("%s: missing key %s", parm_gguf_path(g), key);
	if (parm_gguf_get_arr(g, key, &et, &len) < 0)
		return -1;
	if (et != PARM_GGUF_STRING)
		return parm_fail("%s: %s is not an array of strings", parm_gguf_path(g), key);
	if (n >= 0 && len != (uint64_t)n)
		return parm_fail("%s: %s has %llu entries, parm.objective_count is %d",
				 parm_gguf_path(g), key, (unsigned long long)len, n);
	for (uint64_t i = 0; i < len; i++) {
		const char *s;
		size_t sl;
		if (parm_gguf_arr_str(g, key, i, &s, &sl) < 0)
			return -1;
		out[i] = parm_xmalloc(sl + 1);
		memcpy(out[i], s, sl);
		out[i][sl] = 0;
	}
	return 0;
}

static int read_targets(parm_arm *a, const parm_gguf *g)
{
	char *names[PARM_N_TARGETS + 1] = { 0 };
	enum parm_gguf_vtype et;
	uint64_t n;
	unsigned mask = 0;
	int rc = 0;
	if (parm_gguf_find_key(g, "parm.pblora.targets") >= 0 &&
	    parm_gguf_get_arr(g, "parm.pblora.targets", &et, &n) == 0 && n > PARM_N_TARGETS)
		return parm_fail("%s: parm.pblora.targets has %llu entries (at most %d)",
				 parm_gguf_path(g), (unsigned long long)n, PARM_N_TARGETS);
	if (get_str_array(g, "parm.pblora.targets", -1, names) < 0)
		rc = -1;
	for (int i = 0; rc == 0 && names[i]; i++) {
		int t = -1;
		for (int j = 0; j < PARM_N_TARGETS; j++)
			if (!strcmp(names[i], target_names[j]))
				t = j;
		if (t < 0 || (mask & (1u << t)))
			rc = parm_fail("%s: parm.pblora.targets: %s target '%s'", parm_gguf_path(g),
				       t < 0 ? "unknown" : "repeated", names[i]);
		else
			mask |= 1u << t;
	}
	for (int i = 0; names[i]; i++)
		free(names[i]);
	set_targets(a, mask);
	return rc;
}

static int read_hparams(parm_arm *a, const parm_gguf *g)
{
	int version;
	if (parm_gguf_find_key(g, "parm.format_version") < 0)
		return parm_fail("%s: not an ARM file (no parm.format_version)", parm_gguf_path(g));
	if (get_int_key(g, "parm.format_version", 0, INT_MAX, &version) < 0)
		return -1;
	if (version != PARM_ARM_VERSION)
		return parm_fail("%s: ARM format version %d (this build reads %d)", parm_gguf_path(g),
				 version, PARM_ARM_VERSION);
	if (get_int_key(g, "parm.objective_count", 1, MAX_OBJECTIVES, &a->k) < 0)
		return -1;
	a->objectives = parm_xcalloc(a->k, sizeof *a->objectives);
	if (get_str_array(g, "parm.objectives", a->k, a->objectives) < 0 ||
	    get_int_key(g, "parm.pblora.r1", 1, MAX_RANK, &a->r1) < 0 ||
	    get_int_key(g, "parm.pblora.r2", 1, MAX_RANK, &a->r2) < 0 ||
	    get_float_key(g, "parm.pblora.lora_alpha", &a->lora_alpha) < 0 ||
	    get_float_key(g, "parm.beta", &a->beta) < 0 || read_targets(a, g) < 0)
		return -1;
	return check_hparams(parm_gguf_path(g), a);
}

static void read_info(parm_arm *a, const parm_gguf *g)
{
	const char *s;
	size_t len;
	for (int i = 0; i < parm_gguf_n_kv(g); i++) {
		const char *key = parm_gguf_kv_key(g, i);
		if (strncmp(key, "parm.train.", 11) || parm_gguf_kv_type(g, i) != PARM_GGUF_STRING ||
		    parm_gguf_get_str(g, key, &s, &len) < 0)
			continue;
		char *val = parm_xmalloc(len + 1);
		memcpy(val, s, len);
		val[len] = 0;
		parm_arm_set_info(a, key + 11, val);
		free(val);
	}
}

/* Check a referenced backbone's digest before loading it. */
static int open_reference(parm_arm *a, const parm_gguf *g)
{
	const char *s, *want;
	size_t len, wlen;
	if (parm_gguf_get_str(g, "parm.backbone.path", &s, &len) < 0 ||
	    parm_gguf_get_str(g, "parm.backbone.sha256", &want, &wlen) < 0)
		return parm_fail("%s: referenced backbone without parm.backbone.path and .sha256",
				 parm_gguf_path(g));
	char *stored = parm_xmalloc(len + 1);
	memcpy(stored, s, len);
	stored[len] = 0;
	a->backbone_path = resolve_backbone(parm_gguf_path(g), stored);
	free(stored);
	if (access(a->backbone_path, R_OK) < 0)
		return parm_failc(PARM_ESYS, "%s: backbone %s: %s", parm_gguf_path(g), a->backbone_path, strerror(errno));
	if (parm_sha256_file(a->backbone_path, a->backbone_sha256, NULL) < 0)
		return -1;
	if (wlen != 64 || strncasecmp(want, a->backbone_sha256, 64))
		return parm_fail("%s: backbone %s has SHA-256 %s, the ARM was made with %.*s",
				 parm_gguf_path(g), a->backbone_path, a->backbone_sha256, (int)wlen, want);
	return 0;
}

static int open_backbone(parm_arm *a, const parm_gguf *g)
{
	if (parm_gguf_find_key(g, "parm.backbone.embedded") < 0 ||
	    parm_gguf_get_bool(g, "parm.backbone.embedded", &a->embedded) < 0)
		return parm_fail("%s: missing key parm.backbone.embedded", parm_gguf_path(g));
	if (a->embedded)
		a->backbone_path = parm_xstrdup(parm_gguf_path(g));
	else if (open_reference(a, g) < 0)
		return -1;
	if (!(a->backbone = parm_model_load(a->backbone_path)))
		return -1;
	return 0;
}

static int check_block_count(const parm_arm *a, const parm_gguf *g)
{
	int layers;
	if (get_int_key(g, "parm.block_count", 1, INT_MAX, &layers) < 0)
		return -1;
	if (layers != a->backbone->cfg.n_layers)
		return parm_fail("%s: adapters for %d layers, but backbone %s has %d", parm_gguf_path(g),
				 layers, a->backbone_path ? a->backbone_path : "(given)",
				 a->backbone->cfg.n_layers);
	return 0;
}

/* ne[0..1] as [ne0, ne1], trailing 1s dropped as the writer does. */
static int has_shape(const parm_gguf_tensor *t, int64_t ne0, int64_t ne1)
{
	return t->n_dims <= 2 && t->ne[0] == ne0 && (t->n_dims == 2 ? t->ne[1] : 1) == ne1;
}

/* The f32 tensor name of shape [ne0, ne1] into dst (NULL: only check). */
static int read_tensor(float *dst, const parm_gguf *g, const char *name,
		       int64_t ne0, int64_t ne1, const char *why)
{
	const parm_gguf_tensor *t = parm_gguf_find_tensor(g, name);
	if (!t)
		return parm_fail("%s: tensor '%s' is missing", parm_gguf_path(g), name);
	if (t->type != PARM_GGML_F32)
		return parm_fail("%s: tensor '%s' has type %s (ARM tensors are f32)", parm_gguf_path(g),
				 name, parm_ggml_type_name(t->type) ? parm_ggml_type_name(t->type) : "unknown");
	if (!has_shape(t, ne0, ne1))
		return parm_fail("%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] (%s)",
				 parm_gguf_path(g), name, (long long)t->ne[0],
				 (long long)(t->n_dims > 1 ? t->ne[1] : 1), (long long)ne0,
				 (long long)ne1, why);
	if (dst)
		memcpy(dst, t->data, (size_t)(ne0 * ne1) * sizeof *dst);
	return 0;
}

/* Layer l's adapter of target t into p, or with p NULL only checked: the
 * shapes follow from the backbone and the hyperparameters. */
static int read_adapter(const parm_arm *a, parm_pblora *p, const parm_gguf *g, int l,
			enum parm_target t)
{
	char name[96], why[160];
	const parm_weight *w = parm_target_weight(a->backbone, l, t);
	int in = (int)w->cols, out = (int)w->rows, r = a->r1 + a->r2;
	snprintf(why, sizeof why, "the backbone's %s is %d x %d", target_names[t], out, in);
	adapter_name(name, sizeof name, l, t, "a");
	if (read_tensor(p ? p->A : NULL, g, name, in, r, why) < 0)
		return -1;
	adapter_name(name, sizeof name, l, t, "b");
	if (read_tensor(p ? p->B : NULL, g, name, r, out, why) < 0)
		return -1;
	adapter_name(name, sizeof name, l, t, "w1");
	if (read_tensor(p ? p->W1 : NULL, g, name, a->r1, a->r1, "r1 x r1") < 0)
		return -1;
	snprintf(why, sizeof why, "k = %d objectives of r2^2 = %d", a->k, a->r2 * a->r2);
	adapter_name(name, sizeof name, l, t, "w2");
	return read_tensor(p ? p->W2 : NULL, g, name, (int64_t)a->r2 * a->r2, a->k, why);
}

/* Every adapter tensor in the file must be one we read: a stray one means
 * a target or layer the metadata does not list. */
static int check_no_strays(const parm_arm *a, const parm_gguf *g)
{
	char target[64];
	int l, n;
	for (int i = 0; i < parm_gguf_n_tensors(g); i++) {
		const char *name = parm_gguf_tensor_at(g, i)->name;
		if (!is_adapter_tensor(name))
			continue;
		n = 0;
		int t = sscanf(name, "blk.%d.%63[^.].pblora_%n", &l, target, &n) == 2 && n
			? parm_target_from_name(target) : -1;
		if (t < 0 || strcmp(target, target_names[t]))
			return parm_fail("%s: tensor '%s': unknown target", parm_gguf_path(g), name);
		if (strcmp(name + n, "a") && strcmp(name + n, "b") && strcmp(name + n, "w1") &&
		    strcmp(name + n, "w2"))
			return parm_fail("%s: tensor '%s': unknown PBLoRA part", parm_gguf_path(g), name);
		if (target_slot(a, t) < 0 || l < 0 || l >= a->backbone->cfg.n_layers)
			return parm_fail("%s: tensor '%s' is outside parm.pblora.targets / parm.block_count",
					 parm_gguf_path(g), name);
	}
	return 0;
}

/* Every tensor is checked before the adapters are allocated: the sizes
 * the metadata claims (ranks up to 4096, 256 objectives) are allocated
 * only once the file is known to hold tensors of those shapes. */
static int read_adapters(parm_arm *a, const parm_gguf *g)
{
	int n_layers = a->backbone->cfg.n_layers;
	if (check_no_strays(a, g) < 0)
		return -1;
	for (int l = 0; l < n_layers; l++)
		for (int i = 0; i < a->n_targets; i++)
			if (read_adapter(a, NULL, g, l, a->targets[i]) < 0)
				return -1;
	alloc_adapters(a);
	for (int l = 0; l < n_layers; l++)
		for (int i = 0; i < a->n_targets; i++)
			read_adapter(a, &a->adapters[l * a->n_targets + i], g, l, a->targets[i]);
	return 0;
}

parm_arm *parm_arm_from_gguf(const parm_gguf *g, parm_model *backbone)
{
	parm_arm *a = parm_xcalloc(1, sizeof *a);
	a->backbone = backbone;
	if (read_hparams(a, g) < 0 || (!backbone && open_backbone(a, g) < 0) ||
	    check_block_count(a, g) < 0 || read_adapters(a, g) < 0) {
		if (backbone)
			a->backbone = NULL;
		parm_arm_free(a);
		return NULL;
	}
	read_info(a, g);
	return a;
}

parm_arm *parm_arm_load(const char *path)
{
	parm_gguf *g = parm_gguf_open(path);
	if (!g)
		return NULL;
	parm_arm *a = parm_arm_from_gguf(g, NULL);
	if (a)
		a->path = parm_xstrdup(path);
	parm_gguf_close(g);
	return a;
}

/* ---- preferences ---- */

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = 0;
	return s;
}

static int name_index(const char *const *names, int k, const char *name)
{
	for (int i = 0; names && i < k; i++)
		if (!strcmp(names[i], name))
			return i;
	return -1;
}

/* One "value" or "name=value" entry into v[]; n counts entries so far. */
static int pref_entry(double *v, int *seen, char *tok, int n, int k, const char *const *names,
		      int *named, const char *s)
{
	char *eq = strchr(tok, '='), *num = eq ? trim(eq + 1) : trim(tok);
	int i = n;
	double x;
	if (n > 0 && (eq != NULL) != *named)
		return parm_fail("preference '%s': mixes named and positional entries", s);
	*named = eq != NULL;
	if (eq) {
		*eq = 0;
		if ((i = name_index(names, k, trim(tok))) < 0)
			return parm_fail("preference '%s': unknown objective '%s'", s, trim(tok));
		if (seen[i])
			return parm_fail("preference '%s': objective '%s' given twice", s, names[i]);
	} else if (n >= k) {
		return parm_fail("preference '%s': more than %d values for %d objective%s", s, k, k,
				 k == 1 ? "" : "s");
	}
	if (parm_parse_float(num, &x) < 0 || !isfinite(x))
		return parm_fail("preference '%s': '%s' is not a number", s, num);
	if (x < 0)
		return parm_fail("preference '%s': %s is negative", s, num);
	v[i] = x, seen[i] = 1;
	return 0;
}

int parm_parse_pref(const char *s, int k, const char *const *names, float *alpha)
{
	double v[MAX_OBJECTIVES] = { 0 }, sum = 0;
	int seen[MAX_OBJECTIVES] = { 0 }, n = 0, named = 0, rc = 0;
	char *copy = parm_xstrdup(s), *rest = copy;
	if (k < 1 || k > MAX_OBJECTIVES)
		rc = parm_fail("preference '%s': k = %d", s, k);
	if (rc == 0 && !*trim(copy))
		rc = parm_fail("preference '%s': empty", s);
	/* strsep, not strtok: "0.5,,0.5" has an empty entry, refused below,
	 * where strtok would read two values and accept it */
	for (char *tok; rc == 0 && (tok = strsep(&rest, ",")); n++)
		rc = *trim(tok) ? pref_entry(v, seen, tok, n, k, names, &named, s)
				: parm_fail("preference '%s': entry %d is empty", s, n + 1);
	free(copy);
	if (rc < 0)
		return -1;
	if (!named && n != k)
		return parm_fail("preference '%s': %d value%s for %d objectives", s, n,
				 n == 1 ? "" : "s", k);
	for (int i = 0; i < k; i++)
		sum += v[i];
	if (fabs(sum - 1) > 1e-6)
		return parm_fail("preference '%s': the weights sum to %.9g, not 1", s, sum);
	for (int i = 0; i < k; i++)
		alpha[i] = (float)v[i];
	return 0;
}

int parm_arm_parse_pref(const parm_arm *a, const char *s, float *alpha)
{
	return parm_parse_pref(s, a->k, (const char *const *)a->objectives, alpha);
}

/* ---- the merged fast path ---- */

float *parm_arm_merged_weight(const parm_arm *a, int l, enum parm_target t, const float *alpha)
{
	const parm_pblora *p = parm_arm_adapter(a, l, t);
	if (!p)
		return parm_failp("ARM %s: layer %d, target %s is not adapted",
				  a->path ? a->path : "(new)", l,
				  parm_target_name(t) ? parm_target_name(t) : "unknown");
	const parm_weight *w = parm_target_weight(a->backbone, l, t);
	size_t row_bytes = parm_ggml_row_bytes(w->type, w->cols);
	int r = p->r1 + p->r2;
	float *W = parm_xmalloc((size_t)(w->rows * w->cols) * sizeof *W);
	float *M = parm_xmalloc((size_t)r * r * sizeof *M);
	for (int64_t i = 0; i < w->rows; i++)
		parm_dequant_row(W + i * w->cols, (const char *)w->data + i * row_bytes, w->type, w->cols);
	parm_pblora_mix(M, p, alpha);
	parm_pblora_merge(W, p, M);
	free(M);
	return W;
}

/* ---- the unmerged path ---- */

/* The mix of adapter i (layer-major, as arm->adapters) in a buffer of them. */
static float *mix_of(const parm_arm *a, float *M, int i)
{
	int r = a->r1 + a->r2;
	return M + (size_t)i * r * r;
}

void parm_arm_mix_adapters(const parm_arm *a, const float *alpha, float *M)
{
	for (int i = 0; i < a->backbone->cfg.n_layers * a->n_targets; i++)
		parm_pblora_mix(mix_of(a, M, i), &a->adapters[i], alpha);
}

parm_adapter *parm_arm_adapters(const parm_arm *a, const float *alpha, float **M)
{
	int L = a->backbone->cfg.n_layers, r = a->r1 + a->r2;
	parm_adapter *ad = parm_xcalloc((size_t)L * PARM_N_PROJ, sizeof *ad);
	*M = parm_xmalloc(((size_t)L * a->n_targets * r * r + 1) * sizeof **M);
	parm_arm_mix_adapters(a, alpha, *M);
	for (int l = 0; l < L; l++)
		for (int i = 0; i < a->n_targets; i++)
			ad[l * PARM_N_PROJ + a->targets[i]] = (parm_adapter){
				&a->adapters[l * a->n_targets + i], mix_of(a, *M, l * a->n_targets + i) };
	return ad;
}
