// RMSNorm for training: the forward keeps rstd per row; the backward adds into the residual gradient.
// out = w * x * rstd; dx = rstd * (dxhat - xhat * mean(dxhat * xhat)) with xhat = x * rstd, dxhat = dout * w.
#include <cmath>
#include <vector>

#include "../kernels/thread_pool.h"
#include "train_ops.h"

void rmsnorm_train_forward(float* out, float* rstd, const float* x, const float* weight, int N, int C, float eps,
                           ThreadPool* pool) {
  pool->parallel_for(N, 1, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) {
      const float* xr = x + n * C;
      float* o = out + n * C;
      double ss = 0;
      for (int c = 0; c < C; c++) ss += static_cast<double>(xr[c]) * xr[c];
      const float r = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
      rstd[n] = r;
      for (int c = 0; c < C; c++) o[c] = weight[c] * (xr[c] * r);
    }
  });
}

void rmsnorm_backward(float* dx, float* dweight, const float* dout, const float* x, const float* weight,
                      const float* rstd, int N, int C, ThreadPool* pool) {
  pool->parallel_for(N, 1, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; n++) {
      const float* xr = x + n * C;
      const float* g = dout + n * C;
      const float r = rstd[n];
      double dot = 0;  // sum(dxhat * xhat)
      for (int c = 0; c < C; c++) dot += static_cast<double>(g[c]) * weight[c] * (xr[c] * r);
      const float mean = static_cast<float>(dot / C);
      float* d = dx + n * C;
      for (int c = 0; c < C; c++) d[c] += r * (g[c] * weight[c] - xr[c] * r * mean);
    }
  });
  if (dweight == nullptr) return;  // frozen norm
  // dweight: columns split across threads, rows summed in order.
  pool->parallel_for(C, 16, [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(static_cast<size_t>(c1 - c0), 0.0);
    for (int n = 0; n < N; n++) {
      const float* xr = x + static_cast<size_t>(n) * C;
      const float* g = dout + static_cast<size_t>(n) * C;
      for (int64_t c = c0; c < c1; c++) acc[c - c0] += static_cast<double>(g[c]) * (xr[c] * rstd[n]);
    }
    for (int64_t c = c0; c < c1; c++) dweight[c] += static_cast<float>(acc[c - c0]);
  });
}
