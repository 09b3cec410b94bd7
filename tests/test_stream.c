/* test_stream.c - the parm stream: round trips through a pipe, truncation
 * and garbage, version and magic, and the feedback FIFO. */
#include <parm/stream.h>
#include <parm/util.h>
#include "tap.h"

#include <msgpack.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_VOCAB 32000

/* ---- a made-up vocabulary and header ---- */

static void make_header(parm_header *h, int n_vocab)
{
	static char *chain[] = { "{\"stage\":\"parm-logits\",\"model\":\"m.gguf\"}" };
	memset(h, 0, sizeof *h);
	h->version = PARM_STREAM_VERSION;
	h->n_vocab = n_vocab;
	h->fingerprint = 0x0123456789abcdefULL;
	h->bos = 1;
	h->eos = 2;
	h->pieces = parm_xcalloc(n_vocab, sizeof *h->pieces);
	h->piece_len = parm_xcalloc(n_vocab, sizeof *h->piece_len);
	for (int i = 0; i < n_vocab; i++) {
		char buf[32];
		int n = snprintf(buf, sizeof buf, "p%d", i);
		if (i == 3)
			n = 3, memcpy(buf, "a\0b", 3);  /* a piece with a NUL inside */
		if (i == 4)
			n = 0;                          /* and an empty one */
		h->pieces[i] = parm_xmemdup(buf, n + 1);
		h->piece_len[i] = n;
	}
	h->feedback = parm_xstrdup("/tmp/parm.test/feedback");
	h->n_chain = 1;
	h->chain = parm_xmalloc(sizeof *h->chain);
	h->chain[0] = parm_xstrdup(chain[0]);
}

static float logit_at(int round, int seq, int i)
{
	return (float)((round * 7 + seq * 13 + i) % 1000) * 0.01f - 5.0f;
}

/* round r: seq 0 dense, seq 1 sparse with k = 5 + r */
static void make_round(parm_step s[2], int r, int n_vocab)
{
	int k = 5 + r;
	memset(s, 0, 2 * sizeof *s);
	s[0].seq = 0;
	s[0].tok = r ? r + 10 : -1;
	s[0].logits = parm_xmalloc(n_vocab * sizeof(float));
	for (int i = 0; i < n_vocab; i++)
		s[0].logits[i] = logit_at(r, 0, i);
	s[0].logits[7] = -INFINITY;
	s[1].seq = 1;
	s[1].tok = r ? r + 20 : -1;
	s[1].sparse = 1;
	s[1].k = k;
	s[1].logits = parm_xmalloc(k * sizeof(float));
	s[1].ids = parm_xmalloc(k * sizeof(int32_t));
	for (int i = 0; i < k; i++) {
		s[1].ids[i] = (i * 997 + r) % n_vocab;
		s[1].logits[i] = logit_at(r, 1, i);
	}
}

static void free_round(parm_step s[2])
{
	for (int i = 0; i < 2; i++) {
		free(s[i].logits);
		free(s[i].ids);
	}
}

#define N_ROUNDS 4

static int write_stream(int fd, int n_vocab)
{
	parm_writer *w = parm_writer_new(fd);
	parm_header h;
	int toks[] = { 1, 5, 6, 9 };
	int rc = 0;
	make_header(&h, n_vocab);
	rc |= parm_write_header(w, &h);
	rc |= parm_write_start(w, 0, "hello\nworld", toks, 4, "{\"id\":7}");
	rc |= parm_write_start(w, 1, "", toks, 1, NULL);
	for (int r = 0; r < N_ROUNDS; r++) {
		parm_step s[2];
		make_round(s, r, n_vocab);
		rc |= parm_write_round(w, 2, s, n_vocab);
		rc |= parm_flush(w);
		free_round(s);
	}
	rc |= parm_write_end(w, 0, 13, N_ROUNDS, "eos");
	rc |= parm_write_end(w, 1, -1, N_ROUNDS, "length");
	rc |= parm_write_fin(w);
	rc |= parm_flush(w);
	parm_writer_free(w);
	parm_header_free(&h);
	return rc;
}

/* ---- round trip through a pipe, written by a child ---- */

static pid_t spawn_writer(int *rfd, int n_vocab)
{
	int p[2];
	pid_t pid;
	if (pipe(p) < 0)
		parm_die("pipe: %s", strerror(errno));
	if ((pid = fork()) == 0) {
		close(p[0]);
		_exit(write_stream(p[1], n_vocab) ? 1 : 0);
	}
	close(p[1]);
	*rfd = p[0];
	return pid;
}

static int same_header(const parm_header *a, const parm_header *b)
{
	if (a->n_vocab != b->n_vocab || a->fingerprint != b->fingerprint ||
	    a->bos != b->bos || a->eos != b->eos || a->n_chain != b->n_chain ||
	    strcmp(a->feedback, b->feedback))
		return 0;
	for (int i = 0; i < a->n_vocab; i++)
		if (a->piece_len[i] != b->piece_len[i] ||
		    memcmp(a->pieces[i], b->pieces[i], a->piece_len[i]) ||
		    b->pieces[i][b->piece_len[i]] != '\0')
			return 0;
	for (int i = 0; i < a->n_chain; i++)
		if (strcmp(a->chain[i], b->chain[i]))
			return 0;
	return 1;
}

static int same_step(const parm_step *a, const parm_step *b, int n_vocab)
{
	int n = a->sparse ? a->k : n_vocab;
	if (a->seq != b->seq || a->tok != b->tok || a->sparse != b->sparse ||
	    (a->sparse && a->k != b->k))
		return 0;
	if (memcmp(a->logits, b->logits, n * sizeof(float)))
		return 0;
	return !a->sparse || !memcmp(a->ids, b->ids, n * sizeof(int32_t));
}

static void check_rounds(parm_reader *rd, int n_vocab)
{
	parm_record rec;
	for (int r = 0; r < N_ROUNDS; r++) {
		parm_step s[2];
		int rc = parm_read_record(rd, &rec);
		make_round(s, r, n_vocab);
		ok(rc == 0 && rec.type == PARM_REC_ROUND && rec.n_steps == 2 &&
		   same_step(&s[0], &rec.steps[0], n_vocab) &&
		   same_step(&s[1], &rec.steps[1], n_vocab),
		   "V=%d round %d: dense and sparse steps come back bit for bit", n_vocab, r);
		free_round(s);
	}
}

static void check_starts(parm_reader *rd, int n_vocab)
{
	parm_record rec;
	int rc = parm_read_record(rd, &rec);
	ok(rc == 0 && rec.type == PARM_REC_START && rec.seq == 0 &&
	   !strcmp(rec.prompt, "hello\nworld") && rec.n_tokens == 4 && rec.tokens[3] == 9 &&
	   rec.meta && !strcmp(rec.meta, "{\"id\":7}"), "V=%d start with meta", n_vocab);
	rc = parm_read_record(rd, &rec);
	ok(rc == 0 && rec.type == PARM_REC_START && rec.seq == 1 && !strcmp(rec.prompt, "") &&
	   rec.n_tokens == 1 && rec.tokens[0] == 1 && !rec.meta,
	   "V=%d start without meta (nil)", n_vocab);
}

static void check_ends(parm_reader *rd, int n_vocab)
{
	parm_record rec;
	int rc = parm_read_record(rd, &rec);
	ok(rc == 0 && rec.type == PARM_REC_END && rec.seq == 0 && rec.tok == 13 &&
	   rec.length == N_ROUNDS && !strcmp(rec.reason, "eos"), "V=%d end eos", n_vocab);
	rc = parm_read_record(rd, &rec);
	ok(rc == 0 && rec.type == PARM_REC_END && rec.seq == 1 && rec.tok == -1 &&
	   !strcmp(rec.reason, "length"), "V=%d end length, tok -1", n_vocab);
	rc = parm_read_record(rd, &rec);
	ok(rc == 0 && rec.type == PARM_REC_FIN, "V=%d fin", n_vocab);
	rc = parm_read_record(rd, &rec);
	ok(rc == 0 && rec.type == PARM_REC_FIN, "V=%d fin again after fin", n_vocab);
}

static void test_round_trip(int n_vocab)
{
	int fd, status;
	pid_t pid = spawn_writer(&fd, n_vocab);
	parm_reader *rd = parm_reader_new(fd);
	parm_header want, got;
	make_header(&want, n_vocab);
	ok(parm_read_header(rd, &got) == 0 && same_header(&want, &got),
	   "V=%d header comes back (pieces with NUL, empty piece, chain)", n_vocab);
	check_starts(rd, n_vocab);
	check_rounds(rd, n_vocab);
	check_ends(rd, n_vocab);
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "V=%d writer child succeeded", n_vocab);
	parm_reader_free(rd);
	close(fd);
	parm_header_free(&want);
	parm_header_free(&got);
}

/* ---- streams in memory ---- */

static char *slurp_stream(size_t *len, int n_vocab)
{
	FILE *f = tmpfile();
	char *buf;
	write_stream(fileno(f), n_vocab);
	*len = lseek(fileno(f), 0, SEEK_END);
	buf = parm_xmalloc(*len);
	if (pread(fileno(f), buf, *len, 0) != (ssize_t)*len)
		parm_die("pread: %s", strerror(errno));
	fclose(f);
	return buf;
}

/* Read all of buf[len] as a stream: 0 if it reached FIN, else -1 with the
 * message copied to err. */
static int read_all(const char *buf, size_t len, char *err, size_t errsz)
{
	FILE *f = tmpfile();
	parm_reader *rd;
	parm_header h;
	parm_record rec;
	int rc;
	if (len && write(fileno(f), buf, len) != (ssize_t)len)
		parm_die("write: %s", strerror(errno));
	lseek(fileno(f), 0, SEEK_SET);
	rd = parm_reader_new(fileno(f));
	rc = parm_read_header(rd, &h);
	if (rc == 0) {
		while ((rc = parm_read_record(rd, &rec)) == 0 && rec.type != PARM_REC_FIN)
			;
		parm_header_free(&h);
	}
	snprintf(err, errsz, "%s", rc ? parm_error() : "");
	parm_reader_free(rd);
	fclose(f);
	return rc;
}

static int starts_with(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static void test_truncation(void)
{
	size_t len;
	char *buf = slurp_stream(&len, 40);
	char err[1024];
	int fin = 0, eos = 0, bad = 0;
	ok(read_all(buf, len, err, sizeof err) == 0, "the whole small stream reads to FIN");
	for (size_t cut = 0; cut < len; cut++) {
		if (read_all(buf, cut, err, sizeof err) == 0)
			fin++;
		else if (starts_with(err, "unexpected end of stream"))
			eos++;
		else
			bad++, printf("# cut %zu: %s\n", cut, err);
	}
	ok(fin == 0 && bad == 0 && eos == (int)len,
	   "every one of %zu truncations is \"unexpected end of stream\"", len);
	free(buf);
}

/* The first hlen bytes of buf that make a whole header (0: none). */
static size_t header_length(const char *buf, size_t len)
{
	for (size_t cut = 1; cut <= len; cut++) {
		FILE *f = tmpfile();
		parm_header h;
		parm_reader *rd;
		int got;
		if (write(fileno(f), buf, cut) != (ssize_t)cut)
			parm_die("write");
		lseek(fileno(f), 0, SEEK_SET);
		rd = parm_reader_new(fileno(f));
		got = parm_read_header(rd, &h) == 0;
		if (got)
			parm_header_free(&h);
		parm_reader_free(rd);
		fclose(f);
		if (got)
			return cut;
	}
	return 0;
}

static void test_garbage(void)
{
	size_t len, hlen;
	char *buf = slurp_stream(&len, 40);
	char err[1024], *g;
	unsigned state = 12345;
	int ok_msgs = 0;
	ok(read_all("hello, world\n", 13, err, sizeof err) < 0 &&
	   !strcmp(err, "not a parm stream"), "text input: %s", err);
	ok(read_all("\xc1\xc1", 2, err, sizeof err) < 0 && !strcmp(err, "not a parm stream"),
	   "non-msgpack input: %s", err);
	/* the header of a V=40 stream, then garbage */
	hlen = header_length(buf, len);
	g = parm_xmalloc(hlen + 64);
	memcpy(g, buf, hlen);
	memcpy(g + hlen, "\xc1", 1);
	ok(read_all(g, hlen + 1, err, sizeof err) < 0 && starts_with(err, "malformed stream: not msgpack"),
	   "header then 0xc1: %s", err);
	memcpy(g + hlen, "\x05", 1);
	ok(read_all(g, hlen + 1, err, sizeof err) < 0 && starts_with(err, "malformed stream:"),
	   "header then an integer: %s", err);
	for (int t = 0; t < 200; t++) {
		for (int i = 0; i < 64; i++)
			g[hlen + i] = (char)((state = state * 1103515245 + 12345) >> 16);
		if (read_all(g, hlen + 64, err, sizeof err) < 0 &&
		    (starts_with(err, "malformed stream:") || starts_with(err, "unexpected end")))
			ok_msgs++;
		else
			printf("# garbage %d: %s\n", t, err);
	}
	ok(ok_msgs == 200, "200 random garbage tails are malformed or short, never accepted");
	free(g);
	free(buf);
}

/* a middle stage that changes nothing writes the same bytes back */
static void test_pass_through(void)
{
	size_t len, len2;
	char *buf = slurp_stream(&len, 300), *buf2;
	FILE *in = tmpfile(), *out = tmpfile();
	parm_reader *rd;
	parm_writer *w;
	parm_header h, copy;
	parm_record rec;
	int rc;
	if (write(fileno(in), buf, len) != (ssize_t)len)
		parm_die("write");
	lseek(fileno(in), 0, SEEK_SET);
	rd = parm_reader_new(fileno(in));
	w = parm_writer_new(fileno(out));
	rc = parm_read_header(rd, &h);
	parm_header_copy(&copy, &h, NULL);
	rc |= parm_write_header(w, &copy);
	do {
		rc |= parm_read_record(rd, &rec);
		rc |= parm_write_record(w, &rec, h.n_vocab);
	} while (rc == 0 && rec.type != PARM_REC_FIN);
	rc |= parm_flush(w);
	len2 = lseek(fileno(out), 0, SEEK_END);
	buf2 = parm_xmalloc(len2 + 1);
	ok(rc == 0 && len2 == len && pread(fileno(out), buf2, len2, 0) == (ssize_t)len &&
	   !memcmp(buf, buf2, len), "read and written back record by record: the same %zu bytes",
	   len);
	parm_reader_free(rd);
	parm_writer_free(w);
	parm_header_free(&h);
	parm_header_free(&copy);
	fclose(in);
	fclose(out);
	free(buf);
	free(buf2);
}

/* ---- hand-made records ---- */

typedef struct {
	msgpack_sbuffer sb;
	msgpack_packer pk;
} packbuf;

static void pb_init(packbuf *b)
{
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void pstr(packbuf *b, const char *s)
{
	msgpack_pack_str(&b->pk, strlen(s));
	msgpack_pack_str_body(&b->pk, s, strlen(s));
}

/* a minimal header map with V = 3, given magic and version, and n_extra
 * extra keys ("zz_future": 1) */
static void pack_min_header(packbuf *b, const char *magic, int version, int extra)
{
	msgpack_pack_map(&b->pk, 6 + extra);
	pstr(b, "type"), pstr(b, "header");
	pstr(b, "magic"), pstr(b, magic);
	pstr(b, "version"), msgpack_pack_int(&b->pk, version);
	pstr(b, "n_vocab"), msgpack_pack_int(&b->pk, 3);
	pstr(b, "fingerprint"), pstr(b, "00000000000000ff");
	pstr(b, "pieces");
	msgpack_pack_array(&b->pk, 3);
	for (int i = 0; i < 3; i++)
		msgpack_pack_bin(&b->pk, 1), msgpack_pack_bin_body(&b->pk, "abc" + i, 1);
	if (extra)
		pstr(b, "zz_future"), msgpack_pack_int(&b->pk, 1);
}

static void pack_fin(packbuf *b)
{
	msgpack_pack_map(&b->pk, 1);
	pstr(b, "type"), pstr(b, "fin");
}

/* a round with one step: logits of nl floats, ids of ni (ni < 0: dense) */
static void pack_step_round(packbuf *b, int nl, const int32_t *ids, int ni)
{
	float lg[8] = { 0 };
	msgpack_pack_map(&b->pk, 2);
	pstr(b, "type"), pstr(b, "round");
	pstr(b, "steps");
	msgpack_pack_array(&b->pk, 1);
	msgpack_pack_map(&b->pk, ni >= 0 ? 4 : 3);
	pstr(b, "seq"), msgpack_pack_int(&b->pk, 0);
	pstr(b, "tok"), msgpack_pack_int(&b->pk, -1);
	pstr(b, "logits"), msgpack_pack_bin(&b->pk, nl * 4);
	msgpack_pack_bin_body(&b->pk, lg, nl * 4);
	if (ni >= 0) {
		pstr(b, "ids"), msgpack_pack_bin(&b->pk, ni * 4);
		msgpack_pack_bin_body(&b->pk, ids, ni * 4);
	}
}

static void expect(packbuf *b, int want_ok, const char *want_msg, const char *what)
{
	char err[1024];
	int rc = read_all(b->sb.data, b->sb.size, err, sizeof err);
	if (want_ok)
		ok(rc == 0, "%s (%s)", what, rc ? err : "ok");
	else
		ok(rc < 0 && starts_with(err, want_msg), "%s: %s", what, err);
	msgpack_sbuffer_destroy(&b->sb);
}

/* Sizes a corrupt stream claims are refused before anything is allocated:
 * under a 1 GiB address-space limit, a claim of 2^32 elements would be an
 * out-of-memory exit, not a message. */
static void test_claimed_sizes(void)
{
	size_t len, hlen;
	char *buf = slurp_stream(&len, 40), err[1024], *g;
	static const char header_pieces[] =     /* {"type": "header", "pieces": [2^32-1 ...] */
		"\x82\xa4type\xa6header\xa6pieces\xdd\xff\xff\xff\xff";
	ok(read_all(header_pieces, sizeof header_pieces - 1, err, sizeof err) < 0 &&
	   !strcmp(err, "not a parm stream"), "a header claiming 2^32 pieces: %s", err);
	hlen = header_length(buf, len);
	g = parm_xmalloc(hlen + 64);
	memcpy(g, buf, hlen);
	static const char steps_2g[] =          /* {"type": "round", "steps": [2^31 steps]} */
		"\x82\xa4type\xa5round\xa5steps\xdd\x80\x00\x00\x00";
	static const char bin_2g[] =            /* one step whose logits bin is 2 GiB */
		"\x82\xa4type\xa5round\xa5steps\x91\x81\xa6logits\xc6\x80\x00\x00\x00";
	static const char steps_64k[] =         /* 65536 steps, within the limits */
		"\x82\xa4type\xa5round\xa5steps\xdd\x00\x01\x00\x00";
	memcpy(g + hlen, steps_2g, sizeof steps_2g - 1);
	ok(read_all(g, hlen + sizeof steps_2g - 1, err, sizeof err) < 0 &&
	   starts_with(err, "malformed stream: an array or map claims 2147483648 elements"),
	   "a round claiming 2^31 steps: %s", err);
	memcpy(g + hlen, bin_2g, sizeof bin_2g - 1);
	ok(read_all(g, hlen + sizeof bin_2g - 1, err, sizeof err) < 0 &&
	   starts_with(err, "malformed stream: a string claims 2147483648 bytes"),
	   "a bin claiming 2 GiB: %s", err);
	/* a claim within the limits whose bytes never come: the end says so */
	memcpy(g + hlen, steps_64k, sizeof steps_64k - 1);
	ok(read_all(g, hlen + sizeof steps_64k - 1, err, sizeof err) < 0 &&
	   starts_with(err, "unexpected end of stream"),
	   "a round claiming 65536 steps, then the end: %s", err);
	free(g);
	free(buf);
}

/* A record begun and then silent (the writer holds the pipe open) is an
 * error after PARM_STREAM_TIMEOUT, not a wait forever; silence between
 * records is a producer thinking, and is waited for. */
static void test_stall(void)
{
	size_t len, hlen;
	char *buf = slurp_stream(&len, 40);
	int p[2];
	parm_header h;
	parm_record rec;
	parm_reader *rd;
	double t0;
	hlen = header_length(buf, len);
	setenv("PARM_STREAM_TIMEOUT", "0.2", 1);
	if (pipe(p) < 0)
		parm_die("pipe");
	if (write(p[1], buf, hlen + 3) != (ssize_t)(hlen + 3))
		parm_die("write");
	rd = parm_reader_new(p[0]);
	ok(parm_read_header(rd, &h) == 0, "the header of a stream that then stalls");
	t0 = parm_now();
	ok(parm_read_record(rd, &rec) < 0 &&
	   starts_with(parm_error(), "the stream stalled inside a record (3 bytes came"),
	   "3 bytes of a record then silence: %s", parm_error());
	ok(parm_now() - t0 >= 0.2, "it waited the timeout first");
	parm_header_free(&h);
	parm_reader_free(rd);
	close(p[0]);
	close(p[1]);
	unsetenv("PARM_STREAM_TIMEOUT");
	free(buf);
}

static void test_versions(void)
{
	packbuf b;
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 1), pack_fin(&b);
	expect(&b, 1, NULL, "minimal header with an unknown extra key is accepted");
	pb_init(&b), pack_min_header(&b, "parm-stream", 2, 0), pack_fin(&b);
	expect(&b, 0, "stream version 2 is not supported (this is version 1)", "version 2");
	pb_init(&b), pack_min_header(&b, "parm-strean", 1, 0), pack_fin(&b);
	expect(&b, 0, "not a parm stream", "wrong magic");
	pb_init(&b), msgpack_pack_array(&b.pk, 0), pack_fin(&b);
	expect(&b, 0, "not a parm stream", "an array first");
	pb_init(&b);
	msgpack_pack_map(&b.pk, 3);
	pstr(&b, "type"), pstr(&b, "header"), pstr(&b, "magic"), pstr(&b, "parm-stream");
	pstr(&b, "version"), msgpack_pack_int(&b.pk, 1);
	expect(&b, 0, "malformed stream: header has no \"n_vocab\"", "header without n_vocab");
}

static void test_malformed_records(void)
{
	int32_t good[2] = { 0, 2 }, bad[2] = { 0, 3 };
	packbuf b;
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	pack_step_round(&b, 3, NULL, -1), pack_fin(&b);
	expect(&b, 1, NULL, "dense step of V floats is accepted");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	pack_step_round(&b, 2, NULL, -1), pack_fin(&b);
	expect(&b, 0, "malformed stream: round step 0 logits bin has 8 bytes", "dense of V-1");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	pack_step_round(&b, 2, good, 2), pack_fin(&b);
	expect(&b, 1, NULL, "sparse step with ids in range is accepted");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	pack_step_round(&b, 2, bad, 2), pack_fin(&b);
	expect(&b, 0, "malformed stream: round step 0 id 3 is out of [0, 3)", "id out of range");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	pack_step_round(&b, 2, good, 1), pack_fin(&b);
	expect(&b, 0, "malformed stream: round step 0 has 4 bytes of ids", "ids/logits mismatch");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	msgpack_pack_map(&b.pk, 2);
	pstr(&b, "type"), pstr(&b, "end"), pstr(&b, "seq"), msgpack_pack_int(&b.pk, 0);
	pack_fin(&b);
	expect(&b, 0, "malformed stream: end has no \"tok\"", "end without tok");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	msgpack_pack_map(&b.pk, 1);
	pstr(&b, "type"), pstr(&b, "bogus");
	expect(&b, 0, "malformed stream: unknown record type \"bogus\"", "unknown type");
	pb_init(&b), pack_min_header(&b, "parm-stream", 1, 0);
	expect(&b, 0, "unexpected end of stream", "no FIN");
}

/* ---- header copy ---- */

static void test_header_copy(void)
{
	parm_header a, b;
	make_header(&a, 50);
	parm_header_copy(&b, &a, "{\"stage\":\"parm-mix\"}");
	ok(b.n_chain == 2 && !strcmp(b.chain[0], a.chain[0]) &&
	   !strcmp(b.chain[1], "{\"stage\":\"parm-mix\"}") && b.pieces[10] != a.pieces[10] &&
	   !strcmp(b.pieces[10], "p10") && b.piece_len[3] == 3 && !memcmp(b.pieces[3], "a\0b", 3) &&
	   b.feedback != a.feedback && !strcmp(b.feedback, a.feedback),
	   "parm_header_copy duplicates every field and appends the stage");
	parm_header_free(&a);
	parm_header_free(&b);
}

/* ---- writer EPIPE ---- */

static void test_epipe(void)
{
	int p[2];
	parm_writer *w;
	parm_header h;
	int rc, e;
	if (pipe(p) < 0)
		parm_die("pipe");
	close(p[0]);
	w = parm_writer_new(p[1]);
	make_header(&h, 100);
	rc = parm_write_header(w, &h);
	rc |= parm_flush(w);
	e = errno;
	ok(rc < 0 && e == EPIPE, "flush to a pipe with no reader: -1, EPIPE (%s)", parm_error());
	parm_writer_free(w);
	parm_header_free(&h);
	close(p[1]);
}

/* ---- feedback channel ---- */

static int dir_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void dirname_of(char *dir, size_t n, const char *path)
{
	snprintf(dir, n, "%s", path);
	*strrchr(dir, '/') = '\0';
}

/* child: connect, send n choices (in two writes), then wait until the
 * parent closes hold[1] */
static pid_t spawn_sampler(const char *path, int n, const int *hold)
{
	int hold_fd = hold ? hold[0] : -1;
	pid_t pid = fork();
	if (pid == 0) {
		if (hold)
			close(hold[1]);
		usleep(50000);  /* the producer must wait for a late sampler */
		parm_feedback *f = parm_feedback_connect(path);
		parm_choice c[1000];
		char x;
		if (!f)
			_exit(2);
		for (int i = 0; i < n; i++)
			c[i] = (parm_choice){ i, 1000 + i, i % 2 };
		if (parm_feedback_send(f, c, n / 2) < 0 ||
		    parm_feedback_send(f, c + n / 2, n - n / 2) < 0)
			_exit(3);
		if (hold_fd >= 0 && read(hold_fd, &x, 1) < 0)
			_exit(4);
		parm_feedback_free(f);
		_exit(0);
	}
	return pid;
}

static void test_feedback_basic(void)
{
	parm_feedback *f = parm_feedback_create();
	parm_choice c[1000];
	char dir[4096];
	int status, good = 1, seen[1000] = { 0 };
	pid_t pid;
	ok(f != NULL, "feedback channel created (%s)", f ? parm_feedback_path(f) : parm_error());
	if (!f)
		return;
	dirname_of(dir, sizeof dir, parm_feedback_path(f));
	pid = spawn_sampler(parm_feedback_path(f), 1000, NULL);
	ok(parm_feedback_recv(f, -1, c, 1000) == 0, "1000 choices received");
	for (int i = 0; i < 1000; i++) {
		int s = c[i].seq;
		good &= s >= 0 && s < 1000 && !seen[s] && c[i].tok == 1000 + s && c[i].stop == s % 2;
		if (s >= 0 && s < 1000)
			seen[s] = 1;
	}
	ok(good, "each choice arrived once with its token and stop flag");
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sampler child succeeded");
	ok(parm_feedback_recv(f, -1, c, 1) < 0 &&
	   !strcmp(parm_error(), "the sampler closed the feedback channel"),
	   "after the sampler closed: %s", parm_error());
	parm_feedback_remove(f);
	ok(!dir_exists(dir), "parm_feedback_remove removes the directory %s", dir);
	parm_feedback_remove(f);
	parm_feedback_free(f);
}

static void test_feedback_early_close(void)
{
	parm_feedback *f = parm_feedback_create();
	parm_choice c[10];
	char dir[4096];
	int status;
	pid_t pid = spawn_sampler(parm_feedback_path(f), 3, NULL);
	dirname_of(dir, sizeof dir, parm_feedback_path(f));
	ok(parm_feedback_recv(f, -1, c, 10) < 0 &&
	   !strcmp(parm_error(), "the sampler closed the feedback channel"),
	   "3 of 10 choices then close: %s", parm_error());
	waitpid(pid, &status, 0);
	parm_feedback_free(f);
	ok(!dir_exists(dir), "parm_feedback_free of the producer's channel removes it too");
}

static void test_feedback_out_gone(void)
{
	parm_feedback *f = parm_feedback_create();
	parm_choice c[4];
	int out[2], hold[2], status, e, rc;
	pid_t pid;
	if (pipe(hold) < 0)
		parm_die("pipe");
	pid = spawn_sampler(parm_feedback_path(f), 2, hold);
	if (pipe(out) < 0)      /* after the fork: the child must not hold it */
		parm_die("pipe");
	close(out[0]);          /* the reader of our output went away */
	rc = parm_feedback_recv(f, out[1], c, 4);
	e = errno;
	ok(rc < 0 && e == EPIPE, "waiting for feedback while the output reader is gone: "
	   "-1, EPIPE (%s)", parm_error());
	close(hold[1]);
	waitpid(pid, &status, 0);
	close(hold[0]);
	close(out[1]);
	parm_feedback_free(f);
}

/* a child writes raw bytes on the FIFO, then closes it */
static void expect_bad_feedback(const char *bytes, size_t n, const char *want)
{
	parm_feedback *f = parm_feedback_create();
	parm_choice c[2];
	int status;
	pid_t pid = fork();
	if (pid == 0) {
		FILE *w = fopen(parm_feedback_path(f), "w");
		_exit(!w || fwrite(bytes, 1, n, w) != n || fclose(w));
	}
	ok(parm_feedback_recv(f, -1, c, 2) < 0 && !strcmp(parm_error(), want),
	   "feedback %s", parm_error());
	waitpid(pid, &status, 0);
	parm_feedback_free(f);
}

static void test_feedback_malformed(void)
{
	expect_bad_feedback("\xc1", 1, "malformed feedback: not msgpack");
	expect_bad_feedback("\x92\x01\x02", 3, "malformed feedback: a choice is not [seq, tok, stop]");
	expect_bad_feedback("\x93\x01\xff\x00", 4, "malformed feedback: tok is not a token id");
	expect_bad_feedback("\x93\x01\x02\xc3\x93\x01\x02\x05", 8,
			    "malformed feedback: stop is not 0 or 1");
}

static parm_feedback *signal_channel;

static void on_term(int sig)
{
	parm_feedback_remove(signal_channel);
	_exit(0);
}

/* the producer's SIGTERM handler removes the channel */
static void test_feedback_signal(void)
{
	char path[4096] = "", dir[4096];
	int p[2], status;
	pid_t pid;
	if (pipe(p) < 0)
		parm_die("pipe");
	if ((pid = fork()) == 0) {
		signal_channel = parm_feedback_create();
		signal(SIGTERM, on_term);
		if (!signal_channel || write(p[1], parm_feedback_path(signal_channel),
					     strlen(parm_feedback_path(signal_channel))) < 0)
			_exit(1);
		close(p[1]);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], path, sizeof path - 1) <= 0)
		parm_die("no path from the child");
	close(p[0]);
	dirname_of(dir, sizeof dir, path);
	ok(dir_exists(dir), "the child's channel exists: %s", path);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	ok(!dir_exists(dir), "after SIGTERM its handler removed %s", dir);
}

static void test_feedback_connect_errors(void)
{
	parm_feedback *f = parm_feedback_connect("/nonexistent/parm.x/feedback");
	ok(!f && starts_with(parm_error(), "cannot open feedback channel /nonexistent/parm.x/feedback:"),
	   "connect to a missing FIFO: %s", parm_error());
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_round_trip(50);
	test_round_trip(BIG_VOCAB);
	test_header_copy();
	test_pass_through();
	test_truncation();
	test_garbage();
	test_claimed_sizes();
	test_stall();
	test_versions();
	test_malformed_records();
	test_epipe();
	test_feedback_basic();
	test_feedback_early_close();
	test_feedback_out_gone();
	test_feedback_malformed();
	test_feedback_signal();
	test_feedback_connect_errors();
	return tap_done();
}
