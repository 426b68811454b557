// One token of Q4_K, Q5_K and Q6_K on per-256 activations, with the sub-block scales applied in integers, in 256-bit
// vectors: the one-token rows of the AVX-512 VNNI unit (matmul_quant_avx512.cpp), of the AVX2 unit and of its AVX-VNNI
// build (matmul_quant_avx2.cpp), which include this after int8_dot_avx2.h; dot_s16 is `vpdpwssd` (EVEX or VEX) or
// AVX2's madd + add, the same int32 sums. Also the 256-bit several-token tile of Q4_K / Q5_K that the AVX2 builds run
// (2 rows x 2 tokens: 16 registers), and the row-group driver it shares with the AVX-512 unit's 512-bit tiles. On
// Zen 4 a 512-bit op takes two 256-bit slots, and one token has no second token to share the unpacking with, so the
// narrow form is the one-token kernel on every build. Include only after the unit's `#pragma GCC target` and
// int8_dot_avx2.h; static, as quant_avx2.h.
//
// A Q6_K super-block is 16 sub-blocks of 16 weights q in [0, 64) with int8 scales s_j and one f16 d:
//   dot = d d_x (sum_j s_j sum_{i in j} q_i q_x,i  -  32 sum_j s_j bsum_j),  bsum_j = sum_{i in j} q_x,i.
// maddubs takes the unsigned q as they are (pair sums <= 2 * 63 * 127 fit int16), dot_s16 applies s_j in integers,
// and the -32 offset is one madd of the 16 scales with the activations' per-16 sums (xb): a super-block stays in
// integers and costs one float FMA per row and token. In 32-block k of half n (weights 128n + 32k ..), q's low 4
// bits are ql[64n + 32(k & 1) + l] (>> 4 for k >= 2) and its high 2 bits qh[32n + l] >> 2k.
#pragma once

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "quant_avx2.h"
#include "simd_avx2.h"

template <bool FIFTH> struct K4Block { using type = BlockQ4_K; };  // (no <type_traits>: no STL in these units)
template <> struct K4Block<true> { using type = BlockQ5_K; };

// One token of Q4_K, one row: one row at a time is one sequential stream (with a software prefetch 4 rows on,
// `prefetch` false where that row is past the caller's range). Per 32-weight block: maddubs on the nibbles, dot_s16
// with the block's 6-bit scale broadcast by one byte shuffle; two accumulators (low and high nibble blocks) halve the
// dependency chain.
// y[0] += dot(row, x).
// Q5_K (FIFTH) likewise, the fifth bits from qh.
template <bool FIFTH>
static void q4_k_row_256(float* y,                                          // (1)
                         const int8_t* xq, const float* xd, const float* xs,  // (in), (in/32), (in/32)
                         const uint8_t* w, size_t row_bytes, int nsb, bool prefetch) {  // (nsb) blocks
  using Blk = typename K4Block<FIFTH>::type;
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int u = 0; u < nsb; u++) {
    const Blk* blk = reinterpret_cast<const Blk*>(w) + u;
    if (prefetch) {
      k4_prefetch_next(blk, row_bytes);
      if constexpr (FIFTH) _mm_prefetch(reinterpret_cast<const char*>(blk) + 4 * row_bytes + 172, _MM_HINT_T0);
    }
    __m256i qh = _mm256_setzero_si256();
    if constexpr (FIFTH) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(blk)->qh));
    const __m128i sm = k4_scale_min_bytes(blk);
    const __m256i scb = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));  // int16 scales 0-7, both lanes
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    for (int g = 0; g < 4; g++) {
      const int b = u * 8 + 2 * g;
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32 * g));
      __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      if constexpr (FIFTH) {
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * g + 1), one), 4));
      }
      // Scale j as int16 in every lane: bytes 2j and 2j + 1 of each 128-bit lane.
      const __m256i s0 = _mm256_shuffle_epi8(scb, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * (2 * g))));
      const __m256i s1 = _mm256_shuffle_epi8(scb, _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * (2 * g + 1))));
      const __m256i qx0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
      const __m256i qx1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (b + 1) * 32));
      i0 = dot_s16(i0, _mm256_maddubs_epi16(lo, qx0), s0);
      i1 = dot_s16(i1, _mm256_maddubs_epi16(hi, qx1), s1);
    }
    const __m256 dd = _mm256_set1_ps(_cvtsh_ss(blk->d) * xd[u * 8]);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1)), dd, acc);
    acc = _mm256_fnmadd_ps(k4_mins(blk, sm), _mm256_loadu_ps(xs + u * 8), acc);
  }
  y[0] += hsum(acc);
}

// The per-16 offset of one super-block and row: 32 sum_j s_j bsum_j as 8 int32 lanes (sum them for the value).
static inline __m256i q6_k_offset(__m256i sc16, const int16_t* bsum) {
  return _mm256_slli_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsum))), 5);
}

// One token of Q6_K, one row (as q4_k_row_256): per 32-block, the 6-bit values from the ql/qh bits, maddubs with
// the activations, dot_s16 with the block's two scales (one byte shuffle of the scales, pre-broadcast per 128-bit
// half). y[0] += dot(row, x).
static void q6_k_row_256(float* y,                                            // (1)
                         const int8_t* xq, const float* xd, const int16_t* xb,  // (in), (in/32), (in/16)
                         const uint8_t* w, size_t row_bytes, int nsb, bool prefetch) {  // (nsb) blocks
  const __m256i low4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  __m256 acc = _mm256_setzero_ps();
  for (int u = 0; u < nsb; u++) {
    const BlockQ6_K* blk = reinterpret_cast<const BlockQ6_K*>(w) + u;
    if (prefetch) {
      const char* next = reinterpret_cast<const char*>(blk) + 4 * row_bytes;
      _mm_prefetch(next, _MM_HINT_T0);
      _mm_prefetch(next + 64, _MM_HINT_T0);
      _mm_prefetch(next + 128, _MM_HINT_T0);
      _mm_prefetch(next + 192, _MM_HINT_T0);
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales)));
    // Scales 0-7 in both 128-bit halves, and 8-15: the half of 32-block j holds its two scales 2j, 2j + 1.
    const __m256i sc_a = _mm256_permute4x64_epi64(sc16, 0x44), sc_b = _mm256_permute4x64_epi64(sc16, 0xEE);
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    for (int n = 0; n < 2; n++) {
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->ql + 64 * n));
      const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->ql + 64 * n + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qh + 32 * n));
      // High bits 2k, 2k + 1 of qh moved to bits 4, 5 by one shift each (bits a 16-bit shift carries across bytes
      // land outside 0x30).
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(qa, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
      q[1] = _mm256_or_si256(_mm256_and_si256(qb, low4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), low4), _mm256_and_si256(qh, m30));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), low4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
      for (int k = 0; k < 4; k++) {
        const int j = 4 * n + k;  // 32-block of the super-block: scales 2j (bytes 0-15), 2j + 1 (bytes 16-31)
        const int e0 = (2 * j) & 7, e1 = (2 * j + 1) & 7;
        const __m256i ctl = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(0x0100 + 0x0202 * e1)),
                                             _mm_set1_epi16(static_cast<short>(0x0100 + 0x0202 * e0)));
        const __m256i s = _mm256_shuffle_epi8(j < 4 ? sc_a : sc_b, ctl);
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (u * 8 + j) * 32));
        if (k & 1) i1 = dot_s16(i1, _mm256_maddubs_epi16(q[k], qx), s);
        else i0 = dot_s16(i0, _mm256_maddubs_epi16(q[k], qx), s);
      }
    }
    const __m256i net = _mm256_sub_epi32(_mm256_add_epi32(i0, i1), q6_k_offset(sc16, xb + u * 16));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(net), _mm256_set1_ps(_cvtsh_ss(blk->d) * xd[u * 8]), acc);
  }
  y[0] += hsum(acc);
}

// Rows [r0, r1) of a one-token matmul for Q4_K / Q5_K / Q6_K, one row at a time (one sequential stream, which the
// hardware prefetcher follows); false for other types.
static bool k_rows256(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                      const uint8_t* w, WeightType type, int in, int r0, int r1) {
  if (type != WEIGHT_Q4_K && type != WEIGHT_Q5_K && type != WEIGHT_Q6_K) return false;
  const int units = in / quant_block_elems(type);
  const size_t row_bytes = static_cast<size_t>(units) * quant_block_bytes(type);
  for (int r = r0; r < r1; r++) {
    const uint8_t* wr = w + static_cast<size_t>(r) * row_bytes;
    if (type == WEIGHT_Q4_K) q4_k_row_256<false>(y + r, xq, xd, xs, wr, row_bytes, units, r + 4 < r1);
    else if (type == WEIGHT_Q5_K) q4_k_row_256<true>(y + r, xq, xd, xs, wr, row_bytes, units, r + 4 < r1);
    else q6_k_row_256(y + r, xq, xd, xb, wr, row_bytes, units, r + 4 < r1);
  }
  return true;
}

// Several-token tiles read R rows interleaved, streams the hardware prefetcher does not follow: the first token pair
// of a row group touches the same super-block of the next group's R rows (rows row_bytes apart from pf) as it goes.
static inline void prefetch_blocks(const uint8_t* pf, size_t row_bytes, int R, size_t off, size_t bytes) {
  for (int r = 0; r < R; r++)
    for (size_t l = 0; l < bytes; l += 64) _mm_prefetch(reinterpret_cast<const char*>(pf + r * row_bytes + off + l), _MM_HINT_T0);
}

// Several tokens of Q4_K (Q5_K: FIFTH) without AVX-512: R rows x TK tokens straight from the blocks, as the 512-bit
// q4_k_tile of matmul_quant_avx512.cpp does in 32 registers, one 32-weight block per vector here. Per block: maddubs
// of the unsigned 4- or 5-bit values with the int8 activations (pair sums <= 2 * 31 * 127), dot_s16 with the block's
// 6-bit scale, so a super-block stays in integers; d * d_x scales its sum once and the mins' share is one FMA.
// y[t*ldy + r] += dot(row r, x_t).
template <int R, int TK, bool FIFTH>
static void q4_k_tile_256(float* y, int ldy,
                          const int8_t* xq, int ldq,       // (TK, ldq)
                          const float* xd,                 // (TK, ldd) per 32-block, d_x constant per 256
                          const void* sums, int ldd, int,  // xs (TK, ldd): d_x * sum(q_x) per 32-block
                          const uint8_t* w, size_t row_bytes, int nsb,
                          const uint8_t* pf) {  // the next row group to prefetch, or null (k_tile_rows)
  using Blk = typename K4Block<FIFTH>::type;
  const float* xs = static_cast<const float*>(sums);
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  __m256 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm256_setzero_ps();
  for (int u = 0; u < nsb; u++) {
    if (pf) prefetch_blocks(pf, row_bytes, R, u * sizeof(Blk), sizeof(Blk));
    __m256i scb[R];
    __m256 mn[R];
    float d[R];
    __m256i isum[R][TK];
    for (int r = 0; r < R; r++) {
      const Blk* blk = reinterpret_cast<const Blk*>(w + r * row_bytes) + u;
      const __m128i sm = k4_scale_min_bytes(blk);
      scb[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));  // int16 scales 0-7, both lanes
      mn[r] = k4_mins(blk, sm);
      d[r] = _cvtsh_ss(blk->d);
      for (int t = 0; t < TK; t++) isum[r][t] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 8; j++) {  // 32-block j: the low (j even) or high nibbles of qs[32 (j / 2) ..]
      __m256i qx[TK];
      for (int t = 0; t < TK; t++)
        qx[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + static_cast<size_t>(t) * ldq + (u * 8 + j) * 32));
      for (int r = 0; r < R; r++) {
        const Blk* blk = reinterpret_cast<const Blk*>(w + r * row_bytes) + u;
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32 * (j / 2)));
        __m256i q = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(v, 4) : v, low4);
        if constexpr (FIFTH) {
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(blk)->qh));
          q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j), one), 4));
        }
        // Scale j as int16 in every lane: bytes 2j and 2j + 1 of each 128-bit lane.
        const __m256i s = _mm256_shuffle_epi8(scb[r], _mm256_set1_epi16(static_cast<short>(0x0100 + 0x0202 * j)));
        for (int t = 0; t < TK; t++) isum[r][t] = dot_s16(isum[r][t], _mm256_maddubs_epi16(q, qx[t]), s);
      }
    }
    for (int t = 0; t < TK; t++) {
      const float dx = xd[static_cast<size_t>(t) * ldd + u * 8];
      const __m256 sx = _mm256_loadu_ps(xs + static_cast<size_t>(t) * ldd + u * 8);
      for (int r = 0; r < R; r++) {
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(d[r] * dx), acc[r][t]);
        acc[r][t] = _mm256_fnmadd_ps(mn[r], sx, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) y[static_cast<size_t>(t) * ldy + r] += hsum(acc[r][t]);
}

// A several-token K-quant tile: y, ldy, xq, ldq, xd, the activation sums (xs per 32-block for Q4_K / Q5_K, xb per 16
// for Q6_K), their ld's (ldd for xd and xs, ldb for xb), w, row_bytes, nsb, the next row group to prefetch (or null).
using KTileFn = void (*)(float*, int, const int8_t*, int, const float*, const void*, int, int, const uint8_t*, size_t,
                         int, const uint8_t*);

// Several tokens (prefill, batched decode) of a K-quant: row groups of R, token pairs, over a token tile whose int8
// activations stay in L2 while this thread's rows stream past; each row group's blocks stay in L1 across the tile's
// tokens. tile(rn, tn) is the tile for rn rows (1..R) and tn tokens (1..2); `sums` is xs (Q4_K/Q5_K, per 32-block,
// ld = in / 32) or xb (Q6_K, per 16, ld = in / 16).
template <typename TileOf>
static void k_tile_rows(TileOf tile, int R, float* y, const int8_t* xq, const float* xd, const void* sums, bool per16,
                        const uint8_t* w, WeightType type, int T, int in, int out, int r0, int r1) {
  const int nsb = in / 256, nb = in / 32, lds = per16 ? in / 16 : nb;
  const size_t row_bytes = static_cast<size_t>(nsb) * quant_block_bytes(type);
  const size_t sum_bytes = per16 ? sizeof(int16_t) : sizeof(float);
  const int TT = quant_token_tile(in);
  for (int t0 = 0; t0 < T; t0 += TT) {
    const int t1 = t0 + TT < T ? t0 + TT : T;
    for (int r = r0; r < r1; r += R) {
      const int rn = r1 - r < R ? r1 - r : R;
      for (int t = t0; t < t1; t += 2) {
        const int tn = t1 - t < 2 ? t1 - t : 2;
        const uint8_t* wr = w + static_cast<size_t>(r) * row_bytes;
        const uint8_t* pf = t == t0 && r + 2 * R <= r1 ? wr + R * row_bytes : nullptr;
        tile(rn, tn)(y + static_cast<size_t>(t) * out + r, out, xq + static_cast<size_t>(t) * in, in,
                     xd + static_cast<size_t>(t) * nb, static_cast<const char*>(sums) + static_cast<size_t>(t) * lds * sum_bytes,
                     nb, lds, wr, row_bytes, nsb, pf);
      }
    }
  }
}
