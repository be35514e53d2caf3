/* matvec_q4_avx2.c: AVX2 kernel of the int4-gN weight-only schemes for decode and small
 * batches over the packed i4x16 layout, with 16-bit activations split into two signed bytes
 * (layout and numerics in ../fx_q4.h; contract of qn_fx_rows_* in x86_kernels.h). The
 * AVX-512 kernel's scheme without VNNI, on 8-row halves of a 16-row block (32 of each 64-byte
 * chunk's bytes): low / high nibbles by and / shift / and; per token vpmaddubsw of each with
 * 4 activation bytes broadcast (pairs of products summed into int16: |.| <= 2 * 15 * 128)
 * and vpaddw, summed in int16 over a 32-column block (8 such sums: |.| <= 30720, no
 * overflow), then vpmaddwd by ones into the int32 sums. Per scale group the sums are combined
 * (xl part + 256 x xh part + the +8 correction), converted and multiplied by the 8 rows'
 * scales. The integer sums equal the AVX-512 kernel's, and so do the float steps: results
 * are bit-identical to it.
 *
 * An 8-row half at a time, at most 2 tokens per pass (16 ymm registers: per token the two
 * int16 sums, the group's int32 sum and the float sum). Prefetching as in the AVX-512 kernel.
 * (QN_ISA=avx2 quench bench -p 64 on the tinyllama-1.1b shape: prefill 84.6-86.3 tok/s, the
 * row-layout kernel this replaced 81.4-90.4.) */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/fx_q4.h"
#include "kernels/x86/x86_kernels.h"

#define Q4_INLINE static inline __attribute__((always_inline))

#define Q4_TOKENS 2 /* most tokens per pass */

/* 4 activation bytes at p broadcast to the 8 lanes. */
Q4_INLINE __m256i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/* Rows of half h (rows 16 b + 8 h .. + 7) of 16-row block b, stored where in [m->r0, m->r1), for
 * tokens t0 .. t0+T-1. */
Q4_INLINE void q4_half(const int T, const q4i_mat* m, int64_t b, int h, int t0) {
  const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const uint8_t* w = m->data + (size_t)b * m->block_bytes + 32 * (size_t)h;
  const uint16_t* ds = m->scales + (size_t)b * 16 * (size_t)m->n_groups + 8 * (size_t)h;
  const int8_t* xl[Q4_TOKENS];
  __m256 sum[Q4_TOKENS];
#pragma GCC unroll 2
  for (int t = 0; t < T; t++) {
    xl[t] = q4i_xl(m, t0 + t);
    sum[t] = _mm256_setzero_ps();
  }
  const int64_t xh = m->p_cols; /* xh[c] = xl[c + p_cols] */
  int64_t k = 0;                /* 32-column block */
  for (int64_t s = 0; s < m->n_groups; s++) {
    const int64_t k1 = q4i_group_end(m, k);
    __m256i tot[Q4_TOKENS]; /* the group's int32 sums, from the +8 correction on */
#pragma GCC unroll 2
    for (int t = 0; t < T; t++) tot[t] = _mm256_set1_epi32(q4i_offset(m, t0 + t, s));
    _mm_prefetch((const char*)(ds + 16 * s) + m->scale_ahead, _MM_HINT_T1);
    for (; k < k1; k++) {
      const uint8_t* wk = w + (size_t)k * Q4I_BLOCK_BYTES;
      __m256i pl[Q4_TOKENS], ph[Q4_TOKENS]; /* int16 sums over the block */
#pragma GCC unroll 2
      for (int t = 0; t < T; t++) {
        pl[t] = _mm256_setzero_si256();
        ph[t] = _mm256_setzero_si256();
      }
#pragma GCC unroll 1 /* unrolled, GCC hoists all 32 broadcasts and spills them */
      for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i*)(wk + 64 * j));
        _mm_prefetch((const char*)(wk + 64 * j) + Q4I_PREFETCH_BYTES, _MM_HINT_T1);
        const __m256i lo = _mm256_and_si256(v, nib);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
          const int8_t* x = xl[t] + 32 * k + 8 * j;
          pl[t] = _mm256_add_epi16(pl[t], _mm256_maddubs_epi16(lo, bcast4(x)));
          pl[t] = _mm256_add_epi16(pl[t], _mm256_maddubs_epi16(hi, bcast4(x + 4)));
          ph[t] = _mm256_add_epi16(ph[t], _mm256_maddubs_epi16(lo, bcast4(x + xh)));
          ph[t] = _mm256_add_epi16(ph[t], _mm256_maddubs_epi16(hi, bcast4(x + xh + 4)));
        }
      }
#pragma GCC unroll 2
      for (int t = 0; t < T; t++) {
        const __m256i h32 = _mm256_slli_epi32(_mm256_madd_epi16(ph[t], ones), 8);
        tot[t] = _mm256_add_epi32(tot[t], _mm256_add_epi32(_mm256_madd_epi16(pl[t], ones), h32));
      }
    }
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(ds + 16 * s)));
#pragma GCC unroll 2 /* tot: the AVX-512 kernel's int32 sum (no addition wraps) */
    for (int t = 0; t < T; t++) sum[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(tot[t]), d, sum[t]);
  }
  const int64_t row0 = 16 * b + 8 * h;
#pragma GCC unroll 2
  for (int t = 0; t < T; t++) {
    float y[8];
    _mm256_storeu_ps(y, _mm256_mul_ps(sum[t], _mm256_set1_ps(q4i_step(m, t0 + t))));
    float* out = m->Y + (size_t)(t0 + t) * (size_t)m->rows;
    for (int i = 0; i < 8; i++)
      if (row0 + i >= m->r0 && row0 + i < m->r1) out[row0 + i] = y[i];
  }
}

/* One instance per T, so every loop above has constant bounds. */
typedef void (*q4_half_fn)(const q4i_mat* m, int64_t b, int h, int t0);
#define Q4_DEF(T) \
  static void q4_half_##T(const q4i_mat* m, int64_t b, int h, int t0) { q4_half(T, m, b, h, t0); }
Q4_DEF(1)
Q4_DEF(2)
static const q4_half_fn k_q4_halves[Q4_TOKENS] = {q4_half_1, q4_half_2};

/* ---- activations ------------------------------------------------------------------------ */

static inline float hmax(__m256 v) {
  float l[8], m = 0.0f;
  _mm256_storeu_ps(l, v);
  for (int i = 0; i < 8; i++) m = l[i] > m ? l[i] : m;
  return m;
}

static inline int32_t hsum_epi32(__m256i v) {
  int32_t l[8], s = 0;
  _mm256_storeu_si256((__m256i*)l, v);
  for (int i = 0; i < 8; i++) s += l[i];
  return s;
}

/* Lanes i < left of 8 (all for left >= 8) as a maskload mask. */
static inline __m256i lanes_below(int64_t left) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)), idx);
}

void qn_q4_prep_avx2(const qn_qtensor* W, const float* X, int n, float* prep) {
  const int64_t cols = W->cols, n_groups = qn_qtype_n_groups(W->type, cols);
  const int64_t group = qn_qtype_traits_of(W->type)->group, p_cols = q4i_padded_cols(cols);
  const size_t stride = q4i_token_bytes(cols, n_groups);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i r128 = _mm256_set1_epi32(128);
  for (int t = 0; t < n; t++) {
    const float* x = X + (size_t)t * (size_t)cols;
    uint8_t* out = (uint8_t*)prep + (size_t)t * stride;
    __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int64_t c = 0; c < cols; c += 8) {
      __m256 v = _mm256_maskload_ps(x + c, lanes_below(cols - c));
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
      bad = _mm256_fmadd_ps(v, _mm256_setzero_ps(), bad); /* NaN once an x is inf or NaN */
    }
    float bads[8], bd = 0.0f;
    _mm256_storeu_ps(bads, bad);
    for (int i = 0; i < 8; i++) bd += bads[i];
    const bool finite = bd == 0.0f;
    const int e = finite ? q4i_step_exponent(hmax(amax)) : 0;
    const float sx = finite ? ldexpf(1.0f, e) : __builtin_nanf("");
    const __m256 inv = _mm256_set1_ps(finite ? ldexpf(1.0f, -e) : 0.0f);
    memset(out, 0, stride);
    memcpy(out, &sx, sizeof sx);
    int8_t* xl = (int8_t*)out + Q4I_HEAD_BYTES;
    int8_t* xh = xl + p_cols;
    uint8_t* cs = out + Q4I_HEAD_BYTES + 2 * (size_t)p_cols;
    for (int64_t s = 0; s < n_groups; s++) {
      const int64_t c1 = (s + 1) * group < cols ? (s + 1) * group : cols;
      __m256i qsum = _mm256_setzero_si256();
      for (int64_t c = s * group; c < c1; c += 8) {
        /* lanes past the group load 0 (inv = 0 for a non-finite token: every xq 0) */
        const __m256 f = _mm256_maskload_ps(x + c, lanes_below(c1 - c));
        const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(f, inv));
        const __m256i hi = _mm256_srai_epi32(_mm256_add_epi32(q, r128), 8);
        const __m256i lo = _mm256_sub_epi32(q, _mm256_slli_epi32(hi, 8));
        /* bytes: [lo 0-3, hi 0-3, ..] in the low 128-bit lane, [lo 4-7, hi 4-7, ..] in the high */
        const __m256i p16 = _mm256_packs_epi32(lo, hi);
        const __m256i p8 = _mm256_packs_epi16(p16, p16);
        int32_t part[8];
        _mm256_storeu_si256((__m256i*)part, p8);
        /* c + 8 <= p_cols: the padding columns are written with zeros */
        memcpy(xl + c, &part[0], 4);
        memcpy(xh + c, &part[1], 4);
        memcpy(xl + c + 4, &part[4], 4);
        memcpy(xh + c + 4, &part[5], 4);
        qsum = _mm256_add_epi32(qsum, q);
      }
      const int32_t csum = -8 * hsum_epi32(qsum);
      memcpy(cs + 4 * (size_t)s, &csum, 4);
    }
  }
}

/* ---- entry point ------------------------------------------------------------------------ */

/* Both 8-row halves of the block at row r that hold rows the call stores. */
static void run_block(const void* ctx, bool full, int T, int64_t r, int t0) {
  (void)full; /* q4i_run walks whole 16-row blocks */
  const q4i_mat* m = ctx;
  for (int h = 0; h < 2; h++)
    if (r + 8 * h < m->r1 && r + 8 * h + 8 > m->r0) k_q4_halves[T - 1](m, r / 16, h, t0);
}

void qn_q4_rows_avx2(const qn_qtensor* W, const float* prep, int n, float* Y, int64_t r0,
                     int64_t r1) {
  q4i_mat m;
  q4i_mat_init(&m, W, prep, Y, r0, r1);
  q4i_run(&m, n, run_block, Q4_TOKENS);
}
