/* test_hf.c: the Hugging Face directory reader on synthetic model directories written here
 * (config.json, model.safetensors or an index with two shards, a 300-token byte-level BPE
 * tokenizer.json): hyper-parameters and their defaults, canonical tensor names, shapes and
 * data pointers, tied and untied heads, Qwen2-style biases, RoPE scaling in both the
 * transformers v4 and v5 spellings, and the errors for broken directories. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "core/half.h"
#include "core/status.h"
#include "format/source.h"

/* ---- the tiny model ---------------------------------------------------------------------- */

enum { DIM = 8, HIDDEN = 16, LAYERS = 2, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 4, VOCAB = 300 };

/* One tensor to write: HF name, dtype, shape; values are value_of(seed, i). */
typedef struct spec {
  char name[96];
  const char* dtype; /* "F32", "F16", "BF16", "I8" */
  int ndim;
  int64_t shape[2];
  int seed; /* distinguishes tensors' contents */
} spec;

static float value_of(int seed, int64_t i) { return (float)seed + (float)(i % 7) * 0.25f; }

static int64_t spec_nelem(const spec* s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
  return n;
}

static int dtype_size(const char* d) {
  if (strcmp(d, "F32") == 0) return 4;
  if (strcmp(d, "I8") == 0) return 1;
  return 2;
}

static void encode(const spec* s, uint8_t* out) {
  int64_t n = spec_nelem(s);
  for (int64_t i = 0; i < n; i++) {
    float v = value_of(s->seed, i);
    if (strcmp(s->dtype, "F32") == 0) {
      memcpy(out + 4 * i, &v, 4);
    } else if (strcmp(s->dtype, "I8") == 0) {
      out[i] = (uint8_t)(int8_t)s->seed;
    } else {
      uint16_t h = strcmp(s->dtype, "F16") == 0 ? qn_f32_to_f16(v) : qn_f32_to_bf16(v);
      memcpy(out + 2 * i, &h, 2);
    }
  }
}

/* Reads element i of a tensor view as float. */
static float read_value(const qn_tensor* t, int64_t i) {
  if (t->dtype == QN_DTYPE_F32) {
    float v;
    memcpy(&v, (const uint8_t*)t->data + 4 * i, 4);
    return v;
  }
  uint16_t h;
  memcpy(&h, (const uint8_t*)t->data + 2 * i, 2);
  return t->dtype == QN_DTYPE_F16 ? qn_f16_to_f32(h) : qn_bf16_to_f32(h);
}

/* Writes a safetensors file holding specs[0..n). */
static void write_safetensors(const char* path, const spec* specs, int n) {
  cJSON* root = cJSON_CreateObject();
  cJSON* meta = cJSON_AddObjectToObject(root, "__metadata__");
  cJSON_AddStringToObject(meta, "format", "pt");
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    cJSON* e = cJSON_AddObjectToObject(root, specs[i].name);
    cJSON_AddStringToObject(e, "dtype", specs[i].dtype);
    cJSON* shape = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; d < specs[i].ndim; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)specs[i].shape[d]));
    uint64_t nb = (uint64_t)spec_nelem(&specs[i]) * (uint64_t)dtype_size(specs[i].dtype);
    cJSON* offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nb)));
    off += nb;
  }
  char* header = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
  uint8_t* data = calloc(off ? off : 1, 1);
  assert_non_null(data);
  uint64_t pos = 0;
  for (int i = 0; i < n; i++) {
    encode(&specs[i], data + pos);
    pos += (uint64_t)spec_nelem(&specs[i]) * (uint64_t)dtype_size(specs[i].dtype);
  }
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  uint8_t len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  fwrite(len8, 1, 8, f);
  fwrite(header, 1, hlen, f);
  for (size_t i = hlen; i < padded; i++) fputc(' ', f);
  fwrite(data, 1, off, f);
  fclose(f);
  free(header);
  free(data);
}

/* The model's tensors in HF naming. options: with lm_head, with q/k/v biases. */
static int model_specs(spec* out, bool lm_head, bool bias) {
  int n = 0;
  out[n++] = (spec){"model.embed_tokens.weight", "F32", 2, {VOCAB, DIM}, 1};
  for (int l = 0; l < LAYERS; l++) {
    int s = 10 * (l + 1);
    const struct {
      const char* suffix;
      const char* dtype;
      int64_t rows, cols; /* cols 0: 1-d */
    } parts[] = {
        {"self_attn.q_proj.weight", "F16", HEADS * HEAD_DIM, DIM},
        {"self_attn.k_proj.weight", "BF16", KV_HEADS * HEAD_DIM, DIM},
        {"self_attn.v_proj.weight", "BF16", KV_HEADS * HEAD_DIM, DIM},
        {"self_attn.o_proj.weight", "BF16", DIM, HEADS * HEAD_DIM},
        {"mlp.gate_proj.weight", "BF16", HIDDEN, DIM},
        {"mlp.up_proj.weight", "F16", HIDDEN, DIM},
        {"mlp.down_proj.weight", "F32", DIM, HIDDEN},
        {"input_layernorm.weight", "F32", DIM, 0},
        {"post_attention_layernorm.weight", "BF16", DIM, 0},
        {"self_attn.q_proj.bias", "F32", HEADS * HEAD_DIM, 0},
        {"self_attn.k_proj.bias", "F32", KV_HEADS * HEAD_DIM, 0},
        {"self_attn.v_proj.bias", "F32", KV_HEADS * HEAD_DIM, 0},
    };
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
      if (!bias && strstr(parts[k].suffix, "bias")) continue;
      spec* sp = &out[n++];
      snprintf(sp->name, sizeof sp->name, "model.layers.%d.%s", l, parts[k].suffix);
      sp->dtype = parts[k].dtype;
      sp->ndim = parts[k].cols ? 2 : 1;
      sp->shape[0] = parts[k].rows;
      sp->shape[1] = parts[k].cols;
      sp->seed = s + (int)k;
    }
  }
  out[n++] = (spec){"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", 1, {HEAD_DIM / 2}, 2};
  out[n++] = (spec){"model.norm.weight", "BF16", 1, {DIM}, 3};
  if (lm_head) out[n++] = (spec){"lm_head.weight", "BF16", 2, {VOCAB, DIM}, 4};
  return n;
}

/* ---- directories ------------------------------------------------------------------------- */

static char g_dir[256];

static void write_text(const char* name, const char* text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void remove_file(const char* name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  unlink(path);
}

/* GPT-2's byte -> unicode alphabet, as UTF-8. */
static void byte_symbol(int b, char out[4]) {
  int cp = b;
  if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))) {
    int n = 0; /* rank among the non-printable bytes */
    for (int c = 0; c < b; c++)
      if (!((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff))) n++;
    cp = 256 + n;
  }
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
  } else {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    out[2] = 0;
  }
}

/* A 300-token byte-level BPE: <|endoftext|> = 0, the 256 byte symbols = 1..256, and 43
 * merged tokens (two-letter pairs, then a few longer words) = 257..299. */
static void write_tokenizer(void) {
  cJSON* root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON* added = cJSON_AddArrayToObject(root, "added_tokens");
  cJSON* eot = cJSON_CreateObject();
  cJSON_AddNumberToObject(eot, "id", 0);
  cJSON_AddStringToObject(eot, "content", "<|endoftext|>");
  cJSON_AddBoolToObject(eot, "special", true);
  cJSON_AddBoolToObject(eot, "normalized", false);
  cJSON_AddItemToArray(added, eot);
  cJSON_AddNullToObject(root, "normalizer");
  cJSON* pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
  cJSON_AddStringToObject(pre, "type", "ByteLevel");
  cJSON_AddBoolToObject(pre, "add_prefix_space", false);
  cJSON_AddBoolToObject(pre, "use_regex", true);
  cJSON* dec = cJSON_AddObjectToObject(root, "decoder");
  cJSON_AddStringToObject(dec, "type", "ByteLevel");
  cJSON* model = cJSON_AddObjectToObject(root, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddBoolToObject(model, "byte_fallback", false);
  cJSON_AddBoolToObject(model, "ignore_merges", false);
  cJSON* vocab = cJSON_AddObjectToObject(model, "vocab");
  cJSON* merges = cJSON_AddArrayToObject(model, "merges");
  cJSON_AddNumberToObject(vocab, "<|endoftext|>", 0);
  int id = 1;
  for (int b = 0; b < 256; b++) {
    char sym[4];
    byte_symbol(b, sym);
    cJSON_AddNumberToObject(vocab, sym, id++);
  }
  static const char* const k_merges[][2] = {
      /* each part exists before it is merged */
      {"\xc4\xa0", "t"},   {"h", "e"},        {"i", "n"},         {"r", "e"},    {"o", "n"},
      {"\xc4\xa0t", "he"}, {"e", "r"},        {"a", "t"},         {"o", "r"},    {"e", "n"},
      {"d", "e"},          {"\xc4\xa0", "a"}, {"e", "s"},         {"i", "s"},    {"i", "t"},
      {"a", "l"},          {"a", "r"},        {"s", "e"},         {"n", "d"},    {"l", "e"},
      {"\xc4\xa0", "s"},   {"r", "o"},        {"i", "c"},         {"t", "e"},    {"l", "o"},
      {"c", "o"},          {"e", "f"},        {"d", "ef"},        {"p", "r"},    {"i", "m"},
      {"u", "r"},          {"r", "n"},        {"re", "t"},        {"ret", "ur"}, {"retur", "n"},
      {"\xc4\xa0", "("},   {"e", "l"},        {"s", "el"},        {"sel", "f"},  {"i", "f"},
      {"f", "or"},         {"\xc4\xa0", "i"}, {"\xc4\xa0", "re"},
  };
  int n_merges = (int)(sizeof k_merges / sizeof k_merges[0]);
  assert_int_equal(n_merges, 43);
  for (int i = 0; i < n_merges; i++) {
    char tok[32];
    snprintf(tok, sizeof tok, "%s%s", k_merges[i][0], k_merges[i][1]);
    if (!cJSON_GetObjectItemCaseSensitive(vocab, tok)) cJSON_AddNumberToObject(vocab, tok, id++);
    cJSON* pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(k_merges[i][0]));
    cJSON_AddItemToArray(pair, cJSON_CreateString(k_merges[i][1]));
    cJSON_AddItemToArray(merges, pair);
  }
  /* pad with distinct merged tokens so the vocabulary is exactly 300 */
  for (char c = 'a'; id < VOCAB; c++) {
    char tok[3] = {'z', c, 0}, l[2] = {'z', 0}, r[2] = {c, 0};
    if (cJSON_GetObjectItemCaseSensitive(vocab, tok)) continue;
    cJSON_AddNumberToObject(vocab, tok, id++);
    cJSON* pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(l));
    cJSON_AddItemToArray(pair, cJSON_CreateString(r));
    cJSON_AddItemToArray(merges, pair);
  }
  assert_int_equal(cJSON_GetArraySize(vocab), VOCAB);
  char* text = cJSON_Print(root);
  cJSON_Delete(root);
  write_text("tokenizer.json", text);
  free(text);
  write_text("tokenizer_config.json",
             "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": \"<|endoftext|>\", "
             "\"tokenizer_class\": \"PreTrainedTokenizerFast\"}");
}

/* config.json of the tiny model; extra: more "key": value pairs (with a leading comma). */
static void write_config(const char* model_type, const char* extra) {
  char text[2048];
  snprintf(text, sizeof text,
           "{\"architectures\": [\"X\"], \"model_type\": \"%s\", \"hidden_size\": %d, "
           "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
           "\"vocab_size\": %d, \"hidden_act\": \"silu\"%s}",
           model_type, DIM, HIDDEN, LAYERS, HEADS, VOCAB, extra);
  write_text("config.json", text);
}

static const char* k_full_extra =
    ", \"num_key_value_heads\": 1, \"head_dim\": 4, \"max_position_embeddings\": 64, "
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 50000.0, \"tie_word_embeddings\": false, "
    "\"rope_scaling\": null, \"torch_dtype\": \"bfloat16\"";

/* A fresh directory with the tokenizer and a single-file untied llama. */
static int setup_dir(void** state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/qn_test_hf_XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  write_tokenizer();
  write_config("llama", k_full_extra);
  spec specs[64];
  int n = model_specs(specs, true, false);
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
  write_safetensors(path, specs, n);
  return 0;
}

static int teardown_dir(void** state) {
  (void)state;
  DIR* d = opendir(g_dir);
  if (d) {
    struct dirent* e;
    while ((e = readdir(d)))
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) remove_file(e->d_name);
    closedir(d);
  }
  rmdir(g_dir);
  return 0;
}

static qn_source* open_ok(void) {
  qn_source* s = NULL;
  qn_status st = qn_source_open(g_dir, NULL, &s);
  if (st != QN_OK) fail_msg("open %s: %s: %s", g_dir, qn_status_name(st), qn_last_error());
  return s;
}

static void expect_open_error(qn_status want, const char* in_msg) {
  qn_source* s = NULL;
  qn_status st = qn_source_open(g_dir, NULL, &s);
  assert_null(s);
  if (st != want || !strstr(qn_last_error(), in_msg))
    fail_msg("got %s (%s), want %s mentioning '%s'", qn_status_name(st), qn_last_error(),
             qn_status_name(want), in_msg);
}

/* Checks a canonical tensor's dtype, shape and its first and last values. */
static void check_tensor(const qn_source* s, const char* name, qn_dtype dtype, int64_t rows,
                         int64_t cols, int seed) {
  const qn_tensor* t = qn_source_find(s, name);
  if (!t) fail_msg("tensor %s missing", name);
  assert_int_equal(t->dtype, dtype);
  assert_int_equal(t->ndim, cols ? 2 : 1);
  assert_int_equal(t->shape[0], rows);
  if (cols) assert_int_equal(t->shape[1], cols);
  int64_t n = rows * (cols ? cols : 1);
  assert_int_equal(t->nbytes, (uint64_t)n * (dtype == QN_DTYPE_F32 ? 4 : 2));
  assert_true(read_value(t, 0) == value_of(seed, 0));
  assert_true(read_value(t, n - 1) == value_of(seed, n - 1));
}

/* Every canonical tensor of the tiny llama, with the seeds model_specs gave them. */
static void check_llama_tensors(const qn_source* s) {
  check_tensor(s, "token_embd.weight", QN_DTYPE_F32, VOCAB, DIM, 1);
  check_tensor(s, "output_norm.weight", QN_DTYPE_BF16, DIM, 0, 3);
  for (int l = 0; l < LAYERS; l++) {
    int b = 10 * (l + 1);
    char name[96];
#define CHECK(part, dt, r, c, k)                  \
  snprintf(name, sizeof name, "blk.%d." part, l); \
  check_tensor(s, name, dt, r, c, b + k)
    CHECK("attn_q.weight", QN_DTYPE_F16, HEADS * HEAD_DIM, DIM, 0);
    CHECK("attn_k.weight", QN_DTYPE_BF16, KV_HEADS * HEAD_DIM, DIM, 1);
    CHECK("attn_v.weight", QN_DTYPE_BF16, KV_HEADS * HEAD_DIM, DIM, 2);
    CHECK("attn_output.weight", QN_DTYPE_BF16, DIM, HEADS * HEAD_DIM, 3);
    CHECK("ffn_gate.weight", QN_DTYPE_BF16, HIDDEN, DIM, 4);
    CHECK("ffn_up.weight", QN_DTYPE_F16, HIDDEN, DIM, 5);
    CHECK("ffn_down.weight", QN_DTYPE_F32, DIM, HIDDEN, 6);
    CHECK("attn_norm.weight", QN_DTYPE_F32, DIM, 0, 7);
    CHECK("ffn_norm.weight", QN_DTYPE_BF16, DIM, 0, 8);
#undef CHECK
  }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_single_file_untied(void** state) {
  (void)state;
  qn_source* s = open_ok();
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
  assert_int_equal(hp->max_seq_len, 64);
  assert_float_equal(hp->norm_eps, 1e-5f, 1e-12);
  assert_float_equal(hp->rope_theta, 50000.0f, 0);
  assert_int_equal(hp->rope_style, QN_ROPE_HALF);
  assert_int_equal(hp->rope_scaling, QN_ROPE_SCALING_NONE);
  assert_false(hp->tied_embeddings);
  assert_false(hp->qkv_bias);
  /* 9 per layer + embedding, final norm, head; inv_freq ignored */
  assert_int_equal(s->n_tensors, LAYERS * 9 + 3);
  check_llama_tensors(s);
  check_tensor(s, "output.weight", QN_DTYPE_BF16, VOCAB, DIM, 4);
  for (int i = 0; i < s->n_tensors; i++) assert_null(strstr(s->tensors[i].name, "inv_freq"));
  assert_int_equal(s->n_maps, 1);
  /* the vocabulary comes from tokenizer.json */
  assert_int_equal(s->vocab.kind, QN_VOCAB_BPE);
  assert_int_equal(s->vocab.n_tokens, VOCAB);
  assert_string_equal(s->vocab.tokens[0], "<|endoftext|>");
  assert_int_equal(s->vocab.eos_id, 0); /* tokenizer_config.json's eos_token */
  assert_true(s->vocab.n_merges >= 43);
  /* config.json is kept for inspection */
  assert_non_null(s->metadata_json);
  assert_non_null(strstr(s->metadata_json, "\"model_type\":\"llama\""));
  qn_source_free(s);
}

static void test_tied_with_and_without_lm_head(void** state) {
  (void)state;
  for (int with_head = 0; with_head < 2; with_head++) {
    write_config("llama",
                 ", \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-6, "
                 "\"tie_word_embeddings\": true");
    spec specs[64];
    int n = model_specs(specs, with_head, false);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    write_safetensors(path, specs, n);
    qn_source* s = open_ok();
    assert_true(s->hp.tied_embeddings);
    assert_null(qn_source_find(s, "output.weight"));
    assert_int_equal(s->n_tensors, LAYERS * 9 + 2);
    check_llama_tensors(s);
    qn_source_free(s);
  }
}

/* Keys a config.json may omit take transformers' defaults. */
static void test_defaults(void** state) {
  (void)state;
  write_config("llama", "");
  qn_source* s = open_ok();
  assert_int_equal(s->hp.n_kv_heads, HEADS);        /* = num_attention_heads */
  assert_int_equal(s->hp.head_dim, DIM / HEADS);    /* = hidden / heads */
  assert_int_equal(s->hp.max_seq_len, 2048);        /* LlamaConfig */
  assert_float_equal(s->hp.norm_eps, 1e-6f, 1e-12); /* LlamaConfig */
  assert_float_equal(s->hp.rope_theta, 10000.0f, 0);
  assert_false(s->hp.tied_embeddings);
  assert_int_equal(s->hp.rope_scaling, QN_ROPE_SCALING_NONE);
  qn_source_free(s);
  /* mistral: the default 4096 sliding window caps the usable context */
  write_config("mistral", ", \"max_position_embeddings\": 32768, \"num_key_value_heads\": 1");
  s = open_ok();
  assert_string_equal(s->hp.arch, "mistral");
  assert_int_equal(s->hp.max_seq_len, 4096);
  qn_source_free(s);
  write_config("mistral", ", \"max_position_embeddings\": 32768, \"sliding_window\": null");
  s = open_ok();
  assert_int_equal(s->hp.max_seq_len, 32768);
  qn_source_free(s);
}

static void test_qwen2_biases(void** state) {
  (void)state;
  write_config("qwen2",
               ", \"num_key_value_heads\": 1, \"max_position_embeddings\": 128, "
               "\"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, "
               "\"sliding_window\": 32, \"use_sliding_window\": false");
  spec specs[64];
  int n = model_specs(specs, false, true);
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
  write_safetensors(path, specs, n);
  qn_source* s = open_ok();
  assert_string_equal(s->hp.arch, "qwen2");
  assert_true(s->hp.qkv_bias);
  assert_true(s->hp.tied_embeddings);
  assert_int_equal(s->hp.max_seq_len, 128); /* the window is off */
  assert_float_equal(s->hp.rope_theta, 1e6f, 0);
  assert_int_equal(s->n_tensors, LAYERS * 12 + 2);
  check_llama_tensors(s);
  check_tensor(s, "blk.1.attn_q.bias", QN_DTYPE_F32, HEADS * HEAD_DIM, 0, 20 + 9);
  check_tensor(s, "blk.0.attn_k.bias", QN_DTYPE_F32, KV_HEADS * HEAD_DIM, 0, 10 + 10);
  check_tensor(s, "blk.0.attn_v.bias", QN_DTYPE_F32, KV_HEADS * HEAD_DIM, 0, 10 + 11);
  qn_source_free(s);
}

static void test_rope_scaling(void** state) {
  (void)state;
  /* v4: top-level rope_scaling with rope_type */
  write_config("llama",
               ", \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, "
               "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
               "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}");
  qn_source* s = open_ok();
  assert_int_equal(s->hp.rope_scaling, QN_ROPE_SCALING_LLAMA3);
  assert_float_equal(s->hp.rope_factor, 8.0f, 0);
  assert_float_equal(s->hp.rope_low_freq_factor, 1.0f, 0);
  assert_float_equal(s->hp.rope_high_freq_factor, 4.0f, 0);
  assert_int_equal(s->hp.rope_orig_max_pos, 8192);
  assert_float_equal(s->hp.rope_theta, 500000.0f, 0);
  qn_source_free(s);
  /* older spelling "type" */
  write_config("llama", ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
  s = open_ok();
  assert_int_equal(s->hp.rope_scaling, QN_ROPE_SCALING_LINEAR);
  assert_float_equal(s->hp.rope_factor, 2.0f, 0);
  qn_source_free(s);
  /* v5: rope_parameters carries theta and the type */
  write_config("llama",
               ", \"rope_parameters\": {\"rope_theta\": 250000.0, \"rope_type\": \"llama3\", "
               "\"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
               "\"original_max_position_embeddings\": 8192}");
  s = open_ok();
  assert_int_equal(s->hp.rope_scaling, QN_ROPE_SCALING_LLAMA3);
  assert_float_equal(s->hp.rope_factor, 32.0f, 0);
  assert_float_equal(s->hp.rope_theta, 250000.0f, 0);
  qn_source_free(s);
  write_config("llama",
               ", \"rope_parameters\": {\"rope_theta\": 20000.0, \"rope_type\": "
               "\"default\"}, \"rope_theta\": 20000.0");
  s = open_ok();
  assert_int_equal(s->hp.rope_scaling, QN_ROPE_SCALING_NONE);
  assert_float_equal(s->hp.rope_theta, 20000.0f, 0);
  qn_source_free(s);
  /* unsupported or incomplete scaling */
  write_config("llama", ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}");
  expect_open_error(QN_EUNSUPPORTED, "yarn");
  write_config("llama", ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}");
  expect_open_error(QN_EFORMAT, "low_freq_factor");
  write_config("llama", ", \"rope_scaling\": {\"rope_type\": \"linear\"}");
  expect_open_error(QN_EFORMAT, "factor");
}

/* Two shards named by model.safetensors.index.json. */
static void write_sharded(bool drop_from_shard, bool drop_shard_file) {
  spec specs[64];
  int n = model_specs(specs, true, false);
  int half = n / 2;
  char path[512];
  snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", g_dir);
  write_safetensors(path, specs, half);
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", g_dir);
  /* an extra copy of a shard-1 tensor in shard 2: the index says where it lives */
  spec second[64];
  int n2 = 0;
  for (int i = half + (drop_from_shard ? 1 : 0); i < n; i++) second[n2++] = specs[i];
  second[n2] = specs[1];
  second[n2++].seed = 99;
  write_safetensors(path, second, n2);
  if (drop_shard_file) unlink(path);
  cJSON* root = cJSON_CreateObject();
  cJSON* meta = cJSON_AddObjectToObject(root, "metadata");
  cJSON_AddNumberToObject(meta, "total_size", 1234);
  cJSON* wm = cJSON_AddObjectToObject(root, "weight_map");
  for (int i = 0; i < n; i++)
    cJSON_AddStringToObject(
        wm, specs[i].name,
        i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
  char* text = cJSON_Print(root);
  cJSON_Delete(root);
  write_text("model.safetensors.index.json", text);
  free(text);
  remove_file("model.safetensors");
}

static void test_sharded(void** state) {
  (void)state;
  write_sharded(false, false);
  qn_source* s = open_ok();
  assert_int_equal(s->n_maps, 2);
  assert_int_equal(s->n_tensors, LAYERS * 9 + 3);
  check_llama_tensors(s); /* seeds as written, not the stray copy's 99 */
  check_tensor(s, "output.weight", QN_DTYPE_BF16, VOCAB, DIM, 4);
  qn_source_free(s);
}

static void test_shard_errors(void** state) {
  (void)state;
  write_sharded(true, false);
  expect_open_error(QN_EFORMAT, "is listed for shard model-00002-of-00002.safetensors");
  write_sharded(false, true);
  expect_open_error(QN_EIO, "model-00002-of-00002.safetensors");
  write_text("model.safetensors.index.json",
             "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}");
  expect_open_error(QN_EFORMAT, "model.norm.weight");
  write_text("model.safetensors.index.json", "{\"weight_map\": {}}");
  expect_open_error(QN_EFORMAT, "empty");
  write_text("model.safetensors.index.json", "{\"weight_map\": ");
  expect_open_error(QN_EFORMAT, "malformed JSON");
  remove_file("model.safetensors.index.json");
  expect_open_error(QN_EIO, "no model.safetensors");
}

static void test_config_errors(void** state) {
  (void)state;
  remove_file("config.json");
  expect_open_error(QN_EIO, "config.json");
  write_config("gpt2", "");
  expect_open_error(QN_EUNSUPPORTED, "gpt2");
  write_text("config.json", "{\"model_type\": \"llama\", \"hidden_size\": 8,");
  expect_open_error(QN_EFORMAT, "config.json: malformed JSON");
  write_text("config.json", "{\"model_type\": \"llama\", \"intermediate_size\": 16}");
  expect_open_error(QN_EFORMAT, "\"hidden_size\"");
  write_text("config.json", "{\"hidden_size\": 8}");
  expect_open_error(QN_EFORMAT, "model_type");
  write_config("llama", ", \"num_key_value_heads\": 1.5");
  expect_open_error(QN_EFORMAT, "num_key_value_heads");
  write_config("llama", ", \"rms_norm_eps\": \"small\"");
  expect_open_error(QN_EFORMAT, "rms_norm_eps");
  write_config("llama", ", \"tie_word_embeddings\": 1");
  expect_open_error(QN_EFORMAT, "tie_word_embeddings");
  write_config("llama", ", \"num_key_value_heads\": 3");
  expect_open_error(QN_EFORMAT, "n_kv_heads");
  write_config("llama", ", \"quantization_config\": {\"quant_method\": \"gptq\"}");
  expect_open_error(QN_EUNSUPPORTED, "quantization_config");
  write_text("config.json", "[1, 2]");
  expect_open_error(QN_EFORMAT, "config.json");
}

static void test_tensor_errors(void** state) {
  (void)state;
  spec specs[64];
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
  /* an output-projection bias (llama attention_bias = true) cannot be used */
  int n = model_specs(specs, true, false);
  specs[n++] = (spec){"model.layers.1.self_attn.o_proj.bias", "F32", 1, {DIM}, 5};
  write_safetensors(path, specs, n);
  expect_open_error(QN_EUNSUPPORTED, "model.layers.1.self_attn.o_proj.bias");
  /* a layer beyond num_hidden_layers */
  n = model_specs(specs, true, false);
  specs[n++] = (spec){"model.layers.2.input_layernorm.weight", "F32", 1, {DIM}, 5};
  write_safetensors(path, specs, n);
  expect_open_error(QN_EFORMAT, "model.layers.2.input_layernorm.weight");
  /* quantized payloads are not HF weights Quench reads */
  n = model_specs(specs, true, false);
  specs[1].dtype = "I8";
  write_safetensors(path, specs, n);
  expect_open_error(QN_EUNSUPPORTED, "I8");
  /* untied without lm_head */
  n = model_specs(specs, false, false);
  write_safetensors(path, specs, n);
  expect_open_error(QN_EFORMAT, "lm_head.weight");
  /* biases in one layer only */
  n = model_specs(specs, true, false);
  specs[n++] = (spec){"model.layers.0.self_attn.q_proj.bias", "F32", 1, {HEADS * HEAD_DIM}, 5};
  specs[n++] = (spec){"model.layers.0.self_attn.k_proj.bias", "F32", 1, {HEAD_DIM}, 5};
  specs[n++] = (spec){"model.layers.0.self_attn.v_proj.bias", "F32", 1, {HEAD_DIM}, 5};
  write_safetensors(path, specs, n);
  expect_open_error(QN_EFORMAT, "blk.1.attn_q.bias");
  /* a corrupt safetensors file */
  static const char k_bad[] = "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}        ";
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(k_bad, 1, sizeof k_bad - 1, f), 24);
  fclose(f);
  expect_open_error(QN_EFORMAT, "model.safetensors");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_single_file_untied, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_tied_with_and_without_lm_head, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_defaults, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_qwen2_biases, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_rope_scaling, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_sharded, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_shard_errors, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_config_errors, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_tensor_errors, setup_dir, teardown_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
