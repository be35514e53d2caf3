/* fp8.h: OCP 8-bit floating point (OFP8) <-> f32 conversions.
 *
 * E4M3: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits. No infinities; S.1111.111 is NaN,
 *       so the largest finite value is S.1111.110 = 1.75 * 2^8 = 448. Subnormals m * 2^-9.
 * E5M2: 1 sign, 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like: exponent 31 holds
 *       infinities (mantissa 0) and NaNs. Largest finite 1.75 * 2^15 = 57344; subnormals
 *       m * 2^-16.
 * Encoding rounds to nearest, ties to even (subnormals included), and saturates: a finite
 * input beyond the largest finite value becomes +-max, never inf or NaN. NaN becomes a NaN
 * code with the input's sign; +-inf becomes +-max for E4M3 (it has no inf) and +-inf for
 * E5M2. Decoding is exact (every FP8 value is an f32). */
#ifndef QN_CORE_FP8_H
#define QN_CORE_FP8_H

#include <stdint.h>

#define QN_FP8_E4M3_MAX 448.0f
#define QN_FP8_E5M2_MAX 57344.0f

uint8_t qn_f32_to_fp8_e4m3(float f);
float qn_fp8_e4m3_to_f32(uint8_t c);
uint8_t qn_f32_to_fp8_e5m2(float f);
float qn_fp8_e5m2_to_f32(uint8_t c);

#endif
