/* kvcache.c: a dense f32 key/value cache. */
#include "model/kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

qn_status qn_kvcache_init(qn_kvcache* kv, int n_layers, int n_seq, int n_ctx, int kv_dim) {
  memset(kv, 0, sizeof *kv);
  if (n_layers <= 0 || n_seq <= 0 || n_ctx <= 0 || kv_dim <= 0)
    return qn_error(QN_EINVAL, "kv cache: bad size (layers %d, seqs %d, ctx %d, kv_dim %d)",
                    n_layers, n_seq, n_ctx, kv_dim);
  size_t n = (size_t)n_layers * (size_t)n_seq * (size_t)n_ctx * (size_t)kv_dim;
  kv->k = calloc(n, sizeof(float));
  kv->v = calloc(n, sizeof(float));
  if (!kv->k || !kv->v) {
    qn_kvcache_release(kv);
    return qn_error(QN_ENOMEM, "kv cache: cannot allocate %zu MiB", n * 2 * sizeof(float) >> 20);
  }
  kv->n_layers = n_layers;
  kv->n_seq = n_seq;
  kv->n_ctx = n_ctx;
  kv->kv_dim = kv_dim;
  return QN_OK;
}

void qn_kvcache_release(qn_kvcache* kv) {
  free(kv->k);
  free(kv->v);
  memset(kv, 0, sizeof *kv);
}

static size_t kv_index(const qn_kvcache* kv, int layer, int seq, int pos) {
  return (((size_t)layer * (size_t)kv->n_seq + (size_t)seq) * (size_t)kv->n_ctx + (size_t)pos) *
         (size_t)kv->kv_dim;
}

float* qn_kvcache_k(const qn_kvcache* kv, int layer, int seq, int pos) {
  return kv->k + kv_index(kv, layer, seq, pos);
}

float* qn_kvcache_v(const qn_kvcache* kv, int layer, int seq, int pos) {
  return kv->v + kv_index(kv, layer, seq, pos);
}

uint64_t qn_kvcache_bytes(const qn_kvcache* kv) {
  return 2ull * kv->n_layers * kv->n_seq * kv->n_ctx * kv->kv_dim * sizeof(float);
}
