// AVX2 pieces of the 4-bit decode kernels that matmul_quant_avx2.cpp and matmul_quant_avx512.cpp share. Include only
// after a `#pragma GCC target` that enables avx2 and f16c; everything here is static inline, so each unit gets its
// own copy compiled for its own target and nothing leaks into portable code (as simd_avx2.h).
#pragma once

#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"

// The 12 bytes of a Q4_K super-block's packed 6-bit scales and mins as 16 bytes: the four 32-bit words are rearranged
// so that bytes 0-7 are the scales and bytes 8-15 the mins. k4_scales makes them two vectors of 8 floats (times d and
// dmin).
template <typename Blk>  // BlockQ4_K or BlockQ5_K: the same d, dmin and scales
static inline __m128i k4_scale_min_bytes(const Blk* blk) {
  // One 16-byte load of d, dmin and the 12 scale bytes (words u0 u1 u2 in lanes 1-3), rearranged in registers: a
  // scalar unpack through memory stalls on store forwarding once per super-block and row.
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk));
  const __m128i p = _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 2, 3, 1));  // u0 u2 u1 u2
  const __m128i q = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 1, 1));  // u0 u0 u1 u1
  // scales 0-3 = u0 & 63, scales 4-7 = (u2 & 15) | (u0 >> 6) << 4, mins 0-3 = u1 & 63, mins 4-7 = (u2 >> 4 & 15) | (u1 >> 6) << 4
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(p, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i high = _mm_and_si128(_mm_srli_epi32(q, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm_or_si128(low, high);
}

// The 8 mins times dmin as floats, from k4_scale_min_bytes' bytes 8-15.
template <typename Blk>
static inline __m256 k4_mins(const Blk* blk, __m128i bytes) {
  return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(blk->dmin)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))));
}

// Touches the same super-block 4 rows on (the next row group), while this one computes: one-token decode streams the
// weights from DRAM.
template <typename Blk>
static inline void k4_prefetch_next(const Blk* blk, size_t row_bytes) {
  const char* next = reinterpret_cast<const char*>(blk) + 4 * row_bytes;
  _mm_prefetch(next, _MM_HINT_T0);
  _mm_prefetch(next + 64, _MM_HINT_T0);
  _mm_prefetch(next + 128, _MM_HINT_T0);
}

// Tokens per token tile of the several-token kernels: their int8 activations (TT, in) stay in L2 (~128 KiB) while a
// thread's rows stream past.
static inline int quant_token_tile(int in) {
  const int tt = 131072 / in;
  return tt < 16 ? 16 : tt > 256 ? 256 : tt;
}
