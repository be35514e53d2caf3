/* test_observer.c: the streaming activation observer and its threshold searches.
 *  - min/max/absmax/per-channel max and count equal a direct computation on random data;
 *  - streaming: the same data fed at once, in 100 uneven chunks (with range growth, so bins
 *    were merged on the way) and through two merged observers gives identical statistics,
 *    an identical histogram and identical thresholds (exactly: the range is always a power of
 *    two and merging bins 2k, 2k+1 -> k is exact), and the histogram equals one the test bins
 *    itself in double precision with the final range;
 *  - percentile against known distributions (uniform, Gaussian) and the exact sorted-sample
 *    percentile; clipped fraction exact at 0 and max and the inverse of the percentile;
 *  - entropy: equals a plain transcription of TensorRT's loop (explicit P and Q arrays), lies
 *    well inside the max on a Laplace sample and above its 99th percentile;
 *  - mse: the expected-error model matches the measured error of quantizing the sample, the
 *    chosen T lies between the 99th percentile and the max of a Gaussian and beats both, and
 *    matches the published 8-bit optima for Gaussian and Laplace data (ACIQ);
 *  - a few huge outliers: every method but minmax clips far below the max;
 *  - empty observer, bad percentile, non-finite values, method names. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "calib/histogram.h"
#include "calib/observer.h"

/* ---- data ------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* (0, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return ((double)(g_rng >> 11) + 0.5) * 0x1p-53;
}
static double grand(void) { return sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()); }
static double laplace(void) { return (urand() < 0.5 ? -1.0 : 1.0) * -log(urand()); }

enum { DIST_UNIFORM, DIST_GAUSS, DIST_LAPLACE };

static float* sample(int64_t n, int dist) {
  float* x = malloc((size_t)n * sizeof *x);
  assert_non_null(x);
  for (int64_t i = 0; i < n; i++) {
    double v = dist == DIST_UNIFORM ? 2.0 * urand() - 1.0
               : dist == DIST_GAUSS ? grand()
                                    : laplace();
    x[i] = (float)v;
  }
  return x;
}

static qn_observer* observe(const float* x, int64_t n_rows, int width) {
  qn_observer* o = NULL;
  assert_int_equal(qn_observer_new(width, &o), QN_OK);
  qn_observer_update(o, x, n_rows);
  return o;
}

static float threshold(const qn_observer* o, qn_calib_method m, double p) {
  float T = -1;
  assert_int_equal(qn_observer_threshold(o, m, p, &T), QN_OK);
  assert_true(T > 0);
  return T;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Exact p-th percentile of |x| from the sorted sample (linear between order statistics). */
static double exact_abs_percentile(const float* x, int64_t n, double p) {
  double* a = malloc((size_t)n * sizeof *a);
  assert_non_null(a);
  for (int64_t i = 0; i < n; i++) a[i] = fabs(x[i]);
  qsort(a, (size_t)n, sizeof *a, cmp_double);
  double pos = p / 100.0 * (double)(n - 1);
  int64_t k = (int64_t)pos;
  double v = k + 1 < n ? a[k] + (pos - k) * (a[k + 1] - a[k]) : a[n - 1];
  free(a);
  return v;
}

static qn_abs_hist view(const qn_observer* o) {
  double range = 0;
  const int64_t* c = qn_observer_histogram(o, &range);
  int64_t zeros = 0; /* not exposed: the views below are only used on data without zeros */
  qn_abs_hist h = {c, QN_OBSERVER_BINS, range, qn_observer_absmax(o), qn_observer_count(o), zeros};
  return h;
}

/* ---- ranges ------------------------------------------------------------------------------- */

static void test_minmax_exact(void** state) {
  (void)state;
  const int widths[] = {1, 7, 16, 37, 384};
  for (size_t t = 0; t < sizeof widths / sizeof *widths; t++) {
    int w = widths[t];
    int64_t rows = 3001;
    float* x = sample(rows * w, DIST_GAUSS);
    for (int64_t i = 0; i < rows * w; i++) x[i] *= (float)(1 + i % w); /* channel scales */
    x[5 % (rows * w)] = 0.0f;
    qn_observer* o = observe(x, rows, w);
    float mn = INFINITY, mx = -INFINITY, am = 0;
    float* ch = calloc((size_t)w, sizeof *ch);
    assert_non_null(ch);
    for (int64_t i = 0; i < rows * w; i++) {
      mn = fminf(mn, x[i]);
      mx = fmaxf(mx, x[i]);
      am = fmaxf(am, fabsf(x[i]));
      ch[i % w] = fmaxf(ch[i % w], fabsf(x[i]));
    }
    assert_int_equal(qn_observer_width(o), w);
    assert_int_equal(qn_observer_count(o), rows * w);
    assert_int_equal(qn_observer_nonfinite(o), 0);
    assert_true(qn_observer_min(o) == mn);
    assert_true(qn_observer_max(o) == mx);
    assert_true(qn_observer_absmax(o) == am);
    assert_memory_equal(qn_observer_channel_absmax(o), ch, (size_t)w * sizeof *ch);
    assert_true(threshold(o, QN_CALIB_MINMAX, 0) == am);
    assert_true(qn_observer_clipped_fraction(o, am) == 0.0);
    assert_true(qn_observer_clipped_fraction(o, 0.0f) == 1.0 - 1.0 / (double)(rows * w));
    free(ch);
    free(x);
    qn_observer_free(o);
  }
}

/* ---- streaming == batch ---------------------------------------------------------------- */

static void assert_same_observer(const qn_observer* a, const qn_observer* b) {
  int w = qn_observer_width(a);
  assert_int_equal(qn_observer_count(a), qn_observer_count(b));
  assert_true(qn_observer_min(a) == qn_observer_min(b));
  assert_true(qn_observer_max(a) == qn_observer_max(b));
  assert_true(qn_observer_absmax(a) == qn_observer_absmax(b));
  assert_memory_equal(qn_observer_channel_absmax(a), qn_observer_channel_absmax(b),
                      (size_t)w * sizeof(float));
  double ra, rb;
  const int64_t* ha = qn_observer_histogram(a, &ra);
  const int64_t* hb = qn_observer_histogram(b, &rb);
  assert_true(ra == rb);
  assert_memory_equal(ha, hb, QN_OBSERVER_BINS * sizeof *ha);
  for (int m = 0; m < QN_CALIB_METHOD_COUNT; m++) {
    float ta = threshold(a, m, 99.9), tb = threshold(b, m, 99.9);
    assert_true(ta == tb);
    assert_true(qn_observer_clipped_fraction(a, ta) == qn_observer_clipped_fraction(b, tb));
  }
}

static void test_streaming_equals_batch(void** state) {
  (void)state;
  int w = 48;
  int64_t rows = 20000;
  float* x = sample(rows * w, DIST_LAPLACE);
  /* Magnitudes grow over the stream (x 2^12 from first to last row), so the range must grow
   * many times while streaming; a few exact zeros too. */
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < w; j++) {
      float* v = &x[r * w + j];
      *v = (r * 7 + j) % 1009 == 0 ? 0.0f : *v * (float)exp2(12.0 * r / rows) * (1 + j % 5);
    }
  qn_observer* all = observe(x, rows, w);

  qn_observer* chunked = NULL;
  assert_int_equal(qn_observer_new(w, &chunked), QN_OK);
  int64_t r = 0;
  double first_range = 0;
  for (int c = 0; c < 100; c++) {
    int64_t n = c == 99 ? rows - r : (c % 3 == 0 ? 1 : (int64_t)(urand() * 2 * rows / 100));
    if (r + n > rows) n = rows - r;
    qn_observer_update(chunked, x + r * w, n);
    if (c == 0) qn_observer_histogram(chunked, &first_range);
    r += n;
  }
  assert_int_equal(r, rows);
  double final_range;
  qn_observer_histogram(chunked, &final_range);
  assert_true(first_range > 0 && final_range >= 1024 * first_range); /* rebinned >= 10 times */
  assert_same_observer(all, chunked);

  /* Two observers over the two halves, merged (the second half first, then the first). */
  qn_observer *lo = observe(x, rows / 2, w), *hi = observe(x + rows / 2 * w, rows - rows / 2, w);
  assert_int_equal(qn_observer_merge(hi, lo), QN_OK);
  assert_same_observer(all, hi);

  /* The histogram binned here in double precision with the final range. */
  double range = 1;
  double am = qn_observer_absmax(all);
  while (range <= am) range *= 2;
  while (range / 2 > am) range /= 2;
  assert_true(range == final_range);
  int64_t* ref = calloc(QN_OBSERVER_BINS, sizeof *ref);
  assert_non_null(ref);
  for (int64_t i = 0; i < rows * w; i++) ref[(int)floor(fabs(x[i]) / range * QN_OBSERVER_BINS)]++;
  assert_memory_equal(qn_observer_histogram(all, NULL), ref, QN_OBSERVER_BINS * sizeof *ref);

  free(ref);
  free(x);
  qn_observer_free(all);
  qn_observer_free(chunked);
  qn_observer_free(lo);
  qn_observer_free(hi);
}

/* ---- percentile ------------------------------------------------------------------------- */

static void test_percentile_uniform(void** state) {
  (void)state;
  int64_t n = 1000000;
  float* x = sample(n, DIST_UNIFORM);
  qn_observer* o = observe(x, n / 100, 100);
  float T = threshold(o, QN_CALIB_PERCENTILE, 99.0);
  assert_true(fabs(T - 0.99) < 0.005 * 0.99);
  /* Within one bin width of the exact sample percentile. */
  double range;
  qn_observer_histogram(o, &range);
  assert_true(fabs(T - exact_abs_percentile(x, n, 99.0)) <= range / QN_OBSERVER_BINS);
  /* The clipped fraction inverts the percentile. */
  assert_true(fabs(qn_observer_clipped_fraction(o, T) - 0.01) < 1e-6);
  assert_true(fabs(qn_observer_clipped_fraction(o, 0.5f) - 0.5) < 0.005);
  free(x);
  qn_observer_free(o);
}

static void test_percentile_gaussian(void** state) {
  (void)state;
  int64_t n = 1000000;
  float* x = sample(n, DIST_GAUSS);
  qn_observer* o = observe(x, n / 250, 250);
  float T = threshold(o, QN_CALIB_PERCENTILE, 99.9);
  assert_true(fabs(T - 3.2905) < 0.01 * 3.2905); /* P(|x| > 3.2905) = 0.001 */
  double range;
  qn_observer_histogram(o, &range);
  assert_true(fabs(T - exact_abs_percentile(x, n, 99.9)) <= range / QN_OBSERVER_BINS);
  float T99 = threshold(o, QN_CALIB_PERCENTILE, 99.0);
  assert_true(fabs(T99 - 2.5758) < 0.01 * 2.5758);
  assert_true(threshold(o, QN_CALIB_PERCENTILE, 99.999) > T);
  free(x);
  qn_observer_free(o);
}

/* ---- entropy ------------------------------------------------------------------------------- */

/* TensorRT's loop, written out with explicit arrays: P = bins[0..i) with the outliers added to
 * its last bin; Q = bins[0..i) merged into `levels` groups, each group spread evenly over its
 * bins where P is nonzero; KL over bins where P > 0, empty Q bins smoothed to QN_HIST_KL_EPS
 * counts. Returns the divergence for cut i. */
static double naive_divergence(const qn_abs_hist* h, int i, int levels) {
  double* p = calloc((size_t)i, sizeof *p);
  double* q = calloc((size_t)i, sizeof *q);
  assert_non_null(p);
  assert_non_null(q);
  double sp = 0, sq = 0;
  for (int k = 0; k < h->n; k++) {
    p[k < i ? k : i - 1] += (double)h->counts[k];
    sp += (double)h->counts[k];
  }
  for (int g = 0; g < levels; g++) {
    int b0 = g * i / levels, b1 = (g + 1) * i / levels, nz = 0;
    double sum = 0;
    for (int k = b0; k < b1; k++) {
      sum += (double)h->counts[k];
      nz += p[k] > 0;
    }
    for (int k = b0; k < b1; k++) q[k] = p[k] > 0 ? sum / nz : 0;
  }
  for (int k = 0; k < i; k++) sq += q[k];
  double kl = 0;
  for (int k = 0; k < i; k++) {
    if (p[k] == 0) continue;
    double qk = q[k] > 0 ? q[k] : QN_HIST_KL_EPS;
    kl += p[k] / sp * log((p[k] / sp) / (qk / sq));
  }
  free(p);
  free(q);
  return kl;
}

static void test_entropy_laplace(void** state) {
  (void)state;
  int64_t n = 1000000;
  float* x = sample(n, DIST_LAPLACE);
  qn_observer* o = observe(x, n / 500, 500);
  float T = threshold(o, QN_CALIB_ENTROPY, 0);
  float mx = qn_observer_absmax(o);
  double p99 = exact_abs_percentile(x, n, 99.0);
  print_message("laplace: max %.3f, p99 %.3f, entropy T %.3f\n", mx, p99, T);
  /* TensorRT's search keeps the tail until only a handful of values lie beyond the cut: each
   * value folded into P's last bin costs about (k / N) log k, more than the smoothing of the
   * body saves at this N (the body's cost grows with T^2 and wins only for much larger N).
   * On 1e6 Laplace values T lands near ln(1e6 / 20) ~ 11: well above the 99.9th percentile,
   * a few tens of values clipped, inside the max. (See docs/QUANTIZATION.md.) */
  double p999 = exact_abs_percentile(x, n, 99.9);
  double clipped = qn_observer_clipped_fraction(o, T) * (double)n;
  print_message("laplace: p99.9 %.3f, values clipped %.1f\n", p999, clipped);
  assert_true(T > p999);
  assert_true(T < 0.95 * mx);
  assert_true(clipped >= 5 && clipped < 100);
  /* MSE on the same sample: ACIQ's 8-bit optimum for Laplace(0, b) is 9.89 b. */
  float t_mse = threshold(o, QN_CALIB_MSE, 0);
  print_message("laplace: mse T %.3f\n", t_mse);
  assert_true(fabs(t_mse - 9.89) < 0.04 * 9.89);

  /* Same cut as the explicit transcription (and the same divergence at every cut). */
  qn_abs_hist h = view(o);
  int n_used = h.n;
  while (h.counts[n_used - 1] == 0) n_used--;
  int best = -1;
  double best_kl = INFINITY;
  for (int i = 128; i <= n_used; i++) {
    double kl = naive_divergence(&h, i, 128);
    double fast = qn_hist_entropy_divergence(&h, i, 128);
    assert_true(fabs(kl - fast) <= 1e-9 * (1 + fabs(kl)));
    if (kl < best_kl) {
      best_kl = kl;
      best = i;
    }
  }
  double w = h.range / h.n;
  assert_true(fabsf(T - (float)fmin((best + 0.5) * w, mx)) <= (float)w * 1e-3f);
  free(x);
  qn_observer_free(o);
}

/* ---- mse ------------------------------------------------------------------------------------ */

/* Mean squared error of int8-quantizing the sample with threshold T (round to nearest, clip). */
static double measured_sq_error(const float* x, int64_t n, double T) {
  double s = T / 127, sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = fabs(x[i]), q = fmin(nearbyint(a / s), 127) * s;
    sum += (a - q) * (a - q);
  }
  return sum / (double)n;
}

static void test_mse_gaussian(void** state) {
  (void)state;
  int64_t n = 1000000;
  float* x = sample(n, DIST_GAUSS);
  qn_observer* o = observe(x, n / 1000, 1000);
  float T = threshold(o, QN_CALIB_MSE, 0);
  float mx = qn_observer_absmax(o);
  double p99 = exact_abs_percentile(x, n, 99.0);
  print_message("gaussian: max %.3f, p99 %.3f, mse T %.3f\n", mx, p99, T);
  assert_true(T > p99 && T < mx);
  /* Banner et al. (ACIQ, "Post-training 4-bit quantization...", 2019) give the MSE-optimal
   * clipping of a Gaussian for 8 bits as 3.92 sigma. */
  assert_true(fabs(T - 3.92) < 0.03 * 3.92);
  /* The model (uniform inside bins, integrated exactly) predicts the measured error. */
  qn_abs_hist h = view(o);
  const double ts[] = {1.0, 2.0, 3.0, T, 4.5, mx};
  for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) {
    double model = qn_hist_expected_sq_error(&h, ts[k], 127);
    double meas = measured_sq_error(x, n, ts[k]);
    assert_true(fabs(model - meas) < 0.03 * meas);
  }
  /* And the chosen T beats the 99th percentile and the max on the sample itself. */
  double e_t = measured_sq_error(x, n, T);
  assert_true(e_t < measured_sq_error(x, n, p99));
  assert_true(e_t < measured_sq_error(x, n, mx));
  free(x);
  qn_observer_free(o);
}

/* ---- outliers -------------------------------------------------------------------------------- */

static void test_outliers(void** state) {
  (void)state;
  int64_t n = 1000000;
  float* x = sample(n, DIST_GAUSS);
  x[1234] = 250.0f;
  x[500000] = -240.0f;
  x[999999] = 230.0f;
  qn_observer* o = observe(x, n / 500, 500);
  float mx = qn_observer_absmax(o);
  assert_true(mx == 250.0f);
  assert_true(threshold(o, QN_CALIB_MINMAX, 0) == mx);
  const qn_calib_method ms[] = {QN_CALIB_PERCENTILE, QN_CALIB_MSE, QN_CALIB_ENTROPY};
  float T[3];
  for (size_t k = 0; k < 3; k++) {
    T[k] = threshold(o, ms[k], 99.99);
    print_message("outliers: %s T %.3f (max %.1f), clipped %.2e\n", qn_calib_method_name(ms[k]),
                  T[k], mx, qn_observer_clipped_fraction(o, T[k]));
    assert_true(qn_observer_clipped_fraction(o, T[k]) >= 3.0 / n);
  }
  /* Percentile and entropy cut at the body. The entropy cut is at least 128 of the 2048 bins,
   * here (128 + 0.5) * 256 / 2048 = 16.06: the method's resolution limit. */
  assert_true(T[0] < 0.05 * mx);
  assert_true(T[2] < 0.1 * mx);
  /* MSE trades the outliers' clipping error r (M - T)^2 (r = 3 / n of the values, M ~ 240)
   * against the rounding error of the body, ~ (T / 127)^2 / 12 when the step is below the
   * body's spread: the optimum is T* = M r / (r + 1 / (12 * 127^2)) ~ 0.37 M, not the max. */
  double r = 3.0 / n, t_star = 240.0 * r / (r + 1.0 / (12.0 * 127 * 127));
  assert_true(fabs(T[1] - t_star) < 0.1 * t_star);
  assert_true(T[1] < 0.5 * mx);
  free(x);
  qn_observer_free(o);
}

/* ---- bad input and edge cases ------------------------------------------------------------- */

static void test_empty_and_bad_arguments(void** state) {
  (void)state;
  qn_observer* o = NULL;
  assert_int_equal(qn_observer_new(0, &o), QN_EINVAL);
  assert_null(o);
  assert_int_equal(qn_observer_new(4, NULL), QN_EINVAL);
  assert_int_equal(qn_observer_new(4, &o), QN_OK);
  float T = 0;
  for (int m = 0; m < QN_CALIB_METHOD_COUNT; m++)
    assert_int_equal(qn_observer_threshold(o, m, 99.9, &T), QN_EINVAL);
  assert_int_equal(qn_observer_count(o), 0);
  assert_true(qn_observer_clipped_fraction(o, 1.0f) == 0.0);
  qn_observer_update(o, NULL, 3); /* ignored */
  const float nan_row[4] = {NAN, INFINITY, -INFINITY, NAN};
  qn_observer_update(o, nan_row, 1);
  assert_int_equal(qn_observer_count(o), 0);
  assert_int_equal(qn_observer_nonfinite(o), 4);
  assert_int_equal(qn_observer_threshold(o, QN_CALIB_MINMAX, 0, &T), QN_EINVAL);
  const float zero_row[4] = {0.0f, -0.0f, 0.0f, 0.0f};
  qn_observer_update(o, zero_row, 1);
  for (int m = 0; m < QN_CALIB_METHOD_COUNT; m++) {
    assert_int_equal(qn_observer_threshold(o, m, 50, &T), QN_OK);
    assert_true(T == 1.0f); /* only zeros: any T represents them */
  }
  assert_true(qn_observer_clipped_fraction(o, 0.0f) == 0.0);
  const float row[4] = {1, -2, 3, -4};
  qn_observer_update(o, row, 1);
  const double bad_p[] = {0, 100, -1, 101, NAN};
  for (size_t k = 0; k < sizeof bad_p / sizeof *bad_p; k++)
    assert_int_equal(qn_observer_threshold(o, QN_CALIB_PERCENTILE, bad_p[k], &T), QN_EINVAL);
  assert_int_equal(qn_observer_threshold(o, QN_CALIB_MINMAX, NAN, &T), QN_OK); /* p unused */
  assert_int_equal(qn_observer_threshold(o, (qn_calib_method)QN_CALIB_METHOD_COUNT, 0, &T),
                   QN_EINVAL);
  assert_int_equal(qn_observer_threshold(o, QN_CALIB_MINMAX, 0, NULL), QN_EINVAL);
  qn_observer* other = NULL;
  assert_int_equal(qn_observer_new(5, &other), QN_OK);
  assert_int_equal(qn_observer_merge(o, other), QN_EINVAL);
  qn_observer_free(other);
  qn_observer_free(o);
  qn_observer_free(NULL);
}

static void test_nonfinite_ignored(void** state) {
  (void)state;
  int w = 64;
  int64_t rows = 5000, n = rows * w;
  float* x = sample(n, DIST_GAUSS);
  float* finite = malloc((size_t)n * sizeof *finite);
  assert_non_null(finite);
  int64_t n_finite = 0, n_bad = 0;
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int64_t i = 0; i < n; i++) {
    if (i % 997 == 3) {
      x[i] = bad[n_bad++ % 3];
    } else {
      finite[n_finite++] = x[i];
    }
  }
  qn_observer* o = observe(x, rows, w);
  qn_observer* ref = observe(finite, n_finite, 1); /* the finite values alone, width 1 */
  assert_int_equal(qn_observer_count(o), n_finite);
  assert_int_equal(qn_observer_nonfinite(o), n_bad);
  assert_true(qn_observer_min(o) == qn_observer_min(ref));
  assert_true(qn_observer_max(o) == qn_observer_max(ref));
  assert_true(qn_observer_absmax(o) == qn_observer_absmax(ref));
  const float* ch = qn_observer_channel_absmax(o);
  for (int j = 0; j < w; j++) assert_true(isfinite(ch[j]) && ch[j] > 0);
  assert_memory_equal(qn_observer_histogram(o, NULL), qn_observer_histogram(ref, NULL),
                      QN_OBSERVER_BINS * sizeof(int64_t));
  for (int m = 0; m < QN_CALIB_METHOD_COUNT; m++)
    assert_true(threshold(o, m, 99.9) == threshold(ref, m, 99.9));
  free(finite);
  free(x);
  qn_observer_free(o);
  qn_observer_free(ref);
}

static void test_method_names(void** state) {
  (void)state;
  for (int m = 0; m < QN_CALIB_METHOD_COUNT; m++)
    assert_int_equal(qn_calib_method_from_name(qn_calib_method_name(m)), m);
  assert_int_equal(qn_calib_method_from_name("entropy"), QN_CALIB_ENTROPY);
  assert_int_equal(qn_calib_method_from_name("kl"), -1);
  assert_int_equal(qn_calib_method_from_name("MinMax"), -1);
  assert_int_equal(qn_calib_method_from_name(""), -1);
  assert_int_equal(qn_calib_method_from_name(NULL), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_minmax_exact),       cmocka_unit_test(test_streaming_equals_batch),
      cmocka_unit_test(test_percentile_uniform), cmocka_unit_test(test_percentile_gaussian),
      cmocka_unit_test(test_entropy_laplace),    cmocka_unit_test(test_mse_gaussian),
      cmocka_unit_test(test_outliers),           cmocka_unit_test(test_empty_and_bad_arguments),
      cmocka_unit_test(test_nonfinite_ignored),  cmocka_unit_test(test_method_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
