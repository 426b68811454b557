// The single native training kernels over Node-API (opTrain*: LoRA, matmul, RMSNorm, RoPE, attention, SwiGLU,
// cross-entropy and embedding backwards), synchronous on small shapes, for the specs against the float64 references
// (libs/kernels/src/training.ops.ts). Inputs are copied; nothing here touches a trainable model (training.cpp).
#include <cstring>
#include <string>
#include <vector>

#include "../train/train_model.h"
#include "napi_args.h"
#include "training.h"

namespace {

ThreadPool* train_ops_pool() {
  static ThreadPool pool(2);
  return &pool;
}

std::vector<float> f32_of(const Napi::Value& v, const char* name, size_t len) {
  return copy_array<float, napi_float32_array>(v, name, len);
}

// opTrainMatmulBackward(dy (N,out), x (N,in), w (out,in), N, in, out, reference) -> { dx, dw, db }
Napi::Value OpTrainMatmulBackward(const Napi::CallbackInfo& info) {
  const int N = int_arg(info[3], "N"), in = int_arg(info[4], "in"), out = int_arg(info[5], "out");
  auto dy = f32_of(info[0], "dy", static_cast<size_t>(N) * out);
  auto x = f32_of(info[1], "x", static_cast<size_t>(N) * in);
  auto w = f32_of(info[2], "w", static_cast<size_t>(out) * in);
  std::vector<float> dx(static_cast<size_t>(N) * in), dw(static_cast<size_t>(out) * in, 0.0f), db(out, 0.0f);
  if (info[6].ToBoolean())
    matmul_backward_reference(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), N, in, out, false, train_ops_pool());
  else
    matmul_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), N, in, out, false, train_ops_pool());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("dx", to_js(info.Env(), dx));
  o.Set("dw", to_js(info.Env(), dw));
  o.Set("db", to_js(info.Env(), db));
  return o;
}

// opTrainLora(x (N,in), a (r,in), b (out,r), dy (N,out), scale, N, in, out, r) -> { y, dx, da, db }: y is the
// adapter's term alone, dx its input gradient alone.
Napi::Value OpTrainLora(const Napi::CallbackInfo& info) {
  const int N = int_arg(info[5], "N"), in = int_arg(info[6], "in"), out = int_arg(info[7], "out");
  const int r = int_arg(info[8], "r");
  auto x = f32_of(info[0], "x", static_cast<size_t>(N) * in);
  auto a = f32_of(info[1], "a", static_cast<size_t>(r) * in);
  auto b = f32_of(info[2], "b", static_cast<size_t>(out) * r);
  auto dy = f32_of(info[3], "dy", static_cast<size_t>(N) * out);
  const float scale = info[4].As<Napi::Number>().FloatValue();
  std::vector<float> y(dy.size(), 0.0f), xa(static_cast<size_t>(N) * r), dx(x.size(), 0.0f), da(a.size(), 0.0f),
      db(b.size(), 0.0f);
  lora_forward(y.data(), xa.data(), x.data(), a.data(), b.data(), scale, N, in, out, r, train_ops_pool());
  lora_backward(dx.data(), da.data(), db.data(), dy.data(), x.data(), xa.data(), a.data(), b.data(), scale, N, in, out,
                r, train_ops_pool());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("y", to_js(info.Env(), y));
  o.Set("dx", to_js(info.Env(), dx));
  o.Set("da", to_js(info.Env(), da));
  o.Set("db", to_js(info.Env(), db));
  return o;
}

// opTrainRmsnormBackward(dy (N,C), x (N,C), w (C), N, C, eps) -> { y, dx, dw }
Napi::Value OpTrainRmsnormBackward(const Napi::CallbackInfo& info) {
  const int N = int_arg(info[3], "N"), C = int_arg(info[4], "C");
  auto dy = f32_of(info[0], "dy", static_cast<size_t>(N) * C);
  auto x = f32_of(info[1], "x", static_cast<size_t>(N) * C);
  auto w = f32_of(info[2], "w", C);
  const float eps = info[5].As<Napi::Number>().FloatValue();
  std::vector<float> y(x.size()), rstd(N), dx(x.size(), 0.0f), dw(C, 0.0f);
  rmsnorm_train_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, eps, train_ops_pool());
  rmsnorm_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C, train_ops_pool());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("y", to_js(info.Env(), y));
  o.Set("dx", to_js(info.Env(), dx));
  o.Set("dw", to_js(info.Env(), dw));
  return o;
}

// opTrainRopeBackward(dy (N,H*D), positions (N), invFreq (D/2), N, H, D) -> dx (N,H*D)
Napi::Value OpTrainRopeBackward(const Napi::CallbackInfo& info) {
  const int N = int_arg(info[3], "N"), H = int_arg(info[4], "H"), D = int_arg(info[5], "D");
  auto dy = f32_of(info[0], "dy", static_cast<size_t>(N) * H * D);
  auto pos = copy_array<int32_t, napi_int32_array>(info[1], "positions", N);
  auto inv = f32_of(info[2], "invFreq", D / 2);
  std::vector<float> c(static_cast<size_t>(N) * D / 2), s(c.size());
  rope_tables(c.data(), s.data(), pos.data(), inv.data(), N, D);
  rope_backward(dy.data(), H * D, c.data(), s.data(), N, H, D);
  return to_js(info.Env(), dy);
}

// opTrainAttention(q (B*T,H*D), k, v (B*T,KVH*D), mask (B*T), dout (B*T,H*D), B, T, H, KVH, D) -> { out, dq, dk, dv }
Napi::Value OpTrainAttention(const Napi::CallbackInfo& info) {
  TrainAttentionShape s{int_arg(info[5], "B"), int_arg(info[6], "T"), int_arg(info[7], "H"), int_arg(info[8], "KVH"),
                        int_arg(info[9], "D")};
  const size_t n = static_cast<size_t>(s.B) * s.T, qd = static_cast<size_t>(s.num_heads) * s.head_dim,
               kvd = static_cast<size_t>(s.num_kv_heads) * s.head_dim;
  if (s.num_kv_heads <= 0 || s.num_heads % s.num_kv_heads != 0) throw Napi::RangeError::New(info.Env(), "KVH must divide H");
  auto q = f32_of(info[0], "q", n * qd), k = f32_of(info[1], "k", n * kvd), v = f32_of(info[2], "v", n * kvd);
  auto mask = copy_array<int32_t, napi_int32_array>(info[3], "mask", n);
  auto dout = f32_of(info[4], "dout", n * qd);
  std::vector<float> out(n * qd), probs(static_cast<size_t>(s.B) * s.num_heads * s.T * s.T), dq(n * qd), dk(n * kvd), dv(n * kvd);
  attention_train_forward(out.data(), probs.data(), q.data(), k.data(), v.data(), mask.data(), s, train_ops_pool());
  attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), probs.data(), q.data(), k.data(), v.data(), s, train_ops_pool());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("out", to_js(info.Env(), out));
  o.Set("dq", to_js(info.Env(), dq));
  o.Set("dk", to_js(info.Env(), dk));
  o.Set("dv", to_js(info.Env(), dv));
  return o;
}

// opTrainSwigluBackward(dy, gate, up (n each)) -> { y, dgate, dup }
Napi::Value OpTrainSwigluBackward(const Napi::CallbackInfo& info) {
  const size_t n = info[0].As<Napi::TypedArray>().ElementLength();
  auto dy = f32_of(info[0], "dy", n), g = f32_of(info[1], "gate", n), u = f32_of(info[2], "up", n);
  std::vector<float> y(n), dg(n), du(n);
  swiglu_train_forward(y.data(), g.data(), u.data(), 1, static_cast<int>(n), train_ops_pool());
  swiglu_backward(dg.data(), du.data(), dy.data(), g.data(), u.data(), 1, static_cast<int>(n), train_ops_pool());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("y", to_js(info.Env(), y));
  o.Set("dgate", to_js(info.Env(), dg));
  o.Set("dup", to_js(info.Env(), du));
  return o;
}

// opTrainCrossEntropy(logits (M,V), targets (M), weights (M), M, V) -> { loss, dlogits }
Napi::Value OpTrainCrossEntropy(const Napi::CallbackInfo& info) {
  const int M = int_arg(info[3], "M"), V = int_arg(info[4], "V");
  auto z = f32_of(info[0], "logits", static_cast<size_t>(M) * V);
  auto t = copy_array<int32_t, napi_int32_array>(info[1], "targets", M);
  for (int32_t x : t)
    if (x < 0 || x >= V) throw Napi::RangeError::New(info.Env(), "target out of range");
  auto w = f32_of(info[2], "weights", M);
  const double loss = cross_entropy_forward_backward(z.data(), t.data(), w.data(), 1.0f, M, V, train_ops_pool());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("loss", loss);
  o.Set("dlogits", to_js(info.Env(), z));
  return o;
}

// opTrainEmbeddingBackward(dy (N,C), tokens (N), V, C) -> dtable (V,C)
Napi::Value OpTrainEmbeddingBackward(const Napi::CallbackInfo& info) {
  const int V = int_arg(info[2], "V"), C = int_arg(info[3], "C");
  auto tokens = copy_array<int32_t, napi_int32_array>(info[1], "tokens", info[1].As<Napi::TypedArray>().ElementLength());
  for (int32_t x : tokens)
    if (x < 0 || x >= V) throw Napi::RangeError::New(info.Env(), "token out of range");
  auto dy = f32_of(info[0], "dy", tokens.size() * C);
  std::vector<float> d(static_cast<size_t>(V) * C, 0.0f);
  embedding_backward(d.data(), dy.data(), tokens.data(), static_cast<int>(tokens.size()), C);
  return to_js(info.Env(), d);
}

}  // namespace

void register_training_op_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("opTrainMatmulBackward", Napi::Function::New(env, OpTrainMatmulBackward));
  exports.Set("opTrainLora", Napi::Function::New(env, OpTrainLora));
  exports.Set("opTrainRmsnormBackward", Napi::Function::New(env, OpTrainRmsnormBackward));
  exports.Set("opTrainRopeBackward", Napi::Function::New(env, OpTrainRopeBackward));
  exports.Set("opTrainAttention", Napi::Function::New(env, OpTrainAttention));
  exports.Set("opTrainSwigluBackward", Napi::Function::New(env, OpTrainSwigluBackward));
  exports.Set("opTrainCrossEntropy", Napi::Function::New(env, OpTrainCrossEntropy));
  exports.Set("opTrainEmbeddingBackward", Napi::Function::New(env, OpTrainEmbeddingBackward));
}
