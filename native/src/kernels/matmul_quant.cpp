// matmul_quant_forward for the GGML types beyond Q8_0 (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K): the driver (activation
// quantization, threading), the portable row kernel and the naive reference. The AVX2 row kernel is in
// matmul_quant_avx2.cpp. Both unpack a chunk of weight blocks per row into int8 + scales (quant_unpack.h) once per
// token tile and multiply it with int8 activations, so a decode step reads each quantized byte from memory once and
// prefill amortizes the unpacking over the tile's tokens.
#include <cstring>
#include <vector>

#include "kernels.h"
#include "matmul_amx.h"
#include "matmul_rows16.h"
#include "quant_unpack.h"
#include "thread_pool.h"

// Implemented in matmul_quant_avx2.cpp (compiled for avx2,fma,f16c, and again for AVX-VNNI in
// matmul_int8_avxvnni.cpp); same contract as the portable twin below.
void matmul_quant_rows_avx2(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                            const uint8_t* w, WeightType type, int T, int in, int out, int r0, int r1);
void matmul_quant_rows_avxvnni(float* y, const int8_t* xq, const float* xd, const float* xs, const int16_t* xb,
                               const uint8_t* w, WeightType type, int T, int in, int out, int r0, int r1);

// One token's activations rearranged for the Q4_0 / Q5_0 pair-row kernel of few tokens (matmul_q4_pairs8.h): in each pair
// of 32-blocks the middle two 16-byte quarters swap (block 2q's 0-15, block 2q + 1's 0-15, block 2q's 16-31, block
// 2q + 1's 16-31); an unpaired last block stays as it is.
static void q4_pair_activations(int8_t* xp, const int8_t* xq, int in) {
  const int nb = in / 32;
  int b = 0;
  for (; b + 2 <= nb; b += 2) {
    const int8_t* src = xq + b * 32;
    int8_t* dst = xp + b * 32;
    std::memcpy(dst, src, 16);
    std::memcpy(dst + 16, src + 32, 16);
    std::memcpy(dst + 32, src + 16, 16);
    std::memcpy(dst + 48, src + 48, 16);
  }
  std::memcpy(xp + b * 32, xq + b * 32, static_cast<size_t>(in - b * 32));
}

// Chunk of 32-blocks unpacked at a time per row: a multiple of 8 (a K-quant super-block), 2 KiB of int8 per row.
constexpr int KB_MAX = 64;

// y[t, r] += sum_b d_x[t,b] (s_b0 (q_w . q_x)[0:16] + s_b1 (q_w . q_x)[16:32]) + m_b * xs[t,b], r in [r0, r1).
static void matmul_quant_rows_portable(float* y,           // (T, out)
                                       const int8_t* xq,   // (T, in)
                                       const float* xd,    // (T, in/32)
                                       const float* xs,    // (T, in/32) d_x * sum(q_x) per block
                                       const uint8_t* w,   // (out, in/elems) blocks
                                       WeightType type, int T, int in, int out, int r0, int r1) {
  const int nb = in / 32, upb = quant_block_elems(type) / 32;
  const size_t ubytes = quant_block_bytes(type), row_bytes = static_cast<size_t>(in / quant_block_elems(type)) * ubytes;
  int8_t wq[KB_MAX * 32];
  float ws[KB_MAX * 2], wm[KB_MAX];
  for (int r = r0; r < r1; r++) {
    for (int b0 = 0; b0 < nb; b0 += KB_MAX) {
      const int kb = nb - b0 < KB_MAX ? nb - b0 : KB_MAX;
      const bool has_min = quant_unpack(type, w + r * row_bytes + (b0 / upb) * ubytes, kb / upb, wq, ws, wm);
      for (int t = 0; t < T; t++) {
        const int8_t* qx = xq + static_cast<size_t>(t) * in + static_cast<size_t>(b0) * 32;
        const float* dx = xd + static_cast<size_t>(t) * nb + b0;
        float acc = 0.0f;
        for (int b = 0; b < kb; b++) {
          int32_t s0 = 0, s1 = 0;
          for (int j = 0; j < 16; j++) s0 += static_cast<int32_t>(wq[b * 32 + j]) * qx[b * 32 + j];
          for (int j = 16; j < 32; j++) s1 += static_cast<int32_t>(wq[b * 32 + j]) * qx[b * 32 + j];
          acc += dx[b] * (ws[2 * b] * static_cast<float>(s0) + ws[2 * b + 1] * static_cast<float>(s1));
        }
        if (has_min) {
          const float* sx = xs + static_cast<size_t>(t) * nb + b0;
          for (int b = 0; b < kb; b++) acc += wm[b] * sx[b];
        }
        y[static_cast<size_t>(t) * out + r] += acc;
      }
    }
  }
}

void matmul_quant_forward(float* y, const float* x, const void* w, WeightType type, int T, int in, int out,
                          ThreadPool* pool) {
  const int nb = in / 32;
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> xd, xs;
  thread_local std::vector<int16_t> xb;
  // The K-quants take one activation scale per 256, so that the AVX-512 kernels apply their sub-block scales in
  // integers; the other types one per 32.
  const bool per256 = type == WEIGHT_Q4_K || type == WEIGHT_Q5_K || type == WEIGHT_Q6_K;
  xq.resize(static_cast<size_t>(T) * in);
  xd.resize(static_cast<size_t>(T) * nb);
  xs.resize(static_cast<size_t>(T) * nb);
  xb.resize(type == WEIGHT_Q6_K ? static_cast<size_t>(T) * (in / 16) : 0);
  const bool avx2 = simd_use_avx2(), avx_vnni = simd_use_avxvnni();
  const bool serial = pool == nullptr || pool->num_threads() == 1 || static_cast<int64_t>(out) * in * T < 32768;
  int8_t* q = xq.data();
  float* d = xd.data();
  float* s = xs.data();
  int16_t* bs = xb.data();
  const bool amx = T >= amx_min_tokens(type) && simd_use_amx();
  auto quantize = [&](int64_t t0, int64_t t1) {
    if (per256) q8_k_quantize_activations(q + t0 * in, d + t0 * nb, x + t0 * in, static_cast<int>(t1 - t0), in);
    else q8_0_quantize_activations(q + t0 * in, d + t0 * nb, x + t0 * in, static_cast<int>(t1 - t0), in);
    // The offset term of Q4_K/Q5_K needs sum(x) per block; d_x * sum(q_x) keeps it consistent with the int8 dot.
    // (The AMX path reads it for fewer types.)
    if (!amx || amx_reads_block_sums(type))
      for (int64_t i = t0 * nb; i < t1 * nb; i++) s[i] = d[i] * static_cast<float>(int8_sum(q + i * 32, 32));
    // Q6_K's -32 offset, applied in integers, needs sum(q_x) per 16 (|sum| <= 16 * 127 fits int16); AMX folds it
    // into the weights.
    if (type == WEIGHT_Q6_K && !amx)
      for (int64_t i = t0 * (in / 16); i < t1 * (in / 16); i++)
        bs[i] = static_cast<int16_t>(int8_sum(q + i * 16, 16));
  };
  if (serial || static_cast<int64_t>(T) * in < 65536) quantize(0, T);
  else pool->parallel_for(T, 1, quantize);
  if (amx) {
    matmul_amx_forward(y, q, d, s, w, type, T, in, out, serial ? nullptr : pool);
    return;
  }
  // Q4_0 and Q5_0 on the pair-row kernel (few tokens, matmul_rows16.h) read their activations with each block pair's
  // middle quarters swapped.
  thread_local std::vector<int8_t> xpair;
  if (avx2 && q4_pair_rows_take(type, T)) {
    xpair.resize(static_cast<size_t>(T) * in);
    for (int t = 0; t < T; t++) q4_pair_activations(xpair.data() + static_cast<size_t>(t) * in, q + static_cast<size_t>(t) * in, in);
    q = xpair.data();
  }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  auto rows = [&](int64_t r0, int64_t r1) {
    if (avx_vnni) matmul_quant_rows_avxvnni(y, q, d, s, bs, wb, type, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
    else if (avx2) matmul_quant_rows_avx2(y, q, d, s, bs, wb, type, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
    else matmul_quant_rows_portable(y, q, d, s, wb, type, T, in, out, static_cast<int>(r0), static_cast<int>(r1));
  };
  if (serial) {
    rows(0, out);
    return;
  }
  // Q4_0 and Q5_0 from rows16_min_tokens tokens on run in groups of 16 rows (matmul_rows16_avx512.cpp; Q4_0 in 8
  // without AVX-512): ranges in whole groups.
  pool->parallel_for(out, rows16_type(type) && T >= rows16_min_tokens(type) ? ROWS16_GROUP : 8, rows);
}

void matmul_quant_reference(float* y, const float* x, const void* w, WeightType type, int T, int in, int out) {
  std::vector<float> wf(static_cast<size_t>(out) * in);
  quant_dequantize(type, wf.data(), w, wf.size());
  matmul_forward(y, x, wf.data(), WEIGHT_F32, nullptr, T, in, out, false, nullptr);
}
