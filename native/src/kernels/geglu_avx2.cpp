// AVX2 rows of geglu_forward (contract in geglu.cpp): gelu_tanh(gate) * up with the vector exp, through
// 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), u = sqrt(2/pi) (g + 0.044715 g^3). No STL here.
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <stddef.h>

#include "kernels.h"
#include "simd_avx2.h"

void geglu_rows_avx2(float* out,        // (T, I)
                     const float* gate, // (T, ld)
                     const float* up,   // (T, ld)
                     int t0, int t1, int I, int ld) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 m2k = _mm256_set1_ps(-2.0f * 0.7978845608028654f);  // -2 sqrt(2/pi)
  const __m256 c = _mm256_set1_ps(0.044715f);
  for (int t = t0; t < t1; t++) {
    const float* g = gate + static_cast<size_t>(t) * ld;
    const float* u = up + static_cast<size_t>(t) * ld;
    float* o = out + static_cast<size_t>(t) * I;
    int i = 0;
    for (; i + 8 <= I; i += 8) {
      const __m256 x = _mm256_loadu_ps(g + i);
      const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(c, x), _mm256_mul_ps(x, x), x);  // x + 0.044715 x^3
      const __m256 e = exp256(_mm256_mul_ps(m2k, inner));
      const __m256 gelu = _mm256_div_ps(x, _mm256_add_ps(one, e));
      _mm256_storeu_ps(o + i, _mm256_mul_ps(gelu, _mm256_loadu_ps(u + i)));
    }
    for (; i < I; i++) o[i] = gelu_tanh(g[i]) * u[i];
  }
}
