/* fuzz.h - what the harnesses in tests/fuzz share.
 *
 * Each harness (tests/fuzz/TARGET.c) defines LLVMFuzzerTestOneInput and sets
 * itself up on its first input, so the same file links with libFuzzer
 * (make fuzz, clang) and with replay.c's main (make check, any compiler):
 * tests/fuzz/README.md says how the two are run. */
#ifndef PARM_FUZZ_H
#define PARM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <parm/gguf.h>
#include <parm/model.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The path of a llama.cpp vocabulary fixture (ggml-vocab-*.gguf), looked
 * up as the tests do: $PARM_FIXTURES, ../shared/fixtures/vocab, the cache
 * `make fixtures` fills.  NULL if none is there. */
const char *fuzz_fixture(const char *file);
/* The fixture opened, for the harness's life; a missing one aborts the
 * run naming it (a harness cannot test without its vocabulary). */
parm_gguf *fuzz_open_fixture(const char *file);
/* Abort with a message: a harness's own setup failed (not a finding). */
_Noreturn void fuzz_abort(const char *what);

/* data[size] as a file, for readers that take a descriptor or a path:
 * one memfd, emptied, filled and rewound for each input. */
int fuzz_memfd(const uint8_t *data, size_t size);
const char *fuzz_memfd_path(void);      /* /proc/self/fd/N of it */

/* The backbone the ARM harness reads adapters onto (and its seeds are
 * made for): llama, dim 16, 2 layers, the SentencePiece fixture vocabulary. */
#define FUZZ_BACKBONE_CFG { .dim = 16, .n_layers = 2, .n_heads = 2, .n_kv_heads = 1, \
			    .ff = 24, .n_ctx = 16 }
int fuzz_make_backbone(const char *path);
parm_model *fuzz_backbone(void);        /* made and loaded once */

#endif
