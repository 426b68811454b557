// embedding_forward: rows of the token embedding table (f32, or bf16 / Q8_0 widened to f32). Token ids are checked
// in TypeScript before they get here.
#include <cstring>

#include "kernels.h"

void embedding_forward(float* out, const int32_t* tokens, const void* table, WeightType wtype, int T, int C) {
  for (int t = 0; t < T; t++) {
    const size_t row = static_cast<size_t>(tokens[t]) * C;
    float* o = out + static_cast<size_t>(t) * C;
    if (wtype == WEIGHT_Q8_0) {
      const BlockQ8_0* src = static_cast<const BlockQ8_0*>(table) + row / Q8_0_BLOCK;
      q8_0_dequantize(o, src, C);
    } else if (wtype == WEIGHT_BF16) {
      const uint16_t* src = static_cast<const uint16_t*>(table) + row;
      for (int c = 0; c < C; c++) o[c] = f32_from_bf16(src[c]);
    } else {
      std::memcpy(o, static_cast<const float*>(table) + row, sizeof(float) * C);
    }
  }
}
