/* tensor.h: storage element types and the tensor view every file reader produces. */
#ifndef QN_CORE_TENSOR_H
#define QN_CORE_TENSOR_H

#include <stdint.h>

typedef enum qn_dtype {
  QN_DTYPE_F32 = 0,
  QN_DTYPE_F16,  /* IEEE binary16 */
  QN_DTYPE_BF16, /* bfloat16 (upper half of an f32) */
  QN_DTYPE_F64,
  QN_DTYPE_I8,
  QN_DTYPE_U8,
  QN_DTYPE_I16,
  QN_DTYPE_I32,
  QN_DTYPE_I64,
  QN_DTYPE_F8_E4M3,   /* OCP FP8 E4M3 (max 448, no inf) */
  QN_DTYPE_F8_E5M2,   /* OCP FP8 E5M2 */
  QN_DTYPE_GGML_Q8_0, /* ggml block: f16 scale + 32 x int8 (34 bytes / 32 weights) */
  QN_DTYPE_GGML_Q4_0, /* ggml block: f16 scale + 16 bytes of nibbles, offset 8 (18 / 32) */
  QN_DTYPE_COUNT
} qn_dtype;

/* Name as written in safetensors headers ("F32", "BF16"...), or ggml names for ggml blocks. */
const char* qn_dtype_name(qn_dtype t);
/* Parses a safetensors dtype name; returns -1 if unknown. */
int qn_dtype_from_name(const char* name);
/* Bytes of n elements of type t (n must be a multiple of the block size for block types);
 * returns 0 if n is not a whole number of blocks. */
uint64_t qn_dtype_bytes(qn_dtype t, int64_t n);
/* Elements per block: 1 for plain types, 32 for ggml Q8_0/Q4_0. */
int qn_dtype_block(qn_dtype t);

#define QN_MAX_DIMS 4
#define QN_NAME_MAX 96

/* A view of one tensor inside a mapped file. Shapes are outermost first (row-major): a
 * linear weight is {out_features, in_features}, an embedding {vocab, dim}. */
typedef struct qn_tensor {
  char name[QN_NAME_MAX];     /* canonical name, see src/format/names.h */
  qn_dtype dtype;             /* element type as stored */
  int ndim;                   /* 1..QN_MAX_DIMS */
  int64_t shape[QN_MAX_DIMS]; /* extent of each dim, outermost first */
  const void* data;           /* first byte, inside a mapped file (never copied) */
  uint64_t nbytes;            /* bytes of data */
} qn_tensor;

/* Number of elements of t. */
int64_t qn_tensor_nelem(const qn_tensor* t);

#endif
