/* san-report.c - linked only into the sanitized build (make check-asan):
 * two hooks the sanitizer runtime looks for.
 *
 * Leaks are checked only when the program exits 0 on its own (not in
 * parm_exit_quietly, when its reader went away).  A tool that fails
 * calls parm_die() wherever it is and leaves its work, and the memory of it,
 * behind on purpose; freeing on every error path would add code that only
 * the leak checker reads.  Memory errors and undefined behaviour are
 * reported on every path.
 *
 * The runtime calls __sanitizer_report_error_summary once for every report
 * (ASan, LSan, UBSan).  Besides printing the summary on stderr as the
 * default does, it appends the program's path and the summary to the file
 * named by $PARM_SAN_LOG: a report from a tool whose stderr and exit status
 * no test looks at (a stage early in a pipe, a tool whose errors a test
 * sends to /dev/null) still fails the run.  No stdio or malloc: the process
 * is dying inside the sanitizer. */
#define _DEFAULT_SOURCE         /* on_exit */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void __sanitizer_report_error_summary(const char *summary);
int __lsan_is_turned_off(void);

static int exit_status;

static void note_exit_status(int status, void *unused)
{
	(void)unused;
	exit_status = status;
}

/* Registered after the runtime's own exit handler (installed before any
 * constructor runs), so it runs before the leak check. */
__attribute__((constructor)) static void watch_exit(void)
{
	on_exit(note_exit_status, NULL);
}

/* libparm's: set when a tool left early because its reader went away */
extern int parm_left_early __attribute__((weak));

/* asked by LeakSanitizer just before its check at exit */
int __lsan_is_turned_off(void)
{
	return exit_status != 0 || (&parm_left_early && parm_left_early);
}

/* append s to buf (of size cap) holding *len bytes, truncating */
static void append(char *buf, size_t cap, size_t *len, const char *s)
{
	size_t n = strlen(s);
	if (n > cap - 1 - *len)
		n = cap - 1 - *len;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
}

void __sanitizer_report_error_summary(const char *summary)
{
	char line[2048];
	size_t len = 0;
	append(line, sizeof line, &len, summary);
	append(line, sizeof line, &len, "\n");
	if (write(2, line, len) < 0)
		return;
	const char *log = getenv("PARM_SAN_LOG");
	if (!log || !*log)
		return;
	char exe[512];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	exe[n > 0 ? n : 0] = '\0';
	len = 0;
	append(line, sizeof line, &len, exe);
	append(line, sizeof line, &len, ": ");
	append(line, sizeof line, &len, summary);
	append(line, sizeof line, &len, "\n");
	/* one write with O_APPEND: lines of processes dying together stay whole */
	int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, len) < 0) {
		/* nothing more to do: the report is on stderr */
	}
	close(fd);
}
