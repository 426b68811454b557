// Handles and Promises shared by the two Node-API files (addon.cpp: serving, training.cpp: training): native objects
// cross into JS as type-tagged Napi::External boxes (a shared_ptr, so an in-flight worker keeps its object alive
// after a free), and heavy calls run in a Napi::AsyncWorker that settles a Promise. No argument readers here
// (napi_args.h).
#pragma once

#include <napi.h>

#include <string>
#include <utility>

// A new handle owning `box`, tagged `tag` so unwrap_handle can tell it from other externals.
template <typename Box>
Napi::Value wrap_handle(Napi::Env env, Box box, const napi_type_tag& tag) {
  auto ext = Napi::External<Box>::New(env, new Box(std::move(box)), [](Napi::Env, Box* b) { delete b; });
  ext.TypeTag(&tag);
  return ext;
}

// The box of a handle tagged `tag`: TypeError "expected a <what> handle" for anything else, Error "<what> handle was
// freed" after free_handle.
template <typename Box>
Box& unwrap_handle(const Napi::Value& v, const napi_type_tag& tag, const char* what) {
  if (!v.IsExternal() || !v.As<Napi::External<Box>>().CheckTypeTag(&tag))
    throw Napi::TypeError::New(v.Env(), std::string("expected a ") + what + " handle");
  Box& box = *v.As<Napi::External<Box>>().Data();
  if (!box) throw Napi::Error::New(v.Env(), std::string(what) + " handle was freed");
  return box;
}

// Drops the handle's reference (in-flight workers hold their own); anything but a handle tagged `tag` is ignored.
template <typename Box>
void free_handle(const Napi::Value& v, const napi_type_tag& tag) {
  if (v.IsExternal() && v.As<Napi::External<Box>>().CheckTypeTag(&tag)) v.As<Napi::External<Box>>().Data()->reset();
}

// An AsyncWorker whose result settles a Promise: subclasses implement Execute (off the JS thread, SetError on
// failure) and OnOK (resolve deferred_); an error rejects the Promise with it.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }
  Napi::Promise::Deferred deferred_;
};

// Queues `worker` (which deletes itself when done) and returns its Promise.
template <typename Worker>
Napi::Promise queue_worker(Worker* worker) {
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}
