/* test_smoothquant.c: SmoothQuant leaves the FP32 function unchanged.
 *  - the folds on a tiny synthetic block (GQA 4 query / 2 kv heads, v bias): RMSNorm weight
 *    / s and q,k,v columns * s; v rows and bias / s with attn_output columns * s (s shared
 *    by the query heads of a group); ffn_norm / s with gate,up columns * s; ffn_up rows / s
 *    with ffn_down columns * s: q, k, the attention output projection and the MLP output
 *    equal the unsmoothed ones; unrelated tensors are untouched;
 *  - a calibration run on pycode-19m keeps an evenly spread sample and the extreme rows (the
 *    largest of which holds the site's max |x|);
 *  - scales from a calibration run on pycode-19m: alpha = 1 gives s = max|X_j|, alpha = 0
 *    gives s = 1 / max|W_j| (clamped to [1e-5, 1e5]); attention-output scales are equal
 *    across the query heads of each kv group; the untied head's input is smoothed (s =
 *    max|X_j| at alpha = 1), stories260K's tied head's input never is;
 *  - end to end: `quantize --scheme f32 --smooth 0.5 --calib` on stories260K and on
 *    pycode-19m (GQA 6/2) gives a .qnz whose logits equal the source model's (max |diff| /
 *    max |logit| < 1e-4 at every position of a prompt) while its norm weights did change;
 *  - bad options: alpha outside [0, 1], --smooth without --calib. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "calib/calibrate.h"
#include "calib/smoothquant.h"
#include "model/model.h"

/* Deterministic uniform floats in [-1, 1). */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (float)((double)(g_rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static void fill(float* v, int n, float scale) {
  for (int i = 0; i < n; i++) v[i] = frand() * scale;
}

/* y[n x rows] = x[n x cols] W^T (+ b). */
static void linear(const float* x, int n, const float* w, int rows, int cols, const float* b,
                   float* y) {
  for (int t = 0; t < n; t++)
    for (int r = 0; r < rows; r++) {
      double acc = b ? b[r] : 0;
      for (int j = 0; j < cols; j++) acc += (double)x[t * cols + j] * w[r * cols + j];
      y[t * rows + r] = (float)acc;
    }
}

static void assert_close(const float* a, const float* b, int n, double rel) {
  double mx = 0, md = 0;
  for (int i = 0; i < n; i++) {
    if (fabs(a[i]) > mx) mx = fabs(a[i]);
    if (fabs(a[i] - b[i]) > md) md = fabs(a[i] - b[i]);
  }
  if (md > rel * (mx > 0 ? mx : 1)) fail_msg("max |diff| %g vs max |value| %g", md, mx);
}

/* ---- synthetic block ---------------------------------------------------------------------- */

enum { DIM = 4, NH = 4, NKV = 2, HD = 2, QD = NH * HD, KVD = NKV * HD, HID = 3, T = 5 };

/* One block's weights. */
typedef struct block {
  float attn_norm[DIM], ffn_norm[DIM];
  float wq[QD * DIM], wk[KVD * DIM], wv[KVD * DIM], bv[KVD], wo[DIM * QD];
  float wg[HID * DIM], wu[HID * DIM], wd[DIM * HID];
} block;

/* Outputs of the block's linear layers for rms-normalized inputs xn (T x DIM, before the
 * norm weight) and fixed attention probabilities att[h][t][i] (causal mixing). */
typedef struct outs {
  float q[T * QD], k[T * KVD], o_proj[T * DIM], mlp[T * DIM];
} outs;

static void run_block(const block* b, const float* xn, const float att[NH][T][T], outs* o) {
  float x1[T * DIM], v[T * KVD], ao[T * QD], g[T * HID], u[T * HID];
  for (int t = 0; t < T; t++)
    for (int j = 0; j < DIM; j++) x1[t * DIM + j] = xn[t * DIM + j] * b->attn_norm[j];
  linear(x1, T, b->wq, QD, DIM, NULL, o->q);
  linear(x1, T, b->wk, KVD, DIM, NULL, o->k);
  linear(x1, T, b->wv, KVD, DIM, b->bv, v);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < NH; h++)
      for (int d = 0; d < HD; d++) {
        double acc = 0;
        for (int i = 0; i <= t; i++) acc += att[h][t][i] * v[i * KVD + (h / (NH / NKV)) * HD + d];
        ao[t * QD + h * HD + d] = (float)acc;
      }
  linear(ao, T, b->wo, DIM, QD, NULL, o->o_proj);
  for (int t = 0; t < T; t++)
    for (int j = 0; j < DIM; j++) x1[t * DIM + j] = xn[t * DIM + j] * b->ffn_norm[j];
  linear(x1, T, b->wg, HID, DIM, NULL, g);
  linear(x1, T, b->wu, HID, DIM, NULL, u);
  for (int i = 0; i < T * HID; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
  linear(g, T, b->wd, DIM, HID, NULL, o->mlp);
}

static void test_fold_synthetic(void** state) {
  (void)state;
  block b;
  fill((float*)&b, (int)(sizeof b / sizeof(float)), 1.0f);
  float xn[T * DIM], att[NH][T][T];
  fill(xn, T * DIM, 2.0f);
  for (int h = 0; h < NH; h++)
    for (int t = 0; t < T; t++) {
      float sum = 0;
      for (int i = 0; i <= t; i++) sum += att[h][t][i] = 0.1f + fabsf(frand());
      for (int i = 0; i <= t; i++) att[h][t][i] /= sum;
    }
  outs ref, got;
  run_block(&b, xn, att, &ref);

  /* smoothing scales: positive, far from 1, ATTN_OUT shared within each kv group */
  float s_in[DIM], s_ao[QD], s_fi[DIM], s_fm[HID];
  for (int j = 0; j < DIM; j++) s_in[j] = 0.05f + 4.0f * fabsf(frand());
  for (int j = 0; j < DIM; j++) s_fi[j] = 0.05f + 4.0f * fabsf(frand());
  for (int j = 0; j < HID; j++) s_fm[j] = 0.05f + 4.0f * fabsf(frand());
  for (int kvh = 0; kvh < NKV; kvh++)
    for (int d = 0; d < HD; d++) {
      float v = 0.05f + 4.0f * fabsf(frand());
      for (int h = kvh * (NH / NKV); h < (kvh + 1) * (NH / NKV); h++) s_ao[h * HD + d] = v;
    }
  float* slots[2 * QN_SITE_COUNT] = {0};
  slots[QN_SITE_ATTN_IN] = s_in;
  slots[QN_SITE_ATTN_OUT] = s_ao;
  slots[QN_SITE_FFN_IN] = s_fi;
  slots[QN_SITE_FFN_MID] = s_fm;
  qn_smooth sm;
  memset(&sm, 0, sizeof sm);
  sm.n_layers = 1;
  sm.n_slots = 2 * QN_SITE_COUNT;
  sm.head_dim = HD;
  sm.group = NH / NKV;
  sm.kv_dim = KVD;
  sm.s = slots;

  block m = b;
  struct {
    const char* name;
    float* data;
    int rows, cols;
  } ts[] = {{"blk.0.attn_norm.weight", m.attn_norm, DIM, 1},
            {"blk.0.attn_q.weight", m.wq, QD, DIM},
            {"blk.0.attn_k.weight", m.wk, KVD, DIM},
            {"blk.0.attn_v.weight", m.wv, KVD, DIM},
            {"blk.0.attn_v.bias", m.bv, KVD, 1},
            {"blk.0.attn_output.weight", m.wo, DIM, QD},
            {"blk.0.ffn_norm.weight", m.ffn_norm, DIM, 1},
            {"blk.0.ffn_gate.weight", m.wg, HID, DIM},
            {"blk.0.ffn_up.weight", m.wu, HID, DIM},
            {"blk.0.ffn_down.weight", m.wd, DIM, HID}};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    assert_true(qn_smooth_apply(&sm, ts[i].name, ts[i].data, ts[i].rows, ts[i].cols));
  /* every tensor really changed */
  assert_true(memcmp(&m, &b, sizeof m) != 0);
  assert_true(memcmp(m.wv, b.wv, sizeof m.wv) != 0 && memcmp(m.bv, b.bv, sizeof m.bv) != 0);
  assert_true(memcmp(m.wu, b.wu, sizeof m.wu) != 0 && memcmp(m.wd, b.wd, sizeof m.wd) != 0);
  run_block(&m, xn, att, &got);
  assert_close(ref.q, got.q, T * QD, 1e-5);
  assert_close(ref.k, got.k, T * KVD, 1e-5);
  assert_close(ref.o_proj, got.o_proj, T * DIM, 1e-5);
  assert_close(ref.mlp, got.mlp, T * DIM, 1e-5);

  /* names outside the smoothed block are untouched */
  float dummy[DIM] = {1, 2, 3, 4}, keep[DIM] = {1, 2, 3, 4};
  assert_false(qn_smooth_apply(&sm, "output_norm.weight", dummy, DIM, 1));
  assert_false(qn_smooth_apply(&sm, "blk.1.attn_norm.weight", dummy, DIM, 1));
  assert_false(qn_smooth_apply(&sm, "blk.0.attn_q.bias", dummy, DIM, 1));
  assert_false(qn_smooth_apply(&sm, "token_embd.weight", dummy, 1, DIM));
  assert_memory_equal(dummy, keep, sizeof keep);
}

/* ---- scales from a calibration run --------------------------------------------------------- */

static int g_skipped; /* tests skipped for want of ../shared */

static void test_scales_pycode(void** state) {
  (void)state;
  const char* dir = qt_shared("models/pycode-19m/model.safetensors");
  const char* text = qt_shared("text/pycode-calib.txt");
  if (!dir || !text) {
    g_skipped++;
    skip();
    return;
  }
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(QN_SHARED_DIR "/models/pycode-19m", NULL, &m), QN_OK);
  size_t len = 0;
  char* t = qt_read_file(text, &len);
  assert_non_null(t);
  qn_calib_opts co;
  memset(&co, 0, sizeof co);
  co.max_tokens = 600;
  co.ctx = 300;
  co.sample_rows = 32;
  qn_calib* c = NULL;
  assert_int_equal(qn_calib_run(m, t, len < 20000 ? len : 20000, "pycode", &co, &c), QN_OK);
  /* the search sample: evenly spread rows, then the rows with the largest max |x|, the
     largest of them being the site's max |x| */
  for (int l = 0; l < m->src->hp.n_layers; l++) {
    int slot = qn_calib_slot(c, l, QN_SITE_FFN_MID);
    int w = m->src->hp.hidden_dim;
    assert_true(c->sample_n[slot] >= 16 && c->sample_n[slot] <= 32);
    assert_int_equal(c->extreme_n[slot], QN_CALIB_EXTREME_ROWS);
    float top = 0;
    for (int r = 0; r < c->extreme_n[slot]; r++)
      for (int j = 0; j < w; j++)
        top = fmaxf(top, fabsf(c->sample[slot][(size_t)(c->sample_n[slot] + r) * w + j]));
    assert_true(top == qn_observer_absmax(qn_calib_observer(c, l, QN_SITE_FFN_MID)));
  }
  const qn_hparams* hp = &m->src->hp;
  const int group = hp->n_heads / hp->n_kv_heads, hd = hp->head_dim;
  qn_smooth* s1 = NULL;
  qn_smooth* s0 = NULL;
  assert_int_equal(qn_smooth_compute(m, c, 1.0, &s1), QN_OK);
  assert_int_equal(qn_smooth_compute(m, c, 0.0, &s0), QN_OK);
  for (int l = 0; l < hp->n_layers; l++) {
    /* alpha = 1: s = max |X_j| (attn_in has no zero channel in this model) */
    const float* ax = qn_observer_channel_absmax(qn_calib_observer(c, l, QN_SITE_ATTN_IN));
    const float* s = s1->s[qn_calib_slot(c, l, QN_SITE_ATTN_IN)];
    assert_non_null(s);
    for (int j = 0; j < hp->dim; j++) {
      float want = ax[j] > 0 ? fminf(fmaxf(ax[j], 1e-5f), 1e5f) : 1.0f;
      assert_float_equal(s[j], want, 1e-6 * fabs(want));
    }
    /* alpha = 0: s_j * max |W_j| = 1 (ffn_down, the only reader of the SwiGLU output) */
    const float* z = s0->s[qn_calib_slot(c, l, QN_SITE_FFN_MID)];
    const qn_qtensor* wd = &m->w.layers[l].w_down;
    float* row = malloc(sizeof(float) * (size_t)wd->cols);
    float* mx = calloc((size_t)wd->cols, sizeof(float));
    assert_true(row && mx);
    for (int64_t r = 0; r < wd->rows; r++) {
      qn_qtype_traits_of(wd->type)->dequant_row(wd, r, row);
      for (int64_t j = 0; j < wd->cols; j++) mx[j] = fmaxf(mx[j], fabsf(row[j]));
    }
    for (int64_t j = 0; j < wd->cols; j++)
      if (mx[j] > 0) assert_float_equal(z[j] * mx[j], 1.0, 1e-5);
    free(row);
    free(mx);
    /* attention output: one scale per v channel, shared by the group's query heads */
    const float* ao = s1->s[qn_calib_slot(c, l, QN_SITE_ATTN_OUT)];
    for (int h = 0; h < hp->n_heads; h++)
      for (int d = 0; d < hd; d++) assert_true(ao[h * hd + d] == ao[(h / group) * group * hd + d]);
    for (int j = 0; j < hp->n_heads * hd; j++) assert_true(ao[j] >= 1e-5f && ao[j] <= 1e5f);
  }
  /* the untied head's input is smoothed too: alpha = 1 gives s = max |X_j| */
  const float* hs = s1->s[qn_calib_slot(c, -1, QN_SITE_OUTPUT_IN)];
  const float* hx = qn_observer_channel_absmax(qn_calib_observer(c, -1, QN_SITE_OUTPUT_IN));
  assert_non_null(hs);
  for (int j = 0; j < hp->dim; j++)
    if (hx[j] > 1e-5f) assert_float_equal(hs[j], hx[j], 1e-6 * hx[j]);
  qn_smooth_free(s0);
  qn_smooth_free(s1);
  qn_calib_free(c);
  free(t);
  qn_model_free(m);
}

/* ---- end to end: f32 + smoothing == the source model -------------------------------------- */

/* Quantizes src to f32 with --smooth 0.5 calibrated on calib, then compares logits on the
 * first n tokens of prompt_text; block 0's attn_norm must have changed. */
static void check_equivalence(const char* src, const char* tok, const char* calib,
                              const char* prompt_text, int n, bool head_smoothed) {
  char out[256];
  snprintf(out, sizeof out, "/tmp/qt_smooth_%d.qnz", (int)getpid());
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "f32";
  o.tokenizer_path = tok;
  o.calib_path = calib;
  o.calib_tokens = 1024;
  o.calib_ctx = 256;
  o.smooth = true;
  o.smooth_alpha = 0.5;
  qn_quantize_report rep;
  qn_status st = qn_quantize(src, out, &o, &rep);
  if (st != QN_OK) fail_msg("quantize: %s", qn_last_error());
  assert_true(rep.n_calib > 0);
  int smoothed = 0;
  for (int i = 0; i < rep.n_calib; i++) {
    smoothed += rep.calib[i].smooth_alpha == 0.5f;
    /* a tied head's input is never smoothed (its columns are also the embedding) */
    if (rep.calib[i].layer < 0) assert_true((rep.calib[i].smooth_alpha == 0.5f) == head_smoothed);
  }
  assert_true(smoothed >= 4);
  qn_quantize_report_free(&rep);

  qn_model_opts mo = {tok, 0};
  qn_model *a = NULL, *b = NULL;
  assert_int_equal(qn_model_open(src, &mo, &a), QN_OK);
  assert_int_equal(qn_model_open(out, NULL, &b), QN_OK);
  /* the smoothing changed the weights: attn_norm of block 0 differs by a factor far from 1 */
  const float* n0 = a->w.layers[0].attn_norm;
  const float* n1 = b->w.layers[0].attn_norm;
  double max_ratio = 0;
  for (int j = 0; j < a->src->hp.dim; j++)
    if (n1[j] != 0) max_ratio = fmax(max_ratio, fabs(log(fabs(n0[j] / n1[j]))));
  assert_true(max_ratio > 0.1);

  int* ids = NULL;
  int n_ids = 0;
  assert_int_equal(qn_tokenize(a, prompt_text, strlen(prompt_text), true, &ids, &n_ids), QN_OK);
  if (n_ids > n) n_ids = n;
  assert_true(n_ids >= 8);
  int vocab = a->src->hp.vocab_size;
  float* la = malloc(sizeof(float) * (size_t)n_ids * vocab);
  float* lb = malloc(sizeof(float) * (size_t)n_ids * vocab);
  int* pos = malloc(sizeof(int) * (size_t)n_ids);
  assert_true(la && lb && pos);
  for (int i = 0; i < n_ids; i++) pos[i] = i;
  qn_ctx *ca = NULL, *cb = NULL;
  assert_int_equal(qn_ctx_new(a, n_ids, 1, &ca), QN_OK);
  assert_int_equal(qn_ctx_new(b, n_ids, 1, &cb), QN_OK);
  assert_int_equal(qn_ctx_forward(ca, ids, pos, NULL, n_ids, la, true), QN_OK);
  assert_int_equal(qn_ctx_forward(cb, ids, pos, NULL, n_ids, lb, true), QN_OK);
  double worst = 0;
  for (int t = 0; t < n_ids; t++) {
    double mx = 0, md = 0;
    for (int v = 0; v < vocab; v++) {
      double x = la[(size_t)t * vocab + v], y = lb[(size_t)t * vocab + v];
      mx = fmax(mx, fabs(x));
      md = fmax(md, fabs(x - y));
    }
    worst = fmax(worst, md / mx);
  }
  printf("  %s: smoothed f32 vs source, worst relative logit error %.3g over %d positions\n", src,
         worst, n_ids);
  assert_true(worst < 1e-4);
  qn_ctx_free(ca);
  qn_ctx_free(cb);
  free(pos);
  free(la);
  free(lb);
  free(ids);
  qn_model_free(a);
  qn_model_free(b);
  unlink(out);
}

static void test_equivalence_stories(void** state) {
  (void)state;
  const char* bin = qt_shared("models/stories260K/stories260K.bin");
  const char* tok = qt_shared("models/stories260K/tok512.bin");
  const char* text = qt_shared("text/tinystories-valid-head80k.txt");
  if (!bin || !tok || !text) {
    g_skipped++;
    skip();
    return;
  }
  check_equivalence(bin, tok, text,
                    "One day, a little girl named Lily found a needle in her room. She knew it "
                    "was difficult to play with it because it was sharp.",
                    64, false);
}

static void test_equivalence_pycode(void** state) {
  (void)state;
  const char* st = qt_shared("models/pycode-19m/model.safetensors");
  const char* text = qt_shared("text/pycode-calib.txt");
  if (!st || !text) {
    g_skipped++;
    skip();
    return;
  }
  check_equivalence(QN_SHARED_DIR "/models/pycode-19m", NULL, text,
                    "import os\nimport sys\n\n\ndef main(argv):\n    \"\"\"Print the files.\"\"\"\n"
                    "    for name in sorted(os.listdir(argv[1])):\n        print(name)\n",
                    64, true);
}

/* ---- bad options ---------------------------------------------------------------------------- */

static void test_bad_options(void** state) {
  (void)state;
  qn_quantize_opts o;
  memset(&o, 0, sizeof o);
  o.scheme = "f32";
  o.calib_path = "/nonexistent/calib.txt";
  o.smooth = true;
  o.smooth_alpha = 1.5;
  assert_int_equal(qn_quantize("/nonexistent/model.bin", "/tmp/qt_never.qnz", &o, NULL), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "[0, 1]"));
  o.smooth_alpha = 0.5;
  o.calib_path = NULL;
  assert_int_equal(qn_quantize("/nonexistent/model.bin", "/tmp/qt_never.qnz", &o, NULL), QN_EINVAL);
  assert_non_null(strstr(qn_last_error(), "--calib"));
  assert_int_equal(access("/tmp/qt_never.qnz", F_OK), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fold_synthetic),     cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_scales_pycode),      cmocka_unit_test(test_equivalence_stories),
      cmocka_unit_test(test_equivalence_pycode),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (rc == 0 && g_skipped) qt_skip("the model tests need ../shared");
  return rc;
}
