/* gptq.c: GPTQ for one weight matrix (see gptq.h for the algorithm). Row-major throughout:
 * within a block every row is independent (U is shared), so each row is processed column
 * by column inside the block; the block's errors then update the remaining columns of all
 * rows at once with one sgemm. The inverse Hessian and its Cholesky factor are computed in
 * double by LAPACK. */
#include "calib/gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_rows.h"
#include "quant/scale_search.h"

/* Times lambda is multiplied by 10 when H + lambda I is not positive definite. */
#define DAMP_RETRIES 6

/* The code set of a scheme (NULL when GPTQ does not handle it). */
static bool quantizer_of(qn_qtype t, qn_sym_quantizer* Q) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (!tr || tr->group < 0 || tr->asymmetric || t == QN_QTYPE_F8_E4M3 || t == QN_QTYPE_F8_E5M2)
    return false;
  bool f16 = tr->scale_dtype == QN_DTYPE_F16;
  switch (tr->payload_bits) {
    case 8: *Q = (qn_sym_quantizer){QN_CODE_INT, -127, 127, 127.0f, f16}; return true;
    case 4: *Q = (qn_sym_quantizer){QN_CODE_INT, -8, 7, 7.0f, f16}; return true;
    case 3: *Q = (qn_sym_quantizer){QN_CODE_INT, -4, 3, 3.0f, f16}; return true;
    default: return false;
  }
}

bool qn_gptq_supports(qn_qtype t) {
  qn_sym_quantizer Q;
  return quantizer_of(t, &Q);
}

/* Writes code c of column i into a zeroed payload row. */
static void put_code(int bits, uint8_t* row, int64_t i, int c) {
  if (bits == 8)
    row[i] = (uint8_t)(int8_t)c;
  else if (bits == 4)
    row[i >> 1] |= (uint8_t)(((unsigned)(c + 8) & 15u) << ((i & 1) * 4));
  else
    qn_int3_put(row, i, (unsigned)(c + 4));
}

/* Upper Cholesky factor U of (H + lambda I)^-1 into u (n x n double, row-major; only
 * j >= i is meaningful). hd: H with dead columns fixed, permuted. */
static qn_status inverse_cholesky(const double* hd, int64_t n, double damp, double* u) {
  double mean = 0;
  for (int64_t i = 0; i < n; i++) mean += hd[i * n + i];
  mean /= (double)n;
  double lambda = damp * mean;
  for (int attempt = 0; attempt <= DAMP_RETRIES; attempt++) {
    memcpy(u, hd, sizeof(double) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++) u[i * n + i] += lambda;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, u, (lapack_int)n);
    if (info == 0) info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', (lapack_int)n, u, (lapack_int)n);
    if (info == 0) {
      for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) u[j * n + i] = u[i * n + j];
      info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, u, (lapack_int)n);
    }
    if (info == 0) return QN_OK;
    lambda = lambda > 0 ? lambda * 10.0 : (mean > 0 ? 1e-6 * mean : 1e-6);
  }
  return qn_error(QN_ERANGE,
                  "GPTQ: the %lld x %lld Hessian is not positive definite even with extra "
                  "dampening (calibration data too small or degenerate?)",
                  (long long)n, (long long)n);
}

/* A column and its diag(H), for the act-order sort. */
typedef struct diag_col {
  double diag; /* H_ii */
  int64_t col; /* i */
} diag_col;

/* Decreasing diag(H); ties by column (a stable order). */
static int cmp_diag_desc(const void* a, const void* b) {
  const diag_col *x = a, *y = b;
  if (x->diag != y->diag) return x->diag > y->diag ? -1 : 1;
  return x->col < y->col ? -1 : (x->col > y->col);
}

/* perm[i]: the column visited i-th (decreasing diag(H)). */
static qn_status act_order_perm(const double* hd, int64_t n, int64_t* perm) {
  diag_col* dc = malloc((size_t)n * sizeof *dc);
  if (!dc) return qn_error(QN_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++) dc[i] = (diag_col){hd[i * n + i], i};
  qsort(dc, (size_t)n, sizeof *dc, cmp_diag_desc);
  for (int64_t i = 0; i < n; i++) perm[i] = dc[i].col;
  free(dc);
  return QN_OK;
}

typedef struct gptq_job {
  const qn_sym_quantizer* Q;
  int64_t rows, cols, group; /* group: columns per scale (cols for a whole-row scale) */
  int64_t ng;                /* scale groups per row */
  bool dynamic;              /* scales computed when a group starts */
  bool search;
  const int64_t* perm; /* visit order: position i -> original column */
  float* wp;           /* rows x cols weights in visit order (updated in place) */
  const double* u;     /* cols x cols upper Cholesky factor of H^-1 (visit order) */
  float* sc;           /* rows x ng scales (static: filled before; dynamic: filled here) */
  int* codes;          /* rows x cols codes in original column order */
  float* err;          /* rows x block errors of the current block */
  int64_t i1, i2;      /* current block [i1, i2) */
} gptq_job;

/* One row through the current block. */
static void block_row(const gptq_job* j, int64_t r) {
  float* w = j->wp + r * j->cols;
  float* e = j->err + r * (j->i2 - j->i1);
  for (int64_t i = j->i1; i < j->i2; i++) {
    int64_t col = j->perm[i], g = col / j->group;
    if (j->dynamic && col % j->group == 0) {
      int64_t n = j->cols - col < j->group ? j->cols - col : j->group;
      j->sc[r * j->ng + g] = qn_sym_group_scale(j->Q, w + i, NULL, n, j->search);
    }
    float d = j->sc[r * j->ng + g];
    int c = qn_sym_int_code(j->Q, w[i], d);
    float q = (float)c * d;
    const double* ui = j->u + i * j->cols;
    double ei = ((double)w[i] - (double)q) / ui[i];
    for (int64_t k = i + 1; k < j->i2; k++) w[k] -= (float)(ei * ui[k]);
    e[i - j->i1] = (float)ei;
    w[i] = q;
    j->codes[r * j->cols + col] = c;
  }
}

/* Static scales: the RTN (or searched) scale of each original group of w. */
static void static_scales(const qn_sym_quantizer* Q, const float* w, int64_t rows, int64_t cols,
                          int64_t group, int64_t ng, bool search, float* sc) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++) {
      int64_t g0 = g * group, n = cols - g0 < group ? cols - g0 : group;
      sc[r * ng + g] = qn_sym_group_scale(Q, w + r * cols + g0, NULL, n, search);
    }
}

/* Packs codes and scales into the scheme's arrays and writes the decoded values into w. */
static void pack(qn_qtype t, const gptq_job* j, float* w, void* payload, void* scales) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  uint64_t rb = qn_qtype_row_bytes(t, j->cols);
  for (int64_t r = 0; r < j->rows; r++) {
    uint8_t* row = (uint8_t*)payload + (uint64_t)r * rb;
    memset(row, 0, rb);
    for (int64_t g = 0; g < j->ng; g++) {
      float d = j->sc[r * j->ng + g];
      if (j->Q->fp16_scale)
        qn_store_f16(scales, r * j->ng + g, d);
      else
        qn_store_f32(scales, r * j->ng + g, d);
    }
    for (int64_t c = 0; c < j->cols; c++) {
      int code = j->codes[r * j->cols + c];
      put_code(tr->payload_bits, row, c, code);
      w[r * j->cols + c] = (float)code * j->sc[r * j->ng + c / j->group];
    }
  }
}

static qn_status check_args(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* h,
                            const qn_gptq_opts* o, qn_sym_quantizer* Q) {
  if (!quantizer_of(t, Q)) {
    const qn_qtype_traits* tr = qn_qtype_traits_of(t);
    return qn_error(QN_EUNSUPPORTED,
                    "GPTQ does not support scheme %s (symmetric int8/int4/int3 only)",
                    tr ? tr->name : "?");
  }
  if (!w || !h || rows <= 0 || cols <= 0 || cols > 65536 || rows > INT64_MAX / cols)
    return qn_error(QN_EINVAL, "GPTQ: bad matrix %lld x %lld", (long long)rows, (long long)cols);
  if (o && (!(o->damp >= 0) || o->block < 0))
    return qn_error(QN_EINVAL, "GPTQ: damp %g must be >= 0 and block %d >= 0", o->damp, o->block);
  return QN_OK;
}

qn_status qn_gptq_quantize(qn_qtype t, float* w, int64_t rows, int64_t cols, const float* h,
                           const qn_gptq_opts* o, void* payload, void* scales) {
  qn_sym_quantizer Q;
  QN_TRY(check_args(t, w, rows, cols, h, o, &Q));
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  qn_gptq_opts def = {QN_GPTQ_DEFAULT_DAMP, QN_GPTQ_DEFAULT_BLOCK, false, false};
  if (!o) o = &def;
  int64_t block = o->block > 0 ? o->block : QN_GPTQ_DEFAULT_BLOCK;
  int64_t group = tr->group > 0 ? tr->group : cols;
  int64_t ng = qn_qtype_n_groups(t, cols);
  size_t nn = (size_t)cols * (size_t)cols, rc = (size_t)rows * (size_t)cols;
  double* hd = malloc(nn * sizeof *hd);
  double* u = malloc(nn * sizeof *u);
  float* uf = malloc(nn * sizeof *uf);
  float* wp = malloc(rc * sizeof *wp);
  int* codes = malloc(rc * sizeof *codes);
  float* sc = malloc((size_t)rows * (size_t)ng * sizeof *sc);
  float* err = malloc((size_t)rows * (size_t)block * sizeof *err);
  int64_t* perm = malloc((size_t)cols * sizeof *perm);
  qn_status st = QN_OK;
  if (!hd || !u || !uf || !wp || !codes || !sc || !err || !perm)
    st = qn_error(QN_ENOMEM, "GPTQ: out of memory for a %lld x %lld matrix", (long long)rows,
                  (long long)cols);
  if (st == QN_OK) {
    /* dead columns: never-active inputs; their weights cannot matter, so they become 0 */
    for (size_t i = 0; i < nn; i++) hd[i] = h[i];
    for (int64_t i = 0; i < cols; i++)
      if (!(hd[i * cols + i] > 0)) {
        for (int64_t k = 0; k < cols; k++) hd[i * cols + k] = hd[k * cols + i] = 0;
        hd[i * cols + i] = 1;
        for (int64_t r = 0; r < rows; r++) w[r * cols + i] = 0;
      }
    for (int64_t i = 0; i < cols; i++) perm[i] = i;
    if (o->act_order) st = act_order_perm(hd, cols, perm);
    /* dynamic scales need every group to start inside a block, in column order */
    bool dynamic = !o->act_order && tr->group > 0 && block % group == 0;
    if (!dynamic) static_scales(&Q, w, rows, cols, group, ng, o->search, sc);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t i = 0; i < cols; i++) wp[r * cols + i] = w[r * cols + perm[i]];
    for (int64_t i = 0; i < cols; i++)
      for (int64_t k = 0; k < cols; k++) u[i * cols + k] = hd[perm[i] * cols + perm[k]];
    memcpy(hd, u, nn * sizeof *hd);
    if (st == QN_OK) st = inverse_cholesky(hd, cols, o->damp, u);
    if (st == QN_OK) {
      for (size_t i = 0; i < nn; i++) uf[i] = (float)u[i];
      gptq_job j = {&Q, rows, cols, group, ng,  dynamic, o->search, perm,
                    wp, u,    sc,   codes, err, 0,       0};
      for (int64_t i1 = 0; i1 < cols; i1 += block) {
        j.i1 = i1;
        j.i2 = i1 + block < cols ? i1 + block : cols;
        for (int64_t r = 0; r < rows; r++) block_row(&j, r);
        int64_t bs = j.i2 - i1, rest = cols - j.i2;
        if (rest > 0)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)rest, (int)bs,
                      -1.0f, err, (int)bs, uf + i1 * cols + j.i2, (int)cols, 1.0f, wp + j.i2,
                      (int)cols);
      }
      pack(t, &j, w, payload, scales);
    }
  }
  free(hd);
  free(u);
  free(uf);
  free(wp);
  free(codes);
  free(sc);
  free(err);
  free(perm);
  return st;
}
