// Native test of the kernels without Node: matmul (f32, bf16), swiglu and paged attention (prefill and decode)
// against naive loops in this file, on awkward shapes, through both the AVX2 and the portable paths.
// `make -C native/test test`. The fuller suite (every op, the whole model) is the jest specs in libs/kernels.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../src/kernels/kernels.h"
#include "../src/kernels/thread_pool.h"

static int failures = 0;

static float frand(unsigned* s) {
  *s = *s * 1664525u + 1013904223u;
  return static_cast<float>((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check(const char* what, const std::vector<float>& got, const std::vector<double>& want, double tol) {
  double diff = 0, mag = 1e-30;
  for (size_t i = 0; i < got.size(); i++) {
    diff = std::fmax(diff, std::fabs(got[i] - want[i]));
    mag = std::fmax(mag, std::fabs(want[i]));
  }
  if (diff / mag > tol) {
    std::printf("FAIL %s: rel err %.3g > %.3g\n", what, diff / mag, tol);
    failures++;
  }
}

static void test_matmul(ThreadPool* pool, WeightType wt, int T, int in, int out, unsigned seed) {
  std::vector<float> x(static_cast<size_t>(T) * in), w(static_cast<size_t>(out) * in), bias(out);
  for (auto& v : x) v = frand(&seed);
  for (auto& v : w) v = frand(&seed);
  for (auto& v : bias) v = frand(&seed);
  std::vector<uint16_t> wb(w.size());
  bf16_from_f32_array(wb.data(), w.data(), w.size());
  if (wt == WEIGHT_BF16)
    for (size_t i = 0; i < w.size(); i++) w[i] = f32_from_bf16(wb[i]);
  std::vector<double> want(static_cast<size_t>(T) * out);
  for (int t = 0; t < T; t++)
    for (int r = 0; r < out; r++) {
      double s = bias[r];
      for (int k = 0; k < in; k++) s += static_cast<double>(x[t * in + k]) * w[static_cast<size_t>(r) * in + k];
      want[static_cast<size_t>(t) * out + r] = s;
    }
  std::vector<float> y(want.size());
  const void* wp = wt == WEIGHT_BF16 ? static_cast<const void*>(wb.data()) : static_cast<const void*>(w.data());
  matmul_forward(y.data(), x.data(), wp, wt, bias.data(), T, in, out, false, pool);
  char name[96];
  std::snprintf(name, sizeof name, "matmul %s T=%d in=%d out=%d (%s)", wt == WEIGHT_BF16 ? "bf16" : "f32", T, in, out,
                simd_name());
  check(name, y, want, 1e-5);
}

// Gathered-from-pages naive attention of one query row.
static void test_attention(ThreadPool* pool, AttentionShape s, int start, int T, unsigned seed) {
  const int num_blocks = (start + T + s.block_size - 1) / s.block_size + 3;
  const int width = s.num_kv_heads * s.head_dim, qd = s.num_heads * s.head_dim, G = s.num_heads / s.num_kv_heads;
  std::vector<float> k(static_cast<size_t>(num_blocks) * s.block_size * width), v(k.size()),
      q(static_cast<size_t>(T) * qd);
  for (auto& a : k) a = frand(&seed);
  for (auto& a : v) a = frand(&seed);
  for (auto& a : q) a = frand(&seed);
  std::vector<int32_t> table(num_blocks);
  for (int i = 0; i < num_blocks; i++) table[i] = (i * 7 + 3) % num_blocks;  // a permutation when 7 is coprime
  std::vector<double> want(static_cast<size_t>(T) * qd, 0.0);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < s.num_heads; h++) {
      const int n = start + t + 1, g = h / G;
      std::vector<double> sc(n);
      double mx = -1e300, sum = 0;
      for (int p = 0; p < n; p++) {
        const size_t slot = static_cast<size_t>(table[p / s.block_size]) * s.block_size + p % s.block_size;
        double d = 0;
        for (int i = 0; i < s.head_dim; i++) d += q[t * qd + h * s.head_dim + i] * k[slot * width + g * s.head_dim + i];
        sc[p] = d / std::sqrt(static_cast<double>(s.head_dim));
        mx = std::fmax(mx, sc[p]);
      }
      for (int p = 0; p < n; p++) sum += (sc[p] = std::exp(sc[p] - mx));
      for (int p = 0; p < n; p++) {
        const size_t slot = static_cast<size_t>(table[p / s.block_size]) * s.block_size + p % s.block_size;
        for (int i = 0; i < s.head_dim; i++)
          want[static_cast<size_t>(t) * qd + h * s.head_dim + i] += sc[p] / sum * v[slot * width + g * s.head_dim + i];
      }
    }
  std::vector<float> y(want.size());
  attention_prefill_forward(y.data(), q.data(), qd, k.data(), v.data(), table.data(), start, T, s, pool);
  char name[96];
  std::snprintf(name, sizeof name, "attention prefill H=%d KVH=%d D=%d bs=%d start=%d T=%d (%s)", s.num_heads,
                s.num_kv_heads, s.head_dim, s.block_size, start, T, simd_name());
  check(name, y, want, 1e-5);
  // The last token again as a decode query: same row.
  std::vector<int32_t> pos = {start + T - 1};
  std::vector<float> yd(qd);
  attention_decode_forward(yd.data(), q.data() + static_cast<size_t>(T - 1) * qd, qd, nullptr, k.data(), v.data(),
                           pos.data(), table.data(), num_blocks, 1, s, pool);
  check("attention decode == last prefill row", yd,
        std::vector<double>(want.end() - qd, want.end()), 1e-5);
}

int main() {
  ThreadPool pool(2);
  for (int portable = 0; portable < 2; portable++) {
    if (!portable && !simd_avx2_supported()) continue;
    simd_force_portable(portable != 0);
    const int shapes[][3] = {{1, 1, 1}, {1, 576, 37}, {2, 17, 9}, {3, 40, 50}, {5, 1100, 29}, {16, 576, 100}, {61, 33, 70}};
    unsigned seed = 1;
    for (auto& sh : shapes) {
      test_matmul(&pool, WEIGHT_F32, sh[0], sh[1], sh[2], seed++);
      test_matmul(&pool, WEIGHT_BF16, sh[0], sh[1], sh[2], seed++);
    }
    test_attention(&pool, {9, 3, 64, 16}, 0, 20, 5);
    test_attention(&pool, {6, 2, 16, 5}, 13, 9, 6);
    test_attention(&pool, {3, 1, 12, 3}, 7, 1, 7);
    test_attention(&pool, {4, 4, 128, 7}, 30, 11, 8);
  }
  std::printf(failures ? "%d FAILED\n" : "all native kernel tests passed\n", failures);
  return failures ? 1 : 0;
}
