/* ops_ref.c: reference RMSNorm, softmax and SwiGLU. */
#include <math.h>

#include "kernels/kernels.h"

void qn_rmsnorm_ref(float* out, const float* x, const float* w, int n, float eps) {
  double ss = 0.0;
  for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
  float inv = (float)(1.0 / sqrt(ss / n + eps));
  for (int i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

void qn_softmax_ref(float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > mx) mx = x[i];
  double sum = 0.0;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - mx);
    sum += x[i];
  }
  float inv = (float)(1.0 / sum);
  for (int i = 0; i < n; i++) x[i] *= inv;
}

void qn_swiglu_ref(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

void qn_attn_head_ref(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                      int head_dim, float scale, float* att, float* out) {
  for (int i = 0; i < n_pos; i++) {
    const float* kr = k + (size_t)i * kv_stride;
    float dot = 0.0f;
    for (int d = 0; d < head_dim; d++) dot += q[d] * kr[d];
    att[i] = dot * scale;
  }
  qn_softmax_ref(att, n_pos);
  for (int d = 0; d < head_dim; d++) out[d] = 0.0f;
  for (int i = 0; i < n_pos; i++) {
    const float* vr = v + (size_t)i * kv_stride;
    float a = att[i];
    for (int d = 0; d < head_dim; d++) out[d] += a * vr[d];
  }
}
