/* observer.c: the streaming activation observer. Per channel it keeps max |x|; per tensor
 * min, max, max |x|, counts and a QN_OBSERVER_BINS-bin histogram of |x| over [0, R).
 *
 * R is always a power of two strictly above every |x| seen so far (from the first nonzero batch
 * on; before that only zeros were seen and they sit in bin 0 whatever R becomes). When a batch
 * brings a larger |x|, R doubles as many times as needed and each doubling merges bins 2k and
 * 2k+1 into bin k. Because bin edges k * R / BINS are exact binary fractions and the bin index
 * floor(|x| * BINS / R) multiplies by a power of two (exact in floating point), merged counts
 * equal what binning with the final R from the start would give: the histogram, and every
 * threshold computed from it, does not depend on how the data was cut into batches. */
#include "calib/observer.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib/histogram.h"
#include "core/status.h"

/* Smallest histogram range: values below it all fall in bin 0 of [0, 2^-64). */
#define QN_OBSERVER_MIN_RANGE_EXP (-64)
/* Values per block of rows: pass 1 (ranges) and pass 2 (histogram) over a block that stays in
 * cache. */
#define QN_OBSERVER_BLOCK_VALUES 16384

struct qn_observer {
  int width;                      /* channels per row */
  int64_t count;                  /* finite values observed */
  int64_t nonfinite;              /* NaN / Inf values skipped */
  int64_t zeros;                  /* values exactly 0 (+0 or -0) */
  float min, max;                 /* per-tensor min / max of finite values (+inf/-inf before) */
  float absmax;                   /* per-tensor max |x| (0 before) */
  float* ch_absmax;               /* (width) per-channel max |x| */
  int range_exp;                  /* R = 2^range_exp; meaningful once has_range */
  int has_range;                  /* a nonzero value was seen and R is set */
  float inv_bin_width;            /* BINS / R (exact power of two), 0 before R is set */
  int64_t hist[QN_OBSERVER_BINS]; /* counts of |x| in [k R / BINS, (k + 1) R / BINS) */
};

qn_status qn_observer_new(int width, qn_observer** out) {
  if (!out) return qn_error(QN_EINVAL, "qn_observer_new: out is NULL");
  *out = NULL;
  if (width <= 0) return qn_error(QN_EINVAL, "qn_observer_new: width %d must be positive", width);
  qn_observer* o = calloc(1, sizeof *o);
  if (!o) return qn_error(QN_ENOMEM, "qn_observer_new: out of memory");
  o->ch_absmax = calloc((size_t)width, sizeof *o->ch_absmax);
  if (!o->ch_absmax) {
    free(o);
    return qn_error(QN_ENOMEM, "qn_observer_new: out of memory for %d channels", width);
  }
  o->width = width;
  o->min = INFINITY;
  o->max = -INFINITY;
  *out = o;
  return QN_OK;
}

void qn_observer_free(qn_observer* o) {
  if (!o) return;
  free(o->ch_absmax);
  free(o);
}

/* ---- update ------------------------------------------------------------------------------ */

/* Pass 1 keeps its running statistics in LANES independent lanes (lane u sees channels
 * j = u mod LANES; a row's last width mod LANES channels use lane 0), so its inner loop has a
 * constant trip count and no cross-iteration dependency: GCC vectorizes it at -O2, as it does
 * pass 2's bin-index loop. Non-finite values are masked out (NaN or Inf contributes 0 to
 * max |x| and nothing to min/max) and counted. */
enum { LANES = 16, BIN_CHUNK = 256 };

typedef struct scan_lanes {
  float min[LANES], max[LANES]; /* min / max of finite values */
  float absmax[LANES];          /* max |x| of finite values */
  int32_t zeros[LANES];         /* exact zeros (a block holds < 2^31 values) */
  int32_t nonfinite[LANES];     /* NaN / Inf */
} scan_lanes;

/* One value v of channel maximum cm into lane u of s (a macro so that the callers' loops stay
 * plain array code the vectorizer recognises). */
#define SCAN_VALUE(v_, cm_, s_, u_)                                \
  do {                                                             \
    float v = (v_), a = fabsf(v);                                  \
    int finite = a <= FLT_MAX;                                     \
    float af = finite ? a : 0.0f;                                  \
    float lo = finite ? v : INFINITY, hi = finite ? v : -INFINITY; \
    (cm_) = af > (cm_) ? af : (cm_);                               \
    (s_).absmax[u_] = af > (s_).absmax[u_] ? af : (s_).absmax[u_]; \
    (s_).min[u_] = lo < (s_).min[u_] ? lo : (s_).min[u_];          \
    (s_).max[u_] = hi > (s_).max[u_] ? hi : (s_).max[u_];          \
    (s_).zeros[u_] += a == 0.0f;                                   \
    (s_).nonfinite[u_] += !finite;                                 \
  } while (0)

/* Pass 1 over one row: per-channel max |x| and the block's lanes. */
static void scan_row(const float* restrict x, int width, float* restrict cm,
                     scan_lanes* restrict s) {
  scan_lanes l = *s;
  int j = 0;
  for (; j + LANES <= width; j += LANES)
    for (int u = 0; u < LANES; u++) SCAN_VALUE(x[j + u], cm[j + u], l, u);
  for (; j < width; j++) SCAN_VALUE(x[j], cm[j], l, 0);
  *s = l;
}

/* Enlarges R to the smallest power of two (at least 2^QN_OBSERVER_MIN_RANGE_EXP) strictly
 * above absmax > 0, merging bins pairwise once per doubling. */
static void grow_range(qn_observer* o, float absmax) {
  int e;
  frexp(absmax, &e); /* absmax = f * 2^e, f in [0.5, 1): 2^(e-1) <= absmax < 2^e */
  if (e < QN_OBSERVER_MIN_RANGE_EXP) e = QN_OBSERVER_MIN_RANGE_EXP;
  if (o->has_range && e <= o->range_exp) return;
  if (o->has_range) {
    int shift = e - o->range_exp;
    if (shift > 11) shift = 11; /* 2^11 = QN_OBSERVER_BINS: everything lands in bin 0 */
    for (int k = 1; k < QN_OBSERVER_BINS; k++) {
      int64_t c = o->hist[k];
      o->hist[k] = 0;
      o->hist[k >> shift] += c;
    }
  }
  o->range_exp = e;
  o->has_range = 1;
  o->inv_bin_width = (float)ldexp(QN_OBSERVER_BINS, -e);
}

_Static_assert(QN_OBSERVER_BINS == 2048, "grow_range's shift cap assumes 2^11 bins");

/* Bin index of a finite |x| < R: the product by BINS / R (a power of two) is exact, so the
 * index is below BINS; the clamp only guards against misuse. */
static inline int32_t bin_index(float a, float inv_bin_width) {
  float t = a * inv_bin_width;
  return (int32_t)(t < (float)(QN_OBSERVER_BINS - 1) ? t : (float)(QN_OBSERVER_BINS - 1));
}

/* Pass 2: histogram of |x| over n values, all finite. Bin indices are computed BIN_CHUNK at a
 * time (vectorized), then counted. */
static void bin_values_finite(qn_observer* o, const float* restrict x, int64_t n) {
  float inv = o->inv_bin_width;
  int64_t* restrict hist = o->hist;
  int32_t idx[BIN_CHUNK];
  int64_t i = 0;
  for (; i + BIN_CHUNK <= n; i += BIN_CHUNK) {
    for (int u = 0; u < BIN_CHUNK; u++) idx[u] = bin_index(fabsf(x[i + u]), inv);
    for (int u = 0; u < BIN_CHUNK; u++) hist[idx[u]]++;
  }
  for (; i < n; i++) hist[bin_index(fabsf(x[i]), inv)]++;
}

/* Pass 2 for values that may hold NaN or Inf: those are skipped. */
static void bin_values_checked(qn_observer* o, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float a = fabsf(x[i]);
    if (a <= FLT_MAX) o->hist[bin_index(a, o->inv_bin_width)]++;
  }
}

/* Both passes over a block of rows (at most QN_OBSERVER_BLOCK_VALUES values, or one row). */
static void update_block(qn_observer* o, const float* x, int64_t n_rows) {
  scan_lanes s;
  for (int u = 0; u < LANES; u++) {
    s.min[u] = INFINITY;
    s.max[u] = -INFINITY;
    s.absmax[u] = 0.0f;
    s.zeros[u] = s.nonfinite[u] = 0;
  }
  for (int64_t r = 0; r < n_rows; r++) scan_row(x + r * o->width, o->width, o->ch_absmax, &s);
  float mn = INFINITY, mx = -INFINITY, am = 0.0f;
  int64_t zeros = 0, nonfinite = 0;
  for (int u = 0; u < LANES; u++) {
    mn = s.min[u] < mn ? s.min[u] : mn;
    mx = s.max[u] > mx ? s.max[u] : mx;
    am = s.absmax[u] > am ? s.absmax[u] : am;
    zeros += s.zeros[u];
    nonfinite += s.nonfinite[u];
  }
  if (am > 0) grow_range(o, am);
  int64_t n = n_rows * o->width;
  if (nonfinite)
    bin_values_checked(o, x, n);
  else
    bin_values_finite(o, x, n);
  o->count += n - nonfinite;
  o->nonfinite += nonfinite;
  o->zeros += zeros;
  if (mn < o->min) o->min = mn;
  if (mx > o->max) o->max = mx;
  if (am > o->absmax) o->absmax = am;
}

void qn_observer_update(qn_observer* o, const float* x, int64_t n_rows) {
  if (!o || !x || n_rows <= 0) return;
  int64_t block_rows = QN_OBSERVER_BLOCK_VALUES / o->width;
  if (block_rows < 1) block_rows = 1;
  for (int64_t r = 0; r < n_rows; r += block_rows) {
    int64_t rows = n_rows - r < block_rows ? n_rows - r : block_rows;
    update_block(o, x + r * o->width, rows);
  }
}

qn_status qn_observer_merge(qn_observer* dst, const qn_observer* src) {
  if (!dst || !src) return qn_error(QN_EINVAL, "qn_observer_merge: NULL observer");
  if (dst->width != src->width)
    return qn_error(QN_EINVAL, "qn_observer_merge: widths differ (%d vs %d)", dst->width,
                    src->width);
  if (src->absmax > 0) grow_range(dst, src->absmax);
  /* src's R <= dst's R now; both powers of two: bin k of src lies in bin k >> shift of dst. */
  int shift = src->has_range ? dst->range_exp - src->range_exp : 0;
  if (shift > 11) shift = 11;
  for (int k = 0; k < QN_OBSERVER_BINS; k++) dst->hist[k >> shift] += src->hist[k];
  for (int j = 0; j < dst->width; j++)
    if (src->ch_absmax[j] > dst->ch_absmax[j]) dst->ch_absmax[j] = src->ch_absmax[j];
  dst->count += src->count;
  dst->nonfinite += src->nonfinite;
  dst->zeros += src->zeros;
  if (src->min < dst->min) dst->min = src->min;
  if (src->max > dst->max) dst->max = src->max;
  if (src->absmax > dst->absmax) dst->absmax = src->absmax;
  return QN_OK;
}

/* ---- queries ------------------------------------------------------------------------------ */

int qn_observer_width(const qn_observer* o) { return o ? o->width : 0; }
int64_t qn_observer_count(const qn_observer* o) { return o ? o->count : 0; }
int64_t qn_observer_nonfinite(const qn_observer* o) { return o ? o->nonfinite : 0; }
float qn_observer_min(const qn_observer* o) { return o && o->count ? o->min : 0.0f; }
float qn_observer_max(const qn_observer* o) { return o && o->count ? o->max : 0.0f; }
float qn_observer_absmax(const qn_observer* o) { return o ? o->absmax : 0.0f; }
const float* qn_observer_channel_absmax(const qn_observer* o) { return o ? o->ch_absmax : NULL; }

const int64_t* qn_observer_histogram(const qn_observer* o, double* range) {
  if (!o) return NULL;
  if (range) *range = o->has_range ? ldexp(1.0, o->range_exp) : 0.0;
  return o->hist;
}

/* The histogram as a qn_abs_hist view (o->count > 0). R is taken as 1 while only zeros were
 * seen (every search then returns 0). */
static qn_abs_hist hist_view(const qn_observer* o) {
  qn_abs_hist h = {o->hist,   QN_OBSERVER_BINS, o->has_range ? ldexp(1.0, o->range_exp) : 1.0,
                   o->absmax, o->count,         o->zeros};
  return h;
}

qn_status qn_observer_threshold(const qn_observer* o, qn_calib_method m, double percentile,
                                float* T) {
  if (!o || !T) return qn_error(QN_EINVAL, "qn_observer_threshold: NULL argument");
  if (o->count == 0)
    return qn_error(QN_EINVAL, "qn_observer_threshold: no finite values were observed");
  if (m == QN_CALIB_PERCENTILE && !(percentile > 0 && percentile < 100))
    return qn_error(QN_EINVAL, "qn_observer_threshold: percentile %g is outside (0, 100)",
                    percentile);
  if (o->absmax == 0) { /* only zeros: every positive T represents them exactly */
    *T = 1.0f;
    return QN_OK;
  }
  qn_abs_hist h = hist_view(o);
  double t;
  switch (m) {
    case QN_CALIB_MINMAX: t = o->absmax; break;
    case QN_CALIB_PERCENTILE: t = qn_hist_percentile(&h, percentile); break;
    case QN_CALIB_MSE: t = qn_hist_mse_threshold(&h, 127); break;
    case QN_CALIB_ENTROPY: t = qn_hist_entropy_threshold(&h, 128); break;
    default: return qn_error(QN_EINVAL, "qn_observer_threshold: unknown method %d", (int)m);
  }
  /* Keep T positive and its scale T / 127 a normal float: at least absmax * 2^-24. */
  double floor_t = ldexp(o->absmax, -24);
  if (!(t >= floor_t)) t = floor_t;
  if (t > o->absmax) t = o->absmax;
  *T = (float)t;
  return QN_OK;
}

double qn_observer_clipped_fraction(const qn_observer* o, float T) {
  if (!o || o->count == 0) return 0.0;
  qn_abs_hist h = hist_view(o);
  return qn_hist_clipped_fraction(&h, T);
}

/* ---- method names ------------------------------------------------------------------------ */

static const char* const g_method_names[QN_CALIB_METHOD_COUNT] = {"minmax", "percentile", "mse",
                                                                  "entropy"};

int qn_calib_method_from_name(const char* name) {
  if (!name) return -1;
  for (int m = 0; m < QN_CALIB_METHOD_COUNT; m++)
    if (strcmp(name, g_method_names[m]) == 0) return m;
  return -1;
}

const char* qn_calib_method_name(qn_calib_method m) {
  return (int)m >= 0 && m < QN_CALIB_METHOD_COUNT ? g_method_names[m] : "unknown";
}
