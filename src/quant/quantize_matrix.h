/* quantize_matrix.h: quantizing and dequantizing whole rows x cols weight matrices, with the
 * error statistics the quantize report and the .qnz metadata carry. */
#ifndef QN_QUANT_QUANTIZE_MATRIX_H
#define QN_QUANT_QUANTIZE_MATRIX_H

#include "quant/qtype.h"

/* How far dequant(quant(w)) is from w, over all rows x cols weights. */
typedef struct qn_quant_stats {
  double sqnr_db;     /* 10 log10(signal_sq / err_sq) dB; +INFINITY when err_sq == 0 */
  double max_abs_err; /* max |w - dequant(w)| */
  double rmse;        /* sqrt(err_sq / n) */
  double signal_sq;   /* sum of w^2 (lets callers pool stats over tensors) */
  double err_sq;      /* sum of (w - dequant(w))^2 */
  int64_t n;          /* weights measured: rows * cols */
} qn_quant_stats;

/* Quantizes the row-major f32 matrix w (rows x cols) to scheme t. The caller allocates
 *   payload: rows * qn_qtype_row_bytes(t, cols) bytes
 *   scales:  rows * qn_qtype_n_groups(t, cols) values of the scheme's scale dtype (NULL for
 *            f32/f16/bf16)
 *   zeros:   same size as scales for asymmetric schemes, else NULL
 * o may be NULL (plain RTN, one thread); o->importance, when set, has cols entries (finite,
 * >= 0). stats may be NULL (skips the measurement). Fails with QN_EINVAL on a bad argument or
 * a non-finite weight, QN_ERANGE when |w| exceeds the scheme's max_abs, QN_ENOMEM. */
qn_status qn_quantize_matrix(qn_qtype t, const float* w, int64_t rows, int64_t cols,
                             const qn_quant_opts* o, void* payload, void* scales, void* zeros,
                             qn_quant_stats* stats);

/* Dequantizes all of w (either layout) into out[rows * cols] (row-major). */
qn_status qn_qtensor_dequant(const qn_qtensor* w, float* out);

/* Rearranges w, a canonical (QN_LAYOUT_ROWS) matrix of a scheme that has a packed layout
 * (w8a8-*, w4a8: quant/pack_i8.h), into that layout in new buffers *payload and *scales
 * (malloc'ed; the caller frees them); *out views them with w's type, shape and act_scale.
 * QN_EINVAL for another scheme or a w already packed, QN_ENOMEM. */
qn_status qn_qtensor_pack(const qn_qtensor* w, qn_qtensor* out, void** payload, void** scales);

/* Error statistics of an approximation a of w (n values each). */
void qn_quant_stats_measure(const float* w, const float* a, int64_t n, qn_quant_stats* stats);

#endif
