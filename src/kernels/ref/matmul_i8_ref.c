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
 * must reproduce them as written (no FMA contraction, no reassociation across groups).
 *
 * Step 1 is the shared qn_i8_act (kernels/i8_act.h, qn_i8_act_quantize_ref); step 2 alone is
 * qn_matmul_i8_ref_acts. W may be in the canonical layout (rows read in place) or in its
 * packed layout (quant/pack_i8.h: each row gathered with qn_packed_row_codes into per-thread
 * scratch): the codes and scales are the same, so are the results, bit for bit. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/i8_act.h"
#include "kernels/kernels.h"
#include "quant/pack_i8.h"
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

/* Slack that lets the activation buffer start 64-byte aligned inside any float scratch. */
#define ALIGN_SLACK_FLOATS (QN_I8_ACT_ALIGN / sizeof(float))

static bool is_w4(const qn_qtensor* W) { return qn_qtype_traits_of(W->type)->payload_bits == 4; }

/* Groups of 32 columns (the w4a8 scale groups). */
static int64_t groups32(int64_t cols) { return (cols + 31) / 32; }

/* Bytes per thread of the row buffer: the row's int8 codes (packed W, or int4 codes to
 * decode) and, for packed w4a8, its fp16 scales; 0 for canonical w8a8 (read in place). */
static size_t row_bytes_per_thread(const qn_qtensor* W) {
  if (!is_w4(W) && W->layout == QN_LAYOUT_ROWS) return 0;
  size_t b = floats_for_bytes((size_t)W->cols) * sizeof(float); /* codes, float-aligned */
  if (W->layout == QN_LAYOUT_I4X16) b += 2 * (size_t)groups32(W->cols);
  return floats_for_bytes(b) * sizeof(float);
}

size_t qn_matmul_i8_acts_scratch_floats(const qn_qtensor* W, int n_threads) {
  size_t nt = (size_t)(n_threads > 0 ? n_threads : 1);
  return nt * row_bytes_per_thread(W) / sizeof(float);
}

size_t qn_matmul_i8_scratch_floats(const qn_qtensor* W, int n, int n_threads) {
  return ALIGN_SLACK_FLOATS + floats_for_bytes(qn_i8_act_bytes(n, W->cols)) +
         qn_matmul_i8_acts_scratch_floats(W, n_threads);
}

/* ---- step 1: activations --------------------------------------------------------------- */

typedef struct act_job {
  qn_i8_act* a;   /* destination (layout set by qn_i8_act_init) */
  const float* X; /* (n, cols) input tokens */
} act_job;

static void quantize_tokens(void* arg, int64_t t0, int64_t t1, int tid) {
  (void)tid;
  const act_job* j = arg;
  qn_i8_act_quantize_ref(j->a, j->X, t0, t1);
}

/* ---- step 2: rows ---------------------------------------------------------------------- */

typedef struct i8_job {
  const qn_qtensor* W;
  const qn_i8_act* a; /* quantized activations: n tokens, codes stride bytes apart */
  float* Y;           /* (n, rows) */
  uint8_t* rowbuf;    /* (n_threads, row_bytes) per-thread row buffers */
  size_t row_bytes;   /* bytes per thread in rowbuf */
} i8_job;

/* W8A8: int8 codes of row r (in place, or gathered from the packed layout), f32 row scale. */
static void rows_w8a8(void* arg, int64_t r0, int64_t r1, int tid) {
  const i8_job* j = arg;
  const qn_i8_act* a = j->a;
  const int64_t cols = j->W->cols, rows = j->W->rows;
  const bool packed = j->W->layout != QN_LAYOUT_ROWS;
  int8_t* buf = (int8_t*)(j->rowbuf + (size_t)tid * j->row_bytes);
  for (int64_t r = r0; r < r1; r++) {
    const int8_t* qw = buf;
    if (packed)
      qn_packed_row_codes(j->W, r, buf, NULL);
    else
      qw = (const int8_t*)qn_qtensor_row_data(j->W, r);
    /* canonical and I8X16 both keep one f32 scale per row at index r */
    const float d = qn_load_f32(j->W->scales, r);
    for (int t = 0; t < a->n; t++) {
      int32_t acc = qn_i8_dot(a->codes + (size_t)t * (size_t)a->stride, qw, cols);
      float sd = a->scale[t] * d;
      j->Y[(size_t)t * (size_t)rows + (size_t)r] = (float)acc * sd;
    }
  }
}

/* int4 codes of canonical row r (column 2k in the low nibble of byte k) as int8 in [-8, 7]. */
static void decode_q4_row(const qn_qtensor* W, int64_t r, int8_t* out) {
  const uint8_t* p = qn_qtensor_row_data(W, r);
  for (int64_t c = 0; c < W->cols; c++)
    out[c] = (int8_t)((int)((p[c >> 1] >> ((c & 1) * 4)) & 15u) - 8);
}

/* W4A8: int4 codes, fp16 scale per group; float sum over groups in group order. */
static void rows_w4a8(void* arg, int64_t r0, int64_t r1, int tid) {
  const i8_job* j = arg;
  const qn_i8_act* a = j->a;
  const int64_t cols = j->W->cols, rows = j->W->rows;
  const int64_t G = qn_qtype_traits_of(j->W->type)->group;
  const bool packed = j->W->layout != QN_LAYOUT_ROWS;
  uint8_t* buf = j->rowbuf + (size_t)tid * j->row_bytes;
  int8_t* qw = (int8_t*)buf;
  /* packed: the row's fp16 scales are gathered after its codes */
  uint16_t* s16 = (uint16_t*)(void*)(buf + floats_for_bytes((size_t)cols) * sizeof(float));
  for (int64_t r = r0; r < r1; r++) {
    const void* ds = s16;
    if (packed) {
      qn_packed_row_codes(j->W, r, qw, s16);
    } else {
      decode_q4_row(j->W, r, qw);
      ds = qn_qtensor_row_scales(j->W, r);
    }
    for (int t = 0; t < a->n; t++) {
      const int8_t* qx = a->codes + (size_t)t * (size_t)a->stride;
      float sum = 0.0f;
      for (int64_t g0 = 0, k = 0; g0 < cols; g0 += G, k++) {
        int64_t len = cols - g0 < G ? cols - g0 : G;
        int32_t acc = qn_i8_dot(qx + g0, qw + g0, len);
        float p = (float)acc * qn_load_f16(ds, k);
        sum = sum + p;
      }
      j->Y[(size_t)t * (size_t)rows + (size_t)r] = sum * a->scale[t];
    }
  }
}

void qn_matmul_i8_ref_acts(qn_pool* pool, const qn_qtensor* W, const qn_i8_act* a, float* Y,
                           float* scratch) {
  i8_job j = {W, a, Y, (uint8_t*)scratch, row_bytes_per_thread(W)};
  qn_pool_for(pool, W->rows, 16, is_w4(W) ? rows_w4a8 : rows_w8a8, &j);
}

void qn_matmul_i8_ref(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                      float* scratch) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(W->type);
  /* the activations first, 64-byte aligned inside the scratch; the row buffers after them */
  uintptr_t at = ((uintptr_t)scratch + QN_I8_ACT_ALIGN - 1) & ~(uintptr_t)(QN_I8_ACT_ALIGN - 1);
  void* act_buf = (void*)at;
  float* rows_scratch =
      scratch + ALIGN_SLACK_FLOATS + floats_for_bytes(qn_i8_act_bytes(n, W->cols));
  float static_scale = tr->act == QN_ACT_I8_STATIC ? qn_i8_valid_scale(W->act_scale) : 0.0f;
  qn_i8_act a;
  qn_i8_act_init(&a, act_buf, n, W->cols, static_scale);
  act_job aj = {&a, X};
  qn_pool_for(pool, n, 4, quantize_tokens, &aj);
  qn_matmul_i8_ref_acts(pool, W, &a, Y, rows_scratch);
}
