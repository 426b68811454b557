// softmax_weights: the unnormalised softmax weights w[i] = exp((x[i] - max) * inv_t) of one logits row, in double,
// and their sum: what the sampler's draw and its top-p nucleus read (libs/model sampler.ts). exp_f64 is within 2 ulp
// of a correctly rounded exp (as the JavaScript engine's Math.exp, which this replaces, is within 1), so a draw can
// differ only where its uniform lands within about 1e-15 of a boundary. Not the attention softmax (f32,
// attention.cpp) nor the normalisation.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

// exp(t) = 2^k * exp(r), k = round(t / ln2), r = t - k ln2 in [-ln2/2, ln2/2], exp(r) by kExpF64Taylor (kernels.h).
// Outside [kExpF64Min, kExpF64Max] (subnormal results, overflow, NaN) std::exp answers.
double exp_f64(double t) {
  if (!(t >= kExpF64Min && t <= kExpF64Max)) return std::exp(t);
  const double k = std::nearbyint(t * kLog2e);
  double r = t - k * kLn2Hi;
  r = r - k * kLn2Lo;
  double p = 0;
  for (double c : kExpF64Taylor) p = p * r + c;
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
