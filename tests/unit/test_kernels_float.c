/* test_kernels_float.c: the x86 weight-only kernels (qn_fx_prep_* + qn_fx_rows_*, float
 * activations) against the reference qn_matmul_ref, on every ISA level the CPU supports
 * (levels it lacks are skipped, the whole test only when it has none):
 *  - exact data: payloads of random codes with power-of-two scales and small-integer
 *    activations, for which every product and partial sum is a float, so any summation order
 *    gives the same bits: the kernel must equal the reference exactly. This pins every lane,
 *    nibble, 3-bit field, group scale and ragged tail (garbage in the unused high nibble / bits
 *    of a row's last byte included);
 *  - quantized Gaussian weights (with outliers) and activations: within the error bound derived
 *    at within_bound(), plus for int4-gN (16-bit activations, kernels/x86/fx_q4.h) the
 *    activations' rounding: at most half their step per column, times sum_c |w_c|; the int4
 *    kernels of the two ISAs give the same bits (same integer sums, same float steps);
 *  - a row range in the middle leaves Y untouched outside it, and splitting the rows over calls
 *    gives the same bytes as one call;
 *  - an fp8-e4m3 NaN code makes the row's outputs NaN, as in the reference;
 *  - int4-gN runs packed (i4x16) on the x86 kernels, and from canonical rows (older .qnz
 *    files) on the reference, with the reference's bits on exact data either way;
 *  - the scheme list (qn_fx_supports) and the prep size.
 * Sizes: rows and cols each take 1, 7, 31, 33, 172 and 4097 (ragged groups of 32/64/128 and
 * ragged 32-column chunks), with 1, 2, 3, 5 and 8 tokens, and 70 on exact data (three tiles of
 * QN_FX_TOKEN_TILE tokens). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/half.h"
#include "kernels/kernels.h"
#include "quant/pack_i8.h"
#include "quant/qtype.h"
#include "quant/quantize_matrix.h"

#ifdef QN_HAVE_X86_KERNELS
#include "kernels/x86/fx_kind.h"
#include "kernels/x86/fx_q4.h"
#include "kernels/x86/x86_kernels.h"

/* ---- data ------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}
static double urand(void) { return (double)(next_u64() >> 11) * 0x1p-53; }
static int irand(int lo, int hi) { return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1)); }
static double grand(void) {
  double u = urand(), v = urand();
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* rows x cols pairs: each size of the issue appears as rows and as cols. */
static const int64_t k_shapes[][2] = {{1, 1},    {1, 4097}, {4097, 7},  {7, 172},
                                      {172, 31}, {31, 33},  {33, 4097}, {172, 172},
                                      {7, 1},    {33, 64},  {5, 255}};
static const int k_tokens[] = {1, 2, 3, 5, 8, 70}; /* 70: three token tiles, one ragged */
#define N_SHAPES (int)(sizeof k_shapes / sizeof k_shapes[0])
#define N_TOKENS (int)(sizeof k_tokens / sizeof k_tokens[0])
#define N_TOKENS_RANDOM (N_TOKENS - 1) /* the random-data test stops at 8 tokens */

/* A matrix in scheme t and the buffers behind it. */
typedef struct qmat {
  qn_qtensor W;
  uint8_t* payload;
  uint8_t* scales;
  uint8_t* zeros;
} qmat;

static size_t scale_size(qn_qtype t) {
  return qn_qtype_traits_of(t)->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
}

static qmat alloc_qmat(qn_qtype t, int64_t rows, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  size_t rb = (size_t)qn_qtype_row_bytes(t, cols);
  size_t ns = (size_t)(qn_qtype_n_groups(t, cols) * rows) * scale_size(t);
  qmat m;
  m.payload = xmalloc(rb * (size_t)rows);
  m.scales = tr->group >= 0 ? xmalloc(ns) : NULL;
  m.zeros = tr->asymmetric ? xmalloc(ns) : NULL;
  m.W = (qn_qtensor){t, rows, cols, m.payload, m.scales, m.zeros, 0.0f, QN_LAYOUT_ROWS};
  return m;
}

static void free_qmat(qmat* m) {
  free(m->payload);
  free(m->scales);
  free(m->zeros);
}

/* Quantizes w (rows x cols) row by row through the scheme's traits. */
static qmat quantize(qn_qtype t, const float* w, int64_t rows, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  qmat m = alloc_qmat(t, rows, cols);
  size_t rb = (size_t)qn_qtype_row_bytes(t, cols);
  size_t sb = (size_t)qn_qtype_n_groups(t, cols) * scale_size(t);
  for (int64_t r = 0; r < rows; r++)
    tr->quantize_row(w + r * cols, cols, NULL, m.payload + (size_t)r * rb,
                     m.scales ? m.scales + (size_t)r * sb : NULL,
                     m.zeros ? m.zeros + (size_t)r * sb : NULL);
  return m;
}

static void put_f16(uint8_t* p, size_t i, float v) {
  uint16_t h = qn_f32_to_f16(v);
  memcpy(p + 2 * i, &h, 2);
}
static void put_f32(uint8_t* p, size_t i, float v) { memcpy(p + 4 * i, &v, 4); }

/* A random power of two in {1/2, 1, 2} with a random sign. */
static float pow2_scale(void) { return (float)ldexp(irand(0, 1) ? 1.0 : -1.0, irand(-1, 1)); }

/* Random payload bytes and power-of-two scales whose weights are small dyadic numbers:
 * with integer activations in [-3, 3] every product and partial sum (|sum| < 2^22, finest
 * step 2^-4) is exact in float. Unused bits of each row's last byte are left random. */
static qmat exact_qmat(qn_qtype t, int64_t rows, int64_t cols) {
  qmat m = alloc_qmat(t, rows, cols);
  size_t rb = (size_t)qn_qtype_row_bytes(t, cols);
  size_t n = rb * (size_t)rows;
  for (size_t i = 0; i < n; i++) m.payload[i] = (uint8_t)next_u64();
  for (size_t i = 0; i < n; i++) {
    switch (t) {
      case QN_QTYPE_F32: put_f32(m.payload, i / 4, (float)irand(-8, 8)), i += 3; break;
      case QN_QTYPE_F16: put_f16(m.payload, i / 2, (float)irand(-8, 8) * 0.25f), i += 1; break;
      case QN_QTYPE_BF16: {
        uint16_t h = qn_f32_to_bf16((float)irand(-16, 16) * 0.5f);
        memcpy(m.payload + i, &h, 2), i += 1;
        break;
      }
      case QN_QTYPE_Q8_C:
      case QN_QTYPE_Q8_G32:
      case QN_QTYPE_Q8_G64:
      case QN_QTYPE_Q8_G128: m.payload[i] = (uint8_t)(int8_t)irand(-127, 127); break;
      case QN_QTYPE_F8_E4M3: /* exponent field 6..9: values in [2^-1, 2^3) */
        m.payload[i] = (uint8_t)(irand(0, 1) << 7 | irand(6, 9) << 3 | irand(0, 7));
        break;
      case QN_QTYPE_F8_E5M2: /* exponent field 14..17 */
        m.payload[i] = (uint8_t)(irand(0, 1) << 7 | irand(14, 17) << 2 | irand(0, 3));
        break;
      default: break; /* int4 / int3: any bytes */
    }
  }
  int64_t ng = qn_qtype_n_groups(t, cols) * rows;
  for (int64_t g = 0; g < ng; g++) {
    if (scale_size(t) == 4)
      put_f32(m.scales, (size_t)g, t == QN_QTYPE_Q8_C ? 0.25f * pow2_scale() : pow2_scale());
    else if (m.scales)
      put_f16(m.scales, (size_t)g, pow2_scale());
    if (m.zeros) put_f16(m.zeros, (size_t)g, (float)irand(-8, 0));
  }
  if (m.zeros) /* int4a scales are >= 0 */
    for (int64_t g = 0; g < ng; g++) put_f16(m.scales, (size_t)g, fabsf(pow2_scale()));
  return m;
}

/* ---- running the kernels --------------------------------------------------------------- */

typedef void (*prep_fn)(const qn_qtensor*, const float*, int, float*);
typedef void (*rows_fn)(const qn_qtensor*, const float*, const float*, int, float*, int64_t,
                        int64_t);

typedef struct isa_kernels {
  qn_isa isa;
  prep_fn prep;
  rows_fn rows;
} isa_kernels;

static const isa_kernels k_isas[] = {
    {QN_ISA_AVX2, qn_fx_prep_avx2, qn_fx_rows_avx2},
    {QN_ISA_AVX512, qn_fx_prep_avx512, qn_fx_rows_avx512},
};
#define N_ISAS (int)(sizeof k_isas / sizeof k_isas[0])

/* Y (n x rows) through one ISA's kernels, rows r0..r1-1, with a prep buffer of exactly
 * qn_fx_prep_floats floats (so ASan sees any overrun). */
static void run_fx(const isa_kernels* k, const qn_qtensor* W, const float* X, int n, float* Y,
                   int64_t r0, int64_t r1) {
  /* int4-gN kernels read the packed layout the .qnz stores (the reference reads the rows) */
  qn_qtensor P = *W;
  void *pp = NULL, *ps = NULL;
  if (qn_qtype_packed_layout(W->type) != QN_LAYOUT_ROWS)
    assert_int_equal(qn_qtensor_pack(W, &P, &pp, &ps), QN_OK);
  assert_true(qn_fx_handles(&P));
  size_t pf = qn_fx_prep_floats(&P, n);
  float* prep = pf ? xmalloc(pf * sizeof(float)) : NULL;
  k->prep(&P, X, n, prep);
  k->rows(&P, X, prep, n, Y, r0, r1);
  free(prep);
  free(pp);
  free(ps);
}

static void run_ref(const qn_qtensor* W, const float* X, int n, float* Y) {
  float* scratch = xmalloc((size_t)W->cols * sizeof(float));
  qn_matmul_ref(NULL, W, X, n, Y, scratch);
  free(scratch);
}

static bool any_isa(void) {
  for (int i = 0; i < N_ISAS; i++)
    if (qn_isa_supported(k_isas[i].isa)) return true;
  return false;
}

/* ---- the error bound ------------------------------------------------------------------- */

/* Both results approximate s = sum_c w_c x_c, w_c being the reference's dequantized weight
 * (u = 2^-24, S = sum_c |w_c x_c|):
 *  - the reference adds fl(w_c x_c) in column order: error <= gamma_cols S in the worst case;
 *  - the kernel adds with FMAs into 16-lane (or 32-lane) accumulators, about cols/16 steps
 *    per lane, then a 16-lane tree and a merge (~6 roundings): <= gamma_{cols/16 + 6} S;
 *  - schemes with one f32 row scale (int8-channel, fp8) scale the code sum once instead of
 *    each weight: fl(q d) = q d (1 + e), |e| <= u, plus the final product: <= 2u S.
 * Treating the rounding errors as independent zero-mean variables (Higham & Mary, SIAM J.
 * Sci. Comput. 2019) replaces gamma_m by lambda sqrt(m) u with high probability; with
 * lambda = 2.4 for each sum: lambda (sqrt(cols) + sqrt(cols/16 + 6)) + 2 <= 3 sqrt(cols) + 8.
 * (That bound already charges every rounding with all of S; on random signed data the
 * partial sums stay far below S, so real errors are a few u S.) A single mis-decoded weight
 * among 4097 columns costs ~S/4097 = 2.4e-4 S, 20x the allowance (1.2e-5 S) there. */
static bool within_bound(double diff, double S, int64_t cols) {
  double k = 3.0 * sqrt((double)cols) + 8.0;
  return diff <= k * 0x1p-24 * S + 1e-30;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void exact_case(qn_qtype t, int64_t rows, int64_t cols) {
  qmat m = exact_qmat(t, rows, cols);
  for (int ti = 0; ti < N_TOKENS; ti++) {
    int n = k_tokens[ti];
    size_t ny = (size_t)n * (size_t)rows;
    float* X = xmalloc((size_t)n * (size_t)cols * sizeof(float));
    for (int64_t i = 0; i < n * cols; i++) X[i] = (float)irand(-3, 3);
    float* Yref = xmalloc(ny * sizeof(float));
    float* Y = xmalloc(ny * sizeof(float));
    run_ref(&m.W, X, n, Yref);
    for (int k = 0; k < N_ISAS; k++) {
      if (!qn_isa_supported(k_isas[k].isa)) continue;
      for (size_t i = 0; i < ny; i++) Y[i] = NAN;
      run_fx(&k_isas[k], &m.W, X, n, Y, 0, rows);
      for (size_t i = 0; i < ny; i++) {
        if (Y[i] != Yref[i])
          fail_msg("%s %s rows %lld cols %lld n %d: Y[%zu] = %.9g, reference %.9g",
                   qn_qtype_traits_of(t)->name, qn_isa_name(k_isas[k].isa), (long long)rows,
                   (long long)cols, n, i, (double)Y[i], (double)Yref[i]);
      }
    }
    free(X);
    free(Yref);
    free(Y);
  }
  free_qmat(&m);
}

static void test_exact_data(void** state) {
  (void)state;
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    if (!qn_fx_supports((qn_qtype)t)) continue;
    for (int s = 0; s < N_SHAPES; s++) exact_case((qn_qtype)t, k_shapes[s][0], k_shapes[s][1]);
  }
}

static void random_case(qn_qtype t, int64_t rows, int64_t cols) {
  float* w = xmalloc((size_t)(rows * cols) * sizeof(float));
  for (int64_t i = 0; i < rows * cols; i++)
    w[i] = (float)(grand() * (urand() < 0.01 ? 8.0 : 1.0) * 0.05);
  qmat m = quantize(t, w, rows, cols);
  float* wq = xmalloc((size_t)(rows * cols) * sizeof(float));
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  for (int64_t r = 0; r < rows; r++) tr->dequant_row(&m.W, r, wq + r * cols);
  const bool x16 = qn_fx_kind_of(t) == FX_Q4; /* activations rounded to 16 bits */
  for (int ti = 0; ti < N_TOKENS_RANDOM; ti++) {
    int n = k_tokens[ti];
    size_t ny = (size_t)n * (size_t)rows;
    float* X = xmalloc((size_t)n * (size_t)cols * sizeof(float));
    for (int64_t i = 0; i < n * cols; i++) X[i] = (float)(grand() * (urand() < 0.02 ? 20 : 1));
    float* Yref = xmalloc(ny * sizeof(float));
    float* Y = xmalloc(ny * sizeof(float));
    float* Yprev = xmalloc(ny * sizeof(float)); /* int4: the previous ISA's result */
    bool have_prev = false;
    run_ref(&m.W, X, n, Yref);
    for (int k = 0; k < N_ISAS; k++) {
      if (!qn_isa_supported(k_isas[k].isa)) continue;
      run_fx(&k_isas[k], &m.W, X, n, Y, 0, rows);
      if (x16 && have_prev && memcmp(Y, Yprev, ny * sizeof(float)) != 0)
        fail_msg("%s rows %lld cols %lld n %d: AVX2 and AVX-512 results differ", tr->name,
                 (long long)rows, (long long)cols, n);
      memcpy(Yprev, Y, ny * sizeof(float));
      have_prev = true;
      for (int tok = 0; tok < n; tok++) {
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(X[tok * cols + c]));
        const double half_step = x16 ? ldexp(1.0, q4i_step_exponent(amax) - 1) : 0.0;
        for (int64_t r = 0; r < rows; r++) {
          double S = 0.0, W1 = 0.0;
          for (int64_t c = 0; c < cols; c++) {
            S += fabs((double)wq[r * cols + c] * (double)X[tok * cols + c]);
            W1 += fabs((double)wq[r * cols + c]);
          }
          size_t i = (size_t)tok * (size_t)rows + (size_t)r;
          double diff = fabs((double)Y[i] - (double)Yref[i]) - W1 * half_step;
          if (!within_bound(diff, S, cols))
            fail_msg(
                "%s %s rows %lld cols %lld n %d: Y[%d][%lld] = %.9g, reference %.9g, "
                "|diff| = %g > bound for S = %g",
                tr->name, qn_isa_name(k_isas[k].isa), (long long)rows, (long long)cols, n, tok,
                (long long)r, (double)Y[i], (double)Yref[i], diff, S);
        }
      }
    }
    free(X);
    free(Yref);
    free(Y);
    free(Yprev);
  }
  free_qmat(&m);
  free(w);
  free(wq);
}

static void test_random_within_bound(void** state) {
  (void)state;
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    if (!qn_fx_supports((qn_qtype)t)) continue;
    for (int s = 0; s < N_SHAPES; s++) random_case((qn_qtype)t, k_shapes[s][0], k_shapes[s][1]);
  }
}

/* Rows 5..28 of 37 (blocks of 4 rows and single leftover rows) leave Y's other rows as they
 * were; two calls that split the rows give the same bytes as one call. */
static void test_row_range(void** state) {
  (void)state;
  const int64_t rows = 37, cols = 100, r0 = 5, r1 = 29;
  const int n = 3;
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    if (!qn_fx_supports((qn_qtype)t)) continue;
    qmat m = exact_qmat((qn_qtype)t, rows, cols);
    float X[3 * 100];
    for (int i = 0; i < n * cols; i++) X[i] = (float)grand();
    float Y[3 * 37], Yall[3 * 37], Ysplit[3 * 37];
    for (int k = 0; k < N_ISAS; k++) {
      if (!qn_isa_supported(k_isas[k].isa)) continue;
      for (int i = 0; i < n * rows; i++) Y[i] = -12345.0f;
      run_fx(&k_isas[k], &m.W, X, n, Y, r0, r1);
      run_fx(&k_isas[k], &m.W, X, n, Yall, 0, rows);
      run_fx(&k_isas[k], &m.W, X, n, Ysplit, 0, 13);
      run_fx(&k_isas[k], &m.W, X, n, Ysplit, 13, 14);
      run_fx(&k_isas[k], &m.W, X, n, Ysplit, 14, rows);
      for (int tok = 0; tok < n; tok++)
        for (int64_t r = 0; r < rows; r++) {
          size_t i = (size_t)tok * (size_t)rows + (size_t)r;
          if (r >= r0 && r < r1)
            assert_memory_equal(&Y[i], &Yall[i], sizeof(float));
          else
            assert_true(Y[i] == -12345.0f);
        }
      assert_memory_equal(Ysplit, Yall, sizeof Yall);
    }
    free_qmat(&m);
  }
}

/* fp8-e4m3 has no infinities; S.1111.111 is NaN. A row holding one gives NaN outputs in the
 * reference, and must in the kernels (whose fp16 trick would read the code as 480). */
static void test_e4m3_nan_code(void** state) {
  (void)state;
  const int64_t rows = 6, cols = 77;
  qmat m = exact_qmat(QN_QTYPE_F8_E4M3, rows, cols);
  m.payload[1 * cols + 3] = 0x7f;
  m.payload[4 * cols + 76] = 0xff; /* in the ragged chunk */
  float X[2 * 77], Yref[2 * 6], Y[2 * 6];
  for (int i = 0; i < 2 * cols; i++) X[i] = (float)irand(-3, 3);
  run_ref(&m.W, X, 2, Yref);
  for (int k = 0; k < N_ISAS; k++) {
    if (!qn_isa_supported(k_isas[k].isa)) continue;
    run_fx(&k_isas[k], &m.W, X, 2, Y, 0, rows);
    for (int i = 0; i < 2 * rows; i++) {
      assert_true(isnan(Yref[i]) == (i % rows == 1 || i % rows == 4));
      if (isnan(Yref[i]))
        assert_true(isnan(Y[i]));
      else
        assert_true(Y[i] == Yref[i]);
    }
  }
  free_qmat(&m);
}

/* An int4-gN weight in canonical rows (a .qnz written before int4 was packed) still runs, on
 * the reference kernel, with the bits the reference gives; packed, the x86 kernel runs and
 * gives the same numbers on exact data. */
static void test_int4_rows_layout_runs(void** state) {
  (void)state;
  const int64_t rows = 37, cols = 200;
  const int n = 3;
  qmat m = exact_qmat(QN_QTYPE_Q4_G64, rows, cols);
  float X[3 * 200], Yref[3 * 37], Yrows[3 * 37], Ypacked[3 * 37];
  for (int i = 0; i < n * cols; i++) X[i] = (float)irand(-3, 3);
  run_ref(&m.W, X, n, Yref);
  qn_qtensor P;
  void *pp = NULL, *ps = NULL;
  assert_int_equal(qn_qtensor_pack(&m.W, &P, &pp, &ps), QN_OK);
  assert_false(qn_fx_handles(&m.W));
  assert_true(qn_fx_handles(&P));
  float* scratch = xmalloc(qn_matmul_scratch_floats(&m.W, n, 1) * sizeof(float));
  qn_matmul(NULL, &m.W, X, n, Yrows, scratch);
  qn_matmul(NULL, &P, X, n, Ypacked, scratch);
  assert_memory_equal(Yrows, Yref, sizeof Yref);
  assert_memory_equal(Ypacked, Yref, sizeof Yref);
  free(scratch);
  free(pp);
  free(ps);
  free_qmat(&m);
}

static void test_supports_and_prep(void** state) {
  (void)state;
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)t);
    /* every weight-only scheme has a kernel; int8-activation schemes never do */
    assert_int_equal(qn_fx_supports((qn_qtype)t), tr->act == QN_ACT_FLOAT);
    qn_qtensor W = {(qn_qtype)t, 5, 33, NULL, NULL, NULL, 0.0f, QN_LAYOUT_ROWS};
    /* int4a: 33 columns de-interleaved in 2 chunks of 32 floats; int4: a 64-byte header, 64
     * low and 64 high activation bytes, the group offsets padded to 64 bytes (fx_q4.h) */
    size_t want = tr->payload_bits != 4 || tr->act != QN_ACT_FLOAT ? 0
                  : tr->asymmetric                                 ? 64 * 3
                                                                   : (64 + 128 + 64) / 4 * 3;
    assert_int_equal(qn_fx_prep_floats(&W, 3), want);
    /* the layout each kernel reads: int4-gN packed, the others canonical rows */
    const bool packed = qn_qtype_packed_layout((qn_qtype)t) != QN_LAYOUT_ROWS;
    assert_int_equal(qn_fx_handles(&W), qn_fx_supports((qn_qtype)t) && !packed);
    W.layout = QN_LAYOUT_I4X16;
    assert_int_equal(qn_fx_handles(&W), qn_fx_supports((qn_qtype)t) && packed);
  }
  assert_false(qn_fx_supports(QN_QTYPE_COUNT));
}

int main(void) {
  if (!any_isa()) qt_skip("no AVX2 or AVX-512 on this CPU");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_supports_and_prep),   cmocka_unit_test(test_exact_data),
      cmocka_unit_test(test_random_within_bound), cmocka_unit_test(test_row_range),
      cmocka_unit_test(test_e4m3_nan_code),       cmocka_unit_test(test_int4_rows_layout_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

#else
int main(void) {
  qt_skip("built without the x86 kernels");
  return 0;
}
#endif
