/* scorer.c - external scorer commands and ARM reward models (see scorer.h). */
#include <parm/scorer.h>
#include <parm/util.h>
#include "kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- external commands ---- */

struct run {
	const char *name, *command;
	const char *const *origins;
	double *scores;
	long n, got;            /* records, numbers parsed */
	int bad;                /* a line was not a number (or one too many) */
	char *line;             /* the partial line read so far */
	size_t len, cap;
};

static void add_number(struct run *r, const char *s)
{
	char *end;
	double v;
	if (r->got == r->n) {
		r->bad = 1;
		parm_fail("scorer %s (%s) printed more lines than the %ld records (the last is %s)",
			  r->name, r->command, r->n, r->n ? r->origins[r->n - 1] : "none");
		return;
	}
	errno = 0;
	v = strtod(s, &end);
	while (*end == ' ' || *end == '\t' || *end == '\r')
		end++;
	if (end == s || *end || errno == ERANGE || !isfinite(v)) {
		r->bad = 1;
		parm_fail("%s: scorer %s (%s) printed '%.40s', not a number", r->origins[r->got],
			  r->name, r->command, s);
		return;
	}
	r->scores[r->got++] = v;
}

/* Append what was read, and parse each complete line. */
static void take_output(struct run *r, const char *buf, size_t n)
{
	for (size_t i = 0; i < n && !r->bad; i++) {
		if (r->len + 1 >= r->cap)
			r->line = parm_xrealloc(r->line, r->cap = r->cap ? 2 * r->cap : 256);
		if (buf[i] != '\n') {
			r->line[r->len++] = buf[i];
			continue;
		}
		r->line[r->len] = 0;
		r->len = 0;
		add_number(r, r->line);
	}
}

static pid_t spawn(const char *command, int *to_child, int *from_child)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return parm_failc(PARM_ESYS, "pipe: %s", strerror(errno));
	if (pipe2(out, O_CLOEXEC) < 0) {
		close(in[0]), close(in[1]);
		return parm_failc(PARM_ESYS, "pipe: %s", strerror(errno));
	}
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);       /* an ignored signal stays ignored across exec */
		dup2(in[0], 0);
		dup2(out[1], 1);
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	close(in[0]), close(out[1]);
	if (pid < 0) {
		close(in[1]), close(out[0]);
		return parm_failc(PARM_ESYS, "fork: %s", strerror(errno));
	}
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	*to_child = in[1];
	*from_child = out[0];
	return pid;
}

/* The records as one buffer of lines. */
static char *join_records(const char *const *records, long n, size_t *len)
{
	size_t total = 0, at = 0;
	for (long i = 0; i < n; i++)
		total += strlen(records[i]) + 1;
	char *buf = parm_xmalloc(total + 1);
	for (long i = 0; i < n; i++) {
		size_t l = strlen(records[i]);
		memcpy(buf + at, records[i], l);
		buf[at + l] = '\n';
		at += l + 1;
	}
	*len = total;
	return buf;
}

/* Write input and read output together until the output ends or a line
 * is bad.  Returns -1 on an I/O error (parm_error set). */
static int pump(struct run *r, int wfd, int rfd, const char *in, size_t in_len)
{
	size_t done = 0;
	char buf[65536];
	for (;;) {
		struct pollfd p[2] = {{rfd, POLLIN, 0}, {wfd, POLLOUT, 0}};
		if (poll(p, wfd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return parm_failc(PARM_ESYS, "poll: %s", strerror(errno));
		}
		if (wfd >= 0 && p[1].revents) {
			ssize_t w = write(wfd, in + done, in_len - done);
			if (w > 0)
				done += w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || done == in_len) {
				close(wfd);     /* EPIPE: it stopped reading; see its output */
				wfd = -1;
			}
		}
		if (p[0].revents) {
			ssize_t got = read(rfd, buf, sizeof buf);
			if (got < 0 && errno != EINTR && errno != EAGAIN)
				return parm_failc(PARM_ESYS, "reading scorer %s: %s", r->name, strerror(errno));
			if (got == 0)
				break;
			if (got > 0)
				take_output(r, buf, got);
			if (r->bad)
				break;
		}
	}
	if (wfd >= 0)
		close(wfd);
	return 0;
}

/* After the output ended: the last unterminated line, the exit status,
 * the count. */
static int finish(struct run *r, int status)
{
	if (!r->bad && r->len) {
		r->line[r->len] = 0;
		add_number(r, r->line);
	}
	if (r->bad)
		return -1;
	const char *at = r->n ? r->origins[r->got < r->n ? r->got : r->n - 1] : "no records";
	if (WIFSIGNALED(status))
		return parm_fail("%s: scorer %s (%s) was killed by signal %d after %ld of %ld records",
				 at, r->name, r->command, WTERMSIG(status), r->got, r->n);
	if (WEXITSTATUS(status))
		return parm_fail("%s: scorer %s (%s) exited with status %d after %ld of %ld records",
				 at, r->name, r->command, WEXITSTATUS(status), r->got, r->n);
	if (r->got < r->n)
		return parm_fail("%s: scorer %s (%s) printed %ld numbers for %ld records: none for this one",
				 at, r->name, r->command, r->got, r->n);
	return 0;
}

int parm_run_scorer(double *scores, const char *name, const char *command,
		    const char *const *records, const char *const *origins, long n)
{
	struct run r = {name, command, origins, scores, n, 0, 0, NULL, 0, 0};
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	int wfd = -1, rfd = -1, status = 0, rc;
	size_t in_len;
	char *in = join_records(records, n, &in_len);
	sigaction(SIGPIPE, &ign, &old);         /* a scorer may stop reading early */
	pid_t pid = spawn(command, &wfd, &rfd);
	if (pid < 0) {
		sigaction(SIGPIPE, &old, NULL);
		free(in);
		return -1;
	}
	rc = pump(&r, wfd, rfd, in, in_len);
	close(rfd);
	if (rc < 0 || r.bad)
		kill(pid, SIGTERM);     /* we gave up on it */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	sigaction(SIGPIPE, &old, NULL);
	if (rc == 0)
		rc = finish(&r, status);
	free(in);
	free(r.line);
	return rc;
}

/* ---- an ARM as a reward model ---- */

struct parm_arm_scorer {
	const parm_arm *arm;
	parm_adapter *ad;       /* [n_layers * PARM_N_PROJ], on the ARM's adapters */
	float *M;               /* the mixes ad points at, for the current alpha */
	parm_kv *kv;
	float *logits;          /* [CHUNK][V] */
};

enum { CHUNK = 64 };            /* tokens per forward call */

int parm_arm_scorer_set_pref(parm_arm_scorer *s, const float *alpha)
{
	parm_arm_mix_adapters(s->arm, alpha, s->M);
	return 0;
}

parm_arm_scorer *parm_arm_scorer_new(const parm_arm *arm, const float *alpha)
{
	const parm_model *m = arm->backbone;
	parm_arm_scorer *s = parm_xcalloc(1, sizeof *s);
	s->arm = arm;
	s->ad = parm_arm_adapters(arm, alpha, &s->M);
	s->logits = parm_xmalloc((size_t)CHUNK * m->cfg.n_vocab * sizeof *s->logits);
	if (!(s->kv = parm_kv_new(m, 1, 0))) {
		parm_arm_scorer_free(s);
		return NULL;
	}
	return s;
}

void parm_arm_scorer_free(parm_arm_scorer *s)
{
	if (!s)
		return;
	free(s->ad);
	free(s->M);
	parm_kv_free(s->kv);
	free(s->logits);
	free(s);
}

int parm_arm_scorer_logp(parm_arm_scorer *s, const int *seq, int n, int resp_start,
			 double *sum)
{
	const parm_model *m = s->arm->backbone;
	int V = m->cfg.n_vocab, slot[CHUNK] = {0};
	uint8_t want[CHUNK];
	int target[CHUNK];
	float logp[CHUNK];
	if (resp_start < 1 || resp_start > n)
		return parm_fail("scoring: response starts at %d of %d tokens", resp_start, n);
	if (n > parm_kv_ctx(s->kv))
		return parm_fail("scoring: %d tokens pass the model's context of %d", n, parm_kv_ctx(s->kv));
	parm_kv_clear(s->kv, 0);
	*sum = 0;
	/* token t's logits predict token t + 1; the last token predicts nothing */
	for (int at = 0; at < n - 1; at += CHUNK) {
		int len = n - 1 - at < CHUNK ? n - 1 - at : CHUNK, rows = 0;
		for (int i = 0; i < len; i++)
			want[i] = at + i + 1 >= resp_start;
		if (parm_forward_adapted(m, s->ad, s->kv, len, seq + at, slot, want, s->logits) < 0)
			return -1;
		for (int i = 0; i < len; i++)
			if (want[i])
				target[rows++] = seq[at + i + 1];
		/* the log-probs of the next tokens: the kernels' one log-softmax */
		parm_logprob_forward(logp, s->logits, target, rows, V);
		for (int i = 0; i < rows; i++)
			*sum += logp[i];
	}
	return 0;
}
