// Declarations of every engine kernel: plain C++ over raw row-major pointers, shapes in the comments.
// This header is what model.cpp, the binding and native/test use; it is not the Node binding (no napi.h here)
// and not the Llama step (model.h). Each family lives in its own .cpp; the AVX2 variants sit in *_avx2.cpp
// translation units and are picked at runtime (simd.cpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

class ThreadPool;

// The GGML quantized types keep their file layouts byte for byte (ggml-common.h); WEIGHT_AUTO is only an argument
// of model_create (keep each quantized source in its own type), never a stored type.
enum WeightType {
  WEIGHT_F32 = 0, WEIGHT_BF16 = 1, WEIGHT_Q8_0 = 2, WEIGHT_Q4_0 = 3, WEIGHT_Q4_K = 4, WEIGHT_Q5_K = 5,
  WEIGHT_Q6_K = 6, WEIGHT_Q4_1 = 7, WEIGHT_Q5_0 = 8, WEIGHT_Q5_1 = 9, WEIGHT_AUTO = 100
};

// GGML's block_q8_0, byte for byte: 32 weights w[j] = f32(d) * qs[j]. A Q8_0 matrix (rows, cols) is row-major,
// cols/32 blocks per row (cols must be a multiple of 32), 34 bytes per block, no padding or alignment.
constexpr int Q8_0_BLOCK = 32;
struct BlockQ8_0 {
  uint16_t d;      // IEEE half scale
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34, "BlockQ8_0 must be GGML's 34-byte layout");

// GGML's block_q4_0: 32 weights w[j] = d * (nibble_j - 8); qs[j] holds weight j (low nibble) and j + 16 (high).
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18, "BlockQ4_0 must be GGML's 18-byte layout");

// The other 32-weight types llama-quantize writes for rows that K-quant super-blocks cannot split (Q4_K -> Q5_0,
// Q5_K -> Q5_1 in a Q4_K_M / Q5_K_M file) and in Q4_1 files. block_q4_1: w = d * q + m, nibbles as Q4_0.
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20, "BlockQ4_1 must be GGML's 20-byte layout");
// block_q5_0: w = d * (q - 16), q = nibble | fifth bit (bit j of the little-endian qh word for weight j).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22, "BlockQ5_0 must be GGML's 22-byte layout");
// block_q5_1: w = d * q + m, q as Q5_0.
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24, "BlockQ5_1 must be GGML's 24-byte layout");

// K-quants: super-blocks of 256 weights (rows must be a multiple of 256).
constexpr int QK_K = 256;
// block_q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in `scales` (get_scale_min_k4); weight =
// d * sc * q - dmin * m with q the 4-bit value. qs holds 64-weight groups: low nibbles are the group's first 32.
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144, "BlockQ4_K must be GGML's 144-byte layout");
// block_q5_K: as Q4_K plus a fifth bit per weight in qh (bit 2g of qh[l] for the low half of group g, 2g+1 high).
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176, "BlockQ5_K must be GGML's 176-byte layout");
// block_q6_K: 16 sub-blocks of 16 with int8 scales; weight = d * sc * (q - 32), q 6 bits (4 in ql, 2 in qh).
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "BlockQ6_K must be GGML's 210-byte layout");

// ---- simd.cpp: runtime dispatch -------------------------------------------------------------------------
bool simd_avx2_supported();        // the CPU has AVX2+FMA+F16C
bool simd_use_avx2();              // supported, and not forced portable (env FLYWHEEL_NATIVE_PORTABLE=1 or setter)
void simd_force_portable(bool on);
// AVX-512 VNNI (+BW, VL): the one-token 4-bit decode kernels use it where the CPU has it, on top of the AVX2 path;
// off with env FLYWHEEL_NATIVE_NO_AVX512=1 or the setter (the tests compare both).
bool simd_avx512_supported();
bool simd_use_avx512();
void simd_force_no_avx512(bool on);
// AVX-VNNI (256-bit VEX byte dots): the AVX2 int8 kernels' build for it runs instead of theirs where the CPU has it,
// under the AVX-512 ones; off with env FLYWHEEL_NATIVE_NO_AVXVNNI=1 or the setter (the tests compare both).
bool simd_avxvnni_supported();
bool simd_use_avxvnni();
void simd_force_no_avxvnni(bool on);
// AMX int8 tiles: the quantized matmuls from 8 or 16 tokens on (prefill, batched decode) where the CPU has them and Linux
// grants the tile state, on top of AVX-512 (off with it); off with env FLYWHEEL_NATIVE_NO_AMX=1 or the setter.
bool simd_amx_supported();
bool simd_use_amx();
void simd_force_no_amx(bool on);
const char* simd_name();           // "avx2" | "portable" (AVX-512 VNNI use: simd_use_avx512)

// bf16 is the top half of an f32; conversion from f32 rounds to nearest even (NaN stays NaN).
uint16_t bf16_from_f32(float f);
float f32_from_bf16(uint16_t h);
void bf16_from_f32_array(uint16_t* dst, const float* src, size_t n);
size_t weight_type_size(WeightType t);  // bytes per element of f32/bf16 (quantized types are not: weight_bytes)
size_t weight_bytes(WeightType t, size_t rows, size_t cols);  // storage of a (rows, cols) matrix

// ---- quant_q8_0.cpp: the Q8_0 format ---------------------------------------------------------------------
// IEEE half <-> f32; from f32 rounds to nearest even with subnormals, overflow to inf (numpy's astype(float16)).
uint16_t f16_from_f32(float f);
float f32_from_f16(uint16_t h);
// Weight quantizer, bit for bit gguf-py's Q8_0.quantize_blocks (= ggml's quantize_row_q8_0_ref): per block
// d = max|x| / 127 (f32), q = roundf(x * (1/d)) (half away from zero), d stored as f16(d). n % 32 == 0.
void q8_0_quantize(BlockQ8_0* dst,      // (n/32)
                   const float* src,    // (n)
                   size_t n);
void q8_0_dequantize(float* dst,             // (n)
                     const BlockQ8_0* src,   // (n/32)
                     size_t n);

// ---- matmul_q8_0.cpp: y += x @ W^T with W in Q8_0 and x quantized to int8 per 32-block; the activation quantizers --
// Activations: per 32-block d = max|x| / 127 kept in f32, q = x * (1/d) rounded to nearest even (llama.cpp's x86
// activation quantizer), so |q| <= 127. The AVX2 and portable quantizers give identical bytes.
void q8_0_quantize_activations(int8_t* qs,      // (T, in)
                               float* d,        // (T, in/32)
                               const float* x,  // (T, in)
                               int T, int in);
// The same with one scale per 256 activations (llama.cpp's q8_K, which its K-quant dots take), written for each of
// the 8 blocks so d stays (T, in/32); in % 256 == 0. The K-quant matmuls (Q4_K, Q5_K, Q6_K) take it: with d_x
// constant over a super-block, the sub-block scales can apply in integers (the AVX-512 VNNI kernels; the AVX2 and portable ones still
// scale per block in floats, on the same activations so that every path computes the same product).
void q8_k_quantize_activations(int8_t* qs,      // (T, in)
                               float* d,        // (T, in/32)
                               const float* x,  // (T, in)
                               int T, int in);
// Sum of n quantized activations: the per-block sums that kernels with an offset term read.
inline int32_t int8_sum(const int8_t* q, int n) {
  int32_t sum = 0;
  for (int j = 0; j < n; j++) sum += q[j];
  return sum;
}
// y (T, out) += sum over blocks b of d_w[r,b] * d_x[t,b] * (q_w[r,b] . q_x[t,b]); the block dot is exact int32.
// in % 32 == 0. Parallel over output rows; a tile of weight rows stays in L1 while every token of the token tile
// is multiplied against it, so a step streams each weight block from memory once.
void matmul_q8_0_forward(float* y,               // (T, out) accumulated into
                         const float* x,         // (T, in)
                         const BlockQ8_0* w,     // (out, in/32)
                         int T, int in, int out, ThreadPool* pool);
// The naive reference the tests hold both paths to: W dequantized to f32, then the f32 matmul of unquantized x.
void matmul_q8_0_reference(float* y,            // (T, out) overwritten
                           const float* x,      // (T, in)
                           const BlockQ8_0* w,  // (out, in/32)
                           int T, int in, int out);

// ---- quant_k.cpp: Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants (Q4_K, Q5_K, Q6_K) ----------------------------------------------
bool weight_is_quantized(WeightType t);  // Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K
int quant_block_elems(WeightType t);     // weights per block: 32, or 256 for the K-quants
size_t quant_block_bytes(WeightType t);
const char* weight_type_name(WeightType t);  // "f32" | "bf16" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q4_k" | ...
// Dequantize n weights (n % quant_block_elems == 0) of any quantized type, as ggml's dequantize_row_* does.
void quant_dequantize(WeightType t, float* dst, const void* src, size_t n);
// Quantize n weights. Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are bit for bit ggml's reference quantizers; the K-quants use a simpler
// search than llama.cpp's (per sub-block min/max, then a few refinement passes of scale and offset by least squares)
// but write the exact format, so any GGML reader decodes them.
void quant_quantize(WeightType t, void* dst, const float* src, size_t n);

// ---- matmul_quant.cpp: y += x @ W^T with W in Q4_0/Q4_K/Q5_K/Q6_K and x in int8 per 32 (K-quants: per 256) ----
// The int8 activations come from q8_0_quantize_activations (q8_k_quantize_activations for the K-quants). One-token
// decode of Q4_0/Q4_K/Q5_K/Q6_K splits the blocks' bits in registers; otherwise each block is unpacked (in L1, once
// per token tile) to int8 values with a scale per 16 weights and an offset per 32 (w = s * q + m). With AVX-512 VNNI,
// the K-quants run straight from the blocks with their sub-block scales in integers (matmul_quant_avx512.cpp). The
// offset term uses the per-block activation sums (per 16 for Q6_K). in % quant_block_elems(t) == 0.
void matmul_quant_forward(float* y,          // (T, out) accumulated into
                          const float* x,    // (T, in)
                          const void* w,     // (out, in / block) blocks of type t
                          WeightType t, int T, int in, int out, ThreadPool* pool);
// Naive reference: W dequantized to f32, then the f32 matmul of unquantized x (y overwritten).
void matmul_quant_reference(float* y, const float* x, const void* w, WeightType t, int T, int in, int out);

// ---- matmul.cpp -----------------------------------------------------------------------------------------
// y = (accumulate ? y : 0) + x @ w^T + bias. Parallel over output rows; each weight row is reused across all
// T tokens while it is in L1, so a batched step reads the weights from memory once.
void matmul_forward(float* y,          // (T, out)
                    const float* x,    // (T, in)
                    const void* w,     // (out, in) f32, bf16 or Q8_0 blocks (in % 32 == 0) per wtype
                    WeightType wtype,
                    const float* bias, // (out) or nullptr
                    int T, int in, int out, bool accumulate, ThreadPool* pool);

// ---- rmsnorm.cpp ----------------------------------------------------------------------------------------
void rmsnorm_forward(float* out,          // (T, C)  may alias x
                     const float* x,      // (T, C)
                     const float* weight, // (C)
                     int T, int C, float eps, ThreadPool* pool);

// ---- rope.cpp -------------------------------------------------------------------------------------------
struct RopeScaling {  // Llama-3 frequency scaling
  float factor, low_freq_factor, high_freq_factor;
  int original_max_position_embeddings;
};
void rope_inv_freq(float* inv_freq,  // (D/2)
                   int head_dim, float theta, const RopeScaling* scaling /* nullable */);
void rope_tables(float* cos_out,       // (T, D/2)
                 float* sin_out,       // (T, D/2)
                 const int32_t* positions, // (T)
                 const float* inv_freq,    // (D/2)
                 int T, int head_dim);
// Hugging Face rotate_half: pairs (j, j + D/2) of each head are rotated by angle pos * inv_freq[j]; in place.
void rope_forward(float* x,            // (T, row_stride), heads at x + t*row_stride + h*D
                  int row_stride,
                  const float* cos_t,  // (T, D/2)
                  const float* sin_t,  // (T, D/2)
                  int T, int num_heads, int head_dim);

// ---- swiglu.cpp -----------------------------------------------------------------------------------------
void swiglu_forward(float* out,        // (T, I)
                    const float* gate, // (T, ld) first I used
                    const float* up,   // (T, ld) first I used
                    int T, int I, int ld, ThreadPool* pool);
// Gemma's GeGLU: out = gelu_tanh(gate) * up, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void geglu_forward(float* out,        // (T, I)
                   const float* gate, // (T, ld) first I used
                   const float* up,   // (T, ld) first I used
                   int T, int I, int ld, ThreadPool* pool);
float gelu_tanh(float x);
float exp_fast(float x);  // exp within ~2 ulp for x in [-87, 88], saturating outside

// ---- softmax_weights.cpp --------------------------------------------------------------------------------
// The sampler's softmax weights in double: w[i] = exp((x[i] - max) * inv_t) (0 for -inf), returns their sum (lanes
// summed in any order). exp_f64: double exp within 2 ulp of a correctly rounded one (1 measured); std::exp outside
// [kExpF64Min, kExpF64Max]. Its scalar and AVX2 forms share the reduction and the polynomial below.
constexpr double kExpF64Min = -708.0, kExpF64Max = 709.0;
constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;  // k * kLn2Hi is exact
// exp(r) for |r| <= ln2/2 by Horner: its Taylor coefficients from 1/13! down to 1 (the next term is under 1e-17).
constexpr double kExpF64Taylor[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                      1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,       1.0 / 720.0,
                                      1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,          0.5,
                                      1.0,                1.0};
double exp_f64(double t);
double softmax_weights(double* w,       // (n) out
                       const float* x,  // (n)
                       size_t n, double max, double inv_t);

// ---- sampling_select.cpp --------------------------------------------------------------------------------
// Candidate ids of one logits row in (value desc, id asc) order, NaN ranked as -inf. top_k_ids: the min(k, n) best,
// by a size-k heap. nucleus_ids: a prefix whose weights, summed in that order, reach p times their total (top-p;
// total is softmax_weights' sum): the ids heavy enough to be in it (weight >= (1 - p) * total / n), sorted, or, when
// there are many, binned by value, the bins' masses summed from the top until they reach it, one bin more, each of
// those bins sorted on its own; all n ids, sorted, if that prefix's in-order sum falls short. `out` holds n for
// nucleus_ids.
size_t top_k_ids(int32_t* out, const float* x, size_t n, size_t k);
size_t nucleus_ids(int32_t* out, const float* x, const double* w, size_t n, double max, double total, double p);

// ---- embedding.cpp --------------------------------------------------------------------------------------
void embedding_forward(float* out,            // (T, C)
                       const int32_t* tokens, // (T) ids in [0, V)
                       const void* table,     // (V, C) f32, bf16 or Q8_0 blocks (C % 32 == 0)
                       WeightType wtype, int T, int C);

// ---- attention.cpp --------------------------------------------------------------------------------------
// Paged KV pools of one layer: (num_blocks, block_size, num_kv_heads, head_dim) in f32, or in IEEE half when
// kv_f16 (half the bytes per token; scores, softmax and outputs stay f32). The key of position p of a sequence with
// block table bt lives in block bt[p / block_size], row p % block_size.
// Grouped-query: query head h reads kv head h / (H / KVH). Scores are scaled by 1/sqrt(D) (or `scale`), soft-capped
// when softcap > 0 (cap * tanh(s / cap), Gemma 2), and softmax subtracts max. window > 0: the query at position p
// attends to positions max(0, p - window + 1)..p only (sliding-window layers).
struct AttentionShape {
  int num_heads, num_kv_heads, head_dim, block_size;
  bool kv_f16 = false;
  float scale = 0.0f;    // 0: 1/sqrt(head_dim)
  float softcap = 0.0f;  // 0: none
  int window = 0;        // 0: every earlier position
};
inline float attention_scale(const AttentionShape& s) {
  return s.scale > 0 ? s.scale : 1.0f / std::sqrt(static_cast<float>(s.head_dim));
}
// Soft-capping in place: x = cap * tanh(x / cap) for n values, cap > 0 (Gemma 2's scores and final logits).
void softcap_forward(float* x, size_t n, float cap);
// Writes T tokens' K/V rows into their slots, rounding to half (nearest even) when kv_f16.
void kv_cache_write(void* k_pool, void* v_pool,  // (num_blocks, block_size, KVH, D) f32 or f16
                    const float* k,              // (T, ld) KVH*D used
                    const float* v,              // (T, ld) KVH*D used
                    int ld, const int64_t* slots,  // (T) block * block_size + offset
                    int T, int kv_width, bool kv_f16);
// Causal prefill: T new tokens of one sequence at positions start_pos..start_pos+T-1 (their K/V already in the
// pools); token i attends to positions 0..start_pos+i through block_table.
void attention_prefill_forward(float* out,                // (T, H*D)
                               const float* q,            // (T, ldq) H*D used
                               int ldq,
                               const void* k_pool, const void* v_pool,  // f32 or f16 per shape.kv_f16
                               const int32_t* block_table,  // (>= (start_pos+T-1)/block_size + 1)
                               int start_pos, int T, AttentionShape shape, ThreadPool* pool);
// Batched decode: query i (row rows[i] of q and out, or row i when rows is null) attends to positions
// 0..positions[i] of its own sequence through block_tables + i*max_blocks.
void attention_decode_forward(float* out,               // (*, H*D)
                              const float* q,           // (*, ldq)
                              int ldq,
                              const int32_t* rows,      // (N) or nullptr
                              const void* k_pool, const void* v_pool,
                              const int32_t* positions,    // (N)
                              const int32_t* block_tables, // (N, max_blocks)
                              int max_blocks, int N, AttentionShape shape, ThreadPool* pool);

// ---- triad.cpp ------------------------------------------------------------------------------------------
// STREAM triad a[i] = b[i] + s*c[i] over three arrays of bytes_per_array each; best of reps, GB/s counting
// 3 * bytes_per_array per pass (STREAM convention, write-allocate traffic not counted).
double triad_gbps(size_t bytes_per_array, int reps, ThreadPool* pool);
