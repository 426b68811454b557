// AVX2+FMA group kernel for paged attention (contract in attention.cpp, attend_group_portable). Scores are
// computed eight keys at a time (eight independent FMA chains) from f32 or half pools (F16C widens on load), softmax uses a vector exp, P@V keeps a 64-wide
// slice of the output in registers. No STL here (see matmul_avx2.cpp).
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "simd_avx2.h"

// Eight K/V values as f32: a load, or a load and F16C's exact half-to-float conversion.
static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <typename KV>
static void attend_group(float* out,              // (G, D)
                         const float* q,          // (G, D)
                         const KV* k_pool,        // (num_blocks, block_size, KVH, D)
                         const KV* v_pool,        // (num_blocks, block_size, KVH, D)
                         const int32_t* block_table, int first, int n_keys, int kv_head, AttentionShape s, int G,
                         float* scores) {         // (G, n_keys - first) scratch
  const int D = s.head_dim;
  const int bs = s.block_size;
  const int nk = n_keys - first;
  const size_t row = static_cast<size_t>(s.num_kv_heads) * D;
  const __m256 scale = _mm256_set1_ps(attention_scale(s));

  // Scores, block by block of the page table from the block holding `first`; inside a block keys are rows `row`
  // floats apart. Block b covers positions b*bs..b*bs+bs-1, of which lo..hi-1 are in range.
  for (int b0 = first / bs * bs; b0 < n_keys; b0 += bs) {
    const int lo = b0 < first ? first - b0 : 0;
    const int pn = n_keys - b0 < bs ? n_keys - b0 : bs;
    const KV* kb = k_pool + static_cast<size_t>(block_table[b0 / bs]) * bs * row + static_cast<size_t>(kv_head) * D;
    for (int g = 0; g < G; g++) {
      const float* qg = q + static_cast<size_t>(g) * D;
      float* sg = scores + static_cast<size_t>(g) * nk + (b0 - first);  // sg[p]: position b0 + p
      int p = lo;
      for (; p + 8 <= pn; p += 8) {
        const KV* k = kb + static_cast<size_t>(p) * row;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < D; d += 8) {
          __m256 qv = _mm256_loadu_ps(qg + d);
          a0 = _mm256_fmadd_ps(qv, load8(k + d), a0);
          a1 = _mm256_fmadd_ps(qv, load8(k + row + d), a1);
          a2 = _mm256_fmadd_ps(qv, load8(k + 2 * row + d), a2);
          a3 = _mm256_fmadd_ps(qv, load8(k + 3 * row + d), a3);
          a4 = _mm256_fmadd_ps(qv, load8(k + 4 * row + d), a4);
          a5 = _mm256_fmadd_ps(qv, load8(k + 5 * row + d), a5);
          a6 = _mm256_fmadd_ps(qv, load8(k + 6 * row + d), a6);
          a7 = _mm256_fmadd_ps(qv, load8(k + 7 * row + d), a7);
        }
        _mm256_storeu_ps(sg + p, _mm256_mul_ps(hsum8(a0, a1, a2, a3, a4, a5, a6, a7), scale));
      }
      for (; p < pn; p++) {
        const KV* k = kb + static_cast<size_t>(p) * row;
        __m256 a = _mm256_setzero_ps();
        for (int d = 0; d < D; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), load8(k + d), a);
        sg[p] = hsum(a) * _mm256_cvtss_f32(scale);
      }
    }
  }
  if (s.softcap > 0) softcap_forward(scores, static_cast<size_t>(G) * nk, s.softcap);

  // Softmax per head, normalised in place.
  for (int g = 0; g < G; g++) {
    float* sg = scores + static_cast<size_t>(g) * nk;
    float mx = sg[0];
    for (int p = 1; p < nk; p++) mx = sg[p] > mx ? sg[p] : mx;
    const __m256 mxv = _mm256_set1_ps(mx);
    __m256 sumv = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= nk; p += 8) {
      __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(sg + p), mxv));
      _mm256_storeu_ps(sg + p, e);
      sumv = _mm256_add_ps(sumv, e);
    }
    float sum = hsum(sumv);
    for (; p < nk; p++) {
      sg[p] = exp_fast(sg[p] - mx);
      sum += sg[p];
    }
    const float inv = 1.0f / sum;
    for (p = 0; p < nk; p++) sg[p] *= inv;
  }

  // out_g = sum_p w[g][p] * V[p], 64 output floats (8 registers) at a time.
  for (int g = 0; g < G; g++) {
    const float* sg = scores + static_cast<size_t>(g) * nk;
    float* og = out + static_cast<size_t>(g) * D;
    for (int d0 = 0; d0 < D; d0 += 64) {
      const int nv = (D - d0) / 8 < 8 ? (D - d0) / 8 : 8;
      __m256 acc[8];
      for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
      for (int b0 = first / bs * bs; b0 < n_keys; b0 += bs) {
        const int lo = b0 < first ? first - b0 : 0;
        const int pn = n_keys - b0 < bs ? n_keys - b0 : bs;
        const float* wb = sg + (b0 - first);  // wb[p]: position b0 + p
        const KV* vb =
            v_pool + static_cast<size_t>(block_table[b0 / bs]) * bs * row + static_cast<size_t>(kv_head) * D + d0;
        if (nv == 8) {
          for (int p = lo; p < pn; p++) {
            const __m256 w = _mm256_set1_ps(wb[p]);
            const KV* v = vb + static_cast<size_t>(p) * row;
            for (int i = 0; i < 8; i++) acc[i] = _mm256_fmadd_ps(w, load8(v + 8 * i), acc[i]);
          }
        } else {
          for (int p = lo; p < pn; p++) {
            const __m256 w = _mm256_set1_ps(wb[p]);
            const KV* v = vb + static_cast<size_t>(p) * row;
            for (int i = 0; i < nv; i++) acc[i] = _mm256_fmadd_ps(w, load8(v + 8 * i), acc[i]);
          }
        }
      }
      for (int i = 0; i < nv; i++) _mm256_storeu_ps(og + d0 + 8 * i, acc[i]);
    }
  }
}

void attend_group_avx2(float* out, const float* q, const float* k_pool, const float* v_pool,
                       const int32_t* block_table, int first, int n_keys, int kv_head, AttentionShape s, int G,
                       float* scores) {
  attend_group(out, q, k_pool, v_pool, block_table, first, n_keys, kv_head, s, G, scores);
}

void attend_group_avx2_f16(float* out, const float* q, const uint16_t* k_pool, const uint16_t* v_pool,
                           const int32_t* block_table, int first, int n_keys, int kv_head, AttentionShape s, int G,
                           float* scores) {
  attend_group(out, q, k_pool, v_pool, block_table, first, n_keys, kv_head, s, G, scores);
}
