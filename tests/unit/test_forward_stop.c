/* test_forward_stop.c: qn_forward_layers with c->stop_early (the calibration passes of GPTQ
 * and AWQ) observes exactly the values a whole pass observes at the same site, for every
 * stop site and for the first and the last block of the embedded default model, and fires
 * no hook after the stop site. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/model.h"

#define MODEL QN_SOURCE_DIR "/models/default"
#define TOKENS 37

/* Copies the activations of one (layer, site) and counts the calls after it. */
typedef struct capture {
  int layer;
  qn_act_site site;
  float* x; /* n x width, malloc'ed on the first sight */
  int n, width;
  int later; /* hooks fired after the captured one */
} capture;

static void on_observe(void* user, int layer, qn_act_site site, const float* x, int n, int width) {
  capture* cp = user;
  if (cp->x) {
    cp->later++;
    return;
  }
  if (layer != cp->layer || site != cp->site) return;
  cp->x = malloc(sizeof(float) * (size_t)n * (size_t)width);
  assert_non_null(cp->x);
  memcpy(cp->x, x, sizeof(float) * (size_t)n * (size_t)width);
  cp->n = n;
  cp->width = width;
}

/* Runs block l on the stream x0 (TOKENS x dim) and captures (l, site). */
static capture run_block(qn_ctx* c, const float* x0, int dim, int l, qn_act_site site, bool stop) {
  capture cp = {l, site, NULL, 0, 0, 0};
  int pos[TOKENS];
  for (int i = 0; i < TOKENS; i++) pos[i] = i;
  memcpy(c->x, x0, sizeof(float) * TOKENS * (size_t)dim);
  c->observe = on_observe;
  c->observe_user = &cp;
  c->stop_early = stop;
  c->stop_site = site;
  qn_forward_layers(c, l, l + 1, pos, NULL, TOKENS);
  c->stop_early = false;
  c->observe = NULL;
  assert_non_null(cp.x);
  return cp;
}

static void test_stop_sites_match_whole_pass(void** state) {
  (void)state;
  qn_model* m = NULL;
  assert_int_equal(qn_model_open(MODEL, NULL, &m), QN_OK);
  qn_ctx* c = NULL;
  assert_int_equal(qn_ctx_new(m, TOKENS, 1, &c), QN_OK);
  const qn_hparams* hp = &m->src->hp;
  float* x0 = malloc(sizeof(float) * TOKENS * (size_t)hp->dim);
  assert_non_null(x0);
  uint64_t r = 12345;
  for (int i = 0; i < TOKENS * hp->dim; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    x0[i] = (float)((double)(r >> 11) * 0x1p-53 - 0.5);
  }
  const qn_act_site sites[4] = {QN_SITE_ATTN_IN, QN_SITE_ATTN_OUT, QN_SITE_FFN_IN, QN_SITE_FFN_MID};
  const int layers[2] = {0, hp->n_layers - 1};
  for (int li = 0; li < 2; li++)
    for (int s = 0; s < 4; s++) {
      capture whole = run_block(c, x0, hp->dim, layers[li], sites[s], false);
      capture early = run_block(c, x0, hp->dim, layers[li], sites[s], true);
      assert_int_equal(whole.n, early.n);
      assert_int_equal(whole.width, early.width);
      assert_memory_equal(whole.x, early.x, sizeof(float) * (size_t)whole.n * whole.width);
      assert_int_equal(early.later, 0); /* nothing ran after the site */
      free(whole.x);
      free(early.x);
    }
  free(x0);
  qn_ctx_free(c);
  qn_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stop_sites_match_whole_pass),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
