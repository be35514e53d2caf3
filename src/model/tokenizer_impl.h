/* tokenizer_impl.h: private parts of the tokenizer shared by tokenizer.c (common code: lookup
 * tables, the merge engine, special tokens, decoding) and the two encoders, tokenizer_spm.c
 * (SentencePiece BPE) and tokenizer_bpe.c (byte-level BPE). Not part of any public API. */
#ifndef QN_MODEL_TOKENIZER_IMPL_H
#define QN_MODEL_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer.h"

/* Token text -> id, open addressing (linear probing). */
typedef struct qn_tok_strmap {
  int32_t* slots; /* [mask + 1] token id, -1 = empty */
  uint32_t mask;  /* capacity - 1 (capacity is a power of two) */
} qn_tok_strmap;

/* One merge rule: the pair (left id, right id) becomes result with a priority. */
typedef struct qn_tok_pair {
  uint64_t key;   /* (uint64_t)left << 32 | right */
  float score;    /* higher merges first (SPM: the result's score; BPE: -rank) */
  int32_t result; /* merged token id, -1 = empty slot */
} qn_tok_pair;

/* (left, right) -> merge rule, open addressing. */
typedef struct qn_tok_pairmap {
  qn_tok_pair* slots; /* [mask + 1] */
  uint32_t mask;      /* capacity - 1 */
  size_t n;           /* rules stored */
} qn_tok_pairmap;

/* A growable array of token ids (the encoder's output). */
typedef struct qn_tok_ids {
  int* v;     /* [cap] ids */
  size_t n;   /* ids stored */
  size_t cap; /* ids allocated */
} qn_tok_ids;

/* A symbol in the merge engine's doubly linked list. */
typedef struct qn_tok_sym {
  int32_t id;   /* token id; -1 once merged into its left neighbour */
  int32_t prev; /* index of the previous live symbol, -1 at the start */
  int32_t next; /* index of the next live symbol, -1 at the end */
} qn_tok_sym;

/* A merge candidate in the engine's heap. */
typedef struct qn_tok_cand {
  float score;      /* rule priority (higher first; ties: smaller left first) */
  int32_t left;     /* index of the left symbol */
  int32_t right;    /* index of the right symbol */
  int32_t right_id; /* id the right symbol had when this candidate was made */
  int32_t result;   /* merged token id */
} qn_tok_cand;

/* Scratch memory for one encode call (so encode stays thread-safe on a shared tokenizer). */
typedef struct qn_tok_work {
  qn_tok_sym* syms;  /* [cap_syms] symbols of the piece being merged */
  size_t n_syms;     /* symbols in use */
  size_t cap_syms;   /* symbols allocated */
  qn_tok_cand* heap; /* [cap_heap] binary max-heap of candidates */
  size_t n_heap;     /* candidates in the heap */
  size_t cap_heap;   /* candidates allocated */
  char* buf;         /* [cap_buf] normalized text (SPM) or byte-mapped piece scratch */
  size_t cap_buf;    /* bytes allocated */
  void* match_data;  /* pcre2_match_data* for the pre-tokenizer regex, or NULL */
} qn_tok_work;

struct qn_tokenizer {
  const qn_vocab* v;     /* the vocabulary (not owned) */
  int* tok_len;          /* [n_tokens] strlen of each token's text (0 for NULL) */
  int max_tok_len;       /* longest token text, bytes; bounds a decoded piece */
  qn_tok_strmap tok_map; /* token text -> id (first id wins on duplicates) */
  qn_tok_pairmap pairs;  /* merge rules */
  uint8_t* is_part;      /* [n_tokens] 1 if the token is the left or right part of a rule;
                            other symbols never merge and split the merge work */
  int byte_ids[256];     /* SPM: id of <0xNN> (-1 if absent); BPE: id of the byte's
                            byte-unicode character */
  int* specials;         /* [n_specials] ids matched literally in text, longest first */
  int n_specials;
  uint8_t special_first[32]; /* bitmap of the first bytes of special tokens' text */
  void* re;                  /* pcre2_code* pre-tokenizer (BPE; SPM only if pretok_regex) */
  bool re_jit;               /* the regex was JIT-compiled */
};

/* ---- tokenizer.c: tables, merge engine, ids ---- */

/* Id of the token whose text is s[0..n), or -1. */
int qn_tok_lookup(const qn_tokenizer* t, const char* s, size_t n);
/* Adds a merge rule; keeps the existing one if the pair is already present. */
qn_status qn_tok_add_pair(qn_tokenizer* t, int left, int right, float score, int result);
/* The rule for (left, right), or NULL. */
const qn_tok_pair* qn_tok_find_pair(const qn_tokenizer* t, int left, int right);
qn_status qn_tok_ids_push(qn_tok_ids* ids, int id);
/* Makes room for n symbols in w (n_syms reset to 0). */
qn_status qn_tok_work_reserve_syms(qn_tok_work* w, size_t n);
/* Makes room for n bytes in w->buf. */
qn_status qn_tok_work_reserve_buf(qn_tok_work* w, size_t n);
/* Appends a symbol to w (room must have been reserved). */
void qn_tok_work_add_sym(qn_tok_work* w, int id);
/* Runs the merges over w's symbols (best rule first, leftmost on ties) and appends the
 * surviving ids to out. */
qn_status qn_tok_merge(const qn_tokenizer* t, qn_tok_work* w, qn_tok_ids* out);
/* Length in bytes of the UTF-8 character starting at s (1 for invalid or truncated ones). */
size_t qn_tok_utf8_len(const unsigned char* s, size_t avail);
/* Splits s[0..n) with t->re and calls fn on every match and on every gap between matches. */
typedef qn_status (*qn_tok_piece_fn)(const qn_tokenizer* t, const char* s, size_t n, qn_tok_work* w,
                                     qn_tok_ids* out);
qn_status qn_tok_split_regex(const qn_tokenizer* t, const char* s, size_t n, qn_tok_work* w,
                             qn_tok_ids* out, qn_tok_piece_fn fn);
/* Compiles pattern into t->re (PCRE2_UTF | PCRE2_UCP, JIT when available). */
qn_status qn_tok_compile_regex(qn_tokenizer* t, const char* pattern);
/* Turns v->merges ("left right", best first) into rules with score -rank. */
qn_status qn_tok_load_merges(qn_tokenizer* t);

/* ---- tokenizer_spm.c ---- */

qn_status qn_tok_spm_build(qn_tokenizer* t);
/* Encodes one segment of text (no special tokens inside). seg_start: the segment starts the
 * text or follows a special token (the dummy prefix goes there). */
qn_status qn_tok_spm_encode(const qn_tokenizer* t, const char* s, size_t n, bool seg_start,
                            qn_tok_work* w, qn_tok_ids* out);
/* Decoded bytes of a token into buf (up to cap); returns the full length. */
int qn_tok_spm_piece(const qn_tokenizer* t, int id, int prev, char* buf, int cap);

/* ---- tokenizer_bpe.c ---- */

qn_status qn_tok_bpe_build(qn_tokenizer* t);
qn_status qn_tok_bpe_encode(const qn_tokenizer* t, const char* s, size_t n, bool seg_start,
                            qn_tok_work* w, qn_tok_ids* out);
int qn_tok_bpe_piece(const qn_tokenizer* t, int id, char* buf, int cap);

#endif
