/* x86_kernels.h: the SIMD kernels of src/kernels/x86/{avx2,avx512}/. Each ISA folder is
 * compiled with only its own flags (CMakeLists.txt) and is called only after dispatch.c has
 * checked the CPU supports it. Every kernel has a scalar reference it is tested against on
 * odd sizes (tests/unit/test_kernels_*.c): integer kernels bit for bit, float kernels
 * within the bound stated at their definition. */
#ifndef QN_KERNELS_X86_KERNELS_H
#define QN_KERNELS_X86_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/i8_act.h"
#include "quant/qtype.h"

/* ---- weight-only schemes (float activations), dequantization inside the dot product ----
 * For n tokens and rows r0..r1-1:
 *   Y[t * rows + r] = sum_c w[r][c] * X[t * cols + c]
 * `prep` holds per-call preprocessed activations (e.g. de-interleaved for int4 nibbles),
 * computed once by qn_fx_prep_* and shared by every thread. Tokens are taken
 * QN_FX_TOKEN_TILE at a time (all rows for one tile, then the next), so a tile's inputs stay
 * in L2 while the rows stream past. From qn_fx_blas_min_tokens(t) tokens on, dequantizing
 * blocks into OpenBLAS sgemm is faster (measured on the tinyllama-1.1b shape, 2 threads,
 * docs/BENCHMARKS.md): f32/f16/bf16 from QN_BLAS_MIN_TOKENS; int4a, int3 and fp8, whose
 * decoding costs more per weight, from QN_FX_BLAS_SLOW_DECODE; int8 and int4 never (the
 * largest batch, 512, is still faster here). */
#define QN_FX_TOKEN_TILE 32
#define QN_FX_BLAS_SLOW_DECODE 256
bool qn_fx_supports(qn_qtype t); /* schemes with an x86 kernel */
/* W is in the layout its scheme's x86 kernel reads: int4-gN packed (QN_LAYOUT_I4X16, as
 * .qnz files store it), every other scheme canonical rows. An int4-gN weight in canonical
 * rows (a .qnz written before int4 was packed) runs through the reference kernel instead. */
bool qn_fx_handles(const qn_qtensor* W);
int qn_fx_blas_min_tokens(qn_qtype t); /* batches this large go to BLAS (INT_MAX: never) */
size_t qn_fx_prep_floats(const qn_qtensor* W, int n); /* floats of prep */
void qn_fx_prep_avx2(const qn_qtensor* W, const float* X, int n, float* prep);
void qn_fx_prep_avx512(const qn_qtensor* W, const float* X, int n, float* prep);
void qn_fx_rows_avx2(const qn_qtensor* W, const float* X, const float* prep, int n, float* Y,
                     int64_t r0, int64_t r1);
void qn_fx_rows_avx512(const qn_qtensor* W, const float* X, const float* prep, int n, float* Y,
                       int64_t r0, int64_t r1);
/* int4-gN (packed i4x16), reached through qn_fx_prep_* / qn_fx_rows_*: 16-bit activations
 * split into two signed bytes (fx_q4.h), vpdpbusd / vpmaddubsw over the codes. Any r0 < r1:
 * the kernels compute whole 16-row blocks and store only rows r0 .. r1-1. */
void qn_q4_prep_avx2(const qn_qtensor* W, const float* X, int n, float* prep);
void qn_q4_prep_avx512(const qn_qtensor* W, const float* X, int n, float* prep);
void qn_q4_rows_avx2(const qn_qtensor* W, const float* prep, int n, float* Y, int64_t r0,
                     int64_t r1);
void qn_q4_rows_avx512(const qn_qtensor* W, const float* prep, int n, float* Y, int64_t r0,
                       int64_t r1);

/* ---- schemes with int8 activations (packed layouts of quant/pack_i8.h) ----
 * qn_i8_act_quantize_*: tokens t0..t1-1, bit-exact with qn_i8_act_quantize_ref.
 * qn_i8_rows_*: rows 16*rb0 .. min(16*rb1, rows)-1 of Y (n x rows) from the packed W and
 * the quantized activations, bit-exact with qn_matmul_i8_ref. */
void qn_i8_act_quantize_avx2(qn_i8_act* a, const float* X, int64_t t0, int64_t t1);
void qn_i8_act_quantize_avx512(qn_i8_act* a, const float* X, int64_t t0, int64_t t1);
void qn_i8_rows_avx2(const qn_qtensor* W, const qn_i8_act* a, float* Y, int64_t rb0, int64_t rb1);
void qn_i8_rows_avx512(const qn_qtensor* W, const qn_i8_act* a, float* Y, int64_t rb0, int64_t rb1);

/* ---- element-wise ops and attention (float; bounds at their definitions) ---- */
void qn_rmsnorm_avx2(float* out, const float* x, const float* w, int n, float eps);
void qn_rmsnorm_avx512(float* out, const float* x, const float* w, int n, float eps);
void qn_swiglu_avx2(float* gate, const float* up, int64_t n);
void qn_swiglu_avx512(float* gate, const float* up, int64_t n);
/* y[i] = e^x[i] (y may be x): within 1 ulp of expf where the result is normal, same
 * overflow/underflow thresholds (ops_avx*.c). */
void qn_exp_avx2(float* y, const float* x, int64_t n);
void qn_exp_avx512(float* y, const float* x, int64_t n);
/* In-place softmax (qn_softmax_ref's contract). */
void qn_softmax_avx2(float* x, int n);
void qn_softmax_avx512(float* x, int n);
/* One query head over n_pos cached positions (qn_attn_head_ref's contract). */
void qn_attn_head_avx2(const float* q, const float* k, const float* v, size_t kv_stride, int n_pos,
                       int head_dim, float scale, float* att, float* out);
void qn_attn_head_avx512(const float* q, const float* k, const float* v, size_t kv_stride,
                         int n_pos, int head_dim, float scale, float* att, float* out);
/* n_q query heads sharing one key/value head (qn_attn_heads' contract): bit-identical to
 * qn_attn_head_avx512 per head, with each chunk of keys and values read once for all heads. */
void qn_attn_heads_avx512(const float* q, int n_q, const float* k, const float* v, size_t kv_stride,
                          int n_pos, int head_dim, float scale, float* att, float* out);

#endif
