/* svg.c - Pareto-front plots as SVG (see svg.h).  Plain text out: the
 * picture is simple enough that a drawing library would add nothing. */
#include <parm/svg.h>
#include <parm/metrics.h>
#include <parm/util.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { PANEL_W = 520, PANEL_H = 380, LEFT = 70, RIGHT = 20, TOP = 20, BOTTOM = 50,
       HEAD = 64, PER_ROW = 3 };

static const char *const colours[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
};
#define N_COLOURS (int)(sizeof colours / sizeof *colours)

static void put_escaped(FILE *f, const char *s)
{
	for (; s && *s; s++)
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
}

/* A tick step of 1, 2 or 5 times a power of ten giving about 5 ticks. */
static double tick_step(double span)
{
	double raw = span / 5, p = pow(10, floor(log10(raw))), m = raw / p;
	return p * (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10);
}

struct axis { double lo, hi; int px0, px1; };   /* value range to pixels */

static double to_px(const struct axis *a, double v)
{
	return a->px0 + (v - a->lo) / (a->hi - a->lo) * (a->px1 - a->px0);
}

/* The range of coordinate c over every series, padded by 8%. */
static struct axis axis_range(const parm_plot_series *s, int n_series, int k, int c)
{
	struct axis a = {INFINITY, -INFINITY, 0, 0};
	for (int i = 0; i < n_series; i++)
		for (int j = 0; j < s[i].n; j++) {
			a.lo = fmin(a.lo, s[i].pts[(size_t)j * k + c]);
			a.hi = fmax(a.hi, s[i].pts[(size_t)j * k + c]);
		}
	if (!(a.hi > a.lo)) {
		double mid = isfinite(a.lo) ? a.lo : 0;
		a.lo = mid - 1, a.hi = mid + 1;
	}
	double pad = 0.08 * (a.hi - a.lo);
	a.lo -= pad, a.hi += pad;
	return a;
}

static void draw_axes(FILE *f, const struct axis *x, const struct axis *y,
		      const char *xname, const char *yname)
{
	fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n",
		x->px0, y->px1, x->px1 - x->px0, y->px0 - y->px1);
	for (int axis = 0; axis < 2; axis++) {
		const struct axis *a = axis ? y : x;
		double step = tick_step(a->hi - a->lo);
		for (double v = ceil(a->lo / step) * step; v <= a->hi; v += step) {
			double p = to_px(a, v), t = fabs(v) < step * 1e-6 ? 0 : v;
			if (axis)
				fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
					"<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
					x->px0, p, x->px1, p, x->px0 - 6, p + 4, t);
			else
				fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>"
					"<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
					p, y->px0, p, y->px1, p, y->px0 + 16, t);
		}
	}
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" class=\"axis\">",
		(x->px0 + x->px1) / 2, y->px0 + 38);
	put_escaped(f, xname);
	fprintf(f, "</text>\n<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\" class=\"axis\">",
		x->px0 - 48, (y->px0 + y->px1) / 2);
	put_escaped(f, yname);
	fputs("</text>\n", f);
}

/* The series' 2-D front in this panel, joined left to right. */
static void draw_front_line(FILE *f, const parm_plot_series *s, int k, int cx, int cy,
			    const struct axis *x, const struct axis *y, const char *colour)
{
	double *p2 = parm_xmalloc((size_t)s->n * 2 * sizeof *p2);
	uint8_t *on = parm_xmalloc(s->n + 1);
	int *order = parm_xmalloc((s->n + 1) * sizeof *order), m = 0;
	for (int j = 0; j < s->n; j++)
		p2[2 * j] = s->pts[(size_t)j * k + cx], p2[2 * j + 1] = s->pts[(size_t)j * k + cy];
	parm_pareto_front(on, p2, s->n, 2);
	for (int j = 0; j < s->n; j++) {
		if (!on[j])
			continue;
		int i = m++;
		for (; i > 0 && p2[2 * order[i - 1]] > p2[2 * j]; i--)
			order[i] = order[i - 1];
		order[i] = j;
	}
	if (m > 1) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colour);
		for (int i = 0; i < m; i++)
			fprintf(f, "%s%.1f,%.1f", i ? " " : "", to_px(x, p2[2 * order[i]]),
				to_px(y, p2[2 * order[i] + 1]));
		fputs("\"/>\n", f);
	}
	free(p2), free(on), free(order);
}

/* The labels placed in a panel so far: x, width, y each. */
struct placed {
	int n, cap;
	double *box;
};

enum { LABEL_LINE = 11 };               /* px between stacked 10px labels */

/* The baseline for a label of len characters at (x, y): moved up a line
 * while it would overlap one already in the panel, so the alphas of
 * coinciding points stack instead of printing over each other. */
static double place_label(struct placed *pl, double x, double y, size_t len)
{
	double w = 5.6 * (double)len;   /* about a 10px sans-serif character */
	for (int moved = 1; moved;) {
		moved = 0;
		for (int i = 0; i < pl->n; i++) {
			const double *b = pl->box + 3 * i;
			if (x < b[0] + b[1] && b[0] < x + w && fabs(b[2] - y) < LABEL_LINE)
				y = b[2] - LABEL_LINE, moved = 1;
		}
	}
	if (pl->n == pl->cap) {
		pl->cap = pl->cap ? 2 * pl->cap : 16;
		pl->box = parm_xrealloc(pl->box, (size_t)pl->cap * 3 * sizeof *pl->box);
	}
	pl->box[3 * pl->n] = x, pl->box[3 * pl->n + 1] = w, pl->box[3 * pl->n + 2] = y;
	pl->n++;
	return y;
}

static void draw_points(FILE *f, const parm_plot_series *s, int k, int cx, int cy,
			const struct axis *x, const struct axis *y, const char *colour,
			struct placed *pl)
{
	for (int j = 0; j < s->n; j++) {
		double px = to_px(x, s->pts[(size_t)j * k + cx]), py = to_px(y, s->pts[(size_t)j * k + cy]);
		int filled = !s->front || s->front[j];
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" stroke=\"%s\" fill=\"%s\"/>\n",
			px, py, colour, filled ? colour : "white");
		if (s->labels && s->labels[j]) {
			double ly = place_label(pl, px + 6, py - 5, strlen(s->labels[j]));
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"label\" fill=\"%s\">", px + 6, ly,
				colour);
			put_escaped(f, s->labels[j]);
			fputs("</text>\n", f);
		}
	}
}

static void draw_panel(FILE *f, int ox, int oy, int cx, int cy, int k, const char *const *axes,
		       const parm_plot_series *s, int n_series)
{
	struct axis x = axis_range(s, n_series, k, cx), y = axis_range(s, n_series, k, cy);
	x.px0 = ox + LEFT, x.px1 = ox + PANEL_W - RIGHT;
	y.px0 = oy + PANEL_H - BOTTOM, y.px1 = oy + TOP;
	draw_axes(f, &x, &y, axes[cx], axes[cy]);
	struct placed pl = { 0 };
	for (int i = 0; i < n_series; i++) {
		const char *colour = colours[i % N_COLOURS];
		draw_front_line(f, &s[i], k, cx, cy, &x, &y, colour);
		draw_points(f, &s[i], k, cx, cy, &x, &y, colour, &pl);
	}
	free(pl.box);
}

static void draw_legend(FILE *f, const char *title, const parm_plot_series *s, int n_series)
{
	int x = LEFT;
	fputs("<text x=\"16\" y=\"24\" class=\"title\">", f);
	put_escaped(f, title);
	fputs("</text>\n", f);
	for (int i = 0; i < n_series; i++) {
		const char *colour = colours[i % N_COLOURS];
		fprintf(f, "<circle cx=\"%d\" cy=\"46\" r=\"5\" fill=\"%s\"/><text x=\"%d\" y=\"50\">",
			x, colour, x + 10);
		put_escaped(f, s[i].name);
		fputs("</text>\n", f);
		x += 30 + 8 * (int)strlen(s[i].name ? s[i].name : "");
	}
	/* on a line of its own: beside the names it ran off narrow plots */
	fprintf(f, "<text x=\"%d\" y=\"70\" class=\"label\">filled: on the method's Pareto front;"
		" hollow: dominated</text>\n", LEFT - 5);
}

static void draw(FILE *f, const char *title, const char *const *axes, int k,
		 const parm_plot_series *s, int n_series)
{
	int panels = k * (k - 1) / 2, cols = panels < PER_ROW ? panels : PER_ROW;
	int rows = (panels + cols - 1) / cols;
	int w = cols * PANEL_W, h = HEAD + rows * PANEL_H;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\""
		" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<style>.grid{stroke:#e4e4e4} .axis{font-size:14px} .title{font-size:16px;font-weight:bold}"
		" .label{font-size:10px}</style>\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", w, h, w, h);
	draw_legend(f, title, s, n_series);
	int p = 0;
	for (int a = 0; a < k; a++)
		for (int b = a + 1; b < k; b++, p++)
			draw_panel(f, (p % cols) * PANEL_W, HEAD + (p / cols) * PANEL_H, a, b, k, axes,
				   s, n_series);
	fputs("</svg>\n", f);
}

int parm_plot_svg(const char *path, const char *title, const char *const *axes, int k,
		  const parm_plot_series *series, int n_series)
{
	if (k < 2)
		return parm_fail("%s: a plot needs at least 2 objectives, not %d", path, k);
	size_t len = strlen(path) + 5;
	char *tmp = parm_xmalloc(len);
	snprintf(tmp, len, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		parm_failc(PARM_ESYS, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	draw(f, title, axes, k, series, n_series);
	int bad = ferror(f);
	if (fclose(f) != 0 || bad || rename(tmp, path) < 0) {
		parm_failc(PARM_ESYS, "%s: %s", path, strerror(errno ? errno : EIO));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
