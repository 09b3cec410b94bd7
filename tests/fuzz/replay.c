/* replay.c - a main for the harnesses without libFuzzer: each file named on
 * the command line (or each file in a directory named) goes through
 * LLVMFuzzerTestOneInput once.  This is how make check replays the seed and
 * regression corpora (tests/t_fuzz_replay.sh): a crash, a sanitizer report
 * or a library exit ends the run with a non-zero status. */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The whole file in a buffer of exactly its size, so an overread shows. */
static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0) {
		perror(path);
		exit(2);
	}
	*n = (size_t)st.st_size;
	uint8_t *p = malloc(*n ? *n : 1);
	if (!p || fread(p, 1, *n, f) != *n) {
		fprintf(stderr, "%s: cannot read\n", path);
		exit(2);
	}
	fclose(f);
	return p;
}

static int replay_file(const char *path)
{
	size_t n;
	uint8_t *p = slurp(path, &n);
	/* The harness's own buffer in libFuzzer is exactly n bytes too. */
	uint8_t *exact = malloc(n ? n : 1);
	memcpy(exact, p, n);
	free(p);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 1;
}

static int replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];
	int n = 0;
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			n += replay_file(path);
	}
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	int n = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
			n += replay_dir(argv[i]);
		else
			n += replay_file(argv[i]);
	}
	printf("replayed %d inputs\n", n);
	return 0;
}
