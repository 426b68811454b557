// geglu_forward: out = gelu_tanh(gate) * up, Gemma's MLP activation (transformers' gelu_pytorch_tanh). Not the
// gate/up projections (one fused matmul in model.cpp), not SwiGLU (swiglu.cpp). The portable rows call std::tanh; the
// AVX2 rows (geglu_avx2.cpp) the vector exp, equal to a few ulp.
#include <cmath>

#include "kernels.h"
#include "thread_pool.h"

// Implemented in geglu_avx2.cpp; same contract as the rows below.
void geglu_rows_avx2(float* out, const float* gate, const float* up, int t0, int t1, int I, int ld);

float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}

void geglu_forward(float* out, const float* gate, const float* up, int T, int I, int ld, ThreadPool* pool) {
  const bool avx2 = simd_use_avx2();
  auto rows = [&](int64_t b, int64_t e) {
    if (avx2) {
      geglu_rows_avx2(out, gate, up, static_cast<int>(b), static_cast<int>(e), I, ld);
      return;
    }
    for (int64_t t = b; t < e; t++) {
      const float* g = gate + static_cast<size_t>(t) * ld;
      const float* u = up + static_cast<size_t>(t) * ld;
      float* o = out + static_cast<size_t>(t) * I;
      for (int i = 0; i < I; i++) o[i] = gelu_tanh(g[i]) * u[i];
    }
  };
  if (pool == nullptr || T < 8) rows(0, T);
  else pool->parallel_for(T, 1, rows);
}
