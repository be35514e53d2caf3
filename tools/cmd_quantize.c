/* cmd_quantize.c: `quench quantize`: model -> .qnz with a per-tensor error table, and the
 * calibration summary table when calibration ran (--calib). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static void list_schemes(void) {
  printf("%-13s %7s  %-58s\n", "scheme", "bpw*", "stored as");
  qn_scheme_info si;
  for (int i = 0; qn_scheme_at(i, &si); i++)
    printf("%-13s %7.3f  %s\n%13s %7s  accuracy: %s\n%13s %7s  kernels: %s\n", si.name, si.bpw,
           si.summary, "", "", si.accuracy, "", "", si.kernels);
  printf(
      "\n* bits per weight for a row of 4096 columns, scales and zero-points included.\n"
      "Norm weights and biases always stay f32.\n");
}

static void print_table(const qn_quantize_report* r) {
  printf("%-30s %-13s %7s %9s %11s %12s\n", "tensor", "scheme", "bpw", "SQNR dB", "max |err|",
         "bytes");
  for (int i = 0; i < r->n_tensors; i++) {
    const qn_quant_tensor_report* t = &r->tensors[i];
    char sq[16];
    if (isfinite(t->sqnr_db))
      snprintf(sq, sizeof sq, "%.2f", t->sqnr_db);
    else
      snprintf(sq, sizeof sq, "exact");
    printf("%-30s %-13s %7.3f %9s %11.3g %12llu\n", t->name, t->scheme, t->bpw, sq, t->max_abs_err,
           (unsigned long long)t->bytes_out);
  }
  struct rusage ru; /* peak memory of this process (ru_maxrss: KiB on Linux) */
  double peak_mib = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
  printf(
      "\nsize: %.2f MiB -> %.2f MiB (%.2fx smaller); %.3f bits/weight over the matrices; "
      "%.2f s, peak RSS %.0f MiB\n",
      r->file_bytes_in / 1048576.0, r->file_bytes_out / 1048576.0,
      r->file_bytes_out ? (double)r->file_bytes_in / (double)r->file_bytes_out : 0.0, r->bpw,
      r->seconds, peak_mib);
}

/* The calibration summary: one row per observed (layer, site). */
static void print_calib(const qn_quantize_report* r) {
  if (!r->n_calib) return;
  printf("\ncalibration: %lld tokens, method %s", (long long)r->calib_tokens, r->calib_method);
  if (!strcmp(r->calib_method, "percentile")) printf(" %g", r->calib_percentile);
  printf(", %.2f s\n", r->calib_seconds);
  bool smooth = false;
  for (int i = 0; i < r->n_calib; i++)
    if (r->calib[i].smooth_alpha >= 0) smooth = true;
  printf("%-6s %-10s %11s %11s %11s %9s%s\n", "layer", "site", "min", "max", "threshold",
         "clipped%", smooth ? "  alpha" : "");
  for (int i = 0; i < r->n_calib; i++) {
    const qn_calib_site_report* c = &r->calib[i];
    char layer[16];
    if (c->layer < 0)
      snprintf(layer, sizeof layer, "head");
    else
      snprintf(layer, sizeof layer, "%d", c->layer);
    printf("%-6s %-10s %11.4g %11.4g %11.4g %9.4f", layer, c->site, c->min, c->max, c->threshold,
           100.0 * c->clipped);
    if (smooth) {
      if (c->smooth_alpha >= 0)
        printf("  %5.2f", c->smooth_alpha);
      else
        printf("  %5s", "-");
    }
    printf("\n");
  }
  if (smooth) printf("(min, max and threshold are those of the smoothed activations x / s)\n");
}

static void print_json(const qn_quantize_report* r, const char* out) {
  printf("{\"output\": ");
  cli_json_str(stdout, out);
  printf(
      ", \"bytes_in\": %llu, \"bytes_out\": %llu, \"ratio\": %.4f, \"bpw\": %.4f, "
      "\"seconds\": %.3f, \"tensors\": [",
      (unsigned long long)r->file_bytes_in, (unsigned long long)r->file_bytes_out,
      r->file_bytes_out ? (double)r->file_bytes_in / (double)r->file_bytes_out : 0.0, r->bpw,
      r->seconds);
  for (int i = 0; i < r->n_tensors; i++) {
    const qn_quant_tensor_report* t = &r->tensors[i];
    printf(
        "%s{\"name\": \"%s\", \"scheme\": \"%s\", \"rows\": %lld, \"cols\": %lld, "
        "\"bpw\": %.4f, \"sqnr_db\": ",
        i ? ", " : "", t->name, t->scheme, (long long)t->rows, (long long)t->cols, t->bpw);
    if (isfinite(t->sqnr_db))
      printf("%.3f", t->sqnr_db);
    else
      printf("null");
    printf(", \"max_abs_err\": %.6g, \"rmse\": %.6g, \"bytes\": %llu}", t->max_abs_err, t->rmse,
           (unsigned long long)t->bytes_out);
  }
  printf("]");
  if (r->n_calib) {
    printf(
        ", \"calib\": {\"method\": \"%s\", \"percentile\": %g, \"tokens\": %lld, "
        "\"fallback_frac\": %.6f, \"seconds\": %.3f, \"sites\": [",
        r->calib_method, r->calib_percentile, (long long)r->calib_tokens, r->calib_fallback,
        r->calib_seconds);
    for (int i = 0; i < r->n_calib; i++) {
      const qn_calib_site_report* c = &r->calib[i];
      printf(
          "%s{\"layer\": %d, \"site\": \"%s\", \"min\": %.6g, \"max\": %.6g, "
          "\"threshold\": %.6g, \"clipped\": %.6g",
          i ? ", " : "", c->layer, c->site, c->min, c->max, c->threshold, c->clipped);
      if (c->smooth_alpha >= 0) printf(", \"alpha\": %.2f", c->smooth_alpha);
      printf("}");
    }
    printf("]}");
  }
  printf("}\n");
}

static void print_warning(void* user, const char* msg) {
  (void)user;
  fprintf(stderr, "quench quantize: warning: %s\n", msg);
}

/* --smooth ALPHA|auto. */
static bool parse_smooth(const char* C, const char* v, qn_quantize_opts* o) {
  if (!strcmp(v, "auto")) {
    o->smooth_auto = true;
    return true;
  }
  char* end;
  double a = strtod(v, &end);
  if (end == v || *end) {
    cli_usage_error(C, "--smooth: '%s' is not a number in [0, 1] or 'auto'", v);
    return false;
  }
  if (!(a >= 0 && a <= 1)) {
    cli_usage_error(C, "--smooth %s is out of range: ALPHA must lie in [0, 1] (or be 'auto')", v);
    return false;
  }
  o->smooth = true;
  o->smooth_alpha = a;
  return true;
}

/* --percentile P with P in (0, 100). */
static bool parse_percentile(const char* C, const char* v, double* out) {
  char* end;
  double p = strtod(v, &end);
  if (end == v || *end || !(p > 0 && p < 100)) {
    cli_usage_error(C, "--percentile: '%s' is not a number in (0, 100), e.g. 99.99", v);
    return false;
  }
  *out = p;
  return true;
}

/* True for the options of `quantize` that take a value (anything else unknown is reported
 * as unknown, not as missing its value). */
static bool takes_value(const char* a) {
  static const char* const k[] = {"-m",
                                  "--model",
                                  "-o",
                                  "--output",
                                  "-s",
                                  "--scheme",
                                  "--recipe",
                                  "--rule",
                                  "--tokenizer",
                                  "-t",
                                  "--threads",
                                  "--calib",
                                  "--method",
                                  "--damp",
                                  "--calib-tokens",
                                  "--calib-ctx",
                                  "--calib-method",
                                  "--percentile",
                                  "--smooth",
                                  "--target-kld",
                                  "--max-ppl-increase",
                                  "--candidates",
                                  "--mp-text",
                                  "--mp-ctx",
                                  "--mp-chunks",
                                  "--mp-sep"};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    if (!strcmp(a, k[i])) return true;
  return false;
}

/* Options of the mixed-precision mode (--target-kld / --max-ppl-increase). */
typedef struct mp_args {
  double target_kld;      /* budget on the mean KLD, nats (0 = none) */
  double max_ppl;         /* budget on the PPL increase, percent (0 = none) */
  const char* candidates; /* comma-separated schemes */
  const char* text;       /* text the budget is measured on */
  long ctx, chunks;       /* windows of the text (0 = per document on sep) */
  const char* sep;        /* document separator */
} mp_args;

static int mp_option(const char* C, const char* a, const char* v, mp_args* mp) {
  long n;
  if (!strcmp(a, "--target-kld")) {
    if (!cli_float(C, a, v, 1e-12, 100, &mp->target_kld)) return 2;
  } else if (!strcmp(a, "--max-ppl-increase")) {
    if (!cli_float(C, a, v, 1e-9, 1e6, &mp->max_ppl)) return 2;
  } else if (!strcmp(a, "--candidates")) {
    mp->candidates = v;
  } else if (!strcmp(a, "--mp-text")) {
    mp->text = v;
  } else if (!strcmp(a, "--mp-ctx")) {
    if (!cli_int(C, a, v, 2, 1 << 20, &n)) return 2;
    mp->ctx = n;
  } else if (!strcmp(a, "--mp-chunks")) {
    if (!cli_int(C, a, v, 1, 1 << 30, &n)) return 2;
    mp->chunks = n;
  } else if (!strcmp(a, "--mp-sep")) {
    mp->sep = v;
  } else {
    return 1; /* not a mixed-precision option */
  }
  return 0;
}

/* --target-kld / --max-ppl-increase: choose a scheme per weight (qn_mixed_precision), keep the
 * final .qnz at out and the chosen recipe beside it (OUT.recipe, reusable with --recipe). */
static int run_mixed(const char* C, const char* in, const char* out, const qn_quantize_opts* o,
                     const mp_args* mp, bool json) {
  if (!mp->text) return cli_usage_error(C, "--target-kld/--max-ppl-increase need --mp-text FILE");
  size_t len;
  char* text = cli_read_text(C, mp->text, &len);
  if (!text) return 1;
  qn_mp_opts mo;
  memset(&mo, 0, sizeof mo);
  mo.candidates = mp->candidates ? mp->candidates : "int4-g32,int8-channel,f16";
  mo.target_kld = mp->target_kld;
  mo.max_ppl_increase = mp->max_ppl;
  mo.eval.ctx = (int)mp->ctx;
  mo.eval.chunks = (int)mp->chunks;
  mo.eval.sep = mp->ctx ? NULL : (mp->sep ? mp->sep : "<|endoftext|>");
  mo.eval.progress = json ? NULL : cli_progress;
  mo.out_path = out;
  mo.quantize = o;
  qn_mp_result r;
  qn_status st = qn_mixed_precision(in, text, len, &mo, &r);
  free(text);
  if (st != QN_OK) return cli_fail(C, st);
  size_t plen = strlen(out) + 8;
  char* rpath = malloc(plen);
  int rc = 0;
  if (rpath) {
    snprintf(rpath, plen, "%s.recipe", out);
    FILE* f = fopen(rpath, "w");
    if (!f || fputs(r.recipe, f) < 0 || fclose(f) != 0) {
      fprintf(stderr, "quench %s: cannot write %s\n", C, rpath);
      rc = 1;
    }
  }
  if (json) {
    printf("{\"output\": ");
    cli_json_str(stdout, out);
    printf(", \"recipe\": ");
    cli_json_str(stdout, r.recipe);
    printf(
        ", \"kld_mean\": %.8f, \"kld_predicted\": %.8f, \"ppl_base\": %.6f, "
        "\"ppl_quant\": %.6f, \"top1_agree\": %.6f, \"bpw\": %.4f, \"bytes\": %llu, "
        "\"rounds\": %d}\n",
        r.cmp.kld_mean, r.kld_predicted, r.cmp.ppl_base, r.cmp.ppl_quant, r.cmp.top1_agree, r.bpw,
        (unsigned long long)r.bytes, r.rounds);
  } else {
    printf("chosen recipe (also in %s; reuse it with --recipe):\n%s\n", rpath ? rpath : "?",
           r.recipe);
    printf(
        "measured on %s: mean KLD %.6f (budget %s%g), PPL %.4f -> %.4f (%+.2f%%), top-1 "
        "%.2f%%\n",
        mp->text, r.cmp.kld_mean, mp->target_kld > 0 ? "" : "PPL +",
        mp->target_kld > 0 ? mp->target_kld : mp->max_ppl, r.cmp.ppl_base, r.cmp.ppl_quant,
        100 * (r.cmp.ppl_quant - r.cmp.ppl_base) / r.cmp.ppl_base, 100 * r.cmp.top1_agree);
    printf(
        "%.3f bits/weight over the matrices (%llu bytes; all smallest %llu, all largest "
        "%llu); %d round(s), %.1f s\n",
        r.bpw, (unsigned long long)r.bytes, (unsigned long long)r.bytes_smallest,
        (unsigned long long)r.bytes_largest, r.rounds, r.seconds);
  }
  free(rpath);
  qn_mp_result_free(&r);
  return rc;
}

int cmd_quantize(int argc, char** argv) {
  const char* C = "quantize";
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  const char *in = NULL, *out = NULL;
  bool json = false;
  long threads = 0;
  const char** rules = calloc((size_t)argc + 1, sizeof(char*));
  int n_rules = 0;
  if (!rules) return 1;
  mp_args mp;
  memset(&mp, 0, sizeof mp);
  int rc = -1, mrc;
  for (int i = 0; i < argc && rc < 0; i++) {
    const char* a = argv[i];
    const char* v;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cli_print_help(C);
      rc = 0;
    } else if (!strcmp(a, "--list")) {
      list_schemes();
      rc = 0;
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else if (!strcmp(a, "--search")) {
      o.search = true;
    } else if (!strcmp(a, "--calib-kv")) {
      o.calib_kv = true;
    } else if (!strcmp(a, "--act-order")) {
      o.gptq_act_order = true;
    } else if (!takes_value(a)) {
      rc = cli_usage_error(C, "unknown option '%s'", a);
    } else if (!(v = cli_value(C, argc, argv, &i))) {
      rc = 2;
    } else if ((mrc = mp_option(C, a, v, &mp)) != 1) {
      if (mrc) rc = mrc;
    } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      in = v;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      out = v;
    } else if (!strcmp(a, "--scheme") || !strcmp(a, "-s")) {
      o.scheme = v;
    } else if (!strcmp(a, "--recipe")) {
      o.recipe_path = v;
    } else if (!strcmp(a, "--rule")) {
      rules[n_rules++] = v;
    } else if (!strcmp(a, "--tokenizer")) {
      o.tokenizer_path = v;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
      if (!cli_int(C, a, v, 1, 256, &threads)) rc = 2;
    } else if (!strcmp(a, "--calib")) {
      o.calib_path = v;
    } else if (!strcmp(a, "--method")) {
      o.method = v;
    } else if (!strcmp(a, "--damp")) {
      if (!cli_float(C, a, v, 1e-9, 10, &o.gptq_damp)) rc = 2;
    } else if (!strcmp(a, "--calib-tokens")) {
      long n;
      if (!cli_int(C, a, v, 1, 2000000000L, &n)) rc = 2;
      o.calib_tokens = n;
    } else if (!strcmp(a, "--calib-ctx")) {
      long n;
      if (!cli_int(C, a, v, 2, 1 << 20, &n)) rc = 2;
      o.calib_ctx = (int)n;
    } else if (!strcmp(a, "--calib-method")) {
      o.calib_method = v;
    } else if (!strcmp(a, "--percentile")) {
      if (!parse_percentile(C, v, &o.calib_percentile)) rc = 2;
    } else if (!strcmp(a, "--smooth")) {
      if (!parse_smooth(C, v, &o)) rc = 2;
    } else {
      rc = cli_usage_error(C, "unknown option '%s'", a);
    }
  }
  if (rc < 0 && !in) rc = cli_usage_error(C, "no model given (-m MODEL)");
  if (rc < 0 && !out) rc = cli_usage_error(C, "no output given (-o OUT.qnz)");
  bool mixed = mp.target_kld > 0 || mp.max_ppl > 0;
  if (rc < 0 && !mixed && !o.scheme && !o.recipe_path)
    rc = cli_usage_error(C, "no scheme given (--scheme S; 'quench quantize --list' lists them)");
  if (rc < 0 && mixed && (o.scheme || o.recipe_path || n_rules))
    rc = cli_usage_error(C,
                         "--target-kld/--max-ppl-increase choose the schemes: drop --scheme, "
                         "--recipe and --rule (use --candidates)");
  if (rc >= 0) {
    free(rules);
    return rc;
  }
  if (!o.scheme) o.scheme = "f32"; /* the recipe file's "default" line overrides it */
  o.rules = rules;
  o.n_rules = n_rules;
  o.n_threads = (int)threads;
  o.progress = json ? NULL : cli_progress;
  o.warn = print_warning;
  if (mixed) {
    rc = run_mixed(C, in, out, &o, &mp, json);
    free(rules);
    return rc;
  }
  qn_quantize_report r;
  qn_status st = qn_quantize(in, out, &o, &r);
  free(rules);
  if (st != QN_OK) return cli_fail(C, st);
  if (json)
    print_json(&r, out);
  else {
    print_table(&r);
    print_calib(&r);
  }
  qn_quantize_report_free(&r);
  return 0;
}
