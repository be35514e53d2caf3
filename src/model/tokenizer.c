/* tokenizer.c: the parts common to both tokenizer kinds: construction (lookup tables, merge
 * rules, special tokens), the merge engine (a linked list of symbols plus a heap of candidate
 * merges, O(n log n)), the pre-tokenizer regex driver, special-token splitting, decoding and
 * the streaming UTF-8-safe decoder. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <limits.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/tokenizer_impl.h"

/* ---- hashing ---- */

static uint32_t hash_bytes(const char* s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, 64-bit, folded */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return (uint32_t)(h ^ (h >> 32));
}

static uint32_t hash_pair(uint64_t k) {
  k ^= k >> 33; /* murmur3 finalizer */
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return (uint32_t)k;
}

static uint32_t capacity_for(size_t n) {
  uint32_t cap = 16;
  while (cap < 2 * n && cap < (1u << 30)) cap <<= 1;
  return cap;
}

/* ---- token text -> id ---- */

static qn_status strmap_build(qn_tokenizer* t) {
  const qn_vocab* v = t->v;
  uint32_t cap = capacity_for((size_t)v->n_tokens);
  t->tok_map.slots = malloc((size_t)cap * sizeof(int32_t));
  if (!t->tok_map.slots) return qn_error(QN_ENOMEM, "tokenizer: out of memory for the token map");
  memset(t->tok_map.slots, 0xff, (size_t)cap * sizeof(int32_t));
  t->tok_map.mask = cap - 1;
  for (int id = 0; id < v->n_tokens; id++) {
    if (!v->tokens[id]) continue;
    const char* s = v->tokens[id];
    size_t n = (size_t)t->tok_len[id];
    uint32_t i = hash_bytes(s, n) & t->tok_map.mask;
    for (;; i = (i + 1) & t->tok_map.mask) {
      int32_t o = t->tok_map.slots[i];
      if (o < 0) {
        t->tok_map.slots[i] = id;
        break;
      }
      if ((size_t)t->tok_len[o] == n && memcmp(v->tokens[o], s, n) == 0) break; /* dup */
    }
  }
  return QN_OK;
}

int qn_tok_lookup(const qn_tokenizer* t, const char* s, size_t n) {
  uint32_t i = hash_bytes(s, n) & t->tok_map.mask;
  for (;; i = (i + 1) & t->tok_map.mask) {
    int32_t o = t->tok_map.slots[i];
    if (o < 0) return -1;
    if ((size_t)t->tok_len[o] == n && memcmp(t->v->tokens[o], s, n) == 0) return o;
  }
}

/* ---- merge rules ---- */

static qn_status pairmap_grow(qn_tok_pairmap* m) {
  uint32_t cap = m->slots ? (m->mask + 1) * 2 : 1024;
  qn_tok_pair* s = malloc((size_t)cap * sizeof *s);
  if (!s) return qn_error(QN_ENOMEM, "tokenizer: out of memory for merge rules");
  for (uint32_t i = 0; i < cap; i++) s[i].result = -1;
  if (m->slots) {
    for (uint32_t j = 0; j <= m->mask; j++) {
      if (m->slots[j].result < 0) continue;
      uint32_t i = hash_pair(m->slots[j].key) & (cap - 1);
      while (s[i].result >= 0) i = (i + 1) & (cap - 1);
      s[i] = m->slots[j];
    }
  }
  free(m->slots);
  m->slots = s;
  m->mask = cap - 1;
  return QN_OK;
}

qn_status qn_tok_add_pair(qn_tokenizer* t, int left, int right, float score, int result) {
  qn_tok_pairmap* m = &t->pairs;
  if (!m->slots || 2 * (m->n + 1) > (size_t)m->mask + 1) QN_TRY(pairmap_grow(m));
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  uint32_t i = hash_pair(key) & m->mask;
  for (;; i = (i + 1) & m->mask) {
    if (m->slots[i].result < 0) break;
    if (m->slots[i].key == key) return QN_OK; /* first rule wins */
  }
  m->slots[i].key = key;
  m->slots[i].score = score;
  m->slots[i].result = result;
  m->n++;
  return QN_OK;
}

const qn_tok_pair* qn_tok_find_pair(const qn_tokenizer* t, int left, int right) {
  const qn_tok_pairmap* m = &t->pairs;
  if (!m->slots) return NULL;
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  uint32_t i = hash_pair(key) & m->mask;
  for (;; i = (i + 1) & m->mask) {
    if (m->slots[i].result < 0) return NULL;
    if (m->slots[i].key == key) return &m->slots[i];
  }
}

qn_status qn_tok_load_merges(qn_tokenizer* t) {
  const qn_vocab* v = t->v;
  char* cat = malloc((size_t)t->max_tok_len * 2 + 2);
  if (!cat) return qn_error(QN_ENOMEM, "tokenizer: out of memory");
  for (int r = 0; r < v->n_merges; r++) {
    const char* m = v->merges[r];
    size_t n = m ? strlen(m) : 0;
    bool ok = false;
    /* A token may itself contain a space: try every space until both halves are tokens. */
    for (size_t p = 0; p < n && !ok; p++) {
      if (m[p] != ' ') continue;
      int left = qn_tok_lookup(t, m, p), right = qn_tok_lookup(t, m + p + 1, n - p - 1);
      if (left < 0 || right < 0 || n - 1 > (size_t)t->max_tok_len * 2) continue;
      memcpy(cat, m, p);
      memcpy(cat + p, m + p + 1, n - p - 1);
      int result = qn_tok_lookup(t, cat, n - 1);
      if (result < 0) continue;
      qn_status st = qn_tok_add_pair(t, left, right, -(float)r, result);
      if (st != QN_OK) {
        free(cat);
        return st;
      }
      ok = true;
    }
    if (!ok) {
      free(cat);
      return qn_error(QN_EFORMAT,
                      "tokenizer: merge %d (\"%.60s\") names tokens not in the vocabulary", r,
                      m ? m : "");
    }
  }
  free(cat);
  return QN_OK;
}

/* ---- special tokens ---- */

/* True if special x must be tried before y: longer first, then lower id. */
static bool special_before(int x, int y, const int* lens) {
  return lens[x] != lens[y] ? lens[x] > lens[y] : x < y;
}

/* Insertion sort (few specials; qsort has no context argument in C11). */
static void sort_specials(int* ids, int n, const int* lens) {
  for (int i = 1; i < n; i++) {
    int x = ids[i], j = i - 1;
    while (j >= 0 && special_before(x, ids[j], lens)) {
      ids[j + 1] = ids[j];
      j--;
    }
    ids[j + 1] = x;
  }
}

static qn_status specials_build(qn_tokenizer* t) {
  const qn_vocab* v = t->v;
  int n = 0;
  for (int id = 0; id < v->n_tokens; id++) {
    uint8_t a = v->attrs[id];
    if ((a == QN_TOKEN_CONTROL || a == QN_TOKEN_USER_DEFINED) && t->tok_len[id] > 0) n++;
  }
  if (n == 0) return QN_OK;
  t->specials = malloc((size_t)n * sizeof(int));
  if (!t->specials) return qn_error(QN_ENOMEM, "tokenizer: out of memory");
  for (int id = 0; id < v->n_tokens; id++) {
    uint8_t a = v->attrs[id];
    if ((a == QN_TOKEN_CONTROL || a == QN_TOKEN_USER_DEFINED) && t->tok_len[id] > 0) {
      t->specials[t->n_specials++] = id;
      unsigned char c = (unsigned char)v->tokens[id][0];
      t->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
    }
  }
  sort_specials(t->specials, t->n_specials, t->tok_len);
  return QN_OK;
}

/* The longest special token starting at s, or -1. */
static int match_special(const qn_tokenizer* t, const char* s, size_t avail) {
  for (int i = 0; i < t->n_specials; i++) {
    int id = t->specials[i];
    size_t n = (size_t)t->tok_len[id];
    if (n <= avail && t->v->tokens[id][0] == s[0] && memcmp(t->v->tokens[id], s, n) == 0) return id;
  }
  return -1;
}

/* ---- construction ---- */

static qn_status mark_rule_parts(qn_tokenizer* t) {
  t->is_part = calloc((size_t)t->v->n_tokens, 1);
  if (!t->is_part) return qn_error(QN_ENOMEM, "tokenizer: out of memory");
  const qn_tok_pairmap* m = &t->pairs;
  for (uint32_t i = 0; m->slots && i <= m->mask; i++) {
    if (m->slots[i].result < 0) continue;
    uint32_t left = (uint32_t)(m->slots[i].key >> 32), right = (uint32_t)m->slots[i].key;
    if (left < (uint32_t)t->v->n_tokens) t->is_part[left] = 1;
    if (right < (uint32_t)t->v->n_tokens) t->is_part[right] = 1;
  }
  return QN_OK;
}

qn_status qn_tokenizer_new(const qn_vocab* v, qn_tokenizer** out) {
  if (!out) return qn_error(QN_EINVAL, "qn_tokenizer_new: out is NULL");
  *out = NULL;
  if (!v || v->n_tokens <= 0 || !v->tokens || !v->attrs)
    return qn_error(QN_EINVAL, "qn_tokenizer_new: empty vocabulary");
  if (v->kind != QN_VOCAB_SPM && v->kind != QN_VOCAB_BPE)
    return qn_error(QN_EUNSUPPORTED, "qn_tokenizer_new: unknown vocabulary kind %d", (int)v->kind);
  qn_tokenizer* t = calloc(1, sizeof *t);
  if (!t) return qn_error(QN_ENOMEM, "tokenizer: out of memory");
  t->v = v;
  t->tok_len = calloc((size_t)v->n_tokens, sizeof(int));
  if (!t->tok_len) {
    free(t);
    return qn_error(QN_ENOMEM, "tokenizer: out of memory");
  }
  qn_status st = QN_OK;
  for (int id = 0; id < v->n_tokens && st == QN_OK; id++) {
    size_t n = v->tokens[id] ? strlen(v->tokens[id]) : 0;
    if (n > (size_t)INT_MAX / 4) st = qn_error(QN_EINVAL, "tokenizer: token %d is too long", id);
    t->tok_len[id] = (int)n;
    if ((int)n > t->max_tok_len) t->max_tok_len = (int)n;
  }
  for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;
  if (st == QN_OK) st = strmap_build(t);
  if (st == QN_OK) st = specials_build(t);
  if (st == QN_OK) st = v->kind == QN_VOCAB_SPM ? qn_tok_spm_build(t) : qn_tok_bpe_build(t);
  if (st == QN_OK) st = mark_rule_parts(t);
  if (st != QN_OK) {
    qn_tokenizer_free(t);
    return st;
  }
  *out = t;
  return QN_OK;
}

void qn_tokenizer_free(qn_tokenizer* t) {
  if (!t) return;
  free(t->tok_len);
  free(t->tok_map.slots);
  free(t->pairs.slots);
  free(t->is_part);
  free(t->specials);
  pcre2_code_free(t->re);
  free(t);
}

/* ---- scratch and output ---- */

qn_status qn_tok_ids_push(qn_tok_ids* ids, int id) {
  if (ids->n == ids->cap) {
    size_t cap = ids->cap ? ids->cap * 2 : 256;
    int* nv = realloc(ids->v, cap * sizeof(int));
    if (!nv) return qn_error(QN_ENOMEM, "tokenizer: out of memory for %zu ids", cap);
    ids->v = nv;
    ids->cap = cap;
  }
  ids->v[ids->n++] = id;
  return QN_OK;
}

qn_status qn_tok_work_reserve_syms(qn_tok_work* w, size_t n) {
  w->n_syms = 0;
  if (n > (size_t)INT32_MAX) return qn_error(QN_ERANGE, "tokenizer: text piece too long");
  if (n <= w->cap_syms) return QN_OK;
  size_t cap = w->cap_syms ? w->cap_syms : 64;
  while (cap < n) cap *= 2;
  qn_tok_sym* s = realloc(w->syms, cap * sizeof *s);
  if (!s) return qn_error(QN_ENOMEM, "tokenizer: out of memory for %zu symbols", cap);
  w->syms = s;
  w->cap_syms = cap;
  return QN_OK;
}

qn_status qn_tok_work_reserve_buf(qn_tok_work* w, size_t n) {
  if (n <= w->cap_buf) return QN_OK;
  size_t cap = w->cap_buf ? w->cap_buf : 256;
  while (cap < n) cap *= 2;
  char* b = realloc(w->buf, cap);
  if (!b) return qn_error(QN_ENOMEM, "tokenizer: out of memory for %zu bytes", cap);
  w->buf = b;
  w->cap_buf = cap;
  return QN_OK;
}

void qn_tok_work_add_sym(qn_tok_work* w, int id) {
  int32_t i = (int32_t)w->n_syms++;
  w->syms[i].id = id;
  w->syms[i].prev = i - 1;
  w->syms[i].next = -1;
  if (i > 0) w->syms[i - 1].next = i;
}

static void work_free(qn_tok_work* w) {
  free(w->syms);
  free(w->heap);
  free(w->buf);
  pcre2_match_data_free(w->match_data);
}

/* ---- the merge engine ---- */

static bool cand_better(const qn_tok_cand* a, const qn_tok_cand* b) {
  if (a->score != b->score) return a->score > b->score;
  return a->left < b->left;
}

static qn_status heap_push(qn_tok_work* w, qn_tok_cand c) {
  if (w->n_heap == w->cap_heap) {
    size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
    qn_tok_cand* h = realloc(w->heap, cap * sizeof *h);
    if (!h) return qn_error(QN_ENOMEM, "tokenizer: out of memory for merge candidates");
    w->heap = h;
    w->cap_heap = cap;
  }
  size_t i = w->n_heap++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_better(&c, &w->heap[p])) break;
    w->heap[i] = w->heap[p];
    i = p;
  }
  w->heap[i] = c;
  return QN_OK;
}

static qn_tok_cand heap_pop(qn_tok_work* w) {
  qn_tok_cand top = w->heap[0];
  qn_tok_cand last = w->heap[--w->n_heap];
  size_t n = w->n_heap, i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && cand_better(&w->heap[c + 1], &w->heap[c])) c++;
    if (!cand_better(&w->heap[c], &last)) break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (n > 0) w->heap[i] = last;
  return top;
}

/* Pushes the rule for the adjacent symbols (left, right), if there is one. */
static qn_status try_pair(const qn_tokenizer* t, qn_tok_work* w, int32_t left, int32_t right) {
  const qn_tok_pair* p = qn_tok_find_pair(t, w->syms[left].id, w->syms[right].id);
  if (!p) return QN_OK;
  qn_tok_cand c = {p->score, left, right, w->syms[right].id, p->result};
  return heap_push(w, c);
}

/* Merges the run of symbols [first, last] (linked in order, ends unlinked from the rest). */
static qn_status merge_run(const qn_tokenizer* t, qn_tok_work* w, int32_t first, int32_t last,
                           qn_tok_ids* out) {
  qn_tok_sym* s = w->syms;
  w->n_heap = 0;
  s[first].prev = -1;
  s[last].next = -1;
  for (int32_t i = first; i < last; i++) QN_TRY(try_pair(t, w, i, i + 1));
  while (w->n_heap > 0) {
    qn_tok_cand c = heap_pop(w);
    qn_tok_sym* l = &s[c.left];
    qn_tok_sym* r = &s[c.right];
    /* Stale if either side was merged away or the right side changed since. The left side
     * cannot have changed while still next to the same right symbol. */
    if (l->id < 0 || r->id < 0 || l->next != c.right || r->id != c.right_id) continue;
    l->id = c.result;
    l->next = r->next;
    if (r->next >= 0) s[r->next].prev = c.left;
    r->id = -1;
    if (l->prev >= 0) QN_TRY(try_pair(t, w, l->prev, c.left));
    if (l->next >= 0) QN_TRY(try_pair(t, w, c.left, l->next));
  }
  for (int32_t i = first; i >= 0; i = s[i].next) QN_TRY(qn_tok_ids_push(out, s[i].id));
  return QN_OK;
}

qn_status qn_tok_merge(const qn_tokenizer* t, qn_tok_work* w, qn_tok_ids* out) {
  /* A symbol that is no rule's part never merges and nothing merges across it, so the runs
   * between such symbols are merged independently (same result, much smaller heaps). */
  int32_t n = (int32_t)w->n_syms;
  for (int32_t i = 0; i < n;) {
    if (!t->is_part[w->syms[i].id]) {
      QN_TRY(qn_tok_ids_push(out, w->syms[i].id));
      i++;
      continue;
    }
    int32_t j = i;
    while (j + 1 < n && t->is_part[w->syms[j + 1].id]) j++;
    QN_TRY(merge_run(t, w, i, j, out));
    i = j + 1;
  }
  return QN_OK;
}

/* ---- UTF-8 and the pre-tokenizer regex ---- */

size_t qn_tok_utf8_len(const unsigned char* s, size_t avail) {
  unsigned c = s[0];
  size_t k = c < 0x80 ? 1 : c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (k <= 1 || k > avail) return 1;
  for (size_t i = 1; i < k; i++)
    if ((s[i] & 0xc0) != 0x80) return 1;
  return k;
}

qn_status qn_tok_compile_regex(qn_tokenizer* t, const char* pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  pcre2_code* re =
      pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return qn_error(QN_EFORMAT, "tokenizer: pre-tokenizer regex does not compile at offset %zu: %s",
                    (size_t)off, (const char*)msg);
  }
  t->re = re;
  t->re_jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  return QN_OK;
}

qn_status qn_tok_split_regex(const qn_tokenizer* t, const char* s, size_t n, qn_tok_work* w,
                             qn_tok_ids* out, qn_tok_piece_fn fn) {
  pcre2_code* re = t->re;
  pcre2_match_data* md = w->match_data;
  PCRE2_SPTR subj = (PCRE2_SPTR)s;
  size_t gap = 0, pos = 0; /* gap: start of unmatched text; pos: where the search resumes */
  while (pos < n) {
    int rc = t->re_jit ? pcre2_jit_match(re, subj, n, pos, 0, md, NULL)
                       : pcre2_match(re, subj, n, pos, 0, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return qn_error(QN_EINVAL, "tokenizer: pre-tokenizer regex failed: %s", (const char*)msg);
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) { /* empty match: skip a character, it joins the gap */
      pos = ms + qn_tok_utf8_len((const unsigned char*)s + ms, n - ms);
      continue;
    }
    if (ms > gap) QN_TRY(fn(t, s + gap, ms - gap, w, out));
    QN_TRY(fn(t, s + ms, me - ms, w, out));
    gap = pos = me;
  }
  if (gap < n) QN_TRY(fn(t, s + gap, n - gap, w, out));
  return QN_OK;
}

/* ---- encoding ---- */

static qn_status encode_segment(const qn_tokenizer* t, const char* s, size_t n, bool seg_start,
                                qn_tok_work* w, qn_tok_ids* out) {
  if (n == 0) return QN_OK;
  if (t->v->kind == QN_VOCAB_SPM) return qn_tok_spm_encode(t, s, n, seg_start, w, out);
  return qn_tok_bpe_encode(t, s, n, seg_start, w, out);
}

static qn_status encode_all(const qn_tokenizer* t, const char* text, size_t len, bool add_bos,
                            qn_tok_work* w, qn_tok_ids* out) {
  if (add_bos && t->v->bos_id >= 0) QN_TRY(qn_tok_ids_push(out, t->v->bos_id));
  if (t->re) {
    w->match_data = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!w->match_data) return qn_error(QN_ENOMEM, "tokenizer: out of memory for regex matching");
  }
  size_t seg = 0;
  bool seg_start = true;
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)text[i];
    int sp = -1;
    if (t->special_first[c >> 3] & (1u << (c & 7))) sp = match_special(t, text + i, len - i);
    if (sp < 0) {
      i++;
      continue;
    }
    QN_TRY(encode_segment(t, text + seg, i - seg, seg_start, w, out));
    QN_TRY(qn_tok_ids_push(out, sp));
    i += (size_t)t->tok_len[sp];
    seg = i;
    seg_start = true;
  }
  return encode_segment(t, text + seg, len - seg, seg_start, w, out);
}

qn_status qn_tokenizer_encode(const qn_tokenizer* t, const char* text, size_t len, bool add_bos,
                              int** ids, int* n_ids) {
  if (!ids || !n_ids) return qn_error(QN_EINVAL, "qn_tokenizer_encode: ids/n_ids is NULL");
  *ids = NULL;
  *n_ids = 0;
  if (!t) return qn_error(QN_EINVAL, "qn_tokenizer_encode: tokenizer is NULL");
  if (!text && len > 0) return qn_error(QN_EINVAL, "qn_tokenizer_encode: text is NULL");
  qn_tok_ids out = {0};
  qn_tok_work w = {0};
  qn_status st = qn_tok_ids_push(&out, 0); /* ensures a non-NULL array even for no ids */
  out.n = 0;
  if (st == QN_OK) st = encode_all(t, text, len, add_bos, &w, &out);
  work_free(&w);
  if (st == QN_OK && out.n > (size_t)INT_MAX)
    st = qn_error(QN_ERANGE, "qn_tokenizer_encode: more than INT_MAX tokens");
  if (st != QN_OK) {
    free(out.v);
    return st;
  }
  *ids = out.v;
  *n_ids = (int)out.n;
  return QN_OK;
}

/* ---- decoding ---- */

/* Full decoded length of token id; writes up to cap bytes. */
static int piece(const qn_tokenizer* t, int id, int prev, char* buf, int cap) {
  if (t->v->kind == QN_VOCAB_SPM) return qn_tok_spm_piece(t, id, prev, buf, cap);
  return qn_tok_bpe_piece(t, id, buf, cap);
}

int qn_tokenizer_token_bytes(const qn_tokenizer* t, int id, int prev, char* buf, int cap) {
  if (!t || id < 0 || id >= t->v->n_tokens) return -1;
  if (!buf || cap < 0) cap = 0;
  int n = piece(t, id, prev, buf, cap);
  return n < cap ? n : cap;
}

qn_status qn_tokenizer_decode(const qn_tokenizer* t, const int* ids, int n, char** text,
                              size_t* len) {
  if (!text) return qn_error(QN_EINVAL, "qn_tokenizer_decode: text is NULL");
  *text = NULL;
  if (len) *len = 0;
  if (!t || n < 0 || (n > 0 && !ids)) return qn_error(QN_EINVAL, "qn_tokenizer_decode: bad args");
  size_t cap = 1;
  for (int i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= t->v->n_tokens)
      return qn_error(QN_EINVAL, "qn_tokenizer_decode: id %d at index %d is out of range [0, %d)",
                      ids[i], i, t->v->n_tokens);
    cap += (size_t)t->tok_len[ids[i]]; /* a decoded piece is never longer than its text */
  }
  char* out = malloc(cap);
  if (!out) return qn_error(QN_ENOMEM, "qn_tokenizer_decode: out of memory for %zu bytes", cap);
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    int room = cap - pos > (size_t)INT_MAX ? INT_MAX : (int)(cap - pos);
    int k = piece(t, ids[i], i > 0 ? ids[i - 1] : -1, out + pos, room);
    pos += (size_t)(k < room ? k : room);
  }
  out[pos] = '\0';
  *text = out;
  if (len) *len = pos;
  return QN_OK;
}

/* ---- streaming decoder ---- */

void qn_detok_init(qn_detok* d, const qn_tokenizer* t) {
  memset(d, 0, sizeof *d);
  d->tok = t;
  d->prev = -1;
}

static const char kReplacement[3] = {(char)0xef, (char)0xbf, (char)0xbd}; /* U+FFFD */

/* Appends n bytes to out if they fit. */
static void emit(char* out, int cap, int* w, const void* s, int n) {
  if (*w + n > cap) return;
  memcpy(out + *w, s, (size_t)n);
  *w += n;
}

/* Bytes a UTF-8 sequence with this lead byte needs (0 = not a lead byte), and the valid
 * range of its second byte (excludes overlongs, surrogates and > U+10FFFF). */
static int utf8_need(unsigned char c, unsigned char* lo, unsigned char* hi) {
  *lo = 0x80;
  *hi = 0xbf;
  if (c < 0x80) return 1;
  if (c < 0xc2) return 0;
  if (c < 0xe0) return 2;
  if (c < 0xf0) {
    if (c == 0xe0) *lo = 0xa0;
    if (c == 0xed) *hi = 0x9f;
    return 3;
  }
  if (c > 0xf4) return 0;
  if (c == 0xf0) *lo = 0x90;
  if (c == 0xf4) *hi = 0x8f;
  return 4;
}

/* Emits the complete, valid UTF-8 in s[0..n) (U+FFFD for invalid bytes) and keeps an
 * incomplete tail in d->pending. */
static void detok_feed(qn_detok* d, const unsigned char* s, int n, char* out, int cap, int* w) {
  int i = 0;
  while (i < n) {
    unsigned char lo, hi;
    int k = utf8_need(s[i], &lo, &hi);
    if (k == 0) {
      emit(out, cap, w, kReplacement, 3);
      i++;
      continue;
    }
    int j = 1;
    while (j < k && i + j < n) {
      unsigned char c = s[i + j];
      bool ok = j == 1 ? (c >= lo && c <= hi) : (c & 0xc0) == 0x80;
      if (!ok) break;
      j++;
    }
    if (j == k) {
      emit(out, cap, w, s + i, k);
      i += k;
    } else if (i + j == n) { /* valid so far, cut short: wait for more bytes */
      memcpy(d->pending, s + i, (size_t)j);
      d->n_pending = j;
      return;
    } else {
      emit(out, cap, w, kReplacement, 3);
      i += j;
    }
  }
}

int qn_detok_push(qn_detok* d, int id, char* out, int cap) {
  if (!d || !d->tok || !out || cap < 0) return 0;
  const qn_tokenizer* t = d->tok;
  int prev = d->prev;
  d->prev = id;
  if (id < 0 || id >= t->v->n_tokens) return 0;
  char small[512];
  size_t need = (size_t)t->tok_len[id] + 8;
  unsigned char* buf = (unsigned char*)(need <= sizeof small ? small : malloc(need));
  if (!buf) return 0;
  int n = d->n_pending;
  memcpy(buf, d->pending, (size_t)n);
  d->n_pending = 0;
  n += piece(t, id, prev, (char*)buf + n, (int)(need - (size_t)n));
  int w = 0;
  detok_feed(d, buf, n, out, cap, &w);
  if ((char*)buf != small) free(buf);
  return w;
}

int qn_detok_flush(qn_detok* d, char* out, int cap) {
  if (!d || !out || cap < 0) return 0;
  int w = 0;
  if (d->n_pending > 0) emit(out, cap, &w, kReplacement, 3);
  d->n_pending = 0;
  return w;
}
