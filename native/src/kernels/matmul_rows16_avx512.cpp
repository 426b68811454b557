// AVX-512 VNNI kernels of Q4_0, Q5_0 and Q8_0 at several tokens (prefill, batched decode): 16 weight rows per vector.
// Called by matmul_quant_rows_avx2 (Q4_0, Q5_0) and matmul_q8_0_forward (Q8_0) from rows16_min_tokens(type) tokens
// on (matmul_rows16.h); the rows left after the whole 16-row groups go to their callers' tiles. Not the one-token
// rows: one token streams each row once from DRAM, and repacking 16 rows' blocks costs more than it saves there.
// Compiled for avx512f/bw/vl/vnni and called only after simd_use_avx512(); no STL (see matmul_q8_0_avx2.cpp).
//
// These types keep an f16 scale per 32 weights, so every block's dot stays apart in floats: a tile whose lanes run
// along k spends a convert and a multiply-add per 8 lanes for each block, row and token. Here the 16 lanes of a vector
// are 16 weight rows instead. A chunk of blocks of a 16-row group is repacked (transposed once per call) into 8 vectors
// per block, vector g holding weights 4g..4g+3 of every row as unsigned bytes; `vpdpbusd` multiplies one with the
// token's 4 activation bytes of group g broadcast, and after 8 of them each lane holds one row's whole block dot in
// int32: one convert and two float operations per block serve 16 rows.
//   Q4_0: nibbles 0..15, offset 8:  v = d_x dot - 8 xs,  xs = d_x sum(q_x) (float, as the other Q4_0 kernels);
//   Q5_0: 5-bit values 0..31, offset 16: v = d_x dot - 16 xs;
//   Q8_0: q_w + 128 (0..255); the accumulator starts at -128 sum(q_x) (int32 per block and token), so the dot is
//         exactly the signed one and v = d_x dot.
// y[t*ldy + r] += sum_b d_w[r,b] v[t,r,b].
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12's _mm512_insert*64x4 / extract*64x4 pass an undefined vector as the unused mask source, which -Wall
// reports as (maybe-)uninitialized inside the intrinsics header; nothing here reads an uninitialized value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "matmul_rows16.h"

constexpr int ROWS16 = ROWS16_GROUP;  // the 16 lanes of a vector
constexpr int ROWS16_KC = 32;  // blocks repacked at a time: 32 x (8 + 1) vectors = 18 KiB, in L1

// The 16 rows' f16 scales of a block whose d leads it, as floats: each row's d is the low half of the dword there.
static inline __m512 rows16_scales(__m512i rows, const uint8_t* base) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(rows, base, 1)));
}

// A byte shuffle that fills every dword lane's 4 bytes with its own byte k (within each 128-bit lane, dword i's
// bytes are 4i..4i+3).
static inline __m512i rows16_byte_index(int k) {
  return _mm512_add_epi8(_mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0), _mm512_set1_epi8(static_cast<char>(k)));
}

// Repacks blocks [b0, b0 + kc) of 16 rows (rows row_bytes apart, blocks of `type`) into wq (kc, 8) and their scales
// into dw (kc).
template <WeightType TYPE>
static void rows16_pack(__m512i* wq, __m512* dw, const uint8_t* w, size_t row_bytes, int b0, int kc) {
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(row_bytes)));
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  for (int b = 0; b < kc; b++) {
    if constexpr (TYPE == WEIGHT_Q8_0) {
      const uint8_t* base = w + static_cast<size_t>(b0 + b) * sizeof(BlockQ8_0);
      dw[b] = rows16_scales(rows, base);
      // The 16 rows' 32 qs bytes as a 16 x 8 dword transpose: rows i and i + 8 share a vector (halves), then an 8 x 8
      // transpose runs in both halves at once; output g holds dword g of rows 0-15 (8 gathers took twice as long).
      __m512i z[8], t[8], u[8];
      for (int i = 0; i < 8; i++) {
        const __m256i lo_row = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + i * row_bytes + 2));
        const __m256i hi_row = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + (i + 8) * row_bytes + 2));
        z[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo_row), hi_row, 1);
      }
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);      // dword 0 (4) of rows i..i+3 per 128-bit chunk
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);  // dword 1 (5)
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
      }
      // Chunks 0 and 2 of u[k] hold dword k of rows 0-3 and 8-11, chunks 1 and 3 dword k + 4; u[k + 4] rows 4-7, 12-15.
      const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
      const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
      for (int k = 0; k < 4; k++) {  // + 128 as unsigned bytes
        wq[8 * b + k] = _mm512_xor_si512(_mm512_permutex2var_epi64(u[k], lo, u[k + 4]), bias);
        wq[8 * b + k + 4] = _mm512_xor_si512(_mm512_permutex2var_epi64(u[k], hi, u[k + 4]), bias);
      }
    } else {
      constexpr size_t bytes = TYPE == WEIGHT_Q5_0 ? sizeof(BlockQ5_0) : sizeof(BlockQ4_0);
      constexpr int qs_at = TYPE == WEIGHT_Q5_0 ? 6 : 2;
      const uint8_t* base = w + static_cast<size_t>(b0 + b) * bytes;
      dw[b] = rows16_scales(rows, base);
      // The 16 rows' 16 qs bytes as a 16 x 4 dword transpose: z[j] holds rows j, j + 4, j + 8, j + 12 in its 128-bit
      // chunks, and a 4 x 4 transpose in every chunk leaves v[g] = dword g of rows 0-15 (4 gathers took longer).
      __m512i z[4];
      for (int j = 0; j < 4; j++) {
        const uint8_t* q = base + qs_at + j * row_bytes;
        z[j] = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)));
        for (int c = 1; c < 4; c++)
          z[j] = _mm512_inserti32x4(z[j], _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 4 * c * row_bytes)), c);
      }
      const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
      const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
      const __m512i v[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2), _mm512_unpacklo_epi64(t1, t3),
                            _mm512_unpackhi_epi64(t1, t3)};
      for (int g = 0; g < 4; g++) {                                                  // v[g]: qs bytes 4g..4g+3
        wq[8 * b + g] = _mm512_and_si512(v[g], low4);                                // weights 4g..4g+3
        wq[8 * b + 4 + g] = _mm512_and_si512(_mm512_srli_epi16(v[g], 4), low4);      // weights 16+4g..16+4g+3
      }
      if constexpr (TYPE == WEIGHT_Q5_0) {
        // The fifth bit of weight j is bit j of qh, and vector h holds weights 4h..4h+3 in both halves (16 + 4(h - 4)
        // = 4h), so its byte k takes bit 4h + k: byte h / 2 of the row's qh, bit 4 (h & 1) + k. Replicate that byte
        // into the lane's 4 bytes, test each byte's own bit, and add 16 where it is set.
        const __m512i qh = _mm512_i32gather_epi32(rows, base + 2, 1);
        const __m512i sixteen = _mm512_set1_epi8(16);
        for (int h = 0; h < 8; h++) {
          const __m512i rep = _mm512_shuffle_epi8(qh, rows16_byte_index(h / 2));
          const __mmask64 set = _mm512_test_epi8_mask(rep, _mm512_set1_epi32(static_cast<int>(0x08040201u << (4 * (h & 1)))));
          wq[8 * b + h] = _mm512_mask_add_epi8(wq[8 * b + h], set, wq[8 * b + h], sixteen);
        }
      }
    }
  }
}

// y (TN, ldy) over 16 rows += the repacked blocks b0..b0+kc times TN tokens' activations. sums: Q4_0 / Q5_0: xs (TN,
// ldd) floats, d_x sum(q_x); Q8_0: (TN, ldd) int32, -128 sum(q_x).
template <WeightType TYPE, int TN>
static void rows16(float* y, int ldy,                                      // (TN, ldy), 16 rows
                   const int8_t* xq, int ldq,                             // (TN, ldq)
                   const float* xd, const void* sums, int ldd,            // (TN, ldd)
                   const __m512i* wq, const __m512* dw, int b0, int kc) {  // repacked blocks b0..b0+kc
  __m512 acc[TN];
  for (int t = 0; t < TN; t++) acc[t] = _mm512_setzero_ps();
  for (int b = 0; b < kc; b++) {
    const __m512i* wb = wq + 8 * b;
    for (int t = 0; t < TN; t++) {
      const int8_t* x = xq + static_cast<size_t>(t) * ldq + (b0 + b) * 32;
      const size_t i = static_cast<size_t>(t) * ldd + b0 + b;
      __m512i dot = TYPE == WEIGHT_Q8_0 ? _mm512_set1_epi32(static_cast<const int32_t*>(sums)[i]) : _mm512_setzero_si512();
      for (int g = 0; g < 8; g++) dot = _mm512_dpbusd_epi32(dot, wb[g], _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(x + 4 * g)));
      __m512 v;
      if constexpr (TYPE == WEIGHT_Q8_0) {
        v = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(xd[i]));
      } else {
        constexpr float offset = TYPE == WEIGHT_Q5_0 ? 16.0f : 8.0f;
        v = _mm512_fmsub_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(xd[i]), _mm512_set1_ps(offset * static_cast<const float*>(sums)[i]));
      }
      acc[t] = _mm512_fmadd_ps(v, dw[b], acc[t]);
    }
  }
  for (int t = 0; t < TN; t++) {
    float* yt = y + static_cast<size_t>(t) * ldy;
    _mm512_storeu_ps(yt, _mm512_add_ps(_mm512_loadu_ps(yt), acc[t]));
  }
}

using Rows16Fn = void (*)(float*, int, const int8_t*, int, const float*, const void*, int, const __m512i*,
                          const __m512*, int, int);

template <WeightType TYPE>
static int rows16_gemm(float* y, const int8_t* xq, const float* xd, const void* sums, const uint8_t* w, int T, int in,
                       int out, int r0, int r1) {
  static const Rows16Fn fns[8] = {rows16<TYPE, 1>, rows16<TYPE, 2>, rows16<TYPE, 3>, rows16<TYPE, 4>,
                                  rows16<TYPE, 5>, rows16<TYPE, 6>, rows16<TYPE, 7>, rows16<TYPE, 8>};
  constexpr size_t block_bytes = TYPE == WEIGHT_Q8_0 ? sizeof(BlockQ8_0) : TYPE == WEIGHT_Q5_0 ? sizeof(BlockQ5_0) : sizeof(BlockQ4_0);
  const int nb = in / 32;
  const size_t row_bytes = static_cast<size_t>(nb) * block_bytes;
  const size_t sum_bytes = TYPE == WEIGHT_Q8_0 ? sizeof(int32_t) : sizeof(float);
  const int groups = (r1 - r0) / ROWS16;
  __m512i wq[ROWS16_KC * 8];
  __m512 dw[ROWS16_KC];
  for (int gi = 0; gi < groups; gi++) {
    const int r = r0 + gi * ROWS16;
    for (int b0 = 0; b0 < nb; b0 += ROWS16_KC) {
      const int kc = nb - b0 < ROWS16_KC ? nb - b0 : ROWS16_KC;
      // The repack reads 16 rows at once, interleaved streams the hardware prefetcher does not follow: touch the
      // next chunk (the next group's first at a group's end) while this one is packed and multiplied.
      const int nb0 = b0 + ROWS16_KC < nb ? b0 + ROWS16_KC : 0, ngi = nb0 == 0 ? gi + 1 : gi;
      if (ngi < groups) {
        const int nkc = nb - nb0 < ROWS16_KC ? nb - nb0 : ROWS16_KC;
        const char* nx = reinterpret_cast<const char*>(w) + static_cast<size_t>(r0 + ngi * ROWS16) * row_bytes + static_cast<size_t>(nb0) * block_bytes;
        for (int i = 0; i < ROWS16; i++)
          for (size_t l = 0; l < static_cast<size_t>(nkc) * block_bytes; l += 64) _mm_prefetch(nx + i * row_bytes + l, _MM_HINT_T0);
      }
      rows16_pack<TYPE>(wq, dw, w + static_cast<size_t>(r) * row_bytes, row_bytes, b0, kc);
      for (int t = 0; t < T; t += 8) {
        const int tn = T - t < 8 ? T - t : 8;
        fns[tn - 1](y + static_cast<size_t>(t) * out + r, out, xq + static_cast<size_t>(t) * in, in,
                    xd + static_cast<size_t>(t) * nb, static_cast<const char*>(sums) + static_cast<size_t>(t) * nb * sum_bytes,
                    nb, wq, dw, b0, kc);
      }
    }
  }
  return groups * ROWS16;
}

int rows16_gemm_avx512(float* y, const int8_t* xq, const float* xd, const void* sums, const uint8_t* w,
                       WeightType type, int T, int in, int out, int r0, int r1) {
  switch (type) {
    case WEIGHT_Q4_0: return rows16_gemm<WEIGHT_Q4_0>(y, xq, xd, sums, w, T, in, out, r0, r1);
    case WEIGHT_Q5_0: return rows16_gemm<WEIGHT_Q5_0>(y, xq, xd, sums, w, T, in, out, r0, r1);
    case WEIGHT_Q8_0: return rows16_gemm<WEIGHT_Q8_0>(y, xq, xd, sums, w, T, in, out, r0, r1);
    default: return 0;
  }
}
