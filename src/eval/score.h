/* score.h: per-position scoring helpers shared by perplexity and model comparison. */
#ifndef QN_EVAL_SCORE_H
#define QN_EVAL_SCORE_H

#include "eval/spans.h"

/* Runs tokens 0..n-2 of span sp through c from position 0 and writes their (n-1) x vocab
 * logits: row t predicts tokens[t + 1]. c needs a context of n - 1 positions. */
qn_status qn_score_span_logits(qn_ctx* c, const qn_span* sp, float* logits);
/* log(sum(exp(x))) of x[n], computed stably in double. */
double qn_logsumexp(const float* x, int n);

#endif
