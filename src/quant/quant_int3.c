/* quant_int3.c: symmetric 3-bit schemes int3-gN. Codes q in [-4, 3], w ~ q * d, one fp16
 * scale d per group of 32/64/128 columns. As for int4, the RTN scale maps the value of
 * largest magnitude to -4, so d's sign is opposite to it. Storage: the 3-bit field q + 4 of
 * column i sits at bits [3i, 3i + 3) of the row read as a little-endian bit stream (bit b is
 * bit b % 8 of byte b / 8; a field may straddle two bytes); row_bytes = ceil(3 cols / 8)
 * and the unused high bits of the last byte are 0. */
#include "quant/quant_rows.h"
#include "quant/scale_search.h"

static const qn_sym_quantizer k_q3 = {QN_CODE_INT, -4, 3, 3.0f, true};

/* Sets field i (3 bits) of a row whose bytes were zeroed first. */
void qn_int3_put(uint8_t* p, int64_t i, unsigned v) {
  uint64_t bit = (uint64_t)i * 3;
  unsigned two = (v & 7u) << (bit & 7);
  p[bit >> 3] |= (uint8_t)two;
  if ((bit & 7) > 5) p[(bit >> 3) + 1] |= (uint8_t)(two >> 8);
}

/* Field i (3 bits) of a row. */
unsigned qn_int3_get(const uint8_t* p, int64_t i) {
  uint64_t bit = (uint64_t)i * 3;
  unsigned v = p[bit >> 3];
  if ((bit & 7) > 5) v |= (unsigned)p[(bit >> 3) + 1] << 8;
  return (v >> (bit & 7)) & 7u;
}

static void q3_row(int64_t group, const float* w, int64_t cols, const qn_quant_opts* o,
                   uint8_t* payload, void* scales) {
  const float* imp = o ? o->importance : NULL;
  bool search = o && o->search;
  memset(payload, 0, (size_t)((cols * 3 + 7) / 8));
  for (int64_t g0 = 0, k = 0; g0 < cols; g0 += group, k++) {
    int64_t n = cols - g0 < group ? cols - g0 : group;
    float d = qn_sym_group_scale(&k_q3, w + g0, imp ? imp + g0 : NULL, n, search);
    qn_store_f16(scales, k, d);
    for (int64_t i = g0; i < g0 + n; i++)
      qn_int3_put(payload, i, (unsigned)(qn_sym_int_code(&k_q3, w[i], d) + 4));
  }
}

void qn_quantize_row_q3_g32(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q3_row(32, w, cols, o, payload, scales);
}
void qn_quantize_row_q3_g64(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q3_row(64, w, cols, o, payload, scales);
}
void qn_quantize_row_q3_g128(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q3_row(128, w, cols, o, payload, scales);
}

void qn_dequant_row_q3_g(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* p = qn_qtensor_row_data(w, r);
  const void* s = qn_qtensor_row_scales(w, r);
  int64_t group = qn_qtype_traits_of(w->type)->group;
  for (int64_t g0 = 0, k = 0; g0 < w->cols; g0 += group, k++) {
    float d = qn_load_f16(s, k);
    int64_t end = g0 + group < w->cols ? g0 + group : w->cols;
    for (int64_t i = g0; i < end; i++) out[i] = (float)((int)qn_int3_get(p, i) - 4) * d;
  }
}
