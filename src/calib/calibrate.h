/* calibrate.h: a calibration run: the FP32 model reads representative text in windows and
 * a streaming observer per (layer, site) records the activations entering each group of
 * linear layers; a clip threshold T (int8 scale T / 127) is then chosen per site by one of
 * the observer methods. Memory does not depend on the number of calibration tokens: only
 * observers (and, for the SmoothQuant search, a fixed-size sample of rows: evenly spread ones
 * and those with the largest max |x|) are kept. */
#ifndef QN_CALIB_CALIBRATE_H
#define QN_CALIB_CALIBRATE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "calib/observer.h"
#include "model/model.h"

/* Defaults and limits of a run. */
#define QN_CALIB_DEFAULT_TOKENS 100000
#define QN_CALIB_DEFAULT_CTX 512
#define QN_CALIB_MIN_TOKENS 64 /* fewer tokens than this: QN_EINVAL */
#define QN_CALIB_DEFAULT_PERCENTILE 99.99
#define QN_CALIB_FALLBACK_WARN 0.5 /* warn when more than this fraction are byte/unknown */
/* Rows with the largest max |x| kept beside the evenly spread sample: rare tokens with massive
 * activations (e.g. the first token of a window) that a uniform sample misses. */
#define QN_CALIB_EXTREME_ROWS 16

/* Per-channel divisors applied to observed activations (SmoothQuant: the smoothed model
 * sees x / s). slot(layer, site) indexes s; a NULL entry means no division. */
typedef struct qn_calib_divisors {
  int n_slots;           /* (n_layers + 1) * QN_SITE_COUNT */
  const float* const* s; /* [n_slots] site-width divisors (> 0), or NULL */
} qn_calib_divisors;

typedef struct qn_calib_opts {
  int64_t max_tokens; /* tokens to run (0 = QN_CALIB_DEFAULT_TOKENS; fewer if the text is) */
  int ctx;            /* window length (0 = QN_CALIB_DEFAULT_CTX), capped at the model's */
  bool observe_kv;    /* also observe the cached keys and values (QN_SITE_K / QN_SITE_V) */
  int sample_rows;    /* rows of each linear-input site (and the head's input) kept as an
                         evenly spread sample, plus QN_CALIB_EXTREME_ROWS extreme rows (for
                         the SmoothQuant alpha search); 0 = none */
  const qn_calib_divisors* divide; /* optional: observe x / s instead of x */
  qn_progress_fn progress;         /* stage "calibrate": tokens done / total */
  void* progress_user;
} qn_calib_opts;

/* The outcome of a run. Slots are indexed by qn_calib_slot(); unobserved slots are NULL. */
typedef struct qn_calib {
  int n_layers;           /* decoder blocks of the model */
  int n_slots;            /* (n_layers + 1) * QN_SITE_COUNT; the last row is layer -1 */
  qn_observer** obs;      /* [n_slots] observers, or NULL where nothing is observed */
  float** sample;         /* [n_slots] (sample_cap + QN_CALIB_EXTREME_ROWS) x width rows, or NULL:
                             sample_n evenly spread rows, then extreme_n extreme rows */
  int* sample_n;          /* [n_slots] evenly spread rows held in sample */
  int* extreme_n;         /* [n_slots] rows with the largest max |x| held after them */
  float** extreme_key;    /* [n_slots] QN_CALIB_EXTREME_ROWS max |x| of those rows, or NULL */
  int sample_cap;         /* evenly spread rows each sample can hold */
  float* threshold;       /* [n_slots] chosen T (> 0) after qn_calib_choose, else 0 */
  double* clipped;        /* [n_slots] fraction of observed |x| > threshold */
  int64_t tokens;         /* tokens run through the model */
  int windows;            /* forward windows run */
  int ctx;                /* window length used */
  double fallback_frac;   /* fraction of the tokens that are unknown / byte-fallback */
  int64_t stride;         /* sample one row every `stride` tokens */
  qn_calib_method method; /* method of the last qn_calib_choose */
  double percentile;      /* its percentile (QN_CALIB_PERCENTILE) */
  const qn_calib_divisors* divide; /* internal: divisors during the run */
  float* div_buf;                  /* internal: QN_MAX_BATCH x widest site scratch for divisions */
} qn_calib;

/* Index of (layer, site); layer -1 is the output head (QN_SITE_OUTPUT_IN). */
int qn_calib_slot(const qn_calib* c, int layer, qn_act_site site);
/* Lower-case name of a site ("attn_in", "attn_out", "ffn_in", "ffn_mid", "output_in",
 * "k", "v"). */
const char* qn_act_site_name(qn_act_site site);

/* The site whose activations multiply the canonical weight `name` (attn_q/k/v -> ATTN_IN,
 * attn_output -> ATTN_OUT, ffn_gate/up -> FFN_IN, ffn_down -> FFN_MID, output and
 * token_embd -> OUTPUT_IN with layer -1). False for anything else. */
bool qn_calib_site_of_weight(const char* name, int* layer, qn_act_site* site);

/* Tokenizes text (at most what max_tokens needs) and runs it through m in windows of ctx
 * tokens (BOS first in each window when the vocabulary adds one). `what` names the text in
 * messages (a path). Errors: QN_EINVAL when the text gives fewer than QN_CALIB_MIN_TOKENS
 * tokens (the message says how many it gave and how many are needed). */
qn_status qn_calib_run(qn_model* m, const char* text, size_t len, const char* what,
                       const qn_calib_opts* o, qn_calib** out);
/* The same on the contents of a file. */
qn_status qn_calib_run_file(qn_model* m, const char* path, const qn_calib_opts* o, qn_calib** out);
void qn_calib_free(qn_calib* c);
/* Frees the activation samples (after the SmoothQuant search). */
void qn_calib_drop_samples(qn_calib* c);

/* Chooses every observed site's threshold (and clipped fraction) by method; percentile is
 * used by QN_CALIB_PERCENTILE (0 = QN_CALIB_DEFAULT_PERCENTILE). */
qn_status qn_calib_choose(qn_calib* c, qn_calib_method method, double percentile);

/* The observer of a slot, or NULL. */
const qn_observer* qn_calib_observer(const qn_calib* c, int layer, qn_act_site site);
/* Threshold of a slot (0 if not observed or not chosen). */
float qn_calib_threshold(const qn_calib* c, int layer, qn_act_site site);

/* The summary as a new JSON object (NULL when out of memory): method, percentile, tokens,
 * windows, ctx, fallback_frac, sites [{layer, site, min, max, absmax, threshold, clipped}]. */
cJSON* qn_calib_summary_json(const qn_calib* c);

#endif
