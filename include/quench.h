/* quench.h: the public API of libquench, a model-quantization toolkit and
 * low-precision inference runtime for Llama-family decoders.
 *
 * Conventions (see docs/ARCHITECTURE.md):
 *  - Opaque handles; qn_<thing>_open/new -> use -> qn_<thing>_free; free(NULL) is a no-op.
 *  - Every call that can fail returns qn_status (QN_OK = 0, errors negative) and fills
 *    out-parameters; qn_last_error() returns a message naming the file/tensor/argument.
 *  - The library never prints and never exits; progress goes through a callback. */
#ifndef QUENCH_H
#define QUENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QUENCH_VERSION "0.1.0"

typedef enum qn_status {
  QN_OK = 0,
  QN_EINVAL = -1,       /* bad argument */
  QN_EIO = -2,          /* file missing, unreadable or unwritable */
  QN_EFORMAT = -3,      /* malformed or truncated file */
  QN_EUNSUPPORTED = -4, /* valid input that Quench does not handle */
  QN_ENOMEM = -5,       /* allocation failed */
  QN_ERANGE = -6,       /* value out of range (e.g. prompt longer than the context) */
} qn_status;

/* Message for the last error on this thread ("" if none). */
const char* qn_last_error(void);
/* Short name of a status code ("QN_EFORMAT"...). */
const char* qn_status_name(qn_status st);

/* Progress callback: done/total units of the named stage; return nonzero to cancel
 * (the call then fails with QN_EINVAL "cancelled"). */
typedef int (*qn_progress_fn)(void* user, const char* stage, int64_t done, int64_t total);

/* ---- models ------------------------------------------------------------------ */

typedef struct qn_model qn_model;

/* Opens a model: a llama2.c checkpoint (.bin; tokenizer.bin found beside it or
 * given in tokenizer_path), a GGUF file, a Hugging Face directory (config.json +
 * *.safetensors + tokenizer.json), or a Quench .qnz file. Weights are memory-mapped. */
typedef struct qn_model_opts {
  const char* tokenizer_path; /* optional: llama2.c tokenizer.bin (NULL = search beside) */
  int n_threads;              /* worker threads for inference (0 = all cores) */
} qn_model_opts;

qn_status qn_model_open(const char* path, const qn_model_opts* opts, qn_model** out);
void qn_model_free(qn_model* m);

/* Summary of a model's hyper-parameters. */
typedef struct qn_model_info {
  const char* arch;           /* "llama", "mistral", "qwen2" */
  const char* format;         /* "llama2c", "gguf", "hf", "qnz" */
  int dim;                    /* residual width */
  int hidden_dim;             /* MLP inner width */
  int n_layers;               /* decoder blocks */
  int n_heads;                /* query heads */
  int n_kv_heads;             /* key/value heads (GQA when < n_heads) */
  int head_dim;               /* per-head width */
  int vocab_size;             /* rows of the embedding */
  int max_seq_len;            /* trained context */
  float rope_theta;           /* RoPE base */
  float norm_eps;             /* RMSNorm epsilon */
  const char* rope_style;     /* "adjacent" (llama2.c/GGUF) or "half" (HF) */
  bool tied_embeddings;       /* output head shares the embedding */
  bool qkv_bias;              /* q/k/v projections carry a bias */
  int64_t n_params;           /* weights in all tensors */
  uint64_t weight_bytes;      /* bytes of all tensors as stored */
  const char* tokenizer_kind; /* "spm" or "bpe" */
  int bos_id, eos_id;         /* -1 if absent */
} qn_model_info;

void qn_model_get_info(const qn_model* m, qn_model_info* info);

/* One stored tensor of the model file(s). */
typedef struct qn_tensor_info {
  const char* name;   /* canonical name (blk.N.attn_q.weight...) */
  const char* dtype;  /* storage dtype ("F32", "BF16", "U8"...) */
  const char* scheme; /* quantization scheme for .qnz payloads ("int4-g32"), else NULL */
  int ndim;           /* dimensions used in shape */
  int64_t shape[4];   /* outermost first */
  uint64_t nbytes;    /* bytes stored */
  const char* layout; /* packed kernel layout of a .qnz payload ("i8x16", "i4x16": stored shape
                         is [row blocks of 16, bytes per block], docs/FORMAT.md), else NULL */
} qn_tensor_info;

int qn_model_n_tensors(const qn_model* m);
void qn_model_tensor(const qn_model* m, int i, qn_tensor_info* out);
/* Format metadata as JSON text (GGUF key/values, .qnz __metadata__, HF config), or NULL. */
const char* qn_model_metadata(const qn_model* m);

/* ---- tokenizer ----------------------------------------------------------------- */

/* Encodes UTF-8 text; *ids is malloc'ed (caller frees). add_bos prepends BOS when the
 * vocabulary has one; special tokens such as <|endoftext|> are matched in the text. */
qn_status qn_tokenize(const qn_model* m, const char* text, size_t len, bool add_bos, int** ids,
                      int* n_ids);
/* Decodes ids to UTF-8 text; *text is malloc'ed and NUL-terminated. */
qn_status qn_detokenize(const qn_model* m, const int* ids, int n_ids, char** text, size_t* len);

/* ---- inference ------------------------------------------------------------------ */

typedef struct qn_ctx qn_ctx;

/* A running session with a KV cache of n_seq sequences of up to n_ctx positions each
 * (n_ctx = 0: the model's max_seq_len). */
qn_status qn_ctx_new(qn_model* m, int n_ctx, int n_seq, qn_ctx** out);
void qn_ctx_free(qn_ctx* c);

/* Runs n tokens through the model. Token i belongs to sequence seq[i] (NULL = all 0) at
 * position pos[i]; its keys/values are written to the cache at that position and it
 * attends to positions 0..pos[i] of its sequence. logits: if non-NULL, n x vocab floats
 * when all_logits, else vocab floats for the last token only. */
qn_status qn_ctx_forward(qn_ctx* c, const int* tokens, const int* pos, const int* seq, int n,
                         float* logits, bool all_logits);

/* Clears one sequence's cache (seq = -1: all). */
void qn_ctx_reset(qn_ctx* c, int seq);

/* ---- sampling --------------------------------------------------------------------- */

typedef struct qn_sampler_opts {
  float temperature;    /* 0 = greedy */
  int top_k;            /* 0 = off */
  float top_p;          /* 1 = off */
  float min_p;          /* 0 = off */
  float repeat_penalty; /* 1 = off; applied to the last repeat_last_n tokens */
  int repeat_last_n;    /* window of the penalty */
  uint64_t seed;        /* RNG seed */
} qn_sampler_opts;

typedef struct qn_sampler qn_sampler;

void qn_sampler_opts_default(qn_sampler_opts* o);
qn_status qn_sampler_new(const qn_sampler_opts* o, int vocab_size, qn_sampler** out);
void qn_sampler_free(qn_sampler* s);
/* Picks the next token from logits (modified in place). history: previous tokens. */
int qn_sampler_sample(qn_sampler* s, float* logits, const int* history, int n_history);

/* ---- generation ------------------------------------------------------------------ */

/* Called with each newly complete UTF-8 text piece; return nonzero to stop. */
typedef int (*qn_text_fn)(void* user, const char* piece, size_t len);

typedef struct qn_gen_stats {
  int n_prompt;    /* prompt tokens (BOS included) */
  int n_gen;       /* generated tokens */
  double prompt_s; /* seconds of prefill */
  double gen_s;    /* seconds of decode */
  double ttft_s;   /* time to first generated token */
} qn_gen_stats;

/* Prefill the prompt (BOS + text; an empty prompt is BOS alone), then sample n_predict
 * tokens, streaming text through on_text. Stops early at EOS. */
qn_status qn_generate(qn_model* m, const char* prompt, int n_predict, const qn_sampler_opts* so,
                      qn_text_fn on_text, void* user, qn_gen_stats* stats);

/* ---- evaluation ------------------------------------------------------------------- */

typedef struct qn_ppl_opts {
  int ctx;         /* > 0: non-overlapping windows of ctx tokens, no BOS added */
  int chunks;      /* with ctx: only the first chunks windows (0 = all) */
  const char* sep; /* ctx == 0: split documents on this string; BOS + full context each */
  qn_progress_fn progress;
  void* progress_user;
} qn_ppl_opts;

typedef struct qn_ppl_result {
  double ppl;      /* exp(mean NLL) */
  double nll;      /* mean negative log-likelihood, nats */
  int64_t tokens;  /* scored predictions */
  int n_docs;      /* windows or documents scored */
  int n_truncated; /* documents longer than the context, scored on their first part only */
  double seconds;  /* wall time */
} qn_ppl_result;

qn_status qn_eval_ppl(qn_model* m, const char* text, size_t len, const qn_ppl_opts* o,
                      qn_ppl_result* r);

/* Comparison of a quantized model against its base on the same spans. */
typedef struct qn_cmp_result {
  double ppl_base, ppl_quant; /* perplexities */
  double nll_base, nll_quant; /* mean NLL, nats */
  double kld_mean;            /* mean KL(P_base || P_quant) over scored positions, nats */
  double kld_p99;             /* 99th percentile of the per-position KL */
  double kld_max;             /* largest per-position KL */
  double top1_agree;          /* fraction of positions where both argmaxes agree, 0..1 */
  int64_t tokens;             /* scored positions */
  int n_docs;                 /* spans */
  double seconds;             /* wall time */
} qn_cmp_result;

/* Evaluates base and quant in one pass over the spans of text (tokenized by base; the two
 * vocabularies must be the same size). */
qn_status qn_eval_cmp(qn_model* base, qn_model* quant, const char* text, size_t len,
                      const qn_ppl_opts* o, qn_cmp_result* r);
/* The same for k quantized models in one pass: the base model runs once per span.
 * results: k entries, in the order of quants. */
qn_status qn_eval_cmp_multi(qn_model* base, qn_model* const* quants, int k, const char* text,
                            size_t len, const qn_ppl_opts* o, qn_cmp_result* results);

/* ---- quantization ---------------------------------------------------------------- */

typedef struct qn_quantize_opts {
  const char* scheme;       /* default scheme of every 2-D weight ("int8-channel"...) */
  const char* recipe_path;  /* optional recipe file: "PATTERN SCHEME" lines (see --help) */
  const char* const* rules; /* optional "PATTERN=SCHEME" overrides, applied after the
                               recipe file; the last matching rule wins */
  int n_rules;
  bool search;                /* error-minimising scale search instead of plain absmax */
  const char* tokenizer_path; /* llama2.c tokenizer.bin, if not beside the model */
  int n_threads;              /* 0 = all cores */
  qn_progress_fn progress;
  void* progress_user;
  /* weight method: "rtn" (NULL: round-to-nearest), "search" (= search above), "imp" (the
     search weighted by per-channel activation energy; calib_tokens 0 = 100000), "gptq"
     (error-compensating GPTQ; calib_tokens 0 = 20000), "awq" (activation-aware channel
     scaling + clipping, folded into the norms / preceding weights; 0 = 20000) or "awq+gptq"
     (AWQ's scales, then GPTQ). All but rtn/search need calib_path (docs/QUANTIZATION.md) */
  const char* method;
  bool gptq_act_order; /* GPTQ: visit columns by decreasing Hessian diagonal */
  double gptq_damp;    /* GPTQ: dampening as a fraction of mean diag(H) (0 = 0.01) */
  /* calibration: required by w8a8-static schemes and by SmoothQuant */
  const char* calib_path;   /* representative text (UTF-8), or NULL */
  int64_t calib_tokens;     /* tokens to run (0 = 100000, or all the text if fewer) */
  int calib_ctx;            /* window length (0 = 512, capped by the model's context) */
  const char* calib_method; /* "minmax", "percentile", "mse", "entropy" (NULL = percentile) */
  double calib_percentile;  /* percentile method: p in (0, 100) (0 = 99.99) */
  bool calib_kv;            /* also observe the cached keys/values (summary only) */
  bool smooth;              /* SmoothQuant with smooth_alpha (needs calib_path) */
  double smooth_alpha;      /* migration strength in [0, 1] */
  bool smooth_auto;         /* SmoothQuant with alpha searched per site (needs calib_path) */
  /* optional warnings (e.g. calibration text that is mostly unknown/byte tokens) */
  void (*warn)(void* user, const char* message);
  void* warn_user;
} qn_quantize_opts;

/* One output weight of a quantization run. */
typedef struct qn_quant_tensor_report {
  char name[96];      /* canonical name */
  char scheme[24];    /* scheme used ("f32" for norms and biases) */
  int64_t rows, cols; /* logical shape (cols = 1 and rows = length for vectors) */
  double bpw;         /* stored bits per weight, scales and zeros included */
  double sqnr_db;     /* signal-to-quantization-noise ratio; INFINITY when exact */
  double max_abs_err; /* largest |w - dequant(q(w))| */
  double rmse;        /* root mean squared error */
  uint64_t bytes_in;  /* bytes in the source */
  uint64_t bytes_out; /* bytes written (payload + scales + zeros) */
} qn_quant_tensor_report;

/* One activation site of a calibration run (the summary table). */
typedef struct qn_calib_site_report {
  int layer;          /* decoder block; -1 for the output head's input */
  char site[12];      /* "attn_in", "attn_out", "ffn_in", "ffn_mid", "output_in", "k", "v" */
  float min, max;     /* observed range (of the smoothed activations under SmoothQuant) */
  float threshold;    /* chosen clip threshold T; the int8 activation scale is T / 127 */
  double clipped;     /* fraction of observed values with |x| > T */
  float smooth_alpha; /* SmoothQuant alpha applied to this site; -1 = not smoothed */
} qn_calib_site_report;

typedef struct qn_quantize_report {
  qn_quant_tensor_report* tensors; /* [n_tensors], owned */
  int n_tensors;
  uint64_t file_bytes_in;      /* size of the source file(s) */
  uint64_t file_bytes_out;     /* size of the .qnz */
  double bpw;                  /* bits per weight over all 2-D weights */
  double seconds;              /* wall time */
  qn_calib_site_report* calib; /* [n_calib] calibration summary, owned; NULL if none ran */
  int n_calib;
  char calib_method[16];   /* method that chose the thresholds */
  double calib_percentile; /* its percentile (percentile method) */
  int64_t calib_tokens;    /* tokens the calibration ran */
  double calib_fallback;   /* fraction of calibration tokens that were unknown/byte tokens */
  double calib_seconds;    /* wall time of calibration (and the SmoothQuant search) */
} qn_quantize_report;

/* Quantizes the model at in_path into the .qnz file out_path (written to a temporary file
 * and renamed; nothing is left behind on failure). rep may be NULL. */
qn_status qn_quantize(const char* in_path, const char* out_path, const qn_quantize_opts* o,
                      qn_quantize_report* rep);
void qn_quantize_report_free(qn_quantize_report* rep);

/* Scheme table for --list: returns false past the last index. */
typedef struct qn_scheme_info {
  const char* name;     /* "int4-g32" */
  double bpw;           /* bits per weight on a row of 4096 columns */
  const char* summary;  /* what is stored */
  const char* kernels;  /* which kernels run it */
  const char* accuracy; /* expected accuracy */
} qn_scheme_info;
bool qn_scheme_at(int i, qn_scheme_info* out);

/* ---- sensitivity and mixed precision ---- */

/* What one sensitivity variant quantizes; everything else keeps its loaded precision. */
typedef enum qn_sens_unit {
  QN_SENS_LAYER = 0, /* one decoder block at a time: its 7 linear weights */
  QN_SENS_TENSOR,    /* one 2-D weight at a time (token_embd and output included) */
} qn_sens_unit;

typedef struct qn_sens_opts {
  const char* scheme;         /* scheme every variant applies ("int4-g32"); weight-only or
                                 dynamic-activation schemes (static ones need calibration) */
  qn_sens_unit unit;          /* per layer or per tensor */
  bool search;                /* error-minimising scale search instead of plain absmax */
  qn_ppl_opts eval;           /* how the text is split into spans (as qn_eval_cmp); progress
                                 reports stage "sensitivity" in forward passes */
  const char* tokenizer_path; /* llama2.c tokenizer.bin, if not beside the model */
  int n_threads;              /* 0 = all cores */
} qn_sens_opts;

/* One variant: the model with one layer or one tensor quantized. */
typedef struct qn_sens_entry {
  char name[96];        /* "blk.3" (per layer) or the canonical tensor name */
  int layer;            /* decoder block index; -1 for token_embd / output */
  int n_tensors;        /* weights quantized in this variant */
  double kld_mean;      /* mean KL(P_base || P_variant) over the scored positions, nats */
  double ppl;           /* perplexity of the variant */
  double delta_ppl_pct; /* 100 * (ppl - ppl_base) / ppl_base */
  double top1_agree;    /* fraction of positions whose argmax matches the base's, 0..1 */
  uint64_t bytes;       /* bytes of the quantized weights in the scheme (scales included) */
  uint64_t bytes_f32;   /* bytes of the same weights as f32 */
} qn_sens_entry;

typedef struct qn_sens_result {
  qn_sens_entry* entries; /* [n_entries], most sensitive (largest mean KLD) first; owned */
  int n_entries;
  char scheme[24]; /* canonical scheme name */
  double ppl_base; /* perplexity of the unmodified model */
  int64_t tokens;  /* scored positions */
  int n_docs;      /* spans */
  double seconds;  /* wall time */
} qn_sens_result;

/* Quantizes one layer (or tensor) of the model at model_path at a time to o->scheme, in
 * memory, and measures each variant against the unmodified model on text: the base model
 * runs once per span, each variant after it. Entries are ranked by mean KLD. */
qn_status qn_sensitivity(const char* model_path, const char* text, size_t len,
                         const qn_sens_opts* o, qn_sens_result* r);
void qn_sens_result_free(qn_sens_result* r);

#define QN_MP_MAX_CANDIDATES 8

typedef struct qn_mp_opts {
  const char* candidates;  /* comma-separated schemes, e.g. "int4-g32,int8-channel,f16"
                              (any order; sorted by size per tensor); 2..QN_MP_MAX_CANDIDATES */
  double target_kld;       /* > 0: budget on the measured mean KLD vs the source, nats */
  double max_ppl_increase; /* > 0: budget on the measured PPL increase, percent. At least one
                              budget must be set; when both are, both must hold */
  int max_rounds;          /* quantize-and-measure rounds (0 = 4) */
  qn_ppl_opts eval;        /* spans of the text (as qn_eval_cmp); progress sees the stages
                              "sensitivity", "quantize" and "compare" */
  const char* out_path;    /* keep the final .qnz here (NULL: a temporary file, removed) */
  const qn_quantize_opts* quantize; /* optional (NULL = defaults): search, tokenizer_path and
                              n_threads for the measurement, and every option of the final
                              quantization except scheme, recipe_path and rules, which the
                              chosen recipe replaces */
} qn_mp_opts;

/* The scheme chosen for one 2-D weight. */
typedef struct qn_mp_tensor {
  char name[96];                    /* canonical name */
  char scheme[24];                  /* chosen scheme */
  uint64_t bytes;                   /* bytes stored in that scheme */
  double kld[QN_MP_MAX_CANDIDATES]; /* measured KLD with this tensor alone in each candidate
                                       (order of qn_mp_result.candidates), nats */
} qn_mp_tensor;

typedef struct qn_mp_result {
  char* recipe;          /* recipe file text: '#' comments, "default S", "PATTERN S" lines;
                            usable as qn_quantize_opts.recipe_path content; owned */
  qn_mp_tensor* tensors; /* [n_tensors] in file order; owned */
  int n_tensors;
  char candidates[QN_MP_MAX_CANDIDATES][24]; /* [n_candidates] canonical names, as given */
  int n_candidates;
  qn_cmp_result cmp;       /* measurement of the final model against the source on the text */
  double kld_predicted;    /* sum of the chosen tensors' individual KLDs */
  uint64_t bytes;          /* bytes of all 2-D weights as chosen */
  uint64_t bytes_smallest; /* ... with every weight in its smallest candidate */
  uint64_t bytes_largest;  /* ... with every weight in its largest candidate */
  double bpw;              /* bits per weight over the 2-D weights, as chosen */
  int rounds;              /* quantize-and-measure rounds run */
  double seconds;          /* wall time */
} qn_mp_result;

/* Mixed-precision search (docs: src/calib/mixed_precision.c): measures each 2-D weight's
 * KLD alone in each candidate, picks a scheme per weight minimising bytes subject to the
 * budget assuming the KLDs add, quantizes the whole model with that recipe and measures it
 * (qn_eval_cmp); a miss tightens the selection budget and repeats. Fails with QN_ERANGE
 * when even the largest candidates miss the budget. */
qn_status qn_mixed_precision(const char* model_path, const char* text, size_t len,
                             const qn_mp_opts* o, qn_mp_result* r);
void qn_mp_result_free(qn_mp_result* r);

/* ---- synthetic models and benchmarks ---- */

/* Architecture shape of a synthetic-model preset (head_dim = dim / n_heads). */
typedef struct qn_synth_preset {
  const char* name;    /* "tiny", "llama-110m", "tinyllama-1.1b", "llama-7b" */
  int dim;             /* residual width */
  int hidden_dim;      /* MLP inner width */
  int n_layers;        /* decoder blocks */
  int n_heads;         /* query heads */
  int n_kv_heads;      /* key/value heads */
  int vocab_size;      /* tokens (embedding and separate output head rows) */
  int max_seq_len;     /* max_position_embeddings */
  const char* summary; /* which real model it has the shape of */
} qn_synth_preset;

/* The presets in table order; false past the last index. */
bool qn_synth_preset_at(int i, qn_synth_preset* out);

typedef struct qn_synth_opts {
  const char* preset;      /* a preset name */
  const char* dtype;       /* "f32", "f16" or "bf16" (NULL = bf16) */
  uint64_t seed;           /* the same seed (and preset, dtype) writes the same bytes */
  int n_threads;           /* threads drawing random numbers (0 = all cores) */
  qn_progress_fn progress; /* stage "synth": bytes of model.safetensors written / total */
  void* progress_user;
} qn_synth_opts;

/* Writes a synthetic Llama model -- random weights, FOR SPEED TESTS ONLY -- as a Hugging Face
 * directory at out_dir: config.json, one model.safetensors, tokenizer.json (a byte-level BPE
 * filled to the vocabulary size with generated merges) and tokenizer_config.json. Matrices
 * (embedding and output head included) are N(0, 0.02^2), norm weights 1.0, deterministic
 * from the seed. Streamed (a few MB of memory whatever the size) into out_dir.tmp.<pid>,
 * then renamed; an existing out_dir is replaced only if it is an earlier synthetic model. */
qn_status qn_synth_write(const char* out_dir, const qn_synth_opts* o);

typedef struct qn_bench_opts {
  int n_prompt;               /* prefill: tokens in one forward call (0 = no prefill) */
  int n_gen;                  /* decode: single-token steps after the prefill (0 = none) */
  int reps;                   /* repetitions; results are medians (0 = 1) */
  int n_threads;              /* 0 = all cores */
  const char* tokenizer_path; /* llama2.c tokenizer.bin, if not beside the model */
  qn_progress_fn progress;    /* stage "bench": forward calls done / total */
  void* progress_user;
} qn_bench_opts;

typedef struct qn_bench_result {
  double load_ms;            /* qn_model_open wall time, ms (median over reps opens) */
  double pp_tps;             /* prefill tokens/s: n_prompt / time of the prefill forward */
  double tg_tps;             /* decode tokens/s: n_gen / total time of the decode steps */
  double ttft_ms;            /* time to first token: prefill forward + greedy pick, ms */
  double tpot_p50_ms;        /* time per output token (one decode step), median, ms */
  double tpot_p99_ms;        /* ... 99th percentile (nearest rank) over all reps' steps, ms */
  double tg_gbps;            /* bytes_per_token x tg_tps / 1e9: effective decode bandwidth */
  double pp_gops;            /* 2 x (layer matmul params x n_prompt + head params) / prefill
                                time / 1e9 (linear layers only, attention not counted; the
                                head runs for the last prompt token only) */
  uint64_t bytes_per_token;  /* weight bytes a decode step streams (embedding excluded) */
  int64_t matmul_params;     /* weights of all linear layers, output head included */
  int64_t n_params;          /* all weights (qn_model_info.n_params) */
  double bpw;                /* 8 x stored bytes of all tensors / n_params */
  uint64_t rss_bytes;        /* peak resident set size of the process (ru_maxrss) */
  bool int8_activations;     /* some weight takes int8 activations (compare with VNNI peak) */
  const char* format;        /* model file format ("hf", "qnz"...; a static string) */
  const char* kernels;       /* kernel path in use ("ref", "blas"...; a static string) */
  int n_threads;             /* threads used */
  int n_prompt, n_gen, reps; /* as run */
} qn_bench_result;

/* Opens the model reps times (load time), then on one open model and one session runs a
 * warm-up (a short prefill and one decode step), then reps times: prefill n_prompt
 * pseudo-random tokens (BOS first) in one forward call, then n_gen greedy single-token decode
 * steps. Positions may run past the model's trained context (speed does not depend on it). */
qn_status qn_bench_model(const char* path, const qn_bench_opts* o, qn_bench_result* r);

/* The machine's limits, measured with all n_threads at once. */
typedef struct qn_bench_limits {
  double membw_gbps;    /* best read bandwidth over a buffer much larger than the caches, GB/s */
  double vnni_gops;     /* int8 peak: 512-bit vpdpbusd register loop, GOPS (multiply-add = 2
                           ops); 0 when the CPU lacks AVX512-VNNI */
  double fma_gflops;    /* FP32 peak: fused multiply-add register loop, GFLOPS (FMA = 2) */
  char fma_isa[8];      /* vector width of the FMA loop: "avx512", "avx2" or "none" */
  double sync_ns;       /* thread-pool cost of one parallel call (empty work), ns: what each
                           of the ~8 parallel calls per layer of a decode step pays */
  int n_threads;        /* threads measured */
  uint64_t membw_bytes; /* buffer size of the bandwidth test */
} qn_bench_limits;

/* Measures read bandwidth (membw_bytes buffer, 0 = 1 GiB; best of 5 passes) and the VNNI and
 * FMA peaks (best of 3 runs of ~0.1 s). n_threads 0 = all cores. */
qn_status qn_bench_machine(int n_threads, uint64_t membw_bytes, qn_bench_limits* out);

/* Kernel level this process uses: "ref", "avx2" or "avx512" (QN_ISA=ref|avx2|avx512 forces
 * one; the default is the best the CPU supports). */
const char* qn_kernels_name(void);

#ifdef __cplusplus
}
#endif
#endif /* QUENCH_H */
