/* i8_act_avx512.c: AVX-512 quantization of activations to int8 (kernels/i8_act.h), bit for bit
 * qn_i8_act_quantize_ref: exact absmax (a NaN never wins: vmaxps returns its second operand
 * when either is NaN), one f32 division x / s per value (a real vdivps, no reciprocal),
 * NaN -> 0, clamp to +-127, round to nearest even (vcvtps2dq in the default rounding mode,
 * as rintf), zeros in the padding, 32-column block sums. */
#include <immintrin.h>

#include "kernels/i8_act.h"
#include "kernels/kernels.h"
#include "kernels/x86/x86_kernels.h"

/* Lanes of a 16-float load starting at column c of a row of cols values. */
static __mmask16 lanes_from(int64_t c, int64_t cols) {
  int64_t left = cols - c;
  if (left >= 16) return (__mmask16)0xFFFF;
  if (left <= 0) return 0;
  return (__mmask16)((1u << left) - 1u);
}

/* max_c |x_c| over cols values; NaNs are ignored like the reference's `a > amax` test. */
static float abs_max(const float* x, int64_t cols) {
  __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= cols; c += 32) {
    m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + c)), m0);
    m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + c + 16)), m1);
  }
  for (; c < cols; c += 16)
    m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(lanes_from(c, cols), x + c)), m0);
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

/* Codes of 16 values at scale s (broadcast in vs) as int32. */
static __m512i codes16(__m512 v, __m512 vs) {
  const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  __m512 y = _mm512_div_ps(v, vs);
  y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, y, _CMP_ORD_Q), y); /* NaN -> 0 */
  y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
  return _mm512_cvtps_epi32(y);
}

/* One token: codes and block sums of x (cols values) at scale s. */
static void quantize_token(const float* x, int64_t cols, int64_t stride, float s, int8_t* q,
                           int32_t* bsum) {
  const __m512 vs = _mm512_set1_ps(s);
  for (int64_t b = 0; b * 32 < stride; b++) {
    int64_t c = b * 32;
    __m512i i0 = codes16(_mm512_maskz_loadu_ps(lanes_from(c, cols), x + c), vs);
    __m512i i1 = codes16(_mm512_maskz_loadu_ps(lanes_from(c + 16, cols), x + c + 16), vs);
    _mm_storeu_si128((__m128i*)(q + c), _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128((__m128i*)(q + c + 16), _mm512_cvtepi32_epi8(i1));
    bsum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
  }
}

void qn_i8_act_quantize_avx512(qn_i8_act* a, const float* X, int64_t t0, int64_t t1) {
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
