/* test_pycode_model.c: the FP32 path on pycode-19m (HF safetensors, bf16, byte-level BPE,
 * rotate-half RoPE) against golden.json from transformers, and its held-out perplexity
 * 3.9744 over 390 windows of 512 tokens (../shared/models/pycode-19m/README.md). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quench.h"
#include "testutil.h"

static const char* g_dir;
static cJSON* g_golden;
static qn_model* g_model;

static int* json_ints(const cJSON* arr, int* n) {
  *n = cJSON_GetArraySize(arr);
  int* v = malloc(sizeof(int) * (size_t)(*n > 0 ? *n : 1));
  for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(arr, i)->valueint;
  return v;
}

static void test_prompt_tokens(void** state) {
  (void)state;
  const char* text = cJSON_GetObjectItem(g_golden, "prompt_text")->valuestring;
  int n_exp, n_got, *got;
  int* exp = json_ints(cJSON_GetObjectItem(g_golden, "prompt_ids"), &n_exp);
  assert_int_equal(qn_tokenize(g_model, text, strlen(text), false, &got, &n_got), QN_OK);
  assert_int_equal(n_got, n_exp);
  assert_memory_equal(got, exp, sizeof(int) * (size_t)n_exp);
  free(got);
  free(exp);
}

static void test_logits(void** state) {
  (void)state;
  int n;
  int* ids = json_ints(cJSON_GetObjectItem(g_golden, "prompt_ids"), &n);
  const int V = 8192;
  float* logits = malloc(sizeof(float) * (size_t)V * (size_t)n);
  int* pos = malloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) pos[i] = i;
  qn_ctx* c;
  assert_int_equal(qn_ctx_new(g_model, 0, 1, &c), QN_OK);
  assert_int_equal(qn_ctx_forward(c, ids, pos, NULL, n, logits, true), QN_OK);
  const cJSON* positions = cJSON_GetObjectItem(g_golden, "positions");
  double worst = 0;
  for (int p = 0; p < n; p++) {
    const cJSON* e = cJSON_GetArrayItem(positions, p);
    const cJSON* tids = cJSON_GetObjectItem(e, "top_ids");
    const cJSON* tl = cJSON_GetObjectItem(e, "top_logits");
    const float* row = logits + (size_t)p * V;
    int am = 0;
    double maxabs = 0;
    for (int v = 0; v < V; v++) {
      if (row[v] > row[am]) am = v;
      if (fabs(row[v]) > maxabs) maxabs = fabs(row[v]);
    }
    assert_int_equal(am, cJSON_GetArrayItem(tids, 0)->valueint);
    for (int k = 0; k < cJSON_GetArraySize(tids); k++) {
      int id = cJSON_GetArrayItem(tids, k)->valueint;
      double d = fabs(row[id] - cJSON_GetArrayItem(tl, k)->valuedouble) / maxabs;
      if (d > worst) worst = d;
      assert_true(d <= 1e-3);
    }
  }
  const cJSON* last = cJSON_GetObjectItem(g_golden, "last_logits");
  assert_int_equal(cJSON_GetArraySize(last), V);
  const float* row = logits + (size_t)(n - 1) * V;
  double maxabs = 0;
  for (int v = 0; v < V; v++)
    if (fabs(row[v]) > maxabs) maxabs = fabs(row[v]);
  for (int v = 0; v < V; v++) {
    double d = fabs(row[v] - cJSON_GetArrayItem(last, v)->valuedouble) / maxabs;
    if (d > worst) worst = d;
    assert_true(d <= 1e-3);
  }
  printf("pycode-19m: worst |logit - golden| / max|logit| = %.2e\n", worst);
  qn_ctx_free(c);
  free(pos);
  free(logits);
  free(ids);
}

typedef struct gen_buf {
  char s[4096]; /* text so far */
  size_t n;
} gen_buf;

static int collect(void* user, const char* piece, size_t len) {
  gen_buf* b = user;
  if (b->n + len < sizeof b->s) {
    memcpy(b->s + b->n, piece, len);
    b->n += len;
    b->s[b->n] = 0;
  }
  return 0;
}

static void test_greedy(void** state) {
  (void)state;
  const char* text = cJSON_GetObjectItem(g_golden, "prompt_text")->valuestring;
  const char* expect = cJSON_GetObjectItem(g_golden, "greedy_text")->valuestring;
  qn_sampler_opts so;
  qn_sampler_opts_default(&so);
  so.temperature = 0;
  gen_buf b = {{0}, 0};
  qn_gen_stats gs;
  assert_int_equal(qn_generate(g_model, text, 32, &so, collect, &b, &gs), QN_OK);
  assert_int_equal(gs.n_prompt, 64);
  assert_string_equal(b.s, expect);
}

static void test_heldout_perplexity(void** state) {
  (void)state;
  const char* path = qt_shared("text/pycode-heldout.txt");
  if (!path) skip();
  size_t len;
  char* text = qt_read_file(path, &len);
  qn_ppl_opts po = {512, 390, NULL, NULL, NULL};
  qn_ppl_result r;
  assert_int_equal(qn_eval_ppl(g_model, text, len, &po, &r), QN_OK);
  printf("pycode-19m held-out: %d windows, %lld predictions, NLL %.5f, PPL %.4f (%.1f s)\n",
         r.n_docs, (long long)r.tokens, r.nll, r.ppl, r.seconds);
  assert_int_equal(r.tokens, 199290);
  assert_true(fabs(r.ppl - 3.9744) <= 0.002);
  free(text);
}

int main(void) {
  g_dir = qt_shared("models/pycode-19m");
  if (!g_dir) qt_skip("pycode-19m is not in ../shared");
  char path[1200];
  snprintf(path, sizeof path, "%s/golden.json", g_dir);
  char* js = qt_read_file(path, NULL);
  assert_non_null(js);
  g_golden = cJSON_Parse(js);
  free(js);
  if (qn_model_open(g_dir, NULL, &g_model) != QN_OK) {
    fprintf(stderr, "open failed: %s\n", qn_last_error());
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prompt_tokens),
      cmocka_unit_test(test_logits),
      cmocka_unit_test(test_greedy),
      cmocka_unit_test(test_heldout_perplexity),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  qn_model_free(g_model);
  cJSON_Delete(g_golden);
  return rc;
}
