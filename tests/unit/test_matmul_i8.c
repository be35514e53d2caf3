/* test_matmul_i8.c: the integer reference kernel of the int8-activation schemes (w8a8-static,
 * w8a8-dynamic, w4a8) against the formula of docs/QUANTIZATION.md, restated naively here:
 *  - bit-exact (memcmp of the float outputs) on odd sizes: rows and cols in {1, 7, 31, 33,
 *    172, 4097}, 1, 2, 3, 9 and 17 tokens, for the weights in their canonical rows and in
 *    their packed layout (quant/pack_i8.h), through qn_matmul_i8_ref with exactly
 *    qn_matmul_i8_scratch_floats of scratch (placed at an odd float offset: the kernel aligns
 *    its activations itself) and through qn_matmul (the dispatcher, so 9 and 17 tokens also
 *    prove the float BLAS path is never taken);
 *  - qn_matmul_i8_ref_acts over one shared qn_i8_act gives the same bytes for both layouts;
 *  - the same bytes with 1 or 3 threads;
 *  - int32 exactness at the extremes: all codes +-127 (or -8 for int4) over 4097 columns;
 *  - static scale: codes by hand (ties to even, saturation at +-127 beyond 127 * s);
 *  - zero weights and zero tokens give exactly 0;
 *  - random data stays close to the f32 product (relative Frobenius error bounds);
 *  - the scheme table rows (names, codes like int8-channel / int4-g32, packed storage sizes,
 *    act kinds). */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/half.h"
#include "kernels/i8_act.h"
#include "kernels/kernels.h"
#include "quant/pack_i8.h"
#include "quant/qtype.h"
#include "quant/quantize_matrix.h"

static const qn_qtype k_schemes[3] = {QN_QTYPE_W8A8_STATIC, QN_QTYPE_W8A8_DYNAMIC, QN_QTYPE_W4A8};

/* ---- data ------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
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

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* A quantized matrix and the buffers behind it, in both layouts. */
typedef struct qmat {
  qn_qtensor W;     /* canonical rows */
  uint8_t* payload; /* canonical payload */
  uint8_t* scales;  /* canonical scales */
  qn_qtensor P;     /* the same matrix packed (qn_qtensor_pack) */
  void* ppayload;   /* packed payload */
  void* pscales;    /* packed scales */
} qmat;

/* Quantizes w (rows x cols) to scheme t row by row through the traits. */
static qmat make_qmat(qn_qtype t, const float* w, int64_t rows, int64_t cols, float act_scale) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  uint64_t rb = qn_qtype_row_bytes(t, cols);
  int64_t ng = qn_qtype_n_groups(t, cols);
  size_t sb = tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  qmat m;
  m.payload = xmalloc(rb * (size_t)rows);
  m.scales = xmalloc(sb * (size_t)(ng * rows));
  for (int64_t r = 0; r < rows; r++)
    tr->quantize_row(w + r * cols, cols, NULL, m.payload + r * rb, m.scales + sb * (size_t)(r * ng),
                     NULL);
  m.W = (qn_qtensor){t, rows, cols, m.payload, m.scales, NULL, act_scale, QN_LAYOUT_ROWS};
  assert_int_equal(qn_qtensor_pack(&m.W, &m.P, &m.ppayload, &m.pscales), QN_OK);
  assert_int_equal(m.P.layout, qn_qtype_packed_layout(t));
  assert_true(m.P.act_scale == act_scale);
  return m;
}

static void free_qmat(qmat* m) {
  free(m->payload);
  free(m->scales);
  free(m->ppayload);
  free(m->pscales);
}

/* ---- the formula, restated ---------------------------------------------------------------- */

static float naive_token_scale(const qn_qtensor* W, const float* x, int64_t cols) {
  float s;
  if (qn_qtype_traits_of(W->type)->act == QN_ACT_I8_STATIC) {
    s = W->act_scale;
  } else {
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; c++) amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    s = amax / 127.0f;
  }
  return s >= FLT_MIN ? s : 1.0f;
}

static int naive_code(float x, float s) {
  float r = rintf(x / s);
  if (r != r) return 0;
  return r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r;
}

/* Weight code of (r, c) and its scale, read straight from the stored bytes. */
static int weight_code(const qn_qtensor* W, int64_t r, int64_t c) {
  uint64_t rb = qn_qtype_row_bytes(W->type, W->cols);
  const uint8_t* p = (const uint8_t*)W->data + (uint64_t)r * rb;
  if (qn_qtype_traits_of(W->type)->payload_bits == 8) return (int8_t)p[c];
  int nib = c % 2 ? p[c / 2] >> 4 : p[c / 2] & 15;
  return nib - 8;
}
static float weight_scale(const qn_qtensor* W, int64_t r, int64_t g) {
  int64_t ng = qn_qtype_n_groups(W->type, W->cols);
  if (qn_qtype_traits_of(W->type)->scale_dtype == QN_DTYPE_F32) {
    float d;
    memcpy(&d, (const uint8_t*)W->scales + 4 * (r * ng + g), 4);
    return d;
  }
  uint16_t h;
  memcpy(&h, (const uint8_t*)W->scales + 2 * (r * ng + g), 2);
  return qn_f16_to_f32(h);
}

/* Exact integer sum of qx[c] * qw[c] over [c0, c1) (int64; checked to fit int32). */
static int32_t naive_acc(const int* qw, const int* qx, int64_t c0, int64_t c1) {
  int64_t acc = 0;
  for (int64_t c = c0; c < c1; c++) acc += (int64_t)qx[c] * qw[c];
  assert_true(acc >= INT32_MIN && acc <= INT32_MAX);
  return (int32_t)acc;
}

/* Y = X W^T by the documented formula. */
static void naive_matmul(const qn_qtensor* W, const float* X, int n, float* Y) {
  const int64_t cols = W->cols;
  int* qx = xmalloc(sizeof(int) * (size_t)(n * cols)); /* activation codes of every token */
  float* sx = xmalloc(sizeof(float) * (size_t)n);      /* their scales */
  int* qw = xmalloc(sizeof(int) * (size_t)cols);       /* weight codes of one row */
  int64_t G = qn_qtype_traits_of(W->type)->group;
  for (int t = 0; t < n; t++) {
    sx[t] = naive_token_scale(W, X + t * cols, cols);
    for (int64_t c = 0; c < cols; c++) qx[t * cols + c] = naive_code(X[t * cols + c], sx[t]);
  }
  for (int64_t r = 0; r < W->rows; r++) {
    for (int64_t c = 0; c < cols; c++) qw[c] = weight_code(W, r, c);
    for (int t = 0; t < n; t++) {
      const int* q = qx + t * cols;
      float y;
      if (G == 0) { /* W8A8 */
        y = (float)naive_acc(qw, q, 0, cols) * (sx[t] * weight_scale(W, r, 0));
      } else { /* W4A8 */
        float sum = 0.0f;
        for (int64_t g = 0; g * G < cols; g++) {
          int64_t c1 = (g + 1) * G < cols ? (g + 1) * G : cols;
          float p = (float)naive_acc(qw, q, g * G, c1) * weight_scale(W, r, g);
          sum = sum + p;
        }
        y = sum * sx[t];
      }
      Y[(size_t)t * (size_t)W->rows + (size_t)r] = y;
    }
  }
  free(qw);
  free(sx);
  free(qx);
}

/* Y through the dispatcher with exactly the scratch it asks for. */
static float* run_matmul(qn_pool* pool, const qn_qtensor* W, const float* X, int n) {
  size_t sf = qn_matmul_scratch_floats(W, n, qn_pool_size(pool));
  float* scratch = xmalloc(sizeof(float) * sf);
  float* Y = xmalloc(sizeof(float) * (size_t)n * (size_t)W->rows);
  qn_matmul(pool, W, X, n, Y, scratch);
  free(scratch);
  return Y;
}

/* Y through the integer reference itself, its scratch exactly qn_matmul_i8_scratch_floats
 * floats starting one float past a 64-byte boundary (so the kernel must align it). */
static float* run_ref(qn_pool* pool, const qn_qtensor* W, const float* X, int n) {
  size_t sf = qn_matmul_i8_scratch_floats(W, n, qn_pool_size(pool));
  float* buf = aligned_alloc(64, (sizeof(float) * (sf + 1) + 63) / 64 * 64);
  assert_non_null(buf);
  float* Y = xmalloc(sizeof(float) * (size_t)n * (size_t)W->rows);
  qn_matmul_i8_ref(pool, W, X, n, Y, buf + 1);
  free(buf);
  return Y;
}

static void expect_same(const qn_qtensor* W, const float* got, const float* want, int n) {
  size_t cnt = (size_t)n * (size_t)W->rows;
  if (memcmp(got, want, cnt * sizeof(float)) == 0) return;
  for (size_t i = 0; i < cnt; i++)
    if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
      fail_msg("%s %lldx%lld n=%d: Y[%zu] = %.9g, formula %.9g", qn_qtype_traits_of(W->type)->name,
               (long long)W->rows, (long long)W->cols, n, i, (double)got[i], (double)want[i]);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_table(void** s) {
  (void)s;
  const char* names[3] = {"w8a8-static", "w8a8-dynamic", "w4a8"};
  const qn_act_kind acts[3] = {QN_ACT_I8_STATIC, QN_ACT_I8_DYNAMIC, QN_ACT_I8_DYNAMIC};
  const qn_qtype like[3] = {QN_QTYPE_Q8_C, QN_QTYPE_Q8_C, QN_QTYPE_Q4_G32};
  float wf[5 * 172], a[172], b[172];
  for (int i = 0; i < 5 * 172; i++) wf[i] = (float)(0.1 * grand());
  for (int i = 0; i < 3; i++) {
    const qn_qtype_traits* tr = qn_qtype_traits_of(k_schemes[i]);
    const qn_qtype_traits* w = qn_qtype_traits_of(like[i]);
    assert_string_equal(tr->name, names[i]);
    assert_int_equal(qn_qtype_from_name(names[i]), k_schemes[i]);
    assert_int_equal(tr->act, acts[i]);
    assert_non_null(strstr(tr->kernels, "VNNI"));
    assert_true(tr->payload_bits == w->payload_bits && tr->group == w->group);
    assert_true(tr->scale_dtype == w->scale_dtype && !tr->asymmetric);
    assert_true(tr->quantize_row == w->quantize_row);
    /* the same codes: canonical rows dequantize as the weight-only twin, packed ones too */
    qmat m = make_qmat(k_schemes[i], wf, 5, 172, 0.1f);
    qn_qtensor twin = m.W;
    twin.type = like[i];
    for (int r = 0; r < 5; r++) {
      w->dequant_row(&twin, r, a);
      tr->dequant_row(&m.W, r, b);
      assert_memory_equal(a, b, sizeof a);
      tr->dequant_row(&m.P, r, b);
      assert_memory_equal(a, b, sizeof a);
    }
    free_qmat(&m);
    /* stored packed: the twin's size on whole 16-row blocks, padding counted otherwise */
    assert_true(qn_qtype_bpw(k_schemes[i], 64, 256) == qn_qtype_bpw(like[i], 64, 256));
    if (qn_qtype_packed_layout(like[i]) == QN_LAYOUT_ROWS) /* int4-gN is packed alike */
      assert_true(qn_qtype_bpw(k_schemes[i], 5, 172) > qn_qtype_bpw(like[i], 5, 172));
    else
      assert_true(qn_qtype_bpw(k_schemes[i], 5, 172) == qn_qtype_bpw(like[i], 5, 172));
    assert_true(strlen(tr->accuracy) > 0 && strlen(tr->summary) > 0);
  }
  for (int t = 0; t < QN_QTYPE_W8A8_STATIC; t++)
    assert_int_equal(qn_qtype_traits_of((qn_qtype)t)->act, QN_ACT_FLOAT);
}

static void test_odd_sizes_bit_exact(void** s) {
  (void)s;
  const int64_t sizes[] = {1, 7, 31, 33, 172, 4097};
  const int ns[] = {1, 2, 3, 9, 17};
  qn_pool* pool = NULL;
  assert_int_equal(qn_pool_new(3, &pool), QN_OK);
  for (size_t ri = 0; ri < 6; ri++) {
    for (size_t ci = 0; ci < 6; ci++) {
      int64_t rows = sizes[ri], cols = sizes[ci];
      float* w = xmalloc(sizeof(float) * (size_t)(rows * cols));
      for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.05 * grand());
      float* X = xmalloc(sizeof(float) * 17 * (size_t)cols);
      for (int64_t i = 0; i < 17 * cols; i++) /* a few outliers, as real activations have */
        X[i] = (float)(grand() * (urand() < 0.01 ? 30.0 : 1.0));
      for (int k = 0; k < 3; k++) {
        qmat m = make_qmat(k_schemes[k], w, rows, cols, 0.02f);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
          int n = ns[ni];
          if (rows * cols > 1000000 && n != 3) continue; /* 4097 x 4097: once is enough */
          if (rows * cols > 100000 && n == 2) continue;
          float* want = xmalloc(sizeof(float) * (size_t)(n * rows));
          naive_matmul(&m.W, X, n, want);
          const qn_qtensor* both[2] = {&m.W, &m.P};
          for (int l = 0; l < 2; l++) {
            float* ref = run_ref(pool, both[l], X, n);
            expect_same(both[l], ref, want, n);
            float* got = run_matmul(pool, both[l], X, n);
            expect_same(both[l], got, want, n);
            free(got);
            free(ref);
          }
          float* serial = run_ref(NULL, &m.P, X, n);
          expect_same(&m.P, serial, want, n);
          free(serial);
          free(want);
        }
        free_qmat(&m);
      }
      free(X);
      free(w);
    }
  }
  qn_pool_free(pool);
}

/* One qn_i8_act feeds several matrices through qn_matmul_i8_ref_acts: the same bytes as
 * qn_matmul_i8_ref, for both layouts, with exactly qn_matmul_i8_acts_scratch_floats. */
static void test_shared_activations(void** s) {
  (void)s;
  const int64_t cols = 172;
  const int64_t rows[3] = {33, 7, 64};
  const int n = 5;
  qn_pool* pool = NULL;
  assert_int_equal(qn_pool_new(2, &pool), QN_OK);
  float* X = xmalloc(sizeof(float) * (size_t)(n * cols));
  for (int64_t i = 0; i < n * cols; i++) X[i] = (float)grand();
  for (int k = 1; k < 3; k++) { /* the dynamic schemes share one per-token quantization */
    qn_i8_act a;
    void* buf = aligned_alloc(64, (qn_i8_act_bytes(n, cols) + 63) / 64 * 64);
    assert_non_null(buf);
    qn_i8_act_init(&a, buf, n, cols, 0.0f);
    qn_i8_act_quantize_ref(&a, X, 0, n);
    for (int j = 0; j < 3; j++) {
      float* w = xmalloc(sizeof(float) * (size_t)(rows[j] * cols));
      for (int64_t i = 0; i < rows[j] * cols; i++) w[i] = (float)(0.05 * grand());
      qmat m = make_qmat(k_schemes[k], w, rows[j], cols, 0.0f);
      float* want = run_ref(NULL, &m.W, X, n);
      const qn_qtensor* both[2] = {&m.W, &m.P};
      for (int l = 0; l < 2; l++) {
        size_t sf = qn_matmul_i8_acts_scratch_floats(both[l], qn_pool_size(pool));
        float* scratch = xmalloc(sizeof(float) * sf);
        float* Y = xmalloc(sizeof(float) * (size_t)(n * rows[j]));
        qn_matmul_i8_ref_acts(pool, both[l], &a, Y, scratch);
        expect_same(both[l], Y, want, n);
        free(Y);
        free(scratch);
      }
      free(want);
      free_qmat(&m);
      free(w);
    }
    free(buf);
  }
  free(X);
  qn_pool_free(pool);
}

/* All codes at the ends of their range over 4097 columns: the int32 sums are exact. */
static void test_extreme_codes(void** s) {
  (void)s;
  const int64_t cols = 4097, rows = 4;
  /* rows: all +127, all -127, alternating, all +127 (weights written by hand) */
  uint8_t* payload = xmalloc((size_t)(rows * cols));
  for (int64_t c = 0; c < cols; c++) {
    payload[0 * cols + c] = (uint8_t)(int8_t)127;
    payload[1 * cols + c] = (uint8_t)(int8_t)-127;
    payload[2 * cols + c] = (uint8_t)(int8_t)(c % 2 ? -127 : 127);
    payload[3 * cols + c] = (uint8_t)(int8_t)127;
  }
  float d[4] = {0.5f, 0.25f, 1.0f / 127.0f, 3.0f};
  float X[2 * 4097];
  for (int64_t c = 0; c < cols; c++) {
    X[c] = 3.0f;                        /* token 0: every code 127 */
    X[cols + c] = c % 2 ? 2.0f : -2.0f; /* token 1: -127, +127, ... */
  }
  const int64_t n127 = 127 * 127;
  const int64_t want_acc[2][4] = {
      {n127 * cols, -n127 * cols, n127, n127 * cols},
      {-n127, n127, -n127 * cols, -n127},
  };
  for (int k = 0; k < 2; k++) { /* w8a8-dynamic, then static at scale 3/127 and 2/127 */
    qn_qtensor W = {k ? QN_QTYPE_W8A8_STATIC : QN_QTYPE_W8A8_DYNAMIC,
                    rows,
                    cols,
                    payload,
                    d,
                    NULL,
                    0.0f,
                    QN_LAYOUT_ROWS};
    for (int t = 0; t < 2; t++) {
      float sx = (t == 0 ? 3.0f : 2.0f) / 127.0f;
      W.act_scale = k ? sx : 0.0f;
      float* Y = run_matmul(NULL, &W, X + t * cols, 1);
      qn_qtensor P; /* the packed twin gives the same bytes */
      void *pp = NULL, *ps = NULL;
      assert_int_equal(qn_qtensor_pack(&W, &P, &pp, &ps), QN_OK);
      float* YP = run_ref(NULL, &P, X + t * cols, 1);
      assert_memory_equal(Y, YP, sizeof(float) * (size_t)rows);
      free(YP);
      free(pp);
      free(ps);
      for (int r = 0; r < rows; r++) {
        assert_true(llabs(want_acc[t][r]) <= INT32_MAX);
        float want = (float)(int32_t)want_acc[t][r] * (sx * d[r]);
        if (memcmp(&Y[r], &want, 4) != 0)
          fail_msg("%s token %d row %d: %.9g, want %.9g", qn_qtype_traits_of(W.type)->name, t, r,
                   (double)Y[r], (double)want);
        /* and it is the product of the float values, up to rounding */
        double exact = (double)want_acc[t][r] * (double)sx * (double)d[r];
        assert_true(fabs(Y[r] - exact) <= 1e-6 * fabs(exact));
      }
      free(Y);
    }
  }
  /* int4: codes -8 (nibble 0) everywhere against +127 activations, groups of 32 + ragged 1 */
  const int64_t ng = (cols + 31) / 32;
  uint8_t* p4 = calloc((size_t)(cols + 1) / 2, 1);
  uint16_t* s4 = xmalloc(2 * (size_t)ng);
  assert_non_null(p4);
  for (int64_t g = 0; g < ng; g++) s4[g] = qn_f32_to_f16(g % 2 ? -0.125f : 0.0625f);
  qn_qtensor W4 = {QN_QTYPE_W4A8, 1, cols, p4, s4, NULL, 0.0f, QN_LAYOUT_ROWS};
  float* Y = run_matmul(NULL, &W4, X, 1);
  float sum = 0.0f;
  for (int64_t g = 0; g < ng; g++) {
    int64_t len = g * 32 + 32 <= cols ? 32 : cols - g * 32;
    float p = (float)(int32_t)(-8 * 127 * len) * qn_f16_to_f32(s4[g]);
    sum = sum + p;
  }
  float want = sum * (3.0f / 127.0f);
  assert_memory_equal(Y, &want, 4);
  qn_qtensor P4;
  void *pp4 = NULL, *ps4 = NULL;
  assert_int_equal(qn_qtensor_pack(&W4, &P4, &pp4, &ps4), QN_OK);
  float* YP4 = run_ref(NULL, &P4, X, 1);
  assert_memory_equal(YP4, &want, 4);
  free(YP4);
  free(pp4);
  free(ps4);
  free(Y);
  free(p4);
  free(s4);
  free(payload);
}

/* w8a8-static at scale 0.5: codes by hand, with ties to even and saturation. */
static void test_static_clipping(void** s) {
  (void)s;
  const float x[] = {1.25f, 0.75f, -1.25f, 100.0f, -100.0f, 63.5f, 63.25f, -63.75f, 0.25f, 0.0f};
  const int code[] = {2, 2, -2, 127, -127, 127, 126, -127, 0, 0};
  const int64_t n = sizeof x / sizeof x[0];
  /* W = identity: row r has weight 1 at column r -> code 127, scale 1/127 */
  float* w = calloc((size_t)(n * n), sizeof(float));
  assert_non_null(w);
  for (int64_t r = 0; r < n; r++) w[r * n + r] = 1.0f;
  qmat m = make_qmat(QN_QTYPE_W8A8_STATIC, w, n, n, 0.5f);
  float* Y = run_matmul(NULL, &m.W, x, 1);
  float d = 1.0f / 127.0f;
  for (int64_t r = 0; r < n; r++) {
    assert_int_equal(weight_code(&m.W, r, r), 127);
    assert_true(weight_scale(&m.W, r, 0) == d);
    float want = (float)(code[r] * 127) * (0.5f * d);
    if (Y[r] != want)
      fail_msg("x = %g: y = %.9g, want code %d -> %.9g", (double)x[r], (double)Y[r], code[r],
               (double)want);
  }
  /* saturation: 100 and 63.5 (>= 127 * s) read the same */
  assert_true(Y[3] == Y[5] && Y[4] == -Y[3]);
  free(Y);
  free_qmat(&m);
  free(w);
}

/* Zero weights and zero tokens give exactly zero (scale 1 for an all-zero token). */
static void test_zeros(void** s) {
  (void)s;
  const int64_t rows = 5, cols = 33;
  float w[5 * 33], X[2 * 33];
  for (int64_t i = 0; i < rows * cols; i++) w[i] = (i / cols) % 2 ? 0.0f : (float)grand();
  for (int64_t c = 0; c < cols; c++) {
    X[c] = 0.0f;
    X[cols + c] = (float)grand();
  }
  assert_true(qn_i8_token_scale(X, cols) == 1.0f);
  const float tiny[2] = {1e-40f, -3e-39f}; /* absmax / 127 would be subnormal */
  assert_true(qn_i8_token_scale(tiny, 2) == 1.0f);
  assert_true(qn_i8_valid_scale(NAN) == 1.0f && qn_i8_valid_scale(0.0f) == 1.0f);
  assert_int_equal(qn_i8_code(NAN, 1.0f), 0);
  assert_int_equal(qn_i8_code(INFINITY, 1.0f), 127);
  assert_int_equal(qn_i8_code(-INFINITY, 1.0f), -127);
  for (int k = 0; k < 3; k++) {
    qmat m = make_qmat(k_schemes[k], w, rows, cols, 0.01f);
    float* Y = run_matmul(NULL, &m.W, X, 2);
    for (int64_t r = 0; r < rows; r++) {
      assert_true(Y[r] == 0.0f); /* zero token */
      if (r % 2)
        assert_true(Y[rows + r] == 0.0f); /* zero row */
      else
        assert_true(Y[rows + r] != 0.0f);
    }
    free(Y);
    free_qmat(&m);
  }
}

/* Random data: the integer product tracks the f32 one (relative Frobenius error). */
static void test_close_to_f32(void** s) {
  (void)s;
  const int64_t rows = 96, cols = 520;
  const int n = 6;
  float* w = xmalloc(sizeof(float) * (size_t)(rows * cols));
  float* X = xmalloc(sizeof(float) * (size_t)(n * cols));
  for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.02 * grand());
  float amax = 0.0f;
  for (int64_t i = 0; i < n * cols; i++) {
    X[i] = (float)grand();
    amax = fabsf(X[i]) > amax ? fabsf(X[i]) : amax;
  }
  /* bounds: int8 x int8 ~1% (both sides step/sqrt(12) of a ~3.5 sigma range), int4 groups
   * ~10% (weight step absmax/8); static uses the global max so it is a little coarser */
  const double bound[3] = {0.03, 0.03, 0.15};
  for (int k = 0; k < 3; k++) {
    qmat m = make_qmat(k_schemes[k], w, rows, cols, amax / 127.0f);
    float* Y = run_matmul(NULL, &m.W, X, n);
    double num = 0, den = 0;
    for (int t = 0; t < n; t++)
      for (int64_t r = 0; r < rows; r++) {
        double ref = 0;
        for (int64_t c = 0; c < cols; c++) ref += (double)X[t * cols + c] * w[r * cols + c];
        double e = Y[t * rows + r] - ref;
        num += e * e;
        den += ref * ref;
      }
    double rel = sqrt(num / den);
    printf("  %-13s relative error vs f32: %.4f (bound %.2f)\n",
           qn_qtype_traits_of(k_schemes[k])->name, rel, bound[k]);
    assert_true(rel < bound[k]);
    assert_true(rel > 1e-4); /* it did quantize */
    free(Y);
    free_qmat(&m);
  }
  free(w);
  free(X);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_odd_sizes_bit_exact),
      cmocka_unit_test(test_shared_activations),
      cmocka_unit_test(test_extreme_codes),
      cmocka_unit_test(test_static_clipping),
      cmocka_unit_test(test_zeros),
      cmocka_unit_test(test_close_to_f32),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
