/* observer.h: streaming statistics of one activation tensor (the input of a group of linear
 * layers) for calibration: per-channel and per-tensor ranges and a histogram of |x|, in
 * memory independent of the number of observed tokens. Thresholds for symmetric int8
 * quantization (scale = T / 127) are chosen from them by one of four methods. */
#ifndef QN_CALIB_OBSERVER_H
#define QN_CALIB_OBSERVER_H

#include <stdint.h>

#include "quench.h"

typedef enum qn_calib_method {
  QN_CALIB_MINMAX = 0, /* T = max |x| */
  QN_CALIB_PERCENTILE, /* T = the p-th percentile of |x| (p = 99.9, 99.99, 99.999 ...) */
  QN_CALIB_MSE,        /* T minimising the expected int8 quantization MSE under the histogram */
  QN_CALIB_ENTROPY,    /* TensorRT's KL-divergence search: 2048 bins, 128 levels */
  QN_CALIB_METHOD_COUNT
} qn_calib_method;

/* Bins of the |x| histogram. */
#define QN_OBSERVER_BINS 2048

typedef struct qn_observer qn_observer;

/* An observer for rows of `width` channels. */
qn_status qn_observer_new(int width, qn_observer** out);
void qn_observer_free(qn_observer* o);
/* Adds n_rows x width values (row-major). Non-finite values are counted and ignored. */
void qn_observer_update(qn_observer* o, const float* x, int64_t n_rows);

int qn_observer_width(const qn_observer* o);
/* Values observed (finite ones). */
int64_t qn_observer_count(const qn_observer* o);
/* Per-tensor min, max and max |x| over everything observed. */
float qn_observer_min(const qn_observer* o);
float qn_observer_max(const qn_observer* o);
float qn_observer_absmax(const qn_observer* o);
/* Per-channel max |x| (width floats; valid while o lives). */
const float* qn_observer_channel_absmax(const qn_observer* o);
/* Non-finite values (NaN, +-Inf) seen and skipped. */
int64_t qn_observer_nonfinite(const qn_observer* o);
/* The |x| histogram: QN_OBSERVER_BINS counts, bin k = [k R / BINS, (k + 1) R / BINS), where
 * *range = R is the smallest power of two (>= 2^-64) above max |x| (0 while only zeros were
 * seen). It does not depend on how the data was split into qn_observer_update calls. */
const int64_t* qn_observer_histogram(const qn_observer* o, double* range);
/* Adds everything src observed to dst (same width): the result equals one observer fed both
 * streams (e.g. for per-thread observers). */
qn_status qn_observer_merge(qn_observer* dst, const qn_observer* src);

/* Threshold T > 0 for symmetric int8 by method (percentile: p in (0, 100), ignored
 * otherwise). QN_EINVAL if nothing was observed or p is out of range. T is in
 * [absmax * 2^-24, absmax]; T = 1 if every observed value was 0. */
qn_status qn_observer_threshold(const qn_observer* o, qn_calib_method m, double percentile,
                                float* T);
/* Fraction of observed values with |x| > T (estimated from the histogram, exact at 0 and
 * at or beyond max |x|). */
double qn_observer_clipped_fraction(const qn_observer* o, float T);

/* "minmax", "percentile", "mse", "entropy"; -1 if unknown. */
int qn_calib_method_from_name(const char* name);
const char* qn_calib_method_name(qn_calib_method m);

#endif
