// The Llama-family decoder for one engine step over a paged KV cache: weights in one native allocation, the
// step contract of libs/kernels/src/kernels.types.ts (flattened tokens of several sequences). Not the sampler
// or the scheduler (TypeScript), not the Node binding (binding/addon.cpp).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

// Phi-3 LongRoPE (transformers' "longrope"): frequency j is divided by short_factor[j] at positions below
// original_max_position_embeddings and by long_factor[j] from there on (chosen per token: see model_rope_tables),
// and cos/sin are multiplied by attention_factor.
struct LongRope {
  std::vector<float> short_factor, long_factor;  // (rotary_dim/2) each
  int original_max_position_embeddings;
  float attention_factor;
};

struct ModelConfig {
  int vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads, head_dim;
  float rms_norm_eps, rope_theta;
  bool has_rope_scaling;
  RopeScaling rope_scaling;
  bool tie_word_embeddings, attention_bias;
  bool qk_norm;  // Qwen3: RMSNorm over head_dim of every query and key head (weights (D)), before RoPE
  int max_position_embeddings;
  int rotary_dim;                // RoPE rotates the first rotary_dim dims of each head (partial_rotary_factor); <= D
  std::vector<uint8_t> no_rope;  // (num_layers) 1 where the layer skips RoPE (SmolLM3 NoPE layers), or empty
  bool has_longrope;
  LongRope longrope;
  // Gemma 2/3 (zero / false / empty for the Llama families):
  bool gelu_tanh;          // MLP gate activation gelu_pytorch_tanh (GeGLU) instead of silu (SwiGLU)
  float embed_scale;       // input embeddings times this (sqrt(C) rounded to f32); 0 or 1: none
  float attn_scale;        // attention scores q.k times this; 0: 1/sqrt(D)
  float attn_softcap;      // scores soft-capped to cap*tanh(s/cap) before the mask; 0: none
  float final_softcap;     // logits soft-capped likewise; 0: none
  bool sandwich_norms;     // norms on the attention and MLP outputs too (post_attention / post_feedforward)
  int sliding_window;      // a query at p sees keys p-window+1..p on sliding layers; 0: full attention everywhere
  std::vector<uint8_t> sliding;  // (num_layers) 1 on sliding layers; empty with sliding_window > 0: every layer
  float rope_local_theta;  // RoPE base of sliding layers (unscaled); 0: as the other layers
  float rope_linear_factor;  // linear RoPE scaling of the (non-local) frequencies: inv_freq / factor; 0 or 1: none
};

// One stored matrix (rows, cols) in its storage type. A projection that the step computes as one matmul (q/k/v,
// gate/up) is stacked into one matrix when every part has the same storage type, and otherwise kept as parts (a
// Q4_K_M file mixes Q4_K q/k with Q6_K v), each multiplied into its own columns of the output.
struct MatPart {
  const void* w;
  WeightType type;
  int rows;
};
struct MatParts {
  MatPart part[3];
  int n;
};

struct LayerWeights {
  const float* input_norm;     // (C)
  MatParts qkv;                // (H*D + 2*KVH*D, C) q, k, v projections (stacked, or 3 parts)
  const float* b_qkv;          // (H*D + 2*KVH*D) or nullptr
  const float* q_norm;         // (D) or nullptr (qk_norm off)
  const float* k_norm;         // (D) or nullptr
  MatPart o;                   // (C, H*D)
  const float* post_norm;      // (C) the MLP's input norm (HF pre_feedforward_layernorm with sandwich norms)
  const float* attn_out_norm;  // (C) sandwich norms: on the attention output (HF post_attention_layernorm); else null
  MatParts gate_up;            // (2*I, C) gate rows then up rows
  MatPart down;                // (C, I)
  const float* mlp_out_norm;   // (C) sandwich norms: on the MLP output (HF post_feedforward_layernorm); else null
};

struct Model {
  ModelConfig cfg;
  WeightType wtype;              // what was asked for (WEIGHT_AUTO: each quantized source kept); per-matrix types below
  std::vector<uint8_t> storage;  // every parameter tensor, one allocation
  std::vector<LayerWeights> layers;
  const void* embed;             // (V, C) in embed_type
  WeightType embed_type;
  const float* final_norm;       // (C)
  const void* lm_head;           // (V, C) in head_type; == embed when tied
  WeightType head_type;
  std::vector<float> inv_freq;   // (rotary_dim/2)
  std::vector<float> inv_freq_long;  // (rotary_dim/2) LongRoPE's long set, else empty
  std::vector<float> inv_freq_local;  // (rotary_dim/2) sliding layers' own base (rope_local_theta), else empty
  std::unique_ptr<ThreadPool> pool;
  std::mutex mutex;              // one forward at a time
  size_t matmul_weight_bytes;    // bytes of every matrix read by one decode step (incl. LM head)
  size_t matmul_macs_per_token;  // multiply-adds of every matrix for one token (incl. LM head)
  int step_mode = 0;             // a StepMode: how model_forward runs a step (auto: by its size)
};

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

struct KvCache {
  int num_layers, num_blocks, block_size, num_kv_heads, head_dim;
  bool f16;  // pools hold IEEE halves (2 bytes per value) instead of f32
  // (layers, 2, num_blocks, block_size, KVH, D): K then V per layer. calloc'd, not a zero-filled vector: a large pool
  // is the OS's zero pages until a step first writes a block, so creating it (a policy's start, a hot swap beside the
  // serving engine, on its thread) costs no page faults and the process holds only the blocks ever used.
  std::unique_ptr<uint8_t, FreeDeleter> data;
  std::mutex mutex;
  size_t elem_bytes() const { return f16 ? 2 : 4; }
  size_t pool_floats() const { return static_cast<size_t>(num_blocks) * block_size * num_kv_heads * head_dim; }
  void* k(int layer) { return data.get() + (2 * static_cast<size_t>(layer)) * pool_floats() * elem_bytes(); }
  void* v(int layer) { return data.get() + (2 * static_cast<size_t>(layer) + 1) * pool_floats() * elem_bytes(); }
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

// One tensor as the caller holds it: f32 row-major, or (2-D) GGML blocks of a quantized type (Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) whose block size divides cols. `bytes` is its length, checked against the shape the config implies.
struct WeightSource {
  const float* f32 = nullptr;
  const void* quant = nullptr;
  WeightType quant_type = WEIGHT_F32;
  size_t bytes = 0;
};

// Weights by Hugging Face name. Storage per matrix (embedding and every linear): WEIGHT_AUTO keeps each quantized
// source in its own type, bit for bit, and f32 sources in f32; f32 and bf16 convert every source (quantized ones
// dequantized); a quantized wtype copies sources of that type bit for bit and quantizes the rest (quant_quantize),
// falling back to Q8_0 and then f32 for a matrix whose cols its blocks cannot split. The embedding follows the same
// rule (a tied model keeps one quantized table that the LM head streams; a lookup dequantizes one row). Norms and
// biases are always f32. Returns nullptr and sets *error when a tensor is missing or has the wrong length.
std::unique_ptr<Model> model_create(const ModelConfig& cfg, WeightType wtype,
                                    const std::unordered_map<std::string, WeightSource>& weights, int threads,
                                    std::string* error);
std::unique_ptr<KvCache> kv_cache_create(const ModelConfig& cfg, int num_blocks, int block_size, bool f16 = false);
void kv_cache_copy_blocks(KvCache* cache, const int32_t* src, const int32_t* dst, int n);

// RoPE of a config, shared by the serving step and the training path. model_rope_freqs: inv_freq (rotary_dim/2) and,
// with LongRoPE, the short set in inv_freq and the long set in inv_freq_long (else left empty).
void model_rope_freqs(const ModelConfig& cfg, std::vector<float>* inv_freq, std::vector<float>* inv_freq_long);
// cos/sin (T, rotary_dim/2) of each token's position. LongRoPE picks the set per token: long from position
// original_max_position_embeddings on. transformers picks one set per forward call (long when its largest position
// + 1 exceeds original_max), which is the same for token-by-token decoding and for prompts that fit original_max.
void model_rope_tables(const ModelConfig& cfg, const std::vector<float>& inv_freq,
                       const std::vector<float>& inv_freq_long, const int32_t* positions, int T,
                       float* cos_t,   // (T, rotary_dim/2)
                       float* sin_t);  // (T, rotary_dim/2)
// Whether layer l rotates q and k at all (SmolLM3 skips every no_rope layer).
inline bool model_layer_rotates(const ModelConfig& cfg, int l) {
  return cfg.no_rope.empty() || cfg.no_rope[static_cast<size_t>(l)] == 0;
}
// The attention window of layer l: sliding_window on a sliding layer, 0 (the whole context) otherwise.
inline int model_layer_window(const ModelConfig& cfg, int l) {
  if (cfg.sliding_window <= 0) return 0;
  return cfg.sliding.empty() || cfg.sliding[static_cast<size_t>(l)] ? cfg.sliding_window : 0;
}
// Whether layer l takes its RoPE tables from rope_local_theta (a sliding layer of a model that has a local base).
inline bool model_layer_local_rope(const ModelConfig& cfg, int l) {
  return cfg.rope_local_theta > 0 && model_layer_window(cfg, l) > 0;
}
// inv_freq (rotary_dim/2) of rope_local_theta, unscaled; empty when the config has no local base.
void model_rope_local_freqs(const ModelConfig& cfg, std::vector<float>* inv_freq_local);
// rope_forward over the first rotary_dim dims of each of num_heads heads of head_dim, in place.
void model_rope_heads(float* x,  // (T, row_stride), heads at x + t*row_stride + h*head_dim
                      int row_stride, const float* cos_t, const float* sin_t, int T, int num_heads, int head_dim,
                      int rotary_dim);

// How a step runs. AUTO picks by the step's size (below); WORKER always hands it to a worker thread with the whole pool
// and INLINE always runs it on the caller's thread alone (tests compare the two; results are the same bits).
enum StepMode { STEP_AUTO = 0, STEP_WORKER = 1, STEP_INLINE = 2 };

// Multiply-adds one step of `batch` costs: every matrix per token, and attention over each token's context.
double model_step_macs(const Model* m, const StepBatchView& batch);
// Whether a step is small enough to run on the caller's thread: a hop to a worker thread and back (tens of µs on a
// VM) would cost more than the step itself.
bool model_step_runs_inline(const Model* m, const StepBatchView& batch);

// Runs one step: writes K/V of every batch token into its slot, returns logits for logit_rows. A step under
// kParallelStepMacs (model.cpp) runs on the calling thread alone; after one that used the pool, its workers
// rest (ThreadPool::rest).
void model_forward(Model* m, KvCache* cache, const StepBatchView& batch,
                   float* logits);  // (L, V)
