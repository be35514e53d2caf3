/* generate.c: prompt -> prefill -> sample/decode loop with streamed UTF-8 text. */
#include "core/clock.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model.h"

qn_status qn_generate(qn_model* m, const char* prompt, int n_predict, const qn_sampler_opts* so,
                      qn_text_fn on_text, void* user, qn_gen_stats* stats) {
  const qn_vocab* v = &m->src->vocab;
  const qn_hparams* hp = &m->src->hp;
  qn_gen_stats st0 = {0};
  if (stats) *stats = st0;
  if (n_predict < 0) return qn_error(QN_EINVAL, "-n must be >= 0");
  size_t plen = prompt ? strlen(prompt) : 0;
  bool bos = v->bos_id >= 0 && (v->add_bos || plen == 0);
  if (plen == 0 && v->bos_id < 0)
    return qn_error(QN_EINVAL, "empty prompt, and the vocabulary has no BOS token to start from");
  int* ids = NULL;
  int n_ids = 0;
  QN_TRY(qn_tokenizer_encode(m->tok, prompt ? prompt : "", plen, bos, &ids, &n_ids));
  if (n_ids == 0) {
    free(ids);
    return qn_error(QN_EINVAL, "the prompt encodes to no tokens");
  }
  if (n_ids >= hp->max_seq_len) {
    free(ids);
    return qn_error(QN_ERANGE, "prompt is %d tokens; the context holds %d", n_ids, hp->max_seq_len);
  }
  int total = n_ids + n_predict;
  if (total > hp->max_seq_len) total = hp->max_seq_len;
  int* hist = realloc(ids, sizeof(int) * (size_t)(total + 1));
  int* pos = malloc(sizeof(int) * (size_t)(total + 1));
  float* logits = malloc(sizeof(float) * (size_t)hp->vocab_size);
  qn_ctx* c = NULL;
  qn_sampler* smp = NULL;
  qn_status st = QN_OK;
  if (!hist || !pos || !logits) st = qn_error(QN_ENOMEM, "out of memory");
  if (hist) ids = hist;
  if (st == QN_OK) st = qn_ctx_new(m, total, 1, &c);
  if (st == QN_OK) st = qn_sampler_new(so, hp->vocab_size, &smp);
  qn_detok dt;
  qn_detok_init(&dt, m->tok);
  dt.prev = ids[n_ids - 1]; /* the prompt came before: SPM drops the space after BOS */
  char piece[256];
  double t0 = qn_now();
  if (st == QN_OK) {
    for (int i = 0; i < n_ids; i++) pos[i] = i;
    st = qn_ctx_forward(c, ids, pos, NULL, n_ids, logits, false);
  }
  double t1 = qn_now();
  int n_hist = n_ids, n_gen = 0;
  double t_first = t1;
  while (st == QN_OK && n_hist < total) {
    int next = qn_sampler_sample(smp, logits, ids, n_hist);
    if (n_gen == 0) t_first = qn_now();
    n_gen++;
    ids[n_hist] = next;
    pos[n_hist] = n_hist;
    n_hist++;
    if (next == v->eos_id) break;
    int k = qn_detok_push(&dt, next, piece, (int)sizeof piece);
    if (k > 0 && on_text && on_text(user, piece, (size_t)k)) break;
    if (n_hist >= total) break;
    st = qn_ctx_forward(c, &ids[n_hist - 1], &pos[n_hist - 1], NULL, 1, logits, false);
  }
  int k = qn_detok_flush(&dt, piece, (int)sizeof piece);
  if (st == QN_OK && k > 0 && on_text) on_text(user, piece, (size_t)k);
  double t2 = qn_now();
  if (stats) {
    stats->n_prompt = n_ids;
    stats->n_gen = n_gen;
    stats->prompt_s = t1 - t0;
    stats->gen_s = t2 - t1;
    stats->ttft_s = t_first - t0;
  }
  qn_sampler_free(smp);
  qn_ctx_free(c);
  free(logits);
  free(pos);
  free(ids);
  return st;
}
