// Argument readers shared by the two Node-API files (addon.cpp: serving, training.cpp: training): numbers and
// the model spec object as libs/kernels passes it. They only guard against what would crash; the TypeScript
// layer validates values first. Not array readers (each file has its own: views vs copies).
#pragma once

#include <napi.h>

#include "../kernels/model.h"

int int_arg(const Napi::Value& v, const char* name);
// o[name] as a number; TypeError "<name> must be a number" otherwise.
double num_field(const Napi::Object& o, const char* name);
RopeScaling scaling_from(const Napi::Object& r);
// A ModelSpec object (camelCase fields, ropeScaling null or an object) -> ModelConfig.
ModelConfig config_from(const Napi::Object& o);
