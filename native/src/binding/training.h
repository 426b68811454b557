// The training exports of the addon, registered on its exports object by addon.cpp's Init.
#pragma once

#include <napi.h>

// Trainable-model handles, steps, optimizer and state copies (binding/training.cpp); also registers the single ops.
void register_training_exports(Napi::Env env, Napi::Object exports);
// The single training kernels (binding/training_ops.cpp), for the specs.
void register_training_op_exports(Napi::Env env, Napi::Object exports);
