/* test_dataset - JSONL through every container libarchive reads, LM
 * corpora, preference pairs and their objectives, malformed records,
 * splits and epoch orders.  Compressed and archived inputs are made with
 * libarchive's writer, so no external tool is needed. */
#include "tap.h"
#include <parm/dataset.h>
#include <parm/gguf.h>
#include <parm/util.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/parm-test-dataset-XXXXXX";

static const char *path_in(const char *name)
{
	static char buf[8][512];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
	return buf[k];
}

static void write_plain(const char *name, const char *text)
{
	FILE *f = fopen(path_in(name), "wb");
	if (!f || fputs(text, f) < 0 || fclose(f))
		parm_die("cannot write %s", name);
}

typedef struct { const char *name, *text; } member;

/* filter: "gzip", "xz", "zstd", "bzip2" or NULL; format: "raw", "ustar", "zip" */
static int write_archive(const char *name, const char *filter, const char *format,
			 const member *m, int n)
{
	struct archive *a = archive_write_new();
	int rc = 0;
	if (filter)
		rc |= archive_write_add_filter_by_name(a, filter);
	rc |= archive_write_set_format_by_name(a, format);
	rc |= archive_write_open_filename(a, path_in(name));
	for (int i = 0; i < n && rc == 0; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, m[i].name);
		archive_entry_set_size(e, (la_int64_t)strlen(m[i].text));
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		rc |= archive_write_header(a, e);
		rc |= archive_write_data(a, m[i].text, strlen(m[i].text)) < 0;
		archive_entry_free(e);
	}
	if (rc)
		fprintf(stderr, "# %s: %s\n", name, archive_error_string(a));
	rc |= archive_write_close(a);
	archive_write_free(a);
	return rc ? -1 : 0;
}

/* ---- collecting records ---- */

typedef struct {
	char *text[64], *origin[64];
	int n;
} records;

static int collect(void *ctx, json_t *obj, const char *origin)
{
	records *r = ctx;
	if (r->n < 64) {
		r->text[r->n] = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
		r->origin[r->n++] = parm_xstrdup(origin);
	}
	return 0;
}

static void records_free(records *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->text[i]), free(r->origin[i]);
	r->n = 0;
}

static int same_records(const records *a, const records *b)
{
	if (a->n != b->n)
		return 0;
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->text[i], b->text[i]))
			return 0;
	return 1;
}

static long read_records(const char *name, records *r, parm_badrecs *bad)
{
	const char *p = strcmp(name, "-") ? path_in(name) : "-";
	parm_badrecs none = {0};
	return parm_jsonl_foreach(&p, 1, bad ? bad : &none, collect, r);
}

static const char PKU_A[] =
	"{\"prompt\": \"How do I bake bread?\", \"response_0\": \" Knead it.\", "
	"\"response_1\": \" Buy it.\", \"better_response_id\": 0, \"safer_response_id\": \"1\"}\n"
	"{\"prompt\": \"Say hi\", \"response_0\": \" Hi!\", \"response_1\": \" No.\", "
	"\"better_response_id\": false, \"safer_response_id\": true}\r\n";
static const char PKU_B[] =
	"\n{\"prompt\": \"Tell me a joke\", \"response_0\": \" Why?\", \"response_1\": \" Knock knock.\", "
	"\"better_response_id\": 1, \"safer_response_id\": null}";   /* no final newline */

static void test_formats(void)
{
	static const struct { const char *name, *filter, *format; int members; } fmt[] = {
		{ "pku.jsonl.gz", "gzip", "raw", 1 },
		{ "pku.jsonl.xz", "xz", "raw", 1 },
		{ "pku.jsonl.zst", "zstd", "raw", 1 },
		{ "pku.jsonl.bz2", "bzip2", "raw", 1 },
		{ "pku.tar", NULL, "ustar", 2 },
		{ "pku.tar.gz", "gzip", "ustar", 2 },
		{ "pku.tar.zst", "zstd", "ustar", 2 },
		{ "pku.zip", NULL, "zip", 2 },
	};
	char whole[sizeof PKU_A + sizeof PKU_B];
	records plain = {0}, r = {0};
	snprintf(whole, sizeof whole, "%s%s", PKU_A, PKU_B);
	write_plain("pku.jsonl", whole);
	long n = read_records("pku.jsonl", &plain, NULL);
	ok(n == 3 && plain.n == 3, "plain JSONL: 3 records (CRLF, blank line, no final newline)");
	ok(plain.n == 3 && !strcmp(plain.origin[2], path_in("pku.jsonl:4")),
	   "origin file:line (%s)", plain.n == 3 ? plain.origin[2] : "?");
	for (size_t i = 0; i < sizeof fmt / sizeof *fmt; i++) {
		member one = { "pku.jsonl", whole };
		member two[2] = { { "a/pku-a.jsonl", PKU_A }, { "a/pku-b.jsonl", PKU_B } };
		if (write_archive(fmt[i].name, fmt[i].filter, fmt[i].format,
				  fmt[i].members == 1 ? &one : two, fmt[i].members) < 0) {
			ok(0, "%s: libarchive could not write it", fmt[i].name);
			continue;
		}
		n = read_records(fmt[i].name, &r, NULL);
		ok(n == 3 && same_records(&plain, &r), "%s reads to the same records%s%s",
		   fmt[i].name, n < 0 ? ": " : "", n < 0 ? parm_error() : "");
		if (fmt[i].members == 2) {
			char want[600];
			snprintf(want, sizeof want, "%s:a/pku-b.jsonl:2", path_in(fmt[i].name));
			ok(r.n == 3 && !strcmp(r.origin[2], want), "%s: origin names the member (%s)",
			   fmt[i].name, r.n == 3 ? r.origin[2] : "?");
		}
		records_free(&r);
	}
	records_free(&plain);
}

/* parm_input_open_mem reads a buffer as parm_input_open reads the file:
 * the same records from the plain and the .tar.gz bytes, named as given. */
static void test_open_mem(void)
{
	static const char *const names[] = { "pku.jsonl", "pku.tar.gz" };
	records plain = {0};
	read_records("pku.jsonl", &plain, NULL);
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(path_in(names[i]), "rb");
		char buf[8192];
		size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
		records r = {0};
		parm_badrecs none = {0};
		long got = 0;
		if (f)
			fclose(f);
		parm_input *in = parm_input_open_mem(buf, n, "memory");
		while (in && parm_input_next_member(in) > 0)
			got += parm_input_jsonl(in, &none, collect, &r);
		ok(in && got == 3 && same_records(&plain, &r) && !strncmp(r.origin[0], "memory:", 7),
		   "%s from memory: the same records, origin %s", names[i], r.n ? r.origin[0] : "?");
		parm_input_close(in);
		records_free(&r);
	}
	records_free(&plain);
}

/* Files made by the real tools, where they are installed (Debian: gzip,
 * xz-utils, zstd, bzip2, tar, zip), read like libarchive's own. */
static void test_external_tools(void)
{
	static const struct { const char *tool, *out, *cmd; } ext[] = {
		{ "gzip", "x.jsonl.gz", "gzip -c pku.jsonl > x.jsonl.gz" },
		{ "xz", "x.jsonl.xz", "xz -c pku.jsonl > x.jsonl.xz" },
		{ "zstd", "x.jsonl.zst", "zstd -q -c pku.jsonl > x.jsonl.zst" },
		{ "bzip2", "x.jsonl.bz2", "bzip2 -c pku.jsonl > x.jsonl.bz2" },
		{ "tar", "x.tar.xz", "tar -cJf x.tar.xz pku.jsonl" },
		{ "zip", "x.zip", "zip -q x.zip pku.jsonl" },
	};
	records plain = {0}, r = {0};
	char cmd[1200];
	read_records("pku.jsonl", &plain, NULL);
	for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
		snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", ext[i].tool);
		if (system(cmd) != 0) {
			skip("not installed", "%s made by %s", ext[i].out, ext[i].tool);
			continue;
		}
		snprintf(cmd, sizeof cmd, "cd '%s' && %s", dir, ext[i].cmd);
		long n = system(cmd) == 0 ? read_records(ext[i].out, &r, NULL) : -2;
		ok(n == 3 && same_records(&plain, &r), "%s made by %s reads to the same records",
		   ext[i].out, ext[i].tool);
		records_free(&r);
	}
	records_free(&plain);
}

static void test_empty_and_missing(void)
{
	records r = {0};
	write_plain("empty.jsonl", "");
	write_archive("empty.jsonl.gz", "gzip", "raw", &(member){ "d", "" }, 1);
	ok(read_records("empty.jsonl", &r, NULL) == 0 && read_records("empty.jsonl.gz", &r, NULL) == 0,
	   "empty files, plain or compressed, hold no records");
	long n = read_records("nonexistent.jsonl", &r, NULL);
	ok(n < 0 && strstr(parm_error(), "nonexistent.jsonl"),
	   "a missing file is an error naming it (%s)", parm_error());
	write_plain("array.json", "  [{\"prompt\": \"How do I bake bread?\", \"response_0\": \" Knead it.\", "
		"\"response_1\": \" Buy it.\", \"better_response_id\": 0, \"safer_response_id\": \"1\"},\n"
		" 7]\n");
	n = read_records("array.json", &r, &(parm_badrecs){ .strict = 1 });
	ok(n < 0 && strstr(parm_error(), "array.json:record 2: not a JSON object"),
	   "a JSON array of records: origins count records (%s)", parm_error());
	ok(r.n == 1 && strstr(r.text[0], "Knead it."), "a JSON array of records reads its objects");
	records_free(&r);
}

/* libarchive's mtree reader once claimed compact JSON as its own format
 * and read nothing: parm-sample --json writes exactly such lines. */
static void test_compact_json(void)
{
	records r = {0};
	write_plain("compact.jsonl", "{\"a\":1}\n{\"prompt\":\"x\",\"response\":\"y\"}\n");
	write_archive("compact.jsonl.gz", "gzip", "raw",
		      &(member){ "d", "{\"a\":1}\n{\"prompt\":\"x\",\"response\":\"y\"}\n" }, 1);
	ok(read_records("compact.jsonl", &r, NULL) == 2 && r.n == 2, "compact JSON lines are read");
	records_free(&r);
	ok(read_records("compact.jsonl.gz", &r, NULL) == 2 && r.n == 2, "compact JSON lines, gzipped, are read");
	records_free(&r);
}

static void test_long_line_and_stdin(void)
{
	size_t big = 300000;
	char *s = parm_xmalloc(big + 64);
	records r = {0};
	int saved = dup(0), fd;
	strcpy(s, "{\"text\": \"");
	memset(s + 10, 'x', big);
	strcpy(s + 10 + big, "\"}\n{\"text\": \"y\"}\n");
	write_plain("long.jsonl", s);
	write_archive("long.jsonl.xz", "xz", "raw", &(member){ "d", s }, 1);
	ok(read_records("long.jsonl.xz", &r, NULL) == 2 && r.n == 2 && strlen(r.text[0]) == big + 11,
	   "a %zu-byte line across many blocks reads whole", big);
	records_free(&r);
	fd = open(path_in("long.jsonl.xz"), O_RDONLY);
	dup2(fd, 0);
	close(fd);
	long n = read_records("-", &r, NULL);
	ok(n == 2 && !strcmp(r.origin[1], "stdin:2"),
	   "\"-\" reads stdin, compressed too (%s)", n == 2 ? r.origin[1] : parm_error());
	dup2(saved, 0);
	close(saved);
	records_free(&r);
	free(s);
}

/* ---- malformed records ---- */

typedef struct { char msg[4][256]; int n; } skips;

static void on_skip(void *ctx, const char *msg)
{
	skips *s = ctx;
	if (s->n < 4)
		snprintf(s->msg[s->n++], sizeof s->msg[0], "%s", msg);
}

static void test_malformed(void)
{
	skips seen = {0};
	parm_badrecs bad = { .on_skip = on_skip, .ctx = &seen };
	parm_objectives o = {0};
	parm_pairs p;
	const char *path = path_in("bad.jsonl");
	write_plain("bad.jsonl",
		"{\"prompt\": \"a\", \"response_0\": \"b\", \"response_1\": \"c\", "
		"\"better_response_id\": 0, \"safer_response_id\": 1}\n"
		"{\"prompt\": \"a\", \"response_0\": \n"
		"[1, 2]\n"
		"{\"prompt\": \"a\", \"response_0\": \"b\", \"better_response_id\": 0}\n"
		"{\"prompt\": \"a\", \"response_0\": \"b\", \"response_1\": \"c\", \"better_response_id\": 1}\n"
		"{\"prompt\": \"a\", \"response_0\": \"b\", \"response_1\": \"c\", "
		"\"better_response_id\": 2, \"safer_response_id\": 1}\n");
	parm_objectives_default(&o);
	int rc = parm_pairs_load(&p, &o, &path, 1, &bad);
	ok(rc == 0 && p.n == 1 && bad.n_skipped == 5, "malformed lines skipped and counted (%ld kept, %ld skipped)",
	   p.n, bad.n_skipped);
	ok(seen.n == 4 && strstr(seen.msg[0], "bad.jsonl:2: bad JSON"), "bad JSON: file:line:reason (%s)", seen.msg[0]);
	ok(strstr(seen.msg[1], "bad.jsonl:3: not a JSON object") != NULL, "not an object (%s)", seen.msg[1]);
	ok(strstr(seen.msg[2], "bad.jsonl:4: no string field 'response_1'") != NULL,
	   "missing field (%s)", seen.msg[2]);
	ok(strstr(seen.msg[3], "bad.jsonl:5: objective 'harmless': no field 'safer_response_id'") != NULL,
	   "missing objective field names objective and record (%s)", seen.msg[3]);
	parm_pairs_free(&p);

	parm_badrecs strict = { .strict = 1 };
	rc = parm_pairs_load(&p, &o, &path, 1, &strict);
	ok(rc < 0 && strstr(parm_error(), "bad.jsonl:2: bad JSON"), "strict: the first is fatal (%s)",
	   parm_error());
	parm_objectives_free(&o);

	parm_badrecs quiet = {0};
	parm_objectives_add(&o, "helpful=better_response_id");
	parm_objectives_add(&o, "honest=honest_id");
	rc = parm_pairs_load(&p, &o, &path, 1, &quiet);
	ok(rc < 0 && strstr(parm_error(), "objective 'honest': no record has a field 'honest_id'"),
	   "a field in no record is an error (%s)", parm_error());
	parm_objectives_free(&o);
}

/* ---- pairs ---- */

static void test_objectives(void)
{
	parm_objectives o = {0};
	parm_objectives_default(&o);
	ok(o.k == 2 && !strcmp(o.obj[0].name, "helpful") && !strcmp(o.obj[1].field, "safer_response_id"),
	   "default objectives: PKU-SafeRLHF's two");
	ok(parm_objective_index(&o, "harmless") == 1 && parm_objective_index(&o, "funny") == -1,
	   "lookup by name; unknown is -1");
	ok(parm_objectives_add(&o, "helpful=x") < 0 && strstr(parm_error(), "'helpful' named twice"),
	   "a repeated name is an error (%s)", parm_error());
	ok(parm_objectives_add(&o, "nofield") < 0 && parm_objectives_add(&o, "x=@") < 0 &&
	   parm_objectives_add(&o, "=f") < 0, "malformed specs are errors (%s)", parm_error());
	parm_objectives_free(&o);
}

static void test_pku_pairs(void)
{
	parm_objectives o = {0};
	parm_badrecs bad = { .strict = 1 };
	parm_pairs p;
	const char *path = path_in("pku.tar.gz");
	parm_objectives_default(&o);
	int rc = parm_pairs_load(&p, &o, &path, 1, &bad);
	ok(rc == 0 && p.n == 3, "PKU fields with no mapping: 3 pairs (%s)", rc ? parm_error() : "");
	if (rc == 0 && p.n == 3)
		ok(p.pair[0].label[0] == 0 && p.pair[0].label[1] == 1 && p.pair[1].label[0] == 0 &&
		   p.pair[1].label[1] == 1 && p.pair[2].label[0] == 1 && p.pair[2].label[1] == PARM_LABEL_NONE &&
		   !strcmp(p.pair[2].resp[1], " Knock knock.") && !p.pair[0].preformatted,
		   "labels from int, string, bool; null is no label");
	parm_pairs_free(&p);
	parm_objectives_free(&o);

	parm_objectives_add(&o, "safe=safer_response_id");
	rc = parm_pairs_load(&p, &o, &path, 1, &bad);
	ok(rc == 0 && o.k == 1 && p.n == 3 && p.pair[0].label[0] == 1 && p.pair[1].label[1] == PARM_LABEL_NONE,
	   "custom mapping: one objective from safer_response_id");
	parm_pairs_free(&p);
	parm_objectives_free(&o);
}

static const char HH[] =
	"{\"chosen\": \"\\n\\nHuman: Hi\\n\\nAssistant: Hello.\\n\\nHuman: Help me\\n\\nAssistant: Sure, here.\", "
	"\"rejected\": \"\\n\\nHuman: Hi\\n\\nAssistant: Hello.\\n\\nHuman: Help me\\n\\nAssistant: No.\"}\n"
	"{\"prompt\": \"Q?\", \"chosen\": \" yes\", \"rejected\": \" no\"}\n"
	"{\"chosen\": \"no assistant turn\", \"rejected\": \"nothing\"}\n";

static void test_hh_pairs(void)
{
	parm_objectives o = {0};
	skips seen = {0};
	parm_badrecs bad = { .on_skip = on_skip, .ctx = &seen };
	parm_pairs p;
	char spec[600];
	const char *data = path_in("pku.jsonl");
	write_plain("hh.jsonl", HH);
	write_archive("hh.jsonl.bz2", "bzip2", "raw", &(member){ "d", HH }, 1);
	snprintf(spec, sizeof spec, "helpful=@%s", path_in("hh.jsonl"));
	parm_objectives_add(&o, spec);
	snprintf(spec, sizeof spec, "harmless=@%s", path_in("hh.jsonl.bz2"));
	parm_objectives_add(&o, spec);
	int rc = parm_pairs_load(&p, &o, NULL, 0, &bad);
	ok(rc == 0 && p.n == 4 && bad.n_skipped == 2, "HH files: 4 pairs, 2 without a prompt skipped (%s)",
	   rc ? parm_error() : "");
	if (rc == 0 && p.n == 4) {
		parm_pair *q = &p.pair[0];
		ok(!strcmp(q->prompt, "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Help me\n\nAssistant:") &&
		   !strcmp(q->resp[0], " Sure, here.") && !strcmp(q->resp[1], " No.") && q->preformatted,
		   "HH prompt ends at the last \"\\n\\nAssistant:\"");
		ok(!strcmp(p.pair[1].prompt, "Q?") && !p.pair[1].preformatted && !strcmp(p.pair[1].resp[0], " yes"),
		   "prompt + chosen/rejected records");
		ok(q->label[0] == 0 && q->label[1] == PARM_LABEL_NONE && p.pair[2].label[0] == PARM_LABEL_NONE &&
		   p.pair[2].label[1] == 0, "each file labels only its objective, chosen first");
	}
	ok(seen.n == 2 && strstr(seen.msg[0], "hh.jsonl:3: objective 'helpful': chosen and rejected share no prompt"),
	   "no common prompt is malformed (%s)", seen.msg[0]);
	parm_pairs_free(&p);
	rc = parm_pairs_load(&p, &o, &data, 1, &bad);
	ok(rc < 0 && strstr(parm_error(), "every objective names its own file"),
	   "DATA with only file objectives is an error (%s)", parm_error());
	parm_objectives_add(&o, "safe=safer_response_id");
	rc = parm_pairs_load(&p, &o, &data, 1, &bad);
	ok(rc == 0 && p.n == 7 && p.pair[0].label[2] == 1 && p.pair[0].label[0] == PARM_LABEL_NONE,
	   "DATA and @FILE objectives mix (%ld pairs)", p.n);
	parm_pairs_free(&p);
	parm_objectives_free(&o);
}

/* ---- tokenisation ---- */

static parm_tokenizer *load_spm(parm_gguf **g)
{
	char path[1024];
	const char *fx = fixtures_dir();
	if (!fx)
		return NULL;
	snprintf(path, sizeof path, "%s/ggml-vocab-llama-spm.gguf", fx);
	if (!(*g = parm_gguf_open(path)))
		return NULL;
	return parm_tokenizer_load(*g);
}

static int pieces_equal(const parm_tokenizer *t, const int *ids, int n, const char *want)
{
	char buf[4096];
	size_t at = 0, len;
	for (int i = 0; i < n; i++) {
		const char *s = parm_tok_piece(t, ids[i], &len);
		if (at + len >= sizeof buf)
			return 0;
		memcpy(buf + at, s, len);
		at += len;
	}
	buf[at] = '\0';
	return !strcmp(buf, want);
}

static void test_tokenize_pairs(const parm_tokenizer *t)
{
	parm_objectives o = {0};
	parm_badrecs bad = { .strict = 1 };
	parm_pairs p;
	const char *path = path_in("pku.jsonl");
	parm_pair_opts po = {0};
	parm_objectives_default(&o);
	parm_pairs_load(&p, &o, &path, 1, &bad);
	int rc = parm_pairs_tokenize(&p, t, &po);
	parm_pair *q = &p.pair[2];
	ok(rc == 0 && p.n == 3 && q->seq[0][0] == parm_tok_bos(t) &&
	   q->seq[1][q->n_seq[1] - 1] == parm_tok_eos(t), "pair tokens: BOS first, EOS last");
	ok(pieces_equal(t, q->seq[1] + q->resp_start[1], q->n_seq[1] - q->resp_start[1] - 1, " Knock knock.") &&
	   pieces_equal(t, q->seq[1] + 1, q->resp_start[1] - 1,
			" BEGINNING OF CONVERSATION: USER: Tell me a joke ASSISTANT:"),
	   "templated prompt, then the response tokens the loss sums over");
	int plen = q->resp_start[0], long0 = q->n_seq[0], long1 = q->n_seq[1];
	parm_pairs_free(&p);

	parm_pairs_load(&p, &o, &path, 1, &bad);
	po.max_len = plen + 3;
	parm_pairs_tokenize(&p, t, &po);
	ok(p.n_dropped >= 1 && p.n + p.n_dropped == 3, "over max_len: dropped (%ld of 3)", p.n_dropped);
	parm_pairs_free(&p);

	parm_pairs_load(&p, &o, &path, 1, &bad);
	po.overlong = PARM_OVERLONG_TRUNCATE;
	parm_pairs_tokenize(&p, t, &po);
	q = &p.pair[2];
	ok(p.n == 3 && p.n_truncated >= 1 && q->n_seq[1] == plen + 3 && q->n_seq[0] == (long0 < plen + 3 ? long0 : plen + 3),
	   "over max_len: responses cut (%ld truncated; %d/%d -> %d/%d)", p.n_truncated,
	   long0, long1, q->n_seq[0], q->n_seq[1]);
	parm_pairs_free(&p);

	parm_pairs_load(&p, &o, &path, 1, &bad);
	po.max_len = 4;
	parm_pairs_tokenize(&p, t, &po);
	ok(p.n == 0 && p.n_dropped == 3, "a prompt that leaves no room drops the pair even when truncating");
	parm_pairs_free(&p);
	parm_objectives_free(&o);
}

static void test_lm(const parm_tokenizer *t)
{
	parm_lm_data d;
	parm_badrecs bad = { .strict = 1 };
	parm_lm_opts o = { .max_len = 8, .layout = PARM_LM_PACK };
	const char *paths[2] = { path_in("corpus.txt"), path_in("sft.jsonl.gz") };
	const char *sft = "{\"text\": \"one two three\"}\n"
		"{\"prompt\": \"Q: hi A:\", \"response\": \" hello\"}\n";
	write_plain("corpus.txt", "The quick brown fox jumps over the lazy dog.\n\nAgain and again.\n");
	write_archive("sft.jsonl.gz", "gzip", "raw", &(member){ "d", sft }, 1);
	int rc = parm_lm_load(&d, t, paths, 2, &o, &bad);
	ok(rc == 0 && d.n_docs == 3, "LM corpus: a text file and two JSONL records are 3 documents (%s)",
	   rc ? parm_error() : "");
	long predicted = 0;
	for (long i = 0; i < d.n_seq; i++)
		predicted += d.len[i] - 1;
	ok(rc == 0 && predicted == d.n_tok - 1 && d.len[0] == 8,
	   "packed windows of 8 predict every token once (%ld of %ld)", predicted, d.n_tok);
	ok(rc == 0 && d.tok[0] == parm_tok_bos(t) && !d.loss[0] && d.loss[1] &&
	   d.tok[d.n_tok - 1] == parm_tok_eos(t) && d.loss[d.n_tok - 1], "BOS not a target, EOS is");
	/* the last document: prompt tokens carry no loss, the response does */
	long last = d.n_tok - 1, zeros = 0;
	while (last > 0 && d.loss[last])
		last--;
	for (long j = last; j >= 0 && !d.loss[j]; j--)
		zeros++;
	ok(rc == 0 && pieces_equal(t, d.tok + last + 1, (int)(d.n_tok - last - 2), " hello") && zeros > 3,
	   "prompt + response: loss on the response and EOS only");
	parm_lm_free(&d);

	o.layout = PARM_LM_TRUNCATE;
	rc = parm_lm_load(&d, t, paths, 2, &o, &bad);
	ok(rc == 0 && d.n_seq == 3 && d.n_truncated >= 1 && d.len[0] == 8 && d.start[1] > 8,
	   "truncated layout: one sequence per document (%ld cut)", d.n_truncated);
	parm_lm_free(&d);
	/* JSONL by content whatever the name; text that merely starts with
	 * '{' stays text */
	o.layout = PARM_LM_PACK;
	write_plain("sft.data", sft);
	write_plain("brace.txt", "{ not json } but prose\n{\"text\": \"x\"}\n");
	const char *by_content[2] = { path_in("sft.data"), path_in("brace.txt") };
	rc = parm_lm_load(&d, t, by_content, 2, &o, &bad);
	ok(rc == 0 && d.n_docs == 3, "a JSONL corpus named otherwise is read as JSONL, text "
	   "starting with '{' as text (%ld documents)", rc ? -1L : d.n_docs);
	if (rc == 0)
		parm_lm_free(&d);
}

/* ---- splits ---- */

static void test_split(void)
{
	enum { N = 1000 };
	long train[N], held[N], train2[N], held2[N], order[N], order2[N];
	unsigned char seen[N] = {0};
	long nh = parm_heldout_count(N, 0.1);
	int disjoint = 1, sorted = 1;
	ok(nh == 100 && parm_heldout_count(N, 25) == 25 && parm_heldout_count(N, 2000) == -1 &&
	   parm_heldout_count(N, -0.5) == -1, "held-out as a fraction or a count");
	parm_split(train, held, N, nh, 42);
	for (long i = 0; i < nh; i++)
		seen[held[i]]++;
	for (long i = 0; i < N - nh; i++)
		seen[train[i]]++;
	for (int i = 0; i < N; i++)
		disjoint &= seen[i] == 1;
	for (long i = 1; i < nh; i++)
		sorted &= held[i] > held[i - 1];
	ok(disjoint && sorted, "split: disjoint, covers everything, in order");
	parm_split(train2, held2, N, nh, 42);
	ok(!memcmp(held, held2, nh * sizeof *held), "split: same seed, same split");
	parm_split(train2, held2, N, nh, 43);
	ok(memcmp(held, held2, nh * sizeof *held), "split: another seed, another split");

	parm_epoch_order(order, N, 7, 3);
	parm_epoch_order(order2, N, 7, 3);
	memset(seen, 0, sizeof seen);
	int perm = 1;
	for (int i = 0; i < N; i++)
		seen[order[i]]++;
	for (int i = 0; i < N; i++)
		perm &= seen[i] == 1;
	ok(perm && !memcmp(order, order2, sizeof order), "epoch order: a permutation, a function of (seed, epoch)");
	parm_epoch_order(order2, N, 7, 4);
	ok(memcmp(order, order2, sizeof order), "epoch order: another epoch, another order");
}

int main(void)
{
	parm_gguf *g = NULL;
	parm_tokenizer *t;
	if (!mkdtemp(dir))
		parm_die("mkdtemp: cannot make %s", dir);
	test_formats();
	test_open_mem();
	test_external_tools();
	test_empty_and_missing();
	test_compact_json();
	test_long_line_and_stdin();
	test_malformed();
	test_objectives();
	test_pku_pairs();
	test_hh_pairs();
	test_split();
	if ((t = load_spm(&g))) {
		test_tokenize_pairs(t);
		test_lm(t);
		parm_tokenizer_free(t);
	} else {
		ok(0, "llama-spm vocabulary fixture: %s", fixtures_dir() ? parm_error() : "not found");
	}
	parm_gguf_close(g);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# could not remove %s\n", dir);
	return tap_done();
}
