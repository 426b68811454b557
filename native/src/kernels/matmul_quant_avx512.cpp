// AVX-512 VNNI K-quant kernels of matmul_quant_rows_avx2: Q4_K on per-256 activations with its sub-block scales
// applied in integers (`vpdpwssd`), 512-bit tiles of 4 rows x 2 tokens for several tokens (the one-token rows, 256-bit,
// are matmul_k_rows256.h, shared with the AVX2 builds); Q5_K the same with its fifth bits, Q6_K likewise, its -32
// offset applied with the activations' per-16 sums. Also the dispatch of the one-token and several-token paths
// (Q4_0 / Q5_0 / Q8_0 are in matmul_q4_0_avx512.cpp and matmul_rows16_avx512.cpp). Compiled for
// avx512f/bw/vl/vnni and called only after simd_use_avx512(); no STL (see matmul_q8_0_avx2.cpp). Shares quant_avx2.h
// with the AVX2 unit.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12's _mm512_insert*64x4 / extract*64x4 pass an undefined vector as the unused mask source, which -Wall
// reports as (maybe-)uninitialized inside the intrinsics header; nothing here reads an uninitialized value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <stdint.h>

#define INT8_DOT_AVX512VNNI 1
#include "int8_dot_avx2.h"
#include "kernels.h"
#include "matmul_k_rows256.h"
#include "quant_avx2.h"
#include "simd_avx2.h"

// 32 bytes of Q4_K nibbles (one 64-weight group) as 64 bytes in weight order: the low nibbles (block 2g) in the low
// half, the high nibbles (block 2g + 1) in the high half; one broadcast load, one variable shift, one mask.
static inline __m512i k4_nibble_shift() { return _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1); }
static inline __m512i k4_nibbles(const uint8_t* qs, __m512i shift, __m512i low4) {
  const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)));
  return _mm512_and_si512(_mm512_srlv_epi16(v, shift), low4);
}

// The 8 sub-block scales of a Q4_K / Q5_K super-block as int16 in lanes 0-7 (the mins go to *mn as floats times dmin).
template <typename Blk>
static inline __m512i k4_scales_i16(const Blk* blk, __m256* mn) {
  const __m128i bytes = k4_scale_min_bytes(blk);
  *mn = k4_mins(blk, bytes);
  return _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(bytes));
}

// Q4_K (and Q5_K: FIFTH, whose fifth bit of weight l in 32-block j is bit j of qh[l]) rows times activations quantized
// per 256 (q8_k_quantize_activations: d_x is one value per super-block), R rows x TK tokens straight from the blocks.
// Per 64 weights, maddubs multiplies the unsigned 4- or 5-bit values with the int8 activations into int16 pairs
// (<= 2 * 31 * 127) and vpdpwssd multiplies those by the sub-block scales into int32, so a super-block stays in
// integers: d * d_x scales its sum once, and the mins' share dmin m_j d_x sum(q_x) is one FMA over the 8 blocks.
// y[t*ldy + r] += dot(row r, x_t).
template <int R, int TK, bool FIFTH>
static void q4_k_tile(float* y, int ldy,
                      const int8_t* xq, int ldq,   // (TK, ldq)
                      const float* xd,             // (TK, ldd) per 32-block, d_x constant per 256
                      const void* sums, int ldd, int,  // xs (TK, ldd): d_x * sum(q_x) per 32-block
                      const uint8_t* w, size_t row_bytes, int nsb,
                      const uint8_t* pf) {  // the next row group to prefetch, or null (k_tile_rows)
  using Blk = typename K4Block<FIFTH>::type;
  const float* xs = static_cast<const float*>(sums);
  const __m512i low4 = _mm512_set1_epi8(0x0F), shift = k4_nibble_shift(), one = _mm512_set1_epi8(1);
  __m512 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm512_setzero_ps();
  for (int u = 0; u < nsb; u++) {
    if (pf) prefetch_blocks(pf, row_bytes, R, u * sizeof(Blk), sizeof(Blk));
    __m512i sc[R];
    __m256 mn[R];
    float d[R];
    __m512i isum[R][TK];
    for (int r = 0; r < R; r++) {
      const Blk* blk = reinterpret_cast<const Blk*>(w + r * row_bytes) + u;
      sc[r] = k4_scales_i16(blk, &mn[r]);
      d[r] = _cvtsh_ss(blk->d);
      for (int t = 0; t < TK; t++) isum[r][t] = _mm512_setzero_si512();
    }
    for (int g = 0; g < 4; g++) {
      const int b = u * 8 + 2 * g;  // activation blocks b (low nibbles) and b + 1 (high), 64 bytes together
      // int16 lanes 0-15 take scale 2g, lanes 16-31 scale 2g + 1 (vpdpwssd pairs lanes 2i, 2i + 1 into int32 lane i).
      const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * g)),
                                             _mm256_set1_epi16(static_cast<short>(2 * g + 1)), 1);
      // Q5_K: bit 2g of qh for the low half, 2g + 1 for the high, moved to bit 4.
      const __m512i hshift = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * g)), _mm256_set1_epi16(static_cast<short>(2 * g + 1)), 1);
      __m512i qx[TK];
      for (int t = 0; t < TK; t++) qx[t] = _mm512_loadu_si512(xq + static_cast<size_t>(t) * ldq + b * 32);
      for (int r = 0; r < R; r++) {
        const Blk* blk = reinterpret_cast<const Blk*>(w + r * row_bytes) + u;
        __m512i w4 = k4_nibbles(blk->qs + 32 * g, shift, low4);
        if constexpr (FIFTH) {
          const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(blk)->qh)));
          w4 = _mm512_or_si512(w4, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, hshift), one), 4));
        }
        const __m512i s = _mm512_permutexvar_epi16(idx, sc[r]);
        for (int t = 0; t < TK; t++) isum[r][t] = _mm512_dpwssd_epi32(isum[r][t], _mm512_maddubs_epi16(w4, qx[t]), s);
      }
    }
    for (int t = 0; t < TK; t++) {
      const float dx = xd[static_cast<size_t>(t) * ldd + u * 8];
      const __m512 sx = _mm512_zextps256_ps512(_mm256_loadu_ps(xs + static_cast<size_t>(t) * ldd + u * 8));
      for (int r = 0; r < R; r++) {
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][t]), _mm512_set1_ps(d[r] * dx), acc[r][t]);
        acc[r][t] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(mn[r]), sx, acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) y[static_cast<size_t>(t) * ldy + r] += _mm512_reduce_add_ps(acc[r][t]);
}

// ---- Q6_K on per-256 activations (the format and the integer scheme: matmul_k_rows256.h) ------------------------

// R rows x TK tokens of Q6_K, 512-bit: one vector holds 32-blocks k and k + 1 of a half (64 weights: ql's 64 bytes
// of the half in one load, its 32 qh bytes broadcast and shifted into place per 256-bit half).
// y[t*ldy + r] += dot(row r, x_t).
template <int R, int TK>
static void q6_k_tile(float* y, int ldy,
                      const int8_t* xq, int ldq,                     // (TK, ldq)
                      const float* xd,                               // (TK, ldd) per 32-block, constant per 256
                      const void* sums, int ldd, int ldb,            // xb (TK, ldb): sum(q_x) per 16
                      const uint8_t* w, size_t row_bytes, int nsb,   // (R, nsb) blocks, rows row_bytes apart
                      const uint8_t* pf) {  // the next row group to prefetch, or null (k_tile_rows)
  const int16_t* xb = static_cast<const int16_t*>(sums);
  const __m512i low4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  // qh bits (0, 1 | 2, 3) to bits 4, 5 of the low | high 32 bytes: left by 4 | 2; bits (4, 5 | 6, 7): right by 0 | 2.
  const __m512i sh_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i sh_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  __m512 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm512_setzero_ps();
  for (int u = 0; u < nsb; u++) {
    if (pf) prefetch_blocks(pf, row_bytes, R, u * sizeof(BlockQ6_K), sizeof(BlockQ6_K));
    __m256i sc16[R];
    float d[R];
    __m512i isum[R][TK];
    for (int r = 0; r < R; r++) {
      const BlockQ6_K* blk = reinterpret_cast<const BlockQ6_K*>(w + r * row_bytes) + u;
      sc16[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales)));
      d[r] = _cvtsh_ss(blk->d);
      for (int t = 0; t < TK; t++) isum[r][t] = _mm512_setzero_si512();
    }
    for (int n = 0; n < 2; n++) {
      // int16 lane i of a product vector takes scale 8n + i / 8 (low nibbles) or 8n + 4 + i / 8 (high).
      const __m512i idx_lo = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(static_cast<short>(8 * n + 1)), _mm_set1_epi16(static_cast<short>(8 * n)))),
          _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(8 * n + 3)), _mm_set1_epi16(static_cast<short>(8 * n + 2))), 1);
      const __m512i idx_hi = _mm512_add_epi16(idx_lo, _mm512_set1_epi16(4));
      __m512i qx_lo[TK], qx_hi[TK];
      for (int t = 0; t < TK; t++) {
        const int8_t* xt = xq + static_cast<size_t>(t) * ldq + (u * 8 + 4 * n) * 32;
        qx_lo[t] = _mm512_loadu_si512(xt);
        qx_hi[t] = _mm512_loadu_si512(xt + 64);
      }
      for (int r = 0; r < R; r++) {
        const BlockQ6_K* blk = reinterpret_cast<const BlockQ6_K*>(w + r * row_bytes) + u;
        const __m512i ql = _mm512_loadu_si512(blk->ql + 64 * n);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qh + 32 * n)));
        const __m512i lo = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_and_si512(_mm512_sllv_epi16(qh, sh_lo), m30));
        const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), _mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m30));
        const __m512i sc = _mm512_zextsi256_si512(sc16[r]);
        const __m512i s_lo = _mm512_permutexvar_epi16(idx_lo, sc), s_hi = _mm512_permutexvar_epi16(idx_hi, sc);
        for (int t = 0; t < TK; t++) {
          isum[r][t] = _mm512_dpwssd_epi32(isum[r][t], _mm512_maddubs_epi16(lo, qx_lo[t]), s_lo);
          isum[r][t] = _mm512_dpwssd_epi32(isum[r][t], _mm512_maddubs_epi16(hi, qx_hi[t]), s_hi);
        }
      }
    }
    for (int t = 0; t < TK; t++) {
      const float dx = xd[static_cast<size_t>(t) * ldd + u * 8];
      const int16_t* bsum = xb + static_cast<size_t>(t) * ldb + u * 16;
      for (int r = 0; r < R; r++) {
        const __m512i net = _mm512_sub_epi32(isum[r][t], _mm512_zextsi256_si512(q6_k_offset(sc16[r], bsum)));
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(net), _mm512_set1_ps(d[r] * dx), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) y[static_cast<size_t>(t) * ldy + r] += _mm512_reduce_add_ps(acc[r][t]);
}

// The one-token K-quant rows (matmul_k_rows256.h) with the EVEX `vpdpwssd`; false for other types (Q4_0 and Q5_0
// take the pair rows of matmul_q4_0_avx512.cpp at every token count below 8).
bool decode_rows_avx512(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                        const uint8_t* w, WeightType type, int in, int r0, int r1) {
  return k_rows256(y, xq, xd, xs, xb, w, type, in, r0, r1);
}

// Several tokens (prefill, batched decode) of Q4_K, Q5_K or Q6_K with per-256 activations: tiles of 4 rows x 2 tokens
// straight from the blocks (k_tile_rows walks them). False for other types. Why a 512-bit Q4_K/Q5_K tile beside
// matmul_k_rows256.h's 256-bit one: put in its place (EVEX, 4 rows), the 256-bit tile was level on an Intel Xeon
// (0.91-1.1x) but 0.65-0.7x on Zen 5, which runs 512-bit operations at full width (micro-benchmark, one thread).
bool tile_rows_avx512(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                      const uint8_t* w, WeightType type, int T, int in, int out, int r0, int r1) {
  if (type != WEIGHT_Q4_K && type != WEIGHT_Q5_K && type != WEIGHT_Q6_K) return false;
  static const KTileFn q4k[2][4][2] = {{{q4_k_tile<1, 1, false>, q4_k_tile<1, 2, false>},
                                        {q4_k_tile<2, 1, false>, q4_k_tile<2, 2, false>},
                                        {q4_k_tile<3, 1, false>, q4_k_tile<3, 2, false>},
                                        {q4_k_tile<4, 1, false>, q4_k_tile<4, 2, false>}},
                                       {{q4_k_tile<1, 1, true>, q4_k_tile<1, 2, true>},
                                        {q4_k_tile<2, 1, true>, q4_k_tile<2, 2, true>},
                                        {q4_k_tile<3, 1, true>, q4_k_tile<3, 2, true>},
                                        {q4_k_tile<4, 1, true>, q4_k_tile<4, 2, true>}}};
  static const KTileFn q6k[4][2] = {{q6_k_tile<1, 1>, q6_k_tile<1, 2>},
                                    {q6_k_tile<2, 1>, q6_k_tile<2, 2>},
                                    {q6_k_tile<3, 1>, q6_k_tile<3, 2>},
                                    {q6_k_tile<4, 1>, q6_k_tile<4, 2>}};
  const bool q6 = type == WEIGHT_Q6_K;
  auto tile = [&](int rn, int tn) { return q6 ? q6k[rn - 1][tn - 1] : q4k[type == WEIGHT_Q5_K][rn - 1][tn - 1]; };
  k_tile_rows(tile, 4, y, xq, xd, q6 ? static_cast<const void*>(xb) : xs, q6, w, type, T, in, out, r0, r1);
  return true;
}
