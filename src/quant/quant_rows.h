/* quant_rows.h: the per-scheme row quantizers and dequantizers the traits table points at
 * (internal to src/quant), and helpers to read/write scales that may be unaligned. */
#ifndef QN_QUANT_QUANT_ROWS_H
#define QN_QUANT_QUANT_ROWS_H

#include <string.h>

#include "core/half.h"
#include "quant/qtype.h"

/* Scale i of an array of fp16 scales. */
static inline float qn_load_f16(const void* p, int64_t i) {
  uint16_t h;
  memcpy(&h, (const uint8_t*)p + 2 * i, 2);
  return qn_f16_to_f32(h);
}
/* Stores v (already an fp16 value) as scale i of an fp16 array. */
static inline void qn_store_f16(void* p, int64_t i, float v) {
  uint16_t h = qn_f32_to_f16(v);
  memcpy((uint8_t*)p + 2 * i, &h, 2);
}
static inline float qn_load_f32(const void* p, int64_t i) {
  float v;
  memcpy(&v, (const uint8_t*)p + 4 * i, 4);
  return v;
}
static inline void qn_store_f32(void* p, int64_t i, float v) { memcpy((uint8_t*)p + 4 * i, &v, 4); }

/* Row r's payload, scales and zeros inside a whole-matrix qn_qtensor in the canonical layout
 * (QN_LAYOUT_ROWS); a packed tensor has no row-contiguous data: read it through
 * qn_packed_row_codes (quant/pack_i8.h) or the scheme's dequant_row. */
const uint8_t* qn_qtensor_row_data(const qn_qtensor* w, int64_t r);
const void* qn_qtensor_row_scales(const qn_qtensor* w, int64_t r);
const void* qn_qtensor_row_zeros(const qn_qtensor* w, int64_t r);

/* Signature of a row quantizer (see qn_qtype_traits.quantize_row). */
#define QN_QUANT_ROW_ARGS \
  const float *w, int64_t cols, const qn_quant_opts *o, void *payload, void *scales, void *zeros

/* quant_float.c */
void qn_quantize_row_f32(QN_QUANT_ROW_ARGS);
void qn_quantize_row_f16(QN_QUANT_ROW_ARGS);
void qn_quantize_row_bf16(QN_QUANT_ROW_ARGS);
void qn_dequant_row_f32(const qn_qtensor* w, int64_t r, float* out);
void qn_dequant_row_f16(const qn_qtensor* w, int64_t r, float* out);
void qn_dequant_row_bf16(const qn_qtensor* w, int64_t r, float* out);

/* quant_int8.c */
void qn_quantize_row_q8_c(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q8_g32(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q8_g64(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q8_g128(QN_QUANT_ROW_ARGS);
void qn_dequant_row_q8_c(const qn_qtensor* w, int64_t r, float* out);
void qn_dequant_row_q8_g(const qn_qtensor* w, int64_t r, float* out); /* any group size */
/* w8a8-*: canonical rows as int8-channel, or the packed QN_LAYOUT_I8X16 */
void qn_dequant_row_w8a8(const qn_qtensor* w, int64_t r, float* out);

/* quant_int4.c */
void qn_quantize_row_q4_g32(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q4_g64(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q4_g128(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q4a_g32(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q4a_g64(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q4a_g128(QN_QUANT_ROW_ARGS);
/* int4-gN and w4a8: canonical rows, or the packed QN_LAYOUT_I4X16 */
void qn_dequant_row_q4_g(const qn_qtensor* w, int64_t r, float* out);
void qn_dequant_row_q4a_g(const qn_qtensor* w, int64_t r, float* out);

/* quant_int3.c */
void qn_quantize_row_q3_g32(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q3_g64(QN_QUANT_ROW_ARGS);
void qn_quantize_row_q3_g128(QN_QUANT_ROW_ARGS);
void qn_dequant_row_q3_g(const qn_qtensor* w, int64_t r, float* out);
/* 3-bit field i of a row (see quant_int3.c for the bit layout); put ORs into zeroed bytes */
void qn_int3_put(uint8_t* p, int64_t i, unsigned v);
unsigned qn_int3_get(const uint8_t* p, int64_t i);

/* quant_fp8.c */
void qn_quantize_row_f8_e4m3(QN_QUANT_ROW_ARGS);
void qn_quantize_row_f8_e5m2(QN_QUANT_ROW_ARGS);
void qn_dequant_row_f8_e4m3(const qn_qtensor* w, int64_t r, float* out);
void qn_dequant_row_f8_e5m2(const qn_qtensor* w, int64_t r, float* out);

#endif
