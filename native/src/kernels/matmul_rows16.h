// The AVX-512 16-rows-per-vector kernels of Q4_0, Q5_0 and Q8_0 at several tokens (matmul_rows16_avx512.cpp), as
// their callers see them: when they run and how the rows are split for them. Not a public kernel: kernels.h's
// matmul_forward is; this runs only after simd_use_avx512().
#pragma once

#include "kernels.h"

// Rows per group: the callers split rows across threads in multiples of it.
constexpr int ROWS16_GROUP = 16;

inline bool rows16_type(WeightType t) { return t == WEIGHT_Q4_0 || t == WEIGHT_Q5_0 || t == WEIGHT_Q8_0; }

// From this many tokens the repacking pays for itself: 8 for Q4_0 and Q5_0 (Q4_0 at 4: an LM head streamed from DRAM
// ran at 0.65x), 16 for Q8_0, whose 32 bytes a block take twice the gathers (at 8 it ran at 0.6-1.0x its VNNI tiles).
inline int rows16_min_tokens(WeightType t) { return t == WEIGHT_Q8_0 ? 16 : 8; }

// Rows [r0, r0 + 16 n) of a several-token Q4_0, Q5_0 or Q8_0 matmul, n the whole 16-row groups in [r0, r1); returns
// the rows done (the caller's tiles take the rest). xq (T, in) int8 activations, xd (T, in/32) their scales; sums
// (T, in/32): for Q4_0 / Q5_0 floats d_x sum(q_x), for Q8_0 int32 -128 sum(q_x).
int rows16_gemm_avx512(float* y, const int8_t* xq, const float* xd, const void* sums, const uint8_t* w,
                       WeightType type, int T, int in, int out, int r0, int r1);
