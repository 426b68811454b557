// triad_gbps: the STREAM triad memory-bandwidth probe the benchmark divides achieved weight traffic by.
// Arrays are first touched by the threads that later stream them; not a kernel of the model.
#include <chrono>
#include <cstdlib>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

double triad_gbps(size_t bytes_per_array, int reps, ThreadPool* pool) {
  const size_t n = bytes_per_array / sizeof(float);
  if (n == 0) return 0.0;
  float* a = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
  float* b = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
  float* c = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
  if (!a || !b || !c) {
    std::free(a);
    std::free(b);
    std::free(c);
    return 0.0;
  }
  pool->parallel_for(static_cast<int64_t>(n), 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 2.0f;
    }
  });
  const float s = 3.0f;
  double best = 0.0;
  for (int rep = 0; rep < reps; rep++) {
    auto t0 = std::chrono::steady_clock::now();
    pool->parallel_for(static_cast<int64_t>(n), 1024, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
    });
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gbps = 3.0 * static_cast<double>(n) * sizeof(float) / dt / 1e9;
    if (gbps > best) best = gbps;
  }
  volatile float sink = a[n / 2];
  (void)sink;
  std::free(a);
  std::free(b);
  std::free(c);
  return best;
}
