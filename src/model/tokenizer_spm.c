/* tokenizer_spm.c: the SentencePiece-BPE encoder (llama2.c / Llama vocabularies): dummy-prefix
 * space, ' ' -> U+2581, one symbol per UTF-8 character (unknown characters fall back to <0xNN>
 * byte tokens), then the merge engine applies the best-scored merge first, leftmost on ties.
 * Merge rules come from the vocabulary's merges list when it has one (HF tokenizer.json),
 * otherwise from every split of a token into two tokens, scored by the token's score. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/tokenizer_impl.h"

static const char kSpace[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's visible space */

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* The byte a "<0xNN>" token stands for, or -1. */
static int byte_token_value(const char* s, int len) {
  if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
  int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Tokens a merge may produce or consume. */
static bool mergeable(uint8_t attr) {
  return attr == QN_TOKEN_NORMAL || attr == QN_TOKEN_USER_DEFINED;
}

/* Every way of writing a token as two tokens becomes a rule scored by the token's score. */
static qn_status rules_from_splits(qn_tokenizer* t) {
  const qn_vocab* v = t->v;
  for (int id = 0; id < v->n_tokens; id++) {
    if (!mergeable(v->attrs[id]) || t->tok_len[id] < 2) continue;
    const char* s = v->tokens[id];
    int n = t->tok_len[id];
    float score = v->scores ? v->scores[id] : -(float)id;
    for (int k = 1; k < n; k++) {
      if (((unsigned char)s[k] & 0xc0) == 0x80) continue; /* not a character boundary */
      int left = qn_tok_lookup(t, s, (size_t)k);
      if (left < 0 || !mergeable(v->attrs[left])) continue;
      int right = qn_tok_lookup(t, s + k, (size_t)(n - k));
      if (right < 0 || !mergeable(v->attrs[right])) continue;
      QN_TRY(qn_tok_add_pair(t, left, right, score, id));
    }
  }
  return QN_OK;
}

qn_status qn_tok_spm_build(qn_tokenizer* t) {
  const qn_vocab* v = t->v;
  for (int id = 0; id < v->n_tokens; id++) {
    if (v->attrs[id] != QN_TOKEN_BYTE || !v->tokens[id]) continue;
    int b = byte_token_value(v->tokens[id], t->tok_len[id]);
    if (b >= 0 && t->byte_ids[b] < 0) t->byte_ids[b] = id;
  }
  if (v->pretok_regex) QN_TRY(qn_tok_compile_regex(t, v->pretok_regex));
  if (v->n_merges > 0) return qn_tok_load_merges(t);
  return rules_from_splits(t);
}

/* Symbols for one piece of normalized text, then merges. */
static qn_status encode_piece(const qn_tokenizer* t, const char* s, size_t n, qn_tok_work* w,
                              qn_tok_ids* out) {
  const qn_vocab* v = t->v;
  QN_TRY(qn_tok_work_reserve_syms(w, n));
  for (size_t i = 0; i < n;) {
    size_t k = qn_tok_utf8_len((const unsigned char*)s + i, n - i);
    int id = qn_tok_lookup(t, s + i, k);
    if (id >= 0 && mergeable(v->attrs[id])) {
      qn_tok_work_add_sym(w, id);
    } else if (v->byte_fallback) {
      for (size_t j = 0; j < k; j++) {
        int b = t->byte_ids[(unsigned char)s[i + j]];
        if (b < 0) b = v->unk_id;
        if (b >= 0) qn_tok_work_add_sym(w, b);
      }
    } else if (v->unk_id >= 0) {
      qn_tok_work_add_sym(w, v->unk_id);
    }
    i += k;
  }
  return qn_tok_merge(t, w, out);
}

qn_status qn_tok_spm_encode(const qn_tokenizer* t, const char* s, size_t n, bool seg_start,
                            qn_tok_work* w, qn_tok_ids* out) {
  if (n > (SIZE_MAX - 3) / 3) return qn_error(QN_ERANGE, "tokenizer: text too long");
  QN_TRY(qn_tok_work_reserve_buf(w, 3 * n + 3));
  char* b = w->buf;
  size_t m = 0;
  if (seg_start && t->v->add_space_prefix) {
    memcpy(b, kSpace, 3);
    m = 3;
  }
  for (size_t i = 0; i < n; i++) {
    if (s[i] == ' ') {
      memcpy(b + m, kSpace, 3);
      m += 3;
    } else {
      b[m++] = s[i];
    }
  }
  if (t->re) return qn_tok_split_regex(t, b, m, w, out, encode_piece);
  return encode_piece(t, b, m, w, out);
}

/* Writes c at buf[pos] if it fits. */
static void put(char* buf, int cap, int pos, char c) {
  if (pos < cap) buf[pos] = c;
}

int qn_tok_spm_piece(const qn_tokenizer* t, int id, int prev, char* buf, int cap) {
  const qn_vocab* v = t->v;
  uint8_t attr = v->attrs[id];
  const char* s = v->tokens[id];
  int n = t->tok_len[id];
  if (attr == QN_TOKEN_CONTROL || !s) return 0;
  if (attr == QN_TOKEN_BYTE) {
    int b = byte_token_value(s, n);
    if (b >= 0) {
      put(buf, cap, 0, (char)b);
      return 1;
    }
  }
  bool strip = prev >= 0 && prev == v->bos_id;
  int w = 0;
  for (int i = 0; i < n;) {
    if (n - i >= 3 && memcmp(s + i, kSpace, 3) == 0) {
      if (!(strip && i == 0)) put(buf, cap, w++, ' ');
      i += 3;
    } else {
      put(buf, cap, w++, s[i++]);
    }
  }
  return w;
}
