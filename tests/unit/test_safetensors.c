/* test_safetensors.c: the safetensors parser on files written here: names, shapes, dtypes,
 * data pointers and __metadata__ of valid files; then hostile headers (lengths beyond the
 * file, malformed JSON, bad offsets and sizes, unknown dtypes, overflow), every truncation
 * of a small file and every single-byte corruption, which must fail cleanly. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "core/status.h"
#include "format/safetensors.h"

/* ---- a tiny writer ----------------------------------------------------------------------- */

/* A file image: malloc'ed bytes of exactly size (so ASan sees any read past the end). */
typedef struct image {
  uint8_t* bytes;
  size_t size;
} image;

/* Builds header_json (padded with spaces to a multiple of 8) + data into an image. */
static image build_raw(const char* header_json, const void* data, size_t ndata) {
  size_t n = strlen(header_json);
  size_t padded = (n + 7) / 8 * 8;
  image im = {malloc(8 + padded + ndata), 8 + padded + ndata};
  assert_non_null(im.bytes);
  for (int i = 0; i < 8; i++) im.bytes[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  memcpy(im.bytes + 8, header_json, n);
  memset(im.bytes + 8 + n, ' ', padded - n);
  if (ndata) memcpy(im.bytes + 8 + padded, data, ndata);
  return im;
}

/* A view of the image as a mapped file (no file needed). */
static qn_mapfile as_map(const image* im) {
  qn_mapfile mf;
  memset(&mf, 0, sizeof mf);
  mf.data = im->bytes;
  mf.size = im->size;
  snprintf(mf.path, sizeof mf.path, "mem.safetensors");
  return mf;
}

static qn_status parse_image(const image* im, qn_st_visit_fn fn, void* user, char** meta,
                             qn_st_info* info) {
  qn_mapfile mf = as_map(im);
  return qn_safetensors_parse(&mf, fn, user, meta, info);
}

/* Parses a header with ndata zero bytes of data; returns the status. */
static qn_status parse_header(const char* header_json, size_t ndata) {
  uint8_t* zeros = calloc(ndata ? ndata : 1, 1);
  assert_non_null(zeros);
  image im = build_raw(header_json, zeros, ndata);
  free(zeros);
  char* meta = NULL;
  qn_status st = parse_image(&im, NULL, NULL, &meta, NULL);
  free(meta);
  free(im.bytes);
  return st;
}

/* ---- a visitor that records what it sees ------------------------------------------------- */

typedef struct seen {
  int n;
  char names[16][128];
  qn_tensor t[16];
  int fail_at; /* return QN_EINVAL on this call (-1: never) */
} seen;

static qn_status record(void* user, const char* name, const qn_tensor* t) {
  seen* s = user;
  if (s->n == s->fail_at) return qn_error(QN_EINVAL, "visitor stops at %s", name);
  assert_true(s->n < 16);
  snprintf(s->names[s->n], sizeof s->names[s->n], "%s", name);
  s->t[s->n++] = *t;
  return QN_OK;
}

/* ---- valid files ------------------------------------------------------------------------- */

/* data layout of the sample: F32 {2,3} at 0 (24 B), F16 {4} at 24 (8 B), BF16 {2,2} at 32
 * (8 B), I8 {3} at 40 (3 B), U8 scalar at 43 (1 B), F8_E4M3 {0,5} at 44 (0 B), I32 {1} at 44 */
static const char* k_sample_header =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hi \\\"there\\\"\"},"
    "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
    "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[32,40]},"
    "\"q.i8\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[40,43]},"
    "\"s.u8\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[43,44]},"
    "\"empty\":{\"dtype\":\"F8_E4M3\",\"shape\":[0,5],\"data_offsets\":[44,44]},"
    "\"i.i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[44,48]}}";

static image sample_image(void) {
  uint8_t data[48];
  for (int i = 0; i < 48; i++) data[i] = (uint8_t)(i * 7 + 1);
  float f[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 42.0f};
  memcpy(data, f, sizeof f);
  return build_raw(k_sample_header, data, sizeof data);
}

static void test_valid_sample(void** state) {
  (void)state;
  image im = sample_image();
  seen s = {.fail_at = -1};
  char* meta = NULL;
  qn_st_info info;
  assert_int_equal(parse_image(&im, record, &s, &meta, &info), QN_OK);
  size_t hlen = (strlen(k_sample_header) + 7) / 8 * 8;
  assert_int_equal(info.header_len, hlen);
  assert_int_equal(info.data_start, 8 + hlen);
  assert_int_equal(info.data_size, 48);
  assert_int_equal(info.data_used, 48);
  assert_int_equal(info.n_tensors, 7);
  assert_int_equal(s.n, 7);
  const uint8_t* base = im.bytes + 8 + hlen;

  /* header order is kept */
  assert_string_equal(s.names[0], "w.f32");
  assert_string_equal(s.t[0].name, "w.f32");
  assert_int_equal(s.t[0].dtype, QN_DTYPE_F32);
  assert_int_equal(s.t[0].ndim, 2);
  assert_int_equal(s.t[0].shape[0], 2);
  assert_int_equal(s.t[0].shape[1], 3);
  assert_ptr_equal(s.t[0].data, base);
  assert_int_equal(s.t[0].nbytes, 24);
  float f[6];
  memcpy(f, s.t[0].data, sizeof f);
  assert_true(f[2] == 3.25f && f[5] == 42.0f);

  assert_string_equal(s.names[1], "w.f16");
  assert_int_equal(s.t[1].dtype, QN_DTYPE_F16);
  assert_int_equal(s.t[1].ndim, 1);
  assert_int_equal(s.t[1].shape[0], 4);
  assert_ptr_equal(s.t[1].data, base + 24);

  assert_string_equal(s.names[2], "w.bf16");
  assert_int_equal(s.t[2].dtype, QN_DTYPE_BF16);
  assert_ptr_equal(s.t[2].data, base + 32);
  assert_int_equal(s.t[2].nbytes, 8);

  assert_string_equal(s.names[3], "q.i8");
  assert_int_equal(s.t[3].dtype, QN_DTYPE_I8);
  assert_ptr_equal(s.t[3].data, base + 40);
  assert_int_equal(((const uint8_t*)s.t[3].data)[0], (uint8_t)(40 * 7 + 1));

  assert_string_equal(s.names[4], "s.u8"); /* scalar: reported as {1} */
  assert_int_equal(s.t[4].dtype, QN_DTYPE_U8);
  assert_int_equal(s.t[4].ndim, 1);
  assert_int_equal(s.t[4].shape[0], 1);
  assert_int_equal(s.t[4].nbytes, 1);

  assert_string_equal(s.names[5], "empty");
  assert_int_equal(s.t[5].dtype, QN_DTYPE_F8_E4M3);
  assert_int_equal(s.t[5].ndim, 2);
  assert_int_equal(s.t[5].shape[0], 0);
  assert_int_equal(s.t[5].nbytes, 0);

  assert_string_equal(s.names[6], "i.i32");
  assert_int_equal(s.t[6].dtype, QN_DTYPE_I32);

  assert_non_null(meta);
  cJSON* m = cJSON_Parse(meta);
  assert_non_null(m);
  assert_string_equal(cJSON_GetObjectItem(m, "format")->valuestring, "pt");
  assert_string_equal(cJSON_GetObjectItem(m, "note")->valuestring, "hi \"there\"");
  assert_int_equal(cJSON_GetArraySize(m), 2);
  cJSON_Delete(m);
  free(meta);
  free(im.bytes);
}

/* A real file through qn_mapfile_open; no metadata; NULL visitor and info accepted. */
static void test_mapped_file_no_metadata(void** state) {
  (void)state;
  uint16_t h[2] = {0x3c00, 0xc000}; /* 1.0, -2.0 in fp16 */
  image im = build_raw("{\"a\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[0,4]}}", h, 4);
  const char* path = qt_write_temp(im.bytes, im.size, ".safetensors");
  assert_non_null(path);
  qn_mapfile mf;
  assert_int_equal(qn_mapfile_open(path, &mf), QN_OK);
  char* meta = (char*)"sentinel";
  seen s = {.fail_at = -1};
  assert_int_equal(qn_safetensors_parse(&mf, record, &s, &meta, NULL), QN_OK);
  assert_null(meta);
  assert_int_equal(s.n, 1);
  assert_memory_equal(s.t[0].data, h, 4);
  assert_int_equal(qn_safetensors_parse(&mf, NULL, NULL, NULL, NULL), QN_OK);
  qn_mapfile_close(&mf);
  unlink(path);
  free(im.bytes);
}

/* Names longer than qn_tensor.name still reach the visitor in full. */
static void test_long_name(void** state) {
  (void)state;
  char name[201], header[512];
  memset(name, 'x', 200);
  name[200] = '\0';
  snprintf(header, sizeof header,
           "{\"%s\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", name);
  uint8_t d[2] = {1, 2};
  image im = build_raw(header, d, 2);
  seen s = {.fail_at = -1};
  assert_int_equal(parse_image(&im, record, &s, NULL, NULL), QN_OK);
  assert_int_equal(s.n, 1);
  assert_int_equal(strlen(s.names[0]), 127); /* the recorder's own buffer truncates */
  assert_string_equal(s.t[0].name, "");
  free(im.bytes);
}

/* The visitor's status stops the walk and is returned; metadata is not leaked. */
static void test_visitor_error(void** state) {
  (void)state;
  image im = sample_image();
  seen s = {.fail_at = 2};
  char* meta = NULL;
  assert_int_equal(parse_image(&im, record, &s, &meta, NULL), QN_EINVAL);
  assert_null(meta);
  assert_int_equal(s.n, 2);
  assert_non_null(strstr(qn_last_error(), "w.bf16"));
  free(im.bytes);
}

/* A bad entry anywhere means no tensor is reported at all. */
static void test_validated_before_visit(void** state) {
  (void)state;
  uint8_t d[8] = {0};
  image im = build_raw(
      "{\"ok\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
      "\"bad\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,9]}}",
      d, 8);
  seen s = {.fail_at = -1};
  assert_int_equal(parse_image(&im, record, &s, NULL, NULL), QN_EFORMAT);
  assert_int_equal(s.n, 0);
  assert_non_null(strstr(qn_last_error(), "bad"));
  free(im.bytes);
}

/* ---- hostile input ----------------------------------------------------------------------- */

static void expect_fail(const char* header, size_t ndata, qn_status want, const char* in_msg) {
  qn_status st = parse_header(header, ndata);
  if (st != want || (in_msg && !strstr(qn_last_error(), in_msg)))
    fail_msg("header %s: got %s (%s), want %s mentioning '%s'", header, qn_status_name(st),
             qn_last_error(), qn_status_name(want), in_msg ? in_msg : "");
}

static void test_bad_length_field(void** state) {
  (void)state;
  image im = sample_image();
  /* N one past the file, N = 2^64 - 1, N = 0, and files shorter than 8 bytes */
  uint64_t lens[3] = {im.size - 8 + 1, UINT64_MAX, 0};
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < 8; i++) im.bytes[i] = (uint8_t)(lens[k] >> (8 * i));
    assert_int_equal(parse_image(&im, NULL, NULL, NULL, NULL), QN_EFORMAT);
    assert_non_null(strstr(qn_last_error(), "mem.safetensors"));
  }
  for (size_t n = 0; n < 8; n++) {
    image small = {malloc(n ? n : 1), n};
    memset(small.bytes, 0, n ? n : 1);
    assert_int_equal(parse_image(&small, NULL, NULL, NULL, NULL), QN_EFORMAT);
    free(small.bytes);
  }
  qn_mapfile empty;
  memset(&empty, 0, sizeof empty);
  assert_int_equal(qn_safetensors_parse(&empty, NULL, NULL, NULL, NULL), QN_EFORMAT);
  free(im.bytes);
}

static void test_bad_json(void** state) {
  (void)state;
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1, QN_EFORMAT,
              "JSON");
  expect_fail("not json at all", 0, QN_EFORMAT, "JSON");
  expect_fail("[1,2,3]", 0, QN_EFORMAT, "not a JSON object");
  expect_fail("{} trailing", 0, QN_EFORMAT, "after the JSON");
  expect_fail("{}{}", 0, QN_EFORMAT, "after the JSON");
  expect_fail("{\"a\":1}", 0, QN_EFORMAT, "'a'");
  expect_fail("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QN_EFORMAT, "dtype");
  expect_fail("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QN_EFORMAT, "dtype");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, QN_EFORMAT, "shape");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, QN_EFORMAT, "data_offsets");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 2, QN_EFORMAT,
              "data_offsets");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, QN_EFORMAT,
              "data_offsets");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",1]}}", 1, QN_EFORMAT,
              "data_offsets");
  expect_fail("{\"__metadata__\":[1]}", 0, QN_EFORMAT, "__metadata__");
  expect_fail("{\"__metadata__\":{\"k\":1}}", 0, QN_EFORMAT, "'k'");
  expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, QN_EFORMAT, "twice");
  /* an empty header object is a valid (empty) file */
  assert_int_equal(parse_header("{}", 0), QN_OK);
}

static void test_bad_shapes(void** state) {
  (void)state;
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, QN_EFORMAT,
              "shape[0]");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[2,-1],\"data_offsets\":[0,1]}}", 1, QN_EFORMAT,
              "shape[1]");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[\"4\"],\"data_offsets\":[0,4]}}", 4, QN_EFORMAT,
              "shape[0]");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, QN_EFORMAT,
              "shape[0]");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, QN_EFORMAT,
              "shape");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
              QN_EUNSUPPORTED, "5 dimensions");
  /* 2^40 cubed overflows 64 bits */
  expect_fail(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,1099511627776],"
      "\"data_offsets\":[0,4]}}",
      4, QN_EFORMAT, "overflow");
  /* 2^32 x 2^32 wraps to exactly 0 in 64 bits: must not be taken for an empty tensor */
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
              0, QN_EFORMAT, "overflow");
  /* 2^53 elements are far more than the 4 bytes given */
  expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992],\"data_offsets\":[0,4]}}", 4,
              QN_EFORMAT, "bytes");
  /* a zero dim after huge ones is a valid empty tensor */
  assert_int_equal(
      parse_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,9007199254740992,0],"
                   "\"data_offsets\":[0,0]}}",
                   0),
      QN_OK);
}

static void test_bad_offsets_and_sizes(void** state) {
  (void)state;
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3, QN_EFORMAT,
              "outside");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}}", 4, QN_EFORMAT,
              "outside");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,0]}}",
              4, QN_EFORMAT, "data_offsets");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 4, QN_EFORMAT,
              "data_offsets");
  expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, QN_EFORMAT,
              "need 8");
  expect_fail("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,7]}}", 8, QN_EFORMAT,
              "need 8");
  expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1000000],\"data_offsets\":[0,8]}}", 8,
              QN_EFORMAT, "'a'");
  expect_fail(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
      4, QN_EFORMAT, "twice");
  /* overlapping byte ranges (the second starts inside the first; one inside another) */
  expect_fail(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
      4, QN_EFORMAT, "overlap");
  expect_fail(
      "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
      4, QN_EFORMAT, "overlap");
  expect_fail(
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
      "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
      4, QN_EFORMAT, "overlap");
}

static void test_unknown_dtypes(void** state) {
  (void)state;
  const char* names[] = {"BOOL", "U16", "U32", "U64", "F4", "f32", "Q8_0", "Q4_0", ""};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char h[256];
    snprintf(h, sizeof h, "{\"layer.w\":{\"dtype\":\"%s\",\"shape\":[32],\"data_offsets\":[0,34]}}",
             names[i]);
    expect_fail(h, 34, QN_EUNSUPPORTED, "layer.w");
    if (*names[i]) assert_non_null(strstr(qn_last_error(), names[i]));
  }
  /* every dtype the project knows and the format has is accepted */
  const char* ok[] = {"F32", "F16", "BF16", "F64",     "I8",     "U8",
                      "I16", "I32", "I64",  "F8_E4M3", "F8_E5M2"};
  const int bytes[] = {4, 2, 2, 8, 1, 1, 2, 4, 8, 1, 1};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char h[256];
    snprintf(h, sizeof h, "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%d]}}", ok[i],
             3 * bytes[i]);
    assert_int_equal(parse_header(h, (size_t)(3 * bytes[i])), QN_OK);
  }
}

/* Every proper prefix of a valid file fails (the last tensor ends at the end of the file),
 * and every single-byte change either parses or fails cleanly: never a crash (ASan). */
static void test_truncations_and_corruptions(void** state) {
  (void)state;
  image im = sample_image();
  for (size_t n = 0; n < im.size; n++) {
    image cut = {malloc(n ? n : 1), n};
    assert_non_null(cut.bytes);
    memcpy(cut.bytes, im.bytes, n);
    seen s = {.fail_at = -1};
    char* meta = NULL;
    qn_status st = parse_image(&cut, record, &s, &meta, NULL);
    if (st == QN_OK) fail_msg("prefix of %zu / %zu bytes parsed", n, im.size);
    assert_null(meta);
    assert_int_equal(s.n, 0);
    free(cut.bytes);
  }
  static const uint8_t k_subst[] = {0x00, 0xff, '"', '}', ']', '9', '-', ',', '\\', 'e'};
  size_t header_end = 8 + (strlen(k_sample_header) + 7) / 8 * 8;
  for (size_t pos = 0; pos < header_end; pos++)
    for (size_t k = 0; k < sizeof k_subst; k++) {
      image bad = {malloc(im.size), im.size};
      assert_non_null(bad.bytes);
      memcpy(bad.bytes, im.bytes, im.size);
      bad.bytes[pos] = k_subst[k];
      seen s = {.fail_at = -1};
      char* meta = NULL;
      qn_st_info info;
      qn_status st = parse_image(&bad, record, &s, &meta, &info);
      if (st == QN_OK) {
        assert_true(info.data_used <= info.data_size);
        for (int i = 0; i < s.n; i++) {
          const uint8_t* p = s.t[i].data;
          assert_true(p >= bad.bytes + info.data_start);
          assert_true(p + s.t[i].nbytes <= bad.bytes + bad.size);
        }
      } else {
        assert_int_equal(s.n, 0);
        assert_null(meta);
      }
      free(meta);
      free(bad.bytes);
    }
  free(im.bytes);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_sample),
      cmocka_unit_test(test_mapped_file_no_metadata),
      cmocka_unit_test(test_long_name),
      cmocka_unit_test(test_visitor_error),
      cmocka_unit_test(test_validated_before_visit),
      cmocka_unit_test(test_bad_length_field),
      cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_bad_shapes),
      cmocka_unit_test(test_bad_offsets_and_sizes),
      cmocka_unit_test(test_unknown_dtypes),
      cmocka_unit_test(test_truncations_and_corruptions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
