/* llama2c.c: reads Karpathy's legacy (v0) llama2.c checkpoints into a qn_source.
 *
 * File layout (little-endian): 7 x int32 header
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 * (vocab_size < 0: the classifier is stored separately), then fp32 arrays:
 *   token_embedding (vocab, dim)            rms_att (layer, dim)
 *   wq (layer, dim, n_heads*head_size)      wk (layer, dim, n_kv_heads*head_size)
 *   wv (layer, dim, n_kv_heads*head_size)   wo (layer, n_heads*head_size, dim)
 *   rms_ffn (layer, dim)   w1 (layer, hidden, dim)   w2 (layer, dim, hidden)
 *   w3 (layer, hidden, dim)   rms_final (dim)
 *   freq_cis_real (seq_len * head_size / 2)   freq_cis_imag (same)   [unused: skipped]
 *   wcls (vocab, dim)                       [only when vocab_size < 0]
 * llama2.c multiplies W (d, n) as out[i] = sum_j W[i*n + j] x[j], so each matrix is stored
 * with one row per output: wq is {n_heads*head_size, dim} in Quench's outermost-first shapes.
 * Every per-layer tensor is a view into the mapping; nothing is copied. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"
#include "format/source.h"
#include "format/tokenizer_load.h"

/* The header, as stored. */
typedef struct l2c_config {
  int dim;        /* residual width */
  int hidden_dim; /* MLP inner width */
  int n_layers;   /* decoder blocks */
  int n_heads;    /* query heads */
  int n_kv_heads; /* key/value heads */
  int vocab_size; /* negative: separate classifier follows */
  int seq_len;    /* trained context */
} l2c_config;

#define L2C_HEADER_BYTES 28
#define L2C_V1_MAGIC 0x616b3432u /* "ak42": the newer llama2.c export formats */

static int32_t load_i32(const uint8_t* p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  int32_t v;
  memcpy(&v, &u, 4);
  return v;
}

static qn_status read_config(const qn_mapfile* mf, l2c_config* c) {
  if (mf->size < L2C_HEADER_BYTES)
    return qn_error(QN_EFORMAT, "%s: %zu bytes is too short for a llama2.c checkpoint", mf->path,
                    mf->size);
  if ((uint32_t)load_i32(mf->data) == L2C_V1_MAGIC)
    return qn_error(QN_EUNSUPPORTED,
                    "%s: a llama2.c version 1/2 export; only the legacy (version 0) format is "
                    "supported (export with --version 0)",
                    mf->path);
  int32_t h[7];
  for (int i = 0; i < 7; i++) h[i] = load_i32(mf->data + 4 * i);
  *c = (l2c_config){h[0], h[1], h[2], h[3], h[4], h[5], h[6]};
  int vocab = c->vocab_size == INT_MIN ? 0 : (c->vocab_size < 0 ? -c->vocab_size : c->vocab_size);
  bool sane = c->dim > 0 && c->dim <= (1 << 20) && c->hidden_dim > 0 &&
              c->hidden_dim <= (1 << 22) && c->n_layers > 0 && c->n_layers <= 4096 &&
              c->n_heads > 0 && c->n_heads <= 4096 && c->n_kv_heads > 0 &&
              c->n_kv_heads <= c->n_heads && vocab > 0 && vocab <= (1 << 24) && c->seq_len > 0 &&
              c->seq_len <= (1 << 24);
  if (!sane)
    return qn_error(QN_EFORMAT,
                    "%s: not a llama2.c checkpoint (header: dim %d, hidden %d, layers %d, heads "
                    "%d, kv heads %d, vocab %d, seq_len %d)",
                    mf->path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->vocab_size, c->seq_len);
  if (c->dim % c->n_heads != 0 || c->n_heads % c->n_kv_heads != 0)
    return qn_error(QN_EFORMAT,
                    "%s: dim %d must be a multiple of n_heads %d, and n_heads of n_kv_heads %d",
                    mf->path, c->dim, c->n_heads, c->n_kv_heads);
  return QN_OK;
}

/* Floats in the file after the header (the bounds in read_config keep this below 2^60). */
static uint64_t expected_floats(const l2c_config* c, bool shared) {
  uint64_t dim = (uint64_t)c->dim, hidden = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
  uint64_t head = dim / (uint64_t)c->n_heads, kv_dim = head * (uint64_t)c->n_kv_heads;
  uint64_t vocab = (uint64_t)(c->vocab_size < 0 ? -(int64_t)c->vocab_size : c->vocab_size);
  uint64_t n = vocab * dim;                   /* token_embedding */
  n += L * dim;                               /* rms_att */
  n += L * dim * dim + 2 * L * dim * kv_dim;  /* wq, wk, wv */
  n += L * dim * dim;                         /* wo */
  n += L * dim;                               /* rms_ffn */
  n += 3 * L * dim * hidden;                  /* w1, w2, w3 */
  n += dim;                                   /* rms_final */
  n += 2 * ((uint64_t)c->seq_len * head / 2); /* freq_cis_real, freq_cis_imag */
  if (!shared) n += vocab * dim;              /* wcls */
  return n;
}

/* Adds a float32 view: rows == 0 gives a vector of cols. *p advances past it. */
static qn_status add_view(qn_source* s, const char* name, const float** p, int64_t rows,
                          int64_t cols) {
  qn_tensor t;
  memset(&t, 0, sizeof t);
  snprintf(t.name, sizeof t.name, "%s", name);
  t.dtype = QN_DTYPE_F32;
  t.ndim = rows ? 2 : 1;
  t.shape[0] = rows ? rows : cols;
  t.shape[1] = rows ? cols : 0;
  t.data = *p;
  int64_t n = (rows ? rows : 1) * cols;
  t.nbytes = (uint64_t)n * sizeof(float);
  *p += n;
  return qn_source_add_tensor(s, &t);
}

/* One stacked per-layer array: layer l's slice is a {rows, cols} view named blk.l.<what>. */
static qn_status add_layers(qn_source* s, const l2c_config* c, const char* what, const float** p,
                            int64_t rows, int64_t cols) {
  char name[QN_NAME_MAX];
  for (int l = 0; l < c->n_layers; l++) {
    snprintf(name, sizeof name, "blk.%d.%s", l, what);
    QN_TRY(add_view(s, name, p, rows, cols));
  }
  return QN_OK;
}

static qn_status add_tensors(qn_source* s, const l2c_config* c, const float* p, bool shared) {
  int64_t dim = c->dim, hidden = c->hidden_dim, vocab = s->hp.vocab_size;
  int64_t q_dim = (int64_t)c->n_heads * s->hp.head_dim;
  int64_t kv_dim = (int64_t)c->n_kv_heads * s->hp.head_dim;
  QN_TRY(add_view(s, "token_embd.weight", &p, vocab, dim));
  QN_TRY(add_layers(s, c, "attn_norm.weight", &p, 0, dim));
  QN_TRY(add_layers(s, c, "attn_q.weight", &p, q_dim, dim));
  QN_TRY(add_layers(s, c, "attn_k.weight", &p, kv_dim, dim));
  QN_TRY(add_layers(s, c, "attn_v.weight", &p, kv_dim, dim));
  QN_TRY(add_layers(s, c, "attn_output.weight", &p, dim, q_dim));
  QN_TRY(add_layers(s, c, "ffn_norm.weight", &p, 0, dim));
  QN_TRY(add_layers(s, c, "ffn_gate.weight", &p, hidden, dim));
  QN_TRY(add_layers(s, c, "ffn_down.weight", &p, dim, hidden));
  QN_TRY(add_layers(s, c, "ffn_up.weight", &p, hidden, dim));
  QN_TRY(add_view(s, "output_norm.weight", &p, 0, dim));
  p += 2 * ((int64_t)c->seq_len * s->hp.head_dim / 2); /* freq_cis_real, freq_cis_imag */
  if (!shared) QN_TRY(add_view(s, "output.weight", &p, vocab, dim));
  return QN_OK;
}

static void fill_hparams(qn_hparams* hp, const l2c_config* c, bool shared) {
  memset(hp, 0, sizeof *hp);
  snprintf(hp->arch, sizeof hp->arch, "llama");
  hp->dim = c->dim;
  hp->hidden_dim = c->hidden_dim;
  hp->n_layers = c->n_layers;
  hp->n_heads = c->n_heads;
  hp->n_kv_heads = c->n_kv_heads;
  hp->head_dim = c->dim / c->n_heads;
  hp->vocab_size = c->vocab_size < 0 ? -c->vocab_size : c->vocab_size;
  hp->max_seq_len = c->seq_len;
  hp->norm_eps = 1e-5f;
  hp->rope_theta = 10000.0f;
  hp->rope_style = QN_ROPE_ADJACENT;
  hp->rope_scaling = QN_ROPE_SCALING_NONE;
  hp->rope_factor = 1.0f;
  hp->tied_embeddings = shared;
  hp->qkv_bias = false;
}

/* Finds the tokenizer: the given path, else tokenizer.bin or tok<vocab>.bin beside path. */
static qn_status load_tokenizer(qn_source* s, const char* path, const char* tokenizer_path) {
  if (tokenizer_path && *tokenizer_path)
    return qn_l2c_tokenizer_load(tokenizer_path, s->hp.vocab_size, &s->vocab);
  char dir[1024], cand[2][1100];
  const char* slash = strrchr(path, '/');
  if (slash)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else
    snprintf(dir, sizeof dir, ".");
  if (slash == path) snprintf(dir, sizeof dir, "/");
  const char* sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
  snprintf(cand[0], sizeof cand[0], "%s%stokenizer.bin", dir, sep);
  snprintf(cand[1], sizeof cand[1], "%s%stok%d.bin", dir, sep, s->hp.vocab_size);
  for (int i = 0; i < 2; i++)
    if (qn_is_file(cand[i])) return qn_l2c_tokenizer_load(cand[i], s->hp.vocab_size, &s->vocab);
  return qn_error(QN_EIO,
                  "%s: no tokenizer found (tried %s and %s); give one with --tokenizer PATH", path,
                  cand[0], cand[1]);
}

qn_status qn_llama2c_open(qn_source* s, const char* path, const char* tokenizer_path) {
  const qn_mapfile* mf = NULL;
  l2c_config c = {0};
  s->format = QN_FORMAT_LLAMA2C;
  if (!s->path[0]) snprintf(s->path, sizeof s->path, "%s", path);
  QN_TRY(qn_source_add_map(s, path, &mf));
  QN_TRY(read_config(mf, &c));
  bool shared = c.vocab_size > 0;
  uint64_t want = L2C_HEADER_BYTES + expected_floats(&c, shared) * sizeof(float);
  if ((uint64_t)mf->size != want)
    return qn_error(QN_EFORMAT,
                    "%s: llama2.c checkpoint should be %llu bytes (dim %d, hidden %d, layers %d, "
                    "heads %d/%d, vocab %d, seq_len %d, %s classifier) but the file has %zu",
                    path, (unsigned long long)want, c.dim, c.hidden_dim, c.n_layers, c.n_heads,
                    c.n_kv_heads, c.vocab_size, c.seq_len, shared ? "shared" : "separate",
                    mf->size);
  fill_hparams(&s->hp, &c, shared);
  QN_TRY(add_tensors(s, &c, (const float*)(const void*)(mf->data + L2C_HEADER_BYTES), shared));
  return load_tokenizer(s, path, tokenizer_path);
}
