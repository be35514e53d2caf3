/* smoothquant.c: SmoothQuant scales (fixed alpha or searched per site) and their folding
 * into the weights as they stream through the quantizer. See smoothquant.h for the math. */
#include "calib/smoothquant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/kernels.h"
#include "quant/pack_i8.h"
#include "quant/quantize_matrix.h"

/* Sites SmoothQuant rescales, in the order they are searched. */
static const qn_act_site k_sites[4] = {QN_SITE_ATTN_IN, QN_SITE_ATTN_OUT, QN_SITE_FFN_IN,
                                       QN_SITE_FFN_MID};

/* The linear layers that read a site's activations, with their canonical names. */
typedef struct site_linears {
  const qn_qtensor* w[3]; /* weights (rows x site width) */
  char name[3][64];       /* canonical names */
  int n;                  /* linears used */
} site_linears;

static void linears_of(const qn_model* m, int l, qn_act_site site, site_linears* out) {
  memset(out, 0, sizeof *out);
  if (site == QN_SITE_OUTPUT_IN) {
    out->w[0] = &m->w.output, out->n = 1;
    snprintf(out->name[0], 64, "output.weight");
    return;
  }
  const qn_layer_weights* lw = &m->w.layers[l];
  static const char* const qkv[3] = {"attn_q", "attn_k", "attn_v"};
  static const char* const gu[2] = {"ffn_gate", "ffn_up"};
  memset(out, 0, sizeof *out);
  switch (site) {
    case QN_SITE_ATTN_IN:
      out->w[0] = &lw->wq, out->w[1] = &lw->wk, out->w[2] = &lw->wv, out->n = 3;
      for (int i = 0; i < 3; i++) snprintf(out->name[i], 64, "blk.%d.%s.weight", l, qkv[i]);
      break;
    case QN_SITE_FFN_IN:
      out->w[0] = &lw->w_gate, out->w[1] = &lw->w_up, out->n = 2;
      for (int i = 0; i < 2; i++) snprintf(out->name[i], 64, "blk.%d.%s.weight", l, gu[i]);
      break;
    case QN_SITE_ATTN_OUT:
      out->w[0] = &lw->wo, out->n = 1;
      snprintf(out->name[0], 64, "blk.%d.attn_output.weight", l);
      break;
    case QN_SITE_FFN_MID:
      out->w[0] = &lw->w_down, out->n = 1;
      snprintf(out->name[0], 64, "blk.%d.ffn_down.weight", l);
      break;
    default: break;
  }
}

/* The (layer, site) pairs SmoothQuant rescales: the four linear inputs of every block, and
 * the output head's input when the head is not tied to the embedding. Returns the count;
 * layers/sites hold 4 * n_layers + 1 entries. */
static int smooth_targets(const qn_model* m, int* layers, qn_act_site* sites) {
  int n = 0;
  for (int l = 0; l < m->src->hp.n_layers; l++)
    for (int k = 0; k < 4; k++) layers[n] = l, sites[n++] = k_sites[k];
  if (!m->src->hp.tied_embeddings) layers[n] = -1, sites[n++] = QN_SITE_OUTPUT_IN;
  return n;
}

void qn_smooth_free(qn_smooth* sm) {
  if (!sm) return;
  for (int i = 0; i < sm->n_slots; i++)
    if (sm->s) free(sm->s[i]);
  free(sm->s);
  free(sm->alpha);
  free(sm->err_before);
  free(sm->err_after);
  free(sm);
}

static qn_status smooth_new(const qn_model* m, qn_smooth** out) {
  const qn_hparams* hp = &m->src->hp;
  qn_smooth* sm = calloc(1, sizeof *sm);
  if (!sm) return qn_error(QN_ENOMEM, "out of memory");
  sm->n_layers = hp->n_layers;
  sm->n_slots = (hp->n_layers + 1) * QN_SITE_COUNT;
  sm->head_dim = hp->head_dim;
  sm->group = hp->n_heads / hp->n_kv_heads;
  sm->kv_dim = hp->n_kv_heads * hp->head_dim;
  sm->s = calloc((size_t)sm->n_slots, sizeof *sm->s);
  sm->alpha = malloc(sizeof(float) * (size_t)sm->n_slots);
  sm->err_before = calloc((size_t)sm->n_slots, sizeof *sm->err_before);
  sm->err_after = calloc((size_t)sm->n_slots, sizeof *sm->err_after);
  if (!sm->s || !sm->alpha || !sm->err_before || !sm->err_after) {
    qn_smooth_free(sm);
    return qn_error(QN_ENOMEM, "out of memory");
  }
  for (int i = 0; i < sm->n_slots; i++) sm->alpha[i] = -1;
  sm->div.n_slots = sm->n_slots;
  sm->div.s = (const float* const*)sm->s;
  *out = sm;
  return QN_OK;
}

bool qn_smooth_any(const qn_smooth* sm) {
  for (int i = 0; sm && i < sm->n_slots; i++)
    if (sm->s[i]) return true;
  return false;
}

/* Per-column max |w| over the rows of every linear of the site (width floats). */
static qn_status weight_col_absmax(const site_linears* sl, int width, float* aw) {
  for (int j = 0; j < width; j++) aw[j] = 0;
  float* row = malloc(sizeof(float) * (size_t)width);
  if (!row) return qn_error(QN_ENOMEM, "out of memory");
  for (int i = 0; i < sl->n; i++) {
    const qn_qtensor* w = sl->w[i];
    const qn_qtype_traits* tr = qn_qtype_traits_of(w->type);
    for (int64_t r = 0; r < w->rows; r++) {
      tr->dequant_row(w, r, row);
      for (int j = 0; j < width; j++) {
        float a = fabsf(row[j]);
        if (a > aw[j]) aw[j] = a;
      }
    }
  }
  free(row);
  return QN_OK;
}

static float one_scale(float xm, float wm, double alpha) {
  if (!(xm > 0) || !(wm > 0) || !isfinite(xm) || !isfinite(wm)) return 1.0f;
  double s = pow(xm, alpha) / pow(wm, 1.0 - alpha);
  if (!isfinite(s)) return 1.0f;
  if (s < QN_SMOOTH_MIN_S) s = QN_SMOOTH_MIN_S;
  if (s > QN_SMOOTH_MAX_S) s = QN_SMOOTH_MAX_S;
  return (float)s;
}

/* s[width] from the activation and weight channel maxima. ATTN_OUT channels are pooled over
 * the query heads of each kv group (max of each), so one scale per v channel. */
static void scales_of(const qn_smooth* sm, qn_act_site site, const float* ax, const float* aw,
                      int width, double alpha, float* s) {
  if (site != QN_SITE_ATTN_OUT || sm->group <= 1) {
    for (int j = 0; j < width; j++) s[j] = one_scale(ax[j], aw[j], alpha);
    return;
  }
  const int hd = sm->head_dim, g = sm->group, n_kv = width / (hd * g);
  for (int kvh = 0; kvh < n_kv; kvh++)
    for (int d = 0; d < hd; d++) {
      float xm = 0, wm = 0;
      for (int h = kvh * g; h < (kvh + 1) * g; h++) {
        if (ax[h * hd + d] > xm) xm = ax[h * hd + d];
        if (aw[h * hd + d] > wm) wm = aw[h * hd + d];
      }
      float v = one_scale(xm, wm, alpha);
      for (int h = kvh * g; h < (kvh + 1) * g; h++) s[h * hd + d] = v;
    }
}

static int site_width_of(const qn_model* m, qn_act_site site) {
  const qn_hparams* hp = &m->src->hp;
  if (site == QN_SITE_ATTN_OUT) return hp->n_heads * hp->head_dim;
  if (site == QN_SITE_FFN_MID) return hp->hidden_dim;
  return hp->dim;
}

/* Gives the V slot of every layer whose ATTN_OUT site is smoothed the matching divisors
 * (v rows are divided by the ATTN_OUT scales), so a calibration run with sm->div observes
 * the cached values of the smoothed model too. */
static qn_status add_v_divisors(qn_smooth* sm) {
  const int hd = sm->head_dim, g = sm->group;
  for (int l = 0; l < sm->n_layers; l++) {
    const float* ao = sm->s[l * QN_SITE_COUNT + QN_SITE_ATTN_OUT];
    float** sv = &sm->s[l * QN_SITE_COUNT + QN_SITE_V];
    if (!ao || *sv) continue;
    int kvd = sm->kv_dim;
    *sv = malloc(sizeof(float) * (size_t)kvd);
    if (!*sv) return qn_error(QN_ENOMEM, "out of memory");
    for (int r = 0; r < kvd; r++) (*sv)[r] = ao[(r / hd) * g * hd + r % hd];
  }
  return QN_OK;
}

qn_status qn_smooth_compute(const qn_model* m, const qn_calib* c, double alpha, qn_smooth** out) {
  *out = NULL;
  if (!(alpha >= 0 && alpha <= 1))
    return qn_error(QN_EINVAL, "--smooth %g is out of range: alpha must lie in [0, 1]", alpha);
  if (c->n_layers != m->src->hp.n_layers)
    return qn_error(QN_EINVAL, "calibration is for another model");
  qn_smooth* sm = NULL;
  QN_TRY(smooth_new(m, &sm));
  qn_status st = QN_OK;
  int widest = 0;
  for (int k = 0; k < 4; k++)
    if (site_width_of(m, k_sites[k]) > widest) widest = site_width_of(m, k_sites[k]);
  float* aw = malloc(sizeof(float) * (size_t)widest);
  if (!aw) st = qn_error(QN_ENOMEM, "out of memory");
  int* layers = malloc(sizeof(int) * (4 * (size_t)sm->n_layers + 1));
  qn_act_site* sites = malloc(sizeof(qn_act_site) * (4 * (size_t)sm->n_layers + 1));
  if (!layers || !sites) st = qn_error(QN_ENOMEM, "out of memory");
  int n_targets = st == QN_OK ? smooth_targets(m, layers, sites) : 0;
  for (int i = 0; i < n_targets && st == QN_OK; i++) {
    int l = layers[i];
    qn_act_site site = sites[i];
    const qn_observer* ob = qn_calib_observer(c, l, site);
    if (!ob) continue;
    int width = site_width_of(m, site), slot = qn_calib_slot(c, l, site);
    site_linears sl;
    linears_of(m, l, site, &sl);
    st = weight_col_absmax(&sl, width, aw);
    if (st != QN_OK) break;
    sm->s[slot] = malloc(sizeof(float) * (size_t)width);
    if (!sm->s[slot]) {
      st = qn_error(QN_ENOMEM, "out of memory");
      break;
    }
    scales_of(sm, site, qn_observer_channel_absmax(ob), aw, width, alpha, sm->s[slot]);
    sm->alpha[slot] = (float)alpha;
  }
  free(sites);
  free(layers);
  free(aw);
  if (st == QN_OK) st = add_v_divisors(sm);
  if (st != QN_OK) {
    qn_smooth_free(sm);
    return st;
  }
  *out = sm;
  return QN_OK;
}

/* ---- search ---- */

/* Buffers of the search, sized for the largest linear. */
typedef struct search_buf {
  float* w;       /* rows x cols weight (f32) */
  float* ws;      /* rows x cols smoothed weight */
  uint8_t* pay;   /* quantized payload */
  uint8_t* scl;   /* scales */
  uint8_t* zer;   /* zeros */
  float* xs;      /* n x width smoothed activations */
  float* yref;    /* n x rows reference outputs */
  float* yq;      /* n x rows quantized outputs */
  float* scratch; /* qn_matmul scratch */
  size_t scratch_floats;
} search_buf;

static void search_buf_free(search_buf* b) {
  free(b->w), free(b->ws), free(b->pay), free(b->scl), free(b->zer);
  free(b->xs), free(b->yref), free(b->yq), free(b->scratch);
}

/* Y = X W^T through the model's kernels (n rows). */
static qn_status matmul(qn_model* m, search_buf* b, const qn_qtensor* w, const float* x, int n,
                        float* y) {
  size_t need = qn_matmul_scratch_floats(w, n, qn_pool_size(m->pool));
  if (need > b->scratch_floats) {
    float* g = realloc(b->scratch, sizeof(float) * need);
    if (!g) return qn_error(QN_ENOMEM, "out of memory");
    b->scratch = g;
    b->scratch_floats = need;
  }
  qn_matmul(m->pool, w, x, n, y, b->scratch);
  return QN_OK;
}

/* Static activation threshold of x / s (n x width) by method. */
static qn_status static_threshold(const float* xs, int n, int width, const float* ax,
                                  const float* s, qn_calib_method method, double pct, float* T) {
  if (method == QN_CALIB_MINMAX) { /* exact over the whole calibration set */
    float t = 0;
    for (int j = 0; j < width; j++)
      if (ax[j] / s[j] > t) t = ax[j] / s[j];
    *T = t > 0 ? t : 1e-8f;
    return QN_OK;
  }
  qn_observer* o = NULL;
  QN_TRY(qn_observer_new(width, &o));
  qn_observer_update(o, xs, n);
  qn_status st = qn_observer_threshold(o, method, pct, T);
  qn_observer_free(o);
  if (st == QN_OK && !(*T > 0)) *T = 1e-8f;
  return st;
}

/* Relative output error of one linear quantized with scheme qt after smoothing by s. */
static double candidate_error(qn_model* m, search_buf* b, const qn_qtensor* w, qn_qtype qt,
                              const float* x, int n, const float* s, float T) {
  const int64_t rows = w->rows, cols = w->cols;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) b->ws[r * cols + j] = b->w[r * cols + j] * s[j];
  for (int t = 0; t < n; t++)
    for (int64_t j = 0; j < cols; j++) b->xs[(size_t)t * cols + j] = x[(size_t)t * cols + j] / s[j];
  const qn_qtype_traits* tr = qn_qtype_traits_of(qt);
  qn_quant_opts qo = {false, NULL, qn_pool_size(m->pool)};
  qn_qtensor q = {qt, rows, cols, b->pay, NULL, NULL, 0, QN_LAYOUT_ROWS};
  if (tr->group >= 0) q.scales = b->scl;
  if (tr->asymmetric) q.zeros = b->zer;
  if (tr->act == QN_ACT_I8_STATIC) q.act_scale = T / 127.0f;
  if (qn_quantize_matrix(qt, b->ws, rows, cols, &qo, b->pay, tr->group >= 0 ? b->scl : NULL,
                         tr->asymmetric ? b->zer : NULL, NULL) != QN_OK)
    return INFINITY; /* e.g. a scaled weight beyond the scheme's range */
  /* w8a8-* / w4a8 run in their packed layout, as the .qnz will store them */
  void *pp = NULL, *ps = NULL;
  qn_qtensor run = q;
  qn_status st = QN_OK;
  if (qn_qtype_packed_layout(qt) != QN_LAYOUT_ROWS) st = qn_qtensor_pack(&q, &run, &pp, &ps);
  if (st == QN_OK) st = matmul(m, b, &run, b->xs, n, b->yq);
  free(pp);
  free(ps);
  if (st != QN_OK) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < (size_t)n * (size_t)rows; i++) {
    double d = (double)b->yq[i] - b->yref[i];
    num += d * d;
    den += (double)b->yref[i] * b->yref[i];
  }
  return den > 0 ? num / den : num;
}

static qn_status search_buf_init(const qn_model* m, int n, search_buf* b) {
  const qn_hparams* hp = &m->src->hp;
  size_t qd = (size_t)hp->n_heads * hp->head_dim, hid = (size_t)hp->hidden_dim;
  size_t wide = hid > qd ? hid : qd;
  if ((size_t)hp->dim > wide) wide = hp->dim;
  size_t maxw = wide * wide; /* every linear of a block is at most wide x wide */
  if (!hp->tied_embeddings && (size_t)hp->vocab_size * (size_t)hp->dim > maxw)
    maxw = (size_t)hp->vocab_size * (size_t)hp->dim;                /* the output head */
  if ((size_t)hp->vocab_size > wide) wide = (size_t)hp->vocab_size; /* head output rows */
  memset(b, 0, sizeof *b);
  b->w = malloc(sizeof(float) * maxw);
  b->ws = malloc(sizeof(float) * maxw);
  b->pay = malloc(4 * maxw);
  b->scl = malloc(4 * maxw);
  b->zer = malloc(4 * maxw);
  b->xs = malloc(sizeof(float) * (size_t)n * wide);
  b->yref = malloc(sizeof(float) * (size_t)n * wide);
  b->yq = malloc(sizeof(float) * (size_t)n * wide);
  if (!b->w || !b->ws || !b->pay || !b->scl || !b->zer || !b->xs || !b->yref || !b->yq) {
    search_buf_free(b);
    return qn_error(QN_ENOMEM, "out of memory for the SmoothQuant search");
  }
  return QN_OK;
}

/* Searches one site: err[k] for candidate k (0 = unsmoothed, k = grid[k - 1]). */
static qn_status search_site(qn_model* m, const qn_calib* c, qn_smooth* sm, int l, qn_act_site site,
                             const qn_smooth_search_opts* o, const double* grid, int n_grid,
                             search_buf* b) {
  int slot = qn_calib_slot(c, l, site), width = site_width_of(m, site);
  int n_even = c->sample_n[slot], n = n_even + c->extreme_n[slot]; /* rows: even, then extreme */
  const qn_observer* ob = c->obs[slot];
  if (!ob || !c->sample[slot] || n <= 0)
    return qn_error(QN_EINVAL, "--smooth auto needs calibration samples (layer %d, %s)", l,
                    qn_act_site_name(site));
  site_linears sl;
  linears_of(m, l, site, &sl);
  qn_qtype qt[3];
  bool any_quant = false;
  for (int i = 0; i < sl.n; i++) {
    qt[i] = o->scheme_of ? o->scheme_of(o->scheme_user, sl.name[i]) : QN_QTYPE_F32;
    if (qt[i] != QN_QTYPE_F32) any_quant = true;
  }
  if (!any_quant) return QN_OK;
  const int n_cand = n_grid + 1;
  const float* ax = qn_observer_channel_absmax(ob);
  float* s = malloc(sizeof(float) * (size_t)width * (size_t)n_cand);
  float* aw = malloc(sizeof(float) * (size_t)width);
  float* T = malloc(sizeof(float) * (size_t)n_cand);
  double* err = calloc((size_t)n_cand, sizeof *err);
  qn_status st = s && aw && T && err ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) st = weight_col_absmax(&sl, width, aw);
  for (int k = 0; k < n_cand && st == QN_OK; k++) {
    float* sk = s + (size_t)k * width;
    if (k == 0)
      for (int j = 0; j < width; j++) sk[j] = 1.0f;
    else
      scales_of(sm, site, ax, aw, width, grid[k - 1], sk);
    for (int t = 0; t < n; t++)
      for (int j = 0; j < width; j++)
        b->xs[(size_t)t * width + j] = c->sample[slot][(size_t)t * width + j] / sk[j];
    /* thresholds from the evenly spread rows (the extreme ones would bias a percentile) */
    st = static_threshold(b->xs, n_even > 0 ? n_even : n, width, ax, sk, o->method, o->percentile,
                          &T[k]);
  }
  for (int i = 0; i < sl.n && st == QN_OK; i++) {
    const qn_qtensor* w = sl.w[i];
    st = qn_qtensor_dequant(w, b->w);
    qn_qtensor wf = {QN_QTYPE_F32, w->rows, w->cols, b->w, NULL, NULL, 0, QN_LAYOUT_ROWS};
    if (st == QN_OK) st = matmul(m, b, &wf, c->sample[slot], n, b->yref);
    for (int k = 0; k < n_cand && st == QN_OK; k++)
      err[k] += candidate_error(m, b, w, qt[i], c->sample[slot], n, s + (size_t)k * width, T[k]);
  }
  if (st == QN_OK) {
    int best = 0;
    for (int k = 1; k < n_cand; k++)
      if (err[k] < err[best]) best = k;
    sm->err_before[slot] = err[0];
    sm->err_after[slot] = err[best];
    if (best > 0) {
      sm->s[slot] = malloc(sizeof(float) * (size_t)width);
      if (!sm->s[slot])
        st = qn_error(QN_ENOMEM, "out of memory");
      else {
        memcpy(sm->s[slot], s + (size_t)best * width, sizeof(float) * (size_t)width);
        sm->alpha[slot] = (float)grid[best - 1];
      }
    }
  }
  free(err);
  free(T);
  free(aw);
  free(s);
  return st;
}

qn_status qn_smooth_search(qn_model* m, const qn_calib* c, const qn_smooth_search_opts* o,
                           qn_smooth** out) {
  *out = NULL;
  static const double k_grid[] = {0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
  const double* grid = o->grid ? o->grid : k_grid;
  int n_grid = o->grid ? o->n_grid : (int)(sizeof k_grid / sizeof k_grid[0]);
  if (n_grid <= 0) return qn_error(QN_EINVAL, "SmoothQuant search: empty alpha grid");
  for (int i = 0; i < n_grid; i++)
    if (!(grid[i] >= 0 && grid[i] <= 1))
      return qn_error(QN_EINVAL, "SmoothQuant search: alpha %g outside [0, 1]", grid[i]);
  if (c->n_layers != m->src->hp.n_layers)
    return qn_error(QN_EINVAL, "calibration is for another model");
  if (c->sample_cap <= 0)
    return qn_error(QN_EINVAL, "--smooth auto needs a calibration run that keeps samples");
  qn_smooth* sm = NULL;
  QN_TRY(smooth_new(m, &sm));
  search_buf b;
  qn_status st = search_buf_init(m, c->sample_cap + QN_CALIB_EXTREME_ROWS, &b);
  if (st != QN_OK) {
    qn_smooth_free(sm);
    return st;
  }
  int* layers = malloc(sizeof(int) * (4 * (size_t)sm->n_layers + 1));
  qn_act_site* sites = malloc(sizeof(qn_act_site) * (4 * (size_t)sm->n_layers + 1));
  if (!layers || !sites) st = qn_error(QN_ENOMEM, "out of memory");
  int total = st == QN_OK ? smooth_targets(m, layers, sites) : 0;
  for (int i = 0; i < total && st == QN_OK; i++) {
    st = search_site(m, c, sm, layers[i], sites[i], o, grid, n_grid, &b);
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "smooth", i + 1, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  free(sites);
  free(layers);
  search_buf_free(&b);
  if (st == QN_OK) st = add_v_divisors(sm);
  if (st != QN_OK) {
    qn_smooth_free(sm);
    return st;
  }
  *out = sm;
  return QN_OK;
}

/* ---- folding ---- */

static void scale_cols(float* w, int64_t rows, int64_t cols, const float* s) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) w[r * cols + j] *= s[j];
}

/* Divides the rows of a v weight (or v bias, cols = 1) by the ATTN_OUT scales: v channel
 * kvh * hd + d carries the scale of query heads kvh * group .. of channel d. */
static void divide_v_rows(const qn_smooth* sm, float* w, int64_t rows, int64_t cols,
                          const float* s) {
  const int hd = sm->head_dim, g = sm->group;
  for (int64_t r = 0; r < rows; r++) {
    float sv = s[(r / hd) * g * hd + r % hd];
    for (int64_t j = 0; j < cols; j++) w[r * cols + j] /= sv;
  }
}

static void divide_rows(float* w, int64_t rows, int64_t cols, const float* s) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) w[r * cols + j] /= s[r];
}

bool qn_smooth_apply(const qn_smooth* sm, const char* name, float* data, int64_t rows,
                     int64_t cols) {
  const float* head = sm ? sm->s[sm->n_layers * QN_SITE_COUNT + QN_SITE_OUTPUT_IN] : NULL;
  if (head && !strcmp(name, "output_norm.weight")) {
    divide_rows(data, rows, cols, head);
    return true;
  }
  if (head && !strcmp(name, "output.weight")) {
    scale_cols(data, rows, cols, head);
    return true;
  }
  int l = -1, used = 0;
  if (!sm || sscanf(name, "blk.%d.%n", &l, &used) != 1 || used == 0 || l < 0 || l >= sm->n_layers)
    return false;
  const char* p = name + used;
  const int base = l * QN_SITE_COUNT;
  const float* in = sm->s[base + QN_SITE_ATTN_IN];
  const float* ao = sm->s[base + QN_SITE_ATTN_OUT];
  const float* fi = sm->s[base + QN_SITE_FFN_IN];
  const float* fm = sm->s[base + QN_SITE_FFN_MID];
  bool changed = false;
  if (!strcmp(p, "attn_norm.weight") && in) {
    divide_rows(data, rows, cols, in);
    changed = true;
  } else if ((!strcmp(p, "attn_q.weight") || !strcmp(p, "attn_k.weight")) && in) {
    scale_cols(data, rows, cols, in);
    changed = true;
  } else if (!strcmp(p, "attn_v.weight")) {
    if (in) scale_cols(data, rows, cols, in);
    if (ao) divide_v_rows(sm, data, rows, cols, ao);
    changed = in || ao;
  } else if (!strcmp(p, "attn_v.bias") && ao) {
    divide_v_rows(sm, data, rows, cols, ao);
    changed = true;
  } else if (!strcmp(p, "attn_output.weight") && ao) {
    scale_cols(data, rows, cols, ao);
    changed = true;
  } else if (!strcmp(p, "ffn_norm.weight") && fi) {
    divide_rows(data, rows, cols, fi);
    changed = true;
  } else if (!strcmp(p, "ffn_gate.weight") && fi) {
    scale_cols(data, rows, cols, fi);
    changed = true;
  } else if (!strcmp(p, "ffn_up.weight")) {
    if (fi) scale_cols(data, rows, cols, fi);
    if (fm) divide_rows(data, rows, cols, fm);
    changed = fi || fm;
  } else if (!strcmp(p, "ffn_down.weight") && fm) {
    scale_cols(data, rows, cols, fm);
    changed = true;
  }
  return changed;
}
