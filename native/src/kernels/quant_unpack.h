// Per-step unpacking of Q4_0 / Q4_K / Q5_K / Q6_K blocks into the one shape the int8 matmul tiles take: for every
// 32 weights, int8 q[32], a scale per 16 weights and an offset per 32, so w = s * q + m. Static inline on purpose:
// matmul_quant.cpp (portable) and matmul_quant_avx2.cpp (compiled for avx2, where these byte loops vectorize) each
// get their own copy, and no AVX2 instance of a shared inline function can reach portable code.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels.h"

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

// Unpacks `units` consecutive blocks of type t (32 weights for Q4_0, 256 for the K-quants) starting at src.
// q: (units * elems) int8; s: (units * elems / 16) scales; m: (units * elems / 32) offsets (all zero for the
// symmetric types Q4_0 and Q6_K). Returns whether any offset may be non-zero.
static inline bool quant_unpack(WeightType t, const uint8_t* src, int units, int8_t* q, float* s, float* m) {
  switch (t) {
    case WEIGHT_Q4_0: {
      const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(src);
      for (int u = 0; u < units; u++, q += 32, s += 2, m += 1) {
        for (int j = 0; j < 16; j++) {
          q[j] = static_cast<int8_t>((b[u].qs[j] & 0xF) - 8);
          q[j + 16] = static_cast<int8_t>((b[u].qs[j] >> 4) - 8);
        }
        s[0] = s[1] = f32_from_f16(b[u].d);
        m[0] = 0.0f;
      }
      return false;
    }
    case WEIGHT_Q4_K: {
      const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(src);
      for (int u = 0; u < units; u++) {
        const float d = f32_from_f16(b[u].d), dmin = f32_from_f16(b[u].dmin);
        for (int g = 0; g < 4; g++, q += 64, s += 4, m += 2) {
          const uint8_t* qs = b[u].qs + 32 * g;
          for (int l = 0; l < 32; l++) {
            q[l] = static_cast<int8_t>(qs[l] & 0xF);
            q[l + 32] = static_cast<int8_t>(qs[l] >> 4);
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
      return true;
    }
    case WEIGHT_Q5_K: {
      const BlockQ5_K* b = reinterpret_cast<const BlockQ5_K*>(src);
      for (int u = 0; u < units; u++) {
        const float d = f32_from_f16(b[u].d), dmin = f32_from_f16(b[u].dmin);
        for (int g = 0; g < 4; g++, q += 64, s += 4, m += 2) {
          const uint8_t* qs = b[u].qs + 32 * g;
          const uint8_t* qh = b[u].qh;
          const int lo = 2 * g, hi = 2 * g + 1;
          for (int l = 0; l < 32; l++) {
            q[l] = static_cast<int8_t>((qs[l] & 0xF) | (((qh[l] >> lo) & 1) << 4));
            q[l + 32] = static_cast<int8_t>((qs[l] >> 4) | (((qh[l] >> hi) & 1) << 4));
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
      return true;
    }
    case WEIGHT_Q6_K: {
      const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(src);
      for (int u = 0; u < units; u++) {
        const float d = f32_from_f16(b[u].d);
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
