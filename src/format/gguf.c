/* gguf.c: parses GGUF v2/v3 files (header, metadata, tensor infos) with every length and
 * offset bounds-checked, and turns a Llama-family GGUF into a qn_source (qn_gguf_open). */
#include "format/gguf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/status.h"
#include "format/source.h"

struct qn_gguf {
  const char* path;     /* file name for messages (the qn_mapfile's) */
  uint32_t version;     /* 2 or 3 */
  uint64_t alignment;   /* data alignment, a power of two */
  uint64_t data_offset; /* file offset of the data section */
  qn_gguf_kv* kvs;      /* [n_kv] */
  int n_kv;
  qn_gguf_tensor* tensors; /* [n_tensors] */
  int n_tensors;
};

/* ---- type tables --------------------------------------------------------------- */

static const char* const k_type_names[QN_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

/* Bytes of one element of a fixed-size type; 0 for STRING/ARRAY. */
static unsigned type_size(qn_gguf_type t) {
  switch (t) {
    case QN_GGUF_UINT8:
    case QN_GGUF_INT8:
    case QN_GGUF_BOOL: return 1;
    case QN_GGUF_UINT16:
    case QN_GGUF_INT16: return 2;
    case QN_GGUF_UINT32:
    case QN_GGUF_INT32:
    case QN_GGUF_FLOAT32: return 4;
    case QN_GGUF_UINT64:
    case QN_GGUF_INT64:
    case QN_GGUF_FLOAT64: return 8;
    default: return 0;
  }
}

static bool type_is_unsigned(qn_gguf_type t) {
  return t == QN_GGUF_UINT8 || t == QN_GGUF_UINT16 || t == QN_GGUF_UINT32 || t == QN_GGUF_UINT64;
}
static bool type_is_signed(qn_gguf_type t) {
  return t == QN_GGUF_INT8 || t == QN_GGUF_INT16 || t == QN_GGUF_INT32 || t == QN_GGUF_INT64;
}
static bool type_is_float(qn_gguf_type t) { return t == QN_GGUF_FLOAT32 || t == QN_GGUF_FLOAT64; }

const char* qn_gguf_type_name(qn_gguf_type t) {
  return (unsigned)t < QN_GGUF_TYPE_COUNT ? k_type_names[t] : "?";
}

/* ggml tensor types: name, and the qn_dtype when Quench can hold it (-1 otherwise). */
static const struct {
  const char* name;
  int dtype;
} k_ggml_types[] = {
    [0] = {"F32", QN_DTYPE_F32},
    [1] = {"F16", QN_DTYPE_F16},
    [2] = {"Q4_0", QN_DTYPE_GGML_Q4_0},
    [3] = {"Q4_1", -1},
    [6] = {"Q5_0", -1},
    [7] = {"Q5_1", -1},
    [8] = {"Q8_0", QN_DTYPE_GGML_Q8_0},
    [9] = {"Q8_1", -1},
    [10] = {"Q2_K", -1},
    [11] = {"Q3_K", -1},
    [12] = {"Q4_K", -1},
    [13] = {"Q5_K", -1},
    [14] = {"Q6_K", -1},
    [15] = {"Q8_K", -1},
    [16] = {"IQ2_XXS", -1},
    [17] = {"IQ2_XS", -1},
    [18] = {"IQ3_XXS", -1},
    [19] = {"IQ1_S", -1},
    [20] = {"IQ4_NL", -1},
    [21] = {"IQ3_S", -1},
    [22] = {"IQ2_S", -1},
    [23] = {"IQ4_XS", -1},
    [24] = {"I8", QN_DTYPE_I8},
    [25] = {"I16", QN_DTYPE_I16},
    [26] = {"I32", QN_DTYPE_I32},
    [27] = {"I64", QN_DTYPE_I64},
    [28] = {"F64", QN_DTYPE_F64},
    [29] = {"IQ1_M", -1},
    [30] = {"BF16", QN_DTYPE_BF16},
    [34] = {"TQ1_0", -1},
    [35] = {"TQ2_0", -1},
};
#define K_N_GGML_TYPES (sizeof k_ggml_types / sizeof k_ggml_types[0])

const char* qn_gguf_ggml_type_name(uint32_t ggml_type) {
  return ggml_type < K_N_GGML_TYPES ? k_ggml_types[ggml_type].name : NULL;
}

/* ---- little-endian reads ----------------------------------------------------------- */

static uint64_t load_le(const uint8_t* p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static double load_float(const uint8_t* p, qn_gguf_type t) {
  if (t == QN_GGUF_FLOAT32) {
    uint32_t u = (uint32_t)load_le(p, 4);
    float f;
    memcpy(&f, &u, 4);
    return f;
  }
  uint64_t u = load_le(p, 8);
  double d = 0;
  memcpy(&d, &u, 8);
  return d;
}

/* A cursor over the mapped bytes. */
typedef struct reader {
  const uint8_t* base; /* file bytes */
  uint64_t size;       /* file bytes */
  uint64_t pos;        /* next byte to read */
  const char* path;    /* for messages */
} reader;

static uint64_t remaining(const reader* r) { return r->size - r->pos; }

static qn_status truncated(const reader* r, const char* what) {
  return qn_error(QN_EFORMAT,
                  "%s: GGUF truncated or corrupt at byte %llu (reading %s; file has %llu bytes)",
                  r->path, (unsigned long long)r->pos, what, (unsigned long long)r->size);
}

static qn_status read_bytes(reader* r, uint64_t n, const uint8_t** p, const char* what) {
  if (n > remaining(r)) return truncated(r, what);
  *p = r->base + r->pos;
  r->pos += n;
  return QN_OK;
}

static qn_status read_uint(reader* r, unsigned n, uint64_t* v, const char* what) {
  const uint8_t* p = NULL;
  QN_TRY(read_bytes(r, n, &p, what));
  *v = load_le(p, n);
  return QN_OK;
}

static qn_status read_u32(reader* r, uint32_t* v, const char* what) {
  uint64_t u = 0;
  QN_TRY(read_uint(r, 4, &u, what));
  *v = (uint32_t)u;
  return QN_OK;
}

static qn_status read_str(reader* r, qn_gguf_str* s, const char* what) {
  uint64_t len = 0;
  const uint8_t* p = NULL;
  QN_TRY(read_uint(r, 8, &len, what));
  QN_TRY(read_bytes(r, len, &p, what));
  s->ptr = (const char*)p;
  s->len = len;
  return QN_OK;
}

/* Printable length of a string for "%.*s" (long names are cut). */
static int plen(qn_gguf_str s) { return s.len > 200 ? 200 : (int)s.len; }

/* ---- metadata ---------------------------------------------------------------------- */

static qn_status read_scalar(reader* r, qn_gguf_kv* kv) {
  if (kv->type == QN_GGUF_STRING) return read_str(r, &kv->v.s, "a string value");
  const uint8_t* p = NULL;
  unsigned n = type_size(kv->type);
  QN_TRY(read_bytes(r, n, &p, "a metadata value"));
  if (type_is_float(kv->type)) {
    kv->v.f = load_float(p, kv->type);
  } else if (type_is_signed(kv->type)) {
    uint64_t u = load_le(p, n);
    if (n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    memcpy(&kv->v.i, &u, 8);
  } else if (kv->type == QN_GGUF_BOOL) {
    kv->v.u = p[0] != 0;
  } else {
    kv->v.u = load_le(p, n);
  }
  return QN_OK;
}

static qn_status read_array(reader* r, qn_gguf_kv* kv) {
  uint32_t et = 0;
  QN_TRY(read_u32(r, &et, "an array element type"));
  QN_TRY(read_uint(r, 8, &kv->arr_n, "an array length"));
  if (et == QN_GGUF_ARRAY)
    return qn_error(QN_EUNSUPPORTED, "%s: metadata key '%.*s' is a nested array", r->path,
                    plen(kv->key), kv->key.ptr);
  if (et >= QN_GGUF_TYPE_COUNT)
    return qn_error(QN_EFORMAT, "%s: metadata key '%.*s': unknown array element type %u", r->path,
                    plen(kv->key), kv->key.ptr, et);
  kv->arr_type = (qn_gguf_type)et;
  if (kv->arr_type != QN_GGUF_STRING) {
    unsigned es = type_size(kv->arr_type);
    if (kv->arr_n > remaining(r) / es) return truncated(r, "an array");
    kv->arr_data = r->base + r->pos;
    r->pos += kv->arr_n * es;
    return QN_OK;
  }
  if (kv->arr_n > remaining(r) / 8) return truncated(r, "an array of strings");
  kv->arr_strs = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *kv->arr_strs);
  if (!kv->arr_strs) return qn_error(QN_ENOMEM, "%s: out of memory", r->path);
  for (uint64_t i = 0; i < kv->arr_n; i++) QN_TRY(read_str(r, &kv->arr_strs[i], "an array string"));
  return QN_OK;
}

static qn_status read_kv(reader* r, qn_gguf_kv* kv) {
  uint32_t t = 0;
  QN_TRY(read_str(r, &kv->key, "a metadata key"));
  QN_TRY(read_u32(r, &t, "a metadata value type"));
  if (t >= QN_GGUF_TYPE_COUNT)
    return qn_error(QN_EFORMAT, "%s: metadata key '%.*s' has unknown value type %u", r->path,
                    plen(kv->key), kv->key.ptr, t);
  kv->type = (qn_gguf_type)t;
  return kv->type == QN_GGUF_ARRAY ? read_array(r, kv) : read_scalar(r, kv);
}

/* ---- tensor infos ------------------------------------------------------------------ */

static qn_status read_tensor_info(reader* r, qn_gguf_tensor* t) {
  uint32_t nd = 0, type = 0;
  QN_TRY(read_str(r, &t->name, "a tensor name"));
  QN_TRY(read_u32(r, &nd, "a tensor's n_dims"));
  if (nd < 1 || nd > QN_GGUF_MAX_DIMS)
    return qn_error(QN_EFORMAT, "%s: tensor '%.*s' has %u dimensions (1..%d allowed)", r->path,
                    plen(t->name), t->name.ptr, nd, QN_GGUF_MAX_DIMS);
  t->n_dims = (int)nd;
  for (int d = 0; d < QN_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
  for (int d = 0; d < t->n_dims; d++) QN_TRY(read_uint(r, 8, &t->ne[d], "a tensor's shape"));
  QN_TRY(read_u32(r, &type, "a tensor's type"));
  QN_TRY(read_uint(r, 8, &t->offset, "a tensor's offset"));
  t->ggml_type = type;
  const char* tn = qn_gguf_ggml_type_name(type);
  if (!tn || k_ggml_types[type].dtype < 0)
    return qn_error(QN_EUNSUPPORTED,
                    "%s: tensor '%.*s' has ggml type %u (%s), which Quench does not read", r->path,
                    plen(t->name), t->name.ptr, type, tn ? tn : "unknown");
  t->dtype = (qn_dtype)k_ggml_types[type].dtype;
  return QN_OK;
}

/* Checks shape, size and placement of t once the data section's offset is known. */
static qn_status place_tensor(const qn_gguf* g, const reader* r, qn_gguf_tensor* t) {
  uint64_t nelem = 1, limit = r->size * 2 + 64; /* no type packs below half a byte each */
  for (int d = 0; d < t->n_dims; d++) {
    if (t->ne[d] > limit || (t->ne[d] && nelem > limit / t->ne[d]))
      return qn_error(QN_EFORMAT, "%s: tensor '%.*s' is larger than the file", r->path,
                      plen(t->name), t->name.ptr);
    nelem *= t->ne[d];
  }
  int block = qn_dtype_block(t->dtype);
  if (t->ne[0] % (uint64_t)block != 0)
    return qn_error(QN_EFORMAT,
                    "%s: tensor '%.*s': row length %llu is not a multiple of %s's block of %d",
                    r->path, plen(t->name), t->name.ptr, (unsigned long long)t->ne[0],
                    qn_dtype_name(t->dtype), block);
  t->nbytes = qn_dtype_bytes(t->dtype, (int64_t)nelem);
  if (t->offset % g->alignment != 0)
    return qn_error(QN_EFORMAT,
                    "%s: tensor '%.*s': offset %llu is not a multiple of the alignment %llu",
                    r->path, plen(t->name), t->name.ptr, (unsigned long long)t->offset,
                    (unsigned long long)g->alignment);
  uint64_t avail = r->size - g->data_offset;
  if (t->offset > avail || t->nbytes > avail - t->offset)
    return qn_error(
        QN_EFORMAT,
        "%s: tensor '%.*s' (%llu bytes at data offset %llu) runs past the end of the file "
        "(%llu bytes of data)",
        r->path, plen(t->name), t->name.ptr, (unsigned long long)t->nbytes,
        (unsigned long long)t->offset, (unsigned long long)avail);
  t->data = r->base + g->data_offset + t->offset;
  return QN_OK;
}

/* ---- duplicate detection (sort pointers to names) ---------------------------------- */

static int cmp_strp(const void* a, const void* b) {
  const qn_gguf_str* x = *(const qn_gguf_str* const*)a;
  const qn_gguf_str* y = *(const qn_gguf_str* const*)b;
  uint64_t n = x->len < y->len ? x->len : y->len;
  int c = n ? memcmp(x->ptr, y->ptr, (size_t)n) : 0;
  if (c) return c;
  return (x->len > y->len) - (x->len < y->len);
}

/* names[i * stride] are n strings; fails naming the first duplicate. */
static qn_status check_unique(const char* path, const char* what, const qn_gguf_str* first,
                              size_t stride, int n) {
  if (n < 2) return QN_OK;
  const qn_gguf_str** v = malloc((size_t)n * sizeof *v);
  if (!v) return qn_error(QN_ENOMEM, "%s: out of memory", path);
  for (int i = 0; i < n; i++) v[i] = (const qn_gguf_str*)((const char*)first + (size_t)i * stride);
  qsort(v, (size_t)n, sizeof *v, cmp_strp);
  qn_status st = QN_OK;
  for (int i = 1; i < n && st == QN_OK; i++)
    if (cmp_strp(&v[i - 1], &v[i]) == 0)
      st = qn_error(QN_EFORMAT, "%s: duplicate %s '%.*s'", path, what, plen(*v[i]), v[i]->ptr);
  free(v);
  return st;
}

/* ---- parse ------------------------------------------------------------------------- */

static qn_status read_header(reader* r, qn_gguf* g, uint64_t* n_tensors, uint64_t* n_kv) {
  const uint8_t* magic = NULL;
  QN_TRY(read_bytes(r, 4, &magic, "the magic"));
  if (memcmp(magic, "GGUF", 4) != 0)
    return qn_error(QN_EFORMAT, "%s: not a GGUF file (bad magic)", r->path);
  QN_TRY(read_u32(r, &g->version, "the version"));
  if (g->version == 1)
    return qn_error(QN_EUNSUPPORTED, "%s: GGUF version 1 is not supported (only 2 and 3)", r->path);
  if (g->version != 2 && g->version != 3) {
    if ((g->version & 0xffff) == 0 && g->version != 0)
      return qn_error(QN_EUNSUPPORTED, "%s: big-endian GGUF files are not supported", r->path);
    return qn_error(QN_EFORMAT, "%s: unknown GGUF version %u", r->path, g->version);
  }
  QN_TRY(read_uint(r, 8, n_tensors, "the tensor count"));
  QN_TRY(read_uint(r, 8, n_kv, "the metadata count"));
  /* Each key/value takes at least 13 bytes and each tensor info at least 32. */
  if (*n_kv > remaining(r) / 13 || *n_kv > INT_MAX)
    return qn_error(QN_EFORMAT, "%s: metadata count %llu cannot fit in the file", r->path,
                    (unsigned long long)*n_kv);
  if (*n_tensors > remaining(r) / 32 || *n_tensors > INT_MAX)
    return qn_error(QN_EFORMAT, "%s: tensor count %llu cannot fit in the file", r->path,
                    (unsigned long long)*n_tensors);
  return QN_OK;
}

static qn_status read_alignment(qn_gguf* g) {
  g->alignment = QN_GGUF_DEFAULT_ALIGNMENT;
  const qn_gguf_kv* kv = qn_gguf_find(g, "general.alignment");
  if (!kv) return QN_OK;
  uint32_t a = 0;
  QN_TRY(qn_gguf_get_u32(g, "general.alignment", &a));
  if (a == 0 || (a & (a - 1)) != 0)
    return qn_error(QN_EFORMAT, "%s: general.alignment %u is not a power of two", g->path, a);
  g->alignment = a;
  return QN_OK;
}

static qn_status parse_body(reader* r, qn_gguf* g) {
  uint64_t n_tensors = 0, n_kv = 0;
  QN_TRY(read_header(r, g, &n_tensors, &n_kv));
  g->kvs = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kvs);
  g->tensors = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
  if (!g->kvs || !g->tensors) return qn_error(QN_ENOMEM, "%s: out of memory", r->path);
  for (uint64_t i = 0; i < n_kv; i++) {
    g->n_kv = (int)i + 1; /* counted before reading so that free() sees a partial array */
    QN_TRY(read_kv(r, &g->kvs[i]));
  }
  QN_TRY(check_unique(r->path, "metadata key", &g->kvs[0].key, sizeof g->kvs[0], g->n_kv));
  QN_TRY(read_alignment(g));
  for (uint64_t i = 0; i < n_tensors; i++) QN_TRY(read_tensor_info(r, &g->tensors[i]));
  g->n_tensors = (int)n_tensors;
  QN_TRY(check_unique(r->path, "tensor", &g->tensors[0].name, sizeof g->tensors[0], g->n_tensors));
  uint64_t pad = (g->alignment - r->pos % g->alignment) % g->alignment;
  if (g->n_tensors > 0 && pad > remaining(r)) return truncated(r, "the padding before the data");
  g->data_offset = r->pos + (pad > remaining(r) ? remaining(r) : pad);
  for (int i = 0; i < g->n_tensors; i++) QN_TRY(place_tensor(g, r, &g->tensors[i]));
  return QN_OK;
}

qn_status qn_gguf_parse(const qn_mapfile* mf, qn_gguf** out) {
  *out = NULL;
  qn_gguf* g = calloc(1, sizeof *g);
  if (!g) return qn_error(QN_ENOMEM, "%s: out of memory", mf->path);
  g->path = mf->path;
  reader r = {mf->data, mf->size, 0, mf->path};
  qn_status st = parse_body(&r, g);
  if (st != QN_OK) {
    qn_gguf_free(g);
    return st;
  }
  *out = g;
  return QN_OK;
}

void qn_gguf_free(qn_gguf* g) {
  if (!g) return;
  for (int i = 0; i < g->n_kv; i++) free(g->kvs[i].arr_strs);
  free(g->kvs);
  free(g->tensors);
  free(g);
}

/* ---- accessors --------------------------------------------------------------------- */

uint32_t qn_gguf_version(const qn_gguf* g) { return g->version; }
uint64_t qn_gguf_alignment(const qn_gguf* g) { return g->alignment; }
uint64_t qn_gguf_data_offset(const qn_gguf* g) { return g->data_offset; }
int qn_gguf_n_kv(const qn_gguf* g) { return g->n_kv; }
int qn_gguf_n_tensors(const qn_gguf* g) { return g->n_tensors; }

const qn_gguf_kv* qn_gguf_kv_at(const qn_gguf* g, int i) {
  return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const qn_gguf_tensor* qn_gguf_tensor_at(const qn_gguf* g, int i) {
  return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

bool qn_gguf_str_eq(qn_gguf_str s, const char* c) {
  size_t n = strlen(c);
  return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

const qn_gguf_kv* qn_gguf_find(const qn_gguf* g, const char* key) {
  for (int i = 0; i < g->n_kv; i++)
    if (qn_gguf_str_eq(g->kvs[i].key, key)) return &g->kvs[i];
  return NULL;
}

const qn_gguf_tensor* qn_gguf_find_tensor(const qn_gguf* g, const char* name) {
  for (int i = 0; i < g->n_tensors; i++)
    if (qn_gguf_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
  return NULL;
}

static qn_status find_required(const qn_gguf* g, const char* key, const qn_gguf_kv** kv) {
  *kv = qn_gguf_find(g, key);
  if (!*kv) return qn_error(QN_EFORMAT, "%s: metadata key '%s' is missing", g->path, key);
  return QN_OK;
}

static qn_status wrong_type(const qn_gguf* g, const char* key, const qn_gguf_kv* kv,
                            const char* want) {
  return qn_error(QN_EFORMAT, "%s: metadata key '%s' is %s, expected %s", g->path, key,
                  qn_gguf_type_name(kv->type), want);
}

qn_status qn_gguf_get_i64(const qn_gguf* g, const char* key, int64_t* out) {
  const qn_gguf_kv* kv = NULL;
  QN_TRY(find_required(g, key, &kv));
  if (type_is_signed(kv->type)) {
    *out = kv->v.i;
  } else if (type_is_unsigned(kv->type)) {
    if (kv->v.u > (uint64_t)INT64_MAX)
      return qn_error(QN_EFORMAT, "%s: metadata key '%s' = %llu is too large", g->path, key,
                      (unsigned long long)kv->v.u);
    *out = (int64_t)kv->v.u;
  } else {
    return wrong_type(g, key, kv, "an integer");
  }
  return QN_OK;
}

qn_status qn_gguf_get_u32(const qn_gguf* g, const char* key, uint32_t* out) {
  int64_t v = 0;
  QN_TRY(qn_gguf_get_i64(g, key, &v));
  if (v < 0 || v > (int64_t)UINT32_MAX)
    return qn_error(QN_EFORMAT, "%s: metadata key '%s' = %lld is out of range for u32", g->path,
                    key, (long long)v);
  *out = (uint32_t)v;
  return QN_OK;
}

qn_status qn_gguf_get_f64(const qn_gguf* g, const char* key, double* out) {
  const qn_gguf_kv* kv = NULL;
  QN_TRY(find_required(g, key, &kv));
  if (!type_is_float(kv->type)) return wrong_type(g, key, kv, "a float");
  *out = kv->v.f;
  return QN_OK;
}

qn_status qn_gguf_get_f32(const qn_gguf* g, const char* key, float* out) {
  double d = 0;
  QN_TRY(qn_gguf_get_f64(g, key, &d));
  *out = (float)d;
  return QN_OK;
}

qn_status qn_gguf_get_bool(const qn_gguf* g, const char* key, bool* out) {
  const qn_gguf_kv* kv = NULL;
  QN_TRY(find_required(g, key, &kv));
  if (kv->type != QN_GGUF_BOOL) return wrong_type(g, key, kv, "bool");
  *out = kv->v.u != 0;
  return QN_OK;
}

qn_status qn_gguf_get_str(const qn_gguf* g, const char* key, qn_gguf_str* out) {
  const qn_gguf_kv* kv = NULL;
  QN_TRY(find_required(g, key, &kv));
  if (kv->type != QN_GGUF_STRING) return wrong_type(g, key, kv, "string");
  *out = kv->v.s;
  return QN_OK;
}

qn_status qn_gguf_get_arr(const qn_gguf* g, const char* key, qn_gguf_type elem,
                          const qn_gguf_kv** out) {
  const qn_gguf_kv* kv = NULL;
  QN_TRY(find_required(g, key, &kv));
  if (kv->type != QN_GGUF_ARRAY) return wrong_type(g, key, kv, "an array");
  if (elem != QN_GGUF_TYPE_COUNT && kv->arr_type != elem)
    return qn_error(QN_EFORMAT, "%s: metadata key '%s' is an array of %s, expected %s", g->path,
                    key, qn_gguf_type_name(kv->arr_type), qn_gguf_type_name(elem));
  *out = kv;
  return QN_OK;
}

qn_gguf_str qn_gguf_arr_str(const qn_gguf_kv* kv, uint64_t i) {
  qn_gguf_str none = {"", 0};
  if (kv->type != QN_GGUF_ARRAY || kv->arr_type != QN_GGUF_STRING || i >= kv->arr_n) return none;
  return kv->arr_strs[i];
}

int64_t qn_gguf_arr_i64(const qn_gguf_kv* kv, uint64_t i) {
  unsigned n = type_size(kv->arr_type);
  if (kv->type != QN_GGUF_ARRAY || n == 0 || i >= kv->arr_n) return 0;
  const uint8_t* p = kv->arr_data + i * n;
  if (type_is_float(kv->arr_type)) return (int64_t)load_float(p, kv->arr_type);
  uint64_t u = load_le(p, n);
  if (type_is_signed(kv->arr_type) && n < 8 && ((u >> (8 * n - 1)) & 1))
    u |= ~(uint64_t)0 << (8 * n);
  int64_t v = 0;
  memcpy(&v, &u, 8);
  return v;
}

double qn_gguf_arr_f64(const qn_gguf_kv* kv, uint64_t i) {
  unsigned n = type_size(kv->arr_type);
  if (kv->type != QN_GGUF_ARRAY || n == 0 || i >= kv->arr_n) return 0;
  if (type_is_float(kv->arr_type)) return load_float(kv->arr_data + i * n, kv->arr_type);
  if (type_is_unsigned(kv->arr_type)) return (double)load_le(kv->arr_data + i * n, n);
  return (double)qn_gguf_arr_i64(kv, i);
}

/* ---- formatting -------------------------------------------------------------------- */

/* Appends to buf (cap bytes) while counting the full length in *n. */
static void put(char* buf, size_t cap, size_t* n, const char* s, size_t len) {
  for (size_t i = 0; i < len; i++, (*n)++)
    if (*n + 1 < cap) buf[*n] = s[i];
}

static void put_escaped(char* buf, size_t cap, size_t* n, qn_gguf_str s) {
  put(buf, cap, n, "\"", 1);
  for (uint64_t i = 0; i < s.len; i++) {
    unsigned char c = (unsigned char)s.ptr[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      put(buf, cap, n, esc, 2);
    } else if (c == '\n') {
      put(buf, cap, n, "\\n", 2);
    } else if (c == '\t') {
      put(buf, cap, n, "\\t", 2);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(buf, cap, n, esc, 6);
    } else {
      put(buf, cap, n, (const char*)&s.ptr[i], 1);
    }
  }
  put(buf, cap, n, "\"", 1);
}

int qn_gguf_kv_format(const qn_gguf_kv* kv, char* buf, size_t cap) {
  char tmp[64];
  size_t n = 0;
  if (kv->type == QN_GGUF_STRING) {
    put_escaped(buf, cap, &n, kv->v.s);
  } else {
    if (kv->type == QN_GGUF_ARRAY)
      snprintf(tmp, sizeof tmp, "[%s x %llu]", qn_gguf_type_name(kv->arr_type),
               (unsigned long long)kv->arr_n);
    else if (kv->type == QN_GGUF_BOOL)
      snprintf(tmp, sizeof tmp, "%s", kv->v.u ? "true" : "false");
    else if (kv->type == QN_GGUF_FLOAT32)
      snprintf(tmp, sizeof tmp, "%.9g", kv->v.f);
    else if (kv->type == QN_GGUF_FLOAT64)
      snprintf(tmp, sizeof tmp, "%.17g", kv->v.f);
    else if (type_is_signed(kv->type))
      snprintf(tmp, sizeof tmp, "%lld", (long long)kv->v.i);
    else
      snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)kv->v.u);
    put(buf, cap, &n, tmp, strlen(tmp));
  }
  if (cap > 0) buf[n < cap ? n : cap - 1] = '\0';
  return n > INT_MAX ? INT_MAX : (int)n;
}

/* ==== qn_gguf_open: a Llama-family GGUF as a qn_source ============================== */

/* Writes "<arch>.<suffix>" into buf. */
static const char* arch_key(char* buf, size_t cap, const char* arch, const char* suffix) {
  snprintf(buf, cap, "%s.%s", arch, suffix);
  return buf;
}

/* Reads a positive int hyper-parameter "<arch>.<suffix>"; def <= 0 means required. */
static qn_status hp_int(const qn_gguf* g, const char* arch, const char* suffix, int def, int* out) {
  char key[128];
  arch_key(key, sizeof key, arch, suffix);
  if (!qn_gguf_find(g, key)) {
    if (def <= 0) return qn_error(QN_EFORMAT, "%s: metadata key '%s' is missing", g->path, key);
    *out = def;
    return QN_OK;
  }
  int64_t v = 0;
  QN_TRY(qn_gguf_get_i64(g, key, &v));
  if (v <= 0 || v > INT_MAX)
    return qn_error(QN_EFORMAT, "%s: metadata key '%s' = %lld is out of range", g->path, key,
                    (long long)v);
  *out = (int)v;
  return QN_OK;
}

/* Reads an optional float hyper-parameter "<arch>.<suffix>". */
static qn_status hp_float(const qn_gguf* g, const char* arch, const char* suffix, float def,
                          float* out) {
  char key[128];
  arch_key(key, sizeof key, arch, suffix);
  *out = def;
  return qn_gguf_find(g, key) ? qn_gguf_get_f32(g, key, out) : QN_OK;
}

static qn_status read_rope_scaling(const qn_gguf* g, const char* arch, qn_hparams* hp) {
  char key[128];
  hp->rope_scaling = QN_ROPE_SCALING_NONE;
  hp->rope_factor = 1.0f;
  if (qn_gguf_find_tensor(g, "rope_freqs.weight"))
    return qn_error(QN_EUNSUPPORTED,
                    "%s: RoPE frequency factors (tensor rope_freqs.weight, Llama 3.1 scaling) "
                    "are not supported in GGUF files; use the Hugging Face checkpoint",
                    g->path);
  if (qn_gguf_find(g, arch_key(key, sizeof key, arch, "rope.scaling.type"))) {
    qn_gguf_str type = {NULL, 0};
    QN_TRY(qn_gguf_get_str(g, key, &type));
    if (qn_gguf_str_eq(type, "linear")) {
      hp->rope_scaling = QN_ROPE_SCALING_LINEAR;
      QN_TRY(hp_float(g, arch, "rope.scaling.factor", 1.0f, &hp->rope_factor));
    } else if (!qn_gguf_str_eq(type, "none")) {
      return qn_error(QN_EUNSUPPORTED, "%s: RoPE scaling '%.*s' is not supported", g->path,
                      plen(type), type.ptr);
    }
  } else if (qn_gguf_find(g, arch_key(key, sizeof key, arch, "rope.scale_linear"))) {
    hp->rope_scaling = QN_ROPE_SCALING_LINEAR;
    QN_TRY(qn_gguf_get_f32(g, key, &hp->rope_factor));
  }
  if (!(hp->rope_factor > 0))
    return qn_error(QN_EFORMAT, "%s: RoPE scaling factor %g must be positive", g->path,
                    hp->rope_factor);
  if (hp->rope_factor == 1.0f) hp->rope_scaling = QN_ROPE_SCALING_NONE;
  return QN_OK;
}

static qn_status read_arch(const qn_gguf* g, qn_hparams* hp) {
  qn_gguf_str a = {NULL, 0};
  QN_TRY(qn_gguf_get_str(g, "general.architecture", &a));
  if (!qn_gguf_str_eq(a, "llama") && !qn_gguf_str_eq(a, "mistral") && !qn_gguf_str_eq(a, "qwen2"))
    return qn_error(QN_EUNSUPPORTED,
                    "%s: architecture '%.*s' is not supported (llama, mistral, qwen2 are)", g->path,
                    plen(a), a.ptr);
  snprintf(hp->arch, sizeof hp->arch, "%.*s", (int)a.len, a.ptr);
  char key[128];
  int64_t experts = 0;
  if (qn_gguf_find(g, arch_key(key, sizeof key, hp->arch, "expert_count")))
    QN_TRY(qn_gguf_get_i64(g, key, &experts));
  if (experts > 1)
    return qn_error(QN_EUNSUPPORTED, "%s: mixture-of-experts models (%s = %lld) are not supported",
                    g->path, key, (long long)experts);
  return QN_OK;
}

static qn_status read_hparams(const qn_gguf* g, qn_hparams* hp) {
  QN_TRY(read_arch(g, hp));
  const char* a = hp->arch;
  QN_TRY(hp_int(g, a, "context_length", 0, &hp->max_seq_len));
  QN_TRY(hp_int(g, a, "embedding_length", 0, &hp->dim));
  QN_TRY(hp_int(g, a, "feed_forward_length", 0, &hp->hidden_dim));
  QN_TRY(hp_int(g, a, "block_count", 0, &hp->n_layers));
  QN_TRY(hp_int(g, a, "attention.head_count", 0, &hp->n_heads));
  QN_TRY(hp_int(g, a, "attention.head_count_kv", hp->n_heads, &hp->n_kv_heads));
  if (hp->dim % hp->n_heads != 0)
    return qn_error(QN_EFORMAT, "%s: embedding_length %d is not a multiple of head_count %d",
                    g->path, hp->dim, hp->n_heads);
  QN_TRY(hp_int(g, a, "attention.key_length", hp->dim / hp->n_heads, &hp->head_dim));
  int rope_dims;
  QN_TRY(hp_int(g, a, "rope.dimension_count", hp->head_dim, &rope_dims));
  if (rope_dims != hp->head_dim)
    return qn_error(QN_EUNSUPPORTED,
                    "%s: partial rotary embeddings (rope.dimension_count %d, head_dim %d) are not "
                    "supported",
                    g->path, rope_dims, hp->head_dim);
  QN_TRY(hp_float(g, a, "rope.freq_base", 10000.0f, &hp->rope_theta));
  QN_TRY(hp_float(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps));
  QN_TRY(read_rope_scaling(g, a, hp));
  hp->rope_style = QN_ROPE_ADJACENT;
  hp->tied_embeddings = qn_gguf_find_tensor(g, "output.weight") == NULL;
  hp->qkv_bias = qn_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
  const qn_gguf_tensor* emb = qn_gguf_find_tensor(g, "token_embd.weight");
  if (!emb) return qn_error(QN_EFORMAT, "%s: tensor 'token_embd.weight' is missing", g->path);
  if (emb->n_dims != 2 || emb->ne[0] != (uint64_t)hp->dim || emb->ne[1] > (uint64_t)INT_MAX)
    return qn_error(QN_EFORMAT,
                    "%s: tensor 'token_embd.weight' has shape [%llu, %llu] (ne), "
                    "expected [%d, vocab]",
                    g->path, (unsigned long long)emb->ne[0], (unsigned long long)emb->ne[1],
                    hp->dim);
  hp->vocab_size = (int)emb->ne[1];
  return QN_OK;
}

static qn_status add_tensors(const qn_gguf* g, qn_source* s) {
  for (int i = 0; i < g->n_tensors; i++) {
    const qn_gguf_tensor* gt = &g->tensors[i];
    qn_tensor t;
    memset(&t, 0, sizeof t);
    if (gt->name.len >= QN_NAME_MAX || memchr(gt->name.ptr, 0, (size_t)gt->name.len))
      return qn_error(QN_EUNSUPPORTED, "%s: tensor name '%.*s' is too long or holds a NUL", g->path,
                      plen(gt->name), gt->name.ptr);
    memcpy(t.name, gt->name.ptr, (size_t)gt->name.len);
    t.dtype = gt->dtype;
    t.ndim = gt->n_dims;
    for (int d = 0; d < gt->n_dims; d++) t.shape[d] = (int64_t)gt->ne[gt->n_dims - 1 - d];
    t.data = gt->data;
    t.nbytes = gt->nbytes;
    QN_TRY(qn_source_add_tensor(s, &t));
  }
  return QN_OK;
}

/* A NUL-terminated malloc'ed copy of s, or NULL. */
static char* str_dup(qn_gguf_str s) {
  char* c = malloc((size_t)s.len + 1);
  if (!c) return NULL;
  memcpy(c, s.ptr, (size_t)s.len);
  c[s.len] = '\0';
  return c;
}

/* ---- vocabulary -------------------------------------------------------------------- */

/* Reads an optional token id key into *id (left alone when absent; -1 for "none"). */
static qn_status vocab_id(const qn_gguf* g, const char* key, int n_tokens, int* id) {
  if (!qn_gguf_find(g, key)) return QN_OK;
  int64_t v = 0;
  QN_TRY(qn_gguf_get_i64(g, key, &v));
  if (v == -1 || v == (int64_t)UINT32_MAX) { /* writers' spelling of "none" */
    *id = -1;
    return QN_OK;
  }
  if (v < 0 || v >= n_tokens)
    return qn_error(QN_EFORMAT, "%s: metadata key '%s' = %lld is not a token id (vocab %d)",
                    g->path, key, (long long)v, n_tokens);
  *id = (int)v;
  return QN_OK;
}

static qn_status vocab_bool(const qn_gguf* g, const char* key, bool* out) {
  return qn_gguf_find(g, key) ? qn_gguf_get_bool(g, key, out) : QN_OK;
}

/* Optional numeric array of n entries. */
static qn_status vocab_array(const qn_gguf* g, const char* key, int n, const qn_gguf_kv** out) {
  *out = NULL;
  if (!qn_gguf_find(g, key)) return QN_OK;
  const qn_gguf_kv* kv = NULL;
  QN_TRY(qn_gguf_get_arr(g, key, QN_GGUF_TYPE_COUNT, &kv));
  if (kv->arr_type == QN_GGUF_STRING || kv->arr_n != (uint64_t)n)
    return qn_error(QN_EFORMAT, "%s: metadata key '%s' is [%s x %llu], expected %d numbers",
                    g->path, key, qn_gguf_type_name(kv->arr_type), (unsigned long long)kv->arr_n,
                    n);
  *out = kv;
  return QN_OK;
}

static qn_status vocab_tokens(const qn_gguf* g, qn_vocab* v) {
  const qn_gguf_kv *scores = NULL, *types = NULL;
  QN_TRY(vocab_array(g, "tokenizer.ggml.scores", v->n_tokens, &scores));
  QN_TRY(vocab_array(g, "tokenizer.ggml.token_type", v->n_tokens, &types));
  const qn_gguf_kv* toks = qn_gguf_find(g, "tokenizer.ggml.tokens");
  for (int i = 0; i < v->n_tokens; i++) {
    qn_gguf_str t = qn_gguf_arr_str(toks, (uint64_t)i);
    QN_TRY(qn_vocab_set_token(v, i, t.ptr, (size_t)t.len));
    if (scores && v->scores) v->scores[i] = (float)qn_gguf_arr_f64(scores, (uint64_t)i);
    if (types) {
      int64_t a = qn_gguf_arr_i64(types, (uint64_t)i);
      if (a < 0 || a > QN_TOKEN_BYTE)
        return qn_error(QN_EFORMAT, "%s: token %d has token_type %lld (0..6 allowed)", g->path, i,
                        (long long)a);
      v->attrs[i] = (uint8_t)(a == 0 ? QN_TOKEN_NORMAL : a);
    }
  }
  return QN_OK;
}

static qn_status vocab_merges(const qn_gguf* g, qn_vocab* v) {
  const qn_gguf_kv* m = NULL;
  QN_TRY(qn_gguf_get_arr(g, "tokenizer.ggml.merges", QN_GGUF_STRING, &m));
  if (m->arr_n > (uint64_t)INT_MAX) return qn_error(QN_EFORMAT, "%s: too many merges", g->path);
  v->merges = calloc((size_t)(m->arr_n ? m->arr_n : 1), sizeof(char*));
  if (!v->merges) return qn_error(QN_ENOMEM, "%s: out of memory", g->path);
  for (uint64_t i = 0; i < m->arr_n; i++) {
    qn_gguf_str s = m->arr_strs[i];
    char* c = malloc((size_t)s.len + 1);
    if (!c) return qn_error(QN_ENOMEM, "%s: out of memory", g->path);
    memcpy(c, s.ptr, (size_t)s.len);
    c[s.len] = '\0';
    v->merges[v->n_merges++] = c;
  }
  return QN_OK;
}

/* Pre-tokenizer regexes of known tokenizer.ggml.pre values (NULL: GPT-2's default). */
static qn_status vocab_pretok(const qn_gguf* g, qn_vocab* v) {
  static const char* const k_llama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const char* const k_qwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (!qn_gguf_find(g, "tokenizer.ggml.pre")) return QN_OK;
  qn_gguf_str pre = {NULL, 0};
  QN_TRY(qn_gguf_get_str(g, "tokenizer.ggml.pre", &pre));
  const char* re = qn_gguf_str_eq(pre, "llama-bpe") ? k_llama3
                   : qn_gguf_str_eq(pre, "qwen2")   ? k_qwen2
                                                    : NULL;
  if (!re) return QN_OK;
  v->pretok_regex = str_dup((qn_gguf_str){re, strlen(re)});
  if (!v->pretok_regex) return qn_error(QN_ENOMEM, "%s: out of memory", g->path);
  return QN_OK;
}

static qn_status read_vocab(const qn_gguf* g, int vocab_size, qn_vocab* v) {
  qn_gguf_str model = {NULL, 0};
  if (!qn_gguf_find(g, "tokenizer.ggml.model"))
    return qn_error(QN_EUNSUPPORTED, "%s: no tokenizer in the file (tokenizer.ggml.model)",
                    g->path);
  QN_TRY(qn_gguf_get_str(g, "tokenizer.ggml.model", &model));
  bool spm = qn_gguf_str_eq(model, "llama");
  if (!spm && !qn_gguf_str_eq(model, "gpt2"))
    return qn_error(QN_EUNSUPPORTED,
                    "%s: tokenizer model '%.*s' is not supported (llama, gpt2 are)", g->path,
                    plen(model), model.ptr);
  const qn_gguf_kv* toks = NULL;
  QN_TRY(qn_gguf_get_arr(g, "tokenizer.ggml.tokens", QN_GGUF_STRING, &toks));
  if (toks->arr_n == 0 || toks->arr_n > (uint64_t)vocab_size)
    return qn_error(QN_EFORMAT, "%s: tokenizer has %llu tokens but the embedding has %d rows",
                    g->path, (unsigned long long)toks->arr_n, vocab_size);
  int n = (int)toks->arr_n;
  QN_TRY(qn_vocab_alloc(v, spm ? QN_VOCAB_SPM : QN_VOCAB_BPE, n, spm));
  QN_TRY(vocab_tokens(g, v));
  if (spm) {
    v->bos_id = n > 1 ? 1 : -1;
    v->eos_id = n > 2 ? 2 : -1;
    v->unk_id = 0;
  }
  v->add_bos = spm;
  v->add_space_prefix = spm;
  v->byte_fallback = spm;
  QN_TRY(vocab_id(g, "tokenizer.ggml.bos_token_id", n, &v->bos_id));
  QN_TRY(vocab_id(g, "tokenizer.ggml.eos_token_id", n, &v->eos_id));
  QN_TRY(vocab_id(g, "tokenizer.ggml.unknown_token_id", n, &v->unk_id));
  QN_TRY(vocab_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos));
  QN_TRY(vocab_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix));
  if (!spm) {
    QN_TRY(vocab_merges(g, v));
    QN_TRY(vocab_pretok(g, v));
  }
  return QN_OK;
}

/* ---- metadata as JSON -------------------------------------------------------------- */

static cJSON* kv_to_json(const qn_gguf_kv* kv) {
  char tmp[64];
  if (kv->type == QN_GGUF_STRING) {
    char* c = str_dup(kv->v.s);
    cJSON* j = c ? cJSON_CreateString(c) : NULL;
    free(c);
    return j;
  }
  if (kv->type == QN_GGUF_ARRAY) {
    qn_gguf_kv_format(kv, tmp, sizeof tmp);
    return cJSON_CreateString(tmp);
  }
  if (kv->type == QN_GGUF_BOOL) return cJSON_CreateBool(kv->v.u != 0);
  if (type_is_float(kv->type)) return cJSON_CreateNumber(kv->v.f);
  if (type_is_signed(kv->type)) return cJSON_CreateNumber((double)kv->v.i);
  return cJSON_CreateNumber((double)kv->v.u);
}

static qn_status metadata_json(const qn_gguf* g, char** out) {
  cJSON* obj = cJSON_CreateObject();
  bool ok = obj != NULL;
  for (int i = 0; ok && i < g->n_kv; i++) {
    char* key = str_dup(g->kvs[i].key);
    cJSON* val = key ? kv_to_json(&g->kvs[i]) : NULL;
    ok = val && cJSON_AddItemToObject(obj, key, val);
    if (!ok) cJSON_Delete(val);
    free(key);
  }
  *out = ok ? cJSON_PrintUnformatted(obj) : NULL;
  cJSON_Delete(obj);
  if (!*out) return qn_error(QN_ENOMEM, "%s: out of memory for the metadata", g->path);
  return QN_OK;
}

qn_status qn_gguf_open(qn_source* s, const char* path) {
  const qn_mapfile* mf = NULL;
  qn_gguf* g = NULL;
  s->format = QN_FORMAT_GGUF;
  if (!s->path[0]) snprintf(s->path, sizeof s->path, "%s", path);
  QN_TRY(qn_source_add_map(s, path, &mf));
  QN_TRY(qn_gguf_parse(mf, &g));
  qn_status st = read_hparams(g, &s->hp);
  if (st == QN_OK) st = add_tensors(g, s);
  if (st == QN_OK) st = read_vocab(g, s->hp.vocab_size, &s->vocab);
  if (st == QN_OK) st = metadata_json(g, &s->metadata_json);
  qn_gguf_free(g);
  return st;
}
