// The AVX-512 16-rows-per-vector kernels of Q4_0, Q5_0 and Q8_0 at several tokens (matmul_rows16_avx512.cpp), as
// their callers see them: when they run and how the rows are split for them. Not a public kernel: kernels.h's
// matmul_forward is; this runs only after simd_use_avx512().
#pragma once

#include "kernels.h"

// Rows per group: the callers split rows across threads in multiples of it.
constexpr int ROWS16_GROUP = 16;

inline bool rows16_type(WeightType t) { return t == WEIGHT_Q4_0 || t == WEIGHT_Q5_0 || t == WEIGHT_Q8_0; }

// From this many tokens the repacking pays for itself. Zen 5, one thread, against what ran there before: Q4_0 from 4
// (1.4-1.6x the pair-row kernel there, also on an LM head streamed from DRAM; at 2-3 tokens the LM head lost); Q5_0
// from 8 (1.2x at 4 in the micro-benchmark, but 0.96x in engine decode at 4 streams, alternated runs); Q8_0 from 8 (at
// 4, 1.7x its VNNI tiles on matrices in cache but 0.85x on the LM head, and in decode every matrix streams from DRAM).
inline int rows16_min_tokens(WeightType t) { return t == WEIGHT_Q4_0 ? 4 : 8; }

// Whether Q4_0 / Q5_0 at T tokens take the pair-row kernel (matmul_q4_pairs8.h, on pair-layout activations): below
// rows16_min_tokens with AVX-512, below 8 without (where Q4_0's 8-row groups start).
inline bool q4_pair_rows_take(WeightType t, int T) {
  return (t == WEIGHT_Q4_0 || t == WEIGHT_Q5_0) && T < (simd_use_avx512() ? rows16_min_tokens(t) : 8);
}

// Rows [r0, r0 + 16 n) of a several-token Q4_0, Q5_0 or Q8_0 matmul, n the whole 16-row groups in [r0, r1); returns
// the rows done (the caller's tiles take the rest). xq (T, in) int8 activations, xd (T, in/32) their scales; sums
// (T, in/32): for Q4_0 / Q5_0 floats d_x sum(q_x), for Q8_0 int32 -128 sum(q_x).
int rows16_gemm_avx512(float* y, const int8_t* xq, const float* xd, const void* sums, const uint8_t* w,
                       WeightType type, int T, int in, int out, int r0, int r1);
