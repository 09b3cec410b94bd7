/* remote.c - next-token log-probabilities from a model served over HTTP
 * (remote.h).  libcurl moves the bytes, jansson reads and writes JSON. */
#include <parm/remote.h>
#include "remote_internal.h"
#include <parm/util.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BACKOFF 10.0        /* seconds between attempts, at most */
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"   /* Debian's */

struct buf { char *p; size_t n, cap; };

enum xstate { X_IDLE, X_RUNNING, X_WAITING, X_DONE, X_FINISHED };	/* DONE: reply in */

struct xfer {                   /* one request in flight, per slot */
	CURL *h;
	char *url, *body;       /* body NULL: GET */
	int banned;             /* the body bans held-back tokens */
	struct buf reply;
	char err[CURL_ERROR_SIZE];
	int attempt;
	double retry_at;
	enum xstate state;
};

struct parm_remote {
	enum parm_api api;
	int top_k, n_slots, retries;
	double timeout;
	char *root;             /* server root, no trailing slash */
	char *complete_url;     /* where steps are asked for */
	struct buf ca;          /* system CAs + --cacert's, PEM; empty: libcurl's own */
	char *model;
	int llamacpp;           /* the server is llama.cpp (its own fields) */
	int n_ctx, n_vocab;
	json_t *ban;            /* logit_bias banning tokens held back */
	json_t *lora;           /* [{"id", "scale"}] for every request, or NULL */
	CURLM *multi;
	struct curl_slist *headers;
	struct xfer *x;
	int32_t *ids;           /* [n_slots][top_k] replies */
	float *vals;
	long n_requests;
	double seconds;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;
	if (b->n + len + 1 > b->cap) {
		b->cap = (b->n + len + 1) * 2;
		b->p = parm_xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, len);
	b->n += len;
	b->p[b->n] = 0;
	return len;
}

static void xfer_setup(parm_remote *r, struct xfer *x)
{
	x->h = curl_easy_init();
	if (!x->h)
		parm_die("curl_easy_init failed");
	curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(x->h, CURLOPT_WRITEDATA, &x->reply);
	curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->err);
	curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, (long)(r->timeout * 1000));
	curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)((r->timeout < 10 ? r->timeout : 10) * 1000));
	curl_easy_setopt(x->h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
	if (r->ca.n) {
		struct curl_blob blob = {r->ca.p, r->ca.n, CURL_BLOB_NOCOPY};
		curl_easy_setopt(x->h, CURLOPT_CAINFO_BLOB, &blob);
	}
}

/* Append the contents of path to b; -1 with errno set on failure. */
static int buf_read_file(struct buf *b, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char chunk[1 << 16];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		on_data(chunk, 1, n, b);
	int err = ferror(f) ? errno : 0;
	fclose(f);
	return err ? (errno = err, -1) : 0;
}

/* The system's CA bundle followed by the certificates in path: a private
 * CA is added to those trusted, not put in their place (as CURLOPT_CAINFO
 * would).  The bundle is libcurl's built-in default, else Debian's; with
 * neither readable only path's CAs are trusted. */
static int load_cacert(struct buf *ca, const char *path)
{
	const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
	const char *bundles[] = {v->cainfo, SYSTEM_CA_BUNDLE};
	for (int i = 0; i < 2; i++) {
		ca->n = 0;
		if (bundles[i] && buf_read_file(ca, bundles[i]) == 0)
			break;
		ca->n = 0;
	}
	if (ca->n && ca->p[ca->n - 1] != '\n')
		on_data("\n", 1, 1, ca);
	size_t start = ca->n;
	if (buf_read_file(ca, path) < 0)
		return parm_failc(PARM_ESYS, "--cacert %s: %s", path, strerror(errno));
	if (ca->n == start || !memmem(ca->p + start, ca->n - start, "-----BEGIN CERTIFICATE-----", 27))
		return parm_fail("--cacert %s: no PEM certificate in it (-----BEGIN CERTIFICATE-----)", path);
	return 0;
}

/* (Re)start a transfer with its current url and body. */
static void xfer_start(parm_remote *r, struct xfer *x)
{
	x->reply.n = 0;
	x->err[0] = 0;
	curl_easy_setopt(x->h, CURLOPT_URL, x->url);
	if (x->body)
		curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, x->body);
	else
		curl_easy_setopt(x->h, CURLOPT_HTTPGET, 1L);
	x->state = X_RUNNING;
	r->n_requests++;
	curl_multi_add_handle(r->multi, x->h);
}

static void xfer_set(struct xfer *x, const char *url, char *body)
{
	free(x->url);
	free(x->body);
	x->url = parm_xstrdup(url);
	x->body = body;
	x->attempt = 0;
	x->banned = 0;
	x->state = X_IDLE;
}

/* The server's own words about a failed request, on one line. */
static char *reply_message(const struct buf *b)
{
	json_t *j = json_loadb(b->p ? b->p : "", b->n, JSON_ALLOW_NUL, NULL), *m = NULL;
	if (j) {
		json_t *e = json_object_get(j, "error");
		m = json_is_object(e) ? json_object_get(e, "message") : e;
		if (!json_is_string(m))
			m = json_object_get(j, "message");
		if (!json_is_string(m))
			m = json_object_get(j, "detail");
	}
	char *s = parm_xstrdup(json_is_string(m) ? json_string_value(m) : b->n ? b->p : "(no message)");
	json_decref(j);
	for (char *p = s; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	if (strlen(s) > 300)
		strcpy(s + 297, "...");
	return s;
}

static int retryable_curl(CURLcode c)
{
	return c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ||
	       c == CURLE_SEND_ERROR || c == CURLE_RECV_ERROR ||
	       c == CURLE_GOT_NOTHING || c == CURLE_PARTIAL_FILE;
}

/* 1: the transfer's reply is in; 0: it will be retried; -1: failed. */
static int xfer_finish(parm_remote *r, struct xfer *x, CURLcode res)
{
	long status = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	int again = res != CURLE_OK ? retryable_curl(res) : status == 429 || status >= 500;
	/* llama.cpp's parser refuses a reply ending in a broken character:
	 * the caller asks again with such tokens banned */
	int broken = status == 500 && x->reply.n && strstr(x->reply.p, "does not match the expected");
	if (res == CURLE_OK && ((status >= 200 && status < 300) || (broken && !x->banned))) {
		x->state = X_DONE;
		return 1;
	}
	if (again && x->attempt < r->retries) {
		double delay = 0.25 * (1 << (x->attempt < 8 ? x->attempt : 8));
		x->attempt++;
		x->retry_at = parm_now() + (delay < MAX_BACKOFF ? delay : MAX_BACKOFF);
		x->state = X_WAITING;
		return 0;
	}
	char tries[48] = "";
	if (again && r->retries > 0)
		snprintf(tries, sizeof tries, " (after %d retries)", r->retries);
	if (res != CURLE_OK) {
		if (res == CURLE_PARTIAL_FILE)
			return parm_failc(PARM_EREMOTE, "%s: truncated reply (the connection closed early)%s", x->url, tries);
		return parm_failc(PARM_EREMOTE, "%s: %s%s%s", x->url, x->err[0] ? x->err : curl_easy_strerror(res), tries,
				 res == CURLE_PEER_FAILED_VERIFICATION ? " (a private CA: add it with --cacert)" : "");
	}
	char *msg = reply_message(&x->reply);
	const char *hint = status == 400 && strstr(msg, "logprobs") ?
		" (the server caps the log-probabilities per token: lower --top-k, or raise vLLM's --max-logprobs)" : "";
	if (status == 401 || status == 403)
		hint = " (set PARM_API_KEY to the server's key)";
	parm_failc(status == 404 ? PARM_ENOTFOUND : PARM_EREMOTE, "%s: HTTP %ld: %s%s%s", x->url, status, msg, hint, tries);
	free(msg);
	return -1;
}

static void abort_all(parm_remote *r, int n)
{
	for (int i = 0; i < n; i++) {
		if (r->x[i].state == X_RUNNING)
			curl_multi_remove_handle(r->multi, r->x[i].h);
		r->x[i].state = X_FINISHED;
	}
}

/* Restart transfers whose backoff is over; the wait until the next, in ms. */
static long restart_due(parm_remote *r, int n)
{
	double now = parm_now(), next = 1.0;
	for (int i = 0; i < n; i++) {
		struct xfer *x = &r->x[i];
		if (x->state != X_WAITING)
			continue;
		if (x->retry_at <= now)
			xfer_start(r, x);
		else if (x->retry_at - now < next)
			next = x->retry_at - now;
	}
	return (long)(next * 1000) + 1;
}

/* Run transfers 0..n-1 to completion, all at once. */
static int run_all(parm_remote *r, int n)
{
	double t0 = parm_now();
	int left = 0, running, queued;
	for (int i = 0; i < n; i++)     /* those set up anew */
		if (r->x[i].state == X_IDLE)
			xfer_start(r, &r->x[i]), left++;
	while (left > 0) {
		CURLMcode mc = curl_multi_perform(r->multi, &running);
		if (mc != CURLM_OK)
			return abort_all(r, n), parm_failc(PARM_EREMOTE, "%s: %s", r->root, curl_multi_strerror(mc));
		CURLMsg *m;
		while ((m = curl_multi_info_read(r->multi, &queued))) {
			struct xfer *x;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			curl_multi_remove_handle(r->multi, x->h);
			int rc = xfer_finish(r, x, m->data.result);
			if (rc < 0)
				return abort_all(r, n), -1;
			left -= rc;
		}
		long wait = restart_due(r, n);
		if (left > 0)
			curl_multi_poll(r->multi, NULL, 0, (int)(wait < 1000 ? wait : 1000), NULL);
	}
	r->seconds += parm_now() - t0;
	return 0;
}

/* One request on slot 0: the parsed JSON reply, NULL + parm_error. */
static json_t *request(parm_remote *r, const char *url, char *body, long *status)
{
	struct xfer *x = &r->x[0];
	xfer_set(x, url, body);
	if (run_all(r, 1) < 0)
		return NULL;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, status);
	json_error_t e;
	json_t *j = json_loadb(x->reply.p ? x->reply.p : "", x->reply.n, JSON_ALLOW_NUL, &e);
	if (!j)
		return parm_failcp(PARM_EREMOTE, "%s: malformed reply: %s", url, e.text);
	return j;
}

static char *url_join(const char *root, const char *path)
{
	char *s = parm_xmalloc(strlen(root) + strlen(path) + 1);
	strcpy(s, root);
	return strcat(s, path);
}

/* What the server serves: GET /v1/models (both servers have it).  A
 * server without it is not an error; nothing is learned. */
static int ask_models(parm_remote *r)
{
	char *url = url_join(r->root, "/v1/models");
	long status = 0;
	json_t *j = request(r, url, NULL, &status);
	if (!j) {
		int missing = parm_errcode() == PARM_ENOTFOUND;
		free(url);
		return missing ? 0 : -1;
	}
	json_t *m = json_array_get(json_object_get(j, "data"), 0);
	json_t *meta = json_object_get(m, "meta");
	const char *id = json_string_value(json_object_get(m, "id"));
	const char *owner = json_string_value(json_object_get(m, "owned_by"));
	if (!r->model && id)
		r->model = parm_xstrdup(id);
	r->llamacpp = owner && !strcmp(owner, "llamacpp");
	json_t *ctx = json_object_get(meta, "n_ctx");
	if (!ctx)
		ctx = json_object_get(m, "max_model_len");
	r->n_ctx = json_is_integer(ctx) ? (int)json_integer_value(ctx) : 0;
	json_t *nv = json_object_get(meta, "n_vocab");
	r->n_vocab = json_is_integer(nv) ? (int)json_integer_value(nv) : 0;
	json_decref(j);
	free(url);
	return 0;
}

static void set_urls(parm_remote *r, const char *url)
{
	r->root = parm_xstrdup(url);
	size_t n = strlen(r->root);
	while (n > 0 && r->root[n - 1] == '/')
		r->root[--n] = 0;
	int v1 = n >= 3 && !strcmp(r->root + n - 3, "/v1");
	if (r->api == PARM_API_OPENAI) {
		r->complete_url = url_join(r->root, v1 ? "/completions" : "/v1/completions");
		if (v1)
			r->root[n - 3] = 0;
	} else {
		r->complete_url = url_join(r->root, "/completion");
	}
}

/* Is the text whole UTF-8?  A token that is not (a byte, part of a
 * character) is held back by llama.cpp's server, or fails its parser. */
static int whole_utf8(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
		if (need == 0 || i + need > len)
			return 0;
		for (size_t k = 1; k < need; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
		i += need;
	}
	return 1;
}

/* [[id, false], ...] for every token the server would hold back. */
static json_t *held_back(const parm_tokenizer *t)
{
	json_t *ban = json_array();
	for (int id = 0; t && id < parm_tok_n_vocab(t); id++) {
		size_t len;
		const char *p = parm_tok_piece(t, id, &len);
		if (!whole_utf8((const unsigned char *)p, len))
			json_array_append_new(ban, json_pack("[i, b]", id, 0));
	}
	return ban;
}

parm_remote *parm_remote_new(const parm_remote_opts *o)
{
	static int curl_ready;
	if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		return parm_failcp(PARM_EREMOTE, "%s: cannot initialise libcurl", o->url);
	curl_ready = 1;
	parm_remote *r = parm_xcalloc(1, sizeof *r);
	*r = (parm_remote){.api = o->api, .top_k = o->top_k, .n_slots = o->n_slots,
		.retries = o->retries, .timeout = o->timeout > 0 ? o->timeout : 600,
		.model = o->model ? parm_xstrdup(o->model) : NULL};
	if (o->cacert && load_cacert(&r->ca, o->cacert) < 0) {
		free(r->ca.p);
		free(r->model);
		free(r);
		return NULL;
	}
	if (o->n_lora > 0) {
		r->lora = json_array();
		for (int i = 0; i < o->n_lora; i++)
			json_array_append_new(r->lora, json_pack("{s:i, s:f}", "id", i, "scale",
								 (double)o->lora[i]));
	}
	set_urls(r, o->url);
	r->multi = curl_multi_init();
	r->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (o->api_key && *o->api_key) {
		char *h = url_join("Authorization: Bearer ", o->api_key);
		r->headers = curl_slist_append(r->headers, h);
		free(h);
	}
	r->x = parm_xcalloc(r->n_slots, sizeof *r->x);
	for (int i = 0; i < r->n_slots; i++)
		xfer_setup(r, &r->x[i]);
	r->ban = held_back(o->tok);
	r->ids = parm_xmalloc((size_t)r->n_slots * r->top_k * sizeof *r->ids);
	r->vals = parm_xmalloc((size_t)r->n_slots * r->top_k * sizeof *r->vals);
	if (ask_models(r) < 0) {
		parm_remote_free(r);
		return NULL;
	}
	return r;
}

void parm_remote_free(parm_remote *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n_slots; i++) {
		curl_easy_cleanup(r->x[i].h);
		free(r->x[i].url);
		free(r->x[i].body);
		free(r->x[i].reply.p);
	}
	curl_multi_cleanup(r->multi);
	curl_slist_free_all(r->headers);
	json_decref(r->ban);
	json_decref(r->lora);
	free(r->x);
	free(r->ids);
	free(r->vals);
	free(r->root);
	free(r->complete_url);
	free(r->ca.p);
	free(r->model);
	free(r);
}

int parm_remote_api(const char *name)
{
	if (!strcmp(name, "llamacpp"))
		return PARM_API_LLAMACPP;
	if (!strcmp(name, "openai"))
		return PARM_API_OPENAI;
	return parm_fail("expected llamacpp or openai, not '%s'", name);
}

enum parm_api parm_opt_api(const char *arg)
{
	int api = parm_remote_api(arg);
	if (api < 0)
		parm_usage_error("--api: %s", parm_error());
	return (enum parm_api)api;
}

int parm_remote_slots(const parm_remote *r)
{
	return r->n_slots;
}

const char *parm_remote_url(const parm_remote *r) { return r->complete_url; }
int parm_remote_ctx(const parm_remote *r) { return r->n_ctx; }

/* A probe that exercises spaces, digits, punctuation and multi-byte text. */
static const char probe[] = "Hello world! It's 2024: naïve café, 日本語 and  two  spaces.\n\tTabs?";

static int remote_tokens(parm_remote *r, int **ids)
{
	json_t *req = r->llamacpp || r->api == PARM_API_LLAMACPP ?
		json_pack("{s:s, s:b, s:b}", "content", probe, "add_special", 0, "parse_special", 0) :
		json_pack("{s:s, s:b}", "prompt", probe, "add_special_tokens", 0);
	if (r->model && !(r->llamacpp || r->api == PARM_API_LLAMACPP))
		json_object_set_new(req, "model", json_string(r->model));
	char *url = url_join(r->root, "/tokenize"), *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	long status;
	json_t *j = request(r, url, body, &status);
	if (!j) {
		int missing = parm_errcode() == PARM_ENOTFOUND;
		free(url);
		return missing ? -2 : -1;
	}
	json_t *toks = json_object_get(j, "tokens");
	int n = (int)json_array_size(toks);
	*ids = parm_xmalloc((n + 1) * sizeof **ids);
	for (int i = 0; i < n; i++) {
		json_t *t = json_array_get(toks, i);
		if (json_is_object(t))
			t = json_object_get(t, "id");
		if (!json_is_integer(t)) {
			json_decref(j);
			free(*ids);
			parm_failc(PARM_EREMOTE, "%s: malformed reply: \"tokens\" is not a list of token ids", url);
			free(url);
			return -1;
		}
		(*ids)[i] = (int)json_integer_value(t);
	}
	json_decref(j);
	free(url);
	return n;
}

int parm_remote_check_tokenizer(parm_remote *r, const parm_tokenizer *t, const char *name)
{
	if (r->n_vocab && r->n_vocab != parm_tok_n_vocab(t))
		return parm_failc(PARM_EREMOTE, "%s: the server's vocabulary has %d tokens, %s's %d",
				 r->root, r->n_vocab, name, parm_tok_n_vocab(t));
	int *theirs, n = remote_tokens(r, &theirs);
	if (n == -2)
		return 0;
	if (n < 0)
		return -1;
	int m = parm_tokenize(t, probe, strlen(probe), 0, NULL, 0);
	int *ours = parm_xmalloc((m > 0 ? m : 1) * sizeof *ours);
	if (m < 0 || parm_tokenize(t, probe, strlen(probe), 0, ours, m) != m) {
		free(ours);
		free(theirs);
		return -1;
	}
	int i = 0;
	while (i < n && i < m && ours[i] == theirs[i])
		i++;
	if (i < n || i < m)
		parm_failc(PARM_EREMOTE, "%s: the server tokenises unlike %s: a probe text gives %d tokens there, %d here, "
			  "first differing at %d (%d vs %d)", r->root, name, n, m, i,
			  i < n ? theirs[i] : -1, i < m ? ours[i] : -1);
	free(ours);
	free(theirs);
	return i < n || i < m ? -1 : 0;
}

static char *step_body(const parm_remote *r, const int *tokens, int len, int ban)
{
	json_t *p = json_array();
	for (int i = 0; i < len; i++)
		json_array_append_new(p, json_integer(tokens[i]));
	json_t *j;
	if (r->api == PARM_API_LLAMACPP) {
		j = json_pack("{s:o, s:i, s:i, s:b, s:b, s:f}", "prompt", p, "n_predict", 1,
			      "n_probs", r->top_k, "cache_prompt", 1, "post_sampling_probs", 0,
			      "temperature", 0.0);
		/* the rest of the reply (settings, timings) is kilobytes per step */
		json_object_set_new(j, "response_fields", json_pack("[s]", "completion_probabilities"));
		if (r->lora)
			json_object_set(j, "lora", r->lora);
	} else {
		j = json_pack("{s:o, s:i, s:i, s:b, s:f}", "prompt", p, "max_tokens", 1,
			      "logprobs", r->top_k, "return_tokens_as_token_ids", 1,
			      "temperature", 0.0);
		if (r->model)
			json_object_set_new(j, "model", json_string(r->model));
		if (r->llamacpp)        /* its /v1/completions reads n_probs */
			json_object_set_new(j, "n_probs", json_integer(r->top_k));
	}
	if (ban)
		json_object_set(j, "logit_bias", r->ban);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

struct entry { int32_t id; float val; };

static int by_val_desc(const void *a, const void *b)
{
	float x = ((const struct entry *)a)->val, y = ((const struct entry *)b)->val;
	return (x < y) - (x > y);
}

/* An id from an OpenAI token string: vLLM's "token_id:123". */
static int token_id(const char *s, long *id)
{
	return strncmp(s, "token_id:", 9) == 0 ? parm_parse_long(s + 9, 0, INT32_MAX, id) : -1;
}

/* [{"id": 5, "logprob": -0.1}, ...] (llama.cpp, both endpoints). */
static int list_entries(json_t *list, struct entry *e, int max)
{
	int n = 0;
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		json_t *id = json_object_get(v, "id"), *lp = json_object_get(v, "logprob");
		if (!json_is_integer(id) || !json_is_number(lp))
			return -1;
		if (n < max)
			e[n++] = (struct entry){(int32_t)json_integer_value(id), (float)json_number_value(lp)};
	}
	return n;
}

/* {"token_id:5": -0.1, ...} (OpenAI legacy completions, vLLM). */
static int map_entries(json_t *map, struct entry *e, int max, const char **bad)
{
	int n = 0;
	const char *key;
	json_t *v;
	json_object_foreach(map, key, v) {
		long id;
		if (token_id(key, &id) < 0) {
			*bad = key;
			return -2;
		}
		if (!json_is_number(v))
			return -1;
		if (n < max)
			e[n++] = (struct entry){(int32_t)id, (float)json_number_value(v)};
	}
	return n;
}

/* The top log-probabilities of the one token asked for; -1 + parm_error. */
static int parse_reply(const parm_reply_opts *o, json_t *j, struct entry *e, int max, int banned)
{
	const char *bad = NULL, *what;
	int n = -1;
	if (!banned && json_is_object(json_object_get(j, "error")))
		return -2;      /* see xfer_finish */
	if (o->api == PARM_API_LLAMACPP) {
		what = "no completion_probabilities[0].top_logprobs with ids (is it llama.cpp's server? else try --api openai)";
		json_t *p = json_array_get(json_object_get(j, "completion_probabilities"), 0);
		json_t *list = json_object_get(p, "top_logprobs");
		if (!banned && json_array_size(json_object_get(j, "completion_probabilities")) == 0)
			return -2;      /* a token held back, or not llama.cpp */
		if (json_is_array(list))
			n = list_entries(list, e, max);
	} else {
		what = "no choices[0].logprobs.top_logprobs[0] (does the server return log-probabilities?)";
		json_t *lp = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "logprobs");
		json_t *top = json_array_get(json_object_get(lp, "top_logprobs"), 0);
		json_t *content = json_array_get(json_object_get(lp, "content"), 0);
		if (!banned && o->llamacpp && !content)
			return -2;
		if (json_is_object(top))
			n = map_entries(top, e, max, &bad);
		else if (json_is_array(json_object_get(content, "top_logprobs")))
			n = list_entries(json_object_get(content, "top_logprobs"), e, max);
	}
	if (n == -2)
		return parm_failc(PARM_EREMOTE, "%s: token \"%.40s\" is not a token id (start vLLM with a version that "
				 "knows return_tokens_as_token_ids)", o->url, bad);
	if (n < 0)
		return parm_failc(PARM_EREMOTE, "%s: malformed reply: %s", o->url, what);
	if (n == 0)
		return parm_failc(PARM_EREMOTE, "%s: malformed reply: no log-probabilities", o->url);
	return n;
}

/* Entries e[n], sorted best first, cut to top_k and checked, into ids/vals. */
static int keep_entries(const parm_reply_opts *o, struct entry *e, int n, int n_vocab,
			int32_t *ids, float *vals)
{
	qsort(e, n, sizeof *e, by_val_desc);
	if (n > o->top_k)
		n = o->top_k;
	for (int k = 0; k < n; k++) {
		if (e[k].id < 0 || e[k].id >= n_vocab)
			return parm_failc(PARM_EREMOTE, "%s: reply names token %d, outside the vocabulary (%d)",
					 o->url, (int)e[k].id, n_vocab);
		if (isnan(e[k].val))
			return parm_failc(PARM_EREMOTE, "%s: malformed reply: a log-probability is NaN", o->url);
		ids[k] = e[k].id;
		vals[k] = e[k].val;
	}
	return n;
}

int parm_remote_parse_step(const parm_reply_opts *o, const char *body, size_t len,
			   int n_vocab, int banned, int32_t *ids, float *vals)
{
	json_error_t err;
	json_t *j = json_loadb(body ? body : "", len, JSON_ALLOW_NUL, &err);
	if (!j)
		return parm_failc(PARM_EREMOTE, "%s: %s reply: %s", o->url,
				 strstr(err.text, "premature end") ? "truncated" : "malformed", err.text);
	int max = o->top_k + 1;         /* vLLM adds the chosen token */
	struct entry *e = parm_xmalloc(max * sizeof *e);
	int n = parse_reply(o, j, e, max, banned);
	json_decref(j);
	if (n >= 0)
		n = keep_entries(o, e, n, n_vocab, ids, vals);
	free(e);
	return n;
}

static int read_step(parm_remote *r, int i, int n_vocab, int banned, parm_step *st)
{
	parm_reply_opts o = { r->api, r->llamacpp, r->top_k, r->x[i].url };
	int32_t *ids = r->ids + (size_t)i * r->top_k;
	float *vals = r->vals + (size_t)i * r->top_k;
	int n = parm_remote_parse_step(&o, r->x[i].reply.p, r->x[i].reply.n, n_vocab, banned,
				       ids, vals);
	if (n < 0)
		return n;
	st->sparse = 1;
	st->k = n;
	st->ids = ids;
	st->logits = vals;
	return 0;
}

int parm_remote_step(parm_remote *r, int n, const int *const *tokens, const int *len,
		     int n_vocab, parm_step *steps)
{
	if (n > r->n_slots)
		return parm_fail("%s: %d requests at once, room for %d", r->root, n, r->n_slots);
	for (int i = 0; i < n; i++)
		xfer_set(&r->x[i], r->complete_url, step_body(r, tokens[i], len[i], 0));
	for (int ban = 0; ban < 2; ban++) {
		int again = 0;
		if (run_all(r, n) < 0)
			return -1;
		for (int i = 0; i < n; i++) {
			if (r->x[i].state != X_DONE)
				continue;
			int rc = read_step(r, i, n_vocab, ban, &steps[i]);
			if (rc == -1)
				return -1;
			if (rc == -2) { /* ask again, held-back tokens banned */
				xfer_set(&r->x[i], r->complete_url, step_body(r, tokens[i], len[i], 1));
				r->x[i].banned = 1;
				again++;
			}
			else
				r->x[i].state = X_FINISHED;
		}
		if (!again)
			return 0;
	}
	return 0;
}
