// The integer dot products of the 256-bit int8 kernels, and the name of the functions they export, for the targets
// those kernels are compiled for: AVX2 (matmul_q8_0_avx2.cpp, matmul_quant_avx2.cpp as they are), AVX-VNNI
// (matmul_int8_avxvnni.cpp defines INT8_DOT_AVXVNNI and includes both units again) and AVX-512 VNNI (its units define
// INT8_DOT_AVX512VNNI to share the 256-bit kernels of matmul_q4_pairs8.h and matmul_k_rows256.h). AVX-VNNI is
// the VEX form of AVX-512 VNNI's byte dot on 256-bit vectors: CPUs with AVX2 but no AVX-512 have it (Intel since
// Alder Lake), so the same register tiles run with one instruction where AVX2 needs two. Include only after the
// unit's `#pragma GCC target`; static inline, as simd_avx2.h.
#pragma once

#include <immintrin.h>

#if defined(INT8_DOT_AVX512VNNI)  // (those units export no function of this file's kernels: no INT8_FN)
// acc + per int32 lane the sum of 4 products of unsigned bytes u by signed bytes s: `vpdpbusd` (EVEX), exact.
static inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
// acc + per int32 lane the sum of 2 products of int16: `vpdpwssd` (EVEX).
static inline __m256i dot_s16(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }
#elif defined(INT8_DOT_AVXVNNI)
#define INT8_FN(name) name##_avxvnni

// The same with the VEX `vpdpbusd` and `vpdpwssd`.
static inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
static inline __m256i dot_s16(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_avx_epi32(acc, a, b); }
#else
#define INT8_FN(name) name##_avx2

// The same with maddubs + madd. maddubs saturates each pair sum to int16, so this equals `vpdpbusd` only where a
// pair sum stays inside int16: every caller says why its pair sums do, and the kernel tests hold the builds equal bit
// for bit.
static inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
// madd + add sums the same products modulo 2^32 as `vpdpwssd` does: always equal.
static inline __m256i dot_s16(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
#endif
