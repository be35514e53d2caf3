/* test_fp_convert.c: fp16, bf16 and OCP FP8 (E4M3, E5M2) conversions checked exhaustively:
 * every code decodes to the value the format definition gives (computed here with ldexp),
 * every finite code survives encode(decode(c)), and encoding millions of f32 values agrees
 * with a nearest-value search over the format's value table (ties to even, overflow to inf
 * for IEEE formats, saturation for FP8). fp16 is also compared with the CPU's F16C
 * instructions when present. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/fp8.h"
#include "core/half.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* A binary floating-point format, as its definition states it. */
typedef struct fmt {
  const char* name;
  int bits;      /* total bits: 8 or 16 */
  int ebits;     /* exponent bits */
  int mbits;     /* mantissa bits */
  int bias;      /* exponent bias */
  bool ieee;     /* exponent all ones = inf (mantissa 0) / NaN; else only all-ones is NaN */
  bool saturate; /* encoder saturates finite overflow to max (FP8) instead of going to inf */
  uint32_t (*enc)(float);
  float (*dec)(uint32_t);
} fmt;

static uint32_t enc_f16(float f) { return qn_f32_to_f16(f); }
static float dec_f16(uint32_t c) { return qn_f16_to_f32((uint16_t)c); }
static uint32_t enc_bf16(float f) { return qn_f32_to_bf16(f); }
static float dec_bf16(uint32_t c) { return qn_bf16_to_f32((uint16_t)c); }
static uint32_t enc_e4m3(float f) { return qn_f32_to_fp8_e4m3(f); }
static float dec_e4m3(uint32_t c) { return qn_fp8_e4m3_to_f32((uint8_t)c); }
static uint32_t enc_e5m2(float f) { return qn_f32_to_fp8_e5m2(f); }
static float dec_e5m2(uint32_t c) { return qn_fp8_e5m2_to_f32((uint8_t)c); }

static const fmt k_f16 = {"f16", 16, 5, 10, 15, true, false, enc_f16, dec_f16};
static const fmt k_bf16 = {"bf16", 16, 8, 7, 127, true, false, enc_bf16, dec_bf16};
static const fmt k_e4m3 = {"e4m3", 8, 4, 3, 7, false, true, enc_e4m3, dec_e4m3};
static const fmt k_e5m2 = {"e5m2", 8, 5, 2, 15, true, true, enc_e5m2, dec_e5m2};

static uint32_t sign_mask(const fmt* F) { return 1u << (F->bits - 1); }

/* Value of code c by the definition: NAN for NaN codes. */
static double ref_decode(const fmt* F, uint32_t c) {
  uint32_t e = (c >> F->mbits) & ((1u << F->ebits) - 1);
  uint32_t m = c & ((1u << F->mbits) - 1);
  double s = (c & sign_mask(F)) ? -1.0 : 1.0;
  uint32_t e_ones = (1u << F->ebits) - 1;
  if (F->ieee && e == e_ones) return m ? NAN : s * INFINITY;
  if (!F->ieee && e == e_ones && m == (1u << F->mbits) - 1) return NAN;
  if (e == 0) return s * ldexp((double)m, 1 - F->bias - F->mbits);
  return s * ldexp((double)((1u << F->mbits) + m), (int)e - F->bias - F->mbits);
}

static bool is_nan_code(const fmt* F, uint32_t c) { return isnan(ref_decode(F, c)); }

/* Non-negative finite values of the format, ascending (code order), and how many. */
typedef struct value_table {
  double* v;
  uint32_t n;
} value_table;

static value_table make_table(const fmt* F) {
  value_table t = {malloc(sizeof(double) << (F->bits - 1)), 0};
  assert_non_null(t.v);
  for (uint32_t c = 0; c < sign_mask(F); c++) {
    double x = ref_decode(F, c);
    if (!isfinite(x)) break;
    if (t.n > 0) assert_true(x > t.v[t.n - 1]); /* codes are monotone */
    t.v[t.n++] = x;
  }
  return t;
}

/* Code the definition says x encodes to: nearest value, ties to the even code; overflow
 * follows IEEE (beyond max + half an ulp -> inf) or saturates. Returns UINT32_MAX for NaN. */
static uint32_t ref_encode(const fmt* F, const value_table* t, float x) {
  if (isnan(x)) return UINT32_MAX;
  uint32_t sign = signbit(x) ? sign_mask(F) : 0;
  double a = fabs((double)x);
  double max = t->v[t->n - 1];
  uint32_t inf_code = ((1u << F->ebits) - 1) << F->mbits;
  if (a >= max) {
    int emax = (int)((1u << F->ebits) - 2) - F->bias;
    double mid = (max + ldexp(1.0, emax + 1)) / 2; /* halfway to the next power of two */
    if (isinf(a)) return sign | (F->ieee ? inf_code : t->n - 1); /* E5M2 keeps inf */
    if (F->saturate || a < mid) return sign | (t->n - 1);
    return sign | inf_code;
  }
  uint32_t lo = 0, hi = t->n - 1; /* t->v[lo] <= a < t->v[hi] */
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if (t->v[mid] <= a)
      lo = mid;
    else
      hi = mid;
  }
  double mid = (t->v[lo] + t->v[hi]) / 2; /* exact: few significant bits */
  uint32_t c = a < mid ? lo : a > mid ? hi : ((lo & 1) ? hi : lo);
  return sign | c;
}

/* ---- decode: every code --------------------------------------------------------------- */

static void check_decode_all(const fmt* F) {
  for (uint32_t c = 0; c < (1u << F->bits); c++) {
    double want = ref_decode(F, c);
    float got = F->dec(c);
    if (isnan(want)) {
      if (!isnan(got)) fail_msg("%s code 0x%x: want NaN, got %g", F->name, c, (double)got);
      assert_int_equal(!!signbit(got), !!(c & sign_mask(F)));
    } else if ((double)got != want || !!signbit(got) != !!signbit(want)) {
      fail_msg("%s code 0x%x: want %.17g, got %.17g", F->name, c, want, (double)got);
    }
  }
}

static void test_decode_f16(void** s) {
  (void)s;
  check_decode_all(&k_f16);
}
static void test_decode_bf16(void** s) {
  (void)s;
  check_decode_all(&k_bf16);
}
static void test_decode_e4m3(void** s) {
  (void)s;
  check_decode_all(&k_e4m3);
  /* spot values from the OCP definition */
  assert_true(qn_fp8_e4m3_to_f32(0x7e) == 448.0f);
  assert_true(qn_fp8_e4m3_to_f32(0x01) == 0x1p-9f);
  assert_true(qn_fp8_e4m3_to_f32(0x08) == 0x1p-6f);
  assert_true(qn_fp8_e4m3_to_f32(0x38) == 1.0f);
  assert_true(isnan(qn_fp8_e4m3_to_f32(0x7f)) && isnan(qn_fp8_e4m3_to_f32(0xff)));
  assert_true(qn_fp8_e4m3_to_f32(0x78) == 256.0f); /* exponent 15 is finite in E4M3 */
}
static void test_decode_e5m2(void** s) {
  (void)s;
  check_decode_all(&k_e5m2);
  assert_true(qn_fp8_e5m2_to_f32(0x7b) == 57344.0f);
  assert_true(qn_fp8_e5m2_to_f32(0x01) == 0x1p-16f);
  assert_true(qn_fp8_e5m2_to_f32(0x3c) == 1.0f);
  assert_true(isinf(qn_fp8_e5m2_to_f32(0x7c)) && qn_fp8_e5m2_to_f32(0xfc) < 0);
  assert_true(isnan(qn_fp8_e5m2_to_f32(0x7d)));
}

/* ---- encode: round trips ---------------------------------------------------------------- */

static void check_roundtrip_all(const fmt* F) {
  for (uint32_t c = 0; c < (1u << F->bits); c++) {
    float x = F->dec(c);
    uint32_t back = F->enc(x);
    if (is_nan_code(F, c)) {
      if (!is_nan_code(F, back)) fail_msg("%s NaN code 0x%x encodes to 0x%x", F->name, c, back);
      assert_int_equal(back & sign_mask(F), c & sign_mask(F));
    } else if (back != c) {
      fail_msg("%s code 0x%x (%g) encodes back to 0x%x", F->name, c, (double)x, back);
    }
  }
}

static void test_roundtrip(void** s) {
  (void)s;
  check_roundtrip_all(&k_f16);
  check_roundtrip_all(&k_bf16);
  check_roundtrip_all(&k_e4m3);
  check_roundtrip_all(&k_e5m2);
}

/* ---- encode: midpoints, ties to even ------------------------------------------------------ */

/* For each pair of adjacent non-negative values: the midpoint goes to the even code, and the
 * f32 values just below/above it go down/up. */
static void check_midpoints(const fmt* F) {
  value_table t = make_table(F);
  for (uint32_t i = 0; i + 1 < t.n; i++) {
    float mid = (float)((t.v[i] + t.v[i + 1]) / 2);
    assert_true((double)mid == (t.v[i] + t.v[i + 1]) / 2); /* exact in f32 */
    uint32_t even = (i & 1) ? i + 1 : i;
    for (int neg = 0; neg < 2; neg++) {
      float sg = neg ? -1.0f : 1.0f;
      uint32_t sm = neg ? sign_mask(F) : 0;
      uint32_t got = F->enc(sg * mid);
      if (got != (sm | even))
        fail_msg("%s midpoint %.9g: want 0x%x got 0x%x", F->name, (double)(sg * mid), sm | even,
                 got);
      assert_int_equal(F->enc(sg * nextafterf(mid, 0.0f)), sm | i);
      assert_int_equal(F->enc(sg * nextafterf(mid, INFINITY)), sm | (i + 1));
    }
  }
  free(t.v);
}

static void test_midpoints(void** s) {
  (void)s;
  check_midpoints(&k_f16);
  check_midpoints(&k_bf16);
  check_midpoints(&k_e4m3);
  check_midpoints(&k_e5m2);
}

/* ---- encode: overflow, saturation, specials ------------------------------------------------ */

static void test_overflow_and_specials(void** s) {
  (void)s;
  /* fp16 follows IEEE: 65504 + 16 is the tie between max (odd) and inf: goes to inf */
  assert_int_equal(qn_f32_to_f16(65519.0f), 0x7bff);
  assert_int_equal(qn_f32_to_f16(65520.0f), 0x7c00);
  assert_int_equal(qn_f32_to_f16(-1e30f), 0xfc00);
  assert_int_equal(qn_f32_to_f16(0x1p-25f), 0x0000); /* tie with 0: even */
  assert_int_equal(qn_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
  assert_int_equal(qn_f32_to_f16(-0.0f), 0x8000);
  /* FP8 saturates finite values and never yields inf/NaN for them */
  const float big[] = {449.0f, 463.9f, 464.0f, 480.0f, 1e6f, 3.4e38f};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
    assert_int_equal(qn_f32_to_fp8_e4m3(big[i]), 0x7e);
    assert_int_equal(qn_f32_to_fp8_e4m3(-big[i]), 0xfe);
  }
  const float big5[] = {57345.0f, 61439.0f, 61440.0f, 65536.0f, 1e9f, 3.4e38f};
  for (size_t i = 0; i < sizeof big5 / sizeof big5[0]; i++) {
    assert_int_equal(qn_f32_to_fp8_e5m2(big5[i]), 0x7b);
    assert_int_equal(qn_f32_to_fp8_e5m2(-big5[i]), 0xfb);
  }
  /* infinities: E4M3 has none (saturates), E5M2 keeps them */
  assert_int_equal(qn_f32_to_fp8_e4m3(INFINITY), 0x7e);
  assert_int_equal(qn_f32_to_fp8_e4m3(-INFINITY), 0xfe);
  assert_int_equal(qn_f32_to_fp8_e5m2(INFINITY), 0x7c);
  assert_int_equal(qn_f32_to_fp8_e5m2(-INFINITY), 0xfc);
  /* NaN -> a NaN code with the sign kept */
  assert_true(isnan(qn_fp8_e4m3_to_f32(qn_f32_to_fp8_e4m3(NAN))));
  assert_true(isnan(qn_fp8_e5m2_to_f32(qn_f32_to_fp8_e5m2(-NAN))));
  assert_int_equal(qn_f32_to_fp8_e5m2(-NAN) & 0x80, 0x80);
  assert_true(isnan(qn_f16_to_f32(qn_f32_to_f16(NAN))));
  assert_true(isnan(qn_bf16_to_f32(qn_f32_to_bf16(NAN))));
  /* subnormal edges: half the smallest subnormal is a tie with 0 */
  assert_int_equal(qn_f32_to_fp8_e4m3(0x1p-10f), 0x00);
  assert_int_equal(qn_f32_to_fp8_e4m3(0x1.8p-10f), 0x01);
  assert_int_equal(qn_f32_to_fp8_e4m3(0x1.8p-9f), 0x02); /* 1.5 lsb: tie to even (2) */
  assert_int_equal(qn_f32_to_fp8_e5m2(0x1p-17f), 0x00);
  assert_int_equal(qn_f32_to_fp8_e5m2(-0x1.8p-16f), 0x82);
  assert_int_equal(qn_f32_to_fp8_e4m3(0x1p-149f), 0x00); /* f32 subnormal input */
  assert_int_equal(qn_f32_to_fp8_e4m3(-0.0f), 0x80);
}

/* ---- encode: millions of f32 values against the nearest-value search ---------------------- */

/* f32 bit patterns: every value of the top 19 bits with low-bit patterns that sit on, just
 * below and just above each format's rounding points, plus pseudo-random ones. */
static uint32_t next_rand(uint64_t* st) {
  *st = *st * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*st >> 32);
}

static void check_encode_sweep(const fmt* F) {
  value_table t = make_table(F);
  static const uint32_t lows[] = {0x0, 0x1, 0xfff, 0x1000, 0x1001, 0x1fff};
  uint64_t st = 12345;
  long bad = 0;
  for (uint32_t hi = 0; hi < (1u << 19); hi++) {
    for (size_t k = 0; k <= sizeof lows / sizeof lows[0]; k++) {
      uint32_t low = k < sizeof lows / sizeof lows[0] ? lows[k] : next_rand(&st) & 0x1fff;
      float x = qn_bits_f32((hi << 13) | low);
      uint32_t want = ref_encode(F, &t, x);
      uint32_t got = F->enc(x);
      bool ok = want == UINT32_MAX ? is_nan_code(F, got) : got == want;
      if (!ok && bad++ < 5)
        printf("%s: encode(%.9g = 0x%08x) want 0x%x got 0x%x\n", F->name, (double)x, qn_f32_bits(x),
               want, got);
    }
  }
  free(t.v);
  assert_int_equal(bad, 0);
}

static void test_encode_sweep_f16(void** s) {
  (void)s;
  check_encode_sweep(&k_f16);
}
static void test_encode_sweep_bf16(void** s) {
  (void)s;
  check_encode_sweep(&k_bf16);
}
static void test_encode_sweep_fp8(void** s) {
  (void)s;
  check_encode_sweep(&k_e4m3);
  check_encode_sweep(&k_e5m2);
}

/* ---- fp16 against the F16C instructions ----------------------------------------------------- */

#ifdef HAVE_X86
__attribute__((target("f16c"))) static float f16c_decode(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
__attribute__((target("f16c"))) static uint16_t f16c_encode(float f) {
  __m128i h = _mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT);
  return (uint16_t)_mm_extract_epi16(h, 0);
}
#endif

static void test_against_f16c(void** s) {
  (void)s;
#ifdef HAVE_X86
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("f16c")) {
    printf("F16C not available: skipping the hardware comparison\n");
    return;
  }
  for (uint32_t c = 0; c < 65536; c++) {
    float want = f16c_decode((uint16_t)c), got = qn_f16_to_f32((uint16_t)c);
    if (isnan(want)) {
      assert_true(isnan(got));
      assert_int_equal(!!signbit(want), !!signbit(got));
    } else if (qn_f32_bits(want) != qn_f32_bits(got)) {
      fail_msg("f16 0x%04x: F16C %.9g, ours %.9g", c, (double)want, (double)got);
    }
  }
  uint64_t st = 99;
  long bad = 0;
  for (uint32_t i = 0; i < (1u << 22); i++) {
    /* half sweep of the top bits with varied low bits, half fully random */
    uint32_t u = (i & 1) ? next_rand(&st) : ((i >> 1) << 11) | (next_rand(&st) & 0x7ff);
    float x = qn_bits_f32(u);
    uint16_t want = f16c_encode(x), got = qn_f32_to_f16(x);
    bool ok = isnan(x) ? ((got & 0x7c00) == 0x7c00 && (got & 0x3ff)) : want == got;
    if (!ok && bad++ < 5) printf("encode 0x%08x: F16C 0x%04x ours 0x%04x\n", u, want, got);
  }
  assert_int_equal(bad, 0);
#else
  printf("not x86: skipping the F16C comparison\n");
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_f16),
      cmocka_unit_test(test_decode_bf16),
      cmocka_unit_test(test_decode_e4m3),
      cmocka_unit_test(test_decode_e5m2),
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_midpoints),
      cmocka_unit_test(test_overflow_and_specials),
      cmocka_unit_test(test_encode_sweep_f16),
      cmocka_unit_test(test_encode_sweep_bf16),
      cmocka_unit_test(test_encode_sweep_fp8),
      cmocka_unit_test(test_against_f16c),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
