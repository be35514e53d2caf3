/* test_gptq.c: GPTQ on random layers with known inputs. With correlated inputs X (gaussian
 * rows through a random mixing matrix) GPTQ's output error ||W X^T - Q(W) X^T|| is below
 * round-to-nearest's for int4/int3/int8 group schemes, with and without act-order; with
 * H = I (damp 0 or not) it equals RTN byte for byte; the stored codes decode bit-exactly
 * to the weights GPTQ returns; dead input columns (diag H = 0) become 0 weights; the
 * Hessian accumulator matches 2/N X^T X computed directly; unsupported schemes and bad
 * arguments are refused. The sequential driver on a real model quantizes every linear weight
 * of the blocks and the output head (output.weight when untied, token_embd.weight when tied;
 * none when the head's scheme is not GPTQ's), its head differs from round-to-nearest, and
 * the model's weights are restored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "calib/gptq.h"
#include "calib/hessian.h"
#include "model/model.h"
#include "quant/qtype.h"
#include "quant/quantize_matrix.h"

static unsigned g_seed = 12345u;
static double urand(void) {
  g_seed = g_seed * 1664525u + 1013904223u;
  return ((g_seed >> 8) + 0.5) / 16777216.0;
}
static float grand(void) {
  return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand()));
}

static void* xmalloc(size_t n) {
  void* p = malloc(n);
  assert_non_null(p);
  return p;
}

/* N x n inputs: gaussian rows times a random mixing matrix (correlated columns), with a few
 * high-energy channels. dead >= 0: that column is always 0. */
static float* make_inputs(int N, int n, int dead) {
  float* z = xmalloc(sizeof(float) * (size_t)N * n);
  float* m = xmalloc(sizeof(float) * (size_t)n * n);
  float* x = xmalloc(sizeof(float) * (size_t)N * n);
  for (int i = 0; i < N * n; i++) z[i] = grand();
  for (int i = 0; i < n * n; i++) m[i] = (i % (n + 1) == 0 ? 1.0f : 0.0f) + 0.6f * grand() / 4;
  for (int t = 0; t < N; t++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int k = 0; k < n; k++) s += (double)z[(size_t)t * n + k] * m[(size_t)k * n + j];
      x[(size_t)t * n + j] = (float)(s * (j % 13 == 0 ? 4.0 : 1.0));
      if (j == dead) x[(size_t)t * n + j] = 0;
    }
  free(z);
  free(m);
  return x;
}

/* sum over rows of (w - q)^T H (w - q): the output error up to the factor 2/N. */
static double output_error(const float* w, const float* q, const float* h, int rows, int n) {
  double* d = xmalloc(sizeof(double) * (size_t)n);
  double tot = 0;
  for (int r = 0; r < rows; r++) {
    for (int i = 0; i < n; i++) d[i] = (double)w[(size_t)r * n + i] - q[(size_t)r * n + i];
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) tot += d[i] * h[(size_t)i * n + j] * d[j];
  }
  free(d);
  return tot;
}

typedef struct qbuf {
  uint8_t* payload;
  uint8_t* scales;
  float* deq; /* dequantized through the scheme's dequant_row */
} qbuf;

static qbuf qbuf_new(qn_qtype t, int rows, int cols) {
  qbuf b;
  b.payload = xmalloc(qn_qtype_row_bytes(t, cols) * (size_t)rows + 1);
  b.scales = xmalloc((size_t)qn_qtype_n_groups(t, cols) * 4 * (size_t)rows + 1);
  b.deq = xmalloc(sizeof(float) * (size_t)rows * cols);
  return b;
}
static void qbuf_decode(qn_qtype t, qbuf* b, int rows, int cols) {
  qn_qtensor q = {t, rows, cols, b->payload, b->scales, NULL, 0, QN_LAYOUT_ROWS};
  for (int r = 0; r < rows; r++)
    qn_qtype_traits_of(t)->dequant_row(&q, r, b->deq + (size_t)r * cols);
}
static void qbuf_free(qbuf* b) {
  free(b->payload);
  free(b->scales);
  free(b->deq);
}

/* RTN through the scheme's row quantizer. */
static qbuf rtn(qn_qtype t, const float* w, int rows, int cols) {
  qbuf b = qbuf_new(t, rows, cols);
  qn_quant_opts o = {false, NULL, 1};
  uint64_t rb = qn_qtype_row_bytes(t, cols);
  int64_t ng = qn_qtype_n_groups(t, cols);
  int sb = qn_qtype_traits_of(t)->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  for (int r = 0; r < rows; r++)
    qn_qtype_traits_of(t)->quantize_row(w + (size_t)r * cols, cols, &o, b.payload + r * rb,
                                        b.scales + (size_t)r * ng * sb, NULL);
  qbuf_decode(t, &b, rows, cols);
  return b;
}

/* GPTQ; asserts that the returned weights are exactly what the codes decode to. */
static qbuf gptq(qn_qtype t, const float* w, int rows, int cols, const float* h,
                 const qn_gptq_opts* o) {
  qbuf b = qbuf_new(t, rows, cols);
  float* wq = xmalloc(sizeof(float) * (size_t)rows * cols);
  memcpy(wq, w, sizeof(float) * (size_t)rows * cols);
  assert_int_equal(qn_gptq_quantize(t, wq, rows, cols, h, o, b.payload, b.scales), QN_OK);
  qbuf_decode(t, &b, rows, cols);
  for (int i = 0; i < rows * cols; i++) assert_true(wq[i] == b.deq[i]);
  free(wq);
  return b;
}

static float* random_weights(int rows, int cols) {
  float* w = xmalloc(sizeof(float) * (size_t)rows * cols);
  for (int i = 0; i < rows * cols; i++) w[i] = 0.05f * grand();
  return w;
}

static float* hessian_of(const float* x, int N, int n) {
  qn_hessian H;
  assert_int_equal(qn_hessian_init(&H, n), QN_OK);
  qn_hessian_add(&H, x, N / 3); /* in uneven batches */
  qn_hessian_add(&H, x + (size_t)(N / 3) * n, N - N / 3);
  float* h = xmalloc(sizeof(float) * (size_t)n * n);
  qn_hessian_finish(&H, h);
  qn_hessian_free(&H);
  return h;
}

static void test_hessian_direct(void** s) {
  (void)s;
  int N = 100, n = 20;
  float* x = make_inputs(N, n, -1);
  float* h = hessian_of(x, N, n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double d = 0;
      for (int t = 0; t < N; t++) d += (double)x[t * n + i] * x[t * n + j];
      d *= 2.0 / N;
      assert_true(fabs(h[i * n + j] - d) <= 1e-4 * (1 + fabs(d)));
    }
  free(x);
  free(h);
}

static void test_beats_rtn(void** s) {
  (void)s;
  const int N = 512, n = 256, rows = 48;
  float* x = make_inputs(N, n, -1);
  float* h = hessian_of(x, N, n);
  float* w = random_weights(rows, n);
  const qn_qtype ts[] = {QN_QTYPE_Q4_G128, QN_QTYPE_Q4_G32, QN_QTYPE_Q3_G32, QN_QTYPE_Q3_G128,
                         QN_QTYPE_Q8_C,    QN_QTYPE_Q8_G32, QN_QTYPE_Q4_G64, QN_QTYPE_W4A8};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
    for (int ao = 0; ao < 2; ao++) {
      qn_gptq_opts o = {QN_GPTQ_DEFAULT_DAMP, 0, ao != 0, false};
      qbuf a = rtn(ts[k], w, rows, n), b = gptq(ts[k], w, rows, n, h, &o);
      double ea = output_error(w, a.deq, h, rows, n), eb = output_error(w, b.deq, h, rows, n);
      printf("  %-12s act_order %d: output error RTN %.4g, GPTQ %.4g (%.0f%%)\n",
             qn_qtype_traits_of(ts[k])->name, ao, ea, eb, 100.0 * eb / ea);
      assert_true(eb < 0.9 * ea);
      qbuf_free(&a);
      qbuf_free(&b);
    }
  free(x);
  free(h);
  free(w);
}

static void test_identity_is_rtn(void** s) {
  (void)s;
  const int n = 200, rows = 9; /* ragged last group and a partial last block */
  float* h = calloc((size_t)n * n, sizeof(float));
  assert_non_null(h);
  for (int i = 0; i < n; i++) h[i * n + i] = 1.0f;
  float* w = random_weights(rows, n);
  for (int t = 0; t < QN_QTYPE_COUNT; t++) {
    if (!qn_gptq_supports((qn_qtype)t)) continue;
    for (int k = 0; k < 3; k++) {
      qn_gptq_opts o = {k == 0 ? 0.0 : QN_GPTQ_DEFAULT_DAMP, k == 2 ? 64 : 0, k == 2, false};
      qbuf a = rtn((qn_qtype)t, w, rows, n), b = gptq((qn_qtype)t, w, rows, n, h, &o);
      size_t pb = qn_qtype_row_bytes((qn_qtype)t, n) * rows;
      size_t sb = (size_t)qn_qtype_n_groups((qn_qtype)t, n) * rows *
                  (qn_qtype_traits_of((qn_qtype)t)->scale_dtype == QN_DTYPE_F16 ? 2 : 4);
      assert_memory_equal(a.payload, b.payload, pb);
      assert_memory_equal(a.scales, b.scales, sb);
      qbuf_free(&a);
      qbuf_free(&b);
    }
  }
  free(h);
  free(w);
}

static void test_dead_columns(void** s) {
  (void)s;
  const int N = 300, n = 64, rows = 16, dead = 5;
  float* x = make_inputs(N, n, dead);
  float* h = hessian_of(x, N, n);
  float* w = random_weights(rows, n);
  const qn_qtype ts[] = {QN_QTYPE_Q4_G32, QN_QTYPE_Q3_G32, QN_QTYPE_Q8_C};
  for (int k = 0; k < 3; k++)
    for (int ao = 0; ao < 2; ao++) {
      qn_gptq_opts o = {QN_GPTQ_DEFAULT_DAMP, 0, ao != 0, false};
      qbuf b = gptq(ts[k], w, rows, n, h, &o), a = rtn(ts[k], w, rows, n);
      for (int r = 0; r < rows; r++) assert_true(b.deq[r * n + dead] == 0.0f);
      for (int i = 0; i < rows * n; i++) assert_true(isfinite(b.deq[i]));
      assert_true(output_error(w, b.deq, h, rows, n) < output_error(w, a.deq, h, rows, n));
      qbuf_free(&a);
      qbuf_free(&b);
    }
  /* an all-zero Hessian (nothing ever reached the layer) is handled too */
  memset(h, 0, sizeof(float) * n * n);
  qn_gptq_opts o = {QN_GPTQ_DEFAULT_DAMP, 0, false, false};
  qbuf b = gptq(QN_QTYPE_Q4_G32, w, rows, n, h, &o);
  for (int i = 0; i < rows * n; i++) assert_true(b.deq[i] == 0.0f);
  qbuf_free(&b);
  free(x);
  free(h);
  free(w);
}

static void test_refusals(void** s) {
  (void)s;
  float w[64] = {0}, h[64] = {0};
  uint8_t p[64], sc[64];
  qn_gptq_opts o = {QN_GPTQ_DEFAULT_DAMP, 0, false, false};
  assert_false(qn_gptq_supports(QN_QTYPE_F32));
  assert_false(qn_gptq_supports(QN_QTYPE_Q4A_G32));
  assert_false(qn_gptq_supports(QN_QTYPE_F8_E4M3));
  assert_true(qn_gptq_supports(QN_QTYPE_Q3_G32));
  assert_int_equal(qn_gptq_quantize(QN_QTYPE_Q4A_G32, w, 1, 8, h, &o, p, sc), QN_EUNSUPPORTED);
  assert_non_null(strstr(qn_last_error(), "int4a-g32"));
  assert_int_equal(qn_gptq_quantize(QN_QTYPE_Q4_G32, w, 0, 8, h, &o, p, sc), QN_EINVAL);
  o.damp = -1;
  assert_int_equal(qn_gptq_quantize(QN_QTYPE_Q4_G32, w, 1, 8, h, &o, p, sc), QN_EINVAL);
}

static qn_qtype all_int4(void* user, const char* name) {
  (void)user, (void)name;
  return QN_QTYPE_Q4_G32;
}

static qn_qtype f32_head(void* user, const char* name) {
  (void)user;
  return strcmp(name, "output.weight") && strcmp(name, "token_embd.weight") ? QN_QTYPE_Q4_G32
                                                                            : QN_QTYPE_F32;
}

/* Runs the driver on a model; checks the head entry is `head` (NULL: none). */
static void check_model(const char* model, const char* calib, const char* head,
                        qn_qtype (*scheme_of)(void*, const char*)) {
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(model, NULL, &m), QN_OK);
  const qn_hparams* hp = &m->src->hp;
  const void* out_data = m->w.output.data;
  qn_gptq_model_opts o;
  memset(&o, 0, sizeof o);
  o.gptq.damp = QN_GPTQ_DEFAULT_DAMP;
  o.max_tokens = 256;
  o.ctx = 128;
  o.scheme_of = scheme_of;
  qn_gptq_result r;
  assert_int_equal(qn_gptq_model_run(m, calib, &o, &r), QN_OK);
  assert_int_equal(r.n, hp->n_layers * 7 + (head ? 1 : 0));
  assert_true(m->w.output.data == out_data); /* restored */
  const char* names[2] = {"output.weight", "token_embd.weight"};
  for (int k = 0; k < 2; k++) {
    const qn_gptq_weight* gw = qn_gptq_result_find(&r, names[k]);
    if (!head || strcmp(head, names[k])) {
      assert_null(gw);
      continue;
    }
    assert_non_null(gw);
    assert_true(gw->rows == hp->vocab_size && gw->cols == hp->dim);
    float* w = xmalloc(sizeof(float) * (size_t)(gw->rows * gw->cols));
    assert_int_equal(qn_qtensor_dequant(&m->w.output, w), QN_OK);
    qbuf a = rtn(gw->scheme, w, (int)gw->rows, (int)gw->cols);
    size_t pb = qn_qtype_row_bytes(gw->scheme, gw->cols) * (size_t)gw->rows;
    assert_true(memcmp(a.payload, gw->payload, pb) != 0); /* error feedback changed codes */
    print_message("%s: head %s by GPTQ (%d weights in all)\n", model, names[k], r.n);
    qbuf_free(&a);
    free(w);
  }
  qn_gptq_result_free(&r);
  qn_model_free(m);
}

static void test_model_head(void** s) {
  (void)s;
  const char* def = QN_SOURCE_DIR "/models/default";
  const char* dcal = QN_SOURCE_DIR "/text/default-calib.txt";
  check_model(def, dcal, "output.weight", all_int4);
  check_model(def, dcal, NULL, f32_head);
  const char* mp = qt_shared("models/stories260K/stories260K.bin");
  const char* tp = qt_shared("text/tinystories-valid-head80k.txt");
  if (!mp || !tp) {
    print_message("SKIPPED (tied head): stories260K is not in ../shared\n");
    return;
  }
  check_model(mp, tp, "token_embd.weight", all_int4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hessian_direct),  cmocka_unit_test(test_beats_rtn),
      cmocka_unit_test(test_identity_is_rtn), cmocka_unit_test(test_dead_columns),
      cmocka_unit_test(test_refusals),        cmocka_unit_test(test_model_head),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
