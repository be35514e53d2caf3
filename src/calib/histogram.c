/* histogram.c: percentile, clipped fraction, expected quantization error, the MSE threshold
 * search and TensorRT's entropy (KL-divergence) threshold search over a |x| histogram. */
#include "calib/histogram.h"

#include <math.h>

static double bin_width(const qn_abs_hist* h) { return h->range / h->n; }

/* The values of bin k that are spread uniformly (bin 0 less its exact zeros) and the interval
 * [*lo, *hi] they can occupy (the bin clipped to absmax; *hi == *lo is a point mass). */
static int64_t bin_span(const qn_abs_hist* h, int k, double* lo, double* hi) {
  double w = bin_width(h);
  *lo = k * w;
  *hi = fmin((k + 1) * w, h->absmax);
  if (*hi < *lo) *hi = *lo;
  return k == 0 ? h->counts[0] - h->zeros : h->counts[k];
}

double qn_hist_percentile(const qn_abs_hist* h, double p) {
  double target = fmin(fmax(p, 0.0), 100.0) / 100.0 * (double)h->total;
  double cum = (double)h->zeros;
  if (target <= cum) return 0.0;
  for (int k = 0; k < h->n; k++) {
    double lo, hi;
    double c = (double)bin_span(h, k, &lo, &hi);
    if (c > 0 && cum + c >= target) return lo + (target - cum) / c * (hi - lo);
    cum += c;
  }
  return h->absmax;
}

double qn_hist_clipped_fraction(const qn_abs_hist* h, double T) {
  if (h->total <= 0) return 0.0;
  if (T >= h->absmax) return 0.0;
  if (T <= 0) return (double)(h->total - h->zeros) / (double)h->total;
  double clipped = 0;
  for (int k = 0; k < h->n; k++) {
    double lo, hi;
    double c = (double)bin_span(h, k, &lo, &hi);
    if (c == 0 || hi <= T) continue;
    clipped += (lo >= T || hi == lo) ? c : c * (hi - T) / (hi - lo);
  }
  return clipped / (double)h->total;
}

/* ---- expected squared error ------------------------------------------------------------ */

/* Integral over [0, x] of (t - s * round(t / s))^2 dt: every full step contributes s^3 / 12;
 * with u = x / s + 1/2 = n + f, the first half step gives -s^3 / 24 of the n full ones back and
 * the partial step adds the integral of e^2 over e in [-s/2, (f - 1/2) s]. */
static double rounding_sq_integral(double x, double s) {
  double u = x / s + 0.5;
  double n = floor(u), f = u - n, g = f - 0.5;
  return s * s * s * (n / 12.0 - 1.0 / 24.0 + (g * g * g + 0.125) / 3.0);
}

/* Squared error of one value x >= 0 quantized with step s and clipped at T. */
static double point_sq_error(double x, double s, double T) {
  double e = x > T ? x - T : x - s * nearbyint(x / s);
  return e * e;
}

/* Summed squared error of c values spread uniformly over [lo, hi] (a point if hi == lo). */
static double span_sq_error(double c, double lo, double hi, double s, double T) {
  if (hi == lo) return c * point_sq_error(lo, s, T);
  double sum = 0;
  if (lo < T) sum += rounding_sq_integral(fmin(hi, T), s) - rounding_sq_integral(lo, s);
  if (hi > T) {
    double a = fmax(lo, T) - T, b = hi - T;
    sum += (b * b * b - a * a * a) / 3.0;
  }
  return c / (hi - lo) * sum;
}

double qn_hist_expected_sq_error(const qn_abs_hist* h, double T, int levels) {
  if (h->total <= 0 || !(T > 0) || levels < 1) return 0.0;
  double s = T / levels, sum = 0;
  for (int k = 0; k < h->n; k++) {
    double lo, hi;
    int64_t c = bin_span(h, k, &lo, &hi);
    if (c > 0) sum += span_sq_error((double)c, lo, hi, s, T);
  }
  return sum / (double)h->total;
}

double qn_hist_mse_threshold(const qn_abs_hist* h, int levels) {
  double w = bin_width(h);
  double best_T = h->absmax;
  double best_err = qn_hist_expected_sq_error(h, best_T, levels);
  for (int k = 1; k < h->n && k * w < h->absmax; k++) {
    double err = qn_hist_expected_sq_error(h, k * w, levels);
    if (err < best_err) {
      best_err = err;
      best_T = k * w;
    }
  }
  return best_T;
}

/* ---- entropy (KL divergence) search --------------------------------------------------- */

static double xlogx(double x) { return x > 0 ? x * log(x) : 0.0; }

/* KL(P || Q) for the cut after i bins (see histogram.h), given sum_{k < i-1} c_k log c_k and
 * below = sum_{k < i} c_k. With SP = total (P's sum) and SQ = below (Q's sum):
 *   KL = sum P/SP log(P/SP) - sum P/SP log(Q/SQ) = (A - B) / SP - log SP,
 * A = sum P log P, B = sum over groups of (P mass of the group) * log(Q of its nonzero bins / SQ),
 * since Q is constant over a group's bins where P is nonzero. */
static double cut_divergence(const qn_abs_hist* h, int i, int levels, double clogc_below,
                             int64_t below) {
  if (below <= 0) return INFINITY;
  const int64_t* c = h->counts;
  double outliers = (double)(h->total - below), sq = (double)below;
  double a = clogc_below + xlogx((double)c[i - 1] + outliers), b = 0;
  for (int g = 0; g < levels; g++) {
    int b0 = (int)((int64_t)g * i / levels), b1 = (int)((int64_t)(g + 1) * i / levels);
    int64_t group = 0;
    int nonzero = 0;
    for (int k = b0; k < b1; k++) {
      group += c[k];
      nonzero += c[k] > 0;
    }
    double p_mass = (double)group;
    if (g == levels - 1 && outliers > 0) {
      p_mass += outliers;
      nonzero += c[i - 1] == 0; /* P's last bin holds the outliers */
    }
    if (p_mass == 0) continue;
    double q = group > 0 ? (double)group / nonzero : QN_HIST_KL_EPS;
    b += p_mass * log(q / sq);
  }
  double sp = (double)h->total;
  return (a - b) / sp - log(sp);
}

double qn_hist_entropy_divergence(const qn_abs_hist* h, int i, int levels) {
  if (levels < 1 || i < levels || i > h->n) return INFINITY;
  double clogc = 0;
  int64_t below = 0;
  for (int k = 0; k < i; k++) {
    if (k < i - 1) clogc += xlogx((double)h->counts[k]);
    below += h->counts[k];
  }
  return cut_divergence(h, i, levels, clogc, below);
}

double qn_hist_entropy_threshold(const qn_abs_hist* h, int levels) {
  int n_used = h->n;
  while (n_used > 0 && h->counts[n_used - 1] == 0) n_used--;
  if (levels < 1 || n_used <= levels) return h->absmax;
  double clogc = 0;  /* sum_{k < i-1} c log c */
  int64_t below = 0; /* sum_{k < i} c */
  for (int k = 0; k < levels; k++) {
    if (k < levels - 1) clogc += xlogx((double)h->counts[k]);
    below += h->counts[k];
  }
  int best_i = n_used;
  double best_kl = INFINITY;
  for (int i = levels; i <= n_used; i++) {
    double kl = cut_divergence(h, i, levels, clogc, below);
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
    clogc += xlogx((double)h->counts[i - 1]);
    if (i < h->n) below += h->counts[i];
  }
  return fmin((best_i + 0.5) * bin_width(h), h->absmax);
}
