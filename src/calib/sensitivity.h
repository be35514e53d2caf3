/* sensitivity.h: measuring how much quantizing some weights of a model (the others left
 * at full precision) moves its next-token distributions. The engine behind
 * qn_sensitivity() and qn_mixed_precision():
 *  - the model's 2-D weights as replaceable slots (qn_wslot);
 *  - weights quantized in memory (qn_qweight), exactly as qn_quantize() would store them;
 *  - qn_measure_variants(): one pass over the text that runs the base model once per span
 *    and then every variant (a set of slot -> quantized weight swaps) on the same span, so
 *    the base logits are computed once and no .qnz file is written. */
#ifndef QN_CALIB_SENSITIVITY_H
#define QN_CALIB_SENSITIVITY_H

#include "eval/spans.h"
#include "model/model.h"
#include "quant/qtype.h"

/* One 2-D weight of a loaded model that a variant can replace. */
typedef struct qn_wslot {
  char name[96];     /* canonical name ("blk.3.ffn_down.weight", "token_embd.weight") */
  int layer;         /* decoder block index; -1 for token_embd / output */
  qn_qtensor* w;     /* the model's view of it (swapped while a variant runs) */
  qn_qtensor* alias; /* the tied output head that shares w, or NULL */
  qn_qtensor orig;   /* the view as bound from the file, restored after each variant */
} qn_wslot;

/* Lists the model's 2-D weights in file order: token_embd, then per block attn_q, attn_k,
 * attn_v, attn_output, ffn_gate, ffn_up, ffn_down, then output (absent when tied: the
 * token_embd slot then also drives the head). *out is malloc'ed. */
qn_status qn_wslots_of(qn_model* m, qn_wslot** out, int* n);

/* A weight quantized in memory. */
typedef struct qn_qweight {
  qn_qtensor q;   /* view over the buffers below (type, rows, cols, layout) */
  void* payload;  /* rows * row_bytes, or the packed layout's bytes (w4a8, w8a8-*); owned */
  void* scales;   /* rows * n_groups scale values (or packed scales), owned, or NULL */
  void* zeros;    /* rows * n_groups minimums, owned, or NULL */
  uint64_t bytes; /* payload + scales + zeros, as a .qnz stores them (qn_qtype_bytes) */
} qn_qweight;

/* Dequantizes src to f32 and quantizes it to t with qn_quantize_matrix (o may be NULL), then
 * packs it when t has a packed layout (w4a8, w8a8-dynamic), as qn_quantize stores it.
 * Schemes that need a calibrated activation scale are refused (QN_EUNSUPPORTED). */
qn_status qn_qweight_make(const qn_qtensor* src, const char* name, qn_qtype t,
                          const qn_quant_opts* o, qn_qweight* out);
void qn_qweight_free(qn_qweight* q);

/* One replacement of a variant. */
typedef struct qn_swap {
  int slot;            /* index into the slot array */
  const qn_qweight* q; /* the weight used instead */
} qn_swap;

/* A model variant: the base with some weights replaced. */
typedef struct qn_variant {
  const qn_swap* swaps; /* [n_swaps] */
  int n_swaps;          /* 0 = the base model itself */
} qn_variant;

/* What a variant measured against the base over all scored positions. */
typedef struct qn_variant_stats {
  double kld_mean;   /* mean KL(P_base || P_variant), nats */
  double nll;        /* mean negative log-likelihood of the variant, nats */
  double top1_agree; /* fraction of positions where both argmaxes agree */
} qn_variant_stats;

/* Totals of a measurement pass. */
typedef struct qn_measure_info {
  double nll_base; /* mean NLL of the base model, nats */
  int64_t tokens;  /* scored positions */
  int n_docs;      /* spans */
} qn_measure_info;

/* Runs the base model and every variant over the spans (spans outermost; the base once per
 * span) and fills stats[n_variants]. The model's weights are swapped in place and always
 * restored, also on failure. progress (may be NULL) sees `stage` and forward passes done. */
qn_status qn_measure_variants(qn_model* m, qn_wslot* slots, const qn_spans* sp, const qn_variant* v,
                              int n_variants, qn_progress_fn progress, void* progress_user,
                              const char* stage, qn_variant_stats* stats, qn_measure_info* info);

#endif
