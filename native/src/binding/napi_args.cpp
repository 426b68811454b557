// napi_args.h: number, model-spec and weight readers shared by addon.cpp and training.cpp.
#include "napi_args.h"

#include <cstring>
#include <string>

int int_arg(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

double num_field(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

RopeScaling scaling_from(const Napi::Object& r) {
  RopeScaling s{};
  s.factor = static_cast<float>(num_field(r, "factor"));
  s.low_freq_factor = static_cast<float>(num_field(r, "lowFreqFactor"));
  s.high_freq_factor = static_cast<float>(num_field(r, "highFreqFactor"));
  s.original_max_position_embeddings = static_cast<int>(num_field(r, "originalMaxPositionEmbeddings"));
  return s;
}

ModelConfig config_from(const Napi::Object& o) {
  ModelConfig c{};
  c.vocab_size = static_cast<int>(num_field(o, "vocabSize"));
  c.hidden_size = static_cast<int>(num_field(o, "hiddenSize"));
  c.intermediate_size = static_cast<int>(num_field(o, "intermediateSize"));
  c.num_layers = static_cast<int>(num_field(o, "numLayers"));
  c.num_heads = static_cast<int>(num_field(o, "numHeads"));
  c.num_kv_heads = static_cast<int>(num_field(o, "numKvHeads"));
  c.head_dim = static_cast<int>(num_field(o, "headDim"));
  c.rms_norm_eps = static_cast<float>(num_field(o, "rmsNormEps"));
  c.rope_theta = static_cast<float>(num_field(o, "ropeTheta"));
  c.max_position_embeddings = static_cast<int>(num_field(o, "maxPositionEmbeddings"));
  c.tie_word_embeddings = o.Get("tieWordEmbeddings").ToBoolean();
  c.attention_bias = o.Get("attentionBias").ToBoolean();
  c.qk_norm = o.Get("qkNorm").ToBoolean();  // optional: undefined is false
  Napi::Value rs = o.Get("ropeScaling");
  c.has_rope_scaling = rs.IsObject();
  if (c.has_rope_scaling) c.rope_scaling = scaling_from(rs.As<Napi::Object>());
  // Optional fields (kernels.ts checkSpec validated them): partial RoPE, SmolLM3's NoPE layers, Phi-3 LongRoPE.
  Napi::Value rot = o.Get("rotaryDim");
  c.rotary_dim = rot.IsNumber() ? rot.As<Napi::Number>().Int32Value() : c.head_dim;
  if (c.rotary_dim < 2 || c.rotary_dim > c.head_dim || c.rotary_dim % 2 != 0)
    throw Napi::TypeError::New(o.Env(), "rotaryDim must be even and within 2..headDim");
  // A JS array of layer indices (absent: left empty) as one flag per layer, each index checked.
  auto layer_flags = [&](const char* name, std::vector<uint8_t>& flags) {
    Napi::Value v = o.Get(name);
    if (!v.IsArray()) return;
    Napi::Array layers = v.As<Napi::Array>();
    flags.assign(static_cast<size_t>(c.num_layers), 0);
    for (uint32_t i = 0; i < layers.Length(); i++) {
      const int l = int_arg(layers.Get(i), (std::string(name) + "[i]").c_str());
      if (l < 0 || l >= c.num_layers) throw Napi::TypeError::New(o.Env(), std::string(name) + " holds a layer out of range");
      flags[static_cast<size_t>(l)] = 1;
    }
  };
  layer_flags("noRopeLayers", c.no_rope);
  Napi::Value lr = o.Get("longRope");
  c.has_longrope = lr.IsObject();
  if (c.has_longrope) {
    Napi::Object r = lr.As<Napi::Object>();
    auto factors = [&](const char* name) {
      Napi::Value v = r.Get(name);
      if (!v.IsArray() || v.As<Napi::Array>().Length() != static_cast<uint32_t>(c.rotary_dim / 2))
        throw Napi::TypeError::New(o.Env(), std::string("longRope.") + name + " must hold rotaryDim / 2 numbers");
      Napi::Array a = v.As<Napi::Array>();
      std::vector<float> out(a.Length());
      for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value x = a.Get(i);
        if (!x.IsNumber() || !(x.As<Napi::Number>().DoubleValue() > 0))
          throw Napi::TypeError::New(o.Env(), std::string("longRope.") + name + " must hold positive numbers");
        out[i] = static_cast<float>(x.As<Napi::Number>().DoubleValue());
      }
      return out;
    };
    c.longrope.short_factor = factors("shortFactor");
    c.longrope.long_factor = factors("longFactor");
    c.longrope.original_max_position_embeddings = static_cast<int>(num_field(r, "originalMaxPositionEmbeddings"));
    c.longrope.attention_factor = static_cast<float>(num_field(r, "attentionFactor"));
  }
  // Gemma 2/3: each optional, absent (undefined) meaning the Llama behaviour.
  auto opt_num = [&](const char* name) {
    Napi::Value v = o.Get(name);
    return v.IsNumber() ? static_cast<float>(v.As<Napi::Number>().DoubleValue()) : 0.0f;
  };
  Napi::Value act = o.Get("hiddenAct");
  c.gelu_tanh = act.IsString() && act.As<Napi::String>().Utf8Value() == "gelu_tanh";
  c.embed_scale = opt_num("embedScale");
  c.attn_scale = opt_num("attnScale");
  c.attn_softcap = opt_num("attnSoftcap");
  c.final_softcap = opt_num("finalSoftcap");
  c.sandwich_norms = o.Get("sandwichNorms").ToBoolean();
  c.rope_local_theta = opt_num("ropeLocalTheta");
  c.rope_linear_factor = opt_num("ropeLinearFactor");
  Napi::Value sw = o.Get("slidingWindow");
  c.sliding_window = sw.IsNumber() ? sw.As<Napi::Number>().Int32Value() : 0;
  if (c.sliding_window < 0) throw Napi::TypeError::New(o.Env(), "slidingWindow must be positive");
  layer_flags("slidingLayers", c.sliding);
  return c;
}

std::unordered_map<std::string, const float*> weights_from(const Napi::Array& names, const Napi::Array& tensors) {
  if (names.Length() != tensors.Length()) throw Napi::TypeError::New(names.Env(), "names and tensors differ in length");
  std::unordered_map<std::string, const float*> weights;
  for (uint32_t i = 0; i < names.Length(); i++) {
    Napi::Value t = tensors.Get(i);
    if (!t.IsTypedArray() || t.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(names.Env(), "tensor must be a Float32Array");
    weights[names.Get(i).As<Napi::String>().Utf8Value()] = t.As<Napi::Float32Array>().Data();
  }
  return weights;
}

Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::memcpy(a.Data(), v.data(), v.size() * sizeof(float));
  return a;
}
