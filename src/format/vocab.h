/* vocab.h: a tokenizer vocabulary as read from a model file, before any index is built.
 * Every reader (llama2.c tokenizer.bin, GGUF metadata, HF tokenizer.json, .qnz) fills one
 * qn_vocab; src/model/tokenizer*.c builds the encoder/decoder from it. */
#ifndef QN_FORMAT_VOCAB_H
#define QN_FORMAT_VOCAB_H

#include <stdbool.h>
#include <stdint.h>

#include "quench.h"

typedef enum qn_vocab_kind {
  QN_VOCAB_SPM = 0, /* SentencePiece BPE: merge by score, "\xe2\x96\x81" (U+2581) as space,
                       <0xNN> byte-fallback tokens */
  QN_VOCAB_BPE = 1, /* byte-level BPE (GPT-2 style): byte->unicode alphabet, ranked merges,
                       regex pre-tokenizer */
} qn_vocab_kind;

/* Token attributes (GGUF token_type values). */
typedef enum qn_token_attr {
  QN_TOKEN_NORMAL = 1,
  QN_TOKEN_UNKNOWN = 2,
  QN_TOKEN_CONTROL = 3,      /* special: <s>, </s>, <|endoftext|>; matched in text as a whole */
  QN_TOKEN_USER_DEFINED = 4, /* added token, matched in text as a whole */
  QN_TOKEN_UNUSED = 5,
  QN_TOKEN_BYTE = 6, /* SPM byte-fallback token <0xNN> */
} qn_token_attr;

typedef struct qn_vocab {
  qn_vocab_kind kind;
  int n_tokens;   /* vocabulary size */
  char** tokens;  /* [n_tokens] token text as stored (SPM: U+2581 for space; BPE:
                     GPT-2 byte-unicode alphabet), NUL-terminated, owned */
  float* scores;  /* [n_tokens] SPM merge scores (higher merges first); NULL for BPE */
  uint8_t* attrs; /* [n_tokens] qn_token_attr */
  char** merges;  /* [n_merges] BPE merges "left right", highest priority first; owned */
  int n_merges;
  char* pretok_regex;    /* BPE pre-tokenizer regex (PCRE2 syntax); NULL = GPT-2's */
  int bos_id;            /* -1 if none */
  int eos_id;            /* -1 if none */
  int unk_id;            /* -1 if none */
  bool add_bos;          /* encoders prepend BOS by default (SPM models: true) */
  bool add_space_prefix; /* SPM: prepend a space (the dummy prefix) before encoding */
  bool byte_fallback;    /* SPM: unknown characters become <0xNN> tokens */
} qn_vocab;

/* Allocates tokens/scores/attrs for n tokens (zeroed; attrs = NORMAL), bos/eos/unk = -1. */
qn_status qn_vocab_alloc(qn_vocab* v, qn_vocab_kind kind, int n_tokens, bool with_scores);
/* Copies a string of len bytes into v->tokens[i]. */
qn_status qn_vocab_set_token(qn_vocab* v, int i, const char* s, size_t len);
/* Frees everything the vocab owns; safe on a zeroed vocab. */
void qn_vocab_free(qn_vocab* v);

#endif
