/* test_trainer.c - the pieces of the training loop that need no model:
 * step arithmetic, Dirichlet(0.5) draws, checkpoint files (round trip,
 * atomic write, corruption, option fingerprints). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include <parm/trainer.h>
#include <parm/util.h>

static void steps(void)
{
	parm_loop_opts o = { .epochs = 2, .batch = 4, .accum = 2 };
	ok(parm_loop_steps_per_epoch(17, 4, 2) == 3 && parm_loop_steps_per_epoch(16, 4, 2) == 2,
	   "steps per epoch round up (17 examples, 8 a step: 3)");
	ok(parm_loop_total_steps(&o, 17) == 6, "epochs give the total");
	o.steps = 5;
	ok(parm_loop_total_steps(&o, 17) == 5, "--steps overrides epochs");
}

static void dirichlet(void)
{
	enum { K = 3, N = 20000 };
	const parm_pref_dist half = PARM_PREF_OFFICIAL;
	double mean[K] = { 0 }, small = 0;
	int valid = 1;
	for (int n = 0; n < N; n++) {
		float a[K];
		double sum = 0;
		parm_pref_draw(a, K, &half, (uint64_t)n * 7919 + 1);
		for (int i = 0; i < K; i++) {
			valid &= a[i] >= 0 && a[i] <= 1;
			sum += a[i];
			mean[i] += a[i] / N;
		}
		valid &= fabs(sum - 1) < 1e-5;
		small += a[0] < 0.05;
	}
	float a1[K], a2[K], b[K];
	parm_pref_draw(a1, K, &half, 99);
	parm_pref_draw(a2, K, &half, 99);
	parm_pref_draw(b, K, &half, 100);
	ok(valid, "every draw is on the simplex");
	ok(!memcmp(a1, a2, sizeof a1) && memcmp(a1, b, sizeof a1), "a draw is a function of its key");
	ok(fabs(mean[0] - 1.0 / K) < 0.01 && fabs(mean[2] - 1.0 / K) < 0.01,
	   "mean is 1/k (%.4f %.4f %.4f)", mean[0], mean[1], mean[2]);
	/* The marginal is Beta(0.5, 1): P(a < x) = sqrt(x), 0.224 at 0.05 --
	 * concentration 0.5 puts mass near the corners; a uniform Dirichlet's
	 * Beta(1, 2) gives 0.0975. */
	ok(fabs(small / N - sqrt(0.05)) < 0.015, "P(alpha_1 < 0.05) = %.3f, Dirichlet(0.5)'s %.3f",
	   small / N, sqrt(0.05));
}

/* Other concentrations and vertex draws: the marginals' known moments.
 * Dirichlet(c) with k parts has the marginal Beta(c, (k-1)c): mean 1/k,
 * variance (k-1) / (k^2 (kc + 1)). */
static void pref_dists(void)
{
	enum { K = 3, N = 40000 };
	static const double concs[] = { 0.3, 1, 2.5 };
	for (int c = 0; c < 3; c++) {
		parm_pref_dist d = { .conc = concs[c], .vertex = 0 };
		double m = 0, v = 0, want = (K - 1.0) / (K * K * (K * concs[c] + 1));
		for (int n = 0; n < N; n++) {
			float a[K];
			parm_pref_draw(a, K, &d, (uint64_t)n * 104729 + 3);
			m += a[1] / N;
			v += (a[1] - 1.0 / K) * (a[1] - 1.0 / K) / N;
		}
		ok(fabs(m - 1.0 / K) < 0.01 && fabs(v / want - 1) < 0.05,
		   "Dirichlet(%g): mean %.4f (1/3), variance %.5f (%.5f)", concs[c], m, v, want);
	}
	parm_pref_dist d = { .conc = 0.5, .vertex = 0.3 };
	int vertices = 0, per[K] = { 0 };
	for (int n = 0; n < N; n++) {
		float a[K];
		parm_pref_draw(a, K, &d, (uint64_t)n * 7 + 11);
		for (int i = 0; i < K; i++)
			if (a[i] == 1) {
				vertices++;
				per[i]++;
			}
	}
	/* plus Dirichlet(0.5)'s own draws at a vertex in float: none at N */
	ok(fabs((double)vertices / N - 0.3) < 0.015 && per[0] > N / 12 && per[2] > N / 12,
	   "vertex 0.3: %.3f of draws are vertices (%d %d %d)", (double)vertices / N,
	   per[0], per[1], per[2]);
}

static void checkpoint(void)
{
	char path[] = "/tmp/test_trainer.XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	float p[5] = { 1, 2, 3, 4, 5 }, m[5] = { .1f, .2f }, v[5] = { 9, 8, 7 };
	parm_ckpt c = { .fingerprint = "lr=0.1\nseed=3\n", .step = 7, .epoch = 1, .pos = 12,
			.rng = 42, .n_params = 5, .params = p, .m = m, .v = v, .adam_step = 7 };
	parm_ckpt r;
	ok(parm_ckpt_save(path, &c) == 0 && parm_ckpt_load(path, &r) == 0, "checkpoint round trip");
	ok(r.step == 7 && r.epoch == 1 && r.pos == 12 && r.rng == 42 && r.adam_step == 7 &&
	   r.n_params == 5 && !memcmp(r.params, p, sizeof p) && !memcmp(r.m, m, sizeof m) &&
	   !memcmp(r.v, v, sizeof v) && !strcmp(r.fingerprint, c.fingerprint),
	   "everything comes back");
	parm_ckpt_free(&r);
	char tmp[64];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	ok(access(tmp, F_OK) != 0, "no temporary file left");
	const char *why = parm_ckpt_mismatch("lr=0.1\nseed=3\n", "lr=0.2\nseed=3\n");
	ok(why && strstr(why, "checkpoint lr=0.1") && strstr(why, "this run lr=0.2"),
	   "a differing option is named: %s", why ? why : "(none)");
	why = parm_ckpt_mismatch("lr=0.1\n", "lr=0.1\nbeta=1\n");
	ok(why && strstr(why, "beta=1"), "an added option is named: %s", why ? why : "(none)");
	ok(!parm_ckpt_mismatch("a=1\nb=2\n", "a=1\nb=2\n"), "same options: no mismatch");
	FILE *f = fopen(path, "r+b");
	fseek(f, 60, SEEK_SET);
	fputc('X', f);
	fclose(f);
	int rc = parm_ckpt_load(path, &r);
	ok(rc < 0 && strstr(parm_error(), "corrupt"), "a corrupted checkpoint is refused: %s",
	   parm_error());
	rc = truncate(path, 30);
	rc = rc ? rc : parm_ckpt_load(path, &r);
	ok(rc < 0 && strstr(parm_error(), path), "a truncated checkpoint is refused: %s",
	   parm_error());
	unlink(path);
	rc = parm_ckpt_load(path, &r);
	ok(rc < 0 && strstr(parm_error(), "cannot resume"), "a missing one: %s", parm_error());
}

/* Issue 9 item 4: a checkpoint claiming 2^36 floats must be refused as
 * corrupt, not allocated (parm_xmalloc's "out of memory" exits the process).
 * The load runs in a child so that an exit shows as a failed check. */
static void checkpoint_huge_count(void)
{
	char path[] = "/tmp/test_trainer.XXXXXX";
	int fd = mkstemp(path);
	uint32_t version = 1, fl = 0;
	int64_t ints[3] = { 1, 0, 0 }, astep = 1;
	uint64_t rng = 1, n = (uint64_t)1 << 36;
	float some[16] = { 0 };
	FILE *f = fdopen(fd, "wb");
	fwrite("PARMCKPT", 1, 8, f);
	fwrite(&version, 4, 1, f);
	fwrite(&fl, 4, 1, f);
	fwrite(ints, sizeof ints, 1, f);
	fwrite(&rng, 8, 1, f);
	fwrite(&n, 8, 1, f);
	fwrite(&astep, 8, 1, f);
	fwrite(some, sizeof some, 1, f);
	fclose(f);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		parm_ckpt r;
		int rc = parm_ckpt_load(path, &r);
		_exit(rc < 0 && strstr(parm_error(), "corrupt") ? 0 : 3);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "a checkpoint claiming 2^36 floats is refused as corrupt (child status %#x)", status);
	unlink(path);
}

/* On a terminal the progress line is cut to its width (80 columns when
 * it will not say, as here: a file), step, loss and ETA kept before a
 * 3-objective matrix's metrics (issue 14: 116-119 columns had wrapped). */
static void progress_width(void)
{
	FILE *f = tmpfile();
	static const char *names[9] = { "complete@complete", "brief@complete", "sorted@complete",
					"complete@brief", "brief@brief", "sorted@brief",
					"complete@sorted", "brief@sorted", "sorted@sorted" };
	double metric[9] = { 0.75, 0.5, 0.49, 0.7, 0.99, 0.5, 0.7, 0.6, 0.5 };
	parm_report r = { .step = 240, .total = 244, .epoch = 4, .loss = 1.004, .lr = 6.14e-6f,
			  .tokens_per_s = 4783, .elapsed = 54, .eta = 1, .n_metrics = 9,
			  .metric_names = names, .metric = metric, .evaluated = 1 };
	parm_progress p;
	char buf[1024] = { 0 };
	parm_progress_init(&p, f, 1, 10);
	parm_progress_report(&p, &r);
	rewind(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	char *end = strstr(buf, "\033[K");
	size_t width = end ? (size_t)(end - buf) - 1 : n;
	ok(n && buf[0] == '\r' && end && width <= 79 && strstr(buf, "step 240/244") &&
	   strstr(buf, "ETA") && strstr(buf, "loss 1.0040"), "progress on a terminal: %zu columns, "
	   "step, loss and ETA kept (%.*s)", width, (int)width, buf + 1);
}

int main(void)
{
	progress_width();
	steps();
	dirichlet();
	pref_dists();
	checkpoint();
	checkpoint_huge_count();
	return tap_done();
}
