/* matmul_ref.c: the reference matrix product for every weight scheme: dequantize one row
 * of W at a time through the scheme's traits, then dot it with every token. */
#include "kernels/kernels.h"

typedef struct matmul_job {
  const qn_qtensor* W;
  const float* X; /* n x cols */
  int n;
  float* Y;       /* n x rows */
  float* scratch; /* cols floats per thread */
} matmul_job;

static void matmul_rows(void* arg, int64_t r0, int64_t r1, int tid) {
  const matmul_job* j = arg;
  const int64_t cols = j->W->cols, rows = j->W->rows;
  const qn_qtype_traits* tr = qn_qtype_traits_of(j->W->type);
  float* wrow = j->scratch + (size_t)tid * (size_t)cols;
  for (int64_t r = r0; r < r1; r++) {
    tr->dequant_row(j->W, r, wrow);
    for (int t = 0; t < j->n; t++) {
      const float* x = j->X + (size_t)t * (size_t)cols;
      float acc = 0.0f;
      for (int64_t c = 0; c < cols; c++) acc += wrow[c] * x[c];
      j->Y[(size_t)t * (size_t)rows + (size_t)r] = acc;
    }
  }
}

void qn_matmul_ref(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                   float* scratch) {
  matmul_job j = {W, X, n, Y, scratch};
  qn_pool_for(pool, W->rows, 16, matmul_rows, &j);
}
