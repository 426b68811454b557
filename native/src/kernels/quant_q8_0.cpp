// The Q8_0 weight format: IEEE half conversion, the weight quantizer and dequantizer. Load-time code, portable only
// (it runs once per weight). Not the int8 matmul (matmul_q8_0.cpp) and not the activation quantizer, which rounds
// differently (nearest even) and keeps its scale in f32.
#include <cmath>
#include <cstring>

#include "kernels.h"

uint16_t f16_from_f32(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;          // NaN stays a (quiet) NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00u;         // >= 65520 rounds to inf
  if (ax < 0x38800000u) {                               // below 2^-14: a half subnormal, units of 2^-24
    // |f| * 2^24 is exact (a power of two), and nearbyint rounds it to nearest even; 1024 is the smallest normal.
    return sign | static_cast<uint16_t>(std::nearbyint(std::fabs(f) * 16777216.0f));
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even; a carry out of
  // the mantissa correctly bumps the exponent.
  const uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u) - (112u << 23);
  return sign | static_cast<uint16_t>(r >> 13);
}

float f32_from_f16(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t bits;
  if (e == 0) {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // subnormal (or zero): exact
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  } else if (e == 31) {
    bits = sign | 0x7f800000u | (m << 13);
  } else {
    bits = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void q8_0_quantize(BlockQ8_0* dst, const float* src, size_t n) {
  for (size_t b = 0; b < n / Q8_0_BLOCK; b++) {
    const float* x = src + b * Q8_0_BLOCK;
    float amax = 0.0f;
    for (int j = 0; j < Q8_0_BLOCK; j++) amax = std::fmax(amax, std::fabs(x[j]));
    // gguf-py: d = amax / 127 and id = 1 / d in f32, q = np_roundf(x * id); the scale is rounded to f16 only when
    // stored, so q comes from the unrounded d (as in ggml's reference).
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    dst[b].d = f16_from_f32(d);
    for (int j = 0; j < Q8_0_BLOCK; j++) dst[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void q8_0_dequantize(float* dst, const BlockQ8_0* src, size_t n) {
  for (size_t b = 0; b < n / Q8_0_BLOCK; b++) {
    const float d = f32_from_f16(src[b].d);
    for (int j = 0; j < Q8_0_BLOCK; j++) dst[b * Q8_0_BLOCK + j] = d * src[b].qs[j];
  }
}
