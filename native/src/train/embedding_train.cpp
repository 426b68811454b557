// embedding_backward: scatter-add of the output gradient into the rows of the table, in token order (serial:
// two tokens may share a row, and N*C is tiny next to the matmuls). Forward is embedding_forward (kernels.h).
#include "train_ops.h"

void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C) {
  for (int n = 0; n < N; n++) {
    float* row = dtable + static_cast<size_t>(tokens[n]) * C;
    const float* g = dout + static_cast<size_t>(n) * C;
    for (int c = 0; c < C; c++) row[c] += g[c];
  }
}
