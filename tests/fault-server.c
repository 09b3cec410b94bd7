/* fault-server - a loopback HTTP server that misbehaves on purpose, for
 * the fault tests of tests/t_remote.sh (built by it, not by make).
 *
 *   fault-server MODE PORTFILE LOGFILE
 *
 * Listens on 127.0.0.1 at a free port (written to PORTFILE), answers one
 * connection at a time and closes it, logs each request path to LOGFILE,
 * and exits after 20 seconds whatever happens.  POST /completion answers
 * depend on MODE:
 *   ok         a valid llama.cpp reply (top tokens 100 and 200)
 *   slow       the valid reply, 3 seconds late
 *   500        HTTP 500 twice, then valid replies
 *   garbage    text that is not JSON
 *   truncated  the valid reply cut in half
 *   400        HTTP 400 with an error message about logprobs
 *   tokenize   valid replies, and POST /tokenize gives ids unlike any vocab
 * Every other path is 404.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char valid[] =
	"{\"completion_probabilities\":[{\"id\":100,\"logprob\":-0.5,\"top_logprobs\":"
	"[{\"id\":100,\"logprob\":-0.5},{\"id\":200,\"logprob\":-1.5}]}]}";

static void reply(int fd, int status, const char *body, size_t len)
{
	char head[256];
	int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, len);
	if (write(fd, head, n) != n || write(fd, body, len) != (ssize_t)len)
		perror("fault-server: write");
}

/* Read one request; its path into path[]. 0, or -1 if the client left. */
static int read_request(int fd, char *path, size_t size)
{
	static char buf[1 << 20];
	size_t n = 0;
	char *end = NULL;
	while (!end) {
		ssize_t got = read(fd, buf + n, sizeof buf - 1 - n);
		if (got <= 0)
			return -1;
		buf[n += got] = 0;
		end = strstr(buf, "\r\n\r\n");
	}
	char *cl = strcasestr(buf, "Content-Length:");
	size_t want = (end - buf) + 4 + (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
	while (n < want && n < sizeof buf - 1) {
		ssize_t got = read(fd, buf + n, sizeof buf - 1 - n);
		if (got <= 0)
			return -1;
		n += got;
	}
	if (sscanf(buf, "%*s %255s", path) != 1 || size < 256)
		return -1;
	return 0;
}

static void answer(int fd, const char *mode, const char *path, int *n_completions)
{
	if (!strcmp(path, "/tokenize") && !strcmp(mode, "tokenize")) {
		const char *t = "{\"tokens\":[7,7,7]}";
		return reply(fd, 200, t, strlen(t));
	}
	if (strcmp(path, "/completion")) {
		const char *e = "{\"error\":{\"code\":404,\"message\":\"File Not Found\"}}";
		return reply(fd, 404, e, strlen(e));
	}
	int k = (*n_completions)++;
	if (!strcmp(mode, "slow"))
		sleep(3);
	if (!strcmp(mode, "500") && k < 2) {
		const char *e = "{\"error\":{\"code\":500,\"message\":\"busy, try again\"}}";
		return reply(fd, 500, e, strlen(e));
	}
	if (!strcmp(mode, "garbage"))
		return reply(fd, 200, "<html>hello</html>", 18);
	if (!strcmp(mode, "truncated"))
		return reply(fd, 200, valid, sizeof valid / 2);
	if (!strcmp(mode, "400")) {
		const char *e = "{\"error\":{\"code\":400,\"message\":\"Requested sample logprobs "
				"of 50, which is greater than max allowed: 20\"}}";
		return reply(fd, 400, e, strlen(e));
	}
	reply(fd, 200, valid, strlen(valid));
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: fault-server MODE PORTFILE LOGFILE\n");
		return 2;
	}
	alarm(20);
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1, n_completions = 0;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) < 0) {
		perror("fault-server");
		return 1;
	}
	FILE *log = fopen(argv[3], "w"), *pf = fopen(argv[2] , "w");
	if (!log || !pf)
		return perror("fault-server"), 1;
	fprintf(pf, "%d\n", ntohs(a.sin_port));
	fclose(pf);
	for (;;) {
		char path[256];
		int fd = accept(s, NULL, NULL);
		if (fd < 0)
			continue;
		if (read_request(fd, path, sizeof path) == 0) {
			fprintf(log, "%s\n", path);
			fflush(log);
			answer(fd, argv[1], path, &n_completions);
		}
		close(fd);
	}
}
