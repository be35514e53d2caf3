/* quantize_matrix.c: quantizes a whole weight matrix row by row through the traits table
 * (rows split across threads when asked), measures the error, and dequantizes matrices. */
#define _POSIX_C_SOURCE 200809L
#include "quant/quantize_matrix.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/status.h"
#include "quant/pack_i8.h"
#include "quant/quant_rows.h"

#define MAX_THREADS 64

/* Running sums behind qn_quant_stats. */
typedef struct err_acc {
  double signal_sq; /* sum w^2 */
  double err_sq;    /* sum (w - a)^2 */
  double max_abs;   /* max |w - a| */
} err_acc;

static void acc_add(err_acc* acc, const float* w, const float* a, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    double e = (double)w[i] - (double)a[i];
    acc->signal_sq += (double)w[i] * w[i];
    acc->err_sq += e * e;
    if (fabs(e) > acc->max_abs) acc->max_abs = fabs(e);
  }
}

static void acc_finish(const err_acc* acc, int64_t n, qn_quant_stats* s) {
  s->signal_sq = acc->signal_sq;
  s->err_sq = acc->err_sq;
  s->max_abs_err = acc->max_abs;
  s->n = n;
  s->rmse = n > 0 ? sqrt(acc->err_sq / (double)n) : 0.0;
  s->sqnr_db = acc->err_sq > 0.0 ? 10.0 * log10(acc->signal_sq / acc->err_sq) : INFINITY;
}

void qn_quant_stats_measure(const float* w, const float* a, int64_t n, qn_quant_stats* stats) {
  err_acc acc = {0, 0, 0};
  acc_add(&acc, w, a, n);
  acc_finish(&acc, n, stats);
}

/* One thread's share of a qn_quantize_matrix call. */
typedef struct quant_job {
  const qn_qtype_traits* tr; /* scheme */
  const qn_quant_opts* o;    /* options (may be NULL) */
  const float* w;            /* (rows, cols) input */
  qn_qtensor out;            /* the whole output matrix (payload, scales, zeros) */
  uint64_t row_bytes;        /* payload bytes per row */
  uint64_t scale_row_bytes;  /* bytes of one row's scales (and of its zeros) */
  int64_t r0, r1;            /* this job's rows [r0, r1) */
  float* scratch;            /* cols floats for the dequantized row, or NULL: no stats */
  err_acc acc;               /* error sums over this job's rows */
} quant_job;

static void run_job(quant_job* j) {
  int64_t cols = j->out.cols;
  uint8_t* payload = (uint8_t*)j->out.data;
  uint8_t* scales = (uint8_t*)j->out.scales;
  uint8_t* zeros = (uint8_t*)j->out.zeros;
  for (int64_t r = j->r0; r < j->r1; r++) {
    uint64_t so = (uint64_t)r * j->scale_row_bytes;
    j->tr->quantize_row(j->w + r * cols, cols, j->o, payload + (uint64_t)r * j->row_bytes,
                        scales ? scales + so : NULL, zeros ? zeros + so : NULL);
    if (j->scratch) {
      j->tr->dequant_row(&j->out, r, j->scratch);
      acc_add(&j->acc, j->w + r * cols, j->scratch, cols);
    }
  }
}

static void* job_thread(void* arg) {
  run_job(arg);
  return NULL;
}

/* Checks every weight is finite and within the scheme's range, and the importance. */
static qn_status check_values(const qn_qtype_traits* tr, const float* w, int64_t rows, int64_t cols,
                              const qn_quant_opts* o) {
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < cols; c++) {
      float v = w[r * cols + c];
      if (!isfinite(v))
        return qn_error(QN_EINVAL, "quantize %s: weight [%lld, %lld] is not finite", tr->name,
                        (long long)r, (long long)c);
      if (fabsf(v) > tr->max_abs)
        return qn_error(QN_ERANGE,
                        "quantize %s: weight [%lld, %lld] = %g is outside the range "
                        "the scheme can store (|w| <= %g)",
                        tr->name, (long long)r, (long long)c, (double)v, (double)tr->max_abs);
    }
  }
  if (o && o->importance) {
    for (int64_t c = 0; c < cols; c++)
      if (!isfinite(o->importance[c]) || o->importance[c] < 0.0f)
        return qn_error(QN_EINVAL, "quantize %s: importance[%lld] = %g is not a finite value >= 0",
                        tr->name, (long long)c, (double)o->importance[c]);
  }
  return QN_OK;
}

static qn_status check_args(const char* what, qn_qtype t, const float* w, int64_t rows,
                            int64_t cols, const void* payload, const void* scales,
                            const void* zeros) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (!tr) return qn_error(QN_EINVAL, "%s: unknown scheme %d", what, (int)t);
  if (rows < 0 || cols < 1)
    return qn_error(QN_EINVAL, "%s %s: bad shape %lld x %lld", what, tr->name, (long long)rows,
                    (long long)cols);
  int64_t n;
  if (__builtin_mul_overflow(rows, cols, &n) || (rows > 0 && qn_qtype_bytes(t, rows, cols) == 0))
    return qn_error(QN_EINVAL, "%s %s: shape %lld x %lld is too large", what, tr->name,
                    (long long)rows, (long long)cols);
  if (rows == 0) return QN_OK;
  if (!w || !payload) return qn_error(QN_EINVAL, "%s %s: NULL weights or payload", what, tr->name);
  if (tr->group >= 0 && !scales)
    return qn_error(QN_EINVAL, "%s %s: the scheme needs a scales buffer", what, tr->name);
  if (tr->asymmetric && !zeros)
    return qn_error(QN_EINVAL, "%s %s: the scheme needs a zeros buffer", what, tr->name);
  return QN_OK;
}

static void run_jobs(quant_job* jobs, int n_jobs) {
  pthread_t tid[MAX_THREADS];
  bool started[MAX_THREADS] = {false};
  for (int i = 1; i < n_jobs; i++)
    started[i] = pthread_create(&tid[i], NULL, job_thread, &jobs[i]) == 0;
  run_job(&jobs[0]);
  for (int i = 1; i < n_jobs; i++) {
    if (started[i])
      pthread_join(tid[i], NULL);
    else
      run_job(&jobs[i]); /* no thread: do its share here */
  }
}

qn_status qn_quantize_matrix(qn_qtype t, const float* w, int64_t rows, int64_t cols,
                             const qn_quant_opts* o, void* payload, void* scales, void* zeros,
                             qn_quant_stats* stats) {
  QN_TRY(check_args("quantize", t, w, rows, cols, payload, scales, zeros));
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  QN_TRY(check_values(tr, w, rows, cols, o));
  int n_jobs = o && o->n_threads > 1 ? o->n_threads : 1;
  if (n_jobs > MAX_THREADS) n_jobs = MAX_THREADS;
  if (n_jobs > rows) n_jobs = rows > 0 ? (int)rows : 1;
  quant_job jobs[MAX_THREADS];
  float* scratch = NULL;
  if (stats) {
    scratch = malloc((size_t)n_jobs * (size_t)cols * sizeof(float));
    if (!scratch)
      return qn_error(QN_ENOMEM, "quantize %s: out of memory for %d x %lld floats", tr->name,
                      n_jobs, (long long)cols);
  }
  uint64_t scale_size = tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  for (int i = 0; i < n_jobs; i++) {
    jobs[i] = (quant_job){
        .tr = tr,
        .o = o,
        .w = w,
        .out = {t, rows, cols, payload, tr->group >= 0 ? scales : NULL,
                tr->asymmetric ? zeros : NULL},
        .row_bytes = qn_qtype_row_bytes(t, cols),
        .scale_row_bytes = (uint64_t)qn_qtype_n_groups(t, cols) * scale_size,
        .r0 = rows * i / n_jobs,
        .r1 = rows * (i + 1) / n_jobs,
        .scratch = scratch ? scratch + (size_t)i * (size_t)cols : NULL,
    };
  }
  run_jobs(jobs, n_jobs);
  if (stats) {
    err_acc total = {0, 0, 0};
    for (int i = 0; i < n_jobs; i++) {
      total.signal_sq += jobs[i].acc.signal_sq;
      total.err_sq += jobs[i].acc.err_sq;
      if (jobs[i].acc.max_abs > total.max_abs) total.max_abs = jobs[i].acc.max_abs;
    }
    acc_finish(&total, rows * cols, stats);
  }
  free(scratch);
  return QN_OK;
}

qn_status qn_qtensor_dequant(const qn_qtensor* w, float* out) {
  if (!w) return qn_error(QN_EINVAL, "dequantize: NULL tensor");
  QN_TRY(check_args("dequantize", w->type, out, w->rows, w->cols, w->data, w->scales, w->zeros));
  const qn_qtype_traits* tr = qn_qtype_traits_of(w->type);
  for (int64_t r = 0; r < w->rows; r++) tr->dequant_row(w, r, out + r * w->cols);
  return QN_OK;
}

qn_status qn_qtensor_pack(const qn_qtensor* w, qn_qtensor* out, void** payload, void** scales) {
  *payload = *scales = NULL;
  const qn_qtype_traits* tr = w ? qn_qtype_traits_of(w->type) : NULL;
  if (!tr) return qn_error(QN_EINVAL, "pack: NULL tensor or unknown scheme");
  qn_layout l = qn_qtype_packed_layout(w->type);
  if (l == QN_LAYOUT_ROWS)
    return qn_error(QN_EINVAL, "pack: scheme %s has no packed layout", tr->name);
  if (w->layout != QN_LAYOUT_ROWS)
    return qn_error(QN_EINVAL, "pack: the %s tensor is already packed", tr->name);
  if (w->rows < 0 || w->cols < 1 || !w->data || !w->scales)
    return qn_error(QN_EINVAL, "pack %s: bad shape or NULL buffers", tr->name);
  uint64_t pb = qn_packed_payload_bytes(w->type, w->rows, w->cols);
  uint64_t sb = qn_packed_scale_bytes(w->type, w->rows, w->cols);
  if (w->rows > 0 && (pb == 0 || sb == 0 || pb > SIZE_MAX || sb > SIZE_MAX))
    return qn_error(QN_EINVAL, "pack %s: shape %lld x %lld is too large", tr->name,
                    (long long)w->rows, (long long)w->cols);
  *payload = malloc(pb ? (size_t)pb : 1);
  *scales = malloc(sb ? (size_t)sb : 1);
  if (!*payload || !*scales) {
    free(*payload);
    free(*scales);
    *payload = *scales = NULL;
    return qn_error(QN_ENOMEM, "pack %s: out of memory for %llu bytes", tr->name,
                    (unsigned long long)(pb + sb));
  }
  qn_pack_i8(w->type, w->rows, w->cols, w->data, w->scales, *payload, *scales);
  *out = *w;
  out->data = *payload;
  out->scales = *scales;
  out->zeros = NULL;
  out->layout = l;
  return QN_OK;
}
