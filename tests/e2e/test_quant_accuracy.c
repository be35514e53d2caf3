/* test_quant_accuracy.c: what quantization costs on stories260K over the TinyStories text,
 * story by story (split on <|endoftext|>, BOS + full context), measured by qn_eval_cmp:
 *  - the base perplexity is the README's independent figure (3.371 over 36,583 tokens);
 *  - int8-channel: mean KLD <= 0.001, top-1 agreement >= 98.5%, |delta PPL| <= 0.5% (the
 *    issue's bar; an independent checker measured KLD 0.00054, top-1 98.8%);
 *  - int4-g32: the error-minimising scale search has a lower mean KLD than plain absmax;
 *  - f16: mean KLD < 1e-5 (on the first 20 kB of the text).
 * A model compared with itself gives KLD 0 and full agreement (checked on a few stories). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "quench.h"

static const char* g_bin;  /* stories260K.bin */
static char* g_text;       /* the TinyStories text */
static size_t g_len;       /* its bytes */
static qn_model* g_base;   /* the FP32 model */
static char g_out[4][128]; /* .qnz files written here */

static int setup(void** state) {
  (void)state;
  qn_model_opts mo = {NULL, 0};
  if (qn_model_open(g_bin, &mo, &g_base) != QN_OK) return -1;
  for (int i = 0; i < 4; i++)
    snprintf(g_out[i], sizeof g_out[i], "/tmp/qt_acc_%d_%d.qnz", (int)getpid(), i);
  return 0;
}

static int teardown(void** state) {
  (void)state;
  for (int i = 0; i < 4; i++) unlink(g_out[i]);
  qn_model_free(g_base);
  free(g_text);
  return 0;
}

/* Quantizes the model to out with scheme (and the search) and compares it with the base over
 * the first max_bytes of the text (0 = all). */
static qn_cmp_result quantize_and_compare(const char* scheme, bool search, const char* out,
                                          size_t max_bytes) {
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = scheme;
  o.search = search;
  qn_quantize_report rep;
  if (qn_quantize(g_bin, out, &o, &rep) != QN_OK) fail_msg("%s: %s", scheme, qn_last_error());
  double bpw = rep.bpw;
  qn_quantize_report_free(&rep);
  qn_model_opts mo = {NULL, 0};
  qn_model* q = NULL;
  if (qn_model_open(out, &mo, &q) != QN_OK) fail_msg("%s: %s", out, qn_last_error());
  qn_ppl_opts po = {0, 0, "<|endoftext|>", NULL, NULL};
  qn_cmp_result r;
  size_t len = max_bytes && max_bytes < g_len ? max_bytes : g_len;
  if (qn_eval_cmp(g_base, q, g_text, len, &po, &r) != QN_OK)
    fail_msg("%s: %s", scheme, qn_last_error());
  qn_model_free(q);
  double dppl = 100 * (r.ppl_quant - r.ppl_base) / r.ppl_base;
  printf(
      "  %-9s%s %6.3f bpw: PPL %.4f -> %.4f (%+.3f%%), KLD mean %.6f p99 %.5f max %.4f, "
      "top-1 %.2f%% over %lld tokens / %d stories (%.1f s)\n",
      scheme, search ? " search" : "       ", bpw, r.ppl_base, r.ppl_quant, dppl, r.kld_mean,
      r.kld_p99, r.kld_max, 100 * r.top1_agree, (long long)r.tokens, r.n_docs, r.seconds);
  assert_true(r.kld_mean >= 0 && r.kld_p99 >= 0 && r.kld_max >= r.kld_p99);
  assert_true(r.kld_p99 >= 0 && r.top1_agree >= 0 && r.top1_agree <= 1);
  return r;
}

static void test_self_compare(void** state) {
  (void)state;
  qn_model_opts mo = {NULL, 0};
  qn_model* same = NULL;
  assert_int_equal(qn_model_open(g_bin, &mo, &same), QN_OK);
  qn_ppl_opts po = {0, 0, "<|endoftext|>", NULL, NULL};
  qn_cmp_result r;
  assert_int_equal(qn_eval_cmp(g_base, same, g_text, 4000, &po, &r), QN_OK);
  qn_model_free(same);
  assert_true(r.tokens > 500);
  assert_true(r.kld_max < 1e-9);
  assert_true(r.top1_agree == 1.0);
  assert_true(r.ppl_base == r.ppl_quant);
}

static void test_int8_channel(void** state) {
  (void)state;
  qn_cmp_result r = quantize_and_compare("int8-channel", false, g_out[0], 0);
  /* the base side is the README's independent reference */
  assert_int_equal(r.n_docs, 112);
  assert_int_equal(r.tokens, 36583);
  assert_true(fabs(r.ppl_base - 3.371) < 0.0015);
  assert_true(r.kld_mean <= 0.001);
  assert_true(r.top1_agree >= 0.985);
  assert_true(fabs(r.ppl_quant - r.ppl_base) <= 0.005 * r.ppl_base);
  assert_true(r.kld_mean > 0); /* it did quantize */
}

static void test_int4_search_beats_rtn(void** state) {
  (void)state;
  qn_cmp_result rtn = quantize_and_compare("int4-g32", false, g_out[1], 0);
  qn_cmp_result srch = quantize_and_compare("int4-g32", true, g_out[2], 0);
  assert_true(srch.kld_mean < rtn.kld_mean);
  /* int4 costs far more than int8 but still tracks the model */
  assert_true(rtn.kld_mean > 0.01 && rtn.kld_mean < 1.0);
  assert_true(rtn.top1_agree > 0.6);
}

static void test_f16(void** state) {
  (void)state;
  /* a quarter of the text is plenty for a difference this small */
  qn_cmp_result r = quantize_and_compare("f16", false, g_out[3], 20000);
  assert_true(r.tokens > 8000);
  assert_true(r.kld_mean < 1e-5);
  assert_true(r.top1_agree > 0.998);
}

int main(void) {
  g_bin = qt_shared("models/stories260K/stories260K.bin");
  const char* txt = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_bin || !txt) qt_skip("stories260K or the TinyStories text is absent");
  g_text = qt_read_file(txt, &g_len);
  if (!g_text) qt_skip("cannot read the TinyStories text");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_self_compare),
      cmocka_unit_test(test_int8_channel),
      cmocka_unit_test(test_int4_search_beats_rtn),
      cmocka_unit_test(test_f16),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
