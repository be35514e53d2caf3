/* cmd_synth.c: `quench synth`: write a synthetic model (random weights in a real architecture
 * shape, for speed tests only) as a Hugging Face directory. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

static const char* const C = "synth";

static void list_presets(void) {
  printf("%-16s %6s %6s %6s %6s %6s %7s %6s %9s  %s\n", "preset", "dim", "hidden", "layers",
         "heads", "kv", "vocab", "ctx", "params", "shape of");
  qn_synth_preset p;
  for (int i = 0; qn_synth_preset_at(i, &p); i++) {
    int64_t hd = p.dim / p.n_heads, qd = (int64_t)p.n_heads * hd, kvd = (int64_t)p.n_kv_heads * hd;
    int64_t per =
        2 * (int64_t)p.dim + 2 * qd * p.dim + 2 * kvd * p.dim + 3 * (int64_t)p.hidden_dim * p.dim;
    int64_t params = per * p.n_layers + 2 * (int64_t)p.vocab_size * p.dim + p.dim;
    printf("%-16s %6d %6d %6d %6d %6d %7d %6d %8.1fM  %s\n", p.name, p.dim, p.hidden_dim,
           p.n_layers, p.n_heads, p.n_kv_heads, p.vocab_size, p.max_seq_len, params / 1e6,
           p.summary);
  }
}

int cmd_synth(int argc, char** argv) {
  qn_synth_opts o = {.seed = 42};
  const char* out = NULL;
  long lv;
  for (int i = 0; i < argc; i++) {
    const char* a = argv[i];
    const char* v = NULL;
#define VAL()                                          \
  do {                                                 \
    if (!(v = cli_value(C, argc, argv, &i))) return 2; \
  } while (0)
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      cli_print_help(C);
      return 0;
    } else if (!strcmp(a, "--list")) {
      list_presets();
      return 0;
    } else if (!strcmp(a, "--preset")) {
      VAL();
      o.preset = v;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      VAL();
      out = v;
    } else if (!strcmp(a, "--dtype")) {
      VAL();
      o.dtype = v;
    } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
      VAL();
      if (!cli_int(C, a, v, 0, 0x7fffffffL, &lv)) return 2;
      o.seed = (uint64_t)lv;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
      VAL();
      if (!cli_int(C, a, v, 1, 256, &lv)) return 2;
      o.n_threads = (int)lv;
    } else {
      return cli_usage_error(C, "unknown argument '%s'", a);
    }
#undef VAL
  }
  if (!o.preset) return cli_usage_error(C, "no preset given (--preset NAME; --list shows them)");
  if (!out) return cli_usage_error(C, "no output directory given (-o DIR)");
  o.progress = cli_progress;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  qn_status st = qn_synth_write(out, &o);
  if (st != QN_OK) return cli_fail(C, st);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  char path[4200];
  struct stat sb;
  double gb = 0;
  int n = snprintf(path, sizeof path, "%s/model.safetensors", out);
  if (n > 0 && n < (int)sizeof path && stat(path, &sb) == 0) gb = (double)sb.st_size / 1e9;
  printf("wrote %s: preset %s, %s, seed %llu, %.2f GB in %.1f s\n", out, o.preset,
         o.dtype ? o.dtype : "bf16", (unsigned long long)o.seed, gb, s);
  printf("(random weights: for speed tests only; the text it generates is meaningless)\n");
  return 0;
}
