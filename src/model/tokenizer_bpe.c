/* tokenizer_bpe.c: the byte-level BPE encoder (GPT-2 style, Hugging Face tokenizer.json): the
 * text is split by the pre-tokenizer regex, every byte of a piece becomes the token of its
 * GPT-2 byte-unicode character, and the merge engine applies ranked merges (lowest rank
 * first, leftmost on ties) within each piece. Decoding maps the characters back to bytes. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/tokenizer_impl.h"

/* GPT-2's pre-tokenizer (the Hugging Face ByteLevel default). */
static const char kGpt2Regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves; the other 68 bytes
 * (0-32, 127-160, 173) take code points 256.. in byte order. */
static unsigned byte_to_cp(unsigned b) {
  if (b <= 32) return 256 + b;
  if (b >= 127 && b <= 160) return b + 162; /* 289..322 */
  if (b == 173) return 323;
  return b;
}

/* Inverse of byte_to_cp, -1 for code points outside the alphabet. */
static int cp_to_byte(unsigned cp) {
  if (cp < 256) return byte_to_cp(cp) == cp ? (int)cp : -1;
  if (cp <= 288) return (int)(cp - 256);
  if (cp <= 322) return (int)(cp - 162);
  if (cp == 323) return 173;
  return -1;
}

/* UTF-8 encoding of a code point below 0x800; returns its length. */
static int utf8_put2(unsigned cp, char* out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  out[0] = (char)(0xc0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3f));
  return 2;
}

qn_status qn_tok_bpe_build(qn_tokenizer* t) {
  for (unsigned b = 0; b < 256; b++) {
    char u[2];
    int n = utf8_put2(byte_to_cp(b), u);
    t->byte_ids[b] = qn_tok_lookup(t, u, (size_t)n);
  }
  QN_TRY(qn_tok_compile_regex(t, t->v->pretok_regex ? t->v->pretok_regex : kGpt2Regex));
  return qn_tok_load_merges(t);
}

/* One pre-tokenized piece: a symbol per byte, then merges. */
static qn_status encode_piece(const qn_tokenizer* t, const char* s, size_t n, qn_tok_work* w,
                              qn_tok_ids* out) {
  QN_TRY(qn_tok_work_reserve_syms(w, n));
  for (size_t i = 0; i < n; i++) {
    int id = t->byte_ids[(unsigned char)s[i]];
    if (id < 0) id = t->v->unk_id;
    if (id >= 0) qn_tok_work_add_sym(w, id);
  }
  return qn_tok_merge(t, w, out);
}

qn_status qn_tok_bpe_encode(const qn_tokenizer* t, const char* s, size_t n, bool seg_start,
                            qn_tok_work* w, qn_tok_ids* out) {
  if (seg_start && t->v->add_space_prefix && s[0] != ' ') {
    if (n == SIZE_MAX) return qn_error(QN_ERANGE, "tokenizer: text too long");
    QN_TRY(qn_tok_work_reserve_buf(w, n + 1));
    w->buf[0] = ' ';
    memcpy(w->buf + 1, s, n);
    return qn_tok_split_regex(t, w->buf, n + 1, w, out, encode_piece);
  }
  return qn_tok_split_regex(t, s, n, w, out, encode_piece);
}

int qn_tok_bpe_piece(const qn_tokenizer* t, int id, char* buf, int cap) {
  const qn_vocab* v = t->v;
  const unsigned char* s = (const unsigned char*)v->tokens[id];
  int n = t->tok_len[id];
  if (!s) return 0;
  uint8_t attr = v->attrs[id];
  if (attr == QN_TOKEN_CONTROL || attr == QN_TOKEN_USER_DEFINED) { /* added tokens: raw text */
    if (cap > 0) memcpy(buf, s, (size_t)(n < cap ? n : cap));
    return n;
  }
  int w = 0;
  for (int i = 0; i < n;) {
    int k = (int)qn_tok_utf8_len(s + i, (size_t)(n - i));
    unsigned cp = s[i];
    if (k == 2) cp = (unsigned)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
    int b = k <= 2 ? cp_to_byte(cp) : -1;
    if (b >= 0) {
      if (w < cap) buf[w] = (char)b;
      w++;
    } else { /* outside the byte alphabet: copy as is */
      for (int j = 0; j < k; j++, w++)
        if (w < cap) buf[w] = (char)s[i + j];
    }
    i += k;
  }
  return w;
}
