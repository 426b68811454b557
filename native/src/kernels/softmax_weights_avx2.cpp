// AVX2 softmax_weights (contract in softmax_weights.cpp): exp_f64's polynomial on 4 doubles; a vector holding a lane
// outside its range (masked -inf ids, NaN) goes through exp_f64 lane by lane. No STL here.
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <stddef.h>

#include "kernels.h"

static inline __m256d exp4(__m256d t) {
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(t, _mm256_set1_pd(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(kLn2Hi), t);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(kLn2Lo), r);
  __m256d p = _mm256_setzero_pd();
  for (double c : kExpF64Taylor) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c));
  // k as int64 through the 1.5 * 2^52 trick (AVX2 has no double -> int64 conversion), then 2^k from its bits.
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);
  const __m256i ki = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(k, magic)), _mm256_castpd_si256(magic));
  const __m256i bits = _mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52);
  return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
}

double softmax_weights_avx2(double* w, const float* x, size_t n, double max, double inv_t) {
  const __m256d vmax = _mm256_set1_pd(max), vinv = _mm256_set1_pd(inv_t);
  const __m256d lo = _mm256_set1_pd(kExpF64Min), hi = _mm256_set1_pd(kExpF64Max);
  __m256d acc = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d t = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), vmax), vinv);
    // Lanes not in [lo, hi] (NaN included: the ordered compares are false).
    const int out = _mm256_movemask_pd(_mm256_andnot_pd(_mm256_and_pd(_mm256_cmp_pd(t, lo, _CMP_GE_OQ), _mm256_cmp_pd(t, hi, _CMP_LE_OQ)), _mm256_castsi256_pd(_mm256_set1_epi64x(-1))));
    __m256d e;
    if (out == 0) {
      e = exp4(t);
    } else {
      alignas(32) double tl[4];
      _mm256_store_pd(tl, t);
      for (int l = 0; l < 4; l++) tl[l] = exp_f64(tl[l]);
      e = _mm256_load_pd(tl);
    }
    _mm256_storeu_pd(w + i, e);
    acc = _mm256_add_pd(acc, e);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, acc);
  double z = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; i++) z += w[i] = exp_f64((static_cast<double>(x[i]) - max) * inv_t);
  return z;
}
