/* qnz_writer.c: the .qnz writer: reserve header, pwrite tensors at 64-byte aligned offsets,
 * write the header last, fsync, rename. Strict safetensors readers require the tensors to
 * tile the data section with no gap, so each alignment gap is declared as a U8 padding
 * tensor named "__pad__.N" (zero bytes; Quench's reader skips them). */
#define _POSIX_C_SOURCE 200809L
#include "format/qnz_writer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"

struct qn_qnz_writer {
  char* path;        /* final name (malloc'ed: any length the OS accepts) */
  char* tmp;         /* temporary name path.tmp.<pid>, renamed onto path by finish */
  int fd;            /* open temporary file */
  qn_tensor* ts;     /* [n] declared tensors (data unused) */
  uint64_t* offsets; /* [n] byte offsets of each tensor relative to the data section */
  uint8_t* written;  /* [n] 1 once written */
  int n;
  uint64_t header_len; /* N: header bytes reserved (8 + N is a multiple of QN_QNZ_ALIGN) */
  uint64_t data_len;   /* bytes of the data section */
};

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static cJSON* entry_json(const char* dtype, const int64_t* shape, int ndim, uint64_t b,
                         uint64_t e) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "dtype", dtype);
  cJSON* sh = cJSON_AddArrayToObject(o, "shape");
  for (int d = 0; d < ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
  cJSON* offs = cJSON_AddArrayToObject(o, "data_offsets");
  cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)b));
  cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)e));
  return o;
}

/* The header JSON for the declared tensors; metadata may be NULL. */
static char* header_json(const qn_qnz_writer* w, const char* metadata_json) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  if (metadata_json) {
    cJSON* md = cJSON_Parse(metadata_json);
    if (!md) {
      cJSON_Delete(root);
      return NULL;
    }
    cJSON_AddItemToObject(root, "__metadata__", md);
  }
  uint64_t end = 0;
  int pads = 0;
  for (int i = 0; i < w->n; i++) {
    const qn_tensor* t = &w->ts[i];
    if (w->offsets[i] > end) {
      char pname[32];
      snprintf(pname, sizeof pname, "__pad__.%d", pads++);
      int64_t len = (int64_t)(w->offsets[i] - end);
      cJSON_AddItemToObject(root, pname, entry_json("U8", &len, 1, end, w->offsets[i]));
    }
    end = w->offsets[i] + t->nbytes;
    cJSON_AddItemToObject(
        root, t->name, entry_json(qn_dtype_name(t->dtype), t->shape, t->ndim, w->offsets[i], end));
  }
  char* s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

static qn_status write_all(qn_qnz_writer* w, const void* data, uint64_t n, uint64_t off) {
  const uint8_t* p = data;
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
    ssize_t k = pwrite(w->fd, p, chunk, (off_t)off);
    if (k < 0) {
      if (errno == EINTR) continue;
      return qn_error(QN_EIO, "%s: write failed: %s", w->tmp, strerror(errno));
    }
    p += k;
    off += (uint64_t)k;
    n -= (uint64_t)k;
  }
  return QN_OK;
}

qn_status qn_qnz_writer_begin(const char* path, const qn_tensor* ts, int n, uint64_t meta_reserve,
                              qn_qnz_writer** out) {
  *out = NULL;
  qn_qnz_writer* w = calloc(1, sizeof *w);
  if (!w) return qn_error(QN_ENOMEM, "out of memory");
  w->fd = -1;
  size_t plen = strlen(path);
  w->path = malloc(plen + 1);
  w->tmp = malloc(plen + 32);
  if (w->path) memcpy(w->path, path, plen + 1);
  if (w->tmp) snprintf(w->tmp, plen + 32, "%s.tmp.%d", path, (int)getpid());
  w->n = n;
  w->ts = malloc(sizeof *w->ts * (size_t)(n > 0 ? n : 1));
  w->offsets = malloc(sizeof(uint64_t) * (size_t)(n > 0 ? n : 1));
  w->written = calloc((size_t)(n > 0 ? n : 1), 1);
  if (!w->path || !w->tmp || !w->ts || !w->offsets || !w->written) {
    qn_qnz_writer_abort(w);
    return qn_error(QN_ENOMEM, "out of memory");
  }
  memcpy(w->ts, ts, sizeof *w->ts * (size_t)n);
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    off = align_up(off, QN_QNZ_ALIGN);
    w->offsets[i] = off;
    off += ts[i].nbytes;
  }
  w->data_len = off;
  char* h = header_json(w, NULL);
  if (!h) {
    qn_qnz_writer_abort(w);
    return qn_error(QN_ENOMEM, "out of memory building the header");
  }
  uint64_t need = strlen(h) + meta_reserve + 64;
  free(h);
  w->header_len = align_up(8 + need, QN_QNZ_ALIGN) - 8;
  w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (w->fd < 0) {
    qn_status st = qn_error(QN_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
    qn_qnz_writer_abort(w);
    return st;
  }
  /* size the file now so a full disk shows up early */
  if (ftruncate(w->fd, (off_t)(8 + w->header_len + w->data_len)) != 0) {
    qn_status st = qn_error(QN_EIO, "%s: cannot size the file: %s", w->tmp, strerror(errno));
    qn_qnz_writer_abort(w);
    return st;
  }
  *out = w;
  return QN_OK;
}

qn_status qn_qnz_writer_write(qn_qnz_writer* w, int i, const void* data) {
  if (i < 0 || i >= w->n) return qn_error(QN_EINVAL, "qnz writer: tensor index %d", i);
  QN_TRY(write_all(w, data, w->ts[i].nbytes, 8 + w->header_len + w->offsets[i]));
  w->written[i] = 1;
  return QN_OK;
}

qn_status qn_qnz_writer_finish(qn_qnz_writer* w, const char* metadata_json) {
  qn_status st = QN_OK;
  for (int i = 0; i < w->n && st == QN_OK; i++)
    if (!w->written[i])
      st = qn_error(QN_EINVAL, "qnz writer: tensor '%s' was never written", w->ts[i].name);
  char* h = NULL;
  if (st == QN_OK) {
    h = header_json(w, metadata_json);
    if (!h) st = qn_error(QN_EINVAL, "qnz writer: metadata is not a JSON object");
  }
  if (st == QN_OK && strlen(h) > w->header_len)
    st = qn_error(QN_EINVAL, "qnz writer: header of %zu bytes exceeds the %llu reserved", strlen(h),
                  (unsigned long long)w->header_len);
  if (st == QN_OK) {
    uint8_t* buf = malloc(8 + w->header_len);
    if (!buf) {
      st = qn_error(QN_ENOMEM, "out of memory");
    } else {
      uint64_t n = w->header_len;
      for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(n >> (8 * b));
      size_t hl = strlen(h);
      memcpy(buf + 8, h, hl);
      memset(buf + 8 + hl, ' ', w->header_len - hl); /* the format allows space padding */
      st = write_all(w, buf, 8 + w->header_len, 0);
      free(buf);
    }
  }
  free(h);
  if (st == QN_OK && fsync(w->fd) != 0)
    st = qn_error(QN_EIO, "%s: fsync failed: %s", w->tmp, strerror(errno));
  if (st == QN_OK) {
    int rc = close(w->fd);
    w->fd = -1;
    if (rc != 0) st = qn_error(QN_EIO, "%s: close failed: %s", w->tmp, strerror(errno));
  }
  if (st == QN_OK && rename(w->tmp, w->path) != 0)
    st = qn_error(QN_EIO, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
  if (st == QN_OK) w->tmp[0] = '\0'; /* nothing left to remove */
  qn_qnz_writer_abort(w);
  return st;
}

void qn_qnz_writer_abort(qn_qnz_writer* w) {
  if (!w) return;
  if (w->fd >= 0) close(w->fd);
  if (w->tmp && w->tmp[0]) unlink(w->tmp);
  free(w->path);
  free(w->tmp);
  free(w->ts);
  free(w->offsets);
  free(w->written);
  free(w);
}
