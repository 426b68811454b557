// rope_backward: the HF rotate_half rotation of pairs (j, j + D/2) by angle a is orthogonal, so the gradient
// goes back through the rotation by -a. Forward is rope_forward (kernels.h) with per-token positions.
#include "train_ops.h"

void rope_backward(float* dx, int row_stride, const float* cos_t, const float* sin_t, int N, int num_heads,
                   int head_dim) {
  const int half = head_dim / 2;
  for (int n = 0; n < N; n++) {
    const float* c = cos_t + static_cast<size_t>(n) * half;
    const float* s = sin_t + static_cast<size_t>(n) * half;
    for (int h = 0; h < num_heads; h++) {
      float* g = dx + static_cast<size_t>(n) * row_stride + static_cast<size_t>(h) * head_dim;
      for (int j = 0; j < half; j++) {
        const float a = g[j], b = g[j + half];
        g[j] = a * c[j] + b * s[j];
        g[j + half] = b * c[j] - a * s[j];
      }
    }
  }
}
