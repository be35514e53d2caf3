/* importance.h: calibration windows, and the per-input-channel activation energy of every
 * linear layer's input from one FP32 pass over them (--method imp).
 *
 * Windows: the calibration text is tokenized piece by piece (only as much as the token
 * budget needs) and cut into windows of ctx tokens, BOS first in each when the vocabulary
 * adds one. AWQ's sequential driver (awq_model.c) runs the same windows.
 *
 * Energy: for the input x (tokens x width) of a site, E_j = sum_t x_tj^2 / N. Column j of a
 * weight W contributes (W_ij - Q(W)_ij) x_tj to output i, so with independent channels the
 * expected squared output error of row i is sum_j E_j (W_ij - Q(W)_ij)^2: the error the
 * importance-weighted scale search minimises when given E as its column weights. */
#ifndef QN_CALIB_IMPORTANCE_H
#define QN_CALIB_IMPORTANCE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "model/model.h"

/* Calibration tokens --method imp runs when none are asked for. */
#define QN_IMPORTANCE_DEFAULT_TOKENS 100000
/* Floor of the normalised column weights (fraction of the mean energy): a channel silent in
 * the calibration text still counts a little, so its weights are not left to chance. */
#define QN_IMPORTANCE_FLOOR 0.01f

/* The calibration text as windows of token ids. */
typedef struct qn_token_windows {
  int* ids;     /* [off[n_win]] tokens of every window, concatenated */
  int64_t* off; /* [n_win + 1] start of window i in ids; off[n_win] = total tokens */
  int n_win;    /* windows */
  int ctx;      /* longest window (tokens) */
} qn_token_windows;

/* Tokenizes the text at path until budget tokens (BOS included) are held, in windows of ctx
 * tokens (ctx >= 2). Errors: QN_EIO (file), QN_EINVAL when the text gives fewer than 64
 * tokens, QN_ENOMEM. */
qn_status qn_token_windows_make(qn_model* m, const char* path, int64_t budget, int ctx,
                                qn_token_windows* out);
void qn_token_windows_free(qn_token_windows* w);

typedef struct qn_importance_opts {
  int64_t max_tokens;      /* tokens to run (0 = QN_IMPORTANCE_DEFAULT_TOKENS) */
  int ctx;                 /* window length (0 = 512), capped by the model's context */
  qn_progress_fn progress; /* stage "importance": tokens done / total */
  void* progress_user;
} qn_importance_opts;

/* Per-channel energies of one model, in qn_calib's slot layout ((layer + 1 for the head) *
 * QN_SITE_COUNT + site; the head's input is the last row). */
typedef struct qn_importance {
  int n_layers;    /* decoder blocks */
  int n_slots;     /* (n_layers + 1) * QN_SITE_COUNT */
  bool tied;       /* the output head is the embedding */
  double** energy; /* [n_slots] site-width mean x^2 per channel, NULL for K/V slots */
  float** weight;  /* [n_slots] the same normalised to mean 1, floored at QN_IMPORTANCE_FLOOR */
  int64_t tokens;  /* tokens run */
  double seconds;  /* wall time */
} qn_importance;

/* Runs the windows of calib_path through m (FP32) and records the energies of the inputs of
 * every linear layer (attn_in, attn_out, ffn_in, ffn_mid and the head's input). */
qn_status qn_importance_run(qn_model* m, const char* calib_path, const qn_importance_opts* o,
                            qn_importance** out);
void qn_importance_free(qn_importance* imp);

/* The column weights for the canonical weight `name` (its cols entries), or NULL when no
 * activation multiplies it (norms, an untied token_embd) or imp is NULL. */
const float* qn_importance_of(const qn_importance* imp, const char* name);

#endif
