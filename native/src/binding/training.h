// Registers the training exports (binding/training.cpp) on the addon's exports object; called from addon.cpp.
#pragma once

#include <napi.h>

void register_training_exports(Napi::Env env, Napi::Object exports);
