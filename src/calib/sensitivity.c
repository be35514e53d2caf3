/* sensitivity.c: per-layer / per-tensor sensitivity to quantization. Each variant of the
 * model quantizes one block (its 7 linear weights) or one 2-D weight to a scheme, in
 * memory, leaving everything else as loaded; the variants are run over the text next to
 * the base model and ranked by the mean KL divergence of their next-token distributions
 * from the base's (also perplexity and top-1 agreement). The base runs once per span and
 * every variant reuses its logits (see qn_measure_variants in sensitivity.h). */
#include "calib/sensitivity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "eval/score.h"
#include "kernels/kernels.h"
#include "quant/pack_i8.h"
#include "quant/quantize_matrix.h"

/* ---- slots ------------------------------------------------------------------------------ */

static void set_slot(qn_wslot* s, const char* name, int layer, qn_qtensor* w, qn_qtensor* alias) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->layer = layer;
  s->w = w;
  s->alias = alias;
  s->orig = *w;
}

qn_status qn_wslots_of(qn_model* m, qn_wslot** out, int* n) {
  static const char* const kinds[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                       "ffn_gate", "ffn_up", "ffn_down"};
  const qn_hparams* hp = &m->src->hp;
  qn_weights* w = &m->w;
  bool tied = hp->tied_embeddings;
  int cap = 2 + 7 * hp->n_layers;
  qn_wslot* s = calloc((size_t)cap, sizeof *s);
  if (!s) return qn_error(QN_ENOMEM, "out of memory");
  int k = 0;
  set_slot(&s[k++], "token_embd.weight", -1, &w->tok_embd, tied ? &w->output : NULL);
  for (int l = 0; l < hp->n_layers; l++) {
    qn_layer_weights* lw = &w->layers[l];
    qn_qtensor* mats[7] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w_gate, &lw->w_up, &lw->w_down};
    for (int j = 0; j < 7; j++) {
      char name[96];
      snprintf(name, sizeof name, "blk.%d.%s.weight", l, kinds[j]);
      set_slot(&s[k++], name, l, mats[j], NULL);
    }
  }
  if (!tied) set_slot(&s[k++], "output.weight", -1, &w->output, NULL);
  *out = s;
  *n = k;
  return QN_OK;
}

/* ---- weights quantized in memory --------------------------------------------------------- */

void qn_qweight_free(qn_qweight* q) {
  if (!q) return;
  free(q->payload);
  free(q->scales);
  free(q->zeros);
  memset(q, 0, sizeof *q);
}

qn_status qn_qweight_make(const qn_qtensor* src, const char* name, qn_qtype t,
                          const qn_quant_opts* o, qn_qweight* out) {
  memset(out, 0, sizeof *out);
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (!tr) return qn_error(QN_EINVAL, "%s: invalid scheme %d", name, (int)t);
  if (tr->act == QN_ACT_I8_STATIC)
    return qn_error(QN_EUNSUPPORTED,
                    "scheme '%s' needs a calibrated activation scale; sensitivity and mixed "
                    "precision take weight-only or dynamic-activation schemes",
                    tr->name);
  const int64_t rows = src->rows, cols = src->cols;
  const size_t n = (size_t)rows * (size_t)cols;
  const uint64_t rb = qn_qtype_row_bytes(t, cols);
  const int64_t ng = qn_qtype_n_groups(t, cols);
  const size_t sb = tr->group < 0 ? 0 : (tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4);
  const size_t scale_bytes = sb * (size_t)ng * (size_t)rows;
  float* f32 = malloc(sizeof(float) * (n ? n : 1));
  out->payload = malloc(rb * (uint64_t)rows + 1);
  if (scale_bytes) out->scales = malloc(scale_bytes);
  if (scale_bytes && tr->asymmetric) out->zeros = malloc(scale_bytes);
  qn_status st = QN_OK;
  if (!f32 || !out->payload || (scale_bytes && !out->scales) ||
      (scale_bytes && tr->asymmetric && !out->zeros))
    st = qn_error(QN_ENOMEM, "out of memory quantizing '%s'", name);
  if (st == QN_OK) st = qn_qtensor_dequant(src, f32);
  if (st == QN_OK) {
    st = qn_quantize_matrix(t, f32, rows, cols, o, out->payload, out->scales, out->zeros, NULL);
    if (st != QN_OK) {
      char msg[600];
      snprintf(msg, sizeof msg, "%s", qn_last_error());
      st = qn_error(st, "tensor '%s': %s", name, msg);
    }
  }
  free(f32);
  out->q = (qn_qtensor){.type = t,
                        .rows = rows,
                        .cols = cols,
                        .data = out->payload,
                        .scales = out->scales,
                        .zeros = out->zeros};
  if (st == QN_OK && qn_qtype_packed_layout(t) != QN_LAYOUT_ROWS) {
    /* the layout a .qnz stores and the fast kernels read (w8a8-*, w4a8) */
    void *pp = NULL, *ps = NULL;
    qn_qtensor canon = out->q;
    st = qn_qtensor_pack(&canon, &out->q, &pp, &ps);
    if (st == QN_OK) {
      free(out->payload);
      free(out->scales);
      out->payload = pp;
      out->scales = ps;
    }
  }
  if (st != QN_OK) {
    qn_qweight_free(out);
    return st;
  }
  out->bytes = qn_qtype_bytes(t, rows, cols);
  return QN_OK;
}

/* ---- measurement ------------------------------------------------------------------------ */

/* The base model's view of one span, reused by every variant. */
typedef struct base_span {
  float* logits; /* (n-1) x V base logits */
  float* p;      /* (n-1) x V base probabilities */
  double* z;     /* [n-1] log-sum-exp of each row */
  int* top;      /* [n-1] argmax of each row */
} base_span;

/* Per-variant running sums. */
typedef struct variant_acc {
  double kl; /* sum of per-position KL */
  double nll;
  int64_t agree;
} variant_acc;

static int argmax(const float* x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

static void swap_in(qn_wslot* slots, const qn_variant* v) {
  for (int i = 0; i < v->n_swaps; i++) {
    qn_wslot* s = &slots[v->swaps[i].slot];
    *s->w = v->swaps[i].q->q;
    if (s->alias) *s->alias = v->swaps[i].q->q;
  }
}

static void restore(qn_wslot* slots, const qn_variant* v) {
  for (int i = 0; i < v->n_swaps; i++) {
    qn_wslot* s = &slots[v->swaps[i].slot];
    *s->w = s->orig;
    if (s->alias) *s->alias = s->orig;
  }
}

/* Makes sure the context's kernel scratch fits the weights now in the model (a swapped-in
 * scheme may need more); recreates the context when it does not. */
static qn_status fit_ctx(qn_model* m, qn_wslot* slots, int n_slots, int n_ctx, qn_ctx** c) {
  int threads = qn_pool_size(m->pool);
  bool fits = *c != NULL;
  for (int i = 0; i < n_slots && fits; i++)
    if (qn_matmul_scratch_floats(slots[i].w, QN_MAX_BATCH, threads) > (*c)->scratch_floats)
      fits = false;
  if (fits) return QN_OK;
  qn_ctx_free(*c);
  *c = NULL;
  return qn_ctx_new(m, n_ctx, 1, c);
}

/* Scores the variant's logits lq of span s against the base view b. */
static void score_variant(const base_span* b, const float* lq, const qn_span* s, int V,
                          variant_acc* acc) {
  for (int t = 0; t + 1 < s->n; t++) {
    const float* pa = b->logits + (size_t)t * V;
    const float* pp = b->p + (size_t)t * V;
    const float* pq = lq + (size_t)t * V;
    double zq = qn_logsumexp(pq, V), za = b->z[t];
    double kl = 0;
    for (int i = 0; i < V; i++) kl += pp[i] * (((double)pa[i] - za) - ((double)pq[i] - zq));
    acc->kl += kl > 0 ? kl : 0;
    acc->nll += zq - pq[s->tokens[t + 1]];
    acc->agree += argmax(pq, V) == b->top[t];
  }
}

/* Runs the base model on span s and fills b; adds the base NLL to *nll. */
static qn_status run_base(qn_ctx* c, const qn_span* s, int V, base_span* b, double* nll) {
  QN_TRY(qn_score_span_logits(c, s, b->logits));
  for (int t = 0; t + 1 < s->n; t++) {
    const float* row = b->logits + (size_t)t * V;
    float* p = b->p + (size_t)t * V;
    double z = qn_logsumexp(row, V);
    for (int i = 0; i < V; i++) p[i] = (float)exp((double)row[i] - z);
    b->z[t] = z;
    b->top[t] = argmax(row, V);
    *nll += z - row[s->tokens[t + 1]];
  }
  return QN_OK;
}

qn_status qn_measure_variants(qn_model* m, qn_wslot* slots, const qn_spans* sp, const qn_variant* v,
                              int n_variants, qn_progress_fn progress, void* progress_user,
                              const char* stage, qn_variant_stats* stats, qn_measure_info* info) {
  memset(info, 0, sizeof *info);
  const int V = m->src->hp.vocab_size;
  int n_slots = 0;
  for (int i = 0; i < n_variants; i++)
    for (int j = 0; j < v[i].n_swaps; j++)
      if (v[i].swaps[j].slot + 1 > n_slots) n_slots = v[i].swaps[j].slot + 1;
  int max_n = 0;
  for (int i = 0; i < sp->count; i++)
    if (sp->v[i].n > max_n) max_n = sp->v[i].n;
  const int64_t total = qn_spans_predictions(sp);
  if (total <= 0) return qn_error(QN_EINVAL, "the text gives no positions to score");
  const size_t cells = (size_t)max_n * (size_t)V;
  base_span b = {malloc(sizeof(float) * cells), malloc(sizeof(float) * cells),
                 malloc(sizeof(double) * (size_t)max_n), malloc(sizeof(int) * (size_t)max_n)};
  float* lq = malloc(sizeof(float) * cells);
  variant_acc* acc = calloc((size_t)n_variants + 1, sizeof *acc);
  qn_ctx* c = NULL;
  qn_status st = (b.logits && b.p && b.z && b.top && lq && acc)
                     ? QN_OK
                     : qn_error(QN_ENOMEM, "out of memory for %d x %d logits", max_n, V);
  const int n_ctx = max_n - 1 > 0 ? max_n - 1 : 1;
  if (st == QN_OK) st = qn_ctx_new(m, n_ctx, 1, &c);
  double nll_base = 0;
  const int64_t passes = (int64_t)sp->count * (n_variants + 1);
  int64_t done = 0;
  for (int d = 0; d < sp->count && st == QN_OK; d++) {
    const qn_span* s = &sp->v[d];
    if (s->n < 2) continue;
    st = fit_ctx(m, slots, n_slots, n_ctx, &c);
    if (st == QN_OK) st = run_base(c, s, V, &b, &nll_base);
    done++;
    for (int k = 0; k < n_variants && st == QN_OK; k++) {
      swap_in(slots, &v[k]);
      st = fit_ctx(m, slots, n_slots, n_ctx, &c);
      if (st == QN_OK) st = qn_score_span_logits(c, s, lq);
      restore(slots, &v[k]);
      if (st == QN_OK) score_variant(&b, lq, s, V, &acc[k]);
      done++;
    }
    if (st == QN_OK && progress && progress(progress_user, stage, done, passes))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK) {
    info->nll_base = nll_base / (double)total;
    info->tokens = total;
    info->n_docs = sp->count;
    for (int k = 0; k < n_variants; k++) {
      stats[k].kld_mean = acc[k].kl / (double)total;
      stats[k].nll = acc[k].nll / (double)total;
      stats[k].top1_agree = (double)acc[k].agree / (double)total;
    }
  }
  qn_ctx_free(c);
  free(b.logits);
  free(b.p);
  free(b.z);
  free(b.top);
  free(lq);
  free(acc);
  return st;
}

/* ---- qn_sensitivity --------------------------------------------------------------------- */

void qn_sens_result_free(qn_sens_result* r) {
  if (!r) return;
  free(r->entries);
  memset(r, 0, sizeof *r);
}

/* Groups slots into variants: one per block (layer unit) or one per slot (tensor unit).
 * groups[i] is the variant of slot i, or -1 when no variant covers it. */
static int group_slots(const qn_wslot* slots, int n_slots, qn_sens_unit unit, int* groups) {
  int n = 0, last_layer = -2;
  for (int i = 0; i < n_slots; i++) {
    if (unit == QN_SENS_TENSOR) {
      groups[i] = n++;
    } else if (slots[i].layer < 0) {
      groups[i] = -1;
    } else {
      if (slots[i].layer != last_layer) n++;
      last_layer = slots[i].layer;
      groups[i] = n - 1;
    }
  }
  return n;
}

static int cmp_entry(const void* a, const void* b) {
  const qn_sens_entry *x = a, *y = b;
  if (x->kld_mean != y->kld_mean) return x->kld_mean < y->kld_mean ? 1 : -1;
  return strcmp(x->name, y->name);
}

/* Variant i: its swaps in order of the slots, filled into swaps[] with variants[] pointing
 * into it, and its entry's name, layer, sizes. */
static void build_variants(const qn_wslot* slots, int n_slots, const int* groups,
                           const qn_qweight* qw, qn_sens_unit unit, qn_swap* swaps,
                           qn_variant* variants, qn_sens_entry* entries, int n_var) {
  int k = 0;
  for (int g = 0; g < n_var; g++) {
    variants[g].swaps = &swaps[k];
    variants[g].n_swaps = 0;
    qn_sens_entry* e = &entries[g];
    for (int i = 0; i < n_slots; i++) {
      if (groups[i] != g) continue;
      swaps[k++] = (qn_swap){i, &qw[i]};
      variants[g].n_swaps++;
      if (e->n_tensors++ == 0) {
        e->layer = slots[i].layer;
        if (unit == QN_SENS_TENSOR)
          snprintf(e->name, sizeof e->name, "%s", slots[i].name);
        else
          snprintf(e->name, sizeof e->name, "blk.%d", slots[i].layer);
      }
      e->bytes += qw[i].bytes;
      e->bytes_f32 += 4 * (uint64_t)qw[i].q.rows * (uint64_t)qw[i].q.cols;
    }
  }
}

/* Quantizes every slot some variant covers; the rest stay zeroed. */
static qn_status quantize_slots(const qn_wslot* slots, int n_slots, const int* groups, qn_qtype t,
                                const qn_quant_opts* qo, qn_qweight* qw) {
  for (int i = 0; i < n_slots; i++)
    if (groups[i] >= 0) QN_TRY(qn_qweight_make(&slots[i].orig, slots[i].name, t, qo, &qw[i]));
  return QN_OK;
}

qn_status qn_sensitivity(const char* model_path, const char* text, size_t len,
                         const qn_sens_opts* o, qn_sens_result* r) {
  qn_error_clear();
  memset(r, 0, sizeof *r);
  double t0 = qn_now();
  if (!o || !o->scheme || !*o->scheme) return qn_error(QN_EINVAL, "no scheme given");
  int t = qn_qtype_from_name(o->scheme);
  if (t < 0)
    return qn_error(QN_EINVAL, "unknown scheme '%s' (see 'quench quantize --list')", o->scheme);
  if (o->unit != QN_SENS_LAYER && o->unit != QN_SENS_TENSOR)
    return qn_error(QN_EINVAL, "unit must be per layer or per tensor");
  if (qn_qtype_traits_of((qn_qtype)t)->act == QN_ACT_I8_STATIC)
    return qn_error(QN_EUNSUPPORTED,
                    "scheme '%s' needs a calibrated activation scale; sensitivity takes "
                    "weight-only or dynamic-activation schemes",
                    o->scheme);
  qn_model_opts mo = {.tokenizer_path = o->tokenizer_path, .n_threads = o->n_threads};
  qn_model* m = NULL;
  QN_TRY(qn_model_open(model_path, &mo, &m));
  qn_spans sp = {0};
  qn_wslot* slots = NULL;
  int n_slots = 0;
  qn_status st = qn_spans_build(m, text, len, &o->eval, &sp);
  if (st == QN_OK) st = qn_wslots_of(m, &slots, &n_slots);
  int* groups = st == QN_OK ? malloc(sizeof(int) * (size_t)n_slots) : NULL;
  qn_qweight* qw = st == QN_OK ? calloc((size_t)n_slots, sizeof *qw) : NULL;
  qn_swap* swaps = st == QN_OK ? calloc((size_t)n_slots, sizeof *swaps) : NULL;
  qn_variant* var = st == QN_OK ? calloc((size_t)n_slots, sizeof *var) : NULL;
  qn_variant_stats* vs = st == QN_OK ? calloc((size_t)n_slots, sizeof *vs) : NULL;
  qn_sens_entry* ent = st == QN_OK ? calloc((size_t)n_slots, sizeof *ent) : NULL;
  if (st == QN_OK && (!groups || !qw || !swaps || !var || !vs || !ent))
    st = qn_error(QN_ENOMEM, "out of memory");
  int n_var = 0;
  if (st == QN_OK) {
    n_var = group_slots(slots, n_slots, o->unit, groups);
    int threads = o->n_threads > 0 ? o->n_threads : qn_cpu_count();
    qn_quant_opts qo = {.search = o->search, .n_threads = threads};
    st = quantize_slots(slots, n_slots, groups, (qn_qtype)t, &qo, qw);
  }
  qn_measure_info mi;
  if (st == QN_OK) {
    build_variants(slots, n_slots, groups, qw, o->unit, swaps, var, ent, n_var);
    st = qn_measure_variants(m, slots, &sp, var, n_var, o->eval.progress, o->eval.progress_user,
                             "sensitivity", vs, &mi);
  }
  if (st == QN_OK) {
    double ppl_base = exp(mi.nll_base);
    for (int g = 0; g < n_var; g++) {
      ent[g].kld_mean = vs[g].kld_mean;
      ent[g].ppl = exp(vs[g].nll);
      ent[g].delta_ppl_pct = 100.0 * (ent[g].ppl - ppl_base) / ppl_base;
      ent[g].top1_agree = vs[g].top1_agree;
    }
    qsort(ent, (size_t)n_var, sizeof *ent, cmp_entry);
    r->entries = ent;
    ent = NULL;
    r->n_entries = n_var;
    snprintf(r->scheme, sizeof r->scheme, "%s", qn_qtype_traits_of((qn_qtype)t)->name);
    r->ppl_base = ppl_base;
    r->tokens = mi.tokens;
    r->n_docs = mi.n_docs;
    r->seconds = qn_now() - t0;
  }
  for (int i = 0; qw && i < n_slots; i++) qn_qweight_free(&qw[i]);
  free(ent);
  free(vs);
  free(var);
  free(swaps);
  free(qw);
  free(groups);
  free(slots);
  qn_spans_free(&sp);
  qn_model_free(m);
  return st;
}
