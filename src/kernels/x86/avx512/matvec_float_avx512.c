/* matvec_float_avx512.c: AVX-512 kernels of the weight-only schemes (float activations) for
 * decode and small batches: Y[t][r] = sum_c w[r][c] x[t][c] with the weights dequantized in
 * registers, never stored as f32 (contract in x86_kernels.h).
 *
 * Shape of every kernel: a block of R rows (4, or 1 for the leftover rows) is walked in
 * 32-column chunks; each chunk of each row is decoded into two 16-float vectors w0, w1 and
 * multiplied into R x T accumulators (T <= 4 tokens per pass; a batch of more tokens takes
 * several passes over the block, which re-read its rows from L1/L2). Scale groups (32, 64,
 * 128 columns) are whole chunks, so each row's group state (a scale vector or a lookup
 * table) is built once per group. The last, ragged chunk is read with masked loads (no byte
 * past the row is touched) and its unused lanes are zeroed in w and x.
 *
 * int4-gN is not here: it runs on 16-bit activations in matvec_q4_avx512.c.
 *
 * Numerics: the dequantized weight of every grouped scheme is bit-identical to the
 * reference's (f16/bf16 conversions are exact; int8-gN: (float)q * d; int4a-gN: a 16-entry
 * table of min + q * s, multiply then add, as the reference rounds;
 * int3-gN: (q - 4) * d). Schemes with one f32 scale per row (int8-channel, fp8-*) sum
 * code x activation and scale the row's sum once, which differs from the reference's
 * sum of fl(q d) x by at most one rounding per weight. The sums themselves run in 16 (or 32)
 * lanes and are reduced at the end of the row, so they differ from the reference's
 * column-order sum by ordinary float reassociation. Bound (u = 2^-24, w_c the reference's
 * weights): |y - y_ref| <= (3 sqrt(cols) + 8) u sum_c |w_c x_c|, derived and checked in
 * tests/unit/test_kernels_float.c; when every product and partial sum is exact in float the
 * result equals the reference bit for bit (checked there too).
 *
 * Weight decoding per 32 columns:
 *   f32: 2 loads. f16: 2 x vcvtph2ps. bf16: vpmovzxwd + shift into the high half (exact; the
 *   AVX512-BF16 vdpbf16ps is not used because it would round the activations to bf16 too).
 *   int8: vpmovsxbd + vcvtdq2ps. fp8-e5m2: its code << 8 is the fp16 bit pattern of the same
 *   value. fp8-e4m3: sign-extended code << 7 with bit 14 cleared is the fp16 pattern of
 *   value * 2^-8 (subnormals included), so the row sum is multiplied by 2^8; the E4M3 NaN
 *   codes (S.1111.111, which that pattern would read as +-480) are detected per row and make
 *   the row's outputs NaN, as the reference's would be. (The 16-bit work runs on ymm halves:
 *   Zen 4 executes a zmm operation as two 256-bit halves.) int4a: vpmovzxbd of 16 bytes puts
 *   byte k in lane k; its low nibble (column 2k) indexes the group's table directly through
 *   vpermps (which reads only the low 4 bits of each index), its high nibble after one shift;
 *   the activations were de-interleaved into even/odd vectors by qn_fx_prep_avx512 to match.
 *   int3: 12 bytes broadcast to all 128-bit lanes, vpshufb gathers the two bytes holding each
 *   3-bit field into its lane, vpsrlvd aligns it, vpermps looks it up in a 16-entry table
 *   holding the 8 values twice (bit 3 of the index is the next field's bit).
 *
 * Cost: for one token, 32 int4a weights of one row take 8 vector instructions (vpmovzxbd,
 * vpsrld, 2 vpermps, 2 FMAs, the group table's multiply and add), ~24 G weights/s per core
 * on Zen 4 with the weights in L2; int8 takes 3 per 16 weights (+1 for int8-gN's scale).
 *
 * Memory: rows are short streams (a few KB) and the hardware prefetchers start over on each
 * one, so every chunk also prefetches (into L2) the same offset of the next block's rows. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/fx_kind.h"
#include "kernels/x86/fx_mat.h"
#include "kernels/x86/fx_tiles.h"
#include "kernels/x86/x86_kernels.h"

#define FX_INLINE static inline __attribute__((always_inline))

/* Rows per block and most tokens per pass. */
#define FX_ROWS 4
#define FX_TOKENS 4

static fx_kind kind_of(qn_qtype t) { return qn_fx_kind_of(t); }

/* Everything a block kernel reads, resolved once per call. */
struct fx_mat {
  fx_geom g;         /* rows, chunks, groups, activations */
  __mmask16 tail_k0; /* ragged chunk: valid lanes of w0 / x0 */
  __mmask16 tail_k1; /* ragged chunk: valid lanes of w1 / x1 */
  __mmask32 tail_kb; /* ragged chunk: payload bytes to load (packed schemes) */
};

/* Mask of the lowest k bits (k <= 32). */
static inline uint32_t low_bits(int k) { return k >= 32 ? 0xffffffffu : (1u << k) - 1u; }

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

/* ---- per-group state ------------------------------------------------------------------ */

static inline float load_f16(const uint8_t* p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

static bool grouped(fx_kind k) { return k == FX_Q8G || k == FX_Q4A || k == FX_Q3; }

/* The state a chunk of a row needs from its group's scale s (and minimum z, int4a): the
 * scale broadcast (int8-gN) or the 16-entry table of dequantized values indexed by the code
 * (int4a, int3); unused for other kinds. */
FX_INLINE __m512 chunk_state(fx_kind kind, float s, float z) {
  switch (kind) {
    case FX_Q8G: return _mm512_set1_ps(s);
    case FX_Q4A: {
      const __m512 base = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
      return _mm512_add_ps(_mm512_mul_ps(base, _mm512_set1_ps(s)), _mm512_set1_ps(z));
    }
    case FX_Q3: {
      const __m512 base = _mm512_setr_ps(-4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3);
      return _mm512_mul_ps(base, _mm512_set1_ps(s));
    }
    default: return _mm512_setzero_ps();
  }
}

/* The fp16 values p[0 .. count-1] (count clamped to 16; nothing past them is read) as floats
 * in out[0..15]. */
FX_INLINE void load_f16x16(const uint8_t* p, int64_t count, float* out) {
  __m256i h = count >= 16 ? _mm256_loadu_si256((const __m256i*)p)
                          : _mm256_maskz_loadu_epi16((__mmask16)low_bits((int)count), p);
  _mm512_store_ps(out, _mm512_cvtph_ps(h));
}

/* ---- decoding one 32-column chunk ----------------------------------------------------- */

/* vpshufb control of int3 lane k (column c = 16 v + k of the chunk): the two bytes holding
 * bits 3c .. 3c + 2, then zeros; and the shift that brings the field to bit 0. */
#define Q3_CTL(c) ((3 * (c) / 8) | ((3 * (c) / 8 + 1) << 8) | (int)0x80800000u)
#define Q3_CTL16(v)                                                                     \
  _mm512_setr_epi32(                                                                    \
      Q3_CTL(16 * v + 0), Q3_CTL(16 * v + 1), Q3_CTL(16 * v + 2), Q3_CTL(16 * v + 3),   \
      Q3_CTL(16 * v + 4), Q3_CTL(16 * v + 5), Q3_CTL(16 * v + 6), Q3_CTL(16 * v + 7),   \
      Q3_CTL(16 * v + 8), Q3_CTL(16 * v + 9), Q3_CTL(16 * v + 10), Q3_CTL(16 * v + 11), \
      Q3_CTL(16 * v + 12), Q3_CTL(16 * v + 13), Q3_CTL(16 * v + 14), Q3_CTL(16 * v + 15))

/* Weights of the chunk whose payload starts at p as w0 (the first 16 lanes; for int4a the even
 * columns) and w1, from the chunk's group state st. full: the chunk has 32 columns; else it
 * is the ragged one (masks in m; nothing past the row is read). nan: running byte max of
 * (code | 0x80) for fp8-e4m3 (0xff marks a NaN code). */
FX_INLINE void decode_chunk(fx_kind kind, const fx_mat* m, const uint8_t* p, __m512 st, bool full,
                            __m512* w0, __m512* w1, __m256i* nan) {
  const __mmask16 k0 = full ? (__mmask16)0xffff : m->tail_k0;
  const __mmask16 k1 = full ? (__mmask16)0xffff : m->tail_k1;
  switch (kind) {
    case FX_F32: {
      const float* f = (const float*)(const void*)p;
      *w0 = full ? _mm512_loadu_ps(f) : _mm512_maskz_loadu_ps(k0, f);
      *w1 = full ? _mm512_loadu_ps(f + 16) : _mm512_maskz_loadu_ps(k1, f + 16);
      break;
    }
    case FX_F16:
    case FX_BF16: {
      __m256i a = full ? _mm256_loadu_si256((const __m256i*)p) : _mm256_maskz_loadu_epi16(k0, p);
      __m256i b = full ? _mm256_loadu_si256((const __m256i*)(p + 32))
                       : _mm256_maskz_loadu_epi16(k1, p + 32);
      if (kind == FX_F16) {
        *w0 = _mm512_cvtph_ps(a);
        *w1 = _mm512_cvtph_ps(b);
      } else {
        *w0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16));
        *w1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
      }
      break;
    }
    case FX_Q8C:
    case FX_Q8G: {
      __m128i a = full ? _mm_loadu_si128((const __m128i*)p) : _mm_maskz_loadu_epi8(k0, p);
      __m128i b =
          full ? _mm_loadu_si128((const __m128i*)(p + 16)) : _mm_maskz_loadu_epi8(k1, p + 16);
      *w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a));
      *w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
      if (kind == FX_Q8G) {
        *w0 = _mm512_mul_ps(*w0, st);
        *w1 = _mm512_mul_ps(*w1, st);
      }
      break;
    }
    case FX_E4M3:
    case FX_E5M2: {
      __m256i a =
          full ? _mm256_loadu_si256((const __m256i*)p) : _mm256_maskz_loadu_epi8(m->tail_kb, p);
      if (kind == FX_E4M3)
        *nan = _mm256_max_epu8(*nan, _mm256_or_si256(a, _mm256_set1_epi8((char)0x80)));
      /* the bit work on 16-bit lanes in ymm halves (half the cost of zmm on Zen 4) */
      __m128i lo = full ? _mm_loadu_si128((const __m128i*)p) : _mm256_castsi256_si128(a);
      __m128i hi =
          full ? _mm_loadu_si128((const __m128i*)(p + 16)) : _mm256_extracti128_si256(a, 1);
      __m256i h0, h1;
      if (kind == FX_E5M2) {
        h0 = _mm256_slli_epi16(_mm256_cvtepu8_epi16(lo), 8);
        h1 = _mm256_slli_epi16(_mm256_cvtepu8_epi16(hi), 8);
      } else {
        const __m256i keep = _mm256_set1_epi16((short)0xbf80);
        h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(lo), 7), keep);
        h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(hi), 7), keep);
      }
      *w0 = _mm512_cvtph_ps(h0);
      *w1 = _mm512_cvtph_ps(h1);
      break;
    }
    case FX_Q4A: {
      __m128i a = full ? _mm_loadu_si128((const __m128i*)p)
                       : _mm_maskz_loadu_epi8((__mmask16)m->tail_kb, p);
      __m512i b = _mm512_cvtepu8_epi32(a);
      *w0 = _mm512_permutexvar_ps(b, st);
      *w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), st);
      break;
    }
    case FX_Q3: {
      __m128i a = _mm_maskz_loadu_epi8(full ? (__mmask16)0x0fff : (__mmask16)m->tail_kb, p);
      __m512i b = _mm512_broadcast_i32x4(a);
      const __m512i sh = _mm512_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5, 0, 3, 6, 1, 4, 7, 2, 5);
      __m512i i0 = _mm512_srlv_epi32(_mm512_shuffle_epi8(b, Q3_CTL16(0)), sh);
      __m512i i1 = _mm512_srlv_epi32(_mm512_shuffle_epi8(b, Q3_CTL16(1)), sh);
      *w0 = _mm512_permutexvar_ps(i0, st);
      *w1 = _mm512_permutexvar_ps(i1, st);
      break;
    }
    default: break;
  }
  if (!full) {
    *w0 = _mm512_maskz_mov_ps(k0, *w0);
    *w1 = _mm512_maskz_mov_ps(k1, *w1);
  }
}

/* The f32 row scale of int8-channel and fp8, applied to the finished sum; 1 for the others. */
FX_INLINE float row_factor(fx_kind kind, const fx_mat* m, int64_t r) {
  if (kind != FX_Q8C && kind != FX_E4M3 && kind != FX_E5M2) return 1.0f;
  float d;
  memcpy(&d, m->g.scales + (size_t)r * m->g.scale_bytes, 4);
  return d;
}

/* ---- the block kernel ------------------------------------------------------------------ */

/* Rows r .. r+R-1, tokens t0 .. t0+T-1. Two accumulators per (row, token) when T <= 2 so
 * each dependency chain sees one FMA per chunk; the choice depends only on T, so a row's
 * result does not depend on which block it falls in. */
FX_INLINE void fx_block(fx_kind kind, int R, int T, const fx_mat* m, int64_t r, int t0) {
  const int A = T <= 2 ? 2 : 1;
  __m512 acc[FX_ROWS][FX_TOKENS][2];
  __m256i nan[FX_ROWS];
  const uint8_t* row[FX_ROWS];
#pragma GCC unroll 4
  for (int i = 0; i < R; i++) {
    row[i] = m->g.data + (size_t)(r + i) * m->g.row_bytes;
    nan[i] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[i][t][0] = acc[i][t][1] = _mm512_setzero_ps();
  }
  const float* xs = m->g.xs + (size_t)t0 * m->g.x_stride;
  const int gs = m->g.gshift;
  const int cb = chunk_bytes(kind);
  /* Batches of 16 scale groups: each row's 16 fp16 scales (and minimums) are converted with
   * one vcvtph2ps into sc / mn, from where each chunk broadcasts its group's value. */
  float sc[FX_ROWS][16] __attribute__((aligned(64)));
  float mn[FX_ROWS][16] __attribute__((aligned(64)));
  const int64_t batch = grouped(kind) ? (int64_t)16 << gs : m->g.full_chunks + 1;
  for (int64_t j0 = 0; j0 < m->g.full_chunks; j0 += batch) {
    const int64_t jend = j0 + batch < m->g.full_chunks ? j0 + batch : m->g.full_chunks;
    if (grouped(kind)) {
      const int64_t g0 = j0 >> gs;
#pragma GCC unroll 4
      for (int i = 0; i < R; i++) {
        size_t off = (size_t)(r + i) * m->g.scale_bytes + 2 * (size_t)g0;
        load_f16x16(m->g.scales + off, m->g.n_groups - g0, sc[i]);
        if (kind == FX_Q4A) load_f16x16(m->g.zeros + off, m->g.n_groups - g0, mn[i]);
      }
    }
    /* one group at a time (the whole batch when there are no groups): its state is built
     * once per row, then its chunks are decoded */
    const int64_t step = grouped(kind) ? (int64_t)1 << gs : batch;
    for (int64_t ja = j0, gi = 0; ja < jend; ja += step, gi++) {
      __m512 st[FX_ROWS];
#pragma GCC unroll 4
      for (int i = 0; i < R; i++)
        st[i] = grouped(kind) ? chunk_state(kind, sc[i][gi], kind == FX_Q4A ? mn[i][gi] : 0.0f)
                              : _mm512_setzero_ps();
      const int64_t jb = ja + step < jend ? ja + step : jend;
      for (int64_t j = ja; j < jb; j++) {
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
          __m512 w0, w1;
          decode_chunk(kind, m, row[i] + (size_t)cb * (size_t)j, st[i], true, &w0, &w1, &nan[i]);
          /* software prefetch of the next block's rows at this offset (into L2): the hardware
           * prefetchers restart at every row, which costs short rows much of the bandwidth */
          if (cb >= 64 || j % (64 / cb) == 0) {
            const char* next = (const char*)((uintptr_t)row[i] + FX_ROWS * m->g.row_bytes +
                                             (size_t)cb * (size_t)j); /* may lie past W */
            _mm_prefetch(next, _MM_HINT_T1);
            if (cb == 128) _mm_prefetch(next + 64, _MM_HINT_T1);
          }
#pragma GCC unroll 4
          for (int t = 0; t < T; t++) {
            const float* x = xs + (size_t)t * m->g.x_stride + 32 * j;
            acc[i][t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc[i][t][0]);
            acc[i][t][A - 1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), acc[i][t][A - 1]);
          }
        }
      }
    }
  }
  if (m->g.rem) { /* the ragged chunk */
    const int64_t j = m->g.full_chunks;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
      __m512 st = _mm512_setzero_ps();
      if (grouped(kind)) {
        size_t off = (size_t)(r + i) * m->g.scale_bytes + 2 * (size_t)(j >> gs);
        st = chunk_state(kind, load_f16(m->g.scales + off),
                         kind == FX_Q4A ? load_f16(m->g.zeros + off) : 0.0f);
      }
      __m512 w0, w1;
      decode_chunk(kind, m, row[i] + (size_t)cb * (size_t)j, st, false, &w0, &w1, &nan[i]);
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) {
        const float* x = xs + (size_t)t * m->g.x_stride + 32 * j;
        __m512 x0 = _mm512_maskz_loadu_ps(m->tail_k0, x);
        __m512 x1 = _mm512_maskz_loadu_ps(m->tail_k1, x + 16);
        acc[i][t][0] = _mm512_fmadd_ps(w0, x0, acc[i][t][0]);
        acc[i][t][A - 1] = _mm512_fmadd_ps(w1, x1, acc[i][t][A - 1]);
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < R; i++) {
    const float d = row_factor(kind, m, r + i);
    bool is_nan = kind == FX_E4M3 &&
                  _mm256_movemask_epi8(_mm256_cmpeq_epi8(nan[i], _mm256_set1_epi8(-1))) != 0;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      float y = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][t][0], acc[i][t][1]));
      if (kind == FX_Q8C || kind == FX_E5M2) y *= d;
      /* e4m3 codes were read as value * 2^-8: the exact * 256 restores the scale */
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
#define FX_DEF_KIND(K) \
  FX_DEF(K, 1, 1)      \
  FX_DEF(K, 1, 2)      \
  FX_DEF(K, 1, 3) FX_DEF(K, 1, 4) FX_DEF(K, 4, 1) FX_DEF(K, 4, 2) FX_DEF(K, 4, 3) FX_DEF(K, 4, 4)
#define FX_ROW(K)                                               \
  {                                                             \
    {fx_##K##_1_1, fx_##K##_1_2, fx_##K##_1_3, fx_##K##_1_4}, { \
      fx_##K##_4_1, fx_##K##_4_2, fx_##K##_4_3, fx_##K##_4_4    \
    }                                                           \
  }

#define FX_NO_ROW                                        \
  {                                                      \
    {NULL, NULL, NULL, NULL}, { NULL, NULL, NULL, NULL } \
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
    FX_ROW(FX_Q8C), FX_ROW(FX_Q8G),  FX_NO_ROW /* int4-gN: matvec_q4_avx512.c */,
    FX_ROW(FX_Q4A), FX_ROW(FX_E4M3), FX_ROW(FX_E5M2),
    FX_ROW(FX_Q3),
};

/* ---- entry points ----------------------------------------------------------------------- */

static void run_block(const void* ctx, bool full, int T, int64_t r, int t0) {
  const fx_call* c = ctx;
  k_blocks[c->kind][full][T - 1](c->m, r, t0);
}

static void fx_mat_init(fx_mat* m, fx_kind kind, const qn_qtensor* W, const float* X,
                        const float* prep, float* Y) {
  fx_geom_init(&m->g, kind, W, X, prep, Y);
  int r = m->g.rem;
  if (qn_fx_uses_prep(kind)) { /* even columns in w0/x0, odd ones in w1/x1 */
    m->tail_k0 = (__mmask16)low_bits((r + 1) / 2);
    m->tail_k1 = (__mmask16)low_bits(r / 2);
    m->tail_kb = low_bits((r + 1) / 2);
  } else {
    m->tail_k0 = (__mmask16)low_bits(r < 16 ? r : 16);
    m->tail_k1 = (__mmask16)low_bits(r > 16 ? r - 16 : 0);
    m->tail_kb = kind == FX_Q3 ? low_bits((3 * r + 7) / 8) : low_bits(r);
  }
}

void qn_fx_prep_avx512(const qn_qtensor* W, const float* X, int n, float* prep) {
  if (!qn_fx_uses_prep(kind_of(W->type)) || W->cols <= 0) return;
  if (kind_of(W->type) == FX_Q4) {
    qn_q4_prep_avx512(W, X, n, prep);
    return;
  }
  const int64_t cols = W->cols, chunks = (cols + 31) / 32;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int t = 0; t < n; t++) {
    const float* x = X + (size_t)t * (size_t)cols;
    float* out = prep + (size_t)t * (size_t)chunks * 32;
    for (int64_t j = 0; j < chunks; j++) {
      int64_t left = cols - 32 * j;
      __mmask16 k0 = (__mmask16)low_bits(left < 16 ? (int)left : 16);
      __mmask16 k1 = (__mmask16)low_bits(left > 32 ? 16 : left > 16 ? (int)left - 16 : 0);
      __m512 a = _mm512_maskz_loadu_ps(k0, x + 32 * j);
      __m512 b = _mm512_maskz_loadu_ps(k1, x + 32 * j + 16);
      _mm512_storeu_ps(out + 32 * j, _mm512_permutex2var_ps(a, even, b));
      _mm512_storeu_ps(out + 32 * j + 16, _mm512_permutex2var_ps(a, odd, b));
    }
  }
}

void qn_fx_rows_avx512(const qn_qtensor* W, const float* X, const float* prep, int n, float* Y,
                       int64_t r0, int64_t r1) {
  if (W->cols <= 0 || n <= 0) {
    for (int t = 0; t < n; t++)
      for (int64_t r = r0; r < r1; r++) Y[(size_t)t * (size_t)W->rows + (size_t)r] = 0.0f;
    return;
  }
  const fx_kind kind = kind_of(W->type);
  if (kind == FX_Q4) {
    qn_q4_rows_avx512(W, prep, n, Y, r0, r1);
    return;
  }
  fx_mat m;
  fx_mat_init(&m, kind, W, X, prep, Y);
  const fx_call call = {&m, kind};
  qn_fx_for_blocks(&call, run_block, r0, r1, n, FX_ROWS, FX_TOKENS);
}
