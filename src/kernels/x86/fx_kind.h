/* fx_kind.h: the kernel families of the weight-only x86 kernels (float activations): every
 * scheme with a kernel maps onto one family, shared by the AVX2 and AVX-512 files (each
 * compiles these inline functions with its own flags) and fx_common.c. */
#ifndef QN_KERNELS_X86_FX_KIND_H
#define QN_KERNELS_X86_FX_KIND_H

#include <stdbool.h>

#include "quant/qtype.h"

typedef enum fx_kind {
  FX_F32 = 0,
  FX_F16,
  FX_BF16,
  FX_Q8C,  /* int8-channel */
  FX_Q8G,  /* int8-gN */
  FX_Q4,   /* int4-gN */
  FX_Q4A,  /* int4a-gN */
  FX_E4M3, /* fp8-e4m3 */
  FX_E5M2, /* fp8-e5m2 */
  FX_Q3,   /* int3-gN */
  FX_KINDS,
  FX_NONE = -1 /* no weight-only x86 kernel (int8-activation schemes) */
} fx_kind;

static inline fx_kind qn_fx_kind_of(qn_qtype t) {
  switch (t) {
    case QN_QTYPE_F32: return FX_F32;
    case QN_QTYPE_F16: return FX_F16;
    case QN_QTYPE_BF16: return FX_BF16;
    case QN_QTYPE_Q8_C: return FX_Q8C;
    case QN_QTYPE_Q8_G32:
    case QN_QTYPE_Q8_G64:
    case QN_QTYPE_Q8_G128: return FX_Q8G;
    case QN_QTYPE_Q4_G32:
    case QN_QTYPE_Q4_G64:
    case QN_QTYPE_Q4_G128: return FX_Q4;
    case QN_QTYPE_Q4A_G32:
    case QN_QTYPE_Q4A_G64:
    case QN_QTYPE_Q4A_G128: return FX_Q4A;
    case QN_QTYPE_F8_E4M3: return FX_E4M3;
    case QN_QTYPE_F8_E5M2: return FX_E5M2;
    case QN_QTYPE_Q3_G32:
    case QN_QTYPE_Q3_G64:
    case QN_QTYPE_Q3_G128: return FX_Q3;
    default: return FX_NONE;
  }
}

/* int4a reads de-interleaved float activations (the prep of fx_common.c); int4 its own
 * 16-bit activations (fx_q4.h). */
static inline bool qn_fx_uses_prep(fx_kind k) { return k == FX_Q4 || k == FX_Q4A; }

#endif
