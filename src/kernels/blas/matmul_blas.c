/* matmul_blas.c: batched products through OpenBLAS. Float32 weights go straight to sgemm;
 * other schemes are dequantized 64 rows at a time into scratch (in parallel) and multiplied
 * block by block, so no full f32 copy of a weight ever exists. */
#include <cblas.h>

#include "kernels/kernels.h"

#define QN_BLAS_ROW_BLOCK 64

typedef struct dequant_job {
  const qn_qtensor* W;
  int64_t r0; /* first row of the block */
  float* out; /* block rows x cols */
} dequant_job;

static void dequant_rows(void* arg, int64_t b, int64_t e, int tid) {
  (void)tid;
  const dequant_job* j = arg;
  const qn_qtype_traits* tr = qn_qtype_traits_of(j->W->type);
  for (int64_t i = b; i < e; i++) tr->dequant_row(j->W, j->r0 + i, j->out + i * j->W->cols);
}

void qn_matmul_blas(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                    float* scratch) {
  const int rows = (int)W->rows, cols = (int)W->cols;
  if (W->type == QN_QTYPE_F32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, X, cols,
                (const float*)W->data, cols, 0.0f, Y, rows);
    return;
  }
  for (int r0 = 0; r0 < rows; r0 += QN_BLAS_ROW_BLOCK) {
    int nr = rows - r0 < QN_BLAS_ROW_BLOCK ? rows - r0 : QN_BLAS_ROW_BLOCK;
    dequant_job j = {W, r0, scratch};
    qn_pool_for(pool, nr, 8, dequant_rows, &j);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nr, cols, 1.0f, X, cols, scratch, cols,
                0.0f, Y + r0, rows);
  }
}
