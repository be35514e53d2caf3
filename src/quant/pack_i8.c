/* pack_i8.c: packing of w8a8 / w4a8 / int4-gN matrices into the VNNI layouts
 * (quant/pack_i8.h) and the row gather the reference kernels and dequantizers use to read
 * them back. */
#include "quant/pack_i8.h"

#include <stdbool.h>
#include <string.h>

#include "quant/quant_rows.h"

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

qn_layout qn_qtype_packed_layout(qn_qtype t) {
  switch (t) {
    case QN_QTYPE_W8A8_STATIC:
    case QN_QTYPE_W8A8_DYNAMIC: return QN_LAYOUT_I8X16;
    case QN_QTYPE_W4A8:
    case QN_QTYPE_Q4_G32:
    case QN_QTYPE_Q4_G64:
    case QN_QTYPE_Q4_G128: return QN_LAYOUT_I4X16;
    default: return QN_LAYOUT_ROWS;
  }
}

/* a * b, or 0 when it overflows 64 bits (a, b >= 0). */
static uint64_t mul_or_zero(uint64_t a, uint64_t b) {
  uint64_t p;
  return __builtin_mul_overflow(a, b, &p) ? 0 : p;
}

/* Rows rounded up to 16 and cols rounded up to m, or false when either would overflow. */
static bool padded(int64_t rows, int64_t cols, int64_t m, uint64_t* r16, uint64_t* cm) {
  if (rows < 0 || cols < 0 || rows > INT64_MAX - 15 || cols > INT64_MAX - (m - 1)) return false;
  *r16 = (uint64_t)round_up(rows, 16);
  *cm = (uint64_t)round_up(cols, m);
  return true;
}

uint64_t qn_packed_payload_bytes(qn_qtype t, int64_t rows, int64_t cols) {
  const qn_layout l = qn_qtype_packed_layout(t);
  uint64_t r16, cp;
  if (l == QN_LAYOUT_I8X16 && padded(rows, cols, 4, &r16, &cp)) return mul_or_zero(r16, cp);
  if (l == QN_LAYOUT_I4X16 && padded(rows, cols, 32, &r16, &cp)) return mul_or_zero(r16, cp / 2);
  return 0;
}

uint64_t qn_packed_scale_bytes(qn_qtype t, int64_t rows, int64_t cols) {
  const qn_layout l = qn_qtype_packed_layout(t);
  uint64_t r16, cp;
  if (l == QN_LAYOUT_I8X16 && rows >= 0 && cols >= 0) return mul_or_zero((uint64_t)rows, 4);
  if (l == QN_LAYOUT_I4X16 && padded(rows, cols, 32, &r16, &cp))
    return mul_or_zero(r16, (uint64_t)qn_qtype_n_groups(t, cols) * 2);
  return 0;
}

/* Byte offset of (r, c) in an I8X16 payload with C4 padded columns. */
static uint64_t i8x16_at(int64_t r, int64_t c, int64_t c4) {
  return ((uint64_t)(r / 16) * (uint64_t)(c4 / 4) + (uint64_t)(c / 4)) * 64u +
         (uint64_t)(r % 16) * 4u + (uint64_t)(c % 4);
}

/* Byte offset and nibble shift of (r, c) in an I4X16 payload with G groups. */
static uint64_t i4x16_at(int64_t r, int64_t c, int64_t G, int* shift) {
  int64_t g = c / 32, w = c % 32, j = w / 8, i = w % 4;
  *shift = (w % 8) >= 4 ? 4 : 0;
  return ((uint64_t)(r / 16) * (uint64_t)G + (uint64_t)g) * 256u + (uint64_t)j * 64u +
         (uint64_t)(r % 16) * 4u + (uint64_t)i;
}

void qn_pack_i8(qn_qtype t, int64_t rows, int64_t cols, const void* payload, const void* scales,
                void* packed_payload, void* packed_scales) {
  qn_layout l = qn_qtype_packed_layout(t);
  uint8_t* pp = packed_payload;
  if (l == QN_LAYOUT_I8X16) {
    const int64_t c4 = round_up(cols, 4);
    memset(pp, 128, qn_packed_payload_bytes(t, rows, cols));
    const int8_t* q = payload;
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        pp[i8x16_at(r, c, c4)] = (uint8_t)((int)q[r * cols + c] + 128);
    memcpy(packed_scales, scales, (size_t)rows * 4u);
  } else if (l == QN_LAYOUT_I4X16) {
    const int64_t G = round_up(cols, 32) / 32, NG = qn_qtype_n_groups(t, cols);
    memset(pp, 0x88, qn_packed_payload_bytes(t, rows, cols));
    memset(packed_scales, 0, qn_packed_scale_bytes(t, rows, cols));
    const uint8_t* q = payload;
    const uint64_t rb = qn_qtype_row_bytes(t, cols);
    const uint16_t* s = scales;
    uint16_t* ps = packed_scales;
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < cols; c++) {
        unsigned code = (q[(uint64_t)r * rb + (uint64_t)(c >> 1)] >> ((c & 1) * 4)) & 15u;
        int shift;
        uint64_t at = i4x16_at(r, c, G, &shift);
        pp[at] = (uint8_t)((pp[at] & ~(15u << shift)) | (code << shift));
      }
      for (int64_t g = 0; g < NG; g++)
        ps[((r / 16) * NG + g) * 16 + r % 16] = s[(uint64_t)r * (uint64_t)NG + (uint64_t)g];
    }
  }
}

void qn_packed_row_codes(const qn_qtensor* w, int64_t r, int8_t* out, uint16_t* scales16) {
  const uint8_t* pp = w->data;
  if (w->layout == QN_LAYOUT_I8X16) {
    const int64_t c4 = round_up(w->cols, 4);
    for (int64_t c = 0; c < w->cols; c++) out[c] = (int8_t)((int)pp[i8x16_at(r, c, c4)] - 128);
  } else if (w->layout == QN_LAYOUT_I4X16) {
    const int64_t G = round_up(w->cols, 32) / 32;
    for (int64_t c = 0; c < w->cols; c++) {
      int shift;
      uint64_t at = i4x16_at(r, c, G, &shift);
      out[c] = (int8_t)((int)((pp[at] >> shift) & 15u) - 8);
    }
    if (scales16) {
      const uint16_t* ps = w->scales;
      const int64_t NG = qn_qtype_n_groups(w->type, w->cols);
      for (int64_t g = 0; g < NG; g++) scales16[g] = ps[((r / 16) * NG + g) * 16 + r % 16];
    }
  }
}
