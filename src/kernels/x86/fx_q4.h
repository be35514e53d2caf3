/* fx_q4.h: the activation layout ("prep") and call geometry of the x86 int4-gN weight-only
 * kernels (src/kernels/x86/{avx2,avx512}/matvec_q4_*.c), shared by both ISAs and fx_common.c.
 *
 * Weights: the packed QN_LAYOUT_I4X16 of quant/pack_i8.h (the w4a8 layout, with one fp16
 * scale per row and scale group of N columns). One 64-byte chunk holds 8 columns of 16 rows,
 * 4 bytes per row; byte i of row r's 4 has column 8j + i in its low nibble and 8j + 4 + i in
 * its high one, as q + 8 in [0, 15]. One and (low nibbles) and one shift + and (high
 * nibbles) give two vectors of unsigned codes whose 32-bit lane r belongs to row r, so a
 * VNNI vpdpbusd with 4 activation bytes broadcast to all lanes adds 4 products to each row's
 * sum, and a scale group's sums stay in one int32 lane per row until the group ends.
 *
 * Activations: each token's x is quantized once per call to 16 bits with a power-of-two step
 * sx = 2^e, the smallest with max|x| / sx <= Q4I_XQ_MAX: xq = round_half_even(x / sx), an
 * exact multiplication followed by one rounding, so |x - xq sx| <= sx / 2 < max|x| / 32639
 * (about 3e-5 of the largest activation; the 4-bit weights' own error is ~1e-1 of theirs).
 * xq is split into two signed bytes, xq = 256 xh + xl with xl in [-128, 127] (xh = floor((xq
 * + 128) / 256), in [-128, 127] because |xq| <= 32639), the signed operands of vpdpbusd.
 * With x = xq sx exactly (e.g. small integers), the kernels' result is exact wherever the
 * float reference's is. A token with a non-finite activation gets sx = NaN, so all its
 * outputs are NaN.
 *
 * Per token (q4i_token_bytes apart; 64-byte multiples):
 *   bytes 0..63                 float sx, then zeros
 *   int8  xl[P]                 P = 32 * ceil(cols / 32); 0 past cols
 *   int8  xh[P]
 *   int32 C[NG], zero-padded    C[s] = -8 * sum of xq over scale group s (the codes' +8)
 * Row r's result is sx * sum_s d[r][s] * (C[s] + sum_c code[r][c] xl[c]
 * + 256 sum_c code[r][c] xh[c]) over the group's columns: the integer part is exact in int32
 * (|.| <= 128 * 8 * 32896 + 128 * 15 * 128 * 256 < 2^31 for groups of up to 128 columns),
 * then one int->float conversion (exact below 2^24: always for g32), one FMA per group and
 * one product by sx. */
#ifndef QN_KERNELS_X86_FX_Q4_H
#define QN_KERNELS_X86_FX_Q4_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/x86/fx_tiles.h"
#include "quant/qtype.h"

#define Q4I_HEAD_BYTES 64          /* per-token header (sx) */
#define Q4I_XQ_MAX 32639.0f        /* largest |xq|: 256 * 127 + 127 */
#define Q4I_PREFETCH_BYTES 8192    /* distance of the kernels' software prefetch of the payload */
#define Q4I_L1_PREFETCH_BYTES 1024 /* distance of the AVX-512 kernel's L2 -> L1 prefetch */
#define Q4I_BLOCK_BYTES 256        /* payload of one 16-row x 32-column block */

/* Activation bytes per token and side (xl or xh): columns rounded up to 32. */
static inline int64_t q4i_padded_cols(int64_t cols) { return (cols + 31) / 32 * 32; }

/* Bytes of one token's prep for a weight of cols columns and n_groups scale groups. */
static inline size_t q4i_token_bytes(int64_t cols, int64_t n_groups) {
  return Q4I_HEAD_BYTES + 2 * (size_t)q4i_padded_cols(cols) + ((size_t)n_groups * 4 + 63) / 64 * 64;
}

/* The exponent e of the step 2^e for a token whose largest |x| is amax (finite, >= 0): the
 * smallest with amax * 2^-e <= Q4I_XQ_MAX, kept within [-126, 126] so 2^-e is a normal float. */
static inline int q4i_step_exponent(float amax) {
  if (!(amax > 0.0f)) return 0;
  int e;
  (void)frexpf(amax, &e); /* amax < 2^e */
  e -= 15;                /* amax * 2^-e < 32768 */
  if (e < -126) e = -126;
  while (e < 126 && ldexpf(amax, -e) > Q4I_XQ_MAX) e++;
  return e;
}

/* Everything a kernel block reads of one call, resolved once per call (both ISAs). */
typedef struct q4i_mat {
  const uint8_t* data;    /* packed payload; 16-row block b at b * block_bytes */
  size_t block_bytes;     /* payload bytes per 16-row block: 256 * blocks32 */
  const uint16_t* scales; /* packed fp16 scales; 16-row block b at b * 16 * n_groups */
  int64_t rows;           /* rows of W (the stride of Y between tokens) */
  int64_t blocks32;       /* 32-column blocks per row: ceil(cols / 32) */
  int64_t n_groups;       /* scale groups per row */
  int per_group;          /* 32-column blocks per scale group: 1, 2, 4 (the last may have fewer) */
  int64_t p_cols;         /* activation bytes per side: 32 * blocks32 */
  const uint8_t* prep;    /* prepared activations (above), token 0 */
  size_t prep_stride;     /* bytes between tokens in prep */
  size_t scale_ahead; /* scale bytes prefetched ahead, as far as Q4I_PREFETCH_BYTES of payload */
  float* Y;           /* n x rows */
  int64_t r0, r1;     /* the rows of Y this call stores (its blocks compute whole 16 rows) */
} q4i_mat;

/* Fills m for W (packed int4-gN), the prep of qn_q4_prep_*, and rows r0 .. r1-1 of Y. */
static inline void q4i_mat_init(q4i_mat* m, const qn_qtensor* W, const float* prep, float* Y,
                                int64_t r0, int64_t r1) {
  const int64_t cols = W->cols;
  const int group = qn_qtype_traits_of(W->type)->group;
  m->data = W->data;
  m->blocks32 = (cols + 31) / 32;
  m->block_bytes = (size_t)m->blocks32 * Q4I_BLOCK_BYTES;
  m->scales = W->scales;
  m->rows = W->rows;
  m->n_groups = qn_qtype_n_groups(W->type, cols);
  m->per_group = group / 32;
  m->p_cols = q4i_padded_cols(cols);
  m->prep = (const uint8_t*)prep;
  m->prep_stride = q4i_token_bytes(cols, m->n_groups);
  /* 32 scale bytes (16 rows) per group of 256 * per_group payload bytes */
  m->scale_ahead = (size_t)Q4I_PREFETCH_BYTES / (8u * (size_t)m->per_group);
  m->Y = Y;
  m->r0 = r0;
  m->r1 = r1;
}

/* Token t's low activation bytes xl in the prep (its xh are p_cols bytes further on). */
static inline const int8_t* q4i_xl(const q4i_mat* m, int t) {
  return (const int8_t*)(m->prep + (size_t)t * m->prep_stride + Q4I_HEAD_BYTES);
}

/* Token t's group offset C[s]. */
static inline int32_t q4i_offset(const q4i_mat* m, int t, int64_t s) {
  int32_t c;
  memcpy(&c, (const uint8_t*)q4i_xl(m, t) + 2 * (size_t)m->p_cols + 4 * (size_t)s, 4);
  return c;
}

/* Token t's activation step sx. */
static inline float q4i_step(const q4i_mat* m, int t) {
  float sx;
  memcpy(&sx, m->prep + (size_t)t * m->prep_stride, sizeof sx);
  return sx;
}

/* The 32-column block after the last of the scale group that starts at block k. */
static inline int64_t q4i_group_end(const q4i_mat* m, int64_t k) {
  return k + m->per_group < m->blocks32 ? k + m->per_group : m->blocks32;
}

/* Prefetches (into L2) the start of the payload and scales of the 16-row blocks b0 .. b1-1
 * that the kernels' running prefetch, Q4I_PREFETCH_BYTES ahead, does not cover. */
static inline void q4i_prefetch_start(const q4i_mat* m, int64_t b0, int64_t b1) {
  const char* p = (const char*)(m->data + (size_t)b0 * m->block_bytes);
  size_t pay = (size_t)(b1 - b0) * m->block_bytes;
  if (pay > Q4I_PREFETCH_BYTES) pay = Q4I_PREFETCH_BYTES;
  for (size_t o = 0; o < pay; o += 64) __builtin_prefetch(p + o, 0, 2);
  const char* s = (const char*)(m->scales + (size_t)b0 * 16 * (size_t)m->n_groups);
  for (size_t o = 0; o < m->scale_ahead; o += 64) __builtin_prefetch(s + o, 0, 2);
}

/* One call of n tokens over m's rows: the start prefetched, then the 16-row blocks covering
 * r0 .. r1-1 in the shared tile order (fx_tiles.h; `run` gets r = 16 b, always a full block). */
static inline void q4i_run(const q4i_mat* m, int n, qn_fx_block_run run, int max_tokens) {
  if (m->r0 >= m->r1 || n <= 0) return;
  const int64_t b0 = m->r0 / 16, b1 = (m->r1 + 15) / 16;
  q4i_prefetch_start(m, b0, b1);
  qn_fx_for_blocks(m, run, 16 * b0, 16 * b1, n, 16, max_tokens);
}

#endif
