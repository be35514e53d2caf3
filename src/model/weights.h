/* weights.h: the Llama decoder's weights bound to tensor views of a qn_source. */
#ifndef QN_MODEL_WEIGHTS_H
#define QN_MODEL_WEIGHTS_H

#include "format/source.h"
#include "quant/qtype.h"

typedef struct qn_layer_weights {
  const float* attn_norm; /* (dim) RMSNorm weight before attention */
  qn_qtensor wq;          /* (n_heads*head_dim, dim) */
  qn_qtensor wk;          /* (n_kv_heads*head_dim, dim) */
  qn_qtensor wv;          /* (n_kv_heads*head_dim, dim) */
  qn_qtensor wo;          /* (dim, n_heads*head_dim) */
  const float* bq;        /* (n_heads*head_dim) or NULL */
  const float* bk;        /* (n_kv_heads*head_dim) or NULL */
  const float* bv;        /* (n_kv_heads*head_dim) or NULL */
  const float* ffn_norm;  /* (dim) RMSNorm weight before the MLP */
  qn_qtensor w_gate;      /* (hidden, dim) */
  qn_qtensor w_up;        /* (hidden, dim) */
  qn_qtensor w_down;      /* (dim, hidden) */
} qn_layer_weights;

typedef struct qn_weights {
  qn_qtensor tok_embd;      /* (vocab, dim); rows are looked up by token id */
  qn_layer_weights* layers; /* [n_layers] */
  const float* output_norm; /* (dim) */
  qn_qtensor output;        /* (vocab, dim); == tok_embd when tied */
  float* owned;             /* f32 copies of norm/bias vectors stored as f16/bf16 */
  size_t n_owned;           /* floats used in owned */
} qn_weights;

/* Binds every tensor of the decoder, checking presence, dtype and shape against hp
 * (errors name the tensor). Quantized .qnz weights are bound through their companion
 * scale/zero tensors, in the layout the file records (qn_qtensor.layout): w8a8-* / w4a8
 * weights written by this version are packed (quant/pack_i8.h); older files that stored them
 * as canonical rows are accepted as such (layout QN_LAYOUT_ROWS). */
qn_status qn_weights_bind(const qn_source* s, qn_weights* w);
void qn_weights_release(qn_weights* w);

/* Binds one weight matrix of logical shape rows x cols by canonical name (used by the
 * .qnz writer and tests too). A w8a8-static weight's NAME.act_scale is checked and bound
 * when present; qn_weights_bind requires it for every weight the model multiplies. */
qn_status qn_weights_bind_matrix(const qn_source* s, const char* name, int64_t rows, int64_t cols,
                                 qn_qtensor* out);

/* Logical shape rows x cols (out x in) of the decoder's 2-D weight `name` (token_embd,
 * output, blk.N.attn_{q,k,v,output}, blk.N.ffn_{gate,up,down}) from the hyper-parameters;
 * false for any other name. Stored shapes of quantized weights differ (docs/FORMAT.md). */
bool qn_weights_logical_shape(const qn_hparams* hp, const char* name, int64_t* rows, int64_t* cols);

#endif
