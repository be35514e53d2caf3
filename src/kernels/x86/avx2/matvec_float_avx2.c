/* matvec_float_avx2.c: AVX2 + FMA + F16C kernels of the weight-only schemes (float
 * activations) for decode and small batches: Y[t][r] = sum_c w[r][c] x[t][c] with the weights
 * dequantized in registers, never stored as f32 (contract in x86_kernels.h).
 *
 * Same shape as the AVX-512 kernels (matvec_float_avx512.c): blocks of 4 rows (1 for the
 * leftover rows), 32-column chunks decoded into four 8-float vectors, at most 2 tokens per
 * pass (16 ymm registers: 8 accumulators, group state, temporaries), one accumulator per
 * (row, token). The ragged last chunk's payload bytes are copied into a zeroed buffer (AVX2
 * has no byte-masked load), its activations read with vmaskmovps, and unused lanes zeroed.
 *
 * int4-gN is not here: it runs on 16-bit activations in matvec_q4_avx2.c.
 *
 * Numerics: the dequantized weight of every grouped scheme is bit-identical to the
 * reference's: int8-gN (float)q * d; int4a-gN min + nibble * s, multiply then
 * add; int3-gN an 8-entry table of (q - 4) * d read with vpermps. int8-channel and fp8-*
 * scale the row's code sum once by the f32 row scale (see the AVX-512 file for the fp8
 * decoding tricks and the e4m3 NaN rule, shared here). bf16 is widened exactly by a shift
 * (never through vdpbf16ps, which would round the activations to bf16). The error bound is
 * the AVX-512 kernels' (stated there). Like them, every chunk prefetches the same offset of
 * the next block's rows into L2. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/fx_kind.h"
#include "kernels/x86/fx_mat.h"
#include "kernels/x86/fx_tiles.h"
#include "kernels/x86/x86_kernels.h"

#define FX_INLINE static inline __attribute__((always_inline))

/* Rows per block and most tokens per pass. */
#define FX_ROWS 4
#define FX_TOKENS 2

static fx_kind kind_of(qn_qtype t) { return qn_fx_kind_of(t); }

/* Payload bytes of one 32-column chunk. */
static inline int chunk_bytes(fx_kind k) {
  switch (k) {
    case FX_F32: return 128;
    case FX_F16:
    case FX_BF16: return 64;
    case FX_Q4A: return 16;
    case FX_Q3: return 12;
    default: return 32;
  }
}

/* Everything a block kernel reads, resolved once per call. */
struct fx_mat {
  fx_geom g;             /* rows, chunks, groups, activations */
  int tail_bytes;        /* payload bytes of the ragged chunk */
  __m256i tail_lanes[4]; /* ragged chunk: all-ones in the valid lanes of w[v] / x[v] */
};

/* ---- per-group state ------------------------------------------------------------------ */

/* What a row needs for one group: int8-gN: a = d; int4a: a = s,
 * b = min; int3: a = the table of (q - 4) d. */
typedef struct fx_state {
  __m256 a, b;
} fx_state;

static inline float load_f16(const uint8_t* p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

static bool grouped(fx_kind k) { return k == FX_Q8G || k == FX_Q4A || k == FX_Q3; }

/* The state of a chunk from its group's scale s and second value z (the minimum, int4a). */
FX_INLINE fx_state chunk_state(fx_kind kind, float s, float z) {
  fx_state st = {_mm256_set1_ps(s), _mm256_set1_ps(z)};
  if (kind == FX_Q3) st.a = _mm256_mul_ps(_mm256_setr_ps(-4, -3, -2, -1, 0, 1, 2, 3), st.a);
  return st;
}

/* The fp16 values p[0 .. count-1] (count clamped to 8; nothing past them is read) as floats
 * in out[0..7]. */
FX_INLINE __m256 load_f16x8(const uint8_t* p, int64_t count, float* out) {
  __m128i h;
  if (count >= 8) {
    h = _mm_loadu_si128((const __m128i*)p);
  } else {
    uint8_t buf[16] = {0};
    memcpy(buf, p, (size_t)count * 2);
    h = _mm_loadu_si128((const __m128i*)buf);
  }
  __m256 v = _mm256_cvtph_ps(h);
  _mm256_store_ps(out, v);
  return v;
}

/* ---- decoding one 32-column chunk ----------------------------------------------------- */

/* vpshufb control of int3 lane k of vector v (column c = 8 v + k of the chunk): the two bytes
 * holding bits 3c .. 3c + 2, then zeros. The shift that aligns the field, 3c mod 8, repeats
 * every 8 columns. */
#define Q3_CTL(c) ((3 * (c) / 8) | ((3 * (c) / 8 + 1) << 8) | (int)0x80800000u)
#define Q3_CTL8(v)                                                                              \
  _mm256_setr_epi32(Q3_CTL(8 * v + 0), Q3_CTL(8 * v + 1), Q3_CTL(8 * v + 2), Q3_CTL(8 * v + 3), \
                    Q3_CTL(8 * v + 4), Q3_CTL(8 * v + 5), Q3_CTL(8 * v + 6), Q3_CTL(8 * v + 7))

/* 16 fp16 bit patterns (a ymm of words) -> two 8-float vectors. */
FX_INLINE void halves_to_f32(__m256i h, __m256* lo, __m256* hi) {
  *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
  *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

/* Weights of the chunk whose payload starts at p (full: 32 columns in the row; else p is a
 * zero-padded copy of the ragged chunk) into w[0..3], the vectors meeting activations
 * x[8 v .. 8 v + 7] of the chunk (even/odd columns for int4a: see fx_common.c). nan: running
 * byte max of (code | 0x80) for fp8-e4m3 (0xff marks a NaN code). */
FX_INLINE void decode_chunk(fx_kind kind, const uint8_t* p, fx_state st, bool full, __m256* w,
                            __m128i* nan) {
  switch (kind) {
    case FX_F32:
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) w[v] = _mm256_loadu_ps((const float*)(const void*)p + 8 * v);
      break;
    case FX_F16:
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++)
        w[v] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 16 * v)));
      break;
    case FX_BF16:
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) {
        __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(p + 16 * v)));
        w[v] = _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
      }
      break;
    case FX_Q8C:
    case FX_Q8G:
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) {
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(p + 8 * v)));
        w[v] = _mm256_cvtepi32_ps(q);
        if (kind == FX_Q8G) w[v] = _mm256_mul_ps(w[v], st.a);
      }
      break;
    case FX_E4M3:
    case FX_E5M2:
#pragma GCC unroll 4
      for (int v = 0; v < 2; v++) {
        __m128i a = _mm_loadu_si128((const __m128i*)(p + 16 * v));
        __m256i h;
        if (kind == FX_E5M2) {
          h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(a), 8);
        } else {
          *nan = _mm_max_epu8(*nan, _mm_or_si128(a, _mm_set1_epi8((char)0x80)));
          h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(a), 7),
                               _mm256_set1_epi16((short)0xbf80));
        }
        halves_to_f32(h, &w[2 * v], &w[2 * v + 1]);
      }
      break;
    case FX_Q4A: {
      __m128i a = _mm_loadu_si128((const __m128i*)p);
      __m256i b0 = _mm256_cvtepu8_epi32(a);                    /* bytes 0..7 */
      __m256i b1 = _mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)); /* bytes 8..15 */
      const __m256i lo = _mm256_set1_epi32(15);
      __m256 q[4] = {_mm256_cvtepi32_ps(_mm256_and_si256(b0, lo)),
                     _mm256_cvtepi32_ps(_mm256_and_si256(b1, lo)),
                     _mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)),
                     _mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4))};
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) w[v] = _mm256_add_ps(_mm256_mul_ps(q[v], st.a), st.b);
      break;
    }
    case FX_Q3: {
      /* 12 bytes: a 3-dword masked load never reads past the chunk */
      const __m128i three = _mm_setr_epi32(-1, -1, -1, 0);
      __m128i a = full ? _mm_maskload_epi32((const int*)(const void*)p, three)
                       : _mm_loadu_si128((const __m128i*)p);
      __m256i b = _mm256_broadcastsi128_si256(a);
      const __m256i sh = _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5);
      const __m256i ctl[4] = {Q3_CTL8(0), Q3_CTL8(1), Q3_CTL8(2), Q3_CTL8(3)};
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) {
        __m256i idx = _mm256_srlv_epi32(_mm256_shuffle_epi8(b, ctl[v]), sh);
        w[v] = _mm256_permutevar8x32_ps(st.a, idx);
      }
      break;
    }
    default: break;
  }
}

/* Row factor applied to the finished sum: the f32 row scale of int8-channel and fp8. */
FX_INLINE float row_factor(fx_kind kind, const fx_mat* m, int64_t r) {
  if (kind != FX_Q8C && kind != FX_E4M3 && kind != FX_E5M2) return 1.0f;
  float d;
  memcpy(&d, m->g.scales + (size_t)r * m->g.scale_bytes, 4);
  return d;
}

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* ---- the block kernel ------------------------------------------------------------------ */

/* Rows r .. r+R-1, tokens t0 .. t0+T-1; one accumulator per (row, token), so a row's result
 * does not depend on the block it falls in. */
FX_INLINE void fx_block(fx_kind kind, int R, int T, const fx_mat* m, int64_t r, int t0) {
  __m256 acc[FX_ROWS][FX_TOKENS];
  __m128i nan[FX_ROWS];
  const uint8_t* row[FX_ROWS];
  const int cb = chunk_bytes(kind);
#pragma GCC unroll 4
  for (int i = 0; i < R; i++) {
    row[i] = m->g.data + (size_t)(r + i) * m->g.row_bytes;
    nan[i] = _mm_setzero_si128();
#pragma GCC unroll 2
    for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
  }
  const float* xs = m->g.xs + (size_t)t0 * m->g.x_stride;
  const int gs = m->g.gshift;
  /* Batches of 8 scale groups: each row's 8 fp16 scales (and minimums, or -8 x scale) are
   * converted at once into sc / sz, from where each chunk broadcasts its group's values. */
  float sc[FX_ROWS][8] __attribute__((aligned(32)));
  float sz[FX_ROWS][8] __attribute__((aligned(32)));
  const int64_t batch = grouped(kind) ? (int64_t)8 << gs : m->g.full_chunks + 1;
  for (int64_t j0 = 0; j0 < m->g.full_chunks; j0 += batch) {
    const int64_t jend = j0 + batch < m->g.full_chunks ? j0 + batch : m->g.full_chunks;
    if (grouped(kind)) {
      const int64_t g0 = j0 >> gs;
#pragma GCC unroll 4
      for (int i = 0; i < R; i++) {
        size_t off = (size_t)(r + i) * m->g.scale_bytes + 2 * (size_t)g0;
        load_f16x8(m->g.scales + off, m->g.n_groups - g0, sc[i]);
        if (kind == FX_Q4A) load_f16x8(m->g.zeros + off, m->g.n_groups - g0, sz[i]);
      }
    }
    for (int64_t j = j0; j < jend; j++) {
      const int64_t gi = (j - j0) >> gs;
#pragma GCC unroll 4
      for (int i = 0; i < R; i++) {
        fx_state st = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        if (grouped(kind)) st = chunk_state(kind, sc[i][gi], kind == FX_Q4A ? sz[i][gi] : 0.0f);
        __m256 w[4];
        decode_chunk(kind, row[i] + (size_t)cb * (size_t)j, st, true, w, &nan[i]);
        /* software prefetch of the next block's rows at this offset (L2): the hardware
         * prefetchers restart at every row, which costs short rows much of the bandwidth */
        if (cb >= 64 || j % (64 / cb) == 0) {
          const char* next = (const char*)((uintptr_t)row[i] + FX_ROWS * m->g.row_bytes +
                                           (size_t)cb * (size_t)j); /* may lie past W */
          _mm_prefetch(next, _MM_HINT_T1);
          if (cb == 128) _mm_prefetch(next + 64, _MM_HINT_T1);
        }
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
          const float* x = xs + (size_t)t * m->g.x_stride + 32 * j;
#pragma GCC unroll 4
          for (int v = 0; v < 4; v++)
            acc[i][t] = _mm256_fmadd_ps(w[v], _mm256_loadu_ps(x + 8 * v), acc[i][t]);
        }
      }
    }
  }
  if (m->g.rem) { /* the ragged chunk */
    const int64_t j = m->g.full_chunks;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
      fx_state st = {_mm256_setzero_ps(), _mm256_setzero_ps()};
      if (grouped(kind)) {
        size_t off = (size_t)(r + i) * m->g.scale_bytes + 2 * (size_t)(j >> gs);
        float d = load_f16(m->g.scales + off);
        st = chunk_state(kind, d, kind == FX_Q4A ? load_f16(m->g.zeros + off) : 0.0f);
      }
      uint8_t buf[128] = {0};
      memcpy(buf, row[i] + (size_t)cb * (size_t)j, (size_t)m->tail_bytes);
      __m256 w[4];
      decode_chunk(kind, buf, st, false, w, &nan[i]);
#pragma GCC unroll 2
      for (int t = 0; t < T; t++) {
        const float* x = xs + (size_t)t * m->g.x_stride + 32 * j;
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
          __m256 wv = _mm256_and_ps(w[v], _mm256_castsi256_ps(m->tail_lanes[v]));
          __m256 xv = _mm256_maskload_ps(x + 8 * v, m->tail_lanes[v]);
          acc[i][t] = _mm256_fmadd_ps(wv, xv, acc[i][t]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < R; i++) {
    float d = row_factor(kind, m, r + i);
    bool is_nan = kind == FX_E4M3 && _mm_movemask_epi8(_mm_cmpeq_epi8(nan[i], _mm_set1_epi8(-1)));
#pragma GCC unroll 2
    for (int t = 0; t < T; t++) {
      float y = hsum8(acc[i][t]);
      if (kind == FX_Q8C || kind == FX_E5M2) y *= d;
      if (kind == FX_E4M3) y = is_nan ? __builtin_nanf("") : y * 256.0f * d;
      m->g.Y[(size_t)(t0 + t) * (size_t)m->g.rows + (size_t)(r + i)] = y;
    }
  }
}

/* One instance per (kind, R, T), so every loop above has constant bounds. */
typedef void (*fx_block_fn)(const fx_mat* m, int64_t r, int t0);
#define FX_DEF(K, R, T)                                                \
  static void fx_##K##_##R##_##T(const fx_mat* m, int64_t r, int t0) { \
    fx_block(K, R, T, m, r, t0);                                       \
  }
#define FX_DEF_KIND(K) FX_DEF(K, 1, 1) FX_DEF(K, 1, 2) FX_DEF(K, 4, 1) FX_DEF(K, 4, 2)
#define FX_ROW(K)                                                \
  {                                                              \
    {fx_##K##_1_1, fx_##K##_1_2}, { fx_##K##_4_1, fx_##K##_4_2 } \
  }
#define FX_NO_ROW                \
  {                              \
    {NULL, NULL}, { NULL, NULL } \
  }

FX_DEF_KIND(FX_F32)
FX_DEF_KIND(FX_F16)
FX_DEF_KIND(FX_BF16)
FX_DEF_KIND(FX_Q8C)
FX_DEF_KIND(FX_Q8G)
FX_DEF_KIND(FX_Q4A)
FX_DEF_KIND(FX_E4M3)
FX_DEF_KIND(FX_E5M2)
FX_DEF_KIND(FX_Q3)

static const fx_block_fn k_blocks[FX_KINDS][2][FX_TOKENS] = {
    FX_ROW(FX_F32), FX_ROW(FX_F16),  FX_ROW(FX_BF16),
    FX_ROW(FX_Q8C), FX_ROW(FX_Q8G),  FX_NO_ROW /* int4-gN: matvec_q4_avx2.c */,
    FX_ROW(FX_Q4A), FX_ROW(FX_E4M3), FX_ROW(FX_E5M2),
    FX_ROW(FX_Q3),
};

/* ---- entry points ----------------------------------------------------------------------- */

static void run_block(const void* ctx, bool full, int T, int64_t r, int t0) {
  const fx_call* c = ctx;
  k_blocks[c->kind][full][T - 1](c->m, r, t0);
}

/* All-ones in lanes 0..k-1 of 8 (k clamped to [0, 8]). */
static __m256i first_lanes(int k) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k < 0 ? 0 : k > 8 ? 8 : k), idx);
}

static void fx_mat_init(fx_mat* m, fx_kind kind, const qn_qtensor* W, const float* X,
                        const float* prep, float* Y) {
  fx_geom_init(&m->g, kind, W, X, prep, Y);
  const int r = m->g.rem;
  m->tail_bytes = (int)(m->g.row_bytes - (size_t)m->g.full_chunks * (size_t)chunk_bytes(kind));
  if (qn_fx_uses_prep(kind)) { /* vectors: even 0..14, even 16..30, odd 1..15, odd 17..31 */
    int even = (r + 1) / 2, odd = r / 2;
    m->tail_lanes[0] = first_lanes(even);
    m->tail_lanes[1] = first_lanes(even - 8);
    m->tail_lanes[2] = first_lanes(odd);
    m->tail_lanes[3] = first_lanes(odd - 8);
  } else {
    for (int v = 0; v < 4; v++) m->tail_lanes[v] = first_lanes(r - 8 * v);
  }
}

void qn_fx_prep_avx2(const qn_qtensor* W, const float* X, int n, float* prep) {
  if (!qn_fx_uses_prep(kind_of(W->type)) || W->cols <= 0) return;
  if (kind_of(W->type) == FX_Q4) {
    qn_q4_prep_avx2(W, X, n, prep);
    return;
  }
  const int64_t cols = W->cols, chunks = (cols + 31) / 32;
  for (int t = 0; t < n; t++) {
    const float* x = X + (size_t)t * (size_t)cols;
    float* out = prep + (size_t)t * (size_t)chunks * 32;
    for (int64_t j = 0; j < chunks; j++)
      for (int64_t i = 0; i < 16; i++) {
        int64_t c = 32 * j + 2 * i;
        out[32 * j + i] = c < cols ? x[c] : 0.0f;
        out[32 * j + 16 + i] = c + 1 < cols ? x[c + 1] : 0.0f;
      }
  }
}

void qn_fx_rows_avx2(const qn_qtensor* W, const float* X, const float* prep, int n, float* Y,
                     int64_t r0, int64_t r1) {
  if (W->cols <= 0 || n <= 0) {
    for (int t = 0; t < n; t++)
      for (int64_t r = r0; r < r1; r++) Y[(size_t)t * (size_t)W->rows + (size_t)r] = 0.0f;
    return;
  }
  const fx_kind kind = kind_of(W->type);
  if (kind == FX_Q4) {
    qn_q4_rows_avx2(W, prep, n, Y, r0, r1);
    return;
  }
  fx_mat m;
  fx_mat_init(&m, kind, W, X, prep, Y);
  const fx_call call = {&m, kind};
  qn_fx_for_blocks(&call, run_block, r0, r1, n, FX_ROWS, FX_TOKENS);
}
