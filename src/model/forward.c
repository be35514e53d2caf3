/* forward.c: the Llama decoder forward pass (the FP32 reference every fast path is tested
 * against). For each token: embedding -> n_layers x [RMSNorm -> Q,K,V (+bias) -> RoPE ->
 * causal GQA attention over the KV cache -> output projection -> residual; RMSNorm ->
 * SwiGLU MLP -> residual] -> final RMSNorm -> output head. A call carries a batch of tokens
 * that may belong to different sequences; each token attends to positions 0..pos of its
 * own sequence, including keys written earlier in the same batch. */
#include <math.h>
#include <string.h>

#include "core/status.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* cos/sin of every rotated pair for each token of the batch. */
static void rope_tables(const qn_hparams* hp, const int* pos, int n, float* cs) {
  const int half = hp->head_dim / 2;
  for (int t = 0; t < n; t++) {
    double p = pos[t];
    if (hp->rope_scaling == QN_ROPE_SCALING_LINEAR) p /= hp->rope_factor;
    for (int i = 0; i < half; i++) {
      double freq = pow(hp->rope_theta, -2.0 * i / hp->head_dim);
      if (hp->rope_scaling == QN_ROPE_SCALING_LLAMA3) {
        /* Llama 3.1: long wavelengths slowed by factor, short kept, a smooth blend between */
        const double pi = 3.14159265358979323846;
        double wavelen = 2.0 * pi / freq;
        double lo = hp->rope_orig_max_pos / hp->rope_low_freq_factor;
        double hi = hp->rope_orig_max_pos / hp->rope_high_freq_factor;
        if (wavelen > lo) {
          freq /= hp->rope_factor;
        } else if (wavelen >= hi) {
          double smooth = (hp->rope_orig_max_pos / wavelen - hp->rope_low_freq_factor) /
                          (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
          freq = (1.0 - smooth) * freq / hp->rope_factor + smooth * freq;
        }
      }
      double a = p * freq;
      cs[((size_t)t * half + i) * 2] = (float)cos(a);
      cs[((size_t)t * half + i) * 2 + 1] = (float)sin(a);
    }
  }
}

/* Rotates n_heads heads of one token in place. Pair i of a head is (2i, 2i+1) for the
 * adjacent style and (i, i + head_dim/2) for the half style. */
static void rope_apply(float* v, int n_heads, int head_dim, qn_rope_style style, const float* cs) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; h++) {
    float* hv = v + (size_t)h * head_dim;
    for (int i = 0; i < half; i++) {
      int a = style == QN_ROPE_ADJACENT ? 2 * i : i;
      int b = style == QN_ROPE_ADJACENT ? 2 * i + 1 : i + half;
      float c = cs[2 * i], s = cs[2 * i + 1];
      float x0 = hv[a], x1 = hv[b];
      hv[a] = x0 * c - x1 * s;
      hv[b] = x0 * s + x1 * c;
    }
  }
}

typedef struct attn_job {
  qn_ctx* c;
  int layer;
  const int* pos;
  const int* seq;
  int n;
  int parts; /* pieces each kv head's group of query heads is split into (work for all workers) */
} attn_job;

/* One (token, kv head, part) triple per item: for the part's query heads of the kv head's
 * group, softmax(q.k / sqrt(hd)) over positions 0..pos, then the weighted sum of values,
 * written to xb; the heads of a group share each read of the keys and values. */
static void attn_items(void* arg, int64_t b, int64_t e, int tid) {
  const attn_job* j = arg;
  qn_ctx* c = j->c;
  const qn_hparams* hp = &c->m->src->hp;
  const int hd = hp->head_dim, nh = hp->n_heads, nkv = hp->n_kv_heads, kvd = nkv * hd;
  const int group = nh / nkv, qd = nh * hd;
  const float scale = 1.0f / sqrtf((float)hd);
  float* att = c->att + (size_t)tid * (size_t)group * (size_t)c->kv.n_ctx;
  for (int64_t it = b; it < e; it++) {
    int t = (int)(it / ((int64_t)nkv * j->parts)), rest = (int)(it % ((int64_t)nkv * j->parts));
    int kvh = rest / j->parts, part = rest % j->parts;
    int h0 = kvh * group + group * part / j->parts,
        h1 = kvh * group + group * (part + 1) / j->parts;
    int p = j->pos[t], s = j->seq ? j->seq[t] : 0;
    const float* k = qn_kvcache_k(&c->kv, j->layer, s, 0) + (size_t)kvh * hd;
    const float* v = qn_kvcache_v(&c->kv, j->layer, s, 0) + (size_t)kvh * hd;
    qn_attn_heads(c->q + (size_t)t * qd + (size_t)h0 * hd, h1 - h0, k, v, (size_t)kvd, p + 1, hd,
                  scale, att, c->xb + (size_t)t * qd + (size_t)h0 * hd);
  }
}

/* True when the batch is n >= 8 consecutive positions of one sequence whose score block
 * fits the scratch: then attention runs as matrix products (qn_attention_causal_blas). */
static bool block_attention_ok(const qn_ctx* c, const int* pos, const int* seq, int n) {
  if (qn_isa_ops() == QN_ISA_REF || n < 8) return false;
  for (int t = 1; t < n; t++)
    if (pos[t] != pos[0] + t || (seq && seq[t] != seq[0])) return false;
  return (size_t)n * (size_t)(pos[0] + n) <= c->att_blk_floats;
}

/* Queries per sgemm pair in block attention. */
#define ATTN_QUERY_CHUNK 128

typedef struct attn_block_job {
  qn_ctx* c;
  int layer;
  int seq; /* the sequence of the block */
  int p0;  /* position of the first query */
  int n;   /* queries */
} attn_block_job;

/* Heads h0..h1-1 of a block of consecutive queries, each as two sgemm calls on this
 * worker's slice of att_blk. */
static void attn_block_heads(void* arg, int64_t h0, int64_t h1, int tid) {
  const attn_block_job* j = arg;
  qn_ctx* c = j->c;
  const qn_hparams* hp = &c->m->src->hp;
  const int hd = hp->head_dim, qd = hp->n_heads * hd, kvd = hp->n_kv_heads * hd;
  const int group = hp->n_heads / hp->n_kv_heads;
  const float* k0 = qn_kvcache_k(&c->kv, j->layer, j->seq, 0);
  const float* v0 = qn_kvcache_v(&c->kv, j->layer, j->seq, 0);
  float* scores = c->att_blk + (size_t)tid * c->att_blk_floats;
  for (int64_t h = h0; h < h1; h++) {
    int kvh = (int)h / group;
    /* chunks of queries see keys only up to their own end, so little of the score block
     * is computed just to be masked */
    for (int t0 = 0; t0 < j->n; t0 += ATTN_QUERY_CHUNK) {
      int nt = j->n - t0 < ATTN_QUERY_CHUNK ? j->n - t0 : ATTN_QUERY_CHUNK;
      qn_attention_causal_blas(c->q + (size_t)t0 * qd + (size_t)h * hd, qd, k0 + (size_t)kvh * hd,
                               v0 + (size_t)kvh * hd, kvd, nt, j->p0 + t0, hd,
                               1.0f / sqrtf((float)hd), c->xb + (size_t)t0 * qd + (size_t)h * hd,
                               qd, scores);
    }
  }
}

/* Heads run in parallel on the pool, each sgemm single-threaded (OpenBLAS's own threads
 * would wake and yield for every small product); the thread count is restored after. */
static void attention_block(qn_ctx* c, int layer, const int* pos, const int* seq, int n) {
  const qn_hparams* hp = &c->m->src->hp;
  attn_block_job j = {c, layer, seq ? seq[0] : 0, pos[0], n};
  qn_blas_set_threads(1);
  qn_pool_for(c->m->pool, hp->n_heads, 1, attn_block_heads, &j);
  qn_blas_set_threads(qn_pool_size(c->m->pool));
}

static void observe(qn_ctx* c, int layer, qn_act_site site, const float* x, int n, int width) {
  if (c->observe) c->observe(c->observe_user, layer, site, x, n, width);
}

static void add_bias(float* y, const float* bias, int n, int width) {
  if (!bias) return;
  for (int t = 0; t < n; t++)
    for (int i = 0; i < width; i++) y[(size_t)t * width + i] += bias[i];
}

/* An RMSNorm site alone (a calibration pass stopping there): the norm of the residual stream
 * into xb, as the fused op in front of its products computes it, then the observer. */
static void observe_norm(qn_ctx* c, int layer, qn_act_site site, const float* norm_w, int n) {
  const qn_hparams* hp = &c->m->src->hp;
  const int dim = hp->dim;
  for (int t = 0; t < n; t++)
    qn_rmsnorm(c->xb + (size_t)t * dim, c->x + (size_t)t * dim, norm_w, dim, hp->norm_eps);
  observe(c, layer, site, c->xb, n, dim);
}

void qn_forward_layers(qn_ctx* c, int l0, int l1, const int* pos, const int* seq, int n) {
  qn_model* m = c->m;
  const qn_hparams* hp = &m->src->hp;
  const qn_weights* w = &m->w;
  const int dim = hp->dim, hd = hp->head_dim, qd = hp->n_heads * hd;
  const int kvd = hp->n_kv_heads * hd, hid = hp->hidden_dim;
  qn_pool* pool = m->pool;
  rope_tables(hp, pos, n, c->rope_cs);

  for (int l = l0; l < l1; l++) {
    const qn_layer_weights* lw = &w->layers[l];
    /* the site a calibration pass wants in its last layer (see qn_forward_layers) */
    const int stop = c->stop_early && l == l1 - 1 ? (int)c->stop_site : -1;
    if (stop == QN_SITE_ATTN_IN) {
      observe_norm(c, l, QN_SITE_ATTN_IN, lw->attn_norm, n);
      return;
    }
    /* attention block */
    /* RMSNorm fused in front of q, k, v (one activation quantization, one row loop) */
    qn_fused_op attn_in = {.pre = QN_PRE_RMSNORM,
                           .x = c->x,
                           .norm_w = lw->attn_norm,
                           .eps = hp->norm_eps,
                           .in = c->xb};
    const qn_qtensor* qkv[3] = {&lw->wq, &lw->wk, &lw->wv};
    float* qkv_out[3] = {c->q, c->k, c->v};
    qn_matmul_fused(pool, &attn_in, qkv, 3, n, qkv_out, c->scratch);
    observe(c, l, QN_SITE_ATTN_IN, c->xb, n, dim);
    add_bias(c->q, lw->bq, n, qd);
    add_bias(c->k, lw->bk, n, kvd);
    add_bias(c->v, lw->bv, n, kvd);
    for (int t = 0; t < n; t++) {
      const float* cs = c->rope_cs + (size_t)t * hd;
      rope_apply(c->q + (size_t)t * qd, hp->n_heads, hd, hp->rope_style, cs);
      rope_apply(c->k + (size_t)t * kvd, hp->n_kv_heads, hd, hp->rope_style, cs);
    }
    observe(c, l, QN_SITE_K, c->k, n, kvd);
    observe(c, l, QN_SITE_V, c->v, n, kvd);
    for (int t = 0; t < n; t++) {
      int s = seq ? seq[t] : 0;
      memcpy(qn_kvcache_k(&c->kv, l, s, pos[t]), c->k + (size_t)t * kvd, sizeof(float) * kvd);
      memcpy(qn_kvcache_v(&c->kv, l, s, pos[t]), c->v + (size_t)t * kvd, sizeof(float) * kvd);
    }
    if (block_attention_ok(c, pos, seq, n)) {
      attention_block(c, l, pos, seq, n);
    } else {
      /* enough items for two per worker: split the groups when there are few kv heads */
      const int group = hp->n_heads / hp->n_kv_heads, want = 2 * qn_pool_size(pool);
      int parts = (want + n * hp->n_kv_heads - 1) / (n * hp->n_kv_heads);
      attn_job aj = {c, l, pos, seq, n, parts < 1 ? 1 : parts > group ? group : parts};
      qn_pool_for(pool, (int64_t)n * hp->n_kv_heads * aj.parts, 1, attn_items, &aj);
    }
    /* output projection into q (free now), then the residual */
    observe(c, l, QN_SITE_ATTN_OUT, c->xb, n, qd);
    if (stop == QN_SITE_ATTN_OUT) return;
    qn_matmul(pool, &lw->wo, c->xb, n, c->q, c->scratch);
    for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->q[i];

    /* MLP block */
    if (stop == QN_SITE_FFN_IN) {
      observe_norm(c, l, QN_SITE_FFN_IN, lw->ffn_norm, n);
      return;
    }
    qn_fused_op ffn_in = {
        .pre = QN_PRE_RMSNORM, .x = c->x, .norm_w = lw->ffn_norm, .eps = hp->norm_eps, .in = c->xb};
    const qn_qtensor* gate_up[2] = {&lw->w_gate, &lw->w_up};
    float* gate_up_out[2] = {c->hb, c->hb2};
    qn_matmul_fused(pool, &ffn_in, gate_up, 2, n, gate_up_out, c->scratch);
    observe(c, l, QN_SITE_FFN_IN, c->xb, n, dim);
    if (stop == QN_SITE_FFN_MID) { /* SwiGLU alone, as the fused op computes it */
      for (int t = 0; t < n; t++) qn_swiglu(c->hb + (size_t)t * hid, c->hb2 + (size_t)t * hid, hid);
      observe(c, l, QN_SITE_FFN_MID, c->hb, n, hid);
      return;
    }
    /* SwiGLU fused in front of down (its output quantized per token while in L1) */
    qn_fused_op ffn_mid = {.pre = QN_PRE_SWIGLU, .up = c->hb2, .in = c->hb};
    const qn_qtensor* down = &lw->w_down;
    qn_matmul_fused(pool, &ffn_mid, &down, 1, n, &c->q, c->scratch);
    observe(c, l, QN_SITE_FFN_MID, c->hb, n, hid);
    for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->q[i];
  }
}

qn_status qn_forward_batch(qn_ctx* c, const int* tokens, const int* pos, const int* seq, int n,
                           float* logits, bool all_logits) {
  qn_model* m = c->m;
  const qn_hparams* hp = &m->src->hp;
  const qn_weights* w = &m->w;
  const int dim = hp->dim;
  qn_pool* pool = m->pool;
  const qn_qtype_traits* emb = qn_qtype_traits_of(w->tok_embd.type);

  for (int t = 0; t < n; t++) emb->dequant_row(&w->tok_embd, tokens[t], c->x + (size_t)t * dim);
  qn_forward_layers(c, 0, hp->n_layers, pos, seq, n);

  if (!logits) return QN_OK;
  int first = all_logits ? 0 : n - 1;
  int cnt = n - first;
  for (int t = first; t < n; t++)
    qn_rmsnorm(c->xb + (size_t)(t - first) * dim, c->x + (size_t)t * dim, w->output_norm, dim,
               hp->norm_eps);
  observe(c, -1, QN_SITE_OUTPUT_IN, c->xb, cnt, dim);
  qn_matmul(pool, &w->output, c->xb, cnt, logits, c->scratch);
  return QN_OK;
}
