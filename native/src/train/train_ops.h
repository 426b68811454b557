// Training kernels: the forward ops that keep what their backward needs, and the backward of every op of the
// Llama training forward (train_model.cpp), plus AdamW. Plain C++ over raw row-major f32 pointers, shapes in
// the comments; no Node headers. The serving kernels (../kernels) are reused where the forward is identical
// (matmul_forward, rope tables). Backward ops ACCUMULATE (+=) into parameter gradients and OVERWRITE input
// gradients unless stated; a null parameter gradient is skipped (a frozen tensor: LoRA's base weights). Every
// reduction runs in a fixed order, so results do not depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

class ThreadPool;

// ---- embedding_train.cpp ------------------------------------------------------------------------------------
void embedding_backward(float* dtable,         // (V, C) +=
                        const float* dout,     // (N, C)
                        const int32_t* tokens, // (N) ids in [0, V)
                        int N, int C);

// ---- rmsnorm_train.cpp --------------------------------------------------------------------------------------
// out = weight * x * rstd, rstd = 1/sqrt(mean(x^2) + eps); rstd kept for the backward.
void rmsnorm_train_forward(float* out,          // (N, C)
                           float* rstd,         // (N)
                           const float* x,      // (N, C)
                           const float* weight, // (C)
                           int N, int C, float eps, ThreadPool* pool);
void rmsnorm_backward(float* dx,           // (N, C) += (accumulates into the residual gradient)
                      float* dweight,      // (C) += or nullptr
                      const float* dout,   // (N, C)
                      const float* x,      // (N, C)
                      const float* weight, // (C)
                      const float* rstd,   // (N)
                      int N, int C, ThreadPool* pool);

// ---- matmul_train.cpp ---------------------------------------------------------------------------------------
// Forward is matmul_forward (kernels.h) with f32 weights: y = x @ w^T + b.
void matmul_backward(float* dx,        // (N, in) overwritten, or += when accumulate_dx; nullptr to skip
                     float* dw,        // (out, in) += or nullptr
                     float* db,        // (out) += or nullptr
                     const float* dy,  // (N, out)
                     const float* x,   // (N, in)
                     const float* w,   // (out, in)
                     int N, int in, int out, bool accumulate_dx, ThreadPool* pool);
// Same contract, plain loops (the naive kernel kept beside the fast one).
void matmul_backward_reference(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                               int N, int in, int out, bool accumulate_dx, ThreadPool* pool);

// ---- lora_train.cpp -----------------------------------------------------------------------------------------
// A LoRA adapter on a projection y = x @ w^T (w frozen): y += scale * (x @ a^T) @ b^T, a (r, in), b (out, r).
void lora_forward(float* y,        // (N, out) +=
                  float* xa,       // (N, r) out: scale * x @ a^T, kept for the backward
                  const float* x,  // (N, in)
                  const float* a,  // (r, in)
                  const float* b,  // (out, r)
                  float scale, int N, int in, int out, int r, ThreadPool* pool);
void lora_backward(float* dx,        // (N, in) += scale * (dy @ b) @ a
                   float* da,        // (r, in) += scale * (dy @ b)^T @ x
                   float* db,        // (out, r) += dy^T @ xa
                   const float* dy,  // (N, out)
                   const float* x,   // (N, in)
                   const float* xa,  // (N, r) from lora_forward
                   const float* a,   // (r, in)
                   const float* b,   // (out, r)
                   float scale, int N, int in, int out, int r, ThreadPool* pool);
// Folds an adapter into its base weight for export: w += scale * b @ a.
void lora_merge(float* w,        // (out, in) +=
                const float* a,  // (r, in)
                const float* b,  // (out, r)
                float scale, int in, int out, int r, ThreadPool* pool);

// ---- rope_train.cpp -----------------------------------------------------------------------------------------
// The rotation is orthogonal: the backward rotates the gradient by the opposite angle, in place.
void rope_backward(float* dx,           // (N, row_stride), heads at dx + n*row_stride + h*D
                   int row_stride,
                   const float* cos_t,  // (N, D/2)
                   const float* sin_t,  // (N, D/2)
                   int N, int num_heads, int head_dim);

// ---- attention_train.cpp ------------------------------------------------------------------------------------
// Causal self-attention over B full sequences of T slots with a key padding mask: query t of row b attends to
// keys s <= t with mask[b*T+s] != 0 (and s > t - window on a sliding layer: a row's real tokens are contiguous, so
// slots and positions differ by a constant). A query with no visible key gets a zero output (and zero gradients).
// GQA: query head h reads kv head h / (H / KVH). Scores are q.k * scale (0: 1/sqrt(D)), soft-capped to
// cap * tanh(s / cap) when softcap > 0. Probabilities (B, H, T, T) are kept for the backward.
struct TrainAttentionShape {
  int B, T, num_heads, num_kv_heads, head_dim;
  float scale = 0.0f;
  float softcap = 0.0f;
  int window = 0;
};
void attention_train_forward(float* out,            // (B*T, H*D)
                             float* probs,          // (B, H, T, T) zero where masked
                             const float* q,        // (B*T, H*D) after RoPE
                             const float* k,        // (B*T, KVH*D) after RoPE
                             const float* v,        // (B*T, KVH*D)
                             const int32_t* mask,   // (B*T) 1 real token, 0 padding
                             TrainAttentionShape s, ThreadPool* pool);
void attention_backward(float* dq,              // (B*T, H*D) overwritten
                        float* dk,              // (B*T, KVH*D) overwritten
                        float* dv,              // (B*T, KVH*D) overwritten
                        const float* dout,      // (B*T, H*D)
                        const float* probs,     // (B, H, T, T)
                        const float* q,         // (B*T, H*D)
                        const float* k,         // (B*T, KVH*D)
                        const float* v,         // (B*T, KVH*D)
                        TrainAttentionShape s, ThreadPool* pool);

// ---- swiglu_train.cpp ---------------------------------------------------------------------------------------
void swiglu_train_forward(float* out,        // (N, I) silu(gate) * up
                          const float* gate, // (N, I)
                          const float* up,   // (N, I)
                          int N, int I, ThreadPool* pool);
void swiglu_backward(float* dgate,       // (N, I) overwritten
                     float* dup,         // (N, I) overwritten
                     const float* dout,  // (N, I)
                     const float* gate,  // (N, I)
                     const float* up,    // (N, I)
                     int N, int I, ThreadPool* pool);

// ---- geglu_train.cpp ----------------------------------------------------------------------------------------
void geglu_train_forward(float* out,        // (N, I) gelu_tanh(gate) * up
                         const float* gate, // (N, I)
                         const float* up,   // (N, I)
                         int N, int I, ThreadPool* pool);
void geglu_backward(float* dgate,       // (N, I) overwritten
                    float* dup,         // (N, I) overwritten
                    const float* dout,  // (N, I)
                    const float* gate,  // (N, I)
                    const float* up,    // (N, I)
                    int N, int I, ThreadPool* pool);

// ---- loss_train.cpp -----------------------------------------------------------------------------------------
// Cross-entropy of M rows of logits against targets, each row weighted: loss = sum_m weight[m] * -log p[m,
// target[m]]. Overwrites logits with dloss/dlogits * grad_scale (softmax - onehot, times weight). Returns the
// weighted loss (double).
double cross_entropy_forward_backward(float* logits,          // (M, V) in: logits, out: dlogits
                                      const int32_t* targets, // (M) in [0, V)
                                      const float* weights,   // (M)
                                      float grad_scale, int M, int V, ThreadPool* pool);

// ---- adamw.cpp ----------------------------------------------------------------------------------------------
struct AdamWConfig {
  double lr;            // peak learning rate
  double beta1, beta2, eps, weight_decay;
  double max_grad_norm; // <= 0: no clipping
  int warmup_steps;     // linear warmup from lr/warmup to lr over the first warmup steps
  int total_steps;      // cosine decay from lr to lr*min_lr_ratio over [warmup, total); <= 0: constant after warmup
  double min_lr_ratio;
};
// Learning rate of optimizer step `step` (0-based).
double lr_at_step(const AdamWConfig& c, int64_t step);
// sqrt(sum of squares) over n floats, accumulated in double in fixed-size chunks (thread-count independent).
double grad_sq_sum(const float* g, size_t n, ThreadPool* pool);
// One AdamW update (PyTorch torch.optim.AdamW semantics, decoupled decay p *= 1 - lr*wd when decay):
// m, v updated with g * grad_mul; bias correction with step t (1-based).
void adamw_update(float* p, float* m, float* v,  // (n) each
                  const float* g,                // (n)
                  size_t n, double lr, double grad_mul, const AdamWConfig& c, bool decay, int64_t t,
                  ThreadPool* pool);
