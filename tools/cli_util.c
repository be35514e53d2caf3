/* cli_util.c: argument parsing, errors and the progress bar for the quench CLI. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_fail(const char* cmd, qn_status st) {
  const char* msg = qn_last_error();
  fprintf(stderr, "quench %s: %s\n", cmd, msg && *msg ? msg : qn_status_name(st));
  return 1;
}

int cli_usage_error(const char* cmd, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "quench %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n(see 'quench help %s')\n", cmd);
  va_end(ap);
  return 2;
}

const char* cli_value(const char* cmd, int argc, char** argv, int* i) {
  if (*i + 1 >= argc) {
    cli_usage_error(cmd, "option %s needs a value", argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

bool cli_int(const char* cmd, const char* opt, const char* v, long lo, long hi, long* out) {
  char* end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) {
    cli_usage_error(cmd, "%s: '%s' is not an integer in [%ld, %ld]", opt, v, lo, hi);
    return false;
  }
  *out = x;
  return true;
}

bool cli_float(const char* cmd, const char* opt, const char* v, double lo, double hi, double* out) {
  char* end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !(x >= lo && x <= hi)) {
    cli_usage_error(cmd, "%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    return false;
  }
  *out = x;
  return true;
}

int cli_progress(void* user, const char* stage, int64_t done, int64_t total) {
  (void)user;
  if (!isatty(STDERR_FILENO) || total <= 0) return 0;
  const int width = 30;
  int fill = (int)(width * done / total);
  fprintf(stderr, "\r%-12s [", stage);
  for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
  fprintf(stderr, "] %3d%% %lld/%lld", (int)(100 * done / total), (long long)done,
          (long long)total);
  if (done >= total) fputc('\n', stderr);
  fflush(stderr);
  return 0;
}

void cli_json_str(FILE* f, const char* s) {
  fputc('"', f);
  for (const unsigned char* p = (const unsigned char*)s; p && *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", f);
    else if (*p == '\t')
      fputs("\\t", f);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}
