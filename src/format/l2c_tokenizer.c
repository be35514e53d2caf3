/* l2c_tokenizer.c: reads llama2.c's tokenizer.bin into a qn_vocab (SentencePiece BPE).
 * Layout (little-endian): int32 max_token_len, then per token: f32 score, int32 len, len bytes.
 * llama2.c writes spaces as ' ' and the specials as "\n<s>\n" / "\n</s>\n"; the vocab stores
 * them the SentencePiece way (U+2581, "<s>", "</s>") so every SPM vocabulary looks alike. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mapfile.h"
#include "core/status.h"
#include "format/tokenizer_load.h"

/* A bounds-checked cursor over the mapped file. */
typedef struct reader {
  const uint8_t* p; /* file bytes */
  size_t size;      /* file size, bytes */
  size_t pos;       /* read offset, bytes */
} reader;

static bool read_u32(reader* r, uint32_t* out) {
  if (r->size - r->pos < 4) return false;
  const uint8_t* b = r->p + r->pos;
  *out = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
  r->pos += 4;
  return true;
}

/* Copies s[0..n) into token i, turning ' ' into U+2581. */
static qn_status set_spm_text(qn_vocab* v, int i, const uint8_t* s, size_t n) {
  size_t spaces = 0;
  for (size_t k = 0; k < n; k++) spaces += s[k] == ' ';
  char* c = malloc(n + 2 * spaces + 1);
  if (!c) return qn_error(QN_ENOMEM, "out of memory");
  size_t m = 0;
  for (size_t k = 0; k < n; k++) {
    if (s[k] == ' ') {
      memcpy(c + m, "\xe2\x96\x81", 3);
      m += 3;
    } else {
      c[m++] = (char)s[k];
    }
  }
  c[m] = '\0';
  free(v->tokens[i]);
  v->tokens[i] = c;
  return QN_OK;
}

static bool is_byte_token(const char* s) {
  return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
         strchr("0123456789ABCDEFabcdef", s[3]) && strchr("0123456789ABCDEFabcdef", s[4]);
}

/* Reads the token records. */
static qn_status read_tokens(const char* path, reader* r, qn_vocab* v) {
  uint32_t max_len;
  if (!read_u32(r, &max_len) || max_len > (1u << 20))
    return qn_error(QN_EFORMAT, "%s: not a llama2.c tokenizer (bad max_token_len)", path);
  for (int i = 0; i < v->n_tokens; i++) {
    uint32_t score_bits, len;
    if (!read_u32(r, &score_bits) || !read_u32(r, &len))
      return qn_error(QN_EFORMAT, "%s: truncated at token %d of %d", path, i, v->n_tokens);
    float score;
    memcpy(&score, &score_bits, sizeof score);
    if (!isfinite(score))
      return qn_error(QN_EFORMAT, "%s: token %d has a non-finite score", path, i);
    if (len > (1u << 20) || len > r->size - r->pos)
      return qn_error(QN_EFORMAT, "%s: token %d: length %u runs past the end of the file", path, i,
                      len);
    const uint8_t* s = r->p + r->pos;
    if (memchr(s, 0, len)) return qn_error(QN_EFORMAT, "%s: token %d contains a NUL byte", path, i);
    r->pos += len;
    v->scores[i] = score;
    QN_TRY(set_spm_text(v, i, s, len));
  }
  return QN_OK;
}

/* Marks the special tokens: 0 <unk>, 1 <s>, 2 </s>, <0xNN> bytes. */
static qn_status mark_specials(qn_vocab* v) {
  static const char* const kNames[3] = {"<unk>", "<s>", "</s>"};
  static const uint8_t kAttrs[3] = {QN_TOKEN_UNKNOWN, QN_TOKEN_CONTROL, QN_TOKEN_CONTROL};
  for (int i = 0; i < v->n_tokens; i++)
    if (is_byte_token(v->tokens[i])) v->attrs[i] = QN_TOKEN_BYTE;
  for (int i = 0; i < 3 && i < v->n_tokens; i++) {
    /* llama2.c decorates the specials with newlines ("\n<s>\n"); store the plain names. */
    const char* s = v->tokens[i];
    size_t n = strlen(s);
    while (n > 0 && (*s == '\n' || *s == '\r')) s++, n--;
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    if (n == strlen(kNames[i]) && memcmp(s, kNames[i], n) == 0)
      QN_TRY(qn_vocab_set_token(v, i, kNames[i], n));
    v->attrs[i] = kAttrs[i];
  }
  v->unk_id = v->n_tokens > 0 ? 0 : -1;
  v->bos_id = v->n_tokens > 1 ? 1 : -1;
  v->eos_id = v->n_tokens > 2 ? 2 : -1;
  return QN_OK;
}

qn_status qn_l2c_tokenizer_load(const char* path, int vocab_size, qn_vocab* v) {
  if (!v) return qn_error(QN_EINVAL, "qn_l2c_tokenizer_load: v is NULL");
  memset(v, 0, sizeof *v);
  v->bos_id = v->eos_id = v->unk_id = -1;
  if (!path) return qn_error(QN_EINVAL, "qn_l2c_tokenizer_load: path is NULL");
  if (vocab_size <= 0)
    return qn_error(QN_EINVAL, "%s: vocab_size %d must be positive", path, vocab_size);
  qn_mapfile mf;
  QN_TRY(qn_mapfile_open(path, &mf));
  reader r = {mf.data, mf.size, 0};
  /* Each token takes at least 8 bytes: reject absurd sizes before allocating. */
  qn_status st = QN_OK;
  if ((size_t)vocab_size > mf.size / 8)
    st = qn_error(QN_EFORMAT, "%s: %zu bytes cannot hold %d tokens", path, mf.size, vocab_size);
  if (st == QN_OK) st = qn_vocab_alloc(v, QN_VOCAB_SPM, vocab_size, true);
  if (st == QN_OK) st = read_tokens(path, &r, v);
  if (st == QN_OK) st = mark_specials(v);
  qn_mapfile_close(&mf);
  if (st != QN_OK) {
    qn_vocab_free(v);
    return st;
  }
  v->add_bos = true;
  v->add_space_prefix = true;
  v->byte_fallback = true;
  return QN_OK;
}
