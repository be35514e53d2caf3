/* model_json.c: (de)serialising qn_hparams and qn_vocab as JSON objects. */
#define _POSIX_C_SOURCE 200809L
#include "format/model_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

cJSON* qn_hparams_to_json(const qn_hparams* hp) {
  cJSON* j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddStringToObject(j, "arch", hp->arch);
  cJSON_AddNumberToObject(j, "dim", hp->dim);
  cJSON_AddNumberToObject(j, "hidden_dim", hp->hidden_dim);
  cJSON_AddNumberToObject(j, "n_layers", hp->n_layers);
  cJSON_AddNumberToObject(j, "n_heads", hp->n_heads);
  cJSON_AddNumberToObject(j, "n_kv_heads", hp->n_kv_heads);
  cJSON_AddNumberToObject(j, "head_dim", hp->head_dim);
  cJSON_AddNumberToObject(j, "vocab_size", hp->vocab_size);
  cJSON_AddNumberToObject(j, "max_seq_len", hp->max_seq_len);
  cJSON_AddNumberToObject(j, "norm_eps", hp->norm_eps);
  cJSON_AddNumberToObject(j, "rope_theta", hp->rope_theta);
  cJSON_AddStringToObject(j, "rope_style", hp->rope_style == QN_ROPE_HALF ? "half" : "adjacent");
  const char* sc = hp->rope_scaling == QN_ROPE_SCALING_LINEAR   ? "linear"
                   : hp->rope_scaling == QN_ROPE_SCALING_LLAMA3 ? "llama3"
                                                                : "none";
  cJSON_AddStringToObject(j, "rope_scaling", sc);
  cJSON_AddNumberToObject(j, "rope_factor", hp->rope_factor);
  cJSON_AddNumberToObject(j, "rope_low_freq_factor", hp->rope_low_freq_factor);
  cJSON_AddNumberToObject(j, "rope_high_freq_factor", hp->rope_high_freq_factor);
  cJSON_AddNumberToObject(j, "rope_orig_max_pos", hp->rope_orig_max_pos);
  cJSON_AddBoolToObject(j, "tied_embeddings", hp->tied_embeddings);
  cJSON_AddBoolToObject(j, "qkv_bias", hp->qkv_bias);
  return j;
}

static qn_status get_num(const cJSON* j, const char* key, const char* where, double* out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsNumber(v))
    return qn_error(QN_EFORMAT, "%s: hparams key '%s' missing or not a number", where, key);
  *out = v->valuedouble;
  return QN_OK;
}

static qn_status get_int(const cJSON* j, const char* key, const char* where, int* out) {
  double d = 0;
  QN_TRY(get_num(j, key, where, &d));
  if (d < -2147483648.0 || d > 2147483647.0 || d != (double)(int)d)
    return qn_error(QN_EFORMAT, "%s: hparams key '%s' is not an integer", where, key);
  *out = (int)d;
  return QN_OK;
}

static const char* get_str(const cJSON* j, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

qn_status qn_hparams_from_json(const cJSON* j, const char* where, qn_hparams* hp) {
  memset(hp, 0, sizeof *hp);
  if (!cJSON_IsObject(j)) return qn_error(QN_EFORMAT, "%s: hparams is not a JSON object", where);
  const char* arch = get_str(j, "arch");
  if (!arch) return qn_error(QN_EFORMAT, "%s: hparams key 'arch' missing", where);
  snprintf(hp->arch, sizeof hp->arch, "%s", arch);
  double d = 0;
  QN_TRY(get_int(j, "dim", where, &hp->dim));
  QN_TRY(get_int(j, "hidden_dim", where, &hp->hidden_dim));
  QN_TRY(get_int(j, "n_layers", where, &hp->n_layers));
  QN_TRY(get_int(j, "n_heads", where, &hp->n_heads));
  QN_TRY(get_int(j, "n_kv_heads", where, &hp->n_kv_heads));
  QN_TRY(get_int(j, "head_dim", where, &hp->head_dim));
  QN_TRY(get_int(j, "vocab_size", where, &hp->vocab_size));
  QN_TRY(get_int(j, "max_seq_len", where, &hp->max_seq_len));
  QN_TRY(get_num(j, "norm_eps", where, &d));
  hp->norm_eps = (float)d;
  QN_TRY(get_num(j, "rope_theta", where, &d));
  hp->rope_theta = (float)d;
  const char* style = get_str(j, "rope_style");
  if (!style || (strcmp(style, "half") && strcmp(style, "adjacent")))
    return qn_error(QN_EFORMAT, "%s: hparams 'rope_style' must be half or adjacent", where);
  hp->rope_style = strcmp(style, "half") == 0 ? QN_ROPE_HALF : QN_ROPE_ADJACENT;
  const char* sc = get_str(j, "rope_scaling");
  if (!sc) sc = "none";
  if (!strcmp(sc, "linear"))
    hp->rope_scaling = QN_ROPE_SCALING_LINEAR;
  else if (!strcmp(sc, "llama3"))
    hp->rope_scaling = QN_ROPE_SCALING_LLAMA3;
  else if (strcmp(sc, "none"))
    return qn_error(QN_EFORMAT, "%s: unknown rope_scaling '%s'", where, sc);
  if (hp->rope_scaling != QN_ROPE_SCALING_NONE) {
    QN_TRY(get_num(j, "rope_factor", where, &d));
    hp->rope_factor = (float)d;
    if (!(hp->rope_factor > 0)) return qn_error(QN_EFORMAT, "%s: rope_factor must be > 0", where);
  }
  if (hp->rope_scaling == QN_ROPE_SCALING_LLAMA3) {
    QN_TRY(get_num(j, "rope_low_freq_factor", where, &d));
    hp->rope_low_freq_factor = (float)d;
    QN_TRY(get_num(j, "rope_high_freq_factor", where, &d));
    hp->rope_high_freq_factor = (float)d;
    QN_TRY(get_int(j, "rope_orig_max_pos", where, &hp->rope_orig_max_pos));
  }
  hp->tied_embeddings = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "tied_embeddings"));
  hp->qkv_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "qkv_bias"));
  return QN_OK;
}

/* True if s is well-formed UTF-8 (no overlongs or surrogates checked beyond structure). */
static bool utf8_valid(const unsigned char* s) {
  while (*s) {
    int n = *s < 0x80 ? 0 : (*s >> 5) == 6 ? 1 : (*s >> 4) == 14 ? 2 : (*s >> 3) == 30 ? 3 : -1;
    if (n < 0) return false;
    s++;
    for (int i = 0; i < n; i++, s++)
      if ((*s & 0xc0) != 0x80) return false;
  }
  return true;
}

qn_status qn_vocab_to_json(const qn_vocab* v, cJSON** out) {
  *out = NULL;
  cJSON* j = cJSON_CreateObject();
  if (!j) return qn_error(QN_ENOMEM, "out of memory");
  cJSON_AddStringToObject(j, "kind", v->kind == QN_VOCAB_SPM ? "spm" : "bpe");
  cJSON* toks = cJSON_AddArrayToObject(j, "tokens");
  cJSON* attrs = cJSON_AddArrayToObject(j, "attrs");
  cJSON* scores = v->scores ? cJSON_AddArrayToObject(j, "scores") : NULL;
  for (int i = 0; i < v->n_tokens; i++) {
    const char* t = v->tokens[i] ? v->tokens[i] : "";
    if (!utf8_valid((const unsigned char*)t)) {
      cJSON_Delete(j);
      return qn_error(QN_EUNSUPPORTED, "token %d is not valid UTF-8 and cannot be stored", i);
    }
    cJSON_AddItemToArray(toks, cJSON_CreateString(t));
    cJSON_AddItemToArray(attrs, cJSON_CreateNumber(v->attrs[i]));
    if (scores) cJSON_AddItemToArray(scores, cJSON_CreateNumber(v->scores[i]));
  }
  if (v->n_merges) {
    cJSON* mg = cJSON_AddArrayToObject(j, "merges");
    for (int i = 0; i < v->n_merges; i++)
      cJSON_AddItemToArray(mg, cJSON_CreateString(v->merges[i]));
  }
  if (v->pretok_regex) cJSON_AddStringToObject(j, "pretok_regex", v->pretok_regex);
  cJSON_AddNumberToObject(j, "bos_id", v->bos_id);
  cJSON_AddNumberToObject(j, "eos_id", v->eos_id);
  cJSON_AddNumberToObject(j, "unk_id", v->unk_id);
  cJSON_AddBoolToObject(j, "add_bos", v->add_bos);
  cJSON_AddBoolToObject(j, "add_space_prefix", v->add_space_prefix);
  cJSON_AddBoolToObject(j, "byte_fallback", v->byte_fallback);
  *out = j;
  return QN_OK;
}

static qn_status id_field(const cJSON* j, const char* key, int n, const char* where, int* out) {
  const cJSON* x = cJSON_GetObjectItemCaseSensitive(j, key);
  *out = -1;
  if (!x) return QN_OK;
  if (!cJSON_IsNumber(x) || x->valueint < -1 || x->valueint >= n)
    return qn_error(QN_EFORMAT, "%s: tokenizer '%s' out of range", where, key);
  *out = x->valueint;
  return QN_OK;
}

qn_status qn_vocab_from_json(const cJSON* j, const char* where, qn_vocab* v) {
  memset(v, 0, sizeof *v);
  v->bos_id = v->eos_id = v->unk_id = -1;
  const char* kind = get_str(j, "kind");
  const cJSON* toks = cJSON_GetObjectItemCaseSensitive(j, "tokens");
  const cJSON* attrs = cJSON_GetObjectItemCaseSensitive(j, "attrs");
  const cJSON* scores = cJSON_GetObjectItemCaseSensitive(j, "scores");
  const cJSON* merges = cJSON_GetObjectItemCaseSensitive(j, "merges");
  if (!kind || (strcmp(kind, "spm") && strcmp(kind, "bpe")) || !cJSON_IsArray(toks) ||
      !cJSON_IsArray(attrs))
    return qn_error(QN_EFORMAT, "%s: tokenizer metadata lacks kind/tokens/attrs", where);
  int n = cJSON_GetArraySize(toks);
  if (cJSON_GetArraySize(attrs) != n || (scores && cJSON_GetArraySize(scores) != n))
    return qn_error(QN_EFORMAT, "%s: tokenizer arrays differ in length", where);
  qn_vocab_kind k = strcmp(kind, "spm") == 0 ? QN_VOCAB_SPM : QN_VOCAB_BPE;
  QN_TRY(qn_vocab_alloc(v, k, n, scores != NULL));
  qn_status st = QN_OK;
  int i = 0;
  const cJSON *t, *a = attrs->child, *s = scores ? scores->child : NULL;
  cJSON_ArrayForEach(t, toks) {
    if (!cJSON_IsString(t) || !cJSON_IsNumber(a) || (scores && !cJSON_IsNumber(s))) {
      st = qn_error(QN_EFORMAT, "%s: tokenizer entry %d malformed", where, i);
      break;
    }
    st = qn_vocab_set_token(v, i, t->valuestring, strlen(t->valuestring));
    if (st != QN_OK) break;
    v->attrs[i] = (uint8_t)a->valueint;
    if (scores) v->scores[i] = (float)s->valuedouble;
    a = a->next;
    if (s) s = s->next;
    i++;
  }
  if (st == QN_OK && merges) {
    int nm = cJSON_GetArraySize(merges);
    v->merges = calloc((size_t)(nm > 0 ? nm : 1), sizeof(char*));
    if (!v->merges) st = qn_error(QN_ENOMEM, "out of memory");
    const cJSON* m;
    cJSON_ArrayForEach(m, merges) {
      if (st != QN_OK) break;
      if (!cJSON_IsString(m)) {
        st = qn_error(QN_EFORMAT, "%s: tokenizer merge %d is not a string", where, v->n_merges);
        break;
      }
      v->merges[v->n_merges] = strdup(m->valuestring);
      if (!v->merges[v->n_merges]) st = qn_error(QN_ENOMEM, "out of memory");
      v->n_merges++;
    }
  }
  const char* rx = get_str(j, "pretok_regex");
  if (st == QN_OK && rx && !(v->pretok_regex = strdup(rx)))
    st = qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) st = id_field(j, "bos_id", n, where, &v->bos_id);
  if (st == QN_OK) st = id_field(j, "eos_id", n, where, &v->eos_id);
  if (st == QN_OK) st = id_field(j, "unk_id", n, where, &v->unk_id);
  v->add_bos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "add_bos"));
  v->add_space_prefix = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "add_space_prefix"));
  v->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "byte_fallback"));
  if (st != QN_OK) qn_vocab_free(v);
  return st;
}
