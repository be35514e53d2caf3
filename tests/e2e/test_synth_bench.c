/* test_synth_bench.c: the synthetic-model writer and the benchmark tools.
 *  - `tiny` written by qn_synth_write opens with qn_model_open with the preset's
 *    hyper-parameters (from the brief: dim 64, hidden 172, 2 layers, 4/2 heads, vocab 512),
 *    a separate head, a byte-level BPE tokenizer that round-trips text, and generates;
 *  - its model.safetensors tiles the data section from a 64-byte aligned start; matrices have
 *    mean ~0 and std ~0.02, norm weights are exactly 1.0 (the documented distribution);
 *  - the same seed writes the same bytes whatever the thread count, another seed other bytes;
 *  - an unknown preset fails with a message naming it and the presets, leaving nothing; a
 *    non-synthetic existing directory is refused and left alone; an earlier synthetic model
 *    is replaced;
 *  - `quench bench -m tiny -p 16 -n 8 -r 1 --json` parses with all required keys positive and
 *    bytes_per_token equal to the bf16 size of every weight but the embedding (computed here
 *    from the shapes); `quench bench --membw --json` parses with membw_gbps > 0;
 *  - `quench bench --sweep f32,int8-channel` writes a JSON with two rows and an SVG;
 *  - `quench synth` with a bad preset exits non-zero naming it. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/half.h"
#include "core/mapfile.h"
#include "format/safetensors.h"
#include "quench.h"
#include "testutil.h"

static char g_dir[64];   /* fresh temporary directory */
static char g_tiny[128]; /* g_dir/tiny, written once by the group setup */

/* Shape of the tiny preset as the brief gives it. */
enum { DIM = 64, HID = 172, LAYERS = 2, HEADS = 4, KV = 2, VOCAB = 512 };

static void path_in(char* out, size_t n, const char* name) {
  snprintf(out, n, "%s/%s", g_dir, name);
}

/* Runs `quench ARGS`, stdout into *out (malloc'ed); returns the exit code (-1 on a signal). */
static int run_quench(const char* args, char** out, char** err) {
  char cmd[2048], op[128], ep[128];
  path_in(op, sizeof op, "stdout");
  path_in(ep, sizeof ep, "stderr");
  snprintf(cmd, sizeof cmd, "'%s/quench' %s >'%s' 2>'%s'", QN_BINARY_DIR, args, op, ep);
  int st = system(cmd);
  if (out) *out = qt_read_file(op, NULL);
  if (err) *err = qt_read_file(ep, NULL);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static qn_status write_tiny(const char* path, uint64_t seed, int threads) {
  qn_synth_opts o = {.preset = "tiny", .seed = seed, .n_threads = threads};
  return qn_synth_write(path, &o);
}

static int setup(void** state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/qn_synth_XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  path_in(g_tiny, sizeof g_tiny, "tiny");
  return write_tiny(g_tiny, 7, 0) == QN_OK ? 0 : -1;
}

static int teardown(void** state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_tiny_opens_and_generates(void** state) {
  (void)state;
  qn_model* m = NULL;
  qn_model_opts mo = {NULL, 1};
  assert_int_equal(qn_model_open(g_tiny, &mo, &m), QN_OK);
  qn_model_info info;
  qn_model_get_info(m, &info);
  assert_string_equal(info.format, "hf");
  assert_int_equal(info.dim, DIM);
  assert_int_equal(info.hidden_dim, HID);
  assert_int_equal(info.n_layers, LAYERS);
  assert_int_equal(info.n_heads, HEADS);
  assert_int_equal(info.n_kv_heads, KV);
  assert_int_equal(info.head_dim, DIM / HEADS);
  assert_int_equal(info.vocab_size, VOCAB);
  assert_false(info.tied_embeddings);
  assert_string_equal(info.tokenizer_kind, "bpe");
  assert_true(info.bos_id >= 0);
  const char text[] = "the quick brown fox, 42 times!";
  int* ids = NULL;
  int n = 0;
  assert_int_equal(qn_tokenize(m, text, strlen(text), false, &ids, &n), QN_OK);
  assert_true(n > 0 && n < (int)strlen(text)); /* merges apply */
  char* back = NULL;
  size_t len = 0;
  assert_int_equal(qn_detokenize(m, ids, n, &back, &len), QN_OK);
  assert_string_equal(back, text);
  free(ids);
  free(back);
  qn_sampler_opts so;
  qn_sampler_opts_default(&so);
  so.temperature = 0;
  qn_gen_stats gs;
  assert_int_equal(qn_generate(m, "hello", 8, &so, NULL, NULL, &gs), QN_OK);
  assert_true(gs.n_gen >= 1 && gs.n_gen <= 8);
  qn_model_free(m);
}

/* Mean and standard deviation of a bf16 tensor. */
static void bf16_stats(const qn_tensor* t, double* mean, double* sd, bool* all_one) {
  const uint16_t* p = t->data;
  int64_t n = qn_tensor_nelem(t);
  double s = 0, s2 = 0;
  *all_one = true;
  for (int64_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, p + i, 2);
    double v = qn_bf16_to_f32(h);
    s += v, s2 += v * v;
    *all_one &= v == 1.0;
  }
  *mean = s / n;
  *sd = sqrt(s2 / n - *mean * *mean);
}

static qn_status check_tensor(void* user, const char* name, const qn_tensor* t) {
  int* count = user;
  assert_int_equal(t->dtype, QN_DTYPE_BF16);
  double mean, sd;
  bool ones;
  bf16_stats(t, &mean, &sd, &ones);
  if (strstr(name, "norm")) {
    assert_int_equal(t->ndim, 1);
    assert_true(ones);
  } else {
    assert_int_equal(t->ndim, 2);
    double n = (double)qn_tensor_nelem(t);
    assert_true(fabs(mean) < 5 * 0.02 / sqrt(n) + 1e-4);
    assert_true(fabs(sd - 0.02) < 0.02 * (5 / sqrt(2 * n) + 0.01));
  }
  (*count)++;
  return QN_OK;
}

static void test_weights_follow_the_spec(void** state) {
  (void)state;
  char path[160];
  snprintf(path, sizeof path, "%s/model.safetensors", g_tiny);
  qn_mapfile mf;
  assert_int_equal(qn_mapfile_open(path, &mf), QN_OK);
  qn_st_info info;
  int count = 0;
  assert_int_equal(qn_safetensors_parse(&mf, check_tensor, &count, NULL, &info), QN_OK);
  assert_int_equal(count, 3 + 9 * LAYERS);
  assert_int_equal(info.data_start % 64, 0);
  assert_int_equal(info.data_used, info.data_size); /* tensors tile the data section */
  qn_mapfile_close(&mf);
}

static bool same_file(const char* a, const char* b) {
  size_t na = 0, nb = 0;
  char* x = qt_read_file(a, &na);
  char* y = qt_read_file(b, &nb);
  bool same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

static void test_seed_determines_bytes(void** state) {
  (void)state;
  char one[128], other[128], a[200], b[200], c[200];
  path_in(one, sizeof one, "tiny_1thread");
  path_in(other, sizeof other, "tiny_seed8");
  assert_int_equal(write_tiny(one, 7, 1), QN_OK);
  assert_int_equal(write_tiny(other, 8, 2), QN_OK);
  snprintf(a, sizeof a, "%s/model.safetensors", g_tiny);
  snprintf(b, sizeof b, "%s/model.safetensors", one);
  snprintf(c, sizeof c, "%s/model.safetensors", other);
  assert_true(same_file(a, b));
  assert_false(same_file(a, c));
  /* writing again onto an earlier synthetic model replaces it */
  assert_int_equal(write_tiny(other, 7, 2), QN_OK);
  assert_true(same_file(a, c));
}

static void test_bad_inputs(void** state) {
  (void)state;
  char path[128];
  path_in(path, sizeof path, "nope");
  qn_synth_opts o = {.preset = "llama-13b"};
  assert_int_equal(qn_synth_write(path, &o), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "unknown preset 'llama-13b'"));
  assert_non_null(strstr(qn_last_error(), "tinyllama-1.1b"));
  struct stat sb;
  assert_int_not_equal(stat(path, &sb), 0);
  o.preset = "tiny";
  o.dtype = "int8";
  assert_int_equal(qn_synth_write(path, &o), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "int8"));
  /* an existing directory that is not a synthetic model is left alone */
  char keep[200];
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(keep, sizeof keep, "%s/precious.txt", path);
  FILE* f = fopen(keep, "w");
  assert_non_null(f);
  fputs("keep me", f);
  fclose(f);
  assert_int_equal(write_tiny(path, 1, 1), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "not a synthetic model"));
  assert_int_equal(stat(keep, &sb), 0);
  /* the CLI names the bad preset */
  char *out = NULL, *err = NULL, args[256];
  snprintf(args, sizeof args, "synth --preset llama-13b -o '%s/x'", g_dir);
  int rc = run_quench(args, &out, &err);
  assert_true(rc > 0);
  assert_non_null(err);
  assert_non_null(strstr(err, "unknown preset 'llama-13b'"));
  free(out);
  free(err);
}

static double num(const cJSON* o, const char* key) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(j)) fail_msg("key %s missing or not a number", key);
  return j->valuedouble;
}

static cJSON* run_json(const char* args) {
  char *out = NULL, *err = NULL;
  int rc = run_quench(args, &out, &err);
  cJSON* root = rc == 0 && out ? cJSON_Parse(out) : NULL;
  if (!root) {
    fprintf(stderr, "quench %s: exit %d\nstdout:\n%s\nstderr:\n%s\n", args, rc, out ? out : "",
            err ? err : "");
    free(out);
    free(err);
    fail_msg("quench %s: failed or printed no JSON", args);
  }
  free(out);
  free(err);
  return root;
}

static void test_bench_json(void** state) {
  (void)state;
  char args[256];
  snprintf(args, sizeof args, "bench -m '%s' -p 16 -n 8 -r 1 -t 1 --json", g_tiny);
  cJSON* r = run_json(args);
  static const char* const keys[] = {"pp_tps",      "tg_tps",         "tg_gbps",   "ttft_ms",
                                     "tpot_p50_ms", "tpot_p99_ms",    "rss_bytes", "load_ms",
                                     "pp_gops",     "bytes_per_token"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!(num(r, keys[i]) > 0)) fail_msg("%s is not positive", keys[i]);
  assert_true(num(r, "tpot_p99_ms") >= num(r, "tpot_p50_ms"));
  /* every weight but the embedding, bf16: layers + final norm + head */
  const double hd = DIM / HEADS;
  const double layer = 2 * DIM + 2 * HEADS * hd * DIM + 2 * KV * hd * DIM + 3.0 * HID * DIM;
  const double streamed = 2 * (LAYERS * layer + DIM + (double)VOCAB * DIM);
  assert_true(num(r, "bytes_per_token") == streamed);
  assert_true(fabs(num(r, "tg_gbps") - streamed * num(r, "tg_tps") / 1e9) <
              1e-3 * num(r, "tg_gbps") + 1e-4);
  cJSON_Delete(r);
}

static void test_membw_json(void** state) {
  (void)state;
  cJSON* r = run_json("bench --membw --membw-mib 64 --json");
  assert_true(num(r, "membw_gbps") > 0);
  assert_true(num(r, "vnni_gops") >= 0);
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) assert_true(num(r, "fma_gflops") > 0);
  if (__builtin_cpu_supports("avx512vnni")) assert_true(num(r, "vnni_gops") > 0);
  cJSON_Delete(r);
}

static void test_sweep(void** state) {
  (void)state;
  char args[512], out[128], path[200];
  path_in(out, sizeof out, "sweep");
  snprintf(args, sizeof args,
           "bench -m '%s' --sweep f32,int8-channel -p 8 -n 4 -r 1 -t 1 -o '%s' --json", g_tiny,
           out);
  cJSON* r = run_json(args);
  const cJSON* rows = cJSON_GetObjectItemCaseSensitive(r, "rows");
  assert_int_equal(cJSON_GetArraySize(rows), 2);
  double bpw0 = num(cJSON_GetArrayItem(rows, 0), "bpw");
  double bpw1 = num(cJSON_GetArrayItem(rows, 1), "bpw");
  assert_true(bpw0 > 31 && bpw0 < 33);
  assert_true(bpw1 > 8 && bpw1 < bpw0);
  for (int i = 0; i < 2; i++) assert_true(num(cJSON_GetArrayItem(rows, i), "tg_tps") > 0);
  cJSON_Delete(r);
  snprintf(path, sizeof path, "%s/bench_sweep.svg", out);
  char* svg = qt_read_file(path, NULL);
  assert_non_null(svg);
  assert_memory_equal(svg, "<svg", 4);
  assert_non_null(strstr(svg, "int8-channel"));
  free(svg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiny_opens_and_generates),
      cmocka_unit_test(test_weights_follow_the_spec),
      cmocka_unit_test(test_seed_determines_bytes),
      cmocka_unit_test(test_bad_inputs),
      cmocka_unit_test(test_bench_json),
      cmocka_unit_test(test_membw_json),
      cmocka_unit_test(test_sweep),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
