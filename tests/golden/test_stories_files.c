/* test_stories_files.c: the stories260K model read from its llama2.c checkpoint and from its
 * GGUF conversion (../shared/models/stories260K) gives the hyper-parameters the shared README
 * states, the same tensors byte for byte, and the same vocabulary as tok512.bin (read here by
 * an independent little parser). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "format/source.h"
#include "testutil.h"

static const char* g_bin;  /* stories260K.bin */
static const char* g_gguf; /* stories260K.gguf */
static const char* g_tok;  /* tok512.bin */

static void check_readme_hparams(const qn_hparams* hp) {
  /* README: dim 64, hidden 172, 5 layers, 8 heads, 4 KV heads, vocab 512 */
  assert_string_equal(hp->arch, "llama");
  assert_int_equal(hp->dim, 64);
  assert_int_equal(hp->hidden_dim, 172);
  assert_int_equal(hp->n_layers, 5);
  assert_int_equal(hp->n_heads, 8);
  assert_int_equal(hp->n_kv_heads, 4);
  assert_int_equal(hp->head_dim, 8);
  assert_int_equal(hp->vocab_size, 512);
  assert_int_equal(hp->rope_style, QN_ROPE_ADJACENT); /* README: both rotate adjacent pairs */
  assert_true(hp->rope_theta == 10000.0f);
  assert_false(hp->qkv_bias);
}

static void test_hparams(void** state) {
  (void)state;
  qn_source *bin, *gguf;
  assert_int_equal(qn_source_open(g_bin, NULL, &bin), QN_OK); /* finds tok512.bin beside */
  assert_int_equal(qn_source_open(g_gguf, NULL, &gguf), QN_OK);
  assert_int_equal(bin->format, QN_FORMAT_LLAMA2C);
  assert_int_equal(gguf->format, QN_FORMAT_GGUF);
  check_readme_hparams(&bin->hp);
  check_readme_hparams(&gguf->hp);
  assert_int_equal(bin->hp.max_seq_len, 512);
  /* llama.cpp's converter wrote llama.context_length = 2048 (its default) into the GGUF */
  assert_int_equal(gguf->hp.max_seq_len, 2048);
  assert_true(bin->hp.tied_embeddings);   /* README: classifier shared with the embedding */
  assert_false(gguf->hp.tied_embeddings); /* the GGUF stores output.weight explicitly */
  assert_true(bin->hp.norm_eps == gguf->hp.norm_eps);
  assert_non_null(gguf->metadata_json);
  assert_non_null(strstr(gguf->metadata_json, "\"general.architecture\":\"llama\""));
  qn_source_free(bin);
  qn_source_free(gguf);
}

static void test_tensors_identical(void** state) {
  (void)state;
  qn_source *bin, *gguf;
  assert_int_equal(qn_source_open(g_bin, g_tok, &bin), QN_OK);
  assert_int_equal(qn_source_open(g_gguf, NULL, &gguf), QN_OK);
  assert_int_equal(gguf->n_tensors, 48); /* README: 48 F32 tensors */
  int matched = 0;
  for (int i = 0; i < gguf->n_tensors; i++) {
    const qn_tensor* g = &gguf->tensors[i];
    assert_int_equal(g->dtype, QN_DTYPE_F32);
    /* the GGUF stores the shared classifier explicitly; the .bin's is token_embd */
    const char* name = strcmp(g->name, "output.weight") == 0 && bin->hp.tied_embeddings
                           ? "token_embd.weight"
                           : g->name;
    const qn_tensor* b = qn_source_find(bin, name);
    if (!b) fail_msg("GGUF tensor %s has no counterpart in the .bin", g->name);
    assert_int_equal(g->ndim, b->ndim);
    for (int d = 0; d < g->ndim; d++) assert_int_equal(g->shape[d], b->shape[d]);
    assert_int_equal(g->nbytes, b->nbytes);
    if (memcmp(g->data, b->data, g->nbytes) != 0) fail_msg("tensor %s differs", g->name);
    matched += strcmp(name, g->name) == 0;
  }
  assert_int_equal(matched, bin->n_tensors); /* every .bin tensor is in the GGUF */
  qn_source_free(bin);
  qn_source_free(gguf);
}

/* Token i of tok512.bin, read independently: ' ' -> U+2581, "\n<s>\n" -> "<s>". */
typedef struct raw_tok {
  char text[64];
  float score;
} raw_tok;

static raw_tok* read_tok512(const char* path, int n) {
  size_t len;
  char* f = qt_read_file(path, &len);
  assert_non_null(f);
  raw_tok* t = calloc((size_t)n, sizeof *t);
  size_t pos = 4;
  for (int i = 0; i < n; i++) {
    int32_t l;
    assert_true(pos + 8 <= len);
    memcpy(&t[i].score, f + pos, 4);
    memcpy(&l, f + pos + 4, 4);
    pos += 8;
    assert_true(l >= 0 && l < 20 && pos + (size_t)l <= len);
    size_t m = 0;
    for (int k = 0; k < l; k++) {
      char c = f[pos + (size_t)k];
      if (c == ' ') {
        memcpy(t[i].text + m, "\xe2\x96\x81", 3);
        m += 3;
      } else if (c != '\n') {
        t[i].text[m++] = c;
      }
    }
    pos += (size_t)l;
  }
  free(f);
  return t;
}

static void test_vocab(void** state) {
  (void)state;
  qn_source *bin, *gguf;
  assert_int_equal(qn_source_open(g_bin, g_tok, &bin), QN_OK);
  assert_int_equal(qn_source_open(g_gguf, NULL, &gguf), QN_OK);
  const qn_vocab* g = &gguf->vocab;
  assert_int_equal(g->kind, QN_VOCAB_SPM);
  assert_int_equal(g->n_tokens, 512);
  raw_tok* raw = read_tok512(g_tok, 512);
  for (int i = 0; i < 512; i++) {
    if (strcmp(g->tokens[i], raw[i].text) != 0)
      fail_msg("token %d: gguf '%s', tok512.bin '%s'", i, g->tokens[i], raw[i].text);
    assert_true(g->scores[i] == raw[i].score);
    assert_string_equal(bin->vocab.tokens[i], g->tokens[i]);
    assert_true(bin->vocab.scores[i] == g->scores[i]);
  }
  free(raw);
  assert_string_equal(g->tokens[1], "<s>");
  assert_int_equal(g->bos_id, 1);
  assert_int_equal(g->eos_id, 2);
  assert_int_equal(g->unk_id, 0);
  assert_int_equal(g->attrs[1], QN_TOKEN_CONTROL);
  assert_int_equal(g->attrs[3 + 0x41], QN_TOKEN_BYTE); /* <0x41> */
  assert_string_equal(g->tokens[3 + 0x41], "<0x41>");
  assert_true(g->add_bos);
  assert_true(g->add_space_prefix);
  assert_true(g->byte_fallback);
  qn_source_free(bin);
  qn_source_free(gguf);
}

int main(void) {
  g_bin = qt_shared("models/stories260K/stories260K.bin");
  g_gguf = qt_shared("models/stories260K/stories260K.gguf");
  g_tok = qt_shared("models/stories260K/tok512.bin");
  if (!g_bin || !g_gguf || !g_tok) qt_skip("stories260K files are absent");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hparams),
      cmocka_unit_test(test_tensors_identical),
      cmocka_unit_test(test_vocab),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
