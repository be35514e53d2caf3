/* dispatch.c: chooses the kernel implementation once per process; schemes with int8
 * activations always run the integer reference (their results are defined by it). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static qn_isa g_isa = (qn_isa)-1;

qn_isa qn_isa_active(void) {
  if ((int)g_isa < 0) {
    const char* e = getenv("QN_ISA");
    g_isa = (e && strcmp(e, "ref") == 0) ? QN_ISA_REF : QN_ISA_BLAS;
  }
  return g_isa;
}

const char* qn_isa_name(qn_isa isa) { return isa == QN_ISA_REF ? "ref" : "blas"; }

/* Below this many tokens the per-row reference is as fast as sgemm and needs no dequant
 * block; above it sgemm's blocking wins. */
#define QN_BLAS_MIN_TOKENS 8

/* Schemes with int8 activations always take the integer reference (never sgemm). */
static bool int8_activations(const qn_qtensor* W) {
  return qn_qtype_traits_of(W->type)->act != QN_ACT_FLOAT;
}

size_t qn_matmul_scratch_floats(const qn_qtensor* W, int n, int n_threads) {
  if (int8_activations(W)) return qn_matmul_i8_scratch_floats(W, n, n_threads);
  size_t ref = (size_t)W->cols * (size_t)(n_threads > 0 ? n_threads : 1);
  size_t blas = n >= QN_BLAS_MIN_TOKENS ? (size_t)W->cols * (size_t)qn_blas_row_block(W) : 0;
  return ref > blas ? ref : blas;
}

void qn_matmul(qn_pool* pool, const qn_qtensor* W, const float* X, int n, float* Y,
               float* scratch) {
  if (int8_activations(W))
    qn_matmul_i8_ref(pool, W, X, n, Y, scratch);
  else if (qn_isa_active() == QN_ISA_BLAS && n >= QN_BLAS_MIN_TOKENS)
    qn_matmul_blas(pool, W, X, n, Y, scratch);
  else
    qn_matmul_ref(pool, W, X, n, Y, scratch);
}
