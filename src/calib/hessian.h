/* hessian.h: the GPTQ Hessian of a linear layer's input, H = 2/N * sum_t x_t x_t^T over the N
 * calibration rows x_t (width n) that reach the layer, accumulated in double, batch by
 * batch (BLAS syrk on each batch). */
#ifndef QN_CALIB_HESSIAN_H
#define QN_CALIB_HESSIAN_H

#include <stdint.h>

#include "core/status.h"

typedef struct qn_hessian {
  int n;         /* width of the inputs (the layer's cols) */
  double* sum;   /* n x n row-major sum of x x^T (after qn_hessian_finish: 2/N times it) */
  float* batch;  /* n x n scratch for one batch's x^T x (upper triangle) */
  int64_t count; /* rows accumulated (N) */
} qn_hessian;

/* Zeroed n x n accumulator. QN_ENOMEM when the buffers do not fit. */
qn_status qn_hessian_init(qn_hessian* H, int n);
/* Adds rows x n inputs x (row-major). */
void qn_hessian_add(qn_hessian* H, const float* x, int64_t rows);
/* Scales the sum to 2/N (N = count; unchanged when count is 0) and writes it as f32 into
 * out (n x n, full symmetric). */
void qn_hessian_finish(const qn_hessian* H, float* out);
void qn_hessian_free(qn_hessian* H);

#endif
