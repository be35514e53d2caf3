/* quant_int8.c: symmetric int8 schemes. Codes q in [-127, 127] (never -128), w ~ q * d,
 * one scale d per row (int8-channel, f32) or per group of 32/64/128 columns (fp16). */
#include "quant/pack_i8.h"
#include "quant/quant_rows.h"
#include "quant/scale_search.h"

static const qn_sym_quantizer k_q8_f32 = {QN_CODE_INT, -127, 127, 127.0f, false};
static const qn_sym_quantizer k_q8_f16 = {QN_CODE_INT, -127, 127, 127.0f, true};

/* Quantizes one row in groups of `group` columns (0 = the whole row). */
static void q8_row(const qn_sym_quantizer* Q, int group, const float* w, int64_t cols,
                   const qn_quant_opts* o, int8_t* codes, void* scales) {
  int64_t g = group > 0 ? group : cols;
  const float* imp = o ? o->importance : NULL;
  bool search = o && o->search;
  for (int64_t g0 = 0, k = 0; g0 < cols; g0 += g, k++) {
    int64_t n = cols - g0 < g ? cols - g0 : g;
    float d = qn_sym_group_scale(Q, w + g0, imp ? imp + g0 : NULL, n, search);
    if (Q->fp16_scale)
      qn_store_f16(scales, k, d);
    else
      qn_store_f32(scales, k, d);
    for (int64_t i = 0; i < n; i++) codes[g0 + i] = (int8_t)qn_sym_int_code(Q, w[g0 + i], d);
  }
}

void qn_quantize_row_q8_c(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q8_row(&k_q8_f32, 0, w, cols, o, payload, scales);
}
void qn_quantize_row_q8_g32(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q8_row(&k_q8_f16, 32, w, cols, o, payload, scales);
}
void qn_quantize_row_q8_g64(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q8_row(&k_q8_f16, 64, w, cols, o, payload, scales);
}
void qn_quantize_row_q8_g128(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q8_row(&k_q8_f16, 128, w, cols, o, payload, scales);
}

void qn_dequant_row_q8_c(const qn_qtensor* w, int64_t r, float* out) {
  const int8_t* q = (const int8_t*)qn_qtensor_row_data(w, r);
  float d = qn_load_f32(qn_qtensor_row_scales(w, r), 0);
  for (int64_t i = 0; i < w->cols; i++) out[i] = (float)q[i] * d;
}

void qn_dequant_row_q8_g(const qn_qtensor* w, int64_t r, float* out) {
  const int8_t* q = (const int8_t*)qn_qtensor_row_data(w, r);
  const void* s = qn_qtensor_row_scales(w, r);
  int64_t group = qn_qtype_traits_of(w->type)->group;
  for (int64_t g0 = 0, k = 0; g0 < w->cols; g0 += group, k++) {
    float d = qn_load_f16(s, k);
    int64_t end = g0 + group < w->cols ? g0 + group : w->cols;
    for (int64_t i = g0; i < end; i++) out[i] = (float)q[i] * d;
  }
}

void qn_dequant_row_w8a8(const qn_qtensor* w, int64_t r, float* out) {
  if (w->layout != QN_LAYOUT_I8X16) {
    qn_dequant_row_q8_c(w, r, out);
    return;
  }
  /* The row's int8 codes are gathered into the first cols bytes of out itself (no scratch),
   * then widened from the last column down: float c occupies bytes 4c..4c+3, which hold only
   * codes >= c, and code c is read before float c is written. */
  int8_t* q = (int8_t*)out;
  qn_packed_row_codes(w, r, q, NULL);
  const float d = qn_load_f32(w->scales, r); /* I8X16 keeps the f32 row scales as they are */
  for (int64_t c = w->cols - 1; c >= 0; c--) out[c] = (float)q[c] * d;
}
