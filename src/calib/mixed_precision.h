/* mixed_precision.h: the pieces of qn_mixed_precision() that are pure functions, exposed
 * for unit tests: choosing a scheme per weight under a KLD budget, and writing the choice
 * as a compact recipe. */
#ifndef QN_CALIB_MIXED_PRECISION_H
#define QN_CALIB_MIXED_PRECISION_H

#include <stdbool.h>
#include <stdint.h>

#include "quant/qtype.h"

/* Per-weight costs of each candidate. */
typedef struct qn_mp_problem {
  int n_tensors;         /* weights */
  int n_cand;            /* candidate schemes */
  const double* kld;     /* [n_tensors * n_cand] KLD of weight t alone in candidate c, nats */
  const uint64_t* bytes; /* [n_tensors * n_cand] bytes of weight t in candidate c */
} qn_mp_problem;

/* Picks choice[t] (a candidate index) for every weight, minimising the total bytes subject
 * to sum_t kld[t][choice[t]] <= budget: every weight starts at its smallest candidate;
 * while the predicted KLD is over budget, the upgrade (weight, lower-KLD candidate) that
 * saves the most KLD per byte added is applied (one adding no bytes first); then, while any
 * downgrade keeps the prediction within budget, the one saving the most bytes is applied. Returns
 * false (choice = the lowest-KLD candidate of every weight) when no choice meets the budget.
 * *predicted gets the predicted total KLD of the returned choice. */
bool qn_mp_select(const qn_mp_problem* p, double budget, int* choice, double* predicted);

/* A recipe reproducing schemes[i] for names[i] (i < n) with few rules: the most common
 * scheme as the default, "blk.*.KIND.weight" rules for a kind of block weight whose
 * majority differs from the default, then one rule per remaining exception. Fills
 * *def and rules[*n_rules] ("PATTERN=SCHEME", malloc'ed; free with qn_mp_rules_free).
 * Fails with QN_EUNSUPPORTED when more rules than a recipe holds are needed. */
qn_status qn_mp_recipe(const char* const* names, const qn_qtype* schemes, int n, qn_qtype* def,
                       char*** rules, int* n_rules);
void qn_mp_rules_free(char** rules, int n_rules);

#endif
