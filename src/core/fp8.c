/* fp8.c: OCP FP8 (E4M3, E5M2) conversions written from the format definition; see fp8.h. */
#include "core/fp8.h"

#include <stdbool.h>

#include "core/half.h"

/* The parameters that tell the two OCP formats apart. */
typedef struct fp8_format {
  int man_bits;     /* mantissa bits m (3 or 2) */
  int bias;         /* exponent bias (7 or 15) */
  bool has_inf;     /* exponent all ones means inf/NaN (E5M2), else only S.1111.111 is NaN */
  uint8_t max_code; /* magnitude code of the largest finite value */
  uint8_t nan_code; /* magnitude code written for NaN */
  uint8_t inf_code; /* magnitude code written for +-inf (max_code when there is no inf) */
} fp8_format;

static const fp8_format k_e4m3 = {3, 7, false, 0x7e, 0x7f, 0x7e};
static const fp8_format k_e5m2 = {2, 15, true, 0x7b, 0x7e, 0x7c};

/* Rounds f to the nearest value of the format (ties to even) and returns its code. */
static uint8_t fp8_encode(const fp8_format* F, float f) {
  uint32_t u = qn_f32_bits(f);
  uint8_t sign = (uint8_t)((u >> 24) & 0x80);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | F->nan_code;
  if (a == 0x7f800000u) return sign | F->inf_code;
  /* a = mant * 2^(e - 23) with mant < 2^24 */
  int e = (int)(a >> 23) - 127;
  uint32_t mant = a & 0x7fffffu;
  if ((a >> 23) == 0)
    e = -126; /* f32 subnormal or zero: no implicit bit */
  else
    mant |= 0x800000u;
  int emin = 1 - F->bias;
  int m = F->man_bits;
  /* The result's last mantissa bit weighs 2^(max(e, emin) - m); drop that many bits. */
  int shift = 23 - m + (e < emin ? emin - e : 0);
  if (shift >= 25) return sign; /* below half the smallest subnormal: rounds to zero */
  uint32_t q = mant >> shift;
  uint32_t rem = mant & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1))) q++;
  /* Normal: q in [2^m, 2^(m+1)]; a carry into 2^(m+1) moves into the exponent field
   * by the addition itself. Subnormal: q in [0, 2^m]; q = 2^m is the smallest normal. */
  int32_t code = e >= emin ? ((e + F->bias) << m) + (int32_t)q - (1 << m) : (int32_t)q;
  if (code > F->max_code) code = F->max_code; /* saturate */
  return sign | (uint8_t)code;
}

/* Exact value of code c. */
static float fp8_decode(const fp8_format* F, uint8_t c) {
  uint32_t sign = (uint32_t)(c & 0x80) << 24;
  int m = F->man_bits;
  uint32_t mag = c & 0x7fu;
  uint32_t exp = mag >> m;
  uint32_t man = mag & ((1u << m) - 1);
  uint32_t exp_ones = 0x7fu >> m;
  if (F->has_inf && exp == exp_ones)
    return qn_bits_f32(sign | 0x7f800000u | (man ? 0x400000u : 0)); /* inf or quiet NaN */
  if (!F->has_inf && mag == 0x7f) return qn_bits_f32(sign | 0x7fc00000u);
  if (exp == 0) {
    /* subnormal: man * 2^(1 - bias - m); the power of two is a normal f32 */
    float step = qn_bits_f32((uint32_t)(127 + 1 - F->bias - m) << 23);
    float v = (float)man * step;
    return sign ? -v : v;
  }
  return qn_bits_f32(sign | ((exp - (uint32_t)F->bias + 127u) << 23) | (man << (23 - m)));
}

uint8_t qn_f32_to_fp8_e4m3(float f) { return fp8_encode(&k_e4m3, f); }
float qn_fp8_e4m3_to_f32(uint8_t c) { return fp8_decode(&k_e4m3, c); }
uint8_t qn_f32_to_fp8_e5m2(float f) { return fp8_encode(&k_e5m2, f); }
float qn_fp8_e5m2_to_f32(uint8_t c) { return fp8_decode(&k_e5m2, c); }
