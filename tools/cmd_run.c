/* cmd_run.c: `quench run`: stream generated text and report speed. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int print_piece(void* user, const char* piece, size_t len) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
  return 0;
}

int cmd_run(int argc, char** argv) {
  const char* C = "run";
  const char *model = NULL, *prompt = "", *tok = NULL;
  long n_predict = 128, threads = 0, lv;
  bool json = false;
  double fv;
  qn_sampler_opts so;
  qn_sampler_opts_default(&so);
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
    } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
      VAL();
      model = v;
    } else if (!strcmp(a, "--tokenizer")) {
      VAL();
      tok = v;
    } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
      VAL();
      prompt = v;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
      VAL();
      if (!cli_int(C, a, v, 0, 1 << 24, &n_predict)) return 2;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
      VAL();
      if (!cli_int(C, a, v, 1, 256, &threads)) return 2;
    } else if (!strcmp(a, "--temp")) {
      VAL();
      if (!cli_float(C, a, v, 0, 100, &fv)) return 2;
      so.temperature = (float)fv;
    } else if (!strcmp(a, "--top-k")) {
      VAL();
      if (!cli_int(C, a, v, 0, 1 << 24, &lv)) return 2;
      so.top_k = (int)lv;
    } else if (!strcmp(a, "--top-p")) {
      VAL();
      if (!cli_float(C, a, v, 1e-6, 1, &fv)) return 2;
      so.top_p = (float)fv;
    } else if (!strcmp(a, "--min-p")) {
      VAL();
      if (!cli_float(C, a, v, 0, 0.999999, &fv)) return 2;
      so.min_p = (float)fv;
    } else if (!strcmp(a, "--repeat-penalty")) {
      VAL();
      if (!cli_float(C, a, v, 1e-3, 100, &fv)) return 2;
      so.repeat_penalty = (float)fv;
    } else if (!strcmp(a, "--repeat-last-n")) {
      VAL();
      if (!cli_int(C, a, v, 0, 1 << 24, &lv)) return 2;
      so.repeat_last_n = (int)lv;
    } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
      VAL();
      if (!cli_int(C, a, v, 0, 0x7fffffffL, &lv)) return 2;
      so.seed = (uint64_t)lv;
    } else if (!strcmp(a, "--json")) {
      json = true;
    } else {
      return cli_usage_error(C, "unknown argument '%s'", a);
    }
#undef VAL
  }
  if (!model) return cli_usage_error(C, "no model given (-m MODEL)");
  qn_model_opts mo = {tok, (int)threads};
  qn_model* m = NULL;
  qn_status st = qn_model_open(model, &mo, &m);
  if (st != QN_OK) return cli_fail(C, st);
  qn_gen_stats gs;
  fputs(prompt, stdout); /* the prompt, then the continuation as it is generated */
  st = qn_generate(m, prompt, (int)n_predict, &so, print_piece, NULL, &gs);
  if (st == QN_OK) printf("\n");
  qn_model_free(m);
  if (st != QN_OK) return cli_fail(C, st);
  double pp = gs.prompt_s > 0 ? gs.n_prompt / gs.prompt_s : 0;
  double tg = gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0;
  fprintf(stderr,
          "\nprompt: %d tokens, %.1f tokens/s | generated: %d tokens, %.1f tokens/s | "
          "time to first token: %.1f ms\n",
          gs.n_prompt, pp, gs.n_gen, tg, gs.ttft_s * 1e3);
  if (json)
    printf(
        "{\"prompt_tokens\": %d, \"prompt_tps\": %.3f, \"gen_tokens\": %d, \"gen_tps\": %.3f, "
        "\"ttft_ms\": %.3f}\n",
        gs.n_prompt, pp, gs.n_gen, tg, gs.ttft_s * 1e3);
  return 0;
}
