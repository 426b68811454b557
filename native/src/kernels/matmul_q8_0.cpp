// matmul_q8_0_forward: y (T,out) += x (T,in) @ W^T with W in GGML Q8_0 blocks and x quantized to int8 per 32-block,
// as llama.cpp's ggml_vec_dot_q8_0_q8_0 does. This file holds the activation quantizer, the portable kernel, the
// threading/tiling driver and the naive reference; the AVX2 kernels are in matmul_q8_0_avx2.cpp, the AVX-512 ones in
// matmul_q8_0_avx512.cpp and (from 8 tokens, 16 rows per vector) matmul_rows16_avx512.cpp. Decode is
// memory-bound, so 34 bytes per 32 weights (vs 64 for bf16) is the point; the int8 dot keeps the arithmetic cheap.
#include <cmath>
#include <vector>

#include "kernels.h"
#include "matmul_amx.h"
#include "matmul_rows16.h"
#include "thread_pool.h"

// Implemented in matmul_q8_0_avx2.cpp (compiled for avx2,fma,f16c; the rows again for AVX-VNNI in
// matmul_int8_avxvnni.cpp); same contracts as the portable twins below.
void quantize_activations_avx2(int8_t* qs, float* d, const float* x, int T, int in, int gb);
void matmul_q8_0_rows_avx2(float* y, const int8_t* xq, const float* xd, const BlockQ8_0* w, int T, int in, int out,
                           int r0, int r1);
void matmul_q8_0_rows_avxvnni(float* y, const int8_t* xq, const float* xd, const BlockQ8_0* w, int T, int in,
                              int out, int r0, int r1);

// One scale per group of `gb` 32-blocks (1: Q8_0's per-32 scales; 8: one per 256, as llama.cpp's q8_K), written
// for each block of the group so that every consumer reads d per 32-block.
static void quantize_activations_portable(int8_t* qs, float* d, const float* x, int T, int in, int gb) {
  const int nb = in / Q8_0_BLOCK;
  for (int t = 0; t < T; t++)
    for (int g = 0; g < nb; g += gb) {
      const float* xg = x + static_cast<size_t>(t) * in + g * Q8_0_BLOCK;
      float amax = 0.0f;
      for (int j = 0; j < gb * Q8_0_BLOCK; j++) amax = std::fmax(amax, std::fabs(xg[j]));
      const float db = amax / 127.0f;
      const float id = db != 0.0f ? 1.0f / db : 0.0f;
      int8_t* qg = qs + static_cast<size_t>(t) * in + g * Q8_0_BLOCK;
      for (int b = 0; b < gb; b++) d[static_cast<size_t>(t) * nb + g + b] = db;
      // nearbyint under the default rounding mode = nearest even, what _mm256_round_ps(.., NEAREST) does.
      for (int j = 0; j < gb * Q8_0_BLOCK; j++) qg[j] = static_cast<int8_t>(std::nearbyint(xg[j] * id));
    }
}

void q8_0_quantize_activations(int8_t* qs, float* d, const float* x, int T, int in) {
  if (simd_use_avx2()) quantize_activations_avx2(qs, d, x, T, in, 1);
  else quantize_activations_portable(qs, d, x, T, in, 1);
}

void q8_k_quantize_activations(int8_t* qs, float* d, const float* x, int T, int in) {
  if (simd_use_avx2()) quantize_activations_avx2(qs, d, x, T, in, 8);
  else quantize_activations_portable(qs, d, x, T, in, 8);
}

// y[t, r] += sum_b d_w[r,b] d_x[t,b] (q_w[r,b] . q_x[t,b]) for r in [r0, r1), all t. The weight row (in bytes) stays
// in L1 while every token is multiplied against it; scales are widened once per row chunk.
static void matmul_q8_0_rows_portable(float* y,            // (T, out)
                                      const int8_t* xq,    // (T, in)
                                      const float* xd,     // (T, in/32)
                                      const BlockQ8_0* w,  // (out, in/32)
                                      int T, int in, int out, int r0, int r1) {
  const int nb = in / Q8_0_BLOCK;
  float dw[256];
  for (int r = r0; r < r1; r++) {
    const BlockQ8_0* row = w + static_cast<size_t>(r) * nb;
    for (int b0 = 0; b0 < nb; b0 += 256) {
      const int bn = nb - b0 < 256 ? nb - b0 : 256;
      for (int b = 0; b < bn; b++) dw[b] = f32_from_f16(row[b0 + b].d);
      for (int t = 0; t < T; t++) {
        const int8_t* xr = xq + static_cast<size_t>(t) * in + static_cast<size_t>(b0) * Q8_0_BLOCK;
        const float* dx = xd + static_cast<size_t>(t) * nb + b0;
        float acc = 0.0f;
        for (int b = 0; b < bn; b++) {
          const int8_t* qw = row[b0 + b].qs;
          const int8_t* qx = xr + b * Q8_0_BLOCK;
          int32_t s = 0;
          for (int j = 0; j < Q8_0_BLOCK; j++) s += static_cast<int32_t>(qw[j]) * qx[j];
          acc += dw[b] * dx[b] * static_cast<float>(s);
        }
        y[static_cast<size_t>(t) * out + r] += acc;
      }
    }
  }
}

void matmul_q8_0_forward(float* y, const float* x, const BlockQ8_0* w, int T, int in, int out, ThreadPool* pool) {
  const int nb = in / Q8_0_BLOCK;
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> xd;
  xq.resize(static_cast<size_t>(T) * in);
  xd.resize(static_cast<size_t>(T) * nb);
  const bool avx2 = simd_use_avx2(), avx_vnni = simd_use_avxvnni();
  const bool serial = pool == nullptr || pool->num_threads() == 1 || static_cast<int64_t>(out) * in * T < 32768;
  // From rows16_min_tokens tokens on with AVX-512 (and no AMX), whole 16-row groups run 16 rows per vector
  // (matmul_rows16_avx512.cpp), which needs -128 sum(q_x) per block, made with the quantization; the rows after the
  // groups take the tiles below.
  const bool amx = T >= amx_min_tokens(WEIGHT_Q8_0) && simd_use_amx();
  const bool rows16 = !amx && T >= rows16_min_tokens(WEIGHT_Q8_0) && simd_use_avx512();
  thread_local std::vector<int32_t> xc;
  xc.resize(rows16 ? static_cast<size_t>(T) * nb : 0);
  // Pointers, not the thread_local vectors: the lambdas run on pool workers, whose thread_locals are other arrays.
  int8_t* q = xq.data();
  float* d = xd.data();
  int32_t* c = xc.data();
  auto quantize = [&](int64_t t0, int64_t t1) {
    q8_0_quantize_activations(q + t0 * in, d + t0 * nb, x + t0 * in, static_cast<int>(t1 - t0), in);
    if (rows16)
      for (int64_t i = t0 * nb; i < t1 * nb; i++) c[i] = -128 * int8_sum(q + i * Q8_0_BLOCK, Q8_0_BLOCK);
  };
  // Quantizing x costs O(T*in) against the matmul's O(T*in*out); split it over rows only for prefill-sized x.
  if (serial || static_cast<int64_t>(T) * in < 65536) quantize(0, T);
  else pool->parallel_for(T, 1, quantize);
  if (amx) {
    matmul_amx_forward(y, q, d, nullptr, w, WEIGHT_Q8_0, T, in, out, serial ? nullptr : pool);
    return;
  }
  auto rows = [&](int64_t r0, int64_t r1) {
    if (rows16) r0 += rows16_gemm_avx512(y, q, d, c, reinterpret_cast<const uint8_t*>(w), WEIGHT_Q8_0, T, in, out,
                                         static_cast<int>(r0), static_cast<int>(r1));
    if (r0 == r1) return;
    if (avx_vnni) matmul_q8_0_rows_avxvnni(y, q, d, w, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
    else if (avx2) matmul_q8_0_rows_avx2(y, q, d, w, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
    else matmul_q8_0_rows_portable(y, q, d, w, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
  };
  if (serial) {
    rows(0, out);
    return;
  }
  // Ranges in multiples of 8 rows (the AVX2 tiles take 4 rows at a time), or of the 16-row groups.
  pool->parallel_for(out, rows16 ? ROWS16_GROUP : 8, rows);
}

void matmul_q8_0_reference(float* y, const float* x, const BlockQ8_0* w, int T, int in, int out) {
  std::vector<float> wf(static_cast<size_t>(out) * in);
  q8_0_dequantize(wf.data(), w, wf.size());
  matmul_forward(y, x, wf.data(), WEIGHT_F32, nullptr, T, in, out, false, nullptr);
}
