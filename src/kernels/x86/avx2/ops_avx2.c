/* ops_avx2.c: AVX2 + FMA element-wise ops and attention (qn_rmsnorm_avx2, qn_swiglu_avx2,
 * qn_attn_head_avx2), with a vectorised expf for the softmax and SiLU.
 *
 * exp (exp8): x = n ln2 + r, n = rint(x log2 e), r by a two-constant Cody-Waite reduction
 * (FMA), e^r = 1 + r + r^2 q(r) with q of degree 4 fitted here (Lawson iteration for the
 * minimax relative error on |r| <= 0.3468: 3.1e-9, 4.5e-9 with the coefficients rounded to
 * float), then scaled by 2^n as two exact powers of two so that results below FLT_MIN round
 * once into the subnormals (the same bits as AVX-512 vscalefps in ops_avx512.c).
 * Measured on all 2.24e9 floats in [-104, 89] against glibc expf: 99.2% identical, at most
 * 1 ulp apart where the result is normal (relative <= 2^-23 = 1.19e-7; <= 8.6e-8 from the
 * exact e^x, computed in double), at most 2^-149 (one subnormal step) apart where it is
 * subnormal; the overflow (x > 88.72284 -> +inf) and underflow (-> +0) thresholds agree
 * exactly and NaN stays NaN. test_kernels_ops checks these bounds on a sweep of [-100, 90].
 */
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

/* 2^e as a float for integer lanes e in [-126, 127]. */
static inline __m256 pow2i(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

/* e^x in each lane (bound in the header comment). */
static inline __m256 exp8(__m256 x) {
  /* max/min return their second operand when one is NaN: NaN lanes pass through */
  x = _mm256_min_ps(_mm256_set1_ps(EXP_X_MAX), _mm256_max_ps(_mm256_set1_ps(EXP_X_MIN), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x); /* exact */
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
  __m256 q = _mm256_set1_ps(EXP_C6);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EXP_C5));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EXP_C4));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EXP_C3));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(EXP_C2));
  __m256 p = _mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  /* n in [-152, 129]: 2^n = 2^h 2^(n-h) with both factors normal; p 2^h is exact, the
   * second product rounds once (to a subnormal, 0 or inf where e^x is one) */
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i h = _mm256_srai_epi32(ni, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2i(h)), pow2i(_mm256_sub_epi32(ni, h)));
}

/* Lanes i < rem (0..8) set. */
static inline __m256i tail_mask(int64_t rem) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Test hook (declared in tests/unit/test_kernels_ops.c): y[i] = exp8(x[i]). */
void qn_exp_avx2(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(y + i, m, exp8(_mm256_maskload_ps(x + i, m)));
  }
}

/* ---- horizontal sums ----------------------------------------------------------------------- */

static inline float hsum8(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline double hsum4d(__m256d a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* {sum(a[0]), ..., sum(a[7])} */
static inline __m256 hsum8x8(const __m256 a[8]) {
  __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  __m256 h0123 = _mm256_hadd_ps(h01, h23), h4567 = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20),
                       _mm256_permute2f128_ps(h0123, h4567, 0x31));
}

/* Adds the squares of the 8 floats in v to two double accumulators (exact squares). */
static inline void add_squares(__m256 v, __m256d* a0, __m256d* a1) {
  __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  *a0 = _mm256_fmadd_pd(lo, lo, *a0);
  *a1 = _mm256_fmadd_pd(hi, hi, *a1);
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */

/* The sum of squares is taken in double lanes like the reference (each square exact, so the
 * two sums differ by at most ~n 2^-53 relative); then inv and out = (x inv) w exactly as in
 * qn_rmsnorm_ref. out equals the reference bit for bit unless the two sums round 1/sqrt to
 * neighbouring floats, and then differs by at most 2 ulp. */
void qn_rmsnorm_avx2(float* out, const float* x, const float* w, int n, float eps) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  __m256d a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    add_squares(_mm256_loadu_ps(x + i), &a0, &a1);
    add_squares(_mm256_loadu_ps(x + i + 8), &a2, &a3);
  }
  if (i + 8 <= n) {
    add_squares(_mm256_loadu_ps(x + i), &a0, &a1);
    i += 8;
  }
  double ss = hsum4d(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
  for (; i < n; i++) ss += (double)x[i] * x[i];
  float inv = (float)(1.0 / sqrt(ss / n + eps));
  __m256 vinv = _mm256_set1_ps(inv);
  i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 y = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(y, _mm256_loadu_ps(w + i)));
  }
  for (; i < n; i++) out[i] = x[i] * inv * w[i];
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */

static inline __m256 swiglu8(__m256 g, __m256 u) {
  __m256 e = exp8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

/* gate = gate / (1 + e^-gate) * up in the reference's order, with exp8 for expf. exp8's
 * 1 ulp from expf passes through 1 + e, the division and the product: at most ~5 ulp from the
 * reference in theory, 2.9e-7 relative measured (the tests allow 6e-7). Large |gate| behaves
 * as in the reference: silu(-big) = -0, silu(+big) = big (and silu(-inf) = NaN, as there). */
void qn_swiglu_avx2(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(gate + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    __m256 g = _mm256_maskload_ps(gate + i, m), u = _mm256_maskload_ps(up + i, m);
    _mm256_maskstore_ps(gate + i, m, swiglu8(g, u));
  }
}

/* ---- attention ----------------------------------------------------------------------------- */

/* q . k_p for the 8 rows k_p = k + p * stride, over hd floats (tail lanes masked). */
static inline __m256 dots8(const float* q, const float* k, size_t stride, int hd, __m256i tail) {
  __m256 acc[8];
#pragma GCC unroll 8
  for (int p = 0; p < 8; p++) acc[p] = _mm256_setzero_ps();
  int d = 0;
  for (; d + 8 <= hd; d += 8) {
    __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++)
      acc[p] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + p * stride + d), acc[p]);
  }
  if (d < hd) {
    __m256 qv = _mm256_maskload_ps(q + d, tail);
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++)
      acc[p] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k + p * stride + d, tail), acc[p]);
  }
  return hsum8x8(acc);
}

static inline float dot1(const float* q, const float* k, int hd, __m256i tail) {
  __m256 acc = _mm256_setzero_ps();
  int d = 0;
  for (; d + 8 <= hd; d += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc);
  if (d < hd)
    acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + d, tail), _mm256_maskload_ps(k + d, tail), acc);
  return hsum8(acc);
}

/* att[j] = scale * q . k_j for all positions; returns the largest. */
static float attn_scores(const float* q, const float* k, size_t stride, int n_pos, int hd,
                         float scale, float* att) {
  __m256i tail = tail_mask(hd % 8);
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
  __m256 vinv = _mm256_set1_ps(inv);
  int j = 0;
  for (; j + 8 <= n_pos; j += 8)
    _mm256_storeu_ps(att + j, _mm256_mul_ps(_mm256_loadu_ps(att + j), vinv));
  for (; j < n_pos; j++) att[j] *= inv;
}

/* att[j] = e^(att[j] - mx); returns the sum, accumulated in double lanes. */
static double attn_exp(float* att, int n_pos, float mx) {
  __m256 vm = _mm256_set1_ps(mx);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int j = 0;
  for (; j + 8 <= n_pos; j += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(att + j), vm));
    _mm256_storeu_ps(att + j, e);
    s0 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), s0);
    s1 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)), s1);
  }
  if (j < n_pos) {
    __m256i m = tail_mask(n_pos - j);
    __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(att + j, m), vm));
    _mm256_maskstore_ps(att + j, m, e);
    e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
    s0 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(e)), s0);
    s1 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)), s1);
  }
  return hsum4d(_mm256_add_pd(s0, s1));
}

/* In-place softmax of x[n] (qn_softmax_ref's steps: max, e^(x - max), sum in double,
 * multiply by the rounded reciprocal): results within the vector exp's 1 ulp. */
void qn_softmax_avx2(float* x, int n) {
  if (n <= 0) return;
  float mx = x[0];
  int j = 0;
  if (n >= 8) {
    __m256 vm = _mm256_loadu_ps(x);
    for (j = 8; j + 8 <= n; j += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + j), vm);
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (int i = 0; i < 8; i++)
      if (lanes[i] > mx) mx = lanes[i];
  }
  for (; j < n; j++)
    if (x[j] > mx) mx = x[j];
  double sum = attn_exp(x, n, mx);
  attn_normalize(x, n, (float)(1.0 / sum));
}

/* out[0 .. 8*nfull (+ tail lanes)) += sum_j att[j] v_j[same range] for n positions:
 * nfull whole vectors plus, if has_tail, one vector of the lanes in `tail`, all held in
 * registers across the positions. Inlined with a constant nfull (0..8). */
static inline __attribute__((always_inline)) void weighted_rows(float* out, const float* v,
                                                                size_t stride, const float* att,
                                                                int n, const int nfull,
                                                                int has_tail, __m256i tail) {
  __m256 acc[8], acc_t = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int u = 0; u < nfull; u++) acc[u] = _mm256_loadu_ps(out + 8 * u);
  if (has_tail) acc_t = _mm256_maskload_ps(out + 8 * nfull, tail);
  for (int j = 0; j < n; j++) {
    const float* vr = v + (size_t)j * stride;
    __m256 a = _mm256_set1_ps(att[j]);
#pragma GCC unroll 8
    for (int u = 0; u < nfull; u++)
      acc[u] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vr + 8 * u), acc[u]);
    if (has_tail) acc_t = _mm256_fmadd_ps(a, _mm256_maskload_ps(vr + 8 * nfull, tail), acc_t);
  }
#pragma GCC unroll 8
  for (int u = 0; u < nfull; u++) _mm256_storeu_ps(out + 8 * u, acc[u]);
  if (has_tail) _mm256_maskstore_ps(out + 8 * nfull, tail, acc_t);
}

/* Positions per pass over the head dimension: their v rows (up to 32 x hd floats) stay in L1
 * while the blocks of 64 dimensions are accumulated one after the other. */
#define ATTN_POS_CHUNK 32

static void attn_values(const float* v, size_t stride, const float* att, int n_pos, int hd,
                        float* out) {
  for (int d = 0; d < hd; d++) out[d] = 0.0f;
  for (int j0 = 0; j0 < n_pos; j0 += ATTN_POS_CHUNK) {
    int n = n_pos - j0 < ATTN_POS_CHUNK ? n_pos - j0 : ATTN_POS_CHUNK;
    const float* vj = v + (size_t)j0 * stride;
    for (int d0 = 0; d0 < hd; d0 += 64) {
      int left = hd - d0, nfull = left >= 64 ? 8 : left / 8, has_tail = left < 64 && left % 8;
      __m256i tail = tail_mask(left % 8);
      float* o = out + d0;
      const float* vd = vj + d0;
      switch (nfull) {
        case 0: weighted_rows(o, vd, stride, att + j0, n, 0, has_tail, tail); break;
        case 1: weighted_rows(o, vd, stride, att + j0, n, 1, has_tail, tail); break;
        case 2: weighted_rows(o, vd, stride, att + j0, n, 2, has_tail, tail); break;
        case 3: weighted_rows(o, vd, stride, att + j0, n, 3, has_tail, tail); break;
        case 4: weighted_rows(o, vd, stride, att + j0, n, 4, has_tail, tail); break;
        case 5: weighted_rows(o, vd, stride, att + j0, n, 5, has_tail, tail); break;
        case 6: weighted_rows(o, vd, stride, att + j0, n, 6, has_tail, tail); break;
        case 7: weighted_rows(o, vd, stride, att + j0, n, 7, has_tail, tail); break;
        default: weighted_rows(o, vd, stride, att + j0, n, 8, 0, tail); break;
      }
    }
  }
}

/* qn_attn_head_ref's contract; like the reference, att ends holding the probabilities.
 * Differences from the reference: the q . k dots are summed in 8 lanes with FMA (error
 * <= hd u sum_d |q_d k_d| like the reference's sequential sum), exp8 for expf, the softmax sum
 * in double lanes (as the reference) but in another order, and the weighted sum of the v rows
 * with FMA. test_kernels_ops.c bounds |out - exact| by the conditioning of the softmax and
 * checks the reference against the same bound. */
void qn_attn_head_avx2(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                       int head_dim, float scale, float* att, float* out) {
  if (head_dim <= 0) return;
  if (n_pos <= 0) {
    for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
    return;
  }
  float mx = attn_scores(q, k, kv_stride, n_pos, head_dim, scale, att);
  attn_normalize(att, n_pos, (float)(1.0 / attn_exp(att, n_pos, mx)));
  attn_values(v, kv_stride, att, n_pos, head_dim, out);
}
