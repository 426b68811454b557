// Runtime choice between the portable kernels and the AVX2+FMA ones, bf16 <-> f32 conversion and weight sizes.
// Not the kernels: those call simd_use_avx2() once per call and branch to *_avx2.cpp.
#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels.h"

static bool detect_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

// AVX-512 with VNNI (byte dot products into int32) and the BW/VL forms the 4-bit decode kernels use.
static bool detect_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return detect_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

// AVX-VNNI: AVX-512 VNNI's byte and word dots on 256-bit vectors, VEX-encoded (Intel since Alder Lake, AMD since
// Zen 5); the AVX2 int8 kernels have a build for it (matmul_int8_avxvnni.cpp).
static bool detect_avx_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return detect_avx2() && __builtin_cpu_supports("avxvnni");
#else
  return false;
#endif
}

// AMX's int8 tiles (Intel since Sapphire Rapids), on top of AVX-512 VNNI (the tiles' sums are scaled with it). Linux
// hands a process the tile state only when asked (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, once, for every
// thread); without that grant the first tile instruction faults, so no grant means no AMX.
static bool detect_amx() {
#if defined(__linux__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (!detect_avx512_vnni() || !__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-int8")) return false;
  const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
  return false;
#endif
}

static bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

static bool env_forces_portable() {
  const char* v = std::getenv("FLYWHEEL_NATIVE_PORTABLE");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

static const bool g_avx2_supported = detect_avx2();
static std::atomic<bool> g_force_portable{env_forces_portable()};
static const bool g_avx512_supported = detect_avx512_vnni();
static std::atomic<bool> g_no_avx512{env_set("FLYWHEEL_NATIVE_NO_AVX512")};
static const bool g_avx_vnni_supported = detect_avx_vnni();
static std::atomic<bool> g_no_avx_vnni{env_set("FLYWHEEL_NATIVE_NO_AVXVNNI")};
static const bool g_amx_supported = detect_amx();
static std::atomic<bool> g_no_amx{env_set("FLYWHEEL_NATIVE_NO_AMX")};

bool simd_avx2_supported() { return g_avx2_supported; }
bool simd_use_avx2() { return g_avx2_supported && !g_force_portable.load(std::memory_order_relaxed); }
void simd_force_portable(bool on) { g_force_portable.store(on); }
bool simd_avx512_supported() { return g_avx512_supported; }
bool simd_use_avx512() { return g_avx512_supported && simd_use_avx2() && !g_no_avx512.load(std::memory_order_relaxed); }
void simd_force_no_avx512(bool on) { g_no_avx512.store(on); }
bool simd_avxvnni_supported() { return g_avx_vnni_supported; }
bool simd_use_avxvnni() {
  return g_avx_vnni_supported && simd_use_avx2() && !g_no_avx_vnni.load(std::memory_order_relaxed);
}
void simd_force_no_avxvnni(bool on) { g_no_avx_vnni.store(on); }
bool simd_amx_supported() { return g_amx_supported; }
bool simd_use_amx() { return g_amx_supported && simd_use_avx512() && !g_no_amx.load(std::memory_order_relaxed); }
void simd_force_no_amx(bool on) { g_no_amx.store(on); }
const char* simd_name() { return simd_use_avx2() ? "avx2" : "portable"; }

uint16_t bf16_from_f32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f32_from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void bf16_from_f32_array(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bf16_from_f32(src[i]);
}

size_t weight_type_size(WeightType t) { return t == WEIGHT_BF16 ? 2 : 4; }

size_t weight_bytes(WeightType t, size_t rows, size_t cols) {
  if (weight_is_quantized(t)) return rows * (cols / quant_block_elems(t)) * quant_block_bytes(t);
  return rows * cols * weight_type_size(t);
}
