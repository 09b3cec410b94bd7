/* test_quant_x8.c - the integer dots with 8-bit activations (the K
 * types as stored, q4_0 and q8_0 packed by eight): the quantisers'
 * rounding, sums, zeros and NaNs; the plain-loop references against the
 * dequantiser (so their integers and factors are the type's weights);
 * every vector path the CPU has against the references; and the matmul
 * inference runs against them, for few and many tokens. */
#include "kernels.h"
#include "quant_dot.h"
#include "quant_internal.h"
#include "simd.h"
#include "rand_blocks.h"
#include "tap.h"
#include <parm/util.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const enum parm_ggml_type x8_types[] = { PARM_GGML_Q4_K, PARM_GGML_Q5_K, PARM_GGML_Q6_K };
#define N_X8 (sizeof x8_types / sizeof *x8_types)

static float normal(void)
{
	float u = (rand_blocks_u32() + 0.5f) / 4294967296.0f;
	float v = (rand_blocks_u32() + 0.5f) / 4294967296.0f;
	return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

/* A row of n weights of type t: quantised from normals where parm writes
 * the type, random blocks with sane scales where it only reads it (their
 * scales and minimums then take every 6-bit value). */
static void random_row(void *row, enum parm_ggml_type t, int64_t n)
{
	if (parm_quant_type_quantised(t) && rand_blocks_u32() % 2) {
		float *w = parm_xmalloc((size_t)n * sizeof *w);
		for (int64_t k = 0; k < n; k++)
			w[k] = normal() * 0.1f;
		parm_quant_row(row, w, t, n);
		free(w);
	} else {
		rand_blocks(row, t, n, 0, 0.02f);
	}
}

/* Element i of a vector quantised 256 at a time (q) or 32 (q32). */
static double x_value(const quant_x8 *q, const quant_x8_32 *q32, int64_t i)
{
	return q ? (double)q[i / 256].d * q[i / 256].q[i % 256]
		 : (double)q32[i / 32].d * q32[i / 32].q[i % 32];
}

/* sum |w x| of a row and a quantised vector: the scale of a dot's
 * rounding, whatever cancels in it. */
static double magnitude(const void *row, enum parm_ggml_type t, const quant_x8 *q,
			const quant_x8_32 *q32, int64_t n)
{
	float *w = parm_xmalloc((size_t)n * sizeof *w);
	double mag = 0;
	parm_dequant_row_ref(w, row, t, n);
	for (int64_t i = 0; i < n; i++)
		mag += fabs(w[i] * x_value(q, q32, i));
	free(w);
	return mag > 0 ? mag : 1;
}

static void test_quantiser(void)
{
	enum { N = 256 * 5 };
	static float x[N];
	static quant_x8 q[N / 256];
	for (int i = 0; i < N; i++)
		x[i] = normal() * (i < 256 * 2 ? 1 : 1e-30f);   /* tiny blocks too */
	for (int i = 512; i < 768; i++)
		x[i] = 0;
	for (int i = 768; i < 1024; i++)                /* d 1: ties round to even */
		x[i] = 0;
	x[768] = 127, x[769] = 2.5f, x[770] = 3.5f, x[771] = -2.5f, x[772] = -127;
	parm_quant_x8_row(q, x, N);
	int worst_ok = 1, sums_ok = 1, range_ok = 1;
	for (int b = 0; b < N / 256; b++)
		for (int k = 0; k < 16; k++) {
			int s = 0;
			for (int l = 16 * k; l < 16 * k + 16; l++) {
				double e = fabs(x[256 * b + l] - x_value(q, NULL, 256 * b + l));
				worst_ok &= e <= 0.5000001 * q[b].d;
				range_ok &= q[b].q[l] != -128;
				s += q[b].q[l];
			}
			sums_ok &= q[b].bsum[k] == s;
		}
	ok(worst_ok, "parm_quant_x8_row: every x within half a step d/2 of d q");
	ok(range_ok && sums_ok, "parm_quant_x8_row: q in -127..127, bsum the sums of 16");
	ok(q[2].d == 0 && q[2].q[0] == 0 && q[2].bsum[0] == 0, "parm_quant_x8_row: a block of zeros is d 0, q 0");
	ok(q[3].d == 1 && q[3].q[0] == 127 && q[3].q[4] == -127 && q[3].q[1] == 2 &&
	   q[3].q[2] == 4 && q[3].q[3] == -2, "parm_quant_x8_row: largest +-127, ties to even");
	x[5] = NAN;
	x[300] = INFINITY;
	parm_quant_x8_row(q, x, 512);
	ok(isnan(q[0].d) && isnan(q[1].d), "parm_quant_x8_row: a NaN or an infinity makes the block's d "
	   "NaN (the dot stays NaN)");
}

/* The reference against the dequantised weights times the dequantised
 * activations, in doubles: relative to sum |w x|. */
static void test_ref(enum parm_ggml_type t)
{
	enum { N = 256 * 3 };
	static float x[N], w[N], y;
	static quant_x8 q[N / 256];
	static uint8_t row[N * 2];
	double worst = 0;
	for (int rep = 0; rep < 40; rep++) {
		random_row(row, t, N);
		for (int i = 0; i < N; i++)
			x[i] = normal();
		parm_quant_x8_row(q, x, N);
		parm_dequant_row_ref(w, row, t, N);
		double want = 0;
		for (int i = 0; i < N; i++)
			want += w[i] * x_value(q, NULL, i);
		parm_quant_dot_x8_ref(&y, 1, row, t, q, 1, N);
		double e = fabs(y - want) / magnitude(row, t, q, NULL, N);
		worst = e > worst || e != e ? e : worst;
	}
	ok(worst < 1e-6, "%s: parm_quant_dot_x8_ref = parm_dequant_row_ref . dequantised x (rel err %.2g)",
	   parm_ggml_type_name(t), worst);
}

/* One path against the reference: 1..17 vectors (groups of 4 and 8 and
 * their remainders), 3 rows rb apart, 1 and 5 super-blocks. */
static void test_path(quant_dot_x8_fn *dot, const char *path, enum parm_ggml_type t)
{
	enum { MAXX = 17, MAXN = 256 * 5, ROWS = 3 };
	static float x[MAXX * MAXN], y[MAXX * ROWS], yr[MAXX * ROWS];
	static quant_x8 q[MAXX * MAXN / 256];
	static uint8_t rows[ROWS][MAXN];
	double worst = 0;
	for (int nx = 1; nx <= MAXX; nx++)
		for (int k = 0; k < 2; k++) {
			int64_t n = 256 * (k ? 5 : 1);
			for (int r = 0; r < ROWS; r++)
				random_row(rows[r], t, n);
			for (int64_t i = 0; i < nx * n; i++)
				x[i] = normal();
			parm_quant_x8_row(q, x, nx * n);
			dot(y, ROWS, rows, sizeof rows[0], ROWS, t, q, nx, n);
			for (int r = 0; r < ROWS; r++)
				parm_quant_dot_x8_ref(yr + r, ROWS, rows[r], t, q, nx, n);
			for (int i = 0; i < nx * ROWS; i++) {
				double e = fabs((double)y[i] - yr[i]) /
					   magnitude(rows[i % ROWS], t, q + i / ROWS * (n / 256), NULL, n);
				worst = e > worst || e != e ? e : worst;
			}
		}
	ok(worst < 1e-6, "%s: quant_dot_x8 (%s) = ref, 1..17 vectors x 3 rows (rel err %.2g)",
	   parm_ggml_type_name(t), path, worst);
}

static void test_paths(void)
{
#if defined(__x86_64__) || defined(__i386__)
	struct { enum parm_simd s; quant_dot_x8_fn *dot; } paths[] = {
		{ PARM_SIMD_AVX2, parm_quant_dot_x8_avx2 },
		{ PARM_SIMD_AVX512, parm_quant_dot_x8_avx512 },
	};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		const char *name = parm_simd_name(paths[i].s);
		for (size_t k = 0; k < N_X8; k++) {
			if (paths[i].s <= parm_simd_best())
				test_path(paths[i].dot, name, x8_types[k]);
			else
				skip("the CPU has no such instructions", "quant_dot_x8 %s on the %s path",
				     parm_ggml_type_name(x8_types[k]), name);
		}
	}
#else
	skip("not an x86 CPU: the plain loops are the only path", "quant_dot_x8's vector paths");
#endif
}

static void test_quantiser_32(void)
{
	enum { N = 32 * 4 };
	static float x[N];
	static quant_x8_32 q[N / 32];
	int close = 1, sums = 1;
	for (int i = 0; i < N; i++)
		x[i] = normal() * (i < 64 ? 1 : 1e-3f);
	for (int i = 64; i < 96; i++)
		x[i] = 0;
	parm_quant_x8_32_row(q, x, N);
	for (int b = 0; b < N / 32; b++) {
		int s = 0;
		double amax = 0;
		for (int l = 0; l < 32; l++)
			amax = fmax(amax, fabs(x[32 * b + l]));
		for (int l = 0; l < 32; l++) {
			/* the step is max|x| / 127; d is that rounded to f16 */
			close &= fabs(x[32 * b + l] - (double)q[b].d * q[b].q[l]) <=
				 0.5000001 * amax / 127 + 127 * fabs(q[b].d - amax / 127);
			s += q[b].q[l];
		}
		sums &= q[b].sum == s && q[b].d == parm_f16_to_f32(parm_f32_to_f16(q[b].d));
	}
	ok(close && sums && q[2].d == 0 && q[2].sum == 0, "parm_quant_x8_32_row: d an f16, every x "
	   "near d q, sum their sum, a block of zeros d 0");
	x[3] = INFINITY;
	parm_quant_x8_32_row(q, x, 32);
	ok(isnan(q[0].d), "parm_quant_x8_32_row: an infinity makes the block's d NaN");
}

/* Q4_0 and Q8_0 rows packed by eight, on AVX-512 with and without VNNI,
 * against the reference on the rows as stored: 8, 16 and 24 rows, 1..9
 * vectors, 1 and 9 blocks; the reference against the dequantiser. */
static void test_packed(enum parm_ggml_type t)
{
	enum { MAXX = 9, MAXN = 32 * 9, MAXR = 24 };
	static float x[MAXX * MAXN], wf[MAXN], y[MAXX * MAXR], yr[MAXX * MAXR];
	static quant_x8_32 q[MAXX * MAXN / 32];
	static uint8_t w[MAXR * MAXN * 2];
	double worst = 0;
	for (int rep = 0; rep < 20; rep++) {
		random_row(w, t, MAXN);
		for (int i = 0; i < MAXN; i++)
			x[i] = normal();
		parm_quant_x8_32_row(q, x, MAXN);
		parm_dequant_row_ref(wf, w, t, MAXN);
		double want = 0;
		for (int i = 0; i < MAXN; i++)
			want += wf[i] * x_value(NULL, q, i);
		parm_quant_dot_x8_32_ref(y, 1, w, t, q, 1, MAXN);
		double e = fabs(y[0] - want) / magnitude(w, t, NULL, q, MAXN);
		worst = e > worst || e != e ? e : worst;
	}
	ok(worst < 1e-6, "%s: parm_quant_dot_x8_32_ref = parm_dequant_row_ref . dequantised x (rel err %.2g)",
	   parm_ggml_type_name(t), worst);
#if defined(__x86_64__) || defined(__i386__)
	static const char *name[] = { "avx512", "avx512 vnni" };
	quant_dot_x8_packed_fn *dots[] = { parm_quant_dot_x8_packed_avx512, parm_quant_dot_x8_packed_vnni };
	const int has[] = { parm_simd_best() >= PARM_SIMD_AVX512,
			    parm_simd_best() >= PARM_SIMD_AVX512 && __builtin_cpu_supports("avx512vnni") };
	for (int v = 0; v < 2; v++) {
		if (!has[v]) {
			skip("the CPU has no such instructions", "%s packed by eight on %s",
			     parm_ggml_type_name(t), name[v]);
			continue;
		}
		worst = 0;
		for (int rows = 8; rows <= MAXR; rows += 8)
			for (int nx = 1; nx <= MAXX; nx++)
				for (int64_t n = 32; n <= MAXN; n += 256) {
					size_t rb = parm_ggml_row_bytes(t, n);
					for (int r = 0; r < rows; r++)
						random_row(w + r * rb, t, n);
					for (int64_t i = 0; i < nx * n; i++)
						x[i] = normal();
					parm_quant_x8_32_row(q, x, nx * n);
					void *packed = parm_quant_pack(w, t, rows, n);
					dots[v](y, rows, packed, t, rows, q, nx, n);
					free(packed);
					for (int r = 0; r < rows; r++)
						parm_quant_dot_x8_32_ref(yr + r, rows, w + r * rb, t, q, nx, n);
					for (int i = 0; i < nx * rows; i++) {
						double e = fabs((double)y[i] - yr[i]) /
							   magnitude(w + (i % rows) * rb, t, NULL,
								     q + i / rows * (n / 32), n);
						worst = e > worst || e != e ? e : worst;
					}
				}
		ok(worst < 1e-6, "%s packed by eight (%s) = ref on the rows as stored, 8..24 rows x "
		   "1..9 vectors (rel err %.2g)", parm_ggml_type_name(t), name[v], worst);
	}
#else
	skip("not an x86 CPU", "%s packed by eight", parm_ggml_type_name(t));
#endif
}

/* Inference's matmul on a packed copy (AVX-512) against the reference,
 * few and many tokens; training's, in floats, differs. */
static void test_matmul_packed(enum parm_ggml_type t)
{
	enum { IN = 96, OUT = 40, MAXN = 30 };
	size_t rb = parm_ggml_row_bytes(t, IN);
	static uint8_t w[OUT * IN * 2];
	static float x[MAXN * IN], y[MAXN * OUT], yf[MAXN * OUT];
	static quant_x8_32 q[MAXN * IN / 32];
	if (!parm_quant_pack_ok(t, OUT, IN)) {
		skip("packing is on the avx512 path only", "inference's matmul of packed %s (%s path)",
		     parm_ggml_type_name(t), parm_simd_name(parm_simd()));
		return;
	}
	for (int r = 0; r < OUT; r++)
		random_row(w + r * rb, t, IN);
	void *packed = parm_quant_pack(w, t, OUT, IN);
	const int ns[] = { 1, 5, MAXN };
	for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
		int n = ns[k], moved = 0;
		double worst = 0;
		for (int i = 0; i < n * IN; i++)
			x[i] = normal();
		matmul_job job = { y, x, w, t, IN, OUT, 1, packed };
		parm_matmul_many_forward(&job, 1, n);
		parm_matmul_forward(yf, x, w, t, n, IN, OUT);
		parm_quant_x8_32_row(q, x, (int64_t)n * IN);
		for (int i = 0; i < n; i++)
			for (int r = 0; r < OUT; r++) {
				float want;
				parm_quant_dot_x8_32_ref(&want, 1, w + r * rb, t, q + i * IN / 32, 1, IN);
				double e = fabs((double)y[i * OUT + r] - want) /
					   magnitude(w + r * rb, t, NULL, q + i * IN / 32, IN);
				worst = e > worst || e != e ? e : worst;
				moved += yf[i * OUT + r] != y[i * OUT + r];
			}
		ok(worst < 1e-6 && moved > 0, "%s: inference's matmul of %d tokens on the packed copy "
		   "= parm_quant_dot_x8_32_ref (rel err %.2g); training's, in floats, differs (%d of %d)",
		   parm_ggml_type_name(t), n, worst, moved, n * OUT);
	}
	free(packed);
}

/* Inference's matmul (x8 set) quantises x once and runs the integer dot
 * on the path PARM_SIMD chose, for a decode's few tokens and a prompt's
 * many (spans of them against every row; but the avx512 path's prompts
 * take float panels); training's (x8 clear) stays in floats. */
static void test_matmul(enum parm_ggml_type t)
{
	enum { IN = 512, OUT = 37, MAXN = 100 };
	size_t rb = parm_ggml_row_bytes(t, IN);
	uint8_t *w = parm_xmalloc(rb * OUT);
	static float x[MAXN * IN], y[MAXN * OUT], yr[MAXN * OUT], yf[MAXN * OUT];
	static quant_x8 q[MAXN * IN / 256];
	for (int r = 0; r < OUT; r++)
		random_row(w + r * rb, t, IN);
	const int ns[] = { 1, 3, 8, 20, MAXN };
	for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
		int n = ns[k], moved = 0;
		for (int i = 0; i < n * IN; i++)
			x[i] = normal();
		matmul_job job = { y, x, w, t, IN, OUT, 1, NULL };
		parm_matmul_many_forward(&job, 1, n);
		parm_matmul_forward(yf, x, w, t, n, IN, OUT);
		for (int i = 0; i < n * OUT; i++)
			moved += yf[i] != y[i];
		parm_quant_x8_row(q, x, (int64_t)n * IN);
		double worst = 0;
		for (int i = 0; i < n; i++)
			for (int r = 0; r < OUT; r++) {
				parm_quant_dot_x8_ref(&yr[i * OUT + r], 1, w + r * rb, t, q + i * IN / 256, 1, IN);
				double e = fabs((double)y[i * OUT + r] - yr[i * OUT + r]) /
					   magnitude(w + r * rb, t, q + i * IN / 256, NULL, IN);
				worst = e > worst || e != e ? e : worst;
			}
		if (n > 8 && parm_simd() >= PARM_SIMD_AVX512)  /* past kernels.c's SMALL_N */
			ok(moved == 0, "%s: inference's matmul of %d tokens on the avx512 path = "
			   "training's (float panels, faster there; %d of %d differ)", parm_ggml_type_name(t),
			   n, moved, n * OUT);
		else
			ok(worst < 1e-6 && moved > 0, "%s: inference's matmul of %d tokens = "
			   "parm_quant_dot_x8_ref (rel err %.2g); training's, in floats, differs (%d of %d)",
			   parm_ggml_type_name(t), n, worst, moved, n * OUT);
	}
	free(w);
}

int main(void)
{
	(void)fixtures_dir;
	test_quantiser();
	for (size_t k = 0; k < N_X8; k++)
		test_ref(x8_types[k]);
	test_paths();
	test_quantiser_32();
	test_packed(PARM_GGML_Q4_0);
	test_packed(PARM_GGML_Q8_0);
	test_matmul_packed(PARM_GGML_Q4_0);
	test_matmul_packed(PARM_GGML_Q8_0);
	for (size_t k = 0; k < N_X8; k++)
		test_matmul(x8_types[k]);
	ok(!parm_quant_dot_x8_ok(PARM_GGML_F32, 256) && !parm_quant_dot_x8_ok(PARM_GGML_Q4_0, 256) &&
	   !parm_quant_dot_x8_ok(PARM_GGML_Q4_K, 128) && parm_quant_dot_x8_ok(PARM_GGML_Q4_K, 256) &&
	   parm_quant_dot_x8_ok(PARM_GGML_Q5_K, 512) && parm_quant_dot_x8_ok(PARM_GGML_Q6_K, 768) &&
	   !parm_quant_dot_x8_ok(PARM_GGML_Q3_K, 256), "parm_quant_dot_x8_ok: q4_K, q5_K, q6_K, whole super-blocks only");
	ok(!parm_quant_pack_ok(PARM_GGML_Q4_0, 12, 64) && !parm_quant_pack_ok(PARM_GGML_Q4_K, 8, 256) &&
	   parm_quant_pack_ok(PARM_GGML_Q4_0, 16, 64) == (parm_simd() == PARM_SIMD_AVX512) &&
	   parm_quant_pack_ok(PARM_GGML_Q8_0, 8, 32) == (parm_simd() == PARM_SIMD_AVX512),
	   "parm_quant_pack_ok: q4_0 and q8_0 in groups of 8 rows, on the avx512 path only");
	return tap_done();
}
