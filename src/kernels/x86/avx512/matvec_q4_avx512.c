/* matvec_q4_avx512.c: AVX-512 VNNI kernel of the int4-gN weight-only schemes for decode and
 * small batches: Y[t][r] = sum_c (q[r][c] - 8) d[r][g(c)] x[t][c], with 16-bit activations
 * (layout and numerics in ../fx_q4.h; contract of qn_fx_rows_* in x86_kernels.h).
 *
 * Per 128-column block and row: one 64-byte load; four and/shift operations give the codes
 * c_0..c_3 as 32 16-bit lanes each; per token four vpdpwssd add c_k * X_k into the block's
 * offsets C (exact int32 sums of (q - 8) xq over 8 columns per lane), one vcvtdq2ps and one
 * FMA by the lanes' group scales (a vpermps of the row's 16 converted fp16 scales) add them
 * to the row's float accumulator; the token's step sx multiplies the reduced sum. That is ~15
 * vector instructions per 128 weights for one token, against ~28 for the float-activation
 * table decode this replaced (2 vpermps per 32 weights), and a third of its shuffles.
 *
 * Rows are taken 4 at a time (1 for the leftovers) and tokens up to 4 per pass; a row's
 * result does not depend on its block or pass. The ragged last block is read with a byte-
 * masked load (nothing past the row); its columns past the row have xq = 0, so whatever the
 * unused high nibble of the row's last byte holds adds nothing.
 *
 * Memory: every 64 payload bytes prefetch (into L2) the same offset of the block of rows at
 * least 8 KB further on, and every batch of 16 scales those rows' scales. This VM streams
 * poorly on its hardware prefetchers alone (one core read int4 rows at ~6.5 GB/s without the
 * software prefetch, ~11-14 with the payload 4 KB ahead and no scale prefetch, ~16-20 as
 * now; /tmp micro-benchmark, shared machine); the float kernels' int8 rows (2 KB) already
 * put their next-block prefetch 8 KB ahead. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/fx_q4.h"
#include "kernels/x86/fx_tiles.h"
#include "kernels/x86/x86_kernels.h"

#define Q4_INLINE static inline __attribute__((always_inline))

#define Q4_ROWS 4   /* rows per block */
#define Q4_TOKENS 4 /* most tokens per pass */

/* The fp16 values p[0 .. count-1] (count clamped to 16; nothing past them is read; the other
 * lanes 0) as floats. */
Q4_INLINE __m512 load_f16x16(const uint8_t* p, int64_t count) {
  __m256i h = count >= 16 ? _mm256_loadu_si256((const __m256i*)p)
                          : _mm256_maskz_loadu_epi16((__mmask16)((1u << count) - 1u), p);
  return _mm512_cvtph_ps(h);
}

/* Rows r .. r+R-1, tokens t0 .. t0+T-1. */
Q4_INLINE void q4_block(int R, int T, const q4i_mat* m, int64_t r, int t0) {
  __m512 acc[Q4_ROWS][Q4_TOKENS];
  const uint8_t* row[Q4_ROWS];
#pragma GCC unroll 4
  for (int i = 0; i < R; i++) {
    row[i] = m->data + (size_t)(r + i) * m->row_bytes;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[i][t] = _mm512_setzero_ps();
  }
  const uint8_t* xs = m->prep + (size_t)t0 * m->prep_stride + Q4I_HEAD_BYTES;
  const __m512i nib = _mm512_set1_epi16(0x000f);
  /* lane l of a block sums columns 8l..8l+7: group (4 b + l / 4) >> gshift of the batch */
  const __m512i lane_group = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const int64_t per_batch = (int64_t)4 << m->gshift; /* blocks per 16 scale groups */
  const __mmask64 tail_kb =
      m->tail_bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << m->tail_bytes) - 1;
  for (int64_t b0 = 0; b0 < m->blocks; b0 += per_batch) {
    const int64_t g0 = (b0 * 4) >> m->gshift;
    __m512 sc[Q4_ROWS];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
      const uint8_t* ps = m->scales + (size_t)(r + i) * m->scale_bytes + 2 * (size_t)g0;
      sc[i] = load_f16x16(ps, m->n_groups - g0);
      _mm_prefetch((const char*)((uintptr_t)ps + m->prefetch_scales), _MM_HINT_T1);
    }
    const int64_t b1 = b0 + per_batch < m->blocks ? b0 + per_batch : m->blocks;
    for (int64_t b = b0; b < b1; b++) {
      const __mmask64 kb = b < m->full_blocks ? ~(__mmask64)0 : tail_kb; /* no branch */
      const __m512i gi = _mm512_srli_epi32(
          _mm512_add_epi32(lane_group, _mm512_set1_epi32((int)(4 * (b - b0)))), m->gshift);
      const uint8_t* xb = xs + (size_t)b * Q4I_BLOCK_BYTES;
#pragma GCC unroll 4
      for (int i = 0; i < R; i++) {
        const uint8_t* p = row[i] + 64 * (size_t)b;
        __m512i w = _mm512_maskz_loadu_epi8(kb, p);
        _mm_prefetch((const char*)((uintptr_t)p + m->prefetch_ahead), _MM_HINT_T1);
        const __m512i c0 = _mm512_and_si512(w, nib);
        const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(w, 4), nib);
        const __m512i c2 = _mm512_and_si512(_mm512_srli_epi16(w, 8), nib);
        const __m512i c3 = _mm512_srli_epi16(w, 12);
        const __m512 s = _mm512_permutexvar_ps(gi, sc[i]);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
          const uint8_t* x = xb + (size_t)t * m->prep_stride;
          __m512i p32 = _mm512_loadu_si512(x + Q4I_X_BYTES);
          p32 = _mm512_dpwssd_epi32(p32, c0, _mm512_loadu_si512(x));
          p32 = _mm512_dpwssd_epi32(p32, c1, _mm512_loadu_si512(x + 64));
          p32 = _mm512_dpwssd_epi32(p32, c2, _mm512_loadu_si512(x + 128));
          p32 = _mm512_dpwssd_epi32(p32, c3, _mm512_loadu_si512(x + 192));
          acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p32), s, acc[i][t]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) {
    float sx;
    memcpy(&sx, m->prep + (size_t)(t0 + t) * m->prep_stride, sizeof sx);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
      m->Y[(size_t)(t0 + t) * (size_t)m->rows + (size_t)(r + i)] =
          _mm512_reduce_add_ps(acc[i][t]) * sx;
  }
}

/* One instance per (R, T), so every loop above has constant bounds. */
typedef void (*q4_block_fn)(const q4i_mat* m, int64_t r, int t0);
#define Q4_DEF(R, T) \
  static void q4_##R##_##T(const q4i_mat* m, int64_t r, int t0) { q4_block(R, T, m, r, t0); }
Q4_DEF(1, 1)
Q4_DEF(1, 2)
Q4_DEF(1, 3)
Q4_DEF(1, 4)
Q4_DEF(4, 1)
Q4_DEF(4, 2)
Q4_DEF(4, 3)
Q4_DEF(4, 4)
static const q4_block_fn k_q4_blocks[2][Q4_TOKENS] = {{q4_1_1, q4_1_2, q4_1_3, q4_1_4},
                                                      {q4_4_1, q4_4_2, q4_4_3, q4_4_4}};

/* ---- activations ------------------------------------------------------------------------ */

/* out[j] = the 32 16-bit values in[4 j + k], j < 32, of the 128 16-bit values in[] held in
 * a0..a3 (32 each). */
static inline __m512i gather4(__m512i a0, __m512i a1, __m512i a2, __m512i a3, int k) {
  static const int16_t stride4[32] = {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60,
                                      0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60};
  const __m512i idx = _mm512_add_epi16(_mm512_loadu_si512(stride4), _mm512_set1_epi16((short)k));
  __m512i lo = _mm512_permutex2var_epi16(a0, idx, a1); /* lanes 0..15: j = 0..15 */
  __m512i hi = _mm512_permutex2var_epi16(a2, idx, a3); /* lanes 0..15: j = 16..31 */
  return _mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1);
}

void qn_q4_prep_avx512(const qn_qtensor* W, const float* X, int n, float* prep) {
  const int64_t cols = W->cols, blocks = q4i_blocks(cols);
  const size_t stride = q4i_token_bytes(cols);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512i m8 = _mm512_set1_epi16(-8);
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
    const __m512 inv = _mm512_set1_ps(ldexpf(1.0f, -e));
    memset(out, 0, Q4I_HEAD_BYTES);
    memcpy(out, &sx, sizeof sx);
    for (int64_t b = 0; b < blocks; b++) {
      __m512i h[4]; /* xq of the block's 128 columns in order, 32 per vector */
      for (int v = 0; v < 4; v++) {
        __m256i half[2];
        for (int u = 0; u < 2; u++) {
          const int64_t c = 128 * b + 32 * v + 16 * u, left = cols - c;
          const __mmask16 k = left >= 16  ? (__mmask16)0xffff
                              : left <= 0 ? (__mmask16)0
                                          : (__mmask16)((1u << left) - 1u);
          __m512 f = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + (left > 0 ? c : 0)), inv);
          half[u] = finite ? _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(f)) : _mm256_setzero_si256();
        }
        h[v] = _mm512_inserti64x4(_mm512_castsi256_si512(half[0]), half[1], 1);
      }
      uint8_t* ob = out + Q4I_HEAD_BYTES + (size_t)b * Q4I_BLOCK_BYTES;
      __m512i c32 = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        __m512i xk = gather4(h[0], h[1], h[2], h[3], k);
        _mm512_storeu_si512(ob + 64 * k, xk);
        c32 = _mm512_dpwssd_epi32(c32, xk, m8);
      }
      _mm512_storeu_si512(ob + Q4I_X_BYTES, c32);
    }
  }
}

/* ---- entry point ------------------------------------------------------------------------ */

static void run_block(const void* ctx, bool full, int T, int64_t r, int t0) {
  k_q4_blocks[full][T - 1](ctx, r, t0);
}

void qn_q4_rows_avx512(const qn_qtensor* W, const float* prep, int n, float* Y, int64_t r0,
                       int64_t r1) {
  q4i_mat m;
  q4i_mat_init(&m, W, prep, Y, Q4_ROWS);
  qn_fx_for_blocks(&m, run_block, r0, r1, n, Q4_ROWS, Q4_TOKENS);
}
