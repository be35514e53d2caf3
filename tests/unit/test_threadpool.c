/* test_threadpool.c: the worker pool (core/threadpool.h):
 *  - every item of [0, n) is visited exactly once, by contiguous ranges of at least min_chunk
 *    items (or all n when n < min_chunk), at most one range per tid, tids < n_threads, for many
 *    n / min_chunk / thread counts; p == NULL runs [0, n) serially as tid 0;
 *  - the writes of the helpers are visible to the caller when qn_pool_for returns (plain ints,
 *    so a TSan build reports a missing happens-before);
 *  - many back-to-back calls, calls after the helpers fell asleep (idle gaps), and a slow helper
 *    (the caller's sleeping wait);
 *  - pools created and freed repeatedly, with and without work, including free right after new;
 *  - qn_pool_for_dynamic: every item once, in chunks of 1 to `chunk` items (one call for all n
 *    with a single worker), for many n / chunk / thread counts; a worker slowed in every chunk
 *    runs far fewer of them, the other taking the rest of its share;
 *  - argument checks and qn_pool_sync_overhead_ns returning a positive finite number. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "core/threadpool.h"

#define MAX_THREADS 8

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

/* ---- visits -------------------------------------------------------------------------------- */

/* What one call saw: per-item visit counts and per-tid ranges. Each tid writes only its own
 * slots, the caller reads them after qn_pool_for returns. */
typedef struct visit_log {
  int* visits;                /* [n] times each item was handled */
  int64_t begin[MAX_THREADS]; /* range handled by each tid, -1 if none */
  int64_t end[MAX_THREADS];   /* its end (exclusive) */
  int calls[MAX_THREADS];     /* times each tid was called */
  int bad_tid;                /* set when a tid out of range was seen (by that helper) */
} visit_log;

static void log_visits(void* arg, int64_t begin, int64_t end, int tid) {
  visit_log* lg = arg;
  if (tid < 0 || tid >= MAX_THREADS) {
    lg->bad_tid = 1; /* racy only if the pool is already wrong */
    return;
  }
  lg->calls[tid]++;
  lg->begin[tid] = begin;
  lg->end[tid] = end;
  for (int64_t i = begin; i < end; i++) lg->visits[i]++;
}

/* Runs one loop and checks the contract; returns the number of ranges used. */
static int check_loop(qn_pool* p, int n_threads, int64_t n, int64_t min_chunk) {
  visit_log lg;
  memset(&lg, 0, sizeof lg);
  lg.visits = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
  assert_non_null(lg.visits);
  for (int t = 0; t < MAX_THREADS; t++) lg.begin[t] = lg.end[t] = -1;
  qn_pool_for(p, n, min_chunk, log_visits, &lg);
  assert_int_equal(lg.bad_tid, 0);
  for (int64_t i = 0; i < n; i++) {
    if (lg.visits[i] != 1)
      fail_msg("threads %d n %lld min_chunk %lld: item %lld visited %d times", n_threads,
               (long long)n, (long long)min_chunk, (long long)i, lg.visits[i]);
  }
  int ranges = 0;
  int64_t want_min = min_chunk < 1 ? 1 : min_chunk;
  if (want_min > n) want_min = n;
  for (int t = 0; t < MAX_THREADS; t++) {
    if (lg.calls[t] == 0) continue;
    assert_int_equal(lg.calls[t], 1);
    assert_true(t < n_threads);
    assert_true(lg.end[t] - lg.begin[t] >= want_min);
    ranges++;
  }
  if (n <= 0) assert_int_equal(ranges, 0);
  if (!p && n > 0) {
    assert_int_equal(ranges, 1);
    assert_int_equal(lg.begin[0], 0);
    assert_int_equal(lg.end[0], n);
  }
  free(lg.visits);
  return ranges;
}

static const int64_t k_sizes[] = {0, 1, 2, 3, 5, 7, 8, 16, 31, 33, 100, 172, 1000, 4097};
static const int64_t k_chunks[] = {0, 1, 2, 3, 7, 64, 1000, 5000};
#define N_SIZES (int)(sizeof k_sizes / sizeof k_sizes[0])
#define N_CHUNKS (int)(sizeof k_chunks / sizeof k_chunks[0])

static void test_each_item_once(void** state) {
  (void)state;
  const int threads[] = {1, 2, 3, 4, 7};
  for (int ti = 0; ti < 5; ti++) {
    qn_pool* p = NULL;
    assert_int_equal(qn_pool_new(threads[ti], &p), QN_OK);
    assert_int_equal(qn_pool_size(p), threads[ti]);
    for (int si = 0; si < N_SIZES; si++)
      for (int ci = 0; ci < N_CHUNKS; ci++) {
        int64_t n = k_sizes[si], mc = k_chunks[ci];
        int ranges = check_loop(p, threads[ti], n, mc);
        /* all workers take part when there is enough work */
        if (n >= (mc < 1 ? 1 : mc) * threads[ti]) assert_int_equal(ranges, threads[ti]);
      }
    qn_pool_free(p);
  }
}

static void test_null_pool_serial(void** state) {
  (void)state;
  for (int si = 0; si < N_SIZES; si++)
    for (int ci = 0; ci < N_CHUNKS; ci++) check_loop(NULL, 1, k_sizes[si], k_chunks[ci]);
  assert_int_equal(qn_pool_size(NULL), 1);
}

/* ---- back-to-back and sleeping ------------------------------------------------------------- */

typedef struct sum_job {
  int64_t part[MAX_THREADS]; /* per-tid sums (plain: the caller reads them after the call) */
  long slow_tid_us;          /* tid 1 sleeps this long per call (0: never) */
} sum_job;

static void add_items(void* arg, int64_t begin, int64_t end, int tid) {
  sum_job* j = arg;
  if (tid == 1 && j->slow_tid_us > 0) sleep_us(j->slow_tid_us);
  for (int64_t i = begin; i < end; i++) j->part[tid] += i + 1;
}

static int64_t run_sum(qn_pool* p, int64_t n, sum_job* j) {
  memset(j->part, 0, sizeof j->part);
  qn_pool_for(p, n, 1, add_items, j);
  int64_t s = 0;
  for (int t = 0; t < MAX_THREADS; t++) s += j->part[t];
  return s;
}

static void test_back_to_back(void** state) {
  (void)state;
  for (int nt = 2; nt <= 4; nt++) {
    qn_pool* p = NULL;
    assert_int_equal(qn_pool_new(nt, &p), QN_OK);
    sum_job j = {{0}, 0};
    for (int r = 0; r < 20000; r++) {
      int64_t n = 1 + r % 37;
      assert_int_equal(run_sum(p, n, &j), n * (n + 1) / 2);
    }
    qn_pool_free(p);
  }
}

static void test_idle_gaps_and_slow_helper(void** state) {
  (void)state;
  qn_pool* p = NULL;
  assert_int_equal(qn_pool_new(3, &p), QN_OK);
  sum_job j = {{0}, 0};
  /* helpers fall asleep between calls (gaps far beyond the spin time) */
  for (int r = 0; r < 40; r++) {
    sleep_us(r % 2 ? 2000 : 50);
    assert_int_equal(run_sum(p, 1000, &j), 1000 * 1001 / 2);
  }
  /* the caller outwaits its spin and sleeps until the slow helper is done */
  j.slow_tid_us = 3000;
  for (int r = 0; r < 10; r++) assert_int_equal(run_sum(p, 99, &j), 99 * 100 / 2);
  j.slow_tid_us = 0;
  for (int r = 0; r < 1000; r++) assert_int_equal(run_sum(p, 64, &j), 64 * 65 / 2);
  qn_pool_free(p);
}

/* ---- dynamic chunks ------------------------------------------------------------------------- */

/* What a dynamic loop saw: visits per item, chunk shapes, and calls per tid. Each chunk's items
 * are written by exactly one worker; the counters per tid are that tid's own. */
typedef struct chunk_log {
  int* visits;               /* [n] times each item was handled */
  int64_t chunk;             /* chunk size asked for */
  bool whole_ok;             /* one worker: [0, n) may come as one call */
  int bad;                   /* an empty chunk, or one longer than chunk */
  int calls[MAX_THREADS];    /* chunks each tid ran */
  long slow_us[MAX_THREADS]; /* sleep per chunk of each tid */
} chunk_log;

static void log_chunk(void* arg, int64_t begin, int64_t end, int tid) {
  chunk_log* lg = arg;
  if (tid < 0 || tid >= MAX_THREADS || end <= begin || (!lg->whole_ok && end - begin > lg->chunk)) {
    lg->bad = 1;
    return;
  }
  lg->calls[tid]++;
  if (lg->slow_us[tid]) sleep_us(lg->slow_us[tid]);
  for (int64_t i = begin; i < end; i++) lg->visits[i]++;
}

static void check_dynamic(qn_pool* p, int64_t n, int64_t chunk, int slow_tid, chunk_log* lg) {
  memset(lg, 0, sizeof *lg);
  lg->visits = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
  assert_non_null(lg->visits);
  lg->chunk = chunk < 1 ? 1 : chunk;
  lg->whole_ok = qn_pool_size(p) == 1 || n <= lg->chunk;
  if (slow_tid >= 0) lg->slow_us[slow_tid] = 3000;
  qn_pool_for_dynamic(p, n, chunk, log_chunk, lg);
  assert_int_equal(lg->bad, 0);
  for (int64_t i = 0; i < n; i++)
    if (lg->visits[i] != 1)
      fail_msg("dynamic n %lld chunk %lld: item %lld visited %d times", (long long)n,
               (long long)chunk, (long long)i, lg->visits[i]);
  free(lg->visits);
}

static void test_dynamic_chunks(void** state) {
  (void)state;
  const int64_t ns[] = {0, 1, 2, 7, 31, 33, 172, 4097};
  const int64_t chunks[] = {0, 1, 3, 16, 5000};
  chunk_log lg;
  for (int nt = 1; nt <= 4; nt++) {
    qn_pool* p = NULL;
    assert_int_equal(qn_pool_new(nt, &p), QN_OK);
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
      for (size_t b = 0; b < sizeof chunks / sizeof chunks[0]; b++)
        check_dynamic(p, ns[a], chunks[b], -1, &lg);
    /* back to back: the shared counter restarts for every job */
    for (int r = 0; r < 500; r++) check_dynamic(p, 64, 4, -1, &lg);
    qn_pool_free(p);
  }
  check_dynamic(NULL, 100, 7, -1, &lg); /* no pool: serial */
  assert_int_equal(lg.calls[0], 1);
}

/* A worker that sleeps in every chunk leaves most chunks to the other (a static split would
 * give each of two workers half). */
static void test_dynamic_slow_worker(void** state) {
  (void)state;
  qn_pool* p = NULL;
  assert_int_equal(qn_pool_new(2, &p), QN_OK);
  chunk_log lg;
  for (int slow = 0; slow < 2; slow++) {
    check_dynamic(p, 40, 1, slow, &lg);
    int fast = 1 - slow;
    if (!(lg.calls[fast] > lg.calls[slow] * 2))
      fail_msg("slow tid %d ran %d chunks, the other %d", slow, lg.calls[slow], lg.calls[fast]);
  }
  qn_pool_free(p);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void test_create_free_repeatedly(void** state) {
  (void)state;
  for (int r = 0; r < 200; r++) {
    int nt = 1 + r % 5;
    qn_pool* p = NULL;
    assert_int_equal(qn_pool_new(nt, &p), QN_OK);
    assert_non_null(p);
    if (r % 3 != 0) { /* r % 3 == 0: freed before any work, helpers maybe not started yet */
      sum_job j = {{0}, 0};
      for (int k = 0; k < r % 4 + 1; k++) assert_int_equal(run_sum(p, 50, &j), 50 * 51 / 2);
    }
    if (r % 7 == 0) sleep_us(100); /* some pools freed while their helpers sleep */
    qn_pool_free(p);
  }
  qn_pool_free(NULL); /* harmless */
}

static void test_arguments(void** state) {
  (void)state;
  qn_pool* p = NULL;
  assert_int_equal(qn_pool_new(1000, &p), QN_EINVAL);
  assert_null(p);
  assert_int_equal(qn_pool_new(0, &p), QN_OK);
  assert_int_equal(qn_pool_size(p), qn_cpu_count());
  qn_pool_free(p);
  assert_true(qn_cpu_count() >= 1);
}

static void test_sync_overhead(void** state) {
  (void)state;
  double serial = qn_pool_sync_overhead_ns(NULL, 1000);
  assert_true(isfinite(serial) && serial > 0);
  assert_true(isfinite(qn_pool_sync_overhead_ns(NULL, 0)) && qn_pool_sync_overhead_ns(NULL, 0) > 0);
  for (int nt = 1; nt <= 3; nt++) {
    qn_pool* p = NULL;
    assert_int_equal(qn_pool_new(nt, &p), QN_OK);
    double ns = qn_pool_sync_overhead_ns(p, 2000);
    assert_true(isfinite(ns) && ns > 0);
    /* a sanity ceiling far above any healthy value (a hand-off costs ~0.1-50 us) */
    assert_true(ns < 1e8);
    printf("pool of %d: %.0f ns per empty qn_pool_for\n", nt, ns);
    qn_pool_free(p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_item_once),
      cmocka_unit_test(test_null_pool_serial),
      cmocka_unit_test(test_back_to_back),
      cmocka_unit_test(test_idle_gaps_and_slow_helper),
      cmocka_unit_test(test_dynamic_chunks),
      cmocka_unit_test(test_dynamic_slow_worker),
      cmocka_unit_test(test_create_free_repeatedly),
      cmocka_unit_test(test_arguments),
      cmocka_unit_test(test_sync_overhead),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
