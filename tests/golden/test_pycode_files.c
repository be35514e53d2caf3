/* test_pycode_files.c: opens the real Hugging Face checkpoint ../shared/models/pycode-19m
 * and checks what its README states: hyper-parameters, 75 BF16 tensors under canonical
 * names with the right shapes, 18,880,896 parameters, an 8192-token vocabulary. */
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#include "core/status.h"
#include "format/source.h"

/* From models/pycode-19m/README.md and config.json. */
enum { DIM = 384, HIDDEN = 1024, LAYERS = 8, HEADS = 6, KV_HEADS = 2, HEAD_DIM = 64, VOCAB = 8192 };

static const char* g_dir;

static void expect_shape(const qn_source* s, const char* name, int64_t rows, int64_t cols) {
  const qn_tensor* t = qn_source_find(s, name);
  if (!t) fail_msg("tensor %s missing", name);
  assert_int_equal(t->dtype, QN_DTYPE_BF16);
  assert_int_equal(t->ndim, cols ? 2 : 1);
  assert_int_equal(t->shape[0], rows);
  if (cols) assert_int_equal(t->shape[1], cols);
  assert_int_equal(t->nbytes, 2 * (uint64_t)rows * (uint64_t)(cols ? cols : 1));
}

static void test_pycode_hparams_and_tensors(void** state) {
  (void)state;
  qn_source* s = NULL;
  qn_status st = qn_source_open(g_dir, NULL, &s);
  if (st != QN_OK) fail_msg("%s: %s", qn_status_name(st), qn_last_error());
  assert_int_equal(s->format, QN_FORMAT_HF);
  const qn_hparams* hp = &s->hp;
  assert_string_equal(hp->arch, "llama");
  assert_int_equal(hp->dim, DIM);
  assert_int_equal(hp->hidden_dim, HIDDEN);
  assert_int_equal(hp->n_layers, LAYERS);
  assert_int_equal(hp->n_heads, HEADS);
  assert_int_equal(hp->n_kv_heads, KV_HEADS);
  assert_int_equal(hp->head_dim, HEAD_DIM);
  assert_int_equal(hp->vocab_size, VOCAB);
  assert_int_equal(hp->max_seq_len, 1024);
  assert_float_equal(hp->norm_eps, 1e-5f, 1e-12);
  assert_float_equal(hp->rope_theta, 10000.0f, 0);
  assert_int_equal(hp->rope_style, QN_ROPE_HALF);
  assert_int_equal(hp->rope_scaling, QN_ROPE_SCALING_NONE);
  assert_false(hp->tied_embeddings);
  assert_false(hp->qkv_bias);

  assert_int_equal(s->n_tensors, LAYERS * 9 + 3);
  expect_shape(s, "token_embd.weight", VOCAB, DIM);
  expect_shape(s, "output_norm.weight", DIM, 0);
  expect_shape(s, "output.weight", VOCAB, DIM);
  for (int l = 0; l < LAYERS; l++) {
    char n[96];
#define SHAPE(part, r, c)                   \
  snprintf(n, sizeof n, "blk.%d." part, l); \
  expect_shape(s, n, r, c)
    SHAPE("attn_norm.weight", DIM, 0);
    SHAPE("attn_q.weight", HEADS * HEAD_DIM, DIM);
    SHAPE("attn_k.weight", KV_HEADS * HEAD_DIM, DIM);
    SHAPE("attn_v.weight", KV_HEADS * HEAD_DIM, DIM);
    SHAPE("attn_output.weight", DIM, HEADS * HEAD_DIM);
    SHAPE("ffn_norm.weight", DIM, 0);
    SHAPE("ffn_gate.weight", HIDDEN, DIM);
    SHAPE("ffn_up.weight", HIDDEN, DIM);
    SHAPE("ffn_down.weight", DIM, HIDDEN);
#undef SHAPE
  }
  /* README: 18,880,896 parameters in one 37,770,016-byte file */
  int64_t params = 0;
  for (int i = 0; i < s->n_tensors; i++) params += qn_tensor_nelem(&s->tensors[i]);
  assert_int_equal(params, 18880896);
  assert_int_equal(s->n_maps, 1);
  assert_int_equal(s->maps[0].size, 37770016);
  for (int i = 0; i < s->n_tensors; i++) {
    const uint8_t* p = s->tensors[i].data;
    assert_true(p > s->maps[0].data &&
                p + s->tensors[i].nbytes <= s->maps[0].data + s->maps[0].size);
  }
  /* README: byte-level BPE, 8192 tokens, <|endoftext|> = 0 */
  assert_int_equal(s->vocab.kind, QN_VOCAB_BPE);
  assert_int_equal(s->vocab.n_tokens, VOCAB);
  assert_string_equal(s->vocab.tokens[0], "<|endoftext|>");
  assert_non_null(s->metadata_json);
  qn_source_free(s);
}

int main(void) {
  g_dir = qt_shared("models/pycode-19m/config.json");
  if (!g_dir) qt_skip("models/pycode-19m is absent");
  g_dir = qt_shared("models/pycode-19m");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pycode_hparams_and_tensors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
