/* test_sensitivity.c: per-layer sensitivity and the mixed-precision search.
 *
 * Without shared files (always run):
 *  - qn_mp_select on small synthetic problems, checked against exhaustive enumeration: the
 *    choice is within budget whenever any choice is; it is reported infeasible (and set to
 *    the most accurate candidates) exactly when none is; no single downgrade of the
 *    returned choice still fits the budget;
 *  - qn_mp_recipe: the rules reproduce every weight's scheme through qn_recipe_pick; a
 *    whole kind of block weights costs one rule; too many exceptions fail cleanly.
 * With stories260K + TinyStories (first stories only, to stay fast):
 *  - layer sensitivity at int4-g32 gives the 5 blocks, once each, ranked by KLD, every KLD
 *    > 0 and below the KLD of the whole model at int4-g32 (qn_quantize + qn_eval_cmp), and
 *    the top block's KLD equals an independent measurement: a .qnz with only that block at
 *    int4-g32 (default f32 + rule) compared by qn_eval_cmp;
 *  - tensor sensitivity lists every 2-D weight once;
 *  - the mixed-precision search with int4-g32,int8-channel,f16 and a target between the
 *    whole-model KLDs of int8-channel and int4-g32 meets the target as measured again on
 *    the .qnz it wrote, is smaller than all-int8-channel and between the all-smallest and
 *    all-largest sizes, and its recipe text, used as a recipe file, rebuilds the same size;
 *  - bad inputs (unknown scheme, target <= 0, no budget, duplicate candidate, unreachable
 *    budget, a static-activation scheme) fail with messages naming the problem;
 *  - the CLI writes sensitivity.svg / sensitivity.json and, in mixed-precision mode,
 *    recipe.txt; it refuses a target <= 0 and an unknown candidate. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "calib/mixed_precision.h"
#include "quant/recipe.h"
#include "quench.h"
#include "testutil.h"

static const char* g_model; /* stories260K.bin under ../shared */
static char* g_text;        /* the TinyStories text */
static size_t g_len;        /* its length */
static char g_dir[64];      /* a fresh temporary directory */

#define SEP "<|endoftext|>"

/* Bytes of the first n stories (up to the n-th separator). */
static size_t first_stories(int n) {
  const char* p = g_text;
  for (int i = 0; i < n; i++) {
    const char* q = strstr(p, SEP);
    if (!q) return g_len;
    p = q + strlen(SEP);
  }
  return (size_t)(p - g_text);
}

static qn_ppl_opts per_story(void) {
  qn_ppl_opts e;
  memset(&e, 0, sizeof e);
  e.sep = SEP;
  return e;
}

/* Quantizes the model with scheme + rules and compares it with the base on the first
 * `len` bytes of the text; *bytes gets the 2-D weight bytes. */
static qn_cmp_result quantize_and_compare(qn_model* base, const char* scheme, const char* rule,
                                          size_t len, uint64_t* bytes) {
  char path[128];
  snprintf(path, sizeof path, "%s/ref.qnz", g_dir);
  qn_quantize_opts q;
  memset(&q, 0, sizeof q);
  q.scheme = scheme;
  q.rules = rule ? &rule : NULL;
  q.n_rules = rule ? 1 : 0;
  q.n_threads = 1;
  qn_quantize_report rep;
  assert_int_equal(qn_quantize(g_model, path, &q, &rep), QN_OK);
  if (bytes) {
    *bytes = 0;
    for (int i = 0; i < rep.n_tensors; i++)
      if (rep.tensors[i].cols > 1) *bytes += rep.tensors[i].bytes_out;
  }
  qn_quantize_report_free(&rep);
  qn_model_opts mo = {.n_threads = 1};
  qn_model* qm = NULL;
  assert_int_equal(qn_model_open(path, &mo, &qm), QN_OK);
  qn_ppl_opts e = per_story();
  qn_cmp_result c;
  assert_int_equal(qn_eval_cmp(base, qm, g_text, len, &e, &c), QN_OK);
  qn_model_free(qm);
  unlink(path);
  return c;
}

static qn_model* open_base(void) {
  qn_model_opts mo = {.n_threads = 1};
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_model, &mo, &m), QN_OK);
  return m;
}

/* ---- synthetic: selection and recipes ---------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* Exhaustive: is any choice within budget? */
static bool any_feasible(const qn_mp_problem* p, double budget) {
  int n = p->n_tensors, c = p->n_cand, total = 1;
  for (int t = 0; t < n; t++) total *= c;
  for (int code = 0; code < total; code++) {
    double k = 0;
    for (int t = 0, x = code; t < n; t++, x /= c) k += p->kld[t * c + x % c];
    if (k <= budget) return true;
  }
  return false;
}

static void test_select_synthetic(void** state) {
  (void)state;
  enum { T = 5, K = 3 };
  double kld[T * K];
  uint64_t bytes[T * K];
  int choice[T];
  for (int trial = 0; trial < 300; trial++) {
    for (int t = 0; t < T; t++) {
      /* candidate 0 small and inaccurate .. 2 large and accurate, with noise */
      uint64_t base = 100 + (uint64_t)(rnd() * 900);
      for (int c = 0; c < K; c++) {
        bytes[t * K + c] = base * (uint64_t)(1 << c) + (uint64_t)(rnd() * 20);
        kld[t * K + c] = (c == 2 ? 0.001 : 1.0) * rnd() * pow(0.1, c);
      }
    }
    qn_mp_problem p = {T, K, kld, bytes};
    double budget = rnd() * 2.0;
    double pred = -1;
    bool ok = qn_mp_select(&p, budget, choice, &pred);
    assert_int_equal(ok, any_feasible(&p, budget));
    double sum = 0;
    for (int t = 0; t < T; t++) sum += kld[t * K + choice[t]];
    assert_true(fabs(sum - pred) <= 1e-12);
    if (!ok) {
      for (int t = 0; t < T; t++)
        for (int c = 0; c < K; c++) assert_true(kld[t * K + choice[t]] <= kld[t * K + c]);
      continue;
    }
    assert_true(pred <= budget);
    for (int t = 0; t < T; t++) /* no downgrade left that fits */
      for (int c = 0; c < K; c++)
        if (bytes[t * K + c] < bytes[t * K + choice[t]])
          assert_true(pred - kld[t * K + choice[t]] + kld[t * K + c] > budget);
  }
}

static void test_select_order_free(void** state) {
  (void)state;
  /* candidates given large-first: the start is still the smallest of each weight */
  double kld[2 * 2] = {0.0, 0.5, 0.0, 0.4};
  uint64_t bytes[2 * 2] = {400, 100, 400, 100};
  qn_mp_problem p = {2, 2, kld, bytes};
  int choice[2];
  double pred;
  assert_true(qn_mp_select(&p, 10, choice, &pred));
  assert_int_equal(choice[0], 1);
  assert_int_equal(choice[1], 1);
  assert_true(qn_mp_select(&p, 0.45, choice, &pred)); /* upgrade the worse weight only */
  assert_int_equal(choice[0], 0);
  assert_int_equal(choice[1], 1);
  assert_false(qn_mp_select(&p, -1, choice, &pred));
}

static void test_recipe_roundtrip(void** state) {
  (void)state;
  const char* kinds[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                          "ffn_gate", "ffn_up", "ffn_down"};
  enum { L = 8, N = 2 + 7 * L };
  char names[N][64];
  const char* np[N];
  qn_qtype sch[N];
  const qn_qtype pool[3] = {QN_QTYPE_Q4_G32, QN_QTYPE_Q8_C, QN_QTYPE_F16};
  for (int trial = 0; trial < 50; trial++) {
    int k = 0;
    snprintf(names[k++], 64, "token_embd.weight");
    for (int l = 0; l < L; l++)
      for (int j = 0; j < 7; j++) snprintf(names[k++], 64, "blk.%d.%s.weight", l, kinds[j]);
    snprintf(names[k++], 64, "output.weight");
    for (int i = 0; i < N; i++) {
      np[i] = names[i];
      /* trial 0: all attn_q int4, everything else int8; then random */
      sch[i] =
          trial == 0 ? (strstr(names[i], "attn_q.") ? pool[0] : pool[1]) : pool[(int)(rnd() * 3)];
    }
    qn_qtype def;
    char** rules = NULL;
    int nr = 0;
    assert_int_equal(qn_mp_recipe(np, sch, N, &def, &rules, &nr), QN_OK);
    qn_recipe rc;
    assert_int_equal(qn_recipe_init(&rc, qn_qtype_traits_of(def)->name), QN_OK);
    for (int i = 0; i < nr; i++) assert_int_equal(qn_recipe_add(&rc, rules[i], "test"), QN_OK);
    for (int i = 0; i < N; i++) assert_int_equal(qn_recipe_pick(&rc, np[i]), sch[i]);
    if (trial == 0) {
      assert_int_equal(def, QN_QTYPE_Q8_C);
      assert_int_equal(nr, 1);
      assert_string_equal(rules[0], "blk.*.attn_q.weight=int4-g32");
    }
    qn_mp_rules_free(rules, nr);
  }
  /* more exceptions than a recipe holds: a clean error */
  enum { M = 200 };
  static char many[M][32];
  const char* mp[M];
  qn_qtype ms[M];
  for (int i = 0; i < M; i++) {
    snprintf(many[i], sizeof many[i], "w%d.weight", i);
    mp[i] = many[i];
    ms[i] = pool[i % 3];
  }
  qn_qtype def;
  char** rules = NULL;
  int nr = 0;
  assert_int_equal(qn_mp_recipe(mp, ms, M, &def, &rules, &nr), QN_EUNSUPPORTED);
  assert_non_null(strstr(qn_last_error(), "rules"));
  assert_null(rules);
}

/* ---- stories260K ------------------------------------------------------------------------- */

static void test_layer_sensitivity(void** state) {
  (void)state;
  size_t len = first_stories(20);
  qn_sens_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int4-g32";
  o.unit = QN_SENS_LAYER;
  o.eval = per_story();
  o.n_threads = 1;
  qn_sens_result r;
  assert_int_equal(qn_sensitivity(g_model, g_text, len, &o, &r), QN_OK);
  assert_int_equal(r.n_entries, 5);
  assert_int_equal(r.n_docs, 20);
  assert_string_equal(r.scheme, "int4-g32");
  bool seen[5] = {false};
  for (int i = 0; i < r.n_entries; i++) {
    const qn_sens_entry* e = &r.entries[i];
    assert_true(e->layer >= 0 && e->layer < 5);
    assert_false(seen[e->layer]);
    seen[e->layer] = true;
    char want[16];
    snprintf(want, sizeof want, "blk.%d", e->layer);
    assert_string_equal(e->name, want);
    assert_int_equal(e->n_tensors, 7);
    assert_true(isfinite(e->kld_mean) && e->kld_mean > 0);
    assert_true(e->top1_agree > 0.5 && e->top1_agree < 1.0);
    assert_true(e->bytes > 0 && e->bytes * 6 < e->bytes_f32); /* ~4.6 of 32 bits */
    if (i) assert_true(e->kld_mean <= r.entries[i - 1].kld_mean);
  }
  /* against the whole model at int4-g32, and an independent file-based measurement */
  qn_model* base = open_base();
  qn_cmp_result whole = quantize_and_compare(base, "int4-g32", NULL, len, NULL);
  for (int i = 0; i < r.n_entries; i++) assert_true(r.entries[i].kld_mean < whole.kld_mean);
  assert_true(fabs(whole.ppl_base - r.ppl_base) <= 1e-9 * r.ppl_base);
  char rule[32];
  snprintf(rule, sizeof rule, "blk.%d.*=int4-g32", r.entries[0].layer);
  qn_cmp_result one = quantize_and_compare(base, "f32", rule, len, NULL);
  assert_true(fabs(one.kld_mean - r.entries[0].kld_mean) <= 1e-6 * one.kld_mean);
  assert_true(fabs(one.ppl_quant - r.entries[0].ppl) <= 1e-6 * one.ppl_quant);
  assert_true(fabs(one.top1_agree - r.entries[0].top1_agree) <= 1e-12);
  qn_model_free(base);
  qn_sens_result_free(&r);
}

static void test_tensor_sensitivity(void** state) {
  (void)state;
  qn_sens_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int8-channel";
  o.unit = QN_SENS_TENSOR;
  o.eval = per_story();
  o.n_threads = 1;
  qn_sens_result r;
  assert_int_equal(qn_sensitivity(g_model, g_text, first_stories(2), &o, &r), QN_OK);
  assert_int_equal(r.n_entries, 1 + 7 * 5); /* tied head: token_embd drives both */
  int embd = 0;
  for (int i = 0; i < r.n_entries; i++) {
    assert_int_equal(r.entries[i].n_tensors, 1);
    assert_true(r.entries[i].kld_mean > 0);
    for (int j = 0; j < i; j++) assert_string_not_equal(r.entries[i].name, r.entries[j].name);
    embd += !strcmp(r.entries[i].name, "token_embd.weight");
  }
  assert_int_equal(embd, 1);
  qn_sens_result_free(&r);
}

static void test_mixed_precision(void** state) {
  (void)state;
  size_t len = first_stories(6);
  qn_model* base = open_base();
  uint64_t b4 = 0, b8 = 0;
  double k4 = quantize_and_compare(base, "int4-g32", NULL, len, &b4).kld_mean;
  double k8 = quantize_and_compare(base, "int8-channel", NULL, len, &b8).kld_mean;
  assert_true(k8 < k4);
  double target = sqrt(k4 * k8); /* between the two, far from both */
  char out[128];
  snprintf(out, sizeof out, "%s/mp.qnz", g_dir);
  qn_quantize_opts q;
  memset(&q, 0, sizeof q);
  q.n_threads = 1;
  qn_mp_opts o;
  memset(&o, 0, sizeof o);
  o.candidates = "int4-g32,int8-channel,f16";
  o.target_kld = target;
  o.eval = per_story();
  o.out_path = out;
  o.quantize = &q;
  qn_mp_result r;
  assert_int_equal(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_OK);
  fprintf(stderr,
          "int4 KLD %.5g, int8 KLD %.5g, target %.5g: measured %.5g (predicted %.5g), "
          "%.3f bpw, %d rounds\n%s",
          k4, k8, target, r.cmp.kld_mean, r.kld_predicted, r.bpw, r.rounds, r.recipe);
  assert_true(r.cmp.kld_mean <= target);
  assert_true(r.rounds >= 1 && r.rounds <= 4);
  assert_int_equal(r.n_candidates, 3);
  assert_int_equal(r.n_tensors, 36);
  assert_true(r.bytes_smallest <= r.bytes && r.bytes <= r.bytes_largest);
  assert_true(r.bytes < b8); /* cheaper than all-int8-channel */
  assert_true(r.bytes_smallest == b4);
  uint64_t sum = 0;
  for (int t = 0; t < r.n_tensors; t++) sum += r.tensors[t].bytes;
  assert_true(sum == r.bytes);
  /* the file it kept, measured independently */
  qn_model_opts mo = {.n_threads = 1};
  qn_model* qm = NULL;
  assert_int_equal(qn_model_open(out, &mo, &qm), QN_OK);
  qn_ppl_opts e = per_story();
  qn_cmp_result again;
  assert_int_equal(qn_eval_cmp(base, qm, g_text, len, &e, &again), QN_OK);
  assert_true(again.kld_mean <= target);
  assert_true(fabs(again.kld_mean - r.cmp.kld_mean) <= 1e-9 * again.kld_mean);
  qn_model_free(qm);
  /* the recipe text is a recipe file that rebuilds the same model */
  char rpath[128], rebuilt[128];
  snprintf(rpath, sizeof rpath, "%s/recipe.txt", g_dir);
  snprintf(rebuilt, sizeof rebuilt, "%s/rebuilt.qnz", g_dir);
  FILE* f = fopen(rpath, "w");
  assert_non_null(f);
  fputs(r.recipe, f);
  fclose(f);
  qn_quantize_opts qr;
  memset(&qr, 0, sizeof qr);
  qr.scheme = "f32"; /* the file's "default" line overrides it */
  qr.recipe_path = rpath;
  qn_quantize_report rep;
  assert_int_equal(qn_quantize(g_model, rebuilt, &qr, &rep), QN_OK);
  uint64_t rb = 0;
  for (int i = 0; i < rep.n_tensors; i++)
    if (rep.tensors[i].cols > 1) rb += rep.tensors[i].bytes_out;
  assert_true(rb == r.bytes);
  qn_quantize_report_free(&rep);
  unlink(rebuilt);
  unlink(rpath);
  unlink(out);
  qn_model_free(base);
  qn_mp_result_free(&r);
}

static void expect_error(qn_status got, qn_status want, const char* needle) {
  assert_int_equal(got, want);
  if (!strstr(qn_last_error(), needle))
    fail_msg("message '%s' does not mention '%s'", qn_last_error(), needle);
}

static void test_bad_inputs(void** state) {
  (void)state;
  size_t len = first_stories(2);
  qn_sens_opts so;
  memset(&so, 0, sizeof so);
  so.scheme = "int5-g32";
  so.eval = per_story();
  so.n_threads = 1;
  qn_sens_result sr;
  expect_error(qn_sensitivity(g_model, g_text, len, &so, &sr), QN_EINVAL, "int5-g32");
  so.scheme = "w8a8-static";
  expect_error(qn_sensitivity(g_model, g_text, len, &so, &sr), QN_EUNSUPPORTED, "calibrat");
  so.scheme = "int4-g32";
  expect_error(qn_sensitivity(g_model, g_text, 0, &so, &sr), QN_EINVAL, "");

  qn_quantize_opts q;
  memset(&q, 0, sizeof q);
  q.n_threads = 1;
  qn_mp_opts o;
  memset(&o, 0, sizeof o);
  o.candidates = "int4-g32,int8-channel";
  o.eval = per_story();
  o.quantize = &q;
  qn_mp_result r;
  o.target_kld = -0.5;
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EINVAL, "target KLD");
  o.target_kld = 0;
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EINVAL, "no budget");
  o.max_ppl_increase = -3;
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EINVAL, "PPL increase");
  o.max_ppl_increase = 0;
  o.target_kld = 0.01;
  o.candidates = "int4-g32,int9-channel";
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EINVAL, "int9-channel");
  o.candidates = "int4-g32,,f16";
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EINVAL, "empty");
  o.candidates = "f16,f16";
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EINVAL, "twice");
  o.candidates = "int4-g32,w8a8-static";
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_EUNSUPPORTED, "w8a8-static");
  /* int4 everywhere cannot reach a tiny budget: measured, then refused */
  o.candidates = "int4-g32";
  o.target_kld = 1e-9;
  expect_error(qn_mixed_precision(g_model, g_text, len, &o, &r), QN_ERANGE, "unreachable");
  assert_null(r.recipe);
}

/* ---- CLI ---------------------------------------------------------------------------------- */

static int run_quench(const char* args) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s/quench' sensitivity %s >'%s/cli.log' 2>&1", QN_BINARY_DIR, args,
           g_dir);
  int st = system(cmd);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static char* read_in_dir(const char* rel) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", g_dir, rel);
  return qt_read_file(path, NULL);
}

static int count(const char* s, const char* needle) {
  int n = 0;
  for (const char* p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

static void test_cli(void** state) {
  (void)state;
  char small[128], args[1024];
  snprintf(small, sizeof small, "%s/small.txt", g_dir);
  FILE* f = fopen(small, "w");
  assert_non_null(f);
  fwrite(g_text, 1, first_stories(2), f);
  fclose(f);
  snprintf(args, sizeof args, "-m '%s' -f '%s' --scheme int4-g32 -t 1 -o '%s/out'", g_model, small,
           g_dir);
  int rc = run_quench(args);
  if (rc != 0) fprintf(stderr, "%s\n", read_in_dir("cli.log"));
  assert_int_equal(rc, 0);
  char* svg = read_in_dir("out/sensitivity.svg");
  assert_non_null(svg);
  assert_true(!strncmp(svg, "<svg", 4));
  assert_int_equal(count(svg, "<rect x=") - 1, 5); /* background + one bar per layer */
  for (int l = 0; l < 5; l++) {
    char lab[16];
    snprintf(lab, sizeof lab, ">blk.%d<", l);
    assert_non_null(strstr(svg, lab));
  }
  free(svg);
  char* js = read_in_dir("out/sensitivity.json");
  assert_non_null(js);
  cJSON* j = cJSON_Parse(js);
  assert_non_null(j);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "entries")), 5);
  cJSON_Delete(j);
  free(js);

  snprintf(args, sizeof args,
           "-m '%s' -f '%s' --candidates int4-g32,int8-channel --target-kld 0.02 -t 1 -o "
           "'%s/mp'",
           g_model, small, g_dir);
  rc = run_quench(args);
  if (rc != 0) fprintf(stderr, "%s\n", read_in_dir("cli.log"));
  assert_int_equal(rc, 0);
  char* recipe = read_in_dir("mp/recipe.txt");
  assert_non_null(recipe);
  assert_non_null(strstr(recipe, "# quench mixed precision"));
  assert_non_null(strstr(recipe, "\ndefault "));
  free(recipe);
  char* log = read_in_dir("cli.log");
  assert_non_null(strstr(log, "mean KLD"));
  free(log);

  snprintf(args, sizeof args, "-m '%s' -f '%s' --candidates int4-g32,f16 --target-kld 0 -o '%s/x'",
           g_model, small, g_dir);
  assert_int_equal(run_quench(args), 2);
  log = read_in_dir("cli.log");
  assert_non_null(strstr(log, "--target-kld must be > 0"));
  free(log);
  snprintf(args, sizeof args, "-m '%s' -f '%s' --candidates int4-g33 --target-kld 0.1 -o '%s/x'",
           g_model, small, g_dir);
  assert_int_equal(run_quench(args), 2);
  log = read_in_dir("cli.log");
  assert_non_null(strstr(log, "unknown scheme 'int4-g33'"));
  free(log);
}

static void cleanup_dir(void) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

int main(void) {
  const struct CMUnitTest pure[] = {
      cmocka_unit_test(test_select_synthetic),
      cmocka_unit_test(test_select_order_free),
      cmocka_unit_test(test_recipe_roundtrip),
  };
  int failed = cmocka_run_group_tests_name("mixed precision (synthetic)", pure, NULL, NULL);
  g_model = qt_shared("models/stories260K/stories260K.bin");
  const char* text = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_model || !text) qt_skip("stories260K or the TinyStories text is missing");
  g_text = qt_read_file(text, &g_len);
  if (!g_text) qt_skip("cannot read the TinyStories text");
  snprintf(g_dir, sizeof g_dir, "/tmp/qn-sens-XXXXXX");
  if (!mkdtemp(g_dir)) qt_skip("cannot create a temporary directory");
  const struct CMUnitTest model[] = {
      cmocka_unit_test(test_layer_sensitivity),
      cmocka_unit_test(test_tensor_sensitivity),
      cmocka_unit_test(test_mixed_precision),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_cli),
  };
  failed += cmocka_run_group_tests_name("sensitivity (stories260K)", model, NULL, NULL);
  cleanup_dir();
  free(g_text);
  return failed;
}
