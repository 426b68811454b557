// Causal self-attention over full padded sequences for training (not the paged serving attention): the forward
// keeps the softmax probabilities; the backward is the textbook one (dS = P * (dP - rowsum(P * dP)), times
// 1 - (c / cap)^2 through a soft-cap, whose capped score c it recomputes from q and k). Work is
// split by (batch row, kv head), so the query heads sharing a kv head accumulate dk/dv in one task, in order.
#include <cmath>
#include <cstring>
#include <vector>

#include "../kernels/thread_pool.h"
#include "train_ops.h"

void attention_train_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                             const int32_t* mask, TrainAttentionShape s, ThreadPool* pool) {
  const int T = s.T, H = s.num_heads, KVH = s.num_kv_heads, D = s.head_dim;
  const int qd = H * D, kvd = KVH * D, group = H / KVH;
  const float scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(D));
  pool->run(s.B * H, [&](int task, int) {
    const int b = task / H, h = task % H, kh = h / group;
    std::vector<double> e(T);
    for (int t = 0; t < T; t++) {
      float* p = probs + ((static_cast<size_t>(b) * H + h) * T + t) * T;
      std::memset(p, 0, sizeof(float) * T);
      float* o = out + (static_cast<size_t>(b) * T + t) * qd + h * D;
      std::memset(o, 0, sizeof(float) * D);
      const float* qt = q + (static_cast<size_t>(b) * T + t) * qd + h * D;
      double mx = -INFINITY;
      const int j0 = s.window > 0 && t + 1 > s.window ? t + 1 - s.window : 0;
      for (int j = j0; j <= t; j++) {
        if (mask[b * T + j] == 0) continue;
        const float* kj = k + (static_cast<size_t>(b) * T + j) * kvd + kh * D;
        double dot = 0;
        for (int d = 0; d < D; d++) dot += static_cast<double>(qt[d]) * kj[d];
        e[j] = dot * scale;
        if (s.softcap > 0) e[j] = s.softcap * std::tanh(e[j] / s.softcap);
        if (e[j] > mx) mx = e[j];
      }
      if (mx == -INFINITY) continue;  // no visible key
      double sum = 0;
      for (int j = j0; j <= t; j++) {
        if (mask[b * T + j] == 0) continue;
        e[j] = std::exp(e[j] - mx);
        sum += e[j];
      }
      for (int j = j0; j <= t; j++) {
        if (mask[b * T + j] == 0) continue;
        p[j] = static_cast<float>(e[j] / sum);
        const float* vj = v + (static_cast<size_t>(b) * T + j) * kvd + kh * D;
        for (int d = 0; d < D; d++) o[d] += p[j] * vj[d];
      }
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs, const float* q,
                        const float* k, const float* v, TrainAttentionShape s, ThreadPool* pool) {
  const int T = s.T, H = s.num_heads, KVH = s.num_kv_heads, D = s.head_dim;
  const int qd = H * D, kvd = KVH * D, group = H / KVH;
  const float scale = s.scale > 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(D));
  pool->run(s.B * KVH, [&](int task, int) {
    const int b = task / KVH, kh = task % KVH;
    for (int t = 0; t < T; t++) {
      std::memset(dk + (static_cast<size_t>(b) * T + t) * kvd + kh * D, 0, sizeof(float) * D);
      std::memset(dv + (static_cast<size_t>(b) * T + t) * kvd + kh * D, 0, sizeof(float) * D);
    }
    std::vector<float> dp(T);
    for (int h = kh * group; h < (kh + 1) * group; h++) {
      for (int t = 0; t < T; t++) {
        const float* p = probs + ((static_cast<size_t>(b) * H + h) * T + t) * T;
        const float* dot_ = dout + (static_cast<size_t>(b) * T + t) * qd + h * D;
        const float* qt = q + (static_cast<size_t>(b) * T + t) * qd + h * D;
        float* dqt = dq + (static_cast<size_t>(b) * T + t) * qd + h * D;
        std::memset(dqt, 0, sizeof(float) * D);
        double rowsum = 0;
        for (int j = 0; j <= t; j++) {
          if (p[j] == 0.0f) { dp[j] = 0; continue; }
          const float* vj = v + (static_cast<size_t>(b) * T + j) * kvd + kh * D;
          float* dvj = dv + (static_cast<size_t>(b) * T + j) * kvd + kh * D;
          double acc = 0;
          for (int d = 0; d < D; d++) {
            acc += static_cast<double>(dot_[d]) * vj[d];
            dvj[d] += p[j] * dot_[d];
          }
          dp[j] = static_cast<float>(acc);
          rowsum += static_cast<double>(p[j]) * acc;
        }
        for (int j = 0; j <= t; j++) {
          if (p[j] == 0.0f) continue;
          float ds = static_cast<float>(p[j] * (dp[j] - rowsum)) * scale;
          const float* kj = k + (static_cast<size_t>(b) * T + j) * kvd + kh * D;
          if (s.softcap > 0) {  // d(cap tanh(u / cap)) / du = 1 - tanh^2, u = q.k * scale as the forward made it
            double dot = 0;
            for (int d = 0; d < D; d++) dot += static_cast<double>(qt[d]) * kj[d];
            const double th = std::tanh(dot * scale / s.softcap);
            ds = static_cast<float>(ds * (1.0 - th * th));
          }
          float* dkj = dk + (static_cast<size_t>(b) * T + j) * kvd + kh * D;
          for (int d = 0; d < D; d++) {
            dqt[d] += ds * kj[d];
            dkj[d] += ds * qt[d];
          }
        }
      }
    }
  });
}
