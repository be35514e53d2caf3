/* test_gguf.c: the GGUF parser and qn_gguf_open on files written by a small GGUF writer in
 * this test: every metadata type, string and number arrays, a non-default alignment, F32 /
 * F16 / BF16 / Q8_0 / Q4_0 tensors; then truncation at every byte offset and hostile headers. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "format/gguf.h"
#include "format/source.h"
#include "testutil.h"

/* ---- a growable byte buffer with little-endian writers ----------------------------- */

typedef struct wbuf {
  uint8_t* p; /* bytes */
  size_t n;   /* used */
  size_t cap; /* allocated */
} wbuf;

static void w_raw(wbuf* b, const void* d, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}
static void w_le(wbuf* b, uint64_t v, int n) {
  for (int i = 0; i < n; i++) {
    uint8_t c = (uint8_t)(v >> (8 * i));
    w_raw(b, &c, 1);
  }
}
static void w_u8(wbuf* b, uint8_t v) { w_le(b, v, 1); }
static void w_u16(wbuf* b, uint16_t v) { w_le(b, v, 2); }
static void w_u32(wbuf* b, uint32_t v) { w_le(b, v, 4); }
static void w_u64(wbuf* b, uint64_t v) { w_le(b, v, 8); }
static void w_f32(wbuf* b, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  w_u32(b, u);
}
static void w_f64(wbuf* b, double f) {
  uint64_t u;
  memcpy(&u, &f, 8);
  w_u64(b, u);
}
static void w_strn(wbuf* b, const char* s, size_t n) {
  w_u64(b, n);
  w_raw(b, s, n);
}
static void w_str(wbuf* b, const char* s) { w_strn(b, s, strlen(s)); }

/* ---- a GGUF writer ------------------------------------------------------------------ */

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };

typedef struct gg {
  uint32_t version;   /* header version */
  uint32_t alignment; /* layout alignment of the data section */
  wbuf kv;            /* encoded key/values */
  uint64_t n_kv;
  wbuf ti; /* encoded tensor infos */
  uint64_t n_t;
  wbuf data; /* data section */
} gg;

static void gg_init(gg* g, uint32_t alignment) {
  memset(g, 0, sizeof *g);
  g->version = 3;
  g->alignment = alignment;
}
static void gg_free(gg* g) {
  free(g->kv.p);
  free(g->ti.p);
  free(g->data.p);
}

/* Starts a key/value: the caller writes the value into g->kv. */
static wbuf* kv(gg* g, const char* key, uint32_t type) {
  w_str(&g->kv, key);
  w_u32(&g->kv, type);
  g->n_kv++;
  return &g->kv;
}
static void kv_str(gg* g, const char* key, const char* s) { w_str(kv(g, key, T_STR), s); }
static void kv_u32(gg* g, const char* key, uint32_t v) { w_u32(kv(g, key, T_U32), v); }
static void kv_f32(gg* g, const char* key, float v) { w_f32(kv(g, key, T_F32), v); }
static void kv_bool(gg* g, const char* key, bool v) { w_u8(kv(g, key, T_BOOL), v); }
/* Starts an array of n elements of type et. */
static wbuf* kv_arr(gg* g, const char* key, uint32_t et, uint64_t n) {
  wbuf* b = kv(g, key, T_ARR);
  w_u32(b, et);
  w_u64(b, n);
  return b;
}

/* Byte j of the tensor with seed s: distinct per tensor. */
static uint8_t pattern(int s, size_t j) { return (uint8_t)(s * 31 + j * 7 + 1); }

/* Adds a tensor with nbytes of pattern data placed at the next aligned offset. */
static void gg_tensor(gg* g, const char* name, int nd, const uint64_t* ne, uint32_t type,
                      size_t nbytes, int seed) {
  while (g->data.n % g->alignment) w_u8(&g->data, 0xee);
  w_str(&g->ti, name);
  w_u32(&g->ti, (uint32_t)nd);
  for (int d = 0; d < nd; d++) w_u64(&g->ti, ne[d]);
  w_u32(&g->ti, type);
  w_u64(&g->ti, g->data.n);
  for (size_t j = 0; j < nbytes; j++) w_u8(&g->data, pattern(seed, j));
  g->n_t++;
}

/* Assembles the file; *data_off receives the data section's offset. */
static wbuf gg_finish(const gg* g, size_t* data_off) {
  wbuf b = {0};
  w_raw(&b, "GGUF", 4);
  w_u32(&b, g->version);
  w_u64(&b, g->n_t);
  w_u64(&b, g->n_kv);
  w_raw(&b, g->kv.p, g->kv.n);
  w_raw(&b, g->ti.p, g->ti.n);
  while (b.n % g->alignment) w_u8(&b, 0);
  if (data_off) *data_off = b.n;
  w_raw(&b, g->data.p, g->data.n);
  return b;
}

/* ---- the full test file ------------------------------------------------------------- */

#define ALIGN 64
#define DIM 32
#define NTOK 8

static const char* const k_tokens[NTOK] = {"<unk>",
                                           "<s>",
                                           "</s>",
                                           "<0x41>",
                                           "\xe2\x96\x81"
                                           "a",
                                           "b",
                                           "\xe2\x96\x81"
                                           "ab",
                                           "c"};
static const int32_t k_types[NTOK] = {2, 3, 3, 6, 1, 1, 1, 0};

/* Tensors of the full file: name, dims, ne (innermost first), ggml type, bytes. */
static const struct {
  const char* name;
  int nd;
  uint64_t ne[4];
  uint32_t type;
  size_t nbytes;
} k_tensors[] = {
    {"token_embd.weight", 2, {DIM, NTOK}, 0, DIM* NTOK * 4},
    {"output_norm.weight", 1, {DIM}, 0, DIM * 4},
    {"blk.0.attn_q.weight", 2, {DIM, DIM}, 8, DIM * 34},     /* Q8_0: 32 rows x 1 block */
    {"blk.0.attn_k.weight", 2, {DIM, 16}, 1, DIM * 16 * 2},  /* F16 */
    {"blk.0.attn_v.weight", 2, {DIM, 16}, 30, DIM * 16 * 2}, /* BF16 */
    {"blk.0.extra_3d", 3, {2, 3, 5}, 0, 2 * 3 * 5 * 4},      /* F32, odd sizes */
    {"blk.0.ffn_up.weight", 2, {DIM, 64}, 2, 64 * 18},       /* Q4_0, last: no tail padding */
};
#define N_TENSORS ((int)(sizeof k_tensors / sizeof k_tensors[0]))

/* Writes "<arch>.<suffix>" = v unless suffix is skip. */
static void kv_arch_u32(gg* g, const char* arch, const char* suffix, uint32_t v, const char* skip) {
  char key[128];
  if (skip && strcmp(suffix, skip) == 0) return;
  snprintf(key, sizeof key, "%s.%s", arch, suffix);
  kv_u32(g, key, v);
}

/* Hyper-parameters and a tokenizer; skip names one "<arch>." key suffix to leave out. */
static void add_model_kvs(gg* g, const char* arch, const char* tok_model, const char* skip) {
  char key[128];
  kv_str(g, "general.architecture", arch);
  kv_arch_u32(g, arch, "context_length", 16, skip);
  kv_arch_u32(g, arch, "embedding_length", DIM, skip);
  kv_arch_u32(g, arch, "feed_forward_length", 64, skip);
  kv_arch_u32(g, arch, "block_count", 1, skip);
  kv_arch_u32(g, arch, "attention.head_count", 4, skip);
  kv_arch_u32(g, arch, "attention.head_count_kv", 2, skip);
  snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
  kv_f32(g, key, 1e-6f);
  snprintf(key, sizeof key, "%s.rope.freq_base", arch);
  kv_f32(g, key, 500000.0f);
  kv_str(g, "tokenizer.ggml.model", tok_model);
  wbuf* b = kv_arr(g, "tokenizer.ggml.tokens", T_STR, NTOK);
  for (int i = 0; i < NTOK; i++) w_str(b, k_tokens[i]);
  if (strcmp(tok_model, "gpt2") == 0) {
    b = kv_arr(g, "tokenizer.ggml.merges", T_STR, 2);
    w_str(b, "a b");
    w_str(b,
          "\xe2\x96\x81"
          "a b");
    kv_str(g, "tokenizer.ggml.pre", "llama-bpe");
  } else {
    b = kv_arr(g, "tokenizer.ggml.scores", T_F32, NTOK);
    for (int i = 0; i < NTOK; i++) w_f32(b, -(float)i * 0.5f);
    kv_bool(g, "tokenizer.ggml.add_bos_token", false);
  }
  b = kv_arr(g, "tokenizer.ggml.token_type", T_I32, NTOK);
  for (int i = 0; i < NTOK; i++) w_u32(b, (uint32_t)k_types[i]);
  kv_u32(g, "tokenizer.ggml.bos_token_id", 1);
  kv_u32(g, "tokenizer.ggml.eos_token_id", 2);
}

static void add_llama_kvs(gg* g, const char* tok_model) {
  add_model_kvs(g, "llama", tok_model, NULL);
}

/* Every scalar type and several array types, under "t.*". */
static void add_typed_kvs(gg* g) {
  w_u8(kv(g, "t.u8", T_U8), 200);
  w_u8(kv(g, "t.i8", T_I8), (uint8_t)-5);
  w_u16(kv(g, "t.u16", T_U16), 60000);
  w_u16(kv(g, "t.i16", T_I16), (uint16_t)-30000);
  w_u32(kv(g, "t.u32", T_U32), 4000000000u);
  w_u32(kv(g, "t.i32", T_I32), (uint32_t)-2000000000);
  w_f32(kv(g, "t.f32", T_F32), 1.5f);
  w_u8(kv(g, "t.bool", T_BOOL), 1);
  w_strn(kv(g, "t.str", T_STR), "h\0i\"\n", 5); /* embedded NUL: lengths, not NULs */
  w_u64(kv(g, "t.u64", T_U64), (1ull << 40) + 3);
  w_u64(kv(g, "t.i64", T_I64), (uint64_t) - (1ll << 40));
  w_f64(kv(g, "t.f64", T_F64), 3.141592653589793);
  wbuf* b = kv_arr(g, "t.arr_str", T_STR, 3);
  w_str(b, "a");
  w_str(b, "");
  w_str(b, "ccc");
  b = kv_arr(g, "t.arr_i32", T_I32, 3);
  w_u32(b, 1);
  w_u32(b, (uint32_t)-2);
  w_u32(b, 3);
  b = kv_arr(g, "t.arr_u8", T_U8, 2);
  w_u8(b, 255);
  w_u8(b, 7);
  b = kv_arr(g, "t.arr_i16", T_I16, 1);
  w_u16(b, (uint16_t)-7);
  b = kv_arr(g, "t.arr_u64", T_U64, 1);
  w_u64(b, 1ull << 50);
  b = kv_arr(g, "t.arr_f64", T_F64, 2);
  w_f64(b, 0.25);
  w_f64(b, -2.5);
  b = kv_arr(g, "t.arr_bool", T_BOOL, 2);
  w_u8(b, 0);
  w_u8(b, 1);
  kv_arr(g, "t.arr_empty", T_F32, 0);
}

static wbuf build_full(size_t* data_off) {
  gg g;
  gg_init(&g, ALIGN);
  add_llama_kvs(&g, "llama");
  kv_u32(&g, "general.alignment", ALIGN);
  add_typed_kvs(&g);
  for (int i = 0; i < N_TENSORS; i++)
    gg_tensor(&g, k_tensors[i].name, k_tensors[i].nd, k_tensors[i].ne, k_tensors[i].type,
              k_tensors[i].nbytes, i);
  wbuf b = gg_finish(&g, data_off);
  gg_free(&g);
  return b;
}

/* A parse of a heap copy of the bytes. */
typedef struct parsed {
  qn_gguf* g;     /* the result, or NULL */
  uint8_t* bytes; /* exact-size copy the result points into (so ASan sees any over-read) */
} parsed;

static void parsed_free(parsed* p) {
  qn_gguf_free(p->g);
  free(p->bytes);
  p->g = NULL;
  p->bytes = NULL;
}

static qn_status parse_bytes(const uint8_t* data, size_t n, parsed* out) {
  qn_mapfile mf;
  memset(&mf, 0, sizeof mf);
  out->g = NULL;
  out->bytes = n ? malloc(n) : NULL;
  if (n) {
    assert_non_null(out->bytes);
    memcpy(out->bytes, data, n);
  }
  mf.data = out->bytes;
  mf.size = n;
  snprintf(mf.path, sizeof mf.path, "mem.gguf");
  qn_status st = qn_gguf_parse(&mf, &out->g);
  if (st != QN_OK) assert_null(out->g);
  return st;
}

static bool str_is(qn_gguf_str s, const char* c, size_t n) {
  return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ---- tests: parsing ------------------------------------------------------------------ */

static void test_parse_values(void** state) {
  (void)state;
  size_t data_off;
  wbuf b = build_full(&data_off);
  qn_gguf* g;
  qn_mapfile mf = {0};
  uint8_t* copy = malloc(b.n);
  memcpy(copy, b.p, b.n);
  mf.data = copy;
  mf.size = b.n;
  assert_int_equal(qn_gguf_parse(&mf, &g), QN_OK);
  assert_int_equal(qn_gguf_version(g), 3);
  assert_int_equal(qn_gguf_alignment(g), ALIGN);
  assert_int_equal(qn_gguf_data_offset(g), data_off);
  assert_int_equal(data_off % ALIGN, 0);

  uint32_t u32;
  int64_t i64;
  float f32;
  double f64;
  bool bo;
  qn_gguf_str s;
  assert_int_equal(qn_gguf_get_u32(g, "t.u8", &u32), QN_OK);
  assert_int_equal(u32, 200);
  assert_int_equal(qn_gguf_get_i64(g, "t.i8", &i64), QN_OK);
  assert_int_equal(i64, -5);
  assert_int_equal(qn_gguf_get_u32(g, "t.u16", &u32), QN_OK);
  assert_int_equal(u32, 60000);
  assert_int_equal(qn_gguf_get_i64(g, "t.i16", &i64), QN_OK);
  assert_int_equal(i64, -30000);
  assert_int_equal(qn_gguf_get_u32(g, "t.u32", &u32), QN_OK);
  assert_int_equal(u32, 4000000000u);
  assert_int_equal(qn_gguf_get_i64(g, "t.i32", &i64), QN_OK);
  assert_int_equal(i64, -2000000000);
  assert_int_equal(qn_gguf_get_f32(g, "t.f32", &f32), QN_OK);
  assert_true(f32 == 1.5f);
  assert_int_equal(qn_gguf_get_bool(g, "t.bool", &bo), QN_OK);
  assert_true(bo);
  assert_int_equal(qn_gguf_get_str(g, "t.str", &s), QN_OK);
  assert_true(str_is(s, "h\0i\"\n", 5));
  assert_int_equal(qn_gguf_get_i64(g, "t.u64", &i64), QN_OK);
  assert_int_equal(i64, (1ll << 40) + 3);
  assert_int_equal(qn_gguf_get_i64(g, "t.i64", &i64), QN_OK);
  assert_int_equal(i64, -(1ll << 40));
  assert_int_equal(qn_gguf_get_f64(g, "t.f64", &f64), QN_OK);
  assert_true(f64 == 3.141592653589793);

  /* type checks and range checks, with the key in the message */
  assert_int_equal(qn_gguf_get_u32(g, "t.i8", &u32), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "t.i8"));
  assert_int_equal(qn_gguf_get_u32(g, "t.u64", &u32), QN_EFORMAT);
  assert_int_equal(qn_gguf_get_f32(g, "t.str", &f32), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "t.str"));
  assert_int_equal(qn_gguf_get_str(g, "t.u8", &s), QN_EFORMAT);
  assert_int_equal(qn_gguf_get_bool(g, "t.u8", &bo), QN_EFORMAT);
  assert_int_equal(qn_gguf_get_u32(g, "no.such.key", &u32), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "no.such.key"));
  assert_null(qn_gguf_find(g, "no.such.key"));
  assert_null(qn_gguf_find(g, "t.u")); /* prefixes do not match */

  const qn_gguf_kv* a;
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_str", QN_GGUF_STRING, &a), QN_OK);
  assert_int_equal(a->arr_n, 3);
  assert_true(str_is(qn_gguf_arr_str(a, 0), "a", 1));
  assert_true(str_is(qn_gguf_arr_str(a, 1), "", 0));
  assert_true(str_is(qn_gguf_arr_str(a, 2), "ccc", 3));
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_str", QN_GGUF_INT32, &a), QN_EFORMAT);
  assert_int_equal(qn_gguf_get_arr(g, "t.u8", QN_GGUF_TYPE_COUNT, &a), QN_EFORMAT);
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_i32", QN_GGUF_INT32, &a), QN_OK);
  assert_int_equal(qn_gguf_arr_i64(a, 0), 1);
  assert_int_equal(qn_gguf_arr_i64(a, 1), -2);
  assert_int_equal(qn_gguf_arr_i64(a, 2), 3);
  assert_true(qn_gguf_arr_f64(a, 1) == -2.0);
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_u8", QN_GGUF_UINT8, &a), QN_OK);
  assert_int_equal(qn_gguf_arr_i64(a, 0), 255);
  assert_int_equal(qn_gguf_arr_i64(a, 1), 7);
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_i16", QN_GGUF_INT16, &a), QN_OK);
  assert_int_equal(qn_gguf_arr_i64(a, 0), -7);
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_u64", QN_GGUF_UINT64, &a), QN_OK);
  assert_true(qn_gguf_arr_f64(a, 0) == (double)(1ull << 50));
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_f64", QN_GGUF_FLOAT64, &a), QN_OK);
  assert_true(qn_gguf_arr_f64(a, 0) == 0.25 && qn_gguf_arr_f64(a, 1) == -2.5);
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_bool", QN_GGUF_BOOL, &a), QN_OK);
  assert_int_equal(qn_gguf_arr_i64(a, 0), 0);
  assert_int_equal(qn_gguf_arr_i64(a, 1), 1);
  assert_int_equal(qn_gguf_get_arr(g, "t.arr_empty", QN_GGUF_FLOAT32, &a), QN_OK);
  assert_int_equal(a->arr_n, 0);
  assert_int_equal(qn_gguf_get_arr(g, "tokenizer.ggml.scores", QN_GGUF_FLOAT32, &a), QN_OK);
  assert_true(qn_gguf_arr_f64(a, 3) == -1.5);

  /* key order is file order */
  assert_true(qn_gguf_str_eq(qn_gguf_kv_at(g, 0)->key, "general.architecture"));
  assert_null(qn_gguf_kv_at(g, qn_gguf_n_kv(g)));

  /* tensors: shape, type, offset and data pointer */
  assert_int_equal(qn_gguf_n_tensors(g), N_TENSORS);
  const qn_dtype want_dtype[] = {QN_DTYPE_F32,  QN_DTYPE_F32, QN_DTYPE_GGML_Q8_0, QN_DTYPE_F16,
                                 QN_DTYPE_BF16, QN_DTYPE_F32, QN_DTYPE_GGML_Q4_0};
  for (int i = 0; i < N_TENSORS; i++) {
    const qn_gguf_tensor* t = qn_gguf_tensor_at(g, i);
    assert_ptr_equal(t, qn_gguf_find_tensor(g, k_tensors[i].name));
    assert_int_equal(t->n_dims, k_tensors[i].nd);
    for (int d = 0; d < 4; d++)
      assert_int_equal(t->ne[d], d < k_tensors[i].nd ? k_tensors[i].ne[d] : 1);
    assert_int_equal(t->ggml_type, k_tensors[i].type);
    assert_int_equal(t->dtype, want_dtype[i]);
    assert_int_equal(t->nbytes, k_tensors[i].nbytes);
    assert_int_equal(t->offset % ALIGN, 0);
    assert_ptr_equal(t->data, copy + data_off + t->offset);
    for (size_t j = 0; j < t->nbytes; j++) assert_int_equal(t->data[j], pattern(i, j));
  }
  assert_null(qn_gguf_find_tensor(g, "output.weight"));
  assert_int_equal(
      data_off + qn_gguf_tensor_at(g, N_TENSORS - 1)->offset + k_tensors[N_TENSORS - 1].nbytes,
      b.n); /* no tail padding: every truncation must fail */
  qn_gguf_free(g);
  free(copy);
  free(b.p);
}

static void test_kv_format(void** state) {
  (void)state;
  wbuf b = build_full(NULL);
  parsed p;
  assert_int_equal(parse_bytes(b.p, b.n, &p), QN_OK);
  qn_gguf* g = p.g;
  char buf[128];
  const struct {
    const char* key;
    const char* text;
  } want[] = {
      {"t.u8", "200"},
      {"t.i8", "-5"},
      {"t.u16", "60000"},
      {"t.i16", "-30000"},
      {"t.u32", "4000000000"},
      {"t.i32", "-2000000000"},
      {"t.f32", "1.5"},
      {"t.bool", "true"},
      {"t.str", "\"h\\u0000i\\\"\\n\""},
      {"t.u64", "1099511627779"},
      {"t.i64", "-1099511627776"},
      {"t.f64", "3.1415926535897931"},
      {"t.arr_str", "[string x 3]"},
      {"t.arr_i32", "[i32 x 3]"},
      {"t.arr_empty", "[f32 x 0]"},
      {"tokenizer.ggml.tokens", "[string x 8]"},
      {"general.architecture", "\"llama\""},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const qn_gguf_kv* kv = qn_gguf_find(g, want[i].key);
    assert_non_null(kv);
    int n = qn_gguf_kv_format(kv, buf, sizeof buf);
    assert_string_equal(buf, want[i].text);
    assert_int_equal(n, (int)strlen(want[i].text));
  }
  /* truncation keeps a NUL and reports the full length */
  int n = qn_gguf_kv_format(qn_gguf_find(g, "t.arr_str"), buf, 4);
  assert_int_equal(n, 12);
  assert_string_equal(buf, "[st");
  parsed_free(&p);
  free(b.p);
}

/* Every prefix of the file must fail cleanly with QN_EFORMAT. */
static void test_truncation_every_byte(void** state) {
  (void)state;
  wbuf b = build_full(NULL);
  for (size_t n = 0; n < b.n; n++) {
    parsed p;
    qn_error_clear();
    qn_status st = parse_bytes(b.p, n, &p);
    if (st != QN_EFORMAT) fprintf(stderr, "prefix of %zu bytes: %s\n", n, qn_status_name(st));
    assert_int_equal(st, QN_EFORMAT);
    assert_true(strlen(qn_last_error()) > 0);
    parsed_free(&p);
  }
  free(b.p);
}

/* ---- tests: hostile headers ---------------------------------------------------------- */

/* Parses the file g describes; returns the status. */
static qn_status parse_gg(const gg* g) {
  wbuf b = gg_finish(g, NULL);
  parsed p;
  qn_status st = parse_bytes(b.p, b.n, &p);
  parsed_free(&p);
  free(b.p);
  return st;
}

/* A file with only a header and hand-written key/value bytes. */
static qn_status parse_raw_kvs(uint64_t n_kv, const wbuf* kvs) {
  gg g;
  gg_init(&g, 32);
  w_raw(&g.kv, kvs->p, kvs->n);
  g.n_kv = n_kv;
  qn_status st = parse_gg(&g);
  gg_free(&g);
  return st;
}

static void test_bad_headers(void** state) {
  (void)state;
  wbuf b = build_full(NULL);
  parsed p;
  b.p[0] = 'X'; /* magic */
  assert_int_equal(parse_bytes(b.p, b.n, &p), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "magic"));
  parsed_free(&p);
  b.p[0] = 'G';
  const struct {
    uint32_t version;
    qn_status want;
  } versions[] = {{1, QN_EUNSUPPORTED}, {7, QN_EFORMAT}, {0x03000000, QN_EUNSUPPORTED},
                  {0, QN_EFORMAT},      {2, QN_OK},      {3, QN_OK}};
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
    memcpy(b.p + 4, &versions[i].version, 4);
    assert_int_equal(parse_bytes(b.p, b.n, &p), versions[i].want);
    parsed_free(&p);
  }
  /* absurd counts are rejected before any allocation */
  uint64_t huge = 1ull << 60;
  memcpy(b.p + 8, &huge, 8);
  assert_int_equal(parse_bytes(b.p, b.n, &p), QN_EFORMAT);
  parsed_free(&p);
  memcpy(b.p + 8, &(uint64_t){N_TENSORS}, 8);
  memcpy(b.p + 16, &huge, 8);
  assert_int_equal(parse_bytes(b.p, b.n, &p), QN_EFORMAT);
  parsed_free(&p);
  free(b.p);

  /* an empty file with no tensors and no metadata is valid */
  gg g;
  gg_init(&g, 32);
  assert_int_equal(parse_gg(&g), QN_OK);
  gg_free(&g);
}

static void test_bad_metadata(void** state) {
  (void)state;
  wbuf k = {0};
  /* huge key length */
  w_u64(&k, UINT64_MAX);
  assert_int_equal(parse_raw_kvs(1, &k), QN_EFORMAT);
  k.n = 0;
  w_u64(&k, 1ull << 62);
  w_raw(&k, "abcdefghijklmnopqrstuvwxyz", 26);
  assert_int_equal(parse_raw_kvs(1, &k), QN_EFORMAT);
  /* huge string value */
  k.n = 0;
  w_str(&k, "key");
  w_u32(&k, T_STR);
  w_u64(&k, UINT64_MAX - 3);
  w_raw(&k, "xxxxxxxxxxxxxxxx", 16);
  assert_int_equal(parse_raw_kvs(1, &k), QN_EFORMAT);
  /* unknown value type */
  k.n = 0;
  w_str(&k, "key");
  w_u32(&k, 13);
  w_u64(&k, 0);
  assert_int_equal(parse_raw_kvs(1, &k), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "key"));
  /* arrays: element count overflowing bytes, huge string array, unknown element type */
  const struct {
    uint32_t et;
    uint64_t n;
    qn_status want;
  } arrays[] = {{T_U32, 1ull << 62, QN_EFORMAT},
                {T_U64, UINT64_MAX, QN_EFORMAT},
                {T_STR, 1ull << 61, QN_EFORMAT},
                {T_STR, UINT64_MAX, QN_EFORMAT},
                {77, 1, QN_EFORMAT},
                {T_ARR, 1, QN_EUNSUPPORTED},
                {T_U8, 16, QN_OK}};
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
    k.n = 0;
    w_str(&k, "arr");
    w_u32(&k, T_ARR);
    w_u32(&k, arrays[i].et);
    w_u64(&k, arrays[i].n);
    w_raw(&k, "0123456789abcdef", 16);
    assert_int_equal(parse_raw_kvs(1, &k), arrays[i].want);
    if (arrays[i].want == QN_EUNSUPPORTED) assert_non_null(strstr(qn_last_error(), "arr"));
  }
  /* duplicate key */
  k.n = 0;
  for (int i = 0; i < 2; i++) {
    w_str(&k, "dup.key");
    w_u32(&k, T_U8);
    w_u8(&k, 1);
  }
  assert_int_equal(parse_raw_kvs(2, &k), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "dup.key"));
  /* alignment: not a power of two, zero, wrong type */
  const uint32_t aligns[] = {48, 0, 3};
  for (int i = 0; i < 3; i++) {
    k.n = 0;
    w_str(&k, "general.alignment");
    w_u32(&k, T_U32);
    w_u32(&k, aligns[i]);
    assert_int_equal(parse_raw_kvs(1, &k), QN_EFORMAT);
  }
  k.n = 0;
  w_str(&k, "general.alignment");
  w_u32(&k, T_STR);
  w_str(&k, "64");
  assert_int_equal(parse_raw_kvs(1, &k), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "general.alignment"));
  free(k.p);
}

/* Writes a tensor info with an explicit offset (no data). */
static void tensor_info(gg* g, const char* name, uint32_t nd, const uint64_t* ne, uint32_t type,
                        uint64_t offset) {
  w_str(&g->ti, name);
  w_u32(&g->ti, nd);
  for (uint32_t d = 0; d < nd && d < 8; d++) w_u64(&g->ti, ne[d]);
  w_u32(&g->ti, type);
  w_u64(&g->ti, offset);
  g->n_t++;
}

/* One tensor over 256 bytes of data. */
static qn_status parse_one_tensor(uint32_t nd, const uint64_t* ne, uint32_t type, uint64_t offset) {
  gg g;
  gg_init(&g, 32);
  tensor_info(&g, "blk.0.w", nd, ne, type, offset);
  for (int i = 0; i < 256; i++) w_u8(&g.data, (uint8_t)i);
  qn_status st = parse_gg(&g);
  gg_free(&g);
  return st;
}

static void test_bad_tensors(void** state) {
  (void)state;
  const uint64_t ne8x8[] = {8, 8}, ne32[] = {32, 2}, ne33[] = {33},
                 big[] = {1ull << 40, 1ull << 40}, ne5[] = {1, 1, 1, 1, 1},
                 nemax[] = {UINT64_MAX, 2};
  assert_int_equal(parse_one_tensor(2, ne8x8, 0, 0), QN_OK);       /* 256 bytes exactly */
  assert_int_equal(parse_one_tensor(2, ne8x8, 0, 32), QN_EFORMAT); /* runs past the end */
  assert_non_null(strstr(qn_last_error(), "blk.0.w"));
  assert_int_equal(parse_one_tensor(2, ne8x8, 0, 1ull << 62), QN_EFORMAT); /* offset beyond */
  assert_int_equal(parse_one_tensor(2, ne8x8, 0, UINT64_MAX - 31), QN_EFORMAT);
  assert_int_equal(parse_one_tensor(1, ne8x8, 0, 4), QN_EFORMAT); /* misaligned offset */
  assert_int_equal(parse_one_tensor(2, big, 0, 0), QN_EFORMAT);   /* element count overflow */
  assert_int_equal(parse_one_tensor(2, nemax, 0, 0), QN_EFORMAT);
  assert_int_equal(parse_one_tensor(5, ne5, 0, 0), QN_EFORMAT); /* too many dims */
  assert_int_equal(parse_one_tensor(0, ne5, 0, 0), QN_EFORMAT);
  assert_int_equal(parse_one_tensor(2, ne32, 8, 0), QN_OK);      /* Q8_0: 2 x 34 bytes */
  assert_int_equal(parse_one_tensor(1, ne33, 8, 0), QN_EFORMAT); /* ragged block */
  assert_int_equal(parse_one_tensor(2, ne8x8, 99, 0), QN_EUNSUPPORTED);
  assert_non_null(strstr(qn_last_error(), "blk.0.w"));
  assert_non_null(strstr(qn_last_error(), "99"));
  assert_int_equal(parse_one_tensor(2, ne8x8, 12, 0), QN_EUNSUPPORTED);
  assert_non_null(strstr(qn_last_error(), "Q4_K"));
  assert_int_equal(parse_one_tensor(2, ne8x8, 4, 0), QN_EUNSUPPORTED); /* removed type */

  /* duplicate tensor names */
  gg g;
  gg_init(&g, 32);
  tensor_info(&g, "same", 1, ne8x8, 0, 0);
  tensor_info(&g, "same", 1, ne8x8, 0, 32);
  for (int i = 0; i < 64; i++) w_u8(&g.data, 0);
  assert_int_equal(parse_gg(&g), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), "same"));
  gg_free(&g);
}

/* ---- tests: qn_gguf_open ------------------------------------------------------------- */

static qn_status open_bytes(const wbuf* b, qn_source** out) {
  const char* path = qt_write_temp(b->p, b->n, ".gguf");
  assert_non_null(path);
  qn_source* s = calloc(1, sizeof *s);
  assert_non_null(s);
  qn_status st = qn_gguf_open(s, path);
  unlink(path);
  if (st != QN_OK) {
    qn_source_free(s);
    s = NULL;
  }
  *out = s;
  return st;
}

static void test_open_llama(void** state) {
  (void)state;
  wbuf b = build_full(NULL);
  qn_source* s;
  assert_int_equal(open_bytes(&b, &s), QN_OK);
  const qn_hparams* hp = &s->hp;
  assert_int_equal(s->format, QN_FORMAT_GGUF);
  assert_string_equal(hp->arch, "llama");
  assert_int_equal(hp->dim, DIM);
  assert_int_equal(hp->hidden_dim, 64);
  assert_int_equal(hp->n_layers, 1);
  assert_int_equal(hp->n_heads, 4);
  assert_int_equal(hp->n_kv_heads, 2);
  assert_int_equal(hp->head_dim, DIM / 4);
  assert_int_equal(hp->vocab_size, NTOK);
  assert_int_equal(hp->max_seq_len, 16);
  assert_true(hp->norm_eps == 1e-6f);
  assert_true(hp->rope_theta == 500000.0f);
  assert_int_equal(hp->rope_style, QN_ROPE_ADJACENT);
  assert_int_equal(hp->rope_scaling, QN_ROPE_SCALING_NONE);
  assert_true(hp->tied_embeddings);
  assert_false(hp->qkv_bias);
  assert_int_equal(qn_hparams_validate(hp, "x"), QN_OK);

  assert_int_equal(s->n_tensors, N_TENSORS);
  for (int i = 0; i < N_TENSORS; i++) {
    const qn_tensor* t = qn_source_find(s, k_tensors[i].name);
    assert_non_null(t);
    assert_int_equal(t->ndim, k_tensors[i].nd);
    for (int d = 0; d < t->ndim; d++)
      assert_int_equal(t->shape[d], (int64_t)k_tensors[i].ne[t->ndim - 1 - d]);
    assert_int_equal(t->nbytes, k_tensors[i].nbytes);
    const uint8_t* data = t->data;
    for (size_t j = 0; j < t->nbytes; j++) assert_int_equal(data[j], pattern(i, j));
  }
  const qn_tensor* k = qn_source_find(s, "blk.0.attn_k.weight");
  assert_int_equal(k->dtype, QN_DTYPE_F16);
  assert_int_equal(k->shape[0], 16);
  assert_int_equal(k->shape[1], DIM);
  assert_int_equal(qn_source_find(s, "blk.0.attn_v.weight")->dtype, QN_DTYPE_BF16);
  assert_int_equal(qn_source_find(s, "blk.0.attn_q.weight")->dtype, QN_DTYPE_GGML_Q8_0);
  assert_int_equal(qn_source_find(s, "blk.0.ffn_up.weight")->dtype, QN_DTYPE_GGML_Q4_0);

  const qn_vocab* v = &s->vocab;
  assert_int_equal(v->kind, QN_VOCAB_SPM);
  assert_int_equal(v->n_tokens, NTOK);
  for (int i = 0; i < NTOK; i++) {
    assert_string_equal(v->tokens[i], k_tokens[i]);
    assert_true(v->scores[i] == -(float)i * 0.5f);
    assert_int_equal(v->attrs[i], k_types[i] == 0 ? QN_TOKEN_NORMAL : k_types[i]);
  }
  assert_int_equal(v->bos_id, 1);
  assert_int_equal(v->eos_id, 2);
  assert_int_equal(v->unk_id, 0);
  assert_false(v->add_bos); /* the file says so */
  assert_true(v->add_space_prefix);
  assert_true(v->byte_fallback);
  assert_null(v->merges);

  assert_non_null(s->metadata_json);
  cJSON* j = cJSON_Parse(s->metadata_json);
  assert_non_null(j);
  assert_true(cJSON_GetObjectItem(j, "t.u32")->valuedouble == 4000000000.0);
  assert_true(cJSON_GetObjectItem(j, "t.i8")->valuedouble == -5.0);
  assert_true(cJSON_GetObjectItem(j, "general.alignment")->valuedouble == ALIGN);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "t.bool")));
  assert_string_equal(cJSON_GetObjectItem(j, "general.architecture")->valuestring, "llama");
  assert_string_equal(cJSON_GetObjectItem(j, "tokenizer.ggml.tokens")->valuestring, "[string x 8]");
  assert_int_equal(cJSON_GetArraySize(j), 37); /* 17 model + 20 "t." keys */
  cJSON_Delete(j);
  qn_source_free(s);
  free(b.p);
}

static void test_open_truncated(void** state) {
  (void)state;
  wbuf b = build_full(NULL);
  size_t full = b.n;
  for (size_t n = 0; n < full; n += (n < 64 || n + 64 > full) ? 1 : 13) {
    b.n = n;
    qn_source* s;
    assert_int_equal(open_bytes(&b, &s), QN_EFORMAT);
  }
  free(b.p);
}

/* A model file: arch, tokenizer model, one hyper-parameter left out, extra tensors. */
static wbuf build_model(const char* arch, const char* tok_model, const char* skip, bool bias,
                        uint32_t q_type) {
  gg g;
  gg_init(&g, 32);
  add_model_kvs(&g, arch, tok_model, skip);
  const uint64_t emb[] = {DIM, NTOK}, q[] = {DIM, DIM}, qb[] = {DIM};
  gg_tensor(&g, "token_embd.weight", 2, emb, 0, DIM * NTOK * 4, 1);
  gg_tensor(&g, "output.weight", 2, emb, 0, DIM * NTOK * 4, 2);
  gg_tensor(&g, "blk.0.attn_q.weight", 2, q, q_type, q_type == 12 ? 144 * 4 : DIM * DIM * 4, 3);
  if (bias) gg_tensor(&g, "blk.0.attn_q.bias", 1, qb, 0, DIM * 4, 4);
  wbuf b = gg_finish(&g, NULL);
  gg_free(&g);
  return b;
}

static void test_open_variants(void** state) {
  (void)state;
  qn_source* s;
  /* qwen2 with biases and a byte-level BPE vocabulary */
  wbuf b = build_model("qwen2", "gpt2", "attention.head_count_kv", true, 0);
  assert_int_equal(open_bytes(&b, &s), QN_OK);
  assert_string_equal(s->hp.arch, "qwen2");
  assert_true(s->hp.qkv_bias);
  assert_false(s->hp.tied_embeddings);
  assert_int_equal(s->hp.n_kv_heads, 4); /* defaults to head_count */
  assert_int_equal(s->vocab.kind, QN_VOCAB_BPE);
  assert_null(s->vocab.scores);
  assert_int_equal(s->vocab.n_merges, 2);
  assert_string_equal(s->vocab.merges[0], "a b");
  assert_string_equal(s->vocab.merges[1],
                      "\xe2\x96\x81"
                      "a b");
  assert_non_null(s->vocab.pretok_regex);
  assert_false(s->vocab.add_bos);
  assert_false(s->vocab.add_space_prefix);
  assert_int_equal(s->vocab.bos_id, 1);
  assert_int_equal(s->vocab.unk_id, -1);
  assert_int_equal(s->vocab.attrs[3], QN_TOKEN_BYTE);
  qn_source_free(s);
  free(b.p);

  /* llama defaults: add_bos is written false in add_model_kvs, rope theta/eps given */
  b = build_model("mistral", "llama", NULL, false, 0);
  assert_int_equal(open_bytes(&b, &s), QN_OK);
  assert_string_equal(s->hp.arch, "mistral");
  assert_int_equal(s->hp.n_kv_heads, 2);
  qn_source_free(s);
  free(b.p);

  /* token ids: 0xFFFFFFFF means none; anything else out of range is an error */
  const uint32_t unk_ids[] = {UINT32_MAX, 100};
  for (int i = 0; i < 2; i++) {
    gg g;
    gg_init(&g, 32);
    add_model_kvs(&g, "llama", "llama", NULL);
    kv_u32(&g, "tokenizer.ggml.unknown_token_id", unk_ids[i]);
    const uint64_t emb[] = {DIM, NTOK};
    gg_tensor(&g, "token_embd.weight", 2, emb, 0, DIM * NTOK * 4, 1);
    b = gg_finish(&g, NULL);
    gg_free(&g);
    qn_status st = open_bytes(&b, &s);
    if (i == 0) {
      assert_int_equal(st, QN_OK);
      assert_int_equal(s->vocab.unk_id, -1);
      assert_true(s->hp.tied_embeddings);
      qn_source_free(s);
    } else {
      assert_int_equal(st, QN_EFORMAT);
      assert_non_null(strstr(qn_last_error(), "tokenizer.ggml.unknown_token_id"));
    }
    free(b.p);
  }

  const struct {
    const char* arch;
    const char* tok;
    const char* skip;
    uint32_t q_type;
    qn_status want;
    const char* msg;
  } bad[] = {
      {"gptneox", "llama", NULL, 0, QN_EUNSUPPORTED, "gptneox"},
      {"llama", "llama", "embedding_length", 0, QN_EFORMAT, "llama.embedding_length"},
      {"llama", "llama", "block_count", 0, QN_EFORMAT, "llama.block_count"},
      {"llama", "bert", NULL, 0, QN_EUNSUPPORTED, "bert"},
      {"llama", "llama", NULL, 12, QN_EUNSUPPORTED, "blk.0.attn_q.weight"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    b = build_model(bad[i].arch, bad[i].tok, bad[i].skip, false, bad[i].q_type);
    assert_int_equal(open_bytes(&b, &s), bad[i].want);
    assert_non_null(strstr(qn_last_error(), bad[i].msg));
    free(b.p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_values),
      cmocka_unit_test(test_kv_format),
      cmocka_unit_test(test_truncation_every_byte),
      cmocka_unit_test(test_bad_headers),
      cmocka_unit_test(test_bad_metadata),
      cmocka_unit_test(test_bad_tensors),
      cmocka_unit_test(test_open_llama),
      cmocka_unit_test(test_open_truncated),
      cmocka_unit_test(test_open_variants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
