/* vocab.c: allocation helpers for qn_vocab. */
#include "format/vocab.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

qn_status qn_vocab_alloc(qn_vocab* v, qn_vocab_kind kind, int n_tokens, bool with_scores) {
  memset(v, 0, sizeof *v);
  v->kind = kind;
  v->bos_id = v->eos_id = v->unk_id = -1;
  if (n_tokens <= 0) return qn_error(QN_EFORMAT, "vocabulary is empty");
  v->n_tokens = n_tokens;
  v->tokens = calloc((size_t)n_tokens, sizeof(char*));
  v->attrs = malloc((size_t)n_tokens);
  if (with_scores) v->scores = calloc((size_t)n_tokens, sizeof(float));
  if (!v->tokens || !v->attrs || (with_scores && !v->scores)) {
    qn_vocab_free(v);
    return qn_error(QN_ENOMEM, "out of memory for a vocabulary of %d tokens", n_tokens);
  }
  memset(v->attrs, QN_TOKEN_NORMAL, (size_t)n_tokens);
  return QN_OK;
}

qn_status qn_vocab_set_token(qn_vocab* v, int i, const char* s, size_t len) {
  if (i < 0 || i >= v->n_tokens) return qn_error(QN_EINVAL, "token id %d out of range", i);
  char* c = malloc(len + 1);
  if (!c) return qn_error(QN_ENOMEM, "out of memory");
  memcpy(c, s, len);
  c[len] = '\0';
  free(v->tokens[i]);
  v->tokens[i] = c;
  return QN_OK;
}

void qn_vocab_free(qn_vocab* v) {
  if (!v) return;
  if (v->tokens)
    for (int i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
  free(v->tokens);
  free(v->scores);
  free(v->attrs);
  if (v->merges)
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
  free(v->merges);
  free(v->pretok_regex);
  memset(v, 0, sizeof *v);
  v->bos_id = v->eos_id = v->unk_id = -1;
}
