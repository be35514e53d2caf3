/* test_kernels_ops.c: the SIMD element-wise ops and attention (x86_kernels.h: qn_rmsnorm_*,
 * qn_swiglu_*, qn_attn_head_*) and their vectorised exp, on every ISA level the CPU supports
 * (an unsupported level is skipped, not the test), against the scalar references:
 *  - exp: a dense sweep of [-100, 90] (2^21 points) plus special values against glibc expf:
 *    <= 2^-23 relative (1 ulp) where the result is normal, <= 2^-149 absolute where it is
 *    subnormal, the same inf / 0 / NaN; <= 1e-7 relative from the exact e^x (double exp);
 *    exp(0) = 1 exactly; AVX2 and AVX-512 give the same bits;
 *  - RMSNorm: n in {1, 7, 8, 16, 31, 33, 172, 4097} on normal data, on magnitudes 1e-30..1e30
 *    and on values near 1e37 (whose squares overflow float): within 2 ulp of the reference
 *    (|d| <= 2^-22 |ref| + 2^-148); in place gives the same bits; nothing written past n;
 *  - SwiGLU: the same sizes on normal data, magnitudes 1e-30..1e30, a sweep of [-110, 110] and
 *    special values: |d| <= 6e-7 |ref| + 2^-146 (5 ulp: exp's 1 ulp through 1 + e, the
 *    division and the product), NaN and inf where the reference has them, silu(-1e30) = -0;
 *    AVX2 and AVX-512 agree bit for bit;
 *  - attention: head_dim in {2, 6, 34, 64, 128} x n_pos in {1, 7, 33, 172, 4097}, k/v rows
 *    kv_stride = 3 head_dim + 5 apart with NaN in the floats between rows (a read past
 *    head_dim poisons the result): the SIMD kernel AND the reference stay within a bound of
 *    the exact result (double) derived from the conditioning of the softmax (bound_attention);
 *    a position that dominates by > 105 logits gives exactly its v row; out is not written
 *    past head_dim;
 *  - grouped-query attention (qn_attn_heads, 1 / 3 / 8 / 17 query heads on one k/v head, the
 *    same sizes) is bit-identical per head to the level's single-head kernel, on every level
 *    including the reference. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "kernels/kernels.h"
#if defined(QN_HAVE_X86_KERNELS)
#include "kernels/x86/x86_kernels.h"
/* Test hooks: the vectorised exp of ops_avx2.c / ops_avx512.c over an array. */
#endif

typedef void (*rmsnorm_fn)(float* out, const float* x, const float* w, int n, float eps);
typedef void (*swiglu_fn)(float* gate, const float* up, int64_t n);
typedef void (*attn_fn)(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                        int head_dim, float scale, float* att, float* out);
typedef void (*exp_fn)(float* y, const float* x, int64_t n);
typedef void (*softmax_fn)(float* x, int n);

/* The kernels of one ISA level. */
typedef struct isa_ops {
  qn_isa isa;         /* level, checked with qn_isa_supported */
  rmsnorm_fn rmsnorm; /* qn_rmsnorm_<isa> */
  swiglu_fn swiglu;   /* qn_swiglu_<isa> */
  attn_fn attn;       /* qn_attn_head_<isa> */
  exp_fn exp;         /* qn_exp_<isa> (test hook) */
  softmax_fn softmax; /* qn_softmax_<isa> */
} isa_ops;

#if defined(QN_HAVE_X86_KERNELS)
static const isa_ops k_levels[] = {
    {QN_ISA_AVX2, qn_rmsnorm_avx2, qn_swiglu_avx2, qn_attn_head_avx2, qn_exp_avx2, qn_softmax_avx2},
    {QN_ISA_AVX512, qn_rmsnorm_avx512, qn_swiglu_avx512, qn_attn_head_avx512, qn_exp_avx512,
     qn_softmax_avx512},
};
#define N_LEVELS (int)(sizeof k_levels / sizeof k_levels[0])
#else
static const isa_ops k_levels[1];
#define N_LEVELS 0
#endif

static const int k_sizes[] = {1, 7, 8, 16, 31, 33, 172, 4097};
#define N_SIZES (int)(sizeof k_sizes / sizeof k_sizes[0])
#define SENTINEL 12345.678f
#define N_GUARD 16 /* floats after each output that must stay SENTINEL */

/* ---- data ------------------------------------------------------------------------------ */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) * 0x1p-53;
}
static double grand(void) {
  double u = urand(), v = urand();
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

static void fill_normal(float* x, int64_t n, double sigma) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(sigma * grand());
}

/* Random signs and magnitudes 10^[lo, hi], one in 16 values zero. */
static void fill_wide(float* x, int64_t n, double lo, double hi) {
  for (int64_t i = 0; i < n; i++) {
    double m = pow(10.0, lo + (hi - lo) * urand());
    x[i] = urand() < 1.0 / 16 ? 0.0f : (float)(urand() < 0.5 ? -m : m);
  }
}

static float* guarded(int64_t n) { /* n floats followed by N_GUARD sentinels */
  float* p = xmalloc(sizeof(float) * (size_t)(n + N_GUARD));
  for (int i = 0; i < N_GUARD; i++) p[n + i] = SENTINEL;
  return p;
}

static void check_guard(const float* p, int64_t n, const char* what) {
  for (int i = 0; i < N_GUARD; i++)
    if (p[n + i] != SENTINEL) fail_msg("%s: wrote past its %lld outputs", what, (long long)n);
}

static bool same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* ---- exp ----------------------------------------------------------------------------------- */

#define EXP_REL_VS_EXPF 0x1p-23 /* documented bounds (ops_avx2.c header) */
#define EXP_ABS_SUBNORMAL 0x1p-149
#define EXP_REL_VS_EXACT 1e-7

/* Checks y = exp(x) against expf(x) and exp((double)x); returns the relative error vs expf. */
static double check_exp_value(float x, float y, const char* isa) {
  float r = expf(x);
  if (isnan(x)) {
    if (!isnan(y)) fail_msg("%s exp(NaN) = %g", isa, y);
    return 0;
  }
  if (isinf(r) || isinf(y)) {
    if (!(isinf(r) && isinf(y) && y > 0)) fail_msg("%s exp(%.9g) = %g, expf %g", isa, x, y, r);
    return 0;
  }
  if (r >= FLT_MIN) {
    double rel = fabs((double)y - r) / r, exact = exp((double)x);
    if (rel > EXP_REL_VS_EXPF || fabs((double)y - exact) > EXP_REL_VS_EXACT * exact)
      fail_msg("%s exp(%.9g) = %.9g, expf %.9g, exact %.17g", isa, x, y, r, exact);
    return rel;
  }
  if (!(y >= 0) || fabs((double)y - r) > EXP_ABS_SUBNORMAL)
    fail_msg("%s exp(%.9g) = %g (subnormal range), expf %g", isa, x, y, r);
  return 0;
}

static void test_exp(void** state) {
  (void)state;
  const int64_t n = (int64_t)1 << 21;
  const float specials[] = {0.0f,      -0.0f,      1.0f,        -1.0f,       0x1p-30f,
                            -0x1p-30f, 88.72283f,  88.722839f,  88.7229f,    89.0f,
                            100.0f,    -87.33654f, -87.3366f,   -103.97207f, -103.9721f,
                            -104.0f,   -105.0f,    -1000.0f,    1e30f,       -1e30f,
                            FLT_MAX,   -FLT_MAX,   INFINITY,    -INFINITY,   NAN,
                            0x1p-149f, -0x1p-149f, 0.34657359f, -0.34657359f};
  const int n_spec = (int)(sizeof specials / sizeof specials[0]);
  float* x = xmalloc(sizeof(float) * (size_t)(n + n_spec));
  for (int64_t i = 0; i < n; i++) x[i] = (float)(-100.0 + 190.0 * (double)i / (double)(n - 1));
  memcpy(x + n, specials, sizeof specials);
  int64_t total = n + n_spec;
  float* y[2] = {NULL, NULL};
  for (int l = 0; l < N_LEVELS; l++) {
    if (!qn_isa_supported(k_levels[l].isa)) continue;
    const char* name = qn_isa_name(k_levels[l].isa);
    y[l] = guarded(total);
    k_levels[l].exp(y[l], x, total);
    check_guard(y[l], total, "exp");
    double worst = 0;
    for (int64_t i = 0; i < total; i++) {
      double e = check_exp_value(x[i], y[l][i], name);
      if (e > worst) worst = e;
    }
    /* exact points the softmax relies on */
    float z[4] = {0.0f, -0.0f, -INFINITY, 1000.0f}, ez[4];
    k_levels[l].exp(ez, z, 4);
    assert_true(ez[0] == 1.0f && ez[1] == 1.0f && ez[2] == 0.0f && isinf(ez[3]));
    /* every tail length gives the same values as the long call */
    for (int len = 0; len <= 33; len++) {
      float* t = guarded(len);
      k_levels[l].exp(t, x + 1000, len);
      check_guard(t, len, "exp tail");
      for (int i = 0; i < len; i++) assert_true(same_bits(t[i], y[l][1000 + i]));
      free(t);
    }
    printf("%s exp: max relative error vs expf %.3g on %lld points\n", name, worst,
           (long long)total);
  }
  if (y[0] && y[1])
    for (int64_t i = 0; i < total; i++)
      if (!same_bits(y[0][i], y[1][i]) && !(isnan(y[0][i]) && isnan(y[1][i])))
        fail_msg("exp(%.9g): avx2 %.9g != avx512 %.9g", x[i], y[0][i], y[1][i]);
  free(y[0]);
  free(y[1]);
  free(x);
}

/* ---- RMSNorm ------------------------------------------------------------------------------- */

static void check_rmsnorm_case(const isa_ops* ops, const float* x, const float* w, int n, float eps,
                               const char* kind, double* worst_ulp) {
  float* ref = xmalloc(sizeof(float) * (size_t)n);
  float* out = guarded(n);
  float* inplace = xmalloc(sizeof(float) * (size_t)n);
  qn_rmsnorm_ref(ref, x, w, n, eps);
  ops->rmsnorm(out, x, w, n, eps);
  check_guard(out, n, "rmsnorm");
  for (int i = 0; i < n; i++) {
    double d = fabs((double)out[i] - ref[i]);
    if (!(d <= 0x1p-22 * fabs(ref[i]) + 0x1p-148))
      fail_msg("%s rmsnorm %s n=%d eps=%g: out[%d] = %.9g, reference %.9g", qn_isa_name(ops->isa),
               kind, n, eps, i, out[i], ref[i]);
    if (ref[i] != 0 && d / fabs(ref[i]) * 0x1p23 > *worst_ulp)
      *worst_ulp = d / fabs(ref[i]) * 0x1p23;
  }
  memcpy(inplace, x, sizeof(float) * (size_t)n);
  ops->rmsnorm(inplace, inplace, w, n, eps);
  assert_memory_equal(inplace, out, sizeof(float) * (size_t)n);
  free(ref);
  free(out);
  free(inplace);
}

static void test_rmsnorm(void** state) {
  (void)state;
  for (int l = 0; l < N_LEVELS; l++) {
    if (!qn_isa_supported(k_levels[l].isa)) continue;
    double worst = 0;
    for (int s = 0; s < N_SIZES; s++) {
      int n = k_sizes[s];
      float* x = xmalloc(sizeof(float) * (size_t)n);
      float* w = xmalloc(sizeof(float) * (size_t)n);
      fill_normal(w, n, 1.0);
      for (int kind = 0; kind < 3; kind++) {
        if (kind == 0) fill_normal(x, n, 1.0);
        if (kind == 1) fill_wide(x, n, -30, 30);
        if (kind == 2) fill_wide(x, n, 36, 37.5); /* squares beyond FLT_MAX */
        const char* kn = kind == 0 ? "normal" : kind == 1 ? "wide" : "huge";
        check_rmsnorm_case(&k_levels[l], x, w, n, 1e-5f, kn, &worst);
        check_rmsnorm_case(&k_levels[l], x, w, n, 1e-6f, kn, &worst);
      }
      free(x);
      free(w);
    }
    printf("%s rmsnorm: max difference from the reference %.2f ulp\n", qn_isa_name(k_levels[l].isa),
           worst);
  }
}

/* ---- SwiGLU -------------------------------------------------------------------------------- */

#define SWIGLU_REL 6e-7
#define SWIGLU_ABS 0x1p-146

/* Runs one level on gate/up (n values); returns the output (malloc'ed) after checking it. */
static float* check_swiglu_case(const isa_ops* ops, const float* gate, const float* up, int64_t n,
                                const char* kind, double* worst) {
  float* ref = xmalloc(sizeof(float) * (size_t)n);
  float* out = guarded(n);
  memcpy(ref, gate, sizeof(float) * (size_t)n);
  memcpy(out, gate, sizeof(float) * (size_t)n);
  qn_swiglu_ref(ref, up, n);
  ops->swiglu(out, up, n);
  check_guard(out, n, "swiglu");
  for (int64_t i = 0; i < n; i++) {
    bool ok;
    if (isnan(ref[i]) || isinf(ref[i]))
      ok = same_bits(out[i], ref[i]) || (isnan(ref[i]) && isnan(out[i]));
    else
      ok = fabs((double)out[i] - ref[i]) <= SWIGLU_REL * fabs(ref[i]) + SWIGLU_ABS;
    if (!ok)
      fail_msg("%s swiglu %s n=%lld: gate %.9g up %.9g -> %.9g, reference %.9g",
               qn_isa_name(ops->isa), kind, (long long)n, gate[i], up[i], out[i], ref[i]);
    if (isfinite(ref[i]) && ref[i] != 0) {
      double e = fabs((double)out[i] - ref[i]) / fabs(ref[i]);
      if (e > *worst) *worst = e;
    }
  }
  free(ref);
  return out;
}

static void test_swiglu(void** state) {
  (void)state;
  const float specials[] = {0.0f,    -0.0f,   1.0f,      -1.0f,    88.72f,   -88.72f,   88.73f,
                            -88.73f, 87.33f,  -87.33f,   103.9f,   -103.9f,  104.0f,    -104.0f,
                            1e30f,   -1e30f,  FLT_MAX,   -FLT_MAX, INFINITY, -INFINITY, NAN,
                            1e-30f,  -1e-30f, 0x1p-149f, 20.0f,    -20.0f};
  const int n_spec = (int)(sizeof specials / sizeof specials[0]);
  const int64_t n_sweep = 100003;
  float* last[2][4] = {{NULL}};
  float* sweep_g = xmalloc(sizeof(float) * (size_t)n_sweep);
  float* sweep_u = xmalloc(sizeof(float) * (size_t)n_sweep);
  for (int64_t i = 0; i < n_sweep; i++)
    sweep_g[i] = (float)(-110.0 + 220.0 * (double)i / (double)(n_sweep - 1));
  fill_normal(sweep_u, n_sweep, 1.0);
  float spec_up[sizeof specials / sizeof specials[0]];
  for (int i = 0; i < n_spec; i++) spec_up[i] = 1.0f;
  for (int l = 0; l < N_LEVELS; l++) {
    if (!qn_isa_supported(k_levels[l].isa)) continue;
    const isa_ops* ops = &k_levels[l];
    double worst = 0;
    for (int s = 0; s < N_SIZES; s++) {
      int n = k_sizes[s];
      float* g = xmalloc(sizeof(float) * (size_t)n);
      float* u = xmalloc(sizeof(float) * (size_t)n);
      g_rng = 0x1234567ull + (uint64_t)n;
      fill_normal(g, n, 4.0);
      fill_normal(u, n, 1.0);
      free(check_swiglu_case(ops, g, u, n, "normal", &worst));
      fill_wide(g, n, -30, 30);
      fill_wide(u, n, -30, 30);
      free(check_swiglu_case(ops, g, u, n, "wide", &worst));
      free(g);
      free(u);
    }
    last[l][0] = check_swiglu_case(ops, sweep_g, sweep_u, n_sweep, "sweep", &worst);
    last[l][1] = check_swiglu_case(ops, specials, spec_up, n_spec, "specials", &worst);
    /* the limits the contract names */
    const float* o = last[l][1];
    assert_true(o[15] == 0.0f && signbit(o[15])); /* silu(-1e30) = -0 */
    assert_true(o[14] == 1e30f);                  /* silu(1e30) = 1e30 */
    assert_true(isinf(o[18]) && o[18] > 0);       /* silu(+inf) = +inf */
    assert_true(o[0] == 0.0f);
    printf("%s swiglu: max relative difference from the reference %.3g\n", qn_isa_name(ops->isa),
           worst);
  }
  if (last[0][0] && last[1][0]) {
    assert_memory_equal(last[0][0], last[1][0], sizeof(float) * (size_t)n_sweep);
    for (int i = 0; i < n_spec; i++)
      assert_true(same_bits(last[0][1][i], last[1][1][i]) ||
                  (isnan(last[0][1][i]) && isnan(last[1][1][i])));
  }
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < 2; i++) free(last[l][i]);
  free(sweep_g);
  free(sweep_u);
}

/* ---- attention ----------------------------------------------------------------------------- */

/* One attention problem: a head of head_dim over n_pos positions, with k/v rows kv_stride
 * floats apart and NaN everywhere in the rows except this head's head_dim floats. */
typedef struct attn_case {
  int hd, n_pos;
  size_t stride;      /* kv_stride */
  float scale;        /* logit scale */
  float* q;           /* [hd] */
  float *kbuf, *vbuf; /* [n_pos * stride] */
  const float *k, *v; /* this head: kbuf + hd (the second of three heads), same for v */
} attn_case;

static attn_case make_case(int hd, int n_pos, int kind) {
  attn_case c = {hd,   n_pos, (size_t)(3 * hd + 5), 1.0f / sqrtf((float)hd), NULL, NULL, NULL,
                 NULL, NULL};
  size_t total = c.stride * (size_t)n_pos;
  c.q = xmalloc(sizeof(float) * (size_t)hd);
  c.kbuf = xmalloc(sizeof(float) * total);
  c.vbuf = xmalloc(sizeof(float) * total);
  for (size_t i = 0; i < total; i++) c.kbuf[i] = c.vbuf[i] = NAN;
  double sigma_qk = kind == 1 ? 3.0 : 1.0;
  fill_normal(c.q, hd, sigma_qk);
  for (int j = 0; j < n_pos; j++) {
    float* kr = c.kbuf + (size_t)j * c.stride + hd;
    float* vr = c.vbuf + (size_t)j * c.stride + hd;
    fill_normal(kr, hd, sigma_qk);
    if (kind == 0) fill_normal(vr, hd, 1.0);
    if (kind == 1) fill_wide(vr, hd, -30, 30);
    if (kind == 2) fill_wide(vr, hd, 34, 35);
  }
  c.k = c.kbuf + hd;
  c.v = c.vbuf + hd;
  return c;
}

static void free_case(attn_case* c) {
  free(c->q);
  free(c->kbuf);
  free(c->vbuf);
}

/* The exact result (double) and, per output, a bound on |out - exact| for any implementation
 * that (1) forms each logit as fl(dot) * scale with the dot's rounding error at most
 * gamma(hd) sum_d |q_d k_jd| (any summation order, FMA or not), (2) subtracts the largest
 * computed logit (rounding u relative; a common shift does not change the softmax), (3) takes
 * exp within EXP_ERR relative (expf: 1 ulp; exp8/exp16: 1 ulp of expf, 2 ulp in all),
 * (4) sums in double, rounds 1/sum and the weights (2u), and (5) accumulates the n_pos
 * products weight * v in float in any order. With a_j the error of argument j,
 * eta_j = e^{a_j} (1 + EXP_ERR) - 1 bounds the relative error of weight j before
 * normalisation and H = sum_j w_j eta_j that of their sum, so
 *   |out_d - exact_d| <= sum_j w_j |v_jd| (eta_j + H + 3u) + acc sum_j w_j |v_jd|
 * where acc = gamma(n_pos + 1) in the worst case; the test uses the tighter statistical
 * 8 sqrt(n_pos + 1) u (rounding errors of random data add like a random walk) so that one
 * missing position among thousands still shows. Everything times 1.25 for second-order terms.
 */
#define U_F 0x1p-24
#define EXP_ERR 0x1p-22

static double gamma_n(double n) { return n * U_F / (1 - n * U_F); }

static void exact_attention(const attn_case* c, double* exact, double* bound) {
  int hd = c->hd, n = c->n_pos;
  double* s = xmalloc(sizeof(double) * (size_t)n);
  double* a = xmalloc(sizeof(double) * (size_t)n);
  double* w = xmalloc(sizeof(double) * (size_t)n);
  double m = -INFINITY;
  for (int j = 0; j < n; j++) {
    const float* kr = c->k + (size_t)j * c->stride;
    double dot = 0, mag = 0;
    for (int d = 0; d < hd; d++) {
      dot += (double)c->q[d] * kr[d];
      mag += fabs((double)c->q[d] * kr[d]);
    }
    s[j] = dot * c->scale;
    a[j] = gamma_n(hd) * mag * c->scale * (1 + U_F) + U_F * fabs(s[j]);
    if (s[j] > m) m = s[j];
  }
  double sum = 0;
  for (int j = 0; j < n; j++) sum += w[j] = exp(s[j] - m);
  double h = 0;
  for (int j = 0; j < n; j++) {
    w[j] /= sum;
    a[j] += U_F * fabs(s[j] - m) * 1.01; /* the subtraction of the computed max */
    a[j] = w[j] > 0 ? expm1(a[j]) + exp(a[j]) * EXP_ERR : 0;
    h += w[j] * a[j];
  }
  double acc = 8 * sqrt(n + 1.0) * U_F;
  if (acc > gamma_n(n + 1)) acc = gamma_n(n + 1);
  for (int d = 0; d < hd; d++) {
    double o = 0, b = 0;
    for (int j = 0; j < n; j++) {
      double vv = c->v[(size_t)j * c->stride + d];
      o += w[j] * vv;
      b += w[j] * fabs(vv) * (a[j] + h + 3 * U_F + acc);
    }
    exact[d] = o;
    bound[d] = 1.25 * b + 1e-44;
  }
  free(s);
  free(a);
  free(w);
}

/* Runs fn on c; returns the largest |out - exact| / bound. */
static double check_attention(attn_fn fn, const char* who, const attn_case* c, const double* exact,
                              const double* bound) {
  float* att = xmalloc(sizeof(float) * (size_t)c->n_pos);
  float* out = guarded(c->hd);
  fn(c->q, c->k, c->v, c->stride, c->n_pos, c->hd, c->scale, att, out);
  check_guard(out, c->hd, who);
  double worst = 0;
  for (int d = 0; d < c->hd; d++) {
    double err = fabs((double)out[d] - exact[d]);
    if (!(err <= bound[d]))
      fail_msg("%s attention hd=%d n_pos=%d: out[%d] = %.9g, exact %.9g, bound %.3g", who, c->hd,
               c->n_pos, d, out[d], exact[d], bound[d]);
    if (err / bound[d] > worst) worst = err / bound[d];
  }
  free(att);
  free(out);
  return worst;
}

static void ref_attn(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                     int head_dim, float scale, float* att, float* out) {
  qn_attn_head_ref(q, k, v, kv_stride, n_pos, head_dim, scale, att, out);
}

static const int k_head_dims[] = {2, 6, 34, 64, 128};
static const int k_positions[] = {1, 7, 33, 172, 4097};

/* Softmax: every probability within 4 ulp-scale relative error of the reference's (both
 * take e^(x - max) within 1 ulp and sum in double), nothing written past n, and a row with
 * one dominant entry gives exactly 1 there. */
static void test_softmax(void** state) {
  (void)state;
  for (int l = 0; l < N_LEVELS; l++) {
    if (!qn_isa_supported(k_levels[l].isa)) continue;
    double worst = 0;
    for (int s = 0; s < N_SIZES; s++) {
      int n = k_sizes[s];
      float* x = xmalloc(sizeof(float) * (size_t)(n + N_GUARD));
      float* r = xmalloc(sizeof(float) * (size_t)n);
      g_rng = 0xabcdefull + (uint64_t)n;
      fill_normal(x, n, 12.0);
      for (int i = 0; i < N_GUARD; i++) x[n + i] = SENTINEL;
      memcpy(r, x, sizeof(float) * (size_t)n);
      qn_softmax_ref(r, n);
      k_levels[l].softmax(x, n);
      double sum = 0;
      for (int i = 0; i < n; i++) {
        double err = fabs((double)x[i] - r[i]);
        assert_true(err <= 5e-7 * fabs(r[i]) + 1e-44);
        if (r[i] > 0 && err / r[i] > worst) worst = err / r[i];
        sum += x[i];
      }
      assert_true(fabs(sum - 1.0) <= 1e-5);
      for (int i = 0; i < N_GUARD; i++) assert_true(x[n + i] == SENTINEL);
      for (int i = 0; i < n; i++) x[i] = (i == n / 2) ? 200.0f : -200.0f;
      k_levels[l].softmax(x, n);
      assert_true(x[n / 2] == 1.0f);
      free(x);
      free(r);
    }
    printf("softmax %s: worst relative difference from the reference %.2e\n",
           qn_isa_name(k_levels[l].isa), worst);
  }
}

static void test_attention_bound(void** state) {
  (void)state;
  double worst[N_LEVELS > 0 ? N_LEVELS : 1] = {0}, worst_ref = 0;
  for (int hi = 0; hi < 5; hi++)
    for (int pi = 0; pi < 5; pi++)
      for (int kind = 0; kind < 3; kind++) {
        int hd = k_head_dims[hi], n_pos = k_positions[pi];
        attn_case c = make_case(hd, n_pos, kind);
        double* exact = xmalloc(sizeof(double) * (size_t)hd);
        double* bound = xmalloc(sizeof(double) * (size_t)hd);
        exact_attention(&c, exact, bound);
        double r = check_attention(ref_attn, "ref", &c, exact, bound);
        if (r > worst_ref) worst_ref = r;
        for (int l = 0; l < N_LEVELS; l++) {
          if (!qn_isa_supported(k_levels[l].isa)) continue;
          r = check_attention(k_levels[l].attn, qn_isa_name(k_levels[l].isa), &c, exact, bound);
          if (r > worst[l]) worst[l] = r;
        }
        free(exact);
        free(bound);
        free_case(&c);
      }
  printf("attention: largest error / bound: ref %.3f", worst_ref);
  for (int l = 0; l < N_LEVELS; l++)
    if (qn_isa_supported(k_levels[l].isa))
      printf(", %s %.3f", qn_isa_name(k_levels[l].isa), worst[l]);
  printf("\n");
}

/* Position jstar's logit exceeds every other by more than 105, so every other weight is
 * exactly 0 (e^-105 rounds to 0), its weight exactly 1, and out must be its v row exactly. */
static void test_attention_one_hot(void** state) {
  (void)state;
  for (int hi = 0; hi < 5; hi++)
    for (int pi = 0; pi < 5; pi++) {
      int hd = k_head_dims[hi], n_pos = k_positions[pi];
      attn_case c = make_case(hd, n_pos, 0);
      for (int d = 0; d < hd; d++) c.q[d] = 1.0f;
      c.scale = 1.0f;
      for (int j = 0; j < n_pos; j++)
        for (int d = 0; d < hd; d++)
          c.kbuf[(size_t)j * c.stride + hd + d] = (float)(urand() - 0.5); /* |logit| <= hd/2 */
      int picks[4] = {0, n_pos - 1, n_pos / 2, n_pos > 9 ? 9 : 0};
      float* att = xmalloc(sizeof(float) * (size_t)n_pos);
      float* out = guarded(hd);
      for (int pk = 0; pk < 4; pk++) {
        int js = picks[pk];
        float* kr = c.kbuf + (size_t)js * c.stride + hd;
        float saved[128];
        memcpy(saved, kr, sizeof(float) * (size_t)hd);
        for (int d = 0; d < hd; d++) kr[d] = 60.0f + 110.0f / (float)hd; /* logit >= hd/2 + 110 */
        for (int l = 0; l < N_LEVELS; l++) {
          if (!qn_isa_supported(k_levels[l].isa)) continue;
          k_levels[l].attn(c.q, c.k, c.v, c.stride, n_pos, hd, c.scale, att, out);
          check_guard(out, hd, "attention one-hot");
          if (memcmp(out, c.v + (size_t)js * c.stride, sizeof(float) * (size_t)hd) != 0)
            fail_msg("%s attention hd=%d n_pos=%d: position %d dominates but out is not its v",
                     qn_isa_name(k_levels[l].isa), hd, n_pos, js);
          for (int j = 0; j < n_pos; j++) assert_true(att[j] == (j == js ? 1.0f : 0.0f));
        }
        memcpy(kr, saved, sizeof(float) * (size_t)hd);
      }
      free(att);
      free(out);
      free_case(&c);
    }
}

/* qn_attn_heads (grouped-query attention through the dispatcher) at every level, with the ops
 * pinned to it: each of n_q heads sharing one k/v head gets bit for bit what the level's
 * single-head function gives it (probabilities included), and nothing is written past the
 * n_q heads' outputs. */
static void test_attention_grouped(void** state) {
  (void)state;
  static const int n_qs[] = {1, 3, 8, 17};
  for (int lv = QN_ISA_REF; lv <= QN_ISA_AVX512; lv++) {
    if (!qn_isa_supported((qn_isa)lv)) continue;
    attn_fn single = qn_attn_head_ref;
    for (int l = 0; l < N_LEVELS; l++)
      if (k_levels[l].isa == (qn_isa)lv) single = k_levels[l].attn;
    assert_int_equal(qn_isa_force_ops(lv), lv);
    for (int hi = 0; hi < 5; hi++)
      for (int pi = 0; pi < 5; pi++)
        for (int qi = 0; qi < 4; qi++) {
          const int hd = k_head_dims[hi], n_pos = k_positions[pi], n_q = n_qs[qi];
          attn_case c = make_case(hd, n_pos, qi % 3);
          float* q = xmalloc(sizeof(float) * (size_t)(n_q * hd));
          fill_normal(q, n_q * hd, 1.0);
          float* att = xmalloc(sizeof(float) * (size_t)n_q * (size_t)n_pos);
          float* att1 = xmalloc(sizeof(float) * (size_t)n_pos);
          float* out = guarded(n_q * hd);
          float* out1 = xmalloc(sizeof(float) * (size_t)hd);
          qn_attn_heads(q, n_q, c.k, c.v, c.stride, n_pos, hd, c.scale, att, out);
          check_guard(out, n_q * hd, "grouped attention");
          for (int i = 0; i < n_q; i++) {
            single(q + (size_t)i * hd, c.k, c.v, c.stride, n_pos, hd, c.scale, att1, out1);
            if (memcmp(out1, out + (size_t)i * hd, sizeof(float) * (size_t)hd) ||
                memcmp(att1, att + (size_t)i * n_pos, sizeof(float) * (size_t)n_pos))
              fail_msg(
                  "%s grouped attention hd=%d n_pos=%d n_q=%d: head %d differs from the "
                  "single-head kernel",
                  qn_isa_name((qn_isa)lv), hd, n_pos, n_q, i);
          }
          free(out1);
          free(out);
          free(att1);
          free(att);
          free(q);
          free_case(&c);
        }
  }
  qn_isa_force_ops(-1);
}

int main(void) {
  bool any = false;
  for (int l = 0; l < N_LEVELS; l++) any = any || qn_isa_supported(k_levels[l].isa);
  if (!any) qt_skip("no SIMD level of x86_kernels.h runs on this CPU / build");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exp),
      cmocka_unit_test(test_rmsnorm),
      cmocka_unit_test(test_swiglu),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_attention_bound),
      cmocka_unit_test(test_attention_one_hot),
      cmocka_unit_test(test_attention_grouped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
