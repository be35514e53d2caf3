/* scale_search.h: choosing a group's scale (and minimum), by plain absmax round-to-nearest
 * (RTN) or by the error-minimising search, plus the code/value rules both share.
 *
 * Symmetric schemes store codes c and one scale d per group: w ~ c * d. Integer codes are
 * c = clamp(rint(w / d), qmin, qmax); FP8 codes are the FP8 value nearest w / d.
 * Asymmetric schemes store q in [0, qmax], a scale s and a minimum m: w ~ m + q * s.
 * Every scale handed around here is already a *stored* value (exactly representable in the
 * scheme's scale dtype), so the error measured during the search is the error of the file.
 * The math is written out in docs/QUANTIZATION.md. */
#ifndef QN_QUANT_SCALE_SEARCH_H
#define QN_QUANT_SCALE_SEARCH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/fp8.h"
#include "core/half.h"

/* How a symmetric scheme turns a value into a code. */
typedef enum qn_code_kind {
  QN_CODE_INT = 0, /* integer codes in [qmin, qmax] */
  QN_CODE_E4M3,    /* FP8 E4M3 codes */
  QN_CODE_E5M2,    /* FP8 E5M2 codes */
} qn_code_kind;

/* A symmetric quantizer: code set and scale storage. */
typedef struct qn_sym_quantizer {
  qn_code_kind kind; /* integer or FP8 codes */
  int qmin, qmax;    /* integer code range, e.g. [-127, 127] or [-8, 7] (QN_CODE_INT only) */
  float code_max;    /* largest code magnitude the absmax maps to: qmax, 448 or 57344 */
  bool fp16_scale;   /* scale stored as fp16 (else f32) */
} qn_sym_quantizer;

/* ---- stored scales ------------------------------------------------------------------- */

/* Nearest fp16 value of s (ties to even), as f32. */
static inline float qn_round_f16(float s) { return qn_f16_to_f32(qn_f32_to_f16(s)); }
/* Smallest fp16 value >= s, returned as its fp16 code (s finite, |s| <= 65504). */
uint16_t qn_f16_ceil(float s);
/* Largest fp16 value <= s, returned as its fp16 code (s finite, |s| <= 65504). */
uint16_t qn_f16_floor(float s);

/* ---- symmetric ----------------------------------------------------------------------- */

/* Integer code of x at scale d: clamp(rint(x / d), qmin, qmax); 0 when d == 0. */
static inline int qn_sym_int_code(const qn_sym_quantizer* Q, float x, float d) {
  if (d == 0.0f) return 0;
  float r = rintf(x / d);
  if (isnan(r)) return 0; /* only reachable through unvalidated direct row calls */
  if (r < (float)Q->qmin) return Q->qmin;
  if (r > (float)Q->qmax) return Q->qmax;
  return (int)r;
}

/* Value of the code x takes at scale d (the dequantized weight is this times d). */
static inline float qn_sym_code_value(const qn_sym_quantizer* Q, float x, float d) {
  if (d == 0.0f) return 0.0f;
  switch (Q->kind) {
    case QN_CODE_E4M3: return qn_fp8_e4m3_to_f32(qn_f32_to_fp8_e4m3(x / d));
    case QN_CODE_E5M2: return qn_fp8_e5m2_to_f32(qn_f32_to_fp8_e5m2(x / d));
    default: return (float)qn_sym_int_code(Q, x, d);
  }
}

/* The RTN scale of group w[n], as stored: absmax / code_max, rounded up to fp16 when the
 * scale is fp16 so that no value is clipped. When the code range is lopsided (int4
 * [-8, 7]) the value of largest magnitude maps to qmin, so d takes the opposite sign. */
float qn_sym_rtn_scale(const qn_sym_quantizer* Q, const float* w, int64_t n);

/* Importance-weighted squared error sum_i imp_i * (w_i - c_i * d)^2 (imp NULL = all 1). */
double qn_sym_error(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                    float d);

/* The error-minimising scale: tries d_rtn and the grid of candidates described in
 * docs/QUANTIZATION.md, refits the best by least squares, and returns the stored scale of
 * least qn_sym_error (d_rtn when nothing is strictly better). */
float qn_sym_search_scale(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                          float d_rtn);

/* The stored scale of group w[n]: the RTN scale, or the searched one when search is set. */
float qn_sym_group_scale(const qn_sym_quantizer* Q, const float* w, const float* imp, int64_t n,
                         bool search);

/* ---- asymmetric ---------------------------------------------------------------------- */

/* Code of x for minimum m and scale s: clamp(rint((x - m) / s), 0, qmax); 0 when s == 0. */
static inline int qn_asym_code(float x, float m, float s, int qmax) {
  if (s == 0.0f) return 0;
  float r = rintf((x - m) / s);
  if (isnan(r)) return 0;
  if (r < 0.0f) return 0;
  if (r > (float)qmax) return qmax;
  return (int)r;
}

/* The dequantized value of code q. */
static inline float qn_asym_value(float m, int q, float s) { return m + (float)q * s; }

/* A group's stored minimum and scale (fp16 values, as f32). */
typedef struct qn_asym_params {
  float min;   /* m: the value of code 0 */
  float scale; /* s: the step between codes, >= 0 */
} qn_asym_params;

/* RTN: m = min rounded down to fp16, s = (max - m) / qmax rounded up to fp16. */
qn_asym_params qn_asym_rtn_params(const float* w, int64_t n, int qmax);
/* Importance-weighted squared error of coding w[n] with p. */
double qn_asym_error(const float* w, const float* imp, int64_t n, int qmax, qn_asym_params p);
/* The error-minimising (m, s): a grid of shrunk [lo, hi] ranges plus a least-squares refit;
 * returns rtn when nothing is strictly better. */
qn_asym_params qn_asym_search_params(const float* w, const float* imp, int64_t n, int qmax,
                                     qn_asym_params rtn);
/* The stored (m, s) of group w[n]: RTN, or searched when search is set. */
qn_asym_params qn_asym_group_params(const float* w, const float* imp, int64_t n, int qmax,
                                    bool search);

#endif
