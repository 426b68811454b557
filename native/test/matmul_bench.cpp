// Micro-benchmark of matmul_forward (f32, bf16 and every quantized type) at the SmolLM2-135M shapes and two
// 256-multiple ones, outside Node, to tune
// the kernels: ms per call, weight GB/s and GFLOP/s for T = 1, 4, 8, 16, 64, 512 tokens. Not a test; `make bench`
// (THREADS=n, TYPES=q4_0,q8_0 for some types only).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../src/kernels/kernels.h"
#include "../src/kernels/thread_pool.h"

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const char* only = argc > 2 && argv[2][0] != '\0' ? argv[2] : nullptr;  // comma list of type names
  ThreadPool pool(threads);
  struct Shape {
    const char* name;
    int in, out;
  };
  // SmolLM2-135M's matrices (576 wide: no K-quants there) and a Qwen-0.5B-like pair whose rows are multiples of 256.
  const Shape shapes[] = {{"lm_head", 576, 49152}, {"gate_up", 576, 3072}, {"down", 1536, 576},
                          {"up1024", 1024, 5632},  {"down2816", 2816, 1024}};
  const WeightType types[] = {WEIGHT_F32,  WEIGHT_BF16, WEIGHT_Q8_0, WEIGHT_Q4_0, WEIGHT_Q4_1,
                              WEIGHT_Q5_0, WEIGHT_Q5_1, WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K};
  std::printf("threads=%d simd=%s\n", pool.num_threads(), simd_name());
  for (const Shape& s : shapes) {
    const size_t n = static_cast<size_t>(s.in) * s.out;
    std::vector<float> w(n);
    for (size_t i = 0; i < n; i++) w[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
    for (WeightType wt : types) {
      if (weight_is_quantized(wt) && s.in % quant_block_elems(wt) != 0) continue;
      if (only != nullptr) {
        const char* name = weight_type_name(wt);
        const char* hit = std::strstr(only, name);
        const size_t len = std::strlen(name);
        if (hit == nullptr || (hit != only && hit[-1] != ',') || (hit[len] != '\0' && hit[len] != ',')) continue;
      }
      std::vector<uint8_t> store(weight_bytes(wt, s.out, s.in));
      if (wt == WEIGHT_F32) std::memcpy(store.data(), w.data(), store.size());
      else if (wt == WEIGHT_BF16) bf16_from_f32_array(reinterpret_cast<uint16_t*>(store.data()), w.data(), n);
      else quant_quantize(wt, store.data(), w.data(), n);
      for (int T : {1, 4, 8, 16, 64, 512}) {
        std::vector<float> x(static_cast<size_t>(T) * s.in, 0.5f), y(static_cast<size_t>(T) * s.out);
        const int reps = s.out > 10000 || T > 64 ? 5 : 50;
        matmul_forward(y.data(), x.data(), store.data(), wt, nullptr, T, s.in, s.out, false, &pool);
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
          double t0 = now();
          matmul_forward(y.data(), x.data(), store.data(), wt, nullptr, T, s.in, s.out, false, &pool);
          double dt = now() - t0;
          if (dt < best) best = dt;
        }
        const double bytes = static_cast<double>(store.size());
        std::printf("%-8s %-4s T=%-3d %8.3f ms %7.1f GB/s %7.1f GFLOP/s\n", s.name, weight_type_name(wt), T, best * 1e3,
                    bytes / best / 1e9, 2.0 * T * n / best / 1e9);
      }
    }
  }
  return 0;
}
