/* awq.h: AWQ, activation-aware weight quantization (Lin et al. 2023).
 *
 * A few input channels of a linear layer carry much larger activations than the rest; the
 * rounding error of the weights in those columns costs the most output error. AWQ scales
 * column j of W up by s_j before quantization and the input down by s_j, which is exact in
 * FP32 (W x = (W diag s)(x / s)) and gives the salient columns a finer effective grid:
 *   s_j = m_j^alpha / sqrt(max_k m_k^alpha * min_k m_k^alpha),   m_j = mean_t |x_tj|,
 * with alpha in [0, 1] searched per linear-layer input ("site") on the grid 0, 0.05 .. 1 to
 * minimise the output error of the site's layers on the calibration tokens,
 *   err(s) = sum over the site's weights W of || (Q(W diag s) diag(s)^-1 - W) X^T ||_F^2
 *          = sum_rows e G e^T,   e = a row of Q(W diag s) diag(s)^-1 - W,  G = X^T X / N * 2
 * (G is the GPTQ Hessian of the site, so every calibration token counts at no extra cost).
 * alpha = 0 is s = 1, plain round-to-nearest, so the chosen s never does worse on this
 * measure. The division by s is folded where it is exact, as for SmoothQuant (the qn_smooth
 * folds of smoothquant.h): into attn_norm (q/k/v), ffn_norm (gate/up), the rows of attn_v
 * (attn_output; under GQA s is shared by the query heads of a kv group: their mean |x| is
 * pooled), the rows of ffn_up (ffn_down) and output_norm (an untied head).
 *
 * The search also tries AutoAWQ's "duo" scales s_j = m_j^alpha / wm_j^(1 - alpha), wm_j the
 * mean over rows of |W_rj| relative to the max |W| of its group, and keeps the best of both.
 *
 * Then a clipping search per group: the group's range is shrunk to f times its own (f = 1,
 * 0.95 .. 0.5, then refined in steps of 0.01 around the best; symmetric schemes: [-f max|w|,
 * f max|w|], asymmetric ones: around the centre of [min, max]) before round-to-nearest, and
 * f minimises the group's output error
 * e_g G_gg e_g^T (G_gg: the group's diagonal block of G, i.e. the error weighted by the
 * activation energy and correlations of the group's channels); refinement passes then
 * re-choose each group's f for the whole row's error, cross terms between groups included
 * (qn_awq_clip_refine). The stored file is plain RTN of the clamped, scaled weights, so every
 * kernel runs it unchanged. An untied token embedding (a lookup, nothing to scale) gets the
 * clipping search with G = identity: each group's own squared error. */
#ifndef QN_CALIB_AWQ_H
#define QN_CALIB_AWQ_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "calib/gptq.h"
#include "calib/smoothquant.h"
#include "core/status.h"
#include "quant/qtype.h"
#include "quant/quantize_matrix.h"

/* alpha grid: 0, QN_AWQ_ALPHA_STEP, ..., 1 */
#define QN_AWQ_ALPHA_STEP 0.05
#define QN_AWQ_N_ALPHA 21
/* clip factors f = 1 - QN_AWQ_CLIP_STEP * k, k < QN_AWQ_N_CLIP (1.0 .. 0.5): every group
 * tries the coarse grid k = 0, QN_AWQ_CLIP_COARSE, ... (1.0, 0.95 .. 0.5), then the fine steps
 * within QN_AWQ_CLIP_COARSE - 1 of its best coarse one */
#define QN_AWQ_CLIP_STEP 0.01f
#define QN_AWQ_N_CLIP 51
#define QN_AWQ_CLIP_COARSE 5
/* passes of qn_awq_clip_refine the driver runs after the clipping search */
#define QN_AWQ_REFINE_PASSES 2
/* scales are clamped to [1 / QN_AWQ_MAX_S, QN_AWQ_MAX_S] */
#define QN_AWQ_MAX_S 1e4f
/* Calibration tokens AWQ runs when none are asked for. */
#define QN_AWQ_DEFAULT_TOKENS 20000

/* True when scheme t stores scales AWQ can work with (every integer/FP8 scheme with group or
 * row scales; float schemes are left alone). */
bool qn_awq_supports(qn_qtype t);

/* s[width] for one alpha from the per-channel mean |x| m[width]: s_j = m_j^alpha, or with
 * wm (the weights' per-channel mean relative magnitude, qn_awq_weight_mean) s_j = m_j^alpha /
 * wm_j^(1 - alpha) (AutoAWQ's "duo" scaling); then normalised by sqrt(max s * min s) and
 * clamped. pool > 1 (the attention output under GQA): channel h * head_dim + d shares its
 * scale with the other query heads of its kv group (pool heads each), from the mean of their
 * m (and wm). Zero entries use the smallest positive one. alpha = 0 without wm is s = 1. */
void qn_awq_scales(const float* m, const float* wm, int width, double alpha, int head_dim, int pool,
                   float* s);

/* Adds to acc[cols], per column, the sum over rows of |w| / max |w| of the column's clip group
 * in scheme t (divide by the total rows afterwards to get the mean). */
void qn_awq_weight_mean(qn_qtype t, const float* w, int64_t rows, int64_t cols, float* acc);

/* Scratch of qn_awq_layer_error / qn_awq_clip_search for rows x cols weights. */
typedef struct qn_awq_scratch {
  float* ws;     /* rows x cols: W diag s (then clamped) */
  float* deq;    /* rows x cols: dequantized */
  float* err;    /* rows x cols: the error e */
  float* eg;     /* rows x cols: e G */
  uint8_t* pay;  /* payload */
  uint8_t* scl;  /* scales */
  uint8_t* zer;  /* zeros */
  double* gerr;  /* rows x groups: error of the best clip so far */
  size_t cap;    /* floats each matrix buffer holds */
  int n_threads; /* threads of the row quantizer */
} qn_awq_scratch;

qn_status qn_awq_scratch_init(qn_awq_scratch* b, int64_t max_elems, int n_threads);
void qn_awq_scratch_free(qn_awq_scratch* b);

/* Round-to-nearest of w (rows x cols) in scheme t, dequantized into out. */
qn_status qn_awq_fake_quant(qn_qtype t, const float* w, int64_t rows, int64_t cols,
                            qn_awq_scratch* b, float* out);

/* The output error sum_rows e G e^T of quantizing w (rows x cols) with column scales s (NULL =
 * 1) and, when clip is non-NULL, the clip steps clip[rows x n_groups]; g is cols x cols.
 * INFINITY when the scaled weights cannot be stored in the scheme. */
qn_status qn_awq_layer_error(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const uint8_t* clip, const float* g, qn_awq_scratch* b, double* err);

/* Columns per clip group of scheme t (the row for one-scale-per-row schemes). */
int64_t qn_awq_clip_group(qn_qtype t, int64_t cols);

/* Chooses the clip step of every group of w diag(s) (rows x cols; s NULL = 1) minimising
 * the group's output error under g (NULL: the identity, each group's squared error):
 * clip[rows x n_groups] gets k (factor 1 - k * STEP). */
qn_status qn_awq_clip_search(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const float* g, qn_awq_scratch* b, uint8_t* clip);

/* Coordinate descent on the clip steps chosen by qn_awq_clip_search, for schemes with several
 * groups per row: the search picks each group's step for the group's own error e_g G_gg e_g^T,
 * but a row's output error e G e^T also has the cross terms 2 e_g G_gh e_h^T between its
 * groups, which cancel or add up where the input channels are correlated. Each pass visits
 * the groups in order and re-chooses the group's step (the same coarse grid and fine steps)
 * to minimise the whole row's error with the other groups held fixed, so the error never
 * rises. passes <= 0, or one group per row: nothing to do. */
qn_status qn_awq_clip_refine(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const float* g, int passes, qn_awq_scratch* b, uint8_t* clip);

/* Clamps every group of w (rows x cols) in place to its clipped range (see the top). */
void qn_awq_clip_apply(qn_qtype t, const uint8_t* clip, float* w, int64_t rows, int64_t cols);

/* ---- a whole model, layer by layer (awq_model.c) ---------------------------------------- */

/* The clip steps of one weight. */
typedef struct qn_awq_clip {
  char name[96];      /* canonical weight name */
  qn_qtype scheme;    /* scheme they were chosen for */
  int64_t rows, cols; /* logical shape */
  uint8_t* step;      /* rows x qn_awq_clip_group groups: clip step k, owned */
} qn_awq_clip;

typedef struct qn_awq_result {
  qn_smooth* sm;     /* the scales, in SmoothQuant's slot layout (fold with qn_smooth_apply);
                        sm->alpha: alpha chosen per site (-1: none); err_before / err_after:
                        relative output error of the site at alpha 0 and as chosen */
  double* err_final; /* [sm->n_slots] relative output error of the site's stored weights
                        (after clipping or GPTQ) */
  int8_t* family;    /* [sm->n_slots] scales chosen: 0 mean |x|, 1 duo, -1 none (s = 1) */
  qn_awq_clip* clip; /* [n_clip] clip steps per weight */
  int n_clip;
  qn_gptq_result gptq; /* awq+gptq: GPTQ's arrays of the scaled weights (else empty) */
  int64_t tokens;      /* calibration tokens used */
  double seconds;      /* wall time */
} qn_awq_result;

typedef struct qn_awq_model_opts {
  int64_t max_tokens; /* calibration tokens (0 = QN_AWQ_DEFAULT_TOKENS; fewer if the text is) */
  int ctx;            /* window length (0 = 512), capped by the model and QN_MAX_BATCH */
  bool no_clip;       /* skip the clipping search */
  bool gptq;          /* awq+gptq: GPTQ (options below) on the scaled weights, not clip + RTN */
  qn_gptq_opts gptq_opts;
  /* scheme of each weight by canonical name (the recipe) */
  qn_qtype (*scheme_of)(void* user, const char* name);
  void* scheme_user;
  int n_threads;           /* row-quantizer threads (0 = 1) */
  qn_progress_fn progress; /* stage "awq": layers done / n_layers (+ 1 for an untied head) */
  void* progress_user;
} qn_awq_model_opts;

/* Sequential AWQ over m (opened from the FP32 source), driven like GPTQ (gptq.h): the
 * residual stream of the calibration windows is held in memory and pushed through one block
 * at a time; each site's Hessian G and mean |x| are collected from the model whose earlier
 * layers are already quantized; its scales, clip steps (or GPTQ) are chosen; its weights are
 * then replaced by their quantized values (in the unscaled input space), so later sites see
 * the quantization of earlier ones. An untied output head is handled last (input:
 * output_norm of the final stream). m's weights are restored on return. */
qn_status qn_awq_model_run(struct qn_model* m, const char* calib_path, const qn_awq_model_opts* o,
                           qn_awq_result* out);
void qn_awq_result_free(qn_awq_result* r);

/* The run as a new JSON object (NULL when out of memory): tokens, gptq (bool), and
 * sites [{layer (-1: head), site, alpha, family ("mean" | "duo" | "none"), err_rtn, err_awq,
 * err_final}] with the relative output errors of the site's layers at alpha 0 (RTN), at the
 * chosen scales (before clipping) and as stored (after clipping or GPTQ). No timing, so the
 * same run writes the same file (the CLI prints the time). */
cJSON* qn_awq_summary_json(const qn_awq_result* r);

/* Quantizes the weight `name` (w: its f32 values after the folds of r->sm, rows x cols) as
 * AWQ chose: clamps a copy by its clip steps (in scratch, rows x cols floats) and quantizes
 * it by RTN into payload/scales/zeros; stats compare the result with w. *handled = false
 * (nothing done) when r has no clip steps for this name and scheme. */
qn_status qn_awq_quantize_matrix(const qn_awq_result* r, const char* name, qn_qtype t,
                                 const float* w, int64_t rows, int64_t cols,
                                 const qn_quant_opts* qo, void* payload, void* scales, void* zeros,
                                 float* scratch, qn_quant_stats* stats, bool* handled);

#endif
