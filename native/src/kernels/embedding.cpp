// embedding_forward: rows of the token embedding table (f32, or bf16 / any quantized type widened to f32). Token ids are checked
// in TypeScript before they get here.
#include <cstring>

#include "kernels.h"

void embedding_forward(float* out, const int32_t* tokens, const void* table, WeightType wtype, int T, int C) {
  for (int t = 0; t < T; t++) {
    const size_t row = static_cast<size_t>(tokens[t]) * C;
    float* o = out + static_cast<size_t>(t) * C;
    if (weight_is_quantized(wtype)) {
      const uint8_t* src = static_cast<const uint8_t*>(table) + weight_bytes(wtype, tokens[t], C);
      quant_dequantize(wtype, o, src, C);
    } else if (wtype == WEIGHT_BF16) {
      const uint16_t* src = static_cast<const uint16_t*>(table) + row;
      for (int c = 0; c < C; c++) o[c] = f32_from_bf16(src[c]);
    } else {
      std::memcpy(o, static_cast<const float*>(table) + row, sizeof(float) * C);
    }
  }
}
