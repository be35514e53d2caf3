/* weights.c: binds the decoder's tensors by canonical name and checks their shapes; weights
 * with a static int8 activation scale also bind and check their NAME.act_scale tensor. */
#include "model/weights.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "core/status.h"
#include "kernels/kernels.h"

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
    if (tr->act != QN_ACT_FLOAT && cols > QN_I8_MAX_COLS)
      return qn_error(QN_EUNSUPPORTED,
                      "%s: '%s' (%s) has %lld columns; int8-activation schemes allow at most %d "
                      "(int32 sums)",
                      s->path, name, tr->name, (long long)cols, QN_I8_MAX_COLS);
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
