/* matvec_q4_avx512.c: AVX-512 VNNI kernel of the int4-gN weight-only schemes for decode and
 * small batches over the packed i4x16 layout: Y[t][r] = sum_c (q[r][c] - 8) d[r][g(c)] x[t][c]
 * with 16-bit activations split into two signed bytes (layout and numerics in ../fx_q4.h;
 * contract of qn_fx_rows_* in x86_kernels.h).
 *
 * Per 64-byte chunk of a 16-row block (8 columns of 16 rows): one load, and / shift / and for
 * the low and high nibbles, then per token four vpdpbusd with 4 activation bytes broadcast
 * from memory (low codes x xl, high codes x xl, and the same with xh) into two int32 sums per
 * row; per scale group one shift + add, one vcvtdq2ps and one FMA by the 16 rows' scales
 * (16 contiguous fp16 values, one vcvtph2ps). That is ~7 vector instructions per 128 weights
 * and token plus ~1 per group, against ~15 for the row-layout kernel this replaced (four
 * nibble shifts and masks, vpdpwssd on 16-bit codes, and a scale permute per 128 weights),
 * and the results need no horizontal reduction: lane r is row r.
 *
 * A 16-row block is walked in passes of at most 4 tokens (a token tile's passes re-read the
 * block from L1/L2). Memory: a block's payload and scales, and consecutive blocks, are one
 * contiguous run each, so every chunk prefetches (into L2) the byte Q4I_PREFETCH_BYTES ahead
 * and every group the scales as far ahead, and pulls the line Q4I_L1_PREFETCH_BYTES ahead
 * from L2 into L1 (decode of the tinyllama-1.1b shape, 2 threads: +2.5-5% tok/s in 7 of 8
 * interleaved rounds, docs/BENCHMARKS.md; the same L1 prefetch slows the int8 float kernel,
 * whose 4 row streams it crowds); the start of a call's range is prefetched first. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/fx_q4.h"
#include "kernels/x86/x86_kernels.h"

#define Q4_INLINE static inline __attribute__((always_inline))

#define Q4_TOKENS 4 /* most tokens per pass */

/* 4 activation bytes at p broadcast to the 16 lanes. */
Q4_INLINE __m512i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

/* Lanes of rows 16 b .. 16 b + 15 that lie in [r0, r1) (the rows the call stores). */
Q4_INLINE __mmask16 rows_mask(int64_t b, int64_t r0, int64_t r1) {
  int64_t lo = r0 - 16 * b, hi = r1 - 16 * b;
  if (lo < 0) lo = 0;
  if (hi > 16) hi = 16;
  if (hi <= lo) return 0;
  return (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* Rows of 16-row block b (stored where in [m->r0, m->r1)), tokens t0 .. t0+T-1. */
Q4_INLINE void q4_tile(const int T, const q4i_mat* m, int64_t b, int t0) {
  const __m512i nib = _mm512_set1_epi8(0x0f);
  const uint8_t* w = m->data + (size_t)b * m->block_bytes;
  const uint16_t* ds = m->scales + (size_t)b * 16 * (size_t)m->n_groups;
  const int8_t* xl[Q4_TOKENS];
  __m512 sum[Q4_TOKENS];
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) {
    xl[t] = q4i_xl(m, t0 + t);
    sum[t] = _mm512_setzero_ps();
  }
  const int64_t xh = m->p_cols; /* xh[c] = xl[c + p_cols] */
  int64_t k = 0;                /* 32-column block */
  for (int64_t s = 0; s < m->n_groups; s++) {
    const int64_t k1 = q4i_group_end(m, k);
    __m512i al[Q4_TOKENS], ah[Q4_TOKENS]; /* al starts at the +8 correction */
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      al[t] = _mm512_set1_epi32(q4i_offset(m, t0 + t, s));
      ah[t] = _mm512_setzero_si512();
    }
    _mm_prefetch((const char*)(ds + 16 * s) + m->scale_ahead, _MM_HINT_T1);
    for (; k < k1; k++) {
      const uint8_t* wk = w + (size_t)k * Q4I_BLOCK_BYTES;
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) {
        const __m512i v = _mm512_loadu_si512(wk + 64 * j);
        _mm_prefetch((const char*)(wk + 64 * j) + Q4I_PREFETCH_BYTES, _MM_HINT_T1);
        _mm_prefetch((const char*)(wk + 64 * j) + Q4I_L1_PREFETCH_BYTES, _MM_HINT_T0);
        const __m512i lo = _mm512_and_si512(v, nib);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
          const int8_t* x = xl[t] + 32 * k + 8 * j;
          al[t] = _mm512_dpbusd_epi32(al[t], lo, bcast4(x));
          al[t] = _mm512_dpbusd_epi32(al[t], hi, bcast4(x + 4));
          ah[t] = _mm512_dpbusd_epi32(ah[t], lo, bcast4(x + xh));
          ah[t] = _mm512_dpbusd_epi32(ah[t], hi, bcast4(x + xh + 4));
        }
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(ds + 16 * s)));
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      const __m512i tot = _mm512_add_epi32(al[t], _mm512_slli_epi32(ah[t], 8));
      sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), d, sum[t]);
    }
  }
  const __mmask16 keep = rows_mask(b, m->r0, m->r1);
#pragma GCC unroll 4
  for (int t = 0; t < T; t++)
    _mm512_mask_storeu_ps(m->Y + (size_t)(t0 + t) * (size_t)m->rows + 16 * (size_t)b, keep,
                          _mm512_mul_ps(sum[t], _mm512_set1_ps(q4i_step(m, t0 + t))));
}

/* One instance per T, so every loop above has constant bounds. */
typedef void (*q4_tile_fn)(const q4i_mat* m, int64_t b, int t0);
#define Q4_DEF(T) \
  static void q4_tile_##T(const q4i_mat* m, int64_t b, int t0) { q4_tile(T, m, b, t0); }
Q4_DEF(1)
Q4_DEF(2)
Q4_DEF(3)
Q4_DEF(4)
static const q4_tile_fn k_q4_tiles[Q4_TOKENS] = {q4_tile_1, q4_tile_2, q4_tile_3, q4_tile_4};

/* ---- activations ------------------------------------------------------------------------ */

void qn_q4_prep_avx512(const qn_qtensor* W, const float* X, int n, float* prep) {
  const int64_t cols = W->cols, n_groups = qn_qtype_n_groups(W->type, cols);
  const int64_t group = qn_qtype_traits_of(W->type)->group, p_cols = q4i_padded_cols(cols);
  const size_t stride = q4i_token_bytes(cols, n_groups);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int t = 0; t < n; t++) {
    const float* x = X + (size_t)t * (size_t)cols;
    uint8_t* out = (uint8_t*)prep + (size_t)t * stride;
    __m512 amax = _mm512_setzero_ps(), bad = _mm512_setzero_ps();
    for (int64_t c = 0; c < cols; c += 16) {
      __mmask16 k = cols - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - c)) - 1u);
      __m512 v = _mm512_maskz_loadu_ps(k, x + c);
      amax = _mm512_max_ps(amax, _mm512_andnot_ps(sign, v));
      bad = _mm512_fmadd_ps(v, _mm512_setzero_ps(), bad); /* NaN once an x is inf or NaN */
    }
    const float am = _mm512_reduce_max_ps(amax);
    const bool finite = _mm512_reduce_add_ps(bad) == 0.0f;
    const int e = finite ? q4i_step_exponent(am) : 0;
    const float sx = finite ? ldexpf(1.0f, e) : __builtin_nanf("");
    const __m512 inv = _mm512_set1_ps(finite ? ldexpf(1.0f, -e) : 0.0f);
    memset(out, 0, stride);
    memcpy(out, &sx, sizeof sx);
    int8_t* xl = (int8_t*)out + Q4I_HEAD_BYTES;
    int8_t* xh = xl + p_cols;
    uint8_t* cs = out + Q4I_HEAD_BYTES + 2 * (size_t)p_cols;
    const __m512i r128 = _mm512_set1_epi32(128);
    for (int64_t s = 0; s < n_groups; s++) {
      const int64_t c1 = (s + 1) * group < cols ? (s + 1) * group : cols;
      __m512i qsum = _mm512_setzero_si512();
      for (int64_t c = s * group; c < c1; c += 16) {
        const __mmask16 k = c1 - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c1 - c)) - 1u);
        /* inv = 0 for a non-finite token: every xq 0 (its sx is NaN) */
        const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), inv));
        const __m512i hi = _mm512_srai_epi32(_mm512_add_epi32(q, r128), 8);
        const __m512i lo = _mm512_sub_epi32(q, _mm512_slli_epi32(hi, 8));
        _mm512_mask_cvtepi32_storeu_epi8(xl + c, k, lo);
        _mm512_mask_cvtepi32_storeu_epi8(xh + c, k, hi);
        qsum = _mm512_add_epi32(qsum, q);
      }
      const int32_t csum = -8 * _mm512_reduce_add_epi32(qsum);
      memcpy(cs + 4 * (size_t)s, &csum, 4);
    }
  }
}

/* ---- entry point ------------------------------------------------------------------------ */

static void run_block(const void* ctx, bool full, int T, int64_t r, int t0) {
  (void)full; /* q4i_run walks whole 16-row blocks */
  k_q4_tiles[T - 1](ctx, r / 16, t0);
}

void qn_q4_rows_avx512(const qn_qtensor* W, const float* prep, int n, float* Y, int64_t r0,
                       int64_t r1) {
  q4i_mat m;
  q4i_mat_init(&m, W, prep, Y, r0, r1);
  q4i_run(&m, n, run_block, Q4_TOKENS);
}
