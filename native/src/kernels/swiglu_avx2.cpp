// AVX2 rows of swiglu_forward (contract in swiglu.cpp): silu(gate) * up with the vector exp. No STL here.
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <stddef.h>

#include "kernels.h"
#include "simd_avx2.h"

void swiglu_rows_avx2(float* out,        // (T, I)
                      const float* gate, // (T, ld)
                      const float* up,   // (T, ld)
                      int t0, int t1, int I, int ld) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int t = t0; t < t1; t++) {
    const float* g = gate + static_cast<size_t>(t) * ld;
    const float* u = up + static_cast<size_t>(t) * ld;
    float* o = out + static_cast<size_t>(t) * I;
    int i = 0;
    for (; i + 8 <= I; i += 8) {
      __m256 gv = _mm256_loadu_ps(g + i);
      __m256 e = exp256(_mm256_xor_ps(gv, sign));
      __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(one, e));
      _mm256_storeu_ps(o + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
    }
    for (; i < I; i++) o[i] = g[i] / (1.0f + exp_fast(-g[i])) * u[i];
  }
}
