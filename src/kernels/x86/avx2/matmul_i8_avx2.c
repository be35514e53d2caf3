/* matmul_i8_avx2.c: AVX2 products of the schemes with int8 activations over their packed
 * layouts (quant/pack_i8.h), bit for bit qn_matmul_i8_ref. No VNNI: vpmaddubsw (u8 x s8
 * pairs summed to int16, SATURATING) then vpmaddwd by ones (int16 pairs to int32).
 *
 * A 64-byte quad of the packed payload (4 columns x 16 rows) is two 32-byte halves of 8
 * rows each; 4 activation codes of one token are broadcast to every row.
 *  - w8a8: stored q + 128 is turned back into q (xor 0x80). u8 255 x s8 127 pairs would
 *    saturate, so the unsigned operand is |q| and the signed one sign(x, q) = x * sign(q)
 *    (codes are never -128): pairs are at most 2 * 127 * 127 = 32258, exact; no bias left.
 *  - w4a8: stored q + 8 in [0, 15] is the unsigned operand as is (pairs at most
 *    2 * 15 * 127 = 3810; the 8 quads of a 32-column group sum to at most 30480, so they
 *    accumulate in int16 and widen once per group); the +8 bias is corrected with
 *    8 * (the token's code sum over the group).
 * The float steps then follow the reference in its order.
 *
 * Structure: tokens in chunks of TOK_CHUNK (their codes stay in L2 while every row block
 * passes), row blocks one at a time (two when there are at most 2 tokens), tokens of the
 * chunk in register tiles of up to 4. */
#include <immintrin.h>
#include <string.h>

#include "kernels/x86/x86_kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#define TOK_CHUNK 64 /* tokens whose codes are reused across all row blocks */
#define TILE_T 4     /* tokens per register tile (x 2 halves of one row block) */
#define MAX_NB 2     /* row blocks per tile at most (only with T <= 2) */

/* What one tile computes: tokens t0..t0+T-1 by row blocks rb..rb+NB-1. */
typedef struct tile_args {
  const uint8_t* w;    /* packed payload of row block rb */
  int64_t w_stride;    /* bytes between consecutive row blocks' payloads */
  const int8_t* x;     /* codes of token t0 */
  int64_t x_stride;    /* bytes between tokens' codes */
  int64_t k;           /* w8a8: column quads (C4 / 4); w4a8: groups G */
  const int32_t* bsum; /* w4a8: block sums of token t0 ([T][bsum_stride]) */
  int64_t bsum_stride; /* int32 between tokens' block sums */
  const float* sx;     /* [T] activation scales */
  const void* d;       /* w8a8: f32 row scales of row 16 * rb; w4a8: fp16 scales of block */
  int64_t d_stride;    /* w4a8: fp16 values between consecutive row blocks' scales */
  float* y;            /* Y at token t0, row 16 * rb */
  int64_t y_stride;    /* floats between tokens in Y (rows) */
  int64_t rows_left;   /* rows of Y from 16 * rb on (masks the last partial block) */
} tile_args;

ALWAYS_INLINE __m256i bcast4(const int8_t* p) {
  int32_t v;
  memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

/* Lane mask (all ones where the row exists) of the 8 rows of half h of block b. */
static __m256i row_lanes(int64_t rows_left, int b, int h) {
  int64_t left = rows_left - 16 * (int64_t)b - 8 * (int64_t)h;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left > 8 ? 8 : left < 0 ? 0 : left)), lane);
}

/* Stores 8 floats of Y, only the rows that exist. */
static void store_rows(float* y, __m256 v, int64_t rows_left, int b, int h) {
  if (rows_left - 16 * (int64_t)b - 8 * (int64_t)h >= 8)
    _mm256_storeu_ps(y, v);
  else
    _mm256_maskstore_ps(y, row_lanes(rows_left, b, h), v);
}

/* ---- w8a8 ------------------------------------------------------------------------------ */

/* y = (float)acc * (s_t * d_r) for the T x NB x 2 sums in buf ([t][b][h][8]). */
static void w8_store(const tile_args* a, const int32_t* buf, int T, int NB) {
  const float* d = a->d;
  for (int b = 0; b < NB; b++)
    for (int h = 0; h < 2; h++) {
      __m256 dh = _mm256_maskload_ps(d + 16 * b + 8 * h, row_lanes(a->rows_left, b, h));
      for (int t = 0; t < T; t++) {
        __m256i acc = _mm256_load_si256((const __m256i*)(buf + ((t * NB + b) * 2 + h) * 8));
        __m256 sd = _mm256_mul_ps(_mm256_set1_ps(a->sx[t]), dh);
        __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), sd);
        store_rows(a->y + t * a->y_stride + 16 * b + 8 * h, y, a->rows_left, b, h);
      }
    }
}

ALWAYS_INLINE void w8_tile(const tile_args* a, const int T, const int NB) {
  const __m256i bias = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
  __m256i acc[TILE_T * 2]; /* [(t * NB + b) * 2 + h]; T * NB <= 4 */
#pragma GCC unroll 16
  for (int i = 0; i < T * NB * 2; i++) acc[i] = _mm256_setzero_si256();
  const uint8_t* w = a->w;
  const int8_t* x = a->x;
  for (int64_t q = 0; q < a->k; q++, w += 64, x += 4) {
    __m256i wabs[MAX_NB * 2], wsgn[MAX_NB * 2];
#pragma GCC unroll 4
    for (int i = 0; i < NB * 2; i++) {
      __m256i v = _mm256_loadu_si256((const __m256i*)(w + (i / 2) * a->w_stride + 32 * (i % 2)));
      wsgn[i] = _mm256_xor_si256(v, bias); /* q */
      wabs[i] = _mm256_abs_epi8(wsgn[i]);  /* |q| as unsigned */
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
      __m256i xv = bcast4(x + t * a->x_stride);
#pragma GCC unroll 4
      for (int i = 0; i < NB * 2; i++) {
        __m256i p = _mm256_maddubs_epi16(wabs[i], _mm256_sign_epi8(xv, wsgn[i]));
        acc[t * NB * 2 + i] = _mm256_add_epi32(acc[t * NB * 2 + i], _mm256_madd_epi16(p, ones));
      }
    }
  }
  __attribute__((aligned(32))) int32_t buf[TILE_T * 2 * 8];
#pragma GCC unroll 16
  for (int i = 0; i < T * NB * 2; i++) _mm256_store_si256((__m256i*)(buf + 8 * i), acc[i]);
  w8_store(a, buf, T, NB);
}

/* The tiles, one function each (T and NB constant, so the accumulators live in registers),
 * in a table [T - 1][NB - 1]; NB 2 only for T <= 2. */
typedef void (*tile_fn)(const tile_args*);
// clang-format off
#define W8_FN(T, NB) static void w8_tile_##T##_##NB(const tile_args* a) { w8_tile(a, T, NB); }
W8_FN(1, 1) W8_FN(2, 1) W8_FN(3, 1) W8_FN(4, 1) W8_FN(1, 2) W8_FN(2, 2)
static const tile_fn k_w8_tiles[TILE_T][MAX_NB] = {
    {w8_tile_1_1, w8_tile_1_2}, {w8_tile_2_1, w8_tile_2_2}, {w8_tile_3_1, NULL},
    {w8_tile_4_1, NULL}};
// clang-format on

/* ---- w4a8 ------------------------------------------------------------------------------ */

/* One group's float step for the sums in acc16 (int16 pairs): sum += (float)acc_g * d_g. */
ALWAYS_INLINE __m256 w4_group_step(__m256 sum, __m256i acc16, int32_t bsum, __m256 dg) {
  __m256i acc = _mm256_madd_epi16(acc16, _mm256_set1_epi16(1));
  acc = _mm256_sub_epi32(acc, _mm256_set1_epi32((int32_t)((uint32_t)bsum << 3)));
  return _mm256_add_ps(sum, _mm256_mul_ps(_mm256_cvtepi32_ps(acc), dg));
}

ALWAYS_INLINE void w4_tile(const tile_args* a, const int T, const int NB) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  __m256 sum[TILE_T * 2]; /* [(t * NB + b) * 2 + h] */
#pragma GCC unroll 16
  for (int i = 0; i < T * NB * 2; i++) sum[i] = _mm256_setzero_ps();
  const uint16_t* ds = a->d;
  for (int64_t g = 0; g < a->k; g++) {
    __m256i acc[TILE_T * 2];
#pragma GCC unroll 16
    for (int i = 0; i < T * NB * 2; i++) acc[i] = _mm256_setzero_si256();
    const uint8_t* w = a->w + g * 256;
    const int8_t* x = a->x + g * 32;
#pragma GCC unroll 1
    for (int j = 0; j < 4; j++) { /* rolled: unrolled, GCC hoists and spills the products */
      __m256i lo[MAX_NB * 2], hi[MAX_NB * 2];
#pragma GCC unroll 4
      for (int i = 0; i < NB * 2; i++) {
        __m256i v =
            _mm256_loadu_si256((const __m256i*)(w + (i / 2) * a->w_stride + 64 * j + 32 * (i % 2)));
        lo[i] = _mm256_and_si256(v, nib);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) {
        __m256i xl = bcast4(x + t * a->x_stride + 8 * j);
        __m256i xh = bcast4(x + t * a->x_stride + 8 * j + 4);
#pragma GCC unroll 4
        for (int i = 0; i < NB * 2; i++) {
          __m256i p =
              _mm256_add_epi16(_mm256_maddubs_epi16(lo[i], xl), _mm256_maddubs_epi16(hi[i], xh));
          acc[t * NB * 2 + i] = _mm256_add_epi16(acc[t * NB * 2 + i], p);
        }
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NB * 2; i++) {
      const uint16_t* dp = ds + (i / 2) * a->d_stride + g * 16 + 8 * (i % 2);
      __m256 dg = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)dp));
#pragma GCC unroll 16
      for (int t = 0; t < T; t++)
        sum[t * NB * 2 + i] = w4_group_step(sum[t * NB * 2 + i], acc[t * NB * 2 + i],
                                            a->bsum[t * a->bsum_stride + g], dg);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++)
#pragma GCC unroll 4
    for (int i = 0; i < NB * 2; i++)
      store_rows(a->y + t * a->y_stride + 8 * i,
                 _mm256_mul_ps(sum[t * NB * 2 + i], _mm256_set1_ps(a->sx[t])), a->rows_left, i / 2,
                 i % 2);
}

/* The w4a8 tiles, as the w8a8 ones. */
// clang-format off
#define W4_FN(T, NB) static void w4_tile_##T##_##NB(const tile_args* a) { w4_tile(a, T, NB); }
W4_FN(1, 1) W4_FN(2, 1) W4_FN(3, 1) W4_FN(4, 1) W4_FN(1, 2) W4_FN(2, 2)
static const tile_fn k_w4_tiles[TILE_T][MAX_NB] = {
    {w4_tile_1_1, w4_tile_1_2}, {w4_tile_2_1, w4_tile_2_2}, {w4_tile_3_1, NULL},
    {w4_tile_4_1, NULL}};
// clang-format on

/* ---- driver ---------------------------------------------------------------------------- */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

void qn_i8_rows_avx2(const qn_qtensor* W, const qn_i8_act* a, float* Y, int64_t rb0, int64_t rb1) {
  const bool w4 = W->layout == QN_LAYOUT_I4X16;
  const int64_t rows = W->rows, cols = W->cols, n = a->n;
  const int64_t c4 = (cols + 3) / 4 * 4, G = (cols + 31) / 32;
  rb1 = min64(rb1, (rows + 15) / 16);
  if (rb0 >= rb1 || n <= 0) return;
  const int max_nb = n <= 2 ? 2 : 1;
  tile_args ta;
  ta.w_stride = w4 ? G * 256 : c4 * 16;
  ta.x_stride = a->stride;
  ta.k = w4 ? G : c4 / 4;
  ta.bsum_stride = a->stride / 32;
  ta.d_stride = G * 16;
  ta.y_stride = rows;
  for (int64_t tc0 = 0; tc0 < n; tc0 += TOK_CHUNK) {
    const int64_t tc1 = min64(n, tc0 + TOK_CHUNK);
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
        const int tt = (int)min64(nb > 1 ? 2 : TILE_T, tc1 - t);
        ta.x = a->codes + t * a->stride;
        ta.bsum = a->bsum + t * ta.bsum_stride;
        ta.sx = a->scale + t;
        ta.y = Y + t * rows + rb * 16;
        (w4 ? k_w4_tiles[tt - 1][nb - 1] : k_w8_tiles[tt - 1][nb - 1])(&ta);
        t += tt;
      }
      rb += nb;
    }
  }
}
