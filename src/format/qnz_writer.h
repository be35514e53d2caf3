/* qnz_writer.h: writing a .qnz (safetensors) file tensor by tensor.
 *
 * The tensor list is declared up front so every offset is known; data is then written in
 * any order with pwrite, and the JSON header (which carries the metadata produced while
 * quantizing) goes last into space reserved before the data. Everything goes to a
 * temporary file beside the target that is fsync'ed and renamed only when complete, so a
 * crash or a full disk never leaves a file that looks valid. Layout: docs/FORMAT.md. */
#ifndef QN_FORMAT_QNZ_WRITER_H
#define QN_FORMAT_QNZ_WRITER_H

#include <stdint.h>

#include "core/tensor.h"
#include "quench.h"

/* Alignment of the data section and of every tensor in it (bytes). */
#define QN_QNZ_ALIGN 64

typedef struct qn_qnz_writer qn_qnz_writer;

/* Starts a file at path with the n tensors described by ts (name, dtype, ndim, shape,
 * nbytes; data ignored). meta_reserve: bytes of header space to keep for the metadata
 * given to finish(). Creates path.tmp.<pid>. */
qn_status qn_qnz_writer_begin(const char* path, const qn_tensor* ts, int n, uint64_t meta_reserve,
                              qn_qnz_writer** out);
/* Writes the bytes of tensor i (nbytes as declared). */
qn_status qn_qnz_writer_write(qn_qnz_writer* w, int i, const void* data);
/* Writes the header with metadata_json (a JSON object whose values are all strings),
 * fsyncs and renames onto the target. Frees w whatever the outcome. */
qn_status qn_qnz_writer_finish(qn_qnz_writer* w, const char* metadata_json);
/* Removes the temporary file and frees w (no-op on NULL). */
void qn_qnz_writer_abort(qn_qnz_writer* w);

#endif
