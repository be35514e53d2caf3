/* spans.h: turning an evaluation text into the token spans that are scored, by either
 * convention: documents split on a separator (BOS + whole document each), or
 * non-overlapping windows of a fixed number of tokens (no BOS, each from position 0). */
#ifndef QN_EVAL_SPANS_H
#define QN_EVAL_SPANS_H

#include "quench.h"

typedef struct qn_span {
  int* tokens; /* [n] token ids; tokens[0] is BOS in document mode */
  int n;       /* tokens in the span; n - 1 predictions are scored */
} qn_span;

typedef struct qn_spans {
  qn_span* v; /* [count] */
  int count;
  int n_truncated; /* documents cut to the context length */
} qn_spans;

qn_status qn_spans_build(const qn_model* m, const char* text, size_t len, const qn_ppl_opts* o,
                         qn_spans* out);
void qn_spans_free(qn_spans* s);
/* Sum of (n - 1) over spans: the number of scored predictions. */
int64_t qn_spans_predictions(const qn_spans* s);

#endif
