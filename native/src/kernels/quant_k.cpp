// The GGML block formats beyond Q8_0: Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q4_K, Q5_K and Q6_K (ggml-common.h layouts), with
// their dequantizers (as ggml's dequantize_row_*) and quantizers. Load-time code, portable only: it runs once per
// weight. Not the matmul (matmul_quant.cpp) and not the unpacking it does per step (quant_unpack.h).
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "quant_unpack.h"  // unpack_scale_min_k4: the K-quant scale packing

bool weight_is_quantized(WeightType t) {
  return t == WEIGHT_Q8_0 || t == WEIGHT_Q4_0 || t == WEIGHT_Q4_1 || t == WEIGHT_Q5_0 || t == WEIGHT_Q5_1 ||
         t == WEIGHT_Q4_K || t == WEIGHT_Q5_K || t == WEIGHT_Q6_K;
}

int quant_block_elems(WeightType t) {
  return t == WEIGHT_Q4_K || t == WEIGHT_Q5_K || t == WEIGHT_Q6_K ? QK_K : 32;
}

size_t quant_block_bytes(WeightType t) {
  switch (t) {
    case WEIGHT_Q8_0: return sizeof(BlockQ8_0);
    case WEIGHT_Q4_0: return sizeof(BlockQ4_0);
    case WEIGHT_Q4_1: return sizeof(BlockQ4_1);
    case WEIGHT_Q5_0: return sizeof(BlockQ5_0);
    case WEIGHT_Q5_1: return sizeof(BlockQ5_1);
    case WEIGHT_Q4_K: return sizeof(BlockQ4_K);
    case WEIGHT_Q5_K: return sizeof(BlockQ5_K);
    case WEIGHT_Q6_K: return sizeof(BlockQ6_K);
    default: return 0;
  }
}

const char* weight_type_name(WeightType t) {
  switch (t) {
    case WEIGHT_F32: return "f32";
    case WEIGHT_BF16: return "bf16";
    case WEIGHT_Q8_0: return "q8_0";
    case WEIGHT_Q4_0: return "q4_0";
    case WEIGHT_Q4_1: return "q4_1";
    case WEIGHT_Q5_0: return "q5_0";
    case WEIGHT_Q5_1: return "q5_1";
    case WEIGHT_Q4_K: return "q4_k";
    case WEIGHT_Q5_K: return "q5_k";
    case WEIGHT_Q6_K: return "q6_k";
    default: return "auto";
  }
}

static void dequantize_q4_0(float* y, const BlockQ4_0* x, size_t nb) {
  for (size_t i = 0; i < nb; i++) {
    const float d = f32_from_f16(x[i].d);
    for (int j = 0; j < 16; j++) {
      y[i * 32 + j] = d * ((x[i].qs[j] & 0xF) - 8);
      y[i * 32 + j + 16] = d * ((x[i].qs[j] >> 4) - 8);
    }
  }
}

static void dequantize_q4_1(float* y, const BlockQ4_1* x, size_t nb) {
  for (size_t i = 0; i < nb; i++) {
    const float d = f32_from_f16(x[i].d), m = f32_from_f16(x[i].m);
    for (int j = 0; j < 16; j++) {
      y[i * 32 + j] = (x[i].qs[j] & 0xF) * d + m;
      y[i * 32 + j + 16] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

// Q5_0 / Q5_1: the fifth bits of weights j and j + 16 are bits j and j + 16 of the little-endian qh word.
template <typename B, bool OFFSET>
static void dequantize_q5(float* y, const B* x, size_t nb) {
  for (size_t i = 0; i < nb; i++) {
    const float d = f32_from_f16(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; j++) {
      const int x0 = (x[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
      const int x1 = (x[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
      if constexpr (OFFSET) {
        const float m = f32_from_f16(x[i].m);
        y[i * 32 + j] = x0 * d + m;
        y[i * 32 + j + 16] = x1 * d + m;
      } else {
        y[i * 32 + j] = (x0 - 16) * d;
        y[i * 32 + j + 16] = (x1 - 16) * d;
      }
    }
  }
}

// Q4_K, and Q5_K (FIFTH: plus 16 where the weight's bit in qh is set), in ggml's operation order: d1 * q - m1.
template <typename B, bool FIFTH>
static void dequantize_k4(float* y, const B* x, size_t nb) {
  for (size_t i = 0; i < nb; i++) {
    const float d = f32_from_f16(x[i].d), dmin = f32_from_f16(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int g = 0; g < 4; g++, q += 32) {  // 64 weights: sub-blocks 2g (low nibbles) and 2g+1 (high)
      uint8_t sc, m;
      unpack_scale_min_k4(2 * g, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      unpack_scale_min_k4(2 * g + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) {
        int h = 0;
        if constexpr (FIFTH) h = x[i].qh[l] & (1u << (2 * g)) ? 16 : 0;
        *y++ = d1 * ((q[l] & 0xF) + h) - m1;
      }
      for (int l = 0; l < 32; l++) {
        int h = 0;
        if constexpr (FIFTH) h = x[i].qh[l] & (2u << (2 * g)) ? 16 : 0;
        *y++ = d2 * ((q[l] >> 4) + h) - m2;
      }
    }
  }
}

static void dequantize_q6_k(float* y, const BlockQ6_K* x, size_t nb) {
  for (size_t i = 0; i < nb; i++) {
    const float d = f32_from_f16(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; l++) {
        const int is = l / 16;
        y[l] = d * sc[is] * (((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        y[l + 32] = d * sc[is + 2] * (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        y[l + 64] = d * sc[is + 4] * (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        y[l + 96] = d * sc[is + 6] * (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
  }
}

void quant_dequantize(WeightType t, float* dst, const void* src, size_t n) {
  const size_t nb = n / quant_block_elems(t);
  switch (t) {
    case WEIGHT_Q8_0: q8_0_dequantize(dst, static_cast<const BlockQ8_0*>(src), n); break;
    case WEIGHT_Q4_0: dequantize_q4_0(dst, static_cast<const BlockQ4_0*>(src), nb); break;
    case WEIGHT_Q4_1: dequantize_q4_1(dst, static_cast<const BlockQ4_1*>(src), nb); break;
    case WEIGHT_Q5_0: dequantize_q5<BlockQ5_0, false>(dst, static_cast<const BlockQ5_0*>(src), nb); break;
    case WEIGHT_Q5_1: dequantize_q5<BlockQ5_1, true>(dst, static_cast<const BlockQ5_1*>(src), nb); break;
    case WEIGHT_Q4_K: dequantize_k4<BlockQ4_K, false>(dst, static_cast<const BlockQ4_K*>(src), nb); break;
    case WEIGHT_Q5_K: dequantize_k4<BlockQ5_K, true>(dst, static_cast<const BlockQ5_K*>(src), nb); break;
    case WEIGHT_Q6_K: dequantize_q6_k(dst, static_cast<const BlockQ6_K*>(src), nb); break;
    default: break;
  }
}

// ---- quantizers -------------------------------------------------------------------------------------------

// Round to nearest (ties to even) without a libm call: for |v| < 2^22, adding 1.5 * 2^23 leaves the rounded integer
// in the low mantissa bits (larger magnitudes saturate at ±4e6, far outside every clamp that follows). The K-quant
// searches call it for every weight several times.
static inline int nearest_int(float v) {
  v = v > 4e6f ? 4e6f : v < -4e6f ? -4e6f : v;
  const float shifted = v + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// The value of largest magnitude among x[0..n) (its sign kept; the first of equal magnitudes), as ggml picks it.
static float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; j++)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

// ggml's quantize_row_q4_0_ref / q5_0_ref: d = signed_absmax / -H, q = min(2H - 1, (int8)(x/d + H + 0.5)).
template <int H>
static void symmetric_block(const float* x, uint16_t* d16, uint8_t* q) {
  const float d = signed_absmax(x, 32) / -static_cast<float>(H);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d16 = f16_from_f32(d);
  for (int j = 0; j < 32; j++) {
    const int v = static_cast<int8_t>(x[j] * id + (H + 0.5f));
    q[j] = static_cast<uint8_t>(v < 2 * H - 1 ? v : 2 * H - 1);
  }
}

static void quantize_q4_0(BlockQ4_0* y, const float* x, size_t nb) {
  uint8_t q[32];
  for (size_t i = 0; i < nb; i++, x += 32) {
    symmetric_block<8>(x, &y[i].d, q);
    for (int j = 0; j < 16; j++) y[i].qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}

// ggml's quantize_row_q4_1_ref / q5_1_ref: d = (max - min) / nmax, q = (int)((x - min) / d + 0.5) clamped, m = min.
template <int NMAX>
static void affine_block(const float* x, uint16_t* d16, uint16_t* m16, uint8_t* q) {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; j++) {
    min = x[j] < min ? x[j] : min;
    max = x[j] > max ? x[j] : max;
  }
  const float d = (max - min) / NMAX;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d16 = f16_from_f32(d);
  *m16 = f16_from_f32(min);
  for (int j = 0; j < 32; j++) {
    const int v = static_cast<int8_t>((x[j] - min) * id + 0.5f);
    q[j] = static_cast<uint8_t>(v < NMAX ? v : NMAX);
  }
}

static void quantize_q4_1(BlockQ4_1* y, const float* x, size_t nb) {
  uint8_t q[32];
  for (size_t i = 0; i < nb; i++, x += 32) {
    affine_block<15>(x, &y[i].d, &y[i].m, q);
    for (int j = 0; j < 16; j++) y[i].qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}

// Packs 32 five-bit values into a Q5 block's nibbles and qh word.
static void pack_q5(const uint8_t* q, uint8_t* qs, uint8_t* qh4) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; j++) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    qh |= static_cast<uint32_t>((q[j] & 0x10) >> 4) << j;
    qh |= static_cast<uint32_t>((q[j + 16] & 0x10) >> 4) << (j + 16);
  }
  std::memcpy(qh4, &qh, 4);
}

static void quantize_q5_0(BlockQ5_0* y, const float* x, size_t nb) {
  uint8_t q[32];
  for (size_t i = 0; i < nb; i++, x += 32) {
    symmetric_block<16>(x, &y[i].d, q);
    pack_q5(q, y[i].qs, y[i].qh);
  }
}

static void quantize_q5_1(BlockQ5_1* y, const float* x, size_t nb) {
  uint8_t q[32];
  for (size_t i = 0; i < nb; i++, x += 32) {
    affine_block<31>(x, &y[i].d, &y[i].m, q);
    pack_q5(q, y[i].qs, y[i].qh);
  }
}

// Affine fit of n values to q in [0, nmax]: x ~ scale * q - min with min >= 0 (the K-quant convention). Start from
// the range, then alternate rounding and a least-squares solve for (scale, min) a few times; keep the best error.
static void fit_scale_min(const float* x, int n, int nmax, float* scale_out, float* min_out) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; i++) {
    lo = std::fmin(lo, x[i]);
    hi = std::fmax(hi, x[i]);
  }
  if (lo > 0.0f) lo = 0.0f;
  if (hi <= lo) {
    *scale_out = 0.0f;
    *min_out = -lo;
    return;
  }
  float scale = (hi - lo) / nmax, min = -lo;
  auto error = [&](float s, float m) {
    float e = 0.0f;
    for (int i = 0; i < n; i++) {
      int q = s > 0.0f ? nearest_int((x[i] + m) / s) : 0;
      q = q < 0 ? 0 : q > nmax ? nmax : q;
      const float r = s * q - m - x[i];
      e += r * r;
    }
    return e;
  };
  float best = error(scale, min);
  for (int it = 0; it < 4; it++) {
    // Least squares of x = s*q - m over the current q: a 2x2 normal system.
    double sq = 0, sq2 = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; i++) {
      int q = nearest_int((x[i] + min) / scale);
      q = q < 0 ? 0 : q > nmax ? nmax : q;
      sq += q;
      sq2 += static_cast<double>(q) * q;
      sx += x[i];
      sqx += q * static_cast<double>(x[i]);
    }
    const double det = n * sq2 - sq * sq;
    if (det <= 0) break;
    const double s = (n * sqx - sq * sx) / det;
    double m = (s * sq - sx) / n;
    if (m < 0) m = 0;
    if (s <= 0) break;
    const float e = error(static_cast<float>(s), static_cast<float>(m));
    if (e >= best) break;
    best = e;
    scale = static_cast<float>(s);
    min = static_cast<float>(m);
  }
  *scale_out = scale;
  *min_out = min;
}

// Q4_K / Q5_K share everything but the width of q (15 or 31) and where its fifth bit goes.
template <int NMAX>
static void quantize_k_affine(uint8_t* d16, uint8_t* dmin16, uint8_t* scales, uint8_t* L, const float* x) {
  float sc[8], mn[8], max_sc = 0.0f, max_mn = 0.0f;
  for (int j = 0; j < 8; j++) {
    fit_scale_min(x + 32 * j, 32, NMAX, &sc[j], &mn[j]);
    max_sc = std::fmax(max_sc, sc[j]);
    max_mn = std::fmax(max_mn, mn[j]);
  }
  const float inv_sc = max_sc > 0 ? 63.0f / max_sc : 0.0f, inv_mn = max_mn > 0 ? 63.0f / max_mn : 0.0f;
  std::memset(scales, 0, 12);
  for (int j = 0; j < 8; j++) {
    int ls = nearest_int(inv_sc * sc[j]), lm = nearest_int(inv_mn * mn[j]);
    ls = ls > 63 ? 63 : ls;
    lm = lm > 63 ? 63 : lm;
    if (j < 4) {
      scales[j] = static_cast<uint8_t>(ls);
      scales[j + 4] = static_cast<uint8_t>(lm);
    } else {
      scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      scales[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  const uint16_t dh = f16_from_f32(max_sc / 63.0f), mh = f16_from_f32(max_mn / 63.0f);
  std::memcpy(d16, &dh, 2);
  std::memcpy(dmin16, &mh, 2);
  // q from the stored (rounded) scales, as ggml does, so the rounding of d and the 6-bit scales is compensated.
  const float d = f32_from_f16(dh), dmin = f32_from_f16(mh);
  for (int j = 0; j < 8; j++) {
    uint8_t s, m;
    unpack_scale_min_k4(j, scales, &s, &m);
    const float ds = d * s, dm = dmin * m;
    for (int i = 0; i < 32; i++) {
      int q = ds != 0.0f ? nearest_int((x[32 * j + i] + dm) / ds) : 0;
      L[32 * j + i] = static_cast<uint8_t>(q < 0 ? 0 : q > NMAX ? NMAX : q);
    }
  }
}

static void quantize_q4_k(BlockQ4_K* y, const float* x, size_t nb) {
  uint8_t L[QK_K];
  for (size_t i = 0; i < nb; i++, x += QK_K) {
    quantize_k_affine<15>(reinterpret_cast<uint8_t*>(&y[i].d), reinterpret_cast<uint8_t*>(&y[i].dmin), y[i].scales,
                          L, x);
    for (int g = 0; g < 4; g++)
      for (int l = 0; l < 32; l++) y[i].qs[32 * g + l] = static_cast<uint8_t>(L[64 * g + l] | (L[64 * g + 32 + l] << 4));
  }
}

static void quantize_q5_k(BlockQ5_K* y, const float* x, size_t nb) {
  uint8_t L[QK_K];
  for (size_t i = 0; i < nb; i++, x += QK_K) {
    quantize_k_affine<31>(reinterpret_cast<uint8_t*>(&y[i].d), reinterpret_cast<uint8_t*>(&y[i].dmin), y[i].scales,
                          L, x);
    std::memset(y[i].qh, 0, 32);
    for (int g = 0; g < 4; g++)
      for (int l = 0; l < 32; l++) {
        int l1 = L[64 * g + l], l2 = L[64 * g + 32 + l];
        if (l1 > 15) {
          l1 -= 16;
          y[i].qh[l] |= static_cast<uint8_t>(1u << (2 * g));
        }
        if (l2 > 15) {
          l2 -= 16;
          y[i].qh[l] |= static_cast<uint8_t>(2u << (2 * g));
        }
        y[i].qs[32 * g + l] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
  }
}

// Q6_K: a signed scale per 16 weights (the value of largest magnitude maps to -32), the 16 scales in int8 of a
// super-block scale d = max|scale| / 127 (sign folded so the largest maps to -128, as ggml does).
static void quantize_q6_k(BlockQ6_K* y, const float* x, size_t nb) {
  uint8_t L[QK_K];
  for (size_t i = 0; i < nb; i++, x += QK_K) {
    float sc[16], max_abs = 0.0f, max_sc = 0.0f;
    for (int j = 0; j < 16; j++) {
      sc[j] = signed_absmax(x + 16 * j, 16) / -32.0f;
      if (std::fabs(sc[j]) > max_abs) {
        max_abs = std::fabs(sc[j]);
        max_sc = sc[j];
      }
    }
    if (max_abs == 0.0f) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.0f / max_sc;
    y[i].d = f16_from_f32(1.0f / iscale);
    const float d = f32_from_f16(y[i].d);
    for (int j = 0; j < 16; j++) {
      int s = nearest_int(iscale * sc[j]);
      y[i].scales[j] = static_cast<int8_t>(s > 127 ? 127 : s < -128 ? -128 : s);
      const float ds = d * y[i].scales[j];
      for (int k = 0; k < 16; k++) {
        int q = ds != 0.0f ? nearest_int(x[16 * j + k] / ds) : 0;
        q = q < -32 ? -32 : q > 31 ? 31 : q;
        L[16 * j + k] = static_cast<uint8_t>(q + 32);
      }
    }
    for (int n = 0; n < 2; n++) {
      uint8_t* ql = y[i].ql + 64 * n;
      uint8_t* qh = y[i].qh + 32 * n;
      const uint8_t* Ln = L + 128 * n;
      for (int l = 0; l < 32; l++) {
        ql[l] = static_cast<uint8_t>((Ln[l] & 0xF) | ((Ln[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((Ln[l + 32] & 0xF) | ((Ln[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((Ln[l] >> 4) | ((Ln[l + 32] >> 4) << 2) | ((Ln[l + 64] >> 4) << 4) |
                                     ((Ln[l + 96] >> 4) << 6));
      }
    }
  }
}

void quant_quantize(WeightType t, void* dst, const float* src, size_t n) {
  const size_t nb = n / quant_block_elems(t);
  switch (t) {
    case WEIGHT_Q8_0: q8_0_quantize(static_cast<BlockQ8_0*>(dst), src, n); break;
    case WEIGHT_Q4_0: quantize_q4_0(static_cast<BlockQ4_0*>(dst), src, nb); break;
    case WEIGHT_Q4_1: quantize_q4_1(static_cast<BlockQ4_1*>(dst), src, nb); break;
    case WEIGHT_Q5_0: quantize_q5_0(static_cast<BlockQ5_0*>(dst), src, nb); break;
    case WEIGHT_Q5_1: quantize_q5_1(static_cast<BlockQ5_1*>(dst), src, nb); break;
    case WEIGHT_Q4_K: quantize_q4_k(static_cast<BlockQ4_K*>(dst), src, nb); break;
    case WEIGHT_Q5_K: quantize_q5_k(static_cast<BlockQ5_K*>(dst), src, nb); break;
    case WEIGHT_Q6_K: quantize_q6_k(static_cast<BlockQ6_K*>(dst), src, nb); break;
    default: break;
  }
}
