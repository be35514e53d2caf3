/* quant_fp8.c: FP8 schemes. Each row has one f32 scale d = absmax / fmax (fmax = 448 for
 * E4M3, 57344 for E5M2); the payload holds the OCP FP8 code of w / d (round to nearest
 * even, saturating), and w ~ fp8_value(code) * d. */
#include "quant/quant_rows.h"
#include "quant/scale_search.h"

static const qn_sym_quantizer k_e4m3 = {QN_CODE_E4M3, 0, 0, QN_FP8_E4M3_MAX, false};
static const qn_sym_quantizer k_e5m2 = {QN_CODE_E5M2, 0, 0, QN_FP8_E5M2_MAX, false};

static void fp8_row(const qn_sym_quantizer* Q, const float* w, int64_t cols, const qn_quant_opts* o,
                    uint8_t* codes, void* scales) {
  float d = qn_sym_group_scale(Q, w, o ? o->importance : NULL, cols, o && o->search);
  qn_store_f32(scales, 0, d);
  for (int64_t i = 0; i < cols; i++) {
    if (d == 0.0f)
      codes[i] = 0;
    else if (Q->kind == QN_CODE_E4M3)
      codes[i] = qn_f32_to_fp8_e4m3(w[i] / d);
    else
      codes[i] = qn_f32_to_fp8_e5m2(w[i] / d);
  }
}

void qn_quantize_row_f8_e4m3(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  fp8_row(&k_e4m3, w, cols, o, payload, scales);
}
void qn_quantize_row_f8_e5m2(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  fp8_row(&k_e5m2, w, cols, o, payload, scales);
}

void qn_dequant_row_f8_e4m3(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* c = qn_qtensor_row_data(w, r);
  float d = qn_load_f32(qn_qtensor_row_scales(w, r), 0);
  for (int64_t i = 0; i < w->cols; i++) out[i] = qn_fp8_e4m3_to_f32(c[i]) * d;
}

void qn_dequant_row_f8_e5m2(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* c = qn_qtensor_row_data(w, r);
  float d = qn_load_f32(qn_qtensor_row_scales(w, r), 0);
  for (int64_t i = 0; i < w->cols; i++) out[i] = qn_fp8_e5m2_to_f32(c[i]) * d;
}
