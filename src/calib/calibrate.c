/* calibrate.c: calibration runs. The text is tokenized in pieces (only as much as the token
 * budget needs), cut into windows of ctx tokens (BOS first when the vocabulary adds one),
 * and each window runs through the FP32 forward pass with ctx->observe set; the callback
 * feeds the observer of (layer, site) and keeps an evenly spread, fixed-size sample of rows
 * (plus the rows with the largest max |x|) when asked. Nothing grows with the number of tokens
 * except the token ids themselves. */
#include "calib/calibrate.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/status.h"

/* Tokens per forward call: bounds the logits buffer (rows x vocab floats). */
#define CALIB_PIECE 256
/* Bytes of text tokenized at once (cut at a newline). */
#define CALIB_TEXT_CHUNK 65536

static const char* const k_site_names[QN_SITE_COUNT] = {
    "attn_in", "attn_out", "ffn_in", "ffn_mid", "output_in", "k", "v"};

const char* qn_act_site_name(qn_act_site site) {
  return (int)site >= 0 && site < QN_SITE_COUNT ? k_site_names[site] : "?";
}

int qn_calib_slot(const qn_calib* c, int layer, qn_act_site site) {
  int row = layer < 0 ? c->n_layers : layer;
  return row * QN_SITE_COUNT + (int)site;
}

bool qn_calib_site_of_weight(const char* name, int* layer, qn_act_site* site) {
  static const struct {
    const char* suffix;
    qn_act_site site;
  } k_map[] = {{"attn_q.weight", QN_SITE_ATTN_IN},  {"attn_k.weight", QN_SITE_ATTN_IN},
               {"attn_v.weight", QN_SITE_ATTN_IN},  {"attn_output.weight", QN_SITE_ATTN_OUT},
               {"ffn_gate.weight", QN_SITE_FFN_IN}, {"ffn_up.weight", QN_SITE_FFN_IN},
               {"ffn_down.weight", QN_SITE_FFN_MID}};
  if (!strcmp(name, "output.weight") || !strcmp(name, "token_embd.weight")) {
    *layer = -1;
    *site = QN_SITE_OUTPUT_IN;
    return true;
  }
  int l = -1, used = 0;
  if (sscanf(name, "blk.%d.%n", &l, &used) != 1 || used == 0 || l < 0) return false;
  for (size_t i = 0; i < sizeof k_map / sizeof k_map[0]; i++)
    if (!strcmp(name + used, k_map[i].suffix)) {
      *layer = l;
      *site = k_map[i].site;
      return true;
    }
  return false;
}

/* Width of a site's activation rows. */
static int site_width(const qn_hparams* hp, qn_act_site site) {
  switch (site) {
    case QN_SITE_ATTN_OUT: return hp->n_heads * hp->head_dim;
    case QN_SITE_FFN_MID: return hp->hidden_dim;
    case QN_SITE_K:
    case QN_SITE_V: return hp->n_kv_heads * hp->head_dim;
    default: return hp->dim;
  }
}

/* Sites that feed linear layers inside a block (with the head's input: those SmoothQuant can
 * rescale). */
static bool is_linear_input(qn_act_site site) {
  return site == QN_SITE_ATTN_IN || site == QN_SITE_ATTN_OUT || site == QN_SITE_FFN_IN ||
         site == QN_SITE_FFN_MID;
}

void qn_calib_free(qn_calib* c) {
  if (!c) return;
  for (int i = 0; i < c->n_slots; i++) {
    if (c->obs) qn_observer_free(c->obs[i]);
    if (c->sample) free(c->sample[i]);
    if (c->extreme_key) free(c->extreme_key[i]);
  }
  free(c->obs);
  free(c->sample);
  free(c->sample_n);
  free(c->extreme_n);
  free(c->extreme_key);
  free(c->threshold);
  free(c->clipped);
  free(c->div_buf);
  free(c);
}

void qn_calib_drop_samples(qn_calib* c) {
  for (int i = 0; c && i < c->n_slots; i++) {
    free(c->sample[i]);
    free(c->extreme_key[i]);
    c->sample[i] = NULL;
    c->extreme_key[i] = NULL;
    c->sample_n[i] = c->extreme_n[i] = 0;
  }
}

/* Allocates the calibration state and one observer per observed slot. */
static qn_status calib_new(const qn_hparams* hp, const qn_calib_opts* o, qn_calib** out) {
  qn_calib* c = calloc(1, sizeof *c);
  if (!c) return qn_error(QN_ENOMEM, "out of memory");
  c->n_layers = hp->n_layers;
  c->n_slots = (hp->n_layers + 1) * QN_SITE_COUNT;
  c->obs = calloc((size_t)c->n_slots, sizeof *c->obs);
  c->sample = calloc((size_t)c->n_slots, sizeof *c->sample);
  c->sample_n = calloc((size_t)c->n_slots, sizeof *c->sample_n);
  c->extreme_n = calloc((size_t)c->n_slots, sizeof *c->extreme_n);
  c->extreme_key = calloc((size_t)c->n_slots, sizeof *c->extreme_key);
  c->threshold = calloc((size_t)c->n_slots, sizeof *c->threshold);
  c->clipped = calloc((size_t)c->n_slots, sizeof *c->clipped);
  c->sample_cap = o->sample_rows > 0 ? o->sample_rows : 0;
  int widest = hp->dim;
  for (int s = 0; s < QN_SITE_COUNT; s++)
    if (site_width(hp, (qn_act_site)s) > widest) widest = site_width(hp, (qn_act_site)s);
  if (o->divide) c->div_buf = malloc(sizeof(float) * CALIB_PIECE * (size_t)widest);
  qn_status st = QN_OK;
  if (!c->obs || !c->sample || !c->sample_n || !c->extreme_n || !c->extreme_key || !c->threshold ||
      !c->clipped || (o->divide && !c->div_buf))
    st = qn_error(QN_ENOMEM, "out of memory");
  for (int l = -1; l < hp->n_layers && st == QN_OK; l++)
    for (int s = 0; s < QN_SITE_COUNT && st == QN_OK; s++) {
      qn_act_site site = (qn_act_site)s;
      bool want = l < 0 ? site == QN_SITE_OUTPUT_IN
                        : site != QN_SITE_OUTPUT_IN &&
                              (o->observe_kv || (site != QN_SITE_K && site != QN_SITE_V));
      if (!want) continue;
      int slot = qn_calib_slot(c, l, site), w = site_width(hp, site);
      st = qn_observer_new(w, &c->obs[slot]);
      if (st == QN_OK && c->sample_cap > 0 &&
          (is_linear_input(site) || site == QN_SITE_OUTPUT_IN)) {
        size_t rows = (size_t)c->sample_cap + QN_CALIB_EXTREME_ROWS;
        c->sample[slot] = malloc(sizeof(float) * rows * (size_t)w);
        c->extreme_key[slot] = malloc(sizeof(float) * QN_CALIB_EXTREME_ROWS);
        if (!c->sample[slot] || !c->extreme_key[slot])
          st = qn_error(QN_ENOMEM, "out of memory for calibration samples");
      }
    }
  if (st != QN_OK) {
    qn_calib_free(c);
    return st;
  }
  *out = c;
  return QN_OK;
}

/* Offers a row to the slot's extreme rows (kept in the tail of the sample buffer, after
 * sample_cap evenly spread rows, until the run ends): replaces the row with the smallest
 * max |x| when full. */
static void offer_extreme(qn_calib* c, int slot, const float* row, int width) {
  float key = 0;
  for (int j = 0; j < width; j++)
    if (fabsf(row[j]) > key) key = fabsf(row[j]);
  if (!(key <= FLT_MAX)) return; /* non-finite */
  int at = c->extreme_n[slot];
  if (at == QN_CALIB_EXTREME_ROWS) {
    at = 0;
    for (int k = 1; k < QN_CALIB_EXTREME_ROWS; k++)
      if (c->extreme_key[slot][k] < c->extreme_key[slot][at]) at = k;
    if (key <= c->extreme_key[slot][at]) return;
  } else {
    c->extreme_n[slot]++;
  }
  c->extreme_key[slot][at] = key;
  memcpy(c->sample[slot] + ((size_t)c->sample_cap + (size_t)at) * width, row,
         sizeof(float) * (size_t)width);
}

/* After the run: moves the extreme rows right behind the sample_n evenly spread ones. */
static void pack_samples(qn_calib* c) {
  for (int i = 0; i < c->n_slots; i++) {
    if (!c->sample[i] || c->sample_n[i] == c->sample_cap) continue;
    int w = qn_observer_width(c->obs[i]);
    memmove(c->sample[i] + (size_t)c->sample_n[i] * w, c->sample[i] + (size_t)c->sample_cap * w,
            sizeof(float) * (size_t)c->extreme_n[i] * (size_t)w);
  }
}

/* Per-run state seen by the observe callback. */
typedef struct run_state {
  qn_calib* c;
  int64_t* slot_rows; /* [n_slots] rows observed so far per slot (global row index) */
} run_state;

static void on_observe(void* user, int layer, qn_act_site site, const float* x, int n, int width) {
  run_state* r = user;
  qn_calib* c = r->c;
  if (layer >= c->n_layers || (int)site < 0 || site >= QN_SITE_COUNT) return;
  int slot = qn_calib_slot(c, layer, site);
  if (!c->obs[slot] || qn_observer_width(c->obs[slot]) != width) return;
  const float* s = c->divide && slot < c->divide->n_slots ? c->divide->s[slot] : NULL;
  for (int t0 = 0; t0 < n; t0 += CALIB_PIECE) {
    int nt = n - t0 < CALIB_PIECE ? n - t0 : CALIB_PIECE;
    const float* rows = x + (size_t)t0 * width;
    if (s) {
      for (int t = 0; t < nt; t++)
        for (int j = 0; j < width; j++)
          c->div_buf[(size_t)t * width + j] = rows[(size_t)t * width + j] / s[j];
      rows = c->div_buf;
    }
    qn_observer_update(c->obs[slot], rows, nt);
    if (c->sample[slot]) {
      for (int t = 0; t < nt; t++) {
        int64_t g = r->slot_rows[slot] + t;
        if (g % c->stride == 0 && c->sample_n[slot] < c->sample_cap)
          memcpy(c->sample[slot] + (size_t)c->sample_n[slot]++ * width, rows + (size_t)t * width,
                 sizeof(float) * (size_t)width);
        offer_extreme(c, slot, rows + (size_t)t * width, width);
      }
    }
    r->slot_rows[slot] += nt;
  }
}

/* End of the text piece that starts at `at`: at most CALIB_TEXT_CHUNK bytes, cut after the
 * last newline in it (or before a UTF-8 continuation byte when there is none). */
static size_t piece_end(const char* text, size_t len, size_t at) {
  if (len - at <= CALIB_TEXT_CHUNK) return len;
  size_t e = at + CALIB_TEXT_CHUNK;
  for (size_t i = e; i > at + CALIB_TEXT_CHUNK / 2; i--)
    if (text[i - 1] == '\n') return i;
  while (e > at + 1 && ((unsigned char)text[e] & 0xC0) == 0x80) e--;
  return e;
}

/* Tokenizes text piece by piece until at least `want` ids are held (no BOS). */
static qn_status tokenize_prefix(const qn_model* m, const char* text, size_t len, int64_t want,
                                 int** ids_out, int64_t* n_out) {
  int* ids = NULL;
  int64_t n = 0, cap = 0;
  qn_status st = QN_OK;
  for (size_t at = 0; at < len && n < want && st == QN_OK;) {
    size_t end = piece_end(text, len, at);
    int* piece = NULL;
    int np = 0;
    st = qn_tokenizer_encode(m->tok, text + at, end - at, false, &piece, &np);
    if (st == QN_OK && n + np > cap) {
      int64_t nc = cap ? cap * 2 : 65536;
      while (nc < n + np) nc *= 2;
      int* g = realloc(ids, sizeof(int) * (size_t)nc);
      if (!g)
        st = qn_error(QN_ENOMEM, "out of memory for calibration tokens");
      else {
        ids = g;
        cap = nc;
      }
    }
    if (st == QN_OK && np > 0) {
      memcpy(ids + n, piece, sizeof(int) * (size_t)np);
      n += np;
    }
    free(piece);
    at = end;
  }
  if (st != QN_OK) {
    free(ids);
    return st;
  }
  *ids_out = ids;
  *n_out = n;
  return QN_OK;
}

/* Fraction of ids that are unknown or byte-fallback tokens (for byte-level BPE: tokens that
 * stand for one non-ASCII byte, what text the vocabulary never saw falls back to). */
static double fallback_fraction(const qn_model* m, const int* ids, int64_t n) {
  const qn_vocab* v = &m->src->vocab;
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    int id = ids[i];
    if (id < 0 || id >= v->n_tokens) continue;
    uint8_t a = v->attrs ? v->attrs[id] : QN_TOKEN_NORMAL;
    bool fb = a == QN_TOKEN_BYTE || a == QN_TOKEN_UNKNOWN || id == v->unk_id;
    if (!fb && v->kind == QN_VOCAB_BPE) {
      char b[8];
      int nb = qn_tokenizer_token_bytes(m->tok, id, -1, b, (int)sizeof b);
      fb = nb == 1 && ((unsigned char)b[0] & 0x80);
    }
    bad += fb;
  }
  return n ? (double)bad / (double)n : 0.0;
}

/* Runs the windows through the model. */
static qn_status run_windows(qn_model* m, qn_calib* c, const int* ids, int64_t n_ids, int bos,
                             int64_t budget, const qn_calib_opts* o) {
  const qn_hparams* hp = &m->src->hp;
  const int W = c->ctx, text_per = W - (bos >= 0);
  qn_ctx* x = NULL;
  QN_TRY(qn_ctx_new(m, W, 1, &x));
  int* win = malloc(sizeof(int) * (size_t)W);
  int* pos = malloc(sizeof(int) * (size_t)W);
  float* logits = malloc(sizeof(float) * CALIB_PIECE * (size_t)hp->vocab_size);
  int64_t* slot_rows = calloc((size_t)c->n_slots, sizeof *slot_rows);
  qn_status st = QN_OK;
  if (!win || !pos || !logits || !slot_rows)
    st = qn_error(QN_ENOMEM, "out of memory for calibration windows");
  run_state rs = {c, slot_rows};
  x->observe = on_observe;
  x->observe_user = &rs;
  for (int i = 0; i < W && st == QN_OK; i++) pos[i] = i;
  int64_t at = 0;
  while (st == QN_OK && at < n_ids && c->tokens < budget) {
    int nw = 0;
    if (bos >= 0) win[nw++] = bos;
    int64_t take = n_ids - at < text_per ? n_ids - at : text_per;
    if (take > budget - c->tokens - nw) take = budget - c->tokens - nw;
    if (take <= 0) break;
    memcpy(win + nw, ids + at, sizeof(int) * (size_t)take);
    nw += (int)take;
    at += take;
    if (nw < 2) break;
    qn_ctx_reset(x, -1);
    for (int p = 0; p < nw && st == QN_OK; p += CALIB_PIECE) {
      int np = nw - p < CALIB_PIECE ? nw - p : CALIB_PIECE;
      st = qn_ctx_forward(x, win + p, pos + p, NULL, np, logits, true);
    }
    c->tokens += nw;
    c->windows++;
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "calibrate", c->tokens, budget))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK && o->progress) o->progress(o->progress_user, "calibrate", budget, budget);
  free(slot_rows);
  free(logits);
  free(pos);
  free(win);
  qn_ctx_free(x);
  return st;
}

qn_status qn_calib_run(qn_model* m, const char* text, size_t len, const char* what,
                       const qn_calib_opts* o, qn_calib** out) {
  *out = NULL;
  qn_calib_opts def;
  if (!o) {
    memset(&def, 0, sizeof def);
    o = &def;
  }
  if (!what) what = "calibration text";
  const qn_hparams* hp = &m->src->hp;
  const qn_vocab* v = &m->src->vocab;
  if (o->max_tokens < 0) return qn_error(QN_EINVAL, "--calib-tokens must be positive");
  if (o->ctx < 0) return qn_error(QN_EINVAL, "--calib-ctx must be positive");
  if (o->max_tokens > 0 && o->max_tokens < QN_CALIB_MIN_TOKENS)
    return qn_error(QN_EINVAL, "--calib-tokens %lld is too few: at least %d are needed",
                    (long long)o->max_tokens, QN_CALIB_MIN_TOKENS);
  if (o->ctx > 0 && o->ctx < 2) return qn_error(QN_EINVAL, "--calib-ctx must be at least 2");
  if (o->divide && o->divide->n_slots != (hp->n_layers + 1) * QN_SITE_COUNT)
    return qn_error(QN_EINVAL, "calibration divisors are for another model");
  int ctx = o->ctx > 0 ? o->ctx : QN_CALIB_DEFAULT_CTX;
  if (ctx > hp->max_seq_len) ctx = hp->max_seq_len;
  int64_t budget = o->max_tokens > 0 ? o->max_tokens : QN_CALIB_DEFAULT_TOKENS;
  int bos = v->add_bos && v->bos_id >= 0 && ctx > 2 ? v->bos_id : -1;

  int* ids = NULL;
  int64_t n_ids = 0;
  QN_TRY(tokenize_prefix(m, text, len, budget, &ids, &n_ids));
  if (n_ids < QN_CALIB_MIN_TOKENS) {
    free(ids);
    if (n_ids == 0)
      return qn_error(QN_EINVAL, "%s is empty: it gives 0 tokens; at least %d are needed", what,
                      QN_CALIB_MIN_TOKENS);
    return qn_error(QN_EINVAL, "%s is too short: it gives %lld tokens; at least %d are needed",
                    what, (long long)n_ids, QN_CALIB_MIN_TOKENS);
  }
  /* tokens the run will take: the text (plus one BOS per window), capped by the budget */
  int64_t windows = (n_ids + (ctx - (bos >= 0)) - 1) / (ctx - (bos >= 0));
  int64_t planned = n_ids + (bos >= 0 ? windows : 0);
  if (planned > budget) planned = budget;

  qn_calib* c = NULL;
  qn_status st = calib_new(hp, o, &c);
  if (st == QN_OK) {
    c->ctx = ctx;
    c->divide = o->divide;
    c->fallback_frac = fallback_fraction(m, ids, n_ids < planned ? n_ids : planned);
    c->stride = c->sample_cap > 0 ? (planned + c->sample_cap - 1) / c->sample_cap : 1;
    if (c->stride < 1) c->stride = 1;
    c->method = QN_CALIB_METHOD_COUNT;
    st = run_windows(m, c, ids, n_ids, bos, planned, o);
    c->divide = NULL;
    if (st == QN_OK) pack_samples(c);
  }
  free(ids);
  if (st != QN_OK) {
    qn_calib_free(c);
    return st;
  }
  *out = c;
  return QN_OK;
}

qn_status qn_calib_run_file(qn_model* m, const char* path, const qn_calib_opts* o, qn_calib** out) {
  *out = NULL;
  char* text = NULL;
  size_t len = 0;
  qn_status st = qn_read_text_file(path, &text, &len);
  if (st != QN_OK) return st;
  char what[1100];
  snprintf(what, sizeof what, "calibration text '%s'", path);
  st = qn_calib_run(m, text, len, what, o, out);
  free(text);
  return st;
}

qn_status qn_calib_choose(qn_calib* c, qn_calib_method method, double percentile) {
  if ((int)method < 0 || method >= QN_CALIB_METHOD_COUNT)
    return qn_error(QN_EINVAL, "unknown calibration method %d", (int)method);
  if (percentile == 0) percentile = QN_CALIB_DEFAULT_PERCENTILE;
  if (method == QN_CALIB_PERCENTILE && !(percentile > 0 && percentile < 100))
    return qn_error(QN_EINVAL, "--percentile %g is out of range: it must lie in (0, 100)",
                    percentile);
  for (int i = 0; i < c->n_slots; i++) {
    if (!c->obs[i]) continue;
    float T = 0;
    if (qn_observer_count(c->obs[i]) == 0) {
      c->threshold[i] = 0;
      c->clipped[i] = 0;
      continue;
    }
    QN_TRY(qn_observer_threshold(c->obs[i], method, percentile, &T));
    c->threshold[i] = T;
    c->clipped[i] = qn_observer_clipped_fraction(c->obs[i], T);
  }
  c->method = method;
  c->percentile = percentile;
  return QN_OK;
}

const qn_observer* qn_calib_observer(const qn_calib* c, int layer, qn_act_site site) {
  if (!c || layer < -1 || layer >= c->n_layers || (int)site < 0 || site >= QN_SITE_COUNT)
    return NULL;
  return c->obs[qn_calib_slot(c, layer, site)];
}

float qn_calib_threshold(const qn_calib* c, int layer, qn_act_site site) {
  if (!qn_calib_observer(c, layer, site)) return 0;
  return c->threshold[qn_calib_slot(c, layer, site)];
}

/* A float as a JSON number, finite values only (cJSON writes null for NaN/inf). */
static void add_num(cJSON* o, const char* key, double v) {
  cJSON_AddNumberToObject(o, key, isfinite(v) ? v : 0.0);
}

cJSON* qn_calib_summary_json(const qn_calib* c) {
  cJSON* j = cJSON_CreateObject();
  if (!j) return NULL;
  bool chosen = c->method < QN_CALIB_METHOD_COUNT;
  cJSON_AddStringToObject(j, "method", chosen ? qn_calib_method_name(c->method) : "none");
  if (chosen && c->method == QN_CALIB_PERCENTILE) add_num(j, "percentile", c->percentile);
  add_num(j, "tokens", (double)c->tokens);
  add_num(j, "windows", c->windows);
  add_num(j, "ctx", c->ctx);
  add_num(j, "fallback_frac", c->fallback_frac);
  cJSON* sites = cJSON_AddArrayToObject(j, "sites");
  for (int l = 0; l <= c->n_layers && sites; l++)
    for (int s = 0; s < QN_SITE_COUNT; s++) {
      int layer = l == c->n_layers ? -1 : l;
      const qn_observer* ob = qn_calib_observer(c, layer, (qn_act_site)s);
      if (!ob) continue;
      int slot = qn_calib_slot(c, layer, (qn_act_site)s);
      cJSON* e = cJSON_CreateObject();
      if (!e) break;
      add_num(e, "layer", layer);
      cJSON_AddStringToObject(e, "site", qn_act_site_name((qn_act_site)s));
      add_num(e, "min", qn_observer_min(ob));
      add_num(e, "max", qn_observer_max(ob));
      add_num(e, "absmax", qn_observer_absmax(ob));
      add_num(e, "threshold", c->threshold[slot]);
      add_num(e, "clipped", c->clipped[slot]);
      cJSON_AddItemToArray(sites, e);
    }
  return j;
}
