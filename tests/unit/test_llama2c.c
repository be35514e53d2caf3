/* test_llama2c.c: qn_llama2c_open on tiny synthetic llama2.c checkpoints (shared and separate
 * classifier, GQA) whose floats are their own indices, so each view's position and shape can
 * be checked; the tokenizer search beside the checkpoint; truncated and bad files. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "format/source.h"
#include "testutil.h"

typedef struct cfg {
  int dim, hidden, layers, heads, kv_heads, vocab, seq; /* header fields (vocab > 0) */
  bool shared;                                          /* classifier shared */
} cfg;

static const cfg k_gqa = {16, 24, 2, 4, 2, 16, 8, true};
static const cfg k_unshared = {8, 12, 1, 2, 1, 16, 4, false};

static char g_dir[256]; /* this test's scratch directory */

static const char* path_in_dir(const char* name) {
  static char bufs[4][512];
  static int slot;
  char* b = bufs[slot++ % 4];
  snprintf(b, 512, "%s/%s", g_dir, name);
  return b;
}

static void write_file(const char* path, const void* p, size_t n) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  fclose(f);
}

/* Floats after the header, in the order llama2.c writes them. */
static size_t n_floats(const cfg* c) {
  size_t head = (size_t)(c->dim / c->heads), kv = head * (size_t)c->kv_heads;
  size_t L = (size_t)c->layers, d = (size_t)c->dim, h = (size_t)c->hidden;
  return (size_t)c->vocab * d + L * d + L * d * d + 2 * L * d * kv + L * d * d + L * d +
         3 * L * d * h + d + 2 * ((size_t)c->seq * head / 2) +
         (c->shared ? 0 : (size_t)c->vocab * d);
}

/* A checkpoint whose i-th float is i; *n receives its size in bytes. */
static uint8_t* make_checkpoint(const cfg* c, size_t* n) {
  size_t nf = n_floats(c);
  *n = 28 + nf * 4;
  uint8_t* b = malloc(*n);
  assert_non_null(b);
  int32_t h[7] = {c->dim,   c->hidden,   c->layers,
                  c->heads, c->kv_heads, c->shared ? c->vocab : -c->vocab,
                  c->seq};
  memcpy(b, h, 28);
  for (size_t i = 0; i < nf; i++) {
    float f = (float)i;
    memcpy(b + 28 + 4 * i, &f, 4);
  }
  return b;
}

/* A llama2.c tokenizer.bin of n tokens: <unk>, \n<s>\n, \n</s>\n, then " t3", "t4"... */
static void write_tokenizer(const char* path, int n) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  int32_t max_len = 8;
  fwrite(&max_len, 4, 1, f);
  for (int i = 0; i < n; i++) {
    char text[16];
    if (i == 0)
      snprintf(text, sizeof text, "<unk>");
    else if (i == 1)
      snprintf(text, sizeof text, "\n<s>\n");
    else if (i == 2)
      snprintf(text, sizeof text, "\n</s>\n");
    else
      snprintf(text, sizeof text, "%st%d", i % 2 ? " " : "", i);
    float score = (float)-i;
    int32_t len = (int32_t)strlen(text);
    fwrite(&score, 4, 1, f);
    fwrite(&len, 4, 1, f);
    fwrite(text, 1, (size_t)len, f);
  }
  fclose(f);
}

static qn_status open_l2c(const char* path, const char* tok, qn_source** out) {
  qn_source* s = calloc(1, sizeof *s);
  assert_non_null(s);
  qn_status st = qn_llama2c_open(s, path, tok);
  if (st != QN_OK) {
    qn_source_free(s);
    s = NULL;
  }
  *out = s;
  return st;
}

/* Checks that name is a float view of shape {rows, cols} (rows = 0: {cols}) starting at float
 * index *at, and advances *at. */
static void check_view(const qn_source* s, const char* name, int64_t rows, int64_t cols,
                       size_t* at) {
  const qn_tensor* t = qn_source_find(s, name);
  if (!t) fail_msg("missing tensor %s", name);
  assert_int_equal(t->dtype, QN_DTYPE_F32);
  assert_int_equal(t->ndim, rows ? 2 : 1);
  assert_int_equal(t->shape[0], rows ? rows : cols);
  if (rows) assert_int_equal(t->shape[1], cols);
  size_t n = (size_t)((rows ? rows : 1) * cols);
  assert_int_equal(t->nbytes, n * 4);
  const float* f = t->data;
  assert_true(f[0] == (float)*at);
  assert_true(f[n - 1] == (float)(*at + n - 1));
  *at += n;
}

/* Walks the layout the way llama2.c's memory_map_weights() does. */
static void check_layout(const qn_source* s, const cfg* c) {
  int64_t d = c->dim, h = c->hidden, head = c->dim / c->heads;
  int64_t q = c->heads * head, kv = c->kv_heads * head;
  size_t at = 0;
  char name[96];
  check_view(s, "token_embd.weight", c->vocab, d, &at);
  const struct {
    const char* what;
    int64_t rows, cols;
  } per_layer[] = {
      {"attn_norm.weight", 0, d}, {"attn_q.weight", q, d},      {"attn_k.weight", kv, d},
      {"attn_v.weight", kv, d},   {"attn_output.weight", d, q}, {"ffn_norm.weight", 0, d},
      {"ffn_gate.weight", h, d},  {"ffn_down.weight", d, h},    {"ffn_up.weight", h, d},
  };
  for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++)
    for (int l = 0; l < c->layers; l++) {
      snprintf(name, sizeof name, "blk.%d.%s", l, per_layer[k].what);
      check_view(s, name, per_layer[k].rows, per_layer[k].cols, &at);
    }
  check_view(s, "output_norm.weight", 0, d, &at);
  at += 2 * (size_t)(c->seq * head / 2); /* freq_cis_real, freq_cis_imag */
  if (c->shared) {
    assert_null(qn_source_find(s, "output.weight"));
  } else {
    check_view(s, "output.weight", c->vocab, d, &at);
  }
  assert_int_equal(at, n_floats(c));
  assert_int_equal(s->n_tensors, 2 + 9 * c->layers + (c->shared ? 0 : 1));
}

static void check_hparams(const qn_source* s, const cfg* c) {
  const qn_hparams* hp = &s->hp;
  assert_int_equal(s->format, QN_FORMAT_LLAMA2C);
  assert_string_equal(hp->arch, "llama");
  assert_int_equal(hp->dim, c->dim);
  assert_int_equal(hp->hidden_dim, c->hidden);
  assert_int_equal(hp->n_layers, c->layers);
  assert_int_equal(hp->n_heads, c->heads);
  assert_int_equal(hp->n_kv_heads, c->kv_heads);
  assert_int_equal(hp->head_dim, c->dim / c->heads);
  assert_int_equal(hp->vocab_size, c->vocab);
  assert_int_equal(hp->max_seq_len, c->seq);
  assert_true(hp->norm_eps == 1e-5f);
  assert_true(hp->rope_theta == 10000.0f);
  assert_int_equal(hp->rope_style, QN_ROPE_ADJACENT);
  assert_int_equal(hp->tied_embeddings, c->shared);
  assert_false(hp->qkv_bias);
  assert_int_equal(qn_hparams_validate(hp, "x"), QN_OK);
}

static void test_gqa_shared(void** state) {
  (void)state;
  size_t n;
  uint8_t* b = make_checkpoint(&k_gqa, &n);
  const char* path = path_in_dir("gqa.bin");
  write_file(path, b, n);
  write_tokenizer(path_in_dir("tokenizer.bin"), k_gqa.vocab);
  qn_source* s;
  assert_int_equal(open_l2c(path, NULL, &s), QN_OK); /* finds tokenizer.bin beside it */
  check_hparams(s, &k_gqa);
  check_layout(s, &k_gqa);
  assert_int_equal(s->vocab.n_tokens, k_gqa.vocab);
  assert_string_equal(s->vocab.tokens[3], "\xe2\x96\x81t3");
  assert_string_equal(s->vocab.tokens[4], "t4");
  assert_true(s->vocab.scores[5] == -5.0f);
  qn_source_free(s);
  unlink(path_in_dir("tokenizer.bin"));
  free(b);
}

static void test_unshared_and_tok_search(void** state) {
  (void)state;
  size_t n;
  uint8_t* b = make_checkpoint(&k_unshared, &n);
  const char* path = path_in_dir("sep.bin");
  write_file(path, b, n);
  qn_source* s;
  /* no tokenizer anywhere: QN_EIO naming what was tried */
  assert_int_equal(open_l2c(path, NULL, &s), QN_EIO);
  assert_non_null(strstr(qn_last_error(), "tokenizer.bin"));
  assert_non_null(strstr(qn_last_error(), "tok16.bin"));
  assert_non_null(strstr(qn_last_error(), "--tokenizer"));
  /* tok<vocab>.bin beside the checkpoint */
  write_tokenizer(path_in_dir("tok16.bin"), k_unshared.vocab);
  assert_int_equal(open_l2c(path, NULL, &s), QN_OK);
  check_hparams(s, &k_unshared);
  check_layout(s, &k_unshared);
  qn_source_free(s);
  unlink(path_in_dir("tok16.bin"));
  /* an explicit tokenizer path elsewhere */
  char other[300];
  snprintf(other, sizeof other, "%s/sub", g_dir);
  mkdir(other, 0700);
  snprintf(other, sizeof other, "%s/sub/mytok.bin", g_dir);
  write_tokenizer(other, k_unshared.vocab + 4); /* more tokens than needed is fine */
  assert_int_equal(open_l2c(path, other, &s), QN_OK);
  assert_int_equal(s->vocab.n_tokens, k_unshared.vocab);
  qn_source_free(s);
  /* a missing explicit path is an I/O error */
  assert_int_equal(open_l2c(path, path_in_dir("nope.bin"), &s), QN_EIO);
  unlink(other);
  snprintf(other, sizeof other, "%s/sub", g_dir);
  rmdir(other);
  free(b);
}

static void test_truncated_and_bad(void** state) {
  (void)state;
  size_t n;
  uint8_t* b = make_checkpoint(&k_gqa, &n);
  const char* path = path_in_dir("cut.bin");
  const char* tok = path_in_dir("tok.bin");
  write_tokenizer(tok, k_gqa.vocab);
  qn_source* s;
  for (size_t m = 0; m < n; m += m < 64 ? 1 : 37) {
    write_file(path, b, m);
    assert_int_equal(open_l2c(path, tok, &s), QN_EFORMAT);
  }
  /* the message gives expected and actual sizes */
  write_file(path, b, n - 4);
  assert_int_equal(open_l2c(path, tok, &s), QN_EFORMAT);
  char want[64];
  snprintf(want, sizeof want, "%zu", n);
  assert_non_null(strstr(qn_last_error(), want));
  snprintf(want, sizeof want, "%zu", n - 4);
  assert_non_null(strstr(qn_last_error(), want));
  /* a longer file (e.g. a separate classifier with a positive vocab) is refused too */
  uint8_t* longer = calloc(1, n + 64);
  memcpy(longer, b, n);
  write_file(path, longer, n + 64);
  assert_int_equal(open_l2c(path, tok, &s), QN_EFORMAT);
  free(longer);
  /* bad headers */
  const struct {
    int field;
    int32_t value;
    qn_status want;
  } bad[] = {{0, 0, QN_EFORMAT},         {3, 0, QN_EFORMAT},
             {4, 3, QN_EFORMAT},         {4, 8, QN_EFORMAT},
             {5, 0, QN_EFORMAT},         {6, -1, QN_EFORMAT},
             {5, INT32_MIN, QN_EFORMAT}, {0, 0x616b3432, QN_EUNSUPPORTED},
             {2, 1 << 30, QN_EFORMAT},   {5, -16, QN_EFORMAT}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t* c = malloc(n);
    memcpy(c, b, n);
    memcpy(c + 4 * bad[i].field, &bad[i].value, 4);
    write_file(path, c, n);
    assert_int_equal(open_l2c(path, tok, &s), bad[i].want);
    free(c);
  }
  /* format detection routes a .bin to this reader and validates it */
  write_file(path, b, n);
  assert_int_equal(qn_source_open(path, tok, &s), QN_OK);
  assert_int_equal(s->format, QN_FORMAT_LLAMA2C);
  check_layout(s, &k_gqa);
  qn_source_free(s);
  unlink(path);
  unlink(tok);
  free(b);
}

static int setup(void** state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/qn_test_l2c_%d", (int)getpid());
  return mkdir(g_dir, 0700);
}

static int teardown(void** state) {
  (void)state;
  const char* names[] = {"gqa.bin", "sep.bin", "cut.bin", "tok.bin", "tokenizer.bin", "tok16.bin"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(path_in_dir(names[i]));
  return rmdir(g_dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gqa_shared),
      cmocka_unit_test(test_unshared_and_tok_search),
      cmocka_unit_test(test_truncated_and_bad),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
