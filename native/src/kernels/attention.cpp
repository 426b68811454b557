// Paged attention over the KV block pools: causal prefill of one sequence's chunk, batched decode (one query
// per sequence), and the slot writes that precede both, over f32 or half pools. Work is split over (token, kv head) so the G query heads
// of a group read each K/V row once. This file holds the portable group kernel; attention_avx2.cpp the fast one.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

// Implemented in attention_avx2.cpp; same contract as attend_group_portable, head_dim must be a multiple of 8.
void attend_group_avx2(float* out, const float* q, const float* k_pool, const float* v_pool,
                       const int32_t* block_table, int first, int n_keys, int kv_head, AttentionShape s, int G,
                       float* scores);
void attend_group_avx2_f16(float* out, const float* q, const uint16_t* k_pool, const uint16_t* v_pool,
                           const int32_t* block_table, int first, int n_keys, int kv_head, AttentionShape s, int G,
                           float* scores);

static inline float kv_value(const float* p, int d) { return p[d]; }
static inline float kv_value(const uint16_t* p, int d) { return f32_from_f16(p[d]); }

// G query heads sharing kv_head attend to keys first..n_keys-1 of one sequence; KV is float or uint16_t (half).
template <typename KV>
static void attend_group_portable(float* out,              // (G, D)
                                  const float* q,          // (G, D)
                                  const KV* k_pool,        // (num_blocks, block_size, KVH, D)
                                  const KV* v_pool,        // (num_blocks, block_size, KVH, D)
                                  const int32_t* block_table, int first, int n_keys, int kv_head, AttentionShape s,
                                  int G,
                                  float* scores) {         // (G, n_keys - first) scratch
  const int D = s.head_dim;
  const int nk = n_keys - first;
  const size_t row = static_cast<size_t>(s.num_kv_heads) * D;
  const float scale = attention_scale(s);
  for (int p = first; p < n_keys; p++) {
    const size_t slot = static_cast<size_t>(block_table[p / s.block_size]) * s.block_size + p % s.block_size;
    const KV* k = k_pool + slot * row + static_cast<size_t>(kv_head) * D;
    for (int g = 0; g < G; g++) {
      const float* qg = q + static_cast<size_t>(g) * D;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int d = 0; d < D; d++) acc[d & 7] += qg[d] * kv_value(k, d);
      scores[static_cast<size_t>(g) * nk + (p - first)] =
          (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) * scale;
    }
  }
  if (s.softcap > 0) softcap_forward(scores, static_cast<size_t>(G) * nk, s.softcap);
  for (int g = 0; g < G; g++) {
    float* sg = scores + static_cast<size_t>(g) * nk;
    float mx = sg[0];
    for (int p = 1; p < nk; p++) mx = sg[p] > mx ? sg[p] : mx;
    float sum = 0.0f;
    for (int p = 0; p < nk; p++) {
      sg[p] = exp_fast(sg[p] - mx);
      sum += sg[p];
    }
    const float inv = 1.0f / sum;
    for (int p = 0; p < nk; p++) sg[p] *= inv;
    std::memset(out + static_cast<size_t>(g) * D, 0, sizeof(float) * D);
  }
  for (int p = first; p < n_keys; p++) {
    const size_t slot = static_cast<size_t>(block_table[p / s.block_size]) * s.block_size + p % s.block_size;
    const KV* v = v_pool + slot * row + static_cast<size_t>(kv_head) * D;
    for (int g = 0; g < G; g++) {
      const float w = scores[static_cast<size_t>(g) * nk + (p - first)];
      float* og = out + static_cast<size_t>(g) * D;
      for (int d = 0; d < D; d++) og[d] += w * kv_value(v, d);
    }
  }
}

// The query at position n_keys - 1 sees keys first..n_keys-1: all of them, or the last `window` on a sliding layer.
static void attend_group(float* out, const float* q, const void* k_pool, const void* v_pool,
                         const int32_t* block_table, int n_keys, int kv_head, AttentionShape s, int G, bool avx2) {
  thread_local std::vector<float> scores;
  const int first = s.window > 0 && n_keys > s.window ? n_keys - s.window : 0;
  const size_t need = static_cast<size_t>(G) * (n_keys - first);
  if (scores.size() < need) scores.resize(need);
  const bool vec = avx2 && s.head_dim % 8 == 0;
  if (s.kv_f16) {
    const uint16_t* k = static_cast<const uint16_t*>(k_pool);
    const uint16_t* v = static_cast<const uint16_t*>(v_pool);
    if (vec) attend_group_avx2_f16(out, q, k, v, block_table, first, n_keys, kv_head, s, G, scores.data());
    else attend_group_portable(out, q, k, v, block_table, first, n_keys, kv_head, s, G, scores.data());
  } else {
    const float* k = static_cast<const float*>(k_pool);
    const float* v = static_cast<const float*>(v_pool);
    if (vec) attend_group_avx2(out, q, k, v, block_table, first, n_keys, kv_head, s, G, scores.data());
    else attend_group_portable(out, q, k, v, block_table, first, n_keys, kv_head, s, G, scores.data());
  }
}

void softcap_forward(float* x, size_t n, float cap) {
  const float inv = 1.0f / cap;
  for (size_t i = 0; i < n; i++) x[i] = cap * std::tanh(x[i] * inv);
}

void kv_cache_write(void* k_pool, void* v_pool, const float* k, const float* v, int ld, const int64_t* slots, int T,
                    int kv_width, bool kv_f16) {
  for (int t = 0; t < T; t++) {
    const float* kt = k + static_cast<size_t>(t) * ld;
    const float* vt = v + static_cast<size_t>(t) * ld;
    if (kv_f16) {
      uint16_t* kd = static_cast<uint16_t*>(k_pool) + slots[t] * kv_width;
      uint16_t* vd = static_cast<uint16_t*>(v_pool) + slots[t] * kv_width;
      for (int i = 0; i < kv_width; i++) {
        kd[i] = f16_from_f32(kt[i]);
        vd[i] = f16_from_f32(vt[i]);
      }
    } else {
      std::memcpy(static_cast<float*>(k_pool) + slots[t] * kv_width, kt, sizeof(float) * kv_width);
      std::memcpy(static_cast<float*>(v_pool) + slots[t] * kv_width, vt, sizeof(float) * kv_width);
    }
  }
}

// Below this many multiply-adds a parallel region costs more than it saves (a short decode step).
static const double kMinParallelWork = 1 << 18;

static void run_items(int num_items, double work, ThreadPool* pool, const std::function<void(int)>& item) {
  if (pool == nullptr || work < kMinParallelWork) {
    for (int i = 0; i < num_items; i++) item(i);
    return;
  }
  pool->run(num_items, [&](int i, int) { item(i); });
}

void attention_prefill_forward(float* out, const float* q, int ldq, const void* k_pool, const void* v_pool,
                               const int32_t* block_table, int start_pos, int T, AttentionShape s, ThreadPool* pool) {
  const int G = s.num_heads / s.num_kv_heads;
  const int D = s.head_dim;
  const bool avx2 = simd_use_avx2();
  // Latest tokens first: they have the most keys, so dynamic claiming ends balanced.
  const double keys = s.window > 0 ? std::min<double>(s.window, start_pos + (T + 1) / 2.0) : start_pos + (T + 1) / 2.0;
  const double work = 2.0 * T * keys * s.num_heads * D;
  run_items(T * s.num_kv_heads, work, pool, [&](int item) {
    const int t = T - 1 - item / s.num_kv_heads;
    const int kvh = item % s.num_kv_heads;
    const size_t head0 = static_cast<size_t>(kvh) * G * D;
    attend_group(out + static_cast<size_t>(t) * s.num_heads * D + head0, q + static_cast<size_t>(t) * ldq + head0,
                 k_pool, v_pool, block_table, start_pos + t + 1, kvh, s, G, avx2);
  });
}

void attention_decode_forward(float* out, const float* q, int ldq, const int32_t* rows, const void* k_pool,
                              const void* v_pool, const int32_t* positions, const int32_t* block_tables,
                              int max_blocks, int N, AttentionShape s, ThreadPool* pool) {
  const int G = s.num_heads / s.num_kv_heads;
  const int D = s.head_dim;
  const bool avx2 = simd_use_avx2();
  double work = 0;
  for (int i = 0; i < N; i++)
    work += 2.0 * (s.window > 0 ? std::min(positions[i] + 1, s.window) : positions[i] + 1) * s.num_heads * D;
  run_items(N * s.num_kv_heads, work, pool, [&](int item) {
    const int i = item / s.num_kv_heads;
    const int kvh = item % s.num_kv_heads;
    const size_t r = rows ? static_cast<size_t>(rows[i]) : static_cast<size_t>(i);
    const size_t head0 = static_cast<size_t>(kvh) * G * D;
    attend_group(out + r * s.num_heads * D + head0, q + r * ldq + head0, k_pool, v_pool,
                 block_tables + static_cast<size_t>(i) * max_blocks, positions[i] + 1, kvh, s, G, avx2);
  });
}
