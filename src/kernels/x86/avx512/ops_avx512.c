/* ops_avx512.c: AVX-512 element-wise ops and attention (qn_rmsnorm_avx512, qn_swiglu_avx512,
 * qn_attn_head_avx512), with a vectorised expf for the softmax and SiLU.
 *
 * exp (exp16): the same reduction, polynomial and constants as exp8 in ops_avx2.c (see its
 * header for the derivation and the measured error), with the final scaling by 2^n done by
 * vscalefps, which rounds once into the subnormals exactly as the AVX2 two-step scaling does:
 * both give the same bits for every input (test_kernels_ops checks it). Bounds against glibc
 * expf: <= 1 ulp (relative <= 2^-23) for normal results, <= 2^-149 absolute for subnormal
 * ones, identical overflow/underflow thresholds, NaN stays NaN. Tails use masked loads and
 * stores throughout. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/x86/x86_kernels.h"

/* ---- vectorised exp ------------------------------------------------------------------------ */

#define EXP_X_MIN -105.0f /* below: e^x < 2^-151, rounds to +0 */
#define EXP_X_MAX 89.0f   /* above: e^x > FLT_MAX, +inf */
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f    /* 12 significant bits: n * LN2_HI is exact for |n| <= 151 */
#define LN2_LO -2.12194440e-4f /* ln 2 - LN2_HI */
#define EXP_C2 0x1.fffffcp-2f  /* q(r) = C2 + C3 r + C4 r^2 + C5 r^3 + C6 r^4 */
#define EXP_C3 0x1.55549p-3f
#define EXP_C4 0x1.5558f4p-5f
#define EXP_C5 0x1.123a32p-7f
#define EXP_C6 0x1.6a23cp-10f

/* e^x in each lane (bound in the header comment). */
static inline __m512 exp16(__m512 x) {
  /* max/min return their second operand when one is NaN: NaN lanes pass through */
  x = _mm512_min_ps(_mm512_set1_ps(EXP_X_MAX), _mm512_max_ps(_mm512_set1_ps(EXP_X_MIN), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x); /* exact */
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
  __m512 q = _mm512_set1_ps(EXP_C6);
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(EXP_C5));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(EXP_C4));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(EXP_C3));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(EXP_C2));
  __m512 p = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r);
  p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n); /* p 2^n, one rounding, inf / subnormal / 0 as IEEE says */
}

/* Lanes i < rem (0..16) set. */
static inline __mmask16 tail_mask16(int64_t rem) {
  return rem >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rem) - 1u);
}

/* Test hook (declared in tests/unit/test_kernels_ops.c): y[i] = exp16(x[i]). */
void qn_exp_avx512(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = tail_mask16(n - i);
    _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

/* ---- horizontal sums ----------------------------------------------------------------------- */

static inline double hsum8d(__m512d a) {
  __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* 16 -> 8 lanes: lo half + hi half. */
static inline __m256 fold16(__m512 a) {
  return _mm256_add_ps(_mm512_castps512_ps256(a),
                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

/* {sum(a[0]), ..., sum(a[7])} */
static inline __m256 hsum8x16(const __m512 a[8]) {
  __m256 f[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) f[i] = fold16(a[i]);
  __m256 h01 = _mm256_hadd_ps(f[0], f[1]), h23 = _mm256_hadd_ps(f[2], f[3]);
  __m256 h45 = _mm256_hadd_ps(f[4], f[5]), h67 = _mm256_hadd_ps(f[6], f[7]);
  __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                       _mm256_permute2f128_ps(h0123, h4567, 0x31));
}

/* Adds the squares of the 16 floats in v to two double accumulators (exact squares). */
static inline void add_squares(__m512 v, __m512d* a0, __m512d* a1) {
  __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  *a0 = _mm512_fmadd_pd(lo, lo, *a0);
  *a1 = _mm512_fmadd_pd(hi, hi, *a1);
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */

/* As qn_rmsnorm_avx2: sum of squares in double lanes (each square exact), then inv and
 * out = (x inv) w exactly as in the reference. Equal to the reference bit for bit unless the
 * two sums round 1/sqrt to neighbouring floats, and then within 2 ulp. */
void qn_rmsnorm_avx512(float* out, const float* x, const float* w, int n, float eps) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  __m512d a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    add_squares(_mm512_loadu_ps(x + i), &a0, &a1);
    add_squares(_mm512_loadu_ps(x + i + 16), &a2, &a3);
  }
  for (; i < n; i += 16) /* masked lanes load 0 */
    add_squares(_mm512_maskz_loadu_ps(tail_mask16(n - i), x + i), &a0, &a1);
  double ss = hsum8d(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
  float inv = (float)(1.0 / sqrt(ss / n + eps));
  __m512 vinv = _mm512_set1_ps(inv);
  for (i = 0; i < n; i += 16) {
    __mmask16 m = tail_mask16(n - i);
    __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, w + i)));
  }
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */

static inline __m512 swiglu16(__m512 g, __m512 u) {
  __m512 e = exp16(_mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000u))));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

/* gate = gate / (1 + e^-gate) * up in the reference's order with exp16 for expf (same bits as
 * qn_swiglu_avx2; bound at its definition). */
void qn_swiglu_avx512(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(gate + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  if (i < n) {
    __mmask16 m = tail_mask16(n - i);
    __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
    _mm512_mask_storeu_ps(gate + i, m, swiglu16(g, u));
  }
}

/* ---- attention ----------------------------------------------------------------------------- */

/* q . k_p for the 8 rows k_p = k + p * stride, over hd floats (tail lanes masked). */
static inline __m256 dots8(const float* q, const float* k, size_t stride, int hd, __mmask16 tail) {
  __m512 acc[8];
#pragma GCC unroll 8
  for (int p = 0; p < 8; p++) acc[p] = _mm512_setzero_ps();
  int d = 0;
  for (; d + 16 <= hd; d += 16) {
    __m512 qv = _mm512_loadu_ps(q + d);
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++)
      acc[p] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + p * stride + d), acc[p]);
  }
  if (d < hd) {
    __m512 qv = _mm512_maskz_loadu_ps(tail, q + d);
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++)
      acc[p] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(tail, k + p * stride + d), acc[p]);
  }
  return hsum8x16(acc);
}

static inline float dot1(const float* q, const float* k, int hd, __mmask16 tail) {
  __m512 acc = _mm512_setzero_ps();
  int d = 0;
  for (; d + 16 <= hd; d += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(k + d), acc);
  if (d < hd)
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q + d), _mm512_maskz_loadu_ps(tail, k + d),
                          acc);
  return _mm512_reduce_add_ps(acc);
}

/* att[j] = scale * q . k_j for all positions; returns the largest. */
static float attn_scores(const float* q, const float* k, size_t stride, int n_pos, int hd,
                         float scale, float* att) {
  __mmask16 tail = tail_mask16(hd % 16);
  __m256 vscale = _mm256_set1_ps(scale), vmax = _mm256_set1_ps(-INFINITY);
  int j = 0;
  for (; j + 8 <= n_pos; j += 8) {
    __m256 s = _mm256_mul_ps(dots8(q, k + (size_t)j * stride, stride, hd, tail), vscale);
    _mm256_storeu_ps(att + j, s);
    vmax = _mm256_max_ps(s, vmax);
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  float mx = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
  for (; j < n_pos; j++) {
    att[j] = dot1(q, k + (size_t)j * stride, hd, tail) * scale;
    if (att[j] > mx) mx = att[j];
  }
  return mx;
}

/* att[j] *= inv (the reference's normalisation, same roundings). */
static void attn_normalize(float* att, int n_pos, float inv) {
  __m512 vinv = _mm512_set1_ps(inv);
  for (int j = 0; j < n_pos; j += 16) {
    __mmask16 m = tail_mask16(n_pos - j);
    _mm512_mask_storeu_ps(att + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, att + j), vinv));
  }
}

/* att[j] = e^(att[j] - mx); returns the sum, accumulated in double lanes. */
static double attn_exp(float* att, int n_pos, float mx) {
  __m512 vm = _mm512_set1_ps(mx);
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int j = 0; j < n_pos; j += 16) {
    __mmask16 m = tail_mask16(n_pos - j);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, att + j), vm));
    e = _mm512_maskz_mov_ps(m, e); /* lanes past the end add 0 */
    _mm512_mask_storeu_ps(att + j, m, e);
    s0 = _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(e)), s0);
    s1 = _mm512_add_pd(
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))), s1);
  }
  return hsum8d(_mm512_add_pd(s0, s1));
}

/* In-place softmax of x[n] (qn_softmax_ref's steps: max, e^(x - max), sum in double,
 * multiply by the rounded reciprocal): results within the vector exp's 1 ulp. */
void qn_softmax_avx512(float* x, int n) {
  if (n <= 0) return;
  __m512 vm = _mm512_set1_ps(x[0]);
  for (int j = 0; j < n; j += 16) {
    __mmask16 m = tail_mask16(n - j);
    vm = _mm512_mask_max_ps(vm, m, _mm512_maskz_loadu_ps(m, x + j), vm);
  }
  float mx = _mm512_reduce_max_ps(vm);
  double sum = attn_exp(x, n, mx);
  attn_normalize(x, n, (float)(1.0 / sum));
}

/* out[0 .. 16*nfull (+ tail lanes)) += sum_j att[j] v_j[same range] for n positions:
 * nfull whole vectors plus, if tail != 0, one vector of the lanes in `tail`, all held in
 * registers across the positions. Inlined with a constant nfull (0..8). */
static inline __attribute__((always_inline)) void weighted_rows(float* out, const float* v,
                                                                size_t stride, const float* att,
                                                                int n, const int nfull,
                                                                __mmask16 tail) {
  __m512 acc[8], acc_t = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int u = 0; u < nfull; u++) acc[u] = _mm512_loadu_ps(out + 16 * u);
  if (tail) acc_t = _mm512_maskz_loadu_ps(tail, out + 16 * nfull);
  for (int j = 0; j < n; j++) {
    const float* vr = v + (size_t)j * stride;
    __m512 a = _mm512_set1_ps(att[j]);
#pragma GCC unroll 8
    for (int u = 0; u < nfull; u++)
      acc[u] = _mm512_fmadd_ps(a, _mm512_loadu_ps(vr + 16 * u), acc[u]);
    if (tail) acc_t = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(tail, vr + 16 * nfull), acc_t);
  }
#pragma GCC unroll 8
  for (int u = 0; u < nfull; u++) _mm512_storeu_ps(out + 16 * u, acc[u]);
  if (tail) _mm512_mask_storeu_ps(out + 16 * nfull, tail, acc_t);
}

/* Positions per pass over the head dimension: their v rows (up to 32 x hd floats) stay in L1
 * while the blocks of 128 dimensions are accumulated one after the other. */
#define ATTN_POS_CHUNK 32

/* out[0..hd) += sum over positions j0 .. j0+n-1 of att[j] v_j, in blocks of 128 dimensions. */
static void values_chunk(const float* v, size_t stride, const float* att, int j0, int n, int hd,
                         float* out) {
  const float* vj = v + (size_t)j0 * stride;
  for (int d0 = 0; d0 < hd; d0 += 128) {
    int left = hd - d0, nfull = left >= 128 ? 8 : left / 16;
    __mmask16 tail = left >= 128 ? 0 : tail_mask16(left % 16);
    float* o = out + d0;
    const float* vd = vj + d0;
    switch (nfull) {
      case 0: weighted_rows(o, vd, stride, att + j0, n, 0, tail); break;
      case 1: weighted_rows(o, vd, stride, att + j0, n, 1, tail); break;
      case 2: weighted_rows(o, vd, stride, att + j0, n, 2, tail); break;
      case 3: weighted_rows(o, vd, stride, att + j0, n, 3, tail); break;
      case 4: weighted_rows(o, vd, stride, att + j0, n, 4, tail); break;
      case 5: weighted_rows(o, vd, stride, att + j0, n, 5, tail); break;
      case 6: weighted_rows(o, vd, stride, att + j0, n, 6, tail); break;
      case 7: weighted_rows(o, vd, stride, att + j0, n, 7, tail); break;
      default: weighted_rows(o, vd, stride, att + j0, n, 8, 0); break;
    }
  }
}

static void attn_values(const float* v, size_t stride, const float* att, int n_pos, int hd,
                        float* out) {
  for (int d = 0; d < hd; d++) out[d] = 0.0f;
  for (int j0 = 0; j0 < n_pos; j0 += ATTN_POS_CHUNK)
    values_chunk(v, stride, att, j0, n_pos - j0 < ATTN_POS_CHUNK ? n_pos - j0 : ATTN_POS_CHUNK, hd,
                 out);
}

/* qn_attn_head_ref's contract; like the reference, att ends holding the probabilities.
 * Differences from the reference as in qn_attn_head_avx2 (dots in 16 lanes with FMA, exp16,
 * the softmax sum in double lanes in another order, weighted v sum with FMA). */
void qn_attn_head_avx512(const float* q, const float* k, const float* v, size_t kv_stride,
                         int n_pos, int head_dim, float scale, float* att, float* out) {
  if (head_dim <= 0) return;
  if (n_pos <= 0) {
    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    return;
  }
  float mx = attn_scores(q, k, kv_stride, n_pos, head_dim, scale, att);
  attn_normalize(att, n_pos, (float)(1.0 / attn_exp(att, n_pos, mx)));
  attn_values(v, kv_stride, att, n_pos, head_dim, out);
}

/* Query heads per pass of qn_attn_heads_avx512 (their running maxima live on the stack). */
#define ATTN_GROUP_PASS 16

/* n_q (<= ATTN_GROUP_PASS) heads: the same operations per head as qn_attn_head_avx512, in an
 * order that reads each chunk of ATTN_POS_CHUNK keys (and later values) once for all heads
 * while it is in L1, instead of once per head. */
static void attn_heads_pass(const float* q, int n_q, const float* k, const float* v, size_t stride,
                            int n_pos, int hd, float scale, float* att, float* out) {
  const __mmask16 tail = tail_mask16(hd % 16);
  const __m256 vscale = _mm256_set1_ps(scale);
  const int full8 = n_pos / 8 * 8;
  float mx[ATTN_GROUP_PASS];
  for (int i = 0; i < n_q; i++) mx[i] = -INFINITY;
  /* scores of the whole 8-position blocks, chunk by chunk (max is exact in any order) */
  for (int j0 = 0; j0 < full8; j0 += ATTN_POS_CHUNK) {
    const int j1 = full8 - j0 < ATTN_POS_CHUNK ? full8 : j0 + ATTN_POS_CHUNK;
    for (int i = 0; i < n_q; i++) {
      const float* qi = q + (size_t)i * hd;
      float* ai = att + (size_t)i * n_pos;
      __m256 vmax = _mm256_set1_ps(mx[i]);
      for (int j = j0; j < j1; j += 8) {
        __m256 sc = _mm256_mul_ps(dots8(qi, k + (size_t)j * stride, stride, hd, tail), vscale);
        _mm256_storeu_ps(ai + j, sc);
        vmax = _mm256_max_ps(sc, vmax);
      }
      __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      mx[i] = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    }
  }
  /* the last positions one by one, then each head's softmax */
  for (int i = 0; i < n_q; i++) {
    const float* qi = q + (size_t)i * hd;
    float* ai = att + (size_t)i * n_pos;
    for (int j = full8; j < n_pos; j++) {
      ai[j] = dot1(qi, k + (size_t)j * stride, hd, tail) * scale;
      if (ai[j] > mx[i]) mx[i] = ai[j];
    }
    attn_normalize(ai, n_pos, (float)(1.0 / attn_exp(ai, n_pos, mx[i])));
    for (int d = 0; d < hd; d++) out[(size_t)i * hd + d] = 0.0f;
  }
  /* weighted values, chunk by chunk */
  for (int j0 = 0; j0 < n_pos; j0 += ATTN_POS_CHUNK) {
    const int n = n_pos - j0 < ATTN_POS_CHUNK ? n_pos - j0 : ATTN_POS_CHUNK;
    for (int i = 0; i < n_q; i++)
      values_chunk(v, stride, att + (size_t)i * n_pos, j0, n, hd, out + (size_t)i * hd);
  }
}

void qn_attn_heads_avx512(const float* q, int n_q, const float* k, const float* v, size_t kv_stride,
                          int n_pos, int head_dim, float scale, float* att, float* out) {
  if (head_dim <= 0) return;
  for (int h0 = 0; h0 < n_q; h0 += ATTN_GROUP_PASS) {
    const int nq = n_q - h0 < ATTN_GROUP_PASS ? n_q - h0 : ATTN_GROUP_PASS;
    float* o = out + (size_t)h0 * head_dim;
    if (n_pos <= 0) {
      for (int d = 0; d < nq * head_dim; d++) o[d] = 0.0f;
      continue;
    }
    attn_heads_pass(q + (size_t)h0 * head_dim, nq, k, v, kv_stride, n_pos, head_dim, scale,
                    att + (size_t)h0 * n_pos, o);
  }
}
