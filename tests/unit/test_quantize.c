/* test_quantize.c: every weight scheme, quantized and dequantized on rows of several
 * distributions (gaussian, uniform, outliers, all-zero, constant, one-signed, tiny, large)
 * and ragged widths (1, 7, 31, 33, 172, 4097):
 *  - the error of every weight is within the scheme's analytical bound, read against the
 *    scales actually stored: RTN |err| <= |scale| / 2 inside the clip range (clipped values
 *    land exactly on the range end); FP8 within the format's relative/subnormal step; f16/bf16
 *    within half an ulp;
 *  - the RTN scales follow the documented rule (absmax / qmax rounded up to fp16...);
 *  - the search never has a larger (importance-weighted) squared error than RTN on any group,
 *    and on gaussian int4 data it is strictly better overall;
 *  - payload layout (nibble order, q + 8, odd-width padding, int8 never -128) on hand-made
 *    rows; stats agree with a direct measurement; threads give the same bytes;
 *  - bad input (NaN, out-of-range magnitude, missing buffers, bad shape) is refused. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/fp8.h"
#include "core/half.h"
#include "quant/quantize_matrix.h"

/* ---- data ------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) * 0x1p-53;
}
static double grand(void) {
  double u = urand(), v = urand();
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

enum {
  DIST_GAUSS,
  DIST_UNIFORM,
  DIST_OUTLIERS,
  DIST_ZERO,
  DIST_CONST,
  DIST_POSITIVE,
  DIST_TINY,
  DIST_LARGE,
  DIST_COUNT
};

static void fill_row(float* w, int64_t n, int dist) {
  for (int64_t i = 0; i < n; i++) {
    double v = 0;
    switch (dist) {
      case DIST_GAUSS: v = 0.02 * grand(); break;
      case DIST_UNIFORM: v = 2.0 * urand() - 1.0; break;
      case DIST_OUTLIERS: v = 0.02 * grand() * (urand() < 0.02 ? 40.0 : 1.0); break;
      case DIST_ZERO: v = 0.0; break;
      case DIST_CONST: v = 0.1; break;
      case DIST_POSITIVE: v = 0.5 + 1.5 * urand(); break;
      case DIST_TINY: v = 1e-6 * grand(); break;
      case DIST_LARGE: v = 1000.0 * (2.0 * urand() - 1.0); break;
    }
    w[i] = (float)v;
  }
}

/* ---- a quantized matrix ------------------------------------------------------------------ */

typedef struct qmat {
  qn_qtype t;
  int64_t rows, cols;
  uint8_t* payload;
  uint8_t* scales; /* NULL for float schemes */
  uint8_t* zeros;  /* NULL unless asymmetric */
  float* deq;      /* rows * cols */
  qn_quant_stats st;
} qmat;

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

static size_t scale_bytes(qn_qtype t, int64_t rows, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (tr->group < 0) return 0;
  return (size_t)rows * (size_t)qn_qtype_n_groups(t, cols) *
         (tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4);
}

static qmat quantize(qn_qtype t, const float* w, int64_t rows, int64_t cols,
                     const qn_quant_opts* o) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  qmat m = {.t = t, .rows = rows, .cols = cols};
  m.payload = xmalloc((size_t)rows * qn_qtype_row_bytes(t, cols));
  memset(m.payload, 0xAA, (size_t)rows * qn_qtype_row_bytes(t, cols)); /* garbage */
  if (tr->group >= 0) m.scales = xmalloc(scale_bytes(t, rows, cols));
  if (tr->asymmetric) m.zeros = xmalloc(scale_bytes(t, rows, cols));
  assert_int_equal(qn_quantize_matrix(t, w, rows, cols, o, m.payload, m.scales, m.zeros, &m.st),
                   QN_OK);
  m.deq = xmalloc((size_t)(rows * cols) * sizeof(float));
  qn_qtensor qt = {t, rows, cols, m.payload, m.scales, m.zeros, 0, QN_LAYOUT_ROWS};
  assert_int_equal(qn_qtensor_dequant(&qt, m.deq), QN_OK);
  return m;
}

static void qmat_free(qmat* m) {
  free(m->payload);
  free(m->scales);
  free(m->zeros);
  free(m->deq);
}

/* Scale (or minimum) k of row r, as stored. */
static float stored(const qmat* m, const uint8_t* arr, int64_t r, int64_t k) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(m->t);
  int64_t i = r * qn_qtype_n_groups(m->t, m->cols) + k;
  if (tr->scale_dtype == QN_DTYPE_F16) {
    uint16_t h;
    memcpy(&h, arr + 2 * i, 2);
    return qn_f16_to_f32(h);
  }
  float v;
  memcpy(&v, arr + 4 * i, 4);
  return v;
}

static int64_t group_len(const qmat* m) {
  int g = qn_qtype_traits_of(m->t)->group;
  return g > 0 ? g : m->cols;
}

/* ---- bounds ----------------------------------------------------------------------------- */

static void fail_weight(const qmat* m, int64_t r, int64_t c, float w, float got, double bound,
                        const char* what) {
  fail_msg("%s %lldx%lld [%lld,%lld]: w=%.9g deq=%.9g |err|=%.3g > %s bound %.3g",
           qn_qtype_traits_of(m->t)->name, (long long)m->rows, (long long)m->cols, (long long)r,
           (long long)c, (double)w, (double)got, fabs((double)w - got), what, bound);
}

/* Values inside [lo, hi] are within half a step (plus float rounding); values outside land
 * exactly on the nearer end. */
static void check_clip_rule(const qmat* m, int64_t r, int64_t c, float w, double lo, double hi,
                            double step, const char* what) {
  float got = m->deq[r * m->cols + c];
  double err = fabs((double)w - got);
  double slop = 1e-6 * (fabs(w) + step);
  if (w >= lo - slop && w <= hi + slop) {
    if (err > step / 2 + slop) fail_weight(m, r, c, w, got, step / 2, what);
  } else {
    double end = w > hi ? hi : lo;
    if (fabs(got - end) > 1e-6 * fabs(end)) fail_weight(m, r, c, w, got, fabs(w - end), what);
  }
}

static void check_sym_int(const qmat* m, const float* w, int qmin, int qmax, bool rtn) {
  int64_t G = group_len(m);
  bool fp16 = qn_qtype_traits_of(m->t)->scale_dtype == QN_DTYPE_F16;
  for (int64_t r = 0; r < m->rows; r++) {
    for (int64_t g0 = 0, k = 0; g0 < m->cols; g0 += G, k++) {
      int64_t n = m->cols - g0 < G ? m->cols - g0 : G;
      double d = stored(m, m->scales, r, k);
      double a = qmin * d, b = qmax * d;
      double lo = a < b ? a : b, hi = a < b ? b : a;
      double absmax = 0, extreme = 0;
      for (int64_t i = 0; i < n; i++) {
        float v = w[r * m->cols + g0 + i];
        if (fabs(v) > absmax) absmax = fabs(v), extreme = v;
        check_clip_rule(m, r, g0 + i, v, lo, hi, fabs(d), "int");
      }
      if (!rtn) continue;
      /* RTN rule: |d| = absmax / qend rounded up to the scale dtype; qend = qmax when the
       * code range is symmetric, -qmin (=8, extreme -> -8) for int4 */
      double qend = qmin == -qmax ? qmax : -qmin;
      double want = absmax / qend;
      if (absmax == 0) {
        assert_true(d == 0.0);
        continue;
      }
      if (qmin != -qmax) assert_true((extreme > 0) == (d < 0)); /* extreme -> qmin */
      assert_true(fabs(d) >= want * (1 - 0x1p-23));
      if (fp16) {
        uint16_t h = qn_f32_to_f16((float)fabs(d));
        assert_true(qn_f16_to_f32((uint16_t)(h - 1)) < want * (1 + 0x1p-23)); /* smallest */
      } else {
        assert_true(fabs(d) <= want * (1 + 0x1p-23));
      }
    }
  }
}

static void check_asym(const qmat* m, const float* w, bool rtn) {
  int64_t G = group_len(m);
  for (int64_t r = 0; r < m->rows; r++) {
    for (int64_t g0 = 0, k = 0; g0 < m->cols; g0 += G, k++) {
      int64_t n = m->cols - g0 < G ? m->cols - g0 : G;
      double s = stored(m, m->scales, r, k), mn = stored(m, m->zeros, r, k);
      assert_true(s >= 0);
      double lo = 1e300, hi = -1e300;
      for (int64_t i = 0; i < n; i++) {
        float v = w[r * m->cols + g0 + i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        check_clip_rule(m, r, g0 + i, v, mn, mn + 15 * s, s, "asym");
      }
      if (!rtn) continue;
      /* RTN: m = the largest fp16 <= min; m + 15 s covers max */
      assert_true(mn <= lo);
      uint16_t h = qn_f32_to_f16((float)mn);
      float next_up = qn_f16_to_f32(mn >= 0 ? (uint16_t)(h + 1) : (uint16_t)(h - 1));
      if (mn == 0) next_up = 0x1p-24f;
      assert_true(next_up > lo);
      assert_true(mn + 15 * s >= hi - 1e-6 * fabs(hi));
    }
  }
}

static void check_fp8(const qmat* m, const float* w, bool e4m3, bool rtn) {
  double vmax = e4m3 ? QN_FP8_E4M3_MAX : QN_FP8_E5M2_MAX;
  int mbits = e4m3 ? 3 : 2, emin = e4m3 ? -6 : -14;
  for (int64_t r = 0; r < m->rows; r++) {
    double d = stored(m, m->scales, r, 0);
    double absmax = 0;
    for (int64_t c = 0; c < m->cols; c++) {
      float v = w[r * m->cols + c];
      float got = m->deq[r * m->cols + c];
      absmax = fabs(v) > absmax ? fabs(v) : absmax;
      if (d == 0) {
        assert_true(got == 0.0f);
        continue;
      }
      double x = v / d;
      if (fabs(x) > vmax * (1 + 1e-6)) { /* saturated (search may clip) */
        if (fabs(fabs(got) - vmax * d) > 1e-6 * vmax * d) fail_weight(m, r, c, v, got, 0, "sat");
        continue;
      }
      /* half a step: relative 2^-(m+1) for normals, 2^(emin-m-1) absolute for subnormals */
      double half = fmax(fabs(x) * ldexp(1, -mbits - 1), ldexp(1, emin - mbits - 1));
      double bound = d * half * (1 + 1e-5) + 1e-6 * fabs(v);
      if (fabs((double)v - got) > bound) fail_weight(m, r, c, v, got, bound, "fp8");
    }
    if (rtn) assert_true(fabs(d - absmax / vmax) <= 1e-6 * d);
  }
}

static void check_float(const qmat* m, const float* w) {
  for (int64_t i = 0; i < m->rows * m->cols; i++) {
    double v = w[i], got = m->deq[i], err = fabs(v - got);
    double bound = m->t == QN_QTYPE_F32   ? 0.0
                   : m->t == QN_QTYPE_F16 ? fmax(fabs(v) * 0x1p-11, 0x1p-25)
                                          : fabs(v) * 0x1p-8;
    if (err > bound) fail_weight(m, i / m->cols, i % m->cols, (float)v, (float)got, bound, "float");
  }
}

static void check_bounds(const qmat* m, const float* w, bool rtn) {
  switch (m->t) {
    case QN_QTYPE_F32:
    case QN_QTYPE_F16:
    case QN_QTYPE_BF16: check_float(m, w); break;
    case QN_QTYPE_Q8_C:
    case QN_QTYPE_Q8_G32:
    case QN_QTYPE_Q8_G64:
    case QN_QTYPE_Q8_G128:
    case QN_QTYPE_W8A8_STATIC:
    case QN_QTYPE_W8A8_DYNAMIC: check_sym_int(m, w, -127, 127, rtn); break;
    case QN_QTYPE_Q4_G32:
    case QN_QTYPE_Q4_G64:
    case QN_QTYPE_Q4_G128:
    case QN_QTYPE_W4A8: check_sym_int(m, w, -8, 7, rtn); break;
    case QN_QTYPE_Q3_G32:
    case QN_QTYPE_Q3_G64:
    case QN_QTYPE_Q3_G128: check_sym_int(m, w, -4, 3, rtn); break;
    case QN_QTYPE_Q4A_G32:
    case QN_QTYPE_Q4A_G64:
    case QN_QTYPE_Q4A_G128: check_asym(m, w, rtn); break;
    case QN_QTYPE_F8_E4M3: check_fp8(m, w, true, rtn); break;
    case QN_QTYPE_F8_E5M2: check_fp8(m, w, false, rtn); break;
    default: fail();
  }
}

/* Payload invariants: int8 codes never -128; odd int4 rows leave the last high nibble 0. */
static void check_payload(const qmat* m) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(m->t);
  uint64_t rb = qn_qtype_row_bytes(m->t, m->cols);
  for (int64_t r = 0; r < m->rows; r++) {
    const uint8_t* p = m->payload + r * rb;
    if (tr->payload_bits == 8 && tr->group >= 0 && m->t != QN_QTYPE_F8_E4M3 &&
        m->t != QN_QTYPE_F8_E5M2)
      for (uint64_t i = 0; i < rb; i++) assert_int_not_equal(p[i], 0x80);
    if (tr->payload_bits == 4 && (m->cols & 1)) assert_int_equal(p[rb - 1] >> 4, 0);
  }
}

/* Stats returned by the quantizer agree with a measurement from the dequantized matrix. */
static void check_stats(const qmat* m, const float* w) {
  qn_quant_stats ref;
  qn_quant_stats_measure(w, m->deq, m->rows * m->cols, &ref);
  assert_int_equal(m->st.n, m->rows * m->cols);
  assert_true(m->st.max_abs_err == ref.max_abs_err);
  assert_true(fabs(m->st.err_sq - ref.err_sq) <= 1e-9 * ref.err_sq);
  assert_true(fabs(m->st.rmse - ref.rmse) <= 1e-9 * ref.rmse + 1e-300);
  double sq = 0, e2 = 0, emax = 0;
  for (int64_t i = 0; i < m->rows * m->cols; i++) {
    double e = (double)w[i] - m->deq[i];
    sq += (double)w[i] * w[i];
    e2 += e * e;
    emax = fabs(e) > emax ? fabs(e) : emax;
  }
  assert_true(emax == m->st.max_abs_err);
  if (e2 == 0)
    assert_true(isinf(m->st.sqnr_db) && m->st.sqnr_db > 0);
  else
    assert_true(fabs(m->st.sqnr_db - 10 * log10(sq / e2)) < 1e-6);
}

/* Weighted squared error of group k of row r. */
static double group_err(const qmat* m, const float* w, const float* imp, int64_t r, int64_t g0,
                        int64_t n) {
  double s = 0;
  for (int64_t i = g0; i < g0 + n; i++) {
    double e = (double)w[r * m->cols + i] - m->deq[r * m->cols + i];
    s += (imp ? imp[i] : 1.0) * e * e;
  }
  return s;
}

static const int64_t k_cols[] = {1, 7, 31, 33, 172, 4097};

static float* make_matrix(int64_t cols) {
  float* w = xmalloc((size_t)(DIST_COUNT * cols) * sizeof(float));
  for (int d = 0; d < DIST_COUNT; d++) fill_row(w + d * cols, cols, d);
  return w;
}

static float* make_importance(int64_t cols) {
  float* imp = xmalloc((size_t)cols * sizeof(float));
  for (int64_t i = 0; i < cols; i++) imp[i] = urand() < 0.1 ? 0.0f : (float)(2.0 * urand());
  return imp;
}

/* RTN and search for one scheme on every width: bounds, payload, stats, search <= RTN. */
static void run_scheme(qn_qtype t) {
  for (size_t ci = 0; ci < sizeof k_cols / sizeof k_cols[0]; ci++) {
    int64_t cols = k_cols[ci], rows = DIST_COUNT;
    float* w = make_matrix(cols);
    float* imp = make_importance(cols);
    qn_quant_opts rtn_o = {false, NULL, 1};
    qmat rtn = quantize(t, w, rows, cols, &rtn_o);
    check_bounds(&rtn, w, true);
    check_payload(&rtn);
    check_stats(&rtn, w);
    for (int use_imp = 0; use_imp < 2; use_imp++) {
      const float* im = use_imp ? imp : NULL;
      qn_quant_opts so = {true, im, 1};
      qmat srch = quantize(t, w, rows, cols, &so);
      check_bounds(&srch, w, false);
      check_payload(&srch);
      check_stats(&srch, w);
      int64_t G = group_len(&rtn);
      for (int64_t r = 0; r < rows; r++) {
        for (int64_t g0 = 0; g0 < cols; g0 += G) {
          int64_t n = cols - g0 < G ? cols - g0 : G;
          double es = group_err(&srch, w, im, r, g0, n), er = group_err(&rtn, w, im, r, g0, n);
          if (es > er * (1 + 1e-12))
            fail_msg("%s cols %lld row %lld group at %lld: search error %.6g > RTN %.6g",
                     qn_qtype_traits_of(t)->name, (long long)cols, (long long)r, (long long)g0, es,
                     er);
        }
      }
      qmat_free(&srch);
    }
    qmat_free(&rtn);
    free(w);
    free(imp);
  }
}

#define SCHEME_TEST(fn, T)   \
  static void fn(void** s) { \
    (void)s;                 \
    run_scheme(T);           \
  }
SCHEME_TEST(test_f32, QN_QTYPE_F32)
SCHEME_TEST(test_f16, QN_QTYPE_F16)
SCHEME_TEST(test_bf16, QN_QTYPE_BF16)
SCHEME_TEST(test_q8_c, QN_QTYPE_Q8_C)
SCHEME_TEST(test_q8_g32, QN_QTYPE_Q8_G32)
SCHEME_TEST(test_q8_g64, QN_QTYPE_Q8_G64)
SCHEME_TEST(test_q8_g128, QN_QTYPE_Q8_G128)
SCHEME_TEST(test_q4_g32, QN_QTYPE_Q4_G32)
SCHEME_TEST(test_q4_g64, QN_QTYPE_Q4_G64)
SCHEME_TEST(test_q4_g128, QN_QTYPE_Q4_G128)
SCHEME_TEST(test_q4a_g32, QN_QTYPE_Q4A_G32)
SCHEME_TEST(test_q4a_g64, QN_QTYPE_Q4A_G64)
SCHEME_TEST(test_q4a_g128, QN_QTYPE_Q4A_G128)
SCHEME_TEST(test_fp8_e4m3, QN_QTYPE_F8_E4M3)
SCHEME_TEST(test_fp8_e5m2, QN_QTYPE_F8_E5M2)
SCHEME_TEST(test_q3_g32, QN_QTYPE_Q3_G32)
SCHEME_TEST(test_q3_g64, QN_QTYPE_Q3_G64)
SCHEME_TEST(test_q3_g128, QN_QTYPE_Q3_G128)

/* On gaussian weights the search must actually help (total error strictly lower). */
static void test_search_helps(void** s) {
  (void)s;
  const qn_qtype types[] = {QN_QTYPE_Q4_G32, QN_QTYPE_Q4A_G32, QN_QTYPE_Q4_G128, QN_QTYPE_Q8_C,
                            QN_QTYPE_F8_E4M3};
  int64_t rows = 16, cols = 512;
  float* w = xmalloc((size_t)(rows * cols) * sizeof(float));
  for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.02 * grand());
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    qn_quant_opts ro = {false, NULL, 1}, so = {true, NULL, 1};
    qmat a = quantize(types[i], w, rows, cols, &ro), b = quantize(types[i], w, rows, cols, &so);
    printf("%-12s RTN SQNR %.2f dB, search %.2f dB\n", qn_qtype_traits_of(types[i])->name,
           a.st.sqnr_db, b.st.sqnr_db);
    assert_true(b.st.err_sq < a.st.err_sq);
    qmat_free(&a);
    qmat_free(&b);
  }
  free(w);
}

/* ---- layouts on hand-made rows ------------------------------------------------------------ */

static void test_int4_layout(void** s) {
  (void)s;
  /* extreme -8 is negative: d = +1, codes = w, nibbles = w + 8, column 2k low */
  const float w1[7] = {-8, 3, -1, 7, 0, 5, -3};
  qmat m = quantize(QN_QTYPE_Q4_G32, w1, 1, 7, NULL);
  const uint8_t want1[4] = {0xB0, 0xF7, 0xD8, 0x05};
  assert_memory_equal(m.payload, want1, 4);
  assert_int_equal(m.scales[0] | m.scales[1] << 8, 0x3C00); /* fp16 1.0 */
  for (int i = 0; i < 7; i++) assert_true(m.deq[i] == w1[i]);
  qmat_free(&m);
  /* extreme +8 is positive: d = -1, codes = -w */
  const float w2[3] = {8, -4, 2};
  m = quantize(QN_QTYPE_Q4_G32, w2, 1, 3, NULL);
  const uint8_t want2[2] = {0xC0, 0x06};
  assert_memory_equal(m.payload, want2, 2);
  assert_int_equal(m.scales[0] | m.scales[1] << 8, 0xBC00); /* fp16 -1.0 */
  for (int i = 0; i < 3; i++) assert_true(m.deq[i] == w2[i]);
  qmat_free(&m);
  /* asymmetric: 1..16 -> min 1, scale 1, nibbles 0..15 */
  float w3[16];
  for (int i = 0; i < 16; i++) w3[i] = (float)(i + 1);
  m = quantize(QN_QTYPE_Q4A_G32, w3, 1, 16, NULL);
  for (int k = 0; k < 8; k++) assert_int_equal(m.payload[k], (2 * k) | (2 * k + 1) << 4);
  assert_int_equal(m.scales[0] | m.scales[1] << 8, 0x3C00);
  assert_int_equal(m.zeros[0] | m.zeros[1] << 8, 0x3C00);
  for (int i = 0; i < 16; i++) assert_true(m.deq[i] == w3[i]);
  qmat_free(&m);
  /* two rows of 33 columns: each row starts on its own byte, groups of 32 + 1 */
  float w4[66];
  for (int i = 0; i < 66; i++) w4[i] = (float)((i % 15) - 7);
  w4[0] = w4[33] = -8; /* first group of each row: extreme -8, so d = 1 */
  w4[32] = -8;         /* second group of row 0: one value */
  m = quantize(QN_QTYPE_Q4_G32, w4, 2, 33, NULL);
  assert_int_equal(qn_qtype_row_bytes(QN_QTYPE_Q4_G32, 33), 17);
  assert_int_equal(m.payload[16], 0x00); /* row 0, col 32 = -8 -> nibble 0, high nibble 0 */
  for (int i = 0; i < 66; i++) assert_true(m.deq[i] == w4[i]);
  qmat_free(&m);
}

static void test_int8_fp8_layout(void** s) {
  (void)s;
  const float w[4] = {127, -64, 0, 1};
  qmat m = quantize(QN_QTYPE_Q8_G32, w, 1, 4, NULL);
  const int8_t want[4] = {127, -64, 0, 1};
  assert_memory_equal(m.payload, want, 4);
  assert_int_equal(m.scales[0] | m.scales[1] << 8, 0x3C00);
  qmat_free(&m);
  m = quantize(QN_QTYPE_Q8_C, w, 1, 4, NULL);
  assert_memory_equal(m.payload, want, 4);
  float d;
  memcpy(&d, m.scales, 4);
  assert_true(d == 1.0f);
  qmat_free(&m);
  /* E4M3 with scale 448 / 448 = 1: 448 -> 0x7e, -1 -> 0xb8, 0.5 -> 0x30 (OCP encodings) */
  const float wf[3] = {448, -1, 0.5};
  m = quantize(QN_QTYPE_F8_E4M3, wf, 1, 3, NULL);
  const uint8_t wantf[3] = {0x7e, 0xb8, 0x30};
  assert_memory_equal(m.payload, wantf, 3);
  qmat_free(&m);
  /* E5M2 with scale 1: 57344 -> 0x7b, -1 -> 0xbc, 2^-16 -> 0x01 */
  const float we[3] = {57344, -1, 0x1p-16f};
  m = quantize(QN_QTYPE_F8_E5M2, we, 1, 3, NULL);
  const uint8_t wante[3] = {0x7b, 0xbc, 0x01};
  assert_memory_equal(m.payload, wante, 3);
  qmat_free(&m);
}

/* The ends of the accepted range quantize within bound. */
static void test_range_edges(void** s) {
  (void)s;
  const float w[4] = {-65504, 65504, 0, 1e-3f};
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    qn_quant_opts so = {true, NULL, 1};
    for (int srch = 0; srch < 2; srch++) {
      qmat m = quantize((qn_qtype)t, w, 1, 4, srch ? &so : NULL);
      for (int i = 0; i < 4; i++) assert_true(isfinite(m.deq[i]));
      check_bounds(&m, w, !srch);
      qmat_free(&m);
    }
  }
}

/* Threads split rows; the bytes must not depend on the thread count. */
static void test_threads_same_bytes(void** s) {
  (void)s;
  int64_t rows = 37, cols = 300;
  float* w = xmalloc((size_t)(rows * cols) * sizeof(float));
  for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)grand();
  const qn_qtype types[] = {QN_QTYPE_Q4A_G64, QN_QTYPE_Q8_C, QN_QTYPE_Q4_G32};
  for (size_t k = 0; k < 3; k++) {
    qn_quant_opts o1 = {true, NULL, 1}, o3 = {true, NULL, 3};
    qmat a = quantize(types[k], w, rows, cols, &o1), b = quantize(types[k], w, rows, cols, &o3);
    assert_memory_equal(a.payload, b.payload, rows * qn_qtype_row_bytes(types[k], cols));
    assert_memory_equal(a.scales, b.scales, scale_bytes(types[k], rows, cols));
    assert_true(fabs(a.st.err_sq - b.st.err_sq) <= 1e-12 * a.st.err_sq);
    assert_true(a.st.max_abs_err == b.st.max_abs_err);
    qmat_free(&a);
    qmat_free(&b);
  }
  free(w);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void test_bad_input(void** s) {
  (void)s;
  float w[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  uint8_t payload[64];
  uint8_t scales[64], zeros[64];
  w[6] = NAN; /* row 1, col 2 of a 2 x 4 matrix */
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q4_G32, w, 2, 4, NULL, payload, scales, NULL, NULL),
                   QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "[1, 2]"));
  assert_non_null(strstr(qn_last_error(), "int4-g32"));
  w[6] = INFINITY;
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_F32, w, 2, 4, NULL, payload, NULL, NULL, NULL),
                   QN_EINVAL);
  w[6] = 1e5f; /* beyond fp16 scales */
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q8_G32, w, 2, 4, NULL, payload, scales, NULL, NULL),
                   QN_ERANGE);
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_F16, w, 2, 4, NULL, payload, NULL, NULL, NULL),
                   QN_ERANGE);
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q8_C, w, 2, 4, NULL, payload, scales, NULL, NULL),
                   QN_OK); /* f32 scale: fine */
  w[6] = 0.7f;
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q8_G32, w, 2, 4, NULL, payload, NULL, NULL, NULL),
                   QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "scales"));
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q4A_G32, w, 2, 4, NULL, payload, scales, NULL, NULL),
                   QN_EINVAL);
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q4_G32, w, 2, 0, NULL, payload, scales, NULL, NULL),
                   QN_EINVAL);
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q4_G32, w, -1, 4, NULL, payload, scales, NULL, NULL),
                   QN_EINVAL);
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_COUNT, w, 2, 4, NULL, payload, scales, zeros, NULL),
                   QN_EINVAL);
  assert_int_equal(
      qn_quantize_matrix(QN_QTYPE_Q4_G32, w, INT64_MAX, 4, NULL, payload, scales, NULL, NULL),
      QN_EINVAL);
  float imp[4] = {1, -1, 1, 1};
  qn_quant_opts o = {true, imp, 1};
  assert_int_equal(qn_quantize_matrix(QN_QTYPE_Q4_G32, w, 2, 4, &o, payload, scales, NULL, NULL),
                   QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "importance"));
  qn_qtensor bad = {QN_QTYPE_Q4_G32, 2, 4, payload, NULL, NULL, 0, QN_LAYOUT_ROWS};
  float out[8];
  assert_int_equal(qn_qtensor_dequant(&bad, out), QN_EINVAL);
  assert_int_equal(qn_qtensor_dequant(NULL, out), QN_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_f32),
      cmocka_unit_test(test_f16),
      cmocka_unit_test(test_bf16),
      cmocka_unit_test(test_q8_c),
      cmocka_unit_test(test_q8_g32),
      cmocka_unit_test(test_q8_g64),
      cmocka_unit_test(test_q8_g128),
      cmocka_unit_test(test_q4_g32),
      cmocka_unit_test(test_q4_g64),
      cmocka_unit_test(test_q4_g128),
      cmocka_unit_test(test_q4a_g32),
      cmocka_unit_test(test_q4a_g64),
      cmocka_unit_test(test_q4a_g128),
      cmocka_unit_test(test_fp8_e4m3),
      cmocka_unit_test(test_fp8_e5m2),
      cmocka_unit_test(test_search_helps),
      cmocka_unit_test(test_q3_g32),
      cmocka_unit_test(test_q3_g64),
      cmocka_unit_test(test_q3_g128),
      cmocka_unit_test(test_int4_layout),
      cmocka_unit_test(test_int8_fp8_layout),
      cmocka_unit_test(test_range_edges),
      cmocka_unit_test(test_threads_same_bytes),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
