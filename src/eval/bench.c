/* bench.c: speed measurement of a model through the public inference path (qn_model_open,
 * qn_ctx_forward) -- load time, prefill and decode tokens/s, time to first token, time per
 * output token, effective decode bandwidth, prefill GOPS, peak RSS -- and the machine limits
 * they are compared with: read bandwidth (a streaming kernel over a buffer far larger than
 * the last-level cache) and the int8 VNNI and FP32 FMA peaks (register-only loops). The
 * microbenchmarks use __attribute__((target)) per function and run only where
 * __builtin_cpu_supports says the CPU has the instructions. */
#define _GNU_SOURCE
#include "eval/bench.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/clock.h"
#include "core/status.h"
#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/qtype.h"

/* ---- accounting ----------------------------------------------------------------------------- */

uint64_t qn_bench_bytes_per_token(const qn_model* m) {
  qn_model_info info;
  qn_model_get_info(m, &info);
  uint64_t bytes = 0;
  for (int i = 0; i < qn_model_n_tensors(m); i++) {
    qn_tensor_info t;
    qn_model_tensor(m, i, &t);
    bool embd = strncmp(t.name, "token_embd.", 11) == 0;
    if (!embd || info.tied_embeddings) bytes += t.nbytes;
  }
  return bytes;
}

int64_t qn_bench_layer_matmul_params(const qn_model* m) {
  const qn_hparams* hp = &m->src->hp;
  const int64_t dim = hp->dim, qd = (int64_t)hp->n_heads * hp->head_dim;
  const int64_t kvd = (int64_t)hp->n_kv_heads * hp->head_dim, hid = hp->hidden_dim;
  return (2 * qd * dim + 2 * kvd * dim + 3 * hid * dim) * hp->n_layers;
}

int64_t qn_bench_head_params(const qn_model* m) {
  return (int64_t)m->src->hp.vocab_size * m->src->hp.dim;
}

bool qn_bench_int8_activations(const qn_model* m) {
  const qn_source* s = m->src;
  for (int i = 0; i < s->n_quant; i++)
    if (qn_qtype_traits_of((qn_qtype)s->quant[i].qtype)->act != QN_ACT_FLOAT) return true;
  return false;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

double qn_bench_quantile(double* x, int n, double p) {
  if (n <= 0) return 0;
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  int k = (int)ceil(p * n) - 1;
  if (k < 0) k = 0;
  if (k >= n) k = n - 1;
  return x[k];
}

/* ---- the model benchmark -------------------------------------------------------------------- */

/* Timings of one repetition. */
typedef struct bench_rep {
  double pp_s;   /* prefill forward, seconds */
  double ttft_s; /* prefill + greedy pick (or the first decode step without prefill) */
  double tg_s;   /* sum of the decode steps */
} bench_rep;

/* State of a benchmark run. */
typedef struct bench_run {
  qn_model* m;            /* the model under test */
  qn_ctx* c;              /* one session, n_prompt + n_gen (+ warm-up) positions */
  const qn_bench_opts* o; /* the options, reps >= 1 */
  int* tokens;            /* [n_ctx + 1] prompt (BOS first when the model has one) */
  int* pos;               /* [n_ctx + 1] positions 0, 1, 2... */
  float* logits;          /* [vocab] */
  int vocab;              /* logits per forward */
  double* step_s;         /* [reps * n_gen] every decode step's time */
  int64_t done;           /* forward calls done (progress) */
  int64_t total;          /* forward calls planned */
} bench_run;

static int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

static qn_status progress(bench_run* b) {
  b->done++;
  if (b->o->progress && b->o->progress(b->o->progress_user, "bench", b->done, b->total) != 0)
    return qn_error(QN_EINVAL, "bench: cancelled");
  return QN_OK;
}

/* One forward of n tokens at positions pos0.., logits of the last; returns its greedy pick. */
static qn_status forward(bench_run* b, const int* tokens, int pos0, int n, int* next) {
  QN_TRY(qn_ctx_forward(b->c, tokens, b->pos + pos0, NULL, n, b->logits, false));
  *next = argmax(b->logits, b->vocab);
  return QN_OK;
}

/* Untimed: faults every weight page in and starts the kernels' threads. */
static qn_status warm_up(bench_run* b) {
  int np = b->o->n_prompt < 8 ? b->o->n_prompt : 8, next = b->tokens[0];
  if (np > 0) QN_TRY(forward(b, b->tokens, 0, np, &next));
  return forward(b, &next, np, 1, &next);
}

static qn_status run_rep(bench_run* b, int rep, bench_rep* r) {
  const int np = b->o->n_prompt, ng = b->o->n_gen;
  int next = b->tokens[0];
  memset(r, 0, sizeof *r);
  if (np > 0) {
    double t0 = qn_now();
    QN_TRY(qn_ctx_forward(b->c, b->tokens, b->pos, NULL, np, b->logits, false));
    double t1 = qn_now();
    next = argmax(b->logits, b->vocab);
    r->pp_s = t1 - t0;
    r->ttft_s = qn_now() - t0;
    QN_TRY(progress(b));
  }
  for (int i = 0; i < ng; i++) {
    double t0 = qn_now();
    QN_TRY(forward(b, &next, np + i, 1, &next));
    double dt = qn_now() - t0;
    b->step_s[(size_t)rep * ng + i] = dt;
    r->tg_s += dt;
    if (np == 0 && i == 0) r->ttft_s = dt;
    QN_TRY(progress(b));
  }
  return QN_OK;
}

/* Pseudo-random prompt ids (a fixed LCG) avoiding the first few ids (specials). */
static void make_prompt(bench_run* b, int bos) {
  uint32_t s = 12345;
  int lo = b->vocab > 16 ? 3 : 0;
  for (int i = 0; i <= b->o->n_prompt; i++) {
    s = s * 1664525u + 1013904223u;
    b->tokens[i] = lo + (int)((s >> 8) % (uint32_t)(b->vocab - lo));
  }
  if (bos >= 0) b->tokens[0] = bos;
}

static double median_of(const bench_rep* reps, int n, size_t field_offset) {
  double v[64];
  int k = 0;
  for (int i = 0; i < n && k < 64; i++)
    v[k++] = *(const double*)((const char*)&reps[i] + field_offset);
  return qn_bench_quantile(v, k, 0.5);
}

static void summarise(const bench_run* b, const bench_rep* reps, qn_bench_result* r) {
  const qn_bench_opts* o = b->o;
  double pp_s = median_of(reps, o->reps, offsetof(bench_rep, pp_s));
  double tg_s = median_of(reps, o->reps, offsetof(bench_rep, tg_s));
  r->ttft_ms = 1e3 * median_of(reps, o->reps, offsetof(bench_rep, ttft_s));
  r->pp_tps = pp_s > 0 ? o->n_prompt / pp_s : 0;
  r->tg_tps = tg_s > 0 ? o->n_gen / tg_s : 0;
  int n_steps = o->reps * o->n_gen;
  r->tpot_p50_ms = 1e3 * qn_bench_quantile(b->step_s, n_steps, 0.5);
  r->tpot_p99_ms = 1e3 * qn_bench_quantile(b->step_s, n_steps, 0.99);
  r->bytes_per_token = qn_bench_bytes_per_token(b->m);
  r->tg_gbps = r->bytes_per_token * r->tg_tps / 1e9;
  int64_t layer = qn_bench_layer_matmul_params(b->m), head = qn_bench_head_params(b->m);
  r->matmul_params = layer + head;
  r->pp_gops = pp_s > 0 ? 2.0 * ((double)layer * o->n_prompt + (double)head) / pp_s / 1e9 : 0;
  qn_model_info info;
  qn_model_get_info(b->m, &info);
  r->n_params = info.n_params;
  r->bpw = info.n_params > 0 ? 8.0 * (double)info.weight_bytes / (double)info.n_params : 0;
  r->int8_activations = qn_bench_int8_activations(b->m);
  r->format = info.format;
  r->kernels = qn_isa_name(qn_isa_active());
  r->n_threads = qn_pool_size(b->m->pool);
  r->n_prompt = o->n_prompt, r->n_gen = o->n_gen, r->reps = o->reps;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) r->rss_bytes = (uint64_t)ru.ru_maxrss * 1024u;
}

static qn_status bench_session(bench_run* b, qn_bench_result* r) {
  const qn_bench_opts* o = b->o;
  qn_model_info info;
  qn_model_get_info(b->m, &info);
  b->vocab = info.vocab_size;
  int n_ctx = o->n_prompt + o->n_gen + 1;
  if (n_ctx < 9) n_ctx = 9; /* room for the warm-up */
  bench_rep* reps = calloc((size_t)o->reps, sizeof *reps);
  b->tokens = malloc(sizeof(int) * ((size_t)n_ctx + 1));
  b->pos = malloc(sizeof(int) * ((size_t)n_ctx + 1));
  b->logits = malloc(sizeof(float) * (size_t)b->vocab);
  b->step_s = calloc((size_t)o->reps * (size_t)o->n_gen + 1, sizeof(double));
  qn_status st = QN_OK;
  if (!reps || !b->tokens || !b->pos || !b->logits || !b->step_s)
    st = qn_error(QN_ENOMEM, "bench: out of memory");
  if (st == QN_OK) {
    for (int i = 0; i <= n_ctx; i++) b->pos[i] = i;
    make_prompt(b, info.bos_id);
    st = qn_ctx_new(b->m, n_ctx, 1, &b->c);
  }
  if (st == QN_OK) st = warm_up(b);
  for (int i = 0; i < o->reps && st == QN_OK; i++) st = run_rep(b, i, &reps[i]);
  if (st == QN_OK) summarise(b, reps, r);
  qn_ctx_free(b->c);
  free(reps);
  free(b->tokens);
  free(b->pos);
  free(b->logits);
  free(b->step_s);
  return st;
}

qn_status qn_bench_model(const char* path, const qn_bench_opts* opts, qn_bench_result* r) {
  qn_error_clear();
  if (!path || !opts || !r) return qn_error(QN_EINVAL, "bench: no model path, options or result");
  memset(r, 0, sizeof *r);
  qn_bench_opts o = *opts;
  if (o.reps == 0) o.reps = 1;
  if (o.n_prompt < 0 || o.n_gen < 0 || o.n_prompt + o.n_gen < 1 || o.reps < 0 || o.reps > 64 ||
      o.n_prompt > (1 << 20) || o.n_gen > (1 << 20) || o.n_threads < 0)
    return qn_error(QN_EINVAL,
                    "bench: need n_prompt >= 0, n_gen >= 0, one of them > 0 (each <= 2^20), reps "
                    "in 1..64 (got %d, %d, %d)",
                    o.n_prompt, o.n_gen, o.reps);
  qn_model_opts mo = {o.tokenizer_path, o.n_threads};
  double load_s[64];
  qn_model* m = NULL;
  for (int i = 0; i < o.reps; i++) {
    qn_model_free(m);
    m = NULL;
    double t0 = qn_now();
    QN_TRY(qn_model_open(path, &mo, &m));
    load_s[i] = qn_now() - t0;
  }
  bench_run b = {.m = m, .o = &o, .total = (int64_t)o.reps * ((o.n_prompt > 0) + o.n_gen)};
  qn_status st = bench_session(&b, r);
  qn_model_free(m);
  if (st == QN_OK) r->load_ms = 1e3 * qn_bench_quantile(load_s, o.reps, 0.5);
  return st;
}

/* ---- read bandwidth ------------------------------------------------------------------------- */

/* Sum of 64-bit words, four independent 512-bit accumulators (256 bytes per iteration). */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void*)(p + i)));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void*)(p + i + 64)));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void*)(p + i + 128)));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void*)(p + i + 192)));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  uint64_t w[8]; /* summed as unsigned: wrapping is intended */
  _mm512_storeu_si512((void*)w, a0);
  return w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 96)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t w[4];
  _mm256_storeu_si256((__m256i*)w, a0);
  return w[0] + w[1] + w[2] + w[3];
}

static uint64_t read_scalar(const uint8_t* p, size_t n) {
  uint64_t s[8] = {0};
  for (size_t i = 0; i + 64 <= n; i += 64)
    for (int k = 0; k < 8; k++) {
      uint64_t v;
      memcpy(&v, p + i + 8 * k, 8);
      s[k] += v;
    }
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

/* A read pass: one 256-byte aligned slice of the buffer per worker. */
typedef struct read_job {
  const uint8_t* buf;
  size_t bytes;
  int parts;
  uint64_t (*kernel)(const uint8_t*, size_t);
  volatile uint64_t sink[256]; /* per worker, so the sums are not optimised away */
} read_job;

static void slice(size_t bytes, int parts, int64_t i, size_t* b, size_t* e) {
  size_t units = bytes / 256;
  *b = units * (size_t)i / (size_t)parts * 256;
  *e = units * (size_t)(i + 1) / (size_t)parts * 256;
}

static void read_worker(void* arg, int64_t begin, int64_t end, int tid) {
  read_job* j = arg;
  for (int64_t i = begin; i < end; i++) {
    size_t b, e;
    slice(j->bytes, j->parts, i, &b, &e);
    j->sink[tid & 255] += j->kernel(j->buf + b, e - b);
  }
}

double qn_bench_read_gbps(qn_pool* pool, const void* buf, size_t bytes, int passes) {
  __builtin_cpu_init();
  read_job j = {.buf = buf, .bytes = bytes / 256 * 256, .parts = qn_pool_size(pool)};
  j.kernel = __builtin_cpu_supports("avx512f") ? read_avx512
             : __builtin_cpu_supports("avx2")  ? read_avx2
                                               : read_scalar;
  double best = 0;
  for (int p = 0; p < passes; p++) {
    double t0 = qn_now();
    qn_pool_for(pool, j.parts, 1, read_worker, &j);
    double dt = qn_now() - t0;
    if (dt > 0 && j.bytes / dt / 1e9 > best) best = (double)j.bytes / dt / 1e9;
  }
  return best;
}

/* First touch of the buffer, one slice per worker (pages land near their reader). */
typedef struct fill_job {
  uint8_t* buf;
  size_t bytes;
  int parts;
} fill_job;

static void fill_worker(void* arg, int64_t begin, int64_t end, int tid) {
  (void)tid;
  fill_job* j = arg;
  for (int64_t i = begin; i < end; i++) {
    size_t b, e;
    slice(j->bytes, j->parts, i, &b, &e);
    memset(j->buf + b, 0x5a, e - b);
  }
}

/* ---- peak compute --------------------------------------------------------------------------- */

#define PEAK_ACC 12 /* independent accumulators: hides the latency of 4-5 cycles x 2 pipes */

/* Applies M to 0..11: the accumulators are named variables so they stay in registers. */
#define PEAK_EACH(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

__attribute__((target("avx512vnni,avx512bw,avx512f"))) static int32_t vnni_loop(int64_t iters,
                                                                                int seed) {
  __m512i a = _mm512_set1_epi8((char)(seed | 1)), b = _mm512_set1_epi8(3);
#define DECL(k) __m512i acc##k = _mm512_set1_epi32(k);
#define STEP(k) acc##k = _mm512_dpbusd_epi32(acc##k, a, b);
#define SUM(k) sum = _mm512_add_epi32(sum, acc##k);
  PEAK_EACH(DECL)
  for (int64_t i = 0; i < iters; i++) {
    __asm__ volatile("" : "+v"(a)); /* keeps the loop from being folded */
    PEAK_EACH(STEP)
  }
  __m512i sum = _mm512_setzero_si512();
  PEAK_EACH(SUM)
#undef DECL
#undef STEP
#undef SUM
  uint32_t w[16], total = 0; /* lanes wrap; summed as unsigned */
  _mm512_storeu_si512((void*)w, sum);
  for (int k = 0; k < 16; k++) total += w[k];
  return (int32_t)(total & 0x7fffffff);
}

__attribute__((target("avx512f"))) static float fma512_loop(int64_t iters, int seed) {
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-3f * (float)(seed + 1));
#define DECL(k) __m512 acc##k = _mm512_set1_ps((float)k);
#define STEP(k) acc##k = _mm512_fmadd_ps(acc##k, a, b);
#define SUM(k) sum = _mm512_add_ps(sum, acc##k);
  PEAK_EACH(DECL)
  for (int64_t i = 0; i < iters; i++) {
    __asm__ volatile("" : "+v"(a));
    PEAK_EACH(STEP)
  }
  __m512 sum = _mm512_setzero_ps();
  PEAK_EACH(SUM)
#undef DECL
#undef STEP
#undef SUM
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) static float fma256_loop(int64_t iters, int seed) {
  __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-3f * (float)(seed + 1));
#define DECL(k) __m256 acc##k = _mm256_set1_ps((float)k);
#define STEP(k) acc##k = _mm256_fmadd_ps(acc##k, a, b);
#define SUM(k) sum = _mm256_add_ps(sum, acc##k);
  PEAK_EACH(DECL)
  for (int64_t i = 0; i < iters; i++) {
    __asm__ volatile("" : "+x"(a));
    PEAK_EACH(STEP)
  }
  __m256 sum = _mm256_setzero_ps();
  PEAK_EACH(SUM)
#undef DECL
#undef STEP
#undef SUM
  float w[8];
  _mm256_storeu_ps(w, sum);
  return w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
}

/* Which loop a peak job runs. */
typedef enum peak_kind { PEAK_VNNI, PEAK_FMA512, PEAK_FMA256 } peak_kind;

typedef struct peak_job {
  peak_kind kind;
  int64_t iters; /* loop iterations per worker */
  volatile float sink[256];
} peak_job;

static void peak_worker(void* arg, int64_t begin, int64_t end, int tid) {
  peak_job* j = arg;
  for (int64_t i = begin; i < end; i++) {
    float v = j->kind == PEAK_VNNI     ? (float)vnni_loop(j->iters, tid)
              : j->kind == PEAK_FMA512 ? fma512_loop(j->iters, tid)
                                       : fma256_loop(j->iters, tid);
    j->sink[tid & 255] += v;
  }
}

/* Operations one loop iteration performs. */
static double ops_per_iter(peak_kind k) {
  return PEAK_ACC * (k == PEAK_VNNI ? 64 * 2 : k == PEAK_FMA512 ? 16 * 2 : 8 * 2);
}

/* Calibrates the iteration count to about `seconds`, then takes the best of 3 runs. */
static double peak_gops(qn_pool* pool, peak_kind kind, double seconds) {
  int workers = qn_pool_size(pool);
  peak_job j = {.kind = kind, .iters = 1 << 16};
  double dt = 0;
  for (;;) { /* grow until a run takes a measurable time */
    double t0 = qn_now();
    qn_pool_for(pool, workers, 1, peak_worker, &j);
    dt = qn_now() - t0;
    if (dt > 0.01 || j.iters > ((int64_t)1 << 40)) break;
    j.iters *= 4;
  }
  j.iters = (int64_t)((double)j.iters * seconds / dt) + 1;
  double best = 0;
  for (int r = 0; r < 3; r++) {
    double t0 = qn_now();
    qn_pool_for(pool, workers, 1, peak_worker, &j);
    double g = ops_per_iter(kind) * (double)j.iters * workers / (qn_now() - t0) / 1e9;
    if (g > best) best = g;
  }
  return best;
}

double qn_bench_vnni_gops(qn_pool* pool, double seconds) {
  __builtin_cpu_init();
  bool ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512f");
  return ok ? peak_gops(pool, PEAK_VNNI, seconds) : 0;
}

double qn_bench_fma_gflops(qn_pool* pool, double seconds, const char** isa) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    *isa = "avx512";
    return peak_gops(pool, PEAK_FMA512, seconds);
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    *isa = "avx2";
    return peak_gops(pool, PEAK_FMA256, seconds);
  }
  *isa = "none";
  return 0;
}

qn_status qn_bench_machine(int n_threads, uint64_t membw_bytes, qn_bench_limits* out) {
  qn_error_clear();
  if (!out) return qn_error(QN_EINVAL, "bench: no result");
  memset(out, 0, sizeof *out);
  if (membw_bytes == 0) membw_bytes = (uint64_t)1 << 30;
  if (membw_bytes < ((uint64_t)1 << 20) || membw_bytes > ((uint64_t)1 << 40))
    return qn_error(QN_EINVAL, "bench: bandwidth buffer of %llu bytes (1 MiB .. 1 TiB)",
                    (unsigned long long)membw_bytes);
  qn_pool* pool = NULL;
  QN_TRY(qn_pool_new(n_threads, &pool));
  void* buf = NULL;
  size_t bytes = (size_t)membw_bytes;
  if (posix_memalign(&buf, (size_t)2 << 20, bytes) != 0) {
    qn_pool_free(pool);
    return qn_error(QN_ENOMEM, "bench: cannot allocate the %.0f MiB bandwidth buffer",
                    bytes / 1048576.0);
  }
  fill_job fj = {buf, bytes / 256 * 256, qn_pool_size(pool)};
  qn_pool_for(pool, fj.parts, 1, fill_worker, &fj);
  out->membw_gbps = qn_bench_read_gbps(pool, buf, bytes, 5);
  free(buf);
  const char* isa = "none";
  out->vnni_gops = qn_bench_vnni_gops(pool, 0.1);
  out->fma_gflops = qn_bench_fma_gflops(pool, 0.1, &isa);
  snprintf(out->fma_isa, sizeof out->fma_isa, "%s", isa);
  out->sync_ns = qn_pool_sync_overhead_ns(pool, 20000);
  out->n_threads = qn_pool_size(pool);
  out->membw_bytes = membw_bytes;
  qn_pool_free(pool);
  return QN_OK;
}
