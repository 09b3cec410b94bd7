/* jsonl.c - lines and JSONL records from plain, compressed or archived
 * files, through libarchive and jansson. */
#include <parm/dataset.h>
#include <parm/util.h>

#include <archive.h>
#include <archive_entry.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SIZE 65536

struct parm_input {
	struct archive *a;
	char *path;
	char *member;           /* NULL when the input is not an archive */
	char *blk;              /* BLOCK_SIZE bytes read from the member */
	size_t blk_len, blk_pos;
	char *line;             /* the line being assembled */
	size_t line_len, line_cap;
	long lineno;
	int member_done;        /* the member's data is exhausted */
};

/* Raw format after the archive formats: tar, zip, 7z and cpio are
 * recognised by their headers, anything else (plain or merely compressed)
 * is one stream.  Not format_all: its mtree reader claims compact JSON
 * such as {"a":1} as an mtree spec and yields no data. */
static parm_input *input_new(const char *name)
{
	parm_input *in = parm_xcalloc(1, sizeof *in);
	in->a = archive_read_new();
	archive_read_support_filter_all(in->a);
	archive_read_support_format_tar(in->a);
	archive_read_support_format_gnutar(in->a);
	archive_read_support_format_zip(in->a);
	archive_read_support_format_7zip(in->a);
	archive_read_support_format_cpio(in->a);
	archive_read_support_format_empty(in->a);
	archive_read_support_format_raw(in->a);
	in->path = parm_xstrdup(name);
	return in;
}

/* After archive_read_open*: the input, or NULL + parm_error. */
static parm_input *input_opened(parm_input *in, int rc)
{
	if (rc != ARCHIVE_OK) {
		if (archive_errno(in->a) > 0)
			parm_failc(PARM_ESYS, "%s: %s", in->path, strerror(archive_errno(in->a)));
		else
			parm_fail("%s: %s", in->path, archive_error_string(in->a));
		parm_input_close(in);
		return NULL;
	}
	in->blk = parm_xmalloc(BLOCK_SIZE);
	in->member_done = 1;
	return in;
}

parm_input *parm_input_open(const char *path)
{
	int is_stdin = !strcmp(path, "-");
	parm_input *in = input_new(is_stdin ? "stdin" : path);
	return input_opened(in, is_stdin ? archive_read_open_fd(in->a, 0, BLOCK_SIZE) :
			    archive_read_open_filename(in->a, path, BLOCK_SIZE));
}

parm_input *parm_input_open_mem(const void *buf, size_t size, const char *name)
{
	parm_input *in = input_new(name);
	return input_opened(in, archive_read_open_memory(in->a, buf, size));
}

void parm_input_close(parm_input *in)
{
	if (!in)
		return;
	archive_read_free(in->a);
	free(in->path);
	free(in->member);
	free(in->blk);
	free(in->line);
	free(in);
}

const char *parm_input_path(const parm_input *in) { return in->path; }
const char *parm_input_member(const parm_input *in) { return in->member; }

/* Directories, links and the like in an archive are not data. */
int parm_input_next_member(parm_input *in)
{
	struct archive_entry *e;
	int rc;
	while ((rc = archive_read_next_header(in->a, &e)) == ARCHIVE_OK ||
	       rc == ARCHIVE_WARN) {
		int raw = archive_format(in->a) == ARCHIVE_FORMAT_RAW;
		if (!raw && archive_entry_filetype(e) != AE_IFREG)
			continue;
		free(in->member);
		in->member = raw ? NULL : parm_xstrdup(archive_entry_pathname(e));
		in->blk_len = in->blk_pos = 0;
		in->line_len = 0;
		in->lineno = 0;
		in->member_done = 0;
		return 1;
	}
	if (rc == ARCHIVE_EOF)
		return 0;
	return parm_fail("%s: %s", in->path, archive_error_string(in->a));
}

/* Refill the block; 1 bytes ready, 0 end of member, -1 error. */
static int fill_block(parm_input *in)
{
	la_ssize_t got;
	if (in->member_done)
		return 0;
	got = archive_read_data(in->a, in->blk, BLOCK_SIZE);
	if (got < 0)
		return parm_fail("%s%s%s: %s", in->path, in->member ? ":" : "",
				 in->member ? in->member : "", archive_error_string(in->a));
	in->blk_len = (size_t)got;
	in->blk_pos = 0;
	if (got == 0)
		in->member_done = 1;
	return got > 0;
}

int parm_input_peek(parm_input *in, const char **bytes, size_t *n)
{
	if (in->blk_pos == in->blk_len && fill_block(in) < 0)
		return -1;
	*bytes = in->blk + in->blk_pos;
	*n = in->blk_len - in->blk_pos;
	return 0;
}

static void line_append(parm_input *in, const char *p, size_t n)
{
	if (in->line_len + n + 1 > in->line_cap) {
		in->line_cap = 2 * (in->line_len + n + 1);
		in->line = parm_xrealloc(in->line, in->line_cap);
	}
	memcpy(in->line + in->line_len, p, n);
	in->line_len += n;
	in->line[in->line_len] = '\0';
}

/* Gather bytes up to the next newline; 1 a whole line, 0 end of member
 * with nothing pending, -1 error. */
static int gather_line(parm_input *in)
{
	in->line_len = 0;
	line_append(in, "", 0);
	for (;;) {
		if (in->blk_pos == in->blk_len) {
			int rc = fill_block(in);
			if (rc < 0)
				return -1;
			if (rc == 0)
				return in->line_len > 0;
		}
		const char *p = in->blk + in->blk_pos;
		size_t avail = in->blk_len - in->blk_pos;
		const char *nl = memchr(p, '\n', avail);
		size_t take = nl ? (size_t)(nl - p) : avail;
		line_append(in, p, take);
		in->blk_pos += take + (nl != NULL);
		if (nl)
			return 1;
	}
}

int parm_input_getline(parm_input *in, const char **line, size_t *len)
{
	int rc = gather_line(in);
	if (rc <= 0)
		return rc;
	in->lineno++;
	if (memchr(in->line, '\0', in->line_len))
		return parm_fail("%s%s%s:%ld: NUL byte in a line", in->path,
				 in->member ? ":" : "", in->member ? in->member : "",
				 in->lineno);
	if (in->line_len > 0 && in->line[in->line_len - 1] == '\r')
		in->line[--in->line_len] = '\0';
	*line = in->line;
	*len = in->line_len;
	return 1;
}

int parm_input_slurp(parm_input *in, char **text, size_t *len)
{
	in->line_len = 0;
	line_append(in, in->blk + in->blk_pos, in->blk_len - in->blk_pos);
	in->blk_pos = in->blk_len;
	for (int rc; (rc = fill_block(in)) != 0; in->blk_pos = in->blk_len) {
		if (rc < 0)
			return -1;
		line_append(in, in->blk, in->blk_len);
	}
	*text = parm_xmemdup(in->line, in->line_len + 1);
	*len = in->line_len;
	return 0;
}

int parm_badrec(parm_badrecs *bad, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (bad->strict)
		return parm_fail("%s", msg);
	bad->n_skipped++;
	if (bad->on_skip)
		bad->on_skip(bad->ctx, msg);
	return 0;
}

static int is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr(" \t\r\f\v", s[i]))
			return 0;
	return 1;
}

/* "file:pos" or "file:member:pos"; pos is a line number or "record N". */
static char *origin_at(const parm_input *in, const char *pos)
{
	size_t n = strlen(in->path) + (in->member ? strlen(in->member) : 0) + strlen(pos) + 3;
	char *s = parm_xmalloc(n);
	if (in->member)
		snprintf(s, n, "%s:%s:%s", in->path, in->member, pos);
	else
		snprintf(s, n, "%s:%s", in->path, pos);
	return s;
}

static char *origin_of(const parm_input *in)
{
	char pos[32];
	snprintf(pos, sizeof pos, "%ld", in->lineno);
	return origin_at(in, pos);
}

/* One line: 1 a record went to fn, 0 skipped, -1 stop. */
static int jsonl_line(parm_input *in, const char *line, size_t len,
		      parm_badrecs *bad, parm_record_fn fn, void *ctx)
{
	json_error_t err;
	char *origin = origin_of(in);
	json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
	int rc;
	if (!obj)
		rc = parm_badrec(bad, "%s: bad JSON at column %d: %s", origin,
				 err.column, err.text);
	else if (!json_is_object(obj))
		rc = parm_badrec(bad, "%s: not a JSON object", origin);
	else
		rc = fn(ctx, obj, origin) < 0 ? -1 : 1;
	json_decref(obj);
	free(origin);
	return rc;
}

/* A member holding one JSON array of objects (as HF's JSON loader also
 * accepts) instead of JSON lines: origins are "file:record N". */
static long read_json_array(parm_input *in, parm_badrecs *bad, parm_record_fn fn, void *ctx)
{
	json_error_t err;
	char *text, where[64];
	size_t len, i;
	json_t *arr, *obj;
	long n = 0;
	if (parm_input_slurp(in, &text, &len) < 0)
		return -1;
	arr = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	free(text);
	if (!arr)
		return parm_fail("%s%s%s:%d: bad JSON: %s", in->path, in->member ? ":" : "",
				 in->member ? in->member : "", err.line, err.text);
	json_array_foreach(arr, i, obj) {
		char *origin;
		snprintf(where, sizeof where, "record %zu", i + 1);
		origin = origin_at(in, where);
		int rc = json_is_object(obj) ? fn(ctx, obj, origin) :
			parm_badrec(bad, "%s: not a JSON object", origin);
		free(origin);
		if (rc < 0)
			return json_decref(arr), -1;
		n += json_is_object(obj);
	}
	json_decref(arr);
	return n;
}

long parm_input_jsonl(parm_input *in, parm_badrecs *bad, parm_record_fn fn, void *ctx)
{
	const char *line, *head;
	size_t len;
	long n = 0;
	int rc;
	if (parm_input_peek(in, &head, &len) < 0)
		return -1;
	while (len > 0 && strchr(" \t\r\n", *head))
		head++, len--;
	if (len > 0 && *head == '[')
		return read_json_array(in, bad, fn, ctx);
	while ((rc = parm_input_getline(in, &line, &len)) > 0) {
		if (is_blank(line, len))
			continue;
		int got = jsonl_line(in, line, len, bad, fn, ctx);
		if (got < 0)
			return -1;
		n += got;
	}
	return rc < 0 ? -1 : n;
}

long parm_jsonl_foreach(const char *const *paths, int n, parm_badrecs *bad,
			parm_record_fn fn, void *ctx)
{
	long total = 0;
	for (int i = 0; i < n; i++) {
		parm_input *in = parm_input_open(paths[i]);
		int rc;
		if (!in)
			return -1;
		while ((rc = parm_input_next_member(in)) > 0) {
			long got = parm_input_jsonl(in, bad, fn, ctx);
			if (got < 0)
				break;
			total += got;
		}
		parm_input_close(in);
		if (rc != 0)
			return -1;
	}
	return total;
}
