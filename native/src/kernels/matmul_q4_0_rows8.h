// Q4_0 at several tokens with 8 weight rows per 256-bit vector, for the AVX2 unit and its AVX-VNNI build
// (matmul_quant_avx2.cpp includes this after int8_dot_avx2.h; the AVX-512 twin, 16 rows per vector, is in
// matmul_rows16_avx512.cpp). Not the one-token rows: one token streams each row once from DRAM, and gathering 8 rows'
// blocks costs more than it saves there.
//
// Q4_0's f16 scale per 32 weights keeps every block's dot apart in floats, so a tile whose lanes run along k (the
// unpacking tile) spends a convert, a multiply and an FMA per 8 lanes for each block, row and token. Here the 8 lanes
// are 8 rows: a chunk of blocks of an 8-row group is repacked once per call into 8 vectors per block, vector g
// holding bytes 4g..4g+3 of each row's unpacked nibbles; dot_u8s8 with the token's 4 activation bytes of group g
// broadcast leaves, after 8 of them, each row's whole block dot in its int32 lane, and one convert and two FMAs per
// block serve 8 rows. y[t*out + r] += sum_b d_w[r,b] (d_x[t,b] dot(q_w, q_x) - 8 xs[t,b]), xs = d_x sum(q_x).
// Nibbles times int8 keep maddubs' pair sums inside int16 (2 * 15 * 127), so both builds give the same bits.
// Include only after the unit's `#pragma GCC target` and int8_dot_avx2.h; static, as quant_avx2.h.
#pragma once

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

constexpr int Q40_ROWS8 = 8;  // rows per group: the 8 lanes of a vector
constexpr int Q40_KC8 = 32;   // blocks repacked at a time: 32 x (8 + 1) vectors = 9 KiB, in L1
// From 8 tokens on the repacking pays for itself (at 4 the unpacking tile was 1.2x as fast; at 8 this was 1.0-1.25x).
constexpr int Q40_ROWS8_MIN_T = 8;

// Repacks blocks [b0, b0 + kc) of 8 rows (rows row_bytes apart) into wq (kc, 8) and their scales into dw (kc).
static void q4_0_pack8(__m256i* wq, __m256* dw, const uint8_t* w, size_t row_bytes, int b0, int kc) {
  const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int>(row_bytes)));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  // The low 16 bits of each dword into the low 8 bytes of its 128-bit lane.
  const __m256i halves = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  for (int b = 0; b < kc; b++) {
    const uint8_t* base = w + static_cast<size_t>(b0 + b) * sizeof(BlockQ4_0);
    // Each row's f16 d is the low half of the dword at the block's start.
    const __m256i d32 = _mm256_i32gather_epi32(reinterpret_cast<const int*>(base), rows, 1);
    const __m256i d16 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(d32, halves), 0x08);  // qwords 0, 2 low
    dw[b] = _mm256_cvtph_ps(_mm256_castsi256_si128(d16));
    for (int g = 0; g < 4; g++) {
      const __m256i v = _mm256_i32gather_epi32(reinterpret_cast<const int*>(base + 2 + 4 * g), rows, 1);
      wq[8 * b + g] = _mm256_and_si256(v, low4);                             // weights 4g..4g+3
      wq[8 * b + 4 + g] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);  // weights 16+4g..16+4g+3
    }
  }
}

template <int TN>
static void q4_0_rows8(float* y, int ldy,                                      // (TN, ldy), 8 rows
                       const int8_t* xq, int ldq,                             // (TN, ldq)
                       const float* xd, const float* xs, int ldd,             // (TN, ldd)
                       const __m256i* wq, const __m256* dw, int b0, int kc) {  // repacked blocks b0..b0+kc
  __m256 acc[TN];
  for (int t = 0; t < TN; t++) acc[t] = _mm256_setzero_ps();
  for (int b = 0; b < kc; b++) {
    const __m256i* wb = wq + 8 * b;
    // Half a block's vectors at a time stay in registers for all TN tokens: loads, not integer ops, are the limit.
    __m256i dot[TN];
    for (int t = 0; t < TN; t++) dot[t] = _mm256_setzero_si256();
    for (int h = 0; h < 8; h += 4) {
      const __m256i w0 = wb[h], w1 = wb[h + 1], w2 = wb[h + 2], w3 = wb[h + 3];
      for (int t = 0; t < TN; t++) {
        const int32_t* x = reinterpret_cast<const int32_t*>(xq + static_cast<size_t>(t) * ldq + (b0 + b) * 32) + h;
        dot[t] = dot_u8s8(dot[t], w0, _mm256_set1_epi32(x[0]));
        dot[t] = dot_u8s8(dot[t], w1, _mm256_set1_epi32(x[1]));
        dot[t] = dot_u8s8(dot[t], w2, _mm256_set1_epi32(x[2]));
        dot[t] = dot_u8s8(dot[t], w3, _mm256_set1_epi32(x[3]));
      }
    }
    for (int t = 0; t < TN; t++) {
      const size_t i = static_cast<size_t>(t) * ldd + b0 + b;
      const __m256 v = _mm256_fmsub_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_set1_ps(xd[i]), _mm256_set1_ps(8.0f * xs[i]));
      acc[t] = _mm256_fmadd_ps(v, dw[b], acc[t]);
    }
  }
  for (int t = 0; t < TN; t++) {
    float* yt = y + static_cast<size_t>(t) * ldy;
    _mm256_storeu_ps(yt, _mm256_add_ps(_mm256_loadu_ps(yt), acc[t]));
  }
}

using Q40Rows8Fn = void (*)(float*, int, const int8_t*, int, const float*, const float*, int, const __m256i*,
                            const __m256*, int, int);

// Rows [r0, r0 + 8 n) of a several-token Q4_0 matmul, n the whole 8-row groups in [r0, r1); returns the rows done
// (the caller's tiles take the rest).
static int q4_0_gemm_rows8(float* y, const int8_t* xq, const float* xd, const float* xs, const uint8_t* w, int T,
                           int in, int out, int r0, int r1) {
  static const Q40Rows8Fn fns[4] = {q4_0_rows8<1>, q4_0_rows8<2>, q4_0_rows8<3>, q4_0_rows8<4>};
  constexpr int TN = 4;  // tokens per pass: 4 dots, 4 accumulators and 4 weight vectors fit the 16 ymm registers
  const int nb = in / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * sizeof(BlockQ4_0);
  const int groups = (r1 - r0) / Q40_ROWS8;
  __m256i wq[Q40_KC8 * 8];
  __m256 dw[Q40_KC8];
  for (int gi = 0; gi < groups; gi++) {
    const int r = r0 + gi * Q40_ROWS8;
    for (int b0 = 0; b0 < nb; b0 += Q40_KC8) {
      const int kc = nb - b0 < Q40_KC8 ? nb - b0 : Q40_KC8;
      // The gathers read 8 rows at once, interleaved streams the hardware prefetcher does not follow: touch the
      // next chunk (the next group's first at a group's end) while this one is packed and multiplied.
      const int nb0 = b0 + Q40_KC8 < nb ? b0 + Q40_KC8 : 0, ngi = nb0 == 0 ? gi + 1 : gi;
      if (ngi < groups) {
        const int nkc = nb - nb0 < Q40_KC8 ? nb - nb0 : Q40_KC8;
        const char* nx = reinterpret_cast<const char*>(w) + static_cast<size_t>(r0 + ngi * Q40_ROWS8) * row_bytes +
                         static_cast<size_t>(nb0) * sizeof(BlockQ4_0);
        for (int i = 0; i < Q40_ROWS8; i++)
          for (size_t l = 0; l < static_cast<size_t>(nkc) * sizeof(BlockQ4_0); l += 64) _mm_prefetch(nx + i * row_bytes + l, _MM_HINT_T0);
      }
      q4_0_pack8(wq, dw, w + static_cast<size_t>(r) * row_bytes, row_bytes, b0, kc);
      for (int t = 0; t < T; t += TN) {
        const int tn = T - t < TN ? T - t : TN;
        fns[tn - 1](y + static_cast<size_t>(t) * out + r, out, xq + static_cast<size_t>(t) * in, in,
                    xd + static_cast<size_t>(t) * nb, xs + static_cast<size_t>(t) * nb, nb, wq, dw, b0, kc);
      }
    }
  }
  return groups * Q40_ROWS8;
}
