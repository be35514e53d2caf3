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

/* Running sums of one quantized model's comparison. */
typedef struct cmp_acc {
  double nll, kl_sum; /* sums over positions */
  int64_t agree;      /* positions whose argmaxes agree */
  double* kls;        /* [total] per-position KL, for the percentiles */
} cmp_acc;

qn_status qn_eval_cmp_multi(qn_model* base, qn_model* const* quants, int k, const char* text,
                            size_t len, const qn_ppl_opts* o, qn_cmp_result* results) {
  if (k <= 0) return qn_error(QN_EINVAL, "compare: no quantized model given");
  for (int q = 0; q < k; q++) memset(&results[q], 0, sizeof results[q]);
  const int V = base->src->hp.vocab_size;
  for (int q = 0; q < k; q++)
    if (quants[q]->src->hp.vocab_size != V)
      return qn_error(QN_EINVAL, "models differ in vocabulary size (%d vs %d)", V,
                      quants[q]->src->hp.vocab_size);
  double t0 = qn_now();
  qn_spans sp;
  QN_TRY(qn_spans_build(base, text, len, o, &sp));
  int max_n = 0;
  for (int i = 0; i < sp.count; i++)
    if (sp.v[i].n > max_n) max_n = sp.v[i].n;
  for (int q = 0; q < k; q++)
    if (max_n - 1 > quants[q]->src->hp.max_seq_len) {
      qn_spans_free(&sp);
      return qn_error(QN_ERANGE, "spans of %d tokens exceed a quantized model's context", max_n);
    }
  int64_t total = qn_spans_predictions(&sp);
  float* la = malloc(sizeof(float) * (size_t)max_n * (size_t)V);
  float* lb = malloc(sizeof(float) * (size_t)max_n * (size_t)V);
  double* za = malloc(sizeof(double) * (size_t)max_n);
  int* ama = malloc(sizeof(int) * (size_t)max_n);
  cmp_acc* acc = calloc((size_t)k, sizeof *acc);
  qn_ctx* ca = NULL;
  qn_ctx** cq = calloc((size_t)k, sizeof *cq);
  qn_status st =
      (la && lb && za && ama && acc && cq) ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  for (int q = 0; q < k && st == QN_OK; q++) {
    acc[q].kls = malloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    if (!acc[q].kls) st = qn_error(QN_ENOMEM, "out of memory");
  }
  if (st == QN_OK) st = qn_ctx_new(base, max_n - 1, 1, &ca);
  for (int q = 0; q < k && st == QN_OK; q++) st = qn_ctx_new(quants[q], max_n - 1, 1, &cq[q]);
  double nll_a = 0;
  int64_t count = 0;
  for (int d = 0; d < sp.count && st == QN_OK; d++) {
    const qn_span* s = &sp.v[d];
    const int np = s->n - 1;
    st = qn_score_span_logits(ca, s, la);
    for (int t = 0; st == QN_OK && t < np; t++) {
      za[t] = qn_logsumexp(la + (size_t)t * V, V);
      ama[t] = argmax(la + (size_t)t * V, V);
      nll_a += za[t] - la[(size_t)t * V + s->tokens[t + 1]];
    }
    for (int q = 0; q < k && st == QN_OK; q++) {
      st = qn_score_span_logits(cq[q], s, lb);
      for (int t = 0; st == QN_OK && t < np; t++) {
        const float* pa = la + (size_t)t * V;
        const float* pb = lb + (size_t)t * V;
        double zb = qn_logsumexp(pb, V);
        acc[q].nll += zb - pb[s->tokens[t + 1]];
        double kl = kl_div(pa, za[t], pb, zb, V);
        acc[q].kls[count + t] = kl;
        acc[q].kl_sum += kl;
        acc[q].agree += ama[t] == argmax(pb, V);
      }
    }
    count += np;
    if (st == QN_OK && o->progress && o->progress(o->progress_user, "compare", count, total))
      st = qn_error(QN_EINVAL, "cancelled");
  }
  for (int q = 0; q < k && st == QN_OK; q++) {
    qn_cmp_result* r = &results[q];
    r->tokens = count;
    r->n_docs = sp.count;
    r->nll_base = nll_a / count;
    r->nll_quant = acc[q].nll / count;
    r->ppl_base = exp(r->nll_base);
    r->ppl_quant = exp(r->nll_quant);
    r->kld_mean = acc[q].kl_sum / count;
    r->top1_agree = (double)acc[q].agree / count;
    qsort(acc[q].kls, (size_t)count, sizeof(double), cmp_double);
    int64_t i99 = (int64_t)ceil(0.99 * (double)count) - 1;
    r->kld_p99 = acc[q].kls[i99 < 0 ? 0 : i99];
    r->kld_max = acc[q].kls[count - 1];
    r->seconds = qn_now() - t0;
  }
  qn_ctx_free(ca);
  for (int q = 0; q < k; q++) {
    if (cq) qn_ctx_free(cq[q]);
    if (acc) free(acc[q].kls);
  }
  free(cq);
  free(acc);
  free(ama);
  free(za);
  free(la);
  free(lb);
  qn_spans_free(&sp);
  return st;
}

qn_status qn_eval_cmp(qn_model* base, qn_model* quant, const char* text, size_t len,
                      const qn_ppl_opts* o, qn_cmp_result* r) {
  return qn_eval_cmp_multi(base, &quant, 1, text, len, o, r);
}
