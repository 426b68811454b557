// AVX2 row kernel of matmul_quant_forward (contract and portable twin in matmul_quant.cpp) and its dispatch: the
// AVX-512 kernels where they run (with them, Q4_0 / Q5_0 16 rows per vector from rows16_min_tokens on: matmul_rows16.h),
// one-token K-quant rows and several-token Q4_K / Q5_K tiles (matmul_k_rows256.h), Q4_0 / Q5_0 rows of few tokens
// (matmul_q4_pairs8.h) and Q4_0 8-row groups from 8 on (matmul_q4_0_rows8.h; with AVX-512 only for the rows the
// 16-row groups leave); for the rest (Q6_K at several tokens, Q5_K from 17, Q4_1, Q5_1, Q5_0 from 8 tokens on without
// AVX-512), per row group and chunk, unpack the weight blocks to int8 + scales (quant_unpack.h, vectorized here by
// the compiler), then a register tile of 4 rows x 2 tokens multiplies them with the int8 activations as the Q8_0
// kernel does, with one scale per 16 weights. Compiled for avx2,fma,f16c and only called after simd_use_avx2(); no STL, as in matmul_q8_0_avx2.cpp.
// matmul_int8_avxvnni.cpp compiles this unit again for AVX-VNNI (int8_dot_avx2.h).
#if !defined(INT8_DOT_AVXVNNI)
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "int8_dot_avx2.h"
#include "kernels.h"
#include "matmul_k_rows256.h"
#include "matmul_q4_0_rows8.h"
#include "matmul_q4_pairs8.h"
#include "matmul_rows16.h"
#define QUANT_UNPACK_F16C 1
#include "quant_unpack.h"
#include "quant_avx2.h"
#include "simd_avx2.h"

// In matmul_quant_avx512.cpp: the one-token K-quant rows with AVX-512 VNNI; false for other types.
bool decode_rows_avx512(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                        const uint8_t* w, WeightType type, int in, int r0, int r1);
// In matmul_q4_0_avx512.cpp: Q4_0 and Q5_0 at 1-7 tokens one row at a time, on pair-layout activations.
void q4_pair_rows_avx512(float* y, const int8_t* xp, const float* xd, const float* xs, const uint8_t* w,
                         WeightType type, int T, int in, int out, int r0, int r1);
// In matmul_quant_avx512.cpp: Q4_K, Q5_K and Q6_K at several tokens; false for other types.
bool tile_rows_avx512(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                      const uint8_t* w, WeightType type, int T, int in, int out, int r0, int r1);

constexpr int KB_MAX = 64;  // 32-blocks per unpacked chunk (multiple of 8)
constexpr int R_MAX = 4;    // rows per register tile

// y[t*ldy + r] += chunk dot for R unpacked rows and TK tokens. maddubs takes unsigned x signed bytes: the types
// with offsets (U: Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K) unpack to unsigned values that go in as they are, with the offset term from
// the activation sums; Q6_K's signed values go in as |q_w| with their sign moved onto q_x (|q_w| <= 32, so pair
// sums stay far inside int16). After madd, lanes 0-3 hold the dot of bytes 0-15 and lanes 4-7 of bytes 16-31: one
// scale per 16 weights is one 2-valued vector per block.
template <int R, int TK, bool U>
static void uq_tile(float* y, int ldy,
                    const int8_t* xq, int ldq,                // (TK, ldq) activations, chunk at block b0
                    const float* xd, const float* xs, int ldd,  // (TK, ldd) scales, d*sum
                    const int8_t* wq, const float* ws, const float* wm,  // (R, KB_MAX*32), (R, KB_MAX*2), (R, KB_MAX)
                    int b0, int kb) {
  __m256 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm256_setzero_ps();
  for (int b = 0; b < kb; b++) {
    __m256i qx[TK];
    __m256 dx[TK];
    for (int t = 0; t < TK; t++) {
      qx[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + static_cast<size_t>(t) * ldq + (b0 + b) * 32));
      dx[t] = _mm256_broadcast_ss(xd + static_cast<size_t>(t) * ldd + b0 + b);
    }
    for (int r = 0; r < R; r++) {
      const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + r * KB_MAX * 32 + b * 32));
      const __m256i aw = U ? qw : _mm256_sign_epi8(qw, qw);
      const float* sc = ws + r * KB_MAX * 2 + 2 * b;
      const __m256 sv = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(sc)), _mm_broadcast_ss(sc + 1), 1);
      for (int t = 0; t < TK; t++) {
        const __m256i qs = U ? qx[t] : _mm256_sign_epi8(qx[t], qw);
        const __m256 p = _mm256_cvtepi32_ps(dot_u8s8(_mm256_setzero_si256(), aw, qs));
        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(sv, dx[t]), p, acc[r][t]);
      }
    }
  }
  if (U) {
    // The offset term: sum_b m_b * d_x sum(q_x), 8 blocks per step.
    for (int r = 0; r < R; r++)
      for (int t = 0; t < TK; t++) {
        const float* m = wm + r * KB_MAX;
        const float* sx = xs + static_cast<size_t>(t) * ldd + b0;
        int b = 0;
        for (; b + 8 <= kb; b += 8)
          acc[r][t] = _mm256_fmadd_ps(_mm256_loadu_ps(m + b), _mm256_loadu_ps(sx + b), acc[r][t]);
        float tail = 0.0f;
        for (; b < kb; b++) tail += m[b] * sx[b];
        y[static_cast<size_t>(t) * ldy + r] += tail;
      }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) y[static_cast<size_t>(t) * ldy + r] += hsum(acc[r][t]);
}

using UqTileFn = void (*)(float*, int, const int8_t*, int, const float*, const float*, int, const int8_t*,
                          const float*, const float*, int, int);

static UqTileFn uq_tile_fn(int rn, int tn, bool unsigned_with_offsets) {
  static const UqTileFn table[2][4][2] = {
      {{uq_tile<1, 1, false>, uq_tile<1, 2, false>},
       {uq_tile<2, 1, false>, uq_tile<2, 2, false>},
       {uq_tile<3, 1, false>, uq_tile<3, 2, false>},
       {uq_tile<4, 1, false>, uq_tile<4, 2, false>}},
      {{uq_tile<1, 1, true>, uq_tile<1, 2, true>},
       {uq_tile<2, 1, true>, uq_tile<2, 2, true>},
       {uq_tile<3, 1, true>, uq_tile<3, 2, true>},
       {uq_tile<4, 1, true>, uq_tile<4, 2, true>}},
  };
  return table[unsigned_with_offsets ? 1 : 0][rn - 1][tn - 1];
}

void INT8_FN(matmul_quant_rows)(float* y,           // (T, out)
                                const int8_t* xq,   // (T, in)
                                const float* xd,    // (T, in/32)
                                const float* xs,    // (T, in/32)
                                const int16_t* xb,  // (T, in/16) sum(q_x) per 16, Q6_K only
                                const uint8_t* w,   // (out, in/elems) blocks
                                WeightType type, int T, int in, int out, int r0, int r1) {
  if (T == 1 && simd_use_avx512() && decode_rows_avx512(y, xq, xd, xs, xb, w, type, in, r0, r1)) return;
  if (T > 1 && simd_use_avx512() && tile_rows_avx512(y, xq, xd, xs, xb, w, type, T, in, out, r0, r1)) return;
  // Below 4 tokens with AVX-512 (8 without) Q4_0 and Q5_0 read a row once per pass of tokens (the driver rearranged
  // the activations); from there on repacking a 16-row group (8 without AVX-512, Q4_0 only) pays for itself.
  if (q4_pair_rows_take(type, T)) {
    if (simd_use_avx512()) q4_pair_rows_avx512(y, xq, xd, xs, w, type, T, in, out, r0, r1);
    else q4_pair_rows8(y, xq, xd, xs, w, type, T, in, out, r0, r1);
    return;
  }
  // With AVX-512, Q4_0 and Q5_0 run 16 rows per vector (matmul_rows16_avx512.cpp).
  if (T >= rows16_min_tokens(type) && (type == WEIGHT_Q4_0 || type == WEIGHT_Q5_0) && simd_use_avx512())
    r0 += rows16_gemm_avx512(y, xq, xd, xs, w, type, T, in, out, r0, r1);
  // Otherwise, and for the rows the 16-row groups leave: Q4_0 8 rows per vector (matmul_q4_0_rows8.h).
  if (T >= Q40_ROWS8_MIN_T && type == WEIGHT_Q4_0) r0 += q4_0_gemm_rows8(y, xq, xd, xs, w, T, in, out, r0, r1);
  if (r0 == r1) return;
  // One token of a K-quant straight from the blocks (matmul_k_rows256.h): unpacking would cost as much as the dot.
  if (T == 1 && k_rows256(y, xq, xd, xs, xb, w, type, in, r0, r1)) return;
  // Several tokens of Q4_K straight from the blocks too, 2 rows x 2 tokens (matmul_k_rows256.h), and of Q5_K up to 16
  // (from 64 its fifth bits, split again for every 2 tokens, made it 0.87-0.91x the unpacking tile on AVX2). Q6_K's
  // bits cost too much to split for 2 tokens (such a tile ran at 0.75x the unpacking one from 16 tokens on).
  if (T > 1 && (type == WEIGHT_Q4_K || (type == WEIGHT_Q5_K && T <= 16))) {
    static const KTileFn q4k[2][2][2] = {{{q4_k_tile_256<1, 1, false>, q4_k_tile_256<1, 2, false>},
                                          {q4_k_tile_256<2, 1, false>, q4_k_tile_256<2, 2, false>}},
                                         {{q4_k_tile_256<1, 1, true>, q4_k_tile_256<1, 2, true>},
                                          {q4_k_tile_256<2, 1, true>, q4_k_tile_256<2, 2, true>}}};
    const bool fifth = type == WEIGHT_Q5_K;
    k_tile_rows([&](int rn, int tn) { return q4k[fifth][rn - 1][tn - 1]; }, 2, y, xq, xd, xs, false, w, type, T, in, out,
                r0, r1);
    return;
  }
  const int nb = in / 32, upb = quant_block_elems(type) / 32;
  const size_t ubytes = quant_block_bytes(type);
  const size_t row_bytes = static_cast<size_t>(in / quant_block_elems(type)) * ubytes;
  alignas(32) int8_t wq[R_MAX * KB_MAX * 32];
  alignas(32) float ws[R_MAX * KB_MAX * 2];
  alignas(32) float wm[R_MAX * KB_MAX];
  const int TK = T == 1 ? 1 : 2;
  // Token tile: its int8 x (TT, in) stays in L2 while this thread's rows stream past it; each chunk is unpacked
  // once per tile.
  const int TT = quant_token_tile(in);
  for (int t0 = 0; t0 < T; t0 += TT) {
    const int t1 = t0 + TT < T ? t0 + TT : T;
    for (int b0 = 0; b0 < nb; b0 += KB_MAX) {
      const int kb = nb - b0 < KB_MAX ? nb - b0 : KB_MAX;
      for (int r = r0; r < r1; r += R_MAX) {
        const int rn = r1 - r < R_MAX ? r1 - r : R_MAX;
        bool has_min = false;
        for (int i = 0; i < rn; i++) {
          const uint8_t* src = w + static_cast<size_t>(r + i) * row_bytes + static_cast<size_t>(b0 / upb) * ubytes;
          // Touch the next row group's chunk while this one computes (decode streams weights from DRAM).
          if (T == 1 && r + R_MAX + i < r1) {
            const char* nx = reinterpret_cast<const char*>(src + R_MAX * row_bytes);
            for (size_t l = 0; l < static_cast<size_t>(kb / upb) * ubytes; l += 64) _mm_prefetch(nx + l, _MM_HINT_T0);
          }
          has_min |= quant_unpack(type, src, kb / upb, wq + i * KB_MAX * 32, ws + i * KB_MAX * 2, wm + i * KB_MAX);
        }
        for (int t = t0; t < t1; t += TK) {
          const int tn = t1 - t < TK ? t1 - t : TK;
          uq_tile_fn(rn, tn, has_min)(y + static_cast<size_t>(t) * out + r, out, xq + static_cast<size_t>(t) * in, in,
                                      xd + static_cast<size_t>(t) * nb, xs + static_cast<size_t>(t) * nb, nb, wq, ws,
                                      wm, b0, kb);
        }
      }
    }
  }
}
