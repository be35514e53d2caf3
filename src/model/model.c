/* model.c: opening a model (reader -> weights -> tokenizer -> thread pool), its summary,
 * tokenizer entry points, and inference sessions (qn_ctx). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/kernels.h"

qn_status qn_model_open(const char* path, const qn_model_opts* opts, qn_model** out) {
  *out = NULL;
  qn_error_clear();
  qn_model* m = calloc(1, sizeof *m);
  if (!m) return qn_error(QN_ENOMEM, "out of memory");
  qn_status st = qn_source_open(path, opts ? opts->tokenizer_path : NULL, &m->src);
  if (st == QN_OK) st = qn_weights_bind(m->src, &m->w);
  if (st == QN_OK) st = qn_tokenizer_new(&m->src->vocab, &m->tok);
  if (st == QN_OK) st = qn_pool_new(opts ? opts->n_threads : 0, &m->pool);
  if (st == QN_OK) qn_blas_set_threads(qn_pool_size(m->pool));
  if (st != QN_OK) {
    qn_model_free(m);
    return st;
  }
  *out = m;
  return QN_OK;
}

void qn_model_free(qn_model* m) {
  if (!m) return;
  qn_pool_free(m->pool);
  qn_tokenizer_free(m->tok);
  qn_weights_release(&m->w);
  qn_source_free(m->src);
  free(m);
}

void qn_model_get_info(const qn_model* m, qn_model_info* info) {
  const qn_hparams* hp = &m->src->hp;
  memset(info, 0, sizeof *info);
  info->arch = hp->arch;
  info->format = qn_format_name(m->src->format);
  info->dim = hp->dim;
  info->hidden_dim = hp->hidden_dim;
  info->n_layers = hp->n_layers;
  info->n_heads = hp->n_heads;
  info->n_kv_heads = hp->n_kv_heads;
  info->head_dim = hp->head_dim;
  info->vocab_size = hp->vocab_size;
  info->max_seq_len = hp->max_seq_len;
  info->rope_theta = hp->rope_theta;
  info->norm_eps = hp->norm_eps;
  info->rope_style = hp->rope_style == QN_ROPE_ADJACENT ? "adjacent" : "half";
  info->tied_embeddings = hp->tied_embeddings;
  info->qkv_bias = hp->qkv_bias;
  for (int i = 0; i < m->src->n_tensors; i++) {
    const qn_tensor* t = &m->src->tensors[i];
    info->weight_bytes += t->nbytes;
  }
  /* parameters counted from the logical weight shapes, whatever their storage */
  int64_t np = (int64_t)hp->vocab_size * hp->dim * (hp->tied_embeddings ? 1 : 2) + hp->dim;
  int64_t qd = (int64_t)hp->n_heads * hp->head_dim, kvd = (int64_t)hp->n_kv_heads * hp->head_dim;
  int64_t per = 2 * hp->dim + qd * hp->dim * 2 + kvd * hp->dim * 2 +
                3 * (int64_t)hp->hidden_dim * hp->dim + (hp->qkv_bias ? qd + 2 * kvd : 0);
  info->n_params = np + per * hp->n_layers;
  info->tokenizer_kind = m->src->vocab.kind == QN_VOCAB_SPM ? "spm" : "bpe";
  info->bos_id = m->src->vocab.bos_id;
  info->eos_id = m->src->vocab.eos_id;
}

int qn_model_n_tensors(const qn_model* m) { return m->src->n_tensors; }

void qn_model_tensor(const qn_model* m, int i, qn_tensor_info* out) {
  const qn_tensor* t = &m->src->tensors[i];
  memset(out, 0, sizeof *out);
  out->name = t->name;
  out->dtype = qn_dtype_name(t->dtype);
  int q = qn_source_quant_of(m->src, t->name);
  out->scheme = q >= 0 ? qn_qtype_traits_of((qn_qtype)q)->name : NULL;
  for (int k = 0; q >= 0 && k < m->src->n_quant; k++)
    if (m->src->quant[k].layout != QN_LAYOUT_ROWS && !strcmp(m->src->quant[k].name, t->name))
      out->layout = qn_layout_name((qn_layout)m->src->quant[k].layout);
  out->ndim = t->ndim;
  for (int d = 0; d < t->ndim; d++) out->shape[d] = t->shape[d];
  out->nbytes = t->nbytes;
}

const char* qn_model_metadata(const qn_model* m) { return m->src->metadata_json; }

qn_status qn_tokenize(const qn_model* m, const char* text, size_t len, bool add_bos, int** ids,
                      int* n_ids) {
  return qn_tokenizer_encode(m->tok, text, len, add_bos, ids, n_ids);
}

qn_status qn_detokenize(const qn_model* m, const int* ids, int n_ids, char** text, size_t* len) {
  return qn_tokenizer_decode(m->tok, ids, n_ids, text, len);
}

/* ---- sessions ---- */

static size_t max_scratch(const qn_model* m, int n, int threads) {
  const qn_weights* w = &m->w;
  size_t best = qn_matmul_scratch_floats(&w->output, n, threads);
  for (int l = 0; l < m->src->hp.n_layers; l++) {
    const qn_layer_weights* lw = &w->layers[l];
    const qn_qtensor* all[] = {&lw->wq,     &lw->wk,   &lw->wv,    &lw->wo,
                               &lw->w_gate, &lw->w_up, &lw->w_down};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
      size_t s = qn_matmul_scratch_floats(all[i], n, threads);
      if (s > best) best = s;
    }
  }
  return best;
}

qn_status qn_ctx_new(qn_model* m, int n_ctx, int n_seq, qn_ctx** out) {
  *out = NULL;
  const qn_hparams* hp = &m->src->hp;
  if (n_ctx < 0 || n_seq <= 0)
    return qn_error(QN_EINVAL, "context: n_ctx %d / n_seq %d invalid", n_ctx, n_seq);
  if (n_ctx == 0) n_ctx = hp->max_seq_len;
  qn_ctx* c = calloc(1, sizeof *c);
  if (!c) return qn_error(QN_ENOMEM, "out of memory");
  c->m = m;
  const size_t B = QN_MAX_BATCH, dim = (size_t)hp->dim, hd = (size_t)hp->head_dim;
  const size_t qd = (size_t)hp->n_heads * hd, kvd = (size_t)hp->n_kv_heads * hd;
  const size_t hid = (size_t)hp->hidden_dim;
  const int threads = qn_pool_size(m->pool);
  qn_status st = qn_kvcache_init(&c->kv, hp->n_layers, n_seq, n_ctx, (int)kvd);
  if (st == QN_OK) {
    c->x = malloc(sizeof(float) * B * dim);
    c->xb = malloc(sizeof(float) * B * (dim > qd ? dim : qd));
    c->q = malloc(sizeof(float) * B * (dim > qd ? dim : qd));
    c->k = malloc(sizeof(float) * B * kvd);
    c->v = malloc(sizeof(float) * B * kvd);
    c->hb = malloc(sizeof(float) * B * hid);
    c->hb2 = malloc(sizeof(float) * B * hid);
    c->rope_cs = malloc(sizeof(float) * B * hd);
    const size_t group = (size_t)(hp->n_heads / hp->n_kv_heads); /* query heads per kv head */
    c->att = malloc(sizeof(float) * (size_t)threads * group * (size_t)n_ctx);
    c->att_blk_floats = B * (size_t)n_ctx;
    if (c->att_blk_floats > ((size_t)1 << 24)) c->att_blk_floats = (size_t)1 << 24;
    c->att_blk = malloc(sizeof(float) * c->att_blk_floats * (size_t)threads);
    c->scratch_floats = max_scratch(m, (int)B, threads);
    c->scratch = malloc(sizeof(float) * c->scratch_floats);
    if (!c->x || !c->xb || !c->q || !c->k || !c->v || !c->hb || !c->hb2 || !c->rope_cs || !c->att ||
        !c->att_blk || !c->scratch)
      st = qn_error(QN_ENOMEM, "out of memory for activations");
  }
  if (st != QN_OK) {
    qn_ctx_free(c);
    return st;
  }
  *out = c;
  return QN_OK;
}

void qn_ctx_free(qn_ctx* c) {
  if (!c) return;
  qn_kvcache_release(&c->kv);
  free(c->x);
  free(c->xb);
  free(c->q);
  free(c->k);
  free(c->v);
  free(c->hb);
  free(c->hb2);
  free(c->rope_cs);
  free(c->att);
  free(c->att_blk);
  free(c->scratch);
  free(c);
}

void qn_ctx_reset(qn_ctx* c, int seq) {
  /* Positions are always written before they are read, so a reset needs no clearing; it
   * exists so callers state intent (and for caches that track occupancy later). */
  (void)c;
  (void)seq;
}

qn_status qn_ctx_forward(qn_ctx* c, const int* tokens, const int* pos, const int* seq, int n,
                         float* logits, bool all_logits) {
  const qn_hparams* hp = &c->m->src->hp;
  if (n <= 0) return qn_error(QN_EINVAL, "forward: no tokens");
  for (int i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= hp->vocab_size)
      return qn_error(QN_EINVAL, "forward: token id %d out of range [0, %d)", tokens[i],
                      hp->vocab_size);
    if (pos[i] < 0 || pos[i] >= c->kv.n_ctx)
      return qn_error(QN_ERANGE, "forward: position %d is beyond the context of %d tokens", pos[i],
                      c->kv.n_ctx);
    if (seq && (seq[i] < 0 || seq[i] >= c->kv.n_seq))
      return qn_error(QN_EINVAL, "forward: sequence %d out of range [0, %d)", seq[i], c->kv.n_seq);
  }
  const size_t V = (size_t)hp->vocab_size;
  for (int b = 0; b < n; b += QN_MAX_BATCH) {
    int cnt = n - b < QN_MAX_BATCH ? n - b : QN_MAX_BATCH;
    bool last = b + cnt == n;
    float* out = NULL;
    if (logits && all_logits) out = logits + (size_t)b * V;
    if (logits && !all_logits && last) out = logits;
    QN_TRY(qn_forward_batch(c, tokens + b, pos + b, seq ? seq + b : NULL, cnt, out, all_logits));
  }
  return QN_OK;
}
