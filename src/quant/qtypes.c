/* qtypes.c: the traits table (one row per weight scheme) and the size arithmetic every
 * reader/writer of quantized tensors shares: row bytes, scale groups, bytes, bits/weight. */
#include <float.h>
#include <string.h>

#include "quant/pack_i8.h"
#include "quant/qtype.h"
#include "quant/quant_rows.h"

/* Which kernels run each scheme (src/kernels/matmul_multi.c decides; QN_ISA=ref forces the
 * scalar reference everywhere). */
#define FLOAT_KERNELS \
  "x86 AVX-512 / AVX2 dot kernels below 8 tokens, OpenBLAS sgemm from 8; scalar reference"
#define Q8_KERNELS "x86 AVX-512 / AVX2 dequantize-in-the-dot, any batch; scalar reference"
#define Q4_KERNELS                                                                       \
  "x86 AVX-512 VNNI / AVX2 on the packed i4x16 layout, activations rounded to 16 bits, " \
  "any batch; scalar reference"
#define SLOW_KERNELS                                                                     \
  "x86 AVX-512 / AVX2 dequantize-in-the-dot below 256 tokens, OpenBLAS sgemm from 256; " \
  "scalar reference"
#define I8_KERNELS                                                                      \
  "x86 AVX-512 VNNI / AVX2 integer GEMM on the packed layout, bit for bit the integer " \
  "reference (int8 x int8 -> int32)"
/* Measured with quench eval cmp against FP32 (docs/QUANTIZATION.md, "Schemes with int8
 * activations"): stories260K per story; pycode-19m 100 windows of 512. */
#define W8A8_DYNAMIC_ACCURACY                                                              \
  "near-lossless (mean KLD ~1.5e-3, top-1 ~98% on stories260K; KLD ~2.5e-3, PPL +0.3% on " \
  "pycode-19m): about 3-8x int8-channel's loss"
#define W4A8_ACCURACY                                                                 \
  "lossy, about int4-g32's loss plus 1-6% (mean KLD ~0.12 on stories260K, ~0.047 on " \
  "pycode-19m)"
/* Largest |w| for schemes with f32 scales: keeps every candidate scale and product finite. */
#define F32_SCALE_MAX_ABS 1e30f
/* Largest |w| for schemes with fp16 scales or minimums (the fp16 range). */
#define F16_MAX_ABS 65504.0f
/* Largest finite bfloat16. */
#define BF16_MAX_ABS 0x1.FEp127f

static const qn_qtype_traits k_traits[QN_QTYPE_COUNT] = {
    [QN_QTYPE_F32] = {"f32", 32, -1, QN_DTYPE_F32, false, FLOAT_KERNELS, "exact (the reference)",
                      "float32 weights, unchanged", FLT_MAX, qn_dequant_row_f32,
                      qn_quantize_row_f32},
    [QN_QTYPE_F16] = {"f16", 16, -1, QN_DTYPE_F32, false, FLOAT_KERNELS,
                      "near-exact: 11 significant bits, relative error <= 2^-11",
                      "IEEE half weights (range +-65504)", F16_MAX_ABS, qn_dequant_row_f16,
                      qn_quantize_row_f16},
    [QN_QTYPE_BF16] = {"bf16", 16, -1, QN_DTYPE_F32, false, FLOAT_KERNELS,
                       "near-exact: 8 significant bits, relative error <= 2^-8",
                       "bfloat16 weights (f32 range)", BF16_MAX_ABS, qn_dequant_row_bf16,
                       qn_quantize_row_bf16},
    [QN_QTYPE_Q8_C] = {"int8-channel", 8, 0, QN_DTYPE_F32, false, Q8_KERNELS,
                       "near-lossless (stories260K, plain RTN: mean KLD ~5e-4, top-1 ~99%)",
                       "int8 codes [-127,127], f32 scale per output row", F32_SCALE_MAX_ABS,
                       qn_dequant_row_q8_c, qn_quantize_row_q8_c},
    [QN_QTYPE_Q8_G32] = {"int8-g32", 8, 32, QN_DTYPE_F16, false, Q8_KERNELS,
                         "near-lossless; small groups follow outliers best",
                         "int8 codes [-127,127], fp16 scale per 32 columns", F16_MAX_ABS,
                         qn_dequant_row_q8_g, qn_quantize_row_q8_g32},
    [QN_QTYPE_Q8_G64] = {"int8-g64", 8, 64, QN_DTYPE_F16, false, Q8_KERNELS, "near-lossless",
                         "int8 codes [-127,127], fp16 scale per 64 columns", F16_MAX_ABS,
                         qn_dequant_row_q8_g, qn_quantize_row_q8_g64},
    [QN_QTYPE_Q8_G128] = {"int8-g128", 8, 128, QN_DTYPE_F16, false, Q8_KERNELS, "near-lossless",
                          "int8 codes [-127,127], fp16 scale per 128 columns", F16_MAX_ABS,
                          qn_dequant_row_q8_g, qn_quantize_row_q8_g128},
    [QN_QTYPE_Q4_G32] = {"int4-g32", 4, 32, QN_DTYPE_F16, false, Q4_KERNELS,
                         "lossy (stories260K, plain RTN: mean KLD ~0.16, top-1 ~80%); "
                         "--search reduces the loss; larger models suffer less",
                         "int4 codes [-8,7], 2 per byte, fp16 scale per 32 columns", F16_MAX_ABS,
                         qn_dequant_row_q4_g, qn_quantize_row_q4_g32},
    [QN_QTYPE_Q4_G64] = {"int4-g64", 4, 64, QN_DTYPE_F16, false, Q4_KERNELS,
                         "lossy; a little worse than int4-g32",
                         "int4 codes [-8,7], 2 per byte, fp16 scale per 64 columns", F16_MAX_ABS,
                         qn_dequant_row_q4_g, qn_quantize_row_q4_g64},
    [QN_QTYPE_Q4_G128] = {"int4-g128", 4, 128, QN_DTYPE_F16, false, Q4_KERNELS,
                          "lossy; worse than int4-g64 (one scale spans more outliers)",
                          "int4 codes [-8,7], 2 per byte, fp16 scale per 128 columns", F16_MAX_ABS,
                          qn_dequant_row_q4_g, qn_quantize_row_q4_g128},
    [QN_QTYPE_Q4A_G32] = {"int4a-g32", 4, 32, QN_DTYPE_F16, true, SLOW_KERNELS,
                          "lossy; better than int4-g32 on skewed groups, for 0.5 bit more",
                          "uint4 codes [0,15], 2 per byte, fp16 scale + fp16 min per 32 "
                          "columns",
                          F16_MAX_ABS, qn_dequant_row_q4a_g, qn_quantize_row_q4a_g32},
    [QN_QTYPE_Q4A_G64] = {"int4a-g64", 4, 64, QN_DTYPE_F16, true, SLOW_KERNELS,
                          "lossy; better than int4-g64 on skewed groups",
                          "uint4 codes [0,15], 2 per byte, fp16 scale + fp16 min per 64 "
                          "columns",
                          F16_MAX_ABS, qn_dequant_row_q4a_g, qn_quantize_row_q4a_g64},
    [QN_QTYPE_Q4A_G128] = {"int4a-g128", 4, 128, QN_DTYPE_F16, true, SLOW_KERNELS,
                           "lossy; better than int4-g128 on skewed groups",
                           "uint4 codes [0,15], 2 per byte, fp16 scale + fp16 min per 128 "
                           "columns",
                           F16_MAX_ABS, qn_dequant_row_q4a_g, qn_quantize_row_q4a_g128},
    [QN_QTYPE_F8_E4M3] = {"fp8-e4m3", 8, 0, QN_DTYPE_F32, false, SLOW_KERNELS,
                          "good: relative error <= 2^-4 per weight; between int8 and int4",
                          "OCP FP8 E4M3 codes (max 448), f32 scale per output row",
                          F32_SCALE_MAX_ABS, qn_dequant_row_f8_e4m3, qn_quantize_row_f8_e4m3},
    [QN_QTYPE_F8_E5M2] = {"fp8-e5m2", 8, 0, QN_DTYPE_F32, false, SLOW_KERNELS,
                          "fair: relative error <= 2^-3 per weight; coarser than fp8-e4m3",
                          "OCP FP8 E5M2 codes (max 57344), f32 scale per output row",
                          F32_SCALE_MAX_ABS, qn_dequant_row_f8_e5m2, qn_quantize_row_f8_e5m2},
    /* int8 activations: weights quantized exactly as int8-channel / int4-g32, then stored in
       the packed layouts of quant/pack_i8.h (their dequantizers read either layout) */
    [QN_QTYPE_W8A8_STATIC] = {"w8a8-static", 8, 0, QN_DTYPE_F32, false, I8_KERNELS,
                              "depends on calibration: one scale per tensor clips or coarsens "
                              "activation outliers (stories260K, min-max: mean KLD ~0.012, 8x "
                              "w8a8-dynamic's); choose the method, try --smooth",
                              "int8 codes [-127,127], f32 scale per output row; int8 "
                              "activations at one calibrated f32 scale per tensor (NAME.act_scale)",
                              F32_SCALE_MAX_ABS, qn_dequant_row_w8a8, qn_quantize_row_q8_c,
                              QN_ACT_I8_STATIC},
    [QN_QTYPE_W8A8_DYNAMIC] = {"w8a8-dynamic", 8, 0, QN_DTYPE_F32, false, I8_KERNELS,
                               W8A8_DYNAMIC_ACCURACY,
                               "int8 codes [-127,127], f32 scale per output row; int8 "
                               "activations, scale absmax/127 per token at run time",
                               F32_SCALE_MAX_ABS, qn_dequant_row_w8a8, qn_quantize_row_q8_c,
                               QN_ACT_I8_DYNAMIC},
    [QN_QTYPE_W4A8] = {"w4a8", 4, 32, QN_DTYPE_F16, false, I8_KERNELS, W4A8_ACCURACY,
                       "int4 codes [-8,7], 2 per byte, fp16 scale per 32 columns; int8 "
                       "activations, scale absmax/127 per token at run time",
                       F16_MAX_ABS, qn_dequant_row_q4_g, qn_quantize_row_q4_g32, QN_ACT_I8_DYNAMIC},
    [QN_QTYPE_Q3_G32] = {"int3-g32", 3, 32, QN_DTYPE_F16, false, SLOW_KERNELS,
                         "very lossy with RTN; use --method gptq (calibrated error "
                         "compensation) at 3 bits",
                         "int3 codes [-4,3], 3-bit bit stream, fp16 scale per 32 columns",
                         F16_MAX_ABS, qn_dequant_row_q3_g, qn_quantize_row_q3_g32},
    [QN_QTYPE_Q3_G64] = {"int3-g64", 3, 64, QN_DTYPE_F16, false, SLOW_KERNELS,
                         "very lossy with RTN; worse than int3-g32; use --method gptq",
                         "int3 codes [-4,3], 3-bit bit stream, fp16 scale per 64 columns",
                         F16_MAX_ABS, qn_dequant_row_q3_g, qn_quantize_row_q3_g64},
    [QN_QTYPE_Q3_G128] = {"int3-g128", 3, 128, QN_DTYPE_F16, false, SLOW_KERNELS,
                          "very lossy with RTN; worse than int3-g64; use --method gptq",
                          "int3 codes [-4,3], 3-bit bit stream, fp16 scale per 128 columns",
                          F16_MAX_ABS, qn_dequant_row_q3_g, qn_quantize_row_q3_g128},
};

const qn_qtype_traits* qn_qtype_traits_of(qn_qtype t) {
  return (unsigned)t < QN_QTYPE_COUNT ? &k_traits[t] : NULL;
}

int qn_qtype_from_name(const char* name) {
  if (!name) return -1;
  for (int i = 0; i < QN_QTYPE_COUNT; i++)
    if (strcmp(k_traits[i].name, name) == 0) return i;
  return -1;
}

uint64_t qn_qtype_row_bytes(qn_qtype t, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (!tr || cols < 0 || cols > INT64_MAX / 32) return 0;
  return ((uint64_t)cols * (uint64_t)tr->payload_bits + 7) / 8;
}

int64_t qn_qtype_n_groups(qn_qtype t, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  if (!tr || cols <= 0 || tr->group < 0) return 0;
  if (tr->group == 0) return 1;
  return cols / tr->group + (cols % tr->group != 0);
}

/* Bytes of one row's scales plus zeros. */
static uint64_t row_scale_bytes(qn_qtype t, int64_t cols) {
  const qn_qtype_traits* tr = qn_qtype_traits_of(t);
  uint64_t per = tr->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
  return (uint64_t)qn_qtype_n_groups(t, cols) * per * (tr->asymmetric ? 2u : 1u);
}

uint64_t qn_qtype_bytes(qn_qtype t, int64_t rows, int64_t cols) {
  if (!qn_qtype_traits_of(t) || rows < 0 || cols < 0 || cols > INT64_MAX / 32) return 0;
  qn_layout l = qn_qtype_packed_layout(t);
  if (l != QN_LAYOUT_ROWS) { /* stored packed: padding rows / columns included */
    uint64_t p = qn_packed_payload_bytes(t, rows, cols), sc = qn_packed_scale_bytes(t, rows, cols);
    if ((rows > 0 && (p == 0 || sc == 0)) || p > UINT64_MAX - sc) return 0;
    return p + sc;
  }
  uint64_t per_row = qn_qtype_row_bytes(t, cols) + row_scale_bytes(t, cols);
  uint64_t total;
  if (__builtin_mul_overflow(per_row, (uint64_t)rows, &total)) return 0;
  return total;
}

double qn_qtype_bpw(qn_qtype t, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return 0.0;
  uint64_t bytes = qn_qtype_bytes(t, rows, cols);
  return 8.0 * (double)bytes / ((double)rows * (double)cols);
}

static const char* const k_layout_names[] = {
    [QN_LAYOUT_ROWS] = "rows", [QN_LAYOUT_I8X16] = "i8x16", [QN_LAYOUT_I4X16] = "i4x16"};
#define N_LAYOUTS ((int)(sizeof k_layout_names / sizeof k_layout_names[0]))

const char* qn_layout_name(qn_layout l) {
  return (unsigned)l < (unsigned)N_LAYOUTS ? k_layout_names[l] : NULL;
}

int qn_layout_from_name(const char* name) {
  for (int i = 0; name && i < N_LAYOUTS; i++)
    if (strcmp(k_layout_names[i], name) == 0) return i;
  return -1;
}

/* ---- row addressing inside a whole matrix ------------------------------------------- */

static uint64_t scale_size(const qn_qtensor* w) {
  return qn_qtype_traits_of(w->type)->scale_dtype == QN_DTYPE_F16 ? 2 : 4;
}

const uint8_t* qn_qtensor_row_data(const qn_qtensor* w, int64_t r) {
  return (const uint8_t*)w->data + (uint64_t)r * qn_qtype_row_bytes(w->type, w->cols);
}

const void* qn_qtensor_row_scales(const qn_qtensor* w, int64_t r) {
  uint64_t off = (uint64_t)r * (uint64_t)qn_qtype_n_groups(w->type, w->cols) * scale_size(w);
  return (const uint8_t*)w->scales + off;
}

const void* qn_qtensor_row_zeros(const qn_qtensor* w, int64_t r) {
  uint64_t off = (uint64_t)r * (uint64_t)qn_qtype_n_groups(w->type, w->cols) * scale_size(w);
  return (const uint8_t*)w->zeros + off;
}
