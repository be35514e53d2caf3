/* weights.c: binds the decoder's tensors by canonical name and checks their shapes; weights
 * with a static int8 activation scale also bind and check their NAME.act_scale tensor.
 * Quantized weights are bound in the layout their .qnz records (canonical rows, or the packed
 * layouts of quant/pack_i8.h), with exact size checks and no per-tensor work. */
#include "model/weights.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "core/status.h"
#include "kernels/kernels.h"
#include "quant/pack_i8.h"

static const char* shape_str(const qn_tensor* t, char* buf, size_t cap) {
  int o = snprintf(buf, cap, "[");
  for (int i = 0; i < t->ndim && o < (int)cap; i++)
    o += snprintf(buf + o, cap - (size_t)o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (o < (int)cap) snprintf(buf + o, cap - (size_t)o, "]");
  return buf;
}

/* Binds NAME.act_scale, the calibrated int8 step of a static-activation weight: an F32
 * tensor of shape [1] holding a positive, finite, normal float. Absent is an error only when
 * `required` (an untied embedding table is only looked up, never multiplied). */
static qn_status bind_act_scale(const qn_source* s, const char* name, const char* scheme,
                                bool required, qn_qtensor* out) {
  char an[QN_NAME_MAX + 16], buf[96];
  snprintf(an, sizeof an, "%s.act_scale", name);
  const qn_tensor* t = qn_source_find(s, an);
  if (!t) {
    if (!required) return QN_OK;
    return qn_error(QN_EFORMAT,
                    "%s: '%s' (%s) has no '%s' tensor (static activation scale; quantize with "
                    "--calib, or use w8a8-dynamic)",
                    s->path, name, scheme, an);
  }
  if (t->dtype != QN_DTYPE_F32 || t->ndim != 1 || t->shape[0] != 1 || t->nbytes != 4)
    return qn_error(QN_EFORMAT, "%s: '%s' is %s %s, expected F32 [1]", s->path, an,
                    qn_dtype_name(t->dtype), shape_str(t, buf, sizeof buf));
  float v;
  memcpy(&v, t->data, sizeof v);
  if (!(v >= FLT_MIN && v <= FLT_MAX))
    return qn_error(QN_EFORMAT,
                    "%s: '%s' is %g; an activation scale must be positive, finite and normal",
                    s->path, an, (double)v);
  out->act_scale = v;
  return QN_OK;
}

/* int8-activation schemes sum int8 x int8 products in int32: at most QN_I8_MAX_COLS. */
static qn_status check_i8_cols(const qn_source* s, const char* name, const qn_qtype_traits* tr,
                               int64_t cols) {
  if (tr->act != QN_ACT_FLOAT && cols > QN_I8_MAX_COLS)
    return qn_error(QN_EUNSUPPORTED,
                    "%s: '%s' (%s) has %lld columns; int8-activation schemes allow at most %d "
                    "(int32 sums)",
                    s->path, name, tr->name, (long long)cols, QN_I8_MAX_COLS);
  return QN_OK;
}

/* The layout the .qnz records for weight name (quench.layout); QN_LAYOUT_ROWS when none. */
static qn_layout layout_of(const qn_source* s, const char* name) {
  for (int i = 0; i < s->n_quant; i++)
    if (strcmp(s->quant[i].name, name) == 0) return (qn_layout)s->quant[i].layout;
  return QN_LAYOUT_ROWS;
}

/* Binds a weight stored in the packed layout l of its scheme (docs/FORMAT.md, "Packed
 * layouts"): payload U8 [ceil(rows / 16), bytes per 16-row block] and NAME.scales F32
 * [rows, 1] (i8x16) or F16 [ceil(rows / 16), 16 * n_groups] (i4x16), every size
 * exact. The bytes are used in place: no repacking. */
static qn_status bind_packed(const qn_source* s, const char* name, const qn_tensor* t, qn_qtype qt,
                             qn_layout l, int64_t rows, int64_t cols, qn_qtensor* out) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(qt);
  char buf[96];
  if (l != qn_qtype_packed_layout(qt))
    return qn_error(QN_EFORMAT, "%s: '%s' (%s) is recorded in layout %s, not its scheme's", s->path,
                    name, tr->name, qn_layout_name(l) ? qn_layout_name(l) : "?");
  if (rows <= 0 || cols <= 0)
    return qn_error(QN_EINVAL, "%s: '%s': bad logical shape %lld x %lld", s->path, name,
                    (long long)rows, (long long)cols);
  const int64_t blocks = (rows + 15) / 16;
  const uint64_t pb = qn_packed_payload_bytes(qt, rows, cols),
                 sb = qn_packed_scale_bytes(qt, rows, cols);
  if (pb == 0 || sb == 0)
    return qn_error(QN_EFORMAT, "%s: '%s' (%s): shape %lld x %lld is too large", s->path, name,
                    tr->name, (long long)rows, (long long)cols);
  const uint64_t per_block = pb / (uint64_t)blocks;
  if (t->dtype != QN_DTYPE_U8 || t->ndim != 2 || t->shape[0] != blocks ||
      (uint64_t)t->shape[1] != per_block || t->nbytes != pb)
    return qn_error(
        QN_EFORMAT, "%s: '%s' (%s, packed %s) payload is %s %s, expected U8 [%lld, %llu]", s->path,
        name, tr->name, qn_layout_name(l), qn_dtype_name(t->dtype), shape_str(t, buf, sizeof buf),
        (long long)blocks, (unsigned long long)per_block);
  char cname[QN_NAME_MAX + 8];
  snprintf(cname, sizeof cname, "%s.scales", name);
  const qn_tensor* c = qn_source_find(s, cname);
  if (!c)
    return qn_error(QN_EFORMAT, "%s: '%s' (%s) has no '%s' tensor", s->path, name, tr->name, cname);
  const int64_t s0 = l == QN_LAYOUT_I8X16 ? rows : blocks;
  const int64_t s1 = l == QN_LAYOUT_I8X16 ? 1 : 16 * qn_qtype_n_groups(qt, cols);
  if (c->dtype != tr->scale_dtype || c->ndim != 2 || c->shape[0] != s0 || c->shape[1] != s1 ||
      c->nbytes != sb)
    return qn_error(QN_EFORMAT, "%s: '%s' (packed %s) is %s %s, expected %s [%lld, %lld]", s->path,
                    cname, qn_layout_name(l), qn_dtype_name(c->dtype),
                    shape_str(c, buf, sizeof buf), qn_dtype_name(tr->scale_dtype), (long long)s0,
                    (long long)s1);
  out->type = qt;
  out->rows = rows;
  out->cols = cols;
  out->data = t->data;
  out->scales = c->data;
  out->layout = l;
  return QN_OK;
}

/* qn_weights_bind_matrix; need_act: a static-activation weight must carry NAME.act_scale
 * (the model's multiplied weights); without it the scale is bound only when present. */
static qn_status bind_matrix(const qn_source* s, const char* name, int64_t rows, int64_t cols,
                             bool need_act, qn_qtensor* out) {
  memset(out, 0, sizeof *out);
  const qn_tensor* t = qn_source_find(s, name);
  if (!t) return qn_error(QN_EFORMAT, "%s: tensor '%s' is missing", s->path, name);
  char buf[96];
  int q = qn_source_quant_of(s, name);
  if (q >= 0) {
    /* .qnz quantized payload: U8 {rows, row_bytes} + scales (+ zeros) {rows, n_groups} */
    qn_qtype qt = (qn_qtype)q;
    const qn_qtype_traits* tr = qn_qtype_traits_of(qt);
    QN_TRY(check_i8_cols(s, name, tr, cols));
    qn_layout l = layout_of(s, name);
    if (l != QN_LAYOUT_ROWS) {
      QN_TRY(bind_packed(s, name, t, qt, l, rows, cols, out));
      if (tr->act == QN_ACT_I8_STATIC) return bind_act_scale(s, name, tr->name, need_act, out);
      return QN_OK;
    }
    uint64_t rb = qn_qtype_row_bytes(qt, cols);
    if (t->ndim != 2 || t->shape[0] != rows || (uint64_t)t->shape[1] != rb ||
        t->nbytes != rb * (uint64_t)rows)
      return qn_error(QN_EFORMAT, "%s: '%s' (%s) payload has shape %s, expected [%lld, %llu]",
                      s->path, name, tr->name, shape_str(t, buf, sizeof buf), (long long)rows,
                      (unsigned long long)rb);
    out->type = qt;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    if (tr->group >= 0) {
      int64_t ng = qn_qtype_n_groups(qt, cols);
      const char* suffix[2] = {".scales", ".zeros"};
      const void** dst[2] = {&out->scales, &out->zeros};
      for (int k = 0; k < (tr->asymmetric ? 2 : 1); k++) {
        char cname[QN_NAME_MAX + 8];
        snprintf(cname, sizeof cname, "%s%s", name, suffix[k]);
        const qn_tensor* c = qn_source_find(s, cname);
        if (!c)
          return qn_error(QN_EFORMAT, "%s: '%s' (%s) has no '%s' tensor", s->path, name, tr->name,
                          cname);
        if (c->dtype != tr->scale_dtype || c->ndim != 2 || c->shape[0] != rows || c->shape[1] != ng)
          return qn_error(QN_EFORMAT, "%s: '%s' is %s %s, expected %s [%lld, %lld]", s->path, cname,
                          qn_dtype_name(c->dtype), shape_str(c, buf, sizeof buf),
                          qn_dtype_name(tr->scale_dtype), (long long)rows, (long long)ng);
        *dst[k] = c->data;
      }
    }
    if (tr->act == QN_ACT_I8_STATIC) return bind_act_scale(s, name, tr->name, need_act, out);
    return QN_OK;
  }
  if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
    return qn_error(QN_EFORMAT, "%s: tensor '%s' has shape %s, expected [%lld, %lld]", s->path,
                    name, shape_str(t, buf, sizeof buf), (long long)rows, (long long)cols);
  switch (t->dtype) {
    case QN_DTYPE_F32: out->type = QN_QTYPE_F32; break;
    case QN_DTYPE_F16: out->type = QN_QTYPE_F16; break;
    case QN_DTYPE_BF16: out->type = QN_QTYPE_BF16; break;
    default:
      return qn_error(QN_EUNSUPPORTED,
                      "%s: tensor '%s' has dtype %s; weights must be F32, F16, "
                      "BF16 or a Quench scheme",
                      s->path, name, qn_dtype_name(t->dtype));
  }
  out->rows = rows;
  out->cols = cols;
  out->data = t->data;
  return QN_OK;
}

qn_status qn_weights_bind_matrix(const qn_source* s, const char* name, int64_t rows, int64_t cols,
                                 qn_qtensor* out) {
  return bind_matrix(s, name, rows, cols, false, out);
}

/* Binds a vector of n floats; f16/bf16 vectors are converted into w->owned. */
static qn_status bind_vector(const qn_source* s, qn_weights* w, const char* name, int64_t n,
                             bool optional, const float** out) {
  *out = NULL;
  const qn_tensor* t = qn_source_find(s, name);
  if (!t) {
    if (optional) return QN_OK;
    return qn_error(QN_EFORMAT, "%s: tensor '%s' is missing", s->path, name);
  }
  if (t->ndim != 1 || t->shape[0] != n)
    return qn_error(QN_EFORMAT, "%s: tensor '%s' has %d dims / %lld elements, expected [%lld]",
                    s->path, name, t->ndim, (long long)qn_tensor_nelem(t), (long long)n);
  if (t->dtype == QN_DTYPE_F32) {
    *out = t->data;
    return QN_OK;
  }
  if (t->dtype != QN_DTYPE_F16 && t->dtype != QN_DTYPE_BF16)
    return qn_error(QN_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; vectors must be F32/F16/BF16",
                    s->path, name, qn_dtype_name(t->dtype));
  float* dst = w->owned + w->n_owned;
  w->n_owned += (size_t)n;
  if (t->dtype == QN_DTYPE_F16)
    qn_f16_to_f32_row(t->data, dst, n);
  else
    qn_bf16_to_f32_row(t->data, dst, n);
  *out = dst;
  return QN_OK;
}

qn_status qn_weights_bind(const qn_source* s, qn_weights* w) {
  memset(w, 0, sizeof *w);
  const qn_hparams* hp = &s->hp;
  const int64_t dim = hp->dim, hid = hp->hidden_dim, qd = (int64_t)hp->n_heads * hp->head_dim,
                kvd = (int64_t)hp->n_kv_heads * hp->head_dim, L = hp->n_layers;
  /* room for every vector: 2 norms + 3 biases per layer, and the final norm */
  w->owned = malloc(sizeof(float) * (size_t)(L * (2 * dim + qd + 2 * kvd) + dim));
  w->layers = calloc((size_t)L, sizeof *w->layers);
  if (!w->owned || !w->layers) {
    qn_weights_release(w);
    return qn_error(QN_ENOMEM, "out of memory");
  }
  /* the embedding table needs an activation scale only when it is also the output head */
  qn_status st =
      bind_matrix(s, "token_embd.weight", hp->vocab_size, dim, hp->tied_embeddings, &w->tok_embd);
  char n[QN_NAME_MAX];
#define BIND_M(field, nm, r, c)                     \
  if (st == QN_OK) {                                \
    snprintf(n, sizeof n, "blk.%d." nm, l);         \
    st = bind_matrix(s, n, r, c, true, &lw->field); \
  }
#define BIND_V(field, nm, len, opt)                  \
  if (st == QN_OK) {                                 \
    snprintf(n, sizeof n, "blk.%d." nm, l);          \
    st = bind_vector(s, w, n, len, opt, &lw->field); \
  }
  for (int l = 0; l < L && st == QN_OK; l++) {
    qn_layer_weights* lw = &w->layers[l];
    BIND_V(attn_norm, "attn_norm.weight", dim, false);
    BIND_M(wq, "attn_q.weight", qd, dim);
    BIND_M(wk, "attn_k.weight", kvd, dim);
    BIND_M(wv, "attn_v.weight", kvd, dim);
    BIND_M(wo, "attn_output.weight", dim, qd);
    BIND_V(bq, "attn_q.bias", qd, !hp->qkv_bias);
    BIND_V(bk, "attn_k.bias", kvd, !hp->qkv_bias);
    BIND_V(bv, "attn_v.bias", kvd, !hp->qkv_bias);
    BIND_V(ffn_norm, "ffn_norm.weight", dim, false);
    BIND_M(w_gate, "ffn_gate.weight", hid, dim);
    BIND_M(w_up, "ffn_up.weight", hid, dim);
    BIND_M(w_down, "ffn_down.weight", dim, hid);
  }
#undef BIND_M
#undef BIND_V
  if (st == QN_OK) st = bind_vector(s, w, "output_norm.weight", dim, false, &w->output_norm);
  if (st == QN_OK) {
    if (hp->tied_embeddings)
      w->output = w->tok_embd;
    else
      st = bind_matrix(s, "output.weight", hp->vocab_size, dim, true, &w->output);
  }
  if (st != QN_OK) qn_weights_release(w);
  return st;
}

void qn_weights_release(qn_weights* w) {
  free(w->layers);
  free(w->owned);
  memset(w, 0, sizeof *w);
}

bool qn_weights_logical_shape(const qn_hparams* hp, const char* name, int64_t* rows,
                              int64_t* cols) {
  const int64_t dim = hp->dim, hid = hp->hidden_dim, qd = (int64_t)hp->n_heads * hp->head_dim,
                kvd = (int64_t)hp->n_kv_heads * hp->head_dim;
  if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight")) {
    *rows = hp->vocab_size;
    *cols = dim;
    return true;
  }
  if (strncmp(name, "blk.", 4) != 0) return false;
  const char* p = name + 4;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') p++;
  static const struct {
    const char* suffix;
    int r, c; /* 0 dim, 1 hidden, 2 q width, 3 kv width */
  } k[] = {{".attn_q.weight", 2, 0},      {".attn_k.weight", 3, 0},   {".attn_v.weight", 3, 0},
           {".attn_output.weight", 0, 2}, {".ffn_gate.weight", 1, 0}, {".ffn_up.weight", 1, 0},
           {".ffn_down.weight", 0, 1}};
  const int64_t width[4] = {dim, hid, qd, kvd};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    if (!strcmp(p, k[i].suffix)) {
      *rows = width[k[i].r];
      *cols = width[k[i].c];
      return true;
    }
  return false;
}
