/* source.c: format detection and the tensor table shared by all readers. */
#include "format/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

const char* qn_format_name(qn_format f) {
  switch (f) {
    case QN_FORMAT_LLAMA2C: return "llama2c";
    case QN_FORMAT_GGUF: return "gguf";
    case QN_FORMAT_HF: return "hf";
    case QN_FORMAT_QNZ: return "qnz";
  }
  return "?";
}

static int ends_with(const char* s, const char* suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

qn_status qn_source_open(const char* path, const char* tokenizer_path, qn_source** out) {
  *out = NULL;
  if (!path || !*path) return qn_error(QN_EINVAL, "no model path given");
  qn_source* s = calloc(1, sizeof *s);
  if (!s) return qn_error(QN_ENOMEM, "out of memory");
  snprintf(s->path, sizeof s->path, "%s", path);
  s->vocab.bos_id = s->vocab.eos_id = s->vocab.unk_id = -1;
  qn_status st;
  if (qn_is_dir(path)) {
    s->format = QN_FORMAT_HF;
    st = qn_hf_open(s, path);
  } else if (!qn_is_file(path)) {
    st = qn_error(QN_EIO, "%s: no such file or directory", path);
  } else {
    unsigned char magic[8] = {0};
    FILE* f = fopen(path, "rb");
    size_t got = f ? fread(magic, 1, 8, f) : 0;
    if (f) fclose(f);
    if (!f) {
      st = qn_error(QN_EIO, "%s: cannot open", path);
    } else if (got >= 4 && memcmp(magic, "GGUF", 4) == 0) {
      s->format = QN_FORMAT_GGUF;
      st = qn_gguf_open(s, path);
    } else if (ends_with(path, ".qnz")) {
      s->format = QN_FORMAT_QNZ;
      st = qn_qnz_open(s, path);
    } else if (ends_with(path, ".safetensors")) {
      st = qn_error(QN_EUNSUPPORTED,
                    "%s: a bare .safetensors file; pass the model's directory (with config.json "
                    "and tokenizer.json) instead",
                    path);
    } else {
      s->format = QN_FORMAT_LLAMA2C;
      st = qn_llama2c_open(s, path, tokenizer_path);
    }
  }
  if (st == QN_OK) st = qn_hparams_validate(&s->hp, path);
  if (st != QN_OK) {
    qn_source_free(s);
    return st;
  }
  *out = s;
  return QN_OK;
}

void qn_source_free(qn_source* s) {
  if (!s) return;
  for (int i = 0; i < s->n_maps; i++) qn_mapfile_close(&s->maps[i]);
  free(s->tensors);
  qn_vocab_free(&s->vocab);
  free(s->metadata_json);
  free(s->quant);
  free(s);
}

qn_status qn_source_add_map(qn_source* s, const char* path, const qn_mapfile** mf) {
  if (s->n_maps >= QN_SOURCE_MAX_MAPS)
    return qn_error(QN_EUNSUPPORTED, "%s: more than %d files", path, QN_SOURCE_MAX_MAPS);
  QN_TRY(qn_mapfile_open(path, &s->maps[s->n_maps]));
  *mf = &s->maps[s->n_maps++];
  return QN_OK;
}

qn_status qn_source_add_tensor(qn_source* s, const qn_tensor* t) {
  if (qn_source_find(s, t->name))
    return qn_error(QN_EFORMAT, "%s: duplicate tensor '%s'", s->path, t->name);
  if (s->n_tensors == s->cap_tensors) {
    int cap = s->cap_tensors ? s->cap_tensors * 2 : 64;
    qn_tensor* nt = realloc(s->tensors, (size_t)cap * sizeof *nt);
    if (!nt) return qn_error(QN_ENOMEM, "out of memory");
    s->tensors = nt;
    s->cap_tensors = cap;
  }
  s->tensors[s->n_tensors++] = *t;
  return QN_OK;
}

const qn_tensor* qn_source_find(const qn_source* s, const char* name) {
  for (int i = 0; i < s->n_tensors; i++)
    if (strcmp(s->tensors[i].name, name) == 0) return &s->tensors[i];
  return NULL;
}

qn_status qn_hparams_validate(const qn_hparams* hp, const char* path) {
  if (hp->dim <= 0 || hp->hidden_dim <= 0 || hp->n_layers <= 0 || hp->n_heads <= 0 ||
      hp->n_kv_heads <= 0 || hp->vocab_size <= 0 || hp->head_dim <= 0)
    return qn_error(QN_EFORMAT,
                    "%s: bad hyper-parameters (dim %d, hidden %d, layers %d, heads %d, kv heads "
                    "%d, head_dim %d, vocab %d)",
                    path, hp->dim, hp->hidden_dim, hp->n_layers, hp->n_heads, hp->n_kv_heads,
                    hp->head_dim, hp->vocab_size);
  if (hp->dim > (1 << 20) || hp->hidden_dim > (1 << 22) || hp->n_layers > 4096 ||
      hp->n_heads > 4096 || hp->vocab_size > (1 << 24) || hp->head_dim > 4096)
    return qn_error(QN_EFORMAT, "%s: hyper-parameters out of any sane range", path);
  if (hp->n_heads % hp->n_kv_heads != 0)
    return qn_error(QN_EFORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d", path,
                    hp->n_heads, hp->n_kv_heads);
  if (hp->head_dim % 2 != 0)
    return qn_error(QN_EFORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", path, hp->head_dim);
  if (hp->max_seq_len <= 0)
    return qn_error(QN_EFORMAT, "%s: max_seq_len %d must be positive", path, hp->max_seq_len);
  if (!(hp->norm_eps > 0) || !(hp->rope_theta > 0))
    return qn_error(QN_EFORMAT, "%s: norm_eps and rope_theta must be positive", path);
  return QN_OK;
}

int qn_source_quant_of(const qn_source* s, const char* name) {
  for (int i = 0; i < s->n_quant; i++)
    if (strcmp(s->quant[i].name, name) == 0) return s->quant[i].qtype;
  return -1;
}
