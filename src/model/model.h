/* model.h: the internals behind the opaque qn_model and qn_ctx handles. */
#ifndef QN_MODEL_MODEL_H
#define QN_MODEL_MODEL_H

#include "core/threadpool.h"
#include "format/source.h"
#include "model/kvcache.h"
#include "model/tokenizer.h"
#include "model/weights.h"

struct qn_model {
  qn_source* src;    /* mapped files, hyper-parameters, vocabulary */
  qn_weights w;      /* weight views bound from src */
  qn_tokenizer* tok; /* built from src->vocab */
  qn_pool* pool;     /* worker threads for kernels */
};

/* Points of the forward pass where activations can be observed (calibration). Each names
 * the input shared by a group of linear layers, or the cached keys/values. */
typedef enum qn_act_site {
  QN_SITE_ATTN_IN = 0, /* (n, dim) input of attn_q/k/v: RMSNorm output */
  QN_SITE_ATTN_OUT,    /* (n, n_heads*head_dim) input of attn_output */
  QN_SITE_FFN_IN,      /* (n, dim) input of ffn_gate/up: RMSNorm output */
  QN_SITE_FFN_MID,     /* (n, hidden) input of ffn_down: SwiGLU output */
  QN_SITE_OUTPUT_IN,   /* (n, dim) input of the output head (layer = -1) */
  QN_SITE_K,           /* (n, kv_dim) keys after RoPE, as cached */
  QN_SITE_V,           /* (n, kv_dim) values, as cached */
  QN_SITE_COUNT
} qn_act_site;

/* Called with the n x width activations of a site in a forward step. */
typedef void (*qn_observe_fn)(void* user, int layer, qn_act_site site, const float* x, int n,
                              int width);

/* Largest batch of tokens one forward step processes; longer calls are split. */
#define QN_MAX_BATCH 512

struct qn_ctx {
  qn_model* m;
  qn_observe_fn observe; /* optional activation observer (calibration), NULL = none */
  void* observe_user;    /* passed to observe */
  bool stop_early;       /* qn_forward_layers returns once stop_site of its last layer has
                            been observed, skipping the products that do not feed it */
  qn_act_site stop_site; /* with stop_early: ATTN_IN, ATTN_OUT, FFN_IN or FFN_MID */
  qn_kvcache kv;         /* keys/values of every sequence */
  /* activations for up to QN_MAX_BATCH tokens (rows = tokens) */
  float* x;              /* (batch, dim) residual stream */
  float* xb;             /* (batch, max(dim, q_dim)) normed input / attention output */
  float* q;              /* (batch, n_heads*head_dim) */
  float* k;              /* (batch, kv_dim) */
  float* v;              /* (batch, kv_dim) */
  float* hb;             /* (batch, hidden) gate, then SwiGLU output */
  float* hb2;            /* (batch, hidden) up */
  float* rope_cs;        /* (batch, head_dim/2, 2) cos, sin per token and pair */
  float* att;            /* (n_threads, group, n_ctx) attention scores per worker (group:
                            query heads per kv head) */
  float* att_blk;        /* (threads, att_blk_floats) scores of a block of queries, one
                            slice per worker (batched path) */
  size_t att_blk_floats; /* floats in one worker's slice of att_blk */
  float* scratch;        /* kernel scratch, scratch_floats */
  size_t scratch_floats;
};

/* Runs tokens [0, n) with n <= QN_MAX_BATCH (see qn_ctx_forward for the contract). */
qn_status qn_forward_batch(qn_ctx* c, const int* tokens, const int* pos, const int* seq, int n,
                           float* logits, bool all_logits);
/* Runs decoder blocks [l0, l1) on the residual stream c->x of n <= QN_MAX_BATCH tokens in
 * place (positions/sequences as for qn_forward_batch; observe hooks fire). Used by GPTQ to
 * advance stored activations one block at a time. With c->stop_early it returns right after
 * observing c->stop_site in layer l1 - 1 (c->x is then left mid-block): the observed values
 * are the same as a whole pass gives, without the products after (or, for the RMSNorm and
 * SwiGLU sites, the products consuming) the site. */
void qn_forward_layers(qn_ctx* c, int l0, int l1, const int* pos, const int* seq, int n);

#endif
