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

// A typed array argument of one element type, at least min_len long; TypeError / RangeError naming it otherwise.
template <typename Array, napi_typedarray_type kType>
Array typed_arg(const Napi::Value& v, const char* name, const char* a_type, size_t min_len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kType)
    throw_type(v.Env(), std::string(name) + " must be " + a_type);
  auto a = v.As<Array>();
  if (a.ElementLength() < min_len) throw Napi::RangeError::New(v.Env(), std::string(name) + " is too short");
  return a;
}

Napi::Float32Array f32(const Napi::Value& v, const char* name, size_t min_len) {
  return typed_arg<Napi::Float32Array, napi_float32_array>(v, name, "a Float32Array", min_len);
}

Napi::Float64Array f64(const Napi::Value& v, const char* name, size_t min_len) {
  return typed_arg<Napi::Float64Array, napi_float64_array>(v, name, "a Float64Array", min_len);
}

Napi::Int32Array i32(const Napi::Value& v, const char* name, size_t min_len) {
  return typed_arg<Napi::Int32Array, napi_int32_array>(v, name, "an Int32Array", min_len);
}

// A storage type by name; 'auto' only where allow_auto (modelCreate: keep each quantized source's own type).
WeightType dtype_arg(const Napi::Value& v, bool allow_auto = false) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  for (WeightType t : {WEIGHT_F32, WEIGHT_BF16, WEIGHT_Q8_0, WEIGHT_Q4_0, WEIGHT_Q4_1, WEIGHT_Q5_0, WEIGHT_Q5_1,
                       WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K})
    if (s == weight_type_name(t)) return t;
  if (allow_auto && s == "auto") return WEIGHT_AUTO;
  throw_type(v.Env(), std::string("dtype must be one of f32, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k") +
                          (allow_auto ? ", auto" : ""));
}

// A quantized type by name (the blocks of a Uint8Array).
WeightType quant_type_arg(const Napi::Value& v) {
  WeightType t = dtype_arg(v);
  if (!weight_is_quantized(t)) throw_type(v.Env(), "blocks need a quantized type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)");
  return t;
}

Napi::Uint8Array u8(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw_type(v.Env(), std::string(name) + " must be a Uint8Array");
  return v.As<Napi::Uint8Array>();
}

// names: string[], tensors: (Float32Array | Uint8Array of GGML blocks)[], types: (the blocks' type names, or
// anything for an f32 tensor)[] or undefined (every Uint8Array is Q8_0) -> views by name; model_create checks each
// length against its shape. The JS arrays must outlive the call (modelCreate copies them).
std::unordered_map<std::string, WeightSource> serving_weights_from(const Napi::Array& names, const Napi::Array& tensors,
                                                                  const Napi::Value& types) {
  Napi::Env env = names.Env();
  if (names.Length() != tensors.Length()) throw_type(env, "names and tensors differ in length");
  std::unordered_map<std::string, WeightSource> out;
  for (uint32_t i = 0; i < names.Length(); i++) {
    Napi::Value n = names.Get(i), t = tensors.Get(i);
    if (!n.IsString() || !t.IsTypedArray()) throw_type(env, "names must be strings and tensors typed arrays");
    auto a = t.As<Napi::TypedArray>();
    WeightSource src;
    if (a.TypedArrayType() == napi_float32_array) src.f32 = t.As<Napi::Float32Array>().Data();
    else if (a.TypedArrayType() == napi_uint8_array) {
      src.quant = t.As<Napi::Uint8Array>().Data();
      src.quant_type = types.IsArray() ? quant_type_arg(types.As<Napi::Array>().Get(i)) : WEIGHT_Q8_0;
    } else {
      throw_type(env, "tensors must be Float32Array (f32) or Uint8Array (GGML blocks)");
    }
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
  o.Set("avx512Vnni", simd_use_avx512());
  o.Set("avxVnni", simd_use_avxvnni());
  o.Set("amx", simd_use_amx());
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

// modelCreate's (and modelCreateAsync's) arguments, read on the JavaScript thread.
struct ModelCreateArgs {
  ModelConfig cfg;
  std::unordered_map<std::string, WeightSource> weights;  // views into the tensors: they must stay alive
  WeightType wtype;
  int threads;
};

static ModelCreateArgs model_create_args(const Napi::CallbackInfo& info, const char* name) {
  if (!info[0].IsObject() || !info[1].IsArray() || !info[2].IsArray())
    throw_type(info.Env(), std::string(name) + "(spec, names, tensors, dtype, threads)");
  ModelCreateArgs a;
  a.cfg = config_from(info[0].As<Napi::Object>());
  a.weights = serving_weights_from(info[1].As<Napi::Array>(), info[2].As<Napi::Array>(), info[5]);
  a.wtype = dtype_arg(info[3], true);
  a.threads = int_arg(info[4], "threads");
  return a;
}

// The model of `a`, or nullptr with `*error` set (out of memory included).
static std::unique_ptr<Model> create_model(const ModelCreateArgs& a, std::string* error) {
  try {
    return model_create(a.cfg, a.wtype, a.weights, a.threads, error);
  } catch (const std::bad_alloc&) {
    *error = "out of memory creating the model";
    return nullptr;
  }
}

// modelCreate(spec, names: string[], tensors: (Float32Array | Uint8Array)[], dtype, threads, types?: string[])
Napi::Value ModelCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ModelCreateArgs args = model_create_args(info, "modelCreate");
  std::string error;
  std::unique_ptr<Model> m = create_model(args, &error);
  if (!m) throw Napi::Error::New(env, error);
  return wrap_handle<ModelBox>(env, std::move(m), kModelTag);
}

// modelCreateAsync(...modelCreate's arguments) -> Promise<model>: the packing (copies and conversions of every tensor,
// a second or more for a served model) on a worker thread, so a policy loading a new version beside the one serving
// keeps stepping. The tensors stay referenced, unread by JavaScript's side, until it settles.
class ModelCreateWorker : public PromiseWorker {
 public:
  ModelCreateWorker(Napi::Env env, ModelCreateArgs args, Napi::Array tensors) : PromiseWorker(env), args_(std::move(args)) {
    tensors_ = Napi::Persistent(tensors.As<Napi::Object>());
  }
  void Execute() override {
    model_ = create_model(args_, &error_);
    if (!model_) SetError(error_.empty() ? "model creation failed" : error_);
  }
  void OnOK() override { deferred_.Resolve(wrap_handle<ModelBox>(Env(), std::move(model_), kModelTag)); }

 private:
  ModelCreateArgs args_;
  Napi::ObjectReference tensors_;
  std::unique_ptr<Model> model_;
  std::string error_;
};

Napi::Value ModelCreateAsync(const Napi::CallbackInfo& info) {
  ModelCreateArgs args = model_create_args(info, "modelCreateAsync");
  return queue_worker(new ModelCreateWorker(info.Env(), std::move(args), info[2].As<Napi::Array>()));
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

// modelSetStepMode(model, 'auto' | 'worker' | 'inline'): see StepMode (model.h); for tests and benchmarks.
Napi::Value ModelSetStepMode(const Napi::CallbackInfo& info) {
  ModelBox& m = unwrap_handle<ModelBox>(info[0], kModelTag, "model");
  const std::string mode = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  int step_mode;
  if (mode == "auto") step_mode = STEP_AUTO;
  else if (mode == "worker") step_mode = STEP_WORKER;
  else if (mode == "inline") step_mode = STEP_INLINE;
  else throw Napi::TypeError::New(info.Env(), "step mode must be 'auto', 'worker' or 'inline'");
  std::lock_guard<std::mutex> lock(m->mutex);  // waits for an in-flight step: call between steps
  m->step_mode = step_mode;
  return info.Env().Undefined();
}

Napi::Value ModelInfo(const Napi::CallbackInfo& info) {
  ModelBox& m = unwrap_handle<ModelBox>(info[0], kModelTag, "model");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", m->pool->num_threads());
  o.Set("matmulWeightBytes", static_cast<double>(m->matmul_weight_bytes));
  // How many matrices (stacked groups count once) are stored in each type, e.g. {q4_k: 9, q6_k: 3}.
  Napi::Object types = Napi::Object::New(info.Env());
  auto count = [&](WeightType t) {
    const char* n = weight_type_name(t);
    types.Set(n, (types.Has(n) ? types.Get(n).As<Napi::Number>().Int32Value() : 0) + 1);
  };
  for (const LayerWeights& w : m->layers) {
    for (int i = 0; i < w.qkv.n; i++) count(w.qkv.part[i].type);
    count(w.o.type);
    for (int i = 0; i < w.gate_up.n; i++) count(w.gate_up.part[i].type);
    count(w.down.type);
  }
  count(m->embed_type);
  if (m->lm_head != m->embed) count(m->head_type);
  o.Set("weightTypes", types);
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
    // info[3]: 'f16' stores K/V as halves; anything else (undefined included) f32.
    const bool f16 = info[3].IsString() && info[3].As<Napi::String>().Utf8Value() == "f16";
    c = kv_cache_create(m->cfg, num_blocks, block_size, f16);
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
  if (c->f16) {
    const uint16_t* kh = static_cast<const uint16_t*>(c->k(layer));
    const uint16_t* vh = static_cast<const uint16_t*>(c->v(layer));
    for (size_t i = 0; i < n; i++) {
      k[i] = f32_from_f16(kh[i]);
      v[i] = f32_from_f16(vh[i]);
    }
  } else {
    std::memcpy(k.Data(), c->k(layer), n * 4);
    std::memcpy(v.Data(), c->v(layer), n * 4);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("k", k);
  o.Set("v", v);
  return o;
}

// ---- async work -----------------------------------------------------------------------------------------

// One step with the model and its cache held, on whichever thread runs it (a worker, or the caller's for a tiny step).
static void locked_forward(Model* model, KvCache* cache, const StepBatchView& batch, float* logits) {
  std::lock_guard<std::mutex> lm(model->mutex);
  std::lock_guard<std::mutex> lc(cache->mutex);
  model_forward(model, cache, batch, logits);
}

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
      locked_forward(model_.get(), cache_.get(), batch_, out_);
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
  if (model_step_runs_inline(m.get(), b)) {
    // A tiny step (a small model's decode) costs less than the thread hop: run it here, same Promise contract.
    auto deferred = Napi::Promise::Deferred::New(env);
    try {
      locked_forward(m.get(), c.get(), b, logits.Data());
      deferred.Resolve(logits);
    } catch (const std::exception& e) {
      deferred.Reject(Napi::Error::New(env, std::string("forward failed: ") + e.what()).Value());
    }
    return deferred.Promise();
  }
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

// ---- sampling ----------------------------------------------------------------------------------------------

// softmaxWeights(x: Float32Array, max, invT, out: Float64Array) -> sum: the sampler's weights, on its own thread
// (a few µs even for a 150k vocabulary: not worth a hop).
Napi::Value SoftmaxWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x", 0);
  if (!info[1].IsNumber() || !info[2].IsNumber()) throw_type(env, "max and invT must be numbers");
  auto out = f64(info[3], "out", x.ElementLength());
  const double z = softmax_weights(out.Data(), x.Data(), x.ElementLength(), info[1].As<Napi::Number>().DoubleValue(),
                                   info[2].As<Napi::Number>().DoubleValue());
  return Napi::Number::New(env, z);
}

// topKIds(x: Float32Array, k, out: Int32Array) -> count: the min(k, n) best ids, best first (sampling_select.cpp).
Napi::Value TopKIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x", 0);
  const int k = int_arg(info[1], "k");
  if (k < 0) throw Napi::RangeError::New(env, "k must be >= 0");
  auto out = i32(info[2], "out", std::min(static_cast<size_t>(k), x.ElementLength()));
  return Napi::Number::New(env, static_cast<double>(top_k_ids(out.Data(), x.Data(), x.ElementLength(), k)));
}

// nucleusIds(x: Float32Array, w: Float64Array, max, total, p, out: Int32Array) -> count: a prefix of the ids in
// (value desc, id asc) order whose weights reach p * total (sampling_select.cpp); out holds x's length.
Napi::Value NucleusIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x", 0);
  auto w = f64(info[1], "w", x.ElementLength());
  if (!info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber()) throw_type(env, "max, total and p must be numbers");
  auto out = i32(info[5], "out", x.ElementLength());
  const size_t n = nucleus_ids(out.Data(), x.Data(), w.Data(), x.ElementLength(), info[2].As<Napi::Number>().DoubleValue(),
                               info[3].As<Napi::Number>().DoubleValue(), info[4].As<Napi::Number>().DoubleValue());
  return Napi::Number::New(env, static_cast<double>(n));
}

// ---- single ops (synchronous, for tests against references) ----------------------------------------------

// opMatmul(x, w, bias|null, T, in, out, dtype, init|null) -> y (T,out). For a quantized dtype, w is either f32
// (quantized here with quant_quantize) or a Uint8Array of that type's blocks (used as is); the type's block size
// must divide in.
Napi::Value OpMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int T = int_arg(info[3], "T"), in = int_arg(info[4], "in"), out = int_arg(info[5], "out");
  auto x = f32(info[0], "x", static_cast<size_t>(T) * in);
  const float* bias = info[2].IsNull() ? nullptr : f32(info[2], "bias", out).Data();
  WeightType wt = dtype_arg(info[6]);
  const bool quant = weight_is_quantized(wt);
  if (quant && in % quant_block_elems(wt) != 0)
    throw Napi::RangeError::New(env, std::string(weight_type_name(wt)) + " needs in % " +
                                         std::to_string(quant_block_elems(wt)) + " == 0");
  auto y = Napi::Float32Array::New(env, static_cast<size_t>(T) * out);
  bool accumulate = !info[7].IsNull() && !info[7].IsUndefined();
  if (accumulate) std::memcpy(y.Data(), f32(info[7], "init", static_cast<size_t>(T) * out).Data(), y.ByteLength());
  if (quant && info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto blocks = u8(info[1], "w");
    if (blocks.ByteLength() != weight_bytes(wt, out, in)) throw Napi::RangeError::New(env, "w has the wrong length");
    matmul_forward(y.Data(), x.Data(), blocks.Data(), wt, bias, T, in, out, accumulate, ops_pool());
    return y;
  }
  auto w = f32(info[1], "w", static_cast<size_t>(out) * in);
  std::vector<uint16_t> wb;
  std::vector<uint8_t> wq;
  const void* wp = w.Data();
  if (wt == WEIGHT_BF16) {
    wb.resize(static_cast<size_t>(out) * in);
    bf16_from_f32_array(wb.data(), w.Data(), wb.size());
    wp = wb.data();
  } else if (quant) {
    wq.resize(weight_bytes(wt, out, in));
    quant_quantize(wt, wq.data(), w.Data(), static_cast<size_t>(out) * in);
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
  if (weight_is_quantized(wt) && C % quant_block_elems(wt) != 0)
    throw Napi::RangeError::New(info.Env(), std::string(weight_type_name(wt)) + " needs C % " +
                                                std::to_string(quant_block_elems(wt)) + " == 0");
  std::vector<uint16_t> tb;
  std::vector<uint8_t> tq;
  const void* tp = table.Data();
  if (wt == WEIGHT_BF16) {
    tb.resize(table.ElementLength());
    bf16_from_f32_array(tb.data(), table.Data(), tb.size());
    tp = tb.data();
  } else if (weight_is_quantized(wt)) {
    tq.resize(weight_bytes(wt, V, C));
    quant_quantize(wt, tq.data(), table.Data(), static_cast<size_t>(V) * C);
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

// opQuantize(type, x: Float32Array) -> Uint8Array of blocks (length a multiple of the type's block size).
Napi::Value OpQuantize(const Napi::CallbackInfo& info) {
  WeightType t = quant_type_arg(info[0]);
  auto x = f32(info[1], "x", 0);
  if (x.ElementLength() % quant_block_elems(t) != 0)
    throw Napi::RangeError::New(info.Env(), "length must be a multiple of " + std::to_string(quant_block_elems(t)));
  auto out = Napi::Uint8Array::New(info.Env(), weight_bytes(t, 1, x.ElementLength()));
  quant_quantize(t, out.Data(), x.Data(), x.ElementLength());
  return out;
}

// opDequantize(type, blocks: Uint8Array) -> Float32Array
Napi::Value OpDequantize(const Napi::CallbackInfo& info) {
  WeightType t = quant_type_arg(info[0]);
  auto b = u8(info[1], "blocks");
  if (b.ByteLength() % quant_block_bytes(t) != 0)
    throw Napi::RangeError::New(info.Env(), "length must be a multiple of " + std::to_string(quant_block_bytes(t)));
  const size_t n = b.ByteLength() / quant_block_bytes(t) * quant_block_elems(t);
  auto out = Napi::Float32Array::New(info.Env(), n);
  quant_dequantize(t, out.Data(), b.Data(), n);
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
  exports.Set("modelCreateAsync", Napi::Function::New(env, ModelCreateAsync));
  exports.Set("modelFree", Napi::Function::New(env, ModelFree));
  exports.Set("modelSetThreads", Napi::Function::New(env, ModelSetThreads));
  exports.Set("modelSetStepMode", Napi::Function::New(env, ModelSetStepMode));
  exports.Set("modelInfo", Napi::Function::New(env, ModelInfo));
  exports.Set("cacheCreate", Napi::Function::New(env, CacheCreate));
  exports.Set("cacheFree", Napi::Function::New(env, CacheFree));
  exports.Set("cacheCopyBlocks", Napi::Function::New(env, CacheCopyBlocks));
  exports.Set("cacheReadLayer", Napi::Function::New(env, CacheReadLayer));
  exports.Set("forward", Napi::Function::New(env, Forward));
  exports.Set("triad", Napi::Function::New(env, Triad));
  exports.Set("softmaxWeights", Napi::Function::New(env, SoftmaxWeights));
  exports.Set("topKIds", Napi::Function::New(env, TopKIds));
  exports.Set("nucleusIds", Napi::Function::New(env, NucleusIds));
  exports.Set("opMatmul", Napi::Function::New(env, OpMatmul));
  exports.Set("opRmsnorm", Napi::Function::New(env, OpRmsnorm));
  exports.Set("opRope", Napi::Function::New(env, OpRope));
  exports.Set("opSwiglu", Napi::Function::New(env, OpSwiglu));
  exports.Set("opEmbedding", Napi::Function::New(env, OpEmbedding));
  exports.Set("opQuantizeQ8_0", Napi::Function::New(env, OpQuantizeQ8_0));
  exports.Set("opDequantizeQ8_0", Napi::Function::New(env, OpDequantizeQ8_0));
  exports.Set("opQuantize", Napi::Function::New(env, OpQuantize));
  exports.Set("opDequantize", Napi::Function::New(env, OpDequantize));
  exports.Set("opAttentionPrefill", Napi::Function::New(env, OpAttentionPrefill));
  exports.Set("opAttentionDecode", Napi::Function::New(env, OpAttentionDecode));
  register_training_exports(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(flywheel_native, Init)
