/* cmd_sensitivity.c: `quench sensitivity`: ranks a model's layers (or tensors) by how much
 * quantizing each alone to a scheme moves the next-token distributions (KL divergence from
 * the full-precision model), as a table, DIR/sensitivity.json and a bar chart
 * DIR/sensitivity.svg; with a budget (--target-kld / --max-ppl-increase) and --candidates
 * it runs the mixed-precision search instead and writes DIR/recipe.txt, DIR/mixed.qnz and
 * DIR/mixed_precision.json. The work is library calls (qn_sensitivity,
 * qn_mixed_precision); this file parses the arguments and formats the results. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "svg_bars.h"

static const char* const C = "sensitivity";

/* Parsed command line. */
typedef struct sens_args {
  const char* model;      /* -m: source model */
  const char* text;       /* -f: evaluation text */
  const char* scheme;     /* --scheme: scheme of every variant (sensitivity mode) */
  const char* out_dir;    /* -o: output directory, or NULL */
  const char* tok;        /* --tokenizer: llama2.c tokenizer.bin, or NULL */
  const char* sep;        /* --sep: document separator (default <|endoftext|> without --ctx) */
  const char* candidates; /* --candidates: mixed-precision candidate list */
  long ctx, chunks;       /* --ctx window tokens, --chunks window count (0 = off / all) */
  long threads;           /* -t (0 = all cores) */
  long rounds;            /* --rounds: mixed-precision measurement rounds (0 = default) */
  double target_kld;      /* --target-kld (0 = unset) */
  double max_ppl;         /* --max-ppl-increase, percent (0 = unset) */
  bool by_tensor;         /* --by tensor */
  bool linear;            /* --linear: linear KLD axis in the chart (default log) */
  bool search;            /* --search: error-minimising scale search */
  bool json;              /* --json: JSON on stdout instead of the table */
} sens_args;

static bool mp_mode(const sens_args* a) {
  return a->candidates || a->target_kld > 0 || a->max_ppl > 0;
}

/* ---- arguments ------------------------------------------------------------------------- */

/* A budget option: a number > 0. */
static bool parse_budget(const char* o, const char* v, double* out) {
  if (!cli_float(C, o, v, -1e30, 1e30, out)) return false;
  if (!(*out > 0)) {
    cli_usage_error(C, "%s must be > 0 (got '%s')", o, v);
    return false;
  }
  return true;
}

static int parse_flag(const char* o, sens_args* a) {
  if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
    cli_print_help(C);
    return 0;
  }
  if (!strcmp(o, "--json"))
    a->json = true;
  else if (!strcmp(o, "--search"))
    a->search = true;
  else if (!strcmp(o, "--linear"))
    a->linear = true;
  else
    return 1; /* not a flag */
  return -1;
}

static int parse_option(const char* o, const char* v, sens_args* a) {
  if (!strcmp(o, "-m") || !strcmp(o, "--model"))
    a->model = v;
  else if (!strcmp(o, "-f") || !strcmp(o, "--file"))
    a->text = v;
  else if (!strcmp(o, "-s") || !strcmp(o, "--scheme"))
    a->scheme = v;
  else if (!strcmp(o, "-o") || !strcmp(o, "--output"))
    a->out_dir = v;
  else if (!strcmp(o, "--tokenizer"))
    a->tok = v;
  else if (!strcmp(o, "--sep"))
    a->sep = v;
  else if (!strcmp(o, "--candidates"))
    a->candidates = v;
  else if (!strcmp(o, "--by")) {
    if (strcmp(v, "layer") && strcmp(v, "tensor"))
      return cli_usage_error(C, "--by: '%s' is not 'layer' or 'tensor'", v);
    a->by_tensor = !strcmp(v, "tensor");
  } else if (!strcmp(o, "--ctx")) {
    if (!cli_int(C, o, v, 2, 1 << 20, &a->ctx)) return 2;
  } else if (!strcmp(o, "--chunks")) {
    if (!cli_int(C, o, v, 1, 1 << 30, &a->chunks)) return 2;
  } else if (!strcmp(o, "-t") || !strcmp(o, "--threads")) {
    if (!cli_int(C, o, v, 1, 256, &a->threads)) return 2;
  } else if (!strcmp(o, "--rounds")) {
    if (!cli_int(C, o, v, 1, 64, &a->rounds)) return 2;
  } else if (!strcmp(o, "--target-kld")) {
    if (!parse_budget(o, v, &a->target_kld)) return 2;
  } else if (!strcmp(o, "--max-ppl-increase")) {
    size_t n = strlen(v);
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", (int)(n && v[n - 1] == '%' ? n - 1 : n), v);
    if (!parse_budget(o, buf, &a->max_ppl)) return 2;
  } else
    return cli_usage_error(C, "unknown option '%s'", o);
  return -1;
}

static bool scheme_known(const char* name, size_t n) {
  qn_scheme_info si;
  for (int i = 0; qn_scheme_at(i, &si); i++)
    if (strlen(si.name) == n && !strncmp(si.name, name, n)) return true;
  return false;
}

static int unknown_scheme(const char* opt, const char* name, size_t n) {
  fprintf(stderr, "quench %s: %s: unknown scheme '%.*s'; valid schemes:", C, opt, (int)n, name);
  qn_scheme_info si;
  for (int i = 0; qn_scheme_at(i, &si); i++) fprintf(stderr, "%s %s", i ? "," : "", si.name);
  fputc('\n', stderr);
  return 2;
}

/* Checks every scheme name before any work starts; -1 if all are known. */
static int check_schemes(const sens_args* a) {
  if (a->scheme && !scheme_known(a->scheme, strlen(a->scheme)))
    return unknown_scheme("--scheme", a->scheme, strlen(a->scheme));
  for (const char* p = a->candidates; p;) {
    const char* e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    while (n && *p == ' ') p++, n--;
    while (n && p[n - 1] == ' ') n--;
    if (!n) return cli_usage_error(C, "--candidates: empty entry in '%s'", a->candidates);
    if (!scheme_known(p, n)) return unknown_scheme("--candidates", p, n);
    p = e ? e + 1 : NULL;
  }
  return -1;
}

static int check_args(sens_args* a) {
  if (!a->model) return cli_usage_error(C, "no model given (-m MODEL)");
  if (!a->text) return cli_usage_error(C, "no text given (-f TEXT)");
  if (a->ctx && a->sep) return cli_usage_error(C, "give either --ctx or --sep, not both");
  if (a->chunks && !a->ctx) return cli_usage_error(C, "--chunks needs --ctx");
  if (!a->ctx && !a->sep) a->sep = "<|endoftext|>";
  if (a->out_dir && !*a->out_dir) return cli_usage_error(C, "-o: empty directory name");
  int rc = check_schemes(a);
  if (rc >= 0) return rc;
  if (!mp_mode(a)) {
    if (!a->scheme) return cli_usage_error(C, "no scheme given (--scheme S)");
    if (a->rounds) return cli_usage_error(C, "--rounds needs --target-kld or --max-ppl-increase");
    return -1;
  }
  if (a->scheme)
    return cli_usage_error(C,
                           "--scheme is for the sensitivity table; the mixed-precision search "
                           "takes --candidates");
  if (!a->candidates) return cli_usage_error(C, "no candidate schemes given (--candidates LIST)");
  if (!(a->target_kld > 0) && !(a->max_ppl > 0))
    return cli_usage_error(C,
                           "--candidates needs a budget (--target-kld X or "
                           "--max-ppl-increase P)");
  if (!a->out_dir)
    return cli_usage_error(C, "the mixed-precision search needs an output directory (-o DIR)");
  return -1;
}

static int parse_args(int argc, char** argv, sens_args* a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    int rc = parse_flag(argv[i], a);
    if (rc == 0) return 0;
    if (rc < 0) continue;
    const char* v = cli_value(C, argc, argv, &i);
    if (!v) return 2;
    rc = parse_option(argv[i - 1], v, a);
    if (rc >= 0) return rc;
  }
  return check_args(a);
}

/* ---- files ------------------------------------------------------------------------------ */

static bool write_json_text(FILE* f, const void* doc) {
  char* s = cJSON_Print((const cJSON*)doc);
  bool ok = s && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
  free(s);
  return ok;
}

static bool write_string(FILE* f, const void* doc) { return fputs((const char*)doc, f) >= 0; }

static void fill_eval(const sens_args* a, qn_ppl_opts* e) {
  memset(e, 0, sizeof *e);
  e->ctx = (int)a->ctx;
  e->chunks = (int)a->chunks;
  e->sep = a->ctx ? NULL : a->sep;
  e->progress = cli_progress;
}

static void add_convention(cJSON* o, const sens_args* a) {
  if (a->ctx) {
    cJSON_AddNumberToObject(o, "ctx", (double)a->ctx);
    cJSON_AddNumberToObject(o, "chunks", (double)a->chunks);
  } else {
    cJSON_AddStringToObject(o, "sep", a->sep);
  }
}

/* ---- sensitivity ------------------------------------------------------------------------- */

static cJSON* sens_json(const sens_args* a, const qn_sens_result* r) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "model", a->model);
  cJSON_AddStringToObject(o, "text", a->text);
  cJSON_AddStringToObject(o, "scheme", r->scheme);
  cJSON_AddStringToObject(o, "unit", a->by_tensor ? "tensor" : "layer");
  cJSON_AddBoolToObject(o, "search", a->search);
  add_convention(o, a);
  cJSON_AddNumberToObject(o, "ppl_base", r->ppl_base);
  cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
  cJSON_AddNumberToObject(o, "n_docs", r->n_docs);
  cJSON_AddNumberToObject(o, "seconds", r->seconds);
  cJSON* arr = cJSON_AddArrayToObject(o, "entries");
  for (int i = 0; i < r->n_entries; i++) {
    const qn_sens_entry* e = &r->entries[i];
    cJSON* j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "rank", i + 1);
    cJSON_AddStringToObject(j, "name", e->name);
    cJSON_AddNumberToObject(j, "layer", e->layer);
    cJSON_AddNumberToObject(j, "n_tensors", e->n_tensors);
    cJSON_AddNumberToObject(j, "kld_mean", e->kld_mean);
    cJSON_AddNumberToObject(j, "ppl", e->ppl);
    cJSON_AddNumberToObject(j, "delta_ppl_pct", e->delta_ppl_pct);
    cJSON_AddNumberToObject(j, "top1_agree", e->top1_agree);
    cJSON_AddNumberToObject(j, "bytes", (double)e->bytes);
    cJSON_AddNumberToObject(j, "bytes_f32", (double)e->bytes_f32);
    cJSON_AddItemToArray(arr, j);
  }
  return o;
}

static void print_sens_table(const sens_args* a, const qn_sens_result* r) {
  printf("sensitivity of %s to %s, one %s at a time (the rest at full precision)\n", a->model,
         r->scheme, a->by_tensor ? "tensor" : "layer");
  printf("text %s: %d %s, %lld scored tokens; base PPL %.4f; %.1f s\n\n", a->text, r->n_docs,
         a->ctx ? "windows" : "documents", (long long)r->tokens, r->ppl_base, r->seconds);
  int w = 8;
  for (int i = 0; i < r->n_entries; i++)
    if ((int)strlen(r->entries[i].name) > w) w = (int)strlen(r->entries[i].name);
  printf("%4s  %-*s %7s %10s %12s %9s %9s %8s\n", "rank", w, "name", "tensors", "bytes", "mean KLD",
         "PPL", "dPPL %", "top-1 %");
  for (int i = 0; i < r->n_entries; i++) {
    const qn_sens_entry* e = &r->entries[i];
    printf("%4d  %-*s %7d %10llu %12.6g %9.4f %+9.3f %8.2f\n", i + 1, w, e->name, e->n_tensors,
           (unsigned long long)e->bytes, e->kld_mean, e->ppl, e->delta_ppl_pct,
           100.0 * e->top1_agree);
  }
}

/* The chart document. */
typedef struct sens_chart {
  const sens_args* a;
  const qn_sens_result* r;
} sens_chart;

static bool write_sens_svg(FILE* f, const void* doc) {
  const sens_chart* d = doc;
  const qn_sens_result* r = d->r;
  svg_bar* bars = calloc((size_t)r->n_entries + 1, sizeof *bars);
  char(*vt)[32] = calloc((size_t)r->n_entries + 1, sizeof *vt);
  if (!bars || !vt) {
    free(bars);
    free(vt);
    return false;
  }
  for (int i = 0; i < r->n_entries; i++) {
    snprintf(vt[i], sizeof vt[i], "%.3g", r->entries[i].kld_mean);
    bars[i] = (svg_bar){r->entries[i].name, r->entries[i].kld_mean, vt[i],
                        r->entries[i].layer < 0 ? 1 : 0};
  }
  char title[256], sub[512], note[256];
  const char* base = strrchr(d->a->model, '/');
  snprintf(title, sizeof title, "Sensitivity of %s to %s, per %s", base ? base + 1 : d->a->model,
           r->scheme, d->a->by_tensor ? "tensor" : "layer");
  snprintf(sub, sizeof sub,
           "one %s quantized at a time, the rest full precision; %d %s, %lld tokens",
           d->a->by_tensor ? "tensor" : "layer", r->n_docs, d->a->ctx ? "windows" : "documents",
           (long long)r->tokens);
  snprintf(note, sizeof note,
           "base PPL %.4f; KLD = KL(P_base || P_variant), nats, mean over "
           "positions",
           r->ppl_base);
  svg_hbars c = {title, sub,           "mean KLD from the full-precision model (nats)",
                 note,  !d->a->linear, 0,
                 bars,  r->n_entries};
  bool ok = svg_write_hbars(f, &c);
  free(bars);
  free(vt);
  return ok;
}

static int run_sensitivity(const sens_args* a, const char* text, size_t len) {
  qn_sens_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = a->scheme;
  o.unit = a->by_tensor ? QN_SENS_TENSOR : QN_SENS_LAYER;
  o.search = a->search;
  fill_eval(a, &o.eval);
  o.tokenizer_path = a->tok;
  o.n_threads = (int)a->threads;
  qn_sens_result r;
  qn_status st = qn_sensitivity(a->model, text, len, &o, &r);
  if (st != QN_OK) return cli_fail(C, st);
  cJSON* j = sens_json(a, &r);
  int rc = j ? 0 : 1;
  if (a->json && j)
    write_json_text(stdout, j);
  else
    print_sens_table(a, &r);
  if (a->out_dir && rc == 0) {
    sens_chart ch = {a, &r};
    if (!cli_write_atomic(C, a->out_dir, "sensitivity.json", write_json_text, j) ||
        !cli_write_atomic(C, a->out_dir, "sensitivity.svg", write_sens_svg, &ch))
      rc = 1;
    else if (!a->json)
      printf("\nwrote %s/sensitivity.json and %s/sensitivity.svg\n", a->out_dir, a->out_dir);
  }
  cJSON_Delete(j);
  qn_sens_result_free(&r);
  return rc;
}

/* ---- mixed precision ---------------------------------------------------------------------- */

static double delta_pct(const qn_cmp_result* c) {
  return 100.0 * (c->ppl_quant - c->ppl_base) / c->ppl_base;
}

static cJSON* mp_json(const sens_args* a, const qn_mp_result* r) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "model", a->model);
  cJSON_AddStringToObject(o, "text", a->text);
  add_convention(o, a);
  cJSON* cand = cJSON_AddArrayToObject(o, "candidates");
  for (int c = 0; c < r->n_candidates; c++)
    cJSON_AddItemToArray(cand, cJSON_CreateString(r->candidates[c]));
  if (a->target_kld > 0) cJSON_AddNumberToObject(o, "target_kld", a->target_kld);
  if (a->max_ppl > 0) cJSON_AddNumberToObject(o, "max_ppl_increase_pct", a->max_ppl);
  cJSON_AddNumberToObject(o, "kld_mean", r->cmp.kld_mean);
  cJSON_AddNumberToObject(o, "kld_p99", r->cmp.kld_p99);
  cJSON_AddNumberToObject(o, "kld_predicted", r->kld_predicted);
  cJSON_AddNumberToObject(o, "ppl_base", r->cmp.ppl_base);
  cJSON_AddNumberToObject(o, "ppl", r->cmp.ppl_quant);
  cJSON_AddNumberToObject(o, "delta_ppl_pct", delta_pct(&r->cmp));
  cJSON_AddNumberToObject(o, "top1_agree", r->cmp.top1_agree);
  cJSON_AddNumberToObject(o, "tokens", (double)r->cmp.tokens);
  cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
  cJSON_AddNumberToObject(o, "bytes_smallest", (double)r->bytes_smallest);
  cJSON_AddNumberToObject(o, "bytes_largest", (double)r->bytes_largest);
  cJSON_AddNumberToObject(o, "bpw", r->bpw);
  cJSON_AddNumberToObject(o, "rounds", r->rounds);
  cJSON_AddNumberToObject(o, "seconds", r->seconds);
  cJSON_AddStringToObject(o, "recipe", r->recipe);
  cJSON* ts = cJSON_AddArrayToObject(o, "tensors");
  for (int t = 0; t < r->n_tensors; t++) {
    const qn_mp_tensor* e = &r->tensors[t];
    cJSON* j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", e->name);
    cJSON_AddStringToObject(j, "scheme", e->scheme);
    cJSON_AddNumberToObject(j, "bytes", (double)e->bytes);
    cJSON* k = cJSON_AddObjectToObject(j, "kld");
    for (int c = 0; c < r->n_candidates; c++)
      cJSON_AddNumberToObject(k, r->candidates[c], e->kld[c]);
    cJSON_AddItemToArray(ts, j);
  }
  return o;
}

static void print_mp(const sens_args* a, const qn_mp_result* r) {
  printf("mixed precision for %s on %s\n", a->model, a->text);
  printf("budget:");
  if (a->target_kld > 0) printf(" mean KLD <= %g", a->target_kld);
  if (a->max_ppl > 0) printf(" PPL increase <= %g%%", a->max_ppl);
  printf("\n\nmeasured KLD of each weight alone in each candidate (nats); * = chosen\n");
  int w = 12;
  for (int t = 0; t < r->n_tensors; t++)
    if ((int)strlen(r->tensors[t].name) > w) w = (int)strlen(r->tensors[t].name);
  printf("%-*s", w, "tensor");
  for (int c = 0; c < r->n_candidates; c++) printf(" %14s", r->candidates[c]);
  printf("\n");
  for (int t = 0; t < r->n_tensors; t++) {
    const qn_mp_tensor* e = &r->tensors[t];
    printf("%-*s", w, e->name);
    for (int c = 0; c < r->n_candidates; c++)
      printf(" %13.4g%c", e->kld[c], strcmp(e->scheme, r->candidates[c]) ? ' ' : '*');
    printf("\n");
  }
  const qn_cmp_result* m = &r->cmp;
  printf(
      "\nresult: mean KLD %.6g (predicted %.6g), p99 %.4g; PPL %.4f -> %.4f (%+.3f%%); "
      "top-1 %.2f%%\n",
      m->kld_mean, r->kld_predicted, m->kld_p99, m->ppl_base, m->ppl_quant, delta_pct(m),
      100.0 * m->top1_agree);
  printf(
      "size: %llu bytes of 2-D weights, %.3f bits/weight (smallest candidates: %llu, "
      "largest: %llu); %d measurement round%s, %.1f s\n\n",
      (unsigned long long)r->bytes, r->bpw, (unsigned long long)r->bytes_smallest,
      (unsigned long long)r->bytes_largest, r->rounds, r->rounds == 1 ? "" : "s", r->seconds);
  printf("recipe:\n%s\n", r->recipe);
}

static int run_mixed(const sens_args* a, const char* text, size_t len) {
  char* qnz = cli_join_path(a->out_dir, "mixed.qnz");
  if (!qnz) return cli_usage_error(C, "out of memory");
  qn_quantize_opts q;
  memset(&q, 0, sizeof q);
  q.search = a->search;
  q.tokenizer_path = a->tok;
  q.n_threads = (int)a->threads;
  qn_mp_opts o;
  memset(&o, 0, sizeof o);
  o.candidates = a->candidates;
  o.target_kld = a->target_kld;
  o.max_ppl_increase = a->max_ppl;
  o.max_rounds = (int)a->rounds;
  fill_eval(a, &o.eval);
  o.out_path = qnz;
  o.quantize = &q;
  qn_mp_result r;
  qn_status st = qn_mixed_precision(a->model, text, len, &o, &r);
  if (st != QN_OK) {
    free(qnz);
    return cli_fail(C, st);
  }
  cJSON* j = mp_json(a, &r);
  int rc = j ? 0 : 1;
  if (a->json && j)
    write_json_text(stdout, j);
  else
    print_mp(a, &r);
  if (rc == 0 && (!cli_write_atomic(C, a->out_dir, "recipe.txt", write_string, r.recipe) ||
                  !cli_write_atomic(C, a->out_dir, "mixed_precision.json", write_json_text, j)))
    rc = 1;
  if (rc == 0 && !a->json)
    printf("wrote %s/recipe.txt, %s and %s/mixed_precision.json\n", a->out_dir, qnz, a->out_dir);
  cJSON_Delete(j);
  qn_mp_result_free(&r);
  free(qnz);
  return rc;
}

int cmd_sensitivity(int argc, char** argv) {
  sens_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc >= 0) return rc;
  if (a.out_dir && !cli_make_dirs(C, a.out_dir)) return 1;
  size_t len = 0;
  char* text = cli_read_text(C, a.text, &len);
  if (!text) return 1;
  rc = mp_mode(&a) ? run_mixed(&a, text, len) : run_sensitivity(&a, text, len);
  free(text);
  return rc;
}
