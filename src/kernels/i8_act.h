/* i8_act.h: int8-quantized activations shared by every kernel of the schemes with int8
 * activations. A batch of n tokens is quantized once (qn_matmul_i8_ref's step 1, the rule
 * in docs/QUANTIZATION.md) and then multiplied by any number of weight matrices that take
 * the same input at the same activation scale (q/k/v, gate/up): the fusion that removes
 * repeated passes over the activations. */
#ifndef QN_KERNELS_I8_ACT_H
#define QN_KERNELS_I8_ACT_H

#include <stddef.h>
#include <stdint.h>

/* Codes per token are padded to a multiple of this many bytes (zeros beyond cols). */
#define QN_I8_ACT_ALIGN 64

typedef struct qn_i8_act {
  int n;              /* tokens */
  int64_t cols;       /* features per token */
  int64_t stride;     /* bytes between tokens in codes: cols rounded up to QN_I8_ACT_ALIGN */
  float static_scale; /* > 0: every token uses it (w8a8-static); 0: per-token absmax / 127 */
  float* scale;       /* [n] activation scale of each token */
  int8_t* codes;      /* [n][stride] codes in [-127, 127], 0 in the padding */
  int32_t* bsum;      /* [n][stride / 32] sum of the codes of each 32-column block */
} qn_i8_act;

/* Bytes of the buffers of a qn_i8_act for n tokens of cols features. */
size_t qn_i8_act_bytes(int n, int64_t cols);
/* Lays a qn_i8_act over buf (qn_i8_act_bytes(n, cols) bytes, 64-byte aligned). */
void qn_i8_act_init(qn_i8_act* a, void* buf, int n, int64_t cols, float static_scale);

/* Quantizes tokens t0..t1-1 of X (n x cols floats) into a: scale, codes, padding zeros
 * and block sums. The reference; SIMD versions must match it bit for bit. */
void qn_i8_act_quantize_ref(qn_i8_act* a, const float* X, int64_t t0, int64_t t1);

#endif
