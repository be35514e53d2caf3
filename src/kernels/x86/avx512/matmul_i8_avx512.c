/* matmul_i8_avx512.c: AVX-512 VNNI products of the schemes with int8 activations over their
 * packed layouts (quant/pack_i8.h), bit for bit qn_matmul_i8_ref.
 *
 * One 64-byte load of the packed payload holds 4 columns of 16 rows: the unsigned operand of
 * vpdpbusd; 4 activation codes of one token, broadcast to the 16 lanes, are the signed one.
 * The stored weights are biased (w8a8: q + 128, w4a8: q + 8), so the integer sums are
 * corrected with 128 * (the token's code sum), resp. 8 * (the token's code sum over the
 * group) from the activations' block sums; the intermediate may wrap around in int32, the
 * corrected sum is exact. The float steps then follow the reference in its order.
 *
 * Structure (a register-blocked, cache-blocked GEMM; decode is the 1-token case):
 *   tokens in chunks of up to CHUNK_BYTES of codes (they stay in L2 while every row block
 *   passes over them; the weights are read once per chunk),
 *     row blocks in tiles of up to 2 (4 when there are at most 2 tokens, for more
 *     independent accumulators while streaming weights in decode),
 *       tokens of the chunk in tiles of up to 12 (w8a8) / 8 (w4a8): a tile keeps
 *       tokens x row blocks accumulators in registers while k walks over 4-column quads. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/x86_kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#define CHUNK_BYTES (512 * 1024) /* codes of a token chunk, reused by every row block (L2) */
#define MAX_CHUNK 256            /* tokens per chunk at most */
#define W8_TILE_T 12 /* w8a8: tokens per register tile (x 2 row blocks = 24 accumulators) */
#define W4_TILE_T 8  /* w4a8: tokens per register tile (x 2 row blocks, int + float sums) */
#define MAX_NB 4     /* row blocks per tile at most */

/* What one tile computes: tokens t0..t0+T-1 by row blocks rb..rb+NB-1. */
typedef struct tile_args {
  const uint8_t* w;    /* packed payload of row block rb */
  int64_t w_stride;    /* bytes between consecutive row blocks' payloads */
  const int8_t* x;     /* codes of token t0 */
  int64_t x_stride;    /* bytes between tokens' codes */
  int64_t k;           /* w8a8: column quads (C4 / 4); w4a8: groups G */
  const int32_t* corr; /* w8a8: [T] 128 * code sum per token (wrapped int32) */
  const int32_t* bsum; /* w4a8: block sums of token t0 ([T][bsum_stride]) */
  int64_t bsum_stride; /* int32 between tokens' block sums */
  const float* sx;     /* [T] activation scales */
  const void* d;       /* w8a8: f32 row scales of row 16 * rb; w4a8: fp16 scales of block */
  int64_t d_stride;    /* w4a8: fp16 values between consecutive row blocks' scales */
  float* y;            /* Y at token t0, row 16 * rb */
  int64_t y_stride;    /* floats between tokens in Y (rows) */
  int64_t rows_left;   /* rows of Y from 16 * rb on (masks the last partial block) */
} tile_args;

/* Lanes of the 16 rows of block b of the tile that exist in Y. */
ALWAYS_INLINE __mmask16 row_mask(int64_t rows_left, int b) {
  int64_t left = rows_left - 16 * (int64_t)b;
  if (left >= 16) return (__mmask16)0xFFFF;
  return left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
}

ALWAYS_INLINE __m512i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

/* ---- w8a8 ------------------------------------------------------------------------------ */

/* y = (float)(acc - 128 * code sum) * (s_t * d_r) for the T x NB sums in buf ([t][b][16]). */
static void w8_store(const tile_args* a, const int32_t* buf, int T, int NB) {
  const float* d = a->d;
  for (int b = 0; b < NB; b++) {
    __mmask16 m = row_mask(a->rows_left, b);
    __m512 db = _mm512_maskz_loadu_ps(m, d + 16 * b);
    for (int t = 0; t < T; t++) {
      __m512i acc = _mm512_load_si512(buf + (t * NB + b) * 16);
      __m512i v = _mm512_sub_epi32(acc, _mm512_set1_epi32(a->corr[t]));
      __m512 sd = _mm512_mul_ps(_mm512_set1_ps(a->sx[t]), db);
      __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), sd);
      _mm512_mask_storeu_ps(a->y + t * a->y_stride + 16 * b, m, y);
    }
  }
}

ALWAYS_INLINE void w8_tile(const tile_args* a, const int T, const int NB) {
  __m512i acc[W8_TILE_T * 2]; /* [t * NB + b]; T * NB <= 24 */
#pragma GCC unroll 16
  for (int t = 0; t < T; t++)
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) acc[t * NB + b] = _mm512_setzero_si512();
  const uint8_t* w = a->w;
  const int8_t* x = a->x;
  for (int64_t q = 0; q < a->k; q++, w += 64, x += 4) {
    __m512i wv[MAX_NB];
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) wv[b] = _mm512_loadu_si512(w + b * a->w_stride);
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
      __m512i xv = bcast4(x + t * a->x_stride);
#pragma GCC unroll 4
      for (int b = 0; b < NB; b++)
        acc[t * NB + b] = _mm512_dpbusd_epi32(acc[t * NB + b], wv[b], xv);
    }
  }
  /* through memory: keeping the epilogue's registers out of the k loop (GCC otherwise spills
   * accumulators inside it) */
  __attribute__((aligned(64))) int32_t buf[W8_TILE_T * 2 * 16];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++)
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) _mm512_store_si512(buf + (t * NB + b) * 16, acc[t * NB + b]);
  w8_store(a, buf, T, NB);
}

/* The tiles, one function each (T and NB constant, so the accumulators live in registers),
 * in a table [T - 1][NB - 1]; NB 3 and 4 only for T <= 2. */
typedef void (*tile_fn)(const tile_args*);
// clang-format off
#define W8_FN(T, NB) static void w8_tile_##T##_##NB(const tile_args* a) { w8_tile(a, T, NB); }
#define W8_ROW(T) W8_FN(T, 1) W8_FN(T, 2)
W8_ROW(1) W8_ROW(2) W8_ROW(3) W8_ROW(4) W8_ROW(5) W8_ROW(6)
W8_ROW(7) W8_ROW(8) W8_ROW(9) W8_ROW(10) W8_ROW(11) W8_ROW(12)
W8_FN(1, 3) W8_FN(1, 4) W8_FN(2, 3) W8_FN(2, 4)
#define W8_ENTRY(T) {w8_tile_##T##_1, w8_tile_##T##_2, NULL, NULL}
static const tile_fn k_w8_tiles[W8_TILE_T][MAX_NB] = {
    {w8_tile_1_1, w8_tile_1_2, w8_tile_1_3, w8_tile_1_4},
    {w8_tile_2_1, w8_tile_2_2, w8_tile_2_3, w8_tile_2_4},
    W8_ENTRY(3), W8_ENTRY(4), W8_ENTRY(5), W8_ENTRY(6), W8_ENTRY(7), W8_ENTRY(8),
    W8_ENTRY(9), W8_ENTRY(10), W8_ENTRY(11), W8_ENTRY(12)};
// clang-format on

/* ---- w4a8 ------------------------------------------------------------------------------ */

ALWAYS_INLINE void w4_tile(const tile_args* a, const int T, const int NB) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  __m512 sum[W4_TILE_T * 2]; /* [t * NB + b]; T * NB <= 16 */
#pragma GCC unroll 16
  for (int t = 0; t < T; t++)
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) sum[t * NB + b] = _mm512_setzero_ps();
  const uint16_t* ds = a->d;
  for (int64_t g = 0; g < a->k; g++) {
    __m512i acc[W4_TILE_T * 2];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
      /* start from -8 * (code sum of the group): the correction of the +8 bias */
      uint32_t bs = (uint32_t)a->bsum[t * a->bsum_stride + g];
      __m512i c = _mm512_set1_epi32((int32_t)(0u - (bs << 3)));
#pragma GCC unroll 4
      for (int b = 0; b < NB; b++) acc[t * NB + b] = c;
    }
    const uint8_t* w = a->w + g * 256;
    const int8_t* x = a->x + g * 32;
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      __m512i lo[MAX_NB], hi[MAX_NB];
#pragma GCC unroll 4
      for (int b = 0; b < NB; b++) {
        __m512i v = _mm512_loadu_si512(w + b * a->w_stride + 64 * j);
        lo[b] = _mm512_and_si512(v, nib);
        hi[b] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) {
        __m512i xl = bcast4(x + t * a->x_stride + 8 * j);
        __m512i xh = bcast4(x + t * a->x_stride + 8 * j + 4);
#pragma GCC unroll 4
        for (int b = 0; b < NB; b++) {
          acc[t * NB + b] = _mm512_dpbusd_epi32(acc[t * NB + b], lo[b], xl);
          acc[t * NB + b] = _mm512_dpbusd_epi32(acc[t * NB + b], hi[b], xh);
        }
      }
    }
#pragma GCC unroll 4
    for (int b = 0; b < NB; b++) {
      __m512 dg =
          _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(ds + b * a->d_stride + g * 16)));
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) /* p = (float)acc_g * d_g; sum = sum + p: two roundings */
        sum[t * NB + b] =
            _mm512_add_ps(sum[t * NB + b], _mm512_mul_ps(_mm512_cvtepi32_ps(acc[t * NB + b]), dg));
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < NB; b++) {
    __mmask16 m = row_mask(a->rows_left, b);
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
      _mm512_mask_storeu_ps(a->y + t * a->y_stride + 16 * b, m,
                            _mm512_mul_ps(sum[t * NB + b], _mm512_set1_ps(a->sx[t])));
  }
}

/* The w4a8 tiles, as the w8a8 ones. */
// clang-format off
#define W4_FN(T, NB) static void w4_tile_##T##_##NB(const tile_args* a) { w4_tile(a, T, NB); }
#define W4_ROW(T) W4_FN(T, 1) W4_FN(T, 2)
W4_ROW(1) W4_ROW(2) W4_ROW(3) W4_ROW(4) W4_ROW(5) W4_ROW(6) W4_ROW(7) W4_ROW(8)
W4_FN(1, 3) W4_FN(1, 4) W4_FN(2, 3) W4_FN(2, 4)

#define W4_ENTRY(T) {w4_tile_##T##_1, w4_tile_##T##_2, NULL, NULL}
static const tile_fn k_w4_tiles[W4_TILE_T][MAX_NB] = {
    {w4_tile_1_1, w4_tile_1_2, w4_tile_1_3, w4_tile_1_4},
    {w4_tile_2_1, w4_tile_2_2, w4_tile_2_3, w4_tile_2_4},
    W4_ENTRY(3), W4_ENTRY(4), W4_ENTRY(5), W4_ENTRY(6), W4_ENTRY(7), W4_ENTRY(8)};
// clang-format on

/* ---- driver ---------------------------------------------------------------------------- */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

void qn_i8_rows_avx512(const qn_qtensor* W, const qn_i8_act* a, float* Y, int64_t rb0,
                       int64_t rb1) {
  const bool w4 = W->layout == QN_LAYOUT_I4X16;
  const int64_t rows = W->rows, cols = W->cols, n = a->n;
  const int64_t c4 = (cols + 3) / 4 * 4, G = (cols + 31) / 32;
  const int64_t nbs = a->stride / 32; /* block sums per token */
  rb1 = min64(rb1, (rows + 15) / 16);
  if (rb0 >= rb1 || n <= 0) return;
  const int tile_t = w4 ? W4_TILE_T : W8_TILE_T;
  const int max_nb = n <= 2 ? 4 : 2;
  tile_args ta;
  ta.w_stride = w4 ? G * 256 : c4 * 16;
  ta.x_stride = a->stride;
  ta.k = w4 ? G : c4 / 4;
  ta.bsum_stride = nbs;
  ta.d_stride = G * 16;
  ta.y_stride = rows;
  /* tokens per chunk: as many as fit CHUNK_BYTES, whole tiles, at least two tiles */
  int64_t chunk = min64(CHUNK_BYTES / (a->stride > 0 ? a->stride : 1), MAX_CHUNK) / tile_t * tile_t;
  if (chunk < 2 * tile_t) chunk = 2 * tile_t;
  int32_t corr[MAX_CHUNK]; /* w8a8: 128 * code sum of each token of the chunk */
  for (int64_t tc0 = 0; tc0 < n; tc0 += chunk) {
    const int64_t tc1 = min64(n, tc0 + chunk);
    if (!w4) {
      for (int64_t t = tc0; t < tc1; t++) {
        uint32_t s = 0;
        for (int64_t b = 0; b < nbs; b++) s += (uint32_t)a->bsum[t * nbs + b];
        corr[t - tc0] = (int32_t)(s << 7);
      }
    }
    for (int64_t rb = rb0; rb < rb1;) {
      const int nb = (int)min64(max_nb, rb1 - rb);
      ta.rows_left = rows - 16 * rb;
      if (w4) {
        ta.w = (const uint8_t*)W->data + rb * G * 256;
        ta.d = (const uint16_t*)W->scales + rb * G * 16;
      } else {
        ta.w = (const uint8_t*)W->data + rb * c4 * 16;
        ta.d = (const float*)W->scales + rb * 16;
      }
      for (int64_t t = tc0; t < tc1;) {
        const int tt = (int)min64(nb > 2 ? 2 : tile_t, tc1 - t);
        ta.x = a->codes + t * a->stride;
        ta.corr = corr + (t - tc0);
        ta.bsum = a->bsum + t * nbs;
        ta.sx = a->scale + t;
        ta.y = Y + t * rows + rb * 16;
        (w4 ? k_w4_tiles[tt - 1][nb - 1] : k_w8_tiles[tt - 1][nb - 1])(&ta);
        t += tt;
      }
      rb += nb;
    }
  }
}
