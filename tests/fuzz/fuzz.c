/* fuzz.c - the harnesses' shared helpers (fuzz.h). */
#include "fuzz.h"
#include <parm/util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

_Noreturn void fuzz_abort(const char *what)
{
	fprintf(stderr, "fuzz harness setup: %s\n", what);
	abort();
}

const char *fuzz_fixture(const char *file)
{
	static char path[4096];
	const char *env = getenv("PARM_FIXTURES"), *home = getenv("HOME");
	const char *dirs[3] = { env, "../shared/fixtures/vocab", NULL };
	char cache[2048];
	if (home) {
		snprintf(cache, sizeof cache, "%s/.cache/parm/fixtures", home);
		dirs[2] = cache;
	}
	for (int i = 0; i < 3; i++) {
		if (!dirs[i] || !*dirs[i])
			continue;
		snprintf(path, sizeof path, "%s/%s", dirs[i], file);
		if (access(path, R_OK) == 0)
			return path;
		if (i == 0)
			break;  /* PARM_FIXTURES set: only there, as tests/lib.sh */
	}
	return NULL;
}

parm_gguf *fuzz_open_fixture(const char *file)
{
	const char *path = fuzz_fixture(file);
	parm_gguf *g = path ? parm_gguf_open(path) : NULL;
	if (!g) {
		char msg[512];
		snprintf(msg, sizeof msg, "no vocabulary fixture %s (set PARM_FIXTURES): %s", file,
			 path ? parm_error() : "not found");
		fuzz_abort(msg);
	}
	return g;
}

static int memfd = -1;

int fuzz_memfd(const uint8_t *data, size_t size)
{
	if (memfd < 0 && (memfd = memfd_create("fuzz-input", 0)) < 0)
		fuzz_abort("memfd_create failed");
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size ||
	    lseek(memfd, 0, SEEK_SET) < 0)
		fuzz_abort("cannot fill the memfd");
	return memfd;
}

const char *fuzz_memfd_path(void)
{
	static char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
	return path;
}

int fuzz_make_backbone(const char *path)
{
	parm_config c = FUZZ_BACKBONE_CFG;
	parm_gguf *vocab = fuzz_open_fixture("ggml-vocab-llama-spm.gguf");
	int rc = parm_model_init(path, vocab, &c, PARM_GGML_F32, 1);
	parm_gguf_close(vocab);
	return rc;
}

parm_model *fuzz_backbone(void)
{
	static parm_model *m;
	char path[] = "/tmp/parm-fuzz-backbone.XXXXXX";
	if (m)
		return m;
	int fd = mkstemp(path);
	if (fd < 0)
		fuzz_abort("mkstemp failed");
	close(fd);
	if (fuzz_make_backbone(path) < 0 || !(m = parm_model_load(path))) {
		unlink(path);
		fuzz_abort(parm_error());
	}
	unlink(path);   /* the mapping stays */
	return m;
}
