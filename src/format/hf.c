/* hf.c: reader for Hugging Face model directories (Llama, Mistral, Qwen2):
 * config.json -> hyper-parameters; model.safetensors, or model.safetensors.index.json and
 * the shards it names -> tensor views under canonical names (no data copied or permuted:
 * HF checkpoints rotate RoPE halves, so the source says QN_ROPE_HALF); tokenizer.json ->
 * vocabulary (through hf_tokenizer.c). */
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "format/safetensors.h"
#include "format/source.h"
#include "format/tokenizer_load.h"

/* ---- config.json ------------------------------------------------------------------------ */

/* Defaults that transformers' config classes use for keys a config.json may omit. */
typedef struct hf_arch {
  const char* model_type;  /* config.json "model_type" */
  int max_pos;             /* max_position_embeddings */
  int sliding_window;      /* sliding_window when the key is absent (0 = none) */
  bool sliding_needs_flag; /* the window only applies with "use_sliding_window": true */
} hf_arch;

static const hf_arch k_archs[] = {
    {"llama", 2048, 0, false},
    {"mistral", 131072, 4096, false},
    {"qwen2", 32768, 0, true},
};

/* Reading context for config.json: the parsed tree and its path for messages. */
typedef struct hf_cfg {
  const cJSON* root; /* the config object */
  const char* path;  /* DIR/config.json */
} hf_cfg;

/* The item for key, or NULL when absent or JSON null. */
static const cJSON* cfg_item(const cJSON* obj, const char* key) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNull(j) ? NULL : j;
}

/* A positive integer key (required, or def when absent and def > 0). */
static qn_status cfg_int(const hf_cfg* c, const cJSON* obj, const char* key, int def, int* out) {
  const cJSON* j = cfg_item(obj, key);
  if (!j) {
    if (def > 0) {
      *out = def;
      return QN_OK;
    }
    return qn_error(QN_EFORMAT, "%s: missing required key \"%s\"", c->path, key);
  }
  double d = cJSON_IsNumber(j) ? j->valuedouble : -1.0;
  if (!(d >= 1.0 && d <= (double)INT_MAX) || d != (double)(int)d)
    return qn_error(QN_EFORMAT, "%s: \"%s\" must be a positive integer", c->path, key);
  *out = (int)d;
  return QN_OK;
}

/* A positive finite number key (required, or def when absent and def > 0). */
static qn_status cfg_float(const hf_cfg* c, const cJSON* obj, const char* key, double def,
                           float* out) {
  const cJSON* j = cfg_item(obj, key);
  if (!j) {
    if (def > 0) {
      *out = (float)def;
      return QN_OK;
    }
    return qn_error(QN_EFORMAT, "%s: missing required key \"%s\"", c->path, key);
  }
  double d = cJSON_IsNumber(j) ? j->valuedouble : -1.0;
  if (!(d > 0.0 && d < 1e30))
    return qn_error(QN_EFORMAT, "%s: \"%s\" must be a positive number", c->path, key);
  *out = (float)d;
  return QN_OK;
}

static qn_status cfg_bool(const hf_cfg* c, const char* key, bool def, bool* out) {
  const cJSON* j = cfg_item(c->root, key);
  if (!j) {
    *out = def;
    return QN_OK;
  }
  if (!cJSON_IsBool(j))
    return qn_error(QN_EFORMAT, "%s: \"%s\" must be true or false", c->path, key);
  *out = cJSON_IsTrue(j);
  return QN_OK;
}

static qn_status cfg_arch(const hf_cfg* c, qn_hparams* hp, const hf_arch** arch) {
  const cJSON* j = cfg_item(c->root, "model_type");
  if (!cJSON_IsString(j) || !j->valuestring)
    return qn_error(QN_EFORMAT, "%s: missing or non-string \"model_type\"", c->path);
  for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++)
    if (strcmp(j->valuestring, k_archs[i].model_type) == 0) {
      *arch = &k_archs[i];
      snprintf(hp->arch, sizeof hp->arch, "%s", k_archs[i].model_type);
      return QN_OK;
    }
  return qn_error(QN_EUNSUPPORTED,
                  "%s: model_type \"%.64s\" is not supported (llama, mistral, qwen2 are)", c->path,
                  j->valuestring);
}

/* Features of other checkpoints that this reader would silently get wrong. */
static qn_status cfg_reject_unsupported(const hf_cfg* c) {
  const cJSON* act = cfg_item(c->root, "hidden_act");
  if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
    return qn_error(QN_EUNSUPPORTED, "%s: hidden_act \"%.32s\" is not supported (only silu)",
                    c->path, cJSON_IsString(act) ? act->valuestring : "?");
  if (cfg_item(c->root, "quantization_config"))
    return qn_error(QN_EUNSUPPORTED,
                    "%s: pre-quantized checkpoints (\"quantization_config\") are not supported; "
                    "start from the full-precision model",
                    c->path);
  return QN_OK;
}

/* Sizes of the decoder. */
static qn_status cfg_sizes(const hf_cfg* c, const hf_arch* arch, qn_hparams* hp) {
  const cJSON* r = c->root;
  QN_TRY(cfg_int(c, r, "hidden_size", 0, &hp->dim));
  QN_TRY(cfg_int(c, r, "intermediate_size", 0, &hp->hidden_dim));
  QN_TRY(cfg_int(c, r, "num_hidden_layers", 0, &hp->n_layers));
  QN_TRY(cfg_int(c, r, "num_attention_heads", 0, &hp->n_heads));
  QN_TRY(cfg_int(c, r, "num_key_value_heads", hp->n_heads, &hp->n_kv_heads));
  QN_TRY(cfg_int(c, r, "vocab_size", 0, &hp->vocab_size));
  if (!cfg_item(r, "head_dim") && hp->dim % hp->n_heads != 0)
    return qn_error(QN_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                    c->path, hp->dim, hp->n_heads);
  QN_TRY(cfg_int(c, r, "head_dim", hp->dim / hp->n_heads, &hp->head_dim));
  QN_TRY(cfg_int(c, r, "max_position_embeddings", arch->max_pos, &hp->max_seq_len));
  QN_TRY(cfg_float(c, r, "rms_norm_eps", 1e-6, &hp->norm_eps));
  return QN_OK;
}

/* With sliding-window attention, full attention is exact only up to the window: the
 * context is capped there. */
static qn_status cfg_sliding_window(const hf_cfg* c, const hf_arch* arch, qn_hparams* hp) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(c->root, "sliding_window");
  int window = 0;
  if (!j) {
    window = arch->sliding_window;
  } else if (!cJSON_IsNull(j)) {
    QN_TRY(cfg_int(c, c->root, "sliding_window", 0, &window));
  }
  if (arch->sliding_needs_flag) {
    bool use = false;
    QN_TRY(cfg_bool(c, "use_sliding_window", false, &use));
    if (!use) window = 0;
  }
  if (window > 0 && window < hp->max_seq_len) hp->max_seq_len = window;
  return QN_OK;
}

/* RoPE scaling from an object with "rope_type" (or the older "type"). */
static qn_status cfg_rope_scaling(const hf_cfg* c, const cJSON* o, const char* key,
                                  qn_hparams* hp) {
  if (!cJSON_IsObject(o)) return qn_error(QN_EFORMAT, "%s: \"%s\" is not an object", c->path, key);
  const cJSON* type = cfg_item(o, "rope_type");
  if (!type) type = cfg_item(o, "type");
  if (type && !cJSON_IsString(type))
    return qn_error(QN_EFORMAT, "%s: %s.rope_type is not a string", c->path, key);
  const char* t = type ? type->valuestring : "default";
  if (strcmp(t, "default") == 0) {
    hp->rope_scaling = QN_ROPE_SCALING_NONE;
  } else if (strcmp(t, "linear") == 0) {
    hp->rope_scaling = QN_ROPE_SCALING_LINEAR;
    QN_TRY(cfg_float(c, o, "factor", 0, &hp->rope_factor));
  } else if (strcmp(t, "llama3") == 0) {
    hp->rope_scaling = QN_ROPE_SCALING_LLAMA3;
    QN_TRY(cfg_float(c, o, "factor", 0, &hp->rope_factor));
    QN_TRY(cfg_float(c, o, "low_freq_factor", 0, &hp->rope_low_freq_factor));
    QN_TRY(cfg_float(c, o, "high_freq_factor", 0, &hp->rope_high_freq_factor));
    QN_TRY(cfg_int(c, o, "original_max_position_embeddings", 0, &hp->rope_orig_max_pos));
    if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor))
      return qn_error(QN_EFORMAT, "%s: %s: high_freq_factor must exceed low_freq_factor", c->path,
                      key);
  } else {
    return qn_error(QN_EUNSUPPORTED,
                    "%s: %s type \"%.32s\" is not supported (default, linear, llama3 are)", c->path,
                    key, t);
  }
  return QN_OK;
}

/* rope_theta and scaling: transformers v4 writes top-level "rope_theta" and "rope_scaling";
 * v5 writes "rope_parameters" {"rope_theta", "rope_type", ...}. Both are accepted. */
static qn_status cfg_rope(const hf_cfg* c, qn_hparams* hp) {
  hp->rope_style = QN_ROPE_HALF;
  const cJSON* params = cfg_item(c->root, "rope_parameters");
  if (params && !cJSON_IsObject(params))
    return qn_error(QN_EFORMAT, "%s: \"rope_parameters\" is not an object", c->path);
  QN_TRY(cfg_float(c, c->root, "rope_theta", 10000.0, &hp->rope_theta));
  if (params && cfg_item(params, "rope_theta"))
    QN_TRY(cfg_float(c, params, "rope_theta", 0, &hp->rope_theta));
  const cJSON* scaling = cfg_item(c->root, "rope_scaling");
  if (scaling) return cfg_rope_scaling(c, scaling, "rope_scaling", hp);
  if (params) return cfg_rope_scaling(c, params, "rope_parameters", hp);
  hp->rope_scaling = QN_ROPE_SCALING_NONE;
  return QN_OK;
}

static qn_status cfg_parse(const hf_cfg* c, qn_hparams* hp) {
  if (!cJSON_IsObject(c->root)) return qn_error(QN_EFORMAT, "%s: not a JSON object", c->path);
  const hf_arch* arch = NULL;
  QN_TRY(cfg_arch(c, hp, &arch));
  QN_TRY(cfg_reject_unsupported(c));
  QN_TRY(cfg_sizes(c, arch, hp));
  QN_TRY(cfg_sliding_window(c, arch, hp));
  QN_TRY(cfg_rope(c, hp));
  QN_TRY(cfg_bool(c, "tie_word_embeddings", false, &hp->tied_embeddings));
  return qn_hparams_validate(hp, c->path);
}

/* Reads DIR/config.json into s->hp and keeps its text as the source's metadata. */
static qn_status load_config(qn_source* s, const char* dir) {
  char path[1200];
  if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
    return qn_error(QN_EINVAL, "%s: path too long", dir);
  if (!qn_is_file(path))
    return qn_error(QN_EIO, "%s: no config.json in this Hugging Face model directory", path);
  char* text = NULL;
  size_t len = 0;
  QN_TRY(qn_read_text_file(path, &text, &len));
  cJSON* root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root) return qn_error(QN_EFORMAT, "%s: malformed JSON", path);
  hf_cfg c = {root, path};
  qn_status st = cfg_parse(&c, &s->hp);
  if (st == QN_OK) {
    s->metadata_json = cJSON_PrintUnformatted(root);
    if (!s->metadata_json) st = qn_error(QN_ENOMEM, "%s: out of memory", path);
  }
  cJSON_Delete(root);
  return st;
}

/* ---- tensor names ----------------------------------------------------------------------- */

typedef enum hf_map_result {
  HF_MAP_OK = 0,      /* out holds the canonical name */
  HF_MAP_IGNORE,      /* not used by the model (e.g. rotary_emb.inv_freq) */
  HF_MAP_UNSUPPORTED, /* a tensor the model would need but cannot use (o_proj bias...) */
  HF_MAP_BAD_LAYER,   /* layer index malformed or >= n_layers */
} hf_map_result;

/* Per-layer tensors: HF suffix after "layers.N." -> canonical suffix after "blk.N."
 * (NULL: present in some checkpoints but not supported by the model). */
static const struct {
  const char* hf;
  const char* canon;
} k_layer_names[] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.o_proj.bias", NULL},
    {"mlp.gate_proj.bias", NULL},
    {"mlp.up_proj.bias", NULL},
    {"mlp.down_proj.bias", NULL},
};

/* Parses the decimal layer index at *p (no sign, no leading zeros) and advances past it. */
static bool parse_layer(const char** p, int n_layers, int* layer) {
  const char* s = *p;
  long v = 0;
  int digits = 0;
  while (*s >= '0' && *s <= '9' && digits < 10) v = v * 10 + (*s++ - '0'), digits++;
  if (digits == 0 || (digits > 1 && **p == '0') || *s != '.' || v >= n_layers) return false;
  *layer = (int)v;
  *p = s + 1;
  return true;
}

/* Maps a Hugging Face tensor name to its canonical name (see source.h). */
static hf_map_result hf_canonical_name(const char* hf, int n_layers, char out[QN_NAME_MAX]) {
  if (strcmp(hf, "lm_head.weight") == 0) {
    snprintf(out, QN_NAME_MAX, "output.weight");
    return HF_MAP_OK;
  }
  const char* p = strncmp(hf, "model.", 6) == 0 ? hf + 6 : hf;
  if (strcmp(p, "embed_tokens.weight") == 0) {
    snprintf(out, QN_NAME_MAX, "token_embd.weight");
    return HF_MAP_OK;
  }
  if (strcmp(p, "norm.weight") == 0) {
    snprintf(out, QN_NAME_MAX, "output_norm.weight");
    return HF_MAP_OK;
  }
  if (strncmp(p, "layers.", 7) != 0) return HF_MAP_IGNORE;
  p += 7;
  int layer;
  if (!parse_layer(&p, n_layers, &layer)) return HF_MAP_BAD_LAYER;
  for (size_t i = 0; i < sizeof k_layer_names / sizeof k_layer_names[0]; i++) {
    if (strcmp(p, k_layer_names[i].hf) != 0) continue;
    if (!k_layer_names[i].canon) return HF_MAP_UNSUPPORTED;
    snprintf(out, QN_NAME_MAX, "blk.%d.%s", layer, k_layer_names[i].canon);
    return HF_MAP_OK;
  }
  return HF_MAP_IGNORE;
}

/* ---- weights ----------------------------------------------------------------------------- */

/* One "weight_map" entry of model.safetensors.index.json. */
typedef struct hf_wentry {
  const char* name;  /* tensor name (owned by the index's JSON tree) */
  const char* shard; /* shard file name, a plain file name inside the directory */
  bool found;        /* seen in that shard */
} hf_wentry;

/* State shared by the safetensors visitor. */
typedef struct hf_load {
  qn_source* s;
  const char* file;  /* path of the file being parsed, for messages */
  const char* shard; /* its name in the weight map; NULL for a single model.safetensors */
  hf_wentry* wmap;   /* [n_wmap] sorted by name; NULL for a single file */
  int n_wmap;
} hf_load;

static int cmp_wentry(const void* a, const void* b) {
  return strcmp(((const hf_wentry*)a)->name, ((const hf_wentry*)b)->name);
}

static hf_wentry* wmap_find(const hf_load* L, const char* name) {
  hf_wentry key = {name, NULL, false};
  return bsearch(&key, L->wmap, (size_t)L->n_wmap, sizeof key, cmp_wentry);
}

static qn_status visit_tensor(void* user, const char* name, const qn_tensor* t) {
  hf_load* L = user;
  if (L->wmap) { /* the index decides which shard holds each tensor */
    hf_wentry* e = wmap_find(L, name);
    if (!e || strcmp(e->shard, L->shard) != 0) return QN_OK;
    e->found = true;
  }
  qn_tensor c = *t;
  switch (hf_canonical_name(name, L->s->hp.n_layers, c.name)) {
    case HF_MAP_IGNORE: return QN_OK;
    case HF_MAP_UNSUPPORTED:
      return qn_error(QN_EUNSUPPORTED, "%s: tensor '%s' is not supported by the Llama model",
                      L->file, name);
    case HF_MAP_BAD_LAYER:
      return qn_error(QN_EFORMAT, "%s: tensor '%s': bad layer index (model has %d layers)", L->file,
                      name, L->s->hp.n_layers);
    case HF_MAP_OK: break;
  }
  if (strcmp(c.name, "output.weight") == 0 && L->s->hp.tied_embeddings) return QN_OK;
  if (c.dtype != QN_DTYPE_F32 && c.dtype != QN_DTYPE_F16 && c.dtype != QN_DTYPE_BF16)
    return qn_error(QN_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)",
                    L->file, name, qn_dtype_name(c.dtype));
  return qn_source_add_tensor(L->s, &c);
}

static qn_status join_path(char* out, size_t cap, const char* dir, const char* name) {
  if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
    return qn_error(QN_EINVAL, "%s/%s: path too long", dir, name);
  return QN_OK;
}

/* Maps DIR/file once and feeds its tensors to the visitor. */
static qn_status load_file(hf_load* L, const char* dir, const char* file) {
  char path[1200];
  QN_TRY(join_path(path, sizeof path, dir, file));
  if (!qn_is_file(path)) {
    if (L->shard)
      return qn_error(QN_EIO, "%s: shard named by model.safetensors.index.json is missing", path);
    return qn_error(QN_EIO, "%s: missing", path);
  }
  const qn_mapfile* mf = NULL;
  QN_TRY(qn_source_add_map(L->s, path, &mf));
  L->file = mf->path;
  return qn_safetensors_parse(mf, visit_tensor, L, NULL, NULL);
}

/* A shard name must be a plain file name inside the model directory. */
static bool shard_name_ok(const char* f) {
  return *f && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

/* Reads "weight_map" of the index into L->wmap (sorted, names checked unique). */
static qn_status read_weight_map(hf_load* L, const char* path, const cJSON* root) {
  const cJSON* wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(wm)) return qn_error(QN_EFORMAT, "%s: missing \"weight_map\" object", path);
  int n = cJSON_GetArraySize(wm);
  if (n == 0) return qn_error(QN_EFORMAT, "%s: \"weight_map\" is empty", path);
  L->wmap = calloc((size_t)n, sizeof *L->wmap);
  if (!L->wmap) return qn_error(QN_ENOMEM, "%s: out of memory", path);
  for (const cJSON* j = wm->child; j; j = j->next) {
    if (!cJSON_IsString(j) || !shard_name_ok(j->valuestring))
      return qn_error(QN_EFORMAT, "%s: weight_map entry '%s' is not a file name in the directory",
                      path, j->string ? j->string : "?");
    L->wmap[L->n_wmap++] = (hf_wentry){j->string, j->valuestring, false};
  }
  qsort(L->wmap, (size_t)n, sizeof *L->wmap, cmp_wentry);
  for (int i = 1; i < n; i++)
    if (strcmp(L->wmap[i - 1].name, L->wmap[i].name) == 0)
      return qn_error(QN_EFORMAT, "%s: tensor '%s' appears twice in weight_map", path,
                      L->wmap[i].name);
  return QN_OK;
}

/* Loads each distinct shard of the weight map once, then checks that every tensor the map
 * lists was found in the shard it names. */
static qn_status load_shards(hf_load* L, const char* dir, const char* index_path) {
  const char* done[QN_SOURCE_MAX_MAPS];
  int n_done = 0;
  for (int i = 0; i < L->n_wmap; i++) {
    const char* shard = L->wmap[i].shard;
    bool seen = false;
    for (int k = 0; k < n_done && !seen; k++) seen = strcmp(done[k], shard) == 0;
    if (seen) continue;
    if (n_done == QN_SOURCE_MAX_MAPS)
      return qn_error(QN_EUNSUPPORTED, "%s: more than %d shards", index_path, QN_SOURCE_MAX_MAPS);
    done[n_done++] = shard;
    L->shard = shard;
    QN_TRY(load_file(L, dir, shard));
  }
  for (int i = 0; i < L->n_wmap; i++)
    if (!L->wmap[i].found)
      return qn_error(QN_EFORMAT, "%s: tensor '%s' is listed for shard %s but is not in it",
                      index_path, L->wmap[i].name, L->wmap[i].shard);
  return QN_OK;
}

static qn_status load_sharded(hf_load* L, const char* dir, const char* index_path) {
  char* text = NULL;
  size_t len = 0;
  QN_TRY(qn_read_text_file(index_path, &text, &len));
  cJSON* root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root) return qn_error(QN_EFORMAT, "%s: malformed JSON", index_path);
  qn_status st = read_weight_map(L, index_path, root);
  if (st == QN_OK) st = load_shards(L, dir, index_path);
  free(L->wmap);
  L->wmap = NULL;
  cJSON_Delete(root);
  return st;
}

static qn_status load_weights(qn_source* s, const char* dir) {
  hf_load L = {.s = s};
  char single[1200], index[1200];
  QN_TRY(join_path(single, sizeof single, dir, "model.safetensors"));
  QN_TRY(join_path(index, sizeof index, dir, "model.safetensors.index.json"));
  if (qn_is_file(single)) return load_file(&L, dir, "model.safetensors");
  if (qn_is_file(index)) return load_sharded(&L, dir, index);
  return qn_error(QN_EIO,
                  "%s: no model.safetensors or model.safetensors.index.json (PyTorch .bin "
                  "checkpoints are not supported)",
                  dir);
}

/* Checks what only this reader knows: the output head and bias presence agree with the
 * config, and biases are all there or all absent. */
static qn_status check_tensors(qn_source* s, const char* dir) {
  if (!qn_source_find(s, "token_embd.weight"))
    return qn_error(QN_EFORMAT, "%s: no model.embed_tokens.weight tensor", dir);
  if (!s->hp.tied_embeddings && !qn_source_find(s, "output.weight"))
    return qn_error(QN_EFORMAT, "%s: no lm_head.weight tensor and tie_word_embeddings is false",
                    dir);
  s->hp.qkv_bias = qn_source_find(s, "blk.0.attn_q.bias") != NULL;
  static const char* const k_bias[] = {"attn_q", "attn_k", "attn_v"};
  for (int l = 0; l < s->hp.n_layers; l++)
    for (int k = 0; k < 3; k++) {
      char name[QN_NAME_MAX];
      snprintf(name, sizeof name, "blk.%d.%s.bias", l, k_bias[k]);
      if ((qn_source_find(s, name) != NULL) != s->hp.qkv_bias)
        return qn_error(QN_EFORMAT, "%s: q/k/v biases present in some layers but not all (%s)", dir,
                        name);
    }
  return QN_OK;
}

qn_status qn_hf_open(qn_source* s, const char* dir) {
  if (!s || !dir) return qn_error(QN_EINVAL, "qn_hf_open: no source or directory");
  s->format = QN_FORMAT_HF;
  QN_TRY(load_config(s, dir));
  QN_TRY(load_weights(s, dir));
  QN_TRY(check_tensors(s, dir));
  return qn_hf_tokenizer_load(dir, &s->vocab);
}
