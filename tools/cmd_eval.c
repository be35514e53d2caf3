/* cmd_eval.c: `quench eval ppl` and `quench eval cmp`. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "cli.h"

/* Options common to both eval subcommands. */
typedef struct eval_args {
  const char* model; /* -m */
  const char* quant; /* -q (cmp only) */
  const char* file;  /* -f */
  const char* tok;   /* --tokenizer */
  const char* sep;   /* --sep */
  long ctx, chunks, threads;
  bool json;
} eval_args;

/* True for the eval options that take a value (anything else unknown is reported as
 * unknown, not as missing its value). */
static bool takes_value(const char* o) {
  static const char* const k[] = {"-m",          "--model", "-q",    "--quant",  "-f", "--file",
                                  "--tokenizer", "--sep",   "--ctx", "--chunks", "-t", "--threads"};
  for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
    if (!strcmp(o, k[i])) return true;
  return false;
}

static int parse(const char* C, int argc, char** argv, eval_args* a) {
  memset(a, 0, sizeof *a);
  for (int i = 0; i < argc; i++) {
    const char* o = argv[i];
    const char* v;
    if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
      cli_print_help("eval");
      return 0;
    } else if (!strcmp(o, "--json")) {
      a->json = true;
      continue;
    }
    if (!takes_value(o)) return cli_usage_error(C, "unknown option '%s'", o);
    if (!(v = cli_value(C, argc, argv, &i))) return 2;
    if (!strcmp(o, "-m") || !strcmp(o, "--model"))
      a->model = v;
    else if (!strcmp(o, "-q") || !strcmp(o, "--quant"))
      a->quant = v;
    else if (!strcmp(o, "-f") || !strcmp(o, "--file"))
      a->file = v;
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
  if (!a->file) return cli_usage_error(C, "no text given (-f TEXT)");
  if (a->ctx && a->sep) return cli_usage_error(C, "give either --ctx or --sep, not both");
  if (a->chunks && !a->ctx) return cli_usage_error(C, "--chunks needs --ctx");
  if (!a->ctx && !a->sep) a->sep = "<|endoftext|>";
  return -1; /* parsed; go on */
}

static int eval_ppl(int argc, char** argv) {
  const char* C = "eval ppl";
  eval_args a;
  int rc = parse(C, argc, argv, &a);
  if (rc >= 0) return rc;
  size_t len;
  char* text = cli_read_text(C, a.file, &len);
  if (!text) return 1;
  qn_model_opts mo = {a.tok, (int)a.threads};
  qn_model* m = NULL;
  qn_status st = qn_model_open(a.model, &mo, &m);
  if (st != QN_OK) {
    free(text);
    return cli_fail(C, st);
  }
  qn_ppl_opts po = {(int)a.ctx, (int)a.chunks, a.sep, cli_progress, NULL};
  qn_ppl_result r;
  st = qn_eval_ppl(m, text, len, &po, &r);
  qn_model_free(m);
  free(text);
  if (st != QN_OK) return cli_fail(C, st);
  if (a.json) {
    printf(
        "{\"ppl\": %.6f, \"nll\": %.6f, \"tokens\": %lld, \"spans\": %d, \"truncated\": %d, "
        "\"seconds\": %.3f}\n",
        r.ppl, r.nll, (long long)r.tokens, r.n_docs, r.n_truncated, r.seconds);
  } else {
    printf("%s: %d %s, %lld scored tokens\n", a.file, r.n_docs, a.ctx ? "windows" : "documents",
           (long long)r.tokens);
    if (r.n_truncated)
      printf("note: %d documents were longer than the context and scored on their first part\n",
             r.n_truncated);
    printf("mean NLL %.5f nats, perplexity %.4f  (%.1f s, %.0f tokens/s)\n", r.nll, r.ppl,
           r.seconds, r.tokens / (r.seconds > 0 ? r.seconds : 1));
  }
  return 0;
}

/* Bytes of a model file, or of the regular files directly inside a model directory. */
static uint64_t file_size(const char* path) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  if (!S_ISDIR(st.st_mode)) return (uint64_t)st.st_size;
  DIR* d = opendir(path);
  if (!d) return 0;
  uint64_t total = 0;
  for (struct dirent* e; (e = readdir(d)) != NULL;) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
  }
  closedir(d);
  return total;
}

/* Bytes and bits per weight of a model as stored. */
static void model_size(const qn_model* m, uint64_t* bytes, double* bpw) {
  qn_model_info in;
  qn_model_get_info(m, &in);
  *bytes = in.weight_bytes;
  *bpw = in.n_params ? 8.0 * (double)in.weight_bytes / (double)in.n_params : 0;
}

static int eval_cmp(int argc, char** argv) {
  const char* C = "eval cmp";
  eval_args a;
  int rc = parse(C, argc, argv, &a);
  if (rc >= 0) return rc;
  if (!a.quant) return cli_usage_error(C, "no quantized model given (-q QUANT)");
  size_t len;
  char* text = cli_read_text(C, a.file, &len);
  if (!text) return 1;
  qn_model_opts mo = {a.tok, (int)a.threads};
  qn_model *base = NULL, *quant = NULL;
  qn_status st = qn_model_open(a.model, &mo, &base);
  if (st == QN_OK) st = qn_model_open(a.quant, &mo, &quant);
  qn_cmp_result r;
  qn_ppl_opts po = {(int)a.ctx, (int)a.chunks, a.sep, a.json ? NULL : cli_progress, NULL};
  if (st == QN_OK) st = qn_eval_cmp(base, quant, text, len, &po, &r);
  free(text);
  if (st != QN_OK) {
    qn_model_free(base);
    qn_model_free(quant);
    return cli_fail(C, st);
  }
  uint64_t wb_base, wb_quant;
  double bpw_base, bpw_quant;
  model_size(base, &wb_base, &bpw_base);
  model_size(quant, &wb_quant, &bpw_quant);
  uint64_t fb_base = file_size(a.model), fb_quant = file_size(a.quant);
  qn_model_free(base);
  qn_model_free(quant);
  double dppl = r.ppl_quant - r.ppl_base;
  if (a.json) {
    printf(
        "{\"ppl_base\": %.6f, \"ppl_quant\": %.6f, \"delta_ppl\": %.6f, "
        "\"delta_ppl_pct\": %.4f, \"kld_mean\": %.8f, \"kld_p99\": %.8f, "
        "\"kld_max\": %.8f, \"top1_agree\": %.6f, \"tokens\": %lld, \"spans\": %d, "
        "\"bpw\": %.4f, \"bpw_base\": %.4f, \"bytes\": %llu, \"bytes_base\": %llu, "
        "\"file_bytes\": %llu, \"file_bytes_base\": %llu, \"seconds\": %.3f}\n",
        r.ppl_base, r.ppl_quant, dppl, 100 * dppl / r.ppl_base, r.kld_mean, r.kld_p99, r.kld_max,
        r.top1_agree, (long long)r.tokens, r.n_docs, bpw_quant, bpw_base,
        (unsigned long long)wb_quant, (unsigned long long)wb_base, (unsigned long long)fb_quant,
        (unsigned long long)fb_base, r.seconds);
    return 0;
  }
  printf("%-22s %14s %14s\n", "", "base", "quantized");
  printf("%-22s %14s %14s\n", "model", a.model, a.quant);
  printf("%-22s %14llu %14llu\n", "tensor bytes", (unsigned long long)wb_base,
         (unsigned long long)wb_quant);
  printf("%-22s %14.3f %14.3f\n", "bits/weight", bpw_base, bpw_quant);
  printf("%-22s %14.4f %14.4f\n", "perplexity", r.ppl_base, r.ppl_quant);
  printf("\ndelta PPL %+.4f (%+.2f%%) over %lld tokens in %d %s\n", dppl, 100 * dppl / r.ppl_base,
         (long long)r.tokens, r.n_docs, a.ctx ? "windows" : "documents");
  printf("KL divergence (nats): mean %.6f, p99 %.6f, max %.6f\n", r.kld_mean, r.kld_p99, r.kld_max);
  printf("top-1 agreement: %.2f%%   (%.1f s)\n", 100 * r.top1_agree, r.seconds);
  return 0;
}

int cmd_eval(int argc, char** argv) {
  if (argc < 1) return cli_usage_error("eval", "which evaluation? 'ppl' or 'cmp'");
  if (!strcmp(argv[0], "ppl")) return eval_ppl(argc - 1, argv + 1);
  if (!strcmp(argv[0], "cmp")) return eval_cmp(argc - 1, argv + 1);
  if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
    cli_print_help("eval");
    return 0;
  }
  return cli_usage_error("eval", "unknown evaluation '%s' (ppl or cmp)", argv[0]);
}
