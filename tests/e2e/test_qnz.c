/* test_qnz.c: the .qnz file end to end on stories260K, for every scheme of the table:
 *  - the file is strict safetensors as a plain JSON parser sees it: u64 length, a JSON
 *    object, every entry with dtype/shape/data_offsets whose size matches, offsets that tile
 *    the data section with no gap or overlap and end exactly at the end of the file, the
 *    data section and every real tensor 64-byte aligned, string-only __metadata__ with the
 *    quench.* keys and the source's SHA-256 (checked against OpenSSL here);
 *  - every weight read back from the .qnz is bit-identical to quantizing the source's f32
 *    weight with qn_quantize_matrix (payload, scales and zeros, and their dequantization),
 *    norms are copied exactly, and nothing else is stored;
 *  - inference on the .qnz agrees with an f32 .qnz holding dequant(quant(w)) written here
 *    ("fake quantization"), and the f32 .qnz gives the .bin model's logits exactly; greedy
 *    generation runs for every scheme and matches the README's text at 8 bits and above;
 *  - damaged files are refused with a message and never crash: truncations, a missing or
 *    misshapen scale tensor, an unknown or wrong scheme in quench.quant, flipped header bytes;
 *  - an output path that cannot be written fails with QN_EIO, an unknown scheme fails before
 *    any file is created, a cancelled run leaves the old target intact: never a temp file;
 *  - a .qnz can itself be re-quantized (its weights are read through their scales);
 *  - the packed schemes (w8a8-dynamic, w4a8): the file is strict safetensors with honest
 *    packed shapes (payload U8 [ceil(rows / 16), bytes per block], scales F32 [rows, 1] or
 *    F16 [ceil(rows / 16), 16 G]) and a quench.layout entry per weight; every stored weight is
 *    exactly qn_pack_i8(qn_quantize_matrix(w)); the statistics are the canonical result's and
 *    bpw counts the padding; reloaded, the model gives bit for bit the logits of the same
 *    model quantized in memory (packed, and canonical); a w8a8 file of the older canonical
 *    form still loads with the same logits; truncated, mis-shaped or mislabelled packed
 *    tensors are refused with a message naming the file or the tensor. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "calib/sensitivity.h"
#include "format/source.h"
#include "model/model.h"
#include "model/weights.h"
#include "quant/pack_i8.h"
#include "quant/quantize_matrix.h"

/* ---- fixtures ----------------------------------------------------------------------------- */

static const char* g_bin;      /* stories260K.bin */
static char g_dir[128];        /* scratch directory of this run */
static int g_n_schemes;        /* rows of the scheme table */
static char g_path[32][256];   /* [scheme] the .qnz quantized to it */
static const char* g_name[32]; /* [scheme] its name */
/* the schemes stored in packed layouts, and their files */
static const char* const k_packed[2] = {"w8a8-dynamic", "w4a8"};
static char g_packed[2][256];

/* The .qnz of scheme name (must exist). */
static const char* qnz_of(const char* name) {
  for (int i = 0; i < g_n_schemes; i++)
    if (strcmp(g_name[i], name) == 0) return g_path[i];
  fail_msg("no scheme '%s' in the table", name);
  return NULL;
}

static int setup(void** state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/qt_qnz_%d", (int)getpid());
  if (mkdir(g_dir, 0755) != 0) return -1;
  qn_scheme_info si;
  for (int k = 0; qn_scheme_at(k, &si); k++) {
    /* weight-only schemes: int8-activation ones compute differently (tests/e2e/test_w8a8.c) */
    if (qn_qtype_traits_of((qn_qtype)k)->act != QN_ACT_FLOAT) continue;
    int i = g_n_schemes;
    if (i >= 32) return -1;
    g_name[i] = si.name;
    snprintf(g_path[i], sizeof g_path[i], "%s/%s.qnz", g_dir, si.name);
    qn_quantize_opts o;
    memset(&o, 0, sizeof o);
    o.scheme = si.name;
    o.n_threads = 2;
    qn_status st = qn_quantize(g_bin, g_path[i], &o, NULL);
    if (st != QN_OK) {
      printf("quantize %s: %s\n", si.name, qn_last_error());
      return -1;
    }
    g_n_schemes = i + 1;
  }
  for (int k = 0; k < 2; k++) {
    snprintf(g_packed[k], sizeof g_packed[k], "%s/%s.qnz", g_dir, k_packed[k]);
    qn_quantize_opts o;
    memset(&o, 0, sizeof o);
    o.scheme = k_packed[k];
    o.n_threads = 2;
    if (qn_quantize(g_bin, g_packed[k], &o, NULL) != QN_OK) {
      printf("quantize %s: %s\n", k_packed[k], qn_last_error());
      return -1;
    }
  }
  return g_n_schemes >= 15 ? 0 : -1;
}

/* Removes every file of the scratch directory, then the directory. */
static int teardown(void** state) {
  (void)state;
  DIR* d = opendir(g_dir);
  if (d) {
    struct dirent* e;
    char p[512];
    while ((e = readdir(d)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        chmod(p, 0755);
        if (remove(p) != 0) { /* a directory with files of its own (ro/) */
          char q[1024];
          DIR* d2 = opendir(p);
          struct dirent* e2;
          while (d2 && (e2 = readdir(d2)))
            if (strcmp(e2->d_name, ".") && strcmp(e2->d_name, "..")) {
              snprintf(q, sizeof q, "%s/%s", p, e2->d_name);
              remove(q);
            }
          if (d2) closedir(d2);
          remove(p);
        }
      }
    closedir(d);
  }
  rmdir(g_dir);
  return 0;
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* ---- the model's weights ------------------------------------------------------------------- */

/* One 2-D weight: canonical name and logical shape. */
typedef struct wspec {
  char name[64];
  int64_t rows, cols;
} wspec;

/* The 2-D weights of a tied-embedding Llama with hyper-parameters hp (36 for stories260K). */
static int weight_specs(const qn_hparams* hp, wspec* out) {
  int n = 0;
  int64_t qd = (int64_t)hp->n_heads * hp->head_dim, kvd = (int64_t)hp->n_kv_heads * hp->head_dim;
  snprintf(out[n].name, sizeof out[n].name, "token_embd.weight");
  out[n].rows = hp->vocab_size;
  out[n++].cols = hp->dim;
  static const char* kinds[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                 "ffn_gate", "ffn_up", "ffn_down"};
  for (int l = 0; l < hp->n_layers; l++)
    for (int k = 0; k < 7; k++) {
      snprintf(out[n].name, sizeof out[n].name, "blk.%d.%s.weight", l, kinds[k]);
      out[n].rows = k == 0 ? qd : k < 3 ? kvd : k == 3 ? hp->dim : k < 6 ? hp->hidden_dim : hp->dim;
      out[n].cols = k < 3 ? hp->dim : k == 3 ? qd : k < 6 ? hp->dim : hp->hidden_dim;
      n++;
    }
  return n;
}

/* A weight quantized here with qn_quantize_matrix (plain round-to-nearest). */
typedef struct qlocal {
  qn_qtensor qt;    /* view of the buffers below */
  uint8_t* payload; /* rows x row_bytes */
  uint8_t* scales;  /* rows x n_groups of the scale dtype, or NULL */
  uint8_t* zeros;   /* same, asymmetric schemes only */
  size_t pbytes;    /* bytes of payload */
  size_t sbytes;    /* bytes of scales (and of zeros) */
} qlocal;

static void quant_local(qn_qtype t, const float* w, int64_t rows, int64_t cols, qlocal* q) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  memset(q, 0, sizeof *q);
  q->pbytes = (size_t)(qn_qtype_row_bytes(t, cols) * (uint64_t)rows);
  q->payload = xmalloc(q->pbytes);
  if (tr->group >= 0) {
    size_t es = tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
    q->sbytes = es * (size_t)qn_qtype_n_groups(t, cols) * (size_t)rows;
    q->scales = xmalloc(q->sbytes);
    if (tr->asymmetric) q->zeros = xmalloc(q->sbytes);
  }
  qn_status st = qn_quantize_matrix(t, w, rows, cols, NULL, q->payload, q->scales, q->zeros, NULL);
  assert_int_equal(st, QN_OK);
  q->qt = (qn_qtensor){t, rows, cols, q->payload, q->scales, q->zeros, 0, QN_LAYOUT_ROWS};
}

static void qlocal_free(qlocal* q) {
  free(q->payload);
  free(q->scales);
  free(q->zeros);
}

/* The f32 values of a source weight (malloc'ed rows x cols). */
static float* source_f32(const qn_source* s, const wspec* ws) {
  qn_qtensor w;
  assert_int_equal(qn_weights_bind_matrix(s, ws->name, ws->rows, ws->cols, &w), QN_OK);
  float* f = xmalloc(sizeof(float) * (size_t)(ws->rows * ws->cols));
  assert_int_equal(qn_qtensor_dequant(&w, f), QN_OK);
  return f;
}

/* ---- (a) the header as a plain safetensors reader sees it ----------------------------------- */

static uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* Element size of a safetensors dtype name, 0 if not one Quench writes. */
static int dtype_size(const char* d) {
  if (!strcmp(d, "F32")) return 4;
  if (!strcmp(d, "F16") || !strcmp(d, "BF16")) return 2;
  if (!strcmp(d, "U8")) return 1;
  return 0;
}

/* One header entry: where its bytes lie in the data section. */
typedef struct span {
  const char* name;
  uint64_t b, e;
} span;

static int cmp_span(const void* a, const void* b) {
  const span *x = a, *y = b;
  return (x->b > y->b) - (x->b < y->b);
}

static void sha256_hex_file(const char* path, char hex[65]) {
  size_t n = 0;
  char* bytes = qt_read_file(path, &n);
  assert_non_null(bytes);
  unsigned char md[32];
  unsigned int mdlen = 0;
  assert_true(EVP_Digest(bytes, n, md, &mdlen, EVP_sha256(), NULL));
  assert_int_equal(mdlen, 32);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  free(bytes);
}

/* Parses metadata value key (a JSON text) into a tree. */
static cJSON* meta_json(const cJSON* md, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(md, key);
  if (!cJSON_IsString(v)) fail_msg("__metadata__ lacks string '%s'", key);
  cJSON* j = cJSON_Parse(v->valuestring);
  if (!j) fail_msg("__metadata__ '%s' is not JSON", key);
  return j;
}

static void check_metadata(const cJSON* md, const char* scheme, const char* src_sha) {
  assert_true(cJSON_IsObject(md));
  for (const cJSON* kv = md->child; kv; kv = kv->next)
    if (!cJSON_IsString(kv)) fail_msg("%s: __metadata__ '%s' is not a string", scheme, kv->string);
  /* hyper-parameters: the README's facts */
  cJSON* hp = meta_json(md, "quench.hparams");
  assert_int_equal(cJSON_GetObjectItem(hp, "dim")->valueint, 64);
  assert_int_equal(cJSON_GetObjectItem(hp, "hidden_dim")->valueint, 172);
  assert_int_equal(cJSON_GetObjectItem(hp, "n_layers")->valueint, 5);
  assert_int_equal(cJSON_GetObjectItem(hp, "n_heads")->valueint, 8);
  assert_int_equal(cJSON_GetObjectItem(hp, "n_kv_heads")->valueint, 4);
  assert_int_equal(cJSON_GetObjectItem(hp, "vocab_size")->valueint, 512);
  assert_int_equal(cJSON_GetObjectItem(hp, "max_seq_len")->valueint, 512);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(hp, "tied_embeddings")));
  cJSON_Delete(hp);
  cJSON* tok = meta_json(md, "quench.tokenizer");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(tok, "tokens")), 512);
  cJSON_Delete(tok);
  /* source checksum */
  cJSON* src = meta_json(md, "quench.source");
  const cJSON* sha = cJSON_GetObjectItem(cJSON_GetObjectItem(src, "sha256"), "stories260K.bin");
  assert_true(cJSON_IsString(sha));
  assert_int_equal(strlen(sha->valuestring), 64);
  assert_int_equal(strspn(sha->valuestring, "0123456789abcdef"), 64);
  assert_string_equal(sha->valuestring, src_sha);
  cJSON_Delete(src);
  /* scheme map and statistics: every 2-D weight, none of the vectors */
  const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)qn_qtype_from_name(scheme));
  cJSON* q = meta_json(md, "quench.quant");
  cJSON* stats = meta_json(md, "quench.stats");
  assert_int_equal(cJSON_GetArraySize(q), tr->group >= 0 ? 36 : 0);
  assert_int_equal(cJSON_GetArraySize(stats), 36);
  for (const cJSON* e = q->child; e; e = e->next) assert_string_equal(e->valuestring, scheme);
  const cJSON* st0 = cJSON_GetObjectItem(stats, "blk.0.attn_q.weight");
  assert_non_null(st0);
  assert_string_equal(cJSON_GetObjectItem(st0, "scheme")->valuestring, scheme);
  cJSON_Delete(q);
  cJSON_Delete(stats);
}

static void check_header(const char* path, const char* scheme, const char* src_sha) {
  size_t size = 0;
  uint8_t* f = (uint8_t*)qt_read_file(path, &size);
  assert_non_null(f);
  assert_true(size >= 8);
  uint64_t n = le64(f);
  assert_true(n >= 2 && n <= size - 8);
  assert_int_equal((8 + n) % 64, 0);
  const char* h = (const char*)f + 8;
  const char* end = NULL;
  cJSON* root = cJSON_ParseWithLengthOpts(h, (size_t)n, &end, 0);
  assert_non_null(root);
  assert_true(cJSON_IsObject(root));
  for (const char* p = end; p < h + n; p++) assert_int_equal(*p, ' ');
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  span* sp = xmalloc(sizeof(span) * (size_t)cJSON_GetArraySize(root));
  int ns = 0, n_meta = 0;
  for (const cJSON* e = root->child; e; e = e->next) {
    if (!strcmp(e->string, "__metadata__")) {
      check_metadata(e, scheme, src_sha);
      n_meta++;
      continue;
    }
    const cJSON* dt = cJSON_GetObjectItem(e, "dtype");
    const cJSON* sh = cJSON_GetObjectItem(e, "shape");
    const cJSON* of = cJSON_GetObjectItem(e, "data_offsets");
    assert_true(cJSON_IsString(dt) && cJSON_IsArray(sh) && cJSON_IsArray(of));
    assert_int_equal(cJSON_GetArraySize(of), 2);
    int es = dtype_size(dt->valuestring);
    if (!es) fail_msg("%s: tensor '%s' has dtype %s", scheme, e->string, dt->valuestring);
    double nel = 1;
    for (const cJSON* d = sh->child; d; d = d->next) {
      assert_true(cJSON_IsNumber(d) && d->valuedouble >= 0);
      nel *= d->valuedouble;
    }
    double b = of->child->valuedouble, x = of->child->next->valuedouble;
    assert_true(b >= 0 && x >= b);
    if (nel * es != x - b)
      fail_msg("%s: '%s' holds %.0f bytes, shape x dtype gives %.0f", scheme, e->string, x - b,
               nel * es);
    bool pad = strncmp(e->string, "__pad__.", 8) == 0;
    if (pad) {
      assert_string_equal(dt->valuestring, "U8");
      assert_true(x - b < 64);
      for (uint64_t k = (uint64_t)b; k < (uint64_t)x; k++) assert_int_equal(f[data_start + k], 0);
    } else if ((uint64_t)b % 64 != 0) {
      fail_msg("%s: tensor '%s' starts at %.0f, not 64-byte aligned", scheme, e->string, b);
    }
    sp[ns++] = (span){e->string, (uint64_t)b, (uint64_t)x};
  }
  assert_int_equal(n_meta, 1);
  qsort(sp, (size_t)ns, sizeof *sp, cmp_span);
  uint64_t at = 0;
  for (int i = 0; i < ns; i++) {
    if (sp[i].b != at)
      fail_msg("%s: '%s' starts at %llu, previous tensor ends at %llu", scheme, sp[i].name,
               (unsigned long long)sp[i].b, (unsigned long long)at);
    at = sp[i].e;
  }
  assert_int_equal(at, data_size);
  /* tensors: 36 weights (+ companions) and 11 vectors; tied head: no output.weight */
  const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)qn_qtype_from_name(scheme));
  int real = 0;
  for (int i = 0; i < ns; i++) real += strncmp(sp[i].name, "__pad__.", 8) != 0;
  assert_int_equal(real, 36 * (tr->group < 0 ? 1 : tr->asymmetric ? 3 : 2) + 11);
  assert_null(cJSON_GetObjectItem(root, "output.weight"));
  free(sp);
  cJSON_Delete(root);
  free(f);
}

static void test_header_is_strict_safetensors(void** state) {
  (void)state;
  char sha[65];
  sha256_hex_file(g_bin, sha);
  for (int i = 0; i < g_n_schemes; i++) check_header(g_path[i], g_name[i], sha);
}

/* ---- (c) the stored weights are exactly quant(source) ------------------------------------- */

static void check_weights(const char* scheme, const char* path, const qn_source* src) {
  qn_qtype t = (qn_qtype)qn_qtype_from_name(scheme);
  qn_source* q = NULL;
  if (qn_source_open(path, NULL, &q) != QN_OK) fail_msg("%s: %s", path, qn_last_error());
  wspec ws[64];
  int nw = weight_specs(&src->hp, ws);
  assert_int_equal(nw, 36);
  for (int i = 0; i < nw; i++) {
    float* w = source_f32(src, &ws[i]);
    qlocal ql;
    quant_local(t, w, ws[i].rows, ws[i].cols, &ql);
    qn_qtensor b;
    if (qn_weights_bind_matrix(q, ws[i].name, ws[i].rows, ws[i].cols, &b) != QN_OK)
      fail_msg("%s: %s", scheme, qn_last_error());
    assert_int_equal(b.type, t);
    /* int4-gN is stored packed (docs/FORMAT.md, "Packed layouts"): pack(quant(w)) */
    const uint8_t *want_p = ql.payload, *want_s = ql.scales;
    size_t pbytes = ql.pbytes, sbytes = ql.sbytes;
    qn_qtensor P;
    void *pp = NULL, *ps = NULL;
    assert_int_equal(b.layout, qn_qtype_packed_layout(t));
    if (b.layout != QN_LAYOUT_ROWS) {
      assert_int_equal(qn_qtensor_pack(&ql.qt, &P, &pp, &ps), QN_OK);
      want_p = pp;
      want_s = ps;
      pbytes = (size_t)qn_packed_payload_bytes(t, ws[i].rows, ws[i].cols);
      sbytes = (size_t)qn_packed_scale_bytes(t, ws[i].rows, ws[i].cols);
    }
    if (memcmp(b.data, want_p, pbytes) != 0)
      fail_msg("%s: payload of '%s' differs from qn_quantize_matrix", scheme, ws[i].name);
    if (want_s && memcmp(b.scales, want_s, sbytes) != 0)
      fail_msg("%s: scales of '%s' differ", scheme, ws[i].name);
    free(pp);
    free(ps);
    if (ql.zeros && memcmp(b.zeros, ql.zeros, ql.sbytes) != 0)
      fail_msg("%s: zeros of '%s' differ", scheme, ws[i].name);
    assert_true(!ql.scales == !b.scales && !ql.zeros == !b.zeros);
    size_t nel = (size_t)(ws[i].rows * ws[i].cols);
    float* d1 = xmalloc(sizeof(float) * nel);
    float* d2 = xmalloc(sizeof(float) * nel);
    assert_int_equal(qn_qtensor_dequant(&b, d1), QN_OK);
    assert_int_equal(qn_qtensor_dequant(&ql.qt, d2), QN_OK);
    if (memcmp(d1, d2, sizeof(float) * nel) != 0)
      fail_msg("%s: dequantized '%s' differs", scheme, ws[i].name);
    /* and it is an approximation of the source, not something else of the right size */
    double err = 0, sig = 0;
    for (size_t k = 0; k < nel; k++) {
      err += (d1[k] - w[k]) * (d1[k] - w[k]);
      sig += (double)w[k] * w[k];
    }
    if (!(err <= 0.05 * sig))
      fail_msg("%s: '%s' is far from the source (err %.3g, signal %.3g)", scheme, ws[i].name, err,
               sig);
    free(d1);
    free(d2);
    free(w);
    qlocal_free(&ql);
  }
  /* vectors: copied exactly as f32 */
  for (int i = 0; i < src->n_tensors; i++) {
    const qn_tensor* st = &src->tensors[i];
    if (st->ndim != 1) continue;
    const qn_tensor* qt = qn_source_find(q, st->name);
    if (!qt) fail_msg("%s: vector '%s' is missing", scheme, st->name);
    assert_int_equal(qt->dtype, QN_DTYPE_F32);
    assert_int_equal(qt->nbytes, st->nbytes);
    assert_memory_equal(qt->data, st->data, st->nbytes);
  }
  qn_source_free(q);
}

static void test_weights_bit_exact(void** state) {
  (void)state;
  qn_source* src = NULL;
  assert_int_equal(qn_source_open(g_bin, NULL, &src), QN_OK);
  for (int i = 0; i < g_n_schemes; i++) check_weights(g_name[i], g_path[i], src);
  qn_source_free(src);
}

/* ---- inference -------------------------------------------------------------------------- */

/* Writes a copy of the f32 .qnz whose weights are dequant(quant_t(w)); returns its path. */
static const char* write_fake_quant(qn_qtype t, const qn_source* src) {
  size_t size = 0;
  uint8_t* f = (uint8_t*)qt_read_file(qnz_of("f32"), &size);
  assert_non_null(f);
  uint64_t n = le64(f);
  cJSON* root = cJSON_ParseWithLength((const char*)f + 8, (size_t)n);
  assert_non_null(root);
  wspec ws[64];
  int nw = weight_specs(&src->hp, ws);
  for (int i = 0; i < nw; i++) {
    const cJSON* e = cJSON_GetObjectItem(root, ws[i].name);
    assert_non_null(e);
    const cJSON* of = cJSON_GetObjectItem(e, "data_offsets");
    uint64_t b = (uint64_t)of->child->valuedouble, x = (uint64_t)of->child->next->valuedouble;
    size_t nel = (size_t)(ws[i].rows * ws[i].cols);
    assert_int_equal(x - b, 4 * nel);
    float* w = source_f32(src, &ws[i]);
    qlocal ql;
    quant_local(t, w, ws[i].rows, ws[i].cols, &ql);
    assert_int_equal(qn_qtensor_dequant(&ql.qt, w), QN_OK);
    memcpy(f + 8 + n + b, w, 4 * nel);
    qlocal_free(&ql);
    free(w);
  }
  cJSON_Delete(root);
  const char* p = qt_write_temp(f, size, ".qnz");
  assert_non_null(p);
  free(f);
  return p;
}

/* Logits of every position of tokens (malloc'ed n x vocab). */
static float* all_logits(const char* path, const int* tokens, int n) {
  qn_model_opts mo = {NULL, 2};
  qn_model* m = NULL;
  if (qn_model_open(path, &mo, &m) != QN_OK) fail_msg("%s: %s", path, qn_last_error());
  qn_ctx* c = NULL;
  assert_int_equal(qn_ctx_new(m, n, 1, &c), QN_OK);
  int* pos = xmalloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) pos[i] = i;
  float* lg = xmalloc(sizeof(float) * (size_t)n * 512);
  if (qn_ctx_forward(c, tokens, pos, NULL, n, lg, true) != QN_OK)
    fail_msg("%s: %s", path, qn_last_error());
  free(pos);
  qn_ctx_free(c);
  qn_model_free(m);
  return lg;
}

static void test_inference_matches_fake_quant(void** state) {
  (void)state;
  qn_source* src = NULL;
  assert_int_equal(qn_source_open(g_bin, NULL, &src), QN_OK);
  qn_model_opts mo = {NULL, 1};
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_bin, &mo, &m), QN_OK);
  const char* text =
      "Once upon a time, there was a little dog named Max. Max liked to run in the park with "
      "his friend, a big cat. One day, they found a shiny stone under a tree.";
  int* ids = NULL;
  int n = 0;
  assert_int_equal(qn_tokenize(m, text, strlen(text), true, &ids, &n), QN_OK);
  qn_model_free(m);
  assert_true(n > 30);
  float* ref = all_logits(g_bin, ids, n);
  const size_t nl = (size_t)n * 512;
  for (int i = 0; i < g_n_schemes; i++) {
    qn_qtype t = (qn_qtype)qn_qtype_from_name(g_name[i]);
    float* got = all_logits(g_path[i], ids, n);
    if (t == QN_QTYPE_F32) { /* same weights, same kernels: the same numbers */
      for (size_t k = 0; k < nl; k++)
        if (got[k] != ref[k]) fail_msg("f32 .qnz logit %zu: %g vs %g", k, got[k], ref[k]);
      free(got);
      continue;
    }
    const char* fake = write_fake_quant(t, src);
    float* want = all_logits(fake, ids, n);
    double maxd = 0, maxa = 0, maxq = 0;
    for (size_t k = 0; k < nl; k++) {
      maxd = fmax(maxd, fabs((double)got[k] - want[k]));
      maxa = fmax(maxa, fabs((double)want[k]));
      maxq = fmax(maxq, fabs((double)want[k] - ref[k]));
    }
    printf("  %-12s max |logit - fake-quant logit| %.3g (|logit| <= %.1f; vs f32 %.3g)\n",
           g_name[i], maxd, maxa, maxq);
    /* int4-gN products on x86 round the activations to 16 bits (kernels/x86/fx_q4.h, error
     * <= 2^-15 of each token's largest |x|): ~1e-4 of the logits here, where a mis-decoded
     * weight moves them by ~the quantization error itself (4.5 for int4-g32) */
    bool x16 = t == QN_QTYPE_Q4_G32 || t == QN_QTYPE_Q4_G64 || t == QN_QTYPE_Q4_G128;
    if (!(maxd <= (x16 ? 1e-3 : 1e-4) * (1 + maxa)))
      fail_msg("%s: logits differ from the fake-quantized f32 model by %g", g_name[i], maxd);
    unlink(fake);
    free(want);
    free(got);
  }
  free(ref);
  free(ids);
  qn_source_free(src);
}

/* Collects generated text. */
typedef struct textbuf {
  char s[4096];
  size_t n;
} textbuf;

static int collect(void* user, const char* piece, size_t len) {
  textbuf* b = user;
  if (b->n + len < sizeof b->s) {
    memcpy(b->s + b->n, piece, len);
    b->n += len;
    b->s[b->n] = 0;
  }
  return 0;
}

static void test_generate_greedy(void** state) {
  (void)state;
  const char* readme =
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
      "park.";
  qn_sampler_opts so;
  qn_sampler_opts_default(&so);
  so.temperature = 0;
  for (int i = 0; i < g_n_schemes; i++) {
    qn_model_opts mo = {NULL, 1};
    qn_model* m = NULL;
    if (qn_model_open(g_path[i], &mo, &m) != QN_OK) fail_msg("%s: %s", g_name[i], qn_last_error());
    qn_model_info in;
    qn_model_get_info(m, &in);
    assert_string_equal(in.format, "qnz");
    assert_int_equal(in.vocab_size, 512);
    textbuf b = {{0}, 0};
    qn_gen_stats gs;
    if (qn_generate(m, "", 40, &so, collect, &b, &gs) != QN_OK)
      fail_msg("%s: %s", g_name[i], qn_last_error());
    qn_model_free(m);
    printf("  %-12s %.60s...\n", g_name[i], b.s);
    assert_int_equal(gs.n_gen, 40);
    assert_true(b.n > 20);
    const qn_qtype_traits* tr = qn_qtype_traits_of((qn_qtype)qn_qtype_from_name(g_name[i]));
    bool precise = tr->payload_bits >= 8 && strncmp(g_name[i], "fp8", 3) != 0;
    if (precise && strncmp(b.s, readme, strlen(readme)) != 0)
      fail_msg("%s: greedy text '%s' is not the README's", g_name[i], b.s);
  }
}

/* ---- (d) damaged files -------------------------------------------------------------------- */

/* Opens path as a model; on success also tokenizes, decodes every id and runs 4 tokens, so an
 * accepted file is exercised. Returns the status. */
static qn_status open_and_use(const char* path) {
  qn_model_opts mo = {NULL, 1};
  qn_model* m = NULL;
  qn_status st = qn_model_open(path, &mo, &m);
  if (st != QN_OK) {
    assert_null(m);
    assert_true(strlen(qn_last_error()) > 0);
    return st;
  }
  qn_model_info in;
  qn_model_get_info(m, &in);
  int* ids = NULL;
  int n = 0;
  if (qn_tokenize(m, "Once upon a time", 16, true, &ids, &n) == QN_OK) free(ids);
  int all[600];
  for (int i = 0; i < in.vocab_size && i < 600; i++) all[i] = i;
  char* txt = NULL;
  size_t len = 0;
  if (qn_detokenize(m, all, in.vocab_size < 600 ? in.vocab_size : 600, &txt, &len) == QN_OK)
    free(txt);
  qn_ctx* c = NULL;
  if (qn_ctx_new(m, 8, 1, &c) == QN_OK) {
    int toks[4] = {1, 2, 3, 4}, pos[4] = {0, 1, 2, 3};
    float* lg = xmalloc(sizeof(float) * 4 * (size_t)in.vocab_size);
    qn_ctx_forward(c, toks, pos, NULL, 4, lg, true);
    free(lg);
    qn_ctx_free(c);
  }
  qn_model_free(m);
  return QN_OK;
}

/* Expects path to be refused with a message containing want (NULL: any message). */
static void expect_rejected(const char* path, const char* want, const char* what) {
  qn_status st = open_and_use(path);
  if (st == QN_OK) fail_msg("%s: the damaged file was accepted", what);
  if (want && !strstr(qn_last_error(), want))
    fail_msg("%s: message '%s' does not name '%s'", what, qn_last_error(), want);
}

static void test_truncated_rejected(void** state) {
  (void)state;
  size_t size = 0;
  char* f = qt_read_file(qnz_of("int4a-g32"), &size);
  assert_non_null(f);
  char path[300];
  snprintf(path, sizeof path, "%s/trunc.qnz", g_dir);
  FILE* o = fopen(path, "wb");
  assert_non_null(o);
  assert_int_equal(fwrite(f, 1, size, o), size);
  fclose(o);
  assert_int_equal(open_and_use(path), QN_OK); /* the intact copy works */
  int n = 0;
  /* shrink the copy step by step: every 997th length from the end down, then the first 200 */
  for (size_t k = size - 1;; k--) {
    if (k % 997 == 0 || k < 200) {
      assert_int_equal(truncate(path, (off_t)k), 0);
      char what[64];
      snprintf(what, sizeof what, "truncated to %zu of %zu bytes", k, size);
      expect_rejected(path, "trunc.qnz", what);
      n++;
    }
    if (k == 0) break;
  }
  printf("  %d truncations of a %zu-byte file rejected\n", n, size);
  unlink(path);
  free(f);
}

/* A damaged copy of a .qnz: the header is parsed, edited by the caller, written back in the
 * same space (padded with spaces) in front of the unchanged data. */
typedef struct edit {
  uint8_t* bytes; /* the original file */
  size_t size;
  uint64_t n;  /* header length */
  cJSON* root; /* the header, to edit */
  cJSON* meta; /* its __metadata__ */
} edit;

static void edit_begin(edit* e, const char* path) {
  e->bytes = (uint8_t*)qt_read_file(path, &e->size);
  assert_non_null(e->bytes);
  e->n = le64(e->bytes);
  e->root = cJSON_ParseWithLength((const char*)e->bytes + 8, (size_t)e->n);
  assert_non_null(e->root);
  e->meta = cJSON_GetObjectItem(e->root, "__metadata__");
}

/* Writes the edited file; frees e. */
static const char* edit_write(edit* e) {
  char* h = cJSON_PrintUnformatted(e->root);
  assert_non_null(h);
  size_t hl = strlen(h);
  assert_true(hl <= e->n);
  uint8_t* out = xmalloc(e->size);
  memcpy(out, e->bytes, e->size);
  memcpy(out + 8, h, hl);
  memset(out + 8 + hl, ' ', e->n - hl);
  const char* p = qt_write_temp(out, e->size, ".qnz");
  assert_non_null(p);
  free(out);
  free(h);
  free(e->bytes);
  cJSON_Delete(e->root);
  return p;
}

/* Replaces metadata key's JSON text by the result of cJSON j (deleted). */
static void set_meta_json(edit* e, const char* key, cJSON* j) {
  char* s = cJSON_PrintUnformatted(j);
  cJSON_ReplaceItemInObject(e->meta, key, cJSON_CreateString(s));
  free(s);
  cJSON_Delete(j);
}

static void test_header_edits_rejected(void** state) {
  (void)state;
  const char* src = qnz_of("int4a-g32");
  edit e;
  const char* p;

  /* a scale tensor missing */
  edit_begin(&e, src);
  cJSON_DeleteItemFromObject(e.root, "blk.0.attn_q.weight.scales");
  p = edit_write(&e);
  expect_rejected(p, "blk.0.attn_q.weight.scales", "missing scales");
  unlink(p);

  /* a zero-point tensor missing */
  edit_begin(&e, src);
  cJSON_DeleteItemFromObject(e.root, "blk.4.ffn_down.weight.zeros");
  p = edit_write(&e);
  expect_rejected(p, "blk.4.ffn_down.weight.zeros", "missing zeros");
  unlink(p);

  /* scales of the wrong shape, same byte size: [rows, groups] -> [groups, rows] */
  edit_begin(&e, src);
  cJSON* sh =
      cJSON_GetObjectItem(cJSON_GetObjectItem(e.root, "blk.2.ffn_up.weight.scales"), "shape");
  double r = cJSON_GetArrayItem(sh, 0)->valuedouble, g = cJSON_GetArrayItem(sh, 1)->valuedouble;
  assert_true(r != g);
  cJSON_SetNumberValue(cJSON_GetArrayItem(sh, 0), g);
  cJSON_SetNumberValue(cJSON_GetArrayItem(sh, 1), r);
  p = edit_write(&e);
  expect_rejected(p, "blk.2.ffn_up.weight.scales", "transposed scales");
  unlink(p);

  /* scales flattened to one dimension */
  edit_begin(&e, src);
  sh = cJSON_GetObjectItem(cJSON_GetObjectItem(e.root, "token_embd.weight.scales"), "shape");
  double total = cJSON_GetArrayItem(sh, 0)->valuedouble * cJSON_GetArrayItem(sh, 1)->valuedouble;
  cJSON_DeleteItemFromArray(sh, 1);
  cJSON_SetNumberValue(cJSON_GetArrayItem(sh, 0), total);
  p = edit_write(&e);
  expect_rejected(p, "token_embd.weight.scales", "1-D scales");
  unlink(p);

  /* scales of the wrong dtype (same size) */
  edit_begin(&e, src);
  cJSON* dt =
      cJSON_GetObjectItem(cJSON_GetObjectItem(e.root, "blk.1.attn_v.weight.scales"), "dtype");
  cJSON_SetValuestring(dt, "BF16");
  p = edit_write(&e);
  expect_rejected(p, "blk.1.attn_v.weight.scales", "bf16 scales");
  unlink(p);

  /* quench.quant names an unknown scheme */
  edit_begin(&e, src);
  cJSON* q = meta_json(e.meta, "quench.quant");
  cJSON_ReplaceItemInObject(q, "blk.3.attn_k.weight", cJSON_CreateString("int3-g7"));
  set_meta_json(&e, "quench.quant", q);
  p = edit_write(&e);
  expect_rejected(p, "int3-g7", "unknown scheme");
  unlink(p);

  /* quench.quant names a known scheme that does not fit the stored payload */
  edit_begin(&e, src);
  q = meta_json(e.meta, "quench.quant");
  cJSON_ReplaceItemInObject(q, "blk.3.attn_k.weight", cJSON_CreateString("int8-g32"));
  set_meta_json(&e, "quench.quant", q);
  p = edit_write(&e);
  expect_rejected(p, "blk.3.attn_k.weight", "wrong scheme");
  unlink(p);

  /* quench.quant names a tensor that is not there */
  edit_begin(&e, src);
  q = meta_json(e.meta, "quench.quant");
  cJSON_AddStringToObject(q, "blk.9.attn_q.weight", "int4a-g32");
  set_meta_json(&e, "quench.quant", q);
  p = edit_write(&e);
  expect_rejected(p, "blk.9.attn_q.weight", "quant entry without tensor");
  unlink(p);

  /* a quantized weight missing from quench.quant: its U8 payload is not a weight */
  edit_begin(&e, src);
  q = meta_json(e.meta, "quench.quant");
  cJSON_DeleteItemFromObject(q, "blk.0.ffn_gate.weight");
  set_meta_json(&e, "quench.quant", q);
  p = edit_write(&e);
  expect_rejected(p, "blk.0.ffn_gate.weight", "payload without scheme");
  unlink(p);

  /* metadata keys missing or not JSON */
  static const char* keys[3] = {"quench.hparams", "quench.tokenizer", "quench.quant"};
  for (int k = 0; k < 3; k++) {
    edit_begin(&e, src);
    cJSON_DeleteItemFromObject(e.meta, keys[k]);
    p = edit_write(&e);
    expect_rejected(p, keys[k], "metadata key missing");
    unlink(p);
    edit_begin(&e, src);
    cJSON_ReplaceItemInObject(e.meta, keys[k], cJSON_CreateString("{not json"));
    p = edit_write(&e);
    expect_rejected(p, keys[k], "metadata key not JSON");
    unlink(p);
  }

  /* hyper-parameters that do not match the tensors */
  edit_begin(&e, src);
  cJSON* hp = meta_json(e.meta, "quench.hparams");
  cJSON_SetNumberValue(cJSON_GetObjectItem(hp, "hidden_dim"), 176);
  set_meta_json(&e, "quench.hparams", hp);
  p = edit_write(&e);
  expect_rejected(p, "ffn_gate", "hidden_dim changed");
  unlink(p);

  /* no __metadata__ at all */
  edit_begin(&e, src);
  cJSON_DeleteItemFromObject(e.root, "__metadata__");
  p = edit_write(&e);
  expect_rejected(p, "__metadata__", "no metadata");
  unlink(p);
}

static void test_flipped_header_bytes(void** state) {
  (void)state;
  size_t size = 0;
  uint8_t* f = (uint8_t*)qt_read_file(qnz_of("int4a-g32"), &size);
  assert_non_null(f);
  uint64_t n = le64(f);
  uint64_t used = 8;
  while (used < 8 + n && f[used] != ' ') used++; /* the JSON, without the space padding */
  char path[300];
  snprintf(path, sizeof path, "%s/flip.qnz", g_dir);
  int tried = 0, refused = 0;
  for (uint64_t at = 0; at < used + 16; at += at < 8 ? 1 : 7) {
    for (int v = 0; v < 2; v++) {
      uint8_t mask = v ? 0xff : (uint8_t)(1u << (at % 7));
      f[at] ^= mask;
      FILE* o = fopen(path, "wb");
      assert_non_null(o);
      assert_int_equal(fwrite(f, 1, size, o), size);
      fclose(o);
      f[at] ^= mask;
      tried++;
      refused += open_and_use(path) != QN_OK;
    }
  }
  printf("  %d header corruptions: %d refused with a message, %d still loadable and run\n", tried,
         refused, tried - refused);
  assert_true(refused > tried / 3);
  unlink(path);
  free(f);
}

/* ---- (e) output paths ---------------------------------------------------------------------- */

/* Number of entries of dir whose name contains ".tmp." (and all entries in *n_all). */
static int count_tmp(const char* dir, int* n_all) {
  DIR* d = opendir(dir);
  int n = 0, all = 0;
  if (!d) {
    if (n_all) *n_all = 0;
    return 0;
  }
  struct dirent* e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      all++;
      n += strstr(e->d_name, ".tmp.") != NULL;
    }
  closedir(d);
  if (n_all) *n_all = all;
  return n;
}

static qn_status quantize_to(const char* out, const char* scheme) {
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = scheme;
  o.n_threads = 1;
  return qn_quantize(g_bin, out, &o, NULL);
}

static void test_unwritable_outputs(void** state) {
  (void)state;
  qn_status st = quantize_to("/nonexistent-dir/x.qnz", "int8-channel");
  assert_int_equal(st, QN_EIO);
  assert_non_null(strstr(qn_last_error(), "/nonexistent-dir/x.qnz"));
  printf("  %s\n", qn_last_error());

  /* parent is a regular file */
  char sub[160], out[512];
  snprintf(sub, sizeof sub, "%s/sub", g_dir);
  mkdir(sub, 0755);
  char file[256];
  snprintf(file, sizeof file, "%s/regular", sub);
  FILE* fp = fopen(file, "w");
  assert_non_null(fp);
  fclose(fp);
  snprintf(out, sizeof out, "%s/x.qnz", file);
  st = quantize_to(out, "int4-g32");
  assert_int_equal(st, QN_EIO);
  assert_non_null(strstr(qn_last_error(), "regular/x.qnz"));
  int all = 0;
  assert_int_equal(count_tmp(sub, &all), 0);
  assert_int_equal(all, 1);

  /* a read-only directory (meaningless for root, who may write anyway) */
  char ro[160];
  snprintf(ro, sizeof ro, "%s/ro", g_dir);
  assert_int_equal(mkdir(ro, 0555), 0);
  if (geteuid() != 0) {
    snprintf(out, sizeof out, "%s/x.qnz", ro);
    st = quantize_to(out, "int4-g32");
    assert_int_equal(st, QN_EIO);
    assert_int_equal(count_tmp(ro, &all), 0);
    assert_int_equal(all, 0);
  } else {
    printf("  running as root: the read-only directory case is covered by the regular-file one\n");
  }
  /* the target is a directory: the temp file is written, then rename fails */
  char isdir[200];
  snprintf(isdir, sizeof isdir, "%s/target.qnz", sub);
  assert_int_equal(mkdir(isdir, 0755), 0);
  st = quantize_to(isdir, "int8-g64");
  assert_int_equal(st, QN_EIO);
  assert_int_equal(count_tmp(sub, &all), 0);
  assert_int_equal(all, 2);
  rmdir(isdir);
  unlink(file);

  /* a long (valid) path: "sub/././.../long.qnz", 1,030 bytes, longer than any fixed buffer
   * of 1,024; it must be written exactly there or refused, never cut to another name */
  char longp[1100];
  int o = snprintf(longp, sizeof longp, "%s/", sub);
  while (o < 1030 - 8) o += snprintf(longp + o, sizeof longp - (size_t)o, "./");
  snprintf(longp + o, sizeof longp - (size_t)o, "long.qnz");
  st = quantize_to(longp, "int8-channel");
  count_tmp(sub, &all);
  char plain[256];
  snprintf(plain, sizeof plain, "%s/long.qnz", sub);
  if (st == QN_OK) {
    assert_int_equal(all, 1);
    assert_true(access(plain, F_OK) == 0);
    unlink(plain);
  } else {
    printf("  %zu-byte path refused: %.80s...\n", strlen(longp), qn_last_error());
    assert_int_equal(all, 0);
  }
  rmdir(sub);
  assert_int_equal(count_tmp(g_dir, NULL), 0);
}

static void test_unknown_scheme_creates_nothing(void** state) {
  (void)state;
  char dir[160], out[256];
  snprintf(dir, sizeof dir, "%s/empty", g_dir);
  assert_int_equal(mkdir(dir, 0755), 0);
  snprintf(out, sizeof out, "%s/x.qnz", dir);
  int all = 0;

  assert_int_equal(quantize_to(out, "int2-g32"), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "int2-g32"));
  count_tmp(dir, &all);
  assert_int_equal(all, 0);

  /* in a --rule */
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int8-channel";
  const char* rules[2] = {"output.weight=int8-channel", "blk.*=int5"};
  o.rules = rules;
  o.n_rules = 2;
  assert_int_equal(qn_quantize(g_bin, out, &o, NULL), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "int5"));
  count_tmp(dir, &all);
  assert_int_equal(all, 0);

  /* in a recipe file: the message names file:line */
  const char* recipe = "# keep the head precise\ndefault int4-g32\n\ntoken_embd.weight int9\n";
  const char* rp = qt_write_temp(recipe, strlen(recipe), ".recipe");
  o.n_rules = 0;
  o.recipe_path = rp;
  assert_int_equal(qn_quantize(g_bin, out, &o, NULL), QN_EINVAL);
  char want[300];
  snprintf(want, sizeof want, "%s:4", rp);
  assert_non_null(strstr(qn_last_error(), want));
  assert_non_null(strstr(qn_last_error(), "int9"));
  unlink(rp);
  count_tmp(dir, &all);
  assert_int_equal(all, 0);

  /* a missing source model */
  o.recipe_path = NULL;
  assert_int_equal(qn_quantize("/nonexistent/model.bin", out, &o, NULL), QN_EIO);
  count_tmp(dir, &all);
  assert_int_equal(all, 0);
  rmdir(dir);
}

static int cancel_at_third(void* user, const char* stage, int64_t done, int64_t total) {
  (void)stage;
  (void)done;
  (void)total;
  int* calls = user;
  return ++*calls >= 3;
}

static void test_cancel_leaves_nothing(void** state) {
  (void)state;
  char dir[160], out[256];
  snprintf(dir, sizeof dir, "%s/cancel", g_dir);
  assert_int_equal(mkdir(dir, 0755), 0);
  snprintf(out, sizeof out, "%s/x.qnz", dir);
  FILE* fp = fopen(out, "w");
  assert_non_null(fp);
  fputs("old contents", fp);
  fclose(fp);
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "int4-g32";
  int calls = 0;
  o.progress = cancel_at_third;
  o.progress_user = &calls;
  assert_int_equal(qn_quantize(g_bin, out, &o, NULL), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "cancel"));
  assert_int_equal(calls, 3);
  int all = 0;
  assert_int_equal(count_tmp(dir, &all), 0);
  assert_int_equal(all, 1);
  char* s = qt_read_file(out, NULL);
  assert_string_equal(s, "old contents");
  free(s);
  unlink(out);
  rmdir(dir);
}

/* ---- re-quantizing a .qnz ---------------------------------------------------------------------
 */

static void test_requantize_qnz(void** state) {
  (void)state;
  char out[300];
  snprintf(out, sizeof out, "%s/requant.qnz", g_dir);
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "f32";
  const char* rules[1] = {"blk.1.*=int8-channel"};
  o.rules = rules;
  o.n_rules = 1;
  qn_quantize_report rep;
  const char* from = qnz_of("int4a-g64");
  if (qn_quantize(from, out, &o, &rep) != QN_OK) fail_msg("%s", qn_last_error());
  qn_source *a = NULL, *b = NULL;
  assert_int_equal(qn_source_open(from, NULL, &a), QN_OK);
  assert_int_equal(qn_source_open(out, NULL, &b), QN_OK);
  wspec ws[64];
  int nw = weight_specs(&a->hp, ws);
  for (int i = 0; i < nw; i++) {
    float* w = source_f32(a, &ws[i]); /* dequant of the int4a-g64 weight */
    bool in_rule = strncmp(ws[i].name, "blk.1.", 6) == 0;
    qn_qtensor t;
    assert_int_equal(qn_weights_bind_matrix(b, ws[i].name, ws[i].rows, ws[i].cols, &t), QN_OK);
    assert_int_equal(t.type, in_rule ? QN_QTYPE_Q8_C : QN_QTYPE_F32);
    size_t nel = (size_t)(ws[i].rows * ws[i].cols);
    if (!in_rule) {
      assert_memory_equal(t.data, w, 4 * nel);
    } else {
      qlocal ql;
      quant_local(QN_QTYPE_Q8_C, w, ws[i].rows, ws[i].cols, &ql);
      assert_memory_equal(t.data, ql.payload, ql.pbytes);
      assert_memory_equal(t.scales, ql.scales, ql.sbytes);
      qlocal_free(&ql);
    }
    free(w);
  }
  /* the report: one row per source tensor, exact f32 rows */
  assert_int_equal(rep.n_tensors, 36 + 11);
  for (int i = 0; i < rep.n_tensors; i++)
    if (!strncmp(rep.tensors[i].name, "blk.1.", 6) && rep.tensors[i].cols > 1)
      assert_string_equal(rep.tensors[i].scheme, "int8-channel");
  qn_quantize_report_free(&rep);
  qn_source_free(a);
  qn_source_free(b);
  unlink(out);
}

/* ---- packed layouts (w8a8-dynamic, w4a8) ---------------------------------------------------- */

static int packed_index(const char* scheme) { return strcmp(scheme, k_packed[0]) ? 1 : 0; }

/* Checks one packed file: shapes, layout map, stored bytes == pack(quant(w)), statistics. */
static void check_packed_file(const char* path, const char* scheme, const qn_source* src) {
  const qn_qtype t = (qn_qtype)qn_qtype_from_name(scheme);
  const qn_layout l = qn_qtype_packed_layout(t);
  assert_int_not_equal(l, QN_LAYOUT_ROWS);
  qn_source* q = NULL;
  if (qn_source_open(path, NULL, &q) != QN_OK) fail_msg("%s: %s", path, qn_last_error());
  cJSON* md = cJSON_Parse(q->metadata_json);
  assert_non_null(md);
  cJSON* lm = meta_json(md, "quench.layout");
  cJSON* stats = meta_json(md, "quench.stats");
  assert_int_equal(cJSON_GetArraySize(lm), 36);
  wspec ws[64];
  int nw = weight_specs(&src->hp, ws);
  for (int i = 0; i < nw; i++) {
    const int64_t rows = ws[i].rows, cols = ws[i].cols, blocks = (rows + 15) / 16;
    const cJSON* le = cJSON_GetObjectItemCaseSensitive(lm, ws[i].name);
    if (!cJSON_IsString(le) || strcmp(le->valuestring, qn_layout_name(l)))
      fail_msg("%s: quench.layout lacks '%s' = %s", scheme, ws[i].name, qn_layout_name(l));
    /* honest shapes */
    const uint64_t pb = qn_packed_payload_bytes(t, rows, cols);
    const uint64_t sb = qn_packed_scale_bytes(t, rows, cols);
    const qn_tensor* pt = qn_source_find(q, ws[i].name);
    assert_non_null(pt);
    assert_int_equal(pt->dtype, QN_DTYPE_U8);
    assert_int_equal(pt->ndim, 2);
    assert_int_equal(pt->shape[0], blocks);
    assert_int_equal((uint64_t)pt->shape[1] * (uint64_t)blocks, pb);
    assert_int_equal(pt->nbytes, pb);
    char sn[96];
    snprintf(sn, sizeof sn, "%.80s.scales", ws[i].name);
    const qn_tensor* st = qn_source_find(q, sn);
    assert_non_null(st);
    assert_int_equal(st->ndim, 2);
    assert_int_equal(st->nbytes, sb);
    if (l == QN_LAYOUT_I8X16) {
      assert_int_equal(st->dtype, QN_DTYPE_F32);
      assert_true(st->shape[0] == rows && st->shape[1] == 1);
    } else {
      assert_int_equal(st->dtype, QN_DTYPE_F16);
      assert_true(st->shape[0] == blocks && st->shape[1] == 16 * qn_qtype_n_groups(t, cols));
    }
    /* the bytes: pack(quant(w)), bound in place */
    float* w = source_f32(src, &ws[i]);
    qlocal ql;
    quant_local(t, w, rows, cols, &ql);
    qn_qtensor P;
    void *pp = NULL, *ps = NULL;
    assert_int_equal(qn_qtensor_pack(&ql.qt, &P, &pp, &ps), QN_OK);
    qn_qtensor b;
    if (qn_weights_bind_matrix(q, ws[i].name, rows, cols, &b) != QN_OK)
      fail_msg("%s: %s", scheme, qn_last_error());
    assert_int_equal(b.layout, l);
    assert_int_equal(b.type, t);
    assert_ptr_equal(b.data, pt->data); /* no copy, no repacking */
    if (memcmp(b.data, pp, pb) != 0 || memcmp(b.scales, ps, sb) != 0)
      fail_msg("%s: '%s' is not pack(quant(w))", scheme, ws[i].name);
    /* dequantized: the canonical values; statistics: the canonical result's */
    size_t nel = (size_t)(rows * cols);
    float* d1 = xmalloc(sizeof(float) * nel);
    float* d2 = xmalloc(sizeof(float) * nel);
    assert_int_equal(qn_qtensor_dequant(&b, d1), QN_OK);
    assert_int_equal(qn_qtensor_dequant(&ql.qt, d2), QN_OK);
    assert_memory_equal(d1, d2, sizeof(float) * nel);
    double err = 0;
    for (size_t k = 0; k < nel; k++) err += ((double)w[k] - d2[k]) * ((double)w[k] - d2[k]);
    const cJSON* se = cJSON_GetObjectItem(stats, ws[i].name);
    assert_non_null(se);
    double rmse = cJSON_GetNumberValue(cJSON_GetObjectItem(se, "rmse"));
    double bpw = cJSON_GetNumberValue(cJSON_GetObjectItem(se, "bpw"));
    assert_true(fabs(rmse - sqrt(err / (double)nel)) <= 1e-9 * rmse + 1e-15);
    assert_true(fabs(bpw - 8.0 * (double)(pb + sb) / (double)nel) < 1e-9);
    assert_true(bpw >=
                qn_qtype_bpw(l == QN_LAYOUT_I8X16 ? QN_QTYPE_Q8_C : QN_QTYPE_Q4_G32, rows, cols));
    free(d1);
    free(d2);
    free(pp);
    free(ps);
    qlocal_free(&ql);
    free(w);
  }
  cJSON_Delete(lm);
  cJSON_Delete(stats);
  cJSON_Delete(md);
  qn_source_free(q);
}

static void test_packed_files(void** state) {
  (void)state;
  char sha[65];
  sha256_hex_file(g_bin, sha);
  qn_source* src = NULL;
  assert_int_equal(qn_source_open(g_bin, NULL, &src), QN_OK);
  for (int k = 0; k < 2; k++) {
    check_header(g_packed[k], k_packed[k], sha);
    check_packed_file(g_packed[k], k_packed[k], src);
  }
  qn_source_free(src);
}

/* Token ids of a short story (for the logit comparisons). */
static int* story_ids(int* n) {
  qn_model_opts mo = {NULL, 1};
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_bin, &mo, &m), QN_OK);
  const char* text =
      "Once upon a time, there was a little dog named Max. He liked to run in the "
      "park and play with his red ball every day.";
  int* ids = NULL;
  assert_int_equal(qn_tokenize(m, text, strlen(text), true, &ids, n), QN_OK);
  qn_model_free(m);
  assert_true(*n > 20);
  return ids;
}

/* Logits of the .bin model with every 2-D weight quantized to t in memory: packed as
 * qn_qweight_make stores it, or (packed false) in canonical rows. */
static float* in_memory_logits(qn_qtype t, bool packed, const int* ids, int n) {
  qn_model_opts mo = {NULL, 2};
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(g_bin, &mo, &m), QN_OK);
  qn_wslot* slots = NULL;
  int ns = 0;
  assert_int_equal(qn_wslots_of(m, &slots, &ns), QN_OK);
  qn_qweight* qw = calloc((size_t)ns, sizeof *qw);
  qlocal* ql = calloc((size_t)ns, sizeof *ql);
  assert_non_null(qw);
  assert_non_null(ql);
  for (int i = 0; i < ns; i++) {
    qn_qtensor use;
    if (packed) {
      assert_int_equal(qn_qweight_make(&slots[i].orig, slots[i].name, t, NULL, &qw[i]), QN_OK);
      assert_int_equal(qw[i].q.layout, qn_qtype_packed_layout(t));
      assert_int_equal(qw[i].bytes, qn_qtype_bytes(t, qw[i].q.rows, qw[i].q.cols));
      use = qw[i].q;
    } else {
      const qn_qtensor* o = &slots[i].orig;
      float* f = xmalloc(sizeof(float) * (size_t)(o->rows * o->cols));
      assert_int_equal(qn_qtensor_dequant(o, f), QN_OK);
      quant_local(t, f, o->rows, o->cols, &ql[i]);
      free(f);
      use = ql[i].qt;
    }
    *slots[i].w = use;
    if (slots[i].alias) *slots[i].alias = use;
  }
  qn_ctx* c = NULL;
  assert_int_equal(qn_ctx_new(m, n, 1, &c), QN_OK);
  int* pos = xmalloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++) pos[i] = i;
  float* lg = xmalloc(sizeof(float) * (size_t)n * 512);
  if (qn_ctx_forward(c, ids, pos, NULL, n, lg, true) != QN_OK) fail_msg("%s", qn_last_error());
  free(pos);
  qn_ctx_free(c);
  qn_model_free(m);
  for (int i = 0; i < ns; i++) {
    qn_qweight_free(&qw[i]);
    if (ql[i].payload) qlocal_free(&ql[i]);
  }
  free(qw);
  free(ql);
  free(slots);
  return lg;
}

static void expect_same_logits(const float* got, const float* want, int n, const char* what) {
  for (size_t k = 0; k < (size_t)n * 512; k++)
    if (memcmp(&got[k], &want[k], sizeof(float)) != 0)
      fail_msg("%s: logit %zu is %.9g, expected %.9g", what, k, (double)got[k], (double)want[k]);
}

static void test_packed_logits_match_in_memory(void** state) {
  (void)state;
  int n = 0;
  int* ids = story_ids(&n);
  for (int k = 0; k < 2; k++) {
    qn_qtype t = (qn_qtype)qn_qtype_from_name(k_packed[k]);
    float* file = all_logits(g_packed[k], ids, n);
    float* mem = in_memory_logits(t, true, ids, n);
    expect_same_logits(file, mem, n, k_packed[k]);
    float* rows = in_memory_logits(t, false, ids, n);
    expect_same_logits(rows, mem, n, "canonical rows vs packed");
    printf("  %-12s .qnz logits == in-memory quantized (packed and canonical), %d positions\n",
           k_packed[k], n);
    free(rows);
    free(mem);
    free(file);
  }
  free(ids);
}

/* A w8a8-dynamic file of the older canonical form (no quench.layout; payloads as rows, the
 * bytes of int8-channel) loads, binds as QN_LAYOUT_ROWS and computes the same logits. */
static void test_canonical_w8a8_still_loads(void** state) {
  (void)state;
  edit e;
  edit_begin(&e, qnz_of("int8-channel"));
  cJSON* q = meta_json(e.meta, "quench.quant");
  for (cJSON* x = q->child; x; x = x->next) cJSON_SetValuestring(x, "w8a8-dynamic");
  set_meta_json(&e, "quench.quant", q);
  cJSON_DeleteItemFromObject(e.meta, "quench.layout"); /* as files before packing */
  const char* p = edit_write(&e);
  qn_source* s = NULL;
  if (qn_source_open(p, NULL, &s) != QN_OK) fail_msg("%s", qn_last_error());
  qn_qtensor b;
  assert_int_equal(qn_weights_bind_matrix(s, "blk.2.ffn_down.weight", 64, 172, &b), QN_OK);
  assert_int_equal(b.type, QN_QTYPE_W8A8_DYNAMIC);
  assert_int_equal(b.layout, QN_LAYOUT_ROWS);
  qn_source_free(s);
  int n = 0;
  int* ids = story_ids(&n);
  float* old = all_logits(p, ids, n);
  float* packed = all_logits(g_packed[packed_index("w8a8-dynamic")], ids, n);
  expect_same_logits(old, packed, n, "canonical w8a8-dynamic file vs packed");
  free(old);
  free(packed);
  free(ids);
  unlink(p);
}

/* Sets the shape of tensor name in an edit to [a, b] (b < 0: one dimension [a]). */
static void set_shape(edit* e, const char* name, double a, double b) {
  cJSON* sh = cJSON_GetObjectItem(cJSON_GetObjectItem(e->root, name), "shape");
  assert_non_null(sh);
  cJSON* n = cJSON_CreateArray();
  cJSON_AddItemToArray(n, cJSON_CreateNumber(a));
  if (b >= 0) cJSON_AddItemToArray(n, cJSON_CreateNumber(b));
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(e->root, name), "shape", n);
}

/* Replaces quench.layout's entry for weight (NULL value: deletes it). */
static void set_layout(edit* e, const char* weight, const char* value) {
  cJSON* lm = meta_json(e->meta, "quench.layout");
  cJSON_DeleteItemFromObject(lm, weight);
  if (value) cJSON_AddStringToObject(lm, weight, value);
  set_meta_json(e, "quench.layout", lm);
}

static void test_packed_damage_rejected(void** state) {
  (void)state;
  const char* w4 = g_packed[packed_index("w4a8")];
  const char* w8 = g_packed[packed_index("w8a8-dynamic")];
  edit e;
  const char* p;

  /* truncations of a packed file */
  size_t size = 0;
  char* f = qt_read_file(w4, &size);
  assert_non_null(f);
  char path[300];
  snprintf(path, sizeof path, "%s/ptrunc.qnz", g_dir);
  FILE* o = fopen(path, "wb");
  assert_non_null(o);
  assert_int_equal(fwrite(f, 1, size, o), size);
  fclose(o);
  free(f);
  assert_int_equal(open_and_use(path), QN_OK);
  for (size_t k = size - 1; k > size / 2; k -= 4093) {
    assert_int_equal(truncate(path, (off_t)k), 0);
    expect_rejected(path, "ptrunc.qnz", "truncated packed file");
  }
  unlink(path);

  /* a packed payload reshaped (same bytes): [4 blocks, 512] -> [8, 256] */
  edit_begin(&e, w4);
  set_shape(&e, "blk.0.attn_q.weight", 8, 256);
  p = edit_write(&e);
  expect_rejected(p, "blk.0.attn_q.weight", "reshaped packed payload");
  unlink(p);

  /* a packed payload one block short; the bytes it lost declared as another tensor */
  edit_begin(&e, w4);
  cJSON* t = cJSON_GetObjectItem(e.root, "blk.3.ffn_gate.weight");
  cJSON* of = cJSON_GetObjectItem(t, "data_offsets");
  double b0 = cJSON_GetArrayItem(of, 0)->valuedouble, b1 = cJSON_GetArrayItem(of, 1)->valuedouble;
  assert_true(b1 - b0 == 11 * 512); /* 172 rows: 11 blocks of 2 groups x 256 bytes */
  set_shape(&e, "blk.3.ffn_gate.weight", 10, 512);
  cJSON_SetNumberValue(cJSON_GetArrayItem(cJSON_GetObjectItem(t, "data_offsets"), 1), b1 - 512);
  cJSON* tail = cJSON_CreateObject();
  cJSON_AddStringToObject(tail, "dtype", "U8");
  cJSON* tsh = cJSON_AddArrayToObject(tail, "shape");
  cJSON_AddItemToArray(tsh, cJSON_CreateNumber(512));
  cJSON* tof = cJSON_AddArrayToObject(tail, "data_offsets");
  cJSON_AddItemToArray(tof, cJSON_CreateNumber(b1 - 512));
  cJSON_AddItemToArray(tof, cJSON_CreateNumber(b1));
  cJSON_AddItemToObject(e.root, "extra.tail", tail);
  p = edit_write(&e);
  expect_rejected(p, "blk.3.ffn_gate.weight", "packed payload one block short");
  unlink(p);

  /* packed scales transposed, of the wrong dtype, or flattened */
  edit_begin(&e, w4);
  set_shape(&e, "blk.2.ffn_up.weight.scales", 32, 11);
  p = edit_write(&e);
  expect_rejected(p, "blk.2.ffn_up.weight.scales", "transposed packed scales");
  unlink(p);
  edit_begin(&e, w4);
  cJSON_SetValuestring(
      cJSON_GetObjectItem(cJSON_GetObjectItem(e.root, "blk.1.attn_v.weight.scales"), "dtype"),
      "BF16");
  p = edit_write(&e);
  expect_rejected(p, "blk.1.attn_v.weight.scales", "bf16 packed scales");
  unlink(p);
  edit_begin(&e, w8);
  set_shape(&e, "blk.4.attn_k.weight.scales", 32, -1);
  p = edit_write(&e);
  expect_rejected(p, "blk.4.attn_k.weight.scales", "1-D packed scales");
  unlink(p);

  /* quench.layout: an entry missing (the payload is then read as rows: wrong shape) */
  edit_begin(&e, w4);
  set_layout(&e, "blk.1.ffn_down.weight", NULL);
  p = edit_write(&e);
  expect_rejected(p, "blk.1.ffn_down.weight", "layout entry missing");
  unlink(p);
  /* ... another scheme's layout, an unknown one, one for a tensor that is not quantized */
  edit_begin(&e, w4);
  set_layout(&e, "token_embd.weight", "i8x16");
  p = edit_write(&e);
  expect_rejected(p, "token_embd.weight", "i8x16 for w4a8");
  unlink(p);
  edit_begin(&e, w8);
  set_layout(&e, "blk.0.ffn_up.weight", "i4x32");
  p = edit_write(&e);
  expect_rejected(p, "blk.0.ffn_up.weight", "unknown layout");
  unlink(p);
  edit_begin(&e, w8);
  set_layout(&e, "blk.0.attn_norm.weight", "i8x16");
  p = edit_write(&e);
  expect_rejected(p, "blk.0.attn_norm.weight", "layout of a vector");
  unlink(p);
  edit_begin(&e, w8);
  cJSON_ReplaceItemInObject(e.meta, "quench.layout", cJSON_CreateString("[not json"));
  p = edit_write(&e);
  expect_rejected(p, "quench.layout", "quench.layout not JSON");
  unlink(p);
}

int main(void) {
  g_bin = qt_shared("models/stories260K/stories260K.bin");
  if (!g_bin) qt_skip("stories260K is absent");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_is_strict_safetensors),
      cmocka_unit_test(test_weights_bit_exact),
      cmocka_unit_test(test_inference_matches_fake_quant),
      cmocka_unit_test(test_generate_greedy),
      cmocka_unit_test(test_truncated_rejected),
      cmocka_unit_test(test_header_edits_rejected),
      cmocka_unit_test(test_flipped_header_bytes),
      cmocka_unit_test(test_unwritable_outputs),
      cmocka_unit_test(test_unknown_scheme_creates_nothing),
      cmocka_unit_test(test_cancel_leaves_nothing),
      cmocka_unit_test(test_requantize_qnz),
      cmocka_unit_test(test_packed_files),
      cmocka_unit_test(test_packed_logits_match_in_memory),
      cmocka_unit_test(test_canonical_w8a8_still_loads),
      cmocka_unit_test(test_packed_damage_rejected),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
