// matmul_amx_forward: the threading around the AMX tiles of matmul_amx.cpp (which holds no STL and no pool code):
// the activations are packed once per call on this thread, then each worker takes whole 16-row panels.
#include <vector>

#include "matmul_amx.h"
#include "thread_pool.h"

void matmul_amx_forward(float* y, const int8_t* xq, const float* xd, const float* xs, const void* w, WeightType type,
                        int T, int in, int out, ThreadPool* pool) {
  thread_local std::vector<int8_t> xb;
  thread_local std::vector<float> dx, sx;
  xb.resize(amx_activation_bytes(T, in));
  dx.resize(amx_activation_scales(T, in));
  const bool offsets = amx_reads_block_sums(type);
  sx.resize(offsets ? dx.size() : 0);
  amx_pack_activations(xb.data(), dx.data(), offsets ? sx.data() : nullptr, xq, xd, offsets ? xs : nullptr, T, in);
  const AmxActivations a{xb.data(), dx.data(), offsets ? sx.data() : nullptr, T, in};
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  auto rows = [&](int64_t r0, int64_t r1) {
    matmul_int8_rows_amx(y, a, wb, type, out, static_cast<int>(r0), static_cast<int>(r1));
  };
  if (pool == nullptr) rows(0, out);
  else pool->parallel_for(out, 16, rows);
}
