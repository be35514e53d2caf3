/* gptq.h: GPTQ (Frantar et al. 2022) for one weight matrix. Given W (rows x cols) and the
 * Hessian H = 2/N sum x x^T of its inputs, columns are quantized one at a time and each
 * column's rounding error is pushed onto the columns not yet quantized through the upper
 * Cholesky factor U of H^-1 (H^-1 = U^T U): for column i of a row,
 *   q = Q(w_i),  e = (w_i - q) / U_ii,  w_j -= e * U_ij  (j > i),
 * with the updates to columns beyond the current block of 128 applied lazily per block
 * (one matrix product). Columns whose diag(H) is 0 (inputs always zero) are set to 0 with
 * H_ii = 1; lambda = damp * mean(diag H) is added to the diagonal. Group scales are computed
 * when a group starts from the group's current (error-updated) weights, so H = I gives
 * round-to-nearest exactly. With act_order the columns are visited by decreasing diag(H),
 * and the scales are fixed from the original groups beforehand ("static groups"), so the
 * stored layout (contiguous groups in column order) stays valid for every kernel.
 * Supported: the symmetric integer schemes (int8-channel, int8-gN, int4-gN, int3-gN, and the
 * weight storage of w8a8-* and w4a8). */
#ifndef QN_CALIB_GPTQ_H
#define QN_CALIB_GPTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/qtype.h"
#include "quench.h"

#define QN_GPTQ_DEFAULT_DAMP 0.01
#define QN_GPTQ_DEFAULT_BLOCK 128

typedef struct qn_gptq_opts {
  double damp;    /* lambda as a fraction of mean(diag H), >= 0 (QN_GPTQ_DEFAULT_DAMP) */
  int block;      /* lazy-update block width in columns (0 = QN_GPTQ_DEFAULT_BLOCK) */
  bool act_order; /* visit columns by decreasing diag(H); static group scales */
  bool search;    /* group scales by the error-minimising search (on the current weights) */
} qn_gptq_opts;

/* True when scheme t can be quantized by qn_gptq_quantize. */
bool qn_gptq_supports(qn_qtype t);

/* Quantizes w (rows x cols, row-major) with Hessian h (cols x cols, symmetric, row-major; not
 * modified) into the scheme's payload and scales (whole-matrix arrays, laid out as
 * qn_quantize_matrix writes them). On return w holds the dequantized weights, bit-exactly
 * what the stored codes decode to. Errors: QN_EUNSUPPORTED for other schemes, QN_EINVAL for
 * bad shapes or options, QN_ERANGE when H + lambda I is not positive definite even after
 * raising lambda, QN_ENOMEM. */
qn_status qn_gptq_quantize(qn_qtype t, float* w, int64_t rows, int64_t cols, const float* h,
                           const qn_gptq_opts* o, void* payload, void* scales);

/* ---- a whole model, layer by layer ---------------------------------------------------- */

/* Calibration tokens GPTQ runs when none are asked for: stored activations cost
 * tokens x dim floats. */
#define QN_GPTQ_DEFAULT_TOKENS 20000

/* One weight quantized by GPTQ: its stored arrays, laid out as qn_quantize_matrix writes. */
typedef struct qn_gptq_weight {
  char name[96];      /* canonical weight name ("blk.0.attn_q.weight") */
  qn_qtype scheme;    /* its scheme */
  int64_t rows, cols; /* logical shape */
  void* payload;      /* rows x row_bytes, owned */
  void* scales;       /* rows x n_groups scale values, owned */
} qn_gptq_weight;

typedef struct qn_gptq_result {
  qn_gptq_weight* w; /* [n] weights quantized by GPTQ, owned */
  int n;
  int64_t tokens; /* calibration tokens used */
  double seconds; /* wall time */
} qn_gptq_result;

typedef struct qn_gptq_model_opts {
  qn_gptq_opts gptq;  /* per-matrix options */
  int64_t max_tokens; /* calibration tokens (0 = QN_GPTQ_DEFAULT_TOKENS; fewer if the text is) */
  int ctx;            /* window length (0 = 512), capped by the model and QN_MAX_BATCH */
  /* scheme of each weight by canonical name (the recipe) */
  qn_qtype (*scheme_of)(void* user, const char* name);
  void* scheme_user;
  qn_progress_fn progress; /* stage "gptq": layers done / n_layers (+ 1 for the head) */
  void* progress_user;
} qn_gptq_model_opts;

struct qn_model;
/* Sequential GPTQ over the decoder blocks of m (opened from the FP32 source): the text at
 * calib_path runs through the model once to the first block; then for each block l, the
 * stored residual stream is pushed through block l to collect the inputs of q/k/v (whose
 * Hessian then drives their GPTQ), then, with the quantized q/k/v in place, of attn_output,
 * then of gate/up, then of down; finally the stream advances through the fully quantized
 * block. The output head comes last, with the Hessian of output_norm of the stream after the
 * last block; a tied head is recorded as "token_embd.weight" (the one tensor is both), an
 * untied token_embd is only looked up and left to the caller. Weights whose scheme GPTQ does
 * not support keep their FP32 values here (the caller quantizes them by RTN). m's weights are
 * restored on return. Memory: tokens x dim floats of activations plus one Hessian and one
 * weight at a time. */
qn_status qn_gptq_model_run(struct qn_model* m, const char* calib_path, const qn_gptq_model_opts* o,
                            qn_gptq_result* out);
void qn_gptq_result_free(qn_gptq_result* r);
/* The result for weight `name`, or NULL. */
const qn_gptq_weight* qn_gptq_result_find(const qn_gptq_result* r, const char* name);

#endif
