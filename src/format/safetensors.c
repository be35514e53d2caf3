/* safetensors.c: validating parser for safetensors headers over a mapped file. Every field
 * read from the file is checked: the header length, the JSON, each entry's dtype, shape and
 * offsets (against the data section and against product(shape) x dtype size), and names.
 * Tensors are handed to a visitor only once the whole header has been checked. */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* Integers in JSON arrive as doubles; 2^53 is the largest that stays exact, and far beyond
 * any file size. */
#define ST_MAX_INT 9007199254740992.0

/* One validated header entry. */
typedef struct st_entry {
  const char* name; /* key in the JSON tree (owned by the tree) */
  qn_tensor t;      /* view into the mapping */
} st_entry;

static uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* A non-negative integer JSON number no larger than 2^53. */
static bool json_uint(const cJSON* j, uint64_t* out) {
  if (!cJSON_IsNumber(j)) return false;
  double d = j->valuedouble;
  if (!(d >= 0.0 && d <= ST_MAX_INT)) return false; /* also rejects NaN and inf */
  uint64_t u = (uint64_t)d;
  if ((double)u != d) return false; /* fractional */
  *out = u;
  return true;
}

static bool is_json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Checks "__metadata__" (string -> string) and renders it as compact JSON. */
static qn_status parse_metadata(const qn_mapfile* mf, const cJSON* meta, char** out) {
  if (!cJSON_IsObject(meta))
    return qn_error(QN_EFORMAT, "%s: safetensors __metadata__ is not a JSON object", mf->path);
  for (const cJSON* kv = meta->child; kv; kv = kv->next)
    if (!cJSON_IsString(kv))
      return qn_error(QN_EFORMAT, "%s: safetensors __metadata__ value '%s' is not a string",
                      mf->path, kv->string ? kv->string : "?");
  if (!out) return QN_OK;
  *out = cJSON_PrintUnformatted(meta);
  if (!*out) return qn_error(QN_ENOMEM, "%s: out of memory", mf->path);
  return QN_OK;
}

static qn_status parse_dtype(const qn_mapfile* mf, const char* name, const cJSON* j,
                             qn_dtype* out) {
  if (!cJSON_IsString(j) || !j->valuestring)
    return qn_error(QN_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", mf->path, name);
  int d = qn_dtype_from_name(j->valuestring);
  if (d < 0 || qn_dtype_block((qn_dtype)d) != 1) /* ggml block names are not safetensors */
    return qn_error(QN_EUNSUPPORTED, "%s: tensor '%s': unsupported dtype '%s'", mf->path, name,
                    j->valuestring);
  *out = (qn_dtype)d;
  return QN_OK;
}

/* Fills t->ndim/shape and the element count (checked against overflow). */
static qn_status parse_shape(const qn_mapfile* mf, const char* name, const cJSON* j, qn_tensor* t,
                             uint64_t* nelem) {
  if (!cJSON_IsArray(j))
    return qn_error(QN_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", mf->path, name);
  int ndim = cJSON_GetArraySize(j);
  if (ndim > QN_MAX_DIMS)
    return qn_error(QN_EUNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d supported)",
                    mf->path, name, ndim, QN_MAX_DIMS);
  uint64_t n = 1;
  bool overflow = false, has_zero = false;
  int i = 0;
  for (const cJSON* d = j->child; d; d = d->next, i++) {
    uint64_t v;
    if (!json_uint(d, &v))
      return qn_error(QN_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                      mf->path, name, i);
    t->shape[i] = (int64_t)v;
    if (v == 0) has_zero = true;
    if (!overflow && (__builtin_mul_overflow(n, v, &n) || n > (uint64_t)INT64_MAX)) overflow = true;
  }
  if (overflow && !has_zero)
    return qn_error(QN_EFORMAT, "%s: tensor '%s': element count overflows", mf->path, name);
  if (ndim == 0) { /* scalar */
    t->ndim = 1;
    t->shape[0] = 1;
  } else {
    t->ndim = ndim;
  }
  *nelem = has_zero ? 0 : n;
  return QN_OK;
}

static qn_status parse_offsets(const qn_mapfile* mf, const char* name, const cJSON* j,
                               uint64_t* begin, uint64_t* end) {
  if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2 || !json_uint(j->child, begin) ||
      !json_uint(j->child->next, end))
    return qn_error(QN_EFORMAT,
                    "%s: tensor '%s': \"data_offsets\" must be [begin, end] with non-negative "
                    "integers",
                    mf->path, name);
  return QN_OK;
}

/* Validates one tensor entry and fills e. */
static qn_status parse_entry(const qn_mapfile* mf, const qn_st_info* info, const cJSON* j,
                             st_entry* e) {
  const char* name = j->string;
  memset(e, 0, sizeof *e);
  e->name = name;
  if (!cJSON_IsObject(j))
    return qn_error(QN_EFORMAT, "%s: header entry '%s' is not a JSON object", mf->path, name);
  qn_tensor* t = &e->t;
  if (strlen(name) < QN_NAME_MAX) memcpy(t->name, name, strlen(name) + 1);
  QN_TRY(parse_dtype(mf, name, cJSON_GetObjectItemCaseSensitive(j, "dtype"), &t->dtype));
  uint64_t nelem = 0, begin = 0, end = 0;
  QN_TRY(parse_shape(mf, name, cJSON_GetObjectItemCaseSensitive(j, "shape"), t, &nelem));
  QN_TRY(
      parse_offsets(mf, name, cJSON_GetObjectItemCaseSensitive(j, "data_offsets"), &begin, &end));
  if (end < begin || end > info->data_size)
    return qn_error(QN_EFORMAT,
                    "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section "
                    "(%llu bytes)",
                    mf->path, name, (unsigned long long)begin, (unsigned long long)end,
                    (unsigned long long)info->data_size);
  /* Every known dtype takes at least a byte per element, so nelem <= end - begin first. */
  uint64_t want = nelem <= end - begin ? qn_dtype_bytes(t->dtype, (int64_t)nelem) : UINT64_MAX;
  if (want != end - begin)
    return qn_error(QN_EFORMAT,
                    "%s: tensor '%s': %llu bytes in data_offsets, but shape and dtype %s need "
                    "%s%llu",
                    mf->path, name, (unsigned long long)(end - begin), qn_dtype_name(t->dtype),
                    want == UINT64_MAX ? "more than " : "",
                    (unsigned long long)(want == UINT64_MAX ? end - begin : want));
  t->data = mf->data + info->data_start + begin;
  t->nbytes = end - begin;
  return QN_OK;
}

static int cmp_entry_name(const void* a, const void* b) {
  const st_entry* x = *(const st_entry* const*)a;
  const st_entry* y = *(const st_entry* const*)b;
  return strcmp(x->name, y->name);
}

/* Fails on two entries with the same name (cJSON keeps both). */
static qn_status check_unique(const qn_mapfile* mf, st_entry* entries, int n) {
  if (n < 2) return QN_OK;
  st_entry** order = malloc((size_t)n * sizeof *order);
  if (!order) return qn_error(QN_ENOMEM, "%s: out of memory", mf->path);
  for (int i = 0; i < n; i++) order[i] = &entries[i];
  qsort(order, (size_t)n, sizeof *order, cmp_entry_name);
  qn_status st = QN_OK;
  for (int i = 1; i < n && st == QN_OK; i++)
    if (strcmp(order[i - 1]->name, order[i]->name) == 0)
      st = qn_error(QN_EFORMAT, "%s: tensor '%s' appears twice in the header", mf->path,
                    order[i]->name);
  free(order);
  return st;
}

static int cmp_entry_start(const void* a, const void* b) {
  const st_entry* x = *(const st_entry* const*)a;
  const st_entry* y = *(const st_entry* const*)b;
  const uint8_t *px = x->t.data, *py = y->t.data;
  if (px != py) return px < py ? -1 : 1;
  return x->t.nbytes < y->t.nbytes ? -1 : x->t.nbytes > y->t.nbytes;
}

/* Fails on two non-empty tensors whose byte ranges overlap (one write would change both;
 * the format forbids it). Empty tensors may sit anywhere. */
static qn_status check_disjoint(const qn_mapfile* mf, const qn_st_info* info, st_entry* entries,
                                int n) {
  if (n < 2) return QN_OK;
  st_entry** order = malloc((size_t)n * sizeof *order);
  if (!order) return qn_error(QN_ENOMEM, "%s: out of memory", mf->path);
  for (int i = 0; i < n; i++) order[i] = &entries[i];
  qsort(order, (size_t)n, sizeof *order, cmp_entry_start);
  const uint8_t* base = mf->data + info->data_start;
  qn_status st = QN_OK;
  const char* prev = NULL; /* the non-empty tensor reaching furthest so far, and its range */
  uint64_t prev_begin = 0, prev_end = 0;
  for (int i = 0; i < n && st == QN_OK; i++) {
    const st_entry* e = order[i];
    if (e->t.nbytes == 0) continue;
    uint64_t begin = (uint64_t)((const uint8_t*)e->t.data - base), end = begin + e->t.nbytes;
    if (prev && begin < prev_end)
      st = qn_error(QN_EFORMAT,
                    "%s: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap in "
                    "the data section",
                    mf->path, prev, (unsigned long long)prev_begin, (unsigned long long)prev_end,
                    e->name, (unsigned long long)begin, (unsigned long long)end);
    if (!prev || end > prev_end) prev = e->name, prev_begin = begin, prev_end = end;
  }
  free(order);
  return st;
}

/* Reads the 8-byte length and locates the header and data section. */
static qn_status read_layout(const qn_mapfile* mf, qn_st_info* info) {
  if (mf->size < 8 || !mf->data)
    return qn_error(QN_EFORMAT, "%s: %zu bytes is too short for a safetensors file", mf->path,
                    mf->size);
  uint64_t n = read_le64(mf->data);
  if (n > mf->size - 8)
    return qn_error(QN_EFORMAT,
                    "%s: safetensors header length %llu is beyond the file size (%zu bytes)",
                    mf->path, (unsigned long long)n, mf->size);
  if (n > QN_ST_MAX_HEADER)
    return qn_error(QN_EFORMAT, "%s: safetensors header length %llu exceeds the %u-byte limit",
                    mf->path, (unsigned long long)n, QN_ST_MAX_HEADER);
  if (n < 2)
    return qn_error(QN_EFORMAT, "%s: safetensors header of %llu bytes cannot hold a JSON object",
                    mf->path, (unsigned long long)n);
  memset(info, 0, sizeof *info);
  info->header_len = n;
  info->data_start = 8 + n;
  info->data_size = mf->size - info->data_start;
  return QN_OK;
}

/* Parses the JSON header into a tree; only JSON whitespace may follow the object. */
static qn_status parse_json(const qn_mapfile* mf, const qn_st_info* info, cJSON** root) {
  const char* h = (const char*)mf->data + 8;
  size_t n = (size_t)info->header_len;
  const char* end = NULL;
  *root = cJSON_ParseWithLengthOpts(h, n, &end, 0);
  if (!*root) {
    size_t at = end && end >= h && end <= h + n ? (size_t)(end - h) : 0;
    return qn_error(QN_EFORMAT, "%s: malformed JSON in safetensors header near byte %zu", mf->path,
                    8 + at);
  }
  if (!cJSON_IsObject(*root)) {
    cJSON_Delete(*root);
    *root = NULL;
    return qn_error(QN_EFORMAT, "%s: safetensors header is not a JSON object", mf->path);
  }
  for (const char* p = end; p < h + n; p++)
    if (!is_json_space((uint8_t)*p)) {
      cJSON_Delete(*root);
      *root = NULL;
      return qn_error(QN_EFORMAT, "%s: unexpected bytes after the JSON header at byte %zu",
                      mf->path, (size_t)(8 + (p - h)));
    }
  return QN_OK;
}

/* Validates every entry of the header tree; *entries is malloc'ed. */
static qn_status collect_entries(const qn_mapfile* mf, qn_st_info* info, const cJSON* root,
                                 char** metadata_json, st_entry** entries) {
  int n = 0;
  for (const cJSON* j = root->child; j; j = j->next) n++;
  *entries = calloc((size_t)(n ? n : 1), sizeof **entries);
  if (!*entries) return qn_error(QN_ENOMEM, "%s: out of memory", mf->path);
  bool seen_meta = false;
  for (const cJSON* j = root->child; j; j = j->next) {
    if (!j->string) return qn_error(QN_EFORMAT, "%s: header entry without a name", mf->path);
    if (strcmp(j->string, "__metadata__") == 0) {
      if (seen_meta)
        return qn_error(QN_EFORMAT, "%s: __metadata__ appears twice in the header", mf->path);
      seen_meta = true;
      QN_TRY(parse_metadata(mf, j, metadata_json));
      continue;
    }
    st_entry* e = &(*entries)[info->n_tensors];
    QN_TRY(parse_entry(mf, info, j, e));
    uint64_t end =
        (uint64_t)((const uint8_t*)e->t.data - mf->data) - info->data_start + e->t.nbytes;
    if (end > info->data_used) info->data_used = end;
    info->n_tensors++;
  }
  QN_TRY(check_unique(mf, *entries, info->n_tensors));
  return check_disjoint(mf, info, *entries, info->n_tensors);
}

qn_status qn_safetensors_parse(const qn_mapfile* mf, qn_st_visit_fn fn, void* user,
                               char** metadata_json, qn_st_info* info) {
  if (metadata_json) *metadata_json = NULL;
  if (!mf) return qn_error(QN_EINVAL, "qn_safetensors_parse: no file");
  qn_st_info local;
  if (!info) info = &local;
  QN_TRY(read_layout(mf, info));
  cJSON* root = NULL;
  QN_TRY(parse_json(mf, info, &root));
  st_entry* entries = NULL;
  qn_status st = collect_entries(mf, info, root, metadata_json, &entries);
  for (int i = 0; st == QN_OK && fn && i < info->n_tensors; i++)
    st = fn(user, entries[i].name, &entries[i].t);
  free(entries);
  cJSON_Delete(root);
  if (st != QN_OK && metadata_json) {
    free(*metadata_json);
    *metadata_json = NULL;
  }
  return st;
}
