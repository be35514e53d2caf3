/* attention_blas.c: causal attention for a block of consecutive queries as two matrix
 * products (scores = Q K^T, out = P V) around a masked row softmax. */
#include <cblas.h>

#include "kernels/kernels.h"

void qn_attention_causal_blas(const float* q, int q_stride, const float* k, const float* v,
                              int kv_stride, int n, int p0, int head_dim, float scale, float* out,
                              int out_stride, float* scratch) {
  const int L = p0 + n; /* keys visible to the last query */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, L, head_dim, scale, q, q_stride, k,
              kv_stride, 0.0f, scratch, L);
  for (int t = 0; t < n; t++) {
    float* row = scratch + (size_t)t * L;
    int visible = p0 + t + 1;
    qn_softmax(row, visible);
    for (int j = visible; j < L; j++) row[j] = 0.0f; /* the causal mask */
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, head_dim, L, 1.0f, scratch, L, v,
              kv_stride, 0.0f, out, out_stride);
}
