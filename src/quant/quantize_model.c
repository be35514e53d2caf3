/* quantize_model.c: model -> .qnz. Plans every output tensor from the recipe, then streams
 * tensor by tensor: dequantize the source weight to f32 (the only full-size buffer), quantize
 * it, measure the error, write it. Norms and biases are stored as f32. The metadata (written
 * last) carries hyper-parameters, vocabulary, the scheme of every weight, the recipe, the
 * source's SHA-256 and the per-tensor error statistics (docs/FORMAT.md). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/half.h"
#include "core/sha256.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "format/model_json.h"
#include "format/qnz_writer.h"
#include "format/source.h"
#include "model/weights.h"
#include "quant/quantize_matrix.h"
#include "quant/recipe.h"

/* One source tensor and where its output goes. */
typedef struct plan_item {
  const qn_tensor* src; /* source view */
  bool matrix;          /* 2-D weight (quantized) or vector (stored f32) */
  qn_qtype scheme;      /* for matrices */
  int64_t rows, cols;   /* logical shape */
  int out[3];           /* output tensor indices: payload/values, scales, zeros (-1 = none) */
} plan_item;

bool qn_scheme_at(int i, qn_scheme_info* out) {
  const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)i);
  if (i < 0 || !tr) return false;
  out->name = tr->name;
  out->bpw = qn_qtype_bpw((qn_qtype)i, 1, 4096);
  out->summary = tr->summary;
  out->kernels = tr->kernels;
  out->accuracy = tr->accuracy;
  return true;
}

void qn_quantize_report_free(qn_quantize_report* rep) {
  if (!rep) return;
  free(rep->tensors);
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

/* Builds the plan and the output tensor list. */
static qn_status make_plan(const qn_source* s, const qn_recipe* rc, plan_item* plan,
                           qn_tensor* outs, int* n_out) {
  int no = 0;
  for (int i = 0; i < s->n_tensors; i++) {
    const qn_tensor* t = &s->tensors[i];
    plan_item* p = &plan[i];
    memset(p, 0, sizeof *p);
    p->src = t;
    p->out[0] = p->out[1] = p->out[2] = -1;
    /* a .qnz source: companions are consumed with their weight */
    size_t ln = strlen(t->name);
    if ((ln > 7 && strcmp(t->name + ln - 7, ".scales") == 0) ||
        (ln > 6 && strcmp(t->name + ln - 6, ".zeros") == 0)) {
      p->rows = -1; /* skip */
      continue;
    }
    int q = qn_source_quant_of(s, t->name);
    p->matrix = t->ndim == 2;
    if (p->matrix) {
      p->rows = t->shape[0];
      p->cols = q >= 0 ? 0 : t->shape[1];
      if (q >= 0) {
        /* logical cols of a quantized source come from the hyper-parameters */
        const qn_hparams* hp = &s->hp;
        const char* n = t->name;
        int64_t qd = (int64_t)hp->n_heads * hp->head_dim;
        p->cols = strstr(n, "attn_output") ? qd : strstr(n, "ffn_down") ? hp->hidden_dim : hp->dim;
      }
      p->scheme = qn_recipe_pick(rc, t->name);
      const qn_qtype_traits* tr = qn_qtype_traits_of(p->scheme);
      uint64_t rb = qn_qtype_row_bytes(p->scheme, p->cols);
      if (tr->group < 0) {
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

  qn_source* s = NULL;
  QN_TRY(qn_source_open(in_path, o->tokenizer_path, &s));
  qn_weights wcheck; /* binds every weight: shapes checked before any work */
  qn_status st = qn_weights_bind(s, &wcheck);
  if (st == QN_OK) qn_weights_release(&wcheck);

  plan_item* plan = calloc((size_t)s->n_tensors + 1, sizeof *plan);
  qn_tensor* outs = calloc(3 * (size_t)s->n_tensors + 1, sizeof *outs);
  qn_quant_tensor_report* tr = calloc((size_t)s->n_tensors + 1, sizeof *tr);
  cJSON* md = cJSON_CreateObject();
  cJSON* stats = cJSON_CreateObject();
  cJSON* quant = cJSON_CreateObject();
  int n_out = 0, n_rep = 0;
  if (st == QN_OK && (!plan || !outs || !tr || !md || !stats || !quant))
    st = qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) st = make_plan(s, &rc, plan, outs, &n_out);

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
    cJSON_AddStringToObject(md, "quench.method", o->search ? "search" : "rtn");
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
  }
  cJSON_Delete(vj);

  /* largest logical tensor: one f32 buffer and one output buffer of each kind */
  size_t max_el = 1, max_out = 1;
  for (int i = 0; i < s->n_tensors; i++)
    if (plan[i].rows > 0 && (size_t)(plan[i].rows * plan[i].cols) > max_el)
      max_el = (size_t)(plan[i].rows * plan[i].cols);
  for (int i = 0; i < n_out; i++)
    if (outs[i].nbytes > max_out) max_out = outs[i].nbytes;
  float* f32 = st == QN_OK ? malloc(sizeof(float) * max_el) : NULL;
  uint8_t* ob[3] = {NULL, NULL, NULL};
  for (int k = 0; k < 3 && st == QN_OK; k++) ob[k] = malloc(max_out);
  if (st == QN_OK && (!f32 || !ob[0] || !ob[1] || !ob[2]))
    st = qn_error(QN_ENOMEM, "out of memory for a %zu-element tensor", max_el);

  qn_qnz_writer* w = NULL;
  char* mdtxt = NULL;
  if (st == QN_OK) {
    char* partial = cJSON_PrintUnformatted(md);
    uint64_t reserve = (partial ? strlen(partial) : 0) + 400 * (uint64_t)s->n_tensors + 8192;
    free(partial);
    st = qn_qnz_writer_begin(out_path, outs, n_out, reserve, &w);
  }
  qn_quant_opts qo = {o->search, NULL, o->n_threads > 0 ? o->n_threads : qn_cpu_count()};
  int64_t done = 0, total = 0;
  for (int i = 0; i < s->n_tensors; i++)
    if (plan[i].rows > 0) total += plan[i].rows * plan[i].cols;
  for (int i = 0; i < s->n_tensors && st == QN_OK; i++) {
    const plan_item* p = &plan[i];
    if (p->rows < 0) continue;
    st = load_f32(s, p, f32);
    qn_quant_tensor_report* r = &tr[n_rep];
    snprintf(r->name, sizeof r->name, "%s", p->src->name);
    r->rows = p->rows;
    r->cols = p->cols;
    r->bytes_in = p->src->nbytes;
    if (st == QN_OK && p->matrix) {
      qn_quant_stats qs;
      st = qn_quantize_matrix(p->scheme, f32, p->rows, p->cols, &qo, ob[0],
                              p->out[1] >= 0 ? ob[1] : NULL, p->out[2] >= 0 ? ob[2] : NULL, &qs);
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
      for (int k = 0; k < 3 && st == QN_OK; k++)
        if (p->out[k] >= 0) {
          st = qn_qnz_writer_write(w, p->out[k], ob[k]);
          r->bytes_out += outs[p->out[k]].nbytes;
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
    add_json_string(md, "quench.stats", stats);
    quant = stats = NULL;
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
  }
  free(mdtxt);
  for (int k = 0; k < 3; k++) free(ob[k]);
  free(f32);
  free(tr);
  free(outs);
  free(plan);
  cJSON_Delete(quant);
  cJSON_Delete(stats);
  cJSON_Delete(md);
  qn_source_free(s);
  return st;
}
