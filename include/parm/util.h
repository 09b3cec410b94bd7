/* util.h - the one error path of libparm, and allocation helpers.
 *
 * Library functions that can fail return -1 (or NULL) after recording a
 * one-line message and its kind (enum parm_errcode) with parm_fail() or
 * parm_failc(), for the calling thread; the tool that called them prints it
 * with parm_die("%s", parm_error()) or adds context first.  Nothing in lib/
 * prints to stderr except through parm_warn().  Allocation failure is fatal.
 */
#ifndef PARM_UTIL_H
#define PARM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern const char *parm_progname;       /* "parm-logits"; set by parm_setprog */
/* The basename of argv0 names the tool in messages; also catches SIGBUS (a
 * mapped model truncated under us) with a one-line message, and under an
 * address-space limit keeps OpenBLAS from hanging (see util.c). */
void parm_setprog(const char *argv0);
/* An async-signal-safe function run before a fatal-signal exit (SIGBUS),
 * e.g. removing temporary files; NULL for none. */
void parm_set_cleanup(void (*cleanup)(void));
/* -1 (parm_error) when ulimit -v leaves too little room for OpenBLAS's
 * per-thread buffers: it would wait for ever instead of failing. */
int parm_check_address_limit(void);

/* What kind of failure the last error was, for a caller to test; the
 * message is for people.  Like errno, it holds until the next failure. */
enum parm_errcode {
	PARM_OK = 0,            /* nothing has failed in this thread */
	PARM_EINPUT,            /* bad input: an argument, or what a file,
				   stream or dataset holds */
	PARM_ESYS,              /* a system call failed (open, read, write,
				   mmap): errno's text in the message */
	PARM_EUNSUPPORTED,      /* well-formed but not implemented: a tensor
				   type, architecture, key or version */
	PARM_EEOF,              /* a stream ended where more was due (before
				   its header: empty input) */
	PARM_EREMOTE,           /* a server could not be reached, failed, or
				   replied wrongly */
	PARM_ENOTFOUND,         /* the server has no such endpoint (HTTP 404) */
	PARM_N_ERRCODES
};
/* Record a failure of kind code and its message (printf format), for the
 * calling thread only; parm_fail records PARM_EINPUT.  The int versions
 * return -1, the p ones NULL, so a function fails in one statement. */
int parm_failc(enum parm_errcode code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *parm_failcp(enum parm_errcode code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int parm_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *parm_failp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *parm_error(void);           /* this thread's last message ("unknown error" before any) */
enum parm_errcode parm_errcode(void);   /* and its kind (PARM_OK before any) */
const char *parm_errcode_name(enum parm_errcode code); /* "PARM_ESYS"; NULL if out of range */
void parm_clear_error(void);            /* back to PARM_OK, no message */

_Noreturn void parm_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void parm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The reader of our output went away: leave now, status 0, with the work
 * (and its memory) behind on purpose; parm_left_early says so to the
 * leak checker of make check-asan (tests/san-report.c). */
extern int parm_left_early;
_Noreturn void parm_exit_quietly(void);
/* fn runs when the tool fails (parm_die, parm_exit_failed): a stage of the
 * pipe tells the next one (parm_write_abort); NULL for none. */
void parm_on_die(void (*fn)(void));
/* Fail without a message of our own (the stage before ours gave it):
 * the parm_on_die function, then status 1. */
_Noreturn void parm_exit_failed(void);

void *parm_xmalloc(size_t n);
void *parm_xcalloc(size_t n, size_t size);
void *parm_xrealloc(void *p, size_t n);
char *parm_xstrdup(const char *s);
void *parm_xmemdup(const void *p, size_t n);

/* 64-bit FNV-1a, chainable: pass the previous result as seed (start with
 * PARM_FNV_SEED).  Used for fingerprints, never for security. */
#define PARM_FNV_SEED 0xcbf29ce484222325ULL
uint64_t parm_fnv1a(uint64_t seed, const void *p, size_t n);

double parm_now(void);                  /* monotonic seconds */
/* Map the pages of [p, p + n) now, in one call, for reading or writing:
 * a copy through a fresh mapping otherwise takes a fault per page, dear
 * under a hypervisor.  Best effort (no-op before Linux 5.14). */
void parm_prefault(const void *p, size_t n, int write);
/* n bytes (to free) in huge pages where the kernel gives them (2 MB
 * aligned, MADV_HUGEPAGE), mapped at once: a fresh mapping of many small
 * pages costs a fault each. */
void *parm_alloc_huge(size_t n);
/* Ask for huge pages for the whole 2 MB pages inside [p, p + n) (a large
 * block from malloc or calloc, its pages still unmapped): each is then
 * one fault where it would have been 512. */
void parm_advise_huge(void *p, size_t n);

/* Map a whole regular file read-only: *map (NULL when it is empty) and
 * *size.  0, or -1 + parm_error naming path.  Undo with parm_unmap_file. */
int parm_map_file(const char *path, const void **map, size_t *size);
void parm_unmap_file(const void *map, size_t size);

/* Write path whole or not at all: write(f, ctx) fills path.tmp (0 when
 * it succeeded), which is flushed, synced and renamed over path.  0, or
 * -1 + parm_error naming the file. */
int parm_write_atomic(const char *path, int (*write)(FILE *f, void *ctx), void *ctx);

/* Parse a whole decimal integer / float; -1 on junk or out of range. */
int parm_parse_long(const char *s, long lo, long hi, long *out);
int parm_parse_float(const char *s, double *out);
/* A comma-separated list of at most max finite numbers into out[]: the
 * count, or -1 + parm_error naming the entry that is empty or not one. */
int parm_parse_floats(const char *s, double *out, int max);

/* Command-line helpers for the tools: a usage error prints
 * "prog: message (see prog --help)" and exits 2; the option parsers exit
 * the same way naming the option and the accepted range. */
_Noreturn void parm_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long parm_opt_long(const char *name, const char *arg, long lo, long hi);
double parm_opt_float(const char *name, const char *arg, double lo, double hi);

#endif
