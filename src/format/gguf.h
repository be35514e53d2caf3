/* gguf.h: a parser for GGUF v2/v3 files (ggml's model container) over a mapped file.
 *
 * Layout (all little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv key/values
 * (string key, u32 value type, value); n_tensors tensor infos (string name, u32 n_dims,
 * u64 ne[n_dims] innermost first, u32 ggml type, u64 offset into the data section); padding to
 * general.alignment (default 32); the data section. A string is u64 length + bytes (no NUL).
 *
 * The parsed structure points into the mapping (nothing is copied except an index of string
 * arrays), so the qn_mapfile must outlive the qn_gguf. Every length, count and offset is
 * checked against the file size; a malformed or truncated file gives QN_EFORMAT. */
#ifndef QN_FORMAT_GGUF_H
#define QN_FORMAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mapfile.h"
#include "core/tensor.h"
#include "quench.h"

/* Metadata value types, numbered as in the file. */
typedef enum qn_gguf_type {
  QN_GGUF_UINT8 = 0,
  QN_GGUF_INT8 = 1,
  QN_GGUF_UINT16 = 2,
  QN_GGUF_INT16 = 3,
  QN_GGUF_UINT32 = 4,
  QN_GGUF_INT32 = 5,
  QN_GGUF_FLOAT32 = 6,
  QN_GGUF_BOOL = 7,
  QN_GGUF_STRING = 8,
  QN_GGUF_ARRAY = 9,
  QN_GGUF_UINT64 = 10,
  QN_GGUF_INT64 = 11,
  QN_GGUF_FLOAT64 = 12,
  QN_GGUF_TYPE_COUNT
} qn_gguf_type;

#define QN_GGUF_DEFAULT_ALIGNMENT 32
#define QN_GGUF_MAX_DIMS 4

/* A string inside the file: not NUL-terminated. */
typedef struct qn_gguf_str {
  const char* ptr; /* first byte, inside the mapping */
  uint64_t len;    /* bytes */
} qn_gguf_str;

/* One metadata key/value. */
typedef struct qn_gguf_kv {
  qn_gguf_str key;   /* e.g. "llama.block_count" */
  qn_gguf_type type; /* value type; QN_GGUF_ARRAY for arrays */
  union {
    uint64_t u;            /* UINT8/16/32/64 (zero-extended); BOOL as 0/1 */
    int64_t i;             /* INT8/16/32/64 (sign-extended) */
    double f;              /* FLOAT32/64 */
    qn_gguf_str s;         /* STRING */
  } v;                     /* scalar value (unused for arrays) */
  qn_gguf_type arr_type;   /* arrays: element type (never ARRAY: nested arrays are rejected) */
  uint64_t arr_n;          /* arrays: element count */
  const uint8_t* arr_data; /* arrays of numbers/bools: packed little-endian elements */
  qn_gguf_str* arr_strs;   /* arrays of strings: [arr_n] index, owned by the qn_gguf */
} qn_gguf_kv;

/* One tensor info. */
typedef struct qn_gguf_tensor {
  qn_gguf_str name;              /* e.g. "blk.0.attn_q.weight" */
  int n_dims;                    /* 1..QN_GGUF_MAX_DIMS */
  uint64_t ne[QN_GGUF_MAX_DIMS]; /* extents, innermost (contiguous) first; unused dims = 1 */
  uint32_t ggml_type;            /* ggml type number as stored */
  qn_dtype dtype;                /* the same as a qn_dtype */
  uint64_t offset;               /* bytes from the start of the data section */
  const uint8_t* data;           /* first byte, inside the mapping */
  uint64_t nbytes;               /* bytes of data */
} qn_gguf_tensor;

typedef struct qn_gguf qn_gguf;

/* Parses mf (which must stay mapped while the result is used). Errors: QN_EFORMAT
 * (malformed/truncated), QN_EUNSUPPORTED (version, nested array, ggml type), QN_ENOMEM. */
qn_status qn_gguf_parse(const qn_mapfile* mf, qn_gguf** out);
void qn_gguf_free(qn_gguf* g);

uint32_t qn_gguf_version(const qn_gguf* g);
/* Alignment of the data section and of every tensor's offset. */
uint64_t qn_gguf_alignment(const qn_gguf* g);
/* File offset of the data section. */
uint64_t qn_gguf_data_offset(const qn_gguf* g);

int qn_gguf_n_kv(const qn_gguf* g);
const qn_gguf_kv* qn_gguf_kv_at(const qn_gguf* g, int i);
/* The key/value named key, or NULL. */
const qn_gguf_kv* qn_gguf_find(const qn_gguf* g, const char* key);

int qn_gguf_n_tensors(const qn_gguf* g);
const qn_gguf_tensor* qn_gguf_tensor_at(const qn_gguf* g, int i);
/* The tensor named name, or NULL. */
const qn_gguf_tensor* qn_gguf_find_tensor(const qn_gguf* g, const char* name);

/* Typed getters. A missing key or a value of the wrong type gives QN_EFORMAT with a message
 * naming the file and the key. Integer getters accept any integer type whose value fits
 * (QN_EFORMAT otherwise); get_f32/get_f64 accept FLOAT32 and FLOAT64. */
qn_status qn_gguf_get_u32(const qn_gguf* g, const char* key, uint32_t* out);
qn_status qn_gguf_get_i64(const qn_gguf* g, const char* key, int64_t* out);
qn_status qn_gguf_get_f32(const qn_gguf* g, const char* key, float* out);
qn_status qn_gguf_get_f64(const qn_gguf* g, const char* key, double* out);
qn_status qn_gguf_get_bool(const qn_gguf* g, const char* key, bool* out);
qn_status qn_gguf_get_str(const qn_gguf* g, const char* key, qn_gguf_str* out);
/* An array whose elements have type elem (elem = QN_GGUF_TYPE_COUNT: any element type). */
qn_status qn_gguf_get_arr(const qn_gguf* g, const char* key, qn_gguf_type elem,
                          const qn_gguf_kv** out);

/* Array element access (i < kv->arr_n, caller checks). Numbers of any width are converted;
 * arr_str needs a string array, the others an array of numbers or bools. */
qn_gguf_str qn_gguf_arr_str(const qn_gguf_kv* kv, uint64_t i);
int64_t qn_gguf_arr_i64(const qn_gguf_kv* kv, uint64_t i);
double qn_gguf_arr_f64(const qn_gguf_kv* kv, uint64_t i);

/* True if s holds exactly the NUL-terminated text c. */
bool qn_gguf_str_eq(qn_gguf_str s, const char* c);

/* "u8", "i32", "f32", "bool", "string", "array"... ("?" if out of range). */
const char* qn_gguf_type_name(qn_gguf_type t);
/* Name of a ggml tensor type number ("F32", "Q4_K"...), or NULL if unknown. */
const char* qn_gguf_ggml_type_name(uint32_t ggml_type);

/* Writes a one-line rendering of kv's value into buf (NUL-terminated, truncated to cap):
 * numbers, true/false, strings in double quotes with JSON escapes, arrays as
 * "[string x 512]". Returns the length the full text needs (as snprintf). */
int qn_gguf_kv_format(const qn_gguf_kv* kv, char* buf, size_t cap);

#endif
