/* tokenizer.h: encoder/decoder built from a qn_vocab (SentencePiece-BPE or byte-level BPE). */
#ifndef QN_MODEL_TOKENIZER_H
#define QN_MODEL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "format/vocab.h"

typedef struct qn_tokenizer qn_tokenizer;

/* Builds lookup tables from v. The tokenizer keeps a pointer to v, which must outlive it. */
qn_status qn_tokenizer_new(const qn_vocab* v, qn_tokenizer** out);
void qn_tokenizer_free(qn_tokenizer* t);

/* Encodes len bytes of UTF-8 text. add_bos: prepend BOS if the vocab has one. Special
 * (CONTROL / USER_DEFINED) tokens written literally in the text are matched as one token.
 * *ids is malloc'ed; the caller frees it. */
qn_status qn_tokenizer_encode(const qn_tokenizer* t, const char* text, size_t len, bool add_bos,
                              int** ids, int* n_ids);

/* Raw bytes a token stands for, after the format's decoding (SPM: U+2581 -> ' ', <0xNN> ->
 * byte; BPE: byte-unicode alphabet -> bytes). SPM control tokens (BOS/EOS) give 0 bytes;
 * BPE added tokens (CONTROL or USER_DEFINED, e.g. <|endoftext|>) give their text, as
 * Hugging Face decodes them, so callers that stop at EOS should not print it.
 * prev: previous token id or -1 (SPM drops the leading space of the first piece after
 * BOS). Returns bytes written (at most cap), or -1 for an id out of range. */
int qn_tokenizer_token_bytes(const qn_tokenizer* t, int id, int prev, char* buf, int cap);

/* Decodes a whole id sequence into malloc'ed NUL-terminated text. */
qn_status qn_tokenizer_decode(const qn_tokenizer* t, const int* ids, int n, char** text,
                              size_t* len);

/* Streaming decoder: feed ids one by one, receive only complete UTF-8 sequences
 * (a multi-byte character split across byte tokens is held back until complete). */
typedef struct qn_detok {
  const qn_tokenizer* tok;
  int prev;        /* previous id fed, -1 at start */
  char pending[8]; /* bytes of an incomplete UTF-8 sequence */
  int n_pending;
} qn_detok;

void qn_detok_init(qn_detok* d, const qn_tokenizer* t);
/* Appends the text completed by token id to out (cap bytes); returns bytes written. */
int qn_detok_push(qn_detok* d, int id, char* out, int cap);
/* Flushes held-back bytes (invalid sequences come out as U+FFFD); returns bytes written. */
int qn_detok_flush(qn_detok* d, char* out, int cap);

#endif
