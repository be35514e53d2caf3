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

typedef struct qn_quantize_report {
  qn_quant_tensor_report* tensors; /* [n_tensors], owned */
  int n_tensors;
  uint64_t file_bytes_in;  /* size of the source file(s) */
  uint64_t file_bytes_out; /* size of the .qnz */
  double bpw;              /* bits per weight over all 2-D weights */
  double seconds;          /* wall time */
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

#ifdef __cplusplus
}
#endif
#endif /* QUENCH_H */
