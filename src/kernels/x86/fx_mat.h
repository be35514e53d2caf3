/* fx_mat.h: what the x86 weight-only kernels of matvec_float_avx2.c and matvec_float_avx512.c
 * resolve once per call, independent of the ISA (fx_geom: the matrix's rows, chunks and
 * scale groups, and where the activations are read), and the call record their shared tile
 * walk (fx_tiles.h) hands back to them. Each ISA file defines struct fx_mat: an fx_geom plus
 * its own masks for the ragged last chunk. */
#ifndef QN_KERNELS_X86_FX_MAT_H
#define QN_KERNELS_X86_FX_MAT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/x86/fx_kind.h"
#include "quant/qtype.h"

typedef struct fx_geom {
  const uint8_t* data;   /* payload of row 0; rows are row_bytes apart */
  size_t row_bytes;      /* payload bytes per row */
  const uint8_t* scales; /* scales of row 0 (fp16 per group or one f32), or NULL */
  const uint8_t* zeros;  /* fp16 group minimums of row 0 (int4a), or NULL */
  size_t scale_bytes;    /* bytes of scales (and of zeros) per row */
  int64_t rows;          /* rows of W (the stride of Y between tokens) */
  int64_t full_chunks;   /* whole 32-column chunks per row */
  int64_t n_chunks;      /* chunks per row, the ragged one included */
  int64_t n_groups;      /* scale groups per row (grouped schemes) */
  int gshift;            /* log2 of the chunks per scale group (grouped schemes) */
  int rem;               /* columns in the ragged last chunk (0: none) */
  const float* xs;       /* activations as the kernel reads them: X, or the prep */
  size_t x_stride;       /* floats between tokens in xs */
  float* Y;              /* n x rows */
} fx_geom;

/* The geometry of W (cols > 0) of family kind for activations X (or their prep) into Y. */
static inline void fx_geom_init(fx_geom* g, fx_kind kind, const qn_qtensor* W, const float* X,
                                const float* prep, float* Y) {
  const int64_t cols = W->cols;
  const qn_qtype_traits* tr = qn_qtype_traits_of(W->type);
  g->data = W->data;
  g->row_bytes = (size_t)qn_qtype_row_bytes(W->type, cols);
  g->scales = W->scales;
  g->zeros = W->zeros;
  g->n_groups = qn_qtype_n_groups(W->type, cols);
  g->scale_bytes = (size_t)g->n_groups * (tr->scale_dtype == QN_DTYPE_F16 ? 2u : 4u);
  g->rows = W->rows;
  g->full_chunks = cols / 32;
  g->rem = (int)(cols % 32);
  g->n_chunks = g->full_chunks + (g->rem != 0);
  g->gshift = tr->group == 128 ? 2 : tr->group == 64 ? 1 : 0;
  g->xs = qn_fx_uses_prep(kind) ? prep : X;
  g->x_stride = qn_fx_uses_prep(kind) ? (size_t)g->n_chunks * 32 : (size_t)cols;
  g->Y = Y;
}

/* One call's matrix and family, for qn_fx_for_blocks. */
typedef struct fx_mat fx_mat;
typedef struct fx_call {
  const fx_mat* m; /* the resolved matrix */
  fx_kind kind;    /* its kernel family */
} fx_call;

#endif
