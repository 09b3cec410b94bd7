/* test_errors.c - the library's one error path: a failure's kind
 * (enum parm_errcode) beside its message, set by real failures of each
 * kind, and kept per thread. */
#include "tap.h"
#include <parm/gguf.h>
#include <parm/model.h>
#include <parm/remote.h>
#include <parm/stream.h>
#include <parm/util.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[] = "/tmp/parm-test-errors.XXXXXX";

/* dir/name holding n bytes of data. */
static const char *file_of(const char *name, const void *data, size_t n)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, n, f) != n || fclose(f))
		return "";
	return path;
}

static int is(enum parm_errcode code, const char *needle)
{
	return parm_errcode() == code && strstr(parm_error(), needle) != NULL;
}

static void test_files(void)
{
	int r = !parm_gguf_open("/nonexistent/model.gguf") && is(PARM_ESYS, "/nonexistent/model.gguf");
	ok(r, "a missing file: PARM_ESYS naming it (%s: %s)", parm_errcode_name(parm_errcode()), parm_error());
	const char *junk = file_of("junk.gguf", "not a model at all, just text", 29);
	r = !parm_gguf_open(junk) && is(PARM_EINPUT, "junk.gguf");
	ok(r, "a file that is no GGUF: PARM_EINPUT (%s: %s)", parm_errcode_name(parm_errcode()), parm_error());
	/* magic, version 1: a real GGUF of a version nobody writes now */
	unsigned char v1[24] = { 'G', 'G', 'U', 'F', 1, 0, 0, 0 };
	const char *old = file_of("v1.gguf", v1, sizeof v1);
	r = !parm_model_load(old) && is(PARM_EUNSUPPORTED, "version 1");
	ok(r, "GGUF version 1: PARM_EUNSUPPORTED (%s: %s)", parm_errcode_name(parm_errcode()), parm_error());
}

/* A reader over a pipe that holds text and then ends. */
static int read_header_of(const char *text, parm_header *h)
{
	int fd[2];
	if (pipe(fd))
		return -2;
	if (write(fd[1], text, strlen(text)) != (ssize_t)strlen(text))
		return -2;
	close(fd[1]);
	parm_reader *r = parm_reader_new(fd[0]);
	int rc = parm_read_header(r, h);
	parm_reader_free(r);
	close(fd[0]);
	return rc;
}

static void test_stream(void)
{
	parm_header h;
	int r = read_header_of("", &h) < 0 && is(PARM_EEOF, "empty input");
	ok(r, "an empty stream: PARM_EEOF (%s)", parm_error());
	r = read_header_of("\xa1", &h) < 0 && is(PARM_EEOF, "end of stream");
	ok(r, "a stream cut inside its header: PARM_EEOF (%s)", parm_error());
	r = read_header_of("{}", &h) < 0 && parm_errcode() == PARM_EINPUT;
	ok(r, "a stream of text, not msgpack: PARM_EINPUT (%s)", parm_error());
}

/* A TCP port on 127.0.0.1 that refuses connections: bound (so no other
 * process can take it while the test runs) but not listening. */
static int refusing_port(int *sock)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	*sock = socket(AF_INET, SOCK_STREAM, 0);
	if (*sock < 0 || bind(*sock, (struct sockaddr *)&a, sizeof a) ||
	    getsockname(*sock, (struct sockaddr *)&a, &len))
		return -1;
	return ntohs(a.sin_port);
}

static void test_remote(void)
{
	int sock, port = refusing_port(&sock);
	if (port < 0) {
		skip("no loopback TCP socket here", "a refused connection: PARM_EREMOTE");
		return;
	}
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	parm_remote_opts o = { .url = url, .top_k = 4, .n_slots = 1, .timeout = 5 };
	parm_remote *r = parm_remote_new(&o);
	int failed = !r && is(PARM_EREMOTE, url);
	ok(failed, "a server that refuses: PARM_EREMOTE (%s)", parm_error());
	parm_remote_free(r);
	/* what is wrong on our side is not the server's */
	o.cacert = "/nonexistent/ca.pem";
	failed = !parm_remote_new(&o) && is(PARM_ESYS, "ca.pem");
	ok(failed, "an unreadable --cacert: PARM_ESYS (%s)", parm_error());
	o.cacert = file_of("ca.pem", "no certificate here\n", 20);
	failed = !parm_remote_new(&o) && is(PARM_EINPUT, "no PEM certificate");
	ok(failed, "a --cacert without a certificate: PARM_EINPUT (%s)", parm_error());
	failed = parm_remote_api("grpc") < 0 && is(PARM_EINPUT, "grpc");
	ok(failed, "an unknown API name: PARM_EINPUT (%s)", parm_error());
	close(sock);
}

/* A thread's failures are its own: each fails its way many times while
 * the others do, and must read back its own kind and message. */
static void *fail_in_thread(void *arg)
{
	long id = (long)arg, wrong = 0;
	char want[32];
	snprintf(want, sizeof want, "thread %ld", id);
	for (int i = 0; i < 20000; i++) {
		parm_failc(id % 2 ? PARM_ESYS : PARM_EREMOTE, "thread %ld", id);
		wrong += strcmp(parm_error(), want) != 0 ||
			 parm_errcode() != (id % 2 ? PARM_ESYS : PARM_EREMOTE);
	}
	return (void *)wrong;
}

static void test_threads(void)
{
	pthread_t t[4];
	long wrong = 0;
	parm_failc(PARM_EUNSUPPORTED, "main");
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, fail_in_thread, (void *)i);
	for (int i = 0; i < 4; i++) {
		void *w;
		pthread_join(t[i], &w);
		wrong += (long)w;
	}
	ok(wrong == 0, "4 threads failing at once each read their own error back (%ld wrong)", wrong);
	ok(is(PARM_EUNSUPPORTED, "main") && !strcmp(parm_error(), "main"),
	   "the main thread's error is untouched by theirs");
}

static void test_names(void)
{
	ok(!strcmp(parm_errcode_name(PARM_ESYS), "PARM_ESYS") && !parm_errcode_name(PARM_N_ERRCODES) &&
	   !parm_errcode_name((enum parm_errcode)-1), "parm_errcode_name, and NULL out of range");
	int named = 1;
	for (int c = 0; c < PARM_N_ERRCODES; c++)
		named &= parm_errcode_name((enum parm_errcode)c) != NULL;
	ok(named, "every code has a name");
	ok(parm_fail("x %d", 1) == -1 && is(PARM_EINPUT, "x 1") && !parm_failcp(PARM_ESYS, "y") &&
	   is(PARM_ESYS, "y"), "parm_fail records PARM_EINPUT; parm_failcp returns NULL");
	parm_clear_error();
	ok(parm_errcode() == PARM_OK && !strcmp(parm_error(), "unknown error"),
	   "parm_clear_error: PARM_OK again");
	parm_failc((enum parm_errcode)99, "z");
	ok(parm_errcode() == PARM_EINPUT, "a code out of range is recorded as PARM_EINPUT");
}

int main(void)
{
	ok(parm_errcode() == PARM_OK, "no error before the first failure");
	if (!mkdtemp(dir))
		return perror("mkdtemp"), 1;
	test_files();
	test_stream();
	test_remote();
	test_threads();
	test_names();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd))
		perror("rm");
	return tap_done();
}
