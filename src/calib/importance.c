/* importance.c: calibration windows and per-channel activation energies (see importance.h).
 * One FP32 pass: every window runs through qn_ctx_forward with an observe hook that adds
 * x_tj^2 into the slot's per-channel sums (in double). */
#include "calib/importance.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/calibrate.h"
#include "core/clock.h"
#include "core/mapfile.h"

/* Bytes of text tokenized per call (cut after a newline when there is one). */
#define TEXT_PIECE (1 << 16)
/* Tokens per forward call of the energy pass: bounds the logits buffer. */
#define FORWARD_PIECE 256
/* Fewest calibration tokens accepted. */
#define MIN_TOKENS 64

/* ---- windows ---- */

void qn_token_windows_free(qn_token_windows* w) {
  if (!w) return;
  free(w->ids);
  free(w->off);
  memset(w, 0, sizeof *w);
}

static size_t piece_end(const char* text, size_t len, size_t at) {
  if (len - at <= TEXT_PIECE) return len;
  size_t e = at + TEXT_PIECE;
  for (size_t i = e; i > at + TEXT_PIECE / 2; i--)
    if (text[i - 1] == '\n') return i;
  while (e > at + 1 && ((unsigned char)text[e] & 0xC0) == 0x80) e--;
  return e;
}

/* Room for `need` ids in w->ids and one more window offset. */
static qn_status reserve(qn_token_windows* w, int64_t* cap, int64_t need) {
  if (need <= *cap) return QN_OK;
  int64_t nc = *cap ? *cap : 65536;
  while (nc < need) nc *= 2;
  int* g = realloc(w->ids, sizeof(int) * (size_t)nc);
  if (!g) return qn_error(QN_ENOMEM, "out of memory for %lld calibration tokens", (long long)nc);
  w->ids = g;
  *cap = nc;
  return QN_OK;
}

/* Appends ids, opening a new window (BOS first when bos >= 0) whenever the last is full. */
static qn_status add_ids(qn_token_windows* w, int64_t* cap, const int* ids, int n, int bos,
                         int64_t budget) {
  for (int i = 0; i < n; i++) {
    int64_t total = w->off[w->n_win];
    if (total >= budget) return QN_OK;
    bool open = w->n_win == 0 || total - w->off[w->n_win - 1] >= w->ctx;
    QN_TRY(reserve(w, cap, total + 2));
    if (open) {
      int64_t* g = realloc(w->off, sizeof(int64_t) * (size_t)(w->n_win + 2));
      if (!g) return qn_error(QN_ENOMEM, "out of memory for calibration windows");
      w->off = g;
      w->n_win++;
      w->off[w->n_win] = total;
      if (bos >= 0) w->ids[w->off[w->n_win]++] = bos;
    }
    w->ids[w->off[w->n_win]++] = ids[i];
  }
  return QN_OK;
}

qn_status qn_token_windows_make(qn_model* m, const char* path, int64_t budget, int ctx,
                                qn_token_windows* out) {
  memset(out, 0, sizeof *out);
  if (ctx < 2) return qn_error(QN_EINVAL, "calibration window of %d tokens is too short", ctx);
  if (budget < MIN_TOKENS)
    return qn_error(QN_EINVAL, "%lld calibration tokens are too few: at least %d are needed",
                    (long long)budget, MIN_TOKENS);
  const qn_vocab* v = &m->src->vocab;
  int bos = v->add_bos && v->bos_id >= 0 && ctx > 2 ? v->bos_id : -1;
  char* text = NULL;
  size_t len = 0;
  QN_TRY(qn_read_text_file(path, &text, &len));
  out->ctx = ctx;
  out->off = calloc(1, sizeof *out->off);
  int64_t cap = 0;
  qn_status st = out->off ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  for (size_t at = 0; st == QN_OK && at < len && out->off[out->n_win] < budget;) {
    size_t end = piece_end(text, len, at);
    int* piece = NULL;
    int np = 0;
    st = qn_tokenizer_encode(m->tok, text + at, end - at, false, &piece, &np);
    if (st == QN_OK) st = add_ids(out, &cap, piece, np, bos, budget);
    free(piece);
    at = end;
  }
  free(text);
  int64_t got = out->off ? out->off[out->n_win] : 0;
  if (st == QN_OK && got < MIN_TOKENS)
    st = qn_error(QN_EINVAL,
                  "calibration text '%s' is too short: it gives %lld tokens; at least %d are "
                  "needed",
                  path, (long long)got, MIN_TOKENS);
  if (st != QN_OK) qn_token_windows_free(out);
  return st;
}

/* ---- energies ---- */

void qn_importance_free(qn_importance* imp) {
  if (!imp) return;
  for (int i = 0; i < imp->n_slots; i++) {
    if (imp->energy) free(imp->energy[i]);
    if (imp->weight) free(imp->weight[i]);
  }
  free(imp->energy);
  free(imp->weight);
  free(imp);
}

static int slot_of(int n_layers, int layer, qn_act_site site) {
  return (layer < 0 ? n_layers : layer) * QN_SITE_COUNT + (int)site;
}

static int site_width(const qn_hparams* hp, qn_act_site site) {
  if (site == QN_SITE_ATTN_OUT) return hp->n_heads * hp->head_dim;
  if (site == QN_SITE_FFN_MID) return hp->hidden_dim;
  return hp->dim;
}

static qn_status importance_new(const qn_hparams* hp, qn_importance** out) {
  qn_importance* imp = calloc(1, sizeof *imp);
  if (!imp) return qn_error(QN_ENOMEM, "out of memory");
  imp->n_layers = hp->n_layers;
  imp->n_slots = (hp->n_layers + 1) * QN_SITE_COUNT;
  imp->tied = hp->tied_embeddings;
  imp->energy = calloc((size_t)imp->n_slots, sizeof *imp->energy);
  imp->weight = calloc((size_t)imp->n_slots, sizeof *imp->weight);
  qn_status st = imp->energy && imp->weight ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  static const qn_act_site sites[4] = {QN_SITE_ATTN_IN, QN_SITE_ATTN_OUT, QN_SITE_FFN_IN,
                                       QN_SITE_FFN_MID};
  for (int l = -1; l < hp->n_layers && st == QN_OK; l++)
    for (int k = 0; k < (l < 0 ? 1 : 4) && st == QN_OK; k++) {
      qn_act_site site = l < 0 ? QN_SITE_OUTPUT_IN : sites[k];
      int slot = slot_of(hp->n_layers, l, site);
      imp->energy[slot] = calloc((size_t)site_width(hp, site), sizeof(double));
      if (!imp->energy[slot]) st = qn_error(QN_ENOMEM, "out of memory");
    }
  if (st != QN_OK) {
    qn_importance_free(imp);
    return st;
  }
  *out = imp;
  return QN_OK;
}

static void on_observe(void* user, int layer, qn_act_site site, const float* x, int n, int width) {
  qn_importance* imp = user;
  if (layer >= imp->n_layers || (int)site < 0 || site >= QN_SITE_COUNT) return;
  double* e = imp->energy[slot_of(imp->n_layers, layer, site)];
  if (!e) return;
  for (int t = 0; t < n; t++) {
    const float* row = x + (size_t)t * width;
    for (int j = 0; j < width; j++)
      if (isfinite(row[j])) e[j] += (double)row[j] * row[j];
  }
}

/* Divides the sums by the token count and derives the normalised column weights. */
static qn_status finish(qn_importance* imp, const qn_hparams* hp) {
  for (int i = 0; i < imp->n_slots; i++) {
    if (!imp->energy[i]) continue;
    int width = site_width(hp, (qn_act_site)(i % QN_SITE_COUNT));
    double mean = 0;
    for (int j = 0; j < width; j++) {
      imp->energy[i][j] /= (double)(imp->tokens > 0 ? imp->tokens : 1);
      mean += imp->energy[i][j];
    }
    mean /= width;
    imp->weight[i] = malloc(sizeof(float) * (size_t)width);
    if (!imp->weight[i]) return qn_error(QN_ENOMEM, "out of memory");
    for (int j = 0; j < width; j++) {
      float w = mean > 0 ? (float)(imp->energy[i][j] / mean) : 1.0f;
      imp->weight[i][j] = isfinite(w) && w > QN_IMPORTANCE_FLOOR ? w : QN_IMPORTANCE_FLOOR;
    }
  }
  return QN_OK;
}

/* Runs every window through the model with the hook set. */
static qn_status run_windows(qn_model* m, const qn_token_windows* w, qn_importance* imp,
                             const qn_importance_opts* o) {
  qn_ctx* c = NULL;
  QN_TRY(qn_ctx_new(m, w->ctx, 1, &c));
  int* pos = malloc(sizeof(int) * (size_t)w->ctx);
  float* logits = malloc(sizeof(float) * FORWARD_PIECE * (size_t)m->src->hp.vocab_size);
  qn_status st = pos && logits ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  for (int i = 0; pos && i < w->ctx; i++) pos[i] = i;
  c->observe = on_observe;
  c->observe_user = imp;
  int64_t total = w->off[w->n_win];
  for (int i = 0; i < w->n_win && st == QN_OK; i++) {
    const int* ids = w->ids + w->off[i];
    int n = (int)(w->off[i + 1] - w->off[i]);
    qn_ctx_reset(c, -1);
    for (int p = 0; p < n && st == QN_OK; p += FORWARD_PIECE) {
      int np = n - p < FORWARD_PIECE ? n - p : FORWARD_PIECE;
      st = qn_ctx_forward(c, ids + p, pos + p, NULL, np, logits, true);
    }
    imp->tokens += n;
    if (st == QN_OK && o->progress &&
        o->progress(o->progress_user, "importance", imp->tokens, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  free(logits);
  free(pos);
  qn_ctx_free(c);
  return st;
}

qn_status qn_importance_run(qn_model* m, const char* calib_path, const qn_importance_opts* o,
                            qn_importance** out) {
  *out = NULL;
  double t0 = qn_now();
  const qn_hparams* hp = &m->src->hp;
  if (o->max_tokens < 0) return qn_error(QN_EINVAL, "--calib-tokens must be positive");
  int ctx = o->ctx > 0 ? o->ctx : 512;
  if (ctx > hp->max_seq_len) ctx = hp->max_seq_len;
  int64_t budget = o->max_tokens > 0 ? o->max_tokens : QN_IMPORTANCE_DEFAULT_TOKENS;
  qn_token_windows w;
  QN_TRY(qn_token_windows_make(m, calib_path, budget, ctx, &w));
  qn_importance* imp = NULL;
  qn_status st = importance_new(hp, &imp);
  if (st == QN_OK) st = run_windows(m, &w, imp, o);
  if (st == QN_OK) st = finish(imp, hp);
  qn_token_windows_free(&w);
  if (st != QN_OK) {
    qn_importance_free(imp);
    return st;
  }
  imp->seconds = qn_now() - t0;
  *out = imp;
  return QN_OK;
}

const float* qn_importance_of(const qn_importance* imp, const char* name) {
  int layer = 0;
  qn_act_site site = QN_SITE_ATTN_IN;
  if (!imp || !qn_calib_site_of_weight(name, &layer, &site)) return NULL;
  if (!strcmp(name, "token_embd.weight") && !imp->tied) return NULL; /* only looked up */
  if (layer >= imp->n_layers) return NULL;
  return imp->weight[slot_of(imp->n_layers, layer, site)];
}
