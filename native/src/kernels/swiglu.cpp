// swiglu_forward: out = silu(gate) * up, the Llama MLP activation, plus exp_fast, the exp shared with softmax.
// Not the gate/up projections (one fused matmul in model.cpp).
#include <cstring>

#include "kernels.h"
#include "thread_pool.h"

// Cephes-style expf: 2^n * p(r), r in [-ln2/2, ln2/2]. Branch-free so loops over it vectorise.
float exp_fast(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  float fx = x * 1.44269504088896341f;
  int n = static_cast<int>(fx + (fx >= 0.0f ? 0.5f : -0.5f));
  float fn = static_cast<float>(n);
  float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
  float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  int32_t bits = (n + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// Implemented in swiglu_avx2.cpp; same contract as swiglu_rows.
void swiglu_rows_avx2(float* out, const float* gate, const float* up, int t0, int t1, int I, int ld);

static void swiglu_rows(float* out, const float* gate, const float* up, int t0, int t1, int I, int ld) {
  for (int t = t0; t < t1; t++) {
    const float* g = gate + static_cast<size_t>(t) * ld;
    const float* u = up + static_cast<size_t>(t) * ld;
    float* o = out + static_cast<size_t>(t) * I;
    for (int i = 0; i < I; i++) o[i] = g[i] / (1.0f + exp_fast(-g[i])) * u[i];
  }
}

void swiglu_forward(float* out, const float* gate, const float* up, int T, int I, int ld, ThreadPool* pool) {
  const bool avx2 = simd_use_avx2();
  auto rows = [&](int64_t b, int64_t e) {
    if (avx2) swiglu_rows_avx2(out, gate, up, static_cast<int>(b), static_cast<int>(e), I, ld);
    else swiglu_rows(out, gate, up, static_cast<int>(b), static_cast<int>(e), I, ld);
  };
  if (pool == nullptr || T < 8) rows(0, T);
  else pool->parallel_for(T, 1, rows);
}
