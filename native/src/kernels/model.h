// The Llama-family decoder for one engine step over a paged KV cache: weights in one native allocation, the
// step contract of libs/kernels/src/kernels.types.ts (flattened tokens of several sequences). Not the sampler
// or the scheduler (TypeScript), not the Node binding (binding/addon.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

struct ModelConfig {
  int vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim;
  float rms_norm_eps, rope_theta;
  bool has_rope_scaling;
  RopeScaling rope_scaling;
  bool tie_word_embeddings, attention_bias;
  int max_position_embeddings;
};

// Each matrix carries its storage type: the model's wtype, except that a q8_0 model keeps a matrix whose rows are
// not a multiple of 32 (stories260K's down_proj, I = 172) in f32, since Q8_0 blocks cannot split a row.
struct LayerWeights {
  const float* input_norm;     // (C)
  const void* w_qkv;           // (H*D + 2*KVH*D, C) q, k, v projections stacked
  WeightType t_qkv;
  const float* b_qkv;          // (H*D + 2*KVH*D) or nullptr
  const void* w_o;             // (C, H*D)
  WeightType t_o;
  const float* post_norm;      // (C)
  const void* w_gate_up;       // (2*I, C) gate rows then up rows
  WeightType t_gate_up;
  const void* w_down;          // (C, I)
  WeightType t_down;
};

struct Model {
  ModelConfig cfg;
  WeightType wtype;              // what was asked for; per-matrix types below
  std::vector<uint8_t> storage;  // every parameter tensor, one allocation
  std::vector<LayerWeights> layers;
  const void* embed;             // (V, C) in embed_type
  WeightType embed_type;
  const float* final_norm;       // (C)
  const void* lm_head;           // (V, C) in head_type; == embed when tied
  WeightType head_type;
  std::vector<float> inv_freq;   // (D/2)
  std::unique_ptr<ThreadPool> pool;
  std::mutex mutex;              // one forward at a time
  size_t matmul_weight_bytes;    // bytes of every matrix read by one decode step (incl. LM head)
};

struct KvCache {
  int num_layers, num_blocks, block_size, num_kv_heads, head_dim;
  std::vector<float> data;  // (layers, 2, num_blocks, block_size, KVH, D): K then V per layer
  std::mutex mutex;
  size_t pool_floats() const { return static_cast<size_t>(num_blocks) * block_size * num_kv_heads * head_dim; }
  float* k(int layer) { return data.data() + (2 * static_cast<size_t>(layer)) * pool_floats(); }
  float* v(int layer) { return data.data() + (2 * static_cast<size_t>(layer) + 1) * pool_floats(); }
};

struct StepBatchView {
  int T;                        // tokens in the step
  const int32_t* tokens;        // (T)
  const int32_t* positions;     // (T)
  const int32_t* seq_index;     // (T)
  int S;                        // sequences
  const int32_t* block_tables;  // (S, max_blocks)
  int max_blocks;
  int L;                        // rows with logits
  const int32_t* logit_rows;    // (L)
};

// One tensor as the caller holds it: f32 row-major, or (2-D, cols % 32 == 0) GGML Q8_0 blocks. `bytes` is its
// length, checked against the shape the config implies.
struct WeightSource {
  const float* f32 = nullptr;
  const BlockQ8_0* q8_0 = nullptr;
  size_t bytes = 0;
};

// Weights by Hugging Face name. Storage per matrix (embedding and every linear): f32 and bf16 models convert every
// source to wtype (Q8_0 sources are dequantized); a q8_0 model copies Q8_0 sources bit for bit and quantizes f32
// ones (q8_0_quantize, gguf-py's quantizer), keeping f32 for a matrix whose cols are not a multiple of 32. The
// embedding follows the same rule (so a tied model keeps one Q8_0 table that the LM head streams; a lookup
// dequantizes one row). Norms and biases are always f32. Returns nullptr and sets *error when a tensor is missing
// or has the wrong length.
std::unique_ptr<Model> model_create(const ModelConfig& cfg, WeightType wtype,
                                    const std::unordered_map<std::string, WeightSource>& weights, int threads,
                                    std::string* error);
std::unique_ptr<KvCache> kv_cache_create(const ModelConfig& cfg, int num_blocks, int block_size);
void kv_cache_copy_blocks(KvCache* cache, const int32_t* src, const int32_t* dst, int n);

// Runs one step: writes K/V of every batch token into its slot, returns logits for logit_rows.
void model_forward(Model* m, KvCache* cache, const StepBatchView& batch,
                   float* logits);  // (L, V)
