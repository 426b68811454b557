// AdamW (decoupled weight decay, PyTorch torch.optim.AdamW arithmetic), the global gradient norm for clipping,
// and the warmup + cosine learning-rate schedule. Not the parameter bookkeeping (train_model.cpp).
#include <cmath>
#include <vector>

#include "../kernels/thread_pool.h"
#include "train_ops.h"

double lr_at_step(const AdamWConfig& c, int64_t step) {
  if (c.warmup_steps > 0 && step < c.warmup_steps) return c.lr * static_cast<double>(step + 1) / c.warmup_steps;
  if (c.total_steps <= 0) return c.lr;
  const int64_t span = c.total_steps - c.warmup_steps;
  double progress = span > 0 ? static_cast<double>(step - c.warmup_steps) / span : 1.0;
  if (progress > 1.0) progress = 1.0;
  const double min_lr = c.lr * c.min_lr_ratio;
  return min_lr + (c.lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double grad_sq_sum(const float* g, size_t n, ThreadPool* pool) {
  const size_t chunk = 1 << 14;
  const int chunks = static_cast<int>((n + chunk - 1) / chunk);
  std::vector<double> part(chunks, 0.0);
  pool->run(chunks, [&](int c, int) {
    const size_t b = c * chunk, e = b + chunk < n ? b + chunk : n;
    double s = 0;
    for (size_t i = b; i < e; i++) s += static_cast<double>(g[i]) * g[i];
    part[c] = s;
  });
  double s = 0;
  for (double x : part) s += x;
  return s;
}

void adamw_update(float* p, float* m, float* v, const float* g, size_t n, double lr, double grad_mul,
                  const AdamWConfig& c, bool decay, int64_t t, ThreadPool* pool) {
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  const double keep = decay ? 1.0 - lr * c.weight_decay : 1.0;
  pool->parallel_for(static_cast<int64_t>(n), 256, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const double gi = static_cast<double>(g[i]) * grad_mul;
      const double mi = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
      const double vi = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
      m[i] = static_cast<float>(mi);
      v[i] = static_cast<float>(vi);
      const double pi = p[i] * keep;
      p[i] = static_cast<float>(pi - step_size * mi / (std::sqrt(vi) / bc2_sqrt + c.eps));
    }
  });
}
