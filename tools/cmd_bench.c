/* cmd_bench.c: `quench bench`: speed of a model (prefill, decode, time to first token, time per
 * output token, effective bandwidth, GOPS, peak RSS, load time), the machine's limits
 * (--membw: read bandwidth, VNNI and FMA peaks), and a sweep over quantization schemes (each
 * scheme benchmarked in a fresh child process so peak RSS is its own) with a table and an SVG
 * of tokens/s against bits per weight. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "svg_plot.h"

static const char* const C = "bench";

/* Parsed command line. */
typedef struct bench_args {
  const char* model;       /* -m */
  const char* tokenizer;   /* --tokenizer */
  const char* sweep;       /* --sweep LIST, or NULL */
  const char* out_dir;     /* -o DIR (sweep) */
  const char* limits_path; /* --limits FILE */
  long threads;            /* -t (0 = all cores) */
  long n_prompt;           /* -p */
  long n_gen;              /* -n */
  long reps;               /* -r */
  long membw_mib;          /* --membw-mib: bandwidth buffer, MiB */
  bool membw;              /* --membw: measure the machine limits */
  bool json;               /* --json */
} bench_args;

/* Machine limits and where they came from. */
typedef struct limits {
  bool known;          /* measured or read */
  qn_bench_limits lim; /* the numbers */
} limits;

/* One row of a sweep. */
typedef struct sweep_row {
  char scheme[32];     /* scheme name as given */
  double bpw;          /* bits per weight of the 2-D weights (quantize report) */
  uint64_t file_bytes; /* .qnz size */
  qn_bench_result r;   /* its benchmark (numbers only; strings unset) */
} sweep_row;

static int parse_args(int argc, char** argv, bench_args* a) {
  *a = (bench_args){.n_prompt = 512, .n_gen = 128, .reps = 3, .membw_mib = 1024};
  for (int i = 0; i < argc; i++) {
    const char* s = argv[i];
    const char* v = NULL;
#define VAL()                                          \
  do {                                                 \
    if (!(v = cli_value(C, argc, argv, &i))) return 2; \
  } while (0)
    if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
      cli_print_help(C);
      return -1;
    } else if (!strcmp(s, "-m") || !strcmp(s, "--model")) {
      VAL();
      a->model = v;
    } else if (!strcmp(s, "--tokenizer")) {
      VAL();
      a->tokenizer = v;
    } else if (!strcmp(s, "-t") || !strcmp(s, "--threads")) {
      VAL();
      if (!cli_int(C, s, v, 1, 256, &a->threads)) return 2;
    } else if (!strcmp(s, "-p") || !strcmp(s, "--n-prompt")) {
      VAL();
      if (!cli_int(C, s, v, 0, 1 << 20, &a->n_prompt)) return 2;
    } else if (!strcmp(s, "-n") || !strcmp(s, "--n-gen")) {
      VAL();
      if (!cli_int(C, s, v, 0, 1 << 20, &a->n_gen)) return 2;
    } else if (!strcmp(s, "-r") || !strcmp(s, "--reps")) {
      VAL();
      if (!cli_int(C, s, v, 1, 64, &a->reps)) return 2;
    } else if (!strcmp(s, "--membw")) {
      a->membw = true;
    } else if (!strcmp(s, "--membw-mib")) {
      VAL();
      if (!cli_int(C, s, v, 1, 1 << 20, &a->membw_mib)) return 2;
    } else if (!strcmp(s, "--limits")) {
      VAL();
      a->limits_path = v;
    } else if (!strcmp(s, "--sweep")) {
      VAL();
      a->sweep = v;
    } else if (!strcmp(s, "-o") || !strcmp(s, "--output")) {
      VAL();
      a->out_dir = v;
    } else if (!strcmp(s, "--json")) {
      a->json = true;
    } else {
      return cli_usage_error(C, "unknown argument '%s'", s);
    }
#undef VAL
  }
  if (!a->model && !a->membw)
    return cli_usage_error(C, "no model given (-m MODEL), and no --membw");
  if (a->sweep && !a->model) return cli_usage_error(C, "--sweep needs a model (-m MODEL)");
  if (a->out_dir && !a->sweep) return cli_usage_error(C, "-o DIR is for --sweep");
  if (a->limits_path && a->membw)
    return cli_usage_error(C, "--limits FILE and --membw both give the limits; choose one");
  if (a->model && a->n_prompt + a->n_gen < 1)
    return cli_usage_error(C, "nothing to measure: -p and -n are both 0");
  return 0;
}

/* ---- limits ------------------------------------------------------------------------------ */

static int measure_limits(const bench_args* a, limits* L) {
  if (!a->json) fprintf(stderr, "measuring the machine limits (bandwidth, VNNI, FMA)...\n");
  qn_status st = qn_bench_machine((int)a->threads, (uint64_t)a->membw_mib << 20, &L->lim);
  if (st != QN_OK) return cli_fail(C, st);
  L->known = true;
  return 0;
}

static double json_number(const cJSON* root, const char* key) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(root, key);
  return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

/* Reads membw_gbps / vnni_gops / fma_gflops from a `quench bench --membw --json` file. */
static int read_limits(const char* path, limits* L) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "quench %s: %s: %s\n", C, path, strerror(errno));
    return 1;
  }
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  cJSON* root = cJSON_Parse(buf);
  double bw = json_number(root, "membw_gbps"), vn = json_number(root, "vnni_gops");
  double fm = json_number(root, "fma_gflops");
  cJSON_Delete(root);
  if (!(bw > 0) || !(vn >= 0) || !(fm >= 0)) {
    fprintf(stderr,
            "quench %s: %s: not a limits file (JSON with membw_gbps > 0, vnni_gops, fma_gflops "
            "as written by 'quench bench --membw --json')\n",
            C, path);
    return 1;
  }
  L->lim.membw_gbps = bw, L->lim.vnni_gops = vn, L->lim.fma_gflops = fm;
  snprintf(L->lim.fma_isa, sizeof L->lim.fma_isa, "?");
  L->known = true;
  return 0;
}

static void print_limits_json(const limits* L) {
  const qn_bench_limits* l = &L->lim;
  printf(
      "{\"membw_gbps\": %.3f, \"vnni_gops\": %.1f, \"fma_gflops\": %.1f, \"fma_isa\": \"%s\", "
      "\"threads\": %d, \"membw_bytes\": %llu, \"sync_ns\": %.0f, \"isa\": \"%s\"",
      l->membw_gbps, l->vnni_gops, l->fma_gflops, l->fma_isa, l->n_threads,
      (unsigned long long)l->membw_bytes, l->sync_ns, qn_kernels_name());
  if (l->vnni_gops == 0) printf(", \"vnni_note\": \"CPU lacks AVX512-VNNI\"");
  printf("}\n");
}

static void print_limits_table(const limits* L) {
  const qn_bench_limits* l = &L->lim;
  printf("machine limits (%d threads)\n", l->n_threads);
  printf("  read bandwidth   %8.2f GB/s   (streaming read of %.0f MiB, best of 5 passes)\n",
         l->membw_gbps, l->membw_bytes / 1048576.0);
  if (l->vnni_gops > 0)
    printf("  int8 VNNI peak   %8.1f GOPS   (512-bit vpdpbusd register loop; 1 MAC = 2 ops)\n",
           l->vnni_gops);
  else
    printf("  int8 VNNI peak   %8.1f GOPS   (this CPU lacks AVX512-VNNI)\n", 0.0);
  printf("  FP32 FMA peak    %8.1f GFLOPS (%s FMA register loop; 1 FMA = 2 flops)\n", l->fma_gflops,
         l->fma_isa);
  if (l->sync_ns > 0)
    printf("  thread sync      %8.2f us     (one parallel call with no work, mean of 20000)\n",
           l->sync_ns / 1000.0);
  printf("  kernels          %8s        (QN_ISA=ref|avx2|avx512 to force)\n", qn_kernels_name());
}

/* ---- one model ---------------------------------------------------------------------------- */

/* Fraction of a limit as "12.3%", or "" when the limit is unknown. */
static const char* pct(double v, double limit, char* buf, size_t n) {
  if (limit > 0 && isfinite(v))
    snprintf(buf, n, "%5.1f%%", 100.0 * v / limit);
  else
    snprintf(buf, n, "%s", "");
  return buf;
}

/* The compute peak prefill is compared with. */
static double compute_peak(const qn_bench_result* r, const limits* L, const char** name) {
  *name = r->int8_activations ? "int8 VNNI peak" : "FP32 FMA peak";
  return r->int8_activations ? L->lim.vnni_gops : L->lim.fma_gflops;
}

static void print_result_table(const char* model, const qn_bench_result* r, const limits* L) {
  char b1[32], b2[32];
  const char* peak_name = "";
  double peak = L->known ? compute_peak(r, L, &peak_name) : 0;
  double bw = L->known ? L->lim.membw_gbps : 0;
  double tg_limit = bw > 0 && r->bytes_per_token ? bw * 1e9 / (double)r->bytes_per_token : 0;
  printf("model      %s\n", model);
  printf("           %s, %.1fM params, %.2f bits/weight, kernels %s, %d threads\n", r->format,
         r->n_params / 1e6, r->bpw, r->kernels, r->n_threads);
  printf("run        prefill %d tokens, decode %d tokens, median of %d\n\n", r->n_prompt, r->n_gen,
         r->reps);
  if (L->known) printf("%-28s %14s  %s\n", "", "", "of the machine limit");
  printf("%-28s %10.1f ms\n", "load", r->load_ms);
  if (r->n_prompt > 0) {
    printf("%-28s %10.1f tok/s\n", "prefill (pp)", r->pp_tps);
    printf("%-28s %10.1f GOPS   %s%s%s\n", "prefill compute (matmuls)", r->pp_gops,
           pct(r->pp_gops, peak, b1, sizeof b1), L->known ? " of " : "", L->known ? peak_name : "");
    printf("%-28s %10.1f ms\n", "time to first token", r->ttft_ms);
  }
  if (r->n_gen > 0) {
    printf("%-28s %10.2f tok/s  %s%s\n", "decode (tg)", r->tg_tps,
           pct(r->tg_tps, tg_limit, b1, sizeof b1),
           tg_limit > 0 ? " of bandwidth / bytes per token" : "");
    printf("%-28s %10.2f ms\n", "time per output token p50", r->tpot_p50_ms);
    printf("%-28s %10.2f ms\n", "time per output token p99", r->tpot_p99_ms);
    printf("%-28s %10.2f GB/s   %s%s\n", "decode bandwidth (effective)", r->tg_gbps,
           pct(r->tg_gbps, bw, b2, sizeof b2), bw > 0 ? " of read bandwidth" : "");
  }
  printf("%-28s %10.1f MB\n", "weights read per token", r->bytes_per_token / 1e6);
  printf("%-28s %10.1f MB\n", "peak RSS", r->rss_bytes / 1e6);
  if (L->known) {
    printf(
        "\nlimits: read bandwidth %.2f GB/s (decode bound %.1f tok/s), VNNI %.0f GOPS, FMA "
        "%.0f GFLOPS\n",
        bw, tg_limit, L->lim.vnni_gops, L->lim.fma_gflops);
  }
}

static void print_result_json(const char* model, const qn_bench_result* r, const limits* L) {
  printf("{\"model\": ");
  cli_json_str(stdout, model);
  printf(
      ", \"format\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, \"n_prompt\": %d, "
      "\"n_gen\": %d, \"reps\": %d, \"load_ms\": %.3f, \"pp_tps\": %.3f, \"pp_gops\": %.3f, "
      "\"ttft_ms\": %.3f, \"tg_tps\": %.3f, \"tpot_p50_ms\": %.3f, \"tpot_p99_ms\": %.3f, "
      "\"tg_gbps\": %.4f, \"bytes_per_token\": %llu, \"matmul_params\": %lld, \"n_params\": "
      "%lld, \"bpw\": %.4f, \"rss_bytes\": %llu, \"int8_activations\": %s, \"gops_counts\": "
      "\"linear layers only (attention excluded)\"",
      r->format, r->kernels, r->n_threads, r->n_prompt, r->n_gen, r->reps, r->load_ms, r->pp_tps,
      r->pp_gops, r->ttft_ms, r->tg_tps, r->tpot_p50_ms, r->tpot_p99_ms, r->tg_gbps,
      (unsigned long long)r->bytes_per_token, (long long)r->matmul_params, (long long)r->n_params,
      r->bpw, (unsigned long long)r->rss_bytes, r->int8_activations ? "true" : "false");
  if (L->known) {
    const char* peak_name = "";
    double peak = compute_peak(r, L, &peak_name);
    double bw = L->lim.membw_gbps;
    printf(
        ", \"membw_gbps\": %.3f, \"vnni_gops\": %.1f, \"fma_gflops\": %.1f, \"tg_bw_frac\": "
        "%.4f, \"tg_tps_bound\": %.3f, \"pp_peak_frac\": %.4f",
        bw, L->lim.vnni_gops, L->lim.fma_gflops, bw > 0 ? r->tg_gbps / bw : 0,
        r->bytes_per_token ? bw * 1e9 / (double)r->bytes_per_token : 0,
        peak > 0 ? r->pp_gops / peak : 0);
  }
  printf("}\n");
}

static qn_bench_opts bench_opts(const bench_args* a) {
  qn_bench_opts o = {(int)a->n_prompt, (int)a->n_gen, (int)a->reps, (int)a->threads,
                     a->tokenizer,     NULL,          NULL};
  if (!a->json) o.progress = cli_progress;
  return o;
}

static int bench_one(const bench_args* a, limits* L) {
  qn_bench_opts o = bench_opts(a);
  qn_bench_result r;
  qn_status st = qn_bench_model(a->model, &o, &r);
  if (st != QN_OK) return cli_fail(C, st);
  if (a->membw) { /* after the model: its buffer must not count in the model's peak RSS */
    int rc = measure_limits(a, L);
    if (rc) return rc;
  }
  if (a->json)
    print_result_json(a->model, &r, L);
  else
    print_result_table(a->model, &r, L);
  return 0;
}

/* ---- sweep -------------------------------------------------------------------------------- */

/* Runs this program as `quench bench -m path ... --json` and parses its output into r. */
static int bench_child(const bench_args* a, const char* path, qn_bench_result* r) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "quench %s: cannot find this program (/proc/self/exe)\n", C);
    return 1;
  }
  self[n] = '\0';
  char p[24], g[24], rp[24], t[24];
  snprintf(p, sizeof p, "%ld", a->n_prompt);
  snprintf(g, sizeof g, "%ld", a->n_gen);
  snprintf(rp, sizeof rp, "%ld", a->reps);
  snprintf(t, sizeof t, "%ld", a->threads);
  const char* argv[16] = {self, "bench", "-m", path, "-p", p, "-n", g, "-r", rp, "--json"};
  int k = 11;
  if (a->threads > 0) argv[k++] = "-t", argv[k++] = t;
  if (a->tokenizer) argv[k++] = "--tokenizer", argv[k++] = a->tokenizer;
  argv[k] = NULL;
  int fd[2];
  if (pipe(fd) != 0) return cli_usage_error(C, "pipe: %s", strerror(errno));
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return cli_usage_error(C, "fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    execv(self, (char* const*)argv);
    _exit(127);
  }
  close(fd[1]);
  size_t cap = 1 << 16, len = 0;
  char* out = malloc(cap);
  ssize_t got;
  while (out && len + 1 < cap && (got = read(fd[0], out + len, cap - 1 - len)) > 0)
    len += (size_t)got;
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!out) return cli_usage_error(C, "out of memory");
  out[len] = '\0';
  cJSON* root = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? cJSON_Parse(out) : NULL;
  free(out);
  if (!root) {
    fprintf(stderr, "quench %s: the benchmark of %s failed\n", C, path);
    return 1;
  }
  memset(r, 0, sizeof *r);
  r->load_ms = json_number(root, "load_ms");
  r->pp_tps = json_number(root, "pp_tps");
  r->pp_gops = json_number(root, "pp_gops");
  r->ttft_ms = json_number(root, "ttft_ms");
  r->tg_tps = json_number(root, "tg_tps");
  r->tpot_p50_ms = json_number(root, "tpot_p50_ms");
  r->tpot_p99_ms = json_number(root, "tpot_p99_ms");
  r->tg_gbps = json_number(root, "tg_gbps");
  r->bytes_per_token = (uint64_t)json_number(root, "bytes_per_token");
  r->rss_bytes = (uint64_t)json_number(root, "rss_bytes");
  r->n_threads = (int)json_number(root, "threads");
  r->int8_activations = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "int8_activations"));
  cJSON_Delete(root);
  return 0;
}

static bool make_dir(const char* path) {
  if (mkdir(path, 0777) == 0 || errno == EEXIST) return true;
  fprintf(stderr, "quench %s: cannot create %s: %s\n", C, path, strerror(errno));
  return false;
}

static int quantize_row(const bench_args* a, const char* dir, sweep_row* row, char* path,
                        size_t cap) {
  if ((size_t)snprintf(path, cap, "%s/%s.qnz", dir, row->scheme) >= cap)
    return cli_usage_error(C, "output path too long");
  qn_quantize_opts qo = {0};
  qo.scheme = row->scheme;
  qo.tokenizer_path = a->tokenizer;
  qo.n_threads = (int)a->threads;
  if (!a->json) qo.progress = cli_progress;
  qn_quantize_report rep;
  memset(&rep, 0, sizeof rep);
  qn_status st = qn_quantize(a->model, path, &qo, &rep);
  if (st != QN_OK) return cli_fail(C, st);
  row->bpw = rep.bpw;
  row->file_bytes = rep.file_bytes_out;
  qn_quantize_report_free(&rep);
  return 0;
}

static void print_sweep_table(FILE* f, const bench_args* a, const sweep_row* rows, int n,
                              const limits* L) {
  fprintf(f, "model %s, prefill %ld tokens, decode %ld tokens, median of %ld, %d threads\n",
          a->model, a->n_prompt, a->n_gen, a->reps, n ? rows[0].r.n_threads : 0);
  fprintf(f, "%-14s %6s %9s %8s %9s %8s %9s %8s %7s %8s %8s %8s\n", "scheme", "bpw", "file MB",
          "load ms", "pp tok/s", "pp GOPS", "tg tok/s", "tg GB/s", L->known ? "% bw" : "", "p50 ms",
          "p99 ms", "RSS MB");
  for (int i = 0; i < n; i++) {
    const sweep_row* w = &rows[i];
    char b[32];
    fprintf(f, "%-14s %6.2f %9.1f %8.1f %9.1f %8.1f %9.2f %8.2f %7s %8.2f %8.2f %8.1f\n", w->scheme,
            w->bpw, w->file_bytes / 1e6, w->r.load_ms, w->r.pp_tps, w->r.pp_gops, w->r.tg_tps,
            w->r.tg_gbps, pct(w->r.tg_gbps, L->lim.membw_gbps, b, sizeof b), w->r.tpot_p50_ms,
            w->r.tpot_p99_ms, w->r.rss_bytes / 1e6);
  }
  if (L->known)
    fprintf(f, "limits: read bandwidth %.2f GB/s, VNNI %.0f GOPS, FMA %.0f GFLOPS\n",
            L->lim.membw_gbps, L->lim.vnni_gops, L->lim.fma_gflops);
}

static void write_sweep_json(FILE* f, const bench_args* a, const sweep_row* rows, int n,
                             const limits* L) {
  fprintf(f, "{\"model\": ");
  cli_json_str(f, a->model);
  fprintf(f, ", \"n_prompt\": %ld, \"n_gen\": %ld, \"reps\": %ld", a->n_prompt, a->n_gen, a->reps);
  if (L->known)
    fprintf(f, ", \"membw_gbps\": %.3f, \"vnni_gops\": %.1f, \"fma_gflops\": %.1f",
            L->lim.membw_gbps, L->lim.vnni_gops, L->lim.fma_gflops);
  fprintf(f, ", \"rows\": [");
  for (int i = 0; i < n; i++) {
    const sweep_row* w = &rows[i];
    fprintf(f, "%s\n  {\"scheme\": ", i ? "," : "");
    cli_json_str(f, w->scheme);
    fprintf(f,
            ", \"bpw\": %.4f, \"file_bytes\": %llu, \"load_ms\": %.3f, \"pp_tps\": %.3f, "
            "\"pp_gops\": %.3f, \"ttft_ms\": %.3f, \"tg_tps\": %.3f, \"tpot_p50_ms\": %.3f, "
            "\"tpot_p99_ms\": %.3f, \"tg_gbps\": %.4f, \"bytes_per_token\": %llu, "
            "\"rss_bytes\": %llu}",
            w->bpw, (unsigned long long)w->file_bytes, w->r.load_ms, w->r.pp_tps, w->r.pp_gops,
            w->r.ttft_ms, w->r.tg_tps, w->r.tpot_p50_ms, w->r.tpot_p99_ms, w->r.tg_gbps,
            (unsigned long long)w->r.bytes_per_token, (unsigned long long)w->r.rss_bytes);
  }
  fprintf(f, "\n]}\n");
}

static bool write_sweep_svg(FILE* f, const bench_args* a, const sweep_row* rows, int n) {
  svg_point* pts = calloc((size_t)(2 * n + 1), sizeof *pts);
  if (!pts) return false;
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (a->n_gen > 0) pts[k++] = (svg_point){rows[i].bpw, rows[i].r.tg_tps, rows[i].scheme, 0};
    if (a->n_prompt > 0) pts[k++] = (svg_point){rows[i].bpw, rows[i].r.pp_tps, rows[i].scheme, 1};
  }
  char sub[512];
  snprintf(sub, sizeof sub, "%.200s: blue = decode (tg%ld), red = prefill (pp%ld), %d threads",
           a->model, a->n_gen, a->n_prompt, n ? rows[0].r.n_threads : 0);
  svg_scatter s = {.title = "Speed against bits per weight",
                   .subtitle = sub,
                   .x_title = "bits per weight (2-D weights, scales included)",
                   .y_title = "tokens per second",
                   .y_log = true,
                   .points = pts,
                   .n_points = k};
  bool ok = svg_write_scatter(f, &s);
  free(pts);
  return ok;
}

static bool write_file(const char* dir, const char* name, const bench_args* a,
                       const sweep_row* rows, int n, const limits* L, bool svg) {
  char path[4200];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return false;
  FILE* f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "quench %s: cannot write %s: %s\n", C, path, strerror(errno));
    return false;
  }
  bool ok = true;
  if (svg)
    ok = write_sweep_svg(f, a, rows, n);
  else
    write_sweep_json(f, a, rows, n, L);
  ok = (fclose(f) == 0) && ok;
  if (!ok) fprintf(stderr, "quench %s: write failed: %s\n", C, path);
  return ok;
}

/* Splits the comma-separated list into rows. */
static int parse_sweep(const char* list, sweep_row** rows, int* n) {
  int cap = 1;
  for (const char* p = list; *p; p++) cap += *p == ',';
  *rows = calloc((size_t)cap, sizeof **rows);
  if (!*rows) return cli_usage_error(C, "out of memory");
  *n = 0;
  for (const char* p = list; *p;) {
    size_t k = strcspn(p, ",");
    if (k == 0 || k >= sizeof(*rows)[0].scheme)
      return cli_usage_error(C, "--sweep: bad scheme list '%s'", list);
    memcpy((*rows)[*n].scheme, p, k);
    (*rows)[(*n)++].scheme[k] = '\0';
    p += k + (p[k] == ',');
  }
  if (*n == 0) return cli_usage_error(C, "--sweep: empty scheme list");
  return 0;
}

static int run_sweep(const bench_args* a, limits* L) {
  sweep_row* rows = NULL;
  int n = 0, rc = parse_sweep(a->sweep, &rows, &n);
  char tmpl[] = "/tmp/quench-sweep-XXXXXX";
  const char* dir = a->out_dir;
  if (!rc && dir && !make_dir(dir)) rc = 1;
  if (!rc && !dir && !(dir = mkdtemp(tmpl)))
    rc = cli_usage_error(C, "mkdtemp: %s", strerror(errno));
  char path[4200];
  for (int i = 0; i < n && !rc; i++) {
    if (!a->json) fprintf(stderr, "[%d/%d] %s: quantize, then bench\n", i + 1, n, rows[i].scheme);
    rc = quantize_row(a, dir, &rows[i], path, sizeof path);
    if (!rc) rc = bench_child(a, path, &rows[i].r);
    if (!a->out_dir) unlink(path); /* temporary .qnz files go as soon as they are measured */
  }
  if (!rc && a->membw) rc = measure_limits(a, L);
  if (!rc) {
    bool ok = write_file(dir, "bench_sweep.json", a, rows, n, L, false) &&
              write_file(dir, "bench_sweep.svg", a, rows, n, L, true);
    if (a->json)
      write_sweep_json(stdout, a, rows, n, L);
    else
      print_sweep_table(stdout, a, rows, n, L);
    if (ok && !a->json) printf("wrote %s/bench_sweep.json and %s/bench_sweep.svg\n", dir, dir);
    rc = ok ? 0 : 1;
  }
  free(rows);
  return rc;
}

int cmd_bench(int argc, char** argv) {
  bench_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  limits L = {0};
  if (a.limits_path && (rc = read_limits(a.limits_path, &L))) return rc;
  if (a.sweep) return run_sweep(&a, &L);
  if (a.model) return bench_one(&a, &L);
  if ((rc = measure_limits(&a, &L))) return rc;
  if (a.json)
    print_limits_json(&L);
  else
    print_limits_table(&L);
  return 0;
}
