/* i8_act_avx2.c: AVX2 quantization of activations to int8 (kernels/i8_act.h), bit for bit
 * qn_i8_act_quantize_ref: exact absmax (a NaN never wins: vmaxps returns its second operand
 * when either is NaN), one f32 division x / s per value (a real vdivps, no reciprocal),
 * NaN -> 0, clamp to +-127, round to nearest even (vcvtps2dq in the default rounding mode,
 * as rintf), zeros in the padding, 32-column block sums. */
#include <immintrin.h>

#include "kernels/i8_act.h"
#include "kernels/kernels.h"
#include "kernels/x86/x86_kernels.h"

/* Loads the 8 floats at column c of a row of cols values; lanes at or beyond cols are 0. */
static __m256 load8(const float* x, int64_t c, int64_t cols) {
  int64_t left = cols - c;
  if (left >= 8) return _mm256_loadu_ps(x + c);
  if (left <= 0) return _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), lane);
  return _mm256_maskload_ps(x + c, m);
}

/* max_c |x_c| over cols values; NaNs are ignored like the reference's `a > amax` test. */
static float abs_max(const float* x, int64_t cols) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), abs_mask), m0);
    m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c + 8), abs_mask), m1);
  }
  for (; c < cols; c += 8) m0 = _mm256_max_ps(_mm256_and_ps(load8(x, c, cols), abs_mask), m0);
  m0 = _mm256_max_ps(m0, m1); /* no NaN left in m0, m1: the order no longer matters */
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/* Codes of 8 values at scale s (broadcast in vs) as int32. */
static __m256i codes8(__m256 v, __m256 vs) {
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256 y = _mm256_div_ps(v, vs);
  y = _mm256_and_ps(y, _mm256_cmp_ps(y, y, _CMP_ORD_Q)); /* NaN -> 0 */
  y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
  return _mm256_cvtps_epi32(y);
}

/* Horizontal sum of 8 int32. */
static int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

/* One token: codes and block sums of x (cols values) at scale s. */
static void quantize_token(const float* x, int64_t cols, int64_t stride, float s, int8_t* q,
                           int32_t* bsum) {
  const __m256 vs = _mm256_set1_ps(s);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b * 32 < stride; b++) {
    int64_t c = b * 32;
    __m256i i0 = codes8(load8(x, c, cols), vs), i1 = codes8(load8(x, c + 8, cols), vs);
    __m256i i2 = codes8(load8(x, c + 16, cols), vs), i3 = codes8(load8(x, c + 24, cols), vs);
    /* codes are within [-127, 127]: the saturating packs are exact */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    _mm256_storeu_si256((__m256i*)(q + c), _mm256_permutevar8x32_epi32(p, order));
    bsum[b] = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
  }
}

void qn_i8_act_quantize_avx2(qn_i8_act* a, const float* X, int64_t t0, int64_t t1) {
  const int64_t nb = a->stride / 32;
  for (int64_t t = t0; t < t1; t++) {
    const float* x = X + (size_t)t * (size_t)a->cols;
    float s = a->static_scale > 0.0f ? qn_i8_valid_scale(a->static_scale)
                                     : qn_i8_valid_scale(abs_max(x, a->cols) / 127.0f);
    a->scale[t] = s;
    quantize_token(x, a->cols, a->stride, s, a->codes + (size_t)t * (size_t)a->stride,
                   a->bsum + (size_t)t * (size_t)nb);
  }
}
