/* threadpool.c: workers wait on a generation counter; each job is split into one contiguous
 * range per worker, the caller runs range 0 and then waits for the rest. */
#define _GNU_SOURCE
#include "core/threadpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/status.h"

struct qn_pool {
  int n_threads;      /* workers including the caller */
  pthread_t* threads; /* [n_threads - 1] helper threads */
  pthread_mutex_t mu;
  pthread_cond_t cv_work; /* signalled when a job is posted or on shutdown */
  pthread_cond_t cv_done; /* signalled when the last helper finishes a job */
  uint64_t generation;    /* incremented per job */
  int pending;            /* helpers still running the current job */
  int stop;               /* set on shutdown */
  /* current job */
  qn_pool_fn fn;
  void* arg;
  int64_t n;   /* items */
  int n_parts; /* ranges the job is split into (<= n_threads) */
};

typedef struct worker_arg {
  qn_pool* pool;
  int tid; /* 1..n_threads-1 */
} worker_arg;

static void part_range(int64_t n, int parts, int i, int64_t* b, int64_t* e) {
  *b = n * i / parts;
  *e = n * (i + 1) / parts;
}

static void* worker_main(void* p) {
  worker_arg* wa = p;
  qn_pool* pool = wa->pool;
  int tid = wa->tid;
  free(wa);
  uint64_t seen = 0;
  for (;;) {
    pthread_mutex_lock(&pool->mu);
    while (!pool->stop && pool->generation == seen) pthread_cond_wait(&pool->cv_work, &pool->mu);
    if (pool->stop) {
      pthread_mutex_unlock(&pool->mu);
      return NULL;
    }
    seen = pool->generation;
    qn_pool_fn fn = pool->fn;
    void* arg = pool->arg;
    int64_t n = pool->n;
    int parts = pool->n_parts;
    pthread_mutex_unlock(&pool->mu);
    if (tid < parts) {
      int64_t b, e;
      part_range(n, parts, tid, &b, &e);
      if (e > b) fn(arg, b, e, tid);
    }
    pthread_mutex_lock(&pool->mu);
    if (--pool->pending == 0) pthread_cond_signal(&pool->cv_done);
    pthread_mutex_unlock(&pool->mu);
  }
}

int qn_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

qn_status qn_pool_new(int n_threads, qn_pool** out) {
  *out = NULL;
  if (n_threads <= 0) n_threads = qn_cpu_count();
  if (n_threads > 256) return qn_error(QN_EINVAL, "threads: %d is too many (max 256)", n_threads);
  qn_pool* p = calloc(1, sizeof *p);
  if (!p) return qn_error(QN_ENOMEM, "out of memory");
  p->n_threads = n_threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_work, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  if (n_threads > 1) {
    p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
    if (!p->threads) {
      free(p);
      return qn_error(QN_ENOMEM, "out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
      worker_arg* wa = malloc(sizeof *wa);
      if (wa) {
        wa->pool = p;
        wa->tid = i;
      }
      if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
        free(wa);
        p->n_threads = i; /* shut down the ones that started */
        qn_pool_free(p);
        return qn_error(QN_ENOMEM, "cannot start worker thread %d", i);
      }
    }
  }
  *out = p;
  return QN_OK;
}

void qn_pool_free(qn_pool* p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv_work);
  pthread_cond_destroy(&p->cv_done);
  free(p->threads);
  free(p);
}

int qn_pool_size(const qn_pool* p) { return p ? p->n_threads : 1; }

void qn_pool_for(qn_pool* p, int64_t n, int64_t min_chunk, qn_pool_fn fn, void* arg) {
  if (n <= 0) return;
  if (min_chunk < 1) min_chunk = 1;
  int parts = p ? p->n_threads : 1;
  if (n / min_chunk < parts) parts = (int)(n / min_chunk);
  if (parts < 1) parts = 1;
  if (parts == 1) {
    fn(arg, 0, n, 0);
    return;
  }
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->arg = arg;
  p->n = n;
  p->n_parts = parts;
  p->pending = p->n_threads - 1;
  p->generation++;
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  int64_t b, e;
  part_range(n, parts, 0, &b, &e);
  fn(arg, b, e, 0);
  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->cv_done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}
