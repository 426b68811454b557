// matmul_backward for y = x @ w^T + b with f32 master weights: dx = dy @ w, dw += dy^T @ x, db += sum_n dy.
// The fast path transposes its operands and reuses the tuned serving kernel (matmul_forward, AVX2 when present):
// dx = dy @ (w^T)^T and dw += dy^T @ (x^T)^T. matmul_backward_reference keeps the plain loops beside it.
// Both give each output element one owner and a fixed summation order for a given thread count.
#include <cstring>
#include <vector>

#include "../kernels/kernels.h"
#include "../kernels/thread_pool.h"
#include "train_ops.h"

void matmul_backward_reference(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int N,
                     int in, int out, bool accumulate_dx, ThreadPool* pool) {
  if (dx != nullptr) {
    pool->parallel_for(N, 1, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; n++) {
        float* d = dx + n * in;
        if (!accumulate_dx) std::memset(d, 0, sizeof(float) * in);
        const float* g = dy + n * out;
        for (int o = 0; o < out; o++) {
          const float go = g[o];
          if (go == 0.0f) continue;
          const float* wr = w + static_cast<size_t>(o) * in;
          for (int i = 0; i < in; i++) d[i] += go * wr[i];
        }
      }
    });
  }
  if (dw == nullptr && db == nullptr) return;
  pool->parallel_for(out, 1, [&](int64_t b, int64_t e) {
    std::vector<float> acc(in);
    for (int64_t o = b; o < e; o++) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      double bsum = 0;
      for (int n = 0; n < N; n++) {
        const float go = dy[static_cast<size_t>(n) * out + o];
        if (go == 0.0f) continue;
        bsum += go;
        const float* xr = x + static_cast<size_t>(n) * in;
        for (int i = 0; i < in; i++) acc[i] += go * xr[i];
      }
      if (dw != nullptr)
        for (int i = 0; i < in; i++) dw[o * in + i] += acc[i];
      if (db != nullptr) db[o] += static_cast<float>(bsum);
    }
  });
}

namespace {

void transpose(std::vector<float>& dst, const float* src, int rows, int cols) {  // (rows, cols) -> (cols, rows)
  dst.resize(static_cast<size_t>(rows) * cols);
  for (int r0 = 0; r0 < rows; r0 += 32)
    for (int c0 = 0; c0 < cols; c0 += 32)
      for (int r = r0; r < rows && r < r0 + 32; r++)
        for (int c = c0; c < cols && c < c0 + 32; c++) dst[static_cast<size_t>(c) * rows + r] = src[static_cast<size_t>(r) * cols + c];
}

}  // namespace

void matmul_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, int N, int in,
                     int out, bool accumulate_dx, ThreadPool* pool) {
  thread_local std::vector<float> wt, dyt, xt;
  if (dx != nullptr) {
    transpose(wt, w, out, in);  // (in, out)
    matmul_forward(dx, dy, wt.data(), WEIGHT_F32, nullptr, N, out, in, accumulate_dx, pool);
  }
  if (dw == nullptr && db == nullptr) return;  // frozen weight: only dx is wanted
  transpose(dyt, dy, N, out);                   // (out, N)
  if (dw != nullptr) {
    transpose(xt, x, N, in);  // (in, N)
    matmul_forward(dw, dyt.data(), xt.data(), WEIGHT_F32, nullptr, out, N, in, true, pool);
  }
  if (db != nullptr) {
    for (int o = 0; o < out; o++) {
      const float* g = dyt.data() + static_cast<size_t>(o) * N;
      double s = 0;
      for (int n = 0; n < N; n++) s += g[n];
      db[o] += static_cast<float>(s);
    }
  }
}
