/* gptq_model.c: sequential GPTQ over a whole model (see gptq.h). The calibration text is cut
 * into windows (BOS first when the vocabulary adds one); their residual stream at the input
 * of the current block is held in memory (tokens x dim floats) and pushed through one block
 * at a time with qn_forward_layers, whose observe hook feeds the Hessian of the site being
 * quantized. Quantized weights are put into the model as f32 matrices of their decoded
 * values, so later sites and blocks see the quantized model's activations. The output head
 * comes last: its Hessian is that of output_norm of the stream after the last (quantized)
 * block, computed directly from the stored stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gptq.h"
#include "calib/hessian.h"
#include "calib/importance.h"
#include "core/clock.h"
#include "core/mapfile.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/quantize_matrix.h"

/* Linear weights fed by one site, at most. */
#define SITE_WEIGHTS 3

/* Feeds one (layer, site)'s activations to a Hessian. */
typedef struct hook {
  int layer;
  qn_act_site site;
  qn_hessian* H;
} hook;

static void on_observe(void* user, int layer, qn_act_site site, const float* x, int n, int width) {
  hook* h = user;
  (void)width;
  if (h->H && layer == h->layer && site == h->site) qn_hessian_add(h->H, x, n);
}

/* Pushes every window's stored stream through block l (writing the output back if asked). */
static void layer_pass(qn_ctx* c, const qn_token_windows* w, float* xs, int dim, int l,
                       const int* pos, bool write_back) {
  for (int i = 0; i < w->n_win; i++) {
    int64_t o = w->off[i];
    int n = (int)(w->off[i + 1] - o);
    size_t bytes = sizeof(float) * (size_t)n * (size_t)dim;
    memcpy(c->x, xs + o * dim, bytes);
    qn_forward_layers(c, l, l + 1, pos, NULL, n);
    if (write_back) memcpy(xs + o * dim, c->x, bytes);
  }
}

/* The weights a site feeds in block lw, with their name stems. */
static int site_weights(qn_layer_weights* lw, qn_act_site site, qn_qtensor** ws,
                        const char** names) {
  switch (site) {
    case QN_SITE_ATTN_IN:
      ws[0] = &lw->wq, ws[1] = &lw->wk, ws[2] = &lw->wv;
      names[0] = "attn_q", names[1] = "attn_k", names[2] = "attn_v";
      return 3;
    case QN_SITE_ATTN_OUT: ws[0] = &lw->wo, names[0] = "attn_output"; return 1;
    case QN_SITE_FFN_IN:
      ws[0] = &lw->w_gate, ws[1] = &lw->w_up;
      names[0] = "ffn_gate", names[1] = "ffn_up";
      return 2;
    default: ws[0] = &lw->w_down, names[0] = "ffn_down"; return 1;
  }
}

/* What block l changed in the model, to undo. */
typedef struct swapped {
  qn_qtensor* at[7]; /* model weight slots replaced */
  qn_qtensor orig[7];
  float* f32[7]; /* decoded quantized weights now in those slots */
  int n;
} swapped;

static void restore(swapped* sw) {
  for (int i = 0; i < sw->n; i++) {
    *sw->at[i] = sw->orig[i];
    free(sw->f32[i]);
  }
  sw->n = 0;
}

/* GPTQ for one weight: quantize, record, and put its decoded values into the model. */
static qn_status quantize_weight(qn_qtensor* qt, const char* name, qn_qtype scheme, const float* h,
                                 const qn_gptq_model_opts* o, qn_gptq_result* res, swapped* sw) {
  int64_t rows = qt->rows, cols = qt->cols;
  size_t sb = qn_qtype_traits_of(scheme)->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  float* f = malloc(sizeof(float) * (size_t)(rows * cols));
  void* pay = malloc(qn_qtype_row_bytes(scheme, cols) * (size_t)rows);
  void* sc = malloc((size_t)qn_qtype_n_groups(scheme, cols) * sb * (size_t)rows);
  qn_status st = f && pay && sc ? QN_OK : qn_error(QN_ENOMEM, "out of memory for '%s'", name);
  if (st == QN_OK) st = qn_qtensor_dequant(qt, f);
  if (st == QN_OK) st = qn_gptq_quantize(scheme, f, rows, cols, h, &o->gptq, pay, sc);
  if (st != QN_OK) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", qn_last_error());
    free(f), free(pay), free(sc);
    return qn_error(st, "GPTQ of '%s': %s", name, msg);
  }
  qn_gptq_weight* gw = &res->w[res->n++];
  snprintf(gw->name, sizeof gw->name, "%s", name);
  gw->scheme = scheme;
  gw->rows = rows;
  gw->cols = cols;
  gw->payload = pay;
  gw->scales = sc;
  sw->at[sw->n] = qt;
  sw->orig[sw->n] = *qt;
  sw->f32[sw->n++] = f;
  *qt = (qn_qtensor){QN_QTYPE_F32, rows, cols, f, NULL, NULL, 0, QN_LAYOUT_ROWS};
  return QN_OK;
}

/* Collects the Hessian of (l, site) over all windows, then quantizes that site's weights. */
static qn_status quantize_site(qn_model* m, qn_ctx* c, const qn_token_windows* w, float* xs,
                               const int* pos, int l, qn_act_site site, const qn_gptq_model_opts* o,
                               qn_gptq_result* res, swapped* sw) {
  qn_qtensor* ws[SITE_WEIGHTS];
  const char* stems[SITE_WEIGHTS];
  int nw = site_weights(&m->w.layers[l], site, ws, stems);
  qn_qtype schemes[SITE_WEIGHTS];
  char names[SITE_WEIGHTS][96];
  bool any = false;
  for (int k = 0; k < nw; k++) {
    snprintf(names[k], sizeof names[k], "blk.%d.%s.weight", l, stems[k]);
    schemes[k] = o->scheme_of(o->scheme_user, names[k]);
    any |= qn_gptq_supports(schemes[k]);
  }
  if (!any) return QN_OK;
  int width = (int)ws[0]->cols;
  qn_hessian H;
  QN_TRY(qn_hessian_init(&H, width));
  float* h = malloc(sizeof(float) * (size_t)width * (size_t)width);
  qn_status st = h ? QN_OK : qn_error(QN_ENOMEM, "out of memory for a Hessian");
  if (st == QN_OK) {
    hook hk = {l, site, &H};
    c->observe = on_observe;
    c->observe_user = &hk;
    c->stop_early = true; /* nothing after the site is needed */
    c->stop_site = site;
    layer_pass(c, w, xs, m->src->hp.dim, l, pos, false);
    c->stop_early = false;
    c->observe = NULL;
    qn_hessian_finish(&H, h);
  }
  for (int k = 0; k < nw && st == QN_OK; k++)
    if (qn_gptq_supports(schemes[k]))
      st = quantize_weight(ws[k], names[k], schemes[k], h, o, res, sw);
  free(h);
  qn_hessian_free(&H);
  return st;
}

/* The output head (the embedding when tied): its Hessian is that of RMSNorm(output_norm) of
 * the stream after the last block, row by row from the stored stream xs. */
static qn_status quantize_head(qn_model* m, const qn_token_windows* w, const float* xs,
                               const char* name, qn_qtype scheme, const qn_gptq_model_opts* o,
                               qn_gptq_result* res) {
  const qn_hparams* hp = &m->src->hp;
  const int dim = hp->dim;
  qn_hessian H;
  QN_TRY(qn_hessian_init(&H, dim));
  float* h = malloc(sizeof(float) * (size_t)dim * (size_t)dim);
  float* rows = malloc(sizeof(float) * (size_t)w->ctx * (size_t)dim);
  qn_status st = h && rows ? QN_OK : qn_error(QN_ENOMEM, "out of memory for the head's Hessian");
  for (int i = 0; i < w->n_win && st == QN_OK; i++) {
    int64_t off = w->off[i];
    int n = (int)(w->off[i + 1] - off);
    for (int t = 0; t < n; t++)
      qn_rmsnorm_ref(rows + (size_t)t * dim, xs + (off + t) * dim, m->w.output_norm, dim,
                     hp->norm_eps);
    qn_hessian_add(&H, rows, n);
  }
  free(rows);
  swapped sw = {0};
  if (st == QN_OK) {
    qn_hessian_finish(&H, h);
    st = quantize_weight(&m->w.output, name, scheme, h, o, res, &sw);
  }
  restore(&sw);
  free(h);
  qn_hessian_free(&H);
  return st;
}

void qn_gptq_result_free(qn_gptq_result* r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) {
    free(r->w[i].payload);
    free(r->w[i].scales);
  }
  free(r->w);
  memset(r, 0, sizeof *r);
}

const qn_gptq_weight* qn_gptq_result_find(const qn_gptq_result* r, const char* name) {
  for (int i = 0; r && i < r->n; i++)
    if (!strcmp(r->w[i].name, name)) return &r->w[i];
  return NULL;
}

/* The residual stream entering block 0: token embeddings. */
static void embed(const qn_model* m, const qn_token_windows* w, float* xs) {
  const qn_qtensor* e = &m->w.tok_embd;
  const qn_qtype_traits* tr = qn_qtype_traits_of(e->type);
  int dim = m->src->hp.dim;
  for (int64_t t = 0; t < w->off[w->n_win]; t++) tr->dequant_row(e, w->ids[t], xs + t * dim);
}

qn_status qn_gptq_model_run(qn_model* m, const char* calib_path, const qn_gptq_model_opts* o,
                            qn_gptq_result* out) {
  memset(out, 0, sizeof *out);
  double t0 = qn_now();
  const qn_hparams* hp = &m->src->hp;
  int ctx = o->ctx > 0 ? o->ctx : 512;
  if (ctx > hp->max_seq_len) ctx = hp->max_seq_len;
  if (ctx > QN_MAX_BATCH) ctx = QN_MAX_BATCH;
  int64_t budget = o->max_tokens > 0 ? o->max_tokens : QN_GPTQ_DEFAULT_TOKENS;
  qn_token_windows w;
  QN_TRY(qn_token_windows_make(m, calib_path, budget, ctx, &w));
  int64_t T = w.off[w.n_win];
  float* xs = malloc(sizeof(float) * (size_t)T * (size_t)hp->dim);
  int* pos = malloc(sizeof(int) * (size_t)ctx);
  out->w = calloc((size_t)hp->n_layers * 7 + 2, sizeof *out->w); /* + the head */
  qn_ctx* c = NULL;
  qn_status st = xs && pos && out->w ? QN_OK
                                     : qn_error(QN_ENOMEM,
                                                "out of memory for %lld x %d calibration "
                                                "activations (lower --calib-tokens)",
                                                (long long)T, hp->dim);
  if (st == QN_OK) st = qn_ctx_new(m, ctx, 1, &c);
  if (st == QN_OK) {
    for (int i = 0; i < ctx; i++) pos[i] = i;
    embed(m, &w, xs);
  }
  /* the head: output.weight, or the embedding when tied */
  const char* head_name = hp->tied_embeddings ? "token_embd.weight" : "output.weight";
  qn_qtype head_scheme = o->scheme_of(o->scheme_user, head_name);
  bool head = qn_gptq_supports(head_scheme);
  int total = hp->n_layers + (head ? 1 : 0);
  const qn_act_site order[4] = {QN_SITE_ATTN_IN, QN_SITE_ATTN_OUT, QN_SITE_FFN_IN, QN_SITE_FFN_MID};
  for (int l = 0; l < hp->n_layers && st == QN_OK; l++) {
    swapped sw = {0};
    for (int s = 0; s < 4 && st == QN_OK; s++)
      st = quantize_site(m, c, &w, xs, pos, l, order[s], o, out, &sw);
    if (st == QN_OK && (l + 1 < hp->n_layers || head)) layer_pass(c, &w, xs, hp->dim, l, pos, true);
    restore(&sw);
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "gptq", l + 1, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK && head) {
    st = quantize_head(m, &w, xs, head_name, head_scheme, o, out);
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "gptq", total, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  out->tokens = T;
  out->seconds = qn_now() - t0;
  qn_ctx_free(c);
  free(pos);
  free(xs);
  qn_token_windows_free(&w);
  if (st != QN_OK) qn_gptq_result_free(out);
  return st;
}
