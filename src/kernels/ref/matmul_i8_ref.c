/* matmul_i8_ref.c: the reference integer matrix product of the schemes with int8
 * activations (w8a8-static, w8a8-dynamic, w4a8). This is the spec that SIMD and CUDA kernels
 * are tested against bit for bit, so every float operation is written out here in order
 * (all f32, IEEE round to nearest even; docs/QUANTIZATION.md says the same):
 *
 * 1. Once per call, every token t is quantized (in parallel over tokens):
 *      amax = max_c |x_c|                       exact; a NaN never compares greater
 *      s    = static ? act_scale : amax / 127   one f32 division
 *      s    = 1 unless s >= FLT_MIN             all-zero token, scale underflowing to zero or
 *                                               a subnormal, NaN; +inf is kept
 *      qx_c = clamp(rintf(x_c / s), -127, 127)  one f32 division (not a multiply by 1/s),
 *                                               rintf in the default mode: ties to even;
 *                                               NaN -> 0. The weight quantizer's own rule.
 * 2. For each weight row r (in parallel over rows) and token t:
 *    W8A8 (int8 codes qw_c, f32 row scale d_r):
 *      acc = sum_c qx_c * qw_c                  int32, exact: |acc| <= 127 * 127 * cols
 *      y   = (float)acc * (s * d_r)             acc rounded to f32, s * d_r rounded, then
 *                                               their product rounded
 *    W4A8 (int4 codes qw_c in [-8, 7], fp16 scale d_g per group of G columns, ragged last):
 *      acc_g = sum_{c in g} qx_c * qw_c         int32, exact
 *      sum = 0; for g in order: p = (float)acc_g * d_g; sum = sum + p
 *                                               product rounded, then the sum: two
 *                                               operations, never a fused multiply-add
 *      y   = sum * s
 * Integer sums are exact, so their order is free; the float steps are not, and fast kernels
 * must reproduce them as written (no FMA contraction, no reassociation across groups). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/quant_rows.h"

float qn_i8_token_scale(const float* x, int64_t cols) {
  float amax = 0.0f;
  for (int64_t c = 0; c < cols; c++) {
    float a = fabsf(x[c]);
    if (a > amax) amax = a;
  }
  return qn_i8_valid_scale(amax / 127.0f);
}

float qn_i8_valid_scale(float s) {
  return (s >= FLT_MIN) ? s : 1.0f; /* +inf passes (propagates); 0, subnormal, NaN -> 1 */
}

int8_t qn_i8_code(float x, float s) {
  float r = rintf(x / s);
  if (r > 127.0f) return 127;
  if (r < -127.0f) return -127;
  if (r != r) return 0; /* NaN */
  return (int8_t)r;
}

void qn_i8_quantize_row(const float* x, int64_t cols, float s, int8_t* q) {
  for (int64_t c = 0; c < cols; c++) q[c] = qn_i8_code(x[c], s);
}

int32_t qn_i8_dot(const int8_t* a, const int8_t* b, int64_t n) {
  /* blocks of 16 with a fixed trip count let -O2 vectorize; integer sums are exact, so the
   * grouping does not change the result */
  int32_t acc = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32_t part = 0;
    for (int k = 0; k < 16; k++) part += (int32_t)a[i + k] * (int32_t)b[i + k];
    acc += part;
  }
  for (; i < n; i++) acc += (int32_t)a[i] * (int32_t)b[i];
  return acc;
}

/* ---- scratch layout ------------------------------------------------------------------ */

/* Floats taken by b bytes. */
static size_t floats_for_bytes(size_t b) { return (b + sizeof(float) - 1) / sizeof(float); }

/* Floats per thread of the decoded int4 row (w4a8 only; 0 otherwise). */
static size_t wrow_floats(const qn_qtensor* W) {
  return qn_qtype_traits_of(W->type)->payload_bits == 4 ? floats_for_bytes((size_t)W->cols) : 0;
}

size_t qn_matmul_i8_scratch_floats(const qn_qtensor* W, int n, int n_threads) {
  size_t nt = (size_t)(n_threads > 0 ? n_threads : 1);
  return (size_t)n + floats_for_bytes((size_t)n * (size_t)W->cols) + nt * wrow_floats(W);
}

/* ---- step 1: activations --------------------------------------------------------------- */

typedef struct act_job {
  const float* X;     /* n x cols */
  int64_t cols;       /* features per token */
  float static_scale; /* > 0: every token uses it; 0: per-token absmax / 127 */
  float* sx;          /* (n) scale of each token */
  int8_t* qx;         /* (n, cols) codes */
} act_job;

static void quantize_tokens(void* arg, int64_t t0, int64_t t1, int tid) {
  (void)tid;
  const act_job* j = arg;
  for (int64_t t = t0; t < t1; t++) {
    const float* x = j->X + (size_t)t * (size_t)j->cols;
    float s =
        j->static_scale > 0.0f ? qn_i8_valid_scale(j->static_scale) : qn_i8_token_scale(x, j->cols);
    j->sx[t] = s;
    qn_i8_quantize_row(x, j->cols, s, j->qx + (size_t)t * (size_t)j->cols);
  }
}

/* ---- step 2: rows ---------------------------------------------------------------------- */

typedef struct i8_job {
  const qn_qtensor* W;
  int n;             /* tokens */
  const float* sx;   /* (n) activation scales */
  const int8_t* qx;  /* (n, cols) activation codes */
  float* Y;          /* (n, rows) */
  int8_t* wrows;     /* (n_threads, wrow_bytes) decoded int4 codes, w4a8 only */
  size_t wrow_bytes; /* bytes per thread in wrows */
} i8_job;

/* W8A8: int8 codes straight from the payload, one f32 scale per row. */
static void rows_w8a8(void* arg, int64_t r0, int64_t r1, int tid) {
  (void)tid;
  const i8_job* j = arg;
  const int64_t cols = j->W->cols, rows = j->W->rows;
  for (int64_t r = r0; r < r1; r++) {
    const int8_t* qw = (const int8_t*)qn_qtensor_row_data(j->W, r);
    const float d = qn_load_f32(qn_qtensor_row_scales(j->W, r), 0);
    for (int t = 0; t < j->n; t++) {
      int32_t acc = qn_i8_dot(j->qx + (size_t)t * (size_t)cols, qw, cols);
      float sd = j->sx[t] * d;
      j->Y[(size_t)t * (size_t)rows + (size_t)r] = (float)acc * sd;
    }
  }
}

/* int4 codes of row r (column 2k in the low nibble of byte k) as int8 in [-8, 7]. */
static void decode_q4_row(const qn_qtensor* W, int64_t r, int8_t* out) {
  const uint8_t* p = qn_qtensor_row_data(W, r);
  for (int64_t c = 0; c < W->cols; c++)
    out[c] = (int8_t)((int)((p[c >> 1] >> ((c & 1) * 4)) & 15u) - 8);
}

/* W4A8: int4 codes, fp16 scale per group; float sum over groups in group order. */
static void rows_w4a8(void* arg, int64_t r0, int64_t r1, int tid) {
  const i8_job* j = arg;
  const int64_t cols = j->W->cols, rows = j->W->rows;
  const int64_t G = qn_qtype_traits_of(j->W->type)->group;
  int8_t* qw = j->wrows + (size_t)tid * j->wrow_bytes;
  for (int64_t r = r0; r < r1; r++) {
    decode_q4_row(j->W, r, qw);
    const void* ds = qn_qtensor_row_scales(j->W, r);
    for (int t = 0; t < j->n; t++) {
      const int8_t* qx = j->qx + (size_t)t * (size_t)cols;
      float sum = 0.0f;
      for (int64_t g0 = 0, k = 0; g0 < cols; g0 += G, k++) {
        int64_t len = cols - g0 < G ? cols - g0 : G;
        int32_t acc = qn_i8_dot(qx + g0, qw + g0, len);
        float p = (float)acc * qn_load_f16(ds, k);
        sum = sum + p;
      }
      j->Y[(size_t)t * (size_t)rows + (size_t)r] = sum * j->sx[t];
    }
  }
}

void qn_matmul_i8_ref(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                      float* scratch) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(W->type);
  float* sx = scratch;
  int8_t* qx = (int8_t*)(scratch + n);
  int8_t* wrows = (int8_t*)(scratch + n + floats_for_bytes((size_t)n * (size_t)W->cols));
  float static_scale = tr->act == QN_ACT_I8_STATIC ? qn_i8_valid_scale(W->act_scale) : 0.0f;
  act_job aj = {X, W->cols, static_scale, sx, qx};
  qn_pool_for(pool, n, 4, quantize_tokens, &aj);
  i8_job j = {W, n, sx, qx, Y, wrows, wrow_floats(W) * sizeof(float)};
  qn_pool_for(pool, W->rows, 16, tr->payload_bits == 4 ? rows_w4a8 : rows_w8a8, &j);
}
