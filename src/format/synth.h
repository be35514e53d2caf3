/* synth.h: internals of the synthetic-model writer (the public entry points are
 * qn_synth_write and qn_synth_preset_at in quench.h). Exposed for tests: the random-number
 * stream, so a test can regenerate any block of any tensor and compare it with the file. */
#ifndef QN_FORMAT_SYNTH_H
#define QN_FORMAT_SYNTH_H

#include <stdint.h>

#include "quench.h"

/* Elements generated from one seeded stream: element e of tensor t comes from block
 * e / QN_SYNTH_BLOCK, whose stream depends only on (seed, t, block). */
#define QN_SYNTH_BLOCK 65536

/* Standard deviation of every weight matrix (embedding and output head included). */
#define QN_SYNTH_STD 0.02f

/* Fills out[0..n) (n <= QN_SYNTH_BLOCK, even) with N(0, std^2) samples of block `block` of
 * tensor number `tensor` (its index in the file) for this seed: Box-Muller over a
 * splitmix64 stream, two samples per 64-bit draw. */
void qn_synth_gaussian_block(uint64_t seed, int tensor, int64_t block, float std, float* out,
                             int64_t n);

#endif
