/* synth.c: writes synthetic Llama models (random weights, for speed tests only) in real
 * architecture shapes as Hugging Face directories that every Quench command reads:
 *   config.json            llama config (+ "quench_synthetic": preset, seed, note)
 *   model.safetensors      one file, tensors in HF names, streamed block by block
 *   tokenizer.json         byte-level BPE: 3 specials, 256 byte tokens, generated merges
 *   tokenizer_config.json  <s> / </s> as BOS / EOS
 * Weights: every matrix N(0, 0.02^2), norm weights 1.0. The random stream of each 64K-element
 * block depends only on (seed, tensor, block), so the bytes are the same for a seed whatever
 * the thread count. Everything is written into OUT.tmp.<pid> and renamed onto OUT at the
 * end; memory use is one chunk of a few MB, whatever the model size. */
#define _GNU_SOURCE
#include "format/synth.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/half.h"
#include "core/mapfile.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/threadpool.h"

/* ---- presets ------------------------------------------------------------------------------ */

static const qn_synth_preset k_presets[] = {
    {"tiny", 64, 172, 2, 4, 2, 512, 512, "test-sized (odd MLP width), GQA 4/2"},
    {"llama-110m", 768, 2048, 12, 12, 12, 32000, 1024, "llama2.c stories110M shape"},
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, "TinyLlama 1.1B shape (GQA 32/4)"},
    {"llama-7b", 4096, 11008, 32, 32, 32, 32000, 4096, "Llama 2 7B shape"},
};
#define N_PRESETS ((int)(sizeof k_presets / sizeof k_presets[0]))

bool qn_synth_preset_at(int i, qn_synth_preset* out) {
  if (i < 0 || i >= N_PRESETS) return false;
  *out = k_presets[i];
  return true;
}

static const qn_synth_preset* find_preset(const char* name) {
  for (int i = 0; name && i < N_PRESETS; i++)
    if (strcmp(k_presets[i].name, name) == 0) return &k_presets[i];
  return NULL;
}

/* ---- random numbers ----------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void qn_synth_gaussian_block(uint64_t seed, int tensor, int64_t block, float std, float* out,
                             int64_t n) {
  uint64_t s = seed ^ ((uint64_t)(uint32_t)tensor << 40) ^ (uint64_t)block;
  (void)splitmix64(&s); /* decorrelate neighbouring (tensor, block) pairs */
  s ^= 0x6a09e667f3bcc909ull;
  const float two_pi = 6.28318530717958647692f, ulp24 = 1.0f / 16777216.0f;
  for (int64_t i = 0; i < n; i += 2) {
    uint64_t r = splitmix64(&s);
    float u1 = ((float)(r >> 40) + 0.5f) * ulp24; /* (0, 1): log is finite */
    float u2 = (float)((r >> 8) & 0xffffff) * ulp24;
    float rad = std * sqrtf(-2.0f * logf(u1));
    out[i] = rad * cosf(two_pi * u2);
    if (i + 1 < n) out[i + 1] = rad * sinf(two_pi * u2);
  }
}

/* ---- the tensor plan ---------------------------------------------------------------------- */

/* One tensor of the file. */
typedef struct synth_tensor {
  char name[96];  /* Hugging Face name */
  int64_t rows;   /* first dim (length for vectors) */
  int64_t cols;   /* second dim; 0 for a vector */
  bool norm;      /* a norm weight (all 1.0) */
  uint64_t begin; /* byte offset in the data section */
  uint64_t bytes; /* bytes stored */
} synth_tensor;

/* Everything the writer needs. */
typedef struct synth_plan {
  const qn_synth_preset* p; /* shapes */
  qn_dtype dtype;           /* storage type of every tensor */
  const char* dtype_name;   /* "F32", "F16", "BF16" */
  synth_tensor* t;          /* [n] in file order */
  int n;
  uint64_t data_bytes; /* sum of t[].bytes */
} synth_plan;

static void plan_add(synth_plan* pl, const char* name, int64_t rows, int64_t cols, bool norm) {
  synth_tensor* t = &pl->t[pl->n++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->rows = rows, t->cols = cols, t->norm = norm;
  t->bytes = qn_dtype_bytes(pl->dtype, rows * (cols ? cols : 1));
  t->begin = pl->data_bytes;
  pl->data_bytes += t->bytes;
}

static qn_status make_plan(const qn_synth_preset* p, qn_dtype dtype, synth_plan* pl) {
  memset(pl, 0, sizeof *pl);
  pl->p = p, pl->dtype = dtype, pl->dtype_name = qn_dtype_name(dtype);
  pl->t = calloc((size_t)p->n_layers * 9 + 3, sizeof *pl->t);
  if (!pl->t) return qn_error(QN_ENOMEM, "synth: out of memory");
  const int64_t dim = p->dim, hid = p->hidden_dim, hd = p->dim / p->n_heads;
  const int64_t qd = p->n_heads * hd, kvd = p->n_kv_heads * hd;
  plan_add(pl, "model.embed_tokens.weight", p->vocab_size, dim, false);
  for (int l = 0; l < p->n_layers; l++) {
    static const char* const proj[] = {"q", "k", "v", "o"};
    char nm[96];
    snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
    plan_add(pl, nm, dim, 0, true);
    for (int k = 0; k < 4; k++) {
      snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s_proj.weight", l, proj[k]);
      int64_t rows = k == 0 ? qd : k == 3 ? dim : kvd, cols = k == 3 ? qd : dim;
      plan_add(pl, nm, rows, cols, false);
    }
    snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
    plan_add(pl, nm, dim, 0, true);
    snprintf(nm, sizeof nm, "model.layers.%d.mlp.gate_proj.weight", l);
    plan_add(pl, nm, hid, dim, false);
    snprintf(nm, sizeof nm, "model.layers.%d.mlp.up_proj.weight", l);
    plan_add(pl, nm, hid, dim, false);
    snprintf(nm, sizeof nm, "model.layers.%d.mlp.down_proj.weight", l);
    plan_add(pl, nm, dim, hid, false);
  }
  plan_add(pl, "model.norm.weight", dim, 0, true);
  plan_add(pl, "lm_head.weight", p->vocab_size, dim, false);
  return QN_OK;
}

/* ---- small files -------------------------------------------------------------------------- */

/* Paths: out_dir is limited to SYNTH_PATH_MAX - 64 bytes, so every name derived from it fits. */
#define SYNTH_PATH_MAX 4160

/* out = dir + "/" + name; false if it would not fit. */
static bool path_join(char out[SYNTH_PATH_MAX], const char* dir, const char* name) {
  int n = snprintf(out, SYNTH_PATH_MAX, "%s/%s", dir, name);
  return n > 0 && n < SYNTH_PATH_MAX;
}

/* Writes text to dir/name. */
static qn_status write_text(const char* dir, const char* name, const char* text) {
  char path[SYNTH_PATH_MAX];
  if (!path_join(path, dir, name)) return qn_error(QN_EINVAL, "%s: path too long", dir);
  FILE* f = fopen(path, "wb");
  if (!f) return qn_error(QN_EIO, "%s: cannot create: %s", path, strerror(errno));
  size_t n = strlen(text);
  bool ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
  ok = (fclose(f) == 0) && ok;
  return ok ? QN_OK : qn_error(QN_EIO, "%s: write failed: %s", path, strerror(errno));
}

/* Serialises root (formatted or not) to dir/name and deletes it. */
static qn_status write_json(const char* dir, const char* name, cJSON* root, bool formatted) {
  if (!root) return qn_error(QN_ENOMEM, "synth: out of memory building %s", name);
  char* text = formatted ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!text) return qn_error(QN_ENOMEM, "synth: out of memory printing %s", name);
  qn_status st = write_text(dir, name, text);
  free(text);
  return st;
}

static qn_status write_config(const char* dir, const synth_plan* pl, uint64_t seed) {
  const qn_synth_preset* p = pl->p;
  cJSON* r = cJSON_CreateObject();
  cJSON* arch = cJSON_AddArrayToObject(r, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
  cJSON_AddStringToObject(r, "model_type", "llama");
  cJSON_AddNumberToObject(r, "hidden_size", p->dim);
  cJSON_AddNumberToObject(r, "intermediate_size", p->hidden_dim);
  cJSON_AddNumberToObject(r, "num_hidden_layers", p->n_layers);
  cJSON_AddNumberToObject(r, "num_attention_heads", p->n_heads);
  cJSON_AddNumberToObject(r, "num_key_value_heads", p->n_kv_heads);
  cJSON_AddNumberToObject(r, "vocab_size", p->vocab_size);
  cJSON_AddNumberToObject(r, "max_position_embeddings", p->max_seq_len);
  cJSON_AddNumberToObject(r, "rms_norm_eps", 1e-5);
  cJSON_AddNumberToObject(r, "rope_theta", 10000.0);
  cJSON_AddStringToObject(r, "hidden_act", "silu");
  cJSON_AddBoolToObject(r, "tie_word_embeddings", false);
  cJSON_AddNumberToObject(r, "bos_token_id", 1);
  cJSON_AddNumberToObject(r, "eos_token_id", 2);
  const char* td = pl->dtype == QN_DTYPE_F32   ? "float32"
                   : pl->dtype == QN_DTYPE_F16 ? "float16"
                                               : "bfloat16";
  cJSON_AddStringToObject(r, "torch_dtype", td);
  cJSON* q = cJSON_AddObjectToObject(r, "quench_synthetic");
  cJSON_AddStringToObject(q, "preset", p->name);
  char seed_s[32];
  snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
  cJSON_AddStringToObject(q, "seed", seed_s);
  cJSON_AddStringToObject(q, "note",
                          "random weights (matrices N(0, 0.02^2), norms 1.0): for speed tests "
                          "only, the text it generates is meaningless");
  return write_json(dir, "config.json", r, true);
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest take code
 * points 256.. in byte order; the result is written as UTF-8. */
static int byte_token(unsigned b, char out[3]) {
  unsigned cp = b <= 32 ? 256 + b : (b >= 127 && b <= 160) ? b + 162 : b == 173 ? 323 : b;
  if (cp < 0x80) {
    out[0] = (char)cp, out[1] = '\0';
    return 1;
  }
  out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), out[2] = '\0';
  return 2;
}

/* Fills the vocabulary from id 259 with words of the alphabet "Ġ?[a-z]+" in breadth-first
 * order ("Ġa".."zz", then three symbols...), each made by one merge "PREFIX LETTER" whose
 * rank is its order, so every merge joins two tokens that exist when it applies. */
static qn_status add_merges(cJSON* vocab, cJSON* merges, int first_id, int n_ids) {
  char** tok = calloc((size_t)n_ids, sizeof *tok); /* texts of generated tokens, by id-first */
  if (!tok) return qn_error(QN_ENOMEM, "synth: out of memory for the tokenizer");
  qn_status st = QN_OK;
  const char* space = "\xc4\xa0"; /* Ġ, the byte-level form of ' ' */
  static const char starts_letters[] = "abcdefghijklmnopqrstuvwxyz";
  /* level 1 prefixes: "Ġ" and the 26 letters (byte tokens, not stored in tok) */
  char first[27][3];
  snprintf(first[0], 3, "%s", space);
  for (int c = 0; c < 26; c++) first[c + 1][0] = starts_letters[c], first[c + 1][1] = '\0';
  int n = 0, lo = 0, hi = 0; /* tok[lo..hi) is the previous level */
  for (int level = 2; n < n_ids && st == QN_OK; level++) {
    int n_prev = level == 2 ? 27 : hi - lo;
    for (int i = 0; i < n_prev && n < n_ids && st == QN_OK; i++) {
      const char* prefix = level == 2 ? first[i] : tok[lo + i];
      size_t pl = strlen(prefix);
      for (int c = 0; c < 26 && n < n_ids; c++) {
        char* t = malloc(pl + 2);
        char* m = malloc(pl + 3);
        if (!t || !m) {
          free(t), free(m);
          st = qn_error(QN_ENOMEM, "synth: out of memory for the tokenizer");
          break;
        }
        snprintf(t, pl + 2, "%s%c", prefix, starts_letters[c]);
        snprintf(m, pl + 3, "%s %c", prefix, starts_letters[c]);
        cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber(first_id + n));
        cJSON_AddItemToArray(merges, cJSON_CreateString(m));
        free(m);
        tok[n++] = t;
      }
    }
    lo = level == 2 ? 0 : hi;
    hi = n;
  }
  for (int i = 0; i < n; i++) free(tok[i]);
  free(tok);
  return st;
}

static cJSON* special_token(int id, const char* content) {
  cJSON* t = cJSON_CreateObject();
  cJSON_AddNumberToObject(t, "id", id);
  cJSON_AddStringToObject(t, "content", content);
  cJSON_AddBoolToObject(t, "single_word", false);
  cJSON_AddBoolToObject(t, "lstrip", false);
  cJSON_AddBoolToObject(t, "rstrip", false);
  cJSON_AddBoolToObject(t, "normalized", false);
  cJSON_AddBoolToObject(t, "special", true);
  return t;
}

static cJSON* byte_level(const char* type_key) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", type_key);
  cJSON_AddBoolToObject(o, "add_prefix_space", false);
  cJSON_AddBoolToObject(o, "trim_offsets", true);
  cJSON_AddBoolToObject(o, "use_regex", true);
  return o;
}

/* BOS + the sequence: the template every Llama tokenizer.json carries. */
static cJSON* bos_template(void) {
  cJSON* pp = cJSON_CreateObject();
  cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
  cJSON* single = cJSON_AddArrayToObject(pp, "single");
  cJSON* bos = cJSON_CreateObject();
  cJSON* sp = cJSON_AddObjectToObject(bos, "SpecialToken");
  cJSON_AddStringToObject(sp, "id", "<s>");
  cJSON_AddNumberToObject(sp, "type_id", 0);
  cJSON_AddItemToArray(single, bos);
  cJSON* seq = cJSON_CreateObject();
  cJSON* sq = cJSON_AddObjectToObject(seq, "Sequence");
  cJSON_AddStringToObject(sq, "id", "A");
  cJSON_AddNumberToObject(sq, "type_id", 0);
  cJSON_AddItemToArray(single, seq);
  cJSON* specials = cJSON_AddObjectToObject(pp, "special_tokens");
  cJSON* s = cJSON_AddObjectToObject(specials, "<s>");
  cJSON_AddStringToObject(s, "id", "<s>");
  cJSON* ids = cJSON_AddArrayToObject(s, "ids");
  cJSON_AddItemToArray(ids, cJSON_CreateNumber(1));
  cJSON* tokens = cJSON_AddArrayToObject(s, "tokens");
  cJSON_AddItemToArray(tokens, cJSON_CreateString("<s>"));
  return pp;
}

static qn_status write_tokenizer(const char* dir, int vocab_size, int max_len) {
  static const char* const specials[] = {"<unk>", "<s>", "</s>"};
  cJSON* r = cJSON_CreateObject();
  cJSON_AddStringToObject(r, "version", "1.0");
  cJSON_AddNullToObject(r, "truncation");
  cJSON_AddNullToObject(r, "padding");
  cJSON* added = cJSON_AddArrayToObject(r, "added_tokens");
  for (int i = 0; i < 3; i++) cJSON_AddItemToArray(added, special_token(i, specials[i]));
  cJSON_AddNullToObject(r, "normalizer");
  cJSON_AddItemToObject(r, "pre_tokenizer", byte_level("ByteLevel"));
  cJSON_AddItemToObject(r, "post_processor", bos_template());
  cJSON_AddItemToObject(r, "decoder", byte_level("ByteLevel"));
  cJSON* model = cJSON_AddObjectToObject(r, "model");
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddNullToObject(model, "unk_token");
  cJSON_AddNullToObject(model, "continuing_subword_prefix");
  cJSON_AddNullToObject(model, "end_of_word_suffix");
  cJSON_AddBoolToObject(model, "fuse_unk", false);
  cJSON_AddBoolToObject(model, "byte_fallback", false);
  cJSON* vocab = cJSON_AddObjectToObject(model, "vocab");
  cJSON* merges = cJSON_AddArrayToObject(model, "merges");
  if (!r || !added || !model || !vocab || !merges) {
    cJSON_Delete(r);
    return qn_error(QN_ENOMEM, "synth: out of memory for the tokenizer");
  }
  for (unsigned b = 0; b < 256; b++) {
    char t[3];
    byte_token(b, t);
    cJSON_AddItemToObject(vocab, t, cJSON_CreateNumber(3 + b));
  }
  qn_status st = add_merges(vocab, merges, 259, vocab_size - 259);
  if (st != QN_OK) {
    cJSON_Delete(r);
    return st;
  }
  QN_TRY(write_json(dir, "tokenizer.json", r, false));
  cJSON* c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
  cJSON_AddStringToObject(c, "bos_token", "<s>");
  cJSON_AddStringToObject(c, "eos_token", "</s>");
  cJSON_AddStringToObject(c, "unk_token", "<unk>");
  cJSON_AddBoolToObject(c, "add_bos_token", true);
  cJSON_AddBoolToObject(c, "add_eos_token", false);
  cJSON_AddNumberToObject(c, "model_max_length", max_len);
  return write_json(dir, "tokenizer_config.json", c, true);
}

/* ---- model.safetensors -------------------------------------------------------------------- */

#define HEADER_ALIGN 64
#define CHUNK_BLOCKS 64 /* blocks generated per write: 4M elements */

/* Header JSON, padded with spaces so the data section starts 64-byte aligned. */
static qn_status make_header(const synth_plan* pl, char** out, uint64_t* len) {
  cJSON* r = cJSON_CreateObject();
  cJSON* md = cJSON_AddObjectToObject(r, "__metadata__");
  cJSON_AddStringToObject(md, "format", "pt");
  cJSON_AddStringToObject(md, "quench.synthetic",
                          "random weights for speed tests only (quench synth)");
  for (int i = 0; i < pl->n; i++) {
    const synth_tensor* t = &pl->t[i];
    cJSON* e = cJSON_AddObjectToObject(r, t->name);
    cJSON_AddStringToObject(e, "dtype", pl->dtype_name);
    cJSON* shape = cJSON_AddArrayToObject(e, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->rows));
    if (t->cols) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->cols));
    cJSON* off = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)t->begin));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(t->begin + t->bytes)));
  }
  char* json = cJSON_PrintUnformatted(r);
  cJSON_Delete(r);
  if (!json) return qn_error(QN_ENOMEM, "synth: out of memory for the safetensors header");
  size_t n = strlen(json);
  size_t padded = ((8 + n + HEADER_ALIGN - 1) / HEADER_ALIGN) * HEADER_ALIGN - 8;
  char* h = malloc(8 + padded);
  if (!h) {
    free(json);
    return qn_error(QN_ENOMEM, "synth: out of memory for the safetensors header");
  }
  for (int b = 0; b < 8; b++) h[b] = (char)(((uint64_t)padded >> (8 * b)) & 0xff);
  memcpy(h + 8, json, n);
  memset(h + 8 + n, ' ', padded - n);
  free(json);
  *out = h;
  *len = 8 + padded;
  return QN_OK;
}

/* One chunk of a tensor being generated in parallel. */
typedef struct chunk_job {
  uint64_t seed;
  int tensor;     /* index in the file */
  int64_t block0; /* first block of the chunk */
  int64_t n;      /* elements in the chunk */
  qn_dtype dtype; /* output type */
  float* tmp;     /* [n_threads][QN_SYNTH_BLOCK] f32 scratch */
  uint8_t* out;   /* n elements of dtype */
} chunk_job;

static void store_block(const float* x, int64_t n, qn_dtype dt, uint8_t* out) {
  if (dt == QN_DTYPE_F32) {
    memcpy(out, x, (size_t)n * 4);
  } else {
    uint16_t* o = (uint16_t*)out;
    for (int64_t i = 0; i < n; i++)
      o[i] = dt == QN_DTYPE_F16 ? qn_f32_to_f16(x[i]) : qn_f32_to_bf16(x[i]);
  }
}

static void chunk_worker(void* arg, int64_t begin, int64_t end, int tid) {
  chunk_job* j = arg;
  float* tmp = j->tmp + (size_t)tid * QN_SYNTH_BLOCK;
  size_t esz = qn_dtype_bytes(j->dtype, 1);
  for (int64_t b = begin; b < end; b++) {
    int64_t first = b * QN_SYNTH_BLOCK;
    int64_t cnt = j->n - first < QN_SYNTH_BLOCK ? j->n - first : QN_SYNTH_BLOCK;
    qn_synth_gaussian_block(j->seed, j->tensor, j->block0 + b, QN_SYNTH_STD, tmp, cnt);
    store_block(tmp, cnt, j->dtype, j->out + (size_t)first * esz);
  }
}

/* State of the weights file being written. */
typedef struct st_writer {
  FILE* f;
  const char* path;
  uint8_t* buf; /* CHUNK_BLOCKS * QN_SYNTH_BLOCK elements of the dtype */
  float* tmp;   /* per-thread f32 block scratch */
  qn_pool* pool;
  uint64_t done;  /* bytes written so far (header included) */
  uint64_t total; /* bytes of the whole file */
  const qn_synth_opts* o;
} st_writer;

static qn_status put(st_writer* w, const void* data, size_t n) {
  if (fwrite(data, 1, n, w->f) != n)
    return qn_error(QN_EIO, "%s: write failed: %s", w->path, strerror(errno));
  w->done += n;
  if (w->o->progress &&
      w->o->progress(w->o->progress_user, "synth", (int64_t)w->done, (int64_t)w->total) != 0)
    return qn_error(QN_EINVAL, "synth: cancelled");
  return QN_OK;
}

static qn_status write_tensor(st_writer* w, const synth_plan* pl, int i) {
  const synth_tensor* t = &pl->t[i];
  const int64_t n = t->rows * (t->cols ? t->cols : 1),
                chunk = (int64_t)CHUNK_BLOCKS * QN_SYNTH_BLOCK;
  const size_t esz = qn_dtype_bytes(pl->dtype, 1);
  for (int64_t first = 0; first < n; first += chunk) {
    int64_t cnt = n - first < chunk ? n - first : chunk;
    if (t->norm) {
      float one = 1.0f;
      for (int64_t k = 0; k < cnt; k++) store_block(&one, 1, pl->dtype, w->buf + (size_t)k * esz);
    } else {
      chunk_job j = {w->o->seed, i, first / QN_SYNTH_BLOCK, cnt, pl->dtype, w->tmp, w->buf};
      qn_pool_for(w->pool, (cnt + QN_SYNTH_BLOCK - 1) / QN_SYNTH_BLOCK, 1, chunk_worker, &j);
    }
    QN_TRY(put(w, w->buf, (size_t)cnt * esz));
  }
  return QN_OK;
}

static qn_status write_weights_body(st_writer* w, const synth_plan* pl) {
  char* header = NULL;
  uint64_t hlen = 0;
  QN_TRY(make_header(pl, &header, &hlen));
  w->total = hlen + pl->data_bytes;
  qn_status st = put(w, header, hlen);
  free(header);
  for (int i = 0; i < pl->n && st == QN_OK; i++) st = write_tensor(w, pl, i);
  if (st == QN_OK && fflush(w->f) != 0)
    st = qn_error(QN_EIO, "%s: write failed: %s", w->path, strerror(errno));
  if (st == QN_OK && fsync(fileno(w->f)) != 0)
    st = qn_error(QN_EIO, "%s: fsync failed: %s", w->path, strerror(errno));
  return st;
}

static qn_status write_weights(const char* dir, const synth_plan* pl, const qn_synth_opts* o) {
  char path[SYNTH_PATH_MAX];
  if (!path_join(path, dir, "model.safetensors"))
    return qn_error(QN_EINVAL, "%s: path too long", dir);
  st_writer w = {.path = path, .o = o};
  qn_status st = qn_pool_new(o->n_threads, &w.pool);
  if (st != QN_OK) return st;
  w.buf = malloc((size_t)CHUNK_BLOCKS * QN_SYNTH_BLOCK * 4);
  w.tmp = malloc((size_t)qn_pool_size(w.pool) * QN_SYNTH_BLOCK * sizeof(float));
  w.f = fopen(path, "wb");
  if (!w.buf || !w.tmp)
    st = qn_error(QN_ENOMEM, "synth: out of memory");
  else if (!w.f)
    st = qn_error(QN_EIO, "%s: cannot create: %s", path, strerror(errno));
  if (st == QN_OK) st = write_weights_body(&w, pl);
  if (w.f && fclose(w.f) != 0 && st == QN_OK)
    st = qn_error(QN_EIO, "%s: close failed: %s", path, strerror(errno));
  free(w.buf);
  free(w.tmp);
  qn_pool_free(w.pool);
  return st;
}

/* ---- the directory ------------------------------------------------------------------------ */

static const char* const k_files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                      "tokenizer_config.json"};

/* Removes the files this writer creates from dir, then dir itself (fails if others remain). */
static int remove_model_dir(const char* dir) {
  char path[SYNTH_PATH_MAX];
  for (size_t i = 0; i < sizeof k_files / sizeof k_files[0]; i++)
    if (path_join(path, dir, k_files[i])) unlink(path);
  return rmdir(dir);
}

/* True when dir/config.json exists and carries the "quench_synthetic" marker. */
static bool is_synthetic_dir(const char* dir) {
  char path[SYNTH_PATH_MAX];
  if (!path_join(path, dir, "config.json")) return false;
  char* text = NULL;
  size_t len = 0;
  if (!qn_is_file(path) || qn_read_text_file(path, &text, &len) != QN_OK) return false;
  cJSON* r = cJSON_ParseWithLength(text, len);
  free(text);
  bool yes = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r, "quench_synthetic"));
  cJSON_Delete(r);
  return yes;
}

/* Checks that out can be created or replaced, and that the disk has room. */
static qn_status check_target(const char* out, uint64_t bytes) {
  struct stat sb;
  if (stat(out, &sb) == 0 && !(S_ISDIR(sb.st_mode) && is_synthetic_dir(out)))
    return qn_error(QN_EINVAL,
                    "%s exists and is not a synthetic model written by quench synth; choose "
                    "another output path",
                    out);
  char parent[4200];
  snprintf(parent, sizeof parent, "%s", out);
  char* slash = strrchr(parent, '/');
  if (slash == parent)
    parent[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(parent, sizeof parent, ".");
  struct statvfs vs;
  if (statvfs(parent, &vs) != 0)
    return qn_error(QN_EIO, "%s: cannot use the directory for %s: %s", parent, out,
                    strerror(errno));
  uint64_t avail = (uint64_t)vs.f_bavail * vs.f_frsize;
  if (avail < bytes + (bytes >> 6) + (1u << 20))
    return qn_error(QN_EIO, "%s: needs %.2f GB of disk, %.2f GB free on %s", out, bytes / 1e9,
                    avail / 1e9, parent);
  return QN_OK;
}

/* Moves the finished tmp directory onto out (replacing an earlier synthetic model). */
static qn_status install(const char* tmp, const char* out) {
  char old[SYNTH_PATH_MAX];
  bool had_old = false;
  if (qn_is_dir(out)) {
    int n = snprintf(old, sizeof old, "%s.old.%ld", out, (long)getpid());
    if (n < 0 || n >= (int)sizeof old) return qn_error(QN_EINVAL, "%s: path too long", out);
    if (rename(out, old) != 0)
      return qn_error(QN_EIO, "%s: cannot move the earlier model aside: %s", out, strerror(errno));
    had_old = true;
  }
  if (rename(tmp, out) != 0) {
    qn_status st = qn_error(QN_EIO, "%s: cannot rename to %s: %s", tmp, out, strerror(errno));
    if (had_old) rename(old, out);
    return st;
  }
  if (had_old) remove_model_dir(old);
  return QN_OK;
}

static qn_status parse_dtype(const char* s, qn_dtype* out) {
  if (!s || strcmp(s, "bf16") == 0)
    *out = QN_DTYPE_BF16;
  else if (strcmp(s, "f16") == 0)
    *out = QN_DTYPE_F16;
  else if (strcmp(s, "f32") == 0)
    *out = QN_DTYPE_F32;
  else
    return qn_error(QN_EINVAL, "synth: dtype '%s' is not one of f32, f16, bf16", s);
  return QN_OK;
}

static qn_status unknown_preset(const char* name) {
  char list[256] = "";
  for (int i = 0; i < N_PRESETS; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
             k_presets[i].name);
  return qn_error(QN_EINVAL, "synth: unknown preset '%s' (presets: %s)", name ? name : "(none)",
                  list);
}

qn_status qn_synth_write(const char* out_dir, const qn_synth_opts* o) {
  qn_error_clear();
  if (!out_dir || !*out_dir || !o) return qn_error(QN_EINVAL, "synth: no output path");
  if (strlen(out_dir) > SYNTH_PATH_MAX - 64)
    return qn_error(QN_EINVAL, "synth: output path too long");
  const qn_synth_preset* p = find_preset(o->preset);
  if (!p) return unknown_preset(o->preset);
  qn_dtype dt = QN_DTYPE_BF16;
  QN_TRY(parse_dtype(o->dtype, &dt));
  synth_plan pl;
  QN_TRY(make_plan(p, dt, &pl));
  qn_status st = check_target(out_dir, pl.data_bytes);
  char tmp[SYNTH_PATH_MAX];
  int tn = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_dir, (long)getpid());
  if (st == QN_OK && (tn < 0 || tn >= (int)sizeof tmp))
    st = qn_error(QN_EINVAL, "%s: path too long", out_dir);
  if (st == QN_OK && mkdir(tmp, 0755) != 0)
    st = qn_error(QN_EIO, "%s: cannot create: %s", tmp, strerror(errno));
  else if (st == QN_OK) {
    st = write_config(tmp, &pl, o->seed);
    if (st == QN_OK) st = write_tokenizer(tmp, p->vocab_size, p->max_seq_len);
    if (st == QN_OK) st = write_weights(tmp, &pl, o);
    if (st == QN_OK) st = install(tmp, out_dir);
    if (st != QN_OK) remove_model_dir(tmp);
  }
  free(pl.t);
  return st;
}
