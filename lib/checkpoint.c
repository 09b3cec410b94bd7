/* checkpoint.c - training checkpoints: a small binary file, written
 * atomically, holding what a resumed run needs to continue exactly.
 *
 * Layout (host byte order; a checkpoint is for resuming on the machine
 * that wrote it, not for exchange):
 *   "PARMCKPT" u32 version  u32 fingerprint bytes  fingerprint
 *   i64 step epoch pos  u64 rng  u64 n_params  i64 adam_step
 *   f32 params[n]  m[n]  v[n]  u64 FNV-1a of everything before it
 */
#include <parm/trainer.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <parm/util.h>

#define CKPT_MAGIC "PARMCKPT"
#define CKPT_VERSION 1u

typedef struct {
	FILE *f;
	uint64_t sum;
	int err;
} sink;

static void put(sink *s, const void *p, size_t n)
{
	if (!s->err && fwrite(p, 1, n, s->f) != n)
		s->err = 1;
	s->sum = parm_fnv1a(s->sum, p, n);
}

static void put_body(sink *s, const parm_ckpt *c)
{
	uint32_t version = CKPT_VERSION, fl = (uint32_t)strlen(c->fingerprint ? c->fingerprint : "");
	int64_t ints[3] = { c->step, c->epoch, c->pos }, astep = c->adam_step;
	uint64_t n = c->n_params;
	put(s, CKPT_MAGIC, 8);
	put(s, &version, 4);
	put(s, &fl, 4);
	put(s, c->fingerprint ? c->fingerprint : "", fl);
	put(s, ints, sizeof ints);
	put(s, &c->rng, 8);
	put(s, &n, 8);
	put(s, &astep, 8);
	put(s, c->params, n * sizeof(float));
	put(s, c->m, n * sizeof(float));
	put(s, c->v, n * sizeof(float));
	uint64_t sum = s->sum;
	put(s, &sum, 8);
}

int parm_ckpt_save(const char *path, const parm_ckpt *c)
{
	size_t len = strlen(path) + 5;
	char *tmp = parm_xmalloc(len);
	snprintf(tmp, len, "%s.tmp", path);
	sink s = { .f = fopen(tmp, "wb"), .sum = PARM_FNV_SEED };
	if (!s.f) {
		parm_failc(PARM_ESYS, "%s: cannot write checkpoint: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	put_body(&s, c);
	int bad = s.err | (fflush(s.f) != 0) | (fsync(fileno(s.f)) != 0);
	bad |= fclose(s.f) != 0;
	if (bad || rename(tmp, path) != 0) {
		parm_failc(PARM_ESYS, "%s: cannot write checkpoint: %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

typedef struct {
	FILE *f;
	uint64_t sum;
	uint64_t left;          /* bytes of the file not read yet */
} source;

static int get(source *s, void *p, size_t n)
{
	if (n > s->left || fread(p, 1, n, s->f) != n)
		return -1;
	s->left -= n;
	s->sum = parm_fnv1a(s->sum, p, n);
	return 0;
}

/* n floats, allocated only once the file is known to hold them: a corrupt
 * count must cost an error, not an allocation of what it claims. */
static int get_floats(source *s, float **out, uint64_t n)
{
	if (n > s->left / sizeof(float))
		return -1;
	*out = parm_xmalloc(n * sizeof(float) + 1);
	return get(s, *out, n * sizeof(float));
}

static int get_body(source *s, parm_ckpt *c, const char *path)
{
	char magic[8];
	uint32_t version, fl;
	int64_t ints[3], astep;
	uint64_t n, sum;
	if (get(s, magic, 8) < 0 || memcmp(magic, CKPT_MAGIC, 8))
		return parm_fail("%s: not a parm-train checkpoint", path);
	if (get(s, &version, 4) < 0 || version != CKPT_VERSION)
		return parm_fail("%s: checkpoint version %u, expected %u", path, version, CKPT_VERSION);
	if (get(s, &fl, 4) < 0 || fl > (1u << 20) || fl > s->left)
		return parm_fail("%s: checkpoint is truncated or corrupt", path);
	c->fingerprint = parm_xcalloc(fl + 1, 1);
	if (get(s, c->fingerprint, fl) < 0 || get(s, ints, sizeof ints) < 0 ||
	    get(s, &c->rng, 8) < 0 || get(s, &n, 8) < 0 || get(s, &astep, 8) < 0 ||
	    n > (s->left / 3) / sizeof(float) || get_floats(s, &c->params, n) < 0 ||
	    get_floats(s, &c->m, n) < 0 || get_floats(s, &c->v, n) < 0)
		return parm_fail("%s: checkpoint is truncated or corrupt", path);
	uint64_t want = s->sum;
	if (fread(&sum, 1, 8, s->f) != 8 || sum != want)
		return parm_fail("%s: checkpoint checksum mismatch (corrupt file)", path);
	c->step = ints[0];
	c->epoch = ints[1];
	c->pos = ints[2];
	c->n_params = (size_t)n;
	c->adam_step = astep;
	return 0;
}

/* The file's size bounds every count in it. */
static int file_size(FILE *f, uint64_t *size)
{
	long end;
	if (fseek(f, 0, SEEK_END) < 0 || (end = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
		return -1;
	*size = (uint64_t)end;
	return 0;
}

int parm_ckpt_read(FILE *f, const char *name, parm_ckpt *c)
{
	source s = { .f = f, .sum = PARM_FNV_SEED };
	*c = (parm_ckpt){ 0 };
	if (file_size(f, &s.left) < 0)
		return parm_failc(PARM_ESYS, "%s: cannot resume: %s", name, strerror(errno));
	int rc = get_body(&s, c, name);
	if (rc < 0)
		parm_ckpt_free(c);
	return rc;
}

int parm_ckpt_load(const char *path, parm_ckpt *c)
{
	FILE *f = fopen(path, "rb");
	*c = (parm_ckpt){ 0 };
	if (!f)
		return parm_failc(PARM_ESYS, "%s: cannot resume: %s", path, strerror(errno));
	int rc = parm_ckpt_read(f, path, c);
	fclose(f);
	return rc;
}

void parm_ckpt_free(parm_ckpt *c)
{
	free(c->fingerprint);
	free(c->params);
	free(c->m);
	free(c->v);
	*c = (parm_ckpt){ 0 };
}

/* The line of s that starts with key "k=" (klen bytes with the '='). */
static const char *find_line(const char *s, const char *key, size_t klen)
{
	for (const char *p = s; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, klen))
			return p;
	return NULL;
}

static size_t line_len(const char *p)
{
	const char *e = strchr(p, '\n');
	return e ? (size_t)(e - p) : strlen(p);
}

/* The first line of a missing from b or different there, described. */
static int first_difference(char *out, size_t n, const char *a, const char *b,
			    const char *a_is, const char *b_is)
{
	for (const char *p = a; *p; p += line_len(p) + (p[line_len(p)] == '\n')) {
		const char *eq = memchr(p, '=', line_len(p));
		size_t klen = eq ? (size_t)(eq - p) + 1 : line_len(p);
		const char *q = find_line(b, p, klen);
		if (!q || line_len(q) != line_len(p) || memcmp(p, q, line_len(p))) {
			snprintf(out, n, "%s %.*s, %s %.*s", a_is, (int)line_len(p), p, b_is,
				 q ? (int)line_len(q) : 4, q ? q : "none");
			return 1;
		}
	}
	return 0;
}

const char *parm_ckpt_mismatch(const char *saved, const char *now)
{
	static char msg[512];
	if (first_difference(msg, sizeof msg, saved, now, "checkpoint", "this run"))
		return msg;
	if (first_difference(msg, sizeof msg, now, saved, "this run", "checkpoint"))
		return msg;
	return NULL;
}
