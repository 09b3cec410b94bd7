/* bench_pipe.h - the benches' timing of greedy decoding through the real
 * pipe, parm-logits [| parm-mix] | parm-sample, as a user runs it: runs of
 * 16 and 80 tokens, so loading and the prompt cancel out, the tokens
 * counted in parm-sample's JSON in case a run stopped early.  Run from
 * the top of the tree (tools/).  Header-only. */
#ifndef PARM_BENCH_PIPE_H
#define PARM_BENCH_PIPE_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <parm/util.h>

/* Tokens of one run of n tokens (-1: it failed) and its wall seconds. */
static int bench_pipe_run(const char *logits_args, const char *mix_args, int n, double *seconds)
{
	char cmd[16384], buf[1 << 16];
	snprintf(cmd, sizeof cmd, "printf 'Once upon a time\\n' | tools/parm-logits -n %d %s %s%s"
		 "| tools/parm-sample --temp 0 -j", n, logits_args, *mix_args ? "| tools/parm-mix " : "",
		 mix_args);
	double t0 = parm_now();
	FILE *f = popen(cmd, "r");
	size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
	int status = f ? pclose(f) : -1;
	*seconds = parm_now() - t0;
	buf[len] = 0;
	const char *at = strstr(buf, "\"tokens\":[");
	if (status != 0 || !at)
		return -1;
	int count = at[10] != ']';
	for (at += 10; *at && *at != ']'; at++)
		count += *at == ',';
	return count;
}

/* Wall ms per token, the best of reps runs of each length (loading time
 * varies more than a small model's 64 tokens take); 0 when a run failed. */
static double bench_pipe_ms(const char *logits_args, const char *mix_args, int reps)
{
	double t1 = INFINITY, t2 = INFINITY, t;
	int n1 = -1, n2 = -1;
	for (int rep = 0; rep < reps; rep++) {
		if ((n1 = bench_pipe_run(logits_args, mix_args, 16, &t)) < 0)
			return 0;
		t1 = fmin(t1, t);
		if ((n2 = bench_pipe_run(logits_args, mix_args, 80, &t)) < 0)
			return 0;
		t2 = fmin(t2, t);
	}
	return n2 > n1 && t2 > t1 ? 1e3 * (t2 - t1) / (n2 - n1) : 0;
}

#endif
