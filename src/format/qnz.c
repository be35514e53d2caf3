/* qnz.c: the .qnz reader: a safetensors file whose __metadata__ carries Quench's
 * hyper-parameters, vocabulary, per-weight schemes and packed layouts (docs/FORMAT.md).
 * Tensors are views into the mapping; "__pad__.N" alignment fillers are skipped. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "format/model_json.h"
#include "format/qnz_writer.h"
#include "format/safetensors.h"
#include "format/source.h"
#include "quant/pack_i8.h"
#include "quant/qtype.h"

static qn_status add_visit(void* user, const char* name, const qn_tensor* t) {
  qn_source* s = user;
  if (strncmp(name, "__pad__.", 8) == 0) return QN_OK;
  if (strlen(name) >= QN_NAME_MAX)
    return qn_error(QN_EFORMAT, "%s: tensor name too long: %.40s...", s->path, name);
  return qn_source_add_tensor(s, t);
}

/* Parses the JSON text held in the string value md[key]; NULL with a message if absent. */
static qn_status meta_json(const cJSON* md, const char* key, const char* path, cJSON** out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(md, key);
  if (!cJSON_IsString(v))
    return qn_error(QN_EFORMAT, "%s: __metadata__ has no '%s' (not a Quench .qnz file?)", path,
                    key);
  *out = cJSON_Parse(v->valuestring);
  if (!*out) return qn_error(QN_EFORMAT, "%s: __metadata__ '%s' is not valid JSON", path, key);
  return QN_OK;
}

static qn_status read_quant_map(qn_source* s, const cJSON* q) {
  if (!cJSON_IsObject(q)) return qn_error(QN_EFORMAT, "%s: quench.quant is not an object", s->path);
  int n = cJSON_GetArraySize(q);
  s->quant = calloc((size_t)(n > 0 ? n : 1), sizeof *s->quant);
  if (!s->quant) return qn_error(QN_ENOMEM, "out of memory");
  const cJSON* e;
  cJSON_ArrayForEach(e, q) {
    int t = cJSON_IsString(e) ? qn_qtype_from_name(e->valuestring) : -1;
    if (t < 0)
      return qn_error(QN_EUNSUPPORTED, "%s: weight '%s' uses an unknown scheme '%s'", s->path,
                      e->string, cJSON_IsString(e) ? e->valuestring : "?");
    if (strlen(e->string) >= QN_NAME_MAX)
      return qn_error(QN_EFORMAT, "%s: weight name too long in quench.quant", s->path);
    if (!qn_source_find(s, e->string))
      return qn_error(QN_EFORMAT, "%s: quench.quant names '%s', which has no tensor", s->path,
                      e->string);
    snprintf(s->quant[s->n_quant].name, QN_NAME_MAX, "%s", e->string);
    s->quant[s->n_quant++].qtype = t;
  }
  return QN_OK;
}

/* quench.layout (optional; absent in files written before packing): {weight: layout name}
 * for the weights stored in a packed layout. Each must be a quantized weight (quench.quant)
 * and the layout its scheme's packed one; weights not listed are canonical rows. */
static qn_status read_layout_map(qn_source* s, const cJSON* md) {
  if (!cJSON_GetObjectItemCaseSensitive(md, "quench.layout")) return QN_OK;
  cJSON* lm = NULL;
  QN_TRY(meta_json(md, "quench.layout", s->path, &lm));
  qn_status st = QN_OK;
  if (!cJSON_IsObject(lm)) st = qn_error(QN_EFORMAT, "%s: quench.layout is not an object", s->path);
  const cJSON* e;
  cJSON_ArrayForEach(e, lm) {
    if (st != QN_OK) break;
    qn_quant_entry* q = NULL;
    for (int i = 0; i < s->n_quant && !q; i++)
      if (!strcmp(s->quant[i].name, e->string)) q = &s->quant[i];
    int l = cJSON_IsString(e) ? qn_layout_from_name(e->valuestring) : -1;
    if (!q)
      st = qn_error(QN_EFORMAT, "%s: quench.layout names '%.80s', which is not a quantized weight",
                    s->path, e->string);
    else if (l < 0)
      st = qn_error(QN_EFORMAT, "%s: weight '%s' has an unknown layout '%.40s' in quench.layout",
                    s->path, q->name, cJSON_IsString(e) ? e->valuestring : "?");
    else if (l != QN_LAYOUT_ROWS && l != (int)qn_qtype_packed_layout((qn_qtype)q->qtype))
      st = qn_error(QN_EFORMAT, "%s: weight '%s' (%s) cannot be stored in layout %s", s->path,
                    q->name, qn_qtype_traits_of((qn_qtype)q->qtype)->name, e->valuestring);
    else
      q->layout = l;
  }
  cJSON_Delete(lm);
  return st;
}

qn_status qn_qnz_open(qn_source* s, const char* path) {
  const qn_mapfile* mf;
  QN_TRY(qn_source_add_map(s, path, &mf));
  qn_st_info info;
  QN_TRY(qn_safetensors_parse(mf, add_visit, s, &s->metadata_json, &info));
  if (info.data_start % QN_QNZ_ALIGN != 0)
    return qn_error(QN_EFORMAT, "%s: data section starts at %llu, not %d-byte aligned", path,
                    (unsigned long long)info.data_start, QN_QNZ_ALIGN);
  if (!s->metadata_json)
    return qn_error(QN_EFORMAT, "%s: no __metadata__ (not a Quench .qnz file)", path);
  cJSON* md = cJSON_Parse(s->metadata_json);
  if (!md) return qn_error(QN_EFORMAT, "%s: __metadata__ is not valid JSON", path);
  cJSON *hp = NULL, *tok = NULL, *quant = NULL;
  qn_status st = meta_json(md, "quench.hparams", path, &hp);
  if (st == QN_OK) st = qn_hparams_from_json(hp, path, &s->hp);
  if (st == QN_OK) st = meta_json(md, "quench.tokenizer", path, &tok);
  if (st == QN_OK) st = qn_vocab_from_json(tok, path, &s->vocab);
  if (st == QN_OK) st = meta_json(md, "quench.quant", path, &quant);
  if (st == QN_OK) st = read_quant_map(s, quant);
  if (st == QN_OK) st = read_layout_map(s, md);
  if (st == QN_OK && s->vocab.n_tokens < s->hp.vocab_size)
    st = qn_error(QN_EFORMAT, "%s: vocabulary has %d tokens, the model %d", path, s->vocab.n_tokens,
                  s->hp.vocab_size);
  cJSON_Delete(hp);
  cJSON_Delete(tok);
  cJSON_Delete(quant);
  cJSON_Delete(md);
  return st;
}
