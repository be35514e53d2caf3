/* perplexity.c: mean negative log-likelihood of every next token over the spans of a text
 * (documents or windows, see spans.h); PPL = exp(mean NLL). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "eval/score.h"
#include "model/model.h"

qn_status qn_eval_ppl(qn_model* m, const char* text, size_t len, const qn_ppl_opts* o,
                      qn_ppl_result* r) {
  memset(r, 0, sizeof *r);
  double t0 = qn_now();
  qn_spans sp;
  QN_TRY(qn_spans_build(m, text, len, o, &sp));
  int max_n = 0;
  for (int i = 0; i < sp.count; i++)
    if (sp.v[i].n > max_n) max_n = sp.v[i].n;
  const int V = m->src->hp.vocab_size;
  float* logits = malloc(sizeof(float) * (size_t)max_n * (size_t)V);
  qn_ctx* c = NULL;
  qn_status st = logits ? qn_ctx_new(m, max_n - 1, 1, &c) : qn_error(QN_ENOMEM, "out of memory");
  double nll = 0;
  int64_t count = 0, total = qn_spans_predictions(&sp);
  for (int d = 0; d < sp.count && st == QN_OK; d++) {
    const qn_span* s = &sp.v[d];
    st = qn_score_span_logits(c, s, logits);
    for (int t = 0; st == QN_OK && t + 1 < s->n; t++) {
      const float* row = logits + (size_t)t * V;
      nll += qn_logsumexp(row, V) - row[s->tokens[t + 1]];
      count++;
    }
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "perplexity", count, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK) {
    r->tokens = count;
    r->nll = nll / (double)count;
    r->ppl = exp(r->nll);
    r->n_docs = sp.count;
    r->n_truncated = sp.n_truncated;
    r->seconds = qn_now() - t0;
  }
  qn_ctx_free(c);
  free(logits);
  qn_spans_free(&sp);
  return st;
}
