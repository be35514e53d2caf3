/* scale_search.c: RTN scales and the error-minimising scale search (see scale_search.h and
 * docs/QUANTIZATION.md for the objective and the candidate grids). */
#include "quant/scale_search.h"

/* Search grid: candidate scales are f * base for f = GRID_LO + k * GRID_STEP, k < GRID_N
 * (0.70 .. 1.05). */
#define GRID_LO 0.70f
#define GRID_STEP 0.01f
#define GRID_N 36
/* Asymmetric grid: lo += i * SHRINK_STEP * range, hi -= j * SHRINK_STEP * range, i, j <
 * SHRINK_N (each end pulled in by up to 14% of the range). */
#define SHRINK_STEP 0.02f
#define SHRINK_N 8
/* Least-squares refits applied to the best candidate. */
#define REFITS 2

uint16_t qn_f16_ceil(float s) {
  uint16_t h = qn_f32_to_f16(s);
  if (qn_f16_to_f32(h) < s) h = (h & 0x8000) ? (uint16_t)(h - 1) : (uint16_t)(h + 1);
  return h;
}

uint16_t qn_f16_floor(float s) {
  uint16_t h = qn_f32_to_f16(s);
  if (qn_f16_to_f32(h) > s) h = (h & 0x8000) ? (uint16_t)(h + 1) : (uint16_t)(h - 1);
  return h;
}

/* The stored value of scale d under Q. */
static float store_scale(const qn_sym_quantizer* Q, float d) {
  return Q->fp16_scale ? qn_round_f16(d) : d;
}

/* Largest |w_i| and the first w_i of that magnitude (with its sign). */
static void abs_extreme(const float* w, int64_t n, float* absmax, float* extreme) {
  float a = 0.0f, e = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    if (fabsf(w[i]) > a) {
      a = fabsf(w[i]);
      e = w[i];
    }
  }
  *absmax = a;
  *extreme = e;
}

static bool lopsided(const qn_sym_quantizer* Q) {
  return Q->kind == QN_CODE_INT && Q->qmin != -Q->qmax;
}

float qn_sym_rtn_scale(const qn_sym_quantizer* Q, const float* w, int64_t n) {
  float absmax, extreme;
  abs_extreme(w, n, &absmax, &extreme);
  if (absmax == 0.0f) return 0.0f;
  float mag = lopsided(Q) ? absmax / (float)-Q->qmin : absmax / Q->code_max;
  float sign = (lopsided(Q) && extreme > 0.0f) ? -1.0f : 1.0f;
  float d = Q->fp16_scale ? qn_f16_to_f32(qn_f16_ceil(mag)) : mag;
  return sign * d;
}

double qn_sym_error(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                    float d) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    float v = qn_sym_code_value(Q, w[i], d) * d;
    double e = (double)w[i] - (double)v;
    sum += (imp ? (double)imp[i] : 1.0) * e * e;
  }
  return sum;
}

/* Keeps d as the best scale if its error is strictly smaller. */
static void try_scale(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                      float d, float* best_d, double* best_e) {
  if (!isfinite(d) || d == *best_d) return;
  double e = qn_sym_error(Q, w, imp, n, d);
  if (e < *best_e) {
    *best_e = e;
    *best_d = d;
  }
}

/* Least-squares scale for the codes chosen at d: argmin_s sum imp (w - c s)^2
 * = sum imp w c / sum imp c^2; 0 if every code is 0. */
static float refit_scale(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                         float d) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double c = qn_sym_code_value(Q, w[i], d);
    double k = imp ? (double)imp[i] : 1.0;
    num += k * w[i] * c;
    den += k * c * c;
  }
  return den > 0.0 ? (float)(num / den) : 0.0f;
}

float qn_sym_search_scale(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                          float d_rtn) {
  float absmax, extreme;
  abs_extreme(w, n, &absmax, &extreme);
  if (absmax == 0.0f) return d_rtn;
  float best_d = d_rtn;
  double best_e = qn_sym_error(Q, w, imp, n, d_rtn);
  /* base scales: the extreme value onto qmin and (lopsided int ranges) onto qmax */
  float bases[2];
  int n_bases = 1;
  if (lopsided(Q)) {
    bases[0] = extreme / (float)Q->qmin;
    bases[1] = extreme / (float)Q->qmax;
    n_bases = 2;
  } else {
    bases[0] = absmax / Q->code_max;
  }
  for (int b = 0; b < n_bases; b++)
    for (int k = 0; k < GRID_N; k++)
      try_scale(Q, w, imp, n, store_scale(Q, (GRID_LO + GRID_STEP * (float)k) * bases[b]), &best_d,
                &best_e);
  for (int it = 0; it < REFITS; it++) {
    float d = store_scale(Q, refit_scale(Q, w, imp, n, best_d));
    if (d == 0.0f) break;
    try_scale(Q, w, imp, n, d, &best_d, &best_e);
  }
  return best_d;
}

/* ---- asymmetric ---------------------------------------------------------------------- */

static void min_max(const float* w, int64_t n, float* lo, float* hi) {
  float a = w[0], b = w[0];
  for (int64_t i = 1; i < n; i++) {
    if (w[i] < a) a = w[i];
    if (w[i] > b) b = w[i];
  }
  *lo = a;
  *hi = b;
}

qn_asym_params qn_asym_rtn_params(const float* w, int64_t n, int qmax) {
  float lo, hi;
  min_max(w, n, &lo, &hi);
  qn_asym_params p;
  p.min = qn_f16_to_f32(qn_f16_floor(lo));
  p.scale = qn_f16_to_f32(qn_f16_ceil((hi - p.min) / (float)qmax));
  return p;
}

double qn_asym_error(const float* w, const float* imp, int64_t n, int qmax, qn_asym_params p) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    float v = qn_asym_value(p.min, qn_asym_code(w[i], p.min, p.scale, qmax), p.scale);
    double e = (double)w[i] - (double)v;
    sum += (imp ? (double)imp[i] : 1.0) * e * e;
  }
  return sum;
}

/* Keeps p (rounded to fp16) as the best pair if valid and strictly better. */
static void try_params(const float* w, const float* imp, int64_t n, int qmax, float m, float s,
                       qn_asym_params* best, double* best_e) {
  qn_asym_params p = {qn_round_f16(m), qn_round_f16(s)};
  if (!isfinite(p.min) || !isfinite(p.scale) || !(p.scale > 0.0f)) return;
  if (p.min == best->min && p.scale == best->scale) return;
  double e = qn_asym_error(w, imp, n, qmax, p);
  if (e < *best_e) {
    *best_e = e;
    *best = p;
  }
}

/* Least-squares (m, s) for the codes chosen by p: solves the 2x2 normal equations of
 * argmin sum imp (w - m - q s)^2. Returns false when they are singular. */
static bool refit_params(const float* w, const float* imp, int64_t n, int qmax, qn_asym_params p,
                         float* m, float* s) {
  double s0 = 0, s1 = 0, s2 = 0, t0 = 0, t1 = 0;
  for (int64_t i = 0; i < n; i++) {
    double k = imp ? (double)imp[i] : 1.0;
    double q = qn_asym_code(w[i], p.min, p.scale, qmax);
    s0 += k;
    s1 += k * q;
    s2 += k * q * q;
    t0 += k * w[i];
    t1 += k * q * w[i];
  }
  double det = s0 * s2 - s1 * s1;
  if (!(det > 1e-12 * s0 * s2)) return false;
  *m = (float)((s2 * t0 - s1 * t1) / det);
  *s = (float)((s0 * t1 - s1 * t0) / det);
  return true;
}

qn_asym_params qn_asym_search_params(const float* w, const float* imp, int64_t n, int qmax,
                                     qn_asym_params rtn) {
  float lo, hi;
  min_max(w, n, &lo, &hi);
  float range = hi - lo;
  if (!(range > 0.0f)) return rtn;
  qn_asym_params best = rtn;
  double best_e = qn_asym_error(w, imp, n, qmax, rtn);
  for (int i = 0; i < SHRINK_N; i++) {
    for (int j = 0; j < SHRINK_N; j++) {
      float a = lo + SHRINK_STEP * (float)i * range;
      float b = hi - SHRINK_STEP * (float)j * range;
      float m = qn_round_f16(a);
      try_params(w, imp, n, qmax, m, (b - m) / (float)qmax, &best, &best_e);
    }
  }
  for (int it = 0; it < REFITS; it++) {
    float m, s;
    if (!refit_params(w, imp, n, qmax, best, &m, &s)) break;
    try_params(w, imp, n, qmax, m, s, &best, &best_e);
  }
  return best;
}

float qn_sym_group_scale(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                         bool search) {
  float d = qn_sym_rtn_scale(Q, w, n);
  return search ? qn_sym_search_scale(Q, w, imp, n, d) : d;
}

qn_asym_params qn_asym_group_params(const float* w, const float* imp, int64_t n, int qmax,
                                    bool search) {
  qn_asym_params p = qn_asym_rtn_params(w, n, qmax);
  return search ? qn_asym_search_params(w, imp, n, qmax, p) : p;
}
