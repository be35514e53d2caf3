/* test_awq_model.c: AWQ and the importance-weighted search end to end on stories260K:
 * calibrate on the first 30 stories of the TinyStories text, evaluate per story on the next
 * 30, and require AWQ at int4-g32 to cut the mean KLD of round-to-nearest (same scheme) by at
 * least 15% and imp to beat RTN; their .qnz files record the method; both refuse to run
 * without calibration text; two AWQ runs write byte-identical files. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quench.h"
#include "testutil.h"

static const char* g_model;
static char g_calib[256], g_eval[256];

/* Writes stories [from, to) of the text (split on <|endoftext|>) to path. */
static void write_stories(const char* text, int from, int to, const char* path) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  const char* sep = "<|endoftext|>";
  const char* p = text;
  for (int i = 0; p && i < to; i++) {
    const char* e = strstr(p, sep);
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (i >= from) {
      fwrite(p, 1, n, f);
      fputs(sep, f);
    }
    p = e ? e + strlen(sep) : NULL;
  }
  fclose(f);
}

/* Quantizes stories260K to int4-g32 with method and returns its mean KLD on the eval text. */
static double kld_of(const char* method) {
  char out[256];
  snprintf(out, sizeof out, "/tmp/qn_awq_e2e_%d_%s.qnz", (int)getpid(), method);
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int4-g32";
  o.method = method;
  o.calib_path = strcmp(method, "rtn") ? g_calib : NULL;
  qn_quantize_report rep;
  assert_int_equal(qn_quantize(g_model, out, &o, &rep), QN_OK);
  assert_int_equal(rep.n_calib, 0); /* the weight methods need no activation observers */
  qn_quantize_report_free(&rep);
  size_t len;
  char* text = qt_read_file(g_eval, &len);
  qn_model *base = NULL, *q = NULL;
  assert_int_equal(qn_model_open(g_model, NULL, &base), QN_OK);
  assert_int_equal(qn_model_open(out, NULL, &q), QN_OK);
  const char* md = qn_model_metadata(q);
  assert_non_null(md);
  char want[64];
  snprintf(want, sizeof want, "\"quench.method\":\"%s\"", method);
  assert_non_null(strstr(md, want));
  qn_ppl_opts po = {0, 0, "<|endoftext|>", NULL, NULL};
  qn_cmp_result r;
  assert_int_equal(qn_eval_cmp(base, q, text, len, &po, &r), QN_OK);
  printf("int4-g32 %-4s: KLD %.5f, top-1 %.2f%%, PPL %.4f -> %.4f\n", method, r.kld_mean,
         100 * r.top1_agree, r.ppl_base, r.ppl_quant);
  qn_model_free(base);
  qn_model_free(q);
  free(text);
  remove(out);
  return r.kld_mean;
}

static void test_awq_and_imp_beat_rtn(void** state) {
  (void)state;
  double rtn = kld_of("rtn");
  double awq = kld_of("awq");
  double imp = kld_of("imp");
  printf("KLD vs RTN: awq %+.1f%%, imp %+.1f%%\n", 100 * (awq / rtn - 1), 100 * (imp / rtn - 1));
  assert_true(awq < 0.85 * rtn);
  assert_true(imp < rtn);
}

static void test_methods_need_calib(void** state) {
  (void)state;
  static const char* const methods[] = {"awq", "imp", "awq+gptq"};
  for (int i = 0; i < 3; i++) {
    qn_quantize_opts o;
    memset(&o, 0, sizeof o);
    o.scheme = "int4-g32";
    o.method = methods[i];
    char out[256];
    snprintf(out, sizeof out, "/tmp/qn_awq_e2e_%d_nocalib.qnz", (int)getpid());
    assert_int_not_equal(qn_quantize(g_model, out, &o, NULL), QN_OK);
    assert_non_null(strstr(qn_last_error(), "calib"));
    FILE* f = fopen(out, "rb");
    assert_null(f);
  }
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int4-g32";
  o.method = "awq-ish";
  o.calib_path = g_calib;
  assert_int_equal(qn_quantize(g_model, "/tmp/qn_awq_e2e_never.qnz", &o, NULL), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "awq+gptq"));
}

/* Two AWQ runs with the same inputs write byte-identical files (no timing in the metadata). */
static void test_awq_reproducible(void** state) {
  (void)state;
  char out[2][256];
  char* bytes[2];
  size_t len[2];
  for (int k = 0; k < 2; k++) {
    snprintf(out[k], sizeof out[k], "/tmp/qn_awq_e2e_%d_rep%d.qnz", (int)getpid(), k);
    qn_quantize_opts o;
    memset(&o, 0, sizeof o);
    o.scheme = "int4-g32";
    o.method = "awq";
    o.calib_path = g_calib;
    assert_int_equal(qn_quantize(g_model, out[k], &o, NULL), QN_OK);
    bytes[k] = qt_read_file(out[k], &len[k]);
    remove(out[k]);
  }
  assert_true(len[0] == len[1]);
  assert_memory_equal(bytes[0], bytes[1], len[0]);
  free(bytes[0]);
  free(bytes[1]);
}

int main(void) {
  g_model = qt_shared("models/stories260K/stories260K.bin");
  const char* textp = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_model || !textp) qt_skip("stories260K or the TinyStories text is not in ../shared");
  char* text = qt_read_file(textp, NULL);
  snprintf(g_calib, sizeof g_calib, "/tmp/qn_awq_e2e_%d_calib.txt", (int)getpid());
  snprintf(g_eval, sizeof g_eval, "/tmp/qn_awq_e2e_%d_eval.txt", (int)getpid());
  write_stories(text, 0, 30, g_calib);
  write_stories(text, 30, 60, g_eval);
  free(text);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_methods_need_calib),
      cmocka_unit_test(test_awq_and_imp_beat_rtn),
      cmocka_unit_test(test_awq_reproducible),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  remove(g_calib);
  remove(g_eval);
  return rc;
}
