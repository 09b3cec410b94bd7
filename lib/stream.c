/* stream.c - the parm stream (msgpack maps on a pipe) and its feedback FIFO.
 *
 * Every record is one msgpack map with short string keys, so a stage can be
 * written in any language with a msgpack library (man parm-stream.5).  The
 * reader copies what it keeps out of msgpack's zone into buffers it owns and
 * reuses, so a round of dense logits costs one memcpy per step.
 */
#include <parm/stream.h>
#include <parm/util.h>

#include <msgpack.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (256 * 1024)        /* most read at once; the least is 4 KiB */
#define AUTO_FLUSH (4 * 1024 * 1024)    /* bytes buffered before writing anyway */
#define MAX_VOCAB (1 << 24)

/* ---- little-endian float and int32 arrays ---- */

static int host_is_big_endian(void)
{
	return __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;
}

static void swap32(void *p, size_t n)
{
	uint32_t *w = p;
	for (size_t i = 0; i < n; i++)
		w[i] = __builtin_bswap32(w[i]);
}

/* dst[n] = the n little-endian 32-bit values at src (unaligned) */
static void copy_le32(void *dst, const char *src, size_t n)
{
	memcpy(dst, src, n * 4);
	if (host_is_big_endian())
		swap32(dst, n);
}

/* ---- growable buffers ---- */

static void grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	*p = parm_xrealloc(*p, n * size);
	*cap = n;
}

/* ---- looking at msgpack objects ---- */

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	size_t len = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
		    !memcmp(k->via.str.ptr, key, len))
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

/* 0 and *out set; -1 not an integer; -2 out of [lo, hi] */
static int obj_int(const msgpack_object *o, long lo, long hi, long *out)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > (uint64_t)hi)
			return -2;
		*out = (long)o->via.u64;
	} else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		if (o->via.i64 < lo)
			return -2;
		*out = (long)o->via.i64;
	} else {
		return -1;
	}
	return *out < lo || *out > hi ? -2 : 0;
}

static int field_int(const msgpack_object *map, const char *rec, const char *key,
		     long lo, long hi, int *out)
{
	const msgpack_object *o = map_get(map, key);
	long v;
	int r;
	if (!o)
		return parm_fail("malformed stream: %s has no \"%s\"", rec, key);
	if ((r = obj_int(o, lo, hi, &v)) == -1)
		return parm_fail("malformed stream: %s \"%s\" is not an integer", rec, key);
	if (r == -2)
		return parm_fail("malformed stream: %s \"%s\" is out of range [%ld, %ld]",
				 rec, key, lo, hi);
	*out = (int)v;
	return 0;
}

/* A str or bin field (bytes either way); NULL with parm_error when absent
 * or of another type, unless optional and absent/nil (then *absent = 1). */
static const msgpack_object *field_bytes(const msgpack_object *map, const char *rec,
					 const char *key, int optional, int *absent)
{
	const msgpack_object *o = map_get(map, key);
	if (absent)
		*absent = 0;
	if (optional && (!o || o->type == MSGPACK_OBJECT_NIL)) {
		*absent = 1;
		return NULL;
	}
	if (!o)
		return parm_failp("malformed stream: %s has no \"%s\"", rec, key);
	if (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN)
		return parm_failp("malformed stream: %s \"%s\" is not a string", rec, key);
	return o;
}

static const msgpack_object *field_array(const msgpack_object *map, const char *rec,
					 const char *key)
{
	const msgpack_object *o = map_get(map, key);
	if (!o)
		return parm_failp("malformed stream: %s has no \"%s\"", rec, key);
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return parm_failp("malformed stream: %s \"%s\" is not an array", rec, key);
	return o;
}

/* str and bin share their layout in msgpack_object */
static const char *bytes_ptr(const msgpack_object *o) { return o->via.str.ptr; }
static uint32_t bytes_len(const msgpack_object *o) { return o->via.str.size; }

static char *dup_bytes(const msgpack_object *o)
{
	char *s = parm_xmalloc(bytes_len(o) + 1);
	memcpy(s, bytes_ptr(o), bytes_len(o));
	s[bytes_len(o)] = '\0';
	return s;
}

static int is_key(const msgpack_object *o, const char *s)
{
	size_t len = strlen(s);
	return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len &&
	       !memcmp(o->via.str.ptr, s, len);
}

/* ---- bounding a record before it is parsed ---- */

/* msgpack-c reserves an array's elements as soon as it reads the count, so a
 * corrupt count of 2^32 costs 64 GiB before anything can be checked.  The
 * reader therefore finds where a record ends from its type and length bytes
 * alone, within limits, and gives msgpack-c only whole records: memory then
 * follows the bytes that really arrived.  (msgpack-c's C API has no limits;
 * its C++ unpack_limit has no C counterpart.) */
struct skim_limits {
	uint64_t max_count;             /* elements of one array or map */
	uint64_t max_item;              /* bytes of one str, bin or ext */
	uint64_t max_record;            /* bytes of one whole record */
};

/* Length bytes after the type byte c, for 0xc0..0xdf; -1: not msgpack. */
static const signed char length_bytes[32] = {
	0, -1, 0, 0, 1, 2, 4, 1, 2, 4, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 2, 4, 2, 4 };
/* Payload bytes of 0xc0..0xdf besides any length (ext: its type byte). */
static const unsigned char fixed_payload[32] = {
	0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 4, 8, 1, 2, 4, 8,
	1, 2, 4, 8, 2, 3, 5, 9, 17, 0, 0, 0, 0, 0, 0, 0 };

/* Bytes of type and length that start an object (0: not msgpack). */
static int head_bytes(int c)
{
	if (c < 0xc0 || c > 0xdf)
		return 1;
	return length_bytes[c - 0xc0] < 0 ? 0 : 1 + length_bytes[c - 0xc0];
}

/* An object's shape from its head p[0..head_bytes): *payload bytes follow
 * it, or *count elements (*is_map: key-value pairs). */
static void object_shape(const unsigned char *p, uint64_t *payload, uint64_t *count,
			 int *is_map)
{
	int c = p[0], w;
	uint64_t n = 0;
	*payload = 0, *count = 0, *is_map = 0;
	if (c <= 0x7f || c >= 0xe0)
		return;
	if (c <= 0x9f) {                        /* fixmap, fixarray */
		*count = c & 0x0f;
		*is_map = c <= 0x8f;
		return;
	}
	if (c <= 0xbf) {                        /* fixstr */
		*payload = c & 0x1f;
		return;
	}
	w = length_bytes[c - 0xc0];
	for (int i = 1; i <= w; i++)
		n = n << 8 | p[i];
	if (c >= 0xdc) {                        /* array16/32, map16/32 */
		*count = n;
		*is_map = c >= 0xde;
		return;
	}
	*payload = fixed_payload[c - 0xc0] + n;
}

static int too_large(const struct skim_limits *lim)
{
	parm_fail("malformed stream: a record claims more than %llu bytes",
		  (unsigned long long)lim->max_record);
	return -2;
}

/* How many bytes the msgpack object at p[0..n) spans: 1 and *size when it
 * is all there, 0 when more bytes are needed, -1 when it is not msgpack,
 * -2 when it breaks a limit (parm_error set). */
static int skim_object(const unsigned char *p, size_t n, const struct skim_limits *lim,
		       size_t *size)
{
	uint64_t pos = 0, pending = 1, payload, count;
	int is_map, head;
	while (pending > 0) {
		if (pending > lim->max_record - pos)    /* every object takes a byte */
			return too_large(lim);
		if (pos >= n)
			return 0;
		if (!(head = head_bytes(p[pos])))
			return parm_fail("malformed stream: not msgpack (byte 0x%02x)", p[pos]);
		if (pos + head > n)
			return 0;
		object_shape(p + pos, &payload, &count, &is_map);
		if (count > lim->max_count)
			return parm_fail("malformed stream: an array or map claims %llu elements",
					 (unsigned long long)count) * 2;
		if (payload > lim->max_item)
			return parm_fail("malformed stream: a string claims %llu bytes",
					 (unsigned long long)payload) * 2;
		pending += (is_map ? 2 * count : count) - 1;
		pos += head + payload;
		if (pos > lim->max_record)
			return too_large(lim);
	}
	if (pos > n)
		return 0;
	*size = pos;
	return 1;
}

/* Bytes read and not yet parsed, handed to msgpack-c a whole object at a
 * time; the reader of the stream and the feedback channel each have one. */
struct msgbuf {
	unsigned char *buf;             /* buf[pos..len) not parsed yet */
	size_t len, pos, cap;
	struct skim_limits lim;
	msgpack_unpacked obj;           /* the last object; points into buf */
};

static void msgbuf_init(struct msgbuf *m, struct skim_limits lim)
{
	memset(m, 0, sizeof *m);
	m->lim = lim;
	msgpack_unpacked_init(&m->obj);
}

static void msgbuf_free(struct msgbuf *m)
{
	msgpack_unpacked_destroy(&m->obj);
	free(m->buf);
}

/* Room for at least n more bytes at m->buf + m->len (parsed bytes dropped). */
static void *msgbuf_room(struct msgbuf *m, size_t n)
{
	if (m->pos > 0) {
		memmove(m->buf, m->buf + m->pos, m->len - m->pos);
		m->len -= m->pos;
		m->pos = 0;
	}
	grow((void **)&m->buf, &m->cap, m->len + n, 1);
	return m->buf + m->len;
}

/* The next whole object into m->obj: 1 done, 0 need more bytes, -1 not
 * msgpack, -2 beyond the limits. */
static int msgbuf_next(struct msgbuf *m)
{
	size_t size = 0, off = 0;
	int got = m->buf ? skim_object(m->buf + m->pos, m->len - m->pos, &m->lim, &size) : 0;
	if (got <= 0)
		return got;
	if (msgpack_unpack_next(&m->obj, (const char *)m->buf + m->pos, size, &off) !=
	    MSGPACK_UNPACK_SUCCESS || off != size)
		return parm_fail("malformed stream: not msgpack");
	m->pos += size;
	return 1;
}

/* ---- reader ---- */

#define MAX_ITEM (64u << 20)            /* a str or bin: 4 * MAX_VOCAB */
#define MAX_RECORD (1ull << 30)
#define DEFAULT_TIMEOUT 120             /* seconds; PARM_STREAM_TIMEOUT */

struct parm_reader {
	int fd;
	int watch_fd;                   /* our output's reader, or -1 */
	int timeout_ms;                 /* silence allowed inside a record */
	int n_vocab;                    /* 0 until the header is read */
	int seen_bytes;                 /* any byte read: tells "empty" apart */
	int finished;                   /* FIN read */
	int aborted;                    /* an abort record read */
	struct msgbuf in;
	/* storage of the current record, reused */
	parm_step *steps;
	size_t steps_cap;
	float *logits;
	size_t logits_cap;
	int32_t *ids;
	size_t ids_cap;
	int *tokens;
	size_t tokens_cap;
	char *prompt, *meta, *reason;
	size_t prompt_cap, meta_cap, reason_cap;
};

int parm_stream_timeout(void)
{
	const char *s = getenv("PARM_STREAM_TIMEOUT");
	double t;
	if (!s || !*s)
		return DEFAULT_TIMEOUT * 1000;
	if (parm_parse_float(s, &t) < 0 || !(t > 0) || t > 86400) {
		parm_warn("PARM_STREAM_TIMEOUT=%s is not a number of seconds in (0, 86400]; "
		     "using %d", s, DEFAULT_TIMEOUT);
		return DEFAULT_TIMEOUT * 1000;
	}
	return t * 1000 < 1 ? 1 : (int)(t * 1000);
}

/* A pipe of 1 MB, not Linux's 64 KB: a step of 32000 logits is 128 KB,
 * which through 64 KB took two or three wake-ups of each side, a cost
 * per token that showed against decoding in-process.  Either end may
 * ask; a refusal (another system, a lower pipe-max-size) is harmless. */
static void widen_pipe(int fd)
{
#ifdef F_SETPIPE_SZ
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#else
	(void)fd;
#endif
}

parm_reader *parm_reader_new(int fd)
{
	parm_reader *r = parm_xcalloc(1, sizeof *r);
	widen_pipe(fd);
	r->fd = fd;
	r->watch_fd = -1;
	r->timeout_ms = parm_stream_timeout();
	msgbuf_init(&r->in, (struct skim_limits){ MAX_VOCAB, MAX_ITEM, MAX_RECORD });
	return r;
}

void parm_reader_watch(parm_reader *r, int out_fd)
{
	r->watch_fd = out_fd;
}

void parm_reader_free(parm_reader *r)
{
	if (!r)
		return;
	msgbuf_free(&r->in);
	free(r->steps);
	free(r->logits);
	free(r->ids);
	free(r->tokens);
	free(r->prompt);
	free(r->meta);
	free(r->reason);
	free(r);
}

static int output_gone(void)
{
	parm_fail("the reader of our output went away");
	errno = EPIPE;
	return -1;
}

/* Wait until the input can be read.  Between records a producer may think
 * for as long as it likes; inside one, silence for the timeout means the
 * record will never end (a corrupt length, a stage stuck), so say so rather
 * than wait forever for bytes while the producer waits for a choice. */
static int wait_input(parm_reader *r)
{
	struct pollfd p[2] = { { r->fd, POLLIN, 0 }, { r->watch_fd, 0, 0 } };
	int inside = r->in.len > r->in.pos;
	int n = poll(p, r->watch_fd >= 0 ? 2 : 1, inside ? r->timeout_ms : -1);
	if (n < 0)
		return errno == EINTR ? 0 : parm_failc(PARM_ESYS, "waiting for the stream: %s", strerror(errno));
	if (n == 0)
		return parm_fail("the stream stalled inside a record (%zu bytes came, then "
				 "nothing for %g s; see PARM_STREAM_TIMEOUT)",
				 r->in.len - r->in.pos, r->timeout_ms / 1000.0);
	if (r->watch_fd >= 0 && (p[1].revents & (POLLERR | POLLHUP | POLLNVAL)))
		return output_gone();
	return 1;
}

/* At the end of input, a stage whose own reader left first (the sampler
 * exits, then the producer sees it and stops) has nothing to report. */
static int input_ended(parm_reader *r)
{
	struct pollfd p = { r->watch_fd, 0, 0 };
	if (r->watch_fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)))
		return output_gone();
	return parm_failc(PARM_EEOF, "unexpected end of stream");
}

/* Read more bytes: 1 got some, 0 end of input, -1 error. */
static int fill(parm_reader *r)
{
	/* Room for what is pending again (a record in progress doubles), so a
	 * short stream never touches 256 KiB it does not need. */
	size_t pending = r->in.len - r->in.pos;
	size_t chunk = pending < 4096 ? 4096 : pending > READ_CHUNK ? READ_CHUNK : pending;
	void *room = msgbuf_room(&r->in, chunk);
	for (;;) {
		int w = wait_input(r);
		if (w < 0)
			return -1;
		if (w == 0)
			continue;
		ssize_t n = read(r->fd, room, r->in.cap - r->in.len);
		if (n > 0) {
			r->in.len += n;
			r->seen_bytes = 1;
			return 1;
		}
		if (n == 0)
			return 0;
		if (errno != EINTR && errno != EAGAIN)
			return parm_failc(PARM_ESYS, "reading the stream: %s", strerror(errno));
	}
}

/* The next whole msgpack object into r->in.obj. */
static int next_object(parm_reader *r)
{
	int got;
	errno = 0;                      /* EPIPE below means our reader left */
	while ((got = msgbuf_next(&r->in)) == 0) {
		if ((got = fill(r)) < 0)
			return -1;
		if (got == 0)
			return input_ended(r);
	}
	if (got < 0 && !r->n_vocab)
		return parm_fail("not a parm stream");
	return got < 0 ? -1 : 0;
}

/* Past the header, no item is longer than the vocabulary's logits or a
 * long prompt, and no array longer than the vocabulary or a long context. */
static void limit_by_header(parm_reader *r, int n_vocab)
{
	uint64_t v = (uint64_t)n_vocab;
	r->in.lim.max_count = v > (1u << 22) ? v : (1u << 22);
	r->in.lim.max_item = 4 * v > (16u << 20) ? 4 * v : (16u << 20);
}

/* ---- header ---- */

static int read_fingerprint(const msgpack_object *map, uint64_t *out)
{
	const msgpack_object *o = field_bytes(map, "header", "fingerprint", 0, NULL);
	char hex[17];
	if (!o)
		return -1;
	if (bytes_len(o) != 16)
		return parm_fail("malformed stream: header \"fingerprint\" is not 16 hex digits");
	memcpy(hex, bytes_ptr(o), 16);
	hex[16] = '\0';
	if (strspn(hex, "0123456789abcdefABCDEF") != 16)
		return parm_fail("malformed stream: header \"fingerprint\" is not 16 hex digits");
	*out = strtoull(hex, NULL, 16);
	return 0;
}

static int read_pieces(const msgpack_object *map, parm_header *h)
{
	const msgpack_object *a = field_array(map, "header", "pieces");
	if (!a)
		return -1;
	if (a->via.array.size != (uint32_t)h->n_vocab)
		return parm_fail("malformed stream: header has %u pieces for n_vocab %d",
				 a->via.array.size, h->n_vocab);
	h->pieces = parm_xcalloc(h->n_vocab, sizeof *h->pieces);
	h->piece_len = parm_xcalloc(h->n_vocab, sizeof *h->piece_len);
	for (int i = 0; i < h->n_vocab; i++) {
		const msgpack_object *o = &a->via.array.ptr[i];
		if (o->type != MSGPACK_OBJECT_BIN && o->type != MSGPACK_OBJECT_STR)
			return parm_fail("malformed stream: header piece %d is not bytes", i);
		h->pieces[i] = dup_bytes(o);
		h->piece_len[i] = bytes_len(o);
	}
	return 0;
}

static int read_chain(const msgpack_object *map, parm_header *h)
{
	const msgpack_object *a = map_get(map, "chain");
	if (!a || a->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (a->type != MSGPACK_OBJECT_ARRAY)
		return parm_fail("malformed stream: header \"chain\" is not an array");
	h->chain = parm_xcalloc(a->via.array.size, sizeof *h->chain);
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		const msgpack_object *o = &a->via.array.ptr[i];
		if (o->type != MSGPACK_OBJECT_STR)
			return parm_fail("malformed stream: header chain entry %u is not a string", i);
		h->chain[h->n_chain++] = dup_bytes(o);
	}
	return 0;
}

/* "eog": the ids that end generation; absent (older writers), eos. */
static int read_eog(const msgpack_object *map, parm_header *h)
{
	const msgpack_object *a = map_get(map, "eog");
	if (!a || a->type == MSGPACK_OBJECT_NIL) {
		h->n_eog = h->eos >= 0;
		h->eog = parm_xmemdup(&h->eos, sizeof h->eos);
		return 0;
	}
	if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size > (uint32_t)h->n_vocab)
		return parm_fail("malformed stream: header \"eog\" is not an array of at most n_vocab ids");
	h->eog = parm_xcalloc(a->via.array.size + 1, sizeof *h->eog);
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		long id;
		if (obj_int(&a->via.array.ptr[i], 0, h->n_vocab - 1, &id) < 0)
			return parm_fail("malformed stream: header \"eog\" entry %u is not a token id", i);
		h->eog[h->n_eog++] = (int)id;
	}
	return 0;
}

int parm_header_is_eog(const parm_header *h, int tok)
{
	for (int i = 0; tok >= 0 && i < h->n_eog; i++)
		if (h->eog[i] == tok)
			return 1;
	return 0;
}

static int check_magic_version(const msgpack_object *map)
{
	const msgpack_object *v;
	long version;
	if (map->type != MSGPACK_OBJECT_MAP || !is_key(map_get(map, "magic"), PARM_STREAM_MAGIC))
		return parm_fail("not a parm stream");
	v = map_get(map, "version");
	if (!v || obj_int(v, LONG_MIN, LONG_MAX, &version) < 0)
		return parm_fail("malformed stream: header has no integer \"version\"");
	if (version != PARM_STREAM_VERSION)
		return parm_failc(PARM_EUNSUPPORTED, "stream version %ld is not supported (this is version %d)",
				 version, PARM_STREAM_VERSION);
	if (!is_key(map_get(map, "type"), "header"))
		return parm_fail("malformed stream: the first record is not a header");
	return 0;
}

static int optional_token(const msgpack_object *map, const char *key, int n_vocab, int *out)
{
	const msgpack_object *o = map_get(map, key);
	*out = -1;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	return field_int(map, "header", key, -1, n_vocab - 1, out);
}

static int parse_header(const msgpack_object *map, parm_header *h)
{
	const msgpack_object *fb;
	int absent;
	if (check_magic_version(map) < 0)
		return -1;
	h->version = PARM_STREAM_VERSION;
	if (field_int(map, "header", "n_vocab", 1, MAX_VOCAB, &h->n_vocab) < 0 ||
	    read_fingerprint(map, &h->fingerprint) < 0 ||
	    optional_token(map, "bos", h->n_vocab, &h->bos) < 0 ||
	    optional_token(map, "eos", h->n_vocab, &h->eos) < 0 || read_eog(map, h) < 0)
		return -1;
	fb = field_bytes(map, "header", "feedback", 1, &absent);
	if (!fb && !absent)
		return -1;
	h->feedback = fb ? dup_bytes(fb) : NULL;
	if (read_pieces(map, h) < 0 || read_chain(map, h) < 0)
		return -1;
	return 0;
}

/* An abort record: the stage before failed (and said why). */
static int is_abort(parm_reader *r, const msgpack_object *map)
{
	if (map->type != MSGPACK_OBJECT_MAP || !is_key(map_get(map, "type"), "abort"))
		return 0;
	r->aborted = 1;
	parm_fail("the stage before this one failed");
	return 1;
}

int parm_reader_upstream_failed(const parm_reader *r)
{
	return r->aborted;
}

int parm_read_header(parm_reader *r, parm_header *h)
{
	memset(h, 0, sizeof *h);
	if (next_object(r) < 0) {
		if (!r->seen_bytes && parm_errcode() == PARM_EEOF)
			parm_failc(PARM_EEOF, "unexpected end of stream (no header: empty input)");
		return -1;
	}
	if (is_abort(r, &r->in.obj.data))
		return -1;
	if (parse_header(&r->in.obj.data, h) < 0) {
		parm_header_free(h);
		return -1;
	}
	r->n_vocab = h->n_vocab;
	limit_by_header(r, h->n_vocab);
	return 0;
}

void parm_header_free(parm_header *h)
{
	if (!h)
		return;
	if (h->pieces)
		for (int i = 0; i < h->n_vocab; i++)
			free(h->pieces[i]);
	free(h->pieces);
	free(h->piece_len);
	free(h->feedback);
	for (int i = 0; i < h->n_chain; i++)
		free(h->chain[i]);
	free(h->chain);
	free(h->eog);
	memset(h, 0, sizeof *h);
}

void parm_header_copy(parm_header *dst, const parm_header *src, const char *stage_json)
{
	*dst = *src;
	dst->pieces = parm_xcalloc(src->n_vocab, sizeof *dst->pieces);
	dst->piece_len = parm_xmemdup(src->piece_len, src->n_vocab * sizeof *src->piece_len);
	for (int i = 0; i < src->n_vocab; i++) {
		dst->pieces[i] = parm_xmalloc(src->piece_len[i] + 1);
		memcpy(dst->pieces[i], src->pieces[i], src->piece_len[i]);
		dst->pieces[i][src->piece_len[i]] = '\0';
	}
	dst->feedback = src->feedback ? parm_xstrdup(src->feedback) : NULL;
	dst->eog = parm_xcalloc(src->n_eog + 1, sizeof *dst->eog);
	if (src->n_eog)
		memcpy(dst->eog, src->eog, src->n_eog * sizeof *src->eog);
	dst->chain = parm_xcalloc(src->n_chain + 1, sizeof *dst->chain);
	for (int i = 0; i < src->n_chain; i++)
		dst->chain[i] = parm_xstrdup(src->chain[i]);
	if (stage_json)
		dst->chain[dst->n_chain++] = parm_xstrdup(stage_json);
}

/* ---- records ---- */

/* Copy a str/bin into a reused NUL-ended buffer. */
static char *keep_bytes(char **buf, size_t *cap, const msgpack_object *o)
{
	grow((void **)buf, cap, bytes_len(o) + 1, 1);
	memcpy(*buf, bytes_ptr(o), bytes_len(o));
	(*buf)[bytes_len(o)] = '\0';
	return *buf;
}

static int parse_tokens(parm_reader *r, const msgpack_object *map, parm_record *rec)
{
	const msgpack_object *a = field_array(map, "start", "tokens");
	long v;
	if (!a)
		return -1;
	grow((void **)&r->tokens, &r->tokens_cap, a->via.array.size, sizeof *r->tokens);
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		if (obj_int(&a->via.array.ptr[i], 0, r->n_vocab - 1, &v) < 0)
			return parm_fail("malformed stream: start token %u is not a token id "
					 "in [0, %d)", i, r->n_vocab);
		r->tokens[i] = (int)v;
	}
	rec->tokens = r->tokens;
	rec->n_tokens = (int)a->via.array.size;
	return 0;
}

static int parse_start(parm_reader *r, const msgpack_object *map, parm_record *rec)
{
	const msgpack_object *prompt, *meta;
	int absent;
	if (field_int(map, "start", "seq", 0, INT_MAX, &rec->seq) < 0)
		return -1;
	if (!(prompt = field_bytes(map, "start", "prompt", 0, NULL)))
		return -1;
	meta = field_bytes(map, "start", "meta", 1, &absent);
	if (!meta && !absent)
		return -1;
	rec->prompt = keep_bytes(&r->prompt, &r->prompt_cap, prompt);
	rec->meta = meta ? keep_bytes(&r->meta, &r->meta_cap, meta) : NULL;
	return parse_tokens(r, map, rec);
}

static int parse_end(parm_reader *r, const msgpack_object *map, parm_record *rec)
{
	const msgpack_object *reason;
	if (field_int(map, "end", "seq", 0, INT_MAX, &rec->seq) < 0 ||
	    field_int(map, "end", "tok", -1, r->n_vocab - 1, &rec->tok) < 0 ||
	    field_int(map, "end", "length", 0, INT_MAX, &rec->length) < 0)
		return -1;
	if (!(reason = field_bytes(map, "end", "reason", 0, NULL)))
		return -1;
	rec->reason = keep_bytes(&r->reason, &r->reason_cap, reason);
	return 0;
}

/* The logits (and ids) bins of a step, checked against the vocabulary:
 * *k entries, sparse or dense. */
static int step_shape(const msgpack_object *step, int n_vocab, const char *what,
		      int *k, int *sparse)
{
	const msgpack_object *logits, *ids;
	if (step->type != MSGPACK_OBJECT_MAP)
		return parm_fail("malformed stream: %s is not a map", what);
	logits = map_get(step, "logits");
	ids = map_get(step, "ids");
	if (!logits || logits->type != MSGPACK_OBJECT_BIN)
		return parm_fail("malformed stream: %s has no \"logits\" bin", what);
	*sparse = ids && ids->type != MSGPACK_OBJECT_NIL;
	if (*sparse && ids->type != MSGPACK_OBJECT_BIN)
		return parm_fail("malformed stream: %s \"ids\" is not a bin", what);
	if (*sparse && ids->via.bin.size != logits->via.bin.size)
		return parm_fail("malformed stream: %s has %u bytes of ids for %u of logits",
				 what, ids->via.bin.size, logits->via.bin.size);
	if (logits->via.bin.size % 4 || logits->via.bin.size / 4 > (uint32_t)n_vocab ||
	    (!*sparse && logits->via.bin.size / 4 != (uint32_t)n_vocab))
		return parm_fail("malformed stream: %s logits bin has %u bytes for n_vocab %d",
				 what, logits->via.bin.size, n_vocab);
	*k = logits->via.bin.size / 4;
	return 0;
}

static int copy_ids(int32_t *ids, const msgpack_object *bin, int k, int n_vocab,
		    const char *what)
{
	copy_le32(ids, bin->via.bin.ptr, k);
	for (int i = 0; i < k; i++)
		if (ids[i] < 0 || ids[i] >= n_vocab)
			return parm_fail("malformed stream: %s id %d is out of [0, %d)",
					 what, ids[i], n_vocab);
	return 0;
}

/* Second pass: the steps are known to be well formed; copy them out. */
static int copy_steps(parm_reader *r, const msgpack_object *a, parm_record *rec)
{
	size_t off_logits = 0, off_ids = 0;
	char what[64];
	for (int i = 0; i < rec->n_steps; i++) {
		const msgpack_object *m = &a->via.array.ptr[i];
		parm_step *s = &r->steps[i];
		snprintf(what, sizeof what, "round step %d", i);
		if (field_int(m, what, "seq", 0, INT_MAX, &s->seq) < 0 ||
		    field_int(m, what, "tok", -1, r->n_vocab - 1, &s->tok) < 0)
			return -1;
		s->logits = r->logits + off_logits;
		copy_le32(s->logits, map_get(m, "logits")->via.bin.ptr, s->k);
		off_logits += s->k;
		s->ids = NULL;
		if (s->sparse) {
			s->ids = r->ids + off_ids;
			if (copy_ids(s->ids, map_get(m, "ids"), s->k, r->n_vocab, what) < 0)
				return -1;
			off_ids += s->k;
		}
	}
	return 0;
}

static int parse_round(parm_reader *r, const msgpack_object *map, parm_record *rec)
{
	const msgpack_object *a = field_array(map, "round", "steps");
	size_t n_logits = 0, n_ids = 0;
	char what[64];
	if (!a)
		return -1;
	rec->n_steps = (int)a->via.array.size;
	grow((void **)&r->steps, &r->steps_cap, rec->n_steps, sizeof *r->steps);
	for (int i = 0; i < rec->n_steps; i++) {
		parm_step *s = &r->steps[i];
		snprintf(what, sizeof what, "round step %d", i);
		if (step_shape(&a->via.array.ptr[i], r->n_vocab, what, &s->k, &s->sparse) < 0)
			return -1;
		n_logits += s->k;
		n_ids += s->sparse ? s->k : 0;
	}
	grow((void **)&r->logits, &r->logits_cap, n_logits, sizeof *r->logits);
	grow((void **)&r->ids, &r->ids_cap, n_ids, sizeof *r->ids);
	rec->steps = r->steps;
	return copy_steps(r, a, rec);
}

static int parse_record(parm_reader *r, const msgpack_object *map, parm_record *rec)
{
	const msgpack_object *type;
	if (map->type != MSGPACK_OBJECT_MAP)
		return parm_fail("malformed stream: a record is not a map");
	type = map_get(map, "type");
	if (!type || type->type != MSGPACK_OBJECT_STR)
		return parm_fail("malformed stream: a record has no \"type\" string");
	if (is_key(type, "round")) {
		rec->type = PARM_REC_ROUND;
		return parse_round(r, map, rec);
	}
	if (is_key(type, "start")) {
		rec->type = PARM_REC_START;
		return parse_start(r, map, rec);
	}
	if (is_key(type, "end")) {
		rec->type = PARM_REC_END;
		return parse_end(r, map, rec);
	}
	if (is_key(type, "fin")) {
		rec->type = PARM_REC_FIN;
		r->finished = 1;
		return 0;
	}
	return parm_fail("malformed stream: unknown record type \"%.*s\"",
			 (int)(type->via.str.size > 32 ? 32 : type->via.str.size),
			 type->via.str.ptr);
}

int parm_read_record(parm_reader *r, parm_record *rec)
{
	memset(rec, 0, sizeof *rec);
	rec->tok = -1;
	if (!r->n_vocab)
		return parm_fail("parm_read_record: the header was not read");
	if (r->finished) {
		rec->type = PARM_REC_FIN;
		return 0;
	}
	if (next_object(r) < 0 || is_abort(r, &r->in.obj.data))
		return -1;
	return parse_record(r, &r->in.obj.data, rec);
}

/* ---- writer ---- */

struct parm_writer {
	int fd;
	msgpack_sbuffer buf;
	msgpack_packer pk;
};

parm_writer *parm_writer_new(int fd)
{
	parm_writer *w = parm_xcalloc(1, sizeof *w);
	widen_pipe(fd);
	w->fd = fd;
	msgpack_sbuffer_init(&w->buf);
	msgpack_packer_init(&w->pk, &w->buf, msgpack_sbuffer_write);
	return w;
}

void parm_writer_free(parm_writer *w)
{
	if (!w)
		return;
	msgpack_sbuffer_destroy(&w->buf);
	free(w);
}

/* write(2) all of p[n], through partial writes and EINTR */
static int write_all(int fd, const char *p, size_t n, const char *what)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) { /* a non-blocking fd we were given */
			struct pollfd pf = { fd, POLLOUT, 0 };
			poll(&pf, 1, -1);
			continue;
		}
		if (k < 0) {
			int e = errno;
			if (e == EPIPE)
				parm_fail("%s: the reader went away", what);
			else
				parm_failc(PARM_ESYS, "writing %s: %s", what, strerror(e));
			errno = e;
			return -1;
		}
		p += k;
		n -= k;
	}
	return 0;
}

int parm_flush(parm_writer *w)
{
	int r = write_all(w->fd, w->buf.data, w->buf.size, "the stream");
	w->buf.size = 0;
	return r;
}

static int maybe_flush(parm_writer *w)
{
	return w->buf.size >= AUTO_FLUSH ? parm_flush(w) : 0;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

int parm_check_stream_output(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode)))
		return parm_fail("standard output is a %s, which cannot send back the chosen tokens; "
				 "pipe it into a sampler such as parm-sample",
				 S_ISREG(st.st_mode) ? "file" : isatty(fd) ? "terminal" : "device");
	return 0;
}

void parm_write_abort(int fd)
{
	struct stat st;
	msgpack_sbuffer buf;
	msgpack_packer pk;
	if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))
		return;
	signal(SIGPIPE, SIG_IGN);       /* leaving anyway: an error, not a signal */
	msgpack_sbuffer_init(&buf);
	msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	pack_str(&pk, "type");
	pack_str(&pk, "abort");
	ssize_t ignored = write(fd, buf.data, buf.size);   /* the reader may be gone */
	(void)ignored;
	msgpack_sbuffer_destroy(&buf);
}

static void pack_str_or_nil(msgpack_packer *pk, const char *s)
{
	if (s)
		pack_str(pk, s);
	else
		msgpack_pack_nil(pk);
}

/* n little-endian 32-bit values as one bin */
static void pack_le32(msgpack_packer *pk, const void *v, size_t n)
{
	msgpack_pack_bin(pk, n * 4);
	if (!host_is_big_endian()) {
		msgpack_pack_bin_body(pk, v, n * 4);
		return;
	}
	uint32_t *tmp = parm_xmemdup(v, n * 4);
	swap32(tmp, n);
	msgpack_pack_bin_body(pk, tmp, n * 4);
	free(tmp);
}

static void pack_header_body(msgpack_packer *pk, const parm_header *h)
{
	char hex[17];
	snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h->fingerprint);
	pack_str(pk, "fingerprint");
	pack_str(pk, hex);
	pack_str(pk, "bos");
	msgpack_pack_int(pk, h->bos);
	pack_str(pk, "eos");
	msgpack_pack_int(pk, h->eos);
	pack_str(pk, "eog");           /* a header made with eos alone: [eos] */
	int lone = !h->n_eog && h->eos >= 0;
	msgpack_pack_array(pk, lone ? 1 : h->n_eog);
	for (int i = 0; i < (lone ? 1 : h->n_eog); i++)
		msgpack_pack_int(pk, lone ? h->eos : h->eog[i]);
	pack_str(pk, "pieces");
	msgpack_pack_array(pk, h->n_vocab);
	for (int i = 0; i < h->n_vocab; i++) {
		msgpack_pack_bin(pk, h->piece_len[i]);
		msgpack_pack_bin_body(pk, h->pieces[i], h->piece_len[i]);
	}
	pack_str(pk, "feedback");
	pack_str_or_nil(pk, h->feedback);
	pack_str(pk, "chain");
	msgpack_pack_array(pk, h->n_chain);
	for (int i = 0; i < h->n_chain; i++)
		pack_str(pk, h->chain[i]);
}

int parm_write_header(parm_writer *w, const parm_header *h)
{
	msgpack_pack_map(&w->pk, 11);
	pack_str(&w->pk, "type");
	pack_str(&w->pk, "header");
	pack_str(&w->pk, "magic");
	pack_str(&w->pk, PARM_STREAM_MAGIC);
	pack_str(&w->pk, "version");
	msgpack_pack_int(&w->pk, PARM_STREAM_VERSION);
	pack_str(&w->pk, "n_vocab");
	msgpack_pack_int(&w->pk, h->n_vocab);
	pack_header_body(&w->pk, h);
	return maybe_flush(w);
}

int parm_write_start(parm_writer *w, int seq, const char *prompt,
		     const int *tokens, int n_tokens, const char *meta)
{
	msgpack_packer *pk = &w->pk;
	msgpack_pack_map(pk, 5);
	pack_str(pk, "type");
	pack_str(pk, "start");
	pack_str(pk, "seq");
	msgpack_pack_int(pk, seq);
	pack_str(pk, "prompt");
	pack_str(pk, prompt ? prompt : "");
	pack_str(pk, "tokens");
	msgpack_pack_array(pk, n_tokens);
	for (int i = 0; i < n_tokens; i++)
		msgpack_pack_int(pk, tokens[i]);
	pack_str(pk, "meta");
	pack_str_or_nil(pk, meta);
	return maybe_flush(w);
}

static void pack_step(msgpack_packer *pk, const parm_step *s, int n_vocab)
{
	msgpack_pack_map(pk, s->sparse ? 4 : 3);
	pack_str(pk, "seq");
	msgpack_pack_int(pk, s->seq);
	pack_str(pk, "tok");
	msgpack_pack_int(pk, s->tok);
	if (s->sparse) {
		pack_str(pk, "ids");
		pack_le32(pk, s->ids, s->k);
	}
	pack_str(pk, "logits");
	pack_le32(pk, s->logits, s->sparse ? s->k : n_vocab);
}

int parm_write_round(parm_writer *w, int n_steps, const parm_step *steps, int n_vocab)
{
	msgpack_pack_map(&w->pk, 2);
	pack_str(&w->pk, "type");
	pack_str(&w->pk, "round");
	pack_str(&w->pk, "steps");
	msgpack_pack_array(&w->pk, n_steps);
	for (int i = 0; i < n_steps; i++)
		pack_step(&w->pk, &steps[i], n_vocab);
	return maybe_flush(w);
}

int parm_write_end(parm_writer *w, int seq, int tok, int length, const char *reason)
{
	msgpack_packer *pk = &w->pk;
	msgpack_pack_map(pk, 5);
	pack_str(pk, "type");
	pack_str(pk, "end");
	pack_str(pk, "seq");
	msgpack_pack_int(pk, seq);
	pack_str(pk, "tok");
	msgpack_pack_int(pk, tok);
	pack_str(pk, "length");
	msgpack_pack_int(pk, length);
	pack_str(pk, "reason");
	pack_str(pk, reason ? reason : "");
	return maybe_flush(w);
}

int parm_write_fin(parm_writer *w)
{
	msgpack_pack_map(&w->pk, 1);
	pack_str(&w->pk, "type");
	pack_str(&w->pk, "fin");
	return maybe_flush(w);
}

int parm_write_record(parm_writer *w, const parm_record *rec, int n_vocab)
{
	switch (rec->type) {
	case PARM_REC_START:
		return parm_write_start(w, rec->seq, rec->prompt, rec->tokens, rec->n_tokens,
					rec->meta);
	case PARM_REC_ROUND:
		return parm_write_round(w, rec->n_steps, rec->steps, n_vocab);
	case PARM_REC_END:
		return parm_write_end(w, rec->seq, rec->tok, rec->length, rec->reason);
	case PARM_REC_FIN:
		return parm_write_fin(w);
	}
	return parm_fail("parm_write_record: unknown record type %d", (int)rec->type);
}

/* ---- feedback channel ---- */

/* A choice is [seq, tok, stop] and a hello is nil: nothing longer. */
#define FEEDBACK_LIMITS ((struct skim_limits){ 3, 8, 64 })
#define FEEDBACK_NOTICE 5       /* seconds without a sampler before we say so */

struct parm_feedback {
	int fd;
	int owner;                      /* made by parm_feedback_create */
	int connected;                  /* the sampler has written to it */
	double deadline;                /* for the sampler to connect */
	double notice_at;               /* to say we are still waiting for it */
	volatile sig_atomic_t removed;
	struct msgbuf in;
	/* preformatted so parm_feedback_remove is async-signal-safe */
	char dir[PATH_MAX - 16];       /* room left for "/feedback" in fifo */
	char fifo[PATH_MAX];
};

static parm_feedback *feedback_new(void)
{
	parm_feedback *f = parm_xcalloc(1, sizeof *f);
	f->fd = -1;
	f->removed = 1;
	msgbuf_init(&f->in, FEEDBACK_LIMITS);
	return f;
}

static int make_fifo_dir(parm_feedback *f)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (snprintf(f->dir, sizeof f->dir, "%s/parm.XXXXXX", tmp) >= (int)sizeof f->dir)
		return parm_fail("feedback channel: TMPDIR is too long");
	if (!mkdtemp(f->dir))
		return parm_failc(PARM_ESYS, "cannot make a directory for the feedback channel in %s: %s",
				 tmp, strerror(errno));
	snprintf(f->fifo, sizeof f->fifo, "%s/feedback", f->dir);
	f->removed = 0;
	if (mkfifo(f->fifo, 0600) < 0) {
		int e = errno;
		rmdir(f->dir);
		f->removed = 1;
		return parm_failc(PARM_ESYS, "cannot make the feedback FIFO %s: %s", f->fifo, strerror(e));
	}
	return 0;
}

parm_feedback *parm_feedback_create(void)
{
	parm_feedback *f = feedback_new();
	f->owner = 1;
	if (make_fifo_dir(f) < 0) {
		parm_feedback_free(f);
		return NULL;
	}
	/* non-blocking: the sampler connects only after it has read the header */
	f->fd = open(f->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (f->fd < 0) {
		int e = errno;
		parm_feedback_free(f);
		return parm_failcp(PARM_ESYS, "cannot open the feedback FIFO: %s", strerror(e));
	}
	f->deadline = parm_now() + parm_stream_timeout() / 1000.0;
	f->notice_at = parm_now() + FEEDBACK_NOTICE;
	return f;
}

const char *parm_feedback_path(const parm_feedback *f)
{
	return f->fifo;
}

void parm_feedback_remove(parm_feedback *f)
{
	if (!f || f->removed)
		return;
	f->removed = 1;
	unlink(f->fifo);
	rmdir(f->dir);
}

void parm_feedback_free(parm_feedback *f)
{
	if (!f)
		return;
	if (f->owner)
		parm_feedback_remove(f);
	if (f->fd >= 0)
		close(f->fd);
	msgbuf_free(&f->in);
	free(f);
}

static int check_choice(const msgpack_object *o, parm_choice *c)
{
	long v[3];
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3)
		return parm_fail("malformed feedback: a choice is not [seq, tok, stop]");
	const msgpack_object *e = o->via.array.ptr;
	if (e[2].type == MSGPACK_OBJECT_BOOLEAN)
		v[2] = e[2].via.boolean;
	else if (obj_int(&e[2], 0, 1, &v[2]) < 0)
		return parm_fail("malformed feedback: stop is not 0 or 1");
	if (obj_int(&e[0], 0, INT_MAX, &v[0]) < 0)
		return parm_fail("malformed feedback: seq is not an integer >= 0");
	if (obj_int(&e[1], 0, INT_MAX, &v[1]) < 0)
		return parm_fail("malformed feedback: tok is not a token id");
	c->seq = (int)v[0];
	c->tok = (int)v[1];
	c->stop = (int)v[2];
	return 0;
}

/* 1 a choice, 0 need more bytes, -1 bad input.  A hello (nil) says the
 * sampler is connected: the FIFO's name is no longer needed, so it goes at
 * once, and a producer killed later leaves nothing in TMPDIR. */
static int next_choice(parm_feedback *f, parm_choice *c)
{
	int got;
	while ((got = msgbuf_next(&f->in)) > 0) {
		if (f->in.obj.data.type != MSGPACK_OBJECT_NIL)
			return check_choice(&f->in.obj.data, c) < 0 ? -1 : 1;
		if (f->owner)
			parm_feedback_remove(f);
	}
	if (got == -1)
		return parm_fail("malformed feedback: not msgpack");
	if (got < 0)
		return parm_fail("malformed feedback: a choice is not [seq, tok, stop]");
	return 0;
}

/* The producer's consumers are gone: tools exit quietly on EPIPE. */
static int consumer_gone(const char *why)
{
	parm_fail("%s", why);
	errno = EPIPE;
	return -1;
}

static int read_feedback(parm_feedback *f)
{
	void *room = msgbuf_room(&f->in, 4096);
	ssize_t n = read(f->fd, room, 4096);
	if (n > 0) {
		f->in.len += n;
		f->connected = 1;
	} else if (n == 0) {
		return consumer_gone("the sampler closed the feedback channel");
	} else if (errno != EAGAIN && errno != EINTR) {
		return parm_failc(PARM_ESYS, "reading the feedback channel: %s", strerror(errno));
	}
	return 0;
}

/* Until the sampler connects, wait no longer than the deadline: a sampler
 * that refused the header before connecting behind a stage that does not
 * notice (cat), or a stream corrupted on the way, would leave us waiting
 * for a choice that never comes. */
static int wait_timeout(const parm_feedback *f)
{
	if (f->connected)
		return -1;
	double now = parm_now(), left = f->deadline - now;
	if (f->notice_at < f->deadline && f->notice_at - now < left)
		left = f->notice_at - now;
	return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

/* A few seconds without a sampler: say what is awaited, once, so that a
 * pipe without one (parm-logits | parm-mix ... | gzip) is not silent until
 * the deadline.  Not when the deadline itself is that near. */
static void notice_waiting(parm_feedback *f)
{
	double now = parm_now();
	if (f->connected || now < f->notice_at || f->notice_at >= f->deadline)
		return;
	f->notice_at = f->deadline;
	parm_warn("no sampler has opened the feedback channel in %g s; waiting up to %g s more "
	     "(is a sampler such as parm-sample at the end of the pipe?)",
	     (double)FEEDBACK_NOTICE, f->deadline - now);
}

/* Wait until the FIFO is readable (or closed) or the output reader left. */
static int wait_feedback(parm_feedback *f, int out_fd)
{
	struct pollfd p[2] = { { f->fd, POLLIN, 0 }, { out_fd, 0, 0 } };
	int n = poll(p, out_fd >= 0 ? 2 : 1, wait_timeout(f));
	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0)
		return parm_failc(PARM_ESYS, "waiting for feedback: %s", strerror(errno));
	if (out_fd >= 0 && (p[1].revents & (POLLERR | POLLHUP | POLLNVAL)))
		return consumer_gone("the reader of the stream went away");
	if (p[0].revents)
		return read_feedback(f);
	notice_waiting(f);
	if (n == 0 && !f->connected && parm_now() >= f->deadline) {
		errno = ETIMEDOUT;
		return parm_fail("no sampler opened the feedback channel in %g s (is a sampler "
				 "such as parm-sample at the end of the pipe? see PARM_STREAM_TIMEOUT)",
				 parm_stream_timeout() / 1000.0);
	}
	return 0;
}

int parm_feedback_recv(parm_feedback *f, int out_fd, parm_choice *c, int n)
{
	int got = 0;
	while (got < n) {
		int r = next_choice(f, &c[got]);
		if (r < 0) {
			errno = EPROTO;
			return -1;
		}
		if (r > 0)
			got++;
		else if (wait_feedback(f, out_fd) < 0)
			return -1;
	}
	return 0;
}

parm_feedback *parm_feedback_connect(const char *path)
{
	parm_feedback *f;
	int e;
	if (!path)
		return parm_failp("the stream has no feedback channel: its producer takes no choices");
	f = feedback_new();
	/* non-blocking open fails (ENXIO) rather than hangs when nobody listens */
	f->fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (f->fd < 0 || fcntl(f->fd, F_SETFL, 0) < 0) {
		e = errno;
		parm_feedback_free(f);
		if (e == ENXIO)
			return parm_failp("cannot open feedback channel %s: no producer is "
					  "listening", path);
		return parm_failcp(PARM_ESYS, "cannot open feedback channel %s: %s", path, strerror(e));
	}
	snprintf(f->fifo, sizeof f->fifo, "%s", path);
	static const char hello = (char)0xc0;   /* msgpack nil */
	if (write_all(f->fd, &hello, 1, "the feedback channel") < 0) {
		parm_feedback_free(f);
		return NULL;
	}
	return f;
}

int parm_feedback_send(parm_feedback *f, const parm_choice *c, int n)
{
	msgpack_sbuffer buf;
	msgpack_packer pk;
	int r = 0;
	msgpack_sbuffer_init(&buf);
	msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
	for (int i = 0; i < n && r == 0; i++) {
		msgpack_pack_array(&pk, 3);
		msgpack_pack_int(&pk, c[i].seq);
		msgpack_pack_int(&pk, c[i].tok);
		msgpack_pack_int(&pk, c[i].stop ? 1 : 0);
		/* a choice is at most 19 bytes: keep each write under PIPE_BUF */
		if (buf.size > PIPE_BUF - 32 || i == n - 1) {
			r = write_all(f->fd, buf.data, buf.size, "the feedback channel");
			buf.size = 0;
		}
	}
	msgpack_sbuffer_destroy(&buf);
	return r;
}
