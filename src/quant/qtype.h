/* qtype.h: weight storage schemes (quant types) and their traits table.
 *
 * A weight matrix of rows x cols (out x in) in scheme T is stored as up to three arrays:
 *   payload  rows x row_bytes(T, cols)  bytes; each row starts on its own byte boundary
 *   scales   rows x n_groups(T, cols)   of T's scale dtype (fp16 or f32); NULL for float types
 *   zeros    rows x n_groups(T, cols)   of T's scale dtype (asymmetric types only, the group
 *                                       minimum); NULL otherwise
 * A group covers `group` consecutive columns of one row; the last group of a ragged row
 * (cols % group != 0) is shorter. Exact layouts per type: docs/FORMAT.md. */
#ifndef QN_QUANT_QTYPE_H
#define QN_QUANT_QTYPE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "quench.h"

typedef enum qn_qtype {
  QN_QTYPE_F32 = 0, /* plain float32 */
  QN_QTYPE_F16,     /* IEEE half */
  QN_QTYPE_BF16,    /* bfloat16 */
  QN_QTYPE_Q8_C,    /* int8, symmetric, one f32 scale per row ("int8-channel") */
  QN_QTYPE_Q8_G32,  /* int8, symmetric, fp16 scale per 32 columns */
  QN_QTYPE_Q8_G64,
  QN_QTYPE_Q8_G128,
  QN_QTYPE_Q4_G32, /* int4 [-8,7], symmetric, fp16 scale per 32 columns, 2 per byte */
  QN_QTYPE_Q4_G64,
  QN_QTYPE_Q4_G128,
  QN_QTYPE_Q4A_G32, /* uint4 [0,15], asymmetric: w = min + q * scale, fp16 scale + min */
  QN_QTYPE_Q4A_G64,
  QN_QTYPE_Q4A_G128,
  QN_QTYPE_F8_E4M3, /* OCP FP8 E4M3 codes, f32 scale per row */
  QN_QTYPE_F8_E5M2, /* OCP FP8 E5M2 codes, f32 scale per row */
  /* int8 activations (traits.act != QN_ACT_FLOAT): integer kernels, see kernels.h */
  QN_QTYPE_W8A8_STATIC,  /* weights as int8-channel; int8 activations, static per-tensor scale */
  QN_QTYPE_W8A8_DYNAMIC, /* weights as int8-channel; int8 activations, per-token scale */
  QN_QTYPE_W4A8,         /* weights as int4-g32; int8 activations, per-token scale */
  QN_QTYPE_Q3_G32,       /* int3 [-4,3], symmetric, fp16 scale per 32 columns, 3-bit bit stream */
  QN_QTYPE_Q3_G64,
  QN_QTYPE_Q3_G128,
  QN_QTYPE_COUNT
} qn_qtype;

/* What a scheme does with the activations it multiplies. */
typedef enum qn_act_kind {
  QN_ACT_FLOAT = 0,  /* weight-only: activations stay f32, weights dequantized on the fly */
  QN_ACT_I8_DYNAMIC, /* int8 activations, one scale per token computed at run time */
  QN_ACT_I8_STATIC,  /* int8 activations, one per-tensor scale fixed by calibration */
} qn_act_kind;

/* How a matrix's payload and scales are arranged in memory (and in .qnz files). */
typedef enum qn_layout {
  QN_LAYOUT_ROWS = 0, /* canonical: row-major rows, scales rows x n_groups (see above) */
  QN_LAYOUT_I8X16,    /* w8a8-*: 16-row x 4-column interleave for VNNI (quant/pack_i8.h) */
  QN_LAYOUT_I4X16,    /* w4a8: 16-row x 32-column nibble blocks for VNNI (quant/pack_i8.h) */
} qn_layout;

/* A weight matrix as kernels and the model see it. */
typedef struct qn_qtensor {
  qn_qtype type;
  int64_t rows;       /* output features */
  int64_t cols;       /* input features */
  const void* data;   /* payload: rows * row_bytes (ROWS) or the packed layout's bytes */
  const void* scales; /* rows * n_groups scale values (ROWS) or packed scales, or NULL */
  const void* zeros;  /* rows * n_groups minimums (asymmetric), or NULL */
  float act_scale;    /* QN_ACT_I8_STATIC: activation scale (int8 step), else 0 */
  qn_layout layout;   /* arrangement of data/scales; QN_LAYOUT_ROWS unless packed */
} qn_qtensor;

/* Options of the row quantizer. */
typedef struct qn_quant_opts {
  bool search;             /* error-minimising scale search instead of plain absmax */
  const float* importance; /* optional per-column weights for the search (NULL = uniform) */
  int n_threads;           /* worker threads for qn_quantize_matrix (<= 1: the caller only) */
} qn_quant_opts;

typedef struct qn_qtype_traits {
  const char* name;     /* scheme name users type: "int4-g32" */
  int payload_bits;     /* bits per weight in the payload (32, 16, 8, 4 or 3) */
  int group;            /* columns per scale; 0 = one scale per row; -1 = no scale */
  qn_dtype scale_dtype; /* dtype of scales and zeros */
  bool asymmetric;      /* has zeros (group minimums) */
  const char* kernels;  /* which kernels run it (for --list) */
  const char* accuracy; /* expected accuracy, in words (for --list) */
  const char* summary;  /* one line: what is stored (for --list) */
  float max_abs;        /* largest |w| the scheme accepts (its scale or payload range) */
  /* Dequantizes row r of w into out[cols]. */
  void (*dequant_row)(const qn_qtensor* w, int64_t r, float* out);
  /* Quantizes one row w[cols] into payload/scales/zeros (row-local pointers). */
  void (*quantize_row)(const float* w, int64_t cols, const qn_quant_opts* o, void* payload,
                       void* scales, void* zeros);
  qn_act_kind act; /* activation handling (last field: rows that omit it are weight-only) */
} qn_qtype_traits;

const qn_qtype_traits* qn_qtype_traits_of(qn_qtype t);
/* Looks a scheme up by name; returns -1 if unknown. */
int qn_qtype_from_name(const char* name);
/* Payload bytes of one row in the canonical layout (QN_LAYOUT_ROWS). */
uint64_t qn_qtype_row_bytes(qn_qtype t, int64_t cols);
/* Scale groups per row (0 for float types). */
int64_t qn_qtype_n_groups(qn_qtype t, int64_t cols);
/* Exact storage bits per weight for a rows x cols matrix, scales and zeros included. */
double qn_qtype_bpw(qn_qtype t, int64_t rows, int64_t cols);
/* Total bytes as stored (payload + scales + zeros) in the scheme's storage layout: the packed
 * layout, padding included, for w8a8-* / w4a8 (quant/pack_i8.h); 0 on overflow. Buffers for
 * the canonical layout quantizers write are rows * qn_qtype_row_bytes + scales instead. */
uint64_t qn_qtype_bytes(qn_qtype t, int64_t rows, int64_t cols);

/* Name of a layout as .qnz files record it ("rows", "i8x16", "i4x16"); NULL if invalid. */
const char* qn_layout_name(qn_layout l);
/* The layout named name, or -1 if unknown. */
int qn_layout_from_name(const char* name);

#endif
