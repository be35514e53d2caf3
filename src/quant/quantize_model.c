/* quantize_model.c: model -> .qnz. When calibration is asked for (or a w8a8-static scheme
 * needs it) the FP32 model first reads the calibration text (src/calib/calibrate.c), and
 * SmoothQuant scales are derived from it (src/calib/smoothquant.c); then the model is closed
 * again. Plans every output tensor from the recipe, then streams tensor by tensor: dequantize
 * the source weight to f32 (the only full-size buffer), apply the SmoothQuant folds, quantize
 * it, measure the error, pack it when the scheme has a packed kernel layout (w8a8-*, w4a8:
 * quant/pack_i8.h), write it (plus NAME.act_scale for static-activation schemes). Norms
 * and biases are stored as f32. The metadata (written last) carries hyper-parameters,
 * vocabulary, the scheme (and packed layout) of every weight, the recipe, the source's SHA-256, the
 * per-tensor error statistics and the calibration summary (docs/FORMAT.md). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/calibrate.h"
#include "calib/awq.h"
#include "calib/gptq.h"
#include "calib/importance.h"
#include "calib/smoothquant.h"
#include "core/clock.h"
#include "core/half.h"
#include "core/sha256.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "format/model_json.h"
#include "format/qnz_writer.h"
#include "format/source.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/weights.h"
#include "quant/pack_i8.h"
#include "quant/quantize_matrix.h"
#include "quant/recipe.h"

/* One source tensor and where its output goes. */
typedef struct plan_item {
  const qn_tensor* src; /* source view */
  bool matrix;          /* 2-D weight (quantized) or vector (stored f32) */
  qn_qtype scheme;      /* for matrices */
  int64_t rows, cols;   /* logical shape */
  qn_layout layout;     /* storage layout of the output (packed for w8a8-* / w4a8) */
  int out[3];           /* output tensor indices: payload/values, scales, zeros (-1 = none) */
  int act_out;          /* output index of NAME.act_scale (static activations), else -1 */
  float act_scale;      /* its value: calibrated threshold / 127 */
} plan_item;

/* Rows of each linear input kept for the SmoothQuant alpha search. */
#define SMOOTH_SAMPLE_ROWS 256

/* What calibration produced for the quantizer. */
typedef struct calib_state {
  qn_calib* cal;  /* observers and thresholds (of the smoothed activations under SmoothQuant) */
  qn_smooth* sm;  /* SmoothQuant scales, or NULL */
  double seconds; /* wall time of calibration and smoothing */
} calib_state;

bool qn_scheme_at(int i, qn_scheme_info* out) {
  const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)i);
  if (i < 0 || !tr) return false;
  out->name = tr->name;
  out->bpw = qn_qtype_bpw((qn_qtype)i, 4096, 4096); /* a whole number of 16-row blocks */
  out->summary = tr->summary;
  out->kernels = tr->kernels;
  out->accuracy = tr->accuracy;
  return true;
}

void qn_quantize_report_free(qn_quantize_report* rep) {
  if (!rep) return;
  free(rep->tensors);
  free(rep->calib);
  memset(rep, 0, sizeof *rep);
}

static qn_tensor out_tensor(const char* name, const char* suffix, qn_dtype dt, int64_t d0,
                            int64_t d1, int ndim, uint64_t nbytes) {
  qn_tensor t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s%s", name, suffix);
  t.dtype = dt;
  t.ndim = ndim;
  t.shape[0] = d0;
  t.shape[1] = d1;
  t.nbytes = nbytes;
  return t;
}

/* Activation scale for a static-activation weight: its site's threshold / 127. */
static qn_status act_scale_of(const calib_state* cs, const char* name, float* out) {
  int layer = 0;
  qn_act_site site = QN_SITE_ATTN_IN;
  if (!qn_calib_site_of_weight(name, &layer, &site))
    return qn_error(QN_EUNSUPPORTED, "'%s': no activation site for a static-activation scheme",
                    name);
  float T = cs && cs->cal ? qn_calib_threshold(cs->cal, layer, site) : 0;
  if (!(T > 0)) T = 1e-6f; /* the site never saw a nonzero value */
  *out = T / 127.0f;
  return QN_OK;
}

/* Builds the plan and the output tensor list. */
static qn_status make_plan(const qn_source* s, const qn_recipe* rc, const calib_state* cs,
                           plan_item* plan, qn_tensor* outs, int* n_out) {
  int no = 0;
  for (int i = 0; i < s->n_tensors; i++) {
    const qn_tensor* t = &s->tensors[i];
    plan_item* p = &plan[i];
    memset(p, 0, sizeof *p);
    p->src = t;
    p->out[0] = p->out[1] = p->out[2] = p->act_out = -1;
    /* a .qnz source: companions are consumed with their weight (activation scales are
       recomputed from this run's calibration) */
    size_t ln = strlen(t->name);
    if ((ln > 7 && strcmp(t->name + ln - 7, ".scales") == 0) ||
        (ln > 6 && strcmp(t->name + ln - 6, ".zeros") == 0) ||
        (ln > 10 && strcmp(t->name + ln - 10, ".act_scale") == 0)) {
      p->rows = -1; /* skip */
      continue;
    }
    int q = qn_source_quant_of(s, t->name);
    p->matrix = t->ndim == 2;
    if (p->matrix) {
      p->rows = t->shape[0];
      p->cols = t->shape[1];
      /* the logical shape of a quantized source (stored as bytes, maybe packed) comes from
         the hyper-parameters */
      if (q >= 0 && !qn_weights_logical_shape(&s->hp, t->name, &p->rows, &p->cols))
        return qn_error(QN_EFORMAT, "%s: quantized tensor '%s' is not a weight of the model",
                        s->path, t->name);
      p->scheme = qn_recipe_pick(rc, t->name);
      const qn_qtype_traits* tr = qn_qtype_traits_of(p->scheme);
      uint64_t rb = qn_qtype_row_bytes(p->scheme, p->cols);
      p->layout = qn_qtype_packed_layout(p->scheme);
      if (tr->act != QN_ACT_FLOAT && p->cols > QN_I8_MAX_COLS)
        return qn_error(QN_EUNSUPPORTED,
                        "'%s' has %lld columns; %s sums int8 products in int32 and allows at "
                        "most %d",
                        t->name, (long long)p->cols, tr->name, QN_I8_MAX_COLS);
      if (p->layout != QN_LAYOUT_ROWS && p->rows <= 0)
        return qn_error(QN_EFORMAT, "%s: weight '%s' has no rows", s->path, t->name);
      if (p->layout != QN_LAYOUT_ROWS) {
        /* packed (docs/FORMAT.md, "Packed layouts"): one payload row per 16-row block */
        int64_t blocks = (p->rows + 15) / 16;
        uint64_t pb = qn_packed_payload_bytes(p->scheme, p->rows, p->cols);
        uint64_t sb = qn_packed_scale_bytes(p->scheme, p->rows, p->cols);
        outs[no] =
            out_tensor(t->name, "", QN_DTYPE_U8, blocks, (int64_t)(pb / (uint64_t)blocks), 2, pb);
        p->out[0] = no++;
        bool i8 = p->layout == QN_LAYOUT_I8X16;
        outs[no] = out_tensor(t->name, ".scales", tr->scale_dtype, i8 ? p->rows : blocks,
                              i8 ? 1 : (int64_t)(sb / 2 / (uint64_t)blocks), 2, sb);
        p->out[1] = no++;
      } else if (tr->group < 0) {
        qn_dtype dt = p->scheme == QN_QTYPE_F32   ? QN_DTYPE_F32
                      : p->scheme == QN_QTYPE_F16 ? QN_DTYPE_F16
                                                  : QN_DTYPE_BF16;
        outs[no] = out_tensor(t->name, "", dt, p->rows, p->cols, 2, rb * (uint64_t)p->rows);
        p->out[0] = no++;
      } else {
        int64_t ng = qn_qtype_n_groups(p->scheme, p->cols);
        uint64_t sb = tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
        outs[no] =
            out_tensor(t->name, "", QN_DTYPE_U8, p->rows, (int64_t)rb, 2, rb * (uint64_t)p->rows);
        p->out[0] = no++;
        outs[no] = out_tensor(t->name, ".scales", tr->scale_dtype, p->rows, ng, 2,
                              sb * (uint64_t)ng * (uint64_t)p->rows);
        p->out[1] = no++;
        if (tr->asymmetric) {
          outs[no] = out_tensor(t->name, ".zeros", tr->scale_dtype, p->rows, ng, 2,
                                sb * (uint64_t)ng * (uint64_t)p->rows);
          p->out[2] = no++;
        }
      }
      /* a static activation scale for every weight that multiplies activations (an untied
         embedding is only looked up) */
      bool head = strcmp(t->name, "token_embd.weight") != 0 || s->hp.tied_embeddings;
      if (tr->act == QN_ACT_I8_STATIC && head) {
        if (!cs || !cs->cal)
          return qn_error(QN_EINVAL,
                          "scheme %s (weight '%s') needs calibration: give --calib FILE with "
                          "representative text (or use w8a8-dynamic)",
                          tr->name, t->name);
        QN_TRY(act_scale_of(cs, t->name, &p->act_scale));
        outs[no] = out_tensor(t->name, ".act_scale", QN_DTYPE_F32, 1, 0, 1, 4);
        p->act_out = no++;
      }
    } else {
      int64_t n = qn_tensor_nelem(t);
      p->rows = n;
      p->cols = 1;
      if (t->dtype != QN_DTYPE_F32 && t->dtype != QN_DTYPE_F16 && t->dtype != QN_DTYPE_BF16)
        return qn_error(QN_EUNSUPPORTED, "%s: vector '%s' has dtype %s", s->path, t->name,
                        qn_dtype_name(t->dtype));
      outs[no] = out_tensor(t->name, "", QN_DTYPE_F32, n, 0, 1, 4 * (uint64_t)n);
      p->out[0] = no++;
    }
  }
  *n_out = no;
  return QN_OK;
}

/* Source weight -> f32 buffer (rows x cols). */
static qn_status load_f32(const qn_source* s, const plan_item* p, float* buf) {
  if (!p->matrix) {
    const qn_tensor* t = p->src;
    if (t->dtype == QN_DTYPE_F32)
      memcpy(buf, t->data, 4 * (size_t)p->rows);
    else if (t->dtype == QN_DTYPE_F16)
      qn_f16_to_f32_row(t->data, buf, p->rows);
    else
      qn_bf16_to_f32_row(t->data, buf, p->rows);
    return QN_OK;
  }
  qn_qtensor w;
  QN_TRY(qn_weights_bind_matrix(s, p->src->name, p->rows, p->cols, &w));
  return qn_qtensor_dequant(&w, buf);
}

static cJSON* stats_json(const qn_quant_tensor_report* r) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "scheme", r->scheme);
  cJSON_AddNumberToObject(o, "bpw", r->bpw);
  if (isfinite(r->sqnr_db))
    cJSON_AddNumberToObject(o, "sqnr_db", r->sqnr_db);
  else
    cJSON_AddStringToObject(o, "sqnr_db", "inf");
  cJSON_AddNumberToObject(o, "max_abs_err", r->max_abs_err);
  cJSON_AddNumberToObject(o, "rmse", r->rmse);
  return o;
}

/* Adds key -> (JSON text of obj) to md, deleting obj. */
static void add_json_string(cJSON* md, const char* key, cJSON* obj) {
  char* txt = cJSON_PrintUnformatted(obj);
  cJSON_AddStringToObject(md, key, txt ? txt : "null");
  free(txt);
  cJSON_Delete(obj);
}

/* ---- calibration ---- */

static qn_qtype recipe_scheme(void* user, const char* name) {
  return qn_recipe_pick((const qn_recipe*)user, name);
}

static void warn(const qn_quantize_opts* o, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn(const qn_quantize_opts* o, const char* fmt, ...) {
  if (!o->warn) return;
  char msg[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  o->warn(o->warn_user, msg);
}

/* Checks the calibration and SmoothQuant options; fills the method and percentile. */
static qn_status check_calib_opts(const qn_quantize_opts* o, qn_calib_method* method, double* pct) {
  *method = QN_CALIB_PERCENTILE;
  *pct = QN_CALIB_DEFAULT_PERCENTILE;
  if (o->calib_method) {
    int mi = qn_calib_method_from_name(o->calib_method);
    if (mi < 0)
      return qn_error(QN_EINVAL,
                      "unknown calibration method '%s' (--calib-method: minmax, percentile, mse "
                      "or entropy)",
                      o->calib_method);
    *method = (qn_calib_method)mi;
  }
  *pct = o->calib_percentile != 0 ? o->calib_percentile : QN_CALIB_DEFAULT_PERCENTILE;
  if (!(*pct > 0 && *pct < 100))
    return qn_error(QN_EINVAL, "--percentile %g is out of range: it must lie in (0, 100)",
                    o->calib_percentile);
  if (o->smooth && !o->smooth_auto && !(o->smooth_alpha >= 0 && o->smooth_alpha <= 1))
    return qn_error(QN_EINVAL,
                    "--smooth %g is out of range: ALPHA must lie in [0, 1] (or be 'auto')",
                    o->smooth_alpha);
  if ((o->smooth || o->smooth_auto) && !o->calib_path)
    return qn_error(QN_EINVAL,
                    "--smooth needs calibration data for the activation ranges: give --calib "
                    "FILE");
  if (o->calib_tokens < 0)
    return qn_error(QN_EINVAL, "--calib-tokens %lld must be positive", (long long)o->calib_tokens);
  if (o->calib_ctx < 0) return qn_error(QN_EINVAL, "--calib-ctx %d must be positive", o->calib_ctx);
  return QN_OK;
}

/* Runs the FP32 model over the calibration text, derives the SmoothQuant scales when asked,
 * and then observes again through the smoothing divisors, so that the thresholds and the
 * summary are those of the smoothed activations. */
static qn_status run_calibration(const char* in_path, const qn_quantize_opts* o,
                                 const qn_recipe* rc, qn_calib_method method, double pct,
                                 calib_state* cs) {
  double t0 = qn_now();
  qn_model_opts mo = {o->tokenizer_path, o->n_threads};
  qn_model* m = NULL;
  QN_TRY(qn_model_open(in_path, &mo, &m));
  qn_calib_opts co;
  memset(&co, 0, sizeof co);
  co.max_tokens = o->calib_tokens;
  co.ctx = o->calib_ctx;
  co.observe_kv = o->calib_kv;
  co.sample_rows = o->smooth_auto ? SMOOTH_SAMPLE_ROWS : 0;
  co.progress = o->progress;
  co.progress_user = o->progress_user;
  qn_status st = qn_calib_run_file(m, o->calib_path, &co, &cs->cal);
  if (st == QN_OK && cs->cal->fallback_frac > QN_CALIB_FALLBACK_WARN)
    warn(o,
         "calibration text '%s': %.0f%% of its tokens are byte-fallback or unknown tokens; it "
         "is probably not text this model reads (binary data, another language or script), so "
         "the activation ranges may not represent real use",
         o->calib_path, 100.0 * cs->cal->fallback_frac);
  if (st == QN_OK && o->calib_tokens > cs->cal->tokens)
    warn(o, "calibration text '%s' gave %lld tokens, fewer than --calib-tokens %lld", o->calib_path,
         (long long)cs->cal->tokens, (long long)o->calib_tokens);
  if (st == QN_OK && o->smooth_auto) {
    qn_smooth_search_opts so;
    memset(&so, 0, sizeof so);
    so.scheme_of = recipe_scheme;
    so.scheme_user = (void*)rc;
    so.method = method;
    so.percentile = pct;
    so.progress = o->progress;
    so.progress_user = o->progress_user;
    st = qn_smooth_search(m, cs->cal, &so, &cs->sm);
    qn_calib_drop_samples(cs->cal);
  } else if (st == QN_OK && o->smooth) {
    st = qn_smooth_compute(m, cs->cal, o->smooth_alpha, &cs->sm);
  }
  if (st == QN_OK && qn_smooth_any(cs->sm)) {
    qn_calib* c2 = NULL;
    co.sample_rows = 0;
    co.divide = &cs->sm->div;
    st = qn_calib_run_file(m, o->calib_path, &co, &c2);
    if (st == QN_OK) {
      c2->fallback_frac = cs->cal->fallback_frac;
      qn_calib_free(cs->cal);
      cs->cal = c2;
    }
  }
  if (st == QN_OK) st = qn_calib_choose(cs->cal, method, pct);
  qn_model_free(m);
  cs->seconds = qn_now() - t0;
  return st;
}

/* The calibration summary for the metadata (quench.calib) with SmoothQuant's alphas. */
static cJSON* calib_json(const calib_state* cs, const qn_quantize_opts* o) {
  cJSON* j = qn_calib_summary_json(cs->cal);
  if (!j) return NULL;
  if (o->smooth_auto)
    cJSON_AddStringToObject(j, "smooth", "auto");
  else if (o->smooth)
    cJSON_AddNumberToObject(j, "smooth", o->smooth_alpha);
  else
    cJSON_AddStringToObject(j, "smooth", "off");
  cJSON* sites = cJSON_GetObjectItem(j, "sites");
  cJSON* e = NULL;
  cJSON_ArrayForEach(e, sites) {
    int layer = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "layer"));
    const char* name = cJSON_GetStringValue(cJSON_GetObjectItem(e, "site"));
    for (int si = 0; si < QN_SITE_COUNT && cs->sm && name; si++)
      if (!strcmp(name, qn_act_site_name((qn_act_site)si)) && si != QN_SITE_K && si != QN_SITE_V) {
        float a = cs->sm->alpha[qn_calib_slot(cs->cal, layer, (qn_act_site)si)];
        if (a >= 0) cJSON_AddNumberToObject(e, "alpha", a);
      }
  }
  return j;
}

/* The calibration summary rows of the report. */
static qn_status calib_report(const calib_state* cs, qn_quantize_report* rep) {
  const qn_calib* c = cs->cal;
  rep->calib = calloc((size_t)c->n_slots, sizeof *rep->calib);
  if (!rep->calib) return qn_error(QN_ENOMEM, "out of memory");
  for (int l = 0; l <= c->n_layers; l++)
    for (int si = 0; si < QN_SITE_COUNT; si++) {
      int layer = l == c->n_layers ? -1 : l;
      const qn_observer* ob = qn_calib_observer(c, layer, (qn_act_site)si);
      if (!ob) continue;
      int slot = qn_calib_slot(c, layer, (qn_act_site)si);
      qn_calib_site_report* r = &rep->calib[rep->n_calib++];
      r->layer = layer;
      snprintf(r->site, sizeof r->site, "%s", qn_act_site_name((qn_act_site)si));
      r->min = qn_observer_min(ob);
      r->max = qn_observer_max(ob);
      r->threshold = c->threshold[slot];
      r->clipped = c->clipped[slot];
      r->smooth_alpha = cs->sm && si != QN_SITE_K && si != QN_SITE_V ? cs->sm->alpha[slot] : -1;
    }
  snprintf(rep->calib_method, sizeof rep->calib_method, "%s", qn_calib_method_name(c->method));
  rep->calib_percentile = c->percentile;
  rep->calib_tokens = c->tokens;
  rep->calib_fallback = c->fallback_frac;
  rep->calib_seconds = cs->seconds;
  return QN_OK;
}

/* ---- weight methods (GPTQ) ---- */

/* Checks --method; sets search (also from the search flag and for imp), gptq, imp and awq
 * (1: awq, 2: awq+gptq). */
static qn_status check_method(const qn_quantize_opts* o, bool* search, bool* gptq, bool* imp,
                              int* awq) {
  const char* m = o->method ? o->method : "rtn";
  *imp = !strcmp(m, "imp");
  *awq = !strcmp(m, "awq") ? 1 : !strcmp(m, "awq+gptq") ? 2 : 0;
  *search = o->search || !strcmp(m, "search") || *imp;
  *gptq = !strcmp(m, "gptq");
  if (strcmp(m, "rtn") && strcmp(m, "search") && !*gptq && !*imp && !*awq)
    return qn_error(QN_EINVAL,
                    "unknown method '%s' (--method: rtn, search, imp, gptq, awq or awq+gptq)", m);
  if ((*gptq || *imp || *awq) && !o->calib_path)
    return qn_error(
        QN_EINVAL, "--method %s needs calibration text for the layer inputs: give --calib FILE", m);
  if ((*gptq || *imp || *awq) && (o->smooth || o->smooth_auto))
    return qn_error(QN_EINVAL, "--method %s cannot be combined with --smooth", m);
  if (!(o->gptq_damp >= 0))
    return qn_error(QN_EINVAL, "GPTQ dampening %g must be >= 0", o->gptq_damp);
  return QN_OK;
}

/* Runs sequential GPTQ on the FP32 model (opened and closed here). */
static qn_status run_gptq(const char* in_path, const qn_quantize_opts* o, const qn_recipe* rc,
                          bool search, qn_gptq_result* out) {
  qn_model_opts mo = {o->tokenizer_path, o->n_threads};
  qn_model* m = NULL;
  QN_TRY(qn_model_open(in_path, &mo, &m));
  qn_gptq_model_opts go;
  memset(&go, 0, sizeof go);
  go.gptq.damp = o->gptq_damp > 0 ? o->gptq_damp : QN_GPTQ_DEFAULT_DAMP;
  go.gptq.act_order = o->gptq_act_order;
  go.gptq.search = search;
  go.max_tokens = o->calib_tokens;
  go.ctx = o->calib_ctx;
  go.scheme_of = recipe_scheme;
  go.scheme_user = (void*)rc;
  go.progress = o->progress;
  go.progress_user = o->progress_user;
  qn_status st = qn_gptq_model_run(m, o->calib_path, &go, out);
  qn_model_free(m);
  return st;
}

/* True when some scheme of the recipe takes static int8 activations (needs the observers). */
static bool recipe_has_static(const qn_recipe* rc) {
  bool any = qn_qtype_traits_of(rc->def)->act == QN_ACT_I8_STATIC;
  for (int i = 0; i < rc->n_rules; i++)
    any |= qn_qtype_traits_of(rc->rules[i].scheme)->act == QN_ACT_I8_STATIC;
  return any;
}

/* Runs sequential AWQ (awq_gptq: with GPTQ on the scaled weights) on the FP32 model. */
static qn_status run_awq(const char* in_path, const qn_quantize_opts* o, const qn_recipe* rc,
                         bool awq_gptq, qn_awq_result* out) {
  if (recipe_has_static(rc))
    return qn_error(QN_EINVAL, "--method awq cannot be combined with w8a8-static schemes");
  qn_model_opts mo = {o->tokenizer_path, o->n_threads};
  qn_model* m = NULL;
  QN_TRY(qn_model_open(in_path, &mo, &m));
  qn_awq_model_opts ao;
  memset(&ao, 0, sizeof ao);
  ao.max_tokens = o->calib_tokens;
  ao.ctx = o->calib_ctx;
  ao.gptq = awq_gptq;
  ao.gptq_opts.damp = o->gptq_damp > 0 ? o->gptq_damp : QN_GPTQ_DEFAULT_DAMP;
  ao.gptq_opts.act_order = o->gptq_act_order;
  ao.gptq_opts.search = o->search;
  ao.scheme_of = recipe_scheme;
  ao.scheme_user = (void*)rc;
  ao.n_threads = o->n_threads > 0 ? o->n_threads : qn_cpu_count();
  ao.progress = o->progress;
  ao.progress_user = o->progress_user;
  qn_status st = qn_awq_model_run(m, o->calib_path, &ao, out);
  qn_model_free(m);
  return st;
}

/* Measures the activation energy of every linear input on the FP32 model (--method imp). */
static qn_status run_importance(const char* in_path, const qn_quantize_opts* o,
                                qn_importance** out) {
  qn_model_opts mo = {o->tokenizer_path, o->n_threads};
  qn_model* m = NULL;
  QN_TRY(qn_model_open(in_path, &mo, &m));
  qn_importance_opts io = {o->calib_tokens, o->calib_ctx, o->progress, o->progress_user};
  qn_status st = qn_importance_run(m, o->calib_path, &io, out);
  qn_model_free(m);
  return st;
}

/* Quantizes matrix p (f32) into ob (canonical layout), or takes GPTQ's arrays for it when
 * there are some; deq (rows x cols scratch) measures the latter's error. The statistics are
 * those of the canonical result; a scheme with a packed layout is then packed into pk
 * (payload, scales), which is what the file stores. */
static qn_status quantize_item(const plan_item* p, const float* f32, const qn_quant_opts* qo,
                               const qn_gptq_result* g, const qn_awq_result* aw, float* deq,
                               uint8_t* ob[3], uint8_t* pk[2], qn_quant_stats* qs) {
  const qn_gptq_weight* gw = qn_gptq_result_find(g, p->src->name);
  if (!gw || gw->scheme != p->scheme || gw->rows != p->rows || gw->cols != p->cols) {
    bool done = false; /* AWQ's clipped RTN */
    if (aw)
      QN_TRY(qn_awq_quantize_matrix(aw, p->src->name, p->scheme, f32, p->rows, p->cols, qo, ob[0],
                                    ob[1], ob[2], deq, qs, &done));
    if (!done)
      QN_TRY(qn_quantize_matrix(p->scheme, f32, p->rows, p->cols, qo, ob[0],
                                p->out[1] >= 0 ? ob[1] : NULL, p->out[2] >= 0 ? ob[2] : NULL, qs));
  } else {
    size_t sb = qn_qtype_traits_of(p->scheme)->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
    memcpy(ob[0], gw->payload, qn_qtype_row_bytes(p->scheme, p->cols) * (size_t)p->rows);
    memcpy(ob[1], gw->scales, (size_t)qn_qtype_n_groups(p->scheme, p->cols) * sb * (size_t)p->rows);
    qn_qtensor q = {p->scheme, p->rows, p->cols, ob[0], ob[1], NULL, 0, QN_LAYOUT_ROWS};
    QN_TRY(qn_qtensor_dequant(&q, deq));
    qn_quant_stats_measure(f32, deq, p->rows * p->cols, qs);
  }
  if (p->layout != QN_LAYOUT_ROWS)
    qn_pack_i8(p->scheme, p->rows, p->cols, ob[0], ob[1], pk[0], pk[1]);
  return QN_OK;
}

qn_status qn_quantize(const char* in_path, const char* out_path, const qn_quantize_opts* o,
                      qn_quantize_report* rep) {
  qn_error_clear();
  double t0 = qn_now();
  if (rep) memset(rep, 0, sizeof *rep);
  if (!out_path || !*out_path) return qn_error(QN_EINVAL, "no output path given (-o)");
  qn_recipe rc;
  QN_TRY(qn_recipe_init(&rc, o->scheme));
  if (o->recipe_path) QN_TRY(qn_recipe_load(&rc, o->recipe_path));
  for (int i = 0; i < o->n_rules; i++) QN_TRY(qn_recipe_add(&rc, o->rules[i], "--rule"));
  qn_calib_method method;
  double pct;
  QN_TRY(check_calib_opts(o, &method, &pct));
  bool search = false, gptq = false, imp = false;
  int awq = 0;
  QN_TRY(check_method(o, &search, &gptq, &imp, &awq));
  qn_quantize_opts oc = *o; /* GPTQ and AWQ: their own default calibration size */
  if (gptq && !oc.calib_tokens) oc.calib_tokens = QN_GPTQ_DEFAULT_TOKENS;
  if (awq && !oc.calib_tokens) oc.calib_tokens = QN_AWQ_DEFAULT_TOKENS;
  /* the weight methods collect their own statistics: the observers run only when activation
     thresholds or SmoothQuant need them */
  bool observe = o->calib_path &&
                 (!(gptq || imp || awq) || o->smooth || o->smooth_auto || recipe_has_static(&rc));

  /* calibration first: its model is closed again before the streaming starts */
  calib_state cs;
  memset(&cs, 0, sizeof cs);
  qn_gptq_result gres;
  memset(&gres, 0, sizeof gres);
  qn_awq_result ares;
  memset(&ares, 0, sizeof ares);
  qn_importance* impr = NULL;
  qn_status st = observe ? run_calibration(in_path, &oc, &rc, method, pct, &cs) : QN_OK;
  if (st == QN_OK && gptq) st = run_gptq(in_path, &oc, &rc, search, &gres);
  if (st == QN_OK && awq) st = run_awq(in_path, &oc, &rc, awq == 2, &ares);
  if (st == QN_OK && imp) st = run_importance(in_path, &oc, &impr);
  qn_source* s = NULL;
  if (st == QN_OK) st = qn_source_open(in_path, o->tokenizer_path, &s);
  if (st != QN_OK) {
    qn_calib_free(cs.cal);
    qn_smooth_free(cs.sm);
    qn_gptq_result_free(&gres);
    qn_awq_result_free(&ares);
    qn_importance_free(impr);
    return st;
  }
  qn_weights wcheck; /* binds every weight: shapes checked before any work */
  st = qn_weights_bind(s, &wcheck);
  if (st == QN_OK) qn_weights_release(&wcheck);

  plan_item* plan = calloc((size_t)s->n_tensors + 1, sizeof *plan);
  qn_tensor* outs = calloc(4 * (size_t)s->n_tensors + 1, sizeof *outs);
  qn_quant_tensor_report* tr = calloc((size_t)s->n_tensors + 1, sizeof *tr);
  cJSON* md = cJSON_CreateObject();
  cJSON* stats = cJSON_CreateObject();
  cJSON* quant = cJSON_CreateObject();
  cJSON* layouts = cJSON_CreateObject(); /* quench.layout: the packed weights */
  int n_out = 0, n_rep = 0;
  if (st == QN_OK && (!plan || !outs || !tr || !md || !stats || !quant || !layouts))
    st = qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) st = make_plan(s, &rc, &cs, plan, outs, &n_out);

  /* metadata known up front */
  cJSON* vj = NULL;
  if (st == QN_OK) st = qn_vocab_to_json(&s->vocab, &vj);
  uint64_t file_in = 0;
  if (st == QN_OK) {
    cJSON_AddStringToObject(md, "format", "quench-qnz");
    cJSON_AddStringToObject(md, "quench.version", "1");
    add_json_string(md, "quench.hparams", qn_hparams_to_json(&s->hp));
    add_json_string(md, "quench.tokenizer", vj);
    vj = NULL;
    char* rtxt = qn_recipe_text(&rc);
    cJSON_AddStringToObject(md, "quench.recipe", rtxt ? rtxt : "");
    free(rtxt);
    const char* mname = awq == 2 ? "awq+gptq"
                        : awq    ? "awq"
                        : imp    ? "imp"
                        : gptq   ? "gptq"
                        : search ? "search"
                                 : "rtn";
    cJSON_AddStringToObject(md, "quench.method", mname);
    cJSON* src = cJSON_CreateObject();
    cJSON_AddStringToObject(src, "path", in_path);
    cJSON_AddStringToObject(src, "format", qn_format_name(s->format));
    cJSON* files = cJSON_AddObjectToObject(src, "sha256");
    for (int i = 0; i < s->n_maps && st == QN_OK; i++) {
      char hex[65];
      st = qn_sha256_hex(s->maps[i].data, s->maps[i].size, hex);
      const char* base = strrchr(s->maps[i].path, '/');
      cJSON_AddStringToObject(files, base ? base + 1 : s->maps[i].path, hex);
      file_in += s->maps[i].size;
    }
    add_json_string(md, "quench.source", src);
    if (cs.cal) {
      cJSON* cj = calib_json(&cs, o);
      if (!cj)
        st = qn_error(QN_ENOMEM, "out of memory");
      else
        add_json_string(md, "quench.calib", cj);
    }
    if (ares.sm) { /* AWQ: the alpha chosen per layer input */
      cJSON* aj = qn_awq_summary_json(&ares);
      if (!aj)
        st = qn_error(QN_ENOMEM, "out of memory");
      else
        add_json_string(md, "quench.awq", aj);
    }
  }
  cJSON_Delete(vj);

  /* largest logical tensor: one f32 buffer and one output buffer of each kind */
  size_t max_el = 1, max_out = 1;
  for (int i = 0; i < s->n_tensors; i++)
    if (plan[i].rows > 0 && (size_t)(plan[i].rows * plan[i].cols) > max_el)
      max_el = (size_t)(plan[i].rows * plan[i].cols);
  for (int i = 0; i < n_out; i++) /* packed outputs are at least their canonical size */
    if (outs[i].nbytes > max_out) max_out = outs[i].nbytes;
  size_t max_packed = 0; /* the packed payload/scales buffers (none without packed schemes) */
  for (int i = 0; i < s->n_tensors; i++)
    for (int k = 0; k < 2 && plan[i].rows > 0 && plan[i].layout != QN_LAYOUT_ROWS; k++)
      if (outs[plan[i].out[k]].nbytes > max_packed) max_packed = outs[plan[i].out[k]].nbytes;
  float* f32 = st == QN_OK ? malloc(sizeof(float) * max_el) : NULL;
  float* deq = st == QN_OK && (gptq || awq) ? malloc(sizeof(float) * max_el) : NULL;
  if (st == QN_OK && (gptq || awq) && !deq) st = qn_error(QN_ENOMEM, "out of memory");
  uint8_t* ob[3] = {NULL, NULL, NULL};
  for (int k = 0; k < 3 && st == QN_OK; k++) ob[k] = malloc(max_out);
  uint8_t* pk[2] = {NULL, NULL};
  for (int k = 0; k < 2 && st == QN_OK && max_packed; k++) pk[k] = malloc(max_packed);
  if (st == QN_OK && (!f32 || !ob[0] || !ob[1] || !ob[2] || (max_packed && (!pk[0] || !pk[1]))))
    st = qn_error(QN_ENOMEM, "out of memory for a %zu-element tensor", max_el);

  qn_qnz_writer* w = NULL;
  char* mdtxt = NULL;
  if (st == QN_OK) {
    char* partial = cJSON_PrintUnformatted(md);
    uint64_t reserve = (partial ? strlen(partial) : 0) + 400 * (uint64_t)s->n_tensors + 8192;
    free(partial);
    st = qn_qnz_writer_begin(out_path, outs, n_out, reserve, &w);
  }
  qn_quant_opts qo = {search, NULL, o->n_threads > 0 ? o->n_threads : qn_cpu_count()};
  int64_t done = 0, total = 0;
  for (int i = 0; i < s->n_tensors; i++)
    if (plan[i].rows > 0) total += plan[i].rows * plan[i].cols;
  for (int i = 0; i < s->n_tensors && st == QN_OK; i++) {
    const plan_item* p = &plan[i];
    if (p->rows < 0) continue;
    st = load_f32(s, p, f32);
    if (st == QN_OK && cs.sm) qn_smooth_apply(cs.sm, p->src->name, f32, p->rows, p->cols);
    if (st == QN_OK && ares.sm) qn_smooth_apply(ares.sm, p->src->name, f32, p->rows, p->cols);
    qn_quant_tensor_report* r = &tr[n_rep];
    snprintf(r->name, sizeof r->name, "%s", p->src->name);
    r->rows = p->rows;
    r->cols = p->cols;
    r->bytes_in = p->src->nbytes;
    if (st == QN_OK && p->matrix) {
      qn_quant_stats qs;
      qn_quant_opts qi = qo; /* imp: the column weights of the weight's input */
      if (impr) qi.importance = qn_importance_of(impr, p->src->name);
      st = quantize_item(p, f32, &qi, awq == 2 ? &ares.gptq : &gres, awq ? &ares : NULL, deq, ob,
                         pk, &qs);
      if (st == QN_EINVAL || st == QN_ERANGE) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", qn_last_error());
        st = qn_error(st, "tensor '%s': %s", p->src->name, msg);
      }
      snprintf(r->scheme, sizeof r->scheme, "%s", qn_qtype_traits_of(p->scheme)->name);
      r->sqnr_db = qs.sqnr_db;
      r->max_abs_err = qs.max_abs_err;
      r->rmse = qs.rmse;
      if (p->scheme != QN_QTYPE_F32 && p->scheme != QN_QTYPE_F16 && p->scheme != QN_QTYPE_BF16)
        cJSON_AddStringToObject(quant, p->src->name, r->scheme);
      if (p->layout != QN_LAYOUT_ROWS)
        cJSON_AddStringToObject(layouts, p->src->name, qn_layout_name(p->layout));
      for (int k = 0; k < 3 && st == QN_OK; k++)
        if (p->out[k] >= 0) {
          st = qn_qnz_writer_write(w, p->out[k],
                                   p->layout != QN_LAYOUT_ROWS && k < 2 ? pk[k] : ob[k]);
          r->bytes_out += outs[p->out[k]].nbytes;
        }
      if (st == QN_OK && p->act_out >= 0) {
        st = qn_qnz_writer_write(w, p->act_out, &p->act_scale);
        r->bytes_out += outs[p->act_out].nbytes;
      }
      r->bpw = 8.0 * (double)r->bytes_out / ((double)p->rows * (double)p->cols);
    } else if (st == QN_OK) {
      snprintf(r->scheme, sizeof r->scheme, "f32");
      r->sqnr_db = INFINITY;
      r->bpw = 32;
      r->bytes_out = outs[p->out[0]].nbytes;
      st = qn_qnz_writer_write(w, p->out[0], f32);
    }
    if (st == QN_OK && p->matrix) cJSON_AddItemToObject(stats, r->name, stats_json(r));
    n_rep++;
    done += p->rows * p->cols;
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "quantize", done, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK) {
    add_json_string(md, "quench.quant", quant);
    add_json_string(md, "quench.layout", layouts);
    add_json_string(md, "quench.stats", stats);
    quant = stats = layouts = NULL;
    mdtxt = cJSON_PrintUnformatted(md);
    if (!mdtxt) st = qn_error(QN_ENOMEM, "out of memory");
  }
  if (st == QN_OK) {
    st = qn_qnz_writer_finish(w, mdtxt);
    w = NULL;
  }
  qn_qnz_writer_abort(w);
  if (st == QN_OK && rep) {
    rep->tensors = tr;
    tr = NULL;
    rep->n_tensors = n_rep;
    rep->file_bytes_in = file_in;
    uint64_t bits_w = 0, n_w = 0;
    for (int i = 0; i < n_rep; i++)
      if (rep->tensors[i].cols > 1) {
        bits_w += 8 * rep->tensors[i].bytes_out;
        n_w += (uint64_t)(rep->tensors[i].rows * rep->tensors[i].cols);
      }
    rep->bpw = n_w ? (double)bits_w / (double)n_w : 0;
    FILE* f = fopen(out_path, "rb");
    if (f) {
      fseek(f, 0, SEEK_END);
      rep->file_bytes_out = (uint64_t)ftell(f);
      fclose(f);
    }
    rep->seconds = qn_now() - t0;
    if (cs.cal) st = calib_report(&cs, rep);
    if (st != QN_OK) qn_quantize_report_free(rep);
  }
  free(mdtxt);
  for (int k = 0; k < 3; k++) free(ob[k]);
  for (int k = 0; k < 2; k++) free(pk[k]);
  free(f32);
  free(deq);
  free(tr);
  free(outs);
  free(plan);
  cJSON_Delete(quant);
  cJSON_Delete(layouts);
  cJSON_Delete(stats);
  cJSON_Delete(md);
  qn_source_free(s);
  qn_calib_free(cs.cal);
  qn_smooth_free(cs.sm);
  qn_gptq_result_free(&gres);
  qn_awq_result_free(&ares);
  qn_importance_free(impr);
  return st;
}
