/* remote-compare - helper of tests/t_remote.sh (built by it, not by make).
 *
 *   remote-compare dump K < STREAM > TEXT
 *	act as a greedy sampler and write, for every step, the top-K ids
 *	with their log-probabilities: dense logits are log-softmaxed, sparse
 *	values (a server's log-probs) are taken as they are.
 *   remote-compare diff TOL A B
 *	exit 0 when two dumps agree: same steps, same ids (a near tie may
 *	swap), every log-probability within TOL; else say where they differ.
 *   remote-compare wait URL SECONDS TEXT
 *	exit 0 once GET URL answers 200 with TEXT in the reply (our server,
 *	not another one on the same port), 1 at the deadline.
 */
#include <parm/stream.h>
#include <parm/util.h>

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct entry { int id; double lp; };

static int by_lp_desc(const void *a, const void *b)
{
	double x = ((const struct entry *)a)->lp, y = ((const struct entry *)b)->lp;
	return (x < y) - (x > y);
}

/* The step's distribution as log-probabilities, best first, k of them. */
static int top_entries(const parm_step *st, int n_vocab, struct entry *e, int k)
{
	int n = st->sparse ? st->k : n_vocab;
	double mx = -INFINITY, sum = 0;
	for (int i = 0; i < n; i++)
		mx = st->logits[i] > mx ? st->logits[i] : mx;
	for (int i = 0; i < n; i++)
		sum += exp(st->logits[i] - mx);
	double lse = mx + log(sum);
	struct entry *all = parm_xmalloc(n * sizeof *all);
	for (int i = 0; i < n; i++)
		all[i] = (struct entry){st->sparse ? st->ids[i] : i,
					st->sparse ? st->logits[i] : st->logits[i] - lse};
	qsort(all, n, sizeof *all, by_lp_desc);
	n = n < k ? n : k;
	memcpy(e, all, n * sizeof *e);
	free(all);
	return n;
}

static int dump(int k)
{
	parm_reader *in = parm_reader_new(STDIN_FILENO);
	parm_header h;
	parm_record rec;
	parm_feedback *fb = NULL;
	struct entry *e = parm_xmalloc(k * sizeof *e);
	if (parm_read_header(in, &h) < 0)
		parm_die("%s", parm_error());
	while (parm_read_record(in, &rec) == 0 && rec.type != PARM_REC_FIN) {
		if (rec.type != PARM_REC_ROUND)
			continue;
		parm_choice *c = parm_xmalloc(rec.n_steps * sizeof *c);
		for (int s = 0; s < rec.n_steps; s++) {
			int n = top_entries(&rec.steps[s], h.n_vocab, e, k);
			printf("%d", rec.steps[s].seq);
			for (int i = 0; i < n; i++)
				printf(" %d:%.6f", e[i].id, e[i].lp);
			putchar('\n');
			c[s] = (parm_choice){rec.steps[s].seq, e[0].id, 0};
		}
		if ((!fb && !(fb = parm_feedback_connect(h.feedback))) ||
		    parm_feedback_send(fb, c, rec.n_steps) < 0)
			parm_die("%s", parm_error());
		free(c);
	}
	if (rec.type != PARM_REC_FIN)
		parm_die("%s", parm_error());
	parm_feedback_free(fb);
	parm_header_free(&h);
	parm_reader_free(in);
	free(e);
	return fflush(stdout) ? 1 : 0;
}

/* Read "seq id:lp id:lp ..." into e; the count, -1 at end of file. */
static int read_line(FILE *f, int *seq, struct entry *e, int max)
{
	char line[1 << 14], *p;
	int n = 0, used;
	if (!fgets(line, sizeof line, f) || sscanf(line, "%d%n", seq, &used) != 1)
		return -1;
	for (p = line + used; n < max && sscanf(p, " %d:%lf%n", &e[n].id, &e[n].lp, &used) == 2; p += used)
		n++;
	return n;
}

static int same_rank(const struct entry *a, const struct entry *b, int i, int n, double tol)
{
	if (fabs(a[i].lp - b[i].lp) > tol)
		return 0;
	if (a[i].id == b[i].id)
		return 1;
	/* a near tie may come out in either order */
	return (i > 0 && a[i].lp - a[i - 1].lp > -2 * tol) ||
	       (i + 1 < n && a[i].lp - a[i + 1].lp < 2 * tol) || i == n - 1;
}

static int diff(double tol, const char *pa, const char *pb)
{
	FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
	struct entry a[256], b[256];
	int sa, sb, na, nb, line = 0;
	double worst = 0;
	if (!fa || !fb)
		parm_die("cannot open %s or %s", pa, pb);
	while ((na = read_line(fa, &sa, a, 256)) >= 0) {
		line++;
		nb = read_line(fb, &sb, b, 256);
		int n = na < nb ? na : nb;
		if (nb < 0 || sa != sb || n == 0)
			parm_die("step %d: %s and %s disagree on the steps", line, pa, pb);
		for (int i = 0; i < n; i++) {
			if (!same_rank(a, b, i, n, tol))
				parm_die("step %d rank %d: %d:%.6f vs %d:%.6f", line, i,
				    a[i].id, a[i].lp, b[i].id, b[i].lp);
			worst = fmax(worst, fabs(a[i].lp - b[i].lp));
		}
	}
	if (read_line(fb, &sb, b, 256) >= 0)
		parm_die("%s has more steps than %s", pb, pa);
	if (line == 0)
		parm_die("no steps to compare");
	printf("%d steps agree; largest difference %.2g\n", line, worst);
	fclose(fa), fclose(fb);
	return 0;
}

static char reply[1 << 16];
static size_t n_reply;

static size_t keep(char *p, size_t size, size_t n, void *arg)
{
	size_t room = sizeof reply - 1 - n_reply, len = size * n;
	memcpy(reply + n_reply, p, len < room ? len : room);
	n_reply += len < room ? len : room;
	reply[n_reply] = 0;
	return len;
}

static int wait_ok(const char *url, double seconds, const char *text)
{
	double deadline = parm_now() + seconds;
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 2L);
	int answered = 0;
	while (!answered && parm_now() < deadline) {
		long status = 0;
		n_reply = 0;
		reply[0] = 0;
		answered = curl_easy_perform(h) == CURLE_OK &&
			   curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
			   status == 200;
		if (!answered)
			usleep(100000);
	}
	curl_easy_cleanup(h);
	return answered && strstr(reply, text) ? 0 : 1;
}

int main(int argc, char **argv)
{
	parm_setprog(argv[0]);
	if (argc == 3 && !strcmp(argv[1], "dump"))
		return dump(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1);
	if (argc == 5 && !strcmp(argv[1], "diff"))
		return diff(atof(argv[2]), argv[3], argv[4]);
	if (argc == 5 && !strcmp(argv[1], "wait"))
		return wait_ok(argv[2], atof(argv[3]), argv[4]);
	parm_usage_error("usage: remote-compare dump K | diff TOL A B | wait URL SECONDS TEXT");
}
