/* fx_q4.h: the activation layout ("prep") of the x86 int4-gN kernels
 * (src/kernels/x86/{avx2,avx512}/matvec_q4_*.c), shared by both ISAs and fx_common.c.
 *
 * int4-gN rows hold 2 codes per byte (column 2k in the low nibble of byte k, 2k + 1 in the
 * high one) and one fp16 scale d per group: w = (q - 8) d. Read 16 bits at a time, word i of
 * a 128-column block holds the codes of columns 4i, 4i+1, 4i+2, 4i+3 in bits 0-3, 4-7, 8-11,
 * 12-15, so four mask/shift operations split 64 payload bytes into four vectors of 32 16-bit
 * codes, c_k[i] = q[4i + k], with no shuffle. The kernels multiply those with 16-bit
 * activations (vpdpwssd / vpmaddwd: pairs of 16-bit products summed into 32-bit lanes), so
 * 32-bit lane l of the four products sums columns 8l .. 8l+7 of the block: one scale group
 * covers 4 (g32), 8 (g64) or 16 (g128) whole lanes.
 *
 * Activations: each token's x is quantized once per call to 16 bits with a power-of-two step
 * sx = 2^e, the smallest with max|x| / sx <= 32767: xq = round_half_even(x / sx), an exact
 * multiplication followed by one rounding, so |x - xq sx| <= sx / 2 < max|x| / 32767 (about
 * 3e-5 of the largest activation; the 4-bit weights' own error is ~1e-1 of theirs). With
 * x = xq sx exactly (e.g. small integers), the kernels' result is exact wherever the float
 * reference's is. A token with a non-finite activation gets sx = NaN, so all its outputs are
 * NaN.
 *
 * Per token (q4i_token_bytes apart; the kernels accept any alignment):
 *   bytes 0..63          float sx, then zeros
 *   per 128-column block b (Q4I_BLOCK_BYTES each, from byte 64):
 *     int16 X_k[32] for k = 0..3   X_k[i] = xq[128 b + 4 i + k] (0 past the row)
 *     int32 C[16]                  C[l] = -8 * sum_{j < 8} xq[128 b + 8 l + j]
 * C carries the codes' offset of 8: lane l of C + sum_k c_k * X_k is then
 * sum (q - 8) xq over its 8 columns, exact in int32 (|.| <= 8 * 8 * 32767). */
#ifndef QN_KERNELS_X86_FX_Q4_H
#define QN_KERNELS_X86_FX_Q4_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/qtype.h"

#define Q4I_BLOCK_COLS 128  /* columns per block */
#define Q4I_HEAD_BYTES 64   /* per-token header (sx) */
#define Q4I_X_BYTES 256     /* 4 x 32 int16 activations of a block */
#define Q4I_BLOCK_BYTES 320 /* activations + the 16 int32 offsets C */
#define Q4I_XQ_MAX 32767.0f
#define Q4I_PREFETCH_BYTES 8192 /* least distance of the kernels' software prefetch */

/* Blocks of a row of cols columns, the ragged one included. */
static inline int64_t q4i_blocks(int64_t cols) {
  return (cols + Q4I_BLOCK_COLS - 1) / Q4I_BLOCK_COLS;
}

/* Bytes of one token's prep. */
static inline size_t q4i_token_bytes(int64_t cols) {
  return Q4I_HEAD_BYTES + (size_t)q4i_blocks(cols) * Q4I_BLOCK_BYTES;
}

/* The exponent e of the step 2^e for a token whose largest |x| is amax (finite, >= 0): the
 * smallest with amax * 2^-e <= 32767, kept within [-126, 126] so 2^-e is a normal float. */
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
  const uint8_t* data;    /* payload of row 0; rows are row_bytes apart */
  size_t row_bytes;       /* payload bytes per row (cols / 2 rounded up) */
  const uint8_t* scales;  /* fp16 group scales of row 0; rows are scale_bytes apart */
  size_t scale_bytes;     /* bytes of scales per row */
  int64_t rows;           /* rows of W (the stride of Y between tokens) */
  int64_t n_groups;       /* scale groups per row */
  int64_t full_blocks;    /* whole 128-column blocks per row */
  int64_t blocks;         /* blocks per row, the ragged one included */
  int tail_bytes;         /* payload bytes of the ragged block (0..64) */
  int gshift;             /* log2(group / 32): 0, 1, 2 */
  const uint8_t* prep;    /* prepared activations (above), token 0 */
  size_t prep_stride;     /* bytes between tokens in prep */
  size_t prefetch_ahead;  /* bytes from a payload byte to the one prefetched with it: the
                             same offset of a block of rows >= Q4I_PREFETCH_BYTES further */
  size_t prefetch_scales; /* the same for the scales: as many rows ahead */
  float* Y;               /* n x rows */
} q4i_mat;

/* Fills m for W, the prep of qn_q4_prep_*, and Y; rows_per_block: the kernel's row block
 * (the prefetch distance is a whole number of them). */
static inline void q4i_mat_init(q4i_mat* m, const qn_qtensor* W, const float* prep, float* Y,
                                int rows_per_block) {
  const int64_t cols = W->cols;
  const int group = qn_qtype_traits_of(W->type)->group;
  m->data = W->data;
  m->row_bytes = (size_t)qn_qtype_row_bytes(W->type, cols);
  m->scales = W->scales;
  m->n_groups = qn_qtype_n_groups(W->type, cols);
  m->scale_bytes = (size_t)m->n_groups * 2;
  m->rows = W->rows;
  m->full_blocks = cols / Q4I_BLOCK_COLS;
  m->blocks = q4i_blocks(cols);
  m->tail_bytes = (int)((cols % Q4I_BLOCK_COLS + 1) / 2);
  m->gshift = group == 128 ? 2 : group == 64 ? 1 : 0;
  m->prep = (const uint8_t*)prep;
  m->prep_stride = q4i_token_bytes(cols);
  size_t ahead = (Q4I_PREFETCH_BYTES + m->row_bytes - 1) / m->row_bytes;
  ahead = (ahead + (size_t)rows_per_block - 1) / (size_t)rows_per_block * (size_t)rows_per_block;
  m->prefetch_ahead = ahead * m->row_bytes;
  m->prefetch_scales = ahead * m->scale_bytes;
  m->Y = Y;
}

#endif
