/* testutil.c: helpers shared by the test programs. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char* qt_shared(const char* rel) {
  static char bufs[8][1024];
  static int slot;
  char* b = bufs[slot++ % 8];
  snprintf(b, 1024, "%s/%s", QN_SHARED_DIR, rel);
  struct stat st;
  if (stat(b, &st) != 0) {
    printf("SKIPPED: %s not found (../shared is absent)\n", b);
    return NULL;
  }
  return b;
}

void qt_skip(const char* why) {
  printf("SKIPPED: %s\n", why);
  fflush(stdout);
  exit(QT_SKIP_CODE);
}

const char* qt_write_temp(const void* data, size_t n, const char* suffix) {
  static char bufs[8][256];
  static int slot;
  char* b = bufs[slot++ % 8];
  snprintf(b, 256, "/tmp/qn_test_%d_%d%s", (int)getpid(), slot, suffix ? suffix : "");
  FILE* f = fopen(b, "wb");
  if (!f) return NULL;
  if (n && fwrite(data, 1, n, f) != n) {
    fclose(f);
    return NULL;
  }
  fclose(f);
  return b;
}

char* qt_read_file(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) {
    b[n] = 0;
    if (len) *len = (size_t)n;
  }
  return b;
}
