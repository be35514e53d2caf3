/* awq.c: AWQ on one weight matrix: the per-channel scales of an alpha, the output error of a
 * quantized layer under the input Hessian, and the per-group clipping search (see awq.h).
 * Error products run through BLAS (sgemm). */
#include "calib/awq.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool qn_awq_supports(qn_qtype t) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  return tr && tr->group >= 0 && tr->act == QN_ACT_FLOAT;
}

/* v[width] = m pooled over the query heads of each kv group (pool > 1), else a copy. */
static void pooled(const float* m, int width, int head_dim, int pool, float* v) {
  if (pool > 1 && head_dim > 0 && width % (head_dim * pool) == 0) {
    int n_kv = width / (head_dim * pool);
    for (int kvh = 0; kvh < n_kv; kvh++)
      for (int d = 0; d < head_dim; d++) {
        double sum = 0;
        for (int h = kvh * pool; h < (kvh + 1) * pool; h++) sum += m[h * head_dim + d];
        for (int h = kvh * pool; h < (kvh + 1) * pool; h++)
          v[h * head_dim + d] = (float)(sum / pool);
      }
  } else {
    memcpy(v, m, sizeof(float) * (size_t)width);
  }
}

/* Replaces zero / non-finite entries of v by its smallest positive one; false if none. */
static bool floor_positive(float* v, int width) {
  float lo = INFINITY;
  for (int j = 0; j < width; j++)
    if (v[j] > 0 && v[j] < lo) lo = v[j];
  if (!isfinite(lo)) return false;
  for (int j = 0; j < width; j++)
    if (!(isfinite(v[j]) && v[j] > lo)) v[j] = lo;
  return true;
}

void qn_awq_scales(const float* m, const float* wm, int width, double alpha, int head_dim, int pool,
                   float* s) {
  pooled(m, width, head_dim, pool, s);
  bool ok = floor_positive(s, width);
  float* w = NULL;
  if (ok && wm && alpha < 1) {
    w = malloc(sizeof(float) * (size_t)width);
    if (w) {
      pooled(wm, width, head_dim, pool, w);
      if (!floor_positive(w, width)) free(w), w = NULL;
    }
  }
  if (!ok || (alpha == 0 && !w)) {
    for (int j = 0; j < width; j++) s[j] = 1.0f;
    free(w);
    return;
  }
  double vmin = INFINITY, vmax = 0;
  for (int j = 0; j < width; j++) {
    double v = pow(s[j], alpha) / (w ? pow(w[j], 1.0 - alpha) : 1.0);
    s[j] = (float)v;
    if (v < vmin) vmin = v;
    if (v > vmax) vmax = v;
  }
  free(w);
  double norm = sqrt(vmin * vmax);
  for (int j = 0; j < width; j++) {
    float v = (float)(s[j] / norm);
    s[j] = v > QN_AWQ_MAX_S ? QN_AWQ_MAX_S : v < 1.0f / QN_AWQ_MAX_S ? 1.0f / QN_AWQ_MAX_S : v;
  }
}

void qn_awq_weight_mean(qn_qtype t, const float* w, int64_t rows, int64_t cols, float* acc) {
  int64_t gw = qn_awq_clip_group(t, cols);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < cols; c0 += gw) {
      int64_t n = cols - c0 < gw ? cols - c0 : gw;
      const float* g = w + r * cols + c0;
      float mx = 0;
      for (int64_t j = 0; j < n; j++) mx = fmaxf(mx, fabsf(g[j]));
      if (mx > 0)
        for (int64_t j = 0; j < n; j++) acc[c0 + j] += fabsf(g[j]) / mx;
    }
}

/* ---- scratch ---- */

void qn_awq_scratch_free(qn_awq_scratch* b) {
  if (!b) return;
  free(b->ws), free(b->deq), free(b->err), free(b->eg);
  free(b->pay), free(b->scl), free(b->zer), free(b->gerr);
  memset(b, 0, sizeof *b);
}

qn_status qn_awq_scratch_init(qn_awq_scratch* b, int64_t max_elems, int n_threads) {
  memset(b, 0, sizeof *b);
  size_t n = max_elems > 0 ? (size_t)max_elems : 1;
  b->cap = n;
  b->n_threads = n_threads > 0 ? n_threads : 1;
  b->ws = malloc(sizeof(float) * n);
  b->deq = malloc(sizeof(float) * n);
  b->err = malloc(sizeof(float) * n);
  b->eg = malloc(sizeof(float) * n);
  b->gerr = malloc(sizeof(double) * n);
  /* payload: at most 1 byte per weight in a supported scheme plus per-row padding; scales and
     zeros: at most one f32 per weight */
  b->pay = malloc(n * 2 + 64);
  b->scl = malloc(4 * n);
  b->zer = malloc(4 * n);
  if (!b->ws || !b->deq || !b->err || !b->eg || !b->gerr || !b->pay || !b->scl || !b->zer) {
    qn_awq_scratch_free(b);
    return qn_error(QN_ENOMEM, "out of memory for AWQ buffers of %zu weights", n);
  }
  return QN_OK;
}

static qn_status check_fits(const qn_awq_scratch* b, qn_qtype t, int64_t rows, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (!tr || !qn_awq_supports(t))
    return qn_error(QN_EUNSUPPORTED, "AWQ: scheme %s has no weight scales to work with",
                    tr ? tr->name : "?");
  uint64_t n = (uint64_t)rows * (uint64_t)cols;
  if (rows <= 0 || cols <= 0 || n > b->cap ||
      qn_qtype_row_bytes(t, cols) * (uint64_t)rows > 2 * b->cap + 64)
    return qn_error(QN_EINVAL, "AWQ: a %lld x %lld weight does not fit the buffers",
                    (long long)rows, (long long)cols);
  return QN_OK;
}

qn_status qn_awq_fake_quant(qn_qtype t, const float* w, int64_t rows, int64_t cols,
                            qn_awq_scratch* b, float* out) {
  QN_TRY(check_fits(b, t, rows, cols));
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  /* threads only pay off on large matrices (one pthread_create per call) */
  qn_quant_opts qo = {false, NULL, rows * cols >= (1 << 18) ? b->n_threads : 1};
  void* scl = tr->group >= 0 ? b->scl : NULL;
  void* zer = tr->asymmetric ? b->zer : NULL;
  QN_TRY(qn_quantize_matrix(t, w, rows, cols, &qo, b->pay, scl, zer, NULL));
  qn_qtensor q = {t, rows, cols, b->pay, scl, zer, 0, QN_LAYOUT_ROWS};
  return qn_qtensor_dequant(&q, out);
}

/* ---- clipping ---- */

int64_t qn_awq_clip_group(qn_qtype t, int64_t cols) {
  int g = qn_qtype_traits_of(t)->group;
  return g > 0 && g < cols ? g : cols;
}

/* Clamps w[n] to f times its range (symmetric: about 0; asymmetric: about the centre). */
static void clamp_group(bool asym, float* w, int64_t n, float f) {
  if (f >= 1.0f) return;
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < n; i++) {
    if (w[i] < lo) lo = w[i];
    if (w[i] > hi) hi = w[i];
  }
  float a, b;
  if (asym) {
    float c = 0.5f * (lo + hi), h = 0.5f * (hi - lo) * f;
    a = c - h, b = c + h;
  } else {
    float m = fmaxf(fabsf(lo), fabsf(hi)) * f;
    a = -m, b = m;
  }
  for (int64_t i = 0; i < n; i++) w[i] = w[i] < a ? a : w[i] > b ? b : w[i];
}

static float clip_factor(int k) { return 1.0f - QN_AWQ_CLIP_STEP * (float)k; }

void qn_awq_clip_apply(qn_qtype t, const uint8_t* clip, float* w, int64_t rows, int64_t cols) {
  bool asym = qn_qtype_traits_of(t)->asymmetric;
  int64_t gw = qn_awq_clip_group(t, cols), ng = (cols + gw - 1) / gw;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t g = 0; g < ng; g++) {
      int64_t c0 = g * gw, n = cols - c0 < gw ? cols - c0 : gw;
      clamp_group(asym, w + r * cols + c0, n, clip_factor(clip[r * ng + g]));
    }
}

/* ws = w diag(s) (s NULL: a copy). */
static void scale_cols(const float* w, int64_t rows, int64_t cols, const float* s, float* ws) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) ws[r * cols + j] = w[r * cols + j] * (s ? s[j] : 1.0f);
}

/* err = deq diag(s)^-1 - w: the error of the effective (unscaled) weights. */
static void effective_error(const float* deq, const float* w, int64_t rows, int64_t cols,
                            const float* s, float* err) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < cols; j++) {
      int64_t i = r * cols + j;
      err[i] = (s ? deq[i] / s[j] : deq[i]) - w[i];
    }
}

/* Fake-quantizes w diag(s) (clamped by clip when given) and leaves the effective error in
 * b->err. *ok = false when the scaled weights cannot be stored in the scheme. */
static qn_status quant_error(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const uint8_t* clip, qn_awq_scratch* b, bool* ok) {
  scale_cols(w, rows, cols, s, b->ws);
  if (clip) qn_awq_clip_apply(t, clip, b->ws, rows, cols);
  qn_status st = qn_awq_fake_quant(t, b->ws, rows, cols, b, b->deq);
  *ok = st == QN_OK;
  if (st == QN_ERANGE || st == QN_EINVAL) return QN_OK; /* e.g. a scale out of fp16 range */
  QN_TRY(st);
  effective_error(b->deq, w, rows, cols, s, b->err);
  return QN_OK;
}

qn_status qn_awq_layer_error(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const uint8_t* clip, const float* g, qn_awq_scratch* b, double* err) {
  QN_TRY(check_fits(b, t, rows, cols));
  bool ok = false;
  QN_TRY(quant_error(t, w, rows, cols, s, clip, b, &ok));
  if (!ok) {
    *err = INFINITY;
    return QN_OK;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f,
              b->err, (int)cols, g, (int)cols, 0.0f, b->eg, (int)cols);
  double sum = 0;
  for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) sum += (double)b->err[i] * b->eg[i];
  *err = sum;
  return QN_OK;
}

/* Quantizes with the clip steps cand[rows x ng] and keeps, per group, the step of least
 * error e_g G_gg e_g^T in clip (errors in b->gerr). */
static qn_status clip_pass(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                           const float* g, const uint8_t* cand, qn_awq_scratch* b, uint8_t* clip) {
  int64_t gw = qn_awq_clip_group(t, cols), ng = (cols + gw - 1) / gw;
  bool ok = false;
  QN_TRY(quant_error(t, w, rows, cols, s, cand, b, &ok));
  if (!ok) return QN_OK;
  for (int64_t gi = 0; gi < ng; gi++) {
    int64_t c0 = gi * gw, n = cols - c0 < gw ? cols - c0 : gw;
    /* eg (rows x n) = err[:, group] G[group, group]; G NULL: the identity, eg = err */
    if (g)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f,
                  b->err + c0, (int)cols, g + c0 * cols + c0, (int)cols, 0.0f, b->eg, (int)n);
    for (int64_t r = 0; r < rows; r++) {
      double e = 0;
      const float* er = b->err + r * cols + c0;
      const float* eg = g ? b->eg + r * n : er;
      for (int64_t j = 0; j < n; j++) e += (double)er[j] * eg[j];
      if (e < b->gerr[r * ng + gi]) {
        b->gerr[r * ng + gi] = e;
        clip[r * ng + gi] = cand[r * ng + gi];
      }
    }
  }
  return QN_OK;
}

/* Buffers of one group's refinement (rows x n each, n <= the group width). */
typedef struct group_buf {
  float* cur;    /* the committed effective error of the group */
  float* cross;  /* the other groups' term: sum_{h != g} e_h G_hg */
  double* obj;   /* [rows] objective of the committed choice */
  uint8_t* cand; /* [rows] candidate step */
  uint8_t* base; /* [rows] best step after the coarse grid: centre of the fine steps */
} group_buf;

/* Tries, for group g (columns c0 .. c0 + n) of every row, the clip steps cand and keeps each
 * row's where e G_gg e^T + 2 e . cross (its part of the whole output error) falls. The
 * candidate's error goes to b->deq, e G_gg to b->ws (rows x n). */
static qn_status refine_try(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                            const float* g, int64_t c0, int64_t n, qn_awq_scratch* b, group_buf* gb,
                            uint8_t* clip_col, int64_t ng) {
  bool asym = qn_qtype_traits_of(t)->asymmetric;
  for (int64_t r = 0; r < rows; r++) {
    float* d = b->ws + r * n;
    for (int64_t j = 0; j < n; j++) d[j] = w[r * cols + c0 + j] * (s ? s[c0 + j] : 1.0f);
    clamp_group(asym, d, n, clip_factor(gb->cand[r]));
  }
  qn_status st = qn_awq_fake_quant(t, b->ws, rows, n, b, b->deq);
  if (st == QN_ERANGE || st == QN_EINVAL) return QN_OK; /* not storable: skip the candidate */
  QN_TRY(st);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) {
      float* e = b->deq + r * n + j;
      *e = (s ? *e / s[c0 + j] : *e) - w[r * cols + c0 + j];
    }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f, b->deq,
              (int)n, g + c0 * cols + c0, (int)cols, 0.0f, b->ws, (int)n);
  for (int64_t r = 0; r < rows; r++) {
    const float *e = b->deq + r * n, *eg = b->ws + r * n, *cr = gb->cross + r * n;
    double o = 0;
    for (int64_t j = 0; j < n; j++) o += (double)e[j] * (eg[j] + 2.0f * cr[j]);
    if (o < gb->obj[r]) {
      gb->obj[r] = o;
      clip_col[r * ng] = gb->cand[r];
      memcpy(gb->cur + r * n, e, sizeof(float) * (size_t)n);
    }
  }
  return QN_OK;
}

/* One pass of coordinate descent over the groups of every row: group g's clip step is
 * re-chosen (coarse grid, then the fine steps around the best) to minimise the whole row's
 * output error e G e^T, including its cross terms with the row's other groups, which the
 * independent per-group search ignores. b->err holds the effective error E of the current
 * steps and b->eg holds E G on entry; both are kept up to date. Never raises the error. */
static qn_status refine_pass(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const float* g, qn_awq_scratch* b, uint8_t* clip) {
  int64_t gw = qn_awq_clip_group(t, cols), ng = (cols + gw - 1) / gw;
  group_buf gb;
  gb.cur = malloc(sizeof(float) * (size_t)(rows * gw));
  gb.cross = malloc(sizeof(float) * (size_t)(rows * gw));
  gb.obj = malloc(sizeof(double) * (size_t)rows);
  gb.cand = malloc(2 * (size_t)rows);
  gb.base = gb.cand ? gb.cand + rows : NULL;
  qn_status st =
      gb.cur && gb.cross && gb.obj && gb.cand ? QN_OK : qn_error(QN_ENOMEM, "out of memory");
  for (int64_t gi = 0; gi < ng && st == QN_OK; gi++) {
    int64_t c0 = gi * gw, n = cols - c0 < gw ? cols - c0 : gw;
    /* cross = (E G)[:, group] - e_g G_gg; obj = e_g G_gg e_g^T + 2 e_g . cross */
    float* eg = b->ws;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)n, 1.0f,
                b->err + c0, (int)cols, g + c0 * cols + c0, (int)cols, 0.0f, eg, (int)n);
    for (int64_t r = 0; r < rows; r++) {
      double o = 0;
      for (int64_t j = 0; j < n; j++) {
        float e = b->err[r * cols + c0 + j], x = eg[r * n + j];
        gb.cross[r * n + j] = b->eg[r * cols + c0 + j] - x;
        gb.cur[r * n + j] = e;
        o += (double)e * (x + 2.0f * gb.cross[r * n + j]);
      }
      gb.obj[r] = o;
    }
    uint8_t* col = clip + gi;
    for (int k = 0; k < QN_AWQ_N_CLIP && st == QN_OK; k += QN_AWQ_CLIP_COARSE) {
      memset(gb.cand, k, (size_t)rows);
      st = refine_try(t, w, rows, cols, s, g, c0, n, b, &gb, col, ng);
    }
    for (int64_t r = 0; r < rows; r++) gb.base[r] = col[r * ng];
    for (int d = 1 - QN_AWQ_CLIP_COARSE; d < QN_AWQ_CLIP_COARSE && st == QN_OK; d++) {
      if (d == 0) continue;
      for (int64_t r = 0; r < rows; r++) {
        int k = gb.base[r] + d;
        gb.cand[r] = (uint8_t)(k < 0 ? 0 : k >= QN_AWQ_N_CLIP ? QN_AWQ_N_CLIP - 1 : k);
      }
      st = refine_try(t, w, rows, cols, s, g, c0, n, b, &gb, col, ng);
    }
    if (st != QN_OK) break;
    /* commit: E G += (e_new - e_old) G[group, :] */
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < n; j++) {
        float* e = b->err + r * cols + c0 + j;
        b->ws[r * n + j] = gb.cur[r * n + j] - *e;
        *e = gb.cur[r * n + j];
      }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)n, 1.0f,
                b->ws, (int)n, g + c0 * cols, (int)cols, 1.0f, b->eg, (int)cols);
  }
  free(gb.cur), free(gb.cross), free(gb.obj), free(gb.cand);
  return st;
}

qn_status qn_awq_clip_search(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const float* g, qn_awq_scratch* b, uint8_t* clip) {
  QN_TRY(check_fits(b, t, rows, cols));
  int64_t gw = qn_awq_clip_group(t, cols), ng = (cols + gw - 1) / gw;
  size_t n = (size_t)(rows * ng);
  if (n > b->cap) return qn_error(QN_EINVAL, "AWQ: clip table too large");
  uint8_t* cand = malloc(2 * n);
  if (!cand) return qn_error(QN_ENOMEM, "out of memory");
  uint8_t* base = cand + n;
  memset(clip, 0, n);
  for (size_t i = 0; i < n; i++) b->gerr[i] = INFINITY;
  qn_status st = QN_OK;
  /* the coarse grid 1.0, 0.95 .. 0.5 for every group */
  for (int k = 0; k < QN_AWQ_N_CLIP && st == QN_OK; k += QN_AWQ_CLIP_COARSE) {
    memset(cand, k, n);
    st = clip_pass(t, w, rows, cols, s, g, cand, b, clip);
  }
  /* then the fine steps around each group's best coarse step */
  memcpy(base, clip, n);
  for (int d = 1 - QN_AWQ_CLIP_COARSE; d < QN_AWQ_CLIP_COARSE && st == QN_OK; d++) {
    if (d == 0) continue;
    for (size_t i = 0; i < n; i++) {
      int k = base[i] + d;
      cand[i] = (uint8_t)(k < 0 ? 0 : k >= QN_AWQ_N_CLIP ? QN_AWQ_N_CLIP - 1 : k);
    }
    st = clip_pass(t, w, rows, cols, s, g, cand, b, clip);
  }
  free(cand);
  return st;
}

qn_status qn_awq_clip_refine(qn_qtype t, const float* w, int64_t rows, int64_t cols, const float* s,
                             const float* g, int passes, qn_awq_scratch* b, uint8_t* clip) {
  QN_TRY(check_fits(b, t, rows, cols));
  if (passes <= 0 || qn_awq_clip_group(t, cols) >= cols) return QN_OK; /* one group per row */
  bool ok = false;
  QN_TRY(quant_error(t, w, rows, cols, s, clip, b, &ok));
  if (!ok) return QN_OK;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f,
              b->err, (int)cols, g, (int)cols, 0.0f, b->eg, (int)cols);
  qn_status st = QN_OK;
  for (int i = 0; i < passes && st == QN_OK; i++) st = refine_pass(t, w, rows, cols, s, g, b, clip);
  return st;
}
