/* test_quant.c - f16/bf16 conversions, Q8_0/Q4_0 round trips, and every
 * fast dequantiser against its plain loop, bit for bit; the plain loops of
 * every block type against gguf-py's numpy dequantisers; the fused dot of
 * every SIMD path the CPU has against its reference; PARM_SIMD's choice. */
#include "quant_dot.h"
#include "quant_internal.h"
#include "simd.h"
#include "rand_blocks.h"
#include "tap.h"
#include <parm/util.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rng_u32(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state >> 32;
}

static float rng_normal(void)
{
	float u = (rng_u32() + 0.5f) / 4294967296.0f;
	float v = (rng_u32() + 0.5f) / 4294967296.0f;
	return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static uint32_t bits(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return x;
}

static float from_bits(uint32_t x)
{
	float f;
	memcpy(&f, &x, 4);
	return f;
}

static void test_f16_cases(void)
{
	static const struct { float f; uint16_t h; } cases[] = {
		{ 0.0f, 0x0000 }, { -0.0f, 0x8000 }, { 1.0f, 0x3c00 }, { -2.5f, 0xc100 },
		{ 65504.0f, 0x7bff }, { 0x1p-14f, 0x0400 }, { 0x1p-24f, 0x0001 },
		{ 0x3ffp-24f, 0x03ff }, { -0x1p-24f, 0x8001 }, { INFINITY, 0x7c00 },
		{ -INFINITY, 0xfc00 }, { 0.5f, 0x3800 }, { 0.333251953125f, 0x3555 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ok(parm_f32_to_f16(cases[i].f) == cases[i].h, "parm_f32_to_f16(%a) = 0x%04x", cases[i].f, cases[i].h);
		ok(bits(parm_f16_to_f32(cases[i].h)) == bits(cases[i].f), "parm_f16_to_f32(0x%04x) = %a", cases[i].h, cases[i].f);
	}
}

static void test_f16_rounding(void)
{
	/* 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to even. */
	ok(parm_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie 1+2^-11 rounds down to even");
	ok(parm_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie 1+3*2^-11 rounds up to even");
	ok(parm_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01, "above the tie rounds up");
	ok(parm_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds to 65504");
	ok(parm_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to inf");
	ok(parm_f32_to_f16(1e10f) == 0x7c00, "1e10 overflows to inf");
	ok(parm_f32_to_f16(0x1p-25f) == 0x0000, "2^-25 (tie) rounds to zero");
	ok(parm_f32_to_f16(0x1.8p-25f) == 0x0001, "1.5*2^-25 rounds to the smallest subnormal");
	ok(parm_f32_to_f16(3 * 0x1p-25f) == 0x0002, "subnormal tie 1.5*2^-24 rounds to even 2");
	ok(parm_f32_to_f16(0x1p-30f) == 0x0000, "tiny underflows to zero");
	ok(parm_f32_to_f16(0x1.ffcp-15f) == 0x0400, "largest subnormal tie carries into the smallest normal");
	ok(parm_f32_to_f16(1e-45f) == 0x0000, "an f32 subnormal becomes zero");
	uint16_t qnan = parm_f32_to_f16(NAN);
	ok((qnan & 0x7c00) == 0x7c00 && (qnan & 0x3ff), "nan stays nan (0x%04x)", qnan);
	ok(isnan(parm_f16_to_f32(0x7e00)) && isnan(parm_f16_to_f32(0xfd01)), "f16 nans decode as nan");
	uint16_t snan = parm_f32_to_f16(from_bits(0x7f800001));
	ok((snan & 0x7c00) == 0x7c00 && (snan & 0x3ff), "a signalling nan with a low payload stays nan");
}

static void test_f16_exhaustive(void)
{
	int bad = 0;
	for (uint32_t h = 0; h < 1 << 16; h++) {
		float f = parm_f16_to_f32(h);
		uint16_t back = parm_f32_to_f16(f);
		if (isnan(f) ? !(back & 0x3ff) || (back & 0x7c00) != 0x7c00 || (back & 0x8000) != (h & 0x8000)
			     : back != h)
			bad++;
	}
	ok(bad == 0, "every half survives f16 -> f32 -> f16 (%d bad)", bad);
}

/* The half nearest to f found by search: the reference for rounding. */
static int f16_rounding_matches(float f)
{
	uint16_t h = parm_f32_to_f16(f);
	double err = fabs((double)parm_f16_to_f32(h) - f);
	for (int d = -1; d <= 1; d += 2) {
		uint16_t n = h + d;
		if ((n & 0x7fff) >= 0x7c00 || (n & 0x8000) != (h & 0x8000))
			continue;
		double e2 = fabs((double)parm_f16_to_f32(n) - f);
		if (e2 < err || (e2 == err && (n & 1) == 0))
			return 0;
	}
	return 1;
}

static void test_f16_random(void)
{
	int bad = 0;
	for (int i = 0; i < 200000; i++) {
		float f = from_bits(rng_u32() % 0x477fe000u | (rng_u32() & 0x80000000u));
		if (!f16_rounding_matches(f))
			bad++;
	}
	ok(bad == 0, "200000 random f32s round to the nearest half, ties to even (%d bad)", bad);
}

static void test_bf16(void)
{
	ok(parm_f32_to_bf16(1.0f) == 0x3f80, "bf16(1) = 0x3f80");
	ok(parm_f32_to_bf16(-2.5f) == 0xc020, "bf16(-2.5) = 0xc020");
	ok(parm_f32_to_bf16(from_bits(0x3f808000)) == 0x3f80, "bf16 tie rounds down to even");
	ok(parm_f32_to_bf16(from_bits(0x3f818000)) == 0x3f82, "bf16 tie rounds up to even");
	ok(parm_f32_to_bf16(from_bits(0x3f808001)) == 0x3f81, "bf16 above the tie rounds up");
	ok(parm_f32_to_bf16(INFINITY) == 0x7f80 && parm_f32_to_bf16(-INFINITY) == 0xff80, "bf16 inf");
	ok(parm_f32_to_bf16(from_bits(0x7f7fffff)) == 0x7f80, "bf16 FLT_MAX rounds to inf");
	ok(isnan(parm_bf16_to_f32(parm_f32_to_bf16(from_bits(0x7f800001)))), "bf16 keeps a low-payload nan a nan");
	ok(isnan(parm_bf16_to_f32(parm_f32_to_bf16(NAN))), "bf16 nan");
	ok(parm_bf16_to_f32(0x4049) == 3.140625f, "parm_bf16_to_f32(0x4049) = 3.140625");
}

/* Quantise n random values of type t, dequantise (fast and ref), compare. */
static void test_block_type(enum parm_ggml_type t, float tolerance)
{
	enum { N = 32 * 257 };
	static float in[N], out[N], ref[N];
	static uint8_t q[N * 4];
	for (int i = 0; i < N; i++)
		in[i] = rng_normal() * (i % 64 == 0 ? 10.0f : 1.0f);
	parm_quant_row(q, in, t, N);
	parm_dequant_row(out, q, t, N);
	parm_dequant_row_ref(ref, q, t, N);
	ok(!memcmp(out, ref, sizeof out), "%s: parm_dequant_row equals parm_dequant_row_ref bit for bit", parm_ggml_type_name(t));
	int worst_block = 0;
	float worst = 0;
	for (int b = 0; b < N / 32; b++) {
		float amax = 0, err = 0;
		for (int j = 0; j < 32; j++) {
			amax = fmaxf(amax, fabsf(in[b * 32 + j]));
			err = fmaxf(err, fabsf(in[b * 32 + j] - out[b * 32 + j]));
		}
		if (err / amax > worst) {
			worst = err / amax;
			worst_block = b;
		}
	}
	ok(worst <= tolerance, "%s: max error %.4f of the block's max (bound %.4f, block %d)",
	   parm_ggml_type_name(t), worst, tolerance, worst_block);
}

static void test_q4_0_layout(void)
{
	float in[32], out[32];
	uint8_t q[18];
	for (int i = 0; i < 32; i++)
		in[i] = i - 16;         /* max magnitude -16: d = 2, q = x/2 + 8 */
	parm_quant_row(q, in, PARM_GGML_Q4_0, 32);
	ok(q[0] == 0 && q[1] == 0x40, "q4_0 scale is f16 2.0");
	ok(q[2] == (0 | 8 << 4) && q[17] == (8 | 15 << 4),
	   "q4_0 packs x[j] low, x[j+16] high (0x%02x 0x%02x)", q[2], q[17]);
	parm_dequant_row(out, q, PARM_GGML_Q4_0, 32);
	ok(out[0] == -16 && out[16] == 0 && out[31] == 14, "q4_0 decodes -16, 0, 14 (the top clips to 15)");
}

static void test_q8_0_layout(void)
{
	float in[32] = { 0 }, out[32];
	uint8_t q[34];
	in[0] = 127;
	in[1] = -63.5f;         /* -63.5 * 127/127 rounds away from zero: -64 */
	in[2] = 2.4f;
	parm_quant_row(q, in, PARM_GGML_Q8_0, 32);
	ok(q[0] == 0x00 && q[1] == 0x3c, "q8_0 scale is f16 1.0");
	ok((int8_t)q[2] == 127 && (int8_t)q[3] == -64 && (int8_t)q[4] == 2, "q8_0 rounds half away from zero");
	parm_dequant_row(out, q, PARM_GGML_Q8_0, 32);
	ok(out[0] == 127 && out[1] == -64 && out[2] == 2 && out[3] == 0, "q8_0 decodes");
	float zeros[32] = { 0 };
	parm_quant_row(q, zeros, PARM_GGML_Q8_0, 32);
	parm_dequant_row(out, q, PARM_GGML_Q8_0, 32);
	ok(out[0] == 0 && out[31] == 0, "an all-zero block stays zero");
}

static void test_fast_vs_ref_random_bits(void)
{
	enum { N = 32 * 64 };
	static uint8_t raw[N * 4];
	static float out[N], ref[N];
	const enum parm_ggml_type types[] = { PARM_GGML_F32, PARM_GGML_F16, PARM_GGML_BF16, PARM_GGML_Q8_0, PARM_GGML_Q4_0 };
	for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
		for (size_t i = 0; i < sizeof raw; i++)
			raw[i] = rng_u32();
		if (types[k] == PARM_GGML_F32)    /* keep nans out: memcmp of nan payloads is not the point */
			for (int i = 0; i < N; i++)
				raw[i * 4 + 3] &= 0x7f, raw[i * 4 + 2] &= 0x7f;
		parm_dequant_row(out, raw, types[k], N);
		parm_dequant_row_ref(ref, raw, types[k], N);
		ok(!memcmp(out, ref, N * sizeof(float)), "%s: fast = ref on random bits", parm_ggml_type_name(types[k]));
	}
	uint16_t all[1 << 16];
	static float f[1 << 16], fr[1 << 16];
	for (uint32_t h = 0; h < 1 << 16; h++)
		all[h] = h;
	parm_dequant_row(f, all, PARM_GGML_F16, 1 << 16);
	parm_dequant_row_ref(fr, all, PARM_GGML_F16, 1 << 16);
	ok(!memcmp(f, fr, sizeof f), "f16: fast = ref on all 65536 halves");
	parm_dequant_row(f + 3, all, PARM_GGML_F16, 13);      /* odd length and alignment: the scalar tail */
	ok(!memcmp(f + 3, fr, 13 * sizeof(float)), "f16: fast = ref on an unaligned 13-element tail");
	parm_dequant_row(f + 1, all + 0x3f00, PARM_GGML_BF16, 37);
	parm_dequant_row_ref(fr, all + 0x3f00, PARM_GGML_BF16, 37);
	ok(!memcmp(f + 1, fr, 37 * sizeof(float)), "bf16: fast = ref on a 37-element row (chunks and tail)");
}

/* The block types parm_quant_row does not write: random bytes, with each f16
 * scale (and min) set apart so none is a nan or an inf. */
static const enum parm_ggml_type read_only_types[] = {
	PARM_GGML_Q4_1, PARM_GGML_Q5_0, PARM_GGML_Q5_1, PARM_GGML_IQ4_NL, PARM_GGML_Q2_K, PARM_GGML_Q3_K,
	PARM_GGML_Q4_K, PARM_GGML_Q5_K, PARM_GGML_Q6_K, PARM_GGML_IQ4_XS,
};
#define N_READ_ONLY (sizeof read_only_types / sizeof *read_only_types)

/* parm_dequant_row (the scalar unpackers, a chunk at a time) against the plain
 * loop, bit for bit, with extreme and zero scales. */
static void test_read_only_fast_vs_ref(void)
{
	enum { N = 256 * 9 };
	static uint8_t row[N * 4];
	static float out[N], ref[N];
	for (size_t k = 0; k < N_READ_ONLY; k++) {
		enum parm_ggml_type t = read_only_types[k];
		rand_blocks(row, t, N, 1, 0.02f);
		parm_dequant_row(out, row, t, N);
		parm_dequant_row_ref(ref, row, t, N);
		ok(!memcmp(out, ref, sizeof out), "%s: parm_dequant_row equals parm_dequant_row_ref bit for bit "
		   "(extreme and zero scales)", parm_ggml_type_name(t));
	}
}

/* gguf-py's dequantize() on the same blocks, through Debian's python3 and
 * numpy: tests/quant-ref.py writes its floats, compared bit for bit. */
static const char *gguf_py_dir(void)
{
	static char dir[4096];
	const char *home = getenv("HOME");
	snprintf(dir, sizeof dir, "%s/.cache/parm/llama.cpp/src/gguf-py", home ? home : "");
	return dir;
}

static int python_dequant(enum parm_ggml_type t, const uint8_t *row, size_t bytes, float *out, int64_t n,
			  const char *tmp)
{
	char in[4200], res[4200], cmd[16384];
	snprintf(in, sizeof in, "%s/blocks", tmp);
	snprintf(res, sizeof res, "%s/floats", tmp);
	FILE *f = fopen(in, "wb");
	if (!f || fwrite(row, 1, bytes, f) != bytes || fclose(f))
		return -1;
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/quant-ref.py '%s' %s '%s' '%s'",
		 gguf_py_dir(), parm_ggml_type_name(t), in, res);
	int rc = system(cmd);
	f = fopen(res, "rb");
	size_t got = f ? fread(out, sizeof *out, n, f) : 0;
	if (f)
		fclose(f);
	unlink(in);
	unlink(res);
	return rc == 0 && got == (size_t)n ? 0 : -1;
}

static void test_against_gguf_py(void)
{
	enum { N = 256 * 16 };
	static uint8_t row[N * 4];
	static float ref[N], theirs[N];
	char tmp[] = "/tmp/parm-quant.XXXXXX", probe[4400];
	snprintf(probe, sizeof probe, "%s/gguf/quants.py", gguf_py_dir());
	const char *why = access(probe, R_OK) ? "no llama.cpp source in ~/.cache/parm (make check fetches it)"
			: system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") ? "no python3-numpy (make test-deps installs it)"
			: !mkdtemp(tmp) ? "no temporary directory" : NULL;
	for (size_t k = 0; k < N_READ_ONLY + 2; k++) {
		enum parm_ggml_type t = k < N_READ_ONLY ? read_only_types[k] : k == N_READ_ONLY ? PARM_GGML_Q8_0 : PARM_GGML_Q4_0;
		if (why) {
			skip(why, "%s: plain loop = gguf-py", parm_ggml_type_name(t));
			continue;
		}
		rand_blocks(row, t, N, 1, 0.02f);
		parm_dequant_row_ref(ref, row, t, N);
		if (python_dequant(t, row, parm_ggml_row_bytes(t, N), theirs, N, tmp) < 0) {
			ok(0, "%s: tests/quant-ref.py failed", parm_ggml_type_name(t));
			continue;
		}
		int differ = 0, first = -1;
		for (int i = 0; i < N; i++)
			if (bits(ref[i]) != bits(theirs[i]) && differ++ == 0)
				first = i;
		ok(differ == 0, "%s: plain loop = gguf-py's numpy dequantiser bit for bit on %d "
		   "random weights, extreme and zero scales (%d differ; first %d: %a vs %a)",
		   parm_ggml_type_name(t), N, differ, first, first < 0 ? 0.0 : ref[first],
		   first < 0 ? 0.0 : theirs[first]);
	}
	if (!why)
		rmdir(tmp);
}

/* The fused dot against the dequantise-then-dot reference, for one to
 * eight vectors, odd block counts, every type, on the path dot (NULL:
 * parm_quant_dot, the path parm_simd() chose); tolerance relative to
 * sum |w x|, since summing per block reorders. */
static void test_quant_dot(quant_dot_fn *dot, const char *path, enum parm_ggml_type t, int nx, int64_t n)
{
	enum { MAXX = 8, MAXN = 256 * 5 };
	static float x[MAXX * MAXN], wf[MAXN], w[MAXN], y[MAXX * 3], yr[MAXX * 3];
	static uint8_t row[MAXN * 4];
	for (int64_t i = 0; i < nx * n; i++)
		x[i] = rng_normal();
	for (int64_t k = 0; k < n; k++)
		wf[k] = rng_normal() * 0.1f;
	if (parm_quant_type_quantised(t))
		parm_quant_row(row, wf, t, n);
	else
		rand_blocks(row, t, n, 0, 0.02f);
	parm_dequant_row_ref(w, row, t, n);
	(dot ? dot : parm_quant_dot)(y, 3, row, t, x, nx, n);
	parm_quant_dot_ref(yr, 3, row, t, x, nx, n);
	double worst = 0;
	for (int i = 0; i < nx; i++) {
		double mag = 0;
		for (int64_t k = 0; k < n; k++)
			mag += fabs((double)w[k] * x[i * n + k]);
		double e = fabs((double)y[i * 3] - yr[i * 3]) / (mag > 0 ? mag : 1);
		worst = e > worst || e != e ? e : worst;
	}
	ok(worst < 1e-6, "%s: parm_quant_dot (%s) = ref for %d x %lld (rel err %.2g)",
	   parm_ggml_type_name(t), path, nx, (long long)n, worst);
}

/* Every block type on one path: every group size and remainder the fused
 * path splits 1..8 into, with odd block counts so the two-chunk step
 * leaves a tail (super-blocks: 3 and 5 of 256). */
static void test_dot_path(quant_dot_fn *dot, const char *path)
{
	for (int nx = 1; nx <= 8; nx++)
		for (int k = 0; k < 2; k++) {
			test_quant_dot(dot, path, PARM_GGML_Q8_0, nx, 32 * (k ? 33 : 3));
			test_quant_dot(dot, path, PARM_GGML_Q4_0, nx, 32 * (k ? 33 : 3));
			for (size_t i = 0; i < N_READ_ONLY; i++) {
				enum parm_ggml_type t = read_only_types[i];
				test_quant_dot(dot, path, t, nx, parm_ggml_type_block(t) * (k ? 5 : 3));
			}
			test_quant_dot(dot, path, PARM_GGML_F16, nx, 32 * (k ? 33 : 3));
			test_quant_dot(dot, path, PARM_GGML_BF16, nx, 32 * (k ? 33 : 3));
		}
}

/* Each path the CPU has, called directly whatever PARM_SIMD says. */
static void test_dot_paths(void)
{
	struct { enum parm_simd s; quant_dot_fn *dot; } paths[] = {
		{ PARM_SIMD_PORTABLE, parm_quant_dot_portable },
#if defined(__x86_64__) || defined(__i386__)
		{ PARM_SIMD_AVX2, parm_quant_dot_avx2 },
		{ PARM_SIMD_AVX512, parm_quant_dot_avx512 },
#endif
	};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		const char *name = parm_simd_name(paths[i].s);
		if (paths[i].s <= parm_simd_best())
			test_dot_path(paths[i].dot, name);
		else
			skip("the CPU has no such instructions", "parm_quant_dot on the %s path", name);
	}
}

/* PARM_SIMD: a request is clamped to the CPU's best; junk is ignored. */
static void test_simd_choice(void)
{
	enum parm_simd best = parm_simd_best();
	printf("# simd path %s (PARM_SIMD=%s), the CPU's best %s\n", parm_simd_name(parm_simd()),
	       getenv("PARM_SIMD") ? getenv("PARM_SIMD") : "", parm_simd_name(best));
	ok(parm_simd() == parm_simd_choose(getenv("PARM_SIMD"), best), "parm_simd() follows PARM_SIMD");
	ok(parm_simd_choose(NULL, best) == best && parm_simd_choose("", best) == best &&
	   parm_simd_choose("avx1024", best) == best, "no PARM_SIMD, empty or unknown: the best");
	ok(parm_simd_choose("portable", PARM_SIMD_AVX512) == PARM_SIMD_PORTABLE &&
	   parm_simd_choose("avx2", PARM_SIMD_AVX512) == PARM_SIMD_AVX2 &&
	   parm_simd_choose("avx512", PARM_SIMD_AVX512) == PARM_SIMD_AVX512,
	   "a path below the best is taken");
	ok(parm_simd_choose("avx512", PARM_SIMD_AVX2) == PARM_SIMD_AVX2 &&
	   parm_simd_choose("avx512", PARM_SIMD_PORTABLE) == PARM_SIMD_PORTABLE &&
	   parm_simd_choose("avx2", PARM_SIMD_PORTABLE) == PARM_SIMD_PORTABLE,
	   "a path above the best is clamped to it");
}

int main(void)
{
	(void)fixtures_dir;                     /* a tap.h helper not needed here */
	test_f16_cases();
	test_f16_rounding();
	test_f16_exhaustive();
	test_f16_random();
	test_bf16();
	test_q8_0_layout();
	test_q4_0_layout();
	/* Q8_0: error at most half a step, d/2 = amax/254, plus f16 scale error. */
	test_block_type(PARM_GGML_Q8_0, 1.0f / 254 + 1e-3f);
	/* Q4_0: half a step of amax/8, except the +8 side which clips at 7 steps. */
	test_block_type(PARM_GGML_Q4_0, 1.0f / 8 + 1e-3f);
	test_block_type(PARM_GGML_F16, 1.0f / 1024);
	test_block_type(PARM_GGML_BF16, 1.0f / 128);
	test_block_type(PARM_GGML_F32, 0);
	test_fast_vs_ref_random_bits();
	test_read_only_fast_vs_ref();
	test_against_gguf_py();
	test_simd_choice();
	const enum parm_ggml_type dot_types[] = { PARM_GGML_Q8_0, PARM_GGML_Q4_0, PARM_GGML_F16, PARM_GGML_BF16, PARM_GGML_F32 };
	for (size_t k = 0; k < sizeof dot_types / sizeof dot_types[0]; k++) {
		test_quant_dot(NULL, "chosen", dot_types[k], 1, 32);
		test_quant_dot(NULL, "chosen", dot_types[k], 5, 32 * 33);
		test_quant_dot(NULL, "chosen", dot_types[k], 2, 32 * 8);
	}
	test_dot_paths();
	return tap_done();
}
