/* tensor.c: dtype names and sizes. */
#include "core/tensor.h"

#include <string.h>

static const struct {
  const char* name; /* safetensors spelling */
  int bits;         /* bits per element for plain types; 0 for block types */
} k_dtypes[QN_DTYPE_COUNT] = {
    [QN_DTYPE_F32] = {"F32", 32},        [QN_DTYPE_F16] = {"F16", 16},
    [QN_DTYPE_BF16] = {"BF16", 16},      [QN_DTYPE_F64] = {"F64", 64},
    [QN_DTYPE_I8] = {"I8", 8},           [QN_DTYPE_U8] = {"U8", 8},
    [QN_DTYPE_I16] = {"I16", 16},        [QN_DTYPE_I32] = {"I32", 32},
    [QN_DTYPE_I64] = {"I64", 64},        [QN_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [QN_DTYPE_F8_E5M2] = {"F8_E5M2", 8}, [QN_DTYPE_GGML_Q8_0] = {"Q8_0", 0},
    [QN_DTYPE_GGML_Q4_0] = {"Q4_0", 0},
};

const char* qn_dtype_name(qn_dtype t) {
  return (unsigned)t < QN_DTYPE_COUNT ? k_dtypes[t].name : "?";
}

int qn_dtype_from_name(const char* name) {
  for (int i = 0; i < QN_DTYPE_COUNT; i++)
    if (strcmp(k_dtypes[i].name, name) == 0) return i;
  return -1;
}

int qn_dtype_block(qn_dtype t) {
  return (t == QN_DTYPE_GGML_Q8_0 || t == QN_DTYPE_GGML_Q4_0) ? 32 : 1;
}

uint64_t qn_dtype_bytes(qn_dtype t, int64_t n) {
  if ((unsigned)t >= QN_DTYPE_COUNT || n < 0) return 0;
  if (t == QN_DTYPE_GGML_Q8_0) return n % 32 ? 0 : (uint64_t)(n / 32) * 34;
  if (t == QN_DTYPE_GGML_Q4_0) return n % 32 ? 0 : (uint64_t)(n / 32) * 18;
  return (uint64_t)n * (uint64_t)k_dtypes[t].bits / 8;
}

int64_t qn_tensor_nelem(const qn_tensor* t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}
