// Micro-benchmark of matmul_forward (f32, bf16 and Q8_0 weights) at the SmolLM2-135M shapes, outside Node, to tune
// the kernels: ms per call, weight GB/s and GFLOP/s for T = 1, 4, 16, 64 tokens. Not a test; `make bench`.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../src/kernels/kernels.h"
#include "../src/kernels/thread_pool.h"

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  ThreadPool pool(threads);
  struct Shape {
    const char* name;
    int in, out;
  };
  const Shape shapes[] = {{"lm_head", 576, 49152}, {"gate_up", 576, 3072}, {"down", 1536, 576}};
  std::printf("threads=%d simd=%s\n", pool.num_threads(), simd_name());
  for (const Shape& s : shapes) {
    const size_t n = static_cast<size_t>(s.in) * s.out;
    std::vector<float> w(n);
    for (size_t i = 0; i < n; i++) w[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
    std::vector<uint16_t> wb(n);
    bf16_from_f32_array(wb.data(), w.data(), n);
    std::vector<BlockQ8_0> wq(n / Q8_0_BLOCK);
    q8_0_quantize(wq.data(), w.data(), n);
    for (int wt = 0; wt < 3; wt++) {
      const void* wp = wt == 0   ? static_cast<const void*>(w.data())
                       : wt == 1 ? static_cast<const void*>(wb.data())
                                 : static_cast<const void*>(wq.data());
      for (int T : {1, 4, 16, 64, 512}) {
        std::vector<float> x(static_cast<size_t>(T) * s.in, 0.5f), y(static_cast<size_t>(T) * s.out);
        const int reps = s.out > 10000 || T > 64 ? 5 : 50;
        matmul_forward(y.data(), x.data(), wp, static_cast<WeightType>(wt), nullptr, T, s.in, s.out, false, &pool);
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
          double t0 = now();
          matmul_forward(y.data(), x.data(), wp, static_cast<WeightType>(wt), nullptr, T, s.in, s.out, false, &pool);
          double dt = now() - t0;
          if (dt < best) best = dt;
        }
        const double bytes = static_cast<double>(weight_bytes(static_cast<WeightType>(wt), s.out, s.in));
        std::printf("%-8s %-4s T=%-3d %8.3f ms %7.1f GB/s %7.1f GFLOP/s\n", s.name,
                    wt == 0 ? "f32" : wt == 1 ? "bf16" : "q8_0", T, best * 1e3, bytes / best / 1e9,
                    2.0 * T * n / best / 1e9);
      }
    }
  }
  return 0;
}
