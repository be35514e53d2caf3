/* matvec_q4_avx2.c: AVX2 kernel of the int4-gN weight-only schemes for decode and small
 * batches, with 16-bit activations (layout and numerics in ../fx_q4.h; contract of
 * qn_fx_rows_* in x86_kernels.h). The AVX-512 kernel's scheme on 256-bit halves: each
 * 128-column block is two halves of 32 payload bytes; four and/shift operations give the
 * codes c_0..c_3 (16 16-bit lanes each); per token vpmaddwd + vpaddd add c_k * X_k into the
 * half's offsets C (exact int32 sums of (q - 8) xq over 8 columns per lane), then one
 * vcvtdq2ps and one FMA by the lanes' group scales (vpermps of 8 converted fp16 scales). The
 * result equals the AVX-512 kernel's bit for bit only when the float sums are exact (the lane
 * count differs); both meet the bound of tests/unit/test_kernels_float.c.
 *
 * Rows 4 at a time (1 for the leftovers), at most 2 tokens per pass (16 ymm registers). The
 * ragged last block's payload bytes are copied into a zeroed buffer (AVX2 has no byte-masked
 * load); its columns past the row have xq = 0, so they add nothing. Prefetching as in the
 * AVX-512 kernel: payload and scales of the rows at least 8 KB further on. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/fx_q4.h"
#include "kernels/x86/fx_tiles.h"
#include "kernels/x86/x86_kernels.h"

#define Q4_INLINE static inline __attribute__((always_inline))

#define Q4_ROWS 4   /* rows per block */
#define Q4_TOKENS 2 /* most tokens per pass */

/* The fp16 values p[0 .. count-1] (count clamped to 8; nothing past them is read; the other
 * lanes 0) as floats. */
Q4_INLINE __m256 load_f16x8(const uint8_t* p, int64_t count) {
  __m128i h;
  if (count >= 8) {
    h = _mm_loadu_si128((const __m128i*)p);
  } else {
    uint16_t buf[8] = {0};
    memcpy(buf, p, 2 * (size_t)count);
    h = _mm_loadu_si128((const __m128i*)buf);
  }
  return _mm256_cvtph_ps(h);
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Rows r .. r+R-1, tokens t0 .. t0+T-1. */
Q4_INLINE void q4_block(int R, int T, const q4i_mat* m, int64_t r, int t0) {
  __m256 acc[Q4_ROWS][Q4_TOKENS];
  const uint8_t* row[Q4_ROWS];
#pragma GCC unroll 4
  for (int i = 0; i < R; i++) {
    row[i] = m->data + (size_t)(r + i) * m->row_bytes;
#pragma GCC unroll 2
    for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
  }
  const uint8_t* xs = m->prep + (size_t)t0 * m->prep_stride + Q4I_HEAD_BYTES;
  const __m256i nib = _mm256_set1_epi16(0x000f);
  /* lane l of half h of a block sums columns 64h + 8l ..: group (4 b + 2 h + l / 4) >> gshift */
  const __m256i lane_group[2] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1),
                                 _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)};
  const int64_t per_batch = (int64_t)2 << m->gshift; /* blocks per 8 scale groups */
  for (int64_t b0 = 0; b0 < m->blocks; b0 += per_batch) {
    const int64_t g0 = (b0 * 4) >> m->gshift;
    __m256 sc[Q4_ROWS];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
      const uint8_t* ps = m->scales + (size_t)(r + i) * m->scale_bytes + 2 * (size_t)g0;
      sc[i] = load_f16x8(ps, m->n_groups - g0);
      _mm_prefetch((const char*)((uintptr_t)ps + m->prefetch_scales), _MM_HINT_T1);
    }
    const int64_t b1 = b0 + per_batch < m->blocks ? b0 + per_batch : m->blocks;
    for (int64_t b = b0; b < b1; b++) {
      const uint8_t* xb = xs + (size_t)b * Q4I_BLOCK_BYTES;
#pragma GCC unroll 4
      for (int i = 0; i < R; i++) {
        const uint8_t* p = row[i] + 64 * (size_t)b;
        uint8_t tail[64];
        if (b >= m->full_blocks) {
          memset(tail, 0, sizeof tail);
          memcpy(tail, p, (size_t)m->tail_bytes);
          p = tail;
        } else {
          _mm_prefetch((const char*)((uintptr_t)p + m->prefetch_ahead), _MM_HINT_T1);
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
          const __m256i w = _mm256_loadu_si256((const __m256i*)(p + 32 * h));
          const __m256i c0 = _mm256_and_si256(w, nib);
          const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
          const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(w, 8), nib);
          const __m256i c3 = _mm256_srli_epi16(w, 12);
          const __m256i gi = _mm256_srli_epi32(
              _mm256_add_epi32(lane_group[h], _mm256_set1_epi32((int)(4 * (b - b0)))), m->gshift);
          const __m256 s = _mm256_permutevar8x32_ps(sc[i], gi);
#pragma GCC unroll 2
          for (int t = 0; t < T; t++) {
            const uint8_t* x = xb + (size_t)t * m->prep_stride + 32 * h;
            __m256i p32 = _mm256_loadu_si256((const __m256i*)(x + Q4I_X_BYTES));
            p32 = _mm256_add_epi32(p32,
                                   _mm256_madd_epi16(c0, _mm256_loadu_si256((const __m256i*)(x))));
            p32 = _mm256_add_epi32(
                p32, _mm256_madd_epi16(c1, _mm256_loadu_si256((const __m256i*)(x + 64))));
            p32 = _mm256_add_epi32(
                p32, _mm256_madd_epi16(c2, _mm256_loadu_si256((const __m256i*)(x + 128))));
            p32 = _mm256_add_epi32(
                p32, _mm256_madd_epi16(c3, _mm256_loadu_si256((const __m256i*)(x + 192))));
            acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, acc[i][t]);
          }
        }
      }
    }
  }
#pragma GCC unroll 2
  for (int t = 0; t < T; t++) {
    float sx;
    memcpy(&sx, m->prep + (size_t)(t0 + t) * m->prep_stride, sizeof sx);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
      m->Y[(size_t)(t0 + t) * (size_t)m->rows + (size_t)(r + i)] = hsum(acc[i][t]) * sx;
  }
}

/* One instance per (R, T), so every loop above has constant bounds. */
typedef void (*q4_block_fn)(const q4i_mat* m, int64_t r, int t0);
#define Q4_DEF(R, T) \
  static void q4_##R##_##T(const q4i_mat* m, int64_t r, int t0) { q4_block(R, T, m, r, t0); }
Q4_DEF(1, 1)
Q4_DEF(1, 2)
Q4_DEF(4, 1)
Q4_DEF(4, 2)
static const q4_block_fn k_q4_blocks[2][Q4_TOKENS] = {{q4_1_1, q4_1_2}, {q4_4_1, q4_4_2}};

/* ---- activations ------------------------------------------------------------------------ */

void qn_q4_prep_avx2(const qn_qtensor* W, const float* X, int n, float* prep) {
  const int64_t cols = W->cols, blocks = q4i_blocks(cols);
  const size_t stride = q4i_token_bytes(cols);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int t = 0; t < n; t++) {
    const float* x = X + (size_t)t * (size_t)cols;
    uint8_t* out = (uint8_t*)prep + (size_t)t * stride;
    __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      __m256 v = _mm256_loadu_ps(x + c);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
      bad = _mm256_fmadd_ps(v, _mm256_setzero_ps(), bad); /* NaN once an x is inf or NaN */
    }
    float am = 0.0f, bd = hsum(bad);
    float lanes[8];
    _mm256_storeu_ps(lanes, amax);
    for (int k = 0; k < 8; k++) am = lanes[k] > am ? lanes[k] : am;
    for (; c < cols; c++) {
      am = fabsf(x[c]) > am ? fabsf(x[c]) : am;
      bd += x[c] * 0.0f;
    }
    const bool finite = bd == 0.0f;
    const int e = finite ? q4i_step_exponent(am) : 0;
    const float sx = finite ? ldexpf(1.0f, e) : __builtin_nanf("");
    const __m256 inv = _mm256_set1_ps(ldexpf(1.0f, -e));
    memset(out, 0, Q4I_HEAD_BYTES);
    memcpy(out, &sx, sizeof sx);
    for (int64_t b = 0; b < blocks; b++) {
      float f[Q4I_BLOCK_COLS] = {0};
      int32_t q[Q4I_BLOCK_COLS];
      const int64_t c0 = Q4I_BLOCK_COLS * b;
      const int64_t nc = cols - c0 < Q4I_BLOCK_COLS ? cols - c0 : Q4I_BLOCK_COLS;
      if (finite) memcpy(f, x + c0, sizeof(float) * (size_t)nc);
      for (int v = 0; v < Q4I_BLOCK_COLS; v += 8) /* exact product, then round half even */
        _mm256_storeu_si256((__m256i*)(q + v),
                            _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(f + v), inv)));
      uint8_t* ob = out + Q4I_HEAD_BYTES + (size_t)b * Q4I_BLOCK_BYTES;
      int16_t xk[4][32];
      int32_t off[16];
      for (int i = 0; i < 32; i++)
        for (int k = 0; k < 4; k++) xk[k][i] = (int16_t)q[4 * i + k];
      for (int l = 0; l < 16; l++) {
        int32_t s = 0;
        for (int j = 0; j < 8; j++) s += q[8 * l + j];
        off[l] = -8 * s;
      }
      memcpy(ob, xk, sizeof xk);
      memcpy(ob + Q4I_X_BYTES, off, sizeof off);
    }
  }
}

/* ---- entry point ------------------------------------------------------------------------ */

static void run_block(const void* ctx, bool full, int T, int64_t r, int t0) {
  k_q4_blocks[full][T - 1](ctx, r, t0);
}

void qn_q4_rows_avx2(const qn_qtensor* W, const float* prep, int n, float* Y, int64_t r0,
                     int64_t r1) {
  q4i_mat m;
  q4i_mat_init(&m, W, prep, Y, Q4_ROWS);
  qn_fx_for_blocks(&m, run_block, r0, r1, n, Q4_ROWS, Q4_TOKENS);
}
