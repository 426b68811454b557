// The Node-API binding of flywheel_native, its serving exports (binding/ is the only code that includes napi.h;
// training.cpp registers the training exports). It converts JS values into the plain structs of kernels.h/model.h
// once, runs heavy calls (forward, triad) in Napi::AsyncWorker and returns Promises. Arguments are validated in
// libs/kernels (TypeScript) before they get here; this layer only guards against what would crash (wrong handle
// kinds, short arrays), throwing TypeError/RangeError.
#include <napi.h>

#include <memory>
#include <string>

#include "../kernels/kernels.h"
#include "../kernels/model.h"
#include "../kernels/thread_pool.h"
#include "napi_args.h"
#include "napi_handles.h"
#include "training.h"

namespace {

const napi_type_tag kModelTag = {0x6d5a1c0e2f4b4a11ULL, 0x9d3e7b2a5c8f1e01ULL};
const napi_type_tag kCacheTag = {0x6d5a1c0e2f4b4a11ULL, 0x9d3e7b2a5c8f1e02ULL};

using ModelBox = std::shared_ptr<Model>;
using CacheBox = std::shared_ptr<KvCache>;

ThreadPool* ops_pool() {
  static ThreadPool pool(0);
  return &pool;
}

[[noreturn]] void throw_type(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

Napi::Float32Array f32(const Napi::Value& v, const char* name, size_t min_len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_type(v.Env(), std::string(name) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() < min_len) throw Napi::RangeError::New(v.Env(), std::string(name) + " is too short");
  return a;
}

Napi::Int32Array i32(const Napi::Value& v, const char* name, size_t min_len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(v.Env(), std::string(name) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() < min_len) throw Napi::RangeError::New(v.Env(), std::string(name) + " is too short");
  return a;
}

WeightType dtype_arg(const Napi::Value& v) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "f32") return WEIGHT_F32;
  if (s == "bf16") return WEIGHT_BF16;
  if (s == "q8_0") return WEIGHT_Q8_0;
  throw_type(v.Env(), "dtype must be 'f32', 'bf16' or 'q8_0'");
}

Napi::Uint8Array u8(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw_type(v.Env(), std::string(name) + " must be a Uint8Array");
  return v.As<Napi::Uint8Array>();
}

// names: string[], tensors: (Float32Array | Uint8Array of Q8_0 blocks)[] -> views by name; model_create checks each
// length against its shape. The JS arrays must outlive the call (modelCreate copies them).
std::unordered_map<std::string, WeightSource> serving_weights_from(const Napi::Array& names, const Napi::Array& tensors) {
  Napi::Env env = names.Env();
  if (names.Length() != tensors.Length()) throw_type(env, "names and tensors differ in length");
  std::unordered_map<std::string, WeightSource> out;
  for (uint32_t i = 0; i < names.Length(); i++) {
    Napi::Value n = names.Get(i), t = tensors.Get(i);
    if (!n.IsString() || !t.IsTypedArray()) throw_type(env, "names must be strings and tensors typed arrays");
    auto a = t.As<Napi::TypedArray>();
    WeightSource src;
    if (a.TypedArrayType() == napi_float32_array) src.f32 = t.As<Napi::Float32Array>().Data();
    else if (a.TypedArrayType() == napi_uint8_array) src.q8_0 = reinterpret_cast<const BlockQ8_0*>(t.As<Napi::Uint8Array>().Data());
    else throw_type(env, "tensors must be Float32Array (f32) or Uint8Array (Q8_0 blocks)");
    src.bytes = a.ByteLength();
    out[n.As<Napi::String>().Utf8Value()] = src;
  }
  return out;
}

// ---- info / dispatch -------------------------------------------------------------------------------------

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("simd", simd_name());
  o.Set("avx2Supported", simd_avx2_supported());
  o.Set("hardwareThreads", ThreadPool::hardware_threads());
  o.Set("opsThreads", ops_pool()->num_threads());
  return o;
}

Napi::Value SetForcePortable(const Napi::CallbackInfo& info) {
  simd_force_portable(info[0].ToBoolean());
  return Napi::String::New(info.Env(), simd_name());
}

Napi::Value SetOpsThreads(const Napi::CallbackInfo& info) {
  ops_pool()->resize(int_arg(info[0], "threads"));
  return info.Env().Undefined();
}

// ---- model and cache handles ----------------------------------------------------------------------------

// modelCreate(spec, names: string[], tensors: Float32Array[], dtype, threads)
Napi::Value ModelCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsArray() || !info[2].IsArray()) throw_type(env, "modelCreate(spec, names, tensors, dtype, threads)");
  ModelConfig cfg = config_from(info[0].As<Napi::Object>());
  const auto weights = serving_weights_from(info[1].As<Napi::Array>(), info[2].As<Napi::Array>());
  WeightType wtype = dtype_arg(info[3]);
  int threads = int_arg(info[4], "threads");
  std::string error;
  std::unique_ptr<Model> m;
  try {
    m = model_create(cfg, wtype, weights, threads, &error);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory creating the model");
  }
  if (!m) throw Napi::Error::New(env, error);
  return wrap_handle<ModelBox>(env, std::move(m), kModelTag);
}

Napi::Value ModelFree(const Napi::CallbackInfo& info) {
  free_handle<ModelBox>(info[0], kModelTag);
  return info.Env().Undefined();
}

Napi::Value ModelSetThreads(const Napi::CallbackInfo& info) {
  ModelBox& m = unwrap_handle<ModelBox>(info[0], kModelTag, "model");
  const int threads = int_arg(info[1], "threads");
  std::lock_guard<std::mutex> lock(m->mutex);  // waits for an in-flight step: call between steps
  m->pool->resize(threads);
  return info.Env().Undefined();
}

Napi::Value ModelInfo(const Napi::CallbackInfo& info) {
  ModelBox& m = unwrap_handle<ModelBox>(info[0], kModelTag, "model");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", m->pool->num_threads());
  o.Set("matmulWeightBytes", static_cast<double>(m->matmul_weight_bytes));
  o.Set("storageBytes", static_cast<double>(m->storage.size()));
  return o;
}

Napi::Value CacheCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox& m = unwrap_handle<ModelBox>(info[0], kModelTag, "model");
  int num_blocks = int_arg(info[1], "numBlocks"), block_size = int_arg(info[2], "blockSize");
  if (num_blocks <= 0 || block_size <= 0) throw Napi::RangeError::New(env, "numBlocks and blockSize must be positive");
  std::unique_ptr<KvCache> c;
  try {
    c = kv_cache_create(m->cfg, num_blocks, block_size);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory creating the KV cache");
  }
  return wrap_handle<CacheBox>(env, std::move(c), kCacheTag);
}

Napi::Value CacheFree(const Napi::CallbackInfo& info) {
  free_handle<CacheBox>(info[0], kCacheTag);
  return info.Env().Undefined();
}

// cacheCopyBlocks(cache, src: Int32Array, dst: Int32Array); block ids checked in TS.
Napi::Value CacheCopyBlocks(const Napi::CallbackInfo& info) {
  CacheBox& c = unwrap_handle<CacheBox>(info[0], kCacheTag, "cache");
  auto src = i32(info[1], "src", 0);
  auto dst = i32(info[2], "dst", src.ElementLength());
  for (size_t i = 0; i < src.ElementLength(); i++)
    if (src[i] < 0 || src[i] >= c->num_blocks || dst[i] < 0 || dst[i] >= c->num_blocks)
      throw Napi::RangeError::New(info.Env(), "block id out of range");
  std::lock_guard<std::mutex> lock(c->mutex);
  kv_cache_copy_blocks(c.get(), src.Data(), dst.Data(), static_cast<int>(src.ElementLength()));
  return info.Env().Undefined();
}

// cacheReadLayer(cache, layer) -> { k, v } copies of one layer's pools (tests and debugging).
Napi::Value CacheReadLayer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CacheBox& c = unwrap_handle<CacheBox>(info[0], kCacheTag, "cache");
  int layer = int_arg(info[1], "layer");
  if (layer < 0 || layer >= c->num_layers) throw Napi::RangeError::New(env, "layer out of range");
  std::lock_guard<std::mutex> lock(c->mutex);
  const size_t n = c->pool_floats();
  auto k = Napi::Float32Array::New(env, n), v = Napi::Float32Array::New(env, n);
  std::memcpy(k.Data(), c->k(layer), n * 4);
  std::memcpy(v.Data(), c->v(layer), n * 4);
  Napi::Object o = Napi::Object::New(env);
  o.Set("k", k);
  o.Set("v", v);
  return o;
}

// ---- async work -----------------------------------------------------------------------------------------

class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, ModelBox model, CacheBox cache, StepBatchView batch, Napi::Float32Array logits,
                const std::vector<Napi::Value>& keep)
      : PromiseWorker(env), model_(std::move(model)), cache_(std::move(cache)), batch_(batch) {
    logits_ = Napi::Persistent(logits);
    for (const auto& v : keep) keep_.push_back(Napi::Persistent(v.As<Napi::Object>()));
    out_ = logits.Data();
  }
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lm(model_->mutex);
      std::lock_guard<std::mutex> lc(cache_->mutex);
      model_forward(model_.get(), cache_.get(), batch_, out_);
    } catch (const std::exception& e) {
      SetError(std::string("forward failed: ") + e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(logits_.Value()); }

 private:
  ModelBox model_;
  CacheBox cache_;
  StepBatchView batch_;
  Napi::Reference<Napi::Float32Array> logits_;
  std::vector<Napi::ObjectReference> keep_;  // the input typed arrays, alive until the step is done
  float* out_;
};

// forward(model, cache, tokens, positions, seqIndex, blockTables, maxBlocksPerSeq, logitRows) -> Promise<Float32Array>
Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox& m = unwrap_handle<ModelBox>(info[0], kModelTag, "model");
  CacheBox& c = unwrap_handle<CacheBox>(info[1], kCacheTag, "cache");
  auto tokens = i32(info[2], "tokens", 1);
  const size_t T = tokens.ElementLength();
  auto positions = i32(info[3], "positions", T);
  auto seq_index = i32(info[4], "seqIndex", T);
  int max_blocks = int_arg(info[6], "maxBlocksPerSeq");
  auto block_tables = i32(info[5], "blockTables", 0);
  auto logit_rows = i32(info[7], "logitRows", 0);
  if (max_blocks <= 0 || block_tables.ElementLength() % max_blocks != 0)
    throw Napi::RangeError::New(env, "blockTables length must be a multiple of maxBlocksPerSeq");
  if (c->num_layers != m->cfg.num_layers || c->num_kv_heads != m->cfg.num_kv_heads || c->head_dim != m->cfg.head_dim)
    throw Napi::Error::New(env, "cache was made for a different model shape");
  StepBatchView b{};
  b.T = static_cast<int>(T);
  b.tokens = tokens.Data();
  b.positions = positions.Data();
  b.seq_index = seq_index.Data();
  b.S = static_cast<int>(block_tables.ElementLength() / max_blocks);
  b.block_tables = block_tables.Data();
  b.max_blocks = max_blocks;
  b.L = static_cast<int>(logit_rows.ElementLength());
  b.logit_rows = logit_rows.Data();
  auto logits = Napi::Float32Array::New(env, static_cast<size_t>(b.L) * m->cfg.vocab_size);
  return queue_worker(new ForwardWorker(env, m, c, b, logits, {tokens, positions, seq_index, block_tables, logit_rows}));
}

class TriadWorker : public PromiseWorker {
 public:
  TriadWorker(Napi::Env env, size_t bytes, int threads) : PromiseWorker(env), bytes_(bytes), threads_(threads) {}
  void Execute() override {
    ThreadPool pool(threads_);
    gbps_ = triad_gbps(bytes_, 5, &pool);
    if (gbps_ <= 0) SetError("triad: could not allocate the arrays");
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), gbps_)); }

 private:
  size_t bytes_;
  int threads_;
  double gbps_ = 0;
};

// triad(bytesPerArray, threads) -> Promise<number> GB/s
Napi::Value Triad(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) throw_type(info.Env(), "bytesPerArray must be a number");
  return queue_worker(new TriadWorker(info.Env(), static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue()),
                                      int_arg(info[1], "threads")));
}

// ---- single ops (synchronous, for tests against references) ----------------------------------------------

// opMatmul(x, w, bias|null, T, in, out, dtype, init|null) -> y (T,out). For dtype 'q8_0', w is either f32 (quantized
// here) or a Uint8Array of Q8_0 blocks (used as is); in % 32 == 0.
Napi::Value OpMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info[3], "T"), in = int_arg(info[4], "in"), out = int_arg(info[5], "out");
  auto x = f32(info[0], "x", static_cast<size_t>(T) * in);
  const float* bias = info[2].IsNull() ? nullptr : f32(info[2], "bias", out).Data();
  WeightType wt = dtype_arg(info[6]);
  if (wt == WEIGHT_Q8_0 && in % Q8_0_BLOCK != 0) throw Napi::RangeError::New(env, "q8_0 needs in % 32 == 0");
  if (wt == WEIGHT_Q8_0 && info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto blocks = u8(info[1], "w");
    if (blocks.ByteLength() != weight_bytes(WEIGHT_Q8_0, out, in)) throw Napi::RangeError::New(env, "w has the wrong length");
    auto y = Napi::Float32Array::New(env, static_cast<size_t>(T) * out);
    bool accumulate = !info[7].IsNull() && !info[7].IsUndefined();
    if (accumulate) std::memcpy(y.Data(), f32(info[7], "init", static_cast<size_t>(T) * out).Data(), y.ByteLength());
    matmul_forward(y.Data(), x.Data(), blocks.Data(), wt, bias, T, in, out, accumulate, ops_pool());
    return y;
  }
  auto w = f32(info[1], "w", static_cast<size_t>(out) * in);
  auto y = Napi::Float32Array::New(env, static_cast<size_t>(T) * out);
  bool accumulate = !info[7].IsNull() && !info[7].IsUndefined();
  if (accumulate) std::memcpy(y.Data(), f32(info[7], "init", static_cast<size_t>(T) * out).Data(), y.ByteLength());
  std::vector<uint16_t> wb;
  std::vector<BlockQ8_0> wq;
  const void* wp = w.Data();
  if (wt == WEIGHT_BF16) {
    wb.resize(static_cast<size_t>(out) * in);
    bf16_from_f32_array(wb.data(), w.Data(), wb.size());
    wp = wb.data();
  } else if (wt == WEIGHT_Q8_0) {
    wq.resize(static_cast<size_t>(out) * in / Q8_0_BLOCK);
    q8_0_quantize(wq.data(), w.Data(), static_cast<size_t>(out) * in);
    wp = wq.data();
  }
  matmul_forward(y.Data(), x.Data(), wp, wt, bias, T, in, out, accumulate, ops_pool());
  return y;
}

// opRmsnorm(x, w, T, C, eps) -> (T,C)
Napi::Value OpRmsnorm(const Napi::CallbackInfo& info) {
  int T = int_arg(info[2], "T"), C = int_arg(info[3], "C");
  auto x = f32(info[0], "x", static_cast<size_t>(T) * C);
  auto w = f32(info[1], "weight", C);
  auto y = Napi::Float32Array::New(info.Env(), static_cast<size_t>(T) * C);
  rmsnorm_forward(y.Data(), x.Data(), w.Data(), T, C, static_cast<float>(info[4].As<Napi::Number>().DoubleValue()),
                  ops_pool());
  return y;
}

// opRope(x, positions, T, H, D, theta, scaling|null) -> rotated copy of x (T, H*D)
Napi::Value OpRope(const Napi::CallbackInfo& info) {
  int T = int_arg(info[2], "T"), H = int_arg(info[3], "H"), D = int_arg(info[4], "D");
  if (D <= 0 || D % 2 != 0) throw Napi::RangeError::New(info.Env(), "head dim must be even");
  auto x = f32(info[0], "x", static_cast<size_t>(T) * H * D);
  auto pos = i32(info[1], "positions", T);
  float theta = static_cast<float>(info[5].As<Napi::Number>().DoubleValue());
  RopeScaling rs{};
  bool has = info[6].IsObject();
  if (has) rs = scaling_from(info[6].As<Napi::Object>());
  std::vector<float> inv(D / 2), c(static_cast<size_t>(T) * D / 2), s(static_cast<size_t>(T) * D / 2);
  rope_inv_freq(inv.data(), D, theta, has ? &rs : nullptr);
  rope_tables(c.data(), s.data(), pos.Data(), inv.data(), T, D);
  auto y = Napi::Float32Array::New(info.Env(), static_cast<size_t>(T) * H * D);
  std::memcpy(y.Data(), x.Data(), y.ByteLength());
  rope_forward(y.Data(), H * D, c.data(), s.data(), T, H, D);
  return y;
}

// opSwiglu(gate, up, T, I) -> (T, I)
Napi::Value OpSwiglu(const Napi::CallbackInfo& info) {
  int T = int_arg(info[2], "T"), I = int_arg(info[3], "I");
  auto g = f32(info[0], "gate", static_cast<size_t>(T) * I), u = f32(info[1], "up", static_cast<size_t>(T) * I);
  auto y = Napi::Float32Array::New(info.Env(), static_cast<size_t>(T) * I);
  swiglu_forward(y.Data(), g.Data(), u.Data(), T, I, I, ops_pool());
  return y;
}

// opEmbedding(table, tokens, C, dtype) -> (T, C)
Napi::Value OpEmbedding(const Napi::CallbackInfo& info) {
  int C = int_arg(info[2], "C");
  auto tokens = i32(info[1], "tokens", 0);
  auto table = f32(info[0], "table", 0);
  const int V = C > 0 ? static_cast<int>(table.ElementLength() / C) : 0;
  for (size_t i = 0; i < tokens.ElementLength(); i++)
    if (tokens[i] < 0 || tokens[i] >= V) throw Napi::RangeError::New(info.Env(), "token id out of range");
  WeightType wt = dtype_arg(info[3]);
  if (wt == WEIGHT_Q8_0 && C % Q8_0_BLOCK != 0) throw Napi::RangeError::New(info.Env(), "q8_0 needs C % 32 == 0");
  std::vector<uint16_t> tb;
  std::vector<BlockQ8_0> tq;
  const void* tp = table.Data();
  if (wt == WEIGHT_BF16) {
    tb.resize(table.ElementLength());
    bf16_from_f32_array(tb.data(), table.Data(), tb.size());
    tp = tb.data();
  } else if (wt == WEIGHT_Q8_0) {
    tq.resize(static_cast<size_t>(V) * C / Q8_0_BLOCK);
    q8_0_quantize(tq.data(), table.Data(), static_cast<size_t>(V) * C);
    tp = tq.data();
  }
  const int T = static_cast<int>(tokens.ElementLength());
  auto y = Napi::Float32Array::New(info.Env(), static_cast<size_t>(T) * C);
  embedding_forward(y.Data(), tokens.Data(), tp, wt, T, C);
  return y;
}

// opQuantizeQ8_0(x: Float32Array, length % 32 == 0) -> Uint8Array of Q8_0 blocks (the load-time weight quantizer).
Napi::Value OpQuantizeQ8_0(const Napi::CallbackInfo& info) {
  auto x = f32(info[0], "x", 0);
  if (x.ElementLength() % Q8_0_BLOCK != 0) throw Napi::RangeError::New(info.Env(), "length must be a multiple of 32");
  auto out = Napi::Uint8Array::New(info.Env(), weight_bytes(WEIGHT_Q8_0, 1, x.ElementLength()));
  q8_0_quantize(reinterpret_cast<BlockQ8_0*>(out.Data()), x.Data(), x.ElementLength());
  return out;
}

// opDequantizeQ8_0(blocks: Uint8Array, length % 34 == 0) -> Float32Array
Napi::Value OpDequantizeQ8_0(const Napi::CallbackInfo& info) {
  auto b = u8(info[0], "blocks");
  if (b.ByteLength() % sizeof(BlockQ8_0) != 0) throw Napi::RangeError::New(info.Env(), "length must be a multiple of 34");
  const size_t n = b.ByteLength() / sizeof(BlockQ8_0) * Q8_0_BLOCK;
  auto out = Napi::Float32Array::New(info.Env(), n);
  q8_0_dequantize(out.Data(), reinterpret_cast<const BlockQ8_0*>(b.Data()), n);
  return out;
}

AttentionShape shape_from(const Napi::Object& o) {
  AttentionShape s{};
  s.num_heads = static_cast<int>(num_field(o, "numHeads"));
  s.num_kv_heads = static_cast<int>(num_field(o, "numKvHeads"));
  s.head_dim = static_cast<int>(num_field(o, "headDim"));
  s.block_size = static_cast<int>(num_field(o, "blockSize"));
  return s;
}

// opAttentionPrefill(q (T,H*D), kPool, vPool, blockTable, startPos, T, shape) -> (T, H*D). Ranges checked in TS.
Napi::Value OpAttentionPrefill(const Napi::CallbackInfo& info) {
  AttentionShape s = shape_from(info[6].As<Napi::Object>());
  int start = int_arg(info[4], "startPos"), T = int_arg(info[5], "T");
  const int qd = s.num_heads * s.head_dim;
  auto q = f32(info[0], "q", static_cast<size_t>(T) * qd);
  auto k = f32(info[1], "kPool", 0), v = f32(info[2], "vPool", k.ElementLength());
  auto bt = i32(info[3], "blockTable", (start + T - 1) / s.block_size + 1);
  auto y = Napi::Float32Array::New(info.Env(), static_cast<size_t>(T) * qd);
  attention_prefill_forward(y.Data(), q.Data(), qd, k.Data(), v.Data(), bt.Data(), start, T, s, ops_pool());
  return y;
}

// opAttentionDecode(q (N,H*D), kPool, vPool, positions (N), blockTables (N,maxBlocks), maxBlocks, shape) -> (N,H*D)
Napi::Value OpAttentionDecode(const Napi::CallbackInfo& info) {
  AttentionShape s = shape_from(info[6].As<Napi::Object>());
  auto pos = i32(info[3], "positions", 0);
  const int N = static_cast<int>(pos.ElementLength());
  int max_blocks = int_arg(info[5], "maxBlocks");
  const int qd = s.num_heads * s.head_dim;
  auto q = f32(info[0], "q", static_cast<size_t>(N) * qd);
  auto k = f32(info[1], "kPool", 0), v = f32(info[2], "vPool", k.ElementLength());
  auto bt = i32(info[4], "blockTables", static_cast<size_t>(N) * max_blocks);
  auto y = Napi::Float32Array::New(info.Env(), static_cast<size_t>(N) * qd);
  attention_decode_forward(y.Data(), q.Data(), qd, nullptr, k.Data(), v.Data(), pos.Data(), bt.Data(), max_blocks, N,
                           s, ops_pool());
  return y;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setForcePortable", Napi::Function::New(env, SetForcePortable));
  exports.Set("setOpsThreads", Napi::Function::New(env, SetOpsThreads));
  exports.Set("modelCreate", Napi::Function::New(env, ModelCreate));
  exports.Set("modelFree", Napi::Function::New(env, ModelFree));
  exports.Set("modelSetThreads", Napi::Function::New(env, ModelSetThreads));
  exports.Set("modelInfo", Napi::Function::New(env, ModelInfo));
  exports.Set("cacheCreate", Napi::Function::New(env, CacheCreate));
  exports.Set("cacheFree", Napi::Function::New(env, CacheFree));
  exports.Set("cacheCopyBlocks", Napi::Function::New(env, CacheCopyBlocks));
  exports.Set("cacheReadLayer", Napi::Function::New(env, CacheReadLayer));
  exports.Set("forward", Napi::Function::New(env, Forward));
  exports.Set("triad", Napi::Function::New(env, Triad));
  exports.Set("opMatmul", Napi::Function::New(env, OpMatmul));
  exports.Set("opRmsnorm", Napi::Function::New(env, OpRmsnorm));
  exports.Set("opRope", Napi::Function::New(env, OpRope));
  exports.Set("opSwiglu", Napi::Function::New(env, OpSwiglu));
  exports.Set("opEmbedding", Napi::Function::New(env, OpEmbedding));
  exports.Set("opQuantizeQ8_0", Napi::Function::New(env, OpQuantizeQ8_0));
  exports.Set("opDequantizeQ8_0", Napi::Function::New(env, OpDequantizeQ8_0));
  exports.Set("opAttentionPrefill", Napi::Function::New(env, OpAttentionPrefill));
  exports.Set("opAttentionDecode", Napi::Function::New(env, OpAttentionDecode));
  register_training_exports(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(flywheel_native, Init)
