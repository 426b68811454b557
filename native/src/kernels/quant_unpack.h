// Per-step unpacking of Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q5_K / Q6_K blocks into the one shape the int8 matmul tiles take: for every
// 32 weights, int8 q[32], a scale per 16 weights and an offset per 32, so w = s * q + m. Static inline on purpose:
// matmul_quant.cpp (portable) and matmul_quant_avx2.cpp (compiled for avx2, where these byte loops vectorize) each
// get their own copy, and no AVX2 instance of a shared inline function can reach portable code.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels.h"

// Half to float: the F16C instruction where the including unit says it is compiled for it (the AVX2 unit defines
// QUANT_UNPACK_F16C; `#pragma GCC target` does not define __F16C__), else the portable conversion. It runs once per
// 32 weights for Q4_0, so a call into the branchy portable one costs about a cycle per weight.
#if defined(QUANT_UNPACK_F16C)
#include <immintrin.h>
static inline float unpack_f16(uint16_t h) { return _cvtsh_ss(h); }
#else
static inline float unpack_f16(uint16_t h) { return f32_from_f16(h); }
#endif

// Sub-block j (0..7) of a K-quant super-block: its 6-bit scale and min (ggml's get_scale_min_k4).
static inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// kFifthBits[b]: the 8 bits of byte b spread to bit 4 of 8 bytes (bit i -> byte i), the fifth bits of Q5_0/Q5_1.
struct FifthBits {
  uint64_t v[256];
  constexpr FifthBits() : v() {
    for (int b = 0; b < 256; b++)
      for (int i = 0; i < 8; i++)
        if (b & (1 << i)) v[b] |= 0x10ull << (8 * i);
  }
};
static constexpr FifthBits kFifthBits{};

// Q4_0/Q4_1/Q5_0/Q5_1 nibbles (16 bytes: weights j and j + 16) as 32 bytes in weight order, plus the fifth bits of
// a little-endian qh word when qh is non-null.
static inline void unpack_nibbles32(const uint8_t* qs, const uint8_t* qh, int8_t* q) {
  const uint64_t lo4 = 0x0F0F0F0F0F0F0F0Full;
  uint64_t w[2], out[4];
  std::memcpy(w, qs, 16);
  out[0] = w[0] & lo4;
  out[1] = w[1] & lo4;
  out[2] = (w[0] >> 4) & lo4;
  out[3] = (w[1] >> 4) & lo4;
  if (qh != nullptr)
    for (int k = 0; k < 4; k++) out[k] |= kFifthBits.v[qh[k]];
  std::memcpy(q, out, 32);
}

// Q4_K, and Q5_K (FIFTH: the fifth bit of weight l of 64-weight group g is bit 2g of qh[l], 2g + 1 for the high
// half): per group, 64 q, 4 scales (one per 16) and 2 offsets.
template <typename B, bool FIFTH>
static inline void unpack_k4(const B* b, int units, int8_t* __restrict__ q, float* __restrict__ s, float* __restrict__ m) {
  for (int u = 0; u < units; u++) {
    const float d = unpack_f16(b[u].d), dmin = unpack_f16(b[u].dmin);
    for (int g = 0; g < 4; g++, q += 64, s += 4, m += 2) {
      const uint8_t* qs = b[u].qs + 32 * g;
      for (int l = 0; l < 32; l++) {
        int lo = qs[l] & 0xF, hi = qs[l] >> 4;
        if constexpr (FIFTH) {
          lo |= ((b[u].qh[l] >> (2 * g)) & 1) << 4;
          hi |= ((b[u].qh[l] >> (2 * g + 1)) & 1) << 4;
        }
        q[l] = static_cast<int8_t>(lo);
        q[l + 32] = static_cast<int8_t>(hi);
      }
      uint8_t sc, mn;
      unpack_scale_min_k4(2 * g, b[u].scales, &sc, &mn);
      s[0] = s[1] = d * sc;
      m[0] = -dmin * mn;
      unpack_scale_min_k4(2 * g + 1, b[u].scales, &sc, &mn);
      s[2] = s[3] = d * sc;
      m[1] = -dmin * mn;
    }
  }
}

// Unpacks `units` consecutive blocks of type t (32 weights for Q4_0/Q4_1/Q5_0/Q5_1, 256 for the K-quants) at src.
// q: (units * elems) int8; s: (units * elems / 16) scales; m: (units * elems / 32) offsets (all zero for the
// symmetric Q6_K). Returns true for the types whose q are unsigned (0..15 or 0..31) with an offset per 32 (Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K; the AVX2 tile feeds them to maddubs as they are), false for Q6_K (signed q, no
// offset).
static inline bool quant_unpack(WeightType t, const uint8_t* __restrict__ src, int units, int8_t* __restrict__ q,
                                float* __restrict__ s, float* __restrict__ m) {
  switch (t) {
    case WEIGHT_Q4_0: {
      // w = d * (nibble - 8) = d * nibble - 8d: the nibbles go out unchanged (two 64-bit masks per 16 bytes; byte
      // loops over 18-byte blocks vectorize badly) and -8d becomes the block's offset.
      const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(src);
      for (int u = 0; u < units; u++, q += 32, s += 2, m += 1) {
        unpack_nibbles32(b[u].qs, nullptr, q);
        const float d = unpack_f16(b[u].d);
        s[0] = s[1] = d;
        m[0] = -8.0f * d;
      }
      return true;
    }
    case WEIGHT_Q4_1: {  // w = d * nibble + m
      const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(src);
      for (int u = 0; u < units; u++, q += 32, s += 2, m += 1) {
        unpack_nibbles32(b[u].qs, nullptr, q);
        s[0] = s[1] = unpack_f16(b[u].d);
        m[0] = unpack_f16(b[u].m);
      }
      return true;
    }
    case WEIGHT_Q5_0: {  // w = d * (q - 16) = d * q - 16d
      const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(src);
      for (int u = 0; u < units; u++, q += 32, s += 2, m += 1) {
        unpack_nibbles32(b[u].qs, b[u].qh, q);
        const float d = unpack_f16(b[u].d);
        s[0] = s[1] = d;
        m[0] = -16.0f * d;
      }
      return true;
    }
    case WEIGHT_Q5_1: {  // w = d * q + m
      const BlockQ5_1* b = reinterpret_cast<const BlockQ5_1*>(src);
      for (int u = 0; u < units; u++, q += 32, s += 2, m += 1) {
        unpack_nibbles32(b[u].qs, b[u].qh, q);
        s[0] = s[1] = unpack_f16(b[u].d);
        m[0] = unpack_f16(b[u].m);
      }
      return true;
    }
    case WEIGHT_Q4_K:
      unpack_k4<BlockQ4_K, false>(reinterpret_cast<const BlockQ4_K*>(src), units, q, s, m);
      return true;
    case WEIGHT_Q5_K:
      unpack_k4<BlockQ5_K, true>(reinterpret_cast<const BlockQ5_K*>(src), units, q, s, m);
      return true;
    case WEIGHT_Q6_K: {
      const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(src);
      for (int u = 0; u < units; u++) {
        const float d = unpack_f16(b[u].d);
        for (int n = 0; n < 2; n++, q += 128) {
          const uint8_t* ql = b[u].ql + 64 * n;
          const uint8_t* qh = b[u].qh + 32 * n;
          for (int l = 0; l < 32; l++) {
            q[l] = static_cast<int8_t>(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
            q[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
          }
        }
        for (int j = 0; j < 16; j++) s[j] = d * b[u].scales[j];
        for (int j = 0; j < 8; j++) m[j] = 0.0f;
        s += 16;
        m += 8;
      }
      return false;
    }
    default:
      return false;
  }
}
