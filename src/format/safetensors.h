/* safetensors.h: parsing of safetensors files over a memory mapping (no tensor data copied).
 *
 * Layout (https://github.com/huggingface/safetensors): u64 little-endian header length N,
 * N bytes of JSON, then the data section. Each header entry is
 *   "NAME": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [d0, d1...], "data_offsets": [b, e]}
 * with b/e byte offsets relative to the start of the data section, and the optional
 * "__metadata__" entry is a string -> string map.
 *
 * The parser validates the whole header (sizes, offsets, dtypes, shapes, duplicate names)
 * before it reports any tensor, so a visitor never sees part of a bad file. Names are
 * reported exactly as written in the file: the HF reader (hf.c) maps them to canonical
 * names, the .qnz reader keeps them. */
#ifndef QN_FORMAT_SAFETENSORS_H
#define QN_FORMAT_SAFETENSORS_H

#include <stdint.h>

#include "core/mapfile.h"
#include "core/tensor.h"

/* Largest header accepted (the reference implementation's limit). */
#define QN_ST_MAX_HEADER (100u * 1024u * 1024u)

/* Where the parts of a safetensors file lie. */
typedef struct qn_st_info {
  uint64_t header_len; /* N: bytes of JSON header (including any trailing space padding) */
  uint64_t data_start; /* 8 + N: file offset of the data section */
  uint64_t data_size;  /* bytes from data_start to the end of the file */
  uint64_t data_used;  /* largest data_offsets end over all tensors (<= data_size) */
  int n_tensors;       /* tensor entries in the header (__metadata__ not counted) */
} qn_st_info;

/* Called once per tensor, in header order, after the whole header has been validated.
 * name: the tensor's name as written in the file (NUL-terminated, valid only during the
 * call). t: its view; t->data points into mf (never copied; not necessarily aligned to the
 * element size: the format only promises what the writer did); t->name holds the same
 * name when it fits in QN_NAME_MAX bytes, else "". A scalar (shape []) is reported as
 * ndim 1, shape {1}. Returning anything but QN_OK stops the walk and is returned. */
typedef qn_status (*qn_st_visit_fn)(void* user, const char* name, const qn_tensor* t);

/* Parses the safetensors file mapped in mf.
 * fn: visitor (may be NULL to only validate); user: passed to fn.
 * metadata_json: if non-NULL, receives the "__metadata__" object as compact JSON text
 *   (malloc'ed, caller frees), or NULL when the file has none.
 * info: if non-NULL, receives the layout above.
 * Errors (all name mf->path and, where there is one, the tensor):
 *   QN_EFORMAT: file shorter than 8 bytes, N beyond the file or above QN_ST_MAX_HEADER,
 *     malformed JSON, trailing bytes after the JSON other than spaces, bad entry fields,
 *     offsets out of the data section or end < begin, byte size != product(shape) x dtype
 *     size, overflow, duplicate names, non-string metadata values.
 *   QN_EUNSUPPORTED: a dtype Quench does not know (e.g. "BOOL", "U16"), or more than
 *     QN_MAX_DIMS dimensions.
 *   QN_ENOMEM; or whatever fn returns. */
qn_status qn_safetensors_parse(const qn_mapfile* mf, qn_st_visit_fn fn, void* user,
                               char** metadata_json, qn_st_info* info);

#endif
