/* test_tokenizer_golden.c: the tokenizers against facts from independent sources:
 *  - stories260K tok512.bin: per-story round trips and the scored-token count of the shared
 *    README's perplexity convention (36,583);
 *  - pycode-19m tokenizer.json: golden.json's tokenizer tests, prompt and greedy text (from
 *    transformers), a 200 KB exact round trip, and the held-out token count;
 *  - the Llama 2 32k vocabulary: well-known encodings and round trips.
 * Skips (exit 77) when ../shared is absent. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "format/tokenizer_load.h"
#include "model/tokenizer.h"

static const char* g_tok512;
static const char* g_stories;
static const char* g_pycode_dir;
static const char* g_golden;
static const char* g_heldout;
static const char* g_tok32k;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char* read_all(const char* path, size_t* len) {
  char* s = qt_read_file(path, len);
  assert_non_null(s);
  return s;
}

/* decode(ids) must equal want[0..want_len). */
static void expect_decode(const qn_tokenizer* t, const int* ids, int n, const char* want,
                          size_t want_len) {
  char* text = NULL;
  size_t len = 0;
  assert_int_equal(qn_tokenizer_decode(t, ids, n, &text, &len), QN_OK);
  assert_int_equal(len, want_len);
  assert_memory_equal(text, want, want_len);
  free(text);
}

/* ---- stories260K ---- */

static int is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static void test_stories_tok512(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  assert_int_equal(qn_l2c_tokenizer_load(g_tok512, 512, &v), QN_OK);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  size_t len;
  char* text = read_all(g_stories, &len);
  const char* sep = "<|endoftext|>";
  int n_stories = 0;
  long scored = 0;
  for (char* s = text; s;) {
    char* e = strstr(s, sep);
    if (e) *e = '\0';
    char* z = s + strlen(s);
    while (*s && is_ws(*s)) s++;
    while (z > s && is_ws(z[-1])) *--z = '\0';
    if (*s) {
      int* ids;
      int n;
      assert_int_equal(qn_tokenizer_encode(t, s, strlen(s), v.add_bos, &ids, &n), QN_OK);
      assert_true(n >= 2);
      assert_int_equal(ids[0], 1); /* BOS */
      expect_decode(t, ids, n, s, strlen(s));
      /* The README's reference (tools/l2c_check.c) scores every token after BOS within the
       * model's 512-position context. */
      scored += n - 1 < 512 ? n - 1 : 512;
      n_stories++;
      free(ids);
    }
    s = e ? e + strlen(sep) : NULL;
  }
  assert_int_equal(n_stories, 112);
  assert_int_equal(scored, 36583);
  free(text);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

/* ---- pycode-19m ---- */

/* Reads a JSON array of ints. */
static int* json_ints(const cJSON* a, int* n) {
  assert_true(cJSON_IsArray(a));
  *n = cJSON_GetArraySize(a);
  int* v = malloc(sizeof(int) * (size_t)(*n + 1));
  assert_non_null(v);
  for (int i = 0; i < *n; i++) v[i] = cJSON_GetArrayItem(a, i)->valueint;
  return v;
}

static void expect_encode(const qn_tokenizer* t, const char* text, const int* want, int n_want) {
  int* ids;
  int n;
  assert_int_equal(qn_tokenizer_encode(t, text, strlen(text), false, &ids, &n), QN_OK);
  if (n != n_want) fprintf(stderr, "encode(%s): %d ids, want %d\n", text, n, n_want);
  assert_int_equal(n, n_want);
  for (int i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
  free(ids);
}

static void test_pycode_golden_json(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  assert_int_equal(qn_hf_tokenizer_load(g_pycode_dir, &v), QN_OK);
  assert_int_equal(v.kind, QN_VOCAB_BPE);
  assert_int_equal(v.n_tokens, 8192);
  assert_int_equal(v.bos_id, 0); /* README: bos = eos = <|endoftext|> = 0, no automatic BOS */
  assert_int_equal(v.eos_id, 0);
  assert_false(v.add_bos);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  char* js = read_all(g_golden, NULL);
  cJSON* g = cJSON_Parse(js);
  assert_non_null(g);
  const cJSON* tests = cJSON_GetObjectItemCaseSensitive(g, "tokenizer_tests");
  assert_true(cJSON_GetArraySize(tests) >= 5);
  const cJSON* item;
  cJSON_ArrayForEach(item, tests) {
    const char* text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
    int n;
    int* want = json_ints(cJSON_GetObjectItemCaseSensitive(item, "ids"), &n);
    expect_encode(t, text, want, n);
    expect_decode(t, want, n, text, strlen(text));
    free(want);
  }
  const char* fields[2][2] = {{"prompt_text", "prompt_ids"}, {"greedy_text", "greedy_ids"}};
  for (int f = 0; f < 2; f++) {
    const char* text = cJSON_GetObjectItemCaseSensitive(g, fields[f][0])->valuestring;
    int n;
    int* want = json_ints(cJSON_GetObjectItemCaseSensitive(g, fields[f][1]), &n);
    if (f == 0) expect_encode(t, text, want, n); /* greedy ids need not be canonical */
    expect_decode(t, want, n, text, strlen(text));
    free(want);
  }
  cJSON_Delete(g);
  free(js);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_pycode_heldout(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  assert_int_equal(qn_hf_tokenizer_load(g_pycode_dir, &v), QN_OK);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  size_t len;
  char* text = read_all(g_heldout, &len);
  /* Exact round trip of the first 200 KB (cut anywhere: byte-level BPE keeps every byte). */
  size_t head = 200 * 1024 < len ? 200 * 1024 : len;
  int* ids;
  int n;
  assert_int_equal(qn_tokenizer_encode(t, text, head, false, &ids, &n), QN_OK);
  expect_decode(t, ids, n, text, head);
  free(ids);
  /* The whole file. 469,648 tokens is what tools/pyref.py's independent BPE tokenizer gives
   * (id for id the same sequence); it matches the README's "about 3.4 bytes/token". (The
   * README's "921,979 tokens" does not fit 1,572,864 bytes at 3.4 bytes/token.) */
  double t0 = now_s();
  assert_int_equal(qn_tokenizer_encode(t, text, len, false, &ids, &n), QN_OK);
  double dt = now_s() - t0;
  printf("pycode-heldout.txt: %zu bytes -> %d tokens in %.3f s (%.1f MB/s)\n", len, n, dt,
         (double)len / 1e6 / (dt > 0 ? dt : 1e-9));
  assert_int_equal(n, 469648);
  assert_true(n >= 390 * 512); /* the README's 390 windows of 512 tokens fit */
  assert_true(dt < 10.0);
  /* golden.json's prompt is the first 64 tokens of this file. */
  char* js = read_all(g_golden, NULL);
  cJSON* g = cJSON_Parse(js);
  assert_non_null(g);
  int np;
  int* prompt = json_ints(cJSON_GetObjectItemCaseSensitive(g, "prompt_ids"), &np);
  assert_int_equal(np, 64);
  for (int i = 0; i < np; i++) assert_int_equal(ids[i], prompt[i]);
  free(prompt);
  cJSON_Delete(g);
  free(js);
  free(ids);
  free(text);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

/* ---- Llama 2 32k ---- */

static void test_llama2_tok32k(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  assert_int_equal(qn_l2c_tokenizer_load(g_tok32k, 32000, &v), QN_OK);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  /* Well-known Llama 2 encodings (SentencePiece, BOS added). */
  int* ids;
  int n;
  const int hello[] = {1, 15043, 3186};
  assert_int_equal(qn_tokenizer_encode(t, "Hello world", 11, true, &ids, &n), QN_OK);
  assert_int_equal(n, 3);
  assert_memory_equal(ids, hello, sizeof hello);
  free(ids);
  const char* life = "I believe the meaning of life is";
  const int life_ids[] = {1, 306, 4658, 278, 6593, 310, 2834, 338};
  assert_int_equal(qn_tokenizer_encode(t, life, strlen(life), true, &ids, &n), QN_OK);
  assert_int_equal(n, 8);
  assert_memory_equal(ids, life_ids, sizeof life_ids);
  free(ids);
  const char* texts[] = {
      "The quick brown fox jumps over the lazy dog.",
      "    indented\tcode();\r\n",
      "\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97 \xf0\x9f\x99\x82 na\xc3\xafve",
      "  two leading spaces",
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    assert_int_equal(qn_tokenizer_encode(t, texts[i], strlen(texts[i]), true, &ids, &n), QN_OK);
    expect_decode(t, ids, n, texts[i], strlen(texts[i]));
    free(ids);
  }
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

int main(void) {
  g_tok512 = qt_shared("models/stories260K/tok512.bin");
  g_stories = qt_shared("text/tinystories-valid-head80k.txt");
  g_pycode_dir = qt_shared("models/pycode-19m");
  g_golden = qt_shared("models/pycode-19m/golden.json");
  g_heldout = qt_shared("text/pycode-heldout.txt");
  g_tok32k = qt_shared("models/llama2-tok32k/tokenizer.bin");
  if (!g_tok512 || !g_stories || !g_pycode_dir || !g_golden || !g_heldout || !g_tok32k)
    qt_skip("tokenizer golden files under ../shared are missing");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stories_tok512),
      cmocka_unit_test(test_pycode_golden_json),
      cmocka_unit_test(test_pycode_heldout),
      cmocka_unit_test(test_llama2_tok32k),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
