// AVX-512 VNNI kernels of Q4_0 (called by matmul_quant_rows_avx2 and decode_rows_avx512). Q4_0's f16 scale per 32
// weights keeps every block's dot apart in floats, so the work is in spending few float ops per block: below 8
// tokens a row at a time on activations rearranged per block pair (`vpdpbusd` on the nibbles as they lie, scales
// gathered 16 blocks at a time, each row read once for up to 4 tokens); from 8 tokens on 16 rows per vector (a block's
// dot for 16 rows in one vector of int32). Compiled for avx512f/bw/vl/vnni and called only after simd_use_avx512();
// no STL (see matmul_q8_0_avx2.cpp).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12's _mm512_insert*64x4 / extract*64x4 pass an undefined vector as the unused mask source, which -Wall
// reports as (maybe-)uninitialized inside the intrinsics header; nothing here reads an uninitialized value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"
#include "simd_avx2.h"

// Q4_0 at 1-4 tokens, one row, 256-bit, on activations whose block pairs come with their middle quarters swapped
// (q4_0_pair_activations): a pair's 16 nibble bytes of each block side by side in one vector give the low nibbles
// (weights 0-15 of both blocks) and the high ones (16-31) with one mask and one shift, each multiplied by one
// contiguous 32-byte load of activations, so no cross-lane shuffle is spent on the nibbles, and each further token
// costs two `vpdpbusd`, a convert, a permute and an FMA per pair. Per 16 blocks their f16 scales come in one gather
// (stride 18 bytes) times each token's activation scales, and the -8 offset is one FMA with the activation sums.
// y[t*ldy] += dot(row, x_t).
template <int TK>
static void q4_0_row_pairs(float* y, int ldy,                                    // (TK, ldy)
                           const int8_t* xp, int ldq,                            // (TK, ldq) pair layout
                           const float* xd, const float* xs, int ldd,            // (TK, ldd)
                           const uint8_t* w, size_t row_bytes, int nb, bool prefetch) {  // (nb) blocks
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                        _mm512_set1_epi32(static_cast<int>(sizeof(BlockQ4_0))));
  // One token keeps two accumulators (alternating pairs) so its FMA chain is not the limit.
  constexpr int NA = TK == 1 ? 2 : 1;
  __m256 acc[TK][NA];
  __m512 off[TK];
  float tail[TK];
  for (int t = 0; t < TK; t++) {
    for (int a = 0; a < NA; a++) acc[t][a] = _mm256_setzero_ps();
    off[t] = _mm512_setzero_ps();
    tail[t] = 0.0f;
  }
  int b = 0;
  for (; b + 16 <= nb; b += 16) {
    const uint8_t* base = w + static_cast<size_t>(b) * sizeof(BlockQ4_0);
    if (prefetch)
      for (int l = 0; l < 16 * static_cast<int>(sizeof(BlockQ4_0)); l += 64) _mm_prefetch(reinterpret_cast<const char*>(base) + 4 * row_bytes + l, _MM_HINT_T0);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(at, base, 1)));
    __m256 s8[TK][2];
    for (int t = 0; t < TK; t++) {
      const __m512 s16 = _mm512_mul_ps(d, _mm512_loadu_ps(xd + static_cast<size_t>(t) * ldd + b));
      off[t] = _mm512_fmadd_ps(d, _mm512_loadu_ps(xs + static_cast<size_t>(t) * ldd + b), off[t]);
      s8[t][0] = _mm512_castps512_ps256(s16);
      s8[t][1] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s16), 1));
    }
    for (int p = 0; p < 8; p++) {
      const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(base) + 2 * p;
      const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs))),
                                                _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs)), 1);
      const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      // Lanes 0-3 of a dot hold block 2p's share, 4-7 block 2p + 1's.
      const int e = (2 * p) & 7;
      const __m256i pick = _mm256_setr_epi32(e, e, e, e, e + 1, e + 1, e + 1, e + 1);
      for (int t = 0; t < TK; t++) {
        const int8_t* x = xp + static_cast<size_t>(t) * ldq + (b + 2 * p) * 32;
        __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
        dot = _mm256_dpbusd_epi32(dot, hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
        acc[t][p % NA] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_permutevar8x32_ps(s8[t][p >> 2], pick), acc[t][p % NA]);
      }
    }
  }
  for (; b + 2 <= nb; b += 2) {  // the pairs after the last 16, their scales one by one
    const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(w) + b;
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[0].qs))),
                                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[1].qs)), 1);
    const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    const float d0 = _cvtsh_ss(blk[0].d), d1 = _cvtsh_ss(blk[1].d);
    for (int t = 0; t < TK; t++) {
      const int8_t* x = xp + static_cast<size_t>(t) * ldq + b * 32;
      const float* dx = xd + static_cast<size_t>(t) * ldd + b;
      const float* sx = xs + static_cast<size_t>(t) * ldd + b;
      __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
      dot = _mm256_dpbusd_epi32(dot, hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32)));
      acc[t][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set_m128(_mm_set1_ps(d1 * dx[1]), _mm_set1_ps(d0 * dx[0])), acc[t][0]);
      tail[t] -= 8.0f * (d0 * sx[0] + d1 * sx[1]);
    }
  }
  for (; b < nb; b++) {  // an unpaired last block, in order in xp
    const BlockQ4_0* blk = reinterpret_cast<const BlockQ4_0*>(w) + b;
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
    const __m128i lo = _mm_and_si128(v, _mm256_castsi256_si128(low4)), hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm256_castsi256_si128(low4));
    const float dd = _cvtsh_ss(blk->d);
    for (int t = 0; t < TK; t++) {
      const int8_t* x = xp + static_cast<size_t>(t) * ldq + b * 32;
      __m128i dot = _mm_dpbusd_epi32(_mm_setzero_si128(), lo, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
      dot = _mm_dpbusd_epi32(dot, hi, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16)));
      const __m128i s2 = _mm_add_epi32(dot, _mm_shuffle_epi32(dot, 0x4E));
      const int32_t sum = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1)));
      const size_t i = static_cast<size_t>(t) * ldd + b;
      tail[t] += dd * xd[i] * static_cast<float>(sum) - 8.0f * dd * xs[i];
    }
  }
  for (int t = 0; t < TK; t++) {
    __m256 a = acc[t][0];
    for (int k = 1; k < NA; k++) a = _mm256_add_ps(a, acc[t][k]);
    y[static_cast<size_t>(t) * ldy] += hsum(a) - 8.0f * _mm512_reduce_add_ps(off[t]) + tail[t];
  }
}

using Q40PairsFn = void (*)(float*, int, const int8_t*, int, const float*, const float*, int, const uint8_t*, size_t,
                            int, bool);

// Rows [r0, r1) of a Q4_0 matmul at 1-7 tokens (activations in the pair layout): one row at a time (one sequential
// stream, prefetched 4 rows on), its blocks read once for up to 4 tokens.
void q4_0_pair_rows_avx512(float* y, const int8_t* xp, const float* xd, const float* xs, const uint8_t* w, int T,
                           int in, int out, int r0, int r1) {
  static const Q40PairsFn fns[4] = {q4_0_row_pairs<1>, q4_0_row_pairs<2>, q4_0_row_pairs<3>, q4_0_row_pairs<4>};
  const int nb = in / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * sizeof(BlockQ4_0);
  for (int r = r0; r < r1; r++)
    for (int t = 0; t < T; t += 4) {
      const int tn = T - t < 4 ? T - t : 4;
      fns[tn - 1](y + static_cast<size_t>(t) * out + r, out, xp + static_cast<size_t>(t) * in, in, xd + static_cast<size_t>(t) * nb,
                  xs + static_cast<size_t>(t) * nb, nb, w + static_cast<size_t>(r) * row_bytes, row_bytes, nb, t == 0 && r + 4 < r1);
    }
}

// One token's activations rearranged for q4_0_row_pairs: in each pair of 32-blocks the middle two 16-byte
// quarters swap (block 2q's 0-15, block 2q + 1's 0-15, block 2q's 16-31, block 2q + 1's 16-31); an unpaired last
// block stays as it is.
void q4_0_pair_activations(int8_t* xp, const int8_t* xq, int in) {
  const int nb = in / 32;
  int b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m128i* src = reinterpret_cast<const __m128i*>(xq + b * 32);
    __m128i* dst = reinterpret_cast<__m128i*>(xp + b * 32);
    _mm_storeu_si128(dst + 0, _mm_loadu_si128(src + 0));
    _mm_storeu_si128(dst + 1, _mm_loadu_si128(src + 2));
    _mm_storeu_si128(dst + 2, _mm_loadu_si128(src + 1));
    _mm_storeu_si128(dst + 3, _mm_loadu_si128(src + 3));
  }
  for (int k = b * 32; k < in; k++) xp[k] = xq[k];
}

// ---- Q4_0 at several tokens: 16 rows per vector -------------------------------------------------------------------
// Q4_0's f16 scale per 32 weights keeps every block's dot apart in floats, so a tile whose lanes run along k spends a
// convert and a multiply-add per 8 lanes for each block, row and token. Here the 16 lanes of a vector are 16 weight
// rows instead: a block of a 16-row group is repacked (gathered once per call) into 8 vectors, vector g holding bytes
// 4g..4g+3 of each row's unpacked nibbles; `vpdpbusd` multiplies one with the token's 4 activation bytes of group g
// broadcast, and after 8 of them each lane holds one row's whole block dot in int32: one convert and two FMAs per
// block serve 16 rows. y[t*out + r] += sum_b d_w[r,b] (d_x[t,b] dot(q_w, q_x) - 8 xs[t,b]), xs = d_x sum(q_x).

constexpr int Q40_ROWS = 16;  // rows per group: the 16 lanes of a vector
constexpr int Q40_KC = 32;    // blocks repacked at a time: 32 x (8 + 1) vectors = 18 KiB, in L1

// Repacks blocks [b0, b0 + kc) of 16 rows (rows row_bytes apart) into wq (kc, 8) and their scales into dw (kc).
static void q4_0_pack16(__m512i* wq, __m512* dw, const uint8_t* w, size_t row_bytes, int b0, int kc) {
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(row_bytes)));
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int b = 0; b < kc; b++) {
    const uint8_t* base = w + static_cast<size_t>(b0 + b) * sizeof(BlockQ4_0);
    // Each row's f16 d is the low half of the dword at the block's start.
    const __m512i d32 = _mm512_i32gather_epi32(rows, base, 1);
    dw[b] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d32));
    for (int g = 0; g < 4; g++) {
      const __m512i v = _mm512_i32gather_epi32(rows, base + 2 + 4 * g, 1);  // qs bytes 4g..4g+3 of every row
      wq[8 * b + g] = _mm512_and_si512(v, low4);                             // weights 4g..4g+3
      wq[8 * b + 4 + g] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);    // weights 16+4g..16+4g+3
    }
  }
}

template <int TN>
static void q4_0_rows16(float* y, int ldy,                                      // (TN, ldy), 16 rows
                        const int8_t* xq, int ldq,                             // (TN, ldq)
                        const float* xd, const float* xs, int ldd,             // (TN, ldd)
                        const __m512i* wq, const __m512* dw, int b0, int kc) {  // repacked blocks b0..b0+kc
  __m512 acc[TN];
  for (int t = 0; t < TN; t++) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < kc; b++) {
    const __m512i* wb = wq + 8 * b;
    for (int t = 0; t < TN; t++) {
      const int8_t* x = xq + static_cast<size_t>(t) * ldq + (b0 + b) * 32;
      __m512i dot = _mm512_setzero_si512();
      for (int g = 0; g < 8; g++) dot = _mm512_dpbusd_epi32(dot, wb[g], _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(x + 4 * g)));
      const size_t i = static_cast<size_t>(t) * ldd + b0 + b;
      const __m512 v = _mm512_fmsub_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(xd[i]), _mm512_set1_ps(8.0f * xs[i]));
      acc[t] = _mm512_fmadd_ps(v, dw[b], acc[t]);
    }
  }
  for (int t = 0; t < TN; t++) {
    float* yt = y + static_cast<size_t>(t) * ldy;
    _mm512_storeu_ps(yt, _mm512_add_ps(_mm512_loadu_ps(yt), acc[t]));
  }
}

using Q40Rows16Fn = void (*)(float*, int, const int8_t*, int, const float*, const float*, int, const __m512i*,
                             const __m512*, int, int);

// Rows [r0, r0 + 16 n) of a several-token Q4_0 matmul, n the whole 16-row groups in [r0, r1); returns the rows done
// (the caller's tiles take the rest).
int q4_0_gemm_rows_avx512(float* y, const int8_t* xq, const float* xd, const float* xs, const uint8_t* w, int T,
                          int in, int out, int r0, int r1) {
  static const Q40Rows16Fn fns[8] = {q4_0_rows16<1>, q4_0_rows16<2>, q4_0_rows16<3>, q4_0_rows16<4>,
                                     q4_0_rows16<5>, q4_0_rows16<6>, q4_0_rows16<7>, q4_0_rows16<8>};
  const int nb = in / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * sizeof(BlockQ4_0);
  const int groups = (r1 - r0) / Q40_ROWS;
  __m512i wq[Q40_KC * 8];
  __m512 dw[Q40_KC];
  for (int gi = 0; gi < groups; gi++) {
    const int r = r0 + gi * Q40_ROWS;
    for (int b0 = 0; b0 < nb; b0 += Q40_KC) {
      const int kc = nb - b0 < Q40_KC ? nb - b0 : Q40_KC;
      // The gathers read 16 rows at once, interleaved streams the hardware prefetcher does not follow: touch the
      // next chunk (the next group's first at a group's end) while this one is packed and multiplied.
      const int nb0 = b0 + Q40_KC < nb ? b0 + Q40_KC : 0, ngi = nb0 == 0 ? gi + 1 : gi;
      if (ngi < groups) {
        const int nkc = nb - nb0 < Q40_KC ? nb - nb0 : Q40_KC;
        const char* nx = reinterpret_cast<const char*>(w) + static_cast<size_t>(r0 + ngi * Q40_ROWS) * row_bytes + static_cast<size_t>(nb0) * sizeof(BlockQ4_0);
        for (int i = 0; i < Q40_ROWS; i++)
          for (size_t l = 0; l < static_cast<size_t>(nkc) * sizeof(BlockQ4_0); l += 64) _mm_prefetch(nx + i * row_bytes + l, _MM_HINT_T0);
      }
      q4_0_pack16(wq, dw, w + static_cast<size_t>(r) * row_bytes, row_bytes, b0, kc);
      for (int t = 0; t < T; t += 8) {
        const int tn = T - t < 8 ? T - t : 8;
        fns[tn - 1](y + static_cast<size_t>(t) * out + r, out, xq + static_cast<size_t>(t) * in, in,
                    xd + static_cast<size_t>(t) * nb, xs + static_cast<size_t>(t) * nb, nb, wq, dw, b0, kc);
      }
    }
  }
  return groups * Q40_ROWS;
}
