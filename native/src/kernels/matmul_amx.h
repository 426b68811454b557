// The AMX int8 path of the quantized matmuls (matmul_amx.cpp), as matmul_q8_0.cpp and matmul_quant.cpp call it:
// the activation layout the tiles read, its packer and the row-range kernel. Not a public kernel: kernels.h's
// matmul_forward is; these run only after simd_use_amx(), from amx_min_tokens(type) tokens on.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

// From this many tokens the AMX tiles beat the AVX-512 kernels (a tile holds 16 tokens; fewer leave lanes idle):
// 8 for most types, 16 for Q4_0 (whose 16-row AVX-512 kernel is quick at 8) and Q6_K (two tiles per 32 weights), 12
// for Q5_0 where its 16-row kernel runs (Sapphire Rapids-class Xeon, one thread, five shapes: 1.1-1.4x the tiles at 8
// tokens, 1.0-1.2x at 10, level at 11-12; Q8_0's 16-row kernel was level with the tiles at 8 and behind from 10).
inline int amx_min_tokens(WeightType t) {
  if (t == WEIGHT_Q4_0 || t == WEIGHT_Q6_K) return 16;
  return t == WEIGHT_Q5_0 && simd_use_avx512() ? 12 : 8;
}

// The types whose AMX path reads the activations' block sums (their offset term): Q4_0's and Q5_0's constant
// offsets are folded into the unpacked weights, Q6_K's too, and Q8_0 has none.
inline bool amx_reads_block_sums(WeightType t) {
  return t == WEIGHT_Q4_1 || t == WEIGHT_Q5_1 || t == WEIGHT_Q4_K || t == WEIGHT_Q5_K;
}

// Int8 activations packed for the tiles, per group of 16 tokens g (G = ceil(T/16) groups; tokens past T are zero):
// xb (G, nb, 8, 64): block b of the group as a B tile, row k/4 holding bytes 4(k/4)..+3 of each token in turn (the
// dword-interleaved layout `tdpbssd` reads); dx (G, nb, 16): the tokens' scales per block; sx (G, nb, 16):
// d_x * sum(q_x) per block (the offset term of Q4_1/Q5_1/Q4_K/Q5_K), or null.
struct AmxActivations {
  const int8_t* xb;
  const float* dx;
  const float* sx;
  int T, in;
};

// Sizes of xb (bytes) and of dx / sx (floats each) for T tokens of `in` weights.
size_t amx_activation_bytes(int T, int in);
size_t amx_activation_scales(int T, int in);

// Packs xq (T, in), xd (T, in/32) and, when xs is not null, xs (T, in/32) into xb, dx and sx.
void amx_pack_activations(int8_t* xb, float* dx, float* sx, const int8_t* xq, const float* xd, const float* xs,
                          int T, int in);

// y[t, r] += x[t] . W[r] for every token and r in [r0, r1) (r0 a multiple of 16), W of any quantized type.
void matmul_int8_rows_amx(float* y, const AmxActivations& a, const uint8_t* w, WeightType type, int out, int r0,
                          int r1);

class ThreadPool;

// matmul_amx_driver.cpp: packs the quantized activations (xq, xd and, for the offset types, xs as
// matmul_quant_forward makes them) and runs matmul_int8_rows_amx over the rows in 16-row ranges on the pool (or on
// this thread when pool is null).
void matmul_amx_forward(float* y, const int8_t* xq, const float* xd, const float* xs, const void* w, WeightType type,
                        int T, int in, int out, ThreadPool* pool);
