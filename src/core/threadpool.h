/* threadpool.h: a fixed pool of worker threads running data-parallel loops. Between jobs the
 * workers spin briefly on an atomic counter (back-to-back calls cost a fraction of a
 * microsecond) and sleep after ~20 us without work, or at once while spinning does not pay
 * (cores shared with other processes); an idle pool uses no CPU. */
#ifndef QN_CORE_THREADPOOL_H
#define QN_CORE_THREADPOOL_H

#include <stdint.h>

#include "quench.h"

typedef struct qn_pool qn_pool;

/* Body of a parallel loop: handles items [begin, end) as worker `tid` (0..n_threads-1). */
typedef void (*qn_pool_fn)(void* arg, int64_t begin, int64_t end, int tid);

/* n_threads <= 0: one per online core. The calling thread counts as one worker. */
qn_status qn_pool_new(int n_threads, qn_pool** out);
void qn_pool_free(qn_pool* p);
int qn_pool_size(const qn_pool* p);

/* Splits [0, n) into contiguous chunks (at least min_chunk items each) across the workers
 * and returns when all are done. p == NULL runs serially on the caller. One call at a time per
 * pool, and not from inside a loop body of the same pool. */
void qn_pool_for(qn_pool* p, int64_t n, int64_t min_chunk, qn_pool_fn fn, void* arg);

/* Like qn_pool_for, but [0, n) is claimed in chunks, so a worker that was slowed down (a core
 * shared with another process) leaves its remaining items to the others: each worker starts on
 * its contiguous share (qn_pool_for's split) and claims chunks from its front, in order; a
 * worker whose share is empty takes chunks from the back of the others'. A chunk is half of
 * what is left of the share it comes from, at least 1 and at most `chunk` items, so the
 * workers end within about one item of each other. fn runs once per chunk, possibly several
 * times per worker and job; with one worker (p NULL or of size 1, or n <= chunk) it runs once
 * for all of [0, n). */
void qn_pool_for_dynamic(qn_pool* p, int64_t n, int64_t chunk, qn_pool_fn fn, void* arg);

/* Synchronisation cost of the pool: times reps (>= 1) qn_pool_for calls with an empty body over
 * qn_pool_size(p) items (one per worker) and returns the mean nanoseconds per call (positive,
 * finite). p == NULL measures the serial call. */
double qn_pool_sync_overhead_ns(qn_pool* p, int reps);

/* Online cores of this machine. */
int qn_cpu_count(void);

#endif
