/* test_default_model.c: the embedded default model (models/default, always present) as the
 * golden case: Quench reproduces the held-out perplexity its training script computed with
 * PyTorch (models/default/README.md: NLL 1.50975, PPL 4.5256 over 261,632 predictions),
 * within 0.1%; its tokenizer round-trips the held-out text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quench.h"
#include "testutil.h"

#define MODEL QN_SOURCE_DIR "/models/default"
#define HELDOUT QN_SOURCE_DIR "/text/default-heldout.txt"

static void test_heldout_ppl(void** state) {
  (void)state;
  size_t len;
  char* text = qt_read_file(HELDOUT, &len);
  assert_non_null(text);
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(MODEL, NULL, &m), QN_OK);
  qn_ppl_opts po = {512, 0, NULL, NULL, NULL};
  qn_ppl_result r;
  assert_int_equal(qn_eval_ppl(m, text, len, &po, &r), QN_OK);
  printf("default model: %d windows, %lld predictions, NLL %.6f, PPL %.5f (PyTorch: 4.52559)\n",
         r.n_docs, (long long)r.tokens, r.nll, r.ppl);
  assert_int_equal(r.n_docs, 512);
  assert_int_equal(r.tokens, 261632);
  assert_true(fabs(r.ppl / 4.525586 - 1.0) <= 0.001);
  qn_model_free(m);
  free(text);
}

static void test_roundtrip(void** state) {
  (void)state;
  size_t len;
  char* text = qt_read_file(HELDOUT, &len);
  assert_non_null(text);
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(MODEL, NULL, &m), QN_OK);
  int* ids;
  int n;
  assert_int_equal(qn_tokenize(m, text, len, false, &ids, &n), QN_OK);
  assert_int_equal(n, 262152); /* train_report.json: heldout_tokens */
  char* back;
  size_t blen;
  assert_int_equal(qn_detokenize(m, ids, n, &back, &blen), QN_OK);
  assert_int_equal(blen, len);
  assert_memory_equal(back, text, len);
  free(back);
  free(ids);
  qn_model_free(m);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_heldout_ppl),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
