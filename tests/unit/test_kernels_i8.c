/* test_kernels_i8.c: the x86 kernels of the schemes with int8 activations (w8a8-static,
 * w8a8-dynamic, w4a8) against the integer reference, bit for bit, on every ISA level the CPU
 * supports (levels it lacks are skipped, the whole test only when it has none):
 *  - activation quantization (qn_i8_act_quantize_*) gives the same scales, codes, zero
 *    padding and 32-column block sums as qn_i8_act_quantize_ref, over buffers pre-filled with
 *    garbage, in one call or split over two token ranges; inputs include NaN, +-inf, huge,
 *    subnormal and all-zero tokens, and exact ties (x / s = k + 0.5) at a static scale;
 *  - qn_i8_rows_* over the packed weights (qn_pack_i8) equals qn_matmul_i8_ref over the
 *    canonical ones (memcmp of Y): weights quantized from random floats by the scheme's own
 *    quantize_row, with rows forced to the extreme codes (+-127; -8 and 7), rows and cols
 *    each taking 1, 7, 31, 33, 172 and 4097 (ragged quads and w4a8 groups), 1, 2, 3, 5, 8
 *    and 17 tokens;
 *  - the int32 wrap-around of the biased VNNI sums: QN_I8_MAX_COLS columns of +127 codes;
 *  - a row-block range writes exactly rows 16 * rb0 .. min(16 * rb1, rows) - 1 of every token
 *    and nothing else, and splitting the blocks over calls gives the one-call bytes. */
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

#ifdef QN_HAVE_X86_KERNELS
#include "kernels/x86/x86_kernels.h"

/* ---- data ------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static uint64_t next_u64(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}
static double urand(void) { return (double)(next_u64() >> 11) * 0x1p-53; }
static double grand(void) {
  double u = urand(), v = urand();
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* 64-byte aligned buffer of at least n bytes, filled with garbage. */
static void* xmalloc_aligned_garbage(size_t n) {
  size_t sz = (n + 63) / 64 * 64;
  void* p = aligned_alloc(64, sz ? sz : 64);
  assert_non_null(p);
  memset(p, 0xA5, sz ? sz : 64);
  return p;
}

static const qn_qtype k_schemes[3] = {QN_QTYPE_W8A8_STATIC, QN_QTYPE_W8A8_DYNAMIC, QN_QTYPE_W4A8};
static const int64_t k_sizes[] = {1, 7, 31, 33, 172, 4097};
static const int k_tokens[] = {1, 2, 3, 5, 8, 17};
#define N_SIZES (int)(sizeof k_sizes / sizeof k_sizes[0])
#define N_TOKENS (int)(sizeof k_tokens / sizeof k_tokens[0])

/* The SIMD levels and their entry points. */
typedef struct isa_fns {
  qn_isa isa;
  void (*act)(qn_i8_act* a, const float* X, int64_t t0, int64_t t1);
  void (*rows)(const qn_qtensor* W, const qn_i8_act* a, float* Y, int64_t rb0, int64_t rb1);
} isa_fns;

static const isa_fns k_isas[2] = {
    {QN_ISA_AVX2, qn_i8_act_quantize_avx2, qn_i8_rows_avx2},
    {QN_ISA_AVX512, qn_i8_act_quantize_avx512, qn_i8_rows_avx512},
};

/* A matrix of scheme t in the canonical layout (W) and packed (P), with its buffers. */
typedef struct qmat {
  qn_qtensor W, P;
  uint8_t *payload, *scales, *ppayload, *pscales;
} qmat;

static bool is_w4(qn_qtype t) { return qn_qtype_traits_of(t)->payload_bits == 4; }

/* Sets canonical code c of row r (of row_bytes rb) to q. */
static void set_code(qn_qtype t, uint8_t* payload, uint64_t rb, int64_t r, int64_t c, int q) {
  uint8_t* p = payload + (uint64_t)r * rb;
  if (!is_w4(t)) {
    p[c] = (uint8_t)(int8_t)q;
  } else {
    int sh = (int)(c & 1) * 4;
    p[c >> 1] = (uint8_t)((p[c >> 1] & ~(15 << sh)) | ((q + 8) << sh));
  }
}

/* Quantizes Gaussian weights (with an outlier per row) with the scheme's quantize_row; rows
 * 1 and 2 (when present) then get extreme codes: all maximal, and alternating min/max. */
static qmat make_qmat(qn_qtype t, int64_t rows, int64_t cols, float act_scale) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  const uint64_t rb = qn_qtype_row_bytes(t, cols);
  const int64_t ng = qn_qtype_n_groups(t, cols);
  const size_t ss = tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  qmat m;
  m.payload = xmalloc(rb * (size_t)rows);
  m.scales = xmalloc(ss * (size_t)(ng * rows));
  float* w = xmalloc(sizeof(float) * (size_t)cols);
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < cols; c++) w[c] = (float)(grand() * 0.05);
    w[(int64_t)(urand() * (double)cols)] = 0.4f;
    tr->quantize_row(w, cols, NULL, m.payload + (uint64_t)r * rb, m.scales + ss * (size_t)(r * ng),
                     NULL);
  }
  free(w);
  const int qmax = is_w4(t) ? 7 : 127, qmin = is_w4(t) ? -8 : -127;
  for (int64_t c = 0; c < cols; c++) {
    if (rows > 1) set_code(t, m.payload, rb, 1, c, qmax);
    if (rows > 2) set_code(t, m.payload, rb, 2, c, c % 2 ? qmax : qmin);
  }
  m.W = (qn_qtensor){t, rows, cols, m.payload, m.scales, NULL, act_scale, QN_LAYOUT_ROWS};
  qn_layout l = qn_qtype_packed_layout(t);
  /* exact sizes, so ASan sees any read beyond the packed buffers */
  m.ppayload = xmalloc(qn_packed_payload_bytes(t, rows, cols));
  m.pscales = xmalloc(qn_packed_scale_bytes(t, rows, cols));
  qn_pack_i8(t, rows, cols, m.payload, m.scales, m.ppayload, m.pscales);
  m.P = m.W;
  m.P.data = m.ppayload;
  m.P.scales = m.pscales;
  m.P.layout = l;
  return m;
}

static void free_qmat(qmat* m) {
  free(m->payload);
  free(m->scales);
  free(m->ppayload);
  free(m->pscales);
}

/* The static activation scale: its reciprocal is inexact, so x * (1 / s) differs from x / s
 * on some of the near-ties below (and rounds them differently). */
static const float k_static_scale = 0.1f;

/* n tokens of cols values: Gaussian with outliers, and special tokens by index: token 1
 * holds NaN, +-inf and huge values, token 2 is all zeros, token 3 subnormal, tokens 4 and 5
 * ties (k + 0.5 steps, ties to even) and near-ties of the static scale, and values beyond
 * 127 steps. */
static float* make_tokens(int n, int64_t cols) {
  float* X = xmalloc(sizeof(float) * (size_t)n * (size_t)cols);
  for (int t = 0; t < n; t++) {
    float* x = X + (size_t)t * (size_t)cols;
    for (int64_t c = 0; c < cols; c++) {
      float v = (float)(grand() * (1 + t % 3));
      if (t == 1 && c % 5 == 0) v = (c % 3 == 0) ? NAN : (c % 3 == 1) ? 1e30f : -INFINITY;
      if (t == 2) v = 0.0f;
      if (t == 3) v = (float)(c % 7) * 1e-41f;
      if (t == 4 || t == 5) { /* x / s near or at k + 0.5 for the static scale s */
        v = ((float)(c % 301) - 150.5f) * k_static_scale;
        if (t == 5) v = nextafterf(v, c % 2 ? INFINITY : -INFINITY);
      }
      if (t == 0 && c == cols / 2) v = 40.0f; /* an outlier */
      x[c] = v;
    }
  }
  return X;
}

/* Static scale of the static scheme, else 0. */
static float act_scale_of(qn_qtype t) { return t == QN_QTYPE_W8A8_STATIC ? k_static_scale : 0.0f; }

/* Asserts a == b byte for byte, reporting the first differing float. */
static void assert_same_floats(const float* a, const float* b, size_t n, const char* what) {
  if (memcmp(a, b, n * sizeof(float)) == 0) return;
  for (size_t i = 0; i < n; i++)
    if (memcmp(a + i, b + i, sizeof(float)) != 0)
      fail_msg("%s: first difference at %zu: %.9g vs %.9g (reference)", what, i, (double)a[i],
               (double)b[i]);
}

/* The activation buffers of n tokens of cols features, quantized by quantize over [0, n)
 * (split in two calls when split). */
typedef struct acts {
  qn_i8_act a;
  void* buf;
} acts;

static acts quantize_acts(void (*quantize)(qn_i8_act*, const float*, int64_t, int64_t),
                          const float* X, int n, int64_t cols, float static_scale, bool split) {
  acts r;
  r.buf = xmalloc_aligned_garbage(qn_i8_act_bytes(n, cols));
  qn_i8_act_init(&r.a, r.buf, n, cols, static_scale);
  if (split) {
    quantize(&r.a, X, 0, n / 2);
    quantize(&r.a, X, n / 2, n);
  } else {
    quantize(&r.a, X, 0, n);
  }
  return r;
}

static void assert_same_acts(const qn_i8_act* a, const qn_i8_act* ref, const char* isa) {
  const size_t n = (size_t)ref->n, st = (size_t)ref->stride;
  assert_int_equal(a->stride, ref->stride);
  if (memcmp(a->scale, ref->scale, n * sizeof(float)) != 0) fail_msg("%s: act scales differ", isa);
  for (size_t t = 0; t < n; t++)
    for (size_t c = 0; c < st; c++)
      if (a->codes[t * st + c] != ref->codes[t * st + c])
        fail_msg("%s: code of token %zu col %zu (cols %lld): %d vs %d", isa, t, c,
                 (long long)ref->cols, a->codes[t * st + c], ref->codes[t * st + c]);
  if (memcmp(a->bsum, ref->bsum, n * (st / 32) * sizeof(int32_t)) != 0)
    fail_msg("%s: block sums differ", isa);
}

/* Y of the reference over the canonical matrix. */
static float* reference_y(const qn_qtensor* W, const float* X, int n) {
  float* Y = xmalloc(sizeof(float) * (size_t)n * (size_t)W->rows);
  float* scratch = xmalloc(sizeof(float) * qn_matmul_i8_scratch_floats(W, n, 1));
  qn_matmul_i8_ref(NULL, W, X, n, Y, scratch);
  free(scratch);
  return Y;
}

static bool any_isa(void) {
  return qn_isa_supported(QN_ISA_AVX2) || qn_isa_supported(QN_ISA_AVX512);
}

/* ---- tests ----------------------------------------------------------------------------- */

/* Activation quantization alone, all sizes, static and dynamic, one call and split. */
static void test_act_quantize(void** s) {
  (void)s;
  for (int ci = 0; ci < N_SIZES; ci++)
    for (int ni = 0; ni < N_TOKENS; ni++)
      for (int st = 0; st < 2; st++) {
        const int64_t cols = k_sizes[ci];
        const int n = k_tokens[ni];
        const float ss = st ? k_static_scale : 0.0f;
        float* X = make_tokens(n, cols);
        acts ref = quantize_acts(qn_i8_act_quantize_ref, X, n, cols, ss, false);
        for (int i = 0; i < 2; i++) {
          if (!qn_isa_supported(k_isas[i].isa)) continue;
          for (int split = 0; split < 2; split++) {
            acts got = quantize_acts(k_isas[i].act, X, n, cols, ss, split);
            assert_same_acts(&got.a, &ref.a, qn_isa_name(k_isas[i].isa));
            free(got.buf);
          }
        }
        free(ref.buf);
        free(X);
      }
}

/* One scheme, shape and token count on every supported level: acts and Y bit for bit. */
static void check_product(qn_qtype t, int64_t rows, int64_t cols, int n) {
  qmat m = make_qmat(t, rows, cols, act_scale_of(t));
  float* X = make_tokens(n, cols);
  float* Yref = reference_y(&m.W, X, n);
  const float ss = act_scale_of(t) > 0.0f ? qn_i8_valid_scale(act_scale_of(t)) : 0.0f;
  acts aref = quantize_acts(qn_i8_act_quantize_ref, X, n, cols, ss, false);
  float* Y = xmalloc(sizeof(float) * (size_t)n * (size_t)rows);
  char what[160];
  for (int i = 0; i < 2; i++) {
    if (!qn_isa_supported(k_isas[i].isa)) continue;
    acts a = quantize_acts(k_isas[i].act, X, n, cols, ss, false);
    assert_same_acts(&a.a, &aref.a, qn_isa_name(k_isas[i].isa));
    memset(Y, 0xA5, sizeof(float) * (size_t)n * (size_t)rows);
    k_isas[i].rows(&m.P, &a.a, Y, 0, (rows + 15) / 16);
    snprintf(what, sizeof what, "%s %s rows %lld cols %lld n %d", qn_isa_name(k_isas[i].isa),
             qn_qtype_traits_of(t)->name, (long long)rows, (long long)cols, n);
    assert_same_floats(Y, Yref, (size_t)n * (size_t)rows, what);
    free(a.buf);
  }
  free(Y);
  free(aref.buf);
  free(Yref);
  free(X);
  free_qmat(&m);
}

/* Every size as rows against the small and mid sizes as cols, and the reverse; every token
 * count; every scheme. (4097 x 4097 is left out: the reference alone would take seconds.) */
static void test_products_bit_exact(void** s) {
  (void)s;
  for (int si = 0; si < 3; si++)
    for (int ri = 0; ri < N_SIZES; ri++)
      for (int ci = 0; ci < N_SIZES; ci++) {
        const int64_t rows = k_sizes[ri], cols = k_sizes[ci];
        if (rows == 4097 && cols > 33) continue;
        if (cols == 4097 && rows > 33) continue;
        for (int ni = 0; ni < N_TOKENS; ni++)
          check_product(k_schemes[si], rows, cols, k_tokens[ni]);
      }
}

/* Longest rows the schemes accept, all codes at the maximum: the true sums reach
 * 127 * 127 * QN_I8_MAX_COLS <= INT32_MAX while the biased VNNI sums wrap around. */
static void test_int32_extremes(void** s) {
  (void)s;
  const int64_t rows = 17, cols = QN_I8_MAX_COLS;
  for (int si = 0; si < 3; si++) {
    qn_qtype t = k_schemes[si];
    qmat m = make_qmat(t, rows, cols, act_scale_of(t));
    const uint64_t rb = qn_qtype_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        set_code(t, m.payload, rb, r, c, r % 2 ? (is_w4(t) ? -8 : -127) : (is_w4(t) ? 7 : 127));
    qn_pack_i8(t, rows, cols, m.payload, m.scales, m.ppayload, m.pscales);
    const int n = 3;
    float* X = xmalloc(sizeof(float) * (size_t)n * (size_t)cols);
    for (int64_t i = 0; i < n * cols; i++) X[i] = i < cols ? 1e3f : i < 2 * cols ? -2.0f : 0.7f;
    float* Yref = reference_y(&m.W, X, n);
    const float ss = act_scale_of(t) > 0.0f ? qn_i8_valid_scale(act_scale_of(t)) : 0.0f;
    float* Y = xmalloc(sizeof(float) * (size_t)n * (size_t)rows);
    for (int i = 0; i < 2; i++) {
      if (!qn_isa_supported(k_isas[i].isa)) continue;
      acts a = quantize_acts(k_isas[i].act, X, n, cols, ss, false);
      k_isas[i].rows(&m.P, &a.a, Y, 0, (rows + 15) / 16);
      assert_same_floats(Y, Yref, (size_t)n * (size_t)rows, qn_isa_name(k_isas[i].isa));
      free(a.buf);
    }
    free(Y);
    free(Yref);
    free(X);
    free_qmat(&m);
  }
}

/* Rows 16 * rb0 .. min(16 * rb1, rows) - 1 of every token are written, nothing else; calls
 * over consecutive block ranges give the one-call bytes. */
static void test_row_range(void** s) {
  (void)s;
  const int64_t rows = 172, cols = 100, nrb = (rows + 15) / 16; /* 11 blocks, last partial */
  const int n = 5;
  const size_t ny = (size_t)n * (size_t)rows, slack = 64;
  const int64_t ranges[][2] = {{3, 7}, {9, 11}, {10, 11}, {0, 1}, {4, 4}};
  for (int si = 0; si < 3; si++) {
    qn_qtype t = k_schemes[si];
    qmat m = make_qmat(t, rows, cols, act_scale_of(t));
    float* X = make_tokens(n, cols);
    float* Yref = reference_y(&m.W, X, n);
    const float ss = act_scale_of(t) > 0.0f ? qn_i8_valid_scale(act_scale_of(t)) : 0.0f;
    float* Y = xmalloc(sizeof(float) * (ny + slack));
    float sentinel;
    memset(&sentinel, 0xA5, sizeof sentinel);
    for (int i = 0; i < 2; i++) {
      if (!qn_isa_supported(k_isas[i].isa)) continue;
      acts a = quantize_acts(k_isas[i].act, X, n, cols, ss, false);
      for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
        const int64_t rb0 = ranges[ri][0], rb1 = ranges[ri][1];
        memset(Y, 0xA5, sizeof(float) * (ny + slack));
        k_isas[i].rows(&m.P, &a.a, Y, rb0, rb1);
        const int64_t r1 = 16 * rb1 < rows ? 16 * rb1 : rows;
        for (int tk = 0; tk < n; tk++)
          for (int64_t r = 0; r < rows; r++) {
            size_t at = (size_t)tk * (size_t)rows + (size_t)r;
            if (r >= 16 * rb0 && r < r1)
              assert_memory_equal(Y + at, Yref + at, sizeof(float));
            else
              assert_memory_equal(Y + at, &sentinel, sizeof(float));
          }
        for (size_t k = 0; k < slack; k++)
          assert_memory_equal(Y + ny + k, &sentinel, sizeof(float));
      }
      /* three calls covering all blocks */
      memset(Y, 0xA5, sizeof(float) * ny);
      k_isas[i].rows(&m.P, &a.a, Y, 0, 4);
      k_isas[i].rows(&m.P, &a.a, Y, 4, 5);
      k_isas[i].rows(&m.P, &a.a, Y, 5, nrb);
      assert_same_floats(Y, Yref, ny, "split calls");
      free(a.buf);
    }
    free(Y);
    free(Yref);
    free(X);
    free_qmat(&m);
  }
}

int main(void) {
  if (!any_isa()) qt_skip("no AVX2 or AVX-512 VNNI on this CPU");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_act_quantize),
      cmocka_unit_test(test_products_bit_exact),
      cmocka_unit_test(test_int32_extremes),
      cmocka_unit_test(test_row_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

#else /* no x86 kernels in this build */

int main(void) {
  qt_skip("x86 kernels not built");
  return 0;
}

#endif
