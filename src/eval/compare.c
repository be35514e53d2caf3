/* compare.c: one pass over a text with a base model and a quantized model: perplexity of
 * each, KL divergence KL(P_base || P_quant) per position (mean, p99, max), and top-1
 * agreement of the two argmaxes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"
#include "eval/score.h"
#include "model/model.h"

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static int argmax(const float* x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* KL(P || Q) for P = softmax(lp), Q = softmax(lq), given their log-sum-exps. */
static double kl_div(const float* lp, double zp, const float* lq, double zq, int n) {
  double kl = 0;
  for (int i = 0; i < n; i++) {
    double logp = lp[i] - zp, logq = lq[i] - zq;
    kl += exp(logp) * (logp - logq);
  }
  return kl > 0 ? kl : 0; /* rounding can give -1e-17 */
}

qn_status qn_eval_cmp(qn_model* base, qn_model* quant, const char* text, size_t len,
                      const qn_ppl_opts* o, qn_cmp_result* r) {
  memset(r, 0, sizeof *r);
  const int V = base->src->hp.vocab_size;
  if (quant->src->hp.vocab_size != V)
    return qn_error(QN_EINVAL, "models differ in vocabulary size (%d vs %d)", V,
                    quant->src->hp.vocab_size);
  double t0 = qn_now();
  qn_spans sp;
  QN_TRY(qn_spans_build(base, text, len, o, &sp));
  int max_n = 0;
  for (int i = 0; i < sp.count; i++)
    if (sp.v[i].n > max_n) max_n = sp.v[i].n;
  if (max_n - 1 > quant->src->hp.max_seq_len) {
    qn_spans_free(&sp);
    return qn_error(QN_ERANGE, "spans of %d tokens exceed the quantized model's context", max_n);
  }
  int64_t total = qn_spans_predictions(&sp);
  float* la = malloc(sizeof(float) * (size_t)max_n * (size_t)V);
  float* lb = malloc(sizeof(float) * (size_t)max_n * (size_t)V);
  double* kls = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
  qn_ctx *ca = NULL, *cb = NULL;
  qn_status st = (la && lb && kls) ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  if (st == QN_OK) st = qn_ctx_new(base, max_n - 1, 1, &ca);
  if (st == QN_OK) st = qn_ctx_new(quant, max_n - 1, 1, &cb);
  double nll_a = 0, nll_b = 0, kl_sum = 0;
  int64_t count = 0, agree = 0;
  for (int d = 0; d < sp.count && st == QN_OK; d++) {
    const qn_span* s = &sp.v[d];
    st = qn_score_span_logits(ca, s, la);
    if (st == QN_OK) st = qn_score_span_logits(cb, s, lb);
    for (int t = 0; st == QN_OK && t + 1 < s->n; t++) {
      const float* pa = la + (size_t)t * V;
      const float* pb = lb + (size_t)t * V;
      double za = qn_logsumexp(pa, V), zb = qn_logsumexp(pb, V);
      int next = s->tokens[t + 1];
      nll_a += za - pa[next];
      nll_b += zb - pb[next];
      double kl = kl_div(pa, za, pb, zb, V);
      kls[count] = kl;
      kl_sum += kl;
      agree += argmax(pa, V) == argmax(pb, V);
      count++;
    }
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "compare", count, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  if (st == QN_OK) {
    r->tokens = count;
    r->n_docs = sp.count;
    r->nll_base = nll_a / count;
    r->nll_quant = nll_b / count;
    r->ppl_base = exp(r->nll_base);
    r->ppl_quant = exp(r->nll_quant);
    r->kld_mean = kl_sum / count;
    r->top1_agree = (double)agree / count;
    qsort(kls, (size_t)count, sizeof(double), cmp_double);
    int64_t i99 = (int64_t)ceil(0.99 * (double)count) - 1;
    r->kld_p99 = kls[i99 < 0 ? 0 : i99];
    r->kld_max = kls[count - 1];
    r->seconds = qn_now() - t0;
  }
  qn_ctx_free(ca);
  qn_ctx_free(cb);
  free(la);
  free(lb);
  free(kls);
  qn_spans_free(&sp);
  return st;
}
