/* mixed_precision.c: choosing a quantization scheme per weight to minimise size under an
 * accuracy budget (qn_mixed_precision in quench.h).
 *
 * Method
 *  1. Sensitivities. For every 2-D weight t and candidate scheme c, the model with only t
 *     quantized to c (in memory; everything else as loaded) is run over the text next to the
 *     source model: kld[t][c] is its mean KL(P_source || P_variant). f32 costs nothing to
 *     measure: it reproduces the loaded values exactly, so its KLD is 0.
 *  2. Selection (qn_mp_select). Assume the contributions add: KLD(choice) ~ sum_t kld[t][c_t].
 *     Start with every weight at its smallest candidate; while the prediction is over the
 *     selection budget, apply the upgrade with the largest KLD saved per byte added (any
 *     candidate of any weight with a lower KLD; one that adds no bytes first); then apply
 *     downgrades that still fit, largest bytes saved first. Greedy by ratio follows the lower
 * convex hull of each weight's (bytes, kld) points, as a Lagrangian relaxation would; the final
 * downgrade pass takes back the overshoot of the last upgrade.
 *  3. Verification. The whole model is quantized with that recipe (qn_quantize, to a
 *     temporary .qnz) and measured with qn_eval_cmp. A PPL budget P% is handled as a budget
 *     of log(1 + P/100) on the mean NLL increase, predicted by the summed KLDs (the expected
 *     NLL increase on text the model generates).
 *  4. Correction. The selection budget is rescaled by target/measured (times 0.97) and the
 *     selection repeated: down when the budget was missed, up when it was met with more than
 *     20% to spare. The rescaled budget is kept strictly between the largest one that met
 *     the target and the smallest one that missed it (their geometric mean otherwise). At
 *     most max_rounds measurements; the smallest recipe that met the budget wins. When none
 *     did, the most accurate choice is measured as a last resort; if it misses too, the
 *     budget is unreachable (QN_ERANGE). */
#define _POSIX_C_SOURCE 200809L
#include "calib/mixed_precision.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib/sensitivity.h"
#include "core/clock.h"
#include "core/status.h"
#include "quant/recipe.h"

/* ---- selection --------------------------------------------------------------------------- */

static double kld_of(const qn_mp_problem* p, int t, int c) { return p->kld[t * p->n_cand + c]; }
static uint64_t bytes_of(const qn_mp_problem* p, int t, int c) {
  return p->bytes[t * p->n_cand + c];
}

/* Index of the smallest candidate of weight t (ties: lower KLD). */
static int smallest(const qn_mp_problem* p, int t) {
  int b = 0;
  for (int c = 1; c < p->n_cand; c++)
    if (bytes_of(p, t, c) < bytes_of(p, t, b) ||
        (bytes_of(p, t, c) == bytes_of(p, t, b) && kld_of(p, t, c) < kld_of(p, t, b)))
      b = c;
  return b;
}

/* Index of the lowest-KLD candidate of weight t (ties: fewer bytes). */
static int most_accurate(const qn_mp_problem* p, int t) {
  int b = 0;
  for (int c = 1; c < p->n_cand; c++)
    if (kld_of(p, t, c) < kld_of(p, t, b) ||
        (kld_of(p, t, c) == kld_of(p, t, b) && bytes_of(p, t, c) < bytes_of(p, t, b)))
      b = c;
  return b;
}

/* Applies the upgrade with the most KLD saved per byte added; a candidate that saves KLD
 * without adding bytes comes first (largest saving). False if no candidate saves KLD. */
static bool best_upgrade(const qn_mp_problem* p, int* choice, double* pred) {
  int bt = -1, bc = -1;
  double best = -1, best_saved = 0;
  for (int t = 0; t < p->n_tensors; t++) {
    int cur = choice[t];
    for (int c = 0; c < p->n_cand; c++) {
      double saved = kld_of(p, t, cur) - kld_of(p, t, c);
      if (!(saved > 0)) continue;
      double added = (double)bytes_of(p, t, c) - (double)bytes_of(p, t, cur);
      double ratio = added > 0 ? saved / added : INFINITY;
      if (ratio > best || (ratio == best && saved > best_saved))
        best = ratio, best_saved = saved, bt = t, bc = c;
    }
  }
  if (bt < 0) return false;
  *pred += kld_of(p, bt, bc) - kld_of(p, bt, choice[bt]);
  choice[bt] = bc;
  return true;
}

/* Applies the downgrade that saves the most bytes and keeps the prediction within budget;
 * false if there is none. */
static bool best_downgrade(const qn_mp_problem* p, double budget, int* choice, double* pred) {
  int bt = -1, bc = -1;
  uint64_t best = 0;
  double best_dk = INFINITY;
  for (int t = 0; t < p->n_tensors; t++) {
    int cur = choice[t];
    for (int c = 0; c < p->n_cand; c++) {
      if (bytes_of(p, t, c) >= bytes_of(p, t, cur)) continue;
      double dk = kld_of(p, t, c) - kld_of(p, t, cur);
      if (*pred + dk > budget) continue;
      uint64_t saved = bytes_of(p, t, cur) - bytes_of(p, t, c);
      if (saved > best || (saved == best && dk < best_dk))
        best = saved, best_dk = dk, bt = t, bc = c;
    }
  }
  if (bt < 0) return false;
  *pred += best_dk;
  choice[bt] = bc;
  return true;
}

static double predict(const qn_mp_problem* p, const int* choice) {
  double s = 0;
  for (int t = 0; t < p->n_tensors; t++) s += kld_of(p, t, choice[t]);
  return s;
}

bool qn_mp_select(const qn_mp_problem* p, double budget, int* choice, double* predicted) {
  for (int t = 0; t < p->n_tensors; t++) choice[t] = smallest(p, t);
  double pred = predict(p, choice);
  while (pred > budget)
    if (!best_upgrade(p, choice, &pred)) break;
  if (pred > budget) {
    for (int t = 0; t < p->n_tensors; t++) choice[t] = most_accurate(p, t);
    *predicted = predict(p, choice);
    return *predicted <= budget;
  }
  while (best_downgrade(p, budget, choice, &pred)) {
  }
  *predicted = predict(p, choice); /* re-summed: no drift from the increments */
  return true;
}

/* ---- recipe ------------------------------------------------------------------------------ */

void qn_mp_rules_free(char** rules, int n_rules) {
  for (int i = 0; rules && i < n_rules; i++) free(rules[i]);
  free(rules);
}

/* The KIND of "blk.N.KIND.weight" into kind[cap]; false for other names. */
static bool block_kind(const char* name, char* kind, size_t cap) {
  if (strncmp(name, "blk.", 4) != 0) return false;
  const char* p = name + 4;
  if (!isdigit((unsigned char)*p)) return false;
  while (isdigit((unsigned char)*p)) p++;
  if (*p++ != '.') return false;
  const char* e = strstr(p, ".weight");
  if (!e || e[7] != '\0' || e == p || (size_t)(e - p) >= cap) return false;
  memcpy(kind, p, (size_t)(e - p));
  kind[e - p] = '\0';
  return strpbrk(kind, "*?[]\\") == NULL; /* used inside a glob pattern */
}

static qn_status push_rule(char** rules, int* n, const char* pattern, qn_qtype t) {
  if (*n >= QN_RECIPE_MAX_RULES)
    return qn_error(QN_EUNSUPPORTED,
                    "the mixed-precision choice needs more than %d recipe rules; use fewer "
                    "candidates",
                    QN_RECIPE_MAX_RULES);
  const char* sn = qn_qtype_traits_of(t)->name;
  size_t len = strlen(pattern) + strlen(sn) + 2;
  char* r = malloc(len);
  if (!r) return qn_error(QN_ENOMEM, "out of memory");
  snprintf(r, len, "%s=%s", pattern, sn);
  rules[(*n)++] = r;
  return QN_OK;
}

/* Most common scheme among names[i] with kind filter (NULL = all); counts[] scratch. */
static qn_qtype majority(const char* const* names, const qn_qtype* schemes, int n, const char* kind,
                         int* count_of_def, qn_qtype def) {
  int counts[QN_QTYPE_COUNT] = {0};
  for (int i = 0; i < n; i++) {
    char k[96];
    if (kind && (!block_kind(names[i], k, sizeof k) || strcmp(k, kind) != 0)) continue;
    if ((int)schemes[i] >= 0 && schemes[i] < QN_QTYPE_COUNT) counts[schemes[i]]++;
  }
  int best = 0;
  for (int t = 1; t < QN_QTYPE_COUNT; t++)
    if (counts[t] > counts[best]) best = t;
  if (count_of_def) *count_of_def = counts[def];
  return counts[best] > 0 ? (qn_qtype)best : def;
}

/* Checks that the rules give every name its scheme. */
static qn_status verify_recipe(const char* const* names, const qn_qtype* schemes, int n,
                               qn_qtype def, char** rules, int n_rules) {
  qn_recipe* rc = malloc(sizeof *rc);
  if (!rc) return qn_error(QN_ENOMEM, "out of memory");
  qn_status st = qn_recipe_init(rc, qn_qtype_traits_of(def)->name);
  for (int i = 0; i < n_rules && st == QN_OK; i++) st = qn_recipe_add(rc, rules[i], "recipe");
  for (int i = 0; i < n && st == QN_OK; i++)
    if (qn_recipe_pick(rc, names[i]) != schemes[i])
      st = qn_error(QN_EINVAL, "internal: the mixed-precision recipe misses '%s'", names[i]);
  free(rc);
  return st;
}

qn_status qn_mp_recipe(const char* const* names, const qn_qtype* schemes, int n, qn_qtype* def,
                       char*** rules_out, int* n_rules_out) {
  *rules_out = NULL;
  *n_rules_out = 0;
  for (int i = 0; i < n; i++)
    if (!qn_qtype_traits_of(schemes[i]))
      return qn_error(QN_EINVAL, "'%s': invalid scheme %d", names[i], (int)schemes[i]);
  *def = n ? majority(names, schemes, n, NULL, NULL, QN_QTYPE_F32) : QN_QTYPE_F32;
  char** rules = calloc(QN_RECIPE_MAX_RULES, sizeof *rules);
  qn_qtype* eff = malloc(sizeof *eff * (size_t)(n ? n : 1));
  qn_status st = rules && eff ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  int nr = 0;
  for (int i = 0; i < n && st == QN_OK; i++) eff[i] = *def;
  /* kind rules, in order of first appearance */
  for (int i = 0; i < n && st == QN_OK; i++) {
    char kind[96];
    if (!block_kind(names[i], kind, sizeof kind)) continue;
    bool seen = false;
    for (int j = 0; j < i && !seen; j++) {
      char kj[96];
      seen = block_kind(names[j], kj, sizeof kj) && strcmp(kj, kind) == 0;
    }
    if (seen) continue;
    int n_def = 0;
    qn_qtype m = majority(names, schemes, n, kind, &n_def, *def);
    int n_m = 0;
    majority(names, schemes, n, kind, &n_m, m);
    if (m == *def || n_m <= n_def) continue;
    char pat[128];
    snprintf(pat, sizeof pat, "blk.*.%s.weight", kind);
    st = push_rule(rules, &nr, pat, m);
    for (int j = 0; j < n; j++) {
      char kj[96];
      if (block_kind(names[j], kj, sizeof kj) && strcmp(kj, kind) == 0) eff[j] = m;
    }
  }
  for (int i = 0; i < n && st == QN_OK; i++)
    if (eff[i] != schemes[i]) st = push_rule(rules, &nr, names[i], schemes[i]);
  if (st == QN_OK) st = verify_recipe(names, schemes, n, *def, rules, nr);
  free(eff);
  if (st != QN_OK) {
    qn_mp_rules_free(rules, nr);
    return st;
  }
  *rules_out = rules;
  *n_rules_out = nr;
  return QN_OK;
}

/* ---- the search ------------------------------------------------------------------------- */

void qn_mp_result_free(qn_mp_result* r) {
  if (!r) return;
  free(r->recipe);
  free(r->tensors);
  memset(r, 0, sizeof *r);
}

/* Everything one search holds. */
typedef struct mp_state {
  const qn_mp_opts* o;
  qn_model* m;            /* the source model, weights as loaded between measurements */
  const char* model_path; /* its path, for qn_quantize */
  const char* text;       /* the text and its length */
  size_t len;
  qn_wslot* slots; /* [n_slots] 2-D weights */
  int n_slots;
  qn_qtype cand[QN_MP_MAX_CANDIDATES]; /* [n_cand] candidate schemes */
  int n_cand;
  double* kld;        /* [n_slots * n_cand] measured sensitivities */
  uint64_t* bytes;    /* [n_slots * n_cand] bytes per weight and candidate */
  uint64_t n_weights; /* weights in all slots */
  char* tmp[2];       /* temporary .qnz paths: the round's file and the best so far */
} mp_state;

/* Splits the candidate list into s->cand (checked: known, distinct, measurable). */
static qn_status parse_candidates(mp_state* s, const char* list) {
  if (!list || !*list) return qn_error(QN_EINVAL, "no candidate schemes given");
  s->n_cand = 0;
  for (const char* p = list; p;) {
    const char* e = strchr(p, ',');
    size_t k = e ? (size_t)(e - p) : strlen(p);
    while (k && isspace((unsigned char)*p)) p++, k--;
    while (k && isspace((unsigned char)p[k - 1])) k--;
    char name[32];
    if (k == 0) return qn_error(QN_EINVAL, "candidates '%s': empty entry", list);
    if (k >= sizeof name)
      return qn_error(QN_EINVAL, "candidates: unknown scheme '%.*s'", (int)k, p);
    memcpy(name, p, k);
    name[k] = '\0';
    int t = qn_qtype_from_name(name);
    if (t < 0)
      return qn_error(QN_EINVAL, "candidates: unknown scheme '%s' (see 'quench quantize --list')",
                      name);
    if (qn_qtype_traits_of((qn_qtype)t)->act == QN_ACT_I8_STATIC)
      return qn_error(QN_EUNSUPPORTED,
                      "candidates: scheme '%s' needs a calibrated activation scale; use "
                      "weight-only or dynamic-activation schemes",
                      name);
    for (int i = 0; i < s->n_cand; i++)
      if (s->cand[i] == (qn_qtype)t)
        return qn_error(QN_EINVAL, "candidates: '%s' is listed twice", name);
    if (s->n_cand == QN_MP_MAX_CANDIDATES)
      return qn_error(QN_EINVAL, "candidates: more than %d schemes", QN_MP_MAX_CANDIDATES);
    s->cand[s->n_cand++] = (qn_qtype)t;
    p = e ? e + 1 : NULL;
  }
  return QN_OK;
}

static qn_status check_budget(const qn_mp_opts* o) {
  if (isnan(o->target_kld) || o->target_kld < 0)
    return qn_error(QN_EINVAL, "target KLD must be > 0 (got %g)", o->target_kld);
  if (isnan(o->max_ppl_increase) || o->max_ppl_increase < 0)
    return qn_error(QN_EINVAL, "max PPL increase must be > 0 percent (got %g)",
                    o->max_ppl_increase);
  if (!(o->target_kld > 0) && !(o->max_ppl_increase > 0))
    return qn_error(QN_EINVAL,
                    "no budget: give a target KLD > 0 or a max PPL increase > 0 percent");
  if (!isfinite(o->target_kld) || !isfinite(o->max_ppl_increase))
    return qn_error(QN_EINVAL, "budgets must be finite");
  if (o->max_rounds < 0 || o->max_rounds > 64)
    return qn_error(QN_EINVAL, "max rounds must be 0..64 (got %d)", o->max_rounds);
  return QN_OK;
}

/* Step 1: quantizes every weight to every candidate in memory and measures each alone. */
static qn_status measure_sensitivities(mp_state* s, const qn_spans* sp, const qn_quant_opts* qo) {
  const int nv_max = s->n_slots * s->n_cand;
  qn_qweight* qw = calloc((size_t)nv_max + 1, sizeof *qw);
  qn_swap* swaps = calloc((size_t)nv_max + 1, sizeof *swaps);
  qn_variant* var = calloc((size_t)nv_max + 1, sizeof *var);
  int* cell = calloc((size_t)nv_max + 1, sizeof *cell); /* variant -> kld cell */
  qn_variant_stats* vs = calloc((size_t)nv_max + 1, sizeof *vs);
  qn_status st = qw && swaps && var && cell && vs ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  int nv = 0;
  for (int t = 0; t < s->n_slots && st == QN_OK; t++) {
    const qn_qtensor* w = &s->slots[t].orig;
    s->n_weights += (uint64_t)w->rows * (uint64_t)w->cols;
    for (int c = 0; c < s->n_cand && st == QN_OK; c++) {
      s->bytes[t * s->n_cand + c] = qn_qtype_bytes(s->cand[c], w->rows, w->cols);
      s->kld[t * s->n_cand + c] = 0;
      if (s->cand[c] == QN_QTYPE_F32) continue; /* reproduces the loaded values exactly */
      st = qn_qweight_make(w, s->slots[t].name, s->cand[c], qo, &qw[nv]);
      if (st != QN_OK) break;
      swaps[nv] = (qn_swap){t, &qw[nv]};
      var[nv] = (qn_variant){&swaps[nv], 1};
      cell[nv] = t * s->n_cand + c;
      nv++;
    }
  }
  qn_measure_info mi;
  if (st == QN_OK)
    st = qn_measure_variants(s->m, s->slots, sp, var, nv, s->o->eval.progress,
                             s->o->eval.progress_user, "sensitivity", vs, &mi);
  for (int k = 0; st == QN_OK && k < nv; k++) s->kld[cell[k]] = vs[k].kld_mean;
  for (int k = 0; qw && k < nv_max; k++) qn_qweight_free(&qw[k]);
  free(qw);
  free(swaps);
  free(var);
  free(cell);
  free(vs);
  return st;
}

/* One measured choice. */
typedef struct mp_round {
  int* choice;       /* [n_slots] candidate index per weight */
  double predicted;  /* summed KLDs */
  uint64_t bytes;    /* bytes of the 2-D weights */
  qn_cmp_result cmp; /* measurement */
  bool met;          /* within every budget */
  char** rules;      /* its recipe: default + rules ("PATTERN=SCHEME") */
  int n_rules;
  qn_qtype def;
} mp_round;

static void round_free(mp_round* r) {
  free(r->choice);
  qn_mp_rules_free(r->rules, r->n_rules);
  memset(r, 0, sizeof *r);
}

static bool budget_met(const qn_mp_opts* o, const qn_cmp_result* c) {
  bool ok = true;
  if (o->target_kld > 0) ok = ok && c->kld_mean <= o->target_kld;
  if (o->max_ppl_increase > 0)
    ok = ok && 100.0 * (c->ppl_quant - c->ppl_base) / c->ppl_base <= o->max_ppl_increase;
  return ok;
}

/* target / measured over the budgets (the smallest: the tightest constraint). */
static double budget_ratio(const qn_mp_opts* o, const qn_cmp_result* c) {
  double r = INFINITY;
  if (o->target_kld > 0) r = fmin(r, o->target_kld / fmax(c->kld_mean, 1e-12));
  if (o->max_ppl_increase > 0)
    r = fmin(r, log1p(o->max_ppl_increase / 100.0) / fmax(c->nll_quant - c->nll_base, 1e-12));
  return r;
}

/* Quantizes the model with the round's recipe into path and measures it. */
static qn_status quantize_and_measure(mp_state* s, mp_round* r, const char* path) {
  const char** names = malloc(sizeof *names * (size_t)s->n_slots);
  qn_qtype* schemes = malloc(sizeof *schemes * (size_t)s->n_slots);
  qn_status st = names && schemes ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  for (int t = 0; t < s->n_slots && st == QN_OK; t++) {
    names[t] = s->slots[t].name;
    schemes[t] = s->cand[r->choice[t]];
  }
  if (st == QN_OK) st = qn_mp_recipe(names, schemes, s->n_slots, &r->def, &r->rules, &r->n_rules);
  free(names);
  free(schemes);
  qn_quantize_opts q;
  memset(&q, 0, sizeof q);
  if (s->o->quantize) q = *s->o->quantize;
  q.scheme = qn_qtype_traits_of(r->def)->name;
  q.recipe_path = NULL;
  q.rules = (const char* const*)r->rules;
  q.n_rules = r->n_rules;
  if (!q.progress) q.progress = s->o->eval.progress, q.progress_user = s->o->eval.progress_user;
  if (st == QN_OK) st = qn_quantize(s->model_path, path, &q, NULL);
  qn_model* qm = NULL;
  if (st == QN_OK) {
    qn_model_opts mo = {.n_threads = q.n_threads};
    st = qn_model_open(path, &mo, &qm);
  }
  if (st == QN_OK) st = qn_eval_cmp(s->m, qm, s->text, s->len, &s->o->eval, &r->cmp);
  qn_model_free(qm);
  r->met = st == QN_OK && budget_met(s->o, &r->cmp);
  return st;
}

static bool same_choice(const int* a, const int* b, int n) {
  return memcmp(a, b, sizeof *a * (size_t)n) == 0;
}

/* Next selection budget from the last measurement, inside the bracket (lo, hi). */
static double next_budget(double sel, double ratio, double lo, double hi) {
  double nb = sel * ratio * 0.97;
  if (nb > lo && nb < hi) return nb;
  if (lo > 0 && isfinite(hi)) return sqrt(lo * hi);
  return lo > 0 ? lo * 2 : hi * 0.5;
}

/* Temporary .qnz paths beside out_path, or in $TMPDIR. */
static qn_status make_tmp_paths(mp_state* s) {
  const char* dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  static int counter;
  int k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < 2; i++) {
    size_t n = (s->o->out_path ? strlen(s->o->out_path) : strlen(dir)) + 96;
    s->tmp[i] = malloc(n);
    if (!s->tmp[i]) return qn_error(QN_ENOMEM, "out of memory");
    if (s->o->out_path)
      snprintf(s->tmp[i], n, "%s.mp-%s-%ld-%d.qnz", s->o->out_path, i ? "best" : "round",
               (long)getpid(), k);
    else
      snprintf(s->tmp[i], n, "%s/quench-mp-%s-%ld-%d.qnz", dir, i ? "best" : "round",
               (long)getpid(), k);
  }
  return QN_OK;
}

/* Whether every weight sits at its smallest candidate (nothing left to save). */
static bool all_smallest(const qn_mp_problem* p, const int* choice) {
  for (int t = 0; t < p->n_tensors; t++)
    if (p->bytes[t * p->n_cand + choice[t]] != p->bytes[t * p->n_cand + smallest(p, t)])
      return false;
  return true;
}

/* What the rounds learnt besides the best choice. */
typedef struct mp_outcome {
  int rounds;             /* quantize-and-measure rounds run */
  bool tried_accurate;    /* the most accurate choice was measured and missed */
  qn_cmp_result accurate; /* its measurement */
} mp_outcome;

/* Steps 2-4: select, quantize, measure, correct; *best gets the smallest choice that met
 * the budget (its file at s->tmp[1]). */
static qn_status search_rounds(mp_state* s, mp_round* best, mp_outcome* out) {
  const qn_mp_opts* o = s->o;
  const int max_rounds = o->max_rounds > 0 ? o->max_rounds : 4;
  qn_mp_problem p = {s->n_slots, s->n_cand, s->kld, s->bytes};
  double sel = INFINITY;
  if (o->target_kld > 0) sel = o->target_kld;
  if (o->max_ppl_increase > 0) sel = fmin(sel, log1p(o->max_ppl_increase / 100.0));
  double lo = 0, hi = INFINITY; /* largest selection budget that met, smallest that missed */
  int* last = calloc((size_t)s->n_slots, sizeof *last);
  qn_status st = last ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  bool have_last = false, last_met = false;
  for (int iter = 0; st == QN_OK && out->rounds < max_rounds && iter < 8 * max_rounds; iter++) {
    mp_round r;
    memset(&r, 0, sizeof r);
    r.choice = malloc(sizeof(int) * (size_t)s->n_slots);
    if (!r.choice) {
      st = qn_error(QN_ENOMEM, "out of memory");
      break;
    }
    bool feasible = qn_mp_select(&p, sel, r.choice, &r.predicted);
    if (have_last && same_choice(r.choice, last, s->n_slots)) {
      /* the budget moved too little to change the choice: move it on without measuring */
      round_free(&r);
      sel *= last_met ? 1.25 : 0.8;
      continue;
    }
    for (int t = 0; t < s->n_slots; t++) r.bytes += s->bytes[t * s->n_cand + r.choice[t]];
    st = quantize_and_measure(s, &r, s->tmp[0]);
    if (st != QN_OK) {
      round_free(&r);
      break;
    }
    out->rounds++;
    memcpy(last, r.choice, sizeof(int) * (size_t)s->n_slots);
    have_last = true;
    last_met = r.met;
    const qn_cmp_result cmp = r.cmp;
    const bool floor = all_smallest(&p, r.choice);
    if (!feasible && !r.met) out->tried_accurate = true, out->accurate = cmp;
    if (r.met && (!best->choice || r.bytes < best->bytes)) {
      if (rename(s->tmp[0], s->tmp[1]) != 0)
        st = qn_error(QN_EIO, "cannot rename %s to %s", s->tmp[0], s->tmp[1]);
      round_free(best);
      *best = r;
      memset(&r, 0, sizeof r);
    }
    round_free(&r);
    if (last_met)
      lo = fmax(lo, sel);
    else
      hi = fmin(hi, sel);
    double ratio = budget_ratio(o, &cmp);
    if (last_met && (ratio < 1.25 || floor)) break; /* close to the budget, or nothing to save */
    if (out->tried_accurate) break;                 /* nothing more accurate to try */
    sel = next_budget(sel, ratio, lo, hi);
  }
  free(last);
  return st;
}

/* When no round met the budget: the most accurate choice, measured (unless it was). */
static qn_status last_resort(mp_state* s, mp_round* best, mp_outcome* out) {
  qn_mp_problem p = {s->n_slots, s->n_cand, s->kld, s->bytes};
  mp_round r;
  memset(&r, 0, sizeof r);
  qn_status st = QN_OK;
  if (!out->tried_accurate) {
    r.choice = malloc(sizeof(int) * (size_t)s->n_slots);
    if (!r.choice) return qn_error(QN_ENOMEM, "out of memory");
    qn_mp_select(&p, -1, r.choice, &r.predicted); /* infeasible budget: most accurate */
    for (int t = 0; t < s->n_slots; t++) r.bytes += s->bytes[t * s->n_cand + r.choice[t]];
    st = quantize_and_measure(s, &r, s->tmp[0]);
    if (st == QN_OK) out->rounds++;
    if (st == QN_OK && !r.met) out->tried_accurate = true, out->accurate = r.cmp;
  }
  if (st == QN_OK && out->tried_accurate) {
    const qn_cmp_result* c = &out->accurate;
    char want[160] = "";
    if (s->o->target_kld > 0) snprintf(want, sizeof want, "target mean KLD %g", s->o->target_kld);
    if (s->o->max_ppl_increase > 0)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%smax PPL increase %g%%",
               *want ? ", " : "", s->o->max_ppl_increase);
    st = qn_error(QN_ERANGE,
                  "budget unreachable: with every weight in its most accurate candidate the "
                  "measured mean KLD is %.6g and the PPL increase %+.3f%% (%s)",
                  c->kld_mean, 100.0 * (c->ppl_quant - c->ppl_base) / c->ppl_base, want);
  }
  if (st == QN_OK && rename(s->tmp[0], s->tmp[1]) != 0)
    st = qn_error(QN_EIO, "cannot rename %s to %s", s->tmp[0], s->tmp[1]);
  if (st == QN_OK) {
    round_free(best);
    *best = r;
  } else {
    round_free(&r);
  }
  return st;
}

/* The recipe file text of the winning round. */
static char* recipe_text(const mp_state* s, const mp_round* b) {
  size_t cap = 1024;
  for (int i = 0; i < b->n_rules; i++) cap += strlen(b->rules[i]) + 2;
  char* t = malloc(cap);
  if (!t) return NULL;
  int o = 0;
  o += snprintf(t + o, cap - (size_t)o, "# quench mixed precision: candidates");
  for (int c = 0; c < s->n_cand; c++)
    o += snprintf(t + o, cap - (size_t)o, "%s%s", c ? "," : " ",
                  qn_qtype_traits_of(s->cand[c])->name);
  o += snprintf(t + o, cap - (size_t)o, "\n# budget:");
  if (s->o->target_kld > 0)
    o += snprintf(t + o, cap - (size_t)o, " mean KLD <= %g", s->o->target_kld);
  if (s->o->max_ppl_increase > 0)
    o += snprintf(t + o, cap - (size_t)o, " PPL increase <= %g%%", s->o->max_ppl_increase);
  o += snprintf(t + o, cap - (size_t)o,
                "\n# measured: mean KLD %.6g, PPL %.4f -> %.4f (%+.3f%%), top-1 %.2f%%, "
                "%.3f bits/weight\n",
                b->cmp.kld_mean, b->cmp.ppl_base, b->cmp.ppl_quant,
                100.0 * (b->cmp.ppl_quant - b->cmp.ppl_base) / b->cmp.ppl_base,
                100.0 * b->cmp.top1_agree, 8.0 * (double)b->bytes / (double)s->n_weights);
  o += snprintf(t + o, cap - (size_t)o, "default %s\n", qn_qtype_traits_of(b->def)->name);
  for (int i = 0; i < b->n_rules; i++) {
    const char* eq = strrchr(b->rules[i], '=');
    o +=
        snprintf(t + o, cap - (size_t)o, "%.*s %s\n", (int)(eq - b->rules[i]), b->rules[i], eq + 1);
  }
  return t;
}

static qn_status fill_result(const mp_state* s, mp_round* b, int rounds, qn_mp_result* r) {
  r->recipe = recipe_text(s, b);
  r->tensors = calloc((size_t)s->n_slots, sizeof *r->tensors);
  if (!r->recipe || !r->tensors) return qn_error(QN_ENOMEM, "out of memory");
  r->n_tensors = s->n_slots;
  for (int t = 0; t < s->n_slots; t++) {
    qn_mp_tensor* e = &r->tensors[t];
    snprintf(e->name, sizeof e->name, "%s", s->slots[t].name);
    snprintf(e->scheme, sizeof e->scheme, "%s", qn_qtype_traits_of(s->cand[b->choice[t]])->name);
    e->bytes = s->bytes[t * s->n_cand + b->choice[t]];
    for (int c = 0; c < s->n_cand; c++) e->kld[c] = s->kld[t * s->n_cand + c];
  }
  r->n_candidates = s->n_cand;
  for (int c = 0; c < s->n_cand; c++)
    snprintf(r->candidates[c], sizeof r->candidates[c], "%s", qn_qtype_traits_of(s->cand[c])->name);
  r->cmp = b->cmp;
  r->kld_predicted = b->predicted;
  r->bytes = b->bytes;
  r->bpw = 8.0 * (double)b->bytes / (double)s->n_weights;
  qn_mp_problem p = {s->n_slots, s->n_cand, s->kld, s->bytes};
  for (int t = 0; t < s->n_slots; t++) {
    uint64_t mx = 0;
    for (int c = 0; c < s->n_cand; c++)
      mx = s->bytes[t * s->n_cand + c] > mx ? s->bytes[t * s->n_cand + c] : mx;
    r->bytes_smallest += s->bytes[t * s->n_cand + smallest(&p, t)];
    r->bytes_largest += mx;
  }
  r->rounds = rounds;
  return QN_OK;
}

qn_status qn_mixed_precision(const char* model_path, const char* text, size_t len,
                             const qn_mp_opts* o, qn_mp_result* r) {
  qn_error_clear();
  memset(r, 0, sizeof *r);
  double t0 = qn_now();
  if (!o) return qn_error(QN_EINVAL, "no options given");
  mp_state s;
  memset(&s, 0, sizeof s);
  s.o = o;
  s.model_path = model_path;
  s.text = text;
  s.len = len;
  QN_TRY(check_budget(o));
  QN_TRY(parse_candidates(&s, o->candidates));
  const qn_quantize_opts* qz = o->quantize;
  int threads = qz && qz->n_threads > 0 ? qz->n_threads : 0;
  qn_model_opts mo = {.tokenizer_path = qz ? qz->tokenizer_path : NULL, .n_threads = threads};
  QN_TRY(qn_model_open(model_path, &mo, &s.m));
  qn_spans sp = {0};
  qn_status st = qn_spans_build(s.m, text, len, &o->eval, &sp);
  if (st == QN_OK) st = qn_wslots_of(s.m, &s.slots, &s.n_slots);
  if (st == QN_OK) {
    s.kld = calloc((size_t)s.n_slots * (size_t)s.n_cand, sizeof *s.kld);
    s.bytes = calloc((size_t)s.n_slots * (size_t)s.n_cand, sizeof *s.bytes);
    if (!s.kld || !s.bytes) st = qn_error(QN_ENOMEM, "out of memory");
  }
  if (st == QN_OK) st = make_tmp_paths(&s);
  if (st == QN_OK) {
    qn_quant_opts qo = {.search = qz && qz->search,
                        .n_threads = threads > 0 ? threads : qn_cpu_count()};
    st = measure_sensitivities(&s, &sp, &qo);
  }
  qn_spans_free(&sp);
  mp_round best;
  memset(&best, 0, sizeof best);
  mp_outcome oc;
  memset(&oc, 0, sizeof oc);
  if (st == QN_OK) st = search_rounds(&s, &best, &oc);
  if (st == QN_OK && !best.choice) st = last_resort(&s, &best, &oc);
  if (st == QN_OK && o->out_path && rename(s.tmp[1], o->out_path) != 0)
    st = qn_error(QN_EIO, "cannot rename %s to %s", s.tmp[1], o->out_path);
  if (st == QN_OK) st = fill_result(&s, &best, oc.rounds, r);
  if (st == QN_OK) r->seconds = qn_now() - t0;
  if (st != QN_OK) qn_mp_result_free(r);
  round_free(&best);
  for (int i = 0; i < 2; i++) {
    if (s.tmp[i]) unlink(s.tmp[i]);
    free(s.tmp[i]);
  }
  free(s.kld);
  free(s.bytes);
  free(s.slots);
  qn_model_free(s.m);
  return st;
}
