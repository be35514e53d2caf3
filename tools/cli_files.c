/* cli_files.c: file helpers the subcommands share: reading a text, mkdir -p, joining paths
 * and writing an output file atomically (temporary file, fsync, rename). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

char* cli_read_text(const char* cmd, const char* path, size_t* len) {
  struct stat sb;
  errno = 0;
  if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fprintf(stderr, "quench %s: %s: %s\n", cmd, path,
            errno ? strerror(errno) : "not a regular file");
    return NULL;
  }
  FILE* f = fopen(path, "rb");
  char* b = f ? malloc((size_t)sb.st_size + 1) : NULL;
  size_t n = b ? fread(b, 1, (size_t)sb.st_size, f) : 0;
  if (f) fclose(f);
  if (!b || n != (size_t)sb.st_size) {
    fprintf(stderr, "quench %s: %s: cannot read\n", cmd, path);
    free(b);
    return NULL;
  }
  b[n] = 0;
  *len = n;
  return b;
}

bool cli_make_dirs(const char* cmd, const char* path) {
  size_t n = strlen(path);
  char* p = malloc(n + 1);
  if (!p) return false;
  memcpy(p, path, n + 1);
  bool ok = true;
  for (size_t i = 1; i <= n && ok; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char c = p[i];
    p[i] = 0;
    struct stat sb;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      fprintf(stderr, "quench %s: cannot create directory %s: %s\n", cmd, p, strerror(errno));
      ok = false;
    } else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      fprintf(stderr, "quench %s: %s is not a directory\n", cmd, p);
      ok = false;
    }
    p[i] = c;
  }
  free(p);
  return ok;
}

char* cli_join_path(const char* dir, const char* name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char* p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

bool cli_write_atomic(const char* cmd, const char* dir, const char* name, cli_writer_fn fn,
                      const void* doc) {
  char* path = cli_join_path(dir, name);
  char* tmp = cli_join_path(dir, ".quench-tmp-XXXXXX");
  bool ok = false;
  int fd = path && tmp ? mkstemp(tmp) : -1;
  FILE* f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (f) {
    mode_t mask = umask(0);
    umask(mask); /* mkstemp makes 0600; give the file the usual permissions */
    ok = fn(f, doc) && fflush(f) == 0 && fsync(fd) == 0 && fchmod(fd, 0666 & ~mask) == 0;
    ok = (fclose(f) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
  } else if (fd >= 0) {
    close(fd);
  }
  if (!ok) {
    fprintf(stderr, "quench %s: cannot write %s: %s\n", cmd, path ? path : name, strerror(errno));
    if (fd >= 0) unlink(tmp);
  }
  free(path);
  free(tmp);
  return ok;
}
