/* test_int3.c: the int3-gN schemes. The bit layout is checked against bytes worked out by
 * hand from the storage rule (field i = q + 4 at bits [3i, 3i+3) of a little-endian bit
 * stream), codes round-trip through the payload at every position (fields straddling bytes
 * included), the RTN code of the largest-magnitude value is -4, errors stay within half a
 * step, and the search never does worse than RTN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "quant/qtype.h"
#include "quant/quant_rows.h"

static float frand(unsigned* s) {
  *s = *s * 1103515245u + 12345u;
  return (float)((*s >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}

/* Codes -4..3 at columns 0..7 give fields 0..7: bits 000 001 010 011 100 101 110 111,
 * LSB first: byte0 = 0b10001000 (fields 0,1 and low 2 bits of 2), byte1 = 0b11000110,
 * byte2 = 0b11111010. */
static void test_layout_by_hand(void** s) {
  (void)s;
  float w[8];
  for (int i = 0; i < 8; i++) w[i] = (float)(i - 4);
  uint8_t payload[3];
  uint16_t scale;
  qn_quant_opts o = {false, NULL, 1};
  qn_qtype_traits_of(QN_QTYPE_Q3_G32)->quantize_row(w, 8, &o, payload, &scale, NULL);
  /* absmax 4 at w[0] = -4 (negative) -> d = +1, code = w */
  assert_int_equal(payload[0], 0x88);
  assert_int_equal(payload[1], 0xC6);
  assert_int_equal(payload[2], 0xFA);
  qn_qtensor t = {QN_QTYPE_Q3_G32, 1, 8, payload, &scale, NULL, 0, QN_LAYOUT_ROWS};
  float out[8];
  qn_qtype_traits_of(QN_QTYPE_Q3_G32)->dequant_row(&t, 0, out);
  for (int i = 0; i < 8; i++) assert_true(out[i] == w[i]);
}

static void test_fields_roundtrip(void** s) {
  (void)s;
  uint8_t p[64];
  for (int trial = 0; trial < 8; trial++) {
    unsigned v[160];
    memset(p, 0, sizeof p);
    for (int i = 0; i < 160; i++) {
      v[i] = (unsigned)(i * 5 + trial * 3 + i / 7) & 7u;
      qn_int3_put(p, i, v[i]);
    }
    for (int i = 0; i < 160; i++) assert_int_equal(qn_int3_get(p, i), v[i]);
  }
}

/* Quantizes rows x cols random weights, checks bounds, padding bits and the search. */
static void check_scheme(qn_qtype t, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  int64_t rows = 5, ng = qn_qtype_n_groups(t, cols);
  uint64_t rb = qn_qtype_row_bytes(t, cols);
  assert_int_equal(rb, (uint64_t)((cols * 3 + 7) / 8));
  float* w = malloc(sizeof(float) * (size_t)(rows * cols));
  float* out = malloc(sizeof(float) * (size_t)cols);
  uint8_t* pay = malloc((size_t)(rb * (uint64_t)rows));
  uint16_t* sc = malloc(sizeof(uint16_t) * (size_t)(ng * rows));
  uint8_t* pay2 = malloc((size_t)(rb * (uint64_t)rows));
  uint16_t* sc2 = malloc(sizeof(uint16_t) * (size_t)(ng * rows));
  assert_true(w && out && pay && sc && pay2 && sc2);
  unsigned seed = (unsigned)cols * 7u + (unsigned)t;
  for (int64_t i = 0; i < rows * cols; i++) w[i] = frand(&seed) * (i % 11 == 0 ? 3.0f : 1.0f);
  qn_quant_opts rtn = {false, NULL, 1}, srch = {true, NULL, 1};
  for (int64_t r = 0; r < rows; r++) {
    tr->quantize_row(w + r * cols, cols, &rtn, pay + r * rb, sc + r * ng, NULL);
    tr->quantize_row(w + r * cols, cols, &srch, pay2 + r * rb, sc2 + r * ng, NULL);
  }
  qn_qtensor a = {t, rows, cols, pay, sc, NULL, 0, QN_LAYOUT_ROWS},
             b = {t, rows, cols, pay2, sc2, NULL, 0, QN_LAYOUT_ROWS};
  double ea = 0, eb = 0;
  for (int64_t r = 0; r < rows; r++) {
    /* unused high bits of the last byte are 0 */
    int used = (int)((cols * 3) % 8);
    if (used) assert_int_equal(pay[r * rb + rb - 1] >> used, 0);
    tr->dequant_row(&a, r, out);
    for (int64_t g0 = 0; g0 < cols; g0 += tr->group) {
      int64_t end = g0 + tr->group < cols ? g0 + tr->group : cols;
      float amax = 0;
      int64_t at = g0;
      for (int64_t i = g0; i < end; i++)
        if (fabsf(w[r * cols + i]) > amax) amax = fabsf(w[r * cols + (at = i)]);
      float d = fabsf(qn_f16_to_f32(sc[r * ng + g0 / tr->group]));
      /* RTN: the largest magnitude maps to code -4 (value -4 d with d's sign flipped) */
      assert_true(fabsf(out[at] - w[r * cols + at]) <= 0.5f * d * 1.0001f + 1e-7f);
      assert_true(d >= amax / 4.0f);
      for (int64_t i = g0; i < end; i++) {
        float e = fabsf(out[i] - w[r * cols + i]), x = fabsf(w[r * cols + i]);
        /* half a step, or the clip at code 3 for values of the opposite sign to the extreme */
        float bound = x > 3.5f * d ? x - 3.0f * d : 0.5f * d;
        assert_true(e <= bound * 1.0001f + 1e-7f);
        ea += (double)e * e;
      }
    }
    tr->dequant_row(&b, r, out);
    for (int64_t i = 0; i < cols; i++) {
      double e = out[i] - w[r * cols + i];
      eb += e * e;
    }
  }
  assert_true(eb <= ea);
  free(w), free(out), free(pay), free(sc), free(pay2), free(sc2);
}

static void test_schemes(void** s) {
  (void)s;
  const qn_qtype ts[] = {QN_QTYPE_Q3_G32, QN_QTYPE_Q3_G64, QN_QTYPE_Q3_G128};
  const int64_t cols[] = {1, 3, 8, 31, 32, 33, 127, 129, 288};
  for (size_t i = 0; i < 3; i++)
    for (size_t j = 0; j < sizeof cols / sizeof cols[0]; j++) check_scheme(ts[i], cols[j]);
  assert_true(fabs(qn_qtype_bpw(QN_QTYPE_Q3_G32, 2, 4096) - 3.5) < 1e-12);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_layout_by_hand),
      cmocka_unit_test(test_fields_roundtrip),
      cmocka_unit_test(test_schemes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
