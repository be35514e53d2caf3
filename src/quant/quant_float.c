/* quant_float.c: the float "schemes" f32, f16 and bf16: one value per weight, no scales.
 * f16 and bf16 round to nearest even (core/half.h). */
#include "quant/quant_rows.h"

void qn_quantize_row_f32(QN_QUANT_ROW_ARGS) {
  (void)o, (void)scales, (void)zeros;
  memcpy(payload, w, (size_t)cols * sizeof(float));
}

void qn_quantize_row_f16(QN_QUANT_ROW_ARGS) {
  (void)o, (void)scales, (void)zeros;
  uint8_t* p = payload;
  for (int64_t i = 0; i < cols; i++) {
    uint16_t h = qn_f32_to_f16(w[i]);
    memcpy(p + 2 * i, &h, 2);
  }
}

void qn_quantize_row_bf16(QN_QUANT_ROW_ARGS) {
  (void)o, (void)scales, (void)zeros;
  uint8_t* p = payload;
  for (int64_t i = 0; i < cols; i++) {
    uint16_t h = qn_f32_to_bf16(w[i]);
    memcpy(p + 2 * i, &h, 2);
  }
}

void qn_dequant_row_f32(const qn_qtensor* w, int64_t r, float* out) {
  memcpy(out, qn_qtensor_row_data(w, r), (size_t)w->cols * sizeof(float));
}

void qn_dequant_row_f16(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* p = qn_qtensor_row_data(w, r);
  for (int64_t i = 0; i < w->cols; i++) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    out[i] = qn_f16_to_f32(h);
  }
}

void qn_dequant_row_bf16(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* p = qn_qtensor_row_data(w, r);
  for (int64_t i = 0; i < w->cols; i++) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    out[i] = qn_bf16_to_f32(h);
  }
}
