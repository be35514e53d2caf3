/* sampler.c: next-token choice from logits: repetition penalty, then greedy (temperature
 * 0) or temperature -> top-k -> top-p -> min-p -> a draw from a seeded xorshift RNG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "quench.h"

typedef struct qn_cand {
  float p; /* probability */
  int id;  /* token id */
} qn_cand;

struct qn_sampler {
  qn_sampler_opts o;
  int vocab;     /* logits per call */
  uint64_t rng;  /* xorshift64* state, never 0 */
  qn_cand* cand; /* (vocab) candidates, sorted by probability */
  float* prob;   /* (vocab) probabilities by id */
};

void qn_sampler_opts_default(qn_sampler_opts* o) {
  o->temperature = 0.8f;
  o->top_k = 40;
  o->top_p = 0.95f;
  o->min_p = 0.05f;
  o->repeat_penalty = 1.0f;
  o->repeat_last_n = 64;
  o->seed = 42;
}

qn_status qn_sampler_new(const qn_sampler_opts* o, int vocab_size, qn_sampler** out) {
  *out = NULL;
  if (o->temperature < 0) return qn_error(QN_EINVAL, "--temp must be >= 0");
  if (o->top_k < 0) return qn_error(QN_EINVAL, "--top-k must be >= 0");
  if (!(o->top_p > 0 && o->top_p <= 1)) return qn_error(QN_EINVAL, "--top-p must be in (0, 1]");
  if (!(o->min_p >= 0 && o->min_p < 1)) return qn_error(QN_EINVAL, "--min-p must be in [0, 1)");
  if (!(o->repeat_penalty > 0)) return qn_error(QN_EINVAL, "--repeat-penalty must be > 0");
  if (vocab_size <= 0) return qn_error(QN_EINVAL, "sampler: empty vocabulary");
  qn_sampler* s = calloc(1, sizeof *s);
  if (!s) return qn_error(QN_ENOMEM, "out of memory");
  s->o = *o;
  s->vocab = vocab_size;
  s->rng = o->seed ? o->seed : 0x9e3779b97f4a7c15ull;
  s->cand = malloc(sizeof(qn_cand) * (size_t)vocab_size);
  s->prob = malloc(sizeof(float) * (size_t)vocab_size);
  if (!s->cand || !s->prob) {
    qn_sampler_free(s);
    return qn_error(QN_ENOMEM, "out of memory");
  }
  *out = s;
  return QN_OK;
}

void qn_sampler_free(qn_sampler* s) {
  if (!s) return;
  free(s->cand);
  free(s->prob);
  free(s);
}

static float rng_uniform(qn_sampler* s) {
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  return (float)((s->rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f; /* [0, 1) */
}

static int by_prob_desc(const void* a, const void* b) {
  const qn_cand *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? 1 : -1;
  return x->id - y->id;
}

static int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

int qn_sampler_sample(qn_sampler* s, float* logits, const int* history, int n_history) {
  const int V = s->vocab;
  if (s->o.repeat_penalty != 1.0f && history) {
    int from = n_history - s->o.repeat_last_n;
    if (from < 0) from = 0;
    for (int i = from; i < n_history; i++) {
      int id = history[i];
      if (id < 0 || id >= V) continue;
      /* penalise each id once, however often it occurs in the window */
      bool seen = false;
      for (int j = from; j < i; j++)
        if (history[j] == id) seen = true;
      if (seen) continue;
      logits[id] =
          logits[id] > 0 ? logits[id] / s->o.repeat_penalty : logits[id] * s->o.repeat_penalty;
    }
  }
  if (s->o.temperature == 0.0f) return argmax(logits, V);

  float mx = logits[argmax(logits, V)];
  double sum = 0;
  for (int i = 0; i < V; i++) {
    s->prob[i] = expf((logits[i] - mx) / s->o.temperature);
    sum += s->prob[i];
  }
  for (int i = 0; i < V; i++) s->prob[i] = (float)(s->prob[i] / sum);

  /* candidates: all ids sorted by probability, then cut by top-k, top-p, min-p */
  for (int i = 0; i < V; i++) s->cand[i] = (qn_cand){s->prob[i], i};
  qsort(s->cand, (size_t)V, sizeof(qn_cand), by_prob_desc);
  int n = V;
  if (s->o.top_k > 0 && s->o.top_k < n) n = s->o.top_k;
  if (s->o.top_p < 1.0f) {
    double cum = 0;
    for (int i = 0; i < n; i++) {
      cum += s->cand[i].p;
      if (cum >= s->o.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (s->o.min_p > 0) {
    float floor_p = s->o.min_p * s->cand[0].p;
    int keep = 1;
    while (keep < n && s->cand[keep].p >= floor_p) keep++;
    n = keep;
  }
  double total = 0;
  for (int i = 0; i < n; i++) total += s->cand[i].p;
  double r = rng_uniform(s) * total, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += s->cand[i].p;
    if (r < acc) return s->cand[i].id;
  }
  return s->cand[n - 1].id;
}
