// What the Q8_0 several-row tiles of matmul_q8_0_avx2.cpp and their AVX-512 VNNI twins in matmul_q8_0_avx512.cpp
// share: the tile signature the driver calls through, the VNNI tile table's declaration, and the prefetch of the next
// row group. Include only after a `#pragma GCC target` that enables avx2; the helper is static inline, so each unit
// gets its own copy compiled for its own target (as quant_avx2.h).
#pragma once

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

// y, ldy, xq, ldq, xd, ldd, w, ldw, b0, b1: see q8_tile in matmul_q8_0_avx2.cpp.
using Q8TileFn = void (*)(float*, int, const int8_t*, int, const float*, int, const BlockQ8_0*, int, int, int);

// matmul_q8_0_avx512.cpp: the AVX-512 VNNI tile for rn rows (1-4) x tn tokens (1-3), prefetching or not.
Q8TileFn q8_tile_vnni_fn(int rn, int tn, bool pf);

// Touches the next row group's bytes (R rows of contiguous blocks from `next`) as far as a tile of R rows has read
// its own after `done` blocks: the hardware prefetcher does not follow R interleaved row streams.
static inline void q8_prefetch_group(const char* next, int R, int done) {
  for (int l = 0; l < R * static_cast<int>(sizeof(BlockQ8_0)); l += 64)
    _mm_prefetch(next + static_cast<size_t>(done) * R * sizeof(BlockQ8_0) + l, _MM_HINT_T0);
}
