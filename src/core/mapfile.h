/* mapfile.h: read-only memory mapping of whole files (weights are never copied). */
#ifndef QN_CORE_MAPFILE_H
#define QN_CORE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "quench.h"

typedef struct qn_mapfile {
  const uint8_t* data; /* file bytes, read-only; NULL for an empty file */
  size_t size;         /* bytes */
  char path[1024];     /* path as opened, for messages */
} qn_mapfile;

/* Maps path read-only. Errors: QN_EIO naming the path and the OS reason. */
qn_status qn_mapfile_open(const char* path, qn_mapfile* mf);
void qn_mapfile_close(qn_mapfile* mf);

/* Reads a whole (small) file into a malloc'ed NUL-terminated buffer. */
qn_status qn_read_text_file(const char* path, char** text, size_t* len);

/* True if path names an existing regular file / directory. */
int qn_is_file(const char* path);
int qn_is_dir(const char* path);

#endif
