// Rotary position embedding in the Hugging Face rotate_half layout (pairs j and j + D/2 of a head), with
// optional Llama-3 frequency scaling. Angles are computed once per step (rope_tables) and shared by all layers.
#include <cmath>

#include "kernels.h"

void rope_inv_freq(float* inv_freq, int head_dim, float theta, const RopeScaling* scaling) {
  const int half = head_dim / 2;
  for (int j = 0; j < half; j++) {
    // As HF: 1 / theta^(2j/D) with the exponent in f32.
    float expo = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    inv_freq[j] = static_cast<float>(1.0 / std::pow(static_cast<double>(theta), static_cast<double>(expo)));
  }
  if (scaling == nullptr) return;
  const double old_len = scaling->original_max_position_embeddings;
  const double low_wavelen = old_len / scaling->low_freq_factor;
  const double high_wavelen = old_len / scaling->high_freq_factor;
  for (int j = 0; j < half; j++) {
    double f = inv_freq[j];
    double wavelen = 2.0 * M_PI / f;
    double scaled;
    if (wavelen < high_wavelen) {
      scaled = f;
    } else if (wavelen > low_wavelen) {
      scaled = f / scaling->factor;
    } else {
      double smooth = (old_len / wavelen - scaling->low_freq_factor) /
                      (scaling->high_freq_factor - scaling->low_freq_factor);
      scaled = (1.0 - smooth) * f / scaling->factor + smooth * f;
    }
    inv_freq[j] = static_cast<float>(scaled);
  }
}

void rope_tables(float* cos_out, float* sin_out, const int32_t* positions, const float* inv_freq, int T,
                 int head_dim) {
  const int half = head_dim / 2;
  for (int t = 0; t < T; t++) {
    for (int j = 0; j < half; j++) {
      float angle = static_cast<float>(positions[t]) * inv_freq[j];  // f32 product, as HF
      cos_out[static_cast<size_t>(t) * half + j] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_out[static_cast<size_t>(t) * half + j] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

void rope_forward(float* x, int row_stride, const float* cos_t, const float* sin_t, int T, int num_heads,
                  int head_dim) {
  const int half = head_dim / 2;
  for (int t = 0; t < T; t++) {
    const float* c = cos_t + static_cast<size_t>(t) * half;
    const float* s = sin_t + static_cast<size_t>(t) * half;
    for (int h = 0; h < num_heads; h++) {
      float* v = x + static_cast<size_t>(t) * row_stride + static_cast<size_t>(h) * head_dim;
      for (int j = 0; j < half; j++) {
        float a = v[j], b = v[j + half];
        v[j] = a * c[j] - b * s[j];
        v[j + half] = b * c[j] + a * s[j];
      }
    }
  }
}
