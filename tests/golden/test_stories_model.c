/* test_stories_model.c: the FP32 path on stories260K against the known facts in
 * ../shared/README.md: greedy text from BOS, per-story perplexity 3.371 over 36,583 tokens,
 * and identical logits from the llama2.c and GGUF copies of the same weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quench.h"
#include "testutil.h"

static const char* g_bin;
static const char* g_gguf;
static const char* g_text;

typedef struct text_buf {
  char s[8192]; /* generated text so far */
  size_t n;
} text_buf;

static int collect(void* user, const char* piece, size_t len) {
  text_buf* b = user;
  if (b->n + len < sizeof b->s) {
    memcpy(b->s + b->n, piece, len);
    b->n += len;
    b->s[b->n] = 0;
  }
  return 0;
}

static void test_greedy_text(void** state) {
  (void)state;
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_bin, NULL, &m), QN_OK);
  qn_sampler_opts so;
  qn_sampler_opts_default(&so);
  so.temperature = 0;
  text_buf b = {{0}, 0};
  qn_gen_stats gs;
  assert_int_equal(qn_generate(m, "", 200, &so, collect, &b, &gs), QN_OK);
  const char* expect =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
      "Lily's mom said, \"Lily, let's go to the park.\"";
  if (strncmp(b.s, expect, strlen(expect)) != 0) fprintf(stderr, "got: %s\n", b.s);
  assert_int_equal(strncmp(b.s, expect, strlen(expect)), 0);
  assert_int_equal(gs.n_prompt, 1);
  qn_model_free(m);
}

static void test_perplexity(void** state) {
  (void)state;
  size_t len;
  char* text = qt_read_file(g_text, &len);
  assert_non_null(text);
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_bin, NULL, &m), QN_OK);
  qn_ppl_opts po = {0, 0, "<|endoftext|>", NULL, NULL};
  qn_ppl_result r;
  assert_int_equal(qn_eval_ppl(m, text, len, &po, &r), QN_OK);
  printf("stories260K: %d stories, %lld tokens, NLL %.5f, PPL %.4f\n", r.n_docs,
         (long long)r.tokens, r.nll, r.ppl);
  assert_int_equal(r.n_docs, 112);
  assert_int_equal(r.tokens, 36583);
  assert_true(fabs(r.ppl - 3.371) <= 0.002);
  qn_model_free(m);
  free(text);
}

static void test_bin_equals_gguf(void** state) {
  (void)state;
  qn_model *a = NULL, *b = NULL;
  assert_int_equal(qn_model_open(g_bin, NULL, &a), QN_OK);
  assert_int_equal(qn_model_open(g_gguf, NULL, &b), QN_OK);
  const char* prompt = "Once upon a time, a small dog found a shiny stone.";
  int *ia, *ib, na, nb;
  assert_int_equal(qn_tokenize(a, prompt, strlen(prompt), true, &ia, &na), QN_OK);
  assert_int_equal(qn_tokenize(b, prompt, strlen(prompt), true, &ib, &nb), QN_OK);
  assert_int_equal(na, nb);
  assert_memory_equal(ia, ib, sizeof(int) * (size_t)na);
  qn_ctx *ca, *cb;
  assert_int_equal(qn_ctx_new(a, 0, 1, &ca), QN_OK);
  assert_int_equal(qn_ctx_new(b, 0, 1, &cb), QN_OK);
  int* pos = malloc(sizeof(int) * (size_t)na);
  for (int i = 0; i < na; i++) pos[i] = i;
  size_t V = 512;
  float* la = malloc(sizeof(float) * V * (size_t)na);
  float* lb = malloc(sizeof(float) * V * (size_t)na);
  assert_int_equal(qn_ctx_forward(ca, ia, pos, NULL, na, la, true), QN_OK);
  assert_int_equal(qn_ctx_forward(cb, ib, pos, NULL, nb, lb, true), QN_OK);
  assert_memory_equal(la, lb, sizeof(float) * V * (size_t)na);
  free(pos);
  free(la);
  free(lb);
  free(ia);
  free(ib);
  qn_ctx_free(ca);
  qn_ctx_free(cb);
  qn_model_free(a);
  qn_model_free(b);
}

/* Prefill in one batch, token-by-token decode, and two sequences interleaved in one batch
 * must all give the same logits (the KV cache and batching are bookkeeping, not math). */
static void test_batching_consistent(void** state) {
  (void)state;
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_bin, NULL, &m), QN_OK);
  const char* prompt = "Tom had a red kite. He ran up the hill";
  int *ids, n;
  assert_int_equal(qn_tokenize(m, prompt, strlen(prompt), true, &ids, &n), QN_OK);
  size_t V = 512;
  float* full = malloc(sizeof(float) * V * (size_t)n);
  float* step = malloc(sizeof(float) * V);
  int* pos = malloc(sizeof(int) * 2 * (size_t)n);
  int* seq = malloc(sizeof(int) * 2 * (size_t)n);
  int* tok2 = malloc(sizeof(int) * 2 * (size_t)n);
  float* two = malloc(sizeof(float) * V * 2 * (size_t)n);
  for (int i = 0; i < n; i++) pos[i] = i;
  qn_ctx* c;
  assert_int_equal(qn_ctx_new(m, 64, 2, &c), QN_OK);
  assert_int_equal(qn_ctx_forward(c, ids, pos, NULL, n, full, true), QN_OK);
  for (int i = 0; i < n; i++) {
    assert_int_equal(qn_ctx_forward(c, &ids[i], &pos[i], NULL, 1, step, false), QN_OK);
    for (size_t v = 0; v < V; v++) assert_true(fabsf(step[v] - full[i * V + v]) < 1e-4f);
  }
  /* interleave: seq 0 and seq 1 both get the prompt, token by token in one batch */
  for (int i = 0; i < n; i++) {
    tok2[2 * i] = tok2[2 * i + 1] = ids[i];
    pos[2 * i] = pos[2 * i + 1] = i;
    seq[2 * i] = 0;
    seq[2 * i + 1] = 1;
  }
  assert_int_equal(qn_ctx_forward(c, tok2, pos, seq, 2 * n, two, true), QN_OK);
  for (int i = 0; i < n; i++)
    for (size_t v = 0; v < V; v++) {
      assert_true(fabsf(two[(2 * i) * V + v] - full[i * V + v]) < 1e-4f);
      assert_true(fabsf(two[(2 * i + 1) * V + v] - full[i * V + v]) < 1e-4f);
    }
  /* out-of-range inputs are errors, not crashes */
  int bad = 100000, p0 = 0, far = 64;
  assert_int_equal(qn_ctx_forward(c, &bad, &p0, NULL, 1, step, false), QN_EINVAL);
  assert_int_equal(qn_ctx_forward(c, ids, &far, NULL, 1, step, false), QN_ERANGE);
  qn_ctx_free(c);
  free(full);
  free(step);
  free(pos);
  free(seq);
  free(tok2);
  free(two);
  free(ids);
  qn_model_free(m);
}

int main(void) {
  g_bin = qt_shared("models/stories260K/stories260K.bin");
  g_gguf = qt_shared("models/stories260K/stories260K.gguf");
  g_text = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_bin || !g_gguf || !g_text) qt_skip("stories260K files are not in ../shared");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_greedy_text),
      cmocka_unit_test(test_perplexity),
      cmocka_unit_test(test_bin_equals_gguf),
      cmocka_unit_test(test_batching_consistent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
