// SwiGLU for training: out = silu(gate) * up with an exact exp (the serving kernel uses exp_fast);
// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g))).
#include <cmath>

#include "../kernels/thread_pool.h"
#include "train_ops.h"

void swiglu_train_forward(float* out, const float* gate, const float* up, int N, int I, ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(N) * I;
  pool->parallel_for(n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int N, int I,
                     ThreadPool* pool) {
  const int64_t n = static_cast<int64_t>(N) * I;
  pool->parallel_for(n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      dup[i] = dout[i] * g * sig;
      dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
  });
}
