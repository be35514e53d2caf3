/* awq_model.c: sequential AWQ over a whole model (see awq.h). The calibration windows'
 * residual stream at the input of the current block is held in memory (tokens x dim floats)
 * and pushed through one block at a time with qn_forward_layers; the observe hook feeds the
 * Hessian and the per-channel sum of |x| of the site being quantized (the inputs of q/k/v and
 * of the head are RMSNorm of the stored stream, computed without a pass). Each quantized weight is
 * put into the model as the f32 matrix of its effective values Q(W diag s) diag(s)^-1, which
 * is what the folded, quantized file computes on the unscaled input (the row folds into
 * attn_v and ffn_up commute with row-wise quantization up to the rounding of the stored
 * scales), so later sites and blocks see the quantized model's activations. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/awq.h"
#include "calib/calibrate.h"
#include "calib/hessian.h"
#include "calib/importance.h"
#include "core/clock.h"
#include "core/half.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* Linear weights fed by one site, at most. */
#define SITE_WEIGHTS 3

/* What one site's hook collects. */
typedef struct hook {
  int layer;        /* block of the site */
  qn_act_site site; /* the site */
  qn_hessian* H;    /* its Hessian */
  double* abs_sum;  /* [width] sum of |x| per channel */
} hook;

static void hook_add(hook* h, const float* x, int n, int width);

static void on_observe(void* user, int layer, qn_act_site site, const float* x, int n, int width) {
  hook* h = user;
  if (layer == h->layer && site == h->site) hook_add(h, x, n, width);
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

/* The weights a site feeds (block l, or the head for QN_SITE_OUTPUT_IN), with their names. */
static int site_weights(qn_model* m, int l, qn_act_site site, qn_qtensor** ws,
                        char names[SITE_WEIGHTS][96]) {
  static const char* const qkv[3] = {"attn_q", "attn_k", "attn_v"};
  static const char* const gu[2] = {"ffn_gate", "ffn_up"};
  const char* const* stems = NULL;
  int n = 0;
  if (site == QN_SITE_OUTPUT_IN) {
    ws[0] = &m->w.output; /* a tied head is the embedding */
    snprintf(names[0], 96, m->src->hp.tied_embeddings ? "token_embd.weight" : "output.weight");
    return 1;
  }
  qn_layer_weights* lw = &m->w.layers[l];
  static const char* const o_stem[1] = {"attn_output"};
  static const char* const d_stem[1] = {"ffn_down"};
  switch (site) {
    case QN_SITE_ATTN_IN:
      ws[0] = &lw->wq, ws[1] = &lw->wk, ws[2] = &lw->wv, stems = qkv, n = 3;
      break;
    case QN_SITE_ATTN_OUT: ws[0] = &lw->wo, stems = o_stem, n = 1; break;
    case QN_SITE_FFN_IN: ws[0] = &lw->w_gate, ws[1] = &lw->w_up, stems = gu, n = 2; break;
    default: ws[0] = &lw->w_down, stems = d_stem, n = 1; break;
  }
  for (int k = 0; k < n; k++) snprintf(names[k], 96, "blk.%d.%s.weight", l, stems[k]);
  return n;
}

/* What a block changed in the model, to undo. */
typedef struct swapped {
  qn_qtensor* at[7]; /* model weight slots replaced */
  qn_qtensor orig[7];
  float* f32[7]; /* effective quantized weights now in those slots */
  int n;
} swapped;

static void restore(swapped* sw) {
  for (int i = 0; i < sw->n; i++) {
    *sw->at[i] = sw->orig[i];
    free(sw->f32[i]);
  }
  sw->n = 0;
}

/* State of one run. */
typedef struct run {
  qn_model* m;
  const qn_awq_model_opts* o;
  qn_awq_result* res;
  qn_awq_scratch b;     /* buffers for the largest weight */
  int max_result;       /* capacity of res->clip and res->gptq.w */
  qn_token_windows win; /* calibration windows */
  float* xs;            /* tokens x dim residual stream */
  int* pos;             /* 0 .. ctx-1 */
  qn_ctx* c;            /* session running the blocks */
} run;

void qn_awq_result_free(qn_awq_result* r) {
  if (!r) return;
  qn_smooth_free(r->sm);
  free(r->family);
  free(r->err_final);
  for (int i = 0; i < r->n_clip; i++) free(r->clip[i].step);
  free(r->clip);
  qn_gptq_result_free(&r->gptq);
  memset(r, 0, sizeof *r);
}

static qn_status result_new(const qn_model* m, int cap, qn_awq_result* r) {
  const qn_hparams* hp = &m->src->hp;
  qn_smooth* sm = calloc(1, sizeof *sm);
  if (!sm) return qn_error(QN_ENOMEM, "out of memory");
  r->sm = sm;
  sm->n_layers = hp->n_layers;
  sm->n_slots = (hp->n_layers + 1) * QN_SITE_COUNT;
  sm->head_dim = hp->head_dim;
  sm->group = hp->n_heads / hp->n_kv_heads;
  sm->kv_dim = hp->n_kv_heads * hp->head_dim;
  sm->s = calloc((size_t)sm->n_slots, sizeof *sm->s);
  sm->alpha = malloc(sizeof(float) * (size_t)sm->n_slots);
  sm->err_before = calloc((size_t)sm->n_slots, sizeof *sm->err_before);
  sm->err_after = calloc((size_t)sm->n_slots, sizeof *sm->err_after);
  r->family = malloc((size_t)sm->n_slots);
  r->err_final = calloc((size_t)sm->n_slots, sizeof *r->err_final);
  r->clip = calloc((size_t)cap, sizeof *r->clip);
  r->gptq.w = calloc((size_t)cap, sizeof *r->gptq.w);
  if (!sm->s || !sm->alpha || !sm->err_before || !sm->err_after || !r->family || !r->err_final ||
      !r->clip || !r->gptq.w)
    return qn_error(QN_ENOMEM, "out of memory");
  for (int i = 0; i < sm->n_slots; i++) sm->alpha[i] = -1, r->family[i] = -1;
  sm->div.n_slots = sm->n_slots;
  sm->div.s = (const float* const*)sm->s;
  return QN_OK;
}

/* Adds n rows x (width) to the hook's Hessian and |x| sums. */
static void hook_add(hook* h, const float* x, int n, int width) {
  qn_hessian_add(h->H, x, n);
  for (int t = 0; t < n; t++)
    for (int j = 0; j < width; j++) h->abs_sum[j] += fabsf(x[(size_t)t * width + j]);
}

/* Feeds the hook RMSNorm(stream, norm) of every window (the input of q/k/v, or with
 * output_norm the head's), computed from the stored stream without running the block. */
static qn_status norm_pass(run* R, const float* norm, hook* hk) {
  const qn_hparams* hp = &R->m->src->hp;
  const int dim = hp->dim;
  float* rows = malloc(sizeof(float) * (size_t)R->win.ctx * (size_t)dim);
  if (!rows) return qn_error(QN_ENOMEM, "out of memory");
  for (int i = 0; i < R->win.n_win; i++) {
    int64_t o = R->win.off[i];
    int n = (int)(R->win.off[i + 1] - o);
    for (int t = 0; t < n; t++)
      qn_rmsnorm_ref(rows + (size_t)t * dim, R->xs + (o + t) * dim, norm, dim, hp->norm_eps);
    hook_add(hk, rows, n, dim);
  }
  free(rows);
  return QN_OK;
}

/* Collects G (width x width) and mean |x| (m[width]) of (l, site) over all windows; l = -1 is
 * the head's input. */
static qn_status collect_site(run* R, int l, qn_act_site site, int width, float* g, float* m) {
  qn_hessian H;
  QN_TRY(qn_hessian_init(&H, width));
  double* abs_sum = calloc((size_t)width, sizeof *abs_sum);
  if (!abs_sum) {
    qn_hessian_free(&H);
    return qn_error(QN_ENOMEM, "out of memory");
  }
  hook hk = {l, site, &H, abs_sum};
  qn_status st = QN_OK;
  if (site == QN_SITE_OUTPUT_IN)
    st = norm_pass(R, R->m->w.output_norm, &hk);
  else if (site == QN_SITE_ATTN_IN)
    st = norm_pass(R, R->m->w.layers[l].attn_norm, &hk);
  else {
    R->c->observe = on_observe;
    R->c->observe_user = &hk;
    R->c->stop_early = true; /* nothing after the site is needed */
    R->c->stop_site = site;
    layer_pass(R->c, &R->win, R->xs, R->m->src->hp.dim, l, R->pos, false);
    R->c->stop_early = false;
    R->c->observe = NULL;
  }
  if (st == QN_OK) {
    qn_hessian_finish(&H, g);
    for (int j = 0; j < width; j++) m[j] = H.count ? (float)(abs_sum[j] / (double)H.count) : 0;
  }
  free(abs_sum);
  qn_hessian_free(&H);
  return st;
}

/* trace(W G W^T): the site's output energy, to report errors relative to it. */
static double output_energy(const float* w, int64_t rows, int64_t cols, const float* g,
                            qn_awq_scratch* b) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f, w,
              (int)cols, g, (int)cols, 0.0f, b->eg, (int)cols);
  double sum = 0;
  for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) sum += (double)w[i] * b->eg[i];
  return sum;
}

/* The weights of one site as the search sees them. */
typedef struct site_set {
  int n;                         /* weights */
  qn_qtensor* at[SITE_WEIGHTS];  /* model slots */
  char name[SITE_WEIGHTS][96];   /* canonical names */
  qn_qtype scheme[SITE_WEIGHTS]; /* recipe schemes */
  bool awq[SITE_WEIGHTS];        /* scheme AWQ works on */
  float* w[SITE_WEIGHTS];        /* f32 values (rows x cols), owned */
} site_set;

static void site_set_free(site_set* ss) {
  for (int k = 0; k < ss->n; k++) free(ss->w[k]);
}

/* Searches alpha over the grid for the site (plain scales, then the duo ones); s gets the
 * chosen scales. */
static qn_status search_alpha(run* R, const site_set* ss, int slot, const float* g, const float* m,
                              int width, int pool, float* s) {
  qn_smooth* sm = R->res->sm;
  const int hd = R->m->src->hp.head_dim;
  double best = INFINITY, err0 = INFINITY, energy = 0;
  int best_a = 0;
  float* wm = calloc((size_t)width, sizeof *wm);
  if (!wm) return qn_error(QN_ENOMEM, "out of memory");
  int64_t rows = 0;
  for (int k = 0; k < ss->n; k++)
    if (ss->awq[k]) {
      energy += output_energy(ss->w[k], ss->at[k]->rows, width, g, &R->b);
      qn_awq_weight_mean(ss->scheme[k], ss->w[k], ss->at[k]->rows, width, wm);
      rows += ss->at[k]->rows;
    }
  for (int j = 0; j < width; j++) wm[j] /= (float)rows;
  /* candidates: mean |x| ("plain"), then with the weight term ("duo") */
  const int n_cand = 2 * QN_AWQ_N_ALPHA;
  qn_status st = QN_OK;
  for (int a = 0; a < n_cand && st == QN_OK; a++) {
    qn_awq_scales(m, a >= QN_AWQ_N_ALPHA ? wm : NULL, width,
                  (a % QN_AWQ_N_ALPHA) * QN_AWQ_ALPHA_STEP, hd, pool, s);
    double err = 0;
    for (int k = 0; k < ss->n && st == QN_OK; k++) {
      if (!ss->awq[k]) continue;
      double e = 0;
      st = qn_awq_layer_error(ss->scheme[k], ss->w[k], ss->at[k]->rows, width, s, NULL, g, &R->b,
                              &e);
      err += e;
    }
    if (a == 0) err0 = err;
    if (err < best) best = err, best_a = a;
  }
  int fam = best_a / QN_AWQ_N_ALPHA;
  double alpha = (best_a % QN_AWQ_N_ALPHA) * QN_AWQ_ALPHA_STEP;
  qn_awq_scales(m, fam ? wm : NULL, width, alpha, hd, pool, s);
  free(wm);
  QN_TRY(st);
  sm->err_before[slot] = energy > 0 ? err0 / energy : err0;
  sm->err_after[slot] = energy > 0 ? best / energy : best;
  sm->alpha[slot] = (float)alpha;
  R->res->family[slot] = (int8_t)(best_a > 0 ? fam : -1);
  if (best_a > 0) {
    sm->s[slot] = malloc(sizeof(float) * (size_t)width);
    if (!sm->s[slot]) return qn_error(QN_ENOMEM, "out of memory");
    memcpy(sm->s[slot], s, sizeof(float) * (size_t)width);
  }
  return QN_OK;
}

/* A site whose scales stay 1 (a tied head): records alpha 0 and the RTN error. */
static qn_status no_scales(run* R, const site_set* ss, int slot, const float* g, int width,
                           float* s) {
  for (int j = 0; j < width; j++) s[j] = 1.0f;
  double err = 0, energy = 0;
  for (int k = 0; k < ss->n; k++) {
    if (!ss->awq[k]) continue;
    double e = 0;
    QN_TRY(
        qn_awq_layer_error(ss->scheme[k], ss->w[k], ss->at[k]->rows, width, s, NULL, g, &R->b, &e));
    err += e;
    energy += output_energy(ss->w[k], ss->at[k]->rows, width, g, &R->b);
  }
  qn_smooth* sm = R->res->sm;
  sm->alpha[slot] = 0;
  sm->err_before[slot] = sm->err_after[slot] = energy > 0 ? err / energy : err;
  return QN_OK;
}

/* GPTQ of w diag(s) with the Hessian of the scaled input, D^-1 G D^-1; eff gets the effective
 * weights, the arrays go to the result. */
static qn_status gptq_weight(run* R, const site_set* ss, int k, const float* g, const float* s,
                             float* eff) {
  const int64_t rows = ss->at[k]->rows, cols = ss->at[k]->cols;
  qn_qtype t = ss->scheme[k];
  size_t sb = qn_qtype_traits_of(t)->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  float* gs = malloc(sizeof(float) * (size_t)(cols * cols));
  void* pay = malloc(qn_qtype_row_bytes(t, cols) * (size_t)rows);
  void* sc = malloc((size_t)qn_qtype_n_groups(t, cols) * sb * (size_t)rows);
  qn_status st = gs && pay && sc ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) {
    for (int64_t i = 0; i < cols; i++)
      for (int64_t j = 0; j < cols; j++) gs[i * cols + j] = g[i * cols + j] / (s[i] * s[j]);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < cols; j++) eff[r * cols + j] = ss->w[k][r * cols + j] * s[j];
    st = qn_gptq_quantize(t, eff, rows, cols, gs, &R->o->gptq_opts, pay, sc);
  }
  free(gs);
  if (st != QN_OK) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", qn_last_error());
    free(pay), free(sc);
    return qn_error(st, "GPTQ of '%s': %s", ss->name[k], msg);
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) eff[r * cols + j] /= s[j];
  qn_gptq_weight* gw = &R->res->gptq.w[R->res->gptq.n++];
  snprintf(gw->name, sizeof gw->name, "%s", ss->name[k]);
  gw->scheme = t;
  gw->rows = rows;
  gw->cols = cols;
  gw->payload = pay;
  gw->scales = sc;
  return QN_OK;
}

/* Clip search (unless off) and RTN of w diag(s); eff gets the effective weights. */
static qn_status clip_weight(run* R, const site_set* ss, int k, const float* g, const float* s,
                             float* eff) {
  const int64_t rows = ss->at[k]->rows, cols = ss->at[k]->cols;
  qn_qtype t = ss->scheme[k];
  uint8_t* step = NULL;
  if (!R->o->no_clip) {
    int64_t gw = qn_awq_clip_group(t, cols), ng = (cols + gw - 1) / gw;
    step = malloc((size_t)(rows * ng));
    if (!step) return qn_error(QN_ENOMEM, "out of memory");
    qn_status st = qn_awq_clip_search(t, ss->w[k], rows, cols, s, g, &R->b, step);
    if (st == QN_OK)
      st = qn_awq_clip_refine(t, ss->w[k], rows, cols, s, g, QN_AWQ_REFINE_PASSES, &R->b, step);
    if (st != QN_OK) {
      free(step);
      return st;
    }
    qn_awq_clip* c = &R->res->clip[R->res->n_clip++];
    snprintf(c->name, sizeof c->name, "%s", ss->name[k]);
    c->scheme = t;
    c->rows = rows;
    c->cols = cols;
    c->step = step;
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) R->b.ws[r * cols + j] = ss->w[k][r * cols + j] * s[j];
  if (step) qn_awq_clip_apply(t, step, R->b.ws, rows, cols);
  QN_TRY(qn_awq_fake_quant(t, R->b.ws, rows, cols, &R->b, eff));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) eff[r * cols + j] /= s[j];
  return QN_OK;
}

/* Multiplies row r of GPTQ's stored scales of `name` by 1 / s_row(r) (the fold of a later
 * site's scales into the rows of attn_v or ffn_up). */
static void rescale_rows(qn_awq_result* res, const char* name, const float* s_site, int head_dim,
                         int group) {
  for (int i = 0; i < res->gptq.n; i++) {
    qn_gptq_weight* gw = &res->gptq.w[i];
    if (strcmp(gw->name, name)) continue;
    const qn_qtype_traits* tr = qn_qtype_traits_of(gw->scheme);
    int64_t ng = qn_qtype_n_groups(gw->scheme, gw->cols);
    for (int64_t r = 0; r < gw->rows; r++) {
      float sr = group > 0 ? s_site[(r / head_dim) * group * head_dim + r % head_dim] : s_site[r];
      for (int64_t k = 0; k < ng; k++) {
        if (tr->scale_dtype == QN_DTYPE_F16) {
          uint16_t* p = (uint16_t*)gw->scales + r * ng + k;
          *p = qn_f32_to_f16(qn_f16_to_f32(*p) / sr);
        } else {
          float* p = (float*)gw->scales + r * ng + k;
          *p /= sr;
        }
      }
    }
  }
}

/* AWQ of one site: statistics, alpha, then each weight; the effective weights replace the
 * model's (recorded in sw) unless sw is NULL. */
static qn_status quantize_site(run* R, int l, qn_act_site site, swapped* sw) {
  const qn_hparams* hp = &R->m->src->hp;
  const qn_awq_model_opts* o = R->o;
  site_set ss;
  memset(&ss, 0, sizeof ss);
  qn_qtensor* at[SITE_WEIGHTS];
  ss.n = site_weights(R->m, l, site, at, ss.name);
  bool any = false;
  for (int k = 0; k < ss.n; k++) {
    ss.at[k] = at[k];
    ss.scheme[k] = o->scheme_of(o->scheme_user, ss.name[k]);
    ss.awq[k] = qn_awq_supports(ss.scheme[k]);
    any |= ss.awq[k];
  }
  if (!any) return QN_OK;
  const int width = (int)at[0]->cols;
  const int slot = (l < 0 ? hp->n_layers : l) * QN_SITE_COUNT + (int)site;
  float* g = malloc(sizeof(float) * (size_t)width * (size_t)width);
  float* mabs = malloc(sizeof(float) * (size_t)width);
  float* s = malloc(sizeof(float) * (size_t)width);
  qn_status st = g && mabs && s ? QN_OK : qn_error(QN_ENOMEM, "out of memory for a Hessian");
  if (st == QN_OK) st = collect_site(R, l, site, width, g, mabs);
  for (int k = 0; k < ss.n && st == QN_OK; k++) {
    ss.w[k] = malloc(sizeof(float) * (size_t)(at[k]->rows * width));
    if (!ss.w[k])
      st = qn_error(QN_ENOMEM, "out of memory");
    else
      st = qn_qtensor_dequant(at[k], ss.w[k]);
  }
  int pool = site == QN_SITE_ATTN_OUT ? hp->n_heads / hp->n_kv_heads : 1;
  if (st == QN_OK && site == QN_SITE_OUTPUT_IN && hp->tied_embeddings)
    st = no_scales(R, &ss, slot, g, width, s); /* the embedding's columns cannot be scaled */
  else if (st == QN_OK)
    st = search_alpha(R, &ss, slot, g, mabs, width, pool, s);
  double e_fin = 0, energy = 0;
  for (int k = 0; k < ss.n && st == QN_OK; k++) {
    if (!ss.awq[k]) continue;
    float* eff = malloc(sizeof(float) * (size_t)(at[k]->rows * width));
    if (!eff) {
      st = qn_error(QN_ENOMEM, "out of memory");
      break;
    }
    if (o->gptq && qn_gptq_supports(ss.scheme[k]))
      st = gptq_weight(R, &ss, k, g, s, eff);
    else
      st = clip_weight(R, &ss, k, g, s, eff);
    if (st == QN_OK) { /* the output error of the effective weights, relative */
      const int64_t nn = at[k]->rows * width;
      for (int64_t i = 0; i < nn; i++) R->b.err[i] = eff[i] - ss.w[k][i];
      e_fin += output_energy(R->b.err, at[k]->rows, width, g, &R->b);
      energy += output_energy(ss.w[k], at[k]->rows, width, g, &R->b);
    }
    if (st != QN_OK || !sw) {
      free(eff);
      continue;
    }
    sw->at[sw->n] = at[k];
    sw->orig[sw->n] = *at[k];
    sw->f32[sw->n++] = eff;
    *at[k] = (qn_qtensor){QN_QTYPE_F32, at[k]->rows, width, eff, NULL, NULL, 0, QN_LAYOUT_ROWS};
  }
  R->res->err_final[slot] = energy > 0 ? e_fin / energy : e_fin;
  /* row folds into weights GPTQ already stored */
  const float* sf = R->res->sm->s[slot];
  if (st == QN_OK && sf && o->gptq && site == QN_SITE_ATTN_OUT) {
    char nm[96];
    snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);
    rescale_rows(R->res, nm, sf, hp->head_dim, hp->n_heads / hp->n_kv_heads);
  } else if (st == QN_OK && sf && o->gptq && site == QN_SITE_FFN_MID) {
    char nm[96];
    snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l);
    rescale_rows(R->res, nm, sf, 0, 0);
  }
  site_set_free(&ss);
  free(s);
  free(mabs);
  free(g);
  return st;
}

/* AWQ's clipping search for an untied token embedding. A lookup has no input to scale, and
 * the "output" of row t is the row itself (the one-hot input's G is diagonal: the frequency of
 * token t), so each group's clip minimises its own squared error, i.e. G = identity per row;
 * with no cross terms between groups there is nothing to refine. The effective (clipped,
 * quantized) rows go to *eff (vocab x dim, caller frees) for the stream entering block 0;
 * *eff stays NULL when the embedding is tied, not quantized by an AWQ scheme, or clipping is
 * off. */
static qn_status clip_embedding(run* R, float** eff) {
  const qn_hparams* hp = &R->m->src->hp;
  *eff = NULL;
  qn_qtype t = R->o->scheme_of(R->o->scheme_user, "token_embd.weight");
  if (hp->tied_embeddings || R->o->no_clip || !qn_awq_supports(t)) return QN_OK;
  const qn_qtensor* e = &R->m->w.tok_embd;
  const int64_t rows = e->rows, cols = e->cols;
  int64_t gw = qn_awq_clip_group(t, cols), ng = (cols + gw - 1) / gw;
  float* w = malloc(sizeof(float) * (size_t)(rows * cols));
  float* out = malloc(sizeof(float) * (size_t)(rows * cols));
  uint8_t* step = malloc((size_t)(rows * ng));
  qn_status st = w && out && step ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) st = qn_qtensor_dequant(e, w);
  if (st == QN_OK) st = qn_awq_clip_search(t, w, rows, cols, NULL, NULL, &R->b, step);
  if (st == QN_OK) {
    qn_awq_clip_apply(t, step, w, rows, cols);
    st = qn_awq_fake_quant(t, w, rows, cols, &R->b, out);
  }
  if (st == QN_OK) {
    qn_awq_clip* c = &R->res->clip[R->res->n_clip++];
    snprintf(c->name, sizeof c->name, "token_embd.weight");
    c->scheme = t;
    c->rows = rows;
    c->cols = cols;
    c->step = step;
    step = NULL;
    *eff = out;
    out = NULL;
  }
  free(step);
  free(out);
  free(w);
  return st;
}

/* The residual stream entering block 0: token embeddings (the effective quantized rows eff
 * when AWQ clipped the embedding, else the model's). */
static void embed(const qn_model* m, const qn_token_windows* w, const float* eff, float* xs) {
  const qn_qtensor* e = &m->w.tok_embd;
  const qn_qtype_traits* tr = qn_qtype_traits_of(e->type);
  int dim = m->src->hp.dim;
  for (int64_t t = 0; t < w->off[w->n_win]; t++) {
    if (eff)
      memcpy(xs + t * dim, eff + (int64_t)w->ids[t] * dim, sizeof(float) * (size_t)dim);
    else
      tr->dequant_row(e, w->ids[t], xs + t * dim);
  }
}

/* Largest weight AWQ may touch (elements). */
static int64_t largest_weight(const qn_model* m) {
  const qn_hparams* hp = &m->src->hp;
  int64_t qd = (int64_t)hp->n_heads * hp->head_dim;
  int64_t big = qd * hp->dim;
  if ((int64_t)hp->hidden_dim * hp->dim > big) big = (int64_t)hp->hidden_dim * hp->dim;
  if ((int64_t)hp->vocab_size * hp->dim > big) big = (int64_t)hp->vocab_size * hp->dim;
  return big;
}

static void run_free(run* R) {
  qn_ctx_free(R->c);
  free(R->pos);
  free(R->xs);
  qn_token_windows_free(&R->win);
  qn_awq_scratch_free(&R->b);
}

static qn_status run_init(run* R, qn_model* m, const char* calib_path, const qn_awq_model_opts* o,
                          qn_awq_result* out) {
  const qn_hparams* hp = &m->src->hp;
  memset(R, 0, sizeof *R);
  R->m = m;
  R->o = o;
  R->res = out;
  int ctx = o->ctx > 0 ? o->ctx : 512;
  if (ctx > hp->max_seq_len) ctx = hp->max_seq_len;
  if (ctx > QN_MAX_BATCH) ctx = QN_MAX_BATCH;
  int64_t budget = o->max_tokens > 0 ? o->max_tokens : QN_AWQ_DEFAULT_TOKENS;
  R->max_result = hp->n_layers * 7 + 2;
  QN_TRY(result_new(m, R->max_result, out));
  QN_TRY(qn_token_windows_make(m, calib_path, budget, ctx, &R->win));
  int64_t T = R->win.off[R->win.n_win];
  R->xs = malloc(sizeof(float) * (size_t)T * (size_t)hp->dim);
  R->pos = malloc(sizeof(int) * (size_t)ctx);
  if (!R->xs || !R->pos)
    return qn_error(QN_ENOMEM,
                    "out of memory for %lld x %d calibration activations (lower --calib-tokens)",
                    (long long)T, hp->dim);
  for (int i = 0; i < ctx; i++) R->pos[i] = i;
  QN_TRY(qn_awq_scratch_init(&R->b, largest_weight(m), o->n_threads));
  QN_TRY(qn_ctx_new(m, ctx, 1, &R->c));
  out->tokens = T;
  float* eff = NULL;
  QN_TRY(clip_embedding(R, &eff));
  embed(m, &R->win, eff, R->xs);
  free(eff);
  return QN_OK;
}

qn_status qn_awq_model_run(qn_model* m, const char* calib_path, const qn_awq_model_opts* o,
                           qn_awq_result* out) {
  memset(out, 0, sizeof *out);
  if (!o->scheme_of) return qn_error(QN_EINVAL, "AWQ: no scheme lookup given");
  double t0 = qn_now();
  const qn_hparams* hp = &m->src->hp;
  run R;
  qn_status st = run_init(&R, m, calib_path, o, out);
  const char* head_name = hp->tied_embeddings ? "token_embd.weight" : "output.weight";
  bool head = qn_awq_supports(o->scheme_of(o->scheme_user, head_name));
  int total = hp->n_layers + (head ? 1 : 0);
  const qn_act_site order[4] = {QN_SITE_ATTN_IN, QN_SITE_ATTN_OUT, QN_SITE_FFN_IN, QN_SITE_FFN_MID};
  for (int l = 0; l < hp->n_layers && st == QN_OK; l++) {
    swapped sw = {0};
    for (int s = 0; s < 4 && st == QN_OK; s++) st = quantize_site(&R, l, order[s], &sw);
    if (st == QN_OK && (l + 1 < hp->n_layers || head))
      layer_pass(R.c, &R.win, R.xs, hp->dim, l, R.pos, true);
    restore(&sw);
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "awq", l + 1, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK && head) {
    st = quantize_site(&R, -1, QN_SITE_OUTPUT_IN, NULL);
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "awq", total, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  run_free(&R);
  out->seconds = qn_now() - t0;
  if (st != QN_OK) qn_awq_result_free(out);
  return st;
}

qn_status qn_awq_quantize_matrix(const qn_awq_result* r, const char* name, qn_qtype t,
                                 const float* w, int64_t rows, int64_t cols,
                                 const qn_quant_opts* qo, void* payload, void* scales, void* zeros,
                                 float* scratch, qn_quant_stats* stats, bool* handled) {
  *handled = false;
  const qn_awq_clip* c = NULL;
  for (int i = 0; r && i < r->n_clip && !c; i++)
    if (!strcmp(r->clip[i].name, name)) c = &r->clip[i];
  if (!c || c->scheme != t || c->rows != rows || c->cols != cols) return QN_OK;
  *handled = true;
  memcpy(scratch, w, sizeof(float) * (size_t)(rows * cols));
  qn_awq_clip_apply(t, c->step, scratch, rows, cols);
  qn_quant_opts o = {false, NULL, qo ? qo->n_threads : 1}; /* RTN, as the search assumed */
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  QN_TRY(qn_quantize_matrix(t, scratch, rows, cols, &o, payload, scales, zeros, NULL));
  qn_qtensor q = {t,
                  rows,
                  cols,
                  payload,
                  tr->group >= 0 ? scales : NULL,
                  tr->asymmetric ? zeros : NULL,
                  0,
                  QN_LAYOUT_ROWS};
  QN_TRY(qn_qtensor_dequant(&q, scratch));
  qn_quant_stats_measure(w, scratch, rows * cols, stats);
  return QN_OK;
}

cJSON* qn_awq_summary_json(const qn_awq_result* r) {
  cJSON* j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
  cJSON_AddBoolToObject(j, "gptq", r->gptq.n > 0);
  cJSON* sites = cJSON_AddArrayToObject(j, "sites");
  const qn_smooth* sm = r->sm;
  for (int i = 0; sm && sites && i < sm->n_slots; i++) {
    if (sm->alpha[i] < 0) continue;
    int row = i / QN_SITE_COUNT;
    cJSON* e = cJSON_CreateObject();
    if (!e) break;
    cJSON_AddNumberToObject(e, "layer", row == sm->n_layers ? -1 : row);
    cJSON_AddStringToObject(e, "site", qn_act_site_name((qn_act_site)(i % QN_SITE_COUNT)));
    cJSON_AddNumberToObject(e, "alpha", round(sm->alpha[i] * 100.0) / 100.0);
    cJSON_AddStringToObject(e, "family",
                            r->family[i] == 1   ? "duo"
                            : r->family[i] == 0 ? "mean"
                                                : "none");
    cJSON_AddNumberToObject(e, "err_rtn", sm->err_before[i]);
    cJSON_AddNumberToObject(e, "err_awq", sm->err_after[i]);
    cJSON_AddNumberToObject(e, "err_final", r->err_final[i]);
    cJSON_AddItemToArray(sites, e);
  }
  return j;
}
