/* test_w8a8.c: the int8-activation schemes end to end on stories260K over the TinyStories
 * text, story by story (split on <|endoftext|>, BOS + full context), through qn_quantize,
 * qn_model_open and qn_eval_cmp against the FP32 model. Measured first, then bounded:
 *  - w8a8-dynamic (no calibration), all 112 stories: measured mean KLD 0.0015, top-1 98.0%,
 *    PPL +0.21%; bounds KLD < 0.004, top-1 > 97%, |delta PPL| < 1% (the kernel is
 *    deterministic, so the margin only has to absorb legitimate changes, not noise). On the
 *    first 12 stories it must cost more than weight-only int8-channel (same weights; measured
 *    0.0014 vs 0.00054): the activations really are quantized in the model;
 *  - w4a8 against int4-g32 (same weights, f32 activations) on stories 31..112: measured KLD
 *    ratio 1.014; bound < 1.25 and not equal;
 *  - w8a8-static files built from the w8a8-dynamic one (scheme names rewritten in the
 *    metadata, NAME.act_scale tensors added): with no act_scale, or a zero / negative / NaN /
 *    inf / subnormal / F16 / [2]-shaped one, qn_model_open fails naming the tensor (a lone
 *    qn_weights_bind_matrix binds the scale when present and does not require it); with
 *    min-max scales observed on the first 30 stories (FP32 model) it runs on the next stories
 *    with measured KLD 0.0124 (8x dynamic's), top-1 94.3%: bounds > 2x dynamic, < 0.05,
 *    top-1 > 90% (one scale per tensor fixed on other text is coarser than one per token). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "format/qnz_writer.h"
#include "format/source.h"
#include "model/model.h"
#include "model/weights.h"
#include "quench.h"

static const char* g_bin; /* stories260K.bin */
static char* g_text;      /* the TinyStories text */
static size_t g_len;      /* its bytes */
static size_t g_calib;    /* bytes of the first 30 stories (calibration part) */
static qn_model* g_base;  /* the FP32 model */
static char g_dyn[128], g_tmp[4][128];

/* ---- helpers ------------------------------------------------------------------------------ */

static int setup(void** state) {
  (void)state;
  qn_model_opts mo = {NULL, 0};
  if (qn_model_open(g_bin, &mo, &g_base) != QN_OK) return -1;
  snprintf(g_dyn, sizeof g_dyn, "/tmp/qt_w8a8_%d_dyn.qnz", (int)getpid());
  for (int i = 0; i < 4; i++)
    snprintf(g_tmp[i], sizeof g_tmp[i], "/tmp/qt_w8a8_%d_%d.qnz", (int)getpid(), i);
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "w8a8-dynamic";
  if (qn_quantize(g_bin, g_dyn, &o, NULL) != QN_OK) {
    fprintf(stderr, "w8a8-dynamic: %s\n", qn_last_error());
    return -1;
  }
  /* the first 30 stories calibrate; the rest evaluate the static scheme */
  const char* p = g_text;
  for (int i = 0; i < 30 && p; i++) {
    p = strstr(p, "<|endoftext|>");
    if (p) p += strlen("<|endoftext|>");
  }
  if (!p) return -1;
  g_calib = (size_t)(p - g_text);
  return 0;
}

static int teardown(void** state) {
  (void)state;
  unlink(g_dyn);
  for (int i = 0; i < 4; i++) unlink(g_tmp[i]);
  qn_model_free(g_base);
  free(g_text);
  return 0;
}

/* qn_eval_cmp of the model at path against the base over text[0, len), printed. */
static qn_cmp_result compare(const char* label, const char* path, const char* text, size_t len) {
  qn_model_opts mo = {NULL, 0};
  qn_model* q = NULL;
  if (qn_model_open(path, &mo, &q) != QN_OK) fail_msg("%s: %s", path, qn_last_error());
  qn_ppl_opts po = {0, 0, "<|endoftext|>", NULL, NULL};
  qn_cmp_result r;
  if (qn_eval_cmp(g_base, q, text, len, &po, &r) != QN_OK)
    fail_msg("%s: %s", label, qn_last_error());
  qn_model_free(q);
  printf(
      "  %-22s PPL %.4f -> %.4f (%+.3f%%), KLD mean %.6f p99 %.5f max %.4f, top-1 %.2f%% "
      "over %lld tokens / %d stories (%.1f s)\n",
      label, r.ppl_base, r.ppl_quant, 100 * (r.ppl_quant - r.ppl_base) / r.ppl_base, r.kld_mean,
      r.kld_p99, r.kld_max, 100 * r.top1_agree, (long long)r.tokens, r.n_docs, r.seconds);
  assert_true(isfinite(r.ppl_quant) && r.kld_mean >= 0 && r.kld_max >= r.kld_p99);
  return r;
}

static qn_cmp_result quantize_and_compare(const char* scheme, const char* out, const char* text,
                                          size_t len) {
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = scheme;
  if (qn_quantize(g_bin, out, &o, NULL) != QN_OK) fail_msg("%s: %s", scheme, qn_last_error());
  return compare(scheme, out, text, len);
}

/* How the act_scale tensors of a rewritten file look. */
typedef enum scale_mode {
  SCALE_MISSING, /* none */
  SCALE_VALUE,   /* F32 [1] holding scales[i] */
  SCALE_F16,     /* F16 [1] */
  SCALE_SHAPE2,  /* F32 [2] */
} scale_mode;

/* Writes `out`: the w8a8-dynamic file with every weight renamed w8a8-static and, per mode,
 * a NAME.act_scale tensor after each (value scale_of(name), from `user`). */
typedef float (*scale_fn)(void* user, const char* name);
static void write_static(const char* out, scale_mode mode, scale_fn scale_of, void* user) {
  qn_source* s = NULL;
  if (qn_source_open(g_dyn, NULL, &s) != QN_OK) fail_msg("%s", qn_last_error());
  int n_out = s->n_tensors + (mode == SCALE_MISSING ? 0 : s->n_quant);
  qn_tensor* ts = calloc((size_t)n_out, sizeof *ts);
  float(*vals)[2] = calloc((size_t)s->n_quant + 1, sizeof *vals);
  assert_non_null(ts);
  assert_non_null(vals);
  for (int i = 0; i < s->n_tensors; i++) ts[i] = s->tensors[i];
  for (int k = 0; mode != SCALE_MISSING && k < s->n_quant; k++) {
    qn_tensor* t = &ts[s->n_tensors + k];
    memset(t, 0, sizeof *t);
    char nm[QN_NAME_MAX + 16];
    snprintf(nm, sizeof nm, "%s.act_scale", s->quant[k].name);
    assert_true(strlen(nm) < sizeof t->name);
    memcpy(t->name, nm, strlen(nm) + 1);
    t->dtype = mode == SCALE_F16 ? QN_DTYPE_F16 : QN_DTYPE_F32;
    t->ndim = 1;
    t->shape[0] = mode == SCALE_SHAPE2 ? 2 : 1;
    t->nbytes = mode == SCALE_F16 ? 2 : 4 * (uint64_t)t->shape[0];
    vals[k][0] = vals[k][1] = scale_of ? scale_of(user, s->quant[k].name) : 0.05f;
  }
  /* metadata: every quant entry becomes w8a8-static */
  cJSON* md = cJSON_Parse(s->metadata_json);
  assert_non_null(md);
  cJSON* qs = cJSON_GetObjectItemCaseSensitive(md, "quench.quant");
  cJSON* q = cJSON_Parse(qs->valuestring);
  assert_non_null(q);
  for (cJSON* e = q->child; e; e = e->next) {
    assert_string_equal(e->valuestring, "w8a8-dynamic");
    cJSON_SetValuestring(e, "w8a8-static");
  }
  char* qtxt = cJSON_PrintUnformatted(q);
  cJSON_SetValuestring(qs, qtxt);
  char* meta = cJSON_PrintUnformatted(md);
  qn_qnz_writer* w = NULL;
  if (qn_qnz_writer_begin(out, ts, n_out, strlen(meta) + 256, &w) != QN_OK)
    fail_msg("%s", qn_last_error());
  for (int i = 0; i < n_out; i++) {
    const void* data = i < s->n_tensors ? s->tensors[i].data : (const void*)vals[i - s->n_tensors];
    assert_int_equal(qn_qnz_writer_write(w, i, data), QN_OK);
  }
  if (qn_qnz_writer_finish(w, meta) != QN_OK) fail_msg("%s", qn_last_error());
  free(meta);
  free(qtxt);
  cJSON_Delete(q);
  cJSON_Delete(md);
  free(vals);
  free(ts);
  qn_source_free(s);
}

/* qn_model_open(path) fails with QN_EFORMAT and a message containing every word given. */
static void expect_open_error(const char* path, const char* w1, const char* w2) {
  qn_model_opts mo = {NULL, 0};
  qn_model* m = NULL;
  qn_status st = qn_model_open(path, &mo, &m);
  assert_int_equal(st, QN_EFORMAT);
  assert_null(m);
  const char* msg = qn_last_error();
  printf("  refused: %s\n", msg);
  if (!strstr(msg, w1) || (w2 && !strstr(msg, w2)))
    fail_msg("message '%s' lacks '%s' / '%s'", msg, w1, w2 ? w2 : "");
}

/* ---- min-max calibration, for a working static file ------------------------------------- */

/* max |x| seen at every (layer, site) of the FP32 forward pass. */
typedef struct absmax_obs {
  int n_layers;
  float* amax; /* (n_layers + 1, QN_SITE_COUNT); row n_layers is the output head (layer -1) */
} absmax_obs;

static void observe_absmax(void* user, int layer, qn_act_site site, const float* x, int n,
                           int width) {
  absmax_obs* o = user;
  float* a = &o->amax[(size_t)(layer < 0 ? o->n_layers : layer) * QN_SITE_COUNT + site];
  for (size_t i = 0; i < (size_t)n * (size_t)width; i++)
    if (fabsf(x[i]) > *a) *a = fabsf(x[i]);
}

/* act_scale of a weight: the absmax of its input site / 127. */
static float minmax_scale(void* user, const char* name) {
  absmax_obs* o = user;
  int layer = -1;
  qn_act_site site = QN_SITE_OUTPUT_IN;
  if (sscanf(name, "blk.%d.", &layer) == 1) {
    site = strstr(name, "attn_output") ? QN_SITE_ATTN_OUT
           : strstr(name, "attn_")     ? QN_SITE_ATTN_IN
           : strstr(name, "ffn_down")  ? QN_SITE_FFN_MID
                                       : QN_SITE_FFN_IN;
  }
  float a = o->amax[(size_t)(layer < 0 ? o->n_layers : layer) * QN_SITE_COUNT + site];
  assert_true(a > 0);
  return a / 127.0f;
}

/* Runs the FP32 model over every story of text[0, len) with the observer attached. */
static void observe_stories(absmax_obs* o, const char* text, size_t len) {
  qn_ctx* c = NULL;
  assert_int_equal(qn_ctx_new(g_base, 0, 1, &c), QN_OK);
  c->observe = observe_absmax;
  c->observe_user = o;
  qn_model_info info;
  qn_model_get_info(g_base, &info);
  const char* sep = "<|endoftext|>";
  for (const char* p = text; p < text + len;) {
    const char* e = strstr(p, sep);
    size_t n = e && e < text + len ? (size_t)(e - p) : (size_t)(text + len - p);
    int *ids = NULL, n_ids = 0;
    assert_int_equal(qn_tokenize(g_base, p, n, true, &ids, &n_ids), QN_OK);
    if (n_ids > info.max_seq_len) n_ids = info.max_seq_len;
    int* pos = malloc(sizeof(int) * (size_t)(n_ids > 0 ? n_ids : 1));
    assert_non_null(pos);
    for (int i = 0; i < n_ids; i++) pos[i] = i;
    qn_ctx_reset(c, -1);
    float* logits = malloc(sizeof(float) * (size_t)info.vocab_size * (size_t)(n_ids + 1));
    assert_non_null(logits);
    /* all logits, so the output head's input is observed at every token */
    if (n_ids > 0) assert_int_equal(qn_ctx_forward(c, ids, pos, NULL, n_ids, logits, true), QN_OK);
    free(logits);
    free(pos);
    free(ids);
    p += n + (e ? strlen(sep) : 0);
    if (!e) break;
  }
  qn_ctx_free(c);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_w8a8_dynamic(void** state) {
  (void)state;
  qn_cmp_result r = compare("w8a8-dynamic", g_dyn, g_text, g_len);
  /* the base side is the README's independent reference */
  assert_int_equal(r.n_docs, 112);
  assert_int_equal(r.tokens, 36583);
  assert_true(fabs(r.ppl_base - 3.371) < 0.0015);
  assert_true(r.kld_mean < 0.004);
  assert_true(r.top1_agree > 0.97);
  assert_true(fabs(r.ppl_quant - r.ppl_base) < 0.01 * r.ppl_base);
  /* weight-only int8-channel stores the same weights: the activations add error (checked on
   * the first 20 stories, where the two differ as much as on the whole text) */
  size_t part = 8000;
  qn_cmp_result w8 = quantize_and_compare("int8-channel", g_tmp[0], g_text, part);
  qn_cmp_result dy = compare("w8a8-dynamic", g_dyn, g_text, part);
  assert_true(dy.kld_mean > 1.5 * w8.kld_mean);
}

static void test_w4a8(void** state) {
  (void)state;
  const char* held = g_text + g_calib;
  size_t len = g_len - g_calib;
  qn_cmp_result w4 = quantize_and_compare("int4-g32", g_tmp[0], held, len);
  qn_cmp_result w4a8 = quantize_and_compare("w4a8", g_tmp[1], held, len);
  printf("  w4a8 / int4-g32 KLD: %.4f\n", w4a8.kld_mean / w4.kld_mean);
  assert_true(w4a8.kld_mean < 1.25 * w4.kld_mean);
  assert_true(w4a8.kld_mean != w4.kld_mean);
  assert_true(w4a8.top1_agree > 0.75);
}

/* Scale callback returning the float user points at. */
static float const_scale(void* user, const char* name) {
  (void)name;
  return *(const float*)user;
}

static void test_static_needs_act_scale(void** state) {
  (void)state;
  qn_model_info info;
  qn_model_get_info(g_base, &info);
  /* the first weight bound with an activation scale: the tied embedding is also the head */
  const char* first =
      info.tied_embeddings ? "token_embd.weight.act_scale" : "blk.0.attn_q.weight.act_scale";
  write_static(g_tmp[2], SCALE_MISSING, NULL, NULL);
  expect_open_error(g_tmp[2], first, "w8a8-static");
  /* a lone weight binds without it (re-quantizing only dequantizes), and with it gets it */
  const int64_t qd = (int64_t)info.n_heads * info.head_dim;
  qn_source* src = NULL;
  qn_qtensor w;
  assert_int_equal(qn_source_open(g_tmp[2], NULL, &src), QN_OK);
  assert_int_equal(qn_weights_bind_matrix(src, "blk.0.attn_q.weight", qd, info.dim, &w), QN_OK);
  assert_int_equal(w.type, QN_QTYPE_W8A8_STATIC);
  assert_true(w.act_scale == 0.0f);
  qn_source_free(src);
  float good = 0.375f;
  write_static(g_tmp[2], SCALE_VALUE, const_scale, &good);
  assert_int_equal(qn_source_open(g_tmp[2], NULL, &src), QN_OK);
  assert_int_equal(qn_weights_bind_matrix(src, "blk.0.attn_q.weight", qd, info.dim, &w), QN_OK);
  assert_true(w.act_scale == 0.375f);
  qn_source_free(src);
  const float bad[] = {0.0f, -0.5f, NAN, INFINITY, 1e-40f};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_static(g_tmp[2], SCALE_VALUE, const_scale, (void*)&bad[i]);
    expect_open_error(g_tmp[2], first, "positive");
  }
  write_static(g_tmp[2], SCALE_F16, NULL, NULL);
  expect_open_error(g_tmp[2], first, "F32 [1]");
  write_static(g_tmp[2], SCALE_SHAPE2, NULL, NULL);
  expect_open_error(g_tmp[2], first, "F32 [1]");
  /* a valid scale opens */
  float ok = 0.05f;
  write_static(g_tmp[2], SCALE_VALUE, const_scale, &ok);
  qn_model_opts mo = {NULL, 0};
  qn_model* m = NULL;
  if (qn_model_open(g_tmp[2], &mo, &m) != QN_OK) fail_msg("%s", qn_last_error());
  qn_model_free(m);
}

static void test_static_minmax(void** state) {
  (void)state;
  qn_model_info info;
  qn_model_get_info(g_base, &info);
  absmax_obs o = {info.n_layers, calloc((size_t)(info.n_layers + 1) * QN_SITE_COUNT, 4)};
  assert_non_null(o.amax);
  observe_stories(&o, g_text, g_calib);
  write_static(g_tmp[3], SCALE_VALUE, minmax_scale, &o);
  free(o.amax);
  const char* held = g_text + g_calib;
  size_t len = 20000; /* a quarter of the text is plenty for a difference this size */
  qn_cmp_result st = compare("w8a8-static (minmax)", g_tmp[3], held, len);
  qn_cmp_result dy = compare("w8a8-dynamic", g_dyn, held, len);
  /* one scale per tensor, fixed on other text, is coarser than one per token */
  assert_true(st.kld_mean > 2 * dy.kld_mean); /* measured 8x */
  assert_true(st.kld_mean < 0.05);            /* measured 0.0124 */
  assert_true(st.top1_agree > 0.90);          /* measured 94.3% */
}

int main(void) {
  g_bin = qt_shared("models/stories260K/stories260K.bin");
  const char* txt = qt_shared("text/tinystories-valid-head80k.txt");
  if (!g_bin || !txt) qt_skip("stories260K or the TinyStories text is absent");
  g_text = qt_read_file(txt, &g_len);
  if (!g_text) qt_skip("cannot read the TinyStories text");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_w8a8_dynamic),
      cmocka_unit_test(test_w4a8),
      cmocka_unit_test(test_static_needs_act_scale),
      cmocka_unit_test(test_static_minmax),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
