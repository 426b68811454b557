// Argument readers shared by the two Node-API files (addon.cpp: serving, training.cpp: training): numbers, the
// model spec object and the weights as libs/kernels passes them. They only guard against what would crash; the
// TypeScript layer validates values first. Also the copying array reader and writer of the training path (the
// serving path reads views in addon.cpp). Not handles (napi_handles.h).
#pragma once

#include <napi.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "../kernels/model.h"

int int_arg(const Napi::Value& v, const char* name);
// o[name] as a number; TypeError "<name> must be a number" otherwise.
double num_field(const Napi::Object& o, const char* name);
RopeScaling scaling_from(const Napi::Object& r);
// A ModelSpec object (camelCase fields, ropeScaling null or an object) -> ModelConfig.
ModelConfig config_from(const Napi::Object& o);
// names: string[] and tensors: Float32Array[] of one length -> name -> the tensor's data (views: the JS arrays must
// outlive the use, which a create call that copies them satisfies).
std::unordered_map<std::string, const float*> weights_from(const Napi::Array& names, const Napi::Array& tensors);

// A copy of a typed array of exactly `len` elements of type `kind`: TypeError / RangeError otherwise.
template <typename T, napi_typedarray_type kind>
std::vector<T> copy_array(const Napi::Value& v, const char* name, size_t len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " has the wrong array type");
  auto a = v.As<Napi::TypedArrayOf<T>>();
  if (a.ElementLength() != len) throw Napi::RangeError::New(v.Env(), std::string(name) + " has the wrong length");
  return std::vector<T>(a.Data(), a.Data() + len);
}

// A new Float32Array holding a copy of v.
Napi::Float32Array to_js(Napi::Env env, const std::vector<float>& v);
