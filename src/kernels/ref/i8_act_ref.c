/* i8_act_ref.c: layout and reference quantization of int8 activations (kernels/i8_act.h). */
#include <string.h>

#include "kernels/i8_act.h"
#include "kernels/kernels.h"

static int64_t act_stride(int64_t cols) {
  return (cols + QN_I8_ACT_ALIGN - 1) / QN_I8_ACT_ALIGN * QN_I8_ACT_ALIGN;
}

/* Bytes rounded up to the alignment, so every array of the layout starts aligned. */
static size_t aligned(size_t b) {
  return (b + QN_I8_ACT_ALIGN - 1) / QN_I8_ACT_ALIGN * QN_I8_ACT_ALIGN;
}

size_t qn_i8_act_bytes(int n, int64_t cols) {
  size_t nn = (size_t)(n > 0 ? n : 0), st = (size_t)act_stride(cols);
  return aligned(nn * sizeof(float)) + aligned(nn * st) + aligned(nn * (st / 32) * 4);
}

void qn_i8_act_init(qn_i8_act* a, void* buf, int n, int64_t cols, float static_scale) {
  size_t nn = (size_t)(n > 0 ? n : 0);
  a->n = n;
  a->cols = cols;
  a->stride = act_stride(cols);
  a->static_scale = static_scale;
  uint8_t* p = buf;
  a->scale = (float*)p;
  p += aligned(nn * sizeof(float));
  a->codes = (int8_t*)p;
  p += aligned(nn * (size_t)a->stride);
  a->bsum = (int32_t*)p;
}

void qn_i8_act_quantize_ref(qn_i8_act* a, const float* X, int64_t t0, int64_t t1) {
  const int64_t nb = a->stride / 32;
  for (int64_t t = t0; t < t1; t++) {
    const float* x = X + (size_t)t * (size_t)a->cols;
    float s =
        a->static_scale > 0.0f ? qn_i8_valid_scale(a->static_scale) : qn_i8_token_scale(x, a->cols);
    int8_t* q = a->codes + (size_t)t * (size_t)a->stride;
    a->scale[t] = s;
    qn_i8_quantize_row(x, a->cols, s, q);
    memset(q + a->cols, 0, (size_t)(a->stride - a->cols));
    int32_t* bs = a->bsum + (size_t)t * (size_t)nb;
    for (int64_t b = 0; b < nb; b++) {
      int32_t sum = 0;
      for (int k = 0; k < 32; k++) sum += q[b * 32 + k];
      bs[b] = sum;
    }
  }
}
