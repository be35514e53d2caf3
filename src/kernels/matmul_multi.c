/* matmul_multi.c: products of several weight matrices with one input, with the op that
 * produces the input fused in front (RMSNorm for q/k/v and gate/up, SwiGLU for down):
 *   phase 1, parallel over tokens: the pre-op writes the float input row (observers and
 *            float kernels read it) and, when every matrix takes int8 activations at the
 *            same scale, quantizes that row while it is still in L1;
 *   phase 2, parallel over 16-row blocks of all matrices at once: one pool call for q, k
 *            and v together instead of three, so decode pays one synchronisation.
 * Matrices no SIMD kernel handles (and QN_ISA=ref) go through qn_matmul_basic one by one. */
#include <stdint.h>

#include "kernels/i8_act.h"
#include "kernels/kernels.h"
#include "kernels/x86/x86_kernels.h"

/* Rows per work item of phase 2 (the packed layouts' row block). */
#define ROWS_PER_ITEM 16
/* Phase 2 of products with at most this many tokens (memory-bound: decode and small
 * batches) hands out its items dynamically (chunks of at most a QN_MULTI_CHUNKS_PER_THREAD-th
 * of a worker's share), so a worker slowed by another process on its core does not hold up
 * the step; larger batches split statically (each worker's rows reuse the same activations). */
#define QN_MULTI_DYNAMIC_TOKENS 8
#define QN_MULTI_CHUNKS_PER_THREAD 8

typedef enum path {
  PATH_I8,    /* int8 activations, packed weights, SIMD rows */
  PATH_FX,    /* weight-only scheme, SIMD dequant-in-dot rows */
  PATH_OTHER, /* qn_matmul_basic (BLAS for batches, reference otherwise) */
} path;

static path path_of(const qn_qtensor* W, int n, qn_isa isa) {
#ifdef QN_HAVE_X86_KERNELS
  if (isa != QN_ISA_REF) {
    const qn_qtype_traits* tr = qn_qtype_traits_of(W->type);
    if (tr->act != QN_ACT_FLOAT) return W->layout != QN_LAYOUT_ROWS ? PATH_I8 : PATH_OTHER;
    if (qn_fx_handles(W) && n < qn_fx_blas_min_tokens(W->type)) return PATH_FX;
  }
#else
  (void)W;
  (void)n;
  (void)isa;
#endif
  return PATH_OTHER;
}

/* The activation scale a matrix quantizes its input with (0: per token). */
static float act_static_scale(const qn_qtensor* W) {
  return qn_qtype_traits_of(W->type)->act == QN_ACT_I8_STATIC ? qn_i8_valid_scale(W->act_scale)
                                                              : 0.0f;
}

typedef struct multi_job {
  qn_isa isa;                      /* active level */
  const qn_fused_op* op;           /* pre-op and input rows */
  int64_t cols;                    /* input features */
  qn_i8_act* act;                  /* shared int8 activations, or NULL (float kernels) */
  const qn_qtensor* const* W;      /* (nw) matrices */
  float* const* Y;                 /* (nw) outputs, (n, rows_i) each */
  const float* prep[QN_MULTI_MAX]; /* float kernels: per-matrix prepared activations */
  int nw;                          /* matrices */
  int n;                           /* tokens */
  int64_t item0[QN_MULTI_MAX + 1]; /* first phase-2 item of each matrix; item0[nw] = total */
} multi_job;

static void pre_tokens(void* arg, int64_t t0, int64_t t1, int tid) {
  (void)tid;
  const multi_job* j = arg;
  const qn_fused_op* op = j->op;
  for (int64_t t = t0; t < t1; t++) {
    float* row = op->in + (size_t)t * (size_t)j->cols;
    if (op->pre == QN_PRE_RMSNORM)
      qn_rmsnorm(row, op->x + (size_t)t * (size_t)j->cols, op->norm_w, (int)j->cols, op->eps);
    else if (op->pre == QN_PRE_SWIGLU)
      qn_swiglu(row, op->up + (size_t)t * (size_t)j->cols, j->cols);
  }
#ifdef QN_HAVE_X86_KERNELS
  if (j->act) {
    if (j->isa == QN_ISA_AVX512)
      qn_i8_act_quantize_avx512(j->act, op->in, t0, t1);
    else
      qn_i8_act_quantize_avx2(j->act, op->in, t0, t1);
  }
#endif
}

static void rows_items(void* arg, int64_t b, int64_t e, int tid) {
  (void)tid;
  const multi_job* j = arg;
#ifdef QN_HAVE_X86_KERNELS
  for (int i = 0; i < j->nw; i++) {
    int64_t lo = b > j->item0[i] ? b : j->item0[i];
    int64_t hi = e < j->item0[i + 1] ? e : j->item0[i + 1];
    if (lo >= hi) continue;
    const qn_qtensor* W = j->W[i];
    int64_t rb0 = lo - j->item0[i], rb1 = hi - j->item0[i];
    if (j->act) {
      if (j->isa == QN_ISA_AVX512)
        qn_i8_rows_avx512(W, j->act, j->Y[i], rb0, rb1);
      else
        qn_i8_rows_avx2(W, j->act, j->Y[i], rb0, rb1);
    } else {
      int64_t r0 = rb0 * ROWS_PER_ITEM, r1 = rb1 * ROWS_PER_ITEM;
      if (r1 > W->rows) r1 = W->rows;
      if (j->isa == QN_ISA_AVX512)
        qn_fx_rows_avx512(W, j->op->in, j->prep[i], j->n, j->Y[i], r0, r1);
      else
        qn_fx_rows_avx2(W, j->op->in, j->prep[i], j->n, j->Y[i], r0, r1);
    }
  }
#else
  (void)j;
  (void)b;
  (void)e;
#endif
}

/* Floats covering b bytes plus room to align the start to 64 bytes. */
static size_t aligned_floats(size_t bytes) {
  return (bytes + sizeof(float) - 1) / sizeof(float) + 16;
}

/* Largest prep any float scheme needs for a rows x cols matrix and n tokens. */
static size_t max_prep_floats(const qn_qtensor* W, int n) {
  size_t best = 0;
#ifdef QN_HAVE_X86_KERNELS
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    qn_qtensor q = *W;
    q.type = (qn_qtype)t;
    if (qn_qtype_traits_of(q.type)->act != QN_ACT_FLOAT || !qn_fx_supports(q.type)) continue;
    int most = qn_fx_blas_min_tokens(q.type) - 1; /* the largest batch the kernel takes */
    size_t f = qn_fx_prep_floats(&q, n < most ? n : most);
    if (f > best) best = f;
  }
#else
  (void)W;
  (void)n;
#endif
  return best;
}

size_t qn_matmul_multi_scratch_floats(const qn_qtensor* W, int n, int n_threads) {
  size_t act = aligned_floats(qn_i8_act_bytes(n, W->cols));
  size_t fx = (size_t)QN_MULTI_MAX * aligned_floats(max_prep_floats(W, n) * sizeof(float));
  return qn_matmul_basic_scratch_floats(W, n, n_threads) + (act > fx ? act : fx);
}

static float* align64(float* p) {
  uintptr_t u = (uintptr_t)p;
  return (float*)((u + 63u) & ~(uintptr_t)63u);
}

void qn_matmul_fused(qn_pool* pool, const qn_fused_op* op, const qn_qtensor* const* W, int nw,
                     int n, float* const* Y, float* scratch) {
  const qn_isa isa = qn_isa_active();
  multi_job j = {.isa = isa, .op = op, .cols = W[0]->cols, .W = W, .Y = Y, .nw = nw, .n = n};
  bool all_i8 = nw <= QN_MULTI_MAX, all_fx = nw <= QN_MULTI_MAX;
  for (int i = 0; i < nw; i++) {
    path p = path_of(W[i], n, isa);
    all_i8 = all_i8 && p == PATH_I8 && act_static_scale(W[i]) == act_static_scale(W[0]);
    all_fx = all_fx && p == PATH_FX;
  }
  /* scratch: [qn_matmul_basic's part | shared activations or float preps] */
  size_t head = 0;
  for (int i = 0; i < nw; i++) {
    size_t h = qn_matmul_basic_scratch_floats(W[i], n, qn_pool_size(pool));
    if (h > head) head = h;
  }
  float* tail = align64(scratch + head);
  qn_i8_act act;
  if (all_i8) {
    qn_i8_act_init(&act, tail, n, W[0]->cols, act_static_scale(W[0]));
    j.act = &act;
  }
  if (op->pre != QN_PRE_NONE || j.act) qn_pool_for(pool, n, 1, pre_tokens, &j);
  if (!all_i8 && !all_fx) {
    for (int i = 0; i < nw; i++) qn_matmul_basic(pool, W[i], op->in, n, Y[i], scratch);
    return;
  }
#ifdef QN_HAVE_X86_KERNELS
  float* p = tail;
  for (int i = 0; i < nw; i++) {
    if (all_fx && i > 0 && W[i]->type == W[i - 1]->type) {
      j.prep[i] = j.prep[i - 1]; /* same input and scheme: the same prep */
    } else if (all_fx) {
      if (isa == QN_ISA_AVX512)
        qn_fx_prep_avx512(W[i], op->in, n, p);
      else
        qn_fx_prep_avx2(W[i], op->in, n, p);
      j.prep[i] = p;
      p = align64(p + qn_fx_prep_floats(W[i], n));
    }
    j.item0[i + 1] = j.item0[i] + (W[i]->rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM;
  }
#endif
  const int64_t items = j.item0[nw];
  if (n <= QN_MULTI_DYNAMIC_TOKENS) {
    int64_t chunk = items / ((int64_t)qn_pool_size(pool) * QN_MULTI_CHUNKS_PER_THREAD);
    qn_pool_for_dynamic(pool, items, chunk, rows_items, &j);
  } else {
    qn_pool_for(pool, items, 1, rows_items, &j);
  }
}
