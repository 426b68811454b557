// softmax_weights: the unnormalised softmax weights w[i] = exp((x[i] - max) * inv_t) of one logits row, in double,
// and their sum: what the sampler's draw and its top-p nucleus read (libs/model sampler.ts). exp_f64 is a double exp
// within ~1 ulp of a correctly rounded one (the JavaScript engine's Math.exp, which this replaces, is too), so the
// sampler picks the same tokens. Not the attention softmax (f32, attention.cpp) nor the normalisation.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

// exp(t) = 2^k * exp(r), k = round(t / ln2), r = t - k ln2 in [-ln2/2, ln2/2] (ln2 split in two so k * LN2_HI is exact),
// exp(r) by its Taylor series to r^13 (the next term is under 1e-17 relative). Outside [-708, 709] (subnormal results,
// overflow, NaN) std::exp answers.
double exp_f64(double t) {
  if (!(t >= kExpF64Min && t <= kExpF64Max)) return std::exp(t);
  const double k = std::nearbyint(t * 1.4426950408889634074);
  double r = t - k * 6.93147180369123816490e-01;
  r = r - k * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t bits = (static_cast<int64_t>(k) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, 8);
  return p * scale;
}

// Implemented in softmax_weights_avx2.cpp; same contract as softmax_weights.
double softmax_weights_avx2(double* w, const float* x, size_t n, double max, double inv_t);

double softmax_weights(double* w,       // (n) out
                       const float* x,  // (n) logits, -inf for masked ids
                       size_t n, double max, double inv_t) {
  if (simd_use_avx2()) return softmax_weights_avx2(w, x, n, max, inv_t);
  double z = 0;
  for (size_t i = 0; i < n; i++) z += w[i] = exp_f64((static_cast<double>(x[i]) - max) * inv_t);
  return z;
}
