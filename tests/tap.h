/* tap.h - the smallest TAP producer: each check prints "ok N - what" or
 * "not ok N - what"; a skip says why.  tests/run.sh counts the lines. */
#ifndef PARM_TAP_H
#define PARM_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count, tap_failures;

__attribute__((format(printf, 2, 3)))
__attribute__((unused)) static int ok(int pass, const char *fmt, ...)
{
	va_list ap;
	printf("%sok %d - ", pass ? "" : "not ", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!pass)
		tap_failures++;
	return pass;
}

__attribute__((format(printf, 2, 3)))
__attribute__((unused)) static void skip(const char *why, const char *fmt, ...)
{
	va_list ap;
	printf("ok %d - ", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP %s\n", why);
	fflush(stdout);
}

static int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}

/* The llama.cpp tokenizer fixtures: $PARM_FIXTURES, ../shared/fixtures/vocab
 * beside the checkout, or the cache `make fixtures` fills.  NULL: none. */
__attribute__((unused)) static const char *fixtures_dir(void)
{
	static char buf[4096];
	const char *env = getenv("PARM_FIXTURES");
	const char *home = getenv("HOME");
	FILE *f;
	if (env && *env)
		return env;
	if ((f = fopen("../shared/fixtures/vocab/README.md", "r"))) {
		fclose(f);
		return "../shared/fixtures/vocab";
	}
	snprintf(buf, sizeof buf, "%s/.cache/parm/fixtures/README.md", home ? home : "");
	if ((f = fopen(buf, "r"))) {
		fclose(f);
		snprintf(buf, sizeof buf, "%s/.cache/parm/fixtures", home ? home : "");
		return buf;
	}
	return NULL;
}

#endif
