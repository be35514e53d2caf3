/* test_qtypes.c: the scheme traits table and its size arithmetic: names round-trip, every
 * scheme has its --list strings, and row bytes / scale groups / bytes / bits per weight equal
 * the values worked out by hand from the storage rules in qtype.h (scales and zeros counted,
 * ragged last groups kept, int4 rounded up to whole bytes; the packed layouts of w8a8-* /
 * w4a8 with their padding). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "quant/qtype.h"

static const char* k_names[QN_QTYPE_COUNT] = {
    [QN_QTYPE_F32] = "f32",
    [QN_QTYPE_F16] = "f16",
    [QN_QTYPE_BF16] = "bf16",
    [QN_QTYPE_Q8_C] = "int8-channel",
    [QN_QTYPE_Q8_G32] = "int8-g32",
    [QN_QTYPE_Q8_G64] = "int8-g64",
    [QN_QTYPE_Q8_G128] = "int8-g128",
    [QN_QTYPE_Q4_G32] = "int4-g32",
    [QN_QTYPE_Q4_G64] = "int4-g64",
    [QN_QTYPE_Q4_G128] = "int4-g128",
    [QN_QTYPE_Q4A_G32] = "int4a-g32",
    [QN_QTYPE_Q4A_G64] = "int4a-g64",
    [QN_QTYPE_Q4A_G128] = "int4a-g128",
    [QN_QTYPE_F8_E4M3] = "fp8-e4m3",
    [QN_QTYPE_F8_E5M2] = "fp8-e5m2",
    [QN_QTYPE_W8A8_STATIC] = "w8a8-static",
    [QN_QTYPE_W8A8_DYNAMIC] = "w8a8-dynamic",
    [QN_QTYPE_W4A8] = "w4a8",
    [QN_QTYPE_Q3_G32] = "int3-g32",
    [QN_QTYPE_Q3_G64] = "int3-g64",
    [QN_QTYPE_Q3_G128] = "int3-g128",
};

static void test_names(void** s) {
  (void)s;
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)t);
    assert_non_null(tr);
    assert_string_equal(tr->name, k_names[t]);
    assert_int_equal(qn_qtype_from_name(k_names[t]), t);
    assert_non_null(tr->kernels);
    assert_non_null(tr->accuracy);
    assert_non_null(tr->summary);
    assert_true(strlen(tr->accuracy) > 0 && strlen(tr->summary) > 0);
    assert_non_null(tr->dequant_row);
    assert_non_null(tr->quantize_row);
    assert_true(tr->max_abs > 0);
  }
  const char* unknown[] = {"",    "int4", "INT8-CHANNEL", "int4-g16", "int8-g32 ",
                           "fp8", "q4_0", "int4a-g256",   "f64"};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
    assert_int_equal(qn_qtype_from_name(unknown[i]), -1);
  assert_int_equal(qn_qtype_from_name(NULL), -1);
  assert_null(qn_qtype_traits_of(QN_QTYPE_COUNT));
  assert_null(qn_qtype_traits_of((qn_qtype)-1));
}

/* The storage rules, restated: payload bits, group, bytes per scale, scale arrays. */
typedef struct rule {
  int bits;   /* payload bits per weight */
  int group;  /* columns per scale (0 = whole row, -1 = none) */
  int sbytes; /* bytes per scale value */
  int arrays; /* scale arrays: 1 (scales) or 2 (scales + zeros) */
} rule;

static const rule k_rules[QN_QTYPE_COUNT] = {
    [QN_QTYPE_F32] = {32, -1, 0, 0},        [QN_QTYPE_F16] = {16, -1, 0, 0},
    [QN_QTYPE_BF16] = {16, -1, 0, 0},       [QN_QTYPE_Q8_C] = {8, 0, 4, 1},
    [QN_QTYPE_Q8_G32] = {8, 32, 2, 1},      [QN_QTYPE_Q8_G64] = {8, 64, 2, 1},
    [QN_QTYPE_Q8_G128] = {8, 128, 2, 1},    [QN_QTYPE_Q4_G32] = {4, 32, 2, 1},
    [QN_QTYPE_Q4_G64] = {4, 64, 2, 1},      [QN_QTYPE_Q4_G128] = {4, 128, 2, 1},
    [QN_QTYPE_Q4A_G32] = {4, 32, 2, 2},     [QN_QTYPE_Q4A_G64] = {4, 64, 2, 2},
    [QN_QTYPE_Q4A_G128] = {4, 128, 2, 2},   [QN_QTYPE_F8_E4M3] = {8, 0, 4, 1},
    [QN_QTYPE_F8_E5M2] = {8, 0, 4, 1},      [QN_QTYPE_W8A8_STATIC] = {8, 0, 4, 1},
    [QN_QTYPE_W8A8_DYNAMIC] = {8, 0, 4, 1}, [QN_QTYPE_W4A8] = {4, 32, 2, 1},
    [QN_QTYPE_Q3_G32] = {3, 32, 2, 1},      [QN_QTYPE_Q3_G64] = {3, 64, 2, 1},
    [QN_QTYPE_Q3_G128] = {3, 128, 2, 1},
};

static void test_sizes_by_rule(void** s) {
  (void)s;
  const int64_t cols_list[] = {1, 2, 7, 31, 32, 33, 63, 64, 65, 127, 128, 129, 172, 288, 4097};
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    const rule* R = &k_rules[t];
    const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)t);
    assert_int_equal(tr->payload_bits, R->bits);
    assert_int_equal(tr->group, R->group);
    assert_int_equal(tr->asymmetric, R->arrays == 2);
    for (size_t i = 0; i < sizeof cols_list / sizeof cols_list[0]; i++) {
      int64_t cols = cols_list[i];
      /* count bytes and groups by walking the columns */
      int64_t groups = 0;
      if (R->group == 0) groups = 1;
      if (R->group > 0)
        for (int64_t c = 0; c < cols; c += R->group) groups++;
      int64_t payload_bits = cols * R->bits;
      int64_t row_bytes = payload_bits / 8 + (payload_bits % 8 ? 1 : 0);
      assert_int_equal(qn_qtype_row_bytes((qn_qtype)t, cols), row_bytes);
      assert_int_equal(qn_qtype_n_groups((qn_qtype)t, cols), groups);
      int64_t rows = 3;
      int64_t bytes = rows * (row_bytes + groups * R->sbytes * R->arrays);
      /* w8a8-*, w4a8 and int4-gN are stored in their packed kernel layouts (docs/FORMAT.md,
         "Packed layouts"): whole blocks of 16 rows; i8x16 pads columns to 4 and keeps one f32
         scale per real row, i4x16 pads columns to blocks of 32 and stores 16 fp16 scales per
         block of rows and scale group */
      if (t == QN_QTYPE_W8A8_STATIC || t == QN_QTYPE_W8A8_DYNAMIC)
        bytes = 16 * ((cols + 3) / 4 * 4) + rows * 4;
      if (t == QN_QTYPE_W4A8 || t == QN_QTYPE_Q4_G32 || t == QN_QTYPE_Q4_G64 ||
          t == QN_QTYPE_Q4_G128)
        bytes = 16 * ((cols + 31) / 32) * 16 + 16 * groups * 2;
      assert_int_equal(qn_qtype_bytes((qn_qtype)t, rows, cols), bytes);
      double bpw = 8.0 * (double)bytes / (double)(rows * cols);
      assert_true(qn_qtype_bpw((qn_qtype)t, rows, cols) == bpw);
    }
  }
}

/* Bits per weight for shapes whose answer is known in closed form. */
static void test_bpw_known(void** s) {
  (void)s;
  struct {
    const char* name;
    int64_t rows, cols;
    double bpw;
  } cases[] = {
      {"f32", 4, 4096, 32.0},
      {"f16", 4, 4096, 16.0},
      {"bf16", 4, 7, 16.0},
      {"int8-channel", 4, 4096, 8.0 + 32.0 / 4096},
      {"int8-channel", 2, 172, 8.0 + 32.0 / 172},
      {"int8-g32", 4, 4096, 8.5},
      {"int8-g64", 4, 4096, 8.25},
      {"int3-g32", 4, 4096, 3.5},
      {"int3-g64", 4, 4096, 3.25},
      {"int3-g128", 2, 256, 3.125},
      {"int3-g32", 1, 33, (13.0 * 8 + 2.0 * 16) / 33},
      {"int8-g128", 4, 4096, 8.125},
      {"int4-g32", 16, 4096, 4.5}, /* int4-gN: whole 16-row blocks (packed, i4x16) */
      {"int4-g64", 32, 4096, 4.25},
      {"int4-g128", 16, 4096, 4.125},
      {"int4-g32", 4, 4096, 18.0}, /* 4 rows stored as a block of 16 */
      {"int4a-g32", 4, 4096, 5.0},
      {"int4a-g64", 4, 4096, 4.5},
      {"int4a-g128", 4, 4096, 4.25},
      {"fp8-e4m3", 4, 4096, 8.0 + 32.0 / 4096},
      {"fp8-e5m2", 4, 64, 8.5},
      /* ragged: 172 = 5 * 32 + 12, padded to 192 columns: 96 payload bytes + 6 fp16 scales
         = 108 bytes per row */
      {"int4-g32", 16, 172, 108.0 * 8 / 172},
      /* 172 < 256: int4a-g128 has two groups (128 + 44): 86 + 2 * 2 * 2 = 94 bytes */
      {"int4a-g128", 1, 172, 94.0 * 8 / 172},
      /* 7 columns: 16 payload bytes (padded to 32 columns) + one fp16 scale */
      {"int4-g32", 16, 7, 18.0 * 8 / 7},
      /* a single column: int8-g128 stores 1 byte + 2 bytes of scale */
      {"int8-g128", 1, 1, 24.0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int t = qn_qtype_from_name(cases[i].name);
    assert_true(t >= 0);
    double got = qn_qtype_bpw((qn_qtype)t, cases[i].rows, cases[i].cols);
    if (fabs(got - cases[i].bpw) > 1e-12 * cases[i].bpw)
      fail_msg("%s %lldx%lld: bpw %.17g, want %.17g", cases[i].name, (long long)cases[i].rows,
               (long long)cases[i].cols, got, cases[i].bpw);
  }
}

/* Sizes that would overflow 64 bits are refused (0), not wrapped. */
static void test_size_overflow(void** s) {
  (void)s;
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_F32, INT64_MAX / 2, INT64_MAX / 64), 0);
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_F32, 3, INT64_MAX), 0);
  assert_int_equal(qn_qtype_row_bytes(QN_QTYPE_F32, INT64_MAX), 0);
  assert_int_equal(qn_qtype_row_bytes(QN_QTYPE_F32, -1), 0);
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_Q4_G32, -1, 32), 0);
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_COUNT, 1, 32), 0);
  assert_int_equal(qn_qtype_n_groups(QN_QTYPE_F16, 100), 0);
  assert_true(qn_qtype_bpw(QN_QTYPE_Q8_C, 0, 10) == 0.0);
  /* a large but representable shape */
  assert_int_equal(qn_qtype_bytes(QN_QTYPE_Q4_G32, 1 << 20, 1 << 20),
                   (uint64_t)(1 << 20) * ((1 << 19) + (1 << 15) * 2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_sizes_by_rule),
      cmocka_unit_test(test_bpw_known),
      cmocka_unit_test(test_size_overflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
