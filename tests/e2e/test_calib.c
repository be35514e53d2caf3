/* test_calib.c: `quench quantize --calib` end to end through the command line.
 *  - refusals, each a clean exit with one "quench quantize: ..." line naming the problem and
 *    no output file left behind: w8a8-static without --calib, an empty calibration file, one
 *    too short (the message says how many tokens it gave and that 64 are needed), an unknown
 *    --calib-method, --smooth 1.5, --smooth without --calib, --percentile 100;
 *  - a calibration text of mostly byte-fallback tokens succeeds with a warning on stderr;
 *  - on stories260K, minmax and percentile calibration (first 30 stories) give thresholds
 *    that differ: minmax equals the observed max |x| of every site and percentile is never
 *    above it and below it somewhere; the .qnz carries quench.calib (the same thresholds)
 *    and NAME.act_scale = threshold / 127 for each weight's site, loads, and its perplexity
 *    on later stories is finite and close to the FP32 model's;
 *  - --smooth auto with w8a8-static runs and reports an alpha per smoothed site. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "model/model.h"

static const char* g_quench = QN_BINARY_DIR "/quench";
static const char* g_model; /* stories260K.bin */
static char g_tmp[128];     /* scratch directory */
static char g_calib[256];   /* the first 30 stories */
static char g_eval[256];    /* stories 31..40 */

typedef struct result {
  int code;  /* exit code, or -signal */
  char* out; /* stdout (malloc'ed) */
  char* err; /* stderr (malloc'ed) */
} result;

static void result_free(result* r) {
  free(r->out);
  free(r->err);
}

/* Runs quench with the NULL-terminated arguments. */
static result run(const char* const* args) {
  char outp[256], errp[256];
  snprintf(outp, sizeof outp, "%s/stdout", g_tmp);
  snprintf(errp, sizeof errp, "%s/stderr", g_tmp);
  const char* argv[64];
  int n = 0;
  argv[n++] = g_quench;
  for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  fflush(stdout);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) _exit(127);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(g_quench, (char* const*)argv);
    _exit(127);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = qt_read_file(outp, NULL);
  r.err = qt_read_file(errp, NULL);
  assert_non_null(r.out);
  assert_non_null(r.err);
  return r;
}

/* Expects a clean failure whose first stderr line starts "quench quantize" and contains
 * every one of the NULL-terminated words; the output file must not exist afterwards. */
static void expect_error(const char* const* args, const char* out_path, ...) {
  result r = run(args);
  if (r.code < 0) fail_msg("killed by signal %d\n%s", -r.code, r.err);
  if (r.code == 0) fail_msg("exit code 0 (stdout %.200s)", r.out);
  char* nl = strchr(r.err, '\n');
  if (nl) *nl = '\0';
  printf("  [%d] %s\n", r.code, r.err);
  assert_true(strncmp(r.err, "quench quantize", 15) == 0);
  va_list ap;
  va_start(ap, out_path);
  for (const char* w; (w = va_arg(ap, const char*));)
    if (!strstr(r.err, w)) fail_msg("message '%s' does not name '%s'", r.err, w);
  va_end(ap);
  if (out_path) assert_int_not_equal(access(out_path, F_OK), 0);
  result_free(&r);
}

static void write_file(const char* path, const char* data, size_t n) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static int setup(void** state) {
  (void)state;
  g_model = qt_shared("models/stories260K/stories260K.bin");
  const char* text = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_model || !text) qt_skip("stories260K or the TinyStories text is absent");
  snprintf(g_tmp, sizeof g_tmp, "/tmp/qt_calib_%d", (int)getpid());
  if (mkdir(g_tmp, 0755) != 0) return -1;
  size_t len = 0;
  char* t = qt_read_file(text, &len);
  if (!t) return -1;
  /* stories are separated by <|endoftext|>: the first 30 calibrate, the next 10 evaluate */
  const char* sep = "<|endoftext|>";
  char* cut[41];
  int found = 0;
  for (char* p = t; found < 41 && (p = strstr(p, sep)); p += strlen(sep)) cut[found++] = p;
  if (found < 41) return -1;
  snprintf(g_calib, sizeof g_calib, "%s/calib.txt", g_tmp);
  snprintf(g_eval, sizeof g_eval, "%s/eval.txt", g_tmp);
  write_file(g_calib, t, (size_t)(cut[29] - t));
  write_file(g_eval, cut[29] + strlen(sep), (size_t)(cut[39] - cut[29]) - strlen(sep));
  free(t);
  return 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_refusals(void** state) {
  (void)state;
  char out[256], empty[256], shortf[256];
  snprintf(out, sizeof out, "%s/never.qnz", g_tmp);
  snprintf(empty, sizeof empty, "%s/empty.txt", g_tmp);
  snprintf(shortf, sizeof shortf, "%s/short.txt", g_tmp);
  write_file(empty, "", 0);
  const char* tiny = "Once upon a time, there was a cat.";
  write_file(shortf, tiny, strlen(tiny));
  const char* m = g_model;
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", NULL}, out,
               "w8a8-static", "calibration", "--calib", NULL);
  expect_error(
      (const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib", empty, NULL},
      out, "empty.txt", "0 tokens", "64", NULL);
  expect_error(
      (const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib", shortf, NULL},
      out, "short.txt", "too short", "at least 64", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib",
                               g_calib, "--calib-method", "median", NULL},
               out, "unknown calibration method", "median", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib",
                               g_calib, "--smooth", "1.5", NULL},
               out, "--smooth", "1.5", "[0, 1]", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib",
                               g_calib, "--smooth", "strong", NULL},
               out, "--smooth", "strong", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-dynamic", "--smooth",
                               "0.5", NULL},
               out, "--smooth", "--calib", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib",
                               g_calib, "--percentile", "100", NULL},
               out, "--percentile", NULL);
  expect_error((const char*[]){"quantize", "-m", m, "-o", out, "-s", "w8a8-static", "--calib",
                               "/nonexistent/calib.txt", NULL},
               out, "/nonexistent/calib.txt", NULL);
}

static void test_byte_fallback_warning(void** state) {
  (void)state;
  /* Greek and CJK text: the 512-token vocabulary spells it out in <0xNN> byte tokens */
  char text[8192];
  size_t n = 0;
  const char* piece = "\xce\xb1\xce\xb2\xce\xb3 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ";
  while (n + strlen(piece) < sizeof text) {
    memcpy(text + n, piece, strlen(piece));
    n += strlen(piece);
  }
  char path[256], out[256];
  snprintf(path, sizeof path, "%s/bytes.txt", g_tmp);
  snprintf(out, sizeof out, "%s/bytes.qnz", g_tmp);
  write_file(path, text, n);
  result r = run((const char*[]){"quantize", "-m", g_model, "-o", out, "-s", "w8a8-static",
                                 "--calib", path, "--calib-tokens", "2000", NULL});
  printf("  [%d] %.300s", r.code, r.err);
  assert_int_equal(r.code, 0);
  assert_non_null(strstr(r.err, "warning"));
  assert_non_null(strstr(r.err, "byte-fallback"));
  result_free(&r);
  /* ordinary text gives no warning */
  r = run((const char*[]){"quantize", "-m", g_model, "-o", out, "-s", "w8a8-static", "--calib",
                          g_calib, "--calib-tokens", "2000", NULL});
  assert_int_equal(r.code, 0);
  assert_null(strstr(r.err, "warning"));
  result_free(&r);
}

/* Quantizes with --json and returns the parsed report. */
static cJSON* quantize_json(const char* out, const char* method, const char* smooth) {
  const char* args[24] = {"quantize", "-m",          g_model,   "-o",    out,
                          "-s",       "w8a8-static", "--calib", g_calib, "--calib-method",
                          method,     "--json"};
  int n = 12;
  if (smooth) {
    args[n++] = "--smooth";
    args[n++] = smooth;
  }
  args[n] = NULL;
  result r = run(args);
  if (r.code != 0) fail_msg("quantize --calib-method %s: [%d] %s", method, r.code, r.err);
  cJSON* j = cJSON_Parse(r.out);
  if (!j) fail_msg("--json output does not parse: %.300s", r.out);
  result_free(&r);
  return j;
}

/* Threshold of (layer, site) in a report's calib.sites, or -1. */
static double site_threshold(const cJSON* sites, int layer, const char* site) {
  const cJSON* e;
  cJSON_ArrayForEach(e, sites) {
    if ((int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "layer")) == layer &&
        !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "site")), site))
      return cJSON_GetNumberValue(cJSON_GetObjectItem(e, "threshold"));
  }
  return -1;
}

static float act_scale_of(const qn_model* m, const char* name) {
  char an[160];
  snprintf(an, sizeof an, "%s.act_scale", name);
  const qn_tensor* t = qn_source_find(m->src, an);
  if (!t) fail_msg("no tensor %s", an);
  assert_int_equal(t->nbytes, 4);
  float v;
  memcpy(&v, t->data, 4);
  return v;
}

static void test_methods_differ_and_run(void** state) {
  (void)state;
  char out_mm[256], out_pc[256];
  snprintf(out_mm, sizeof out_mm, "%s/minmax.qnz", g_tmp);
  snprintf(out_pc, sizeof out_pc, "%s/percentile.qnz", g_tmp);
  cJSON* jm = quantize_json(out_mm, "minmax", NULL);
  cJSON* jp = quantize_json(out_pc, "percentile", NULL);
  const cJSON* cm = cJSON_GetObjectItem(jm, "calib");
  const cJSON* cp = cJSON_GetObjectItem(jp, "calib");
  assert_non_null(cm);
  assert_non_null(cp);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cm, "method")), "minmax");
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cp, "method")), "percentile");
  assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(cm, "tokens")) >= 1000);
  const cJSON* sm = cJSON_GetObjectItem(cm, "sites");
  const cJSON* sp = cJSON_GetObjectItem(cp, "sites");
  /* 5 blocks x 4 linear inputs + the head's input */
  assert_int_equal(cJSON_GetArraySize(sm), 21);
  assert_int_equal(cJSON_GetArraySize(sp), 21);
  int lower = 0;
  const cJSON* e;
  cJSON_ArrayForEach(e, sm) {
    double mn = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "min"));
    double mx = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "max"));
    double tm = cJSON_GetNumberValue(cJSON_GetObjectItem(e, "threshold"));
    double absmax = fmax(fabs(mn), fabs(mx));
    assert_float_equal(tm, absmax, 1e-5 * absmax);
    assert_float_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(e, "clipped")), 0.0, 1e-12);
    int layer = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(e, "layer"));
    const char* site = cJSON_GetStringValue(cJSON_GetObjectItem(e, "site"));
    double tp = site_threshold(sp, layer, site);
    assert_true(tp > 0 && tp <= tm * (1 + 1e-6));
    lower += tp < tm * 0.99;
  }
  assert_true(lower >= 5);

  /* the .qnz: metadata summary and activation scales match the report; it loads and runs */
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(out_pc, NULL, &m), QN_OK);
  cJSON* md = cJSON_Parse(qn_model_metadata(m));
  assert_non_null(md);
  cJSON* calib = cJSON_Parse(cJSON_GetStringValue(cJSON_GetObjectItem(md, "quench.calib")));
  assert_non_null(calib);
  assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(calib, "method")), "percentile");
  const cJSON* msites = cJSON_GetObjectItem(calib, "sites");
  assert_float_equal(site_threshold(msites, 2, "ffn_mid"), site_threshold(sp, 2, "ffn_mid"),
                     1e-5 * site_threshold(sp, 2, "ffn_mid"));
  struct {
    const char* name;
    int layer;
    const char* site;
  } w[] = {{"blk.0.attn_q.weight", 0, "attn_in"},       {"blk.0.attn_v.weight", 0, "attn_in"},
           {"blk.3.attn_output.weight", 3, "attn_out"}, {"blk.1.ffn_up.weight", 1, "ffn_in"},
           {"blk.4.ffn_down.weight", 4, "ffn_mid"},     {"token_embd.weight", -1, "output_in"}};
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    double T = site_threshold(sp, w[i].layer, w[i].site);
    assert_float_equal(act_scale_of(m, w[i].name), T / 127.0, 1e-5 * T / 127.0);
  }
  cJSON_Delete(calib);
  cJSON_Delete(md);
  size_t len = 0;
  char* text = qt_read_file(g_eval, &len);
  assert_non_null(text);
  qn_model* base = NULL;
  assert_int_equal(qn_model_open(g_model, NULL, &base), QN_OK);
  qn_ppl_opts po;
  memset(&po, 0, sizeof po);
  po.sep = "<|endoftext|>";
  qn_cmp_result cr;
  assert_int_equal(qn_eval_cmp(base, m, text, len, &po, &cr), QN_OK);
  printf("  percentile w8a8-static on stories 31-40: PPL %.4f vs %.4f, KLD %.5f, top-1 %.2f%%\n",
         cr.ppl_quant, cr.ppl_base, cr.kld_mean, 100 * cr.top1_agree);
  assert_true(isfinite(cr.ppl_quant));
  assert_true(cr.ppl_quant < cr.ppl_base * 1.05);
  assert_true(cr.top1_agree > 0.9);
  free(text);
  qn_model_free(base);
  qn_model_free(m);
  cJSON_Delete(jm);
  cJSON_Delete(jp);
}

static void test_smooth_auto(void** state) {
  (void)state;
  char out[256];
  snprintf(out, sizeof out, "%s/auto.qnz", g_tmp);
  cJSON* j = quantize_json(out, "percentile", "auto");
  const cJSON* sites = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "calib"), "sites");
  int with_alpha = 0;
  const cJSON* e;
  cJSON_ArrayForEach(e, sites) {
    const cJSON* a = cJSON_GetObjectItem(e, "alpha");
    if (!a) continue;
    double v = cJSON_GetNumberValue(a);
    assert_true(v >= 0.3 - 1e-9 && v <= 0.8 + 1e-9);
    with_alpha++;
  }
  printf("  --smooth auto: %d of %d sites smoothed\n", with_alpha, cJSON_GetArraySize(sites));
  assert_true(with_alpha >= 1);
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(out, NULL, &m), QN_OK);
  qn_model_free(m);
  cJSON_Delete(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_byte_fallback_warning),
      cmocka_unit_test(test_methods_differ_and_run),
      cmocka_unit_test(test_smooth_auto),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
