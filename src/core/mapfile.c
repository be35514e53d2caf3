/* mapfile.c: read-only memory mapping of whole files. */
#define _POSIX_C_SOURCE 200809L
#include "core/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"

qn_status qn_mapfile_open(const char* path, qn_mapfile* mf) {
  memset(mf, 0, sizeof *mf);
  snprintf(mf->path, sizeof mf->path, "%s", path);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return qn_error(QN_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return qn_error(QN_EIO, "%s: not a regular file", path);
  }
  mf->size = (size_t)st.st_size;
  if (mf->size > 0) {
    void* p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      return qn_error(QN_EIO, "%s: mmap failed: %s", path, strerror(e));
    }
    mf->data = p;
  }
  close(fd);
  return QN_OK;
}

void qn_mapfile_close(qn_mapfile* mf) {
  if (!mf) return;
  if (mf->data) munmap((void*)mf->data, mf->size);
  mf->data = NULL;
  mf->size = 0;
}

qn_status qn_read_text_file(const char* path, char** text, size_t* len) {
  *text = NULL;
  if (len) *len = 0;
  FILE* f = fopen(path, "rb");
  if (!f) return qn_error(QN_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char* buf = malloc(cap + 1);
  if (!buf) {
    fclose(f);
    return qn_error(QN_ENOMEM, "%s: out of memory", path);
  }
  for (;;) {
    if (n == cap) {
      char* nb = realloc(buf, cap * 2 + 1);
      if (!nb) {
        free(buf);
        fclose(f);
        return qn_error(QN_ENOMEM, "%s: out of memory", path);
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return qn_error(QN_EIO, "%s: read error", path);
  }
  buf[n] = '\0';
  *text = buf;
  if (len) *len = n;
  return QN_OK;
}

int qn_is_file(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int qn_is_dir(const char* path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
