// A trainable Llama-family decoder: f32 master weights, gradients and AdamW moments each in one allocation
// (tensors in Hugging Face names and layout), a training forward over B full sequences of T slots that keeps its
// activations, the backward of the whole model, and the optimizer step. Objectives: next-token cross-entropy with
// per-token loss weights (LM head, tied or untied) and a linear scalar head read at each row's last real token
// (LlamaForSequenceClassification `score.weight`, shape (num_labels, C)). Optional LoRA adapters on the
// attention/MLP projections freeze every base tensor (no gradient, no moments). A forward-only model (what scores
// and reference log-probs need) holds the weights alone: no gradients, no moments, one layer's activations reused
// by every layer. Not the serving model (kernels/model.h), not the Node binding (binding/training.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../kernels/model.h"
#include "../kernels/thread_pool.h"
#include "train_ops.h"

// Where a tensor lives: in params / grads / adam_m / adam_v when trainable, in `frozen` (no gradient, no moments)
// when frozen. offset SIZE_MAX: the tensor is absent (no bias, no adapter on that projection).
struct TrainRef {
  size_t offset = SIZE_MAX;
  bool frozen = false;
  bool present() const { return offset != SIZE_MAX; }
};

struct TrainParam {
  std::string name;  // Hugging Face name (PEFT names for adapters)
  int rows, cols;    // HF layout; vectors are (n, 1)
  TrainRef ref;
  bool decay;        // weight decay applies (matrices; not norms or biases)
};

// The projections a LoRA adapter may target, in HF module names: kLoraTargetNames[LORA_Q] == "q_proj", ...
enum LoraTarget { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_TARGETS };
extern const char* const kLoraTargetNames[LORA_TARGETS];

// With LoRA every base tensor is frozen; each targeted projection W (out, in) of every layer gets trainable
// lora_A (rank, in) and lora_B (out, rank), y = x W^T + (alpha / rank) * (x A^T) B^T (PEFT's scaling).
struct TrainLoraConfig {
  int rank;
  float alpha;
  bool targets[LORA_TARGETS];
};

struct TrainLayer {  // where one layer's tensors live
  TrainRef input_norm, wq, bq, wk, bk, wv, bv, wo, post_norm, wg, wu, wd;  // bq/bk/bv absent without bias
  TrainRef q_norm, k_norm;                                                 // absent without qk_norm
  TrainRef attn_out_norm, mlp_out_norm;  // sandwich norms (Gemma); post_norm is then pre_feedforward_layernorm
  TrainRef lora_a[LORA_TARGETS], lora_b[LORA_TARGETS];                     // absent unless targeted
};

// One forward's saved tensors; N = B*T. A forward-only model keeps a single Layer that every layer overwrites in
// turn (its h_in and h_final stay empty): the same kernels on the same inputs, so the same bits.
struct TrainActivations {
  int B = 0, T = 0;
  std::vector<float> cos_t, sin_t;  // (N, rotary_dim/2)
  std::vector<float> cos_local, sin_local;  // (N, rotary_dim/2) of inv_freq_local, when the model has one
  struct Layer {
    std::vector<float> h_in, xn1, rstd1, q, k, v, probs, o, h_mid, xn2, rstd2, g, u, a;
    std::vector<float> q_pre, k_pre, rstd_q, rstd_k;  // qk_norm: q/k before their per-head norm, (N*H), (N*KVH)
    std::vector<float> y_attn, rstd_ao, y_mlp, rstd_mo;  // sandwich norms: o_proj / down_proj outputs (N, C), rstds (N)
    std::vector<float> lora_xa[LORA_TARGETS];  // (N, rank) scale * x A^T of each adapter
  };
  std::vector<Layer> layers;
  std::vector<float> h_final, xf, rstdf;  // (N, C), (N, C), (N)
};

struct TrainModel {
  ModelConfig cfg;
  bool has_lm_head = false;  // own lm_head.weight (untied)
  int num_labels = 0;        // rows of score.weight; 0 without a scalar head
  int lora_rank = 0;         // 0 without LoRA
  float lora_scale = 0.0f;   // alpha / rank
  // No backward ever: grads, adam_m and adam_v stay empty, and every step that would write them throws.
  bool forward_only = false;
  // LoRA adapters bypassed: the forward is the frozen base's, the reference policy of an RL run without a second copy
  // of the weights. Forward only while set: a step that would write gradients throws.
  bool lora_off = false;
  std::vector<TrainParam> tensors;
  std::unordered_map<std::string, size_t> index;  // name -> tensors[i]
  size_t num_params = 0;                             // trainable floats
  std::vector<float> params, grads, adam_m, adam_v;  // (num_params) each; grads and moments empty if forward_only
  size_t num_frozen = 0;
  std::vector<float> frozen;  // (num_frozen) base tensors under LoRA; empty without
  std::vector<TrainLayer> layers;
  TrainRef embed, final_norm, lm_head, score;  // lm_head == embed when tied; absent without
  std::vector<float> inv_freq;       // (rotary_dim/2)
  std::vector<float> inv_freq_long;  // (rotary_dim/2) LongRoPE's long set, else empty
  std::vector<float> inv_freq_local; // (rotary_dim/2) sliding layers' own base (Gemma 3), else empty
  int64_t step = 0;             // optimizer steps taken
  TrainActivations act;
  // The last train_policy_forward's batch and gathered rows, kept for its train_policy_backward; pass_id counts
  // forwards so the binding can refuse a backward whose activations another step has overwritten.
  struct PolicyPass {
    int B = 0, T = 0;
    std::vector<int32_t> tokens, positions, mask, targets;
    std::vector<int> rows;  // slots with sel != 0, ascending
    bool values = false;    // the forward computed value-head outputs
  } pass;
  int64_t pass_id = 0;       // incremented by every forward
  int64_t policy_pass = -1;  // pass_id of the last train_policy_forward
  std::unique_ptr<ThreadPool> pool;
  std::mutex mutex;  // one call at a time
};

struct TrainBatchView {
  int B, T;
  const int32_t* tokens;     // (B*T) ids, padding slots hold any valid id
  const int32_t* positions;  // (B*T) RoPE positions
  const int32_t* mask;       // (B*T) 1 real token, 0 padding (keys masked out)
};

// weights by HF name (f32, shapes checked by the caller). lm_head.weight is optional (untied LM head),
// score.weight optional with num_labels rows. With lora (else nullptr), the weights also hold every adapter
// `base_model.model.model.layers.{l}.{self_attn|mlp}.{target}.lora_{A|B}.weight`, initialised by the caller; the
// score head stays trainable. forward_only: the same tensors in the same places, without gradients, moments or
// per-layer activations. Returns nullptr and sets *error when a tensor is missing.
std::unique_ptr<TrainModel> train_model_create(const ModelConfig& cfg,
                                               const std::unordered_map<std::string, const float*>& weights,
                                               int num_labels, const TrainLoraConfig* lora, bool forward_only,
                                               int threads, std::string* error);

// Bytes held by each kind of buffer (capacity, not size: what the allocator gave). Activations grow with the
// largest batch seen and are kept for the next step; temporaries of a single step are not counted.
struct TrainMemory {
  size_t params, frozen, grads, moments, activations;
};
TrainMemory train_memory(const TrainModel* m);

// The PEFT name of layer l's adapter matrix on `target` (which: 'A' or 'B').
std::string train_lora_name(int layer, LoraTarget target, char which);

// Every frozen tensor with its adapters folded in, W + scale * B A, in the layout of `frozen` -> out
// (num_frozen). What an export writes: a plain checkpoint equal to the adapted model.
void train_merged_weights(TrainModel* m, float* out);

// Forward + backward of sum(w * CE) / sum(w) over tokens with weight w != 0; grads += grad_scale * d loss.
// targets (B*T), weights (B*T). Returns the mean loss (0 when sum(w) == 0); *weight_sum gets sum(w).
// grad_scale == 0 evaluates only (no backward); any other grad_scale throws on a forward_only model.
double train_lm_step(TrainModel* m, const TrainBatchView& batch, const int32_t* targets, const float* weights,
                     float grad_scale, double* weight_sum);

// Forward of the scalar head at each row's last real token -> scores (B, L); when dscores is non-null, also the
// backward of sum(dscores * scores) into grads (throws on a forward_only model). Rows without a real token score 0
// and get no gradient.
void train_score_step(TrainModel* m, const TrainBatchView& batch, const float* dscores /* (B, L) or null */,
                      float* scores /* (B, L) */);

// Per-token policy forward for RL objectives (PPO, DPO): for each slot i with sel[i] != 0, the log-probability of
// targets[i] under the LM head and the entropy of that next-token distribution -> logp (B*T), entropy (B*T); with
// a scalar head of one label, the value read at every slot -> values (B*T) (a critic). Slots not selected get 0.
// Keeps the activations for train_policy_backward. Either output group may be skipped with a null pointer.
void train_policy_forward(TrainModel* m, const TrainBatchView& batch, const int32_t* targets, const int32_t* sel,
                          float* logp, float* entropy, float* values);

// Backward of sum_i dlogp[i] * logp[i] + dvalues[i] * values[i] over the last train_policy_forward's batch into
// grads (dlogp over its selected slots only; either may be null). d logp_t / d logits = onehot(t) - softmax, so
// the logits of the selected rows are recomputed here instead of kept (rows x vocab floats). Throws on a
// forward_only model.
void train_policy_backward(TrainModel* m, const float* dlogp, const float* dvalues);

// Clip by global norm, then AdamW at lr_at_step(step); step++. Returns the pre-clip gradient norm; *lr_out gets
// the learning rate used. Throws on a forward_only model.
double train_optimizer_step(TrainModel* m, const AdamWConfig& c, double* lr_out);
void train_zero_grad(TrainModel* m);
