// AVX-512 VNNI tiles of Q8_0 for several tokens (prefill, batched decode), driven by matmul_q8_0_rows_avx2 (which
// keeps one token on its AVX2 tiles: that path streams from DRAM, the integer work is not its limit). Same contract
// and same results, bit for bit, as the AVX2 tiles: only the block's integer dot is computed differently.
// Compiled for avx512f/bw/vl/vnni and called only after simd_use_avx512(); no STL (see matmul_q8_0_avx2.cpp).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"
#include "matmul_q8_0_tiles.h"
#include "simd_avx2.h"

// y[t*ldy + r] += sum_{b0 <= b < b1} d_w d_x (q_w . q_x) for R weight rows and TK tokens, in R*TK accumulators of 8
// lanes. `vpdpbusd` multiplies unsigned by signed bytes, so the activations go in offset by 128 (x ^ 0x80 = x + 128
// as a byte; the quantizer keeps x in -127..127) and each lane starts from -128 * (its 4 weights' sum), one
// `vpdpbusd` of 0x80 bytes per row and block, shared by the TK tokens: a lane ends at exactly the sum of its 4
// products, the int32 lane AVX2's maddubs + madd gives, and the float scaling is the same operations in the same
// order, so the result is the AVX2 tile's bit for bit. Per row and token: one `vpdpbusd`, a convert, a multiply and
// an FMA, against six operations on AVX2. PF: touch the next row group as this one is read (see the AVX2 tile).
template <int R, int TK, bool PF>
static void q8_tile_vnni(float* y, int ldy,
                         const int8_t* xq, int ldq,    // (TK, ldq) int8 activations
                         const float* xd, int ldd,     // (TK, ldd) their scales
                         const BlockQ8_0* w, int ldw,  // (R, ldw) blocks
                         int b0, int b1) {
  __m256 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm256_setzero_ps();
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  const char* next = reinterpret_cast<const char*>(w + static_cast<size_t>(R) * ldw + b0 * R);
  for (int b = b0; b < b1; b++) {
    if (PF)
      q8_prefetch_group(next, R, b - b0);
    __m256i xu[TK];
    __m256 dx[TK];
    for (int t = 0; t < TK; t++) {
      const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + static_cast<size_t>(t) * ldq + b * Q8_0_BLOCK));
      xu[t] = _mm256_xor_si256(qx, bias);
      dx[t] = _mm256_broadcast_ss(xd + static_cast<size_t>(t) * ldd + b);
    }
    for (int r = 0; r < R; r++) {
      const BlockQ8_0* blk = w + static_cast<size_t>(r) * ldw + b;
      const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
      const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, qw));
      const __m256 dw = _mm256_set1_ps(_cvtsh_ss(blk->d));
      for (int t = 0; t < TK; t++) {
        const __m256 p = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(start, xu[t], qw));
        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx[t]), p, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) y[static_cast<size_t>(t) * ldy + r] += hsum(acc[r][t]);
}

// The tile for rn rows (1-4) x tn tokens (1-3), prefetching or not; matmul_q8_0_rows_avx2 walks them.
Q8TileFn q8_tile_vnni_fn(int rn, int tn, bool pf) {
  static const Q8TileFn table[2][4][3] = {
      {{q8_tile_vnni<1, 1, false>, q8_tile_vnni<1, 2, false>, q8_tile_vnni<1, 3, false>},
       {q8_tile_vnni<2, 1, false>, q8_tile_vnni<2, 2, false>, q8_tile_vnni<2, 3, false>},
       {q8_tile_vnni<3, 1, false>, q8_tile_vnni<3, 2, false>, q8_tile_vnni<3, 3, false>},
       {q8_tile_vnni<4, 1, false>, q8_tile_vnni<4, 2, false>, q8_tile_vnni<4, 3, false>}},
      {{q8_tile_vnni<1, 1, true>, q8_tile_vnni<1, 2, true>, q8_tile_vnni<1, 3, true>},
       {q8_tile_vnni<2, 1, true>, q8_tile_vnni<2, 2, true>, q8_tile_vnni<2, 3, true>},
       {q8_tile_vnni<3, 1, true>, q8_tile_vnni<3, 2, true>, q8_tile_vnni<3, 3, true>},
       {q8_tile_vnni<4, 1, true>, q8_tile_vnni<4, 2, true>, q8_tile_vnni<4, 3, true>}},
  };
  return table[pf ? 1 : 0][rn - 1][tn - 1];
}
