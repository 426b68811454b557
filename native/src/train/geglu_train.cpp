// GeGLU for training (Gemma's MLP): out = gelu_tanh(gate) * up with gelu_tanh(g) = 0.5 g (1 + tanh(u)),
// u = sqrt(2/pi) (g + 0.044715 g^3); d gelu_tanh / dg = 0.5 (1 + tanh u) + 0.5 g (1 - tanh^2 u) sqrt(2/pi) (1 + 3 *
// 0.044715 g^2). gelu_tanh is the portable serving kernel's (geglu.cpp).
#include <cmath>

#include "../kernels/kernels.h"
#include "../kernels/thread_pool.h"
#include "train_ops.h"

void geglu_train_forward(float* out, const float* gate, const float* up, int N, int I, ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(N) * I;
  pool->parallel_for(n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) out[i] = gelu_tanh(gate[i]) * up[i];
  });
}

void geglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int N, int I,
                    ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(N) * I;
  const double k = 0.7978845608028654;  // sqrt(2 / pi)
  pool->parallel_for(n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const double g = gate[i];
      const double th = std::tanh(k * (g + 0.044715 * g * g * g));
      const double dgelu = 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * g * g);
      dup[i] = dout[i] * gelu_tanh(gate[i]);
      dgate[i] = static_cast<float>(dout[i] * up[i] * dgelu);
    }
  });
}
