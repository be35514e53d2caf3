/* cmd_report.c: `quench report`: quantizes a model to each entry of a list -- a scheme and
 * optionally a weight method, SCHEME[+search][:METHOD] -- compares each with the base model on
 * a text (perplexity, KL divergence, top-1 agreement) and writes DIR/report.md (a Markdown
 * table), DIR/report.json (the same rows) and DIR/kld_vs_bpw.svg (mean KLD, log scale, against
 * bits per weight; coloured by method when the list has several). The work is library calls;
 * this file parses the arguments and formats the results. */
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
  const char* schemes; /* --schemes: comma-separated SCHEME[+search][:METHOD] entries */
  const char* out_dir; /* -o: output directory */
  const char* tok;     /* --tokenizer: llama2.c tokenizer.bin, or NULL */
  const char* sep;     /* --sep: document separator (default <|endoftext|> without --ctx) */
  long ctx, chunks;    /* --ctx window tokens, --chunks window count (0 = off / all) */
  long threads;        /* -t (0 = all cores) */
  const char* calib;   /* --calib: calibration text of the imp/gptq/awq methods, or NULL */
  long calib_tokens;   /* --calib-tokens (0 = each method's default) */
  bool act_order;      /* --act-order: GPTQ column order by decreasing Hessian diagonal */
  bool search_all;     /* --search: error-minimising scale search for every scheme */
  bool json;           /* --json: print report.json on stdout too */
} report_args;

/* Weight methods an entry may name after ':' (qn_quantize_opts.method), in plot colour order. */
static const char* const k_methods[] = {"rtn", "search", "imp", "gptq", "awq", "awq+gptq"};
#define N_METHODS 6

/* One entry of the list and what it measured. */
typedef struct report_row {
  char scheme[32];       /* scheme name as passed to qn_quantize */
  bool search;           /* error-minimising scale search (group scales of GPTQ too) */
  int method;            /* index into k_methods ("search" entries: rtn with search set) */
  char label[64];        /* SCHEME[+search][:METHOD] as the file name and the plot show it */
  char* qnz_path;        /* DIR/<label>.qnz, malloc'ed */
  double bpw;            /* bits per weight over the 2-D weights, scales included */
  uint64_t bytes;        /* size of the .qnz file */
  uint64_t bytes_source; /* size of the source model file(s) */
  double quant_s;        /* seconds spent quantizing */
  double decode_tps;     /* greedy decode tokens/s of the quantized model (64 tokens) */
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
    } else if (!strcmp(o, "--act-order")) {
      a->act_order = true;
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
    } else if (!strcmp(o, "--calib")) {
      a->calib = v;
    } else if (!strcmp(o, "--calib-tokens")) {
      if (!cli_int(C, o, v, 64, 2000000000L, &a->calib_tokens)) return 2;
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
  fprintf(stderr,
          " (append +search for the error-minimising scale search, :METHOD for a weight "
          "method)\n");
  return 2;
}

/* Index of a method name in k_methods, or -1. */
static int method_index(const char* name, size_t n) {
  for (int i = 0; i < N_METHODS; i++)
    if (strlen(k_methods[i]) == n && !memcmp(k_methods[i], name, n)) return i;
  return -1;
}

/* Splits ":METHOD" off the end of the entry p[0..*k); -1 if good, else the exit code. */
static int parse_method(const report_args* a, const char* p, size_t* k, report_row* r) {
  const char* colon = memchr(p, ':', *k);
  r->method = 0;
  if (!colon) return -1;
  size_t ml = *k - (size_t)(colon - p) - 1;
  r->method = method_index(colon + 1, ml);
  if (r->method < 0) {
    fprintf(stderr, "quench %s: unknown method '%.*s' in '%.*s'; methods:", C, (int)ml, colon + 1,
            (int)*k, p);
    for (int i = 0; i < N_METHODS; i++) fprintf(stderr, "%s %s", i ? "," : "", k_methods[i]);
    fprintf(stderr, "\n");
    return 2;
  }
  if (r->method >= 2 && !a->calib)
    return cli_usage_error(C, "--schemes: method '%s' needs calibration text: give --calib FILE",
                           k_methods[r->method]);
  *k = (size_t)(colon - p);
  return -1;
}

/* Parses the entry p[0..k) ("name", "name+search", either with ":method") into rows[n],
 * checking it against the scheme and method tables and rows[0..n); -1 if good, else the exit
 * code (message printed). */
static int parse_entry(const report_args* a, const char* p, size_t k, report_row* rows, int n) {
  while (k && (*p == ' ' || *p == '\t')) p++, k--;
  while (k && (p[k - 1] == ' ' || p[k - 1] == '\t')) k--;
  report_row* r = &rows[n];
  int mrc = parse_method(a, p, &k, r);
  if (mrc >= 0) return mrc;
  static const char suffix[] = "+search";
  size_t sl = sizeof suffix - 1;
  bool search = k > sl && !memcmp(p + k - sl, suffix, sl);
  size_t nk = search ? k - sl : k;
  if (!nk) return cli_usage_error(C, "--schemes: empty entry in '%s'", a->schemes);
  if (nk >= sizeof r->scheme) {
    fprintf(stderr, "quench %s: unknown scheme '%.*s'\n", C, (int)nk, p);
    return 2;
  }
  memcpy(r->scheme, p, nk);
  r->scheme[nk] = 0;
  r->search = search || a->search_all || r->method == 1 || r->method == 2;
  if (r->method == 1) r->method = 0; /* ":search" is rtn with the search, as "+search" */
  if (!scheme_known(r->scheme)) return unknown_scheme(r->scheme);
  bool plus = r->search && r->method != 2; /* imp always searches */
  if (r->method)
    snprintf(r->label, sizeof r->label, "%s%s:%s", r->scheme, plus ? "+search" : "",
             k_methods[r->method]);
  else
    snprintf(r->label, sizeof r->label, "%s%s", r->scheme, plus ? "+search" : "");
  for (int j = 0; j < n; j++)
    if (!strcmp(rows[j].label, r->label))
      return cli_usage_error(C, "--schemes: '%s' is listed twice", r->label);
  return -1;
}

/* Splits the scheme list into rows (names checked, duplicates refused); -1 if good, else
 * the exit code (message printed). */
static int parse_schemes(const report_args* a, report_row** rows_out, int* n_out) {
  size_t len = strlen(a->schemes);
  int cap = 1;
  for (size_t i = 0; i < len; i++) cap += a->schemes[i] == ',';
  report_row* rows = calloc((size_t)cap, sizeof *rows);
  if (!rows) return cli_usage_error(C, "out of memory");
  int n = 0, rc = -1;
  for (const char* p = a->schemes; rc < 0;) {
    const char* end = strchr(p, ',');
    rc = parse_entry(a, p, end ? (size_t)(end - p) : strlen(p), rows, n);
    if (rc >= 0) break;
    n++;
    if (!end) break;
    p = end + 1;
  }
  if (rc >= 0) {
    free(rows);
    return rc;
  }
  *rows_out = rows;
  *n_out = n;
  return -1;
}

/* ---- files ------------------------------------------------------------------------------ */

/* Checks that files can be created in dir before any long work starts. */
static bool dir_writable(const char* dir) {
  char* probe = cli_join_path(dir, ".quench-report-XXXXXX");
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

/* ---- the report ------------------------------------------------------------------------- */

/* Everything the three output files show. */
struct report_doc {
  const report_args* a;   /* command-line options */
  const report_row* rows; /* [n_rows] measured schemes, in the order given */
  int n_rows;
  char* command;        /* the command line, shell-quoted, malloc'ed */
  char date[40];        /* UTC date and time of the run */
  char convention[320]; /* how the text was split and scored */
  qn_model_info info;   /* the base model */
};

/* Appends s to the command line, quoted for a POSIX shell when needed. */
static void shell_quote(char* out, const char* s) {
  out += strlen(out);
  bool plain = *s != 0;
  for (const char* p = s; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./,:=+@%-", *p))
      plain = false;
  if (plain) {
    strcpy(out, s);
    return;
  }
  *out++ = '\'';
  for (const char* p = s; *p; p++) {
    if (*p == '\'') {
      memcpy(out, "'\\''", 4);
      out += 4;
    } else {
      *out++ = *p;
    }
  }
  *out++ = '\'';
  *out = 0;
}

static char* command_line(int argc, char** argv) {
  size_t n = 32;
  for (int i = 0; i < argc; i++) n += 4 * strlen(argv[i]) + 3;
  char* s = malloc(n);
  if (!s) return NULL;
  strcpy(s, "quench report");
  for (int i = 0; i < argc; i++) {
    strcat(s, " ");
    shell_quote(s, argv[i]);
  }
  return s;
}

static void describe_convention(report_doc* d, const qn_cmp_result* r) {
  const report_args* a = d->a;
  if (a->ctx)
    snprintf(d->convention, sizeof d->convention,
             "windows: non-overlapping windows of %ld tokens, each scored from position 0 "
             "without BOS%s; %d windows, %lld scored tokens",
             a->ctx, a->chunks ? " (the first --chunks windows only)" : "", r->n_docs,
             (long long)r->tokens);
  else
    snprintf(d->convention, sizeof d->convention,
             "per document: split on `%s`, each document scored with BOS + full context; "
             "%d documents, %lld scored tokens",
             a->sep, r->n_docs, (long long)r->tokens);
}

static const char* base_name(const char* path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--; /* "dir/" names dir */
  const char* b = path;
  for (size_t i = 0; i + 1 < n; i++)
    if (path[i] == '/') b = path + i + 1;
  return b;
}

static double mib(uint64_t bytes) { return (double)bytes / 1048576.0; }

/* The weight method of a row as the table shows it: "rtn", "search", "imp", "gptq+search"... */
static const char* method_label(const report_row* r, char* buf, size_t n) {
  if (r->method == 0) return r->search ? "search" : "rtn";
  snprintf(buf, n, "%s%s", k_methods[r->method], r->search && r->method != 2 ? "+search" : "");
  return buf;
}

/* True when some row names a method beyond rtn / search. */
static bool any_method(const report_doc* d) {
  for (int i = 0; i < d->n_rows; i++)
    if (d->rows[i].method) return true;
  return false;
}
static double ratio(const report_row* r) {
  return r->bytes ? (double)r->bytes_source / (double)r->bytes : 0.0;
}
static double delta_pct(const report_row* r) {
  return 100.0 * (r->cmp.ppl_quant - r->cmp.ppl_base) / r->cmp.ppl_base;
}

/* The Markdown table alone (also printed on stdout). */
static bool write_table(FILE* f, const report_doc* d) {
  fprintf(f,
          "| scheme | method | bits/weight | file bytes | MiB | ratio vs source | PPL | "
          "delta PPL %% | mean KLD | p99 KLD | top-1 agree %% | decode tok/s | quantize s |\n"
          "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  for (int i = 0; i < d->n_rows; i++) {
    const report_row* r = &d->rows[i];
    char mb[32];
    fprintf(f,
            "| %s | %s | %.3f | %llu | %.3f | %.2fx | %.4f | %+.3f | %.4g | %.4g | %.2f | %.0f | "
            "%.2f |\n",
            r->scheme, method_label(r, mb, sizeof mb), r->bpw, (unsigned long long)r->bytes,
            mib(r->bytes), ratio(r), r->cmp.ppl_quant, delta_pct(r), r->cmp.kld_mean,
            r->cmp.kld_p99, 100.0 * r->cmp.top1_agree, r->decode_tps, r->quant_s);
  }
  return !ferror(f);
}

static bool write_markdown(FILE* f, const void* doc) {
  const report_doc* d = doc;
  const report_args* a = d->a;
  const qn_model_info* in = &d->info;
  const qn_cmp_result* c0 = &d->rows[0].cmp;
  fprintf(f, "# Quantization report: %s\n\n", base_name(a->model));
  fprintf(f, "- Model: `%s` (%s %s; %d layers, dim %d, vocab %d; %lld parameters; %llu bytes)\n",
          a->model, in->format, in->arch, in->n_layers, in->dim, in->vocab_size,
          (long long)in->n_params, (unsigned long long)d->rows[0].bytes_source);
  fprintf(f, "- Text: `%s`\n", a->text);
  fprintf(f, "- Convention: %s\n", d->convention);
  fprintf(f, "- Base model perplexity: %.4f (mean NLL %.5f nats)\n", c0->ppl_base, c0->nll_base);
  if (a->calib) {
    fprintf(f, "- Calibration text (imp, gptq, awq): `%s`, ", a->calib);
    if (a->calib_tokens)
      fprintf(f, "%ld tokens\n", a->calib_tokens);
    else
      fprintf(f, "each method's default token count\n");
  }
  fprintf(f, "- Date: %s; quench %s\n", d->date, QUENCH_VERSION);
  fprintf(f, "- Command:\n\n```sh\n%s\n```\n\n", d->command);
  write_table(f, d);
  fprintf(f,
          "\nbits/weight: stored bits per weight over the 2-D weights, scales and zero-points "
          "included. file bytes: size of the .qnz (all tensors and the header); ratio: source "
          "file size / .qnz size. delta PPL: (PPL - base PPL) / base PPL. KLD: "
          "KL(P_base || P_quant) of the next-token distributions in nats, mean and 99th "
          "percentile over the scored positions. top-1 agree: positions where both models' "
          "most likely token is the same. decode tok/s: 64 greedy tokens of the .qnz model on this "
          "machine with the current (reference) kernels. method: rtn = absmax round-to-nearest; "
          "search = error-minimising scale search per group; imp = the search weighted by each "
          "input channel's activation energy on the calibration text; gptq = GPTQ "
          "error-compensating quantization layer by layer; awq = activation-aware per-channel "
          "scaling (alpha searched per layer input) and clipping; awq+gptq = AWQ's scaling, then "
          "GPTQ; +search: group scales by the search.\n\n"
          "![mean KLD against bits per weight](kld_vs_bpw.svg)\n");
  return !ferror(f);
}

/* Writes v with printf format fmt, or null when it is not finite. */
static void json_num(FILE* f, const char* key, const char* fmt, double v, bool last) {
  fprintf(f, "\"%s\": ", key);
  if (isfinite(v))
    fprintf(f, fmt, v);
  else
    fputs("null", f);
  fputs(last ? "" : ", ", f);
}

static void json_row(FILE* f, const report_row* r) {
  fputs("    {\"scheme\": ", f);
  cli_json_str(f, r->scheme);
  char mb[32];
  fputs(", \"method\": ", f);
  cli_json_str(f, method_label(r, mb, sizeof mb));
  fprintf(f, ", \"search\": %s, \"label\": ", r->search ? "true" : "false");
  cli_json_str(f, r->label);
  fputs(", \"file\": ", f);
  cli_json_str(f, r->qnz_path);
  fprintf(f, ", \"bytes\": %llu, ", (unsigned long long)r->bytes);
  json_num(f, "mib", "%.6f", mib(r->bytes), false);
  json_num(f, "bpw", "%.4f", r->bpw, false);
  json_num(f, "ratio", "%.4f", ratio(r), false);
  json_num(f, "ppl", "%.6f", r->cmp.ppl_quant, false);
  json_num(f, "ppl_base", "%.6f", r->cmp.ppl_base, false);
  json_num(f, "delta_ppl", "%.6f", r->cmp.ppl_quant - r->cmp.ppl_base, false);
  json_num(f, "delta_ppl_pct", "%.4f", delta_pct(r), false);
  json_num(f, "kld_mean", "%.8g", r->cmp.kld_mean, false);
  json_num(f, "kld_p99", "%.8g", r->cmp.kld_p99, false);
  json_num(f, "kld_max", "%.8g", r->cmp.kld_max, false);
  json_num(f, "top1_agree", "%.6f", r->cmp.top1_agree, false);
  fprintf(f, "\"tokens\": %lld, ", (long long)r->cmp.tokens);
  json_num(f, "quantize_seconds", "%.3f", r->quant_s, false);
  json_num(f, "decode_tps", "%.2f", r->decode_tps, false);
  json_num(f, "eval_seconds", "%.3f", r->cmp.seconds, true);
  fputs("}", f);
}

static bool write_json(FILE* f, const void* doc) {
  const report_doc* d = doc;
  const report_args* a = d->a;
  const qn_cmp_result* c0 = &d->rows[0].cmp;
  fputs("{\n  \"model\": ", f);
  cli_json_str(f, a->model);
  fputs(",\n  \"text\": ", f);
  cli_json_str(f, a->text);
  fputs(",\n  \"convention\": ", f);
  cli_json_str(f, d->convention);
  fputs(",\n  \"sep\": ", f);
  if (a->sep)
    cli_json_str(f, a->sep);
  else
    fputs("null", f);
  fprintf(f, ",\n  \"ctx\": %ld, \"chunks\": %ld,\n  \"calib\": ", a->ctx, a->chunks);
  if (a->calib)
    cli_json_str(f, a->calib);
  else
    fputs("null", f);
  fprintf(f, ", \"calib_tokens\": %ld,\n  \"date\": ", a->calib_tokens);
  cli_json_str(f, d->date);
  fputs(",\n  \"command\": ", f);
  cli_json_str(f, d->command);
  fprintf(f, ",\n  \"quench_version\": \"%s\",\n  \"base\": {", QUENCH_VERSION);
  json_num(f, "ppl", "%.6f", c0->ppl_base, false);
  json_num(f, "nll", "%.6f", c0->nll_base, false);
  fprintf(f, "\"tokens\": %lld, \"spans\": %d, \"bytes\": %llu, \"params\": %lld},\n",
          (long long)c0->tokens, c0->n_docs, (unsigned long long)d->rows[0].bytes_source,
          (long long)d->info.n_params);
  fputs("  \"rows\": [\n", f);
  for (int i = 0; i < d->n_rows; i++) {
    json_row(f, &d->rows[i]);
    fputs(i + 1 < d->n_rows ? ",\n" : "\n", f);
  }
  fputs("  ]\n}\n", f);
  return !ferror(f);
}

/* Colour group of a row in the plot: its method when the list compares methods, else its
 * scheme family. */
static int scheme_group(const report_row* r, bool by_method) {
  if (by_method) return r->method == 0 && r->search ? 1 : r->method;
  static const char* const prefixes[] = {"f", "bf", "int8", "int4-", "int4a", "fp8"};
  int g = 0;
  for (int i = 0; i < 6; i++)
    if (!strncmp(r->scheme, prefixes[i], strlen(prefixes[i]))) g = i;
  if (r->search) return 6; /* searched scales stand apart from their plain twin */
  return g == 1 ? 0 : g;   /* f16, bf16, f32 together */
}

static bool write_svg(FILE* f, const void* doc) {
  const report_doc* d = doc;
  svg_point* pts = calloc((size_t)d->n_rows, sizeof *pts);
  char(*labels)[96] = calloc((size_t)d->n_rows, sizeof *labels);
  bool by_method = any_method(d);
  if (!pts || !labels) {
    free(pts);
    free(labels);
    return false;
  }
  for (int i = 0; i < d->n_rows; i++) {
    const report_row* r = &d->rows[i];
    bool zero = !(r->cmp.kld_mean > 0);
    snprintf(labels[i], sizeof labels[i], "%s%s", r->label, zero ? " (KLD = 0)" : "");
    pts[i] = (svg_point){r->bpw, r->cmp.kld_mean, labels[i], scheme_group(r, by_method)};
  }
  char title[200], sub[480];
  snprintf(title, sizeof title, "Mean KL divergence vs bits per weight: %s",
           base_name(d->a->model));
  /* colours follow k_methods (svg_plot.c's palette) when methods are compared */
  snprintf(sub, sizeof sub, "%s, %s; base PPL %.4f%s", base_name(d->a->text),
           d->a->ctx ? "fixed windows" : "per document", d->rows[0].cmp.ppl_base,
           by_method ? "; colour: rtn blue, search red, imp green, gptq orange, awq purple, "
                       "awq+gptq brown"
                     : "");
  svg_scatter s = {
      .title = title,
      .subtitle = sub,
      .x_title = "bits per weight (2-D weights, scales and zero-points included)",
      .y_title = "mean KL divergence from the base, nats (log scale)",
      .floor_note =
          "hollow marker: KLD = 0 (same outputs as the base model), drawn at the "
          "bottom of the log axis",
      .y_log = true,
      .width = by_method ? 960 : 720, /* room for the colour legend */
      .height = 480,
      .points = pts,
      .n_points = d->n_rows,
  };
  bool ok = svg_write_scatter(f, &s);
  free(pts);
  free(labels);
  return ok;
}

/* ---- running ---------------------------------------------------------------------------- */

/* Progress callback state: prefixes the library's stage with the scheme. */
typedef struct progress_ctx {
  const char* label; /* scheme label */
  char stage[96];    /* "<label> <stage>" */
} progress_ctx;

static int on_progress(void* user, const char* stage, int64_t done, int64_t total) {
  progress_ctx* p = user;
  snprintf(p->stage, sizeof p->stage, "%s %s", p->label, stage ? stage : "");
  return cli_progress(NULL, p->stage, done, total);
}

/* Quantizes MODEL to r's scheme and method into r->qnz_path. */
static qn_status quantize_row(const report_args* a, report_row* r) {
  progress_ctx pc = {r->label, ""};
  qn_quantize_opts qo;
  memset(&qo, 0, sizeof qo);
  qo.scheme = r->scheme;
  qo.search = r->search;
  qo.method = k_methods[r->method];
  qo.gptq_act_order = a->act_order;
  /* calibration for the methods that use it (and static activation scales) */
  if (r->method >= 2 || !strncmp(r->scheme, "w8a8-static", 11)) {
    qo.calib_path = a->calib;
    qo.calib_tokens = a->calib_tokens;
  }
  qo.tokenizer_path = a->tok;
  qo.n_threads = (int)a->threads;
  qo.progress = on_progress;
  qo.progress_user = &pc;
  qn_quantize_report qr;
  qn_status st = qn_quantize(a->model, r->qnz_path, &qo, &qr);
  if (st != QN_OK) return st;
  r->bpw = qr.bpw;
  r->bytes = qr.file_bytes_out;
  r->bytes_source = qr.file_bytes_in;
  r->quant_s = qr.seconds;
  qn_quantize_report_free(&qr);
  return QN_OK;
}

/* Decode speed: 64 greedy tokens from BOS (or a one-space prompt without BOS). */
static qn_status decode_speed(qn_model* m, double* tps) {
  qn_sampler_opts so;
  qn_sampler_opts_default(&so);
  so.temperature = 0;
  qn_model_info in;
  qn_model_get_info(m, &in);
  qn_gen_stats gs;
  qn_status st = qn_generate(m, in.bos_id >= 0 ? "" : " ", 64, &so, NULL, NULL, &gs);
  *tps = gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0;
  return st;
}

/* Opens every quantized model and compares them all with base in one pass over the text
 * (the base model runs once per span), then measures each one's decode speed. */
static qn_status compare_all(const report_args* a, qn_model* base, const char* text, size_t len,
                             report_row* rows, int n) {
  qn_model_opts mo = {a->tok, (int)a->threads};
  qn_model** q = calloc((size_t)n, sizeof *q);
  qn_cmp_result* res = calloc((size_t)n, sizeof *res);
  qn_status st = (q && res) ? QN_OK : QN_ENOMEM;
  for (int i = 0; i < n && st == QN_OK; i++) st = qn_model_open(rows[i].qnz_path, &mo, &q[i]);
  progress_ctx pc = {"all schemes", ""};
  qn_ppl_opts po = {(int)a->ctx, (int)a->chunks, a->sep, on_progress, &pc};
  if (st == QN_OK) st = qn_eval_cmp_multi(base, q, n, text, len, &po, res);
  for (int i = 0; i < n && st == QN_OK; i++) {
    rows[i].cmp = res[i];
    st = decode_speed(q[i], &rows[i].decode_tps);
  }
  for (int i = 0; q && i < n; i++) qn_model_free(q[i]);
  free(q);
  free(res);
  return st;
}

static void print_row_line(const report_row* r, int i, int n) {
  fprintf(stderr,
          "[%*d/%d] %-22s %6.3f bpw %9.3f MiB (%5.2fx)  PPL %.4f (%+.2f%%)  KLD %.3g  "
          "top-1 %.2f%%  (%.1f s + %.1f s)\n",
          n >= 10 ? (n >= 100 ? 3 : 2) : 1, i + 1, n, r->label, r->bpw, mib(r->bytes), ratio(r),
          r->cmp.ppl_quant, delta_pct(r), r->cmp.kld_mean, 100.0 * r->cmp.top1_agree, r->quant_s,
          r->cmp.seconds);
}

static void utc_date(char* out, size_t n) {
  time_t t = time(NULL);
  struct tm tm;
  if (gmtime_r(&t, &tm))
    strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
  else
    snprintf(out, n, "unknown");
}

/* Writes the three files; false (message printed) if one could not be written. */
static bool write_outputs(const report_doc* d) {
  return cli_write_atomic(C, d->a->out_dir, "report.md", write_markdown, d) &&
         cli_write_atomic(C, d->a->out_dir, "report.json", write_json, d) &&
         cli_write_atomic(C, d->a->out_dir, "kld_vs_bpw.svg", write_svg, d);
}

static int run_report(const report_args* a, report_row* rows, int n, report_doc* d) {
  size_t len;
  char* text = cli_read_text(C, a->text, &len);
  if (!text) return 1;
  qn_model_opts mo = {a->tok, (int)a->threads};
  qn_model* base = NULL;
  qn_status st = qn_model_open(a->model, &mo, &base);
  if (st != QN_OK) {
    free(text);
    return cli_fail(C, st);
  }
  qn_model_get_info(base, &d->info);
  int rc = 0;
  if (!cli_make_dirs(C, a->out_dir) || !dir_writable(a->out_dir)) rc = 1;
  for (int i = 0; i < n && rc == 0; i++) {
    char name[96];
    snprintf(name, sizeof name, "%s.qnz", rows[i].label);
    rows[i].qnz_path = cli_join_path(a->out_dir, name);
    if (!rows[i].qnz_path) {
      fprintf(stderr, "quench %s: out of memory\n", C);
      rc = 1;
    } else if ((st = quantize_row(a, &rows[i])) != QN_OK) {
      fprintf(stderr, "quench %s: %s: %s\n", C, rows[i].label,
              *qn_last_error() ? qn_last_error() : qn_status_name(st));
      rc = 1;
    }
  }
  if (rc == 0 && (st = compare_all(a, base, text, len, rows, n)) != QN_OK) {
    fprintf(stderr, "quench %s: %s\n", C, *qn_last_error() ? qn_last_error() : qn_status_name(st));
    rc = 1;
  }
  for (int i = 0; i < n && rc == 0; i++) print_row_line(&rows[i], i, n);
  free(text);
  if (rc == 0) {
    d->rows = rows;
    d->n_rows = n;
    describe_convention(d, &rows[0].cmp);
    if (!write_outputs(d)) rc = 1;
  }
  d->info.arch = d->info.format = "?"; /* strings owned by base, freed below */
  qn_model_free(base);
  return rc;
}

int cmd_report(int argc, char** argv) {
  report_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc >= 0) return rc;
  report_row* rows = NULL;
  int n = 0;
  if ((rc = parse_schemes(&a, &rows, &n)) >= 0) return rc;
  report_doc d;
  memset(&d, 0, sizeof d);
  d.a = &a;
  d.command = command_line(argc, argv);
  utc_date(d.date, sizeof d.date);
  rc = d.command ? run_report(&a, rows, n, &d) : cli_usage_error(C, "out of memory");
  if (rc == 0) {
    if (a.json) {
      write_json(stdout, &d);
    } else {
      write_table(stdout, &d);
      printf("\nwrote %s/report.md, %s/report.json and %s/kld_vs_bpw.svg\n", a.out_dir, a.out_dir,
             a.out_dir);
    }
  }
  for (int i = 0; i < n; i++) free(rows[i].qnz_path);
  free(rows);
  free(d.command);
  return rc;
}
