/* source.h: what every model-file reader produces: hyper-parameters, a table of tensor
 * views under canonical names, the vocabulary, and the mappings that keep data alive.
 *
 * Canonical tensor names (GGUF's spelling; readers of other formats translate):
 *   token_embd.weight            {vocab, dim}
 *   blk.N.attn_norm.weight       {dim}
 *   blk.N.attn_q.weight          {n_heads*head_dim, dim}      (+ blk.N.attn_q.bias)
 *   blk.N.attn_k.weight          {n_kv_heads*head_dim, dim}   (+ .bias)
 *   blk.N.attn_v.weight          {n_kv_heads*head_dim, dim}   (+ .bias)
 *   blk.N.attn_output.weight     {dim, n_heads*head_dim}
 *   blk.N.ffn_norm.weight        {dim}
 *   blk.N.ffn_gate.weight        {hidden, dim}
 *   blk.N.ffn_up.weight          {hidden, dim}
 *   blk.N.ffn_down.weight        {dim, hidden}
 *   output_norm.weight           {dim}
 *   output.weight                {vocab, dim}   (absent when tied to token_embd)
 * A .qnz file adds companion tensors for quantized weights (NAME.scales, NAME.zeros). */
#ifndef QN_FORMAT_SOURCE_H
#define QN_FORMAT_SOURCE_H

#include <stdbool.h>

#include "core/mapfile.h"
#include "core/tensor.h"
#include "format/vocab.h"

typedef enum qn_format {
  QN_FORMAT_LLAMA2C = 0,
  QN_FORMAT_GGUF,
  QN_FORMAT_HF,
  QN_FORMAT_QNZ,
} qn_format;

/* Pairs that RoPE rotates together inside each head. */
typedef enum qn_rope_style {
  QN_ROPE_ADJACENT = 0, /* (0,1),(2,3)...: llama2.c checkpoints and GGUF */
  QN_ROPE_HALF = 1,     /* (i, i + head_dim/2): Hugging Face "rotate_half" */
} qn_rope_style;

typedef enum qn_rope_scaling {
  QN_ROPE_SCALING_NONE = 0,
  QN_ROPE_SCALING_LINEAR, /* positions divided by factor */
  QN_ROPE_SCALING_LLAMA3, /* Llama 3.1 frequency-dependent scaling */
} qn_rope_scaling;

typedef struct qn_hparams {
  char arch[32];  /* "llama", "mistral", "qwen2" */
  int dim;        /* residual width */
  int hidden_dim; /* MLP inner width */
  int n_layers;
  int n_heads;    /* query heads */
  int n_kv_heads; /* key/value heads; n_heads % n_kv_heads == 0 */
  int head_dim;   /* usually dim / n_heads */
  int vocab_size;
  int max_seq_len;  /* trained context length */
  float norm_eps;   /* RMSNorm epsilon */
  float rope_theta; /* RoPE base (10000 for Llama 2) */
  qn_rope_style rope_style;
  qn_rope_scaling rope_scaling;
  float rope_factor;           /* linear / llama3: scale factor */
  float rope_low_freq_factor;  /* llama3 */
  float rope_high_freq_factor; /* llama3 */
  int rope_orig_max_pos;       /* llama3: original_max_position_embeddings */
  bool tied_embeddings;        /* output head is token_embd */
  bool qkv_bias;               /* attn_q/k/v carry biases */
} qn_hparams;

#define QN_SOURCE_MAX_MAPS 64

/* A quantized weight in a .qnz file: the tensor `name` holds the payload, `name.scales`
 * and `name.zeros` its companions; qtype is a qn_qtype (src/quant/qtype.h). */
typedef struct qn_quant_entry {
  char name[QN_NAME_MAX]; /* canonical weight name */
  int qtype;              /* qn_qtype */
  int layout;             /* qn_layout of payload/scales (quench.layout); 0 = canonical rows */
} qn_quant_entry;

typedef struct qn_source {
  qn_format format;
  char path[1024]; /* file or directory opened */
  qn_hparams hp;
  qn_tensor* tensors; /* [n_tensors], canonical names, views into maps */
  int n_tensors;
  int cap_tensors; /* allocated entries */
  qn_vocab vocab;
  qn_mapfile maps[QN_SOURCE_MAX_MAPS]; /* files kept mapped for the tensor views */
  int n_maps;
  char* metadata_json;   /* .qnz / safetensors __metadata__ as JSON text, or NULL; owned */
  qn_quant_entry* quant; /* [n_quant] .qnz quantized weights; NULL otherwise; owned */
  int n_quant;
} qn_source;

/* Detects the format of path (directory -> HF; magic "GGUF"; .qnz/.safetensors header;
 * otherwise llama2.c) and opens it. tokenizer_path: llama2.c tokenizer.bin (optional). */
qn_status qn_source_open(const char* path, const char* tokenizer_path, qn_source** out);
void qn_source_free(qn_source* s);

/* Format-specific openers (each fills a zeroed source allocated by the caller). */
qn_status qn_llama2c_open(qn_source* s, const char* path, const char* tokenizer_path);
qn_status qn_gguf_open(qn_source* s, const char* path);
qn_status qn_hf_open(qn_source* s, const char* dir);
qn_status qn_qnz_open(qn_source* s, const char* path);

/* Helpers for readers. */
qn_status qn_source_add_map(qn_source* s, const char* path, const qn_mapfile** mf);
/* Appends a tensor view; copies *t. Fails on a duplicate name. */
qn_status qn_source_add_tensor(qn_source* s, const qn_tensor* t);
const qn_tensor* qn_source_find(const qn_source* s, const char* name);
/* The qn_qtype of a quantized .qnz weight, or -1 for a plain tensor. */
int qn_source_quant_of(const qn_source* s, const char* name);

/* Checks hyper-parameters for sanity (positive sizes, heads dividing evenly). Tensor
 * shapes are checked by the model loader (src/model/weights.c), which knows quant types. */
qn_status qn_hparams_validate(const qn_hparams* hp, const char* path);

const char* qn_format_name(qn_format f);

#endif
