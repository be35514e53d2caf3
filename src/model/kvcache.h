/* kvcache.h: the key/value cache, its own module so quantized and paged caches can replace
 * it later. Layout: [layer][seq][pos][kv_dim] for keys and for values, f32. */
#ifndef QN_MODEL_KVCACHE_H
#define QN_MODEL_KVCACHE_H

#include <stdint.h>

#include "quench.h"

typedef struct qn_kvcache {
  int n_layers; /* decoder blocks */
  int n_seq;    /* independent sequences */
  int n_ctx;    /* positions per sequence */
  int kv_dim;   /* n_kv_heads * head_dim floats per position */
  float* k;     /* (n_layers, n_seq, n_ctx, kv_dim) */
  float* v;     /* (n_layers, n_seq, n_ctx, kv_dim) */
} qn_kvcache;

qn_status qn_kvcache_init(qn_kvcache* kv, int n_layers, int n_seq, int n_ctx, int kv_dim);
void qn_kvcache_release(qn_kvcache* kv);
/* Row of keys / values for (layer, seq, pos). */
float* qn_kvcache_k(const qn_kvcache* kv, int layer, int seq, int pos);
float* qn_kvcache_v(const qn_kvcache* kv, int layer, int seq, int pos);
/* Bytes the cache occupies. */
uint64_t qn_kvcache_bytes(const qn_kvcache* kv);

#endif
