/* fx_common.c: the ISA-independent part of the weight-only x86 kernels (float activations,
 * src/kernels/x86/{avx2,avx512}/matvec_*.c): which schemes they cover and how many floats of
 * per-call activation preprocessing ("prep") they need. Compiled without ISA flags, so the
 * dispatcher may call it on any x86-64 CPU.
 *
 * Prep layout (shared by the AVX2 and AVX-512 kernels): int4-gN has its own (fx_q4.h);
 * int4a-gN uses this one: each token's activations are cut into 32-column chunks and
 * de-interleaved inside each chunk,
 *   prep[t * P + 32 j + i]      = x[t][32 j + 2 i]      (even columns, i < 16)
 *   prep[t * P + 32 j + 16 + i] = x[t][32 j + 2 i + 1]  (odd columns)
 * with P = cols rounded up to 32 and zeros past cols, so the low nibbles of 16 payload bytes
 * (even columns) and their high nibbles (odd columns) each meet one contiguous vector of
 * activations without a shuffle. */
#include <limits.h>

#include "kernels/kernels.h"
#include "kernels/x86/fx_kind.h"
#include "kernels/x86/fx_q4.h"
#include "kernels/x86/x86_kernels.h"

bool qn_fx_supports(qn_qtype t) { return qn_fx_kind_of(t) != FX_NONE; }

bool qn_fx_handles(const qn_qtensor* W) {
  const fx_kind k = qn_fx_kind_of(W->type);
  if (k == FX_NONE) return false;
  return W->layout == (k == FX_Q4 ? QN_LAYOUT_I4X16 : QN_LAYOUT_ROWS);
}

int qn_fx_blas_min_tokens(qn_qtype t) {
  switch (qn_fx_kind_of(t)) {
    case FX_F32:
    case FX_F16:
    case FX_BF16: return QN_BLAS_MIN_TOKENS;
    case FX_Q4A:
    case FX_Q3:
    case FX_E4M3:
    case FX_E5M2: return QN_FX_BLAS_SLOW_DECODE;
    default: return INT_MAX;
  }
}

size_t qn_fx_prep_floats(const qn_qtensor* W, int n) {
  const fx_kind k = qn_fx_kind_of(W->type);
  if (!qn_fx_uses_prep(k) || n <= 0 || W->cols <= 0) return 0;
  if (k == FX_Q4)
    return q4i_token_bytes(W->cols, qn_qtype_n_groups(W->type, W->cols)) / sizeof(float) *
           (size_t)n;
  return ((size_t)W->cols + 31) / 32 * 32 * (size_t)n;
}
