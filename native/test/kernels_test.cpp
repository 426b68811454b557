// Native test of the kernels without Node: the thread pool's rest(), matmul (f32, bf16, Q8_0, Q4_0, Q4_K, Q5_K,
// Q6_K), the quantized formats, GeGLU, soft-capping and paged attention (full and sliding-window; prefill and
// decode) against naive loops in this file, on awkward shapes, through both the AVX2 and the portable paths.
// (The Q8_0 weight quantizer's bit-for-bit check against gguf-py is a jest spec over a committed fixture.)
// `make -C native/test test`. The fuller suite (every op, the whole model) is the jest specs in libs/kernels.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../src/kernels/kernels.h"
#include "../src/kernels/thread_pool.h"

static int failures = 0;

static float frand(unsigned* s) {
  *s = *s * 1664525u + 1013904223u;
  return static_cast<float>((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void check(const char* what, const std::vector<float>& got, const std::vector<double>& want, double tol) {
  double diff = 0, mag = 1e-30;
  for (size_t i = 0; i < got.size(); i++) {
    diff = std::fmax(diff, std::fabs(got[i] - want[i]));
    mag = std::fmax(mag, std::fabs(want[i]));
  }
  if (diff / mag > tol) {
    std::printf("FAIL %s: rel err %.3g > %.3g\n", what, diff / mag, tol);
    failures++;
  }
}

static void test_matmul(ThreadPool* pool, WeightType wt, int T, int in, int out, unsigned seed) {
  std::vector<float> x(static_cast<size_t>(T) * in), w(static_cast<size_t>(out) * in), bias(out);
  for (auto& v : x) v = frand(&seed);
  for (auto& v : w) v = frand(&seed);
  for (auto& v : bias) v = frand(&seed);
  std::vector<uint16_t> wb(w.size());
  bf16_from_f32_array(wb.data(), w.data(), w.size());
  if (wt == WEIGHT_BF16)
    for (size_t i = 0; i < w.size(); i++) w[i] = f32_from_bf16(wb[i]);
  std::vector<double> want(static_cast<size_t>(T) * out);
  for (int t = 0; t < T; t++)
    for (int r = 0; r < out; r++) {
      double s = bias[r];
      for (int k = 0; k < in; k++) s += static_cast<double>(x[t * in + k]) * w[static_cast<size_t>(r) * in + k];
      want[static_cast<size_t>(t) * out + r] = s;
    }
  std::vector<float> y(want.size());
  const void* wp = wt == WEIGHT_BF16 ? static_cast<const void*>(wb.data()) : static_cast<const void*>(w.data());
  matmul_forward(y.data(), x.data(), wp, wt, bias.data(), T, in, out, false, pool);
  char name[96];
  std::snprintf(name, sizeof name, "matmul %s T=%d in=%d out=%d (%s)", wt == WEIGHT_BF16 ? "bf16" : "f32", T, in, out,
                simd_name());
  check(name, y, want, 1e-5);
  // Batch invariance: every token alone (the one-token row kernel) gives bit for bit its row of the batched result.
  if (T > 1)
    for (int t = 0; t < T; t++) {
      std::vector<float> one(out);
      matmul_forward(one.data(), x.data() + static_cast<size_t>(t) * in, wp, wt, bias.data(), 1, in, out, false, pool);
      if (std::memcmp(one.data(), y.data() + static_cast<size_t>(t) * out, out * sizeof(float)) != 0) {
        std::printf("FAIL %s: token %d alone differs from its row of the batch\n", name, t);
        failures++;
        break;
      }
    }
}


// ---- Q8_0 ---------------------------------------------------------------------------------------------------

static std::vector<BlockQ8_0> random_q8_0(int rows, int in, unsigned* seed) {
  std::vector<float> w(static_cast<size_t>(rows) * in);
  for (auto& v : w) v = frand(seed) * 0.05f;
  std::vector<BlockQ8_0> q(w.size() / Q8_0_BLOCK);
  q8_0_quantize(q.data(), w.data(), w.size());
  return q;
}

// Every half survives f16 -> f32 -> f16 (NaNs stay NaNs); ties round to even; 65520 and beyond overflow.
static void test_f16() {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    const float f = f32_from_f16(static_cast<uint16_t>(h));
    const uint16_t back = f16_from_f32(f);
    const bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    if (nan ? (back & 0x7c00u) != 0x7c00u || (back & 0x3ffu) == 0 : back != h) bad++;
  }
  const struct { float f; uint16_t h; } cases[] = {
      {1.0f + 1.0f / 2048, 0x3c00},  // halfway 1 .. 1+2^-10: even (1)
      {1.0f + 3.0f / 2048, 0x3c02},  // halfway 1+2^-10 .. 1+2^-9: even (1+2^-9)
      {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00}, {1e-8f, 0x0000},
      {3.0e-8f, 0x0001},  // just above half the smallest subnormal
      {-6.0975552e-5f, 0x83ff},
  };
  for (const auto& c : cases)
    if (f16_from_f32(c.f) != c.h) {
      std::printf("FAIL f16_from_f32(%g) = 0x%04x, want 0x%04x\n", c.f, f16_from_f32(c.f), c.h);
      failures++;
    }
  if (bad) {
    std::printf("FAIL f16 round trip: %d halves changed\n", bad);
    failures++;
  }
}

// The activation quantizer of the AVX2 path writes the same bytes and scales as the portable one, ties included
// (x = k + 0.5 after scaling).
static void test_q8_0_activations(int T, int in, unsigned seed, bool per256 = false) {
  std::vector<float> x(static_cast<size_t>(T) * in);
  for (size_t i = 0; i < x.size(); i++) x[i] = (i % 7 == 3) ? (static_cast<float>(i % 255) - 127.0f) * 0.5f : frand(&seed) * 3;
  for (int t = 0; t < T; t++) x[static_cast<size_t>(t) * in] = 127.0f;  // block scale exactly 1: x*id = x
  const int nb = in / Q8_0_BLOCK;
  std::vector<int8_t> q_avx(x.size()), q_port(x.size());
  std::vector<float> d_avx(static_cast<size_t>(T) * nb), d_port(d_avx.size());
  auto quantize = per256 ? q8_k_quantize_activations : q8_0_quantize_activations;  // per 256: Q4_K's activations
  simd_force_portable(true);
  quantize(q_port.data(), d_port.data(), x.data(), T, in);
  simd_force_portable(false);
  quantize(q_avx.data(), d_avx.data(), x.data(), T, in);
  int diff = 0;
  for (size_t i = 0; i < q_avx.size(); i++) diff += q_avx[i] != q_port[i];
  for (size_t i = 0; i < d_avx.size(); i++) diff += d_avx[i] != d_port[i];
  if (diff) {
    std::printf("FAIL %s activations T=%d in=%d: %d values differ between avx2 and portable\n", per256 ? "q8_k" : "q8_0", T, in, diff);
    failures++;
  }
}

// Exact: activations with block max 127 and integer values (scale 1, q = x) and weight scales that are powers of
// two, so every f32 product and partial sum is an exactly representable integer multiple of the scale and the
// kernel must equal the int64 reference bit for bit. Weights include -128 (possible in files).
static void test_matmul_q8_0_exact(ThreadPool* pool, int T, int in, int out, unsigned seed) {
  const int nb = in / Q8_0_BLOCK;
  std::vector<float> x(static_cast<size_t>(T) * in);
  for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(static_cast<int>((frand(&seed) + 1) * 127) - 127);
  for (size_t b = 0; b < x.size() / Q8_0_BLOCK; b++) x[b * Q8_0_BLOCK + b % Q8_0_BLOCK] = (b & 1) ? 127.0f : -127.0f;
  std::vector<BlockQ8_0> w(static_cast<size_t>(out) * nb);
  for (size_t b = 0; b < w.size(); b++) {
    w[b].d = f16_from_f32(std::ldexp(1.0f, -static_cast<int>(b % 5) - 2));
    for (int j = 0; j < Q8_0_BLOCK; j++) w[b].qs[j] = static_cast<int8_t>(static_cast<int>((frand(&seed) + 1) * 127.99f) - 128);
  }
  std::vector<float> y(static_cast<size_t>(T) * out, 0.0f);
  matmul_forward(y.data(), x.data(), w.data(), WEIGHT_Q8_0, nullptr, T, in, out, false, pool);
  int bad = 0;
  for (int t = 0; t < T; t++)
    for (int r = 0; r < out; r++) {
      double want = 0;
      for (int b = 0; b < nb; b++) {
        int64_t s = 0;
        for (int j = 0; j < Q8_0_BLOCK; j++)
          s += static_cast<int64_t>(w[static_cast<size_t>(r) * nb + b].qs[j]) * static_cast<int64_t>(x[static_cast<size_t>(t) * in + b * Q8_0_BLOCK + j]);
        want += static_cast<double>(s) * f32_from_f16(w[static_cast<size_t>(r) * nb + b].d);
      }
      bad += y[static_cast<size_t>(t) * out + r] != static_cast<float>(want);
    }
  if (bad) {
    std::printf("FAIL matmul q8_0 exact T=%d in=%d out=%d (%s): %d outputs differ\n", T, in, out, simd_name(), bad);
    failures++;
  }
}

#if defined(__x86_64__)
// Another AMX user's tile configuration on the calling thread survives our AMX matmul there: ggml's AMX kernels
// configure each thread once and rely on it, on the libuv workers both addons share (node-llama-cpp beside us died of
// SIGILL when we released it).
__attribute__((target("amx-tile,amx-int8"))) static void test_amx_keeps_tile_config() {
  alignas(64) uint8_t theirs[64] = {}, after[64] = {};
  theirs[0] = 1;                   // palette 1
  theirs[16] = 24, theirs[48] = 5; // tile 0: 5 rows of 24 bytes
  theirs[18] = 64, theirs[49] = 3; // tile 1: 3 rows of 64 bytes
  _tile_loadconfig(theirs);
  const int T = 16, in = 256, out = 32;
  unsigned seed = 77;
  std::vector<float> x(static_cast<size_t>(T) * in), y(static_cast<size_t>(T) * out, 0.0f);
  for (auto& v : x) v = frand(&seed);
  std::vector<BlockQ8_0> w = random_q8_0(out, in, &seed);
  matmul_forward(y.data(), x.data(), w.data(), WEIGHT_Q8_0, nullptr, T, in, out, false, nullptr);  // on this thread
  _tile_storeconfig(after);
  _tile_release();
  if (std::memcmp(theirs, after, 64) != 0) {
    std::printf("FAIL amx: the calling thread's tile configuration was not put back\n");
    failures++;
  }
}
#endif

// Random data, bias and accumulation: (1) within f32 rounding of the float64 sum over the dequantized weights and
// the activations as this test quantizes them itself; (2) against matmul_q8_0_reference (unquantized x) within the
// activation-rounding bound sum_b d_x[b]/2 * sum_j |w_j| per output.
static std::vector<float> test_matmul_q8_0(ThreadPool* pool, int T, int in, int out, unsigned seed) {
  const int nb = in / Q8_0_BLOCK;
  std::vector<float> x(static_cast<size_t>(T) * in), bias(out), init(static_cast<size_t>(T) * out);
  for (auto& v : x) v = frand(&seed) * 2;
  for (auto& v : bias) v = frand(&seed);
  for (auto& v : init) v = frand(&seed);
  std::vector<BlockQ8_0> w = random_q8_0(out, in, &seed);
  std::vector<float> wf(static_cast<size_t>(out) * in);
  q8_0_dequantize(wf.data(), w.data(), wf.size());
  std::vector<double> want(init.size()), bound(init.size());
  std::vector<double> xq(in), dxb(nb);
  for (int t = 0; t < T; t++) {
    for (int b = 0; b < nb; b++) {
      const float* xb = x.data() + static_cast<size_t>(t) * in + b * Q8_0_BLOCK;
      float amax = 0;
      for (int j = 0; j < Q8_0_BLOCK; j++) amax = std::fmax(amax, std::fabs(xb[j]));
      const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
      dxb[b] = d;
      for (int j = 0; j < Q8_0_BLOCK; j++) xq[b * Q8_0_BLOCK + j] = d * std::nearbyint(xb[j] * id);
    }
    for (int r = 0; r < out; r++) {
      double s = static_cast<double>(init[static_cast<size_t>(t) * out + r]) + bias[r], e = 0;
      for (int k = 0; k < in; k++) {
        s += xq[k] * wf[static_cast<size_t>(r) * in + k];
        e += dxb[k / Q8_0_BLOCK] / 2 * std::fabs(wf[static_cast<size_t>(r) * in + k]);
      }
      want[static_cast<size_t>(t) * out + r] = s;
      bound[static_cast<size_t>(t) * out + r] = e;
    }
  }
  std::vector<float> y = init;
  matmul_forward(y.data(), x.data(), w.data(), WEIGHT_Q8_0, bias.data(), T, in, out, true, pool);
  char name[96];
  std::snprintf(name, sizeof name, "matmul q8_0 T=%d in=%d out=%d (%s)", T, in, out, simd_name());
  check(name, y, want, 1e-5);

  std::vector<float> yref(init.size());
  matmul_q8_0_reference(yref.data(), x.data(), w.data(), T, in, out);
  int bad = 0;
  for (int t = 0; t < T; t++)
    for (int r = 0; r < out; r++) {
      const size_t i = static_cast<size_t>(t) * out + r;
      const double got = y[i] - init[i] - bias[r];
      if (std::fabs(got - yref[i]) > bound[i] * 1.0001 + 1e-5) bad++;
    }
  if (bad) {
    std::printf("FAIL %s: %d outputs beyond the activation-rounding bound of the reference\n", name, bad);
    failures++;
  }
  return y;
}

// Q4_0 / Q4_K / Q5_K / Q6_K: (0) our quantizer's round trip is within the type's resolution; (1) the matmul is
// within f32 rounding of the float64 sum over the dequantized weights and the activations as quantized here;
// (2) within the activation-rounding bound of matmul_quant_reference; the output returns for avx2 == portable.
static std::vector<float> test_matmul_quant(ThreadPool* pool, WeightType type, int T, int in, int out, unsigned seed) {
  const int nb = in / 32;
  std::vector<float> x(static_cast<size_t>(T) * in), bias(out), init(static_cast<size_t>(T) * out);
  std::vector<float> w0(static_cast<size_t>(out) * in);
  for (auto& v : x) v = frand(&seed) * 2;
  for (auto& v : bias) v = frand(&seed);
  for (auto& v : init) v = frand(&seed);
  // Rows with an offset and a few outliers, so the K-quants' mins and the scale search both matter.
  for (int r = 0; r < out; r++)
    for (int k = 0; k < in; k++) w0[static_cast<size_t>(r) * in + k] = frand(&seed) + 0.3f * (r % 3) + (k % 97 == 5 ? 3.0f : 0.0f);
  std::vector<uint8_t> w(weight_bytes(type, out, in));
  quant_quantize(type, w.data(), w0.data(), w0.size());
  std::vector<float> wf(w0.size());
  quant_dequantize(type, wf.data(), w.data(), wf.size());
  char name[96];
  std::snprintf(name, sizeof name, "%s T=%d in=%d out=%d (%s)", weight_type_name(type), T, in, out, simd_name());
  {
    double se = 0, sw = 0;
    for (size_t i = 0; i < w0.size(); i++) {
      se += (wf[i] - w0[i]) * (wf[i] - w0[i]);
      sw += w0[i] * w0[i];
    }
    const double rel = std::sqrt(se / sw);
    const double limit = type == WEIGHT_Q6_K ? 0.04 : type == WEIGHT_Q5_K || type == WEIGHT_Q5_0 || type == WEIGHT_Q5_1 ? 0.08 : 0.15;
    if (!(rel < limit)) {
      std::printf("FAIL quantize %s: rms rel err %.4f >= %.3f\n", name, rel, limit);
      failures++;
    }
  }
  std::vector<double> want(init.size()), bound(init.size());
  std::vector<double> xq(in), dxb(nb);
  for (int t = 0; t < T; t++) {
    // One activation scale per 32, or per 256 for the K-quants (q8_k_quantize_activations).
    const int gb = quant_block_elems(type) == 256 ? 8 : 1;
    for (int g = 0; g < nb; g += gb) {
      const float* xg = x.data() + static_cast<size_t>(t) * in + g * 32;
      float amax = 0;
      for (int j = 0; j < 32 * gb; j++) amax = std::fmax(amax, std::fabs(xg[j]));
      const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
      for (int b = g; b < g + gb; b++) dxb[b] = d;
      for (int j = 0; j < 32 * gb; j++) xq[g * 32 + j] = d * std::nearbyint(xg[j] * id);
    }
    for (int r = 0; r < out; r++) {
      double s = static_cast<double>(init[static_cast<size_t>(t) * out + r]) + bias[r], e = 0;
      for (int k = 0; k < in; k++) {
        s += xq[k] * wf[static_cast<size_t>(r) * in + k];
        e += dxb[k / 32] / 2 * std::fabs(wf[static_cast<size_t>(r) * in + k]);
      }
      want[static_cast<size_t>(t) * out + r] = s;
      bound[static_cast<size_t>(t) * out + r] = e;
    }
  }
  std::vector<float> y = init;
  matmul_forward(y.data(), x.data(), w.data(), type, bias.data(), T, in, out, true, pool);
  check(name, y, want, 1e-5);
  std::vector<float> yref(init.size());
  matmul_quant_reference(yref.data(), x.data(), w.data(), type, T, in, out);
  int bad = 0;
  for (int t = 0; t < T; t++)
    for (int r = 0; r < out; r++) {
      const size_t i = static_cast<size_t>(t) * out + r;
      if (std::fabs(y[i] - init[i] - bias[r] - yref[i]) > bound[i] * 1.0001 + 1e-4) bad++;
    }
  if (bad) {
    std::printf("FAIL %s: %d outputs beyond the activation-rounding bound of the reference\n", name, bad);
    failures++;
  }
  // The embedding lookup of a quantized table dequantizes rows exactly as quant_dequantize does.
  if (T == 1) {
    const int32_t tok[2] = {0, out - 1};
    std::vector<float> e(2 * static_cast<size_t>(in));
    embedding_forward(e.data(), tok, w.data(), type, 2, in);
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < in; k++)
        if (e[static_cast<size_t>(i) * in + k] != wf[static_cast<size_t>(tok[i]) * in + k]) {
          std::printf("FAIL embedding %s: token %d col %d\n", name, tok[i], k);
          failures++;
          i = 2;
          break;
        }
  }
  return y;
}

static void test_embedding_q8_0(unsigned seed) {
  const int V = 7, C = 96;
  std::vector<BlockQ8_0> table = random_q8_0(V, C, &seed);
  std::vector<float> full(static_cast<size_t>(V) * C);
  q8_0_dequantize(full.data(), table.data(), full.size());
  std::vector<int32_t> tokens = {3, 0, 6, 3};
  std::vector<float> out(tokens.size() * C);
  embedding_forward(out.data(), tokens.data(), table.data(), WEIGHT_Q8_0, static_cast<int>(tokens.size()), C);
  for (size_t t = 0; t < tokens.size(); t++)
    for (int c = 0; c < C; c++)
      if (out[t * C + c] != full[static_cast<size_t>(tokens[t]) * C + c]) {
        std::printf("FAIL embedding q8_0: token %d col %d\n", tokens[t], c);
        failures++;
        return;
      }
}

// GeGLU (Gemma's MLP) and soft-capping against double-precision formulas.
static void test_geglu_softcap(ThreadPool* pool, int T, int I, unsigned seed) {
  const int ld = 2 * I;
  std::vector<float> gu(static_cast<size_t>(T) * ld), out(static_cast<size_t>(T) * I);
  for (auto& a : gu) a = 4.0f * frand(&seed);
  std::vector<double> want(out.size());
  for (int t = 0; t < T; t++)
    for (int i = 0; i < I; i++) {
      const double g = gu[static_cast<size_t>(t) * ld + i], u = gu[static_cast<size_t>(t) * ld + I + i];
      want[static_cast<size_t>(t) * I + i] =
          0.5 * g * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g))) * u;
    }
  geglu_forward(out.data(), gu.data(), gu.data() + I, T, I, ld, pool);
  check("geglu", out, want, 1e-5);
  std::vector<float> x(gu.begin(), gu.begin() + 257);
  std::vector<double> capped(x.size());
  for (size_t i = 0; i < x.size(); i++) capped[i] = 1.5 * std::tanh(x[i] / 1.5);
  softcap_forward(x.data(), x.size(), 1.5f);
  check("softcap", x, capped, 1e-6);
}

// Gathered-from-pages naive attention of one query row.
static void test_attention(ThreadPool* pool, AttentionShape s, int start, int T, unsigned seed) {
  const int num_blocks = (start + T + s.block_size - 1) / s.block_size + 3;
  const int width = s.num_kv_heads * s.head_dim, qd = s.num_heads * s.head_dim, G = s.num_heads / s.num_kv_heads;
  std::vector<float> k(static_cast<size_t>(num_blocks) * s.block_size * width), v(k.size()),
      q(static_cast<size_t>(T) * qd);
  for (auto& a : k) a = frand(&seed);
  for (auto& a : v) a = frand(&seed);
  for (auto& a : q) a = frand(&seed);
  // Half pools: the reference reads the values the pools hold (rounded to half), so the kernel must match it to
  // f32 rounding; the pools are written through kv_cache_write as the engine writes them.
  std::vector<uint16_t> kh, vh;
  if (s.kv_f16) {
    kh.resize(k.size());
    vh.resize(v.size());
    std::vector<int64_t> slots(k.size() / width);
    for (size_t i = 0; i < slots.size(); i++) slots[i] = static_cast<int64_t>(i);
    kv_cache_write(kh.data(), vh.data(), k.data(), v.data(), width, slots.data(), static_cast<int>(slots.size()), width,
                   true);
    for (size_t i = 0; i < k.size(); i++) {
      k[i] = f32_from_f16(kh[i]);
      v[i] = f32_from_f16(vh[i]);
    }
  }
  const void* kp = s.kv_f16 ? static_cast<const void*>(kh.data()) : k.data();
  const void* vp = s.kv_f16 ? static_cast<const void*>(vh.data()) : v.data();
  std::vector<int32_t> table(num_blocks);
  for (int i = 0; i < num_blocks; i++) table[i] = (i * 7 + 3) % num_blocks;  // a permutation when 7 is coprime
  std::vector<double> want(static_cast<size_t>(T) * qd, 0.0);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < s.num_heads; h++) {
      // Keys first..n-1: all, or the last s.window (sliding layers). Scale, then soft-cap, then softmax.
      const int n = start + t + 1, g = h / G, first = s.window > 0 && n > s.window ? n - s.window : 0;
      std::vector<double> sc(n);
      double mx = -1e300, sum = 0;
      const double scale = s.scale > 0 ? s.scale : 1.0 / std::sqrt(static_cast<double>(s.head_dim));
      for (int p = first; p < n; p++) {
        const size_t slot = static_cast<size_t>(table[p / s.block_size]) * s.block_size + p % s.block_size;
        double d = 0;
        for (int i = 0; i < s.head_dim; i++) d += q[t * qd + h * s.head_dim + i] * k[slot * width + g * s.head_dim + i];
        sc[p] = d * scale;
        if (s.softcap > 0) sc[p] = s.softcap * std::tanh(sc[p] / s.softcap);
        mx = std::fmax(mx, sc[p]);
      }
      for (int p = first; p < n; p++) sum += (sc[p] = std::exp(sc[p] - mx));
      for (int p = first; p < n; p++) {
        const size_t slot = static_cast<size_t>(table[p / s.block_size]) * s.block_size + p % s.block_size;
        for (int i = 0; i < s.head_dim; i++)
          want[static_cast<size_t>(t) * qd + h * s.head_dim + i] += sc[p] / sum * v[slot * width + g * s.head_dim + i];
      }
    }
  std::vector<float> y(want.size());
  attention_prefill_forward(y.data(), q.data(), qd, kp, vp, table.data(), start, T, s, pool);
  char name[160];
  std::snprintf(name, sizeof name,
                "attention prefill H=%d KVH=%d D=%d bs=%d start=%d T=%d kv=%s window=%d scale=%g softcap=%g (%s)",
                s.num_heads, s.num_kv_heads, s.head_dim, s.block_size, start, T, s.kv_f16 ? "f16" : "f32", s.window,
                s.scale, s.softcap, simd_name());
  check(name, y, want, 1e-5);
  // The last token again as a decode query: same row.
  std::vector<int32_t> pos = {start + T - 1};
  std::vector<float> yd(qd);
  attention_decode_forward(yd.data(), q.data() + static_cast<size_t>(T - 1) * qd, qd, nullptr, kp, vp, pos.data(),
                           table.data(), num_blocks, 1, s, pool);
  check("attention decode == last prefill row", yd,
        std::vector<double>(want.end() - qd, want.end()), 1e-5);
}

// rest() sends idle workers to sleep after a short spin: with a spin budget of a minute, a rested worker is asleep
// within a second (it would spin the whole minute otherwise), and run() wakes it for the next job, which computes
// right.
static void test_thread_pool_rest() {
  ThreadPool pool(3, 60 * 1000 * 1000);
  for (int round = 0; round < 50; round++) {
    std::vector<int> out(64, 0);
    pool.run(64, [&](int task, int) { out[task] = task * round; });
    for (int i = 0; i < 64; i++)
      if (out[i] != i * round) {
        std::printf("FAIL thread pool: task %d of round %d not run\n", i, round);
        failures++;
        return;
      }
    if (round % 10 != 9) continue;
    pool.rest();
    const auto start = std::chrono::steady_clock::now();
    while (pool.sleeping_workers() < 2 && std::chrono::steady_clock::now() - start < std::chrono::seconds(1))
      std::this_thread::yield();
    if (pool.sleeping_workers() != 2) {
      std::printf("FAIL thread pool: %d of 2 workers asleep a second after rest()\n", pool.sleeping_workers());
      failures++;
      return;
    }
  }
}

int main() {
  ThreadPool pool(2);
  test_thread_pool_rest();
  test_f16();
  test_embedding_q8_0(11);
  if (simd_avx2_supported()) {
    test_q8_0_activations(1, 32, 21);
    test_q8_0_activations(7, 1120, 22);
    test_q8_0_activations(7, 1024, 23, true);
  }
  // (T, in, out): decode (T = 1) and batches, in a multiple of 32 but often not of 256 (1120 = 35 blocks), long
  // rows that the AVX2 path splits into block chunks (4096, 3200), and token counts past its token tile (300).
  const int q8_shapes[][3] = {{1, 32, 1},    {1, 576, 37},  {2, 224, 9},    {3, 800, 50},  {5, 1120, 29},
                              {16, 576, 100}, {61, 96, 70}, {1, 4096, 19}, {40, 3200, 13}, {300, 64, 11}};
  std::vector<std::vector<float>> q8_out[2];
  for (int portable = 0; portable < 2; portable++) {
    if (!portable && !simd_avx2_supported()) continue;
    simd_force_portable(portable != 0);
    test_geglu_softcap(&pool, 3, 37, 31);  // a row tail past the 8-wide vectors
    test_geglu_softcap(&pool, 20, 64, 32);
    const int shapes[][3] = {{1, 1, 1}, {1, 576, 37}, {2, 17, 9}, {3, 40, 50}, {5, 1100, 29}, {16, 576, 100}, {61, 33, 70}, {1, 1100, 29}, {1, 45, 7}, {50, 1400, 20}};
    unsigned seed = 1;
    for (auto& sh : shapes) {
      test_matmul(&pool, WEIGHT_F32, sh[0], sh[1], sh[2], seed++);
      test_matmul(&pool, WEIGHT_BF16, sh[0], sh[1], sh[2], seed++);
    }
    unsigned q8_seed = 100;
    for (auto& sh : q8_shapes) {
      q8_out[portable].push_back(test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], q8_seed++));
      test_matmul_q8_0_exact(&pool, sh[0], sh[1] <= 800 ? sh[1] : 800, sh[2], q8_seed++);
    }
    // Q4_0 rows of 32-blocks; K-quant rows of 256: one super-block, a chunk split (2304 = 72 blocks), decode with
    // a long row, a token count past the token tile.
    const int q4_shapes[][3] = {{1, 32, 5}, {1, 576, 37}, {3, 800, 50}, {16, 576, 100}, {300, 64, 11}};
    const int k_shapes[][3] = {{1, 256, 7}, {2, 512, 9}, {5, 2304, 29}, {16, 768, 100}, {1, 4096, 19}, {300, 256, 11}};
    unsigned qk_seed = 500;
    for (WeightType type : {WEIGHT_Q4_0, WEIGHT_Q4_1, WEIGHT_Q5_0, WEIGHT_Q5_1})
      for (auto& sh : q4_shapes) q8_out[portable].push_back(test_matmul_quant(&pool, type, sh[0], sh[1], sh[2], qk_seed++));
    for (WeightType type : {WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K})
      for (auto& sh : k_shapes) q8_out[portable].push_back(test_matmul_quant(&pool, type, sh[0], sh[1], sh[2], qk_seed++));
    test_attention(&pool, {9, 3, 64, 16}, 0, 20, 5);
    test_attention(&pool, {6, 2, 16, 5}, 13, 9, 6);
    test_attention(&pool, {3, 1, 12, 3}, 7, 1, 7);
    test_attention(&pool, {4, 4, 128, 7}, 30, 11, 8);
    test_attention(&pool, {9, 3, 64, 16, true}, 0, 20, 9);
    test_attention(&pool, {6, 2, 16, 5, true}, 13, 9, 10);
    test_attention(&pool, {3, 1, 12, 3, true}, 7, 1, 11);
    // Sliding windows (Mistral, Gemma): inside one block, across block edges, wider than the context; Gemma's own
    // query scale and Gemma 2's score soft-capping (a cap small enough to bend these scores).
    test_attention(&pool, {9, 3, 64, 16, false, 0.0f, 0.0f, 5}, 0, 20, 12);
    test_attention(&pool, {6, 2, 16, 5, false, 0.0f, 0.0f, 7}, 13, 9, 13);
    test_attention(&pool, {4, 4, 128, 7, true, 0.0f, 0.0f, 16}, 30, 11, 14);
    test_attention(&pool, {3, 1, 12, 3, false, 0.0f, 0.0f, 64}, 7, 5, 15);
    test_attention(&pool, {6, 2, 16, 4, true, 0.0f, 0.0f, 3}, 21, 1, 16);
    test_attention(&pool, {4, 2, 32, 8, false, 0.3f, 0.5f, 0}, 5, 12, 17);
    test_attention(&pool, {4, 2, 32, 8, true, 0.2f, 0.4f, 6}, 9, 10, 18);
  }
  // With AVX-512 VNNI: its Q4_0 and K-quant kernels again without it, equal up to the order of the f32 sums. AMX
  // (which would take 8 tokens and more) is off here and tested below.
  if (simd_avx512_supported()) {
    simd_force_portable(false);
    simd_force_no_amx(true);
    // Q8_0's VNNI tiles (several tokens) give the AVX2 tiles' results bit for bit: partial row groups and token
    // tiles, block chunks of long rows, a token count past the token tile (fewer than 16 rows or 8 tokens, where the
    // 16-row kernel does not run).
    for (auto& sh : {std::array<int, 3>{2, 256, 21}, {3, 800, 50}, {5, 1120, 29}, {7, 576, 100}, {40, 3200, 13},
                     {300, 64, 11}}) {
      simd_force_no_avx512(false);
      const std::vector<float> on = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], 700 + sh[0]);
      simd_force_no_avx512(true);
      const std::vector<float> off = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], 700 + sh[0]);
      simd_force_no_avx512(false);
      if (std::memcmp(on.data(), off.data(), on.size() * sizeof(float)) != 0) {
        std::printf("FAIL q8_0 T=%d in=%d out=%d: AVX-512 VNNI tiles differ from the AVX2 ones\n", sh[0], sh[1], sh[2]);
        failures++;
      }
    }
    struct Case {
      WeightType type;
      int T, in, out;
    };
    std::vector<Case> cases;
    // One token and several: K-quant rows and 4 x 2 tiles, Q4_0 rows at 1-3 tokens and Q5_0 rows at 1-7. Output
    // counts 21-23 leave row groups of 1, 2 and 3 after the 4-row tiles (the pool splits rows by 8).
    for (WeightType type : {WEIGHT_Q4_0, WEIGHT_Q5_0, WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K})
      for (auto& sh : {std::array<int, 3>{1, 32 * 7, 21}, {1, 256, 21}, {1, 4096, 21}, {2, 256, 22}, {5, 768, 23},
                       {16, 2304, 22}, {301, 512, 23}})
        if (sh[1] % quant_block_elems(type) == 0) cases.push_back({type, sh[0], sh[1], sh[2]});
    // Q4_0 from 4 tokens on, Q5_0 from 8: 16 rows per vector (whole and partial token sub-tiles of 8, chunks of 32
    // blocks and a shorter last one, rows left over after the groups).
    const std::array<int, 3> rows16_shapes[] = {{4, 256, 40}, {8, 256, 40}, {9, 1088, 67}, {33, 96, 50}, {301, 512, 48},
                                                {16, 2048, 16}};
    for (WeightType type : {WEIGHT_Q4_0, WEIGHT_Q5_0})
      for (auto& sh : rows16_shapes) cases.push_back({type, sh[0], sh[1], sh[2]});
    // Q8_0 from 8 tokens on: the same.
    for (auto& sh : {std::array<int, 3>{8, 256, 40}, {9, 1088, 67}, {33, 96, 50}, {301, 512, 48}, {16, 2048, 16}}) {
      simd_force_no_avx512(false);
      const std::vector<float> on = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], 800 + sh[0]);
      simd_force_no_avx512(true);
      const std::vector<float> off = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], 800 + sh[0]);
      simd_force_no_avx512(false);
      check("avx512 vnni == avx2 (Q8_0 16 rows per vector)", on, std::vector<double>(off.begin(), off.end()), 2e-6);
    }
    for (const Case& c : cases) {
      const unsigned seed = 900 + c.in + c.T;
      simd_force_no_avx512(false);
      const std::vector<float> on = test_matmul_quant(&pool, c.type, c.T, c.in, c.out, seed);
      simd_force_no_avx512(true);
      const std::vector<float> off = test_matmul_quant(&pool, c.type, c.T, c.in, c.out, seed);
      simd_force_no_avx512(false);
      check("avx512 vnni == avx2 (Q4_0/K-quant rows and tiles)", on, std::vector<double>(off.begin(), off.end()), 2e-6);
    }
    simd_force_no_amx(false);
  } else {
    std::printf("skipped: the AVX-512 VNNI kernels (this CPU lacks AVX-512 VNNI)\n");
  }
  // With AVX-VNNI: the AVX2 int8 kernels' build for it (matmul_int8_avxvnni.cpp) against the naive references (inside
  // each test function) and against the AVX2 build, bit for bit: only the block's integer dot is computed
  // differently, and it is exact in both. AVX-512 is off, so every shape runs these kernels, Q8_0's exact-integer
  // case (weights of -128, activations of +-127) included.
  if (simd_avxvnni_supported()) {
    simd_force_portable(false);
    simd_force_no_avx512(true);
    unsigned seed = 1100;
    auto same = [](const char* what, const std::vector<float>& on, const std::vector<float>& off) {
      if (std::memcmp(on.data(), off.data(), on.size() * sizeof(float)) == 0) return;
      std::printf("FAIL %s: the AVX-VNNI build differs from the AVX2 one\n", what);
      failures++;
    };
    for (auto& sh : q8_shapes) {
      char name[64];
      std::snprintf(name, sizeof name, "avx-vnni q8_0 T=%d in=%d out=%d", sh[0], sh[1], sh[2]);
      simd_force_no_avxvnni(false);
      test_matmul_q8_0_exact(&pool, sh[0], sh[1] <= 800 ? sh[1] : 800, sh[2], seed);
      const std::vector<float> on = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], seed + 1);
      simd_force_no_avxvnni(true);
      same(name, on, test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], seed + 1));
      seed += 2;
    }
    // Every type through its one-token rows (Q4_0 and the K-quants straight from the blocks) and the unpacking
    // tiles: partial row groups, chunk splits of long rows, a token count past the token tile; Q4_0 from 8 tokens
    // on in 8-row groups (matmul_q4_0_rows8.h: rows left after the groups, 32-block chunks and a shorter last one,
    // token passes of 4 and a shorter last one).
    for (WeightType type : {WEIGHT_Q4_0, WEIGHT_Q4_1, WEIGHT_Q5_0, WEIGHT_Q5_1, WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K})
      for (auto& sh : {std::array<int, 3>{1, 256, 21}, {1, 4096, 22}, {2, 512, 23}, {5, 2304, 21}, {16, 768, 37},
                       {300, 256, 11}, {8, 1088, 67}, {9, 2048, 16}, {33, 96, 50}}) {
        if (sh[1] % quant_block_elems(type) != 0) continue;
        char name[64];
        std::snprintf(name, sizeof name, "avx-vnni %s T=%d in=%d out=%d", weight_type_name(type), sh[0], sh[1], sh[2]);
        simd_force_no_avxvnni(false);
        const std::vector<float> on = test_matmul_quant(&pool, type, sh[0], sh[1], sh[2], seed);
        simd_force_no_avxvnni(true);
        same(name, on, test_matmul_quant(&pool, type, sh[0], sh[1], sh[2], seed));
        seed++;
      }
    simd_force_no_avxvnni(false);
    simd_force_no_avx512(false);
  } else {
    std::printf("skipped: the AVX-VNNI kernels (this CPU lacks AVX-VNNI)\n");
  }
  // With AMX: its int8 tiles (8 tokens and more) against the naive references (inside each test function), Q8_0's
  // exact-integer case bit for bit, and every type against the AVX-512 kernels up to the order of the f32 sums.
  // Shapes: a token group of 8, 9, 16 and 17 tokens (partial groups; Q5_0 takes the tiles from 12 tokens, so at 8 and
  // 9 both sides run its 16-row kernel), many groups; 16-row panels whole and partial (outputs 13-100; the pool
  // splits rows by 16); rows of one 64-block chunk and of two (in 2304-4096); Q8_0's blocks read in place (whole
  // panels) and copied (the partial last one).
  if (simd_amx_supported()) {
    simd_force_portable(false);
    simd_force_no_avx512(false);
    simd_force_no_amx(false);
    test_amx_keeps_tile_config();
    unsigned seed = 1300;
    for (auto& sh : {std::array<int, 3>{8, 64, 16}, {9, 800, 50}, {17, 800, 32}, {40, 256, 13}}) {
      simd_force_no_amx(false);
      test_matmul_q8_0_exact(&pool, sh[0], sh[1], sh[2], seed++);
    }
    for (auto& sh : {std::array<int, 3>{8, 256, 21}, {16, 576, 100}, {17, 3200, 48}, {40, 4096, 13}, {300, 64, 37}}) {
      simd_force_no_amx(false);
      const std::vector<float> on = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], seed);
      simd_force_no_amx(true);
      const std::vector<float> off = test_matmul_q8_0(&pool, sh[0], sh[1], sh[2], seed);
      check("amx == avx512 (q8_0)", on, std::vector<double>(off.begin(), off.end()), 2e-6);
      seed++;
    }
    for (WeightType type : {WEIGHT_Q4_0, WEIGHT_Q4_1, WEIGHT_Q5_0, WEIGHT_Q5_1, WEIGHT_Q4_K, WEIGHT_Q5_K, WEIGHT_Q6_K})
      for (auto& sh : {std::array<int, 3>{8, 256, 21}, {9, 2304, 37}, {16, 768, 16}, {33, 4096, 48}, {300, 512, 23},
                       {17, 96, 50}}) {
        if (sh[1] % quant_block_elems(type) != 0) continue;
        simd_force_no_amx(false);
        const std::vector<float> on = test_matmul_quant(&pool, type, sh[0], sh[1], sh[2], seed);
        simd_force_no_amx(true);
        const std::vector<float> off = test_matmul_quant(&pool, type, sh[0], sh[1], sh[2], seed);
        char name[64];
        std::snprintf(name, sizeof name, "amx == avx512 (%s T=%d in=%d out=%d)", weight_type_name(type), sh[0], sh[1], sh[2]);
        check(name, on, std::vector<double>(off.begin(), off.end()), 2e-6);
        seed++;
      }
    simd_force_no_amx(false);
  } else {
    std::printf("skipped: the AMX kernels (this CPU lacks AMX int8, or Linux did not grant the tile state)\n");
  }
  // Same inputs through both paths: equal up to the order of the f32 sums (the integer block dots are exact in both).
  if (simd_avx2_supported())
    for (size_t i = 0; i < q8_out[0].size(); i++) {
      std::vector<double> port(q8_out[1][i].begin(), q8_out[1][i].end());
      check("matmul q8_0/q4/k-quants avx2 == portable", q8_out[0][i], port, 2e-6);
    }
  std::printf(failures ? "%d FAILED\n" : "all native kernel tests passed\n", failures);
  return failures ? 1 : 0;
}
