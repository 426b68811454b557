// The Node-API binding of the native training path (train/train_model.h): trainable-model handles, the LM and
// scalar-head steps and the optimizer step in Napi::AsyncWorker (Promises), and synchronous state copies
// (params, grads, AdamW moments, step; the frozen base and the LoRA-merged weights) for export and resume. The single
// training kernels are training_ops.cpp's.
// Inputs are copied into plain vectors before the worker runs, so JS may reuse its arrays at once. Arguments are
// validated in libs/kernels/src/training.ts; this layer only guards against what would crash.
#include "training.h"

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../train/train_model.h"
#include "napi_args.h"
#include "napi_handles.h"

namespace {

const napi_type_tag kTrainTag = {0x6d5a1c0e2f4b4a11ULL, 0x9d3e7b2a5c8f1e03ULL};
using TrainBox = std::shared_ptr<TrainModel>;

TrainBox& unwrap_train(const Napi::Value& v) { return unwrap_handle<TrainBox>(v, kTrainTag, "trainable model"); }

struct BatchCopy {
  int B, T;
  std::vector<int32_t> tokens, positions, mask;
  TrainBatchView view() const { return {B, T, tokens.data(), positions.data(), mask.data()}; }
};

BatchCopy batch_of(const Napi::CallbackInfo& info, int first, const TrainModel& m) {
  BatchCopy b;
  b.B = int_arg(info[first + 3], "B");
  b.T = int_arg(info[first + 4], "T");
  if (b.B <= 0 || b.T <= 0) throw Napi::RangeError::New(info.Env(), "B and T must be positive");
  const size_t n = static_cast<size_t>(b.B) * b.T;
  b.tokens = copy_array<int32_t, napi_int32_array>(info[first], "tokens", n);
  b.positions = copy_array<int32_t, napi_int32_array>(info[first + 1], "positions", n);
  b.mask = copy_array<int32_t, napi_int32_array>(info[first + 2], "mask", n);
  for (int32_t t : b.tokens)
    if (t < 0 || t >= m.cfg.vocab_size) throw Napi::RangeError::New(info.Env(), "token id out of range");
  return b;
}

// A training step on one model: Run() holds the model's lock, so steps on a model run one at a time.
class TrainWorker : public PromiseWorker {
 public:
  TrainWorker(Napi::Env env, TrainBox model) : PromiseWorker(env), model_(std::move(model)) {}
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(model_->mutex);
      Run();
    } catch (const std::bad_alloc&) {
      SetError("out of memory in a training step");
    } catch (const std::exception& e) {
      SetError(std::string("training step failed: ") + e.what());
    }
  }

 protected:
  virtual void Run() = 0;
  TrainBox model_;
};

class LmStepWorker : public TrainWorker {
 public:
  LmStepWorker(Napi::Env env, TrainBox m, BatchCopy b, std::vector<int32_t> targets, std::vector<float> weights,
               float grad_scale)
      : TrainWorker(env, std::move(m)), b_(std::move(b)), targets_(std::move(targets)), weights_(std::move(weights)),
        grad_scale_(grad_scale) {}
  void Run() override { loss_ = train_lm_step(model_.get(), b_.view(), targets_.data(), weights_.data(), grad_scale_, &wsum_); }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("loss", loss_);
    o.Set("weightSum", wsum_);
    deferred_.Resolve(o);
  }

 private:
  BatchCopy b_;
  std::vector<int32_t> targets_;
  std::vector<float> weights_;
  float grad_scale_;
  double loss_ = 0, wsum_ = 0;
};

class ScoreStepWorker : public TrainWorker {
 public:
  ScoreStepWorker(Napi::Env env, TrainBox m, BatchCopy b, std::vector<float> dscores, bool backward)
      : TrainWorker(env, std::move(m)), b_(std::move(b)), dscores_(std::move(dscores)), backward_(backward) {}
  void Run() override {
    scores_.resize(static_cast<size_t>(b_.B) * model_->num_labels);
    train_score_step(model_.get(), b_.view(), backward_ ? dscores_.data() : nullptr, scores_.data());
  }
  void OnOK() override { deferred_.Resolve(to_js(Env(), scores_)); }

 private:
  BatchCopy b_;
  std::vector<float> dscores_, scores_;
  bool backward_;
};

class PolicyForwardWorker : public TrainWorker {
 public:
  PolicyForwardWorker(Napi::Env env, TrainBox m, BatchCopy b, std::vector<int32_t> targets, std::vector<int32_t> sel,
                      bool values)
      : TrainWorker(env, std::move(m)), b_(std::move(b)), targets_(std::move(targets)), sel_(std::move(sel)),
        want_values_(values) {}
  void Run() override {
    const size_t n = static_cast<size_t>(b_.B) * b_.T;
    logp_.resize(n);
    entropy_.resize(n);
    values_.resize(want_values_ ? n : 0);
    train_policy_forward(model_.get(), b_.view(), targets_.data(), sel_.data(), logp_.data(), entropy_.data(),
                         want_values_ ? values_.data() : nullptr);
    pass_ = model_->pass_id;
  }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("logp", to_js(Env(), logp_));
    o.Set("entropy", to_js(Env(), entropy_));
    if (want_values_) o.Set("values", to_js(Env(), values_));
    o.Set("pass", static_cast<double>(pass_));
    deferred_.Resolve(o);
  }

 private:
  BatchCopy b_;
  std::vector<int32_t> targets_, sel_;
  bool want_values_;
  std::vector<float> logp_, entropy_, values_;
  int64_t pass_ = 0;
};

class PolicyBackwardWorker : public TrainWorker {
 public:
  PolicyBackwardWorker(Napi::Env env, TrainBox m, int64_t pass, std::vector<float> dlogp, std::vector<float> dvalues)
      : TrainWorker(env, std::move(m)), pass_(pass), dlogp_(std::move(dlogp)), dvalues_(std::move(dvalues)) {}
  void Run() override {
    if (model_->policy_pass != pass_)
      throw std::runtime_error("policy backward: the activations of that forward are gone (another step ran since, or "
                               "its backward already ran)");
    train_policy_backward(model_.get(), dlogp_.empty() ? nullptr : dlogp_.data(),
                          dvalues_.empty() ? nullptr : dvalues_.data());
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

 private:
  int64_t pass_;
  std::vector<float> dlogp_, dvalues_;
};

class OptimizerWorker : public TrainWorker {
 public:
  OptimizerWorker(Napi::Env env, TrainBox m, AdamWConfig c) : TrainWorker(env, std::move(m)), c_(c) {}
  void Run() override {
    norm_ = train_optimizer_step(model_.get(), c_, &lr_);
    step_ = model_->step;
  }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("gradNorm", norm_);
    o.Set("lr", lr_);
    o.Set("step", static_cast<double>(step_));
    deferred_.Resolve(o);
  }

 private:
  AdamWConfig c_;
  double norm_ = 0, lr_ = 0;
  int64_t step_ = 0;
};

// {rank, alpha, targets: string[]} -> TrainLoraConfig (values checked in training.ts; names checked here).
TrainLoraConfig lora_of(const Napi::Object& o) {
  TrainLoraConfig c{};
  c.rank = static_cast<int>(num_field(o, "rank"));
  c.alpha = static_cast<float>(num_field(o, "alpha"));
  if (c.rank <= 0) throw Napi::RangeError::New(o.Env(), "lora rank must be positive");
  Napi::Value t = o.Get("targets");
  if (!t.IsArray()) throw Napi::TypeError::New(o.Env(), "lora targets must be an array");
  Napi::Array targets = t.As<Napi::Array>();
  for (uint32_t i = 0; i < targets.Length(); i++) {
    const std::string name = targets.Get(i).ToString().Utf8Value();
    int found = -1;
    for (int k = 0; k < LORA_TARGETS; k++)
      if (name == kLoraTargetNames[k]) found = k;
    if (found < 0) throw Napi::RangeError::New(o.Env(), "unknown lora target " + name);
    c.targets[found] = true;
  }
  return c;
}

// trainModelCreate(spec, names, tensors, numLabels, threads, lora | null, forwardOnly)
Napi::Value TrainModelCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[1].IsArray() || !info[2].IsArray() || !info[6].IsBoolean())
    throw Napi::TypeError::New(env, "trainModelCreate(spec, names, tensors, numLabels, threads, lora, forwardOnly)");
  ModelConfig cfg = config_from(info[0].As<Napi::Object>());
  const auto weights = weights_from(info[1].As<Napi::Array>(), info[2].As<Napi::Array>());
  const bool has_lora = info[5].IsObject();
  const TrainLoraConfig lora = has_lora ? lora_of(info[5].As<Napi::Object>()) : TrainLoraConfig{};
  std::string error;
  std::unique_ptr<TrainModel> m;
  try {
    m = train_model_create(cfg, weights, int_arg(info[3], "numLabels"), has_lora ? &lora : nullptr,
                           info[6].As<Napi::Boolean>().Value(), int_arg(info[4], "threads"), &error);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory creating the trainable model");
  }
  if (!m) throw Napi::Error::New(env, error);
  return wrap_handle<TrainBox>(env, std::move(m), kTrainTag);
}

Napi::Value TrainModelFree(const Napi::CallbackInfo& info) {
  free_handle<TrainBox>(info[0], kTrainTag);
  return info.Env().Undefined();
}

// trainModelLayout(h) -> { names, rows, cols, offsets, frozen, numParams, numFrozen, loraRank, loraScale, step,
//   threads, forwardOnly, bytes: {params, frozen, grads, moments, activations} }; offsets index the trainable
//   buffers, or the frozen one where frozen[i]
Napi::Value TrainModelLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TrainBox& m = unwrap_train(info[0]);
  std::lock_guard<std::mutex> lock(m->mutex);
  const uint32_t n = static_cast<uint32_t>(m->tensors.size());
  Napi::Array names = Napi::Array::New(env, n), rows = Napi::Array::New(env, n), cols = Napi::Array::New(env, n),
              offs = Napi::Array::New(env, n), frozen = Napi::Array::New(env, n);
  for (uint32_t i = 0; i < n; i++) {
    names.Set(i, m->tensors[i].name);
    rows.Set(i, m->tensors[i].rows);
    cols.Set(i, m->tensors[i].cols);
    offs.Set(i, static_cast<double>(m->tensors[i].ref.offset));
    frozen.Set(i, m->tensors[i].ref.frozen);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("names", names);
  o.Set("rows", rows);
  o.Set("cols", cols);
  o.Set("offsets", offs);
  o.Set("frozen", frozen);
  o.Set("numParams", static_cast<double>(m->num_params));
  o.Set("numFrozen", static_cast<double>(m->num_frozen));
  o.Set("loraRank", m->lora_rank);
  o.Set("loraScale", static_cast<double>(m->lora_scale));
  o.Set("step", static_cast<double>(m->step));
  o.Set("threads", m->pool->num_threads());
  o.Set("forwardOnly", m->forward_only);
  const TrainMemory mem = train_memory(m.get());
  Napi::Object bytes = Napi::Object::New(env);
  bytes.Set("params", static_cast<double>(mem.params));
  bytes.Set("frozen", static_cast<double>(mem.frozen));
  bytes.Set("grads", static_cast<double>(mem.grads));
  bytes.Set("moments", static_cast<double>(mem.moments));
  bytes.Set("activations", static_cast<double>(mem.activations));
  o.Set("bytes", bytes);
  return o;
}

// 'frozen' (the base tensors under LoRA) can be read, not replaced: it is not training state. A forward-only model
// has no gradients or moments to read or write.
std::vector<float>& buffer_of(TrainModel& m, const Napi::Value& which, bool readonly) {
  std::string w = which.IsString() ? which.As<Napi::String>().Utf8Value() : "";
  if (m.forward_only && (w == "grads" || w == "adamM" || w == "adamV"))
    throw Napi::Error::New(which.Env(), "the model is frozen (forward only): it has no " + w);
  if (w == "params") return m.params;
  if (w == "grads") return m.grads;
  if (w == "adamM") return m.adam_m;
  if (w == "adamV") return m.adam_v;
  if (w == "frozen" && readonly) return m.frozen;
  throw Napi::TypeError::New(which.Env(), "state must be 'params', 'grads', 'adamM' or 'adamV'");
}

// trainGetState(h, which) -> Float32Array copy of the flat buffer (numParams; numFrozen for 'frozen')
Napi::Value TrainGetState(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  std::lock_guard<std::mutex> lock(m->mutex);
  std::vector<float>& buf = buffer_of(*m, info[1], true);
  auto a = Napi::Float32Array::New(info.Env(), buf.size());
  std::memcpy(a.Data(), buf.data(), buf.size() * sizeof(float));
  return a;
}

// trainSetState(h, which, Float32Array (numParams))
Napi::Value TrainSetState(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  std::lock_guard<std::mutex> lock(m->mutex);
  std::vector<float>& buf = buffer_of(*m, info[1], false);
  std::vector<float> src = copy_array<float, napi_float32_array>(info[2], "state", buf.size());
  buf = std::move(src);
  return info.Env().Undefined();
}

// trainMergedWeights(h) -> Float32Array (numFrozen): the frozen tensors with every adapter folded in.
Napi::Value TrainMergedWeights(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  std::lock_guard<std::mutex> lock(m->mutex);
  if (m->lora_rank == 0) throw Napi::Error::New(info.Env(), "this model has no LoRA adapters to merge");
  auto a = Napi::Float32Array::New(info.Env(), m->num_frozen);
  train_merged_weights(m.get(), a.Data());
  return a;
}

Napi::Value TrainSetStep(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  if (!info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "step must be a number");
  std::lock_guard<std::mutex> lock(m->mutex);
  m->step = info[1].As<Napi::Number>().Int64Value();
  return info.Env().Undefined();
}

// trainSetLoraEnabled(h, enabled): off, the forward is the frozen base's (an RL reference without a second copy).
Napi::Value TrainSetLoraEnabled(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  if (!info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "enabled must be a boolean");
  if (m->lora_rank == 0) throw Napi::Error::New(info.Env(), "this model has no LoRA adapters to turn on or off");
  std::lock_guard<std::mutex> lock(m->mutex);
  m->lora_off = !info[1].As<Napi::Boolean>().Value();
  return info.Env().Undefined();
}

Napi::Value TrainZeroGrad(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  std::lock_guard<std::mutex> lock(m->mutex);
  train_zero_grad(m.get());
  return info.Env().Undefined();
}

// trainLmStep(h, tokens, positions, mask, B, T, targets, weights, gradScale) -> Promise<{loss, weightSum}>
Napi::Value TrainLmStep(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  if (!m->has_lm_head && !m->cfg.tie_word_embeddings)
    throw Napi::Error::New(info.Env(), "this model has no LM head (lm_head.weight) to train");
  BatchCopy b = batch_of(info, 1, *m);
  const size_t n = static_cast<size_t>(b.B) * b.T;
  auto targets = copy_array<int32_t, napi_int32_array>(info[6], "targets", n);
  for (int32_t t : targets)
    if (t < 0 || t >= m->cfg.vocab_size) throw Napi::RangeError::New(info.Env(), "target id out of range");
  auto weights = copy_array<float, napi_float32_array>(info[7], "weights", n);
  if (!info[8].IsNumber()) throw Napi::TypeError::New(info.Env(), "gradScale must be a number");
  return queue_worker(new LmStepWorker(info.Env(), m, std::move(b), std::move(targets), std::move(weights),
                             info[8].As<Napi::Number>().FloatValue()));
}

// trainScoreStep(h, tokens, positions, mask, B, T, dScores|null) -> Promise<Float32Array (B, numLabels)>
Napi::Value TrainScoreStep(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  if (m->num_labels <= 0) throw Napi::Error::New(info.Env(), "this model has no scalar head (score.weight)");
  BatchCopy b = batch_of(info, 1, *m);
  const bool backward = !info[6].IsNull() && !info[6].IsUndefined();
  std::vector<float> ds;
  if (backward)
    ds = copy_array<float, napi_float32_array>(info[6], "dScores", static_cast<size_t>(b.B) * m->num_labels);
  return queue_worker(new ScoreStepWorker(info.Env(), m, std::move(b), std::move(ds), backward));
}

// trainPolicyForward(h, tokens, positions, mask, B, T, targets, sel, values) ->
//   Promise<{logp, entropy, values?, pass}> (B*T each)
Napi::Value TrainPolicyForward(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  BatchCopy b = batch_of(info, 1, *m);
  const size_t n = static_cast<size_t>(b.B) * b.T;
  auto targets = copy_array<int32_t, napi_int32_array>(info[6], "targets", n);
  for (int32_t t : targets)
    if (t < 0 || t >= m->cfg.vocab_size) throw Napi::RangeError::New(info.Env(), "target id out of range");
  auto sel = copy_array<int32_t, napi_int32_array>(info[7], "sel", n);
  const bool values = info[8].ToBoolean();
  if (values && m->num_labels != 1) throw Napi::Error::New(info.Env(), "values need a scalar head with one label");
  return queue_worker(new PolicyForwardWorker(info.Env(), m, std::move(b), std::move(targets), std::move(sel), values));
}

// trainPolicyBackward(h, pass, dlogp|null, dvalues|null) -> Promise<void>; lengths are the forward's B*T.
Napi::Value TrainPolicyBackward(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  if (!info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "pass must be a number");
  const int64_t pass = info[1].As<Napi::Number>().Int64Value();
  size_t n;
  {
    std::lock_guard<std::mutex> lock(m->mutex);
    n = static_cast<size_t>(m->pass.B) * m->pass.T;
  }
  std::vector<float> dlogp, dvalues;
  if (!info[2].IsNull() && !info[2].IsUndefined()) dlogp = copy_array<float, napi_float32_array>(info[2], "dlogp", n);
  if (!info[3].IsNull() && !info[3].IsUndefined())
    dvalues = copy_array<float, napi_float32_array>(info[3], "dvalues", n);
  return queue_worker(new PolicyBackwardWorker(info.Env(), m, pass, std::move(dlogp), std::move(dvalues)));
}

// trainOptimizerStep(h, {lr, beta1, beta2, eps, weightDecay, maxGradNorm, warmupSteps, totalSteps, minLrRatio})
Napi::Value TrainOptimizerStep(const Napi::CallbackInfo& info) {
  TrainBox& m = unwrap_train(info[0]);
  if (!info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "optimizer config must be an object");
  Napi::Object o = info[1].As<Napi::Object>();
  AdamWConfig c{};
  c.lr = num_field(o, "lr");
  c.beta1 = num_field(o, "beta1");
  c.beta2 = num_field(o, "beta2");
  c.eps = num_field(o, "eps");
  c.weight_decay = num_field(o, "weightDecay");
  c.max_grad_norm = num_field(o, "maxGradNorm");
  c.warmup_steps = static_cast<int>(num_field(o, "warmupSteps"));
  c.total_steps = static_cast<int>(num_field(o, "totalSteps"));
  c.min_lr_ratio = num_field(o, "minLrRatio");
  return queue_worker(new OptimizerWorker(info.Env(), m, c));
}

}  // namespace

void register_training_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("trainModelCreate", Napi::Function::New(env, TrainModelCreate));
  exports.Set("trainModelFree", Napi::Function::New(env, TrainModelFree));
  exports.Set("trainModelLayout", Napi::Function::New(env, TrainModelLayout));
  exports.Set("trainGetState", Napi::Function::New(env, TrainGetState));
  exports.Set("trainSetState", Napi::Function::New(env, TrainSetState));
  exports.Set("trainSetStep", Napi::Function::New(env, TrainSetStep));
  exports.Set("trainMergedWeights", Napi::Function::New(env, TrainMergedWeights));
  exports.Set("trainZeroGrad", Napi::Function::New(env, TrainZeroGrad));
  exports.Set("trainSetLoraEnabled", Napi::Function::New(env, TrainSetLoraEnabled));
  exports.Set("trainLmStep", Napi::Function::New(env, TrainLmStep));
  exports.Set("trainScoreStep", Napi::Function::New(env, TrainScoreStep));
  exports.Set("trainPolicyForward", Napi::Function::New(env, TrainPolicyForward));
  exports.Set("trainPolicyBackward", Napi::Function::New(env, TrainPolicyBackward));
  exports.Set("trainOptimizerStep", Napi::Function::New(env, TrainOptimizerStep));
  register_training_op_exports(env, exports);
}
