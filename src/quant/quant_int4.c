/* quant_int4.c: 4-bit schemes, two weights per byte (column 2k in the low nibble, 2k+1 in
 * the high nibble; an odd row leaves its last high nibble 0), fp16 scales per group.
 *   int4-gN  (symmetric):  nibble = q + 8, q in [-8, 7], w ~ q * d. The RTN scale maps the
 *                          value of largest magnitude to -8, so d's sign is opposite to it.
 *   int4a-gN (asymmetric): nibble = q in [0, 15], w ~ m + q * s; s and m per group. */
#include "quant/pack_i8.h"
#include "quant/quant_rows.h"
#include "quant/scale_search.h"

static const qn_sym_quantizer k_q4 = {QN_CODE_INT, -8, 7, 7.0f, true};

/* Sets nibble i of a row (the byte was zeroed first). */
static inline void put_nibble(uint8_t* p, int64_t i, unsigned v) {
  p[i >> 1] |= (uint8_t)((v & 15u) << ((i & 1) * 4));
}
static inline unsigned get_nibble(const uint8_t* p, int64_t i) {
  return (p[i >> 1] >> ((i & 1) * 4)) & 15u;
}

static void q4_row(int64_t group, const float* w, int64_t cols, const qn_quant_opts* o,
                   uint8_t* payload, void* scales) {
  const float* imp = o ? o->importance : NULL;
  bool search = o && o->search;
  memset(payload, 0, (size_t)(cols + 1) / 2);
  for (int64_t g0 = 0, k = 0; g0 < cols; g0 += group, k++) {
    int64_t n = cols - g0 < group ? cols - g0 : group;
    float d = qn_sym_group_scale(&k_q4, w + g0, imp ? imp + g0 : NULL, n, search);
    qn_store_f16(scales, k, d);
    for (int64_t i = g0; i < g0 + n; i++)
      put_nibble(payload, i, (unsigned)(qn_sym_int_code(&k_q4, w[i], d) + 8));
  }
}

static void q4a_row(int64_t group, const float* w, int64_t cols, const qn_quant_opts* o,
                    uint8_t* payload, void* scales, void* zeros) {
  const float* imp = o ? o->importance : NULL;
  bool search = o && o->search;
  memset(payload, 0, (size_t)(cols + 1) / 2);
  for (int64_t g0 = 0, k = 0; g0 < cols; g0 += group, k++) {
    int64_t n = cols - g0 < group ? cols - g0 : group;
    qn_asym_params p = qn_asym_group_params(w + g0, imp ? imp + g0 : NULL, n, 15, search);
    qn_store_f16(scales, k, p.scale);
    qn_store_f16(zeros, k, p.min);
    for (int64_t i = g0; i < g0 + n; i++)
      put_nibble(payload, i, (unsigned)qn_asym_code(w[i], p.min, p.scale, 15));
  }
}

void qn_quantize_row_q4_g32(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q4_row(32, w, cols, o, payload, scales);
}
void qn_quantize_row_q4_g64(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q4_row(64, w, cols, o, payload, scales);
}
void qn_quantize_row_q4_g128(QN_QUANT_ROW_ARGS) {
  (void)zeros;
  q4_row(128, w, cols, o, payload, scales);
}
void qn_quantize_row_q4a_g32(QN_QUANT_ROW_ARGS) { q4a_row(32, w, cols, o, payload, scales, zeros); }
void qn_quantize_row_q4a_g64(QN_QUANT_ROW_ARGS) { q4a_row(64, w, cols, o, payload, scales, zeros); }
void qn_quantize_row_q4a_g128(QN_QUANT_ROW_ARGS) {
  q4a_row(128, w, cols, o, payload, scales, zeros);
}

void qn_dequant_row_q4a_g(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* p = qn_qtensor_row_data(w, r);
  const void* s = qn_qtensor_row_scales(w, r);
  const void* z = qn_qtensor_row_zeros(w, r);
  int64_t group = qn_qtype_traits_of(w->type)->group;
  for (int64_t g0 = 0, k = 0; g0 < w->cols; g0 += group, k++) {
    float scale = qn_load_f16(s, k), min = qn_load_f16(z, k);
    int64_t end = g0 + group < w->cols ? g0 + group : w->cols;
    for (int64_t i = g0; i < end; i++) out[i] = qn_asym_value(min, (int)get_nibble(p, i), scale);
  }
}

/* int4-gN / w4a8 in the canonical rows. */
static void dequant_rows_q4(const qn_qtensor* w, int64_t r, float* out) {
  const uint8_t* p = qn_qtensor_row_data(w, r);
  const void* s = qn_qtensor_row_scales(w, r);
  int64_t group = qn_qtype_traits_of(w->type)->group;
  for (int64_t g0 = 0, k = 0; g0 < w->cols; g0 += group, k++) {
    float d = qn_load_f16(s, k);
    int64_t end = g0 + group < w->cols ? g0 + group : w->cols;
    for (int64_t i = g0; i < end; i++) out[i] = (float)((int)get_nibble(p, i) - 8) * d;
  }
}

/* Scale of group g of row r in a QN_LAYOUT_I4X16 tensor with NG scale groups per row: the 16
 * scales of rows r / 16 * 16 .. +15 in group g are contiguous (docs/FORMAT.md, "Packed
 * layouts"). */
static float i4x16_scale(const qn_qtensor* w, int64_t r, int64_t g, int64_t NG) {
  return qn_load_f16(w->scales, ((r / 16) * NG + g) * 16 + r % 16);
}

void qn_dequant_row_q4_g(const qn_qtensor* w, int64_t r, float* out) {
  if (w->layout != QN_LAYOUT_I4X16) {
    dequant_rows_q4(w, r, out);
    return;
  }
  /* codes gathered into the first cols bytes of out, widened from the end (see
   * qn_dequant_row_w8a8) */
  int8_t* q = (int8_t*)out;
  qn_packed_row_codes(w, r, q, NULL);
  const int64_t NG = qn_qtype_n_groups(w->type, w->cols);
  const int64_t group = qn_qtype_traits_of(w->type)->group;
  for (int64_t c = w->cols - 1; c >= 0; c--)
    out[c] = (float)q[c] * i4x16_scale(w, r, c / group, NG);
}
