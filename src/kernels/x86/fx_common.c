/* fx_common.c: the ISA-independent part of the weight-only x86 kernels (float activations,
 * src/kernels/x86/{avx2,avx512}/matvec_*.c): which schemes they cover and how many floats of
 * per-call activation preprocessing ("prep") they need. Compiled without ISA flags, so the
 * dispatcher may call it on any x86-64 CPU.
 *
 * Prep layout (shared by the AVX2 and AVX-512 kernels): only the int4 schemes use it. Each
 * token's activations are cut into 32-column chunks and de-interleaved inside each chunk,
 *   prep[t * P + 32 j + i]      = x[t][32 j + 2 i]      (even columns, i < 16)
 *   prep[t * P + 32 j + 16 + i] = x[t][32 j + 2 i + 1]  (odd columns)
 * with P = cols rounded up to 32 and zeros past cols, so the low nibbles of 16 payload bytes
 * (even columns) and their high nibbles (odd columns) each meet one contiguous vector of
 * activations without a shuffle. */
#include "kernels/x86/x86_kernels.h"

bool qn_fx_supports(qn_qtype t) {
  switch (t) {
    case QN_QTYPE_F32:
    case QN_QTYPE_F16:
    case QN_QTYPE_BF16:
    case QN_QTYPE_Q8_C:
    case QN_QTYPE_Q8_G32:
    case QN_QTYPE_Q8_G64:
    case QN_QTYPE_Q8_G128:
    case QN_QTYPE_Q4_G32:
    case QN_QTYPE_Q4_G64:
    case QN_QTYPE_Q4_G128:
    case QN_QTYPE_Q4A_G32:
    case QN_QTYPE_Q4A_G64:
    case QN_QTYPE_Q4A_G128:
    case QN_QTYPE_F8_E4M3:
    case QN_QTYPE_F8_E5M2:
    case QN_QTYPE_Q3_G32:
    case QN_QTYPE_Q3_G64:
    case QN_QTYPE_Q3_G128: return true;
    default: return false;
  }
}

size_t qn_fx_prep_floats(const qn_qtensor* W, int n) {
  switch (W->type) {
    case QN_QTYPE_Q4_G32:
    case QN_QTYPE_Q4_G64:
    case QN_QTYPE_Q4_G128:
    case QN_QTYPE_Q4A_G32:
    case QN_QTYPE_Q4A_G64:
    case QN_QTYPE_Q4A_G128: {
      if (n <= 0 || W->cols <= 0) return 0;
      size_t padded = ((size_t)W->cols + 31) / 32 * 32;
      return padded * (size_t)n;
    }
    default: return 0;
  }
}
