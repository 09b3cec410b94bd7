/* progress.c - training progress on stderr: a bar redrawn in place on a
 * terminal, plain periodic lines otherwise. */
#include <parm/trainer.h>

#include <math.h>
#include <string.h>
#include <sys/ioctl.h>

#include <parm/util.h>

void parm_progress_init(parm_progress *p, FILE *f, int tty, long log_every)
{
	*p = (parm_progress){ .f = f, .tty = tty, .log_every = log_every > 0 ? log_every : 10,
			      .last_draw = -1 };
}

/* "1h02m", "3m05s", "12s" */
static void fmt_time(char *buf, size_t n, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, n, "?");
	else if (s >= 3600)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	else if (s >= 60)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else
		snprintf(buf, n, "%.0fs", s);
}

/* The report as one line (no newline). */
static void fmt_line(char *buf, size_t n, const parm_report *r, double loss, int tty)
{
	char eta[32], el[32];
	fmt_time(eta, sizeof eta, r->eta);
	fmt_time(el, sizeof el, r->elapsed);
	int w = 0, bar = 10, full = r->total ? (int)(bar * r->step / r->total) : bar;
	if (tty)
		w += snprintf(buf + w, n - (size_t)w, "[%.*s%*s] ", full, "##########",
			      bar - full, "");
	w += snprintf(buf + w, n - (size_t)w, "step %ld/%ld epoch %ld", r->step, r->total,
		      r->epoch);
	if (!isnan(loss))
		w += snprintf(buf + w, n - (size_t)w, " loss %.4f lr %.2e", loss, (double)r->lr);
	/* a terminal's line is cut at its width: speed and ETA before the
	 * metrics there, so what is cut is the metrics' tail */
	if (tty)
		w += snprintf(buf + w, n - (size_t)w, " %.0f tok/s ETA %s", r->tokens_per_s,
			      r->final ? "0s" : eta);
	for (int i = 0; r->metric && i < r->n_metrics && w < (int)n - 40; i++)
		w += snprintf(buf + w, n - (size_t)w, " %s %.3f",
			      r->metric_names ? r->metric_names[i] : "metric", r->metric[i]);
	if (!tty && w < (int)n - 60)
		snprintf(buf + w, n - (size_t)w, " %.0f tok/s %s ETA %s", r->tokens_per_s,
			 el, r->final ? "0s" : eta);
}

/* Columns of the terminal f is (80 when it will not say). */
static int term_width(FILE *f)
{
	struct winsize ws;
	return ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

void parm_progress_report(void *ctx, const parm_report *r)
{
	parm_progress *p = ctx;
	char line[512];
	if (!isnan(r->loss)) {
		p->loss_sum += r->loss;
		p->loss_n++;
	}
	double now = parm_now(), mean = p->loss_n ? p->loss_sum / (double)p->loss_n : NAN;
	if (p->tty) {
		if (!r->final && !r->evaluated && now - p->last_draw < 0.1)
			return;
		fmt_line(line, sizeof line, r, isnan(r->loss) ? NAN : r->loss, 1);
		/* a wrapped line is not redrawn by \r: cut at a space that fits */
		int cols = term_width(p->f);
		if (strlen(line) > (size_t)cols - 1) {
			char *cut = line + cols - 1;
			*cut = 0;
			if ((cut = strrchr(line, ' ')))
				*cut = 0;
		}
		fprintf(p->f, "\r%s\033[K%s", line, r->final ? "\n" : "");
		p->last_draw = now;
	} else {
		if (!r->final && !r->evaluated && r->step % p->log_every)
			return;
		fmt_line(line, sizeof line, r, mean, 0);
		fprintf(p->f, "%s\n", line);
		p->loss_sum = 0;
		p->loss_n = 0;
	}
	fflush(p->f);
}
