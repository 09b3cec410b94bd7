/* svg.h - the picture parm-eval draws: the points of each method compared
 * in objective space, its Pareto front joined by a line, each point
 * labelled (with its alpha), a legend; with k > 2 objectives one panel per
 * pair of objectives.
 */
#ifndef PARM_SVG_H
#define PARM_SVG_H

#include <stdint.h>

typedef struct {
	const char *name;               /* in the legend */
	int n;
	const double *pts;              /* [n][k] */
	const char *const *labels;      /* [n], NULL entries or NULL: none */
	const uint8_t *front;           /* [n] 1: on the method's k-D front
					 * (drawn filled); NULL: all */
} parm_plot_series;

/* Write the SVG to path atomically (path.tmp, then rename); axes[k] name
 * the objectives.  -1 + parm_error naming the file. */
int parm_plot_svg(const char *path, const char *title, const char *const *axes, int k,
		  const parm_plot_series *series, int n_series);

#endif
