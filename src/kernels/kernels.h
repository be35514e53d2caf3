/* kernels.h: contracts of the compute kernels the model calls. Kernels never allocate;
 * callers pass scratch sized by the matching *_scratch_size() function.
 *
 * Matrix products follow the linear-layer convention: W is rows x cols (out x in),
 * X is n x cols (n tokens), Y = X W^T is n x rows. */
#ifndef QN_KERNELS_KERNELS_H
#define QN_KERNELS_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/threadpool.h"
#include "kernels/i8_act.h"
#include "quant/qtype.h"

/* Which implementation the dispatcher uses. Every level above REF also sends batched
 * float products (>= 8 tokens) to OpenBLAS sgemm. */
typedef enum qn_isa {
  QN_ISA_REF = 0, /* scalar reference, the spec; no BLAS */
  QN_ISA_AVX2,    /* AVX2 + FMA + F16C kernels */
  QN_ISA_AVX512,  /* AVX-512 F/BW/VL/DQ + VNNI (+ BF16) kernels */
} qn_isa;

/* The ISA chosen once per process: the best the CPU supports, or QN_ISA=ref|avx2|avx512
 * (a forced level the CPU lacks falls back to the best supported one below it). */
qn_isa qn_isa_active(void);
/* True when this CPU (and build) can run kernels of level isa. */
bool qn_isa_supported(qn_isa isa);
/* "ref", "avx2", "avx512". */
const char* qn_isa_name(qn_isa isa);
/* Forces a level for the rest of the process (tests and benchmarks compare levels);
 * returns the level actually set (the best supported one <= isa). */
qn_isa qn_isa_force(qn_isa isa);
/* The level of the element-wise ops and attention (RMSNorm, softmax, SwiGLU, per-head and
 * block attention): qn_isa_active() unless qn_isa_force_ops set one. Tests use it to swap
 * only the products between levels: for the integer schemes, whose products are bit-exact on
 * every level, the whole model's logits must then be bit-identical. */
qn_isa qn_isa_ops(void);
/* Pins the ops' level (the best supported one <= isa; returned), or with isa < 0 lets it
 * follow qn_isa_active() again (returns -1). */
int qn_isa_force_ops(int isa);

/* Scratch floats qn_matmul needs for W with n tokens on a pool of n_threads. */
size_t qn_matmul_scratch_floats(const qn_qtensor* W, int n, int n_threads);

/* Y[n x rows] = X[n x cols] W^T through the active ISA. */
void qn_matmul(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y, float* scratch);

/* The scalar reference: dequantizes each row of W (into scratch, cols floats per thread)
 * and takes dot products in float, summed in column order. */
void qn_matmul_ref(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                   float* scratch);

/* Rows the batched path dequantizes at once: about 4M floats, at least 64 rows. */
int qn_blas_row_block(const qn_qtensor* W);

/* Threads OpenBLAS may use (process-wide; the model sets its pool size so -t holds for
 * sgemm too). */
void qn_blas_set_threads(int n_threads);

/* Batched path: dequantizes blocks of rows to f32 and calls sgemm. */
void qn_matmul_blas(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                    float* scratch);

/* Batches of at least this many tokens send f32/f16/bf16 products to sgemm (levels above
 * ref), as well as float-activation products no SIMD kernel takes; quantized schemes with
 * a SIMD kernel have their own crossover (qn_fx_blas_min_tokens, kernels/x86/x86_kernels.h). */
#define QN_BLAS_MIN_TOKENS 8

/* ---- fused products: several matrices on one input, the input's producer in front ----
 * qn_matmul_fused runs op->pre on every token (writing op->in), then Y[i] = in W[i]^T for
 * the nw (<= QN_MULTI_MAX) matrices, all with op->in's width as cols. Int8-activation
 * matrices sharing one activation scale quantize the input once (per token, right after
 * the pre-op), and the row loops of all matrices run in one parallel call. */
#define QN_MULTI_MAX 3

typedef enum qn_fused_pre {
  QN_PRE_NONE = 0, /* op->in is the input as given */
  QN_PRE_RMSNORM,  /* in[t] = rmsnorm(x[t]) * norm_w */
  QN_PRE_SWIGLU,   /* in[t] = silu(in[t]) * up[t] (in place) */
} qn_fused_pre;

typedef struct qn_fused_op {
  qn_fused_pre pre;    /* the producer of the input rows */
  const float* x;      /* RMSNORM: (n, cols) rows to normalise */
  const float* norm_w; /* RMSNORM: (cols) weights */
  float eps;           /* RMSNORM: epsilon */
  const float* up;     /* SWIGLU: (n, cols) up projections */
  float* in;           /* (n, cols) the input rows (written unless pre is NONE) */
} qn_fused_op;

/* The unfused route (integer reference for int8 activations; sgemm for float batches when
 * the level is above REF; else the float reference) and its scratch. */
size_t qn_matmul_basic_scratch_floats(const qn_qtensor* W, int n, int n_threads);
void qn_matmul_basic(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                     float* scratch);

/* Scratch floats qn_matmul_fused / qn_matmul need for W (any of the nw) with n tokens. */
size_t qn_matmul_multi_scratch_floats(const qn_qtensor* W, int n, int n_threads);
void qn_matmul_fused(qn_pool* pool, const qn_fused_op* op, const qn_qtensor* const* W, int nw,
                     int n, float* const* Y, float* scratch);

/* Element-wise ops and one attention head through the active ISA (contracts of the _ref
 * versions below). */
void qn_rmsnorm(float* out, const float* x, const float* w, int n, float eps);
void qn_swiglu(float* gate, const float* up, int64_t n);
void qn_softmax(float* x, int n);
void qn_attn_head(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                  int head_dim, float scale, float* att, float* out);
/* n_q query heads that share one key/value head (grouped-query attention): q and out are
 * n_q x head_dim (head after head), att n_q x n_pos scratch (head i's probabilities at
 * att + i * n_pos). Every head's result is bit-identical to qn_attn_head at the same level;
 * the AVX-512 level reads each chunk of keys and values once for all n_q heads. */
void qn_attn_heads(const float* q, int n_q, const float* k, const float* v, size_t kv_stride,
                   int n_pos, int head_dim, float scale, float* att, float* out);

/* ---- schemes with int8 activations (traits->act != QN_ACT_FLOAT) ---- */

/* Largest cols for which an int8 x int8 row sum cannot overflow int32
 * (127 * 127 * cols <= INT32_MAX); weights of these schemes are refused beyond it. */
#define QN_I8_MAX_COLS 133143

/* Scratch floats qn_matmul_i8_ref needs: a qn_i8_act of n tokens (qn_i8_act_bytes, placed
 * 64-byte aligned inside the scratch) plus qn_matmul_i8_acts_scratch_floats. */
size_t qn_matmul_i8_scratch_floats(const qn_qtensor* W, int n, int n_threads);
/* Scratch floats qn_matmul_i8_ref_acts needs: one row buffer per thread (the row's int8
 * codes when W is packed or int4, + its fp16 scales for packed w4a8); 0 for canonical w8a8. */
size_t qn_matmul_i8_acts_scratch_floats(const qn_qtensor* W, int n_threads);

/* The integer reference (the spec for SIMD/CUDA kernels, bit for bit): quantizes each token
 * of X to int8 once (scale W->act_scale for QN_ACT_I8_STATIC, absmax/127 per token for
 * QN_ACT_I8_DYNAMIC), then per row and token sums int8 x int8 products in int32 and scales
 * the sum(s) in float in the exact order documented in matmul_i8_ref.c and
 * docs/QUANTIZATION.md. W->cols <= QN_I8_MAX_COLS. Parallel over tokens, then rows. */
void qn_matmul_i8_ref(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                      float* scratch);
/* Step 2 of qn_matmul_i8_ref alone: Y[a->n x rows] from activations already quantized into a
 * (qn_i8_act_quantize_*, a->cols == W->cols) and W in either layout, in parallel over rows.
 * Lets one quantization of a batch feed several matrices (q/k/v, gate/up). scratch:
 * qn_matmul_i8_acts_scratch_floats(W, qn_pool_size(pool)) floats. */
void qn_matmul_i8_ref_acts(qn_pool* pool, const qn_qtensor* W, const qn_i8_act* a, float* Y,
                           float* scratch);

/* Building blocks of qn_matmul_i8_ref, exposed so tests and other kernels share them: */
/* s if s >= FLT_MIN (+inf included), else 1 (zero, subnormal or NaN scale). */
float qn_i8_valid_scale(float s);
/* Dynamic scale of one token: qn_i8_valid_scale(max_c |x_c| / 127). */
float qn_i8_token_scale(const float* x, int64_t cols);
/* Code of x at scale s: clamp(rintf(x / s), -127, 127) (ties to even), NaN -> 0. */
int8_t qn_i8_code(float x, float s);
/* q[c] = qn_i8_code(x[c], s) for c < cols. */
void qn_i8_quantize_row(const float* x, int64_t cols, float s, int8_t* q);
/* sum_i a[i] * b[i] in int32 (n <= QN_I8_MAX_COLS, so it cannot overflow). */
int32_t qn_i8_dot(const int8_t* a, const int8_t* b, int64_t n);

/* ---- attention ---- */

/* Causal attention of one head for n consecutive queries at positions p0 .. p0+n-1 of one
 * sequence, over keys/values at positions 0 .. p0+n-1:
 *   out[t] = softmax_j<=p0+t (scale * q[t] . k[j]) v[j]
 * q rows are q_stride floats apart, k/v rows kv_stride apart, out rows out_stride apart
 * (each row holds this head's head_dim values at its start). scratch: n * (p0 + n) floats.
 * Uses two sgemm calls; the per-token loop in model/forward.c is the reference. */
void qn_attention_causal_blas(const float* q, int q_stride, const float* k, const float* v,
                              int kv_stride, int n, int p0, int head_dim, float scale, float* out,
                              int out_stride, float* scratch);

/* One query head of one token over n_pos cached positions 0..n_pos-1:
 *   att[j] = scale * q . k_j;  softmax(att);  out = sum_j att[j] v_j
 * k and v point at position 0 of this head's keys/values, rows kv_stride floats apart;
 * att has n_pos floats of scratch. The reference for the SIMD versions. */
void qn_attn_head_ref(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                      int head_dim, float scale, float* att, float* out);

/* ---- element-wise and normalisation ops (reference) ---- */

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], for one row of length n. */
void qn_rmsnorm_ref(float* out, const float* x, const float* w, int n, float eps);
/* In-place softmax of x[n]. */
void qn_softmax_ref(float* x, int n);
/* gate[i] = silu(gate[i]) * up[i]. */
void qn_swiglu_ref(float* gate, const float* up, int64_t n);

#endif
