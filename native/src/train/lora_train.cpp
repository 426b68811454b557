// LoRA (Hu et al. 2021, PEFT's layout) on one projection y = x @ w^T with w frozen: y += scale * (x @ a^T) @ b^T,
// a (r, in), b (out, r). Forward, backward and the merge for export, each composed from the matmul kernels (whose
// naive references sit beside them); the float64 reference of the whole op is libs/kernels/src/training.reference.ts.
// Not the choice of which projections carry adapters, nor their initialisation (train_model.cpp, training.ts).
#include <vector>

#include "../kernels/kernels.h"
#include "../kernels/thread_pool.h"
#include "train_ops.h"

void lora_forward(float* y, float* xa, const float* x, const float* a, const float* b, float scale, int N, int in,
                  int out, int r, ThreadPool* pool) {
  matmul_forward(xa, x, a, WEIGHT_F32, nullptr, N, in, r, false, pool);
  // Scaling the (N, r) intermediate, not the (N, out) result: r << out, and the backward's db reuses it as is.
  const size_t n = static_cast<size_t>(N) * r;
  for (size_t i = 0; i < n; i++) xa[i] *= scale;
  matmul_forward(y, xa, b, WEIGHT_F32, nullptr, N, r, out, true, pool);
}

void lora_backward(float* dx, float* da, float* db, const float* dy, const float* x, const float* xa, const float* a,
                   const float* b, float scale, int N, int in, int out, int r, ThreadPool* pool) {
  std::vector<float> dxa(static_cast<size_t>(N) * r);  // (N, r) d loss / d (x @ a^T)
  matmul_backward(dxa.data(), db, nullptr, dy, xa, b, N, r, out, false, pool);
  for (float& v : dxa) v *= scale;
  matmul_backward(dx, da, nullptr, dxa.data(), x, a, N, in, r, true, pool);
}

void lora_merge(float* w, const float* a, const float* b, float scale, int in, int out, int r, ThreadPool* pool) {
  // w += (scale * b) @ (a^T)^T: matmul_forward with x = scale * b (out, r) and weight a^T (in, r).
  std::vector<float> bs(static_cast<size_t>(out) * r), at(static_cast<size_t>(in) * r);
  for (size_t i = 0; i < bs.size(); i++) bs[i] = scale * b[i];
  for (int k = 0; k < r; k++)
    for (int i = 0; i < in; i++) at[static_cast<size_t>(i) * r + k] = a[static_cast<size_t>(k) * in + i];
  matmul_forward(w, bs.data(), at.data(), WEIGHT_F32, nullptr, out, r, in, true, pool);
}
