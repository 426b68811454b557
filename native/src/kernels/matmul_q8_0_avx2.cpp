// AVX2 kernels of matmul_q8_0_forward (see matmul_q8_0.cpp for the contracts and the portable twins): the int8
// activation quantizer and the register-tiled block dot. Compiled for avx2,fma,f16c and only called after
// simd_use_avx2(); like matmul_avx2.cpp it holds no inline library code (STL), so no AVX2 instantiation of a shared
// inline function can leak into portable callers. matmul_int8_avxvnni.cpp compiles the tiles again for AVX-VNNI
// (int8_dot_avx2.h); the quantizer is compiled here only.
#if !defined(INT8_DOT_AVXVNNI)
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <stdint.h>

#include "int8_dot_avx2.h"
#include "kernels.h"
#include "matmul_q8_0_tiles.h"
#include "simd_avx2.h"

#if !defined(INT8_DOT_AVXVNNI)

// Bit-identical to quantize_activations_portable: the max is exact in any order, d and 1/d are the same scalar
// IEEE operations, and _mm256_round_ps(NEAREST) is nearbyint's nearest-even. gb: 32-blocks per scale (1 or 8).
void quantize_activations_avx2(int8_t* qs,      // (T, in)
                                    float* d,        // (T, in/32)
                                    const float* x,  // (T, in)
                                    int T, int in, int gb) {
  const int nb = in / Q8_0_BLOCK;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const int rnd = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (int t = 0; t < T; t++)
    for (int g = 0; g < nb; g += gb) {
      __m256 m = _mm256_setzero_ps();
      for (int b = g; b < g + gb; b++) {
        const float* xb = x + static_cast<size_t>(t) * in + b * Q8_0_BLOCK;
        for (int j = 0; j < Q8_0_BLOCK; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)));
      }
      __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
      m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
      const float db = _mm_cvtss_f32(m4) / 127.0f;
      const float id = db != 0.0f ? 1.0f / db : 0.0f;
      const __m256 mul = _mm256_set1_ps(id);
      for (int b = g; b < g + gb; b++) {
        const float* xb = x + static_cast<size_t>(t) * in + b * Q8_0_BLOCK;
        d[static_cast<size_t>(t) * nb + b] = db;
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb), mul), rnd));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 8), mul), rnd));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 16), mul), rnd));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 24), mul), rnd));
        // The packs interleave 128-bit lanes: dwords come out as (i0 lo, i1 lo, i2 lo, i3 lo, i0 hi, ...); perm
        // restores element order.
        i0 = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        i0 = _mm256_permutevar8x32_epi32(i0, perm);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + static_cast<size_t>(t) * in + b * Q8_0_BLOCK), i0);
      }
    }
}
#endif

// y[t*ldy + r] += sum_{b0 <= b < b1} d_w d_x (q_w . q_x) for R weight rows and TK tokens, in R*TK accumulators of
// 8 lanes. The sign trick: maddubs multiplies unsigned by signed bytes, so the weights go in as |q_w| and their
// sign moves onto q_x. It is this way round (not llama.cpp's |q_x|, sign on q_w) because a file's weights may hold
// -128, whose negation overflows, while the activation quantizer never makes it; |-128| read unsigned is 128, and
// a pair sum is at most 2 * 128 * 127 = 32512, inside int16. The block dot is exact; its f32 scaling is not.
template <int R, int TK, bool PF>
static void q8_tile(float* y, int ldy,
                    const int8_t* xq, int ldq,  // (TK, ldq) int8 activations
                    const float* xd, int ldd,   // (TK, ldd) their scales
                    const BlockQ8_0* w, int ldw,  // (R, ldw) blocks
                    int b0, int b1) {
  __m256 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm256_setzero_ps();
  // Decode streams weights from DRAM: touch the next row group (contiguous, R*ldw blocks on) while this one
  // computes, as many bytes per iteration as this iteration consumes (as the bf16 kernel does); PF for the first
  // tokens of a tile only (the rest read these rows from L1). The hardware prefetcher does not follow R interleaved
  // row streams: 4-stream decode ran slower than 1-stream without this.
  const char* next = reinterpret_cast<const char*>(w + static_cast<size_t>(R) * ldw + b0 * R);
  for (int b = b0; b < b1; b++) {
    if (PF)
      q8_prefetch_group(next, R, b - b0);
    __m256i qx[TK];
    __m256 dx[TK];
    for (int t = 0; t < TK; t++) {
      qx[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + static_cast<size_t>(t) * ldq + b * Q8_0_BLOCK));
      dx[t] = _mm256_broadcast_ss(xd + static_cast<size_t>(t) * ldd + b);
    }
    for (int r = 0; r < R; r++) {
      const BlockQ8_0* blk = w + static_cast<size_t>(r) * ldw + b;
      const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
      const __m256i aw = _mm256_sign_epi8(qw, qw);
      const __m256 dw = _mm256_set1_ps(_cvtsh_ss(blk->d));
      for (int t = 0; t < TK; t++) {
        const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(_mm256_setzero_si256(), aw, _mm256_sign_epi8(qx[t], qw)));
        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx[t]), p, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) y[static_cast<size_t>(t) * ldy + r] += hsum(acc[r][t]);
}

static Q8TileFn q8_tile_fn(int rn, int tn, bool pf) {
  static const Q8TileFn table[2][4][2] = {
      {{q8_tile<1, 1, false>, q8_tile<1, 2, false>},
       {q8_tile<2, 1, false>, q8_tile<2, 2, false>},
       {q8_tile<3, 1, false>, q8_tile<3, 2, false>},
       {q8_tile<4, 1, false>, q8_tile<4, 2, false>}},
      {{q8_tile<1, 1, true>, q8_tile<1, 2, true>},
       {q8_tile<2, 1, true>, q8_tile<2, 2, true>},
       {q8_tile<3, 1, true>, q8_tile<3, 2, true>},
       {q8_tile<4, 1, true>, q8_tile<4, 2, true>}},
  };
  return table[pf ? 1 : 0][rn - 1][tn - 1];
}

void INT8_FN(matmul_q8_0_rows)(float* y,            // (T, out)
                               const int8_t* xq,    // (T, in)
                               const float* xd,     // (T, in/32)
                               const BlockQ8_0* w,  // (out, in/32)
                               int T, int in, int out, int r0, int r1) {
  const int nb = in / Q8_0_BLOCK;
  // Register block: 4 rows x 2 tokens (8 accumulators + 2 x vectors + temporaries fit the 16 ymm registers); with
  // AVX-512 VNNI (32 registers, several tokens) 4 rows x 3 tokens. One token stays on AVX2: it streams from DRAM.
  const int R = 4;
  const bool vnni = T > 1 && simd_use_avx512();
  const int TK = T == 1 ? 1 : vnni ? 3 : 2;
  // Token tile: its int8 x (TT, in) stays in L2 (~128 KiB) while this thread's rows stream past it.
  int TT = 131072 / in;
  TT = TT < 16 ? 16 : TT > 256 ? 256 : TT;
  // Block chunk: for long rows, R rows x KB blocks (<= 64 blocks, ~8.7 KiB) stay in L1 across the token tile.
  const int KB = nb <= 96 ? nb : 64;
  for (int t0 = 0; t0 < T; t0 += TT) {
    const int t1 = t0 + TT < T ? t0 + TT : T;
    for (int b0 = 0; b0 < nb; b0 += KB) {
      const int b1 = b0 + KB < nb ? b0 + KB : nb;
      for (int r = r0; r < r1; r += R) {
        const int rn = r1 - r < R ? r1 - r : R;
        const BlockQ8_0* wr = w + static_cast<size_t>(r) * nb;
        for (int t = t0; t < t1; t += TK) {
          const int tn = t1 - t < TK ? t1 - t : TK;
          const Q8TileFn tile = vnni ? q8_tile_vnni_fn(rn, tn, t == t0) : q8_tile_fn(rn, tn, t == t0);
          tile(y + static_cast<size_t>(t) * out + r, out, xq + static_cast<size_t>(t) * in, in, xd + static_cast<size_t>(t) * nb,
               nb, wr, nb, b0, b1);
        }
      }
    }
  }
}
