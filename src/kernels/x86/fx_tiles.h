/* fx_tiles.h: the order in which the x86 weight-only kernels (matvec_float_*.c,
 * matvec_q4_*.c) visit one call's rows and tokens, shared by both ISAs: tokens in tiles of
 * QN_FX_TOKEN_TILE (a tile's inputs stay in L2 while the rows stream past), within a tile
 * blocks of `rows_per_block` rows (single rows for the leftovers), and each block in passes
 * of at most `max_tokens` tokens. A row's result never depends on its block or pass. */
#ifndef QN_KERNELS_X86_FX_TILES_H
#define QN_KERNELS_X86_FX_TILES_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/x86/x86_kernels.h"

/* Runs rows r .. r + (full ? rows_per_block : 1) - 1 for tokens t0 .. t0 + T - 1. */
typedef void (*qn_fx_block_run)(const void* ctx, bool full, int T, int64_t r, int t0);

static inline void qn_fx_for_blocks(const void* ctx, qn_fx_block_run run, int64_t r0, int64_t r1,
                                    int n, int rows_per_block, int max_tokens) {
  for (int tile = 0; tile < n; tile += QN_FX_TOKEN_TILE) {
    const int tile_end = n - tile < QN_FX_TOKEN_TILE ? n : tile + QN_FX_TOKEN_TILE;
    for (int64_t r = r0; r < r1;) {
      const bool full = r1 - r >= rows_per_block;
      for (int t0 = tile; t0 < tile_end;) {
        const int T = tile_end - t0 < max_tokens ? tile_end - t0 : max_tokens;
        run(ctx, full, T, r, t0);
        t0 += T;
      }
      r += full ? rows_per_block : 1;
    }
  }
}

#endif
