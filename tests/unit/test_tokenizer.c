/* test_tokenizer.c: unit tests of the tokenizers on small vocabularies built here (merge order
 * by score and by rank, byte fallback, pre-tokenizer splitting, special tokens, streaming
 * decode, round trips) and of the llama2.c / Hugging Face vocabulary loaders on synthetic
 * files, including their error paths. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "format/tokenizer_load.h"
#include "model/tokenizer.h"

#define SP "\xe2\x96\x81" /* U+2581 */
#define FIRST_PIECE 259   /* SPM test vocab: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0xNN>, then pieces */

/* ---- vocab builders ---- */

/* SentencePiece-style vocab: specials, 256 byte tokens, then pieces with scores. */
static void make_spm(qn_vocab* v, const char* const* pieces, const float* scores, int n) {
  assert_int_equal(qn_vocab_alloc(v, QN_VOCAB_SPM, FIRST_PIECE + n, true), QN_OK);
  const char* specials[3] = {"<unk>", "<s>", "</s>"};
  const uint8_t attrs[3] = {QN_TOKEN_UNKNOWN, QN_TOKEN_CONTROL, QN_TOKEN_CONTROL};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(qn_vocab_set_token(v, i, specials[i], strlen(specials[i])), QN_OK);
    v->attrs[i] = attrs[i];
  }
  for (int b = 0; b < 256; b++) {
    char s[8];
    snprintf(s, sizeof s, "<0x%02X>", b);
    assert_int_equal(qn_vocab_set_token(v, 3 + b, s, 6), QN_OK);
    v->attrs[3 + b] = QN_TOKEN_BYTE;
  }
  for (int i = 0; i < n; i++) {
    assert_int_equal(qn_vocab_set_token(v, FIRST_PIECE + i, pieces[i], strlen(pieces[i])), QN_OK);
    v->scores[FIRST_PIECE + i] = scores[i];
  }
  v->unk_id = 0;
  v->bos_id = 1;
  v->eos_id = 2;
  v->add_bos = v->add_space_prefix = v->byte_fallback = true;
}

/* GPT-2 bytes_to_unicode, written from its definition: printable Latin-1 bytes map to
 * themselves, the remaining 68 bytes to U+0100.. in increasing byte order. */
static int b2u(int b, char* out) {
  int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  int cp = b;
  if (!printable) {
    cp = 256;
    for (int x = 0; x < b; x++) {
      int px = (x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
      cp += !px;
    }
  }
  if (cp < 0x80) {
    out[0] = (char)cp;
    out[1] = 0;
    return 1;
  }
  out[0] = (char)(0xc0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3f));
  out[2] = 0;
  return 2;
}

/* Byte-level vocab: ids 0..255 are the bytes' characters, then extra tokens (byte-unicode
 * text), then added tokens (raw text; CONTROL unless listed as user-defined). */
static void make_bpe(qn_vocab* v, const char* const* extra, int n_extra, const char* const* merges,
                     int n_merges, const char* const* added, const uint8_t* added_attrs,
                     int n_added) {
  assert_int_equal(qn_vocab_alloc(v, QN_VOCAB_BPE, 256 + n_extra + n_added, false), QN_OK);
  for (int b = 0; b < 256; b++) {
    char u[4];
    int n = b2u(b, u);
    assert_int_equal(qn_vocab_set_token(v, b, u, (size_t)n), QN_OK);
  }
  for (int i = 0; i < n_extra; i++)
    assert_int_equal(qn_vocab_set_token(v, 256 + i, extra[i], strlen(extra[i])), QN_OK);
  for (int i = 0; i < n_added; i++) {
    int id = 256 + n_extra + i;
    assert_int_equal(qn_vocab_set_token(v, id, added[i], strlen(added[i])), QN_OK);
    v->attrs[id] = added_attrs ? added_attrs[i] : QN_TOKEN_CONTROL;
  }
  v->merges = calloc((size_t)(n_merges > 0 ? n_merges : 1), sizeof(char*));
  assert_non_null(v->merges);
  for (int i = 0; i < n_merges; i++) {
    v->merges[i] = strdup(merges[i]);
    assert_non_null(v->merges[i]);
  }
  v->n_merges = n_merges;
}

/* Encodes text and compares with the expected ids. */
static void expect_ids(const qn_tokenizer* t, const char* text, bool bos, const int* want,
                       int n_want) {
  int* ids = NULL;
  int n = -1;
  assert_int_equal(qn_tokenizer_encode(t, text, strlen(text), bos, &ids, &n), QN_OK);
  if (n != n_want) {
    fprintf(stderr, "encode(\"%s\"): got %d ids:", text, n);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
  }
  assert_int_equal(n, n_want);
  for (int i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
  free(ids);
}

/* decode(encode(text)) == text, byte for byte. */
static void expect_roundtrip(const qn_tokenizer* t, const char* text, size_t len, bool bos) {
  int* ids = NULL;
  int n = 0;
  assert_int_equal(qn_tokenizer_encode(t, text, len, bos, &ids, &n), QN_OK);
  char* out = NULL;
  size_t out_len = 0;
  assert_int_equal(qn_tokenizer_decode(t, ids, n, &out, &out_len), QN_OK);
  assert_int_equal(out_len, len);
  assert_memory_equal(out, text, len);
  assert_int_equal(out[out_len], '\0');
  free(out);
  free(ids);
}

/* ---- SPM ---- */

static void test_spm_merge_order_by_score(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  /* ids: 259 ▁, 260 a, 261 b, 262 c, 263 ab, 264 bc */
  const char* pieces[] = {SP, "a", "b", "c", "ab", "bc"};
  float bc_first[] = {0, 0, 0, 0, -1.0f, -0.5f};
  make_spm(&v, pieces, bc_first, 6);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "abc", false, (int[]){259, 260, 264}, 3);
  expect_ids(t, "abc", true, (int[]){1, 259, 260, 264}, 4);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);

  float ab_first[] = {0, 0, 0, 0, -0.5f, -1.0f};
  make_spm(&v, pieces, ab_first, 6);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "abc", false, (int[]){259, 263, 262}, 3);
  expect_ids(t, "a bc", false, (int[]){259, 260, 259, 264}, 4); /* merges do not need spaces */
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_spm_ties_go_leftmost(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  /* 259 ▁, 260 a, 261 aa, 262 ▁a (scored below aa) */
  const char* pieces[] = {SP, "a", "aa", SP "a"};
  float scores[] = {0, 0, -1.0f, -2.0f};
  make_spm(&v, pieces, scores, 4);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  /* ▁ a a a: aa at 1 and at 2 tie, the left one wins: ▁ aa a, then nothing merges. */
  expect_ids(t, "aaa", false, (int[]){259, 261, 260}, 3);
  expect_ids(t, "aaaa", false, (int[]){259, 261, 261}, 3);
  /* ▁ a: only ▁a applies. */
  expect_ids(t, "a", false, (int[]){262}, 1);
  v.add_space_prefix = false;
  expect_ids(t, "aaa", false, (int[]){261, 260}, 2);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_spm_byte_fallback(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  const char* pieces[] = {SP, "a"};
  float scores[] = {0, 0};
  make_spm(&v, pieces, scores, 2);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  /* € = E2 82 AC is not in the vocabulary: its bytes come out as <0xNN> tokens. */
  expect_ids(t, "a\xe2\x82\xac", true, (int[]){1, 259, 260, 3 + 0xe2, 3 + 0x82, 3 + 0xac}, 6);
  expect_roundtrip(t, "a\xe2\x82\xac", 4, true);
  /* <0x41> written in the text is just text, never the byte token. */
  int* ids;
  int n;
  assert_int_equal(qn_tokenizer_encode(t, "<0x41>", 6, false, &ids, &n), QN_OK);
  for (int i = 0; i < n; i++) assert_int_not_equal(ids[i], 3 + 0x41);
  free(ids);
  /* Without byte fallback an unknown character is <unk>. */
  v.byte_fallback = false;
  expect_ids(t, "a\xe2\x82\xac", false, (int[]){259, 260, 0}, 3);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_spm_decode_space_after_bos(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  const char* pieces[] = {SP, "a", SP "a"};
  float scores[] = {0, 0, -1};
  make_spm(&v, pieces, scores, 3);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  char buf[16];
  assert_int_equal(qn_tokenizer_token_bytes(t, 261, 1, buf, sizeof buf), 1); /* after BOS */
  assert_memory_equal(buf, "a", 1);
  assert_int_equal(qn_tokenizer_token_bytes(t, 261, 260, buf, sizeof buf), 2);
  assert_memory_equal(buf, " a", 2);
  assert_int_equal(qn_tokenizer_token_bytes(t, 1, -1, buf, sizeof buf), 0);       /* control */
  assert_int_equal(qn_tokenizer_token_bytes(t, 3 + 'x', -1, buf, sizeof buf), 1); /* byte */
  assert_int_equal(buf[0], 'x');
  assert_int_equal(qn_tokenizer_token_bytes(t, 261, 260, buf, 1), 1); /* truncated to cap */
  assert_int_equal(qn_tokenizer_token_bytes(t, -1, -1, buf, sizeof buf), -1);
  assert_int_equal(qn_tokenizer_token_bytes(t, v.n_tokens, -1, buf, sizeof buf), -1);
  char* text;
  size_t len;
  assert_int_equal(qn_tokenizer_decode(t, (int[]){1, 261, 261, 2}, 4, &text, &len), QN_OK);
  assert_string_equal(text, "a a");
  free(text);
  assert_int_equal(qn_tokenizer_decode(t, (int[]){1, 99999}, 2, &text, &len), QN_EINVAL);
  assert_null(text);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

/* ---- byte-level BPE ---- */

static void test_bpe_merges_by_rank(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  /* 256 ab, 257 bc */
  const char* extra[] = {"ab", "bc"};
  const char* bc_first[] = {"b c", "a b"};
  make_bpe(&v, extra, 2, bc_first, 2, NULL, NULL, 0);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "abc", false, (int[]){'a', 257}, 2);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);

  const char* ab_first[] = {"a b", "b c"};
  make_bpe(&v, extra, 2, ab_first, 2, NULL, NULL, 0);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "abc", false, (int[]){256, 'c'}, 2);
  expect_ids(t, "abc", true, (int[]){256, 'c'}, 2); /* no BOS in this vocab */
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_bpe_pretokenizer_splits(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  /* 256 aa, 257 bĠ (b followed by a space), 258 Ġa; merges never cross a regex piece. */
  const char* extra[] = {"aa", "b\xc4\xa0",
                         "\xc4\xa0"
                         "a"};
  const char* merges[] = {"b \xc4\xa0", "a a", "\xc4\xa0 a"};
  make_bpe(&v, extra, 3, merges, 3, NULL, NULL, 0);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  /* GPT-2 regex: "b", " aaaa" (no "bĠ" across pieces); in Ġ a a a a, "a a" (rank 1) beats
   * "Ġ a" (rank 2) and goes leftmost first: Ġ aa aa. */
  expect_ids(t, "b aaaa", false, (int[]){'b', ' ', 256, 256}, 4);
  expect_ids(t, "aaa", false, (int[]){256, 'a'}, 2);
  qn_tokenizer_free(t);
  /* A custom regex that splits every character keeps everything apart. */
  v.pretok_regex = strdup("(?s).");
  assert_non_null(v.pretok_regex);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "b aa", false, (int[]){'b', ' ', 'a', 'a'}, 4);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_special_tokens(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  const char* extra[] = {"ab"};
  const char* merges[] = {"a b"};
  /* 257 <|endoftext|> (control), 258 <|a|>, 259 <|a|>b (user-defined) */
  const char* added[] = {"<|endoftext|>", "<|a|>", "<|a|>b"};
  const uint8_t attrs[] = {QN_TOKEN_CONTROL, QN_TOKEN_USER_DEFINED, QN_TOKEN_USER_DEFINED};
  make_bpe(&v, extra, 1, merges, 1, added, attrs, 3);
  v.bos_id = v.eos_id = 257;
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "ab<|endoftext|>ab", false, (int[]){256, 257, 256}, 3);
  expect_ids(t, "<|endoftext|>", true, (int[]){257, 257}, 2);
  expect_ids(t, "<|a|>b", false, (int[]){259}, 1); /* longest match */
  expect_ids(t, "<|a|>a", false, (int[]){258, 'a'}, 2);
  expect_ids(t, "<|endoftext|", false,
             (int[]){'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|'}, 12);
  /* Byte-level decoding writes added tokens as their text. */
  expect_roundtrip(t, "x<|endoftext|>\ny<|a|>b", 22, false);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);

  /* SPM: control tokens in the text are matched too. */
  const char* pieces[] = {SP, "a", "b"};
  float scores[] = {0, 0, 0};
  make_spm(&v, pieces, scores, 3);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  int* ids;
  int n;
  assert_int_equal(qn_tokenizer_encode(t, "a</s>b", 6, false, &ids, &n), QN_OK);
  int n_eos = 0;
  for (int i = 0; i < n; i++) n_eos += ids[i] == 2;
  assert_int_equal(n_eos, 1);
  free(ids);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

/* ---- streaming decode ---- */

static void test_detok_emoji_bytes(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  const char* pieces[] = {SP, "a"};
  float scores[] = {0, 0};
  make_spm(&v, pieces, scores, 2);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  qn_detok d;
  char out[64];
  qn_detok_init(&d, t);
  assert_int_equal(qn_detok_push(&d, 1, out, sizeof out), 0); /* BOS */
  const unsigned char emoji[4] = {0xf0, 0x9f, 0x99, 0x82};    /* U+1F642 */
  for (int i = 0; i < 3; i++) assert_int_equal(qn_detok_push(&d, 3 + emoji[i], out, sizeof out), 0);
  assert_int_equal(qn_detok_push(&d, 3 + emoji[3], out, sizeof out), 4);
  assert_memory_equal(out, emoji, 4);
  assert_int_equal(qn_detok_flush(&d, out, sizeof out), 0);
  /* A character cut short: held back, then U+FFFD on flush. */
  assert_int_equal(qn_detok_push(&d, 3 + 0xe2, out, sizeof out), 0);
  assert_int_equal(qn_detok_push(&d, 3 + 0x82, out, sizeof out), 0);
  assert_int_equal(qn_detok_flush(&d, out, sizeof out), 3);
  assert_memory_equal(out, "\xef\xbf\xbd", 3);
  /* A stray continuation byte is replaced at once; a lead byte followed by text too. */
  assert_int_equal(qn_detok_push(&d, 3 + 0x80, out, sizeof out), 3);
  assert_memory_equal(out, "\xef\xbf\xbd", 3);
  assert_int_equal(qn_detok_push(&d, 3 + 0xe2, out, sizeof out), 0);
  assert_int_equal(qn_detok_push(&d, 260, out, sizeof out), 4); /* "a" */
  assert_memory_equal(out,
                      "\xef\xbf\xbd"
                      "a",
                      4);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

/* ---- round trips ---- */

static const char* const kTexts[] = {
    "Hello, world!",
    "  leading and trailing spaces  ",
    "\xe4\xb8\xad\xe6\x96\x87 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",           /* CJK */
    "emoji \xf0\x9f\x99\x82\xf0\x9f\x9a\x80 \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", /* 🙂🚀 👍🏽
                                                                                */
    "tabs\tand\r\nCRLF\r\n\n",
    "def f(x):\n\treturn x  # caf\xc3\xa9\n",
    "a",
    "",
};

static void test_roundtrip_spm_and_bpe(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  const char* pieces[] = {SP, "a", "e", "l", "o", SP "a", "ll", "he", "hell", "hello"};
  float scores[] = {0, 0, 0, 0, 0, -1, -2, -3, -4, -5};
  make_spm(&v, pieces, scores, 10);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  for (size_t i = 0; i < sizeof kTexts / sizeof *kTexts; i++) {
    expect_roundtrip(t, kTexts[i], strlen(kTexts[i]), true);
  }
  expect_roundtrip(t, "nul\0byte", 8, true);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);

  const char* extra[] = {"he", "ll", "hell", "hello", "\xc4\xa0h"};
  const char* merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 h"};
  make_bpe(&v, extra, 5, merges, 5, NULL, NULL, 0);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  for (size_t i = 0; i < sizeof kTexts / sizeof *kTexts; i++) {
    expect_roundtrip(t, kTexts[i], strlen(kTexts[i]), false);
  }
  /* Byte-level BPE round-trips any bytes, even invalid UTF-8. */
  unsigned char junk[512];
  unsigned seed = 12345;
  for (size_t i = 0; i < sizeof junk; i++) {
    seed = seed * 1103515245u + 12345u;
    junk[i] = (unsigned char)(seed >> 16);
  }
  expect_roundtrip(t, (const char*)junk, sizeof junk, false);
  /* " hello": "h e" (rank 0) comes before "Ġ h" (rank 4), so Ġ stays alone. */
  expect_ids(t, "hello hello", false, (int[]){259, ' ', 259}, 3);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
}

static void test_encode_args(void** state) {
  (void)state;
  qn_vocab v;
  qn_tokenizer* t;
  const char* pieces[] = {SP};
  float scores[] = {0};
  make_spm(&v, pieces, scores, 1);
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  int* ids;
  int n;
  assert_int_equal(qn_tokenizer_encode(t, "", 0, false, &ids, &n), QN_OK);
  assert_int_equal(n, 0);
  free(ids);
  assert_int_equal(qn_tokenizer_encode(t, NULL, 3, false, &ids, &n), QN_EINVAL);
  assert_int_equal(qn_tokenizer_encode(NULL, "a", 1, false, &ids, &n), QN_EINVAL);
  qn_tokenizer_free(t);
  qn_tokenizer_free(NULL);
  assert_int_equal(qn_tokenizer_new(NULL, &t), QN_EINVAL);
  qn_vocab_free(&v);
}

/* ---- llama2.c tokenizer.bin ---- */

/* Appends a token record (score, len, bytes) to buf. */
static size_t put_token(unsigned char* buf, size_t pos, float score, const char* s) {
  int32_t len = (int32_t)strlen(s);
  memcpy(buf + pos, &score, 4);
  memcpy(buf + pos + 4, &len, 4);
  memcpy(buf + pos + 8, s, (size_t)len);
  return pos + 8 + (size_t)len;
}

static void test_l2c_loader(void** state) {
  (void)state;
  unsigned char buf[256];
  int32_t max_len = 6;
  memcpy(buf, &max_len, 4);
  size_t n = 4;
  n = put_token(buf, n, 0.0f, "<unk>");
  n = put_token(buf, n, 0.0f, "\n<s>\n");
  n = put_token(buf, n, 0.0f, "\n</s>\n");
  n = put_token(buf, n, 0.0f, "<0x41>");
  n = put_token(buf, n, -1.5f, " a b");
  const char* path = qt_write_temp(buf, n, ".bin");
  assert_non_null(path);
  qn_vocab v;
  assert_int_equal(qn_l2c_tokenizer_load(path, 5, &v), QN_OK);
  assert_int_equal(v.kind, QN_VOCAB_SPM);
  assert_int_equal(v.n_tokens, 5);
  assert_string_equal(v.tokens[1], "<s>");
  assert_string_equal(v.tokens[2], "</s>");
  assert_string_equal(v.tokens[4], SP "a" SP "b");
  assert_true(v.scores[4] == -1.5f);
  assert_int_equal(v.attrs[0], QN_TOKEN_UNKNOWN);
  assert_int_equal(v.attrs[1], QN_TOKEN_CONTROL);
  assert_int_equal(v.attrs[2], QN_TOKEN_CONTROL);
  assert_int_equal(v.attrs[3], QN_TOKEN_BYTE);
  assert_int_equal(v.attrs[4], QN_TOKEN_NORMAL);
  assert_int_equal(v.unk_id, 0);
  assert_int_equal(v.bos_id, 1);
  assert_int_equal(v.eos_id, 2);
  assert_true(v.add_bos && v.add_space_prefix && v.byte_fallback);
  qn_vocab_free(&v);

  /* Fewer tokens than asked for, a cut-off record, a huge length: all QN_EFORMAT. */
  assert_int_equal(qn_l2c_tokenizer_load(path, 6, &v), QN_EFORMAT);
  const char* cut = qt_write_temp(buf, n - 1, ".bin");
  assert_int_equal(qn_l2c_tokenizer_load(cut, 5, &v), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), cut));
  assert_null(v.tokens);
  unsigned char bad[64];
  memcpy(bad, buf, 64);
  int32_t huge = 0x7fffffff;
  memcpy(bad + 8, &huge, 4); /* length of token 0 */
  const char* badp = qt_write_temp(bad, 64, ".bin");
  assert_int_equal(qn_l2c_tokenizer_load(badp, 2, &v), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), badp));
  assert_int_equal(qn_l2c_tokenizer_load("/nonexistent/tokenizer.bin", 5, &v), QN_EIO);
  assert_int_equal(qn_l2c_tokenizer_load(path, 0, &v), QN_EINVAL);
  unlink(path);
  unlink(cut);
  unlink(badp);
}

/* ---- Hugging Face tokenizer.json ---- */

/* A growable string. */
typedef struct sbuf {
  char* s;    /* text, NUL-terminated */
  size_t n;   /* length */
  size_t cap; /* allocated */
} sbuf;

static void sb_add(sbuf* b, const char* s) {
  size_t k = strlen(s);
  if (b->n + k + 1 > b->cap) {
    b->cap = (b->n + k + 1) * 2;
    b->s = realloc(b->s, b->cap);
    assert_non_null(b->s);
  }
  memcpy(b->s + b->n, s, k + 1);
  b->n += k;
}

/* A JSON string literal for s (escapes quotes, backslashes and control bytes). */
static void sb_json_str(sbuf* b, const char* s) {
  sb_add(b, "\"");
  for (; *s; s++) {
    char e[8];
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      snprintf(e, sizeof e, "\\%c", c);
    else if (c < 0x20)
      snprintf(e, sizeof e, "\\u%04x", c);
    else
      snprintf(e, sizeof e, "%c", c);
    sb_add(b, e);
  }
  sb_add(b, "\"");
}

static const char* make_dir(void) {
  static char dir[64];
  snprintf(dir, sizeof dir, "/tmp/qn_tok_test_XXXXXX");
  assert_non_null(mkdtemp(dir));
  return dir;
}

static void write_file(const char* dir, const char* name, const char* text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void remove_dir(const char* dir) {
  char path[256];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  unlink(path);
  rmdir(dir);
}

static void test_hf_byte_level(void** state) {
  (void)state;
  /* Vocab: the 256 byte characters (ids 0..255), "ab" 256, "Ġab" 257; <|eot|> 258 added.
   * Pre-tokenizer: a Split regex isolating runs of letters with an optional leading space,
   * then ByteLevel without its own regex. Merges in the [a, b] form. */
  sbuf j = {0};
  sb_add(&j,
         "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":258,\"content\":\"<|eot|>\","
         "\"special\":true}],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\","
         "\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\" ?[a-z]+|[^a-z]\"},"
         "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
         "\"add_prefix_space\":false,\"use_regex\":false}]},\"decoder\":{\"type\":"
         "\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{");
  for (int b = 0; b < 256; b++) {
    char u[4], num[16];
    b2u(b, u);
    sb_json_str(&j, u);
    snprintf(num, sizeof num, ":%d,", b);
    sb_add(&j, num);
  }
  sb_add(&j,
         "\"ab\":256,\"\xc4\xa0"
         "ab\":257},\"merges\":[[\"a\",\"b\"],[\"\xc4\xa0\",\"ab\"]]}}");
  const char* dir = make_dir();
  write_file(dir, "tokenizer.json", j.s);
  write_file(dir, "tokenizer_config.json",
             "{\"bos_token\":{\"content\":\"<|eot|>\"},\"eos_token\":\"<|eot|>\","
             "\"add_bos_token\":true}");
  qn_vocab v;
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_OK);
  assert_int_equal(v.kind, QN_VOCAB_BPE);
  assert_int_equal(v.n_tokens, 259);
  assert_int_equal(v.n_merges, 2);
  assert_string_equal(v.merges[1], "\xc4\xa0 ab");
  assert_non_null(v.pretok_regex);
  assert_string_equal(v.pretok_regex, " ?[a-z]+|[^a-z]");
  assert_int_equal(v.bos_id, 258);
  assert_int_equal(v.eos_id, 258);
  assert_int_equal(v.attrs[258], QN_TOKEN_CONTROL);
  assert_true(v.add_bos);
  qn_tokenizer* t;
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  /* "ab ab1": pieces "ab", " ab", "1" -> [ab, Ġab, '1'], BOS first. */
  expect_ids(t, "ab ab1", true, (int[]){258, 256, 257, '1'}, 4);
  expect_roundtrip(t, "ab ab1<|eot|>x", 14, false);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);

  /* Without tokenizer_config.json: no BOS for byte-level BPE. */
  char cfg[256];
  snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
  unlink(cfg);
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_OK);
  assert_false(v.add_bos);
  assert_int_equal(v.bos_id, -1);
  qn_vocab_free(&v);
  remove_dir(dir);
  free(j.s);
}

static void test_hf_sentencepiece_style(void** state) {
  (void)state;
  /* Llama-style: Prepend/Replace normalizers, byte fallback, merges as "a b" strings.
   * ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0xNN>, 259 ▁, 260 a, 261 b, 262 ab, 263 ▁ab, 264 ba.
   * "ba" is in the vocabulary but no merge makes it. */
  sbuf j = {0};
  sb_add(&j,
         "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
         "{\"id\":1,\"content\":\"<s>\",\"special\":true},"
         "{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
         "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\","
         "\"prepend\":\"" SP
         "\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
         "\"content\":\"" SP
         "\"}]},\"pre_tokenizer\":null,"
         "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\","
         "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,");
  for (int b = 0; b < 256; b++) {
    char e[32];
    snprintf(e, sizeof e, "\"<0x%02X>\":%d,", b, 3 + b);
    sb_add(&j, e);
  }
  sb_add(&j, "\"" SP "\":259,\"a\":260,\"b\":261,\"ab\":262,\"" SP
             "ab\":263,\"ba\":264},"
             "\"merges\":[\"a b\",\"" SP " ab\"]}}");
  const char* dir = make_dir();
  write_file(dir, "tokenizer.json", j.s);
  qn_vocab v;
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_OK);
  assert_int_equal(v.kind, QN_VOCAB_SPM);
  assert_int_equal(v.n_tokens, 265);
  assert_true(v.byte_fallback && v.add_space_prefix && v.add_bos);
  assert_int_equal(v.bos_id, 1);
  assert_int_equal(v.eos_id, 2);
  assert_int_equal(v.unk_id, 0);
  assert_int_equal(v.attrs[0], QN_TOKEN_UNKNOWN);
  assert_int_equal(v.attrs[3 + 0x41], QN_TOKEN_BYTE);
  assert_true(v.scores[262] > v.scores[263]); /* merge rank 0 beats rank 1 */
  qn_tokenizer* t;
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_OK);
  expect_ids(t, "ab ab", true, (int[]){1, 263, 263}, 3);
  expect_ids(t, "ba", false, (int[]){259, 261, 260}, 3); /* no rule makes "ba" */
  expect_ids(t, "a\xc3\xa9", false, (int[]){259, 260, 3 + 0xc3, 3 + 0xa9}, 4);
  expect_roundtrip(t, "ab ba \xc3\xa9t\xc3\xa9", 11, true);
  qn_tokenizer_free(t);
  qn_vocab_free(&v);
  remove_dir(dir);
  free(j.s);
}

static void test_hf_errors(void** state) {
  (void)state;
  qn_vocab v;
  assert_int_equal(qn_hf_tokenizer_load("/nonexistent/dir", &v), QN_EIO);
  const char* dir = make_dir();
  write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}");
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_EFORMAT);
  assert_non_null(strstr(qn_last_error(), dir));
  write_file(dir, "tokenizer.json",
             "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}");
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_EUNSUPPORTED);
  write_file(dir, "tokenizer.json",
             "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\","
             "\"vocab\":{\"a\":-4},\"merges\":[]}}");
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_EFORMAT);
  write_file(dir, "tokenizer.json",
             "{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"type\":\"BPE\","
             "\"vocab\":{\"a\":0},\"merges\":[]}}");
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_EUNSUPPORTED);
  /* A merge naming unknown tokens is caught when the tokenizer is built. */
  write_file(dir, "tokenizer.json",
             "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\","
             "\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a c\"]}}");
  assert_int_equal(qn_hf_tokenizer_load(dir, &v), QN_OK);
  qn_tokenizer* t;
  assert_int_equal(qn_tokenizer_new(&v, &t), QN_EFORMAT);
  assert_null(t);
  qn_vocab_free(&v);
  remove_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spm_merge_order_by_score),
      cmocka_unit_test(test_spm_ties_go_leftmost),
      cmocka_unit_test(test_spm_byte_fallback),
      cmocka_unit_test(test_spm_decode_space_after_bos),
      cmocka_unit_test(test_bpe_merges_by_rank),
      cmocka_unit_test(test_bpe_pretokenizer_splits),
      cmocka_unit_test(test_special_tokens),
      cmocka_unit_test(test_detok_emoji_bytes),
      cmocka_unit_test(test_roundtrip_spm_and_bpe),
      cmocka_unit_test(test_encode_args),
      cmocka_unit_test(test_l2c_loader),
      cmocka_unit_test(test_hf_byte_level),
      cmocka_unit_test(test_hf_sentencepiece_style),
      cmocka_unit_test(test_hf_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
