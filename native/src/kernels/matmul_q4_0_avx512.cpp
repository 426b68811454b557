// The AVX-512 VNNI build of the Q4_0 / Q5_0 row kernel below 8 tokens (called by matmul_quant_rows_avx2): a row at a
// time on activations rearranged per block pair (matmul_q4_pairs8.h, shared with the AVX2 unit), with the EVEX
// `vpdpbusd`. From 8 tokens on these types run 16 rows per vector (matmul_rows16_avx512.cpp). Compiled for
// avx512f/bw/vl/vnni and called only after simd_use_avx512(); no STL (see matmul_q8_0_avx2.cpp).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
// GCC 12's _mm512_insert*64x4 / extract*64x4 pass an undefined vector as the unused mask source, which -Wall
// reports as (maybe-)uninitialized inside the intrinsics header; nothing here reads an uninitialized value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <stdint.h>

#define INT8_DOT_AVX512VNNI 1
#include "int8_dot_avx2.h"
#include "kernels.h"
#include "matmul_q4_pairs8.h"
#include "simd_avx2.h"

// Rows [r0, r1) of a Q4_0 or Q5_0 matmul at 1-7 tokens on pair-layout activations: the 256-bit row kernel the AVX2
// unit and its AVX-VNNI build share (matmul_q4_pairs8.h), with the EVEX `vpdpbusd`.
void q4_pair_rows_avx512(float* y, const int8_t* xp, const float* xd, const float* xs, const uint8_t* w,
                         WeightType type, int T, int in, int out, int r0, int r1) {
  q4_pair_rows8(y, xp, xd, xs, w, type, T, in, out, r0, r1);
}
