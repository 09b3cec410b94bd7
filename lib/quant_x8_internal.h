/* quant_x8_internal.h - parm_quant_dot_x8_rows on one vector path: included by
 * parm_quant_dot_avx2.c and parm_quant_dot_avx512.c after quant_internal.h, with
 * QUANT_X8_VARIANT the entry point's name.
 *
 * A super-block of 256 weights meets each activation vector as integers:
 * maddubs multiplies 32 unsigned weight bytes by 32 signed activation
 * bytes into 16 sums of two (at most 2 x 63 x 127: no saturation), madd
 * multiplies those by their sub-block's scale and adds pairs into 8 int32,
 * and the weights' offsets come off through the activations' sums of 16.
 * Only the super-block's total is converted and scaled, once, by the
 * weights' d times the activations' d: the float dot (quant_internal.h)
 * converts and scales every weight, which made decode compute-bound.
 * Vectors are 256 bits on both paths; AVX-512's 32 registers hold the
 * sums of twice the vectors per pass over a row.
 */
#ifdef QUANT_X8_VARIANT
#if defined(__AVX2__) && defined(__FMA__)

#if defined(__AVX512F__)
enum { X8_GROUP = 8 };
#else
enum { X8_GROUP = 4 };
#endif

#define X8 __attribute__((always_inline)) static inline

X8 __m256i x8_load(const void *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

/* The 4-bit fields of every byte of v from bit shift (0 or 4) up. */
X8 __m256i x8_nibbles(__m256i v, int shift)
{
	return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(15));
}

/* Bits shift .. shift + width - 1 of every byte of v, moved to bit up. */
X8 __m256i x8_bits(__m256i v, int shift, int width, int up)
{
	__m256i b = _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8((1 << width) - 1));
	return _mm256_slli_epi16(b, up);
}

/* Q4_K and Q5_K: the eight 6-bit scales and minimums k4_scale_min
 * decodes one at a time, four at a time in 32-bit words. */
X8 void x8_k4_scales(uint8_t sc[8], uint8_t m[8], const uint8_t q[12])
{
	uint32_t w[3], v[4];
	memcpy(w, q, sizeof w);
	v[0] = w[0] & 0x3f3f3f3f;
	v[1] = (w[2] & 0x0f0f0f0f) | (w[0] >> 6 & 0x03030303) << 4;
	v[2] = w[1] & 0x3f3f3f3f;
	v[3] = (w[2] >> 4 & 0x0f0f0f0f) | (w[1] >> 6 & 0x03030303) << 4;
	memcpy(sc, v, 8);
	memcpy(m, v + 2, 8);
}

X8 float x8_hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* sum[i] += the super-block blk (q4_K or q5_K) . x[i * xs], i < nt:
 * d sum_s sc_s (q_s . x_s) - dmin sum_s m_s (the sum of x_s). */
X8 void x8_k4(__m256 sum[], const char *blk, enum parm_ggml_type t, const quant_x8 *x, int64_t xs,
	      int nt)
{
	const block_q4_K *b4 = (const block_q4_K *)blk;
	const block_q5_K *b5 = (const block_q5_K *)blk;
	const int q5 = t == PARM_GGML_Q5_K;
	const uint8_t *qs = q5 ? b5->qs : b4->qs;
	const __m256i high = q5 ? x8_load(b5->qh) : _mm256_setzero_si256();
	uint8_t sc[8], m[8];
	__m256i acc[X8_GROUP];
	x8_k4_scales(sc, m, q5 ? b5->scales : b4->scales);
	for (int i = 0; i < nt; i++)
		acc[i] = _mm256_setzero_si256();
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {   /* sub-blocks 2j (low nibbles) and 2j + 1 */
		const __m256i v = x8_load(qs + 32 * j);
		__m256i w0 = x8_nibbles(v, 0), w1 = x8_nibbles(v, 4);
		if (q5) {
			w0 = _mm256_or_si256(w0, x8_bits(high, 2 * j, 1, 4));
			w1 = _mm256_or_si256(w1, x8_bits(high, 2 * j + 1, 1, 4));
		}
		const __m256i s0 = _mm256_set1_epi16(sc[2 * j]), s1 = _mm256_set1_epi16(sc[2 * j + 1]);
#pragma GCC unroll 8
		for (int i = 0; i < nt; i++) {
			const int8_t *q = x[i * xs].q + 64 * j;
			__m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(w0, x8_load(q)), s0);
			__m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(w1, x8_load(q + 32)), s1);
			acc[i] = _mm256_add_epi32(acc[i], _mm256_add_epi32(p0, p1));
		}
	}
	/* m_s twice, against the two sums of 16 of sub-block s */
	const __m128i m8 = _mm_loadl_epi64((const __m128i *)m);
	const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
	const float d = half_to_float(q5 ? b5->d : b4->d), dmin = half_to_float(q5 ? b5->dmin : b4->dmin);
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++) {
		const quant_x8 *xi = x + i * xs;
		const __m256i off = _mm256_madd_epi16(x8_load(xi->bsum), mins);
		sum[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i]), _mm256_set1_ps(d * xi->d), sum[i]);
		sum[i] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(off), _mm256_set1_ps(dmin * xi->d), sum[i]);
	}
}

/* sum[i] += the q6_K super-block b . x[i * xs], i < nt:
 * d sum_k sc_k (q_k . x_k - 32 (the sum of x_k)) over its 16 sixteens. */
X8 void x8_q6k(__m256 sum[], const block_q6_K *b, const quant_x8 *x, int64_t xs, int nt)
{
	const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
	/* a 16-bit pair of scales, the first in the low 128 bits, the second in the high */
	const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
						2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
	__m256i acc[X8_GROUP];
	for (int i = 0; i < nt; i++)
		acc[i] = _mm256_sub_epi32(_mm256_setzero_si256(),
					  _mm256_slli_epi32(_mm256_madd_epi16(sc16, x8_load(x[i * xs].bsum)), 5));
#pragma GCC unroll 8
	for (int s = 0; s < 8; s++) {   /* 32 weights: 4 bits of ql, 2 of qh */
		const int half = s / 4, j = s % 4;
		const __m256i lo = x8_nibbles(x8_load(b->ql + 64 * half + 32 * (j % 2)), 4 * (j / 2));
		const __m256i w = _mm256_or_si256(lo, x8_bits(x8_load(b->qh + 32 * half), 2 * j, 2, 4));
		const __m256i scale = _mm256_shuffle_epi8(
			_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(s)), spread);
#pragma GCC unroll 8
		for (int i = 0; i < nt; i++) {
			__m256i p = _mm256_maddubs_epi16(w, x8_load(x[i * xs].q + 32 * s));
			acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(p, scale));
		}
	}
	const float d = half_to_float(b->d);
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
		sum[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i]), _mm256_set1_ps(d * x[i * xs].d), sum[i]);
}

/* y[i * ys] = row . x[i] for i < nt, vector i's nsb super-blocks nsb apart. */
X8 void x8_row(float *y, size_t ys, const char *row, enum parm_ggml_type t, const quant_x8 *x,
	       int64_t nsb, int nt)
{
	const size_t bytes = t == PARM_GGML_Q4_K ? sizeof(block_q4_K) :
			     t == PARM_GGML_Q5_K ? sizeof(block_q5_K) : sizeof(block_q6_K);
	__m256 sum[X8_GROUP];
	for (int i = 0; i < nt; i++)
		sum[i] = _mm256_setzero_ps();
	for (int64_t b = 0; b < nsb; b++) {
		const char *blk = row + b * bytes;
		if (t == PARM_GGML_Q6_K)
			x8_q6k(sum, (const block_q6_K *)blk, x + b, nsb, nt);
		else
			x8_k4(sum, blk, t, x + b, nsb, nt);
	}
	for (int i = 0; i < nt; i++)
		y[i * ys] = x8_hsum(sum[i]);
}

/* The rows for one type t (a constant once inlined): whole groups of
 * vectors, then the rest as one group (one vector, decode's usual case,
 * with its count a constant too).  A prompt's many vectors go by in spans
 * of about 24 KB, each span against every row, so they stay in L1. */
X8 void x8_rows(float *y, size_t ys, const void *w, size_t rb, int rows, enum parm_ggml_type t,
		const quant_x8 *x, int nx, int64_t n)
{
	const int64_t nsb = n / QK_K;
	int span = (int)(24 * 1024 / (nsb * (int64_t)sizeof *x)) / X8_GROUP * X8_GROUP;
	if (span < X8_GROUP)
		span = X8_GROUP;
	for (int i0 = 0; i0 < nx; i0 += span) {
		const int i1 = nx - i0 < span ? nx : i0 + span;
		for (int r = 0; r < rows; r++) {
			const char *row = (const char *)w + (size_t)r * rb;
			int i = i0;
			for (; i + X8_GROUP <= i1; i += X8_GROUP)
				x8_row(y + r + (size_t)i * ys, ys, row, t, x + i * nsb, nsb, X8_GROUP);
			if (i1 - i == 1)
				x8_row(y + r + (size_t)i * ys, ys, row, t, x + i * nsb, nsb, 1);
			else if (i < i1)
				x8_row(y + r + (size_t)i * ys, ys, row, t, x + i * nsb, nsb, i1 - i);
		}
	}
}

void QUANT_X8_VARIANT(float *y, size_t ys, const void *w, size_t rb, int rows,
		      enum parm_ggml_type t, const quant_x8 *x, int nx, int64_t n)
{
	switch ((int)t) {
	case PARM_GGML_Q4_K: x8_rows(y, ys, w, rb, rows, PARM_GGML_Q4_K, x, nx, n); break;
	case PARM_GGML_Q5_K: x8_rows(y, ys, w, rb, rows, PARM_GGML_Q5_K, x, nx, n); break;
	case PARM_GGML_Q6_K: x8_rows(y, ys, w, rb, rows, PARM_GGML_Q6_K, x, nx, n); break;
	}
}

#endif

/* ---- Q4_0 and Q8_0 rows packed by eight (parm_quant_pack): AVX-512 only ----
 * A packed column of eight rows' blocks holds their eight f16 d, then
 * their weights so that one 64-byte load is 16 lanes of 4 bytes, two
 * lanes per row, each lane 4 consecutive weights of one row:
 *   q4_0 (144 bytes): nibble bytes 0-7 of each row, then bytes 8-15; a
 *     load's low nibbles are elements 0-7 (8-15) of every row, its high
 *     nibbles elements 16-23 (24-31);
 *   q8_0 (272 bytes): elements 8k .. 8k + 7 of each row, k = 0..3.
 * So one broadcast of 8 activation bytes serves all eight rows, and a
 * multiply-add of bytes into int32 lanes (vpdpbusd with VNNI, else
 * maddubs and madd) sums 4 products per lane: about 30 instructions a
 * column of 256 weights where the float dot spends about 11 per 32. */
#if defined(__AVX512F__) && defined(__AVX512BW__)

/* acc + the sums of 4 products of unsigned u and signed s bytes per lane */
X8 __m512i x8_dp4(__m512i acc, __m512i u, __m512i s, int vnni)
{
	if (vnni) {     /* the instruction, whatever this file's target says */
		__asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
		return acc;
	}
	__m512i p = _mm512_maddubs_epi16(u, s);
	return _mm512_add_epi32(acc, _mm512_madd_epi16(p, _mm512_set1_epi16(1)));
}

X8 __m512i x8_bcast8(const int8_t *q)
{
	int64_t v;
	memcpy(&v, q, sizeof v);
	return _mm512_set1_epi64(v);
}

/* The eight rows' d, each twice, as floats: the scale of lanes 2r, 2r + 1. */
X8 __m512 x8_packed_scales(const uint8_t *blk)
{
	const __m128i h = _mm_loadu_si128((const __m128i *)blk);
	const __m256i twice = _mm256_set_m128i(_mm_unpackhi_epi16(h, h), _mm_unpacklo_epi16(h, h));
	return _mm512_cvtph_ps(twice);
}

/* A packed column's weights as four unsigned byte vectors w[k] against
 * activation bytes 8k .. 8k + 7: q4_0's nibbles (q + 8), q8_0's |q| with
 * neg[k] marking the negative ones (their activations change sign). */
X8 void x8_packed_weights(__m512i w[4], __mmask64 neg[4], const uint8_t *blk, enum parm_ggml_type t)
{
	if (t == PARM_GGML_Q8_0) {
		for (int k = 0; k < 4; k++) {
			const __m512i v = _mm512_loadu_si512(blk + 16 + 64 * k);
			neg[k] = _mm512_movepi8_mask(v);
			w[k] = _mm512_abs_epi8(v);      /* -128 is 128 unsigned */
		}
		return;
	}
	const __m512i low = _mm512_set1_epi8(15);
	const __m512i v0 = _mm512_loadu_si512(blk + 16), v1 = _mm512_loadu_si512(blk + 80);
	w[0] = _mm512_and_si512(v0, low);
	w[1] = _mm512_and_si512(v1, low);
	w[2] = _mm512_and_si512(_mm512_srli_epi16(v0, 4), low);
	w[3] = _mm512_and_si512(_mm512_srli_epi16(v1, 4), low);
}

/* One column's int32 lanes against block x (at most 2 x 128 x 127 a
 * pair of products: no saturation in maddubs). */
X8 __m512i x8_packed_dot(const __m512i w[4], const __mmask64 neg[4], enum parm_ggml_type t,
			 const quant_x8_32 *x, int vnni)
{
	__m512i i = _mm512_setzero_si512();
#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) {
		__m512i s = x8_bcast8(x->q + 8 * k);
		if (t == PARM_GGML_Q8_0)
			s = _mm512_mask_sub_epi8(s, neg[k], _mm512_setzero_si512(), s);
		i = x8_dp4(i, w[k], s, vnni);
	}
	/* q4_0's nibbles are q + 8: each row's two lanes give back 8 sum x */
	return t == PARM_GGML_Q8_0 ? i : _mm512_sub_epi32(i, _mm512_set1_epi32(4 * x->sum));
}

enum { X8_PACKED_GROUP = 4 };   /* vectors sharing a column's unpacking */

/* y[i][r] for the 8 rows of one packed group against nt vectors, vector
 * i's blocks at x + i nb: each column unpacked once for all of them. */
X8 void x8_packed_group(float y[][8], const uint8_t *grp, enum parm_ggml_type t,
			const quant_x8_32 *x, int64_t nb, int nt, int vnni)
{
	const size_t column = t == PARM_GGML_Q8_0 ? 272 : 144;
	__m512 acc[X8_PACKED_GROUP];
	for (int i = 0; i < nt; i++)
		acc[i] = _mm512_setzero_ps();
	for (int64_t b = 0; b < nb; b++) {
		const uint8_t *blk = grp + column * b;
		__m512i w[4];
		__mmask64 neg[4] = { 0 };
		x8_packed_weights(w, neg, blk, t);
		const __m512 d = x8_packed_scales(blk);
#pragma GCC unroll 4
		for (int i = 0; i < nt; i++) {
			const quant_x8_32 *xb = x + i * nb + b;
			const __m512i s = x8_packed_dot(w, neg, t, xb, vnni);
			acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(xb->d)),
						 acc[i]);
		}
	}
	for (int i = 0; i < nt; i++) {
		float lanes[16];
		_mm512_storeu_ps(lanes, acc[i]);
		for (int r = 0; r < 8; r++)
			y[i][r] = lanes[2 * r] + lanes[2 * r + 1];
	}
}

/* Rows 8g .. 8g + 7 against vectors i .. i + nt - 1 (nt a constant once
 * inlined), into y. */
X8 void x8_packed_span(float *y, size_t ys, const uint8_t *grp, int g, enum parm_ggml_type t,
		       const quant_x8_32 *x, int64_t nb, int i, int nt, int vnni)
{
	float out[X8_PACKED_GROUP][8];
	if (t == PARM_GGML_Q8_0)
		x8_packed_group(out, grp, PARM_GGML_Q8_0, x + i * nb, nb, nt, vnni);
	else
		x8_packed_group(out, grp, PARM_GGML_Q4_0, x + i * nb, nb, nt, vnni);
	for (int k = 0; k < nt; k++)
		for (int r = 0; r < 8; r++)
			y[(size_t)(i + k) * ys + 8 * g + r] = out[k][r];
}

/* Groups of 8 rows against the vectors, X8_PACKED_GROUP at a time, then
 * one at a time (a group's weights stay in L1 while the vectors go by). */
X8 void x8_packed_rows(float *y, size_t ys, const void *packed, enum parm_ggml_type t, int rows,
		       const quant_x8_32 *x, int nx, int64_t n, int vnni)
{
	const int64_t nb = n / QK;
	const size_t group = (size_t)8 * nb * (t == PARM_GGML_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0));
	for (int g = 0; g < rows / 8; g++) {
		const uint8_t *grp = (const uint8_t *)packed + g * group;
		int i = 0;
		for (; i + X8_PACKED_GROUP <= nx; i += X8_PACKED_GROUP)
			x8_packed_span(y, ys, grp, g, t, x, nb, i, X8_PACKED_GROUP, vnni);
		for (; i < nx; i++)
			x8_packed_span(y, ys, grp, g, t, x, nb, i, 1, vnni);
	}
}

void parm_quant_dot_x8_packed_avx512(float *y, size_t ys, const void *packed, enum parm_ggml_type t,
				int rows, const quant_x8_32 *x, int nx, int64_t n)
{
	x8_packed_rows(y, ys, packed, t, rows, x, nx, n, 0);
}

void parm_quant_dot_x8_packed_vnni(float *y, size_t ys, const void *packed, enum parm_ggml_type t,
			      int rows, const quant_x8_32 *x, int nx, int64_t n)
{
	x8_packed_rows(y, ys, packed, t, rows, x, nx, n, 1);
}

#endif
#endif
