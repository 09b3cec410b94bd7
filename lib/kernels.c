/* kernels.c - forward kernels of the llama transformer, and the small
 * thread pool they run on.  Legend in kernels.h.  The hand-vectorised
 * kernels are in kernels_internal.h, built with and without FMA; the
 * SIMD path parm_simd() chose picks one (simd.h). */
#include "kernels.h"
#include "kernels_internal.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant_dot.h"
#include "simd.h"
#include <parm/util.h>

/* ---- the vector kernels of the chosen SIMD path ---- */

static const kernels_vec *vec_path;
static pthread_once_t vec_once = PTHREAD_ONCE_INIT;

static void choose_vec(void)
{
	vec_path = &parm_kernels_vec_plain;
#if defined(__x86_64__) || defined(__i386__)
	if (parm_simd() >= PARM_SIMD_AVX2)
		vec_path = &parm_kernels_vec_fma;
#endif
}

static const kernels_vec *vec(void)
{
	pthread_once(&vec_once, choose_vec);
	return vec_path;
}

/* ---- the pool: the caller plus n-1 workers run one function together ----
 * A decode step runs some sixty short parallel passes, and waking a
 * sleeping thread (a futex, dearer still under a hypervisor) can cost as
 * much as a pass: so the workers spin up to POOL_SPIN_US for the next
 * pass and the caller for the last worker, and sleep on the condition
 * variables only past that.  Not with more threads than processors:
 * there a spinning thread holds the processor the one it waits for needs.
 * gen, pending and the sleeper flags are atomics (sequentially
 * consistent): a waker sees a sleeper's flag or the sleeper sees the
 * waker's change, never neither, so no wake-up is lost. */

typedef void pool_fn(void *arg, int worker, int n_workers);

enum { POOL_SPIN_US = 200 };

static struct {
	int n;                          /* threads, the caller included */
	pthread_t *tid;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	pool_fn *fn;
	void *arg;
	atomic_ulong gen;               /* one more per pass */
	unsigned long start_gen;        /* gen when the workers began */
	atomic_int pending;             /* workers still in the pass */
	atomic_int sleepers;            /* workers asleep (or going) on go */
	atomic_int caller_asleep;       /* the caller asleep (or going) on done */
	atomic_int quit;
	double spin;                    /* seconds to spin before sleeping */
	float **scratch;                /* one buffer per thread */
	size_t *scratch_n;
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
	   .done = PTHREAD_COND_INITIALIZER };

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Spin until done(arg) or POOL_SPIN_US pass; 1 when done. */
static int spin_until(int (*done)(unsigned long), unsigned long arg)
{
	if (pool.spin <= 0)
		return done(arg);
	double until = parm_now() + pool.spin;
	for (int i = 1;; i++) {
		if (done(arg))
			return 1;
		if (i % 64 == 0 && parm_now() > until)
			return 0;
		cpu_relax();
	}
}

static int gen_moved(unsigned long seen)
{
	return atomic_load(&pool.gen) != seen || atomic_load(&pool.quit);
}

static int pass_done(unsigned long unused)
{
	(void)unused;
	return atomic_load(&pool.pending) == 0;
}

static void *pool_worker(void *p)
{
	int id = (int)(intptr_t)p;
	unsigned long seen = pool.start_gen;    /* not 0: a restarted pool must not rerun old work */
	for (;;) {
		if (!spin_until(gen_moved, seen)) {
			pthread_mutex_lock(&pool.mu);
			atomic_fetch_add(&pool.sleepers, 1);
			while (!gen_moved(seen))
				pthread_cond_wait(&pool.go, &pool.mu);
			atomic_fetch_sub(&pool.sleepers, 1);
			pthread_mutex_unlock(&pool.mu);
		}
		if (atomic_load(&pool.quit))
			break;
		seen = atomic_load(&pool.gen);
		pool.fn(pool.arg, id, pool.n);
		if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_asleep)) {
			pthread_mutex_lock(&pool.mu);
			pthread_cond_signal(&pool.done);
			pthread_mutex_unlock(&pool.mu);
		}
	}
	return NULL;
}

static void pool_stop(void)
{
	pthread_mutex_lock(&pool.mu);
	atomic_store(&pool.quit, 1);
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	for (int i = 1; i < pool.n; i++)
		pthread_join(pool.tid[i], NULL);
	for (int i = 0; i < pool.n; i++)
		free(pool.scratch[i]);
	free(pool.tid);
	free(pool.scratch);
	free(pool.scratch_n);
	pool.n = 0;
	atomic_store(&pool.quit, 0);
}

void parm_kernels_set_threads(int n)
{
	if (n < 1)
		n = 1;
	if (n > 256)
		n = 256;
	if (pool.n == n)
		return;
	if (pool.n)
		pool_stop();
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	pool.n = n;
	pool.spin = n <= cpus ? POOL_SPIN_US * 1e-6 : 0;
	pool.start_gen = atomic_load(&pool.gen);
	pool.tid = parm_xcalloc(n, sizeof *pool.tid);
	pool.scratch = parm_xcalloc(n, sizeof *pool.scratch);
	pool.scratch_n = parm_xcalloc(n, sizeof *pool.scratch_n);
	for (int i = 1; i < n; i++)
		if (pthread_create(&pool.tid[i], NULL, pool_worker, (void *)(intptr_t)i))
			parm_die("cannot start a kernel thread");
}

int parm_kernels_threads(void)
{
	if (!pool.n) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		parm_kernels_set_threads(cpus > 0 ? (int)cpus : 1);
	}
	return pool.n;
}

/* A thread's own scratch of at least n floats (only it touches it). */
static float *pool_scratch(int worker, size_t n)
{
	if (pool.scratch_n[worker] < n) {
		free(pool.scratch[worker]);
		pool.scratch[worker] = parm_xmalloc(n * sizeof(float));
		pool.scratch_n[worker] = n;
	}
	return pool.scratch[worker];
}

/* OpenBLAS (the pthreads build) stays on one thread while ours run. */
static void pool_run(pool_fn *fn, void *arg)
{
	int nt = parm_kernels_threads();
	int blas_threads = openblas_get_num_threads();
	if (blas_threads != 1)
		openblas_set_num_threads(1);
	if (nt > 1) {
		pool.fn = fn;
		pool.arg = arg;
		atomic_store(&pool.pending, nt - 1);
		atomic_fetch_add(&pool.gen, 1);         /* publishes fn and arg */
		if (atomic_load(&pool.sleepers)) {
			pthread_mutex_lock(&pool.mu);
			pthread_cond_broadcast(&pool.go);
			pthread_mutex_unlock(&pool.mu);
		}
	}
	fn(arg, 0, nt);
	if (nt > 1 && !spin_until(pass_done, 0)) {
		pthread_mutex_lock(&pool.mu);
		atomic_store(&pool.caller_asleep, 1);
		while (atomic_load(&pool.pending))
			pthread_cond_wait(&pool.done, &pool.mu);
		atomic_store(&pool.caller_asleep, 0);
		pthread_mutex_unlock(&pool.mu);
	}
	if (blas_threads != 1)
		openblas_set_num_threads(blas_threads);
}

/* ---- sgemm on the pool, over blocks of C of a fixed size ----
 * OpenBLAS's own threads split C by their number, and its kernels for the
 * ragged edges add in another order, so its results change in the last
 * bits with the thread count.  Blocks of a size that does not depend on
 * the threads, each one single-threaded sgemm, make every element of C a
 * function of the inputs alone: the same bits on any number of threads,
 * whichever thread takes which block.  A block repacks its share of A and
 * B: blocks of 256 tokens (not 32) made a 128-token prompt 1.2 times as
 * fast (f32, 134M), the weights packed once instead of four times. */
enum { GEMM_BLOCK_M = 256, GEMM_BLOCK_N = 128 };

typedef struct {
	enum CBLAS_TRANSPOSE ta, tb;
	int m, n, k, lda, ldb, ldc;
	float alpha, beta;
	const float *a, *b;
	float *c;
} gemm_args;

static int gemm_blocks_n(const gemm_args *g)
{
	return (g->n + GEMM_BLOCK_N - 1) / GEMM_BLOCK_N;
}

static int gemm_blocks(const gemm_args *g)
{
	return (g->m + GEMM_BLOCK_M - 1) / GEMM_BLOCK_M * gemm_blocks_n(g);
}

/* Block number b of C (row-major order of blocks): C[i0..][j0..], bm x bn. */
typedef struct { int i0, j0, bm, bn; } gemm_span;

static gemm_span gemm_block_span(const gemm_args *g, int block)
{
	gemm_span s = { block / gemm_blocks_n(g) * GEMM_BLOCK_M,
			block % gemm_blocks_n(g) * GEMM_BLOCK_N, 0, 0 };
	s.bm = g->m - s.i0 < GEMM_BLOCK_M ? g->m - s.i0 : GEMM_BLOCK_M;
	s.bn = g->n - s.j0 < GEMM_BLOCK_N ? g->n - s.j0 : GEMM_BLOCK_N;
	return s;
}

static void gemm_block(const gemm_args *g, int block)
{
	gemm_span sp = gemm_block_span(g, block);
	int i0 = sp.i0, j0 = sp.j0, bm = sp.bm, bn = sp.bn;
	const float *a = g->a + (g->ta == CblasNoTrans ? (size_t)i0 * g->lda : (size_t)i0);
	const float *b = g->b + (g->tb == CblasNoTrans ? (size_t)j0 : (size_t)j0 * g->ldb);
	cblas_sgemm(CblasRowMajor, g->ta, g->tb, bm, bn, g->k, g->alpha, a, g->lda, b, g->ldb,
		    g->beta, g->c + (size_t)i0 * g->ldc + j0, g->ldc);
}

static int panels_on(void);
static float *pool_scratch(int worker, size_t n);

#if defined(__x86_64__) || defined(__i386__)
/* Block b of C through our panels (alpha 1, beta 0 or 1), k in chunks of
 * GEMM_BLOCK_K so a chunk's panels stay in L2: op(B)'s columns 32 at a
 * time into panels (transposed from B's rows when tb is Trans), op(A)
 * read in place, its tokens as rows or (ta Trans) as columns.  Each element
 * of C sums its chunks in order on one thread: the same bits on any
 * number of threads. */
enum { GEMM_BLOCK_K = 512 };

static void gemm_block_panels(const gemm_args *g, int block, int worker)
{
	gemm_span sp = gemm_block_span(g, block);
	int i0 = sp.i0, j0 = sp.j0, bm = sp.bm, bn = sp.bn;
	int panels = (bn + PANEL_ROWS - 1) / PANEL_ROWS;
	float *p = pool_scratch(worker, (size_t)panels * PANEL_ROWS * GEMM_BLOCK_K);
	for (int k0 = 0; k0 < g->k; k0 += GEMM_BLOCK_K) {
		int kc = g->k - k0 < GEMM_BLOCK_K ? g->k - k0 : GEMM_BLOCK_K;
		size_t pn = (size_t)PANEL_ROWS * kc;    /* panel_matmul's layout */
		for (int q = 0; q < panels; q++) {
			int c = j0 + q * PANEL_ROWS, nc = j0 + bn - c;
			nc = nc < PANEL_ROWS ? nc : PANEL_ROWS;
			if (g->tb == CblasTrans)        /* op(B)[k][c] = B[c][k] */
				parm_panel_pack_avx512(p + q * pn, g->b + (size_t)c * g->ldb + k0, g->ldb,
						  nc, kc);
			else
				parm_panel_copy_avx512(p + q * pn, g->b + (size_t)k0 * g->ldb + c, g->ldb,
						  nc, kc);
		}
		int cols = g->ta == CblasTrans;        /* op(A)[i][k] = A[k][i] */
		const float *a = g->a + (cols ? (size_t)k0 * g->lda + i0 : (size_t)i0 * g->lda + k0);
		parm_panel_matmul_avx512(&(panel_args){ .y = g->c + (size_t)i0 * g->ldc + j0,
						   .ys = g->ldc, .x = a, .xs = g->lda, .x_cols = cols,
						   .panels = p, .n = bm, .rows = bn, .words = kc,
						   .accumulate = k0 > 0 || g->beta != 0 });
	}
}
#endif

/* Ours where they serve (the AVX-512 path: OpenBLAS's Haswell kernels,
 * which this machine's environment pins, run at half its rate), else
 * OpenBLAS's. */
static void gemm_block_any(const gemm_args *g, int block, int worker)
{
#if defined(__x86_64__) || defined(__i386__)
	if (panels_on() && g->alpha == 1.0f && (g->beta == 0.0f || g->beta == 1.0f)) {
		gemm_block_panels(g, block, worker);
		return;
	}
#endif
	gemm_block(g, block);
}

typedef struct {
	const gemm_args *g;
	atomic_int next;
} gemm_work;

static void gemm_worker(void *arg, int worker, int n_workers)
{
	gemm_work *w = arg;
	int b, total = gemm_blocks(w->g);
	while ((b = atomic_fetch_add(&w->next, 1)) < total)
		gemm_block_any(w->g, b, worker);
}

/* C[m][n] = alpha op(A) op(B) + beta C, row-major, on the pool. */
static void gemm_pool(const gemm_args *g)
{
	gemm_work w = { .g = g };
	if (g->m <= 0 || g->n <= 0)
		return;
	atomic_init(&w.next, 0);
	pool_run(gemm_worker, &w);
}

/* ---- matmul ---- */

/* Rows per tile: a dequantised tile of about 512 KB stays in L2 (1 MB
 * and more on current CPUs); twice the tile of 256 KB cut the prompt's
 * time by a tenth (q4_0, 134M, 128 tokens), x packed half as often. */
enum { TILE_FLOATS = 128 * 1024 };

/* Few tokens (decode): our own dot products, 4 rows x 2 tokens at a time
 * with 8-wide vectors; it streams W once at memory speed whatever kernels
 * OpenBLAS picked for this CPU (on the AVX-512 path, 2..8 tokens take two
 * rows against them all, 16 wide).  Many tokens: sgemm, or on the AVX-512
 * path our panels (panel_avx512.c). */
enum { SMALL_N = 8, ROWS_MIN_N = 2 };

static int panels_on(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return parm_simd() >= PARM_SIMD_AVX512;
#else
	return 0;
#endif
}

/* The form a job's x takes for its dot products: floats, or rounded once
 * a pass for the weights' own dot, as llama.cpp does: 8 bits per 256 for
 * the K types (its q8_K; decoding only, on the avx512 path), per 32 for
 * packed q4_0 and q8_0 (its q8_0), bf16 for a prompt on bf16 weights where
 * the CPU has the bf16 dot.  Inference only
 * (matmul_job.x8), unless parm_kernels_set_int8 turned it off. */
enum x_form { X_FLOAT, X_Q8_K, X_Q8_0, X_BF16 };

static enum x_form job_x_form(const matmul_job *j, int n)
{
	if (!parm_kernels_int8() || !j->x8)
		return X_FLOAT;
	if (j->packed)
		return X_Q8_0;
	/* a prompt's float panels outrun the K types' integer dots (x8 by
	 * columns of one row): Q4_K_M pp512 904 -> 1326 tok/s */
	if (parm_quant_dot_x8_ok(j->t, j->in) && !(n > SMALL_N && panels_on()))
		return X_Q8_K;
	if (j->t == PARM_GGML_BF16 && j->in % 2 == 0 && n >= ROWS_MIN_N && panels_on() && parm_simd_bf16())
		return X_BF16;
	return X_FLOAT;
}

/* A prompt's matmul on the AVX-512 path, but for the integer dots. */
static int job_is_panels(const matmul_job *j, int n)
{
	enum x_form f = job_x_form(j, n);
	return n > SMALL_N && panels_on() && (f == X_FLOAT || f == X_BF16);
}

/* A few tokens on f32, f16 or bf16 weights on the AVX-512 path: W's rows
 * read in place against up to 8 tokens (ROWS_*: the kind of rows), but
 * for a lone token, which dot_rows and the fused dots stream faster. */
static int job_rows_kind(const matmul_job *j, int n)
{
	if (n < ROWS_MIN_N || n > SMALL_N || !panels_on())
		return -1;
	switch (j->t) {
	case PARM_GGML_F32: return 0;
	case PARM_GGML_F16: return 1;
	case PARM_GGML_BF16: return job_x_form(j, n) == X_BF16 ? 2 : -1;
	default: return -1;
	}
}

/* Rows of a tile of W with rows of in: a multiple of unit. */
static int rows_per_tile(int in, int unit)
{
	int rows = TILE_FLOATS / in;
	return rows < unit ? unit : rows > 256 ? 256 : rows - rows % unit;
}

/* A job's: a multiple of 8 (packed columns), of 32 for panels. */
static int tile_rows(const matmul_job *j, int n)
{
	return rows_per_tile(j->in, job_is_panels(j, n) ? PANEL_ROWS : 8);
}

static int job_tiles(const matmul_job *j, int n)
{
	int rows = tile_rows(j, n);
	return (j->out + rows - 1) / rows;
}

#if defined(__x86_64__) || defined(__i386__)
/* y[:, r0:r0+rows] = x W[r0:r0+rows]^T through panels: each 32 rows
 * transposed into the worker's scratch (dequantised first unless f32, or
 * bf16 with x in bf16: xb), then every token against them. */
static void matmul_tile_panels(const matmul_job *j, const void *xb, int n, int r0, int rows,
			       int worker)
{
	size_t rb = parm_ggml_row_bytes(j->t, j->in);
	int words = xb ? j->in / 2 : j->in, as_is = xb || j->t == PARM_GGML_F32;
	int panels = (rows + PANEL_ROWS - 1) / PANEL_ROWS;
	size_t pn = (size_t)PANEL_ROWS * words;
	float *p = pool_scratch(worker, (panels + !as_is) * pn), *rowbuf = p + panels * pn;
	for (int q = 0; q < panels; q++) {
		int r = r0 + q * PANEL_ROWS, nr = r0 + rows - r < PANEL_ROWS ? r0 + rows - r : PANEL_ROWS;
		const void *src = (const char *)j->w + (size_t)r * rb;
		if (!as_is) {
			for (int i = 0; i < nr; i++)
				parm_dequant_row(rowbuf + (size_t)i * j->in,
					    (const char *)j->w + (size_t)(r + i) * rb, j->t, j->in);
			src = rowbuf;
		}
		parm_panel_pack_avx512(p + q * pn, src, words, nr, words);
	}
	parm_panel_matmul_avx512(&(panel_args){ .y = j->y + r0, .ys = j->out,
					   .x = xb ? xb : (const void *)j->x, .xs = words,
					   .panels = p, .n = n, .rows = rows, .words = words,
					   .bf16 = xb != NULL });
}
#endif

/* y[:, r0:r0+rows] = x W[r0:r0+rows]^T, W dequantised into scratch first
 * unless it is f32 already. */
static void matmul_tile(const matmul_job *j, const void *xq, int n, int r0, int rows,
			int worker)
{
	const float *wt;
	size_t rb = parm_ggml_row_bytes(j->t, j->in);
	if (xq && j->packed) {  /* r0 and rows multiples of 8, as tiles are */
		parm_quant_dot_x8_packed(j->y + r0, j->out, (const char *)j->packed + (size_t)r0 * rb, j->t,
				    rows, xq, n, j->in);
		return;
	}
#if defined(__x86_64__) || defined(__i386__)
	if (job_is_panels(j, n)) {
		matmul_tile_panels(j, xq, n, r0, rows, worker);
		return;
	}
	int kind = job_rows_kind(j, n);
	if (kind >= 0) {
		parm_rows_matmul_avx512(j->y + r0, j->out, xq ? xq : (const void *)j->x, n,
				   (const char *)j->w + (size_t)r0 * rb, rb, rows, j->in,
				   (enum rows_kind)kind);
		return;
	}
#endif
	if (xq) {       /* integers: x quantised once for the whole pass */
		parm_quant_dot_x8_rows(j->y + r0, j->out, (const char *)j->w + (size_t)r0 * rb, rb, rows,
				  j->t, xq, n, j->in);
		return;
	}
	if (n <= SMALL_N && parm_quant_dot_fused(j->t, j->in)) {
		/* fused: the blocks are read in place, never written as floats */
		parm_quant_dot_rows(j->y + r0, j->out, (const char *)j->w + (size_t)r0 * rb, rb, rows,
			       j->t, j->x, n, j->in);
		return;
	}
	if (n <= SMALL_N && j->t != PARM_GGML_F32) {
		/* row by row: each dequantised row is used while it is in L1 */
		float *s = pool_scratch(worker, j->in);
		for (int r = 0; r < rows; r++) {
			parm_dequant_row(s, (const char *)j->w + (size_t)(r0 + r) * rb, j->t, j->in);
			vec()->dot_rows(j->y + r0 + r, j->out, j->x, n, s, 1, j->in);
		}
		return;
	}
	if (j->t == PARM_GGML_F32) {
		wt = (const float *)j->w + (size_t)r0 * j->in;
	} else {
		float *s = pool_scratch(worker, (size_t)rows * j->in);
		for (int r = 0; r < rows; r++)
			parm_dequant_row(s + (size_t)r * j->in,
				    (const char *)j->w + (size_t)(r0 + r) * rb, j->t, j->in);
		wt = s;
	}
	if (n <= SMALL_N)
		vec()->dot_rows(j->y + r0, j->out, j->x, n, wt, rows, j->in);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, j->in,
			    1.0f, j->x, j->in, wt, j->in, 0.0f, j->y + r0, j->out);
}

typedef struct {
	const matmul_job *jobs;
	const void **xq;        /* [n_jobs]: job j's x in its form (x_bytes), or NULL */
	int n_jobs, n;
	atomic_int next;
	int total;
} matmul_work;

/* f32 weights and many tokens: one sgemm for the job, in fixed blocks of
 * y (x is packed per block of tokens, not once per tile of W). */
static int job_is_gemm(const matmul_job *j, int n)
{
	return j->t == PARM_GGML_F32 && n > SMALL_N && !panels_on();
}

static gemm_args job_gemm(const matmul_job *j, int n)
{
	return (gemm_args){ .ta = CblasNoTrans, .tb = CblasTrans, .m = n, .n = j->out,
			    .k = j->in, .alpha = 1.0f, .a = j->x, .lda = j->in, .b = j->w,
			    .ldb = j->in, .beta = 0.0f, .c = j->y, .ldc = j->out };
}

static int job_items(const matmul_job *j, int n)
{
	if (job_is_gemm(j, n)) {
		gemm_args g = job_gemm(j, n);
		return gemm_blocks(&g);
	}
	return job_tiles(j, n);
}

static void matmul_item(const matmul_job *job, const void *xq, int n, int t, int worker)
{
	if (job_is_gemm(job, n)) {
		gemm_args g = job_gemm(job, n);
		gemm_block_any(&g, t, worker);
		return;
	}
	int rows = tile_rows(job, n), r0 = t * rows;
	if (r0 + rows > job->out)
		rows = job->out - r0;
	matmul_tile(job, xq, n, r0, rows, worker);
}

static void matmul_worker(void *arg, int worker, int n_workers)
{
	matmul_work *mw = arg;
	int t;
	while ((t = atomic_fetch_add(&mw->next, 1)) < mw->total) {
		int j = 0, nt;
		while (t >= (nt = job_items(&mw->jobs[j], mw->n))) {
			t -= nt;
			j++;
		}
		matmul_item(&mw->jobs[j], mw->xq[j], mw->n, t, worker);
	}
}

static int int8_on = -1;        /* -1: PARM_INT8 not read yet */

void parm_kernels_set_int8(int on)
{
	int8_on = on != 0;
}

/* Read on the caller's thread before a pass, never by the workers. */
int parm_kernels_int8(void)
{
	if (int8_on < 0) {
		const char *e = getenv("PARM_INT8");
		int8_on = !(e && !strcmp(e, "0"));
	}
	return int8_on;
}

/* Bytes of one token's x in form f, rows of in. */
static size_t x_bytes(enum x_form f, int in)
{
	return f == X_Q8_0 ? (size_t)(in / 32) * sizeof(quant_x8_32)
	     : f == X_Q8_K ? (size_t)(in / 256) * sizeof(quant_x8)
	     : f == X_BF16 ? (size_t)in * sizeof(uint16_t) : 0;
}

/* The jobs' inputs in the forms their dots take, each distinct x in each
 * form once (q, k and v share theirs); NULL for floats.  Returns the
 * buffer to free. */
static char *quantise_inputs(const void **xq, const matmul_job *jobs, int n_jobs, int n)
{
	size_t bytes = 0;
	for (int j = 0; j < n_jobs; j++)
		bytes += (size_t)n * x_bytes(job_x_form(&jobs[j], n), jobs[j].in);
	char *buf = bytes ? parm_xmalloc(bytes) : NULL, *at = buf;
	for (int j = 0; j < n_jobs; j++) {
		enum x_form f = job_x_form(&jobs[j], n);
		int64_t count = (int64_t)n * jobs[j].in;
		xq[j] = NULL;
		if (f == X_FLOAT)
			continue;
		for (int i = 0; i < j && !xq[j]; i++)
			if (xq[i] && jobs[i].x == jobs[j].x && jobs[i].in == jobs[j].in &&
			    job_x_form(&jobs[i], n) == f)
				xq[j] = xq[i];
		if (xq[j])
			continue;
		if (f == X_Q8_0)
			parm_quant_x8_32_row((quant_x8_32 *)at, jobs[j].x, count);
		else if (f == X_Q8_K)
			parm_quant_x8_row((quant_x8 *)at, jobs[j].x, count);
		else
			parm_quant_row(at, jobs[j].x, PARM_GGML_BF16, count);
		xq[j] = at;
		at += (size_t)n * x_bytes(f, jobs[j].in);
	}
	return buf;
}

void parm_matmul_many_forward(const matmul_job *jobs, int n_jobs, int n)
{
	const void *xq[n_jobs > 0 ? n_jobs : 1];
	matmul_work mw = { .jobs = jobs, .xq = xq, .n_jobs = n_jobs, .n = n };
	if (n <= 0)
		return;
	char *buf = quantise_inputs(xq, jobs, n_jobs, n);
	atomic_init(&mw.next, 0);
	for (int j = 0; j < n_jobs; j++)
		mw.total += job_items(&jobs[j], n);
	pool_run(matmul_worker, &mw);
	free(buf);
}

void parm_matmul_forward(float *y, const float *x, const void *w, enum parm_ggml_type t,
		    int n, int in, int out)
{
	matmul_job job = { y, x, w, t, in, out, 0, NULL };
	parm_matmul_many_forward(&job, 1, n);
}

void parm_matmul_forward_ref(float *y, const float *x, const void *w, enum parm_ggml_type t,
			int n, int in, int out)
{
	float *row = parm_xmalloc((size_t)in * sizeof *row);
	size_t rb = parm_ggml_row_bytes(t, in);
	for (int o = 0; o < out; o++) {
		parm_dequant_row_ref(row, (const char *)w + (size_t)o * rb, t, in);
		for (int i = 0; i < n; i++) {
			double sum = 0;
			for (int k = 0; k < in; k++)
				sum += (double)x[(size_t)i * in + k] * row[k];
			y[(size_t)i * out + o] = (float)sum;
		}
	}
	free(row);
}

void parm_embed_forward(float *out, const void *table, enum parm_ggml_type t,
		   const int *tokens, int n, int d)
{
	size_t rb = parm_ggml_row_bytes(t, d);
	for (int i = 0; i < n; i++)
		parm_dequant_row(out + (size_t)i * d, (const char *)table + (size_t)tokens[i] * rb, t, d);
}

/* ---- rmsnorm ---- */

void parm_rmsnorm_forward(float *out, const float *x, const float *w, int n, int d, float eps)
{
	for (int i = 0; i < n; i++) {
		const float *xi = x + (size_t)i * d;
		float *oi = out + (size_t)i * d;
		float acc[8] = { 0 };
		int k = 0;
		for (; k + 8 <= d; k += 8)
			for (int j = 0; j < 8; j++)
				acc[j] += xi[k + j] * xi[k + j];
		float ss = 0;
		for (int j = 0; j < 8; j++)
			ss += acc[j];
		for (; k < d; k++)
			ss += xi[k] * xi[k];
		float scale = 1.0f / sqrtf(ss / d + eps);
		for (k = 0; k < d; k++)
			oi[k] = xi[k] * scale * w[k];
	}
}

void parm_rmsnorm_forward_ref(float *out, const float *x, const float *w, int n, int d, float eps)
{
	for (int i = 0; i < n; i++) {
		double ss = 0;
		for (int k = 0; k < d; k++)
			ss += (double)x[i * d + k] * x[i * d + k];
		double scale = 1.0 / sqrt(ss / d + eps);
		for (int k = 0; k < d; k++)
			out[i * d + k] = (float)(x[i * d + k] * scale * w[k]);
	}
}

/* ---- rope ---- */

/* The angle of pair k at position p: p base^(-2k/hd), divided by the
 * pair's frequency factor when the model has them (Llama 3.1's
 * rope_freqs, which slows the low frequencies down; Phi-3's LongRoPE). */
static double rope_angle(int p, int k, int hd, const parm_rope *rp)
{
	double theta = p * pow(rp->base, -2.0 * k / hd);
	return rp->factors ? theta / rp->factors[k] : theta;
}

/* Where pair k of a head sits: (2k, 2k+1) or, NEOX, (k, k + hd/2). */
static void rope_pair(int k, int hd, int neox, int *a, int *b)
{
	*a = neox ? k : 2 * k;
	*b = neox ? k + hd / 2 : 2 * k + 1;
}

void parm_rope_forward(float *x, const int *pos, int n, int heads, int hd, const parm_rope *rp)
{
	float cs[512], sn[512];         /* hd/2 angles; heads are <= 1024 wide */
	int half = hd / 2, ia[512], ib[512];
	if (half > 512)
		half = 512;
	for (int k = 0; k < half; k++)
		rope_pair(k, hd, rp->neox, &ia[k], &ib[k]);
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < half; k++) {
			double theta = rope_angle(pos[i], k, hd, rp);
			cs[k] = (float)(cos(theta) * rp->mscale);
			sn[k] = (float)(sin(theta) * rp->mscale);
		}
		for (int h = 0; h < heads; h++) {
			float *v = x + ((size_t)i * heads + h) * hd;
			for (int k = 0; k < half; k++) {
				float a = v[ia[k]], b = v[ib[k]];
				v[ia[k]] = a * cs[k] - b * sn[k];
				v[ib[k]] = a * sn[k] + b * cs[k];
			}
		}
	}
}

void parm_rope_forward_ref(float *x, const int *pos, int n, int heads, int hd, const parm_rope *rp)
{
	for (int i = 0; i < n; i++)
		for (int h = 0; h < heads; h++)
			for (int k = 0; k < hd / 2; k++) {
				float *v = x + ((size_t)i * heads + h) * hd;
				float *a = rp->neox ? v + k : v + 2 * k, *b = rp->neox ? v + k + hd / 2 : v + 2 * k + 1;
				double theta = pos[i] * pow(rp->base, -2.0 * k / hd);
				if (rp->factors)
					theta /= rp->factors[k];
				double x0 = *a, x1 = *b, c = cos(theta) * rp->mscale, s = sin(theta) * rp->mscale;
				*a = (float)(x0 * c - x1 * s);
				*b = (float)(x0 * s + x1 * c);
			}
}

/* ---- attention ----
 * A prompt's consecutive tokens of one sequence go in blocks of up to
 * ATT_BLOCK through two sgemms per head (scores for the block against the
 * cache, then their mix of V), the scores past each token's position
 * zeroed after its softmax; a lone token (decode) takes two sgemvs.  A
 * work item is one block or token and one head, so the sums are the same
 * whatever the thread count. */

enum { ATT_BLOCK = 32 };

typedef struct {
	float *out;
	const float *q;
	const float *const *kc, *const *vc;
	const int *pos;
	int n, heads, kv_heads, hd, max_pos;
	int *run_start, *run_len, n_runs;       /* the blocks and lone tokens */
	atomic_int next;
} attention_work;

/* One (token, head): scores over the cache, softmax, weighted sum of V. */
static void attention_head(attention_work *aw, int i, int h, float *scores)
{
	int hd = aw->hd, kvd = aw->kv_heads * hd, g = h / (aw->heads / aw->kv_heads);
	int len = aw->pos[i] + 1;
	const float *q = aw->q + ((size_t)i * aw->heads + h) * hd;
	float *out = aw->out + ((size_t)i * aw->heads + h) * hd;
	cblas_sgemv(CblasRowMajor, CblasNoTrans, len, hd, 1.0f / sqrtf((float)hd),
		    aw->kc[i] + (size_t)g * hd, kvd, q, 1, 0.0f, scores, 1);
	parm_softmax_forward(scores, scores, 1, len);
	cblas_sgemv(CblasRowMajor, CblasTrans, len, hd, 1.0f,
		    aw->vc[i] + (size_t)g * hd, kvd, scores, 1, 0.0f, out, 1);
}

/* Tokens i .. i + nb - 1 (one sequence, consecutive positions), head h:
 * scores[nb][span] for the cache up to the last one's position. */
static void attention_run(attention_work *aw, int i, int nb, int h, float *scores)
{
	int hd = aw->hd, kvd = aw->kv_heads * hd, g = h / (aw->heads / aw->kv_heads);
	int span = aw->pos[i + nb - 1] + 1, ld = aw->heads * hd;
	const float *q = aw->q + ((size_t)i * aw->heads + h) * hd;
	float *out = aw->out + ((size_t)i * aw->heads + h) * hd;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, span, hd, 1.0f / sqrtf((float)hd),
		    q, ld, aw->kc[i] + (size_t)g * hd, kvd, 0.0f, scores, span);
	for (int b = 0; b < nb; b++) {
		float *row = scores + (size_t)b * span;
		int len = aw->pos[i + b] + 1;
		parm_softmax_forward(row, row, 1, len);
		memset(row + len, 0, (size_t)(span - len) * sizeof *row);
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, span, 1.0f, scores, span,
		    aw->vc[i] + (size_t)g * hd, kvd, 0.0f, out, ld);
}

static void attention_worker(void *arg, int worker, int n_workers)
{
	attention_work *aw = arg;
	float *scores = pool_scratch(worker, (size_t)ATT_BLOCK * (aw->max_pos + 1));
	int t, total = aw->n_runs * aw->heads;
	while ((t = atomic_fetch_add(&aw->next, 1)) < total) {
		int r = t / aw->heads, h = t % aw->heads;
		if (aw->run_len[r] == 1)
			attention_head(aw, aw->run_start[r], h, scores);
		else
			attention_run(aw, aw->run_start[r], aw->run_len[r], h, scores);
	}
}

/* Token i + 1 continues token i's run: the same cache, the next position. */
static int continues(const attention_work *aw, int i)
{
	return aw->kc[i + 1] == aw->kc[i] && aw->vc[i + 1] == aw->vc[i] &&
	       aw->pos[i + 1] == aw->pos[i] + 1;
}

void parm_attention_forward(float *out, const float *q, const float *const *kc,
		       const float *const *vc, const int *pos, int n,
		       int heads, int kv_heads, int hd)
{
	attention_work aw = { .out = out, .q = q, .kc = kc, .vc = vc, .pos = pos, .n = n,
			       .heads = heads, .kv_heads = kv_heads, .hd = hd };
	if (n <= 0)
		return;
	atomic_init(&aw.next, 0);
	aw.run_start = parm_xmalloc(2 * (size_t)n * sizeof *aw.run_start);
	aw.run_len = aw.run_start + n;
	for (int i = 0; i < n; i++) {
		if (pos[i] > aw.max_pos)
			aw.max_pos = pos[i];
		if (i > 0 && aw.run_len[aw.n_runs - 1] < ATT_BLOCK && continues(&aw, i - 1)) {
			aw.run_len[aw.n_runs - 1]++;
			continue;
		}
		aw.run_start[aw.n_runs] = i;
		aw.run_len[aw.n_runs++] = 1;
	}
	pool_run(attention_worker, &aw);
	free(aw.run_start);
}

void parm_attention_forward_ref(float *out, const float *q, const float *const *kc,
			   const float *const *vc, const int *pos, int n,
			   int heads, int kv_heads, int hd)
{
	int kvd = kv_heads * hd, group = heads / kv_heads;
	for (int i = 0; i < n; i++) {
		double *p = parm_xmalloc((size_t)(pos[i] + 1) * sizeof *p);
		for (int h = 0; h < heads; h++) {
			const float *qh = q + ((size_t)i * heads + h) * hd;
			const float *k = kc[i] + (h / group) * hd, *v = vc[i] + (h / group) * hd;
			double max = -INFINITY, sum = 0;
			for (int t = 0; t <= pos[i]; t++) {
				double s = 0;
				for (int e = 0; e < hd; e++)
					s += (double)qh[e] * k[(size_t)t * kvd + e];
				p[t] = s / sqrt(hd);
				max = p[t] > max ? p[t] : max;
			}
			for (int t = 0; t <= pos[i]; t++)
				sum += (p[t] = exp(p[t] - max));
			for (int e = 0; e < hd; e++) {
				double o = 0;
				for (int t = 0; t <= pos[i]; t++)
					o += p[t] / sum * v[(size_t)t * kvd + e];
				out[((size_t)i * heads + h) * hd + e] = (float)o;
			}
		}
		free(p);
	}
}

/* ---- swiglu ---- */

void parm_swiglu_forward(float *out, const float *gate, const float *up, int64_t count)
{
	for (int64_t i = 0; i < count; i++) {
		float g = gate[i];
		out[i] = g / (1.0f + expf(-g)) * up[i];
	}
}

void parm_swiglu_forward_ref(float *out, const float *gate, const float *up, int64_t count)
{
	for (int64_t i = 0; i < count; i++)
		out[i] = (float)(gate[i] / (1.0 + exp(-(double)gate[i])) * up[i]);
}

/* ---- softmax ---- */

void parm_softmax_forward(float *out, const float *x, int n, int v)
{
	for (int i = 0; i < n; i++)
		vec()->softmax_row(out + (size_t)i * v, x + (size_t)i * v, v);
}

void parm_log_softmax_forward(float *out, const float *x, int n, int v)
{
	for (int i = 0; i < n; i++) {
		const float *xi = x + (size_t)i * v;
		float *oi = out + (size_t)i * v, log_sum, m = vec()->row_max_logsum(xi, v, &log_sum);
		if (!isfinite(m)) {     /* all -inf or NaN, or +inf: nothing to normalise */
			if (oi != xi)
				memcpy(oi, xi, (size_t)v * sizeof *oi);
			continue;
		}
		for (int k = 0; k < v; k++)
			oi[k] = (xi[k] - m) - log_sum;  /* not x - (m + log_sum): keeps precision */
	}
}

/* The row's maximum and log of the sum of exp(x - max), in double. */
static void row_max_logsum_ref(const float *x, int v, double *max, double *logsum)
{
	double m = -INFINITY, sum = 0;
	for (int k = 0; k < v; k++)
		m = x[k] > m ? x[k] : m;
	for (int k = 0; k < v; k++)
		sum += exp(x[k] - m);
	*max = m;
	*logsum = log(sum);
}

void parm_softmax_forward_ref(float *out, const float *x, int n, int v)
{
	for (int i = 0; i < n; i++) {
		double m, logsum;
		row_max_logsum_ref(x + (size_t)i * v, v, &m, &logsum);
		for (int k = 0; k < v; k++)
			out[(size_t)i * v + k] = (float)exp(x[(size_t)i * v + k] - m - logsum);
	}
}

void parm_log_softmax_forward_ref(float *out, const float *x, int n, int v)
{
	for (int i = 0; i < n; i++) {
		double m, logsum;
		row_max_logsum_ref(x + (size_t)i * v, v, &m, &logsum);
		for (int k = 0; k < v; k++)
			out[(size_t)i * v + k] = (float)(x[(size_t)i * v + k] - m - logsum);
	}
}

/* ==== training: backward passes (gradients accumulate) ==== */

/* ---- matmul ---- */

void parm_matmul_backward(float *dx, float *dw, const float *dy, const float *x,
		     const void *w, enum parm_ggml_type t, int n, int in, int out)
{
	if (n <= 0)
		return;
	if (dw)         /* dw[out][in] += dy^T x */
		gemm_pool(&(gemm_args){ .ta = CblasTrans, .tb = CblasNoTrans, .m = out, .n = in,
					.k = n, .alpha = 1.0f, .a = dy, .lda = out, .b = x,
					.ldb = in, .beta = 1.0f, .c = dw, .ldc = in });
	if (!dx)
		return;
	gemm_args g = { .ta = CblasNoTrans, .tb = CblasNoTrans, .m = n, .n = in, .k = out,
			.alpha = 1.0f, .a = dy, .lda = out, .b = w, .ldb = in, .beta = 1.0f,
			.c = dx, .ldc = in };
	if (t == PARM_GGML_F32) {    /* dx[N][in] += dy W */
		gemm_pool(&g);
		return;
	}
	/* dx += dy[:, r0:r0+rows] W[r0:r0+rows], a dequantised tile at a time */
	int rows = rows_per_tile(in, 8);
	size_t rb = parm_ggml_row_bytes(t, in);
	float *tile = parm_xmalloc((size_t)rows * in * sizeof *tile);
	for (int r0 = 0; r0 < out; r0 += rows) {
		int nr = out - r0 < rows ? out - r0 : rows;
		for (int r = 0; r < nr; r++)
			parm_dequant_row(tile + (size_t)r * in, (const char *)w + (size_t)(r0 + r) * rb, t, in);
		g.a = dy + r0, g.k = nr, g.b = tile;
		gemm_pool(&g);
	}
	free(tile);
}

void parm_matmul_backward_ref(float *dx, float *dw, const float *dy, const float *x,
			 const void *w, enum parm_ggml_type t, int n, int in, int out)
{
	float *row = parm_xmalloc((size_t)in * sizeof *row);
	size_t rb = parm_ggml_row_bytes(t, in);
	for (int o = 0; o < out; o++) {
		parm_dequant_row_ref(row, (const char *)w + (size_t)o * rb, t, in);
		for (int i = 0; i < n; i++) {
			float g = dy[(size_t)i * out + o];
			for (int k = 0; k < in; k++) {
				if (dx)
					dx[(size_t)i * in + k] += g * row[k];
				if (dw)
					dw[(size_t)o * in + k] += g * x[(size_t)i * in + k];
			}
		}
	}
	free(row);
}

void parm_embed_backward(float *dtable, const float *dout, const int *tokens, int n, int d)
{
	for (int i = 0; i < n; i++) {
		float *row = dtable + (size_t)tokens[i] * d;
		for (int k = 0; k < d; k++)
			row[k] += dout[(size_t)i * d + k];
	}
}

/* ---- rmsnorm: y = x r w, r = 1 / sqrt(mean(x^2) + eps) ----
 * dx = r (dy w) - x r^3 / D sum(dy w x);  dw = sum over rows of dy x r */

void parm_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
		      const float *w, int n, int d, float eps)
{
	for (int i = 0; i < n; i++) {
		const float *xi = x + (size_t)i * d, *gi = dout + (size_t)i * d;
		float ss = 0, dot = 0;
		for (int k = 0; k < d; k++) {
			ss += xi[k] * xi[k];
			dot += gi[k] * w[k] * xi[k];
		}
		float r = 1.0f / sqrtf(ss / d + eps), c = dot * r * r * r / d;
		if (dw)
			for (int k = 0; k < d; k++)
				dw[k] += gi[k] * xi[k] * r;
		if (dx)
			for (int k = 0; k < d; k++)
				dx[(size_t)i * d + k] += r * gi[k] * w[k] - c * xi[k];
	}
}

void parm_rmsnorm_backward_ref(float *dx, float *dw, const float *dout, const float *x,
			  const float *w, int n, int d, float eps)
{
	for (int i = 0; i < n; i++) {
		double ss = 0, dot = 0;
		for (int k = 0; k < d; k++) {
			ss += (double)x[i * d + k] * x[i * d + k];
			dot += (double)dout[i * d + k] * w[k] * x[i * d + k];
		}
		double r = 1.0 / sqrt(ss / d + eps);
		for (int k = 0; k < d; k++) {
			if (dw)
				dw[k] += (float)(dout[i * d + k] * x[i * d + k] * r);
			if (dx)
				dx[i * d + k] += (float)(r * dout[i * d + k] * w[k] -
							 dot * r * r * r / d * x[i * d + k]);
		}
	}
}

/* ---- rope ---- */

void parm_rope_backward(float *dx, const int *pos, int n, int heads, int hd, const parm_rope *rp)
{
	int *neg = parm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *neg);
	for (int i = 0; i < n; i++)
		neg[i] = -pos[i];
	parm_rope_forward(dx, neg, n, heads, hd, rp);
	free(neg);
}

/* ---- training attention: per (sequence, head) S = Q K^T / sqrt(hd) with
 * sgemm on a [L][L] scratch, causal softmax, O = P V ---- */

typedef struct {
	float *out, *lse, *dq, *dk, *dv;
	const float *q, *k, *v, *dout, *fout, *flse;
	const int *start, *len;
	int n_seq, heads, kv_heads, hd, max_len;
	atomic_int next;
} attn_train_work;

/* P[L][L] = causal softmax of the scaled scores of head h; lse per row
 * written (forward) or read (backward: exp(s - lse), no renormalising). */
static void attn_probs(float *P, float *lse_rows, int write_lse, const float *q,
		       const float *k, int L, int H, int G, int h, int hd)
{
	int g = h / (H / G);
	float scale = 1.0f / sqrtf((float)hd);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, hd, scale,
		    q + (size_t)h * hd, H * hd, k + (size_t)g * hd, G * hd, 0.0f, P, L);
	for (int i = 0; i < L; i++) {
		float *p = P + (size_t)i * L, *lse = lse_rows + (size_t)i * H;
		if (write_lse) {
			float log_sum, m = vec()->row_max_logsum(p, i + 1, &log_sum);
			*lse = m + log_sum;
		}
		for (int j = 0; j <= i; j++)
			p[j] -= *lse;
		vec()->vexp(p, p, i + 1);
		for (int j = i + 1; j < L; j++)
			p[j] = 0;
	}
}

static void attn_train_fwd_worker(void *arg, int worker, int n_workers)
{
	attn_train_work *w = arg;
	int H = w->heads, G = w->kv_heads, hd = w->hd, item;
	float *P = pool_scratch(worker, (size_t)w->max_len * w->max_len);
	while ((item = atomic_fetch_add(&w->next, 1)) < w->n_seq * H) {
		int s = item / H, h = item % H, L = w->len[s], g = h / (H / G);
		size_t r0 = w->start[s];
		if (L <= 0)
			continue;
		attn_probs(P, w->lse + r0 * H + h, 1, w->q + r0 * H * hd, w->k + r0 * G * hd,
			   L, H, G, h, hd);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, hd, L, 1.0f,
			    P, L, w->v + r0 * G * hd + (size_t)g * hd, G * hd, 0.0f,
			    w->out + r0 * H * hd + (size_t)h * hd, H * hd);
	}
}

static int max_of(const int *a, int n)
{
	int m = 0;
	for (int i = 0; i < n; i++)
		m = a[i] > m ? a[i] : m;
	return m;
}

void parm_attention_train_forward(float *out, float *lse, const float *q, const float *k,
			     const float *v, const int *start, const int *len, int n_seq,
			     int heads, int kv_heads, int hd)
{
	attn_train_work w = { .out = out, .lse = lse, .q = q, .k = k, .v = v, .start = start,
			      .len = len, .n_seq = n_seq, .heads = heads, .kv_heads = kv_heads,
			      .hd = hd, .max_len = max_of(len, n_seq) };
	atomic_init(&w.next, 0);
	if (n_seq > 0)
		pool_run(attn_train_fwd_worker, &w);
}

/* One head of one sequence, backward, all [L][...] views at row r0:
 *   dP = dO V^T;  dS = P (dP - rowsum(dO * O));  dV += P^T dO;
 *   dQ += dS K / sqrt(hd);  dK += dS^T Q / sqrt(hd). */
static void attn_head_backward(attn_train_work *w, float *P, float *dP, int s, int h)
{
	int H = w->heads, G = w->kv_heads, hd = w->hd, L = w->len[s], g = h / (H / G);
	size_t r0 = w->start[s], qo = r0 * H * hd + (size_t)h * hd, ko = r0 * G * hd + (size_t)g * hd;
	float scale = 1.0f / sqrtf((float)hd);
	attn_probs(P, (float *)w->flse + r0 * H + h, 0, w->q + r0 * H * hd, w->k + r0 * G * hd,
		   L, H, G, h, hd);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, hd, 1.0f,
		    w->dout + qo, H * hd, w->v + ko, G * hd, 0.0f, dP, L);
	for (int i = 0; i < L; i++) {
		const float *o = w->fout + qo + (size_t)i * H * hd, *go = w->dout + qo + (size_t)i * H * hd;
		float di = 0;
		for (int e = 0; e < hd; e++)
			di += o[e] * go[e];
		float *p = P + (size_t)i * L, *dp = dP + (size_t)i * L;
		for (int j = 0; j <= i; j++)
			dp[j] = p[j] * (dp[j] - di);
		for (int j = i + 1; j < L; j++)
			dp[j] = 0;
	}
	if (w->dv)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, hd, L, 1.0f,
			    P, L, w->dout + qo, H * hd, 1.0f, w->dv + ko, G * hd);
	if (w->dq)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, hd, L, scale,
			    dP, L, w->k + ko, G * hd, 1.0f, w->dq + qo, H * hd);
	if (w->dk)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, hd, L, scale,
			    dP, L, w->q + qo, H * hd, 1.0f, w->dk + ko, G * hd);
}

/* Work items are (sequence, kv head): the heads of one group write the
 * same dK, dV rows, so one thread takes them all. */
static void attn_train_bwd_worker(void *arg, int worker, int n_workers)
{
	attn_train_work *w = arg;
	int H = w->heads, G = w->kv_heads, group = H / G, item;
	size_t l2 = (size_t)w->max_len * w->max_len;
	float *P = pool_scratch(worker, 2 * l2), *dP = P + l2;
	while ((item = atomic_fetch_add(&w->next, 1)) < w->n_seq * G) {
		int s = item / G, g = item % G;
		if (w->len[s] <= 0)
			continue;
		for (int h = g * group; h < (g + 1) * group; h++)
			attn_head_backward(w, P, dP, s, h);
	}
}

void parm_attention_train_backward(float *dq, float *dk, float *dv, const float *dout,
			      const float *q, const float *k, const float *v,
			      const float *out, const float *lse, const int *start,
			      const int *len, int n_seq, int heads, int kv_heads, int hd)
{
	attn_train_work w = { .dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k,
			      .v = v, .fout = out, .flse = lse, .start = start, .len = len,
			      .n_seq = n_seq, .heads = heads, .kv_heads = kv_heads, .hd = hd,
			      .max_len = max_of(len, n_seq) };
	atomic_init(&w.next, 0);
	if (n_seq > 0)
		pool_run(attn_train_bwd_worker, &w);
}

/* The references: plain loops in double, one (row, head) at a time. */
static double ref_score(const float *q, const float *k, int i, int j, int H, int G,
			int h, int hd)
{
	double s = 0;
	for (int e = 0; e < hd; e++)
		s += (double)q[((size_t)i * H + h) * hd + e] * k[((size_t)j * G + h / (H / G)) * hd + e];
	return s / sqrt(hd);
}

void parm_attention_train_forward_ref(float *out, float *lse, const float *q, const float *k,
				 const float *v, const int *start, const int *len, int n_seq,
				 int heads, int kv_heads, int hd)
{
	int H = heads, G = kv_heads;
	for (int s = 0; s < n_seq; s++)
		for (int h = 0; h < H; h++)
			for (int i = start[s]; i < start[s] + len[s]; i++) {
				double m = -INFINITY, sum = 0;
				for (int j = start[s]; j <= i; j++)
					m = fmax(m, ref_score(q, k, i, j, H, G, h, hd));
				for (int j = start[s]; j <= i; j++)
					sum += exp(ref_score(q, k, i, j, H, G, h, hd) - m);
				double l = m + log(sum);
				lse[(size_t)i * H + h] = (float)l;
				for (int e = 0; e < hd; e++) {
					double o = 0;
					for (int j = start[s]; j <= i; j++)
						o += exp(ref_score(q, k, i, j, H, G, h, hd) - l) *
						     v[((size_t)j * G + h / (H / G)) * hd + e];
					out[((size_t)i * H + h) * hd + e] = (float)o;
				}
			}
}

static void ref_head_row_backward(float *dq, float *dk, float *dv, const float *dout,
				  const float *q, const float *k, const float *v,
				  const float *out, const float *lse, int j0, int i,
				  int H, int G, int h, int hd)
{
	size_t qi = ((size_t)i * H + h) * hd;
	double di = 0, sc = 1.0 / sqrt(hd);
	for (int e = 0; e < hd; e++)
		di += (double)dout[qi + e] * out[qi + e];
	for (int j = j0; j <= i; j++) {
		size_t kj = ((size_t)j * G + h / (H / G)) * hd;
		double p = exp(ref_score(q, k, i, j, H, G, h, hd) - lse[(size_t)i * H + h]), dp = 0;
		for (int e = 0; e < hd; e++)
			dp += (double)dout[qi + e] * v[kj + e];
		double ds = p * (dp - di);
		for (int e = 0; e < hd; e++) {
			dv[kj + e] += (float)(p * dout[qi + e]);
			dq[qi + e] += (float)(ds * sc * k[kj + e]);
			dk[kj + e] += (float)(ds * sc * q[qi + e]);
		}
	}
}

void parm_attention_train_backward_ref(float *dq, float *dk, float *dv, const float *dout,
				  const float *q, const float *k, const float *v,
				  const float *out, const float *lse, const int *start,
				  const int *len, int n_seq, int heads, int kv_heads, int hd)
{
	for (int s = 0; s < n_seq; s++)
		for (int h = 0; h < heads; h++)
			for (int i = start[s]; i < start[s] + len[s]; i++)
				ref_head_row_backward(dq, dk, dv, dout, q, k, v, out, lse,
						      start[s], i, heads, kv_heads, h, hd);
}

/* ---- swiglu: out = g sigmoid(g) u ---- */

typedef struct {
	swiglu_range arrays;
	int64_t count;
	atomic_llong next;
} swiglu_work;

enum { SWIGLU_BLOCK = 8192 };

static void swiglu_bwd_worker(void *arg, int worker, int n_workers)
{
	swiglu_work *w = arg;
	int64_t i0;
	while ((i0 = atomic_fetch_add(&w->next, SWIGLU_BLOCK)) < w->count)
		vec()->swiglu_bwd_range(&w->arrays, i0,
					i0 + SWIGLU_BLOCK < w->count ? i0 + SWIGLU_BLOCK : w->count);
}

void parm_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
		     const float *up, int64_t count)
{
	swiglu_work w = { .arrays = { .dgate = dgate, .dup = dup, .dout = dout, .gate = gate,
				      .up = up }, .count = count };
	atomic_init(&w.next, 0);
	if (count <= SWIGLU_BLOCK)
		vec()->swiglu_bwd_range(&w.arrays, 0, count > 0 ? count : 0);
	else
		pool_run(swiglu_bwd_worker, &w);
}

void parm_swiglu_backward_ref(float *dgate, float *dup, const float *dout, const float *gate,
			 const float *up, int64_t count)
{
	for (int64_t i = 0; i < count; i++) {
		double g = gate[i], sig = 1 / (1 + exp(-g));
		if (dup)
			dup[i] += (float)(dout[i] * g * sig);
		if (dgate)
			dgate[i] += (float)(dout[i] * up[i] * sig * (1 + g * (1 - sig)));
	}
}

/* ---- log-softmax, log-prob gather, cross-entropy ---- */

void parm_log_softmax_backward(float *dx, const float *dout, const float *out, int n, int v)
{
	for (int i = 0; i < n; i++) {
		const float *g = dout + (size_t)i * v, *o = out + (size_t)i * v;
		float sum = 0;
		for (int k = 0; k < v; k++)
			sum += g[k];
		for (int k = 0; k < v; k++)
			dx[(size_t)i * v + k] += g[k] - expf(o[k]) * sum;
	}
}

void parm_vexp(float *y, const float *x, int64_t count)
{
	vec()->vexp(y, x, count);
}

void parm_vexp_ref(float *y, const float *x, int64_t count)
{
	for (int64_t i = 0; i < count; i++)
		y[i] = expf(x[i]);
}

/* Rows of a log-prob kernel shared out over the pool. */
typedef struct {
	float *out;
	const float *dlogp, *logits;
	const int *targets;
	int n, v;
	atomic_int next;
} logprob_work;

static void logprob_fwd_worker(void *arg, int worker, int n_workers)
{
	logprob_work *w = arg;
	int i;
	while ((i = atomic_fetch_add(&w->next, 1)) < w->n) {
		const float *x = w->logits + (size_t)i * w->v;
		float log_sum, m = vec()->row_max_logsum(x, w->v, &log_sum);
		w->out[i] = (x[w->targets[i]] - m) - log_sum; /* as parm_log_softmax_forward */
	}
}

void parm_logprob_forward(float *logp, const float *logits, const int *targets, int n, int v)
{
	logprob_work w = { .out = logp, .logits = logits, .targets = targets, .n = n, .v = v };
	atomic_init(&w.next, 0);
	if (n > 0)
		pool_run(logprob_fwd_worker, &w);
}

static void logprob_bwd_worker(void *arg, int worker, int n_workers)
{
	logprob_work *w = arg;
	int i;
	while ((i = atomic_fetch_add(&w->next, 1)) < w->n) {
		float g = w->dlogp[i], *dx = w->out + (size_t)i * w->v;
		if (g == 0)
			continue;
		vec()->logprob_row_backward(dx, w->logits + (size_t)i * w->v, g, w->v);
		dx[w->targets[i]] += g;
	}
}

void parm_logprob_backward(float *dlogits, const float *dlogp, const float *logits,
		      const int *targets, int n, int v)
{
	logprob_work w = { .out = dlogits, .dlogp = dlogp, .logits = logits,
			   .targets = targets, .n = n, .v = v };
	atomic_init(&w.next, 0);
	if (n > 0)
		pool_run(logprob_bwd_worker, &w);
}

void parm_logprob_forward_ref(float *logp, const float *logits, const int *targets, int n, int v)
{
	float *row = parm_xmalloc((size_t)v * sizeof *row);
	for (int i = 0; i < n; i++) {
		parm_log_softmax_forward_ref(row, logits + (size_t)i * v, 1, v);
		logp[i] = row[targets[i]];
	}
	free(row);
}

void parm_logprob_backward_ref(float *dlogits, const float *dlogp, const float *logits,
			  const int *targets, int n, int v)
{
	float *p = parm_xmalloc((size_t)v * sizeof *p);
	for (int i = 0; i < n; i++) {
		parm_softmax_forward_ref(p, logits + (size_t)i * v, 1, v);
		for (int k = 0; k < v; k++)
			dlogits[(size_t)i * v + k] += (float)(dlogp[i] * ((k == targets[i]) - (double)p[k]));
	}
	free(p);
}

void parm_crossentropy_forward(float *losses, const float *logits, const int *targets, int n, int v)
{
	parm_logprob_forward(losses, logits, targets, n, v);
	for (int i = 0; i < n; i++)
		losses[i] = -losses[i];
}

void parm_crossentropy_backward(float *dlogits, const float *dlosses, const float *logits,
			   const int *targets, int n, int v)
{
	float *neg = parm_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *neg);
	for (int i = 0; i < n; i++)
		neg[i] = -dlosses[i];
	parm_logprob_backward(dlogits, neg, logits, targets, n, v);
	free(neg);
}
