// Q4_0 and Q5_0 at 1-7 tokens, one row at a time on pair-layout activations: the 256-bit row kernel of the AVX2
// unit, its AVX-VNNI build (matmul_quant_avx2.cpp includes this after int8_dot_avx2.h) and the AVX-512 VNNI unit
// (matmul_q4_0_avx512.cpp, with the EVEX `vpdpbusd` and more tokens per pass). Not the several-token kernels from 8
// tokens on (matmul_q4_0_rows8.h, and matmul_rows16_avx512.cpp).
//
// The driver (matmul_quant_forward) hands these rows each token's activations with the middle 16-byte quarters of
// every 32-block pair swapped (q4_pair_activations): a pair's 16 nibble bytes of each block side by side in one
// vector then give the low nibbles (weights 0-15 of both blocks) and the high ones (16-31) with one mask and one
// shift, each multiplied by one contiguous 32-byte load of activations, so no cross-lane shuffle is spent on the
// nibbles. A row is one sequential stream (prefetched 4 rows on), read once per pass of tokens; one-token decode
// streams it from DRAM, and four interleaved rows (the unpacking path's tile) left the hardware prefetcher behind.
// Q5_0 (the type llama-quantize gives a Q4_K_M file's matrices whose rows are not a multiple of 256, as SmolLM2's
// 576) adds its fifth bits to the nibbles (under a byte mask with AVX-512 BW) and takes 16 instead of 8 off. 5-bit
// values times int8 keep maddubs' pair sums inside int16 (2 * 31 * 127), so the AVX2 and AVX-VNNI builds give the
// same bits.
// Include only after the unit's `#pragma GCC target` and int8_dot_avx2.h; static, as quant_avx2.h.
#pragma once

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "simd_avx2.h"

// Tokens per pass over a row: with AVX-512's 32 vector registers 4 tokens' accumulators, offsets and scales stay in
// registers; with 16, 4 tokens spilled (0.7x the speed of 2 or 3 a pass, in=576, T=4).
#if defined(INT8_DOT_AVX512VNNI)
constexpr int Q40_PAIR_TOKENS = 4;
#else
constexpr int Q40_PAIR_TOKENS = 2;
#endif

template <bool FIFTH> struct Q4PairBlock { using type = BlockQ4_0; };  // (no <type_traits>: no STL in these units)
template <> struct Q4PairBlock<true> { using type = BlockQ5_0; };

// Bit i of m as 0x10 in byte i (Q5_0's fifth bits in place over the nibbles).
static inline __m256i q5_0_fifth_bits(uint32_t m) {
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(m)), spread), bit);
  return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

// Two blocks' values side by side, low nibbles (weights 0-15 of block 0, then of block 1) in *lo and high ones (16-31)
// in *hi, with Q5_0's fifth bits: bit j of qh goes to weight j. PAIR false: block 0 alone, zeros in the high 128 bits.
template <bool FIFTH, bool PAIR = true>
static inline void q4_pair_values(const typename Q4PairBlock<FIFTH>::type* blk, __m256i* lo, __m256i* hi) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs));
  const __m256i v = PAIR ? _mm256_inserti128_si256(_mm256_castsi128_si256(v0), _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs)), 1)
                         : _mm256_zextsi128_si256(v0);
  *lo = _mm256_and_si256(v, low4);
  *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  if constexpr (FIFTH) {
    uint32_t h0, h1 = 0;
    memcpy(&h0, blk[0].qh, 4);
    if (PAIR) memcpy(&h1, blk[1].qh, 4);
#if defined(INT8_DOT_AVX512VNNI)
    // AVX-512 BW: the bits as a byte mask, 16 added where set (the nibbles are below 16, so add is or).
    const __m256i sixteen = _mm256_set1_epi8(0x10);
    *lo = _mm256_mask_add_epi8(*lo, static_cast<__mmask32>((h0 & 0xFFFFu) | (h1 << 16)), *lo, sixteen);
    *hi = _mm256_mask_add_epi8(*hi, static_cast<__mmask32>((h0 >> 16) | (h1 & 0xFFFF0000u)), *hi, sixteen);
#else
    *lo = _mm256_or_si256(*lo, q5_0_fifth_bits((h0 & 0xFFFFu) | (h1 << 16)));
    *hi = _mm256_or_si256(*hi, q5_0_fifth_bits((h0 >> 16) | (h1 & 0xFFFF0000u)));
#endif
  }
}

// y[t*ldy] += dot(row, x_t) for TK tokens (1-4). Per 8 blocks their f16 scales (stride 18 bytes, 8 scalar loads into
// one vector: a gather ran at 0.75x) times each token's activation scales, and the -8 offset is one FMA with the
// activation sums; per pair and token, two dot_u8s8, a convert, a permute and an FMA.
template <int TK, bool FIFTH>
static void q4_row_pairs8(float* y, int ldy,                                   // (TK, ldy)
                          const int8_t* xp, int ldq,                           // (TK, ldq) pair layout
                          const float* xd, const float* xs, int ldd,           // (TK, ldd)
                          const uint8_t* w, size_t row_bytes, int nb, bool prefetch) {  // (nb) blocks
  using Blk = typename Q4PairBlock<FIFTH>::type;
  const float zero_point = FIFTH ? 16.0f : 8.0f;
  // One token keeps two accumulators (alternating pairs) so its FMA chain is not the limit.
  constexpr int NA = TK == 1 ? 2 : 1;
  __m256 acc[TK][NA], off[TK];
  float tail[TK];
  for (int t = 0; t < TK; t++) {
    for (int a = 0; a < NA; a++) acc[t][a] = _mm256_setzero_ps();
    off[t] = _mm256_setzero_ps();
    tail[t] = 0.0f;
  }
  int b = 0;
  for (; b + 8 <= nb; b += 8) {
    const uint8_t* base = w + static_cast<size_t>(b) * sizeof(Blk);
    if (prefetch)
      for (int l = 0; l < 8 * static_cast<int>(sizeof(Blk)); l += 64) _mm_prefetch(reinterpret_cast<const char*>(base) + 4 * row_bytes + l, _MM_HINT_T0);
    const Blk* bq = reinterpret_cast<const Blk*>(base);
    __m128i h = _mm_cvtsi32_si128(bq[0].d);
    h = _mm_insert_epi16(h, bq[1].d, 1);
    h = _mm_insert_epi16(h, bq[2].d, 2);
    h = _mm_insert_epi16(h, bq[3].d, 3);
    h = _mm_insert_epi16(h, bq[4].d, 4);
    h = _mm_insert_epi16(h, bq[5].d, 5);
    h = _mm_insert_epi16(h, bq[6].d, 6);
    h = _mm_insert_epi16(h, bq[7].d, 7);
    const __m256 d = _mm256_cvtph_ps(h);
    __m256 s8[TK];
    for (int t = 0; t < TK; t++) {
      s8[t] = _mm256_mul_ps(d, _mm256_loadu_ps(xd + static_cast<size_t>(t) * ldd + b));
      off[t] = _mm256_fmadd_ps(d, _mm256_loadu_ps(xs + static_cast<size_t>(t) * ldd + b), off[t]);
    }
    for (int p = 0; p < 4; p++) {
      __m256i lo, hi;
      q4_pair_values<FIFTH>(bq + 2 * p, &lo, &hi);
      // Lanes 0-3 of a dot hold block 2p's share, 4-7 block 2p + 1's.
      const __m256i pick = _mm256_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1);
      for (int t = 0; t < TK; t++) {
        const int8_t* x = xp + static_cast<size_t>(t) * ldq + (b + 2 * p) * 32;
        __m256i dot = dot_u8s8(_mm256_setzero_si256(), lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
        dot = dot_u8s8(dot, hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
        acc[t][p % NA] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_permutevar8x32_ps(s8[t], pick), acc[t][p % NA]);
      }
    }
  }
  for (; b + 2 <= nb; b += 2) {  // the pairs after the last 8 blocks, their scales one by one
    const Blk* blk = reinterpret_cast<const Blk*>(w) + b;
    __m256i lo, hi;
    q4_pair_values<FIFTH>(blk, &lo, &hi);
    const float d0 = _cvtsh_ss(blk[0].d), d1 = _cvtsh_ss(blk[1].d);
    for (int t = 0; t < TK; t++) {
      const int8_t* x = xp + static_cast<size_t>(t) * ldq + b * 32;
      const float* dx = xd + static_cast<size_t>(t) * ldd + b;
      const float* sx = xs + static_cast<size_t>(t) * ldd + b;
      __m256i dot = dot_u8s8(_mm256_setzero_si256(), lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
      dot = dot_u8s8(dot, hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
      acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set_m128(_mm_set1_ps(d1 * dx[1]), _mm_set1_ps(d0 * dx[0])), acc[t][0]);
      tail[t] -= zero_point * (d0 * sx[0] + d1 * sx[1]);
    }
  }
  if (b < nb) {  // an unpaired last block, in order in xp: its values in the low 128 bits, zeros above
    const Blk* blk = reinterpret_cast<const Blk*>(w) + b;
    __m256i lo, hi;
    q4_pair_values<FIFTH, false>(blk, &lo, &hi);
    const float dd = _cvtsh_ss(blk->d);
    for (int t = 0; t < TK; t++) {
      const int8_t* x = xp + static_cast<size_t>(t) * ldq + b * 32;
      const __m256i x0 = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
      const __m256i x1 = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16)));
      const __m256i dot = dot_u8s8(dot_u8s8(_mm256_setzero_si256(), lo, x0), hi, x1);
      const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(dot), _mm256_extracti128_si256(dot, 1));
      const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      const int32_t sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1)));
      const size_t i = static_cast<size_t>(t) * ldd + b;
      tail[t] += dd * xd[i] * static_cast<float>(sum) - zero_point * dd * xs[i];
    }
  }
  for (int t = 0; t < TK; t++) {
    __m256 a = acc[t][0];
    for (int k = 1; k < NA; k++) a = _mm256_add_ps(a, acc[t][k]);
    y[static_cast<size_t>(t) * ldy] += hsum(a) - zero_point * hsum(off[t]) + tail[t];
  }
}

using Q4Pairs8Fn = void (*)(float*, int, const int8_t*, int, const float*, const float*, int, const uint8_t*, size_t,
                            int, bool);

// Rows [r0, r1) of a Q4_0 or Q5_0 matmul at 1-7 tokens (activations in the pair layout): one row at a time, its
// blocks read once per pass of Q40_PAIR_TOKENS tokens.
static void q4_pair_rows8(float* y, const int8_t* xp, const float* xd, const float* xs, const uint8_t* w,
                          WeightType type, int T, int in, int out, int r0, int r1) {
  static const Q4Pairs8Fn q40[4] = {q4_row_pairs8<1, false>, q4_row_pairs8<2, false>, q4_row_pairs8<3, false>,
                                    q4_row_pairs8<4, false>};
  static const Q4Pairs8Fn q50[4] = {q4_row_pairs8<1, true>, q4_row_pairs8<2, true>, q4_row_pairs8<3, true>,
                                    q4_row_pairs8<4, true>};
  const Q4Pairs8Fn* fns = type == WEIGHT_Q5_0 ? q50 : q40;
  const int nb = in / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * quant_block_bytes(type);
  for (int r = r0; r < r1; r++)
    for (int t = 0; t < T; t += Q40_PAIR_TOKENS) {
      const int tn = T - t < Q40_PAIR_TOKENS ? T - t : Q40_PAIR_TOKENS;
      fns[tn - 1](y + static_cast<size_t>(t) * out + r, out, xp + static_cast<size_t>(t) * in, in, xd + static_cast<size_t>(t) * nb,
                  xs + static_cast<size_t>(t) * nb, nb, w + static_cast<size_t>(r) * row_bytes, row_bytes, nb, t == 0 && r + 4 < r1);
    }
}
