/* spans.c: documents or windows of tokens to score. */
#include "eval/spans.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model.h"

static qn_status push_span(qn_spans* s, int* cap, const int* ids, int n) {
  if (s->count == *cap) {
    int nc = *cap ? *cap * 2 : 64;
    qn_span* nv = realloc(s->v, sizeof *nv * (size_t)nc);
    if (!nv) return qn_error(QN_ENOMEM, "out of memory");
    s->v = nv;
    *cap = nc;
  }
  int* copy = malloc(sizeof(int) * (size_t)n);
  if (!copy) return qn_error(QN_ENOMEM, "out of memory");
  memcpy(copy, ids, sizeof(int) * (size_t)n);
  s->v[s->count++] = (qn_span){copy, n};
  return QN_OK;
}

static qn_status build_docs(const qn_model* m, const char* text, size_t len, const char* sep,
                            qn_spans* out, int* cap) {
  const qn_vocab* v = &m->src->vocab;
  const int ctx = m->src->hp.max_seq_len;
  size_t seplen = strlen(sep);
  size_t at = 0;
  while (at <= len) {
    const char* hit = NULL;
    if (seplen) {
      /* memmem is not C11: search by hand */
      for (size_t i = at; i + seplen <= len; i++)
        if (memcmp(text + i, sep, seplen) == 0) {
          hit = text + i;
          break;
        }
    }
    size_t end = hit ? (size_t)(hit - text) : len;
    size_t b = at, e = end;
    while (b < e && isspace((unsigned char)text[b])) b++;
    while (e > b && isspace((unsigned char)text[e - 1])) e--;
    if (e > b) {
      int* ids = NULL;
      int n = 0;
      QN_TRY(qn_tokenizer_encode(m->tok, text + b, e - b, v->bos_id >= 0, &ids, &n));
      if (n > ctx + 1) { /* ctx inputs predict ctx + 1 tokens (the last is only a target) */
        n = ctx + 1;
        out->n_truncated++;
      }
      qn_status st = n >= 2 ? push_span(out, cap, ids, n) : QN_OK;
      free(ids);
      QN_TRY(st);
    }
    if (!hit) break;
    at = end + seplen;
  }
  return QN_OK;
}

static qn_status build_windows(const qn_model* m, const char* text, size_t len, int ctx, int chunks,
                               qn_spans* out, int* cap) {
  if (ctx < 2) return qn_error(QN_EINVAL, "--ctx must be at least 2 (got %d)", ctx);
  if (ctx > m->src->hp.max_seq_len)
    return qn_error(QN_ERANGE, "--ctx %d exceeds the model's context of %d", ctx,
                    m->src->hp.max_seq_len);
  int* ids = NULL;
  int n = 0;
  QN_TRY(qn_tokenizer_encode(m->tok, text, len, false, &ids, &n));
  int windows = n / ctx;
  if (chunks > 0 && chunks < windows) windows = chunks;
  if (windows == 0) {
    free(ids);
    return qn_error(QN_EINVAL, "the text has %d tokens, fewer than one window of --ctx %d", n, ctx);
  }
  qn_status st = QN_OK;
  for (int w = 0; w < windows && st == QN_OK; w++)
    st = push_span(out, cap, ids + (size_t)w * ctx, ctx);
  free(ids);
  return st;
}

qn_status qn_spans_build(const qn_model* m, const char* text, size_t len, const qn_ppl_opts* o,
                         qn_spans* out) {
  memset(out, 0, sizeof *out);
  int cap = 0;
  qn_status st;
  if (o->ctx > 0)
    st = build_windows(m, text, len, o->ctx, o->chunks, out, &cap);
  else
    st = build_docs(m, text, len, o->sep ? o->sep : "", out, &cap);
  if (st == QN_OK && out->count == 0)
    st = qn_error(QN_EINVAL, "the text holds nothing to score (no document of 2+ tokens)");
  if (st != QN_OK) qn_spans_free(out);
  return st;
}

void qn_spans_free(qn_spans* s) {
  for (int i = 0; i < s->count; i++) free(s->v[i].tokens);
  free(s->v);
  memset(s, 0, sizeof *s);
}

int64_t qn_spans_predictions(const qn_spans* s) {
  int64_t p = 0;
  for (int i = 0; i < s->count; i++) p += s->v[i].n - 1;
  return p;
}
