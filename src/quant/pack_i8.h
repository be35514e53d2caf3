/* pack_i8.h: the kernel layouts of the schemes multiplied with VNNI-style 8-bit dot products
 * (w8a8-static, w8a8-dynamic, w4a8, and the weight-only int4-gN), produced once at
 * quantization time and stored as-is in .qnz files (docs/FORMAT.md, "Packed layouts").
 * Quantizers and calibration work on the canonical row-major layout; a qn_qtensor whose
 * `layout` is not QN_LAYOUT_ROWS holds the packed one.
 *
 * QN_LAYOUT_I8X16 (w8a8-*): R16 = rows rounded up to 16, C4 = cols rounded up to 4.
 *   payload: R16 * C4 bytes. Weight code q in [-127, 127] of (row r, column c) is stored as
 *   the unsigned byte q + 128 at
 *     ((r / 16) * (C4 / 4) + c / 4) * 64 + (r % 16) * 4 + c % 4
 *   so one 64-byte load holds 4 consecutive columns of 16 consecutive rows: the unsigned
 *   operand of one AVX-512 VNNI vpdpbusd, the activations (signed) being the other. Padding
 *   bytes are 128 (q = 0). scales: f32 [rows], unchanged (one per row).
 *   Kernels correct the +128 with 128 * (sum of the token's activation codes).
 *
 * QN_LAYOUT_I4X16 (w4a8, int4-g32/g64/g128): R16 as above, G = ceil(cols / 32) blocks of 32
 *   columns, NG = ceil(cols / group) scale groups (group = 32 for w4a8, N for int4-gN).
 *   payload: R16 * G * 16 bytes = (R16 / 16) * G blocks of 256 bytes; block (r / 16, g) at
 *   ((r / 16) * G + g) * 256 holds rows r..r+15 of columns 32 g .. 32 g + 31 as 4 chunks of
 *   64 bytes. In chunk j (0..3), byte (r % 16) * 4 + i (i = 0..3) holds, as q + 8 in [0, 15]:
 *     low nibble:  column 32 g + 8 j + i
 *     high nibble: column 32 g + 8 j + 4 + i
 *   Padding codes are 8 (q = 0). scales: fp16 [(R16 / 16) * NG * 16]: the 16 scales of rows
 *   r / 16 * 16 .. +15 in scale group s are contiguous at ((r / 16) * NG + s) * 16 + r % 16;
 *   padding scales are 0. A 16-row block's payload and its scales are each one contiguous
 *   run, in the order a kernel walks them.
 *   Kernels correct the +8 with 8 * (sum of the token's activations in the group). */
#ifndef QN_QUANT_PACK_I8_H
#define QN_QUANT_PACK_I8_H

#include <stddef.h>
#include <stdint.h>

#include "quant/qtype.h"

/* The packed layout scheme t uses (QN_LAYOUT_ROWS when it has none). */
qn_layout qn_qtype_packed_layout(qn_qtype t);

/* Bytes of the packed payload / scales of a rows x cols matrix of scheme t (0 for a scheme
 * without a packed layout, for a negative size, or when the size would overflow 64 bits). */
uint64_t qn_packed_payload_bytes(qn_qtype t, int64_t rows, int64_t cols);
uint64_t qn_packed_scale_bytes(qn_qtype t, int64_t rows, int64_t cols);

/* Packs canonical payload/scales (row-major, as the scheme's quantize_row writes them) of a
 * rows x cols matrix of scheme t into the packed buffers (sized by the functions above).
 * For I8X16 the scales are copied unchanged. */
void qn_pack_i8(qn_qtype t, int64_t rows, int64_t cols, const void* payload, const void* scales,
                void* packed_payload, void* packed_scales);

/* Codes of row r of a packed tensor as int8 (w8a8: [-127, 127]; i4x16: [-8, 7]) into
 * out[cols], and for i4x16 the row's fp16 scales (NG values) into scales16 (may be NULL). */
void qn_packed_row_codes(const qn_qtensor* w, int64_t r, int8_t* out, uint16_t* scales16);

#endif
