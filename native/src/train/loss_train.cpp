// Weighted cross-entropy over gathered rows of logits, fused with its gradient (softmax - onehot). Log-sum-exp
// subtracts the row max and sums in double. Not the scalar (reward/value) head: that is a plain matmul over the
// last real token, sequenced in train_model.cpp.
#include <cmath>
#include <vector>

#include "../kernels/thread_pool.h"
#include "train_ops.h"

double cross_entropy_forward_backward(float* logits, const int32_t* targets, const float* weights,
                                      float grad_scale, int M, int V, ThreadPool* pool) {
  std::vector<double> row_loss(M, 0.0);
  pool->parallel_for(M, 1, [&](int64_t b, int64_t e) {
    for (int64_t m = b; m < e; m++) {
      float* z = logits + m * V;
      float mx = z[0];
      for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
      double sum = 0;
      for (int i = 0; i < V; i++) sum += std::exp(static_cast<double>(z[i]) - mx);
      const double lse = mx + std::log(sum);
      const int t = targets[m];
      row_loss[m] = weights[m] * (lse - z[t]);
      const double scale = static_cast<double>(weights[m]) * grad_scale;
      for (int i = 0; i < V; i++) z[i] = static_cast<float>(scale * std::exp(static_cast<double>(z[i]) - lse));
      z[t] -= static_cast<float>(scale);
    }
  });
  double loss = 0;
  for (int m = 0; m < M; m++) loss += row_loss[m];
  return loss;
}
