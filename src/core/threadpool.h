/* threadpool.h: a fixed pool of worker threads running data-parallel loops. */
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
 * and returns when all are done. p == NULL runs serially on the caller. */
void qn_pool_for(qn_pool* p, int64_t n, int64_t min_chunk, qn_pool_fn fn, void* arg);

/* Online cores of this machine. */
int qn_cpu_count(void);

#endif
