/* half.c: IEEE binary16 conversions written from the format definition
 * (1 sign bit, 5 exponent bits with bias 15, 10 mantissa bits; subnormals, inf, NaN). */
#include "core/half.h"

float qn_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13); /* inf or NaN (payload kept) */
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13); /* normal: rebias 15 -> 127 */
  } else if (man == 0) {
    u = sign; /* signed zero */
  } else {
    /* subnormal: value = man * 2^-24; normalise into an f32 normal */
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400));
    u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  return qn_bits_f32(u);
}

uint16_t qn_f32_to_f16(float f) {
  uint32_t u = qn_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff); /* NaN */
  if (a >= 0x47800000u) return sign | 0x7c00; /* >= 65536 (after rounding overflow) -> inf */
  if (a < 0x38800000u) {
    /* result is subnormal or zero: value / 2^-24, rounded to nearest even */
    if (a < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffff) | 0x800000; /* implicit 1 */
    uint32_t shift = 126 - e;               /* bits to drop so the lsb is 2^-24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return sign | (uint16_t)q;
  }
  /* normal: rebias and round mantissa 23 -> 10 bits, nearest even; carry may bump exp */
  uint32_t v = a - (112u << 23);
  uint32_t q = v >> 13;
  uint32_t rem = v & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
  if (q >= 0x7c00) return sign | 0x7c00;
  return sign | (uint16_t)q;
}

void qn_f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = qn_f16_to_f32(src[i]);
}

void qn_bf16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = qn_bf16_to_f32(src[i]);
}
