/* util.c - the error path and allocation helpers shared by every tool */
#include <parm/util.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

const char *parm_progname = "parm";
/* per thread: the kernel pool's workers and a library caller's threads
 * each see their own last error */
static _Thread_local char last_error[1024];
static _Thread_local enum parm_errcode last_code;
static void (*volatile fatal_cleanup)(void);

void parm_set_cleanup(void (*cleanup)(void))
{
	fatal_cleanup = cleanup;
}

/* Models are mapped, not read: when a file shrinks under us (or its disk
 * fails) the kernel raises SIGBUS at the first access past the end.  Say so
 * in one line and leave, after the tool's cleanup; only async-signal-safe
 * calls from here on. */
static void on_sigbus(int sig)
{
	static const char msg[] = ": a mapped file was truncated or could not be read (SIGBUS)\n";
	(void)sig;
	if (fatal_cleanup)
		fatal_cleanup();
	ssize_t ignored = write(2, parm_progname, strlen(parm_progname));
	ignored = write(2, msg, sizeof msg - 1);
	(void)ignored;
	_exit(1);
}

/* ulimit -v is set */
static int address_space_limited(void)
{
	struct rlimit r;
	return getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY;
}

/* Registered first, so it runs after every other exit handler of ours. */
static void exit_before_library_destructors(int status, void *arg)
{
	(void)arg;
	fflush(NULL);
	_exit(status);
}

/* Under an address-space limit (ulimit -v) OpenBLAS's worker threads may
 * fail to map their buffers and retry for ever, so exit(), whose OpenBLAS
 * destructor joins them, would never return: under such a limit the
 * process ends without running library destructors (the kernel frees all
 * they would).  parm_check_address_limit refuses to run a model where
 * OpenBLAS could not get its buffers at all. */
static void live_with_address_limit(void)
{
	if (address_space_limited())
		on_exit(exit_before_library_destructors, NULL);
}

/* Every thread that calls sgemm (ours and OpenBLAS's own) maps a buffer of
 * this size the first time, and if it cannot, retries for ever. */
#define BLAS_BUFFER_MB 128

int parm_check_address_limit(void)
{
	struct rlimit r;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned long long need_mb = (2ull * (cpus > 0 ? cpus : 1)) * BLAS_BUFFER_MB + 256;
	if (getrlimit(RLIMIT_AS, &r) < 0 || r.rlim_cur == RLIM_INFINITY ||
	    r.rlim_cur / (1 << 20) >= need_mb)
		return 0;
	return parm_fail("the address-space limit (ulimit -v) of %llu MB is too small to run "
			 "a model here: OpenBLAS maps %d MB per thread (%ld CPUs) and waits for "
			 "ever when it cannot; allow at least %llu MB",
			 (unsigned long long)(r.rlim_cur >> 20), BLAS_BUFFER_MB, cpus, need_mb);
}

void parm_setprog(const char *argv0)
{
	const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
	struct sigaction sa = { .sa_handler = on_sigbus };
	if (argv0)
		parm_progname = slash ? slash + 1 : argv0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	live_with_address_limit();
}

static void record(enum parm_errcode code, const char *fmt, va_list ap)
{
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	last_code = code > PARM_OK && code < PARM_N_ERRCODES ? code : PARM_EINPUT;
}

/* The four ways to fail differ only in the code and what they return. */
#define FAIL_WITH(code, fmt, result) do { \
		va_list ap; \
		va_start(ap, fmt); \
		record(code, fmt, ap); \
		va_end(ap); \
		return result; \
	} while (0)

int parm_failc(enum parm_errcode code, const char *fmt, ...) { FAIL_WITH(code, fmt, -1); }
void *parm_failcp(enum parm_errcode code, const char *fmt, ...) { FAIL_WITH(code, fmt, NULL); }
int parm_fail(const char *fmt, ...) { FAIL_WITH(PARM_EINPUT, fmt, -1); }
void *parm_failp(const char *fmt, ...) { FAIL_WITH(PARM_EINPUT, fmt, NULL); }

const char *parm_error(void)
{
	return last_error[0] ? last_error : "unknown error";
}

enum parm_errcode parm_errcode(void)
{
	return last_code;
}

const char *parm_errcode_name(enum parm_errcode code)
{
	static const char *const names[PARM_N_ERRCODES] = {
		[PARM_OK] = "PARM_OK", [PARM_EINPUT] = "PARM_EINPUT", [PARM_ESYS] = "PARM_ESYS",
		[PARM_EUNSUPPORTED] = "PARM_EUNSUPPORTED", [PARM_EEOF] = "PARM_EEOF",
		[PARM_EREMOTE] = "PARM_EREMOTE", [PARM_ENOTFOUND] = "PARM_ENOTFOUND",
	};
	return code >= 0 && code < PARM_N_ERRCODES ? names[code] : NULL;
}

void parm_clear_error(void)
{
	last_error[0] = 0;
	last_code = PARM_OK;
}

static void vreport(const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "%s: ", parm_progname);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void (*die_hook)(void);

void parm_on_die(void (*fn)(void))
{
	die_hook = fn;
}

void parm_exit_failed(void)
{
	void (*fn)(void) = die_hook;
	die_hook = NULL;                /* once, even if fn dies */
	if (fn)
		fn();
	exit(1);
}

void parm_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(fmt, ap);
	va_end(ap);
	parm_exit_failed();
}

int parm_left_early;

void parm_exit_quietly(void)
{
	parm_left_early = 1;
	exit(0);
}

void parm_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(fmt, ap);
	va_end(ap);
}

void *parm_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		parm_die("out of memory (%zu bytes)", n);
	return p;
}

void *parm_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		parm_die("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *parm_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		parm_die("out of memory (%zu bytes)", n);
	return p;
}

char *parm_xstrdup(const char *s)
{
	return parm_xmemdup(s, strlen(s) + 1);
}

void *parm_xmemdup(const void *p, size_t n)
{
	void *q = parm_xmalloc(n);
	memcpy(q, p, n);
	return q;
}

uint64_t parm_fnv1a(uint64_t seed, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		seed ^= b[i];
		seed *= 0x100000001b3ULL;
	}
	return seed;
}

double parm_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int parm_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int parm_parse_float(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno)
		return -1;
	*out = v;
	return 0;
}

int parm_parse_floats(const char *s, double *out, int max)
{
	int n = 0;
	for (const char *p = s;; n++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char entry[64];
		if (n == max)
			return parm_fail("'%s': more than %d numbers", s, max);
		snprintf(entry, sizeof entry, "%.*s", (int)(len < 63 ? len : 63), p);
		if (!len || len > 63 || parm_parse_float(entry, &out[n]) < 0 || !isfinite(out[n]))
			return parm_fail("'%s': entry %d is %s", s, n + 1, len ? "not a number" : "empty");
		if (!comma)
			return n + 1;
		p = comma + 1;
	}
}

void parm_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", parm_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see %s --help)\n", parm_progname);
	if (die_hook)
		die_hook();
	exit(2);
}

long parm_opt_long(const char *name, const char *arg, long lo, long hi)
{
	long v;
	if (parm_parse_long(arg, lo, hi, &v) < 0)
		parm_usage_error("%s: expected an integer from %ld to %ld, got '%s'", name, lo, hi, arg);
	return v;
}

double parm_opt_float(const char *name, const char *arg, double lo, double hi)
{
	double v;
	if (parm_parse_float(arg, &v) < 0 || !(v >= lo && v <= hi))
		parm_usage_error("%s: expected a number from %g to %g, got '%s'", name, lo, hi, arg);
	return v;
}

void parm_prefault(const void *p, size_t n, int write)
{
#ifdef MADV_POPULATE_READ
	const long page = sysconf(_SC_PAGESIZE);
	if (page <= 0 || n == 0)
		return;
	uintptr_t from = (uintptr_t)p / page * page, to = ((uintptr_t)p + n + page - 1) / page * page;
	int saved = errno;
	madvise((void *)from, to - from, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
	errno = saved;
#else
	(void)p, (void)n, (void)write;
#endif
}

int parm_map_file(const char *path, const void **map, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	*map = NULL;
	*size = 0;
	if (fd < 0)
		return parm_failc(PARM_ESYS, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int err = errno;
		int dir = S_ISDIR(st.st_mode);
		close(fd);
		return parm_failc(PARM_ESYS, "%s: %s", path, err && !dir ? strerror(err) :
				 dir ? strerror(EISDIR) : "not a regular file");
	}
	*size = st.st_size;
	if (*size) {
		void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			int err = errno;
			close(fd);
			return parm_failc(PARM_ESYS, "%s: mmap: %s", path, strerror(err));
		}
		*map = m;
	}
	close(fd);
	return 0;
}

void parm_unmap_file(const void *map, size_t size)
{
	if (map)
		munmap((void *)map, size);
}

int parm_write_atomic(const char *path, int (*write)(FILE *f, void *ctx), void *ctx)
{
	size_t len = strlen(path);
	char *tmp = parm_xmalloc(len + 5);
	memcpy(tmp, path, len);
	memcpy(tmp + len, ".tmp", 5);
	FILE *f = fopen(tmp, "wb");
	int rc = -1;
	if (!f) {
		parm_failc(PARM_ESYS, "%s: %s", tmp, strerror(errno));
	} else if (write(f, ctx) < 0 || fflush(f) || ferror(f) || fsync(fileno(f))) {
		parm_failc(PARM_ESYS, "%s: write: %s", tmp, strerror(errno ? errno : EIO));
		fclose(f);
		unlink(tmp);
	} else if (fclose(f) || rename(tmp, path)) {
		parm_failc(PARM_ESYS, "%s: %s", path, strerror(errno));
		unlink(tmp);
	} else {
		rc = 0;
	}
	free(tmp);
	return rc;
}

void parm_advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
	const uintptr_t huge = 2 << 20, from = ((uintptr_t)p + huge - 1) / huge * huge,
			to = ((uintptr_t)p + n) / huge * huge;
	int saved = errno;
	if (to > from)
		madvise((void *)from, to - from, MADV_HUGEPAGE);
	errno = saved;
#else
	(void)p, (void)n;
#endif
}

void *parm_alloc_huge(size_t n)
{
	enum { HUGE = 2 << 20 };
	void *p = NULL;
	if (n < HUGE)
		return parm_xmalloc(n);
	if (posix_memalign(&p, HUGE, n))
		parm_die("out of memory (%zu bytes)", n);
	parm_advise_huge(p, n);
	parm_prefault(p, n, 1);
	return p;
}
