/* matmul_blas.c: batched products through OpenBLAS. Float32 weights go straight to sgemm;
 * other schemes are dequantized a block of rows at a time (about 4M floats, in parallel)
 * into scratch and multiplied block by block, so no full f32 copy of a large weight exists. */
#include <cblas.h>

#include "kernels/kernels.h"

int qn_blas_row_block(const qn_qtensor* W) {
  int64_t r = ((int64_t)1 << 22) / (W->cols > 0 ? W->cols : 1);
  if (r < 64) r = 64;
  if (r > W->rows) r = W->rows;
  return (int)r;
}

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
  const int block = qn_blas_row_block(W);
  for (int r0 = 0; r0 < rows; r0 += block) {
    int nr = rows - r0 < block ? rows - r0 : block;
    dequant_job j = {W, r0, scratch};
    qn_pool_for(pool, nr, 8, dequant_rows, &j);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nr, cols, 1.0f, X, cols, scratch, cols,
                0.0f, Y + r0, rows);
  }
}

void qn_blas_set_threads(int n_threads) {
  if (n_threads > 0) openblas_set_num_threads(n_threads);
}
