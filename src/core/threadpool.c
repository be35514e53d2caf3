/* threadpool.c: a fixed pool of helper threads running one data-parallel loop at a time.
 *
 * Hand-off without the kernel on the hot path: the caller publishes a job by writing the job
 * fields and then incrementing an atomic generation counter (release); helpers spin on that
 * counter (acquire), run their contiguous range and decrement an atomic `pending` counter; the
 * caller runs range 0 itself and then spins until `pending` is zero. Spinning is bounded: a
 * helper that has seen no new job for QN_SPIN_NS (20 us; and a caller whose helpers take that
 * long) falls back to a mutex + condition variable, so an idle pool costs no CPU; spinning
 * also stops for a while when it stops paying (shared cores: see QN_PREEMPT_NS). The sleep /
 * wake race is closed Dekker-style with sequentially consistent atomics: the sleeper announces
 * itself (sleepers / caller_sleeping) and then re-checks the counter it waits on under the
 * mutex; the waker changes that counter and then checks the announcement, taking the mutex
 * only when someone sleeps.
 *
 * One qn_pool_for runs at a time per pool (the caller is not re-entrant): job fields are only
 * written while every helper has finished the previous job. */
#define _GNU_SOURCE
#include "core/threadpool.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QN_CPU_RELAX() _mm_pause()
#else
#define QN_CPU_RELAX() ((void)0)
#endif

#include "core/clock.h"
#include "core/status.h"

/* How long a waiter spins before it sleeps: about the cost of a futex sleep + wake, so
 * spinning never costs more than about twice the best choice, and long enough for the gaps
 * between the back-to-back loops of a decode step. Overridable at build time. */
#ifndef QN_SPIN_NS
#define QN_SPIN_NS 20000
#endif
/* Spinning loses badly when the cores are shared with other busy processes: a thread that
 * burns its time slice spinning is scheduled late, and a spinning waiter holds a core the
 * thread it waits for may need, while a sleeper is woken promptly (a decode-like loop on a
 * 2-core host beside two busy processes: 1 ms of spinning cost ~2 ms per call, 200 us
 * ~0.5 ms, 10-30 us 0.13-0.18 ms, the sleep-only pool 0.11 ms). So spinning turns itself off
 * for the whole pool for QN_SPIN_OFF_NS (every waiter then sleeps at once) when it stops
 * paying: when a waiter's spins fail often: each timeout, and each gap of QN_PREEMPT_NS
 * between two of a spinner's clock reads (it was descheduled), adds QN_SPIN_FAIL_COST to its
 * score, each success takes 1 off, QN_SPIN_FAIL_LIMIT turns spinning off. A decode step,
 * ~180 back-to-back loops with a few timeouts at the token boundary, keeps spinning.
 * The off period is short (5 ms), so a VM whose vCPUs are taken away now and then goes back
 * to spinning within a token or two, while steady contention turns it off again after a few
 * failed spins (~8 x 20 us per 5 ms). Measured on the 2-vCPU dev VM, tinyllama-1.1b int4-g32
 * decode: with 100 ms off periods (and a single gap turning spinning off) the pool slept
 * through about half of a 128-token decode (8-16 off periods, ~40 futex sleeps per token)
 * and read 43.7-53.0 tok/s over four interleaved rounds; with this rule 44.8-53.1, and
 * int8-channel 29.4-31.8 against 25.9-31.1 (docs/BENCHMARKS.md). */
#define QN_PREEMPT_NS 50000
#ifndef QN_SPIN_OFF_NS
#define QN_SPIN_OFF_NS 5000000
#endif
#define QN_SPIN_FAIL_COST 8
#define QN_SPIN_FAIL_LIMIT 64
/* Pause instructions between two reads of the clock while spinning. */
#define QN_SPIN_CHECK_EVERY 64

/* The unclaimed items [begin, end) of one worker's share of a dynamic job, packed as
 * begin | end << 32 so one compare-and-swap claims from either end; a cache line each. */
typedef struct share {
  alignas(64) atomic_uint_fast64_t range;
} share;

struct qn_pool {
  int n_threads;                      /* workers including the caller */
  pthread_t* threads;                 /* [n_threads - 1] helper threads */
  atomic_int_fast64_t spin_off_until; /* now_ns() before which nobody spins (rarely written) */
  int caller_fails; /* spin score (QN_SPIN_FAIL_*) of the thread in qn_pool_for; only it */
  /* The current job: written by the caller only while no helper runs a job, read by helpers
   * after they have acquired the new generation. */
  qn_pool_fn fn; /* loop body */
  void* arg;     /* its argument */
  int64_t n;     /* items */
  int n_parts;   /* ranges the job is split into (<= n_threads) */
  int64_t chunk; /* > 0: dynamic job, claimed in chunks of at most this many (shares) */
  /* Synchronisation, one cache line per counter written by different threads. */
  alignas(64) atomic_uint_fast64_t generation; /* incremented per job and on shutdown */
  alignas(64) atomic_int pending;              /* helpers yet to finish the current job */
  share* shares; /* [n_threads] dynamic jobs: each worker's items not yet claimed */
  alignas(64) atomic_int sleepers; /* helpers blocked (or blocking) on cv_work */
  atomic_int caller_sleeping;      /* 1 while the caller blocks on cv_done */
  atomic_int stop;                 /* 1 once qn_pool_free began */
  pthread_mutex_t mu;              /* guards the two condition variables */
  pthread_cond_t cv_work;          /* a job was posted, or shutdown */
  pthread_cond_t cv_done;          /* pending reached zero */
};

typedef struct worker_arg {
  qn_pool* pool; /* the pool the helper serves */
  int tid;       /* 1..n_threads-1 */
} worker_arg;

static void part_range(int64_t n, int parts, int i, int64_t* b, int64_t* e) {
  *b = n * i / parts;
  *e = n * (i + 1) / parts;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void spinning_off(qn_pool* p, int64_t now) {
  atomic_store_explicit(&p->spin_off_until, now + QN_SPIN_OFF_NS, memory_order_relaxed);
}

/* Bounded busy wait: spins (with pause) until done(p, v); returns whether it came true. Gives
 * up after QN_SPIN_NS, at once while spinning is off, and when it finds it was descheduled
 * (both count as failures);
 * *fails is the waiter's spin score. No sched_yield: on a shared core it hands the rest of the
 * time slice to another process, which makes the wait milliseconds long. */
typedef bool (*spin_cond)(qn_pool* p, uint64_t v);

static bool spin_until(qn_pool* p, spin_cond done, uint64_t v, int* fails) {
  if (done(p, v)) return true;
  int64_t start = now_ns(), last = start;
  if (start < atomic_load_explicit(&p->spin_off_until, memory_order_relaxed)) return false;
  for (unsigned it = 1;; it++) {
    if (done(p, v)) {
      if (*fails > 0) (*fails)--;
      return true;
    }
    QN_CPU_RELAX();
    if (it % QN_SPIN_CHECK_EVERY) continue;
    int64_t t = now_ns();
    if (t - last >= QN_PREEMPT_NS || t - start >= QN_SPIN_NS) {
      if ((*fails += QN_SPIN_FAIL_COST) >= QN_SPIN_FAIL_LIMIT) {
        *fails = 0;
        spinning_off(p, t);
      }
      return false;
    }
    last = t;
  }
}

static bool generation_moved(qn_pool* p, uint64_t seen) {
  return atomic_load_explicit(&p->generation, memory_order_acquire) != seen;
}

static bool job_done(qn_pool* p, uint64_t unused) {
  (void)unused;
  return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

/* Waits until the generation differs from `seen`; returns the new generation. */
static uint64_t wait_for_job(qn_pool* p, uint64_t seen, int* fails) {
  if (spin_until(p, generation_moved, seen, fails))
    return atomic_load_explicit(&p->generation, memory_order_acquire);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->sleepers, 1); /* seq_cst: pairs with the load in publish_job */
  uint64_t g;
  while ((g = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->cv_work, &p->mu);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->mu);
  return g;
}

/* Makes a new generation visible to the helpers and wakes those that sleep. */
static void publish_job(qn_pool* p) {
  atomic_fetch_add(&p->generation, 1); /* seq_cst: release of the job fields, and Dekker */
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
  }
}

/* Helper side of completion: the last helper to finish wakes a sleeping caller. */
static void finish_job(qn_pool* p) {
  if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_signal(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
  }
}

/* Caller side of completion: returns once every helper finished the current job. */
static void wait_for_helpers(qn_pool* p) {
  if (spin_until(p, job_done, 0, &p->caller_fails)) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->caller_sleeping, 1); /* seq_cst: pairs with the load in finish_job */
  while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->cv_done, &p->mu);
  atomic_store(&p->caller_sleeping, 0);
  pthread_mutex_unlock(&p->mu);
}

static uint64_t pack_range(uint64_t b, uint64_t e) { return b | e << 32; }

/* Claims a chunk of the share s: half of what is left, at least 1 and at most `chunk` items,
 * from its front (the owner) or its back (another worker); false once s is empty. */
static bool claim(share* s, int64_t chunk, bool front, int64_t* b, int64_t* e) {
  uint64_t r = atomic_load_explicit(&s->range, memory_order_relaxed);
  for (;;) {
    const int64_t lo = (int64_t)(r & 0xffffffffu), hi = (int64_t)(r >> 32);
    if (lo >= hi) return false;
    int64_t size = (hi - lo) / 2;
    size = size > chunk ? chunk : size < 1 ? 1 : size;
    const uint64_t nr = front ? pack_range((uint64_t)(lo + size), (uint64_t)hi)
                              : pack_range((uint64_t)lo, (uint64_t)(hi - size));
    if (atomic_compare_exchange_weak_explicit(&s->range, &r, nr, memory_order_relaxed,
                                              memory_order_relaxed)) {
      *b = front ? lo : hi - size;
      *e = front ? lo + size : hi;
      return true;
    }
  }
}

/* Worker tid's part of the current job: its contiguous range; or, for a dynamic job, the
 * chunks of its own share from the front (so its rows stream in order and a kernel's running
 * prefetch carries from one chunk into the next), then chunks taken from the back of the
 * other workers' shares until every share is empty. */
static void run_share(qn_pool* p, int tid) {
  if (p->chunk > 0) {
    int64_t b, e;
    while (claim(&p->shares[tid], p->chunk, true, &b, &e)) p->fn(p->arg, b, e, tid);
    for (bool took = true; took;) {
      took = false;
      for (int k = 1; k < p->n_threads && !took; k++)
        if (claim(&p->shares[(tid + k) % p->n_threads], p->chunk, false, &b, &e)) {
          p->fn(p->arg, b, e, tid);
          took = true;
        }
    }
    return;
  }
  if (tid >= p->n_parts) return;
  int64_t b, e;
  part_range(p->n, p->n_parts, tid, &b, &e);
  if (e > b) p->fn(p->arg, b, e, tid);
}

static void* worker_main(void* arg) {
  worker_arg* wa = arg;
  qn_pool* p = wa->pool;
  int tid = wa->tid;
  free(wa);
  uint64_t seen = 0;
  int fails = 0; /* spin score of this helper */
  for (;;) {
    seen = wait_for_job(p, seen, &fails);
    if (atomic_load_explicit(&p->stop, memory_order_acquire)) return NULL;
    run_share(p, tid);
    finish_job(p);
  }
}

int qn_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static qn_pool* pool_alloc(int n_threads) {
  size_t size = (sizeof(qn_pool) + 63) / 64 * 64;
  qn_pool* p = aligned_alloc(64, size);
  if (!p) return NULL;
  memset(p, 0, size);
  p->n_threads = n_threads;
  p->shares = aligned_alloc(64, sizeof(share) * (size_t)n_threads);
  if (!p->shares) {
    free(p);
    return NULL;
  }
  for (int t = 0; t < n_threads; t++) atomic_init(&p->shares[t].range, 0);
  atomic_init(&p->generation, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->caller_sleeping, 0);
  atomic_init(&p->stop, 0);
  atomic_init(&p->spin_off_until, 0);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_work, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  return p;
}

qn_status qn_pool_new(int n_threads, qn_pool** out) {
  *out = NULL;
  if (n_threads <= 0) n_threads = qn_cpu_count();
  if (n_threads > 256) return qn_error(QN_EINVAL, "threads: %d is too many (max 256)", n_threads);
  qn_pool* p = pool_alloc(n_threads);
  if (!p) return qn_error(QN_ENOMEM, "out of memory");
  if (n_threads > 1) {
    p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
    if (!p->threads) {
      p->n_threads = 1;
      qn_pool_free(p);
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
  atomic_store_explicit(&p->stop, 1, memory_order_release);
  atomic_fetch_add(&p->generation, 1); /* spinning helpers see it and read stop */
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->cv_work); /* sleeping ones are woken */
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i - 1], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv_work);
  pthread_cond_destroy(&p->cv_done);
  free(p->threads);
  free(p->shares);
  free(p);
}

int qn_pool_size(const qn_pool* p) { return p ? p->n_threads : 1; }

/* Posts [0, n) split in `parts` ranges, or claimed in chunks of `chunk` (> 0), runs the
 * caller's share and waits for the helpers. */
static void run_job(qn_pool* p, int64_t n, int parts, int64_t chunk, qn_pool_fn fn, void* arg) {
  p->fn = fn;
  p->arg = arg;
  p->n = n;
  p->n_parts = parts;
  p->chunk = chunk;
  for (int t = 0; chunk > 0 && t < p->n_threads; t++) {
    int64_t b, e;
    part_range(n, p->n_threads, t, &b, &e);
    atomic_store_explicit(&p->shares[t].range, pack_range((uint64_t)b, (uint64_t)e),
                          memory_order_relaxed);
  }
  atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
  publish_job(p); /* seq_cst: also publishes the shares and pending */
  run_share(p, 0);
  wait_for_helpers(p);
}

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
  run_job(p, n, parts, 0, fn, arg);
}

void qn_pool_for_dynamic(qn_pool* p, int64_t n, int64_t chunk, qn_pool_fn fn, void* arg) {
  if (n <= 0) return;
  if (n > (int64_t)UINT32_MAX) { /* beyond a share's 32-bit bounds: a static split */
    qn_pool_for(p, n, 1, fn, arg);
    return;
  }
  if (chunk < 1) chunk = 1;
  if (!p || p->n_threads == 1 || n <= chunk) {
    fn(arg, 0, n, 0);
    return;
  }
  run_job(p, n, p->n_threads, chunk, fn, arg);
}

static void empty_body(void* arg, int64_t begin, int64_t end, int tid) {
  (void)arg;
  (void)begin;
  (void)end;
  (void)tid;
}

double qn_pool_sync_overhead_ns(qn_pool* p, int reps) {
  if (reps < 1) reps = 1;
  int64_t n = qn_pool_size(p);
  qn_pool_for(p, n, 1, empty_body, NULL); /* wakes helpers that slept */
  double t0 = qn_now();
  for (int i = 0; i < reps; i++) qn_pool_for(p, n, 1, empty_body, NULL);
  double ns = (qn_now() - t0) * 1e9 / reps;
  /* The clock ticks in nanoseconds: an interval it cannot see took under 1 ns in all. */
  return ns > 0 ? ns : 1.0 / reps;
}
