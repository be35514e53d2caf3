/* half.h: scalar fp16 <-> f32 and bf16 <-> f32 conversions (exact, round-to-nearest-even). */
#ifndef QN_CORE_HALF_H
#define QN_CORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t qn_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float qn_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* bf16 -> f32 is a shift. */
static inline float qn_bf16_to_f32(uint16_t h) { return qn_bits_f32((uint32_t)h << 16); }

/* f32 -> bf16, round to nearest even; NaN stays NaN (quiet). */
static inline uint16_t qn_f32_to_bf16(float f) {
  uint32_t u = qn_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

float qn_f16_to_f32(uint16_t h);
uint16_t qn_f32_to_f16(float f);

/* Row conversions. */
void qn_f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
void qn_bf16_to_f32_row(const uint16_t* src, float* dst, int64_t n);

#endif
