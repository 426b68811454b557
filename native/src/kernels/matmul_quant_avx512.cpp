// AVX-512 VNNI one-token decode of Q4_K and Q4_0 (contract of matmul_quant_rows_avx2's direct path): a 512-bit
// vector holds two 32-weight blocks, `vpdpbusd` multiplies their unsigned nibbles with the int8 activations and
// sums each 4 products into int32 (no int16 step), and one permute spreads the two blocks' scales over its halves.
// Nine instructions per 64 weights and row where the AVX2 kernel needs fourteen. Compiled for avx512f/bw/vl/vnni
// and called only after simd_use_avx512(); no STL (see matmul_q8_0_avx2.cpp). Shares quant_avx2.h with the AVX2 unit.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12's _mm512_insert*64x4 / extract*64x4 pass an undefined vector as the unused mask source, which -Wall
// reports as (maybe-)uninitialized inside the intrinsics header; nothing here reads an uninitialized value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "quant_avx2.h"
#include "simd_avx2.h"


template <int R>
static void q4_k_rows(float* y, const int8_t* xq, const float* xd, const float* xs, const uint8_t* w,
                      size_t row_bytes, int nsb) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m512 acc[R];
  __m256 off[R];
  for (int r = 0; r < R; r++) {
    acc[r] = _mm512_setzero_ps();
    off[r] = _mm256_setzero_ps();
  }
  for (int u = 0; u < nsb; u++) {
    __m512 sx[R];  // d * sc_j * d_x of the super-block's 8 blocks, in the low 8 lanes
    const __m256 dx = _mm256_loadu_ps(xd + u * 8), sumx = _mm256_loadu_ps(xs + u * 8);
    for (int r = 0; r < R; r++) {
      const BlockQ4_K* blk = reinterpret_cast<const BlockQ4_K*>(w + r * row_bytes) + u;
      sx[r] = _mm512_zextps256_ps512(k4_row_start(blk, row_bytes, dx, sumx, &off[r]));
    }
    for (int g = 0; g < 4; g++) {
      const int b = u * 8 + 2 * g;  // activation blocks b (low nibbles) and b + 1 (high), 64 bytes together
      const __m512i qx = _mm512_loadu_si512(xq + b * 32);
      const __m512i idx = _mm512_set_epi32(2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1,
                                           2 * g + 1, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g, 2 * g);
      for (int r = 0; r < R; r++) {
        const BlockQ4_K* blk = reinterpret_cast<const BlockQ4_K*>(w + r * row_bytes) + u;
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32 * g));
        const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        const __m512i w4 = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w4, qx);
        acc[r] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, sx[r]), _mm512_cvtepi32_ps(dot), acc[r]);
      }
    }
  }
  for (int r = 0; r < R; r++) y[r] += _mm512_reduce_add_ps(acc[r]) + hsum(off[r]);
}

template <int R>
static void q4_0_rows(float* y, const int8_t* xq, const float* xd, const float* xs, const uint8_t* w,
                      size_t row_bytes, int nb) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m512 acc[R];
  float off[R];
  for (int r = 0; r < R; r++) {
    acc[r] = _mm512_setzero_ps();
    off[r] = 0.0f;
  }
  int b = 0;
  for (; b + 2 <= nb; b += 2) {  // two blocks per 512-bit vector
    const __m512i qx = _mm512_loadu_si512(xq + b * 32);
    for (int r = 0; r < R; r++) {
      const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(w + r * row_bytes) + b;
      if ((b & 3) == 0) _mm_prefetch(reinterpret_cast<const char*>(blk) + 4 * row_bytes, _MM_HINT_T0);
      const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs));
      const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs));
      const __m256i w0 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v0, 4), v0), low4);
      const __m256i w1 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v1, 4), v1), low4);
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_inserti64x4(_mm512_zextsi256_si512(w0), w1, 1), qx);
      const float d0 = _cvtsh_ss(blk[0].d), d1 = _cvtsh_ss(blk[1].d);
      // (d0 dx0 x16 | d1 dx1 x16) halves; insertf64x4 is AVX512F, insertf32x8 would need DQ.
      const __m512 s = _mm512_castpd_ps(
          _mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(d0 * xd[b])), _mm256_castps_pd(_mm256_set1_ps(d1 * xd[b + 1])), 1));
      acc[r] = _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(dot), acc[r]);
      off[r] -= 8.0f * (d0 * xs[b] + d1 * xs[b + 1]);
    }
  }
  for (; b < nb; b++) {  // an odd last block: 256-bit, as the AVX2 kernel
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
    for (int r = 0; r < R; r++) {
      const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(w + r * row_bytes) + b;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
      const __m256i w4 = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), low4);
      const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w4, qx);
      const float d = _cvtsh_ss(blk->d);
      acc[r] = _mm512_add_ps(acc[r], _mm512_zextps256_ps512(_mm256_mul_ps(_mm256_set1_ps(d * xd[b]), _mm256_cvtepi32_ps(dot))));
      off[r] -= 8.0f * d * xs[b];
    }
  }
  for (int r = 0; r < R; r++) y[r] += _mm512_reduce_add_ps(acc[r]) + off[r];
}

using Rows512Fn = void (*)(float*, const int8_t*, const float*, const float*, const uint8_t*, size_t, int);

bool decode_rows_avx512(float* y, const int8_t* xq, const float* xd, const float* xs, const uint8_t* w,
                        WeightType type, int in, int r0, int r1) {
  static const Rows512Fn q4k[4] = {q4_k_rows<1>, q4_k_rows<2>, q4_k_rows<3>, q4_k_rows<4>};
  static const Rows512Fn q40[4] = {q4_0_rows<1>, q4_0_rows<2>, q4_0_rows<3>, q4_0_rows<4>};
  const Rows512Fn* fns = type == WEIGHT_Q4_K ? q4k : type == WEIGHT_Q4_0 ? q40 : nullptr;
  if (fns == nullptr) return false;
  const int units = in / quant_block_elems(type);
  const size_t row_bytes = static_cast<size_t>(units) * quant_block_bytes(type);
  for (int r = r0; r < r1; r += 4) {
    const int rn = r1 - r < 4 ? r1 - r : 4;
    fns[rn - 1](y + r, xq, xd, xs, w + static_cast<size_t>(r) * row_bytes, row_bytes, units);
  }
  return true;
}
