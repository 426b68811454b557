// rmsnorm_forward: out = x / sqrt(mean(x^2) + eps) * weight, row by row (Llama RMSNorm, computed in f32 like
// Hugging Face). Not fused into the matmuls: it is a few microseconds per step.
#include <cmath>

#include "kernels.h"
#include "thread_pool.h"

static void rmsnorm_rows(float* out, const float* x, const float* weight, int t0, int t1, int C, float eps) {
  for (int t = t0; t < t1; t++) {
    const float* xr = x + static_cast<size_t>(t) * C;
    float* orow = out + static_cast<size_t>(t) * C;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= C; i += 8)
      for (int l = 0; l < 8; l++) acc[l] += xr[i + l] * xr[i + l];
    for (; i < C; i++) acc[i & 7] += xr[i] * xr[i];
    float ss = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    float inv = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
    for (int j = 0; j < C; j++) orow[j] = weight[j] * (xr[j] * inv);
  }
}

void rmsnorm_forward(float* out, const float* x, const float* weight, int T, int C, float eps, ThreadPool* pool) {
  if (pool == nullptr || T < 16) {
    rmsnorm_rows(out, x, weight, 0, T, C, eps);
    return;
  }
  pool->parallel_for(T, 1, [&](int64_t b, int64_t e) {
    rmsnorm_rows(out, x, weight, static_cast<int>(b), static_cast<int>(e), C, eps);
  });
}
