/* hessian.c: streaming accumulation of H = 2/N sum x x^T (see hessian.h). */
#include "calib/hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

qn_status qn_hessian_init(qn_hessian* H, int n) {
  memset(H, 0, sizeof *H);
  if (n <= 0 || n > 65536) return qn_error(QN_EINVAL, "Hessian width %d out of range", n);
  size_t nn = (size_t)n * (size_t)n;
  H->n = n;
  H->sum = calloc(nn, sizeof *H->sum);
  H->batch = malloc(nn * sizeof *H->batch);
  if (!H->sum || !H->batch) {
    qn_hessian_free(H);
    return qn_error(QN_ENOMEM, "out of memory for a %d x %d Hessian", n, n);
  }
  return QN_OK;
}

void qn_hessian_add(qn_hessian* H, const float* x, int64_t rows) {
  if (rows <= 0) return;
  const int n = H->n;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int)rows, 1.0f, x, n, 0.0f, H->batch, n);
  for (int i = 0; i < n; i++)
    for (int j = i; j < n; j++) H->sum[(size_t)i * n + j] += H->batch[(size_t)i * n + j];
  H->count += rows;
}

void qn_hessian_finish(const qn_hessian* H, float* out) {
  const int n = H->n;
  double k = H->count > 0 ? 2.0 / (double)H->count : 1.0;
  for (int i = 0; i < n; i++)
    for (int j = i; j < n; j++) {
      float v = (float)(k * H->sum[(size_t)i * n + j]);
      out[(size_t)i * n + j] = v;
      out[(size_t)j * n + i] = v;
    }
}

void qn_hessian_free(qn_hessian* H) {
  free(H->sum);
  free(H->batch);
  memset(H, 0, sizeof *H);
}
