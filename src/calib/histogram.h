/* histogram.h: threshold searches over a histogram of |x| (the calibration observer's, or any
 * other with the same layout), for symmetric integer quantization with `levels` positive
 * levels (127 for int8: codes -127..127, scale = T / 127).
 *
 * Layout: n bins of width w = range / n over [0, range); bin k counts values with
 * k * w <= |x| < (k + 1) * w. Inside a bin, values are taken as spread uniformly over the
 * part of the bin that can hold them: [k w, (k + 1) w) clipped to absmax, and for bin 0 the
 * `zeros` exact zeros sit at 0 with the rest spread over (0, w). The math is written out in
 * docs/QUANTIZATION.md ("Calibration: choosing activation ranges"). */
#ifndef QN_CALIB_HISTOGRAM_H
#define QN_CALIB_HISTOGRAM_H

#include <stdint.h>

/* A read-only view of a |x| histogram. */
typedef struct qn_abs_hist {
  const int64_t* counts; /* (n) values per bin */
  int n;                 /* number of bins (>= 1) */
  double range;          /* upper edge of the last bin: bin width = range / n; > absmax */
  double absmax;         /* largest |x| counted (0 when only zeros were counted) */
  int64_t total;         /* sum of counts (> 0) */
  int64_t zeros;         /* values exactly 0, all counted in bin 0 (<= counts[0]) */
} qn_abs_hist;

/* The p-th percentile of |x| (p in (0, 100)), interpolated linearly inside its bin; in
 * [0, absmax]. */
double qn_hist_percentile(const qn_abs_hist* h, double p);

/* Fraction of values with |x| > T (linear inside the bin holding T; exact for T <= 0, where
 * it is the fraction of nonzero values, and for T >= absmax, where it is 0). */
double qn_hist_clipped_fraction(const qn_abs_hist* h, double T);

/* Mean squared error of quantizing |x| to the grid {0, s, 2s, ..., levels * s}, s = T / levels
 * (round to nearest, values above T clipped to T), under the histogram (uniform spread inside
 * bins, integrated exactly). */
double qn_hist_expected_sq_error(const qn_abs_hist* h, double T, int levels);

/* The T minimising qn_hist_expected_sq_error over the candidates: every bin edge below absmax
 * and absmax itself. Ties keep the smaller T. */
double qn_hist_mse_threshold(const qn_abs_hist* h, int levels);

/* KL divergence of the entropy search for a cut after `i` bins (levels <= i <= n): reference P
 * = counts[0..i) with every count at or beyond bin i added to P[i-1]; candidate Q = counts[0..i)
 * merged into `levels` groups of consecutive bins (group g = bins [g*i/levels, (g+1)*i/levels)),
 * each group's total spread evenly over its bins where P is nonzero. P and Q are normalised by
 * their own totals; a bin where P > 0 but Q = 0 gets Q = QN_HIST_KL_EPS counts. Returns
 * +INFINITY when Q is empty. */
double qn_hist_entropy_divergence(const qn_abs_hist* h, int i, int levels);

/* Smoothing of empty Q bins in the entropy search, in counts (as MXNet's implementation of the
 * TensorRT calibrator smooths its count histograms). */
#define QN_HIST_KL_EPS 1e-4

/* TensorRT's entropy calibration: the cut i in [levels, n_used] (n_used = last nonempty bin + 1)
 * minimising qn_hist_entropy_divergence; T = (i + 0.5) * w, at most absmax. absmax when
 * n_used <= levels (nothing to search). */
double qn_hist_entropy_threshold(const qn_abs_hist* h, int levels);

#endif
