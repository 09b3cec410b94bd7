/* quant_x8.c - integer dot products with activations quantised to 8 bits
 * (quant.h): the quantiser, the plain-loop reference (also the path of
 * CPUs without AVX2), the choice of the vector path (quant_x8_internal.h),
 * and q4_0's and q8_0's rows packed by eight for AVX-512. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "quant_internal.h"
#include "simd.h"
#include <parm/util.h>

void parm_quant_x8_row(quant_x8 *out, const float *x, int64_t n)
{
	for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
		float amax = 0;
		int finite = 1;
		for (int l = 0; l < QK_K; l++) {
			finite &= isfinite(x[l]) != 0;
			amax = fabsf(x[l]) > amax ? fabsf(x[l]) : amax;
		}
		const float id = finite && amax > 0 ? 127 / amax : 0;
		for (int k = 0; k < QK_K / 16; k++) {
			int sum = 0;
			for (int l = 16 * k; l < 16 * k + 16; l++) {
				float v = nearbyintf(x[l] * id);
				out[b].q[l] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
				sum += out[b].q[l];
			}
			out[b].bsum[k] = (int16_t)sum;
		}
		out[b].d = finite ? amax / 127 : NAN;
	}
}

void parm_quant_x8_32_row(quant_x8_32 *out, const float *x, int64_t n)
{
	for (int64_t b = 0; b < n / QK; b++, x += QK) {
		float amax = 0;
		int finite = 1, sum = 0;
		for (int l = 0; l < QK; l++) {
			finite &= isfinite(x[l]) != 0;
			amax = fabsf(x[l]) > amax ? fabsf(x[l]) : amax;
		}
		const float id = finite && amax > 0 ? 127 / amax : 0;
		for (int l = 0; l < QK; l++) {
			float v = nearbyintf(x[l] * id);
			out[b].q[l] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
			sum += out[b].q[l];
		}
		out[b].sum = sum;
		out[b].d = finite ? parm_f16_to_f32(parm_f32_to_f16(amax / 127)) : NAN;
	}
}

int parm_quant_dot_x8_ok(enum parm_ggml_type t, int64_t n)
{
	return (t == PARM_GGML_Q4_K || t == PARM_GGML_Q5_K || t == PARM_GGML_Q6_K) && n > 0 && n % QK_K == 0;
}

/* Sub-block s (of 8) of super-block sb of a K-type row as integers: its
 * weights q[32], and per half h of 16 the scale sc[h] and offset m[h] of
 * weight = d sc[h] q - dmin m[h] (q6_K: dmin = d, m = 32 sc). */
static void k_sub_int(int q[32], int sc[2], int m[2], float *d, float *dmin, const void *row,
		      enum parm_ggml_type t, int64_t sb, int s)
{
	if (t == PARM_GGML_Q6_K) {
		const block_q6_K *b = (const block_q6_K *)row + sb;
		const int half = s / 4, j = s % 4;
		const uint8_t *ql = b->ql + 64 * half + 32 * (j % 2), *qh = b->qh + 32 * half;
		for (int l = 0; l < 32; l++)
			q[l] = ((ql[l] >> 4 * (j / 2)) & 15) | ((qh[l] >> 2 * j) & 3) << 4;
		for (int h = 0; h < 2; h++) {
			sc[h] = b->scales[2 * s + h];
			m[h] = 32 * sc[h];
		}
		*d = *dmin = half_to_float(b->d);
		return;
	}
	const block_q4_K *b4 = (const block_q4_K *)row + sb;
	const block_q5_K *b5 = (const block_q5_K *)row + sb;
	const int q5 = t == PARM_GGML_Q5_K;
	const uint8_t *qs = (q5 ? b5->qs : b4->qs) + 32 * (s / 2);
	for (int l = 0; l < 32; l++)
		q[l] = ((qs[l] >> 4 * (s % 2)) & 15) + (q5 ? ((b5->qh[l] >> s) & 1) << 4 : 0);
	k4_scale_min(q5 ? b5->scales : b4->scales, s, &sc[0], &m[0]);
	sc[1] = sc[0];
	m[1] = m[0];
	*d = half_to_float(q5 ? b5->d : b4->d);
	*dmin = half_to_float(q5 ? b5->dmin : b4->dmin);
}

/* One super-block against one quantised block of x, exactly. */
static double k_block_dot(const void *row, enum parm_ggml_type t, int64_t sb, const quant_x8 *xb)
{
	long isum = 0, ioff = 0;
	float d = 0, dmin = 0;
	for (int s = 0; s < 8; s++) {
		int q[32], sc[2], m[2];
		k_sub_int(q, sc, m, &d, &dmin, row, t, sb, s);
		for (int h = 0; h < 2; h++) {
			long dot = 0;
			for (int l = 16 * h; l < 16 * h + 16; l++)
				dot += (long)q[l] * xb->q[32 * s + l];
			isum += sc[h] * dot;
			ioff += (long)m[h] * xb->bsum[2 * s + h];
		}
	}
	return (double)xb->d * ((double)d * isum - (double)dmin * ioff);
}

void parm_quant_dot_x8_ref(float *y, size_t ys, const void *row, enum parm_ggml_type t,
		      const quant_x8 *x, int nx, int64_t n)
{
	const int64_t nsb = n / QK_K;
	for (int i = 0; i < nx; i++) {
		double sum = 0;
		for (int64_t sb = 0; sb < nsb; sb++)
			sum += k_block_dot(row, t, sb, x + i * nsb + sb);
		y[i * ys] = (float)sum;
	}
}

/* Element l of block k of a q4_0 or q8_0 row, as an integer. */
static int q32_weight(const void *row, enum parm_ggml_type t, int64_t k, int l)
{
	if (t == PARM_GGML_Q8_0)
		return ((const block_q8_0 *)row)[k].qs[l];
	const block_q4_0 *b = (const block_q4_0 *)row + k;
	return ((b->qs[l % 16] >> 4 * (l / 16)) & 15) - 8;
}

void parm_quant_dot_x8_32_ref(float *y, size_t ys, const void *row, enum parm_ggml_type t,
			 const quant_x8_32 *x, int nx, int64_t n)
{
	for (int i = 0; i < nx; i++) {
		double sum = 0;
		for (int64_t k = 0; k < n / QK; k++) {
			const quant_x8_32 *xb = x + i * (n / QK) + k;
			const uint16_t d = t == PARM_GGML_Q8_0 ? ((const block_q8_0 *)row)[k].d
							  : ((const block_q4_0 *)row)[k].d;
			long dot = 0;
			for (int l = 0; l < QK; l++)
				dot += (long)q32_weight(row, t, k, l) * xb->q[l];
			sum += (double)half_to_float(d) * xb->d * dot;
		}
		y[i * ys] = (float)sum;
	}
}

static void x8_plain(float *y, size_t ys, const void *w, size_t rb, int rows, enum parm_ggml_type t,
		     const quant_x8 *x, int nx, int64_t n)
{
	for (int r = 0; r < rows; r++)
		parm_quant_dot_x8_ref(y + r, ys, (const char *)w + (size_t)r * rb, t, x, nx, n);
}

static quant_dot_x8_fn *x8_path;
static pthread_once_t x8_once = PTHREAD_ONCE_INIT;

static void choose_x8(void)
{
	quant_dot_x8_fn *paths[] = {
		[PARM_SIMD_PORTABLE] = x8_plain,
#if defined(__x86_64__) || defined(__i386__)
		[PARM_SIMD_AVX2] = parm_quant_dot_x8_avx2,
		[PARM_SIMD_AVX512] = parm_quant_dot_x8_avx512,
#endif
	};
	x8_path = paths[parm_simd()];
}

void parm_quant_dot_x8_rows(float *y, size_t ys, const void *w, size_t rb, int rows,
		       enum parm_ggml_type t, const quant_x8 *x, int nx, int64_t n)
{
	pthread_once(&x8_once, choose_x8);
	x8_path(y, ys, w, rb, rows, t, x, nx, n);
}

int parm_quant_pack_ok(enum parm_ggml_type t, int64_t rows, int64_t n)
{
#if defined(__x86_64__) || defined(__i386__)
	return (t == PARM_GGML_Q4_0 || t == PARM_GGML_Q8_0) && rows > 0 && rows % 8 == 0 && n > 0 &&
	       n % QK == 0 && parm_simd() == PARM_SIMD_AVX512;
#else
	return 0;
#endif
}

/* Column b of rows 8g .. 8g + 7: their d, then their weights 8 bytes of
 * each row at a time (quant_x8_internal.h reads them so). */
void *parm_quant_pack(const void *w, enum parm_ggml_type t, int64_t rows, int64_t n)
{
	const int64_t nb = n / QK;
	const size_t block = t == PARM_GGML_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
	const size_t bytes = (size_t)rows * nb * block, column = 8 * block;
	uint8_t *out = parm_alloc_huge(bytes), *p = out;
	parm_prefault(w, bytes, 0);
	for (int64_t g = 0; g < rows / 8; g++)
		for (int64_t b = 0; b < nb; b++, p += column)
			for (int r = 0; r < 8; r++) {
				const uint8_t *src = (const uint8_t *)w + ((8 * g + r) * nb + b) * block;
				memcpy(p + 2 * r, src, 2);              /* d */
				for (size_t k = 0; k < (block - 2) / 8; k++)
					memcpy(p + 16 + 64 * k + 8 * r, src + 2 + 8 * k, 8);
			}
	return out;
}

#if defined(__x86_64__) || defined(__i386__)
static quant_dot_x8_packed_fn *packed_path;
static pthread_once_t packed_once = PTHREAD_ONCE_INIT;

static void choose_packed(void)
{
	packed_path = __builtin_cpu_supports("avx512vnni") ? parm_quant_dot_x8_packed_vnni
							   : parm_quant_dot_x8_packed_avx512;
}
#endif

void parm_quant_dot_x8_packed(float *y, size_t ys, const void *packed, enum parm_ggml_type t, int rows,
			 const quant_x8_32 *x, int nx, int64_t n)
{
#if defined(__x86_64__) || defined(__i386__)
	pthread_once(&packed_once, choose_packed);
	packed_path(y, ys, packed, t, rows, x, nx, n);
#else
	(void)y, (void)ys, (void)packed, (void)t, (void)rows, (void)x, (void)nx, (void)n;
#endif
}
