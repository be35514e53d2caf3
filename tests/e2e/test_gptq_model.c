/* test_gptq_model.c: GPTQ end to end on stories260K: calibrate on the first 30 stories of the
 * TinyStories text, evaluate per story on the next 30, and require GPTQ at int4-g32 to give a
 * lower mean KLD than round-to-nearest with the same scheme; a GPTQ .qnz records its method. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

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

static double kld_of(const char* method) {
  char out[256];
  snprintf(out, sizeof out, "/tmp/qn_gptq_e2e_%d_%s.qnz", (int)getpid(), method);
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int4-g32";
  o.method = method;
  o.calib_path = g_calib;
  assert_int_equal(qn_quantize(g_model, out, &o, NULL), QN_OK);
  size_t len;
  char* text = qt_read_file(g_eval, &len);
  qn_model *base = NULL, *q = NULL;
  assert_int_equal(qn_model_open(g_model, NULL, &base), QN_OK);
  assert_int_equal(qn_model_open(out, NULL, &q), QN_OK);
  if (strcmp(method, "gptq") == 0) {
    const char* md = qn_model_metadata(q);
    assert_non_null(md);
    assert_non_null(strstr(md, "gptq"));
  }
  qn_ppl_opts po = {0, 0, "<|endoftext|>", NULL, NULL};
  qn_cmp_result r;
  assert_int_equal(qn_eval_cmp(base, q, text, len, &po, &r), QN_OK);
  printf("int4-g32 %-5s: KLD %.5f, top-1 %.2f%%, PPL %.4f -> %.4f\n", method, r.kld_mean,
         100 * r.top1_agree, r.ppl_base, r.ppl_quant);
  qn_model_free(base);
  qn_model_free(q);
  free(text);
  remove(out);
  return r.kld_mean;
}

static void test_gptq_beats_rtn(void** state) {
  (void)state;
  double rtn = kld_of("rtn");
  double gptq = kld_of("gptq");
  assert_true(gptq < rtn);
}

static void test_gptq_needs_calib(void** state) {
  (void)state;
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int4-g32";
  o.method = "gptq";
  char out[256];
  snprintf(out, sizeof out, "/tmp/qn_gptq_e2e_%d_nocalib.qnz", (int)getpid());
  assert_int_not_equal(qn_quantize(g_model, out, &o, NULL), QN_OK);
  assert_non_null(strstr(qn_last_error(), "calib"));
  FILE* f = fopen(out, "rb");
  assert_null(f);
}

int main(void) {
  g_model = qt_shared("models/stories260K/stories260K.bin");
  const char* textp = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_model || !textp) qt_skip("stories260K or the TinyStories text is not in ../shared");
  char* text = qt_read_file(textp, NULL);
  snprintf(g_calib, sizeof g_calib, "/tmp/qn_gptq_e2e_%d_calib.txt", (int)getpid());
  snprintf(g_eval, sizeof g_eval, "/tmp/qn_gptq_e2e_%d_eval.txt", (int)getpid());
  write_stories(text, 0, 30, g_calib);
  write_stories(text, 30, 60, g_eval);
  free(text);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gptq_needs_calib),
      cmocka_unit_test(test_gptq_beats_rtn),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  remove(g_calib);
  remove(g_eval);
  return rc;
}
