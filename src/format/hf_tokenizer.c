/* hf_tokenizer.c: reads a Hugging Face tokenizer.json (model.type "BPE") and the optional
 * tokenizer_config.json into a qn_vocab. Two families are recognised:
 *  - byte-level BPE (ByteLevel pre-tokenizer, possibly after a Split regex) -> QN_VOCAB_BPE;
 *  - SentencePiece-style BPE (byte_fallback, Metaspace, or the Prepend/Replace "▁"
 *    normalizers) -> QN_VOCAB_SPM; its merges are kept (the encoder uses them as ranks) and
 *    each token's score is -(rank of the first merge producing it).
 * Anything else (Unigram, WordPiece, other pre-tokenizers) is QN_EUNSUPPORTED. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/status.h"
#include "format/tokenizer_load.h"

#define MAX_TOKENS (1 << 24)

static const char kMeta[] = "\xe2\x96\x81"; /* U+2581 */

/* What the loader learned from tokenizer.json's pipeline. */
typedef struct hf_pipeline {
  bool byte_level;         /* a ByteLevel pre-tokenizer or decoder */
  bool spm;                /* byte fallback, Metaspace or the "▁" normalizers */
  bool prefix_space;       /* prepend a space / "▁" before encoding */
  bool metaspace_split;    /* Metaspace splits the text before each "▁" */
  bool byte_level_regex;   /* ByteLevel applies GPT-2's regex itself */
  const char* split_regex; /* Split pre-tokenizer pattern (borrowed from the JSON), or NULL */
  char* split_literal;     /* Split with a literal String pattern, as a PCRE2 regex (owned) */
} hf_pipeline;

static cJSON* get(const cJSON* o, const char* key) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char* get_str(const cJSON* o, const char* key) {
  const cJSON* s = get(o, key);
  return cJSON_IsString(s) ? s->valuestring : NULL;
}

static bool type_is(const cJSON* o, const char* type) {
  const char* t = get_str(o, "type");
  return t && strcmp(t, type) == 0;
}

/* Reads and parses a JSON file. */
static qn_status load_json(const char* path, cJSON** out) {
  char* text;
  size_t len;
  *out = NULL;
  QN_TRY(qn_read_text_file(path, &text, &len));
  cJSON* root = cJSON_ParseWithLength(text, len);
  if (!root) {
    const char* at = cJSON_GetErrorPtr();
    long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
    free(text);
    return qn_error(QN_EFORMAT, "%s: invalid JSON near byte %ld", path, off);
  }
  free(text);
  *out = root;
  return QN_OK;
}

/* ---- pipeline inspection ---- */

/* Split pre-tokenizer: take its pattern (regex or literal) if it isolates matches. */
static qn_status read_split(const char* path, const cJSON* pt, hf_pipeline* p) {
  const cJSON* pat = get(pt, "pattern");
  const char* behavior = get_str(pt, "behavior");
  if (behavior && strcmp(behavior, "Isolated") != 0)
    return qn_error(QN_EUNSUPPORTED, "%s: Split pre-tokenizer with behavior %s", path, behavior);
  if (cJSON_IsTrue(get(pt, "invert")))
    return qn_error(QN_EUNSUPPORTED, "%s: inverted Split pre-tokenizer", path);
  if (p->split_regex || p->split_literal)
    return qn_error(QN_EUNSUPPORTED, "%s: more than one Split pre-tokenizer", path);
  const char* re = get_str(pat, "Regex");
  const char* lit = get_str(pat, "String");
  if (re) {
    p->split_regex = re;
  } else if (lit && !strstr(lit, "\\E")) {
    size_t n = strlen(lit);
    p->split_literal = malloc(n + 5);
    if (!p->split_literal) return qn_error(QN_ENOMEM, "out of memory");
    snprintf(p->split_literal, n + 5, "\\Q%s\\E", lit);
  } else {
    return qn_error(QN_EFORMAT, "%s: Split pre-tokenizer without a usable pattern", path);
  }
  return QN_OK;
}

static void read_metaspace(const cJSON* m, hf_pipeline* p) {
  p->spm = true;
  const char* scheme = get_str(m, "prepend_scheme");
  const cJSON* aps = get(m, "add_prefix_space");
  if (scheme)
    p->prefix_space = strcmp(scheme, "never") != 0;
  else
    p->prefix_space = !cJSON_IsFalse(aps);
  const cJSON* split = get(m, "split");
  p->metaspace_split = !cJSON_IsFalse(split); /* tokenizers' default is true */
}

static qn_status read_pretokenizer(const char* path, const cJSON* pt, hf_pipeline* p) {
  if (!pt || cJSON_IsNull(pt)) return QN_OK;
  if (type_is(pt, "Sequence")) {
    const cJSON* item;
    cJSON_ArrayForEach(item, get(pt, "pretokenizers")) QN_TRY(read_pretokenizer(path, item, p));
    return QN_OK;
  }
  if (type_is(pt, "ByteLevel")) {
    p->byte_level = true;
    p->prefix_space = !cJSON_IsFalse(get(pt, "add_prefix_space"));
    p->byte_level_regex = !cJSON_IsFalse(get(pt, "use_regex"));
    return QN_OK;
  }
  if (type_is(pt, "Split")) return read_split(path, pt, p);
  if (type_is(pt, "Metaspace")) {
    read_metaspace(pt, p);
    return QN_OK;
  }
  const char* t = get_str(pt, "type");
  return qn_error(QN_EUNSUPPORTED, "%s: pre-tokenizer %s is not supported", path, t ? t : "?");
}

static qn_status read_normalizer(const char* path, const cJSON* n, hf_pipeline* p) {
  if (!n || cJSON_IsNull(n)) return QN_OK;
  if (type_is(n, "Sequence")) {
    const cJSON* item;
    cJSON_ArrayForEach(item, get(n, "normalizers")) QN_TRY(read_normalizer(path, item, p));
    return QN_OK;
  }
  if (type_is(n, "Prepend")) {
    const char* s = get_str(n, "prepend");
    if (s && strcmp(s, kMeta) == 0) {
      p->spm = p->prefix_space = true;
      return QN_OK;
    }
  }
  if (type_is(n, "Replace")) {
    const char* from = get_str(get(n, "pattern"), "String");
    const char* to = get_str(n, "content");
    if (from && to && strcmp(from, " ") == 0 && strcmp(to, kMeta) == 0) {
      p->spm = true;
      return QN_OK;
    }
  }
  /* Text is assumed to be NFC already (true of nearly all text); NFC itself is a no-op. */
  if (type_is(n, "NFC")) return QN_OK;
  const char* t = get_str(n, "type");
  return qn_error(QN_EUNSUPPORTED, "%s: normalizer %s is not supported", path, t ? t : "?");
}

static void read_decoder(const cJSON* d, hf_pipeline* p) {
  if (type_is(d, "ByteLevel")) p->byte_level = true;
  if (type_is(d, "Metaspace")) p->spm = true;
  if (type_is(d, "Sequence")) {
    const cJSON* item;
    cJSON_ArrayForEach(item, get(d, "decoders")) read_decoder(item, p);
  }
}

/* ---- vocabulary ---- */

static bool valid_id(const cJSON* n) {
  return cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < MAX_TOKENS &&
         n->valuedouble == floor(n->valuedouble);
}

/* Number of ids: 1 + the largest id in model.vocab and added_tokens. */
static qn_status count_tokens(const char* path, const cJSON* vocab, const cJSON* added, int* n) {
  int max_id = -1;
  const cJSON* item;
  cJSON_ArrayForEach(item, vocab) {
    if (!valid_id(item) || !item->string)
      return qn_error(QN_EFORMAT, "%s: model.vocab entry \"%.40s\" has a bad id", path,
                      item->string ? item->string : "");
    if (item->valueint > max_id) max_id = item->valueint;
  }
  cJSON_ArrayForEach(item, added) {
    const cJSON* id = get(item, "id");
    if (!valid_id(id) || !get_str(item, "content"))
      return qn_error(QN_EFORMAT, "%s: added_tokens entry without a valid id/content", path);
    if (id->valueint > max_id) max_id = id->valueint;
  }
  if (max_id < 0) return qn_error(QN_EFORMAT, "%s: empty vocabulary", path);
  *n = max_id + 1;
  return QN_OK;
}

static bool is_byte_token(const char* s) {
  return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
         strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4]);
}

static qn_status fill_tokens(const char* path, const cJSON* vocab, const cJSON* added,
                             qn_vocab* v) {
  const cJSON* item;
  cJSON_ArrayForEach(item, vocab) {
    int id = item->valueint;
    if (v->tokens[id])
      return qn_error(QN_EFORMAT, "%s: id %d is used by two vocabulary entries", path, id);
    QN_TRY(qn_vocab_set_token(v, id, item->string, strlen(item->string)));
    if (v->kind == QN_VOCAB_SPM && v->byte_fallback && is_byte_token(item->string))
      v->attrs[id] = QN_TOKEN_BYTE;
  }
  cJSON_ArrayForEach(item, added) {
    int id = get(item, "id")->valueint;
    const char* content = get_str(item, "content");
    QN_TRY(qn_vocab_set_token(v, id, content, strlen(content)));
    v->attrs[id] = cJSON_IsTrue(get(item, "special")) ? QN_TOKEN_CONTROL : QN_TOKEN_USER_DEFINED;
  }
  for (int id = 0; id < v->n_tokens; id++) {
    if (v->tokens[id]) continue;
    QN_TRY(qn_vocab_set_token(v, id, "", 0)); /* a hole in the id space */
    v->attrs[id] = QN_TOKEN_UNUSED;
  }
  return QN_OK;
}

/* Merges as "left right" strings, from either "a b" strings or ["a", "b"] pairs. */
static qn_status fill_merges(const char* path, const cJSON* merges, qn_vocab* v) {
  int n = cJSON_GetArraySize(merges);
  if (n <= 0) return QN_OK;
  v->merges = calloc((size_t)n, sizeof(char*));
  if (!v->merges) return qn_error(QN_ENOMEM, "%s: out of memory for %d merges", path, n);
  const cJSON* item;
  cJSON_ArrayForEach(item, merges) {
    const char* a = NULL;
    const char* b = NULL;
    if (cJSON_IsString(item)) {
      a = item->valuestring;
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 &&
               cJSON_IsString(cJSON_GetArrayItem(item, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(item, 1))) {
      a = cJSON_GetArrayItem(item, 0)->valuestring;
      b = cJSON_GetArrayItem(item, 1)->valuestring;
    } else {
      return qn_error(QN_EFORMAT, "%s: merge %d is neither \"a b\" nor [a, b]", path, v->n_merges);
    }
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char* m = malloc(la + lb + 2);
    if (!m) return qn_error(QN_ENOMEM, "%s: out of memory", path);
    memcpy(m, a, la);
    if (b) {
      m[la] = ' ';
      memcpy(m + la + 1, b, lb);
      m[la + 1 + lb] = '\0';
    } else {
      m[la] = '\0';
    }
    v->merges[v->n_merges++] = m;
  }
  return QN_OK;
}

static int find_token(const qn_vocab* v, const char* s) {
  if (!s) return -1;
  for (int id = 0; id < v->n_tokens; id++) /* added tokens first: they carry the specials */
    if (v->attrs[id] == QN_TOKEN_CONTROL && strcmp(v->tokens[id], s) == 0) return id;
  for (int id = 0; id < v->n_tokens; id++)
    if (strcmp(v->tokens[id], s) == 0) return id;
  return -1;
}

/* A token's text and id, for sorting by text. */
typedef struct text_id {
  const char* text; /* token text (borrowed) */
  int id;           /* token id */
} text_id;

static int cmp_text_id(const void* a, const void* b) {
  const text_id* x = a;
  const text_id* y = b;
  int c = strcmp(x->text, y->text);
  return c ? c : x->id - y->id;
}

/* SPM scores: -(rank of the first merge producing the token); tokens no merge produces rank
 * below all of them. (The encoder uses the merges themselves; scores are kept for writers
 * of score-based formats.) */
static qn_status fill_scores(qn_vocab* v) {
  for (int id = 0; id < v->n_tokens; id++) v->scores[id] = -(float)v->n_merges - 1.0f;
  text_id* order = malloc((size_t)v->n_tokens * sizeof *order);
  size_t cap = 0;
  for (int i = 0; i < v->n_merges; i++)
    cap = strlen(v->merges[i]) > cap ? strlen(v->merges[i]) : cap;
  char* cat = malloc(cap + 1);
  if (!order || !cat) {
    free(order);
    free(cat);
    return qn_error(QN_ENOMEM, "out of memory for merge scores");
  }
  for (int id = 0; id < v->n_tokens; id++) order[id] = (text_id){v->tokens[id], id};
  qsort(order, (size_t)v->n_tokens, sizeof *order, cmp_text_id);
  for (int r = v->n_merges - 1; r >= 0; r--) { /* best rank last, so it wins */
    const char* m = v->merges[r];
    const char* sp = strchr(m, ' ');
    if (!sp) continue;
    size_t k = (size_t)(sp - m);
    memcpy(cat, m, k);
    strcpy(cat + k, sp + 1);
    int lo = 0, hi = v->n_tokens - 1;
    while (lo <= hi) {
      int mid = lo + (hi - lo) / 2;
      int c = strcmp(order[mid].text, cat);
      if (c == 0) {
        v->scores[order[mid].id] = -(float)r;
        break;
      }
      if (c < 0)
        lo = mid + 1;
      else
        hi = mid - 1;
    }
  }
  free(order);
  free(cat);
  return QN_OK;
}

/* ---- tokenizer_config.json and the post-processor ---- */

/* A token given as "text" or {"content": "text"}. */
static const char* token_content(const cJSON* t) {
  if (cJSON_IsString(t)) return t->valuestring;
  return get_str(t, "content");
}

/* TemplateProcessing whose single-sequence template starts with a special token: that
 * token is the BOS the model expects. */
static int template_bos(const cJSON* pp, const qn_vocab* v) {
  if (type_is(pp, "Sequence")) {
    const cJSON* item;
    cJSON_ArrayForEach(item, get(pp, "processors")) {
      int id = template_bos(item, v);
      if (id >= 0) return id;
    }
    return -1;
  }
  if (!type_is(pp, "TemplateProcessing")) return -1;
  const cJSON* first = cJSON_GetArrayItem(get(pp, "single"), 0);
  return find_token(v, get_str(get(first, "SpecialToken"), "id"));
}

static qn_status read_config(const char* dir, const cJSON* root, qn_vocab* v) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  cJSON* cfg = NULL;
  if (qn_is_file(path)) QN_TRY(load_json(path, &cfg));
  int tmpl_bos = template_bos(get(root, "post_processor"), v);
  const cJSON* bos = get(cfg, "bos_token");
  const cJSON* eos = get(cfg, "eos_token");
  const cJSON* add_bos = get(cfg, "add_bos_token");
  if (bos)
    v->bos_id = find_token(v, token_content(bos));
  else if (tmpl_bos >= 0)
    v->bos_id = tmpl_bos;
  else if (v->kind == QN_VOCAB_SPM)
    v->bos_id = find_token(v, "<s>");
  if (eos)
    v->eos_id = find_token(v, token_content(eos));
  else if (v->kind == QN_VOCAB_SPM)
    v->eos_id = find_token(v, "</s>");
  if (cJSON_IsBool(add_bos))
    v->add_bos = cJSON_IsTrue(add_bos);
  else
    v->add_bos = tmpl_bos >= 0 || v->kind == QN_VOCAB_SPM;
  cJSON_Delete(cfg);
  return QN_OK;
}

/* ---- the whole file ---- */

static qn_status read_pipeline(const char* path, const cJSON* root, const cJSON* model,
                               hf_pipeline* p) {
  QN_TRY(read_normalizer(path, get(root, "normalizer"), p));
  QN_TRY(read_pretokenizer(path, get(root, "pre_tokenizer"), p));
  read_decoder(get(root, "decoder"), p);
  if (cJSON_IsTrue(get(model, "byte_fallback"))) p->spm = true;
  if (!p->byte_level && !p->spm)
    return qn_error(QN_EUNSUPPORTED,
                    "%s: BPE that is neither byte-level nor SentencePiece-style (no ByteLevel, "
                    "Metaspace or byte_fallback)",
                    path);
  if (p->byte_level && p->spm) p->spm = false; /* byte-level wins (e.g. a Metaspace decoder) */
  return QN_OK;
}

static qn_status set_regex(qn_vocab* v, const hf_pipeline* p) {
  const char* re = NULL;
  if (v->kind == QN_VOCAB_BPE) {
    re = p->split_regex ? p->split_regex : p->split_literal;
    if (!re && !p->byte_level_regex) re = "(?s).+"; /* no splitting at all */
  } else if (p->metaspace_split) {
    re = "\\x{2581}[^\\x{2581}]*|[^\\x{2581}]+"; /* each "▁" starts a new piece */
  }
  if (!re) return QN_OK;
  v->pretok_regex = malloc(strlen(re) + 1);
  if (!v->pretok_regex) return qn_error(QN_ENOMEM, "out of memory");
  strcpy(v->pretok_regex, re);
  return QN_OK;
}

static qn_status read_vocab(const char* dir, const char* path, const cJSON* root, qn_vocab* v) {
  const cJSON* model = get(root, "model");
  const char* type = get_str(model, "type");
  if (!cJSON_IsObject(model)) return qn_error(QN_EFORMAT, "%s: no \"model\" object", path);
  if (type ? strcmp(type, "BPE") != 0 : !get(model, "merges"))
    return qn_error(QN_EUNSUPPORTED, "%s: tokenizer model %s is not supported (only BPE)", path,
                    type ? type : "?");
  const cJSON* vocab = get(model, "vocab");
  const cJSON* merges = get(model, "merges");
  const cJSON* added = get(root, "added_tokens");
  if (!cJSON_IsObject(vocab)) return qn_error(QN_EFORMAT, "%s: model.vocab is not an object", path);
  if (merges && !cJSON_IsArray(merges))
    return qn_error(QN_EFORMAT, "%s: model.merges is not an array", path);
  if (added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
    return qn_error(QN_EFORMAT, "%s: added_tokens is not an array", path);
  hf_pipeline p = {0};
  qn_status st = read_pipeline(path, root, model, &p);
  int n = 0;
  if (st == QN_OK) st = count_tokens(path, vocab, added, &n);
  qn_vocab_kind kind = p.byte_level ? QN_VOCAB_BPE : QN_VOCAB_SPM;
  if (st == QN_OK) st = qn_vocab_alloc(v, kind, n, kind == QN_VOCAB_SPM);
  if (st == QN_OK) {
    v->byte_fallback = cJSON_IsTrue(get(model, "byte_fallback"));
    v->add_space_prefix = p.prefix_space;
    st = fill_tokens(path, vocab, added, v);
  }
  if (st == QN_OK) st = fill_merges(path, merges, v);
  if (st == QN_OK) st = set_regex(v, &p);
  if (st == QN_OK && kind == QN_VOCAB_SPM) st = fill_scores(v);
  if (st == QN_OK) {
    v->unk_id = find_token(v, get_str(model, "unk_token"));
    if (v->unk_id >= 0) v->attrs[v->unk_id] = QN_TOKEN_UNKNOWN;
    st = read_config(dir, root, v);
  }
  free(p.split_literal);
  return st;
}

qn_status qn_hf_tokenizer_load(const char* dir, qn_vocab* v) {
  if (!v) return qn_error(QN_EINVAL, "qn_hf_tokenizer_load: v is NULL");
  memset(v, 0, sizeof *v);
  v->bos_id = v->eos_id = v->unk_id = -1;
  if (!dir) return qn_error(QN_EINVAL, "qn_hf_tokenizer_load: dir is NULL");
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path)
    return qn_error(QN_EINVAL, "%s: path too long", dir);
  cJSON* root;
  QN_TRY(load_json(path, &root));
  qn_status st = read_vocab(dir, path, root, v);
  cJSON_Delete(root);
  if (st != QN_OK) qn_vocab_free(v);
  return st;
}
