// matmul_forward: y (T,out) = x (T,in) @ W(out,in)^T (+ bias, + y when accumulating), W in f32 or bf16; Q8_0
// weights go on to matmul_q8_0.cpp once the bias is in. This file holds the portable kernel and the threading/tiling
// driver; the AVX2 micro-kernels are in matmul_avx2.cpp. Both walk the same tiles: a group of weight rows stays in
// L1 while every token of the tile is multiplied against it, so a batched decode step streams each weight byte from
// memory once.
#include <cstring>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

// Implemented in matmul_avx2.cpp (compiled for avx2,fma,f16c); same contract as matmul_rows_portable except
// that for bf16 weights x comes packed by matmul_pack_x_even_odd.
void matmul_rows_avx2(float* y, const float* x, const void* w, WeightType wtype, int T, int in, int out, int r0,
                      int r1);
void matmul_pack_x_even_odd(float* xp, const float* x, int T, int in);

static inline float weight_at(const void* w, WeightType wtype, size_t i) {
  return wtype == WEIGHT_BF16 ? f32_from_bf16(static_cast<const uint16_t*>(w)[i]) : static_cast<const float*>(w)[i];
}

// y[t, r] += dot(x[t, :], W[r, :]) for r in [r0, r1), all t. Eight partial sums per dot so the compiler can
// vectorise without reassociating; the order matches no other path exactly (tests use a tolerance).
static void matmul_rows_portable(float* y,        // (T, out)
                                 const float* x,  // (T, in)
                                 const void* w,   // (out, in)
                                 WeightType wtype, int T, int in, int out, int r0, int r1) {
  float wrow[256];
  for (int r = r0; r < r1; r++) {
    for (int t = 0; t < T; t++) {
      const float* xr = x + static_cast<size_t>(t) * in;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int k0 = 0; k0 < in; k0 += 256) {
        int kn = in - k0 < 256 ? in - k0 : 256;
        for (int k = 0; k < kn; k++) wrow[k] = weight_at(w, wtype, static_cast<size_t>(r) * in + k0 + k);
        int k = 0;
        for (; k + 8 <= kn; k += 8)
          for (int l = 0; l < 8; l++) acc[l] += xr[k0 + k + l] * wrow[k + l];
        for (; k < kn; k++) acc[k & 7] += xr[k0 + k] * wrow[k];
      }
      y[static_cast<size_t>(t) * out + r] += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  }
}

void matmul_forward(float* y, const float* x, const void* w, WeightType wtype, const float* bias, int T, int in,
                    int out, bool accumulate, ThreadPool* pool) {
  for (int t = 0; t < T; t++) {
    float* yr = y + static_cast<size_t>(t) * out;
    if (!accumulate) {
      if (bias) std::memcpy(yr, bias, sizeof(float) * out);
      else std::memset(yr, 0, sizeof(float) * out);
    } else if (bias) {
      for (int r = 0; r < out; r++) yr[r] += bias[r];
    }
  }
  if (wtype == WEIGHT_Q8_0) {
    matmul_q8_0_forward(y, x, static_cast<const BlockQ8_0*>(w), T, in, out, pool);
    return;
  }
  if (weight_is_quantized(wtype)) {
    matmul_quant_forward(y, x, w, wtype, T, in, out, pool);
    return;
  }
  const bool avx2 = simd_use_avx2();
  const float* xa = x;
  thread_local std::vector<float> packed;
  if (avx2 && wtype == WEIGHT_BF16) {
    packed.resize(static_cast<size_t>(T) * in);
    matmul_pack_x_even_odd(packed.data(), x, T, in);
    xa = packed.data();
  }
  auto rows = [&](int64_t r0, int64_t r1) {
    if (avx2) matmul_rows_avx2(y, xa, w, wtype, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
    else matmul_rows_portable(y, x, w, wtype, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
  };
  // Ranges in multiples of 24 rows (the micro-kernels take 3, 4 or 8 rows at a time); split into more parts than
  // threads when the matrix is big so a thread that was descheduled does not hold up the step.
  if (pool == nullptr || pool->num_threads() == 1 || static_cast<int64_t>(out) * in * T < 32768) {
    rows(0, out);
    return;
  }
  pool->parallel_for(out, 24, rows);
}
