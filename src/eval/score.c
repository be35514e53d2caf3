/* score.c: running a span with all logits, and a stable log-sum-exp. */
#include "eval/score.h"

#include <math.h>
#include <stdlib.h>

#include "core/status.h"

qn_status qn_score_span_logits(qn_ctx* c, const qn_span* sp, float* logits) {
  const int n = sp->n - 1; /* the last token is only a target */
  int* pos = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
  if (!pos) return qn_error(QN_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) pos[i] = i;
  qn_ctx_reset(c, 0);
  qn_status st = qn_ctx_forward(c, sp->tokens, pos, NULL, n, logits, true);
  free(pos);
  return st;
}

double qn_logsumexp(const float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > mx) mx = x[i];
  double s = 0;
  for (int i = 0; i < n; i++) s += expf(x[i] - mx);
  return mx + log(s);
}
