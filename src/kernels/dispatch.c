/* dispatch.c: chooses the kernel level once per process from the CPU's features (or
 * QN_ISA=ref|avx2|avx512) and routes single products and element-wise ops to it. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quench.h"
#include "kernels/x86/x86_kernels.h"

static qn_isa g_isa = (qn_isa)-1;
static int g_ops_isa = -1; /* level of the element-wise ops and attention; -1: g_isa's */

bool qn_isa_supported(qn_isa isa) {
  if (isa == QN_ISA_REF) return true;
#if defined(QN_HAVE_X86_KERNELS) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
  if (isa == QN_ISA_AVX2) return avx2;
  if (isa == QN_ISA_AVX512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
#endif
  return false;
}

qn_isa qn_isa_force(qn_isa isa) {
  while (isa > QN_ISA_REF && !qn_isa_supported(isa)) isa = (qn_isa)(isa - 1);
  g_isa = isa;
  return isa;
}

qn_isa qn_isa_active(void) {
  if ((int)g_isa < 0) {
    const char* e = getenv("QN_ISA");
    qn_isa want = QN_ISA_AVX512;
    if (e && strcmp(e, "ref") == 0) want = QN_ISA_REF;
    if (e && strcmp(e, "avx2") == 0) want = QN_ISA_AVX2;
    qn_isa_force(want);
  }
  return g_isa;
}

qn_isa qn_isa_ops(void) { return g_ops_isa < 0 ? qn_isa_active() : (qn_isa)g_ops_isa; }

int qn_isa_force_ops(int isa) {
  if (isa < 0) {
    g_ops_isa = -1;
    return -1;
  }
  qn_isa l = (qn_isa)(isa > QN_ISA_AVX512 ? QN_ISA_AVX512 : isa);
  while (l > QN_ISA_REF && !qn_isa_supported(l)) l = (qn_isa)(l - 1);
  g_ops_isa = (int)l;
  return g_ops_isa;
}

const char* qn_isa_name(qn_isa isa) {
  return isa == QN_ISA_AVX512 ? "avx512" : isa == QN_ISA_AVX2 ? "avx2" : "ref";
}

const char* qn_kernels_name(void) { return qn_isa_name(qn_isa_active()); }

static bool int8_activations(const qn_qtensor* W) {
  return qn_qtype_traits_of(W->type)->act != QN_ACT_FLOAT;
}

size_t qn_matmul_basic_scratch_floats(const qn_qtensor* W, int n, int n_threads) {
  if (int8_activations(W)) return qn_matmul_i8_scratch_floats(W, n, n_threads);
  size_t ref = (size_t)W->cols * (size_t)(n_threads > 0 ? n_threads : 1);
  size_t blas = n >= QN_BLAS_MIN_TOKENS ? (size_t)W->cols * (size_t)qn_blas_row_block(W) : 0;
  return ref > blas ? ref : blas;
}

void qn_matmul_basic(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
                     float* scratch) {
  if (int8_activations(W))
    qn_matmul_i8_ref(pool, W, X, n, Y, scratch);
  else if (qn_isa_active() != QN_ISA_REF && n >= QN_BLAS_MIN_TOKENS)
    qn_matmul_blas(pool, W, X, n, Y, scratch);
  else
    qn_matmul_ref(pool, W, X, n, Y, scratch);
}

size_t qn_matmul_scratch_floats(const qn_qtensor* W, int n, int n_threads) {
  return qn_matmul_multi_scratch_floats(W, n, n_threads);
}

void qn_matmul(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
               float* scratch) {
  qn_fused_op op = {.pre = QN_PRE_NONE, .in = (float*)X}; /* NONE: never written */
  qn_matmul_fused(pool, &op, &W, 1, n, &Y, scratch);
}

/* ---- element-wise ops and attention ---- */

void qn_rmsnorm(float* out, const float* x, const float* w, int n, float eps) {
#ifdef QN_HAVE_X86_KERNELS
  qn_isa isa = qn_isa_ops();
  if (isa == QN_ISA_AVX512) {
    qn_rmsnorm_avx512(out, x, w, n, eps);
    return;
  }
  if (isa == QN_ISA_AVX2) {
    qn_rmsnorm_avx2(out, x, w, n, eps);
    return;
  }
#endif
  qn_rmsnorm_ref(out, x, w, n, eps);
}

void qn_softmax(float* x, int n) {
#ifdef QN_HAVE_X86_KERNELS
  qn_isa isa = qn_isa_ops();
  if (isa == QN_ISA_AVX512) {
    qn_softmax_avx512(x, n);
    return;
  }
  if (isa == QN_ISA_AVX2) {
    qn_softmax_avx2(x, n);
    return;
  }
#endif
  qn_softmax_ref(x, n);
}

void qn_swiglu(float* gate, const float* up, int64_t n) {
#ifdef QN_HAVE_X86_KERNELS
  qn_isa isa = qn_isa_ops();
  if (isa == QN_ISA_AVX512) {
    qn_swiglu_avx512(gate, up, n);
    return;
  }
  if (isa == QN_ISA_AVX2) {
    qn_swiglu_avx2(gate, up, n);
    return;
  }
#endif
  qn_swiglu_ref(gate, up, n);
}

void qn_attn_head(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                  int head_dim, float scale, float* att, float* out) {
#ifdef QN_HAVE_X86_KERNELS
  qn_isa isa = qn_isa_ops();
  if (isa == QN_ISA_AVX512) {
    qn_attn_head_avx512(q, k, v, kv_stride, n_pos, head_dim, scale, att, out);
    return;
  }
  if (isa == QN_ISA_AVX2) {
    qn_attn_head_avx2(q, k, v, kv_stride, n_pos, head_dim, scale, att, out);
    return;
  }
#endif
  qn_attn_head_ref(q, k, v, kv_stride, n_pos, head_dim, scale, att, out);
}

void qn_attn_heads(const float* q, int n_q, const float* k, const float* v, size_t kv_stride,
                   int n_pos, int head_dim, float scale, float* att, float* out) {
#ifdef QN_HAVE_X86_KERNELS
  if (qn_isa_ops() == QN_ISA_AVX512) {
    qn_attn_heads_avx512(q, n_q, k, v, kv_stride, n_pos, head_dim, scale, att, out);
    return;
  }
#endif
  for (int i = 0; i < n_q; i++)
    qn_attn_head(q + (size_t)i * head_dim, k, v, kv_stride, n_pos, head_dim, scale,
                 att + (size_t)i * n_pos, out + (size_t)i * head_dim);
}
