/* smoothquant.h: SmoothQuant. Activation outliers sit in a few input channels; dividing
 * channel j of a linear layer's input by s_j and multiplying column j of its weights by s_j
 * leaves the product unchanged and moves the outliers into the weights, which per-channel
 * int8 absorbs well:  s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)  (max|W_j| over the rows of
 * every linear reading that input). The division is folded where it is exact:
 *   ATTN_IN  1/s into attn_norm; s into the columns of attn_q, attn_k, attn_v
 *   FFN_IN   1/s into ffn_norm;  s into the columns of ffn_gate, ffn_up
 *   ATTN_OUT 1/s into the rows (and bias) of attn_v, s into the columns of attn_output:
 *            attention output channels are linear in v. Under GQA query head h reads kv head
 *            h / group, so s is shared by the heads of a group (the max over the group).
 *   FFN_MID  1/s into the rows of ffn_up (SwiGLU is linear in up); s into ffn_down's columns
 *   OUTPUT_IN 1/s into output_norm; s into the columns of output (untied heads only: a tied
 *            head's columns are the embedding, which is also looked up) */
#ifndef QN_CALIB_SMOOTHQUANT_H
#define QN_CALIB_SMOOTHQUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "calib/calibrate.h"
#include "quant/qtype.h"

/* Scales are clamped to [QN_SMOOTH_MIN_S, QN_SMOOTH_MAX_S]; an all-zero channel gets 1. */
#define QN_SMOOTH_MIN_S 1e-5f
#define QN_SMOOTH_MAX_S 1e5f

/* Smoothing scales of one model, in the slot layout of qn_calib. */
typedef struct qn_smooth {
  int n_layers;          /* decoder blocks */
  int n_slots;           /* (n_layers + 1) * QN_SITE_COUNT */
  int head_dim;          /* per-head width (maps attention-output channels onto v rows) */
  int group;             /* query heads per kv head */
  int kv_dim;            /* n_kv_heads * head_dim: width of v */
  float** s;             /* [n_slots] site-width scales, NULL where the site is not smoothed;
                            the V slot mirrors ATTN_OUT on v's channels (observation only) */
  float* alpha;          /* [n_slots] alpha used, -1 where not smoothed */
  double* err_before;    /* [n_slots] search only: relative output error unsmoothed, else 0 */
  double* err_after;     /* [n_slots] search only: relative output error at the chosen alpha */
  qn_calib_divisors div; /* s viewed as calibration divisors (observe x / s) */
} qn_smooth;

/* Scales for every site above with one alpha in [0, 1], from the per-channel activation
 * maxima of c and the weights of m. */
qn_status qn_smooth_compute(const qn_model* m, const qn_calib* c, double alpha, qn_smooth** out);

/* Options of the alpha search. */
typedef struct qn_smooth_search_opts {
  const double* grid; /* candidate alphas in [0, 1] (NULL: 0.3, 0.4 ... 0.8) */
  int n_grid;
  /* scheme of each weight (by canonical name) as the recipe will quantize it */
  qn_qtype (*scheme_of)(void* user, const char* name);
  void* scheme_user;
  qn_calib_method method;  /* how static activation thresholds will be chosen */
  double percentile;       /* for QN_CALIB_PERCENTILE (0 = default) */
  qn_progress_fn progress; /* stage "smooth": sites done / total */
  void* progress_user;
} qn_smooth_search_opts;

/* Per site, picks the candidate (each grid alpha, or no smoothing) whose quantized linear
 * layers reproduce their FP32 outputs best on the calibration sample c->sample (needs a run
 * with sample_rows > 0): the error is the sum over the site's linears of
 * ||Q(X / s) Q(W diag(s))^T - X W^T||^2 / ||X W^T||^2, computed through qn_matmul with the
 * weight's real scheme (static activation scale from the method's threshold of X / s). A
 * site whose linears are all unquantized f32 is left unsmoothed. */
qn_status qn_smooth_search(qn_model* m, const qn_calib* c, const qn_smooth_search_opts* o,
                           qn_smooth** out);

void qn_smooth_free(qn_smooth* sm);

/* Applies the smoothing to tensor `name` (rows x cols f32, vectors as rows x 1) in place:
 * the folds listed at the top of this file. Returns true if the tensor changed. */
bool qn_smooth_apply(const qn_smooth* sm, const char* name, float* data, int64_t rows,
                     int64_t cols);

/* True if any site is smoothed. */
bool qn_smooth_any(const qn_smooth* sm);

#endif
