/* cmd_report.c: `quench report`: quantizes a model to each scheme of a list, compares each
 * with the base model on a text (perplexity, KL divergence, top-1 agreement) and writes
 * DIR/report.md (a Markdown table), DIR/report.json (the same rows) and DIR/kld_vs_bpw.svg
 * (mean KLD, log scale, against bits per weight). The work is library calls; this file
 * parses the arguments and formats the results. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "svg_plot.h"

static const char* const C = "report";

/* Parsed command line. */
typedef struct report_args {
  const char* model;   /* -m: source model */
  const char* text;    /* -f: evaluation text */
  const char* schemes; /* --schemes: comma-separated list */
  const char* out_dir; /* -o: output directory */
  const char* tok;     /* --tokenizer: llama2.c tokenizer.bin, or NULL */
  const char* sep;     /* --sep: document separator (default <|endoftext|> without --ctx) */
  long ctx, chunks;    /* --ctx window tokens, --chunks window count (0 = off / all) */
  long threads;        /* -t (0 = all cores) */
  bool search_all;     /* --search: error-minimising scale search for every scheme */
  bool json;           /* --json: print report.json on stdout too */
} report_args;

/* One scheme of the list and what it measured. */
typedef struct report_row {
  char scheme[32];       /* scheme name as passed to qn_quantize */
  bool search;           /* error-minimising scale search */
  char label[48];        /* scheme, plus "+search" when search */
  char* qnz_path;        /* DIR/<label>.qnz, malloc'ed */
  double bpw;            /* bits per weight over the 2-D weights, scales included */
  uint64_t bytes;        /* size of the .qnz file */
  uint64_t bytes_source; /* size of the source model file(s) */
  double quant_s;        /* seconds spent quantizing */
  qn_cmp_result cmp;     /* comparison with the base model */
} report_row;

/* ---- arguments ------------------------------------------------------------------------- */

static int parse_args(int argc, char** argv, report_args* a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    const char* o = argv[i];
    const char* v;
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      cli_print_help(C);
      return 0;
    } else if (!strcmp(o, "--json")) {
      a->json = true;
      continue;
    } else if (!strcmp(o, "--search")) {
      a->search_all = true;
      continue;
    }
    if (!(v = cli_value(C, argc, argv, &i))) return 2;
    if (!strcmp(o, "-m") || !strcmp(o, "--model"))
      a->model = v;
    else if (!strcmp(o, "-f") || !strcmp(o, "--file"))
      a->text = v;
    else if (!strcmp(o, "--schemes") || !strcmp(o, "-s"))
      a->schemes = v;
    else if (!strcmp(o, "-o") || !strcmp(o, "--output"))
      a->out_dir = v;
    else if (!strcmp(o, "--tokenizer"))
      a->tok = v;
    else if (!strcmp(o, "--sep"))
      a->sep = v;
    else if (!strcmp(o, "--ctx")) {
      if (!cli_int(C, o, v, 2, 1 << 20, &a->ctx)) return 2;
    } else if (!strcmp(o, "--chunks")) {
      if (!cli_int(C, o, v, 1, 1 << 30, &a->chunks)) return 2;
    } else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) {
      if (!cli_int(C, o, v, 1, 256, &a->threads)) return 2;
    } else
      return cli_usage_error(C, "unknown option '%s'", o);
  }
  if (!a->model) return cli_usage_error(C, "no model given (-m MODEL)");
  if (!a->text) return cli_usage_error(C, "no text given (-f TEXT)");
  if (!a->schemes) return cli_usage_error(C, "no schemes given (--schemes LIST)");
  if (!a->out_dir || !*a->out_dir) return cli_usage_error(C, "no output directory given (-o DIR)");
  if (a->ctx && a->sep) return cli_usage_error(C, "give either --ctx or --sep, not both");
  if (a->chunks && !a->ctx) return cli_usage_error(C, "--chunks needs --ctx");
  if (!a->ctx && !a->sep) a->sep = "<|endoftext|>";
  return -1; /* parsed; go on */
}

static bool scheme_known(const char* name) {
  qn_scheme_info si;
  for (int i = 0; qn_scheme_at(i, &si); i++)
    if (!strcmp(si.name, name)) return true;
  return false;
}

static int unknown_scheme(const char* name) {
  fprintf(stderr, "quench %s: unknown scheme '%s'; valid schemes:", C, name);
  qn_scheme_info si;
  for (int i = 0; qn_scheme_at(i, &si); i++) fprintf(stderr, "%s %s", i ? "," : "", si.name);
  fprintf(stderr, " (append +search for the error-minimising scale search)\n");
  return 2;
}

/* Splits the scheme list into rows (names checked, duplicates refused). */
static int parse_schemes(const report_args* a, report_row** rows_out, int* n_out) {
  size_t len = strlen(a->schemes);
  int cap = 1;
  for (size_t i = 0; i < len; i++) cap += a->schemes[i] == ',';
  report_row* rows = calloc((size_t)cap, sizeof *rows);
  if (!rows) return cli_usage_error(C, "out of memory");
  int n = 0;
  const char* p = a->schemes;
  for (;;) {
    const char* end = strchr(p, ',');
    size_t k = end ? (size_t)(end - p) : strlen(p);
    while (k && (*p == ' ' || *p == '\t')) p++, k--;
    while (k && (p[k - 1] == ' ' || p[k - 1] == '\t')) k--;
    report_row* r = &rows[n];
    static const char suffix[] = "+search";
    size_t sl = sizeof suffix - 1;
    bool search = k > sl && !memcmp(p + k - sl, suffix, sl);
    size_t nk = search ? k - sl : k;
    if (!nk) {
      free(rows);
      return cli_usage_error(C, "--schemes: empty entry in '%s'", a->schemes);
    }
    if (nk >= sizeof r->scheme) {
      fprintf(stderr, "quench %s: unknown scheme '%.*s'\n", C, (int)nk, p);
      free(rows);
      return 2;
    }
    memcpy(r->scheme, p, nk);
    r->scheme[nk] = 0;
    r->search = search || a->search_all;
    if (!scheme_known(r->scheme)) {
      int rc = unknown_scheme(r->scheme);
      free(rows);
      return rc;
    }
    snprintf(r->label, sizeof r->label, "%s%s", r->scheme, r->search ? "+search" : "");
    for (int j = 0; j < n; j++)
      if (!strcmp(rows[j].label, r->label)) {
        free(rows);
        return cli_usage_error(C, "--schemes: '%s' is listed twice", r->label);
      }
    n++;
    if (!end) break;
    p = end + 1;
  }
  *rows_out = rows;
  *n_out = n;
  return -1;
}

/* ---- files ------------------------------------------------------------------------------ */

static char* read_text(const char* path, size_t* len) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    fprintf(stderr, "quench %s: %s: %s\n", C, path, strerror(errno));
    return NULL;
  }
  if (!S_ISREG(sb.st_mode)) {
    fprintf(stderr, "quench %s: %s: not a regular file\n", C, path);
    return NULL;
  }
  FILE* f = fopen(path, "rb");
  char* b = f ? malloc((size_t)sb.st_size + 1) : NULL;
  size_t n = b ? fread(b, 1, (size_t)sb.st_size, f) : 0;
  if (!b || n != (size_t)sb.st_size) {
    fprintf(stderr, "quench %s: %s: cannot read: %s\n", C, path, f ? "read error" : strerror(errno));
    free(b);
    if (f) fclose(f);
    return NULL;
  }
  fclose(f);
  b[n] = 0;
  *len = n;
  return b;
}

/* mkdir -p: creates path and its missing parents; false and a message on failure. */
static bool make_dirs(const char* path) {
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
      fprintf(stderr, "quench %s: cannot create directory %s: %s\n", C, p, strerror(errno));
      ok = false;
    } else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
      fprintf(stderr, "quench %s: %s is not a directory\n", C, p);
      ok = false;
    }
    p[i] = c;
  }
  free(p);
  return ok;
}

static char* join_path(const char* dir, const char* name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char* p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

/* Checks that files can be created in dir before any long work starts. */
static bool dir_writable(const char* dir) {
  char* probe = join_path(dir, ".quench-report-XXXXXX");
  if (!probe) return false;
  int fd = mkstemp(probe);
  if (fd < 0) {
    fprintf(stderr, "quench %s: cannot write in %s: %s\n", C, dir, strerror(errno));
    free(probe);
    return false;
  }
  close(fd);
  unlink(probe);
  free(probe);
  return true;
}

typedef struct report_doc report_doc;
typedef bool (*writer_fn)(FILE* f, const report_doc* d);

/* Writes DIR/name through a temporary file in DIR, flushed and renamed when complete. */
static bool write_atomic(const char* dir, const char* name, writer_fn fn, const report_doc* d) {
  char* path = join_path(dir, name);
  char* tmp = join_path(dir, ".report-tmp-XXXXXX");
  bool ok = false;
  int fd = path && tmp ? mkstemp(tmp) : -1;
  FILE* f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (f) {
    mode_t mask = umask(0);
    umask(mask); /* mkstemp makes 0600; give the file the usual permissions */
    ok = fn(f, d) && fflush(f) == 0 && fsync(fd) == 0 && fchmod(fd, 0666 & ~mask) == 0;
    ok = (fclose(f) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
  } else if (fd >= 0) {
    close(fd);
  }
  if (!ok) {
    fprintf(stderr, "quench %s: cannot write %s: %s\n", C, path ? path : name, strerror(errno));
    if (fd >= 0) unlink(tmp);
  }
  free(path);
  free(tmp);
  return ok;
}
