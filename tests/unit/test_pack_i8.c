/* test_pack_i8.c: the packed VNNI layouts of w8a8-* (QN_LAYOUT_I8X16) and of w4a8 and
 * int4-g32/g64/g128 (QN_LAYOUT_I4X16) against their specification (the header comment of
 * quant/pack_i8.h and docs/FORMAT.md, "Packed layouts"), restated here independently:
 *  - for rows and cols in {1, 7, 31, 33, 172, 4097} and random canonical codes and scales,
 *    qn_pack_i8 gives exactly the bytes the spec's address formula gives (padding codes 128 /
 *    nibble 8, padding scales 0 included), and the sizes are the spec's;
 *  - qn_packed_row_codes(pack(W)) == W for every row (codes, and the int4 fp16 scales);
 *  - every 64-byte chunk is one vpdpbusd operand: 16 consecutive rows x 4 consecutive columns
 *    (i8x16) or 16 rows x 8 nibble columns of one group (i4x16);
 *  - the schemes' dequant_row reads a packed tensor exactly as its canonical twin;
 *  - qn_qtensor_pack refuses other schemes and tensors already packed; qn_qtype_bytes reports
 *    the packed size with its padding; the layout names round-trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/half.h"
#include "quant/pack_i8.h"
#include "quant/qtype.h"
#include "quant/quantize_matrix.h"

static const int64_t k_sizes[] = {1, 7, 31, 33, 172, 4097};
#define N_SIZES (sizeof k_sizes / sizeof k_sizes[0])

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 32);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

static int64_t up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* A canonical matrix of random codes and scales, as the row quantizers lay it out. */
typedef struct canon {
  qn_qtensor W;
  int8_t* codes;    /* rows x cols codes (the truth) */
  uint8_t* payload; /* canonical payload */
  uint8_t* scales;  /* canonical scales: f32 [rows] or fp16 [rows][G] */
  uint16_t* s16;    /* int4: the fp16 scales again, [rows][NG] */
} canon;

/* The schemes stored in i4x16. */
static bool is_i4x16(qn_qtype t) { return qn_qtype_packed_layout(t) == QN_LAYOUT_I4X16; }

static canon make_canon(qn_qtype t, int64_t rows, int64_t cols) {
  canon m;
  memset(&m, 0, sizeof m);
  const bool w4 = is_i4x16(t);
  const int64_t G = qn_qtype_n_groups(t, cols); /* scale groups */
  m.codes = xmalloc((size_t)(rows * cols));
  for (int64_t i = 0; i < rows * cols; i++)
    m.codes[i] = (int8_t)(w4 ? (int)(rnd() % 16) - 8 : (int)(rnd() % 255) - 127);
  if (w4) {
    const int64_t rb = (cols + 1) / 2;
    m.payload = calloc((size_t)(rows * rb), 1);
    assert_non_null(m.payload);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        m.payload[r * rb + c / 2] |= (uint8_t)((m.codes[r * cols + c] + 8) << (c % 2 ? 4 : 0));
    m.s16 = xmalloc(2 * (size_t)(rows * G));
    for (int64_t i = 0; i < rows * G; i++)
      m.s16[i] = qn_f32_to_f16((float)((int)(rnd() % 2001) - 1000) / 4096.0f);
    m.scales = xmalloc(2 * (size_t)(rows * G));
    memcpy(m.scales, m.s16, 2 * (size_t)(rows * G));
  } else {
    m.payload = xmalloc((size_t)(rows * cols));
    memcpy(m.payload, m.codes, (size_t)(rows * cols));
    float* d = xmalloc(4 * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) d[r] = (float)(rnd() % 1000 + 1) / 65536.0f;
    m.scales = (uint8_t*)d;
  }
  m.W = (qn_qtensor){t, rows, cols, m.payload, m.scales, NULL, 0.0f, QN_LAYOUT_ROWS};
  return m;
}

static void free_canon(canon* m) {
  free(m->codes);
  free(m->payload);
  free(m->scales);
  free(m->s16);
}

/* The packed payload/scales the spec describes, built from the codes by its formulas. */
static void spec_i8x16(const canon* m, uint8_t* pay, size_t pbytes) {
  const int64_t c4 = up(m->W.cols, 4);
  memset(pay, 128, pbytes); /* padding: code 0 */
  for (int64_t r = 0; r < m->W.rows; r++)
    for (int64_t c = 0; c < m->W.cols; c++) {
      size_t at = (size_t)(((r / 16) * (c4 / 4) + c / 4) * 64 + (r % 16) * 4 + c % 4);
      pay[at] = (uint8_t)(m->codes[r * m->W.cols + c] + 128);
    }
}

static void spec_i4x16(const canon* m, uint8_t* pay, size_t pbytes, uint16_t* sc, size_t sbytes) {
  const int64_t G = (m->W.cols + 31) / 32, NG = qn_qtype_n_groups(m->W.type, m->W.cols);
  memset(pay, 0x88, pbytes); /* padding: nibbles 8 (code 0) */
  memset(sc, 0, sbytes);     /* padding scales 0 */
  for (int64_t r = 0; r < m->W.rows; r++) {
    for (int64_t c = 0; c < m->W.cols; c++) {
      int64_t g = c / 32, j = (c % 32) / 8, i = c % 4;
      bool high = (c % 8) >= 4;
      size_t at = (size_t)(((r / 16) * G + g) * 256 + j * 64 + (r % 16) * 4 + i);
      unsigned v = (unsigned)(m->codes[r * m->W.cols + c] + 8);
      pay[at] = high ? (uint8_t)((pay[at] & 0x0f) | (v << 4)) : (uint8_t)((pay[at] & 0xf0) | v);
    }
    for (int64_t g = 0; g < NG; g++) sc[((r / 16) * NG + g) * 16 + r % 16] = m->s16[r * NG + g];
  }
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_layout_names(void** s) {
  (void)s;
  assert_string_equal(qn_layout_name(QN_LAYOUT_ROWS), "rows");
  assert_string_equal(qn_layout_name(QN_LAYOUT_I8X16), "i8x16");
  assert_string_equal(qn_layout_name(QN_LAYOUT_I4X16), "i4x16");
  assert_null(qn_layout_name((qn_layout)7));
  for (int l = 0; l < 3; l++)
    assert_int_equal(qn_layout_from_name(qn_layout_name((qn_layout)l)), l);
  assert_int_equal(qn_layout_from_name("I8X16"), -1);
  assert_int_equal(qn_layout_from_name(NULL), -1);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_W8A8_STATIC), QN_LAYOUT_I8X16);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_W8A8_DYNAMIC), QN_LAYOUT_I8X16);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_W4A8), QN_LAYOUT_I4X16);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_Q4_G32), QN_LAYOUT_I4X16);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_Q4_G64), QN_LAYOUT_I4X16);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_Q4_G128), QN_LAYOUT_I4X16);
  for (int t = 0; t < QN_QTYPE_COUNT; t++) /* every other weight-only scheme keeps its rows */
    if (qn_qtype_traits_of((qn_qtype)t)->act == QN_ACT_FLOAT &&
        qn_qtype_traits_of((qn_qtype)t)->payload_bits != 4)
      assert_int_equal(qn_qtype_packed_layout((qn_qtype)t), QN_LAYOUT_ROWS);
  assert_int_equal(qn_qtype_packed_layout(QN_QTYPE_Q4A_G32), QN_LAYOUT_ROWS);
}

/* Sizes by the spec; qn_qtype_bytes is the stored size with the padding. */
static void test_sizes(void** s) {
  (void)s;
  for (size_t ri = 0; ri < N_SIZES; ri++)
    for (size_t ci = 0; ci < N_SIZES; ci++) {
      int64_t rows = k_sizes[ri], cols = k_sizes[ci];
      uint64_t r16 = (uint64_t)up(rows, 16), G = (uint64_t)((cols + 31) / 32);
      assert_int_equal(qn_packed_payload_bytes(QN_QTYPE_W8A8_DYNAMIC, rows, cols),
                       r16 * (uint64_t)up(cols, 4));
      assert_int_equal(qn_packed_scale_bytes(QN_QTYPE_W8A8_STATIC, rows, cols), 4 * (uint64_t)rows);
      assert_int_equal(qn_packed_payload_bytes(QN_QTYPE_W4A8, rows, cols), r16 * G * 16);
      assert_int_equal(qn_packed_scale_bytes(QN_QTYPE_W4A8, rows, cols), r16 * G * 2);
      for (int gi = 0; gi < 3; gi++) { /* int4-gN: the w4a8 payload, scales per N columns */
        const qn_qtype t = (qn_qtype)(QN_QTYPE_Q4_G32 + gi);
        const uint64_t NG = (uint64_t)((cols + (32 << gi) - 1) / (32 << gi));
        assert_int_equal(qn_packed_payload_bytes(t, rows, cols), r16 * G * 16);
        assert_int_equal(qn_packed_scale_bytes(t, rows, cols), r16 * NG * 2);
        assert_int_equal(qn_qtype_bytes(t, rows, cols), r16 * (G * 16 + NG * 2));
      }
      assert_int_equal(qn_packed_payload_bytes(QN_QTYPE_Q8_C, rows, cols), 0);
      assert_int_equal(qn_packed_scale_bytes(QN_QTYPE_Q4A_G32, rows, cols), 0);
      assert_int_equal(qn_qtype_bytes(QN_QTYPE_W8A8_DYNAMIC, rows, cols),
                       r16 * (uint64_t)up(cols, 4) + 4 * (uint64_t)rows);
      assert_int_equal(qn_qtype_bytes(QN_QTYPE_W8A8_STATIC, rows, cols),
                       qn_qtype_bytes(QN_QTYPE_W8A8_DYNAMIC, rows, cols));
      assert_int_equal(qn_qtype_bytes(QN_QTYPE_W4A8, rows, cols), r16 * G * 18);
      /* never smaller than the canonical storage of the same codes */
      assert_true(qn_qtype_bytes(QN_QTYPE_W8A8_DYNAMIC, rows, cols) >=
                  qn_qtype_bytes(QN_QTYPE_Q8_C, rows, cols));
      assert_true(qn_qtype_bytes(QN_QTYPE_W4A8, rows, cols) ==
                  qn_qtype_bytes(QN_QTYPE_Q4_G32, rows, cols));
    }
  /* whole blocks: no padding, the canonical size */
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_W8A8_DYNAMIC, 32, 64),
                   qn_qtype_bytes(QN_QTYPE_Q8_C, 32, 64));
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_W4A8, 32, 64), 32 * 32 + 32 * 2 * 2);
  assert_true(qn_qtype_bpw(QN_QTYPE_W4A8, 4096, 4096) == 4.5);
  /* overflow: 0, never a wrapped size */
  assert_int_equal(qn_packed_payload_bytes(QN_QTYPE_W8A8_DYNAMIC, INT64_MAX, 8), 0);
  assert_int_equal(qn_packed_payload_bytes(QN_QTYPE_W4A8, INT64_MAX / 2, INT64_MAX / 2), 0);
  assert_int_equal(qn_packed_scale_bytes(QN_QTYPE_Q4_G128, INT64_MAX, 32), 0);
  assert_int_equal(qn_packed_payload_bytes(QN_QTYPE_W8A8_DYNAMIC, -1, 8), 0);
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_W4A8, INT64_MAX / 4, 1 << 20), 0);
}

/* One scheme, one shape: bytes as specified, rows read back, chunks as VNNI operands. */
static void check_shape(qn_qtype t, int64_t rows, int64_t cols) {
  const qn_layout l = qn_qtype_packed_layout(t);
  canon m = make_canon(t, rows, cols);
  const size_t pb = (size_t)qn_packed_payload_bytes(t, rows, cols);
  const size_t sb = (size_t)qn_packed_scale_bytes(t, rows, cols);
  qn_qtensor P;
  void *pp = NULL, *ps = NULL;
  assert_int_equal(qn_qtensor_pack(&m.W, &P, &pp, &ps), QN_OK);
  assert_int_equal(P.layout, l);
  assert_true(P.type == t && P.rows == rows && P.cols == cols && P.data == pp && P.scales == ps);
  /* the bytes the spec gives, padding included */
  uint8_t* want = xmalloc(pb);
  uint16_t* wsc = xmalloc(sb);
  if (l == QN_LAYOUT_I8X16) {
    spec_i8x16(&m, want, pb);
    assert_memory_equal(ps, m.scales, sb); /* f32 row scales unchanged */
  } else {
    spec_i4x16(&m, want, pb, wsc, sb);
    assert_memory_equal(ps, wsc, sb);
  }
  if (memcmp(pp, want, pb) != 0) {
    size_t k = 0;
    while (((const uint8_t*)pp)[k] == want[k]) k++;
    fail_msg("%s %lldx%lld: packed byte %zu is %d, the spec says %d", qn_qtype_traits_of(t)->name,
             (long long)rows, (long long)cols, k, ((const uint8_t*)pp)[k], want[k]);
  }
  /* rows read back */
  const int64_t G = (cols + 31) / 32, NG = qn_qtype_n_groups(t, cols);
  int8_t* row = xmalloc((size_t)cols);
  uint16_t* rs = xmalloc(2 * (size_t)NG);
  for (int64_t r = 0; r < rows; r++) {
    qn_packed_row_codes(&P, r, row, l == QN_LAYOUT_I4X16 ? rs : NULL);
    if (memcmp(row, m.codes + r * cols, (size_t)cols) != 0)
      fail_msg("%s %lldx%lld: row %lld differs after pack/unpack", qn_qtype_traits_of(t)->name,
               (long long)rows, (long long)cols, (long long)r);
    if (l == QN_LAYOUT_I4X16) assert_memory_equal(rs, m.s16 + r * NG, 2 * (size_t)NG);
  }
  /* one 64-byte chunk = one vpdpbusd operand: lane i (4 bytes) is row 16 b + i */
  const uint8_t* pay = pp;
  for (int64_t b = 0; b < (rows + 15) / 16; b++)
    for (int i = 0; i < 16; i++) {
      int64_t r = 16 * b + i;
      if (l == QN_LAYOUT_I8X16) { /* chunk cb: columns 4 cb .. 4 cb + 3 */
        int64_t cb = (cols - 1) / 4, c0 = 4 * cb;
        const uint8_t* lane = pay + (size_t)((b * (up(cols, 4) / 4) + cb) * 64 + i * 4);
        for (int k = 0; k < 4; k++) {
          int v = r < rows && c0 + k < cols ? m.codes[r * cols + c0 + k] + 128 : 128;
          assert_int_equal(lane[k], v);
        }
      } else { /* last group, chunk 1: columns 32 g + 8..11 (low), 12..15 (high) */
        int64_t g = G - 1;
        const uint8_t* lane = pay + (size_t)(((b * G + g) * 4 + 1) * 64 + i * 4);
        for (int k = 0; k < 4; k++) {
          int64_t cl = 32 * g + 8 + k, ch = 32 * g + 12 + k;
          int lo = r < rows && cl < cols ? m.codes[r * cols + cl] + 8 : 8;
          int hi = r < rows && ch < cols ? m.codes[r * cols + ch] + 8 : 8;
          assert_int_equal(lane[k], lo | hi << 4);
        }
      }
    }
  /* dequant_row: packed == canonical, bit for bit */
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  float* a = xmalloc(sizeof(float) * (size_t)cols);
  float* d = xmalloc(sizeof(float) * (size_t)cols);
  for (int64_t r = 0; r<rows; r += rows> 64 ? 13 : 1) {
    tr->dequant_row(&m.W, r, a);
    tr->dequant_row(&P, r, d);
    if (memcmp(a, d, sizeof(float) * (size_t)cols) != 0)
      fail_msg("%s %lldx%lld: dequant_row %lld differs between layouts", tr->name, (long long)rows,
               (long long)cols, (long long)r);
  }
  free(a);
  free(d);
  free(rs);
  free(row);
  free(want);
  free(wsc);
  free(pp);
  free(ps);
  free_canon(&m);
}

static void test_round_trip_odd_sizes(void** s) {
  (void)s;
  const qn_qtype types[3] = {QN_QTYPE_W8A8_DYNAMIC, QN_QTYPE_W4A8, QN_QTYPE_Q4_G128};
  for (int k = 0; k < 3; k++)
    for (size_t ri = 0; ri < N_SIZES; ri++)
      for (size_t ci = 0; ci < N_SIZES; ci++) {
        if (k_sizes[ri] * k_sizes[ci] > 1000000 && k != 1) continue; /* 4097^2: w4a8 only */
        check_shape(types[k], k_sizes[ri], k_sizes[ci]);
      }
  check_shape(QN_QTYPE_W8A8_STATIC, 33, 7);
  check_shape(QN_QTYPE_Q4_G32, 33, 172);
  check_shape(QN_QTYPE_Q4_G64, 172, 33);
  check_shape(QN_QTYPE_Q4_G64, 31, 4097);
}

/* Whole-matrix dequantization of a packed tensor equals the canonical one. */
static void test_dequant_matrix(void** s) {
  (void)s;
  const qn_qtype types[6] = {QN_QTYPE_W8A8_STATIC, QN_QTYPE_W8A8_DYNAMIC, QN_QTYPE_W4A8,
                             QN_QTYPE_Q4_G32,      QN_QTYPE_Q4_G64,       QN_QTYPE_Q4_G128};
  for (int k = 0; k < 6; k++) {
    canon m = make_canon(types[k], 35, 77);
    qn_qtensor P;
    void *pp = NULL, *ps = NULL;
    assert_int_equal(qn_qtensor_pack(&m.W, &P, &pp, &ps), QN_OK);
    float a[35 * 77], d[35 * 77];
    assert_int_equal(qn_qtensor_dequant(&m.W, a), QN_OK);
    assert_int_equal(qn_qtensor_dequant(&P, d), QN_OK);
    assert_memory_equal(a, d, sizeof a);
    free(pp);
    free(ps);
    free_canon(&m);
  }
}

static void test_pack_refusals(void** s) {
  (void)s;
  canon m = make_canon(QN_QTYPE_W4A8, 3, 40);
  qn_qtensor P;
  void *pp = NULL, *ps = NULL;
  assert_int_equal(qn_qtensor_pack(&m.W, &P, &pp, &ps), QN_OK);
  void *p2 = (void*)1, *s2 = (void*)1;
  qn_qtensor Q;
  assert_int_equal(qn_qtensor_pack(&P, &Q, &p2, &s2), QN_EINVAL); /* already packed */
  assert_null(p2);
  assert_null(s2);
  assert_non_null(strstr(qn_last_error(), "packed"));
  qn_qtensor other = m.W;
  other.type = QN_QTYPE_Q8_G32; /* a weight-only scheme other than int4-gN keeps its rows */
  assert_int_equal(qn_qtensor_pack(&other, &Q, &p2, &s2), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "int8-g32"));
  assert_int_equal(qn_qtensor_pack(NULL, &Q, &p2, &s2), QN_EINVAL);
  free(pp);
  free(ps);
  free_canon(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout_names),         cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_round_trip_odd_sizes), cmocka_unit_test(test_dequant_matrix),
      cmocka_unit_test(test_pack_refusals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
