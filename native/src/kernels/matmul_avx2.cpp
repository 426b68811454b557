// AVX2+FMA micro-kernels for matmul_forward (see matmul.cpp for the contract and the portable twin).
// Compiled for avx2,fma,f16c and only called after simd_use_avx2(); keep this file free of inline library
// code (STL) so no AVX2 instantiation of a shared inline function can leak into portable callers.
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"
#include "simd_avx2.h"

static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline float load1(const float* p) { return *p; }
static inline float load1(const uint16_t* p) { return f32_from_bf16(*p); }

// y[t*ldy + r] += sum_{k0 <= k < k1} x[t*ldx + k] * w[r*ldw + k] for R weight rows and TK tokens, all in
// registers (R*TK accumulators). pf (or null): the next row group (R rows of ldw, contiguous), touched as far as this
// group has been read, since the hardware prefetcher does not follow R interleaved row streams.
template <int R, int TK, typename WT>
static void mm_tile(float* y, int ldy, const float* x, int ldx, const WT* w, int ldw, int k0, int k1, const char* pf) {
  __m256 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm256_setzero_ps();
  int k = k0;
  for (; k + 8 <= k1; k += 8) {
    if (pf)
      for (int l = 0; l < R * 8 * static_cast<int>(sizeof(WT)); l += 64)
        _mm_prefetch(pf + static_cast<size_t>(k) * R * sizeof(WT) + l, _MM_HINT_T0);
    __m256 xv[TK];
    for (int t = 0; t < TK; t++) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
    for (int r = 0; r < R; r++) {
      __m256 wv = load8(w + static_cast<size_t>(r) * ldw + k);
      for (int t = 0; t < TK; t++) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) {
      float s = hsum(acc[r][t]);
      for (int kk = k; kk < k1; kk++) s += x[t * ldx + kk] * load1(w + static_cast<size_t>(r) * ldw + kk);
      y[t * ldy + r] += s;
    }
}

template <typename WT>
using TileFn = void (*)(float*, int, const float*, int, const WT*, int, int, int, const char*);

template <typename WT>
static TileFn<WT> tile_fn(int rn, int tn) {
  static const TileFn<WT> table[4][3] = {
      {mm_tile<1, 1, WT>, mm_tile<1, 2, WT>, mm_tile<1, 3, WT>},
      {mm_tile<2, 1, WT>, mm_tile<2, 2, WT>, mm_tile<2, 3, WT>},
      {mm_tile<3, 1, WT>, mm_tile<3, 2, WT>, mm_tile<3, 3, WT>},
      {mm_tile<4, 1, WT>, mm_tile<4, 2, WT>, mm_tile<4, 3, WT>},
  };
  return table[rn - 1][tn - 1];
}

// One token: y[r] += dot(x, w[r, :]) for rows [r0, r1), summed per k block of KB exactly as mm_tile<1, 1> sums each
// block, block by block in ascending k, without a call per row. Rows go in pairs from the two halves of the range: two
// FMA chains hide each other's latency (one chain moves at most 32 bytes per FMA latency, about a core's DRAM
// bandwidth), and two streams far apart are two the prefetcher follows, where neighbouring rows were not.
template <typename WT>
static void mm_rows_t1(float* y, const float* x, const WT* w, int in, int KB, int r0, int r1) {
  const int h = (r1 - r0) / 2;
  for (int r = r0; r < r0 + h; r++) {
    const WT* wa = w + static_cast<size_t>(r) * in;
    const WT* wb = w + static_cast<size_t>(r + h) * in;
    for (int k0 = 0; k0 < in; k0 += KB) {
      const int k1 = k0 + KB < in ? k0 + KB : in;
      __m256 acc_a = _mm256_setzero_ps(), acc_b = _mm256_setzero_ps();
      int k = k0;
      for (; k + 8 <= k1; k += 8) {
        const __m256 xv = _mm256_loadu_ps(x + k);
        acc_a = _mm256_fmadd_ps(load8(wa + k), xv, acc_a);
        acc_b = _mm256_fmadd_ps(load8(wb + k), xv, acc_b);
      }
      float sa = hsum(acc_a), sb = hsum(acc_b);
      for (; k < k1; k++) {
        sa += x[k] * load1(wa + k);
        sb += x[k] * load1(wb + k);
      }
      y[r] += sa;
      y[r + h] += sb;
    }
  }
  for (int r = r0 + 2 * h; r < r1; r++) {  // an odd range's last row
    const WT* wr = w + static_cast<size_t>(r) * in;
    for (int k0 = 0; k0 < in; k0 += KB) {
      const int k1 = k0 + KB < in ? k0 + KB : in;
      __m256 acc = _mm256_setzero_ps();
      int k = k0;
      for (; k + 8 <= k1; k += 8) acc = _mm256_fmadd_ps(load8(wr + k), _mm256_loadu_ps(x + k), acc);
      float s = hsum(acc);
      for (; k < k1; k++) s += x[k] * load1(wr + k);
      y[r] += s;
    }
  }
}

template <typename WT>
static void rows_impl(float* y, const float* x, const WT* w, int T, int in, int out, int r0, int r1) {
  // Register block: 4 rows x 2 tokens for two, 3 rows x 3 tokens for more; one token streams the weights from DRAM
  // in mm_rows_t1 (a row is a sequential stream the hardware prefetcher follows, where the interleaved streams of 2
  // or 4 neighbouring rows were not: one-thread f32 lm_head on a Zen 4 VM, 11 -> 24-28 GB/s). Every tile sums each
  // output in the same order (one accumulator per k block, k ascending), so a token's result does not depend on the
  // batch around it.
  const int R = T == 2 ? 4 : 3;
  const int TK = T <= 2 ? T : 3;
  // Token tile and k block keep the x tile (TT, KB) in L2 and R weight rows + TK x rows of KB in L1.
  const int TT = 48;
  int KB = in;
  if (in > 1024) {
    int nb = (in + 767) / 768;
    KB = ((in + nb - 1) / nb + 7) / 8 * 8;
  }
  if (T == 1) {
    // One token: x fits in L1 whatever KB is, so each row is read whole, its k blocks summed in the same order as
    // below. Walking one k block over every row first, as more tokens need, reads each row in pieces with a jump
    // between them that the prefetcher does not follow (SmolLM2's down_proj, one thread: 3x slower).
    mm_rows_t1(y, x, w, in, KB, r0, r1);
    return;
  }
  // The tiles of R rows x one k block, every token of the tile against them; the first one prefetches the next row
  // group when rows go outer (pf).
  auto tiles = [&](int r, int k0, int t0, int t1, bool pf) {
    const int rn = r1 - r < R ? r1 - r : R;
    const int k1 = k0 + KB < in ? k0 + KB : in;
    const char* next = pf && r + 2 * R <= r1 ? reinterpret_cast<const char*>(w + static_cast<size_t>(r + R) * in) : nullptr;
    for (int t = t0; t < t1;) {
      // A leftover of one token is split as 2 + 2 so no tile runs with a single token.
      int tn = t1 - t < TK ? t1 - t : TK;
      if (TK == 3 && t1 - t == 4) tn = 2;
      tile_fn<WT>(rn, tn)(y + static_cast<size_t>(t) * out + r, out, x + static_cast<size_t>(t) * in,
                          in, w + static_cast<size_t>(r) * in, in, k0, k1, t == t0 ? next : nullptr);
      t += tn;
    }
  };
  for (int t0 = 0; t0 < T; t0 += TT) {
    const int t1 = t0 + TT < T ? t0 + TT : T;
    if (static_cast<size_t>(t1 - t0) * in * sizeof(float) <= 256 * 1024) {
      // The x tile fits in L2 whole: rows outer, so each row group streams from memory in one piece.
      for (int r = r0; r < r1; r += R)
        for (int k0 = 0; k0 < in; k0 += KB) tiles(r, k0, t0, t1, true);
    } else {
      // k blocks outer, so the x tile's block stays in L2 while every row passes it.
      for (int k0 = 0; k0 < in; k0 += KB)
        for (int r = r0; r < r1; r += R) tiles(r, k0, t0, t1, false);
    }
  }
}

// ---- bf16 weights: 16 weights per 256-bit load, split into even and odd elements by a shift and a mask (each
// is the f32 of its bf16), multiplied with x pre-split the same way (see matmul_pack_x_even_odd). ----------

// y[t*ldy + r] += sum_k x[t, k] * w[r, k] over [0, in): xp is x packed per 16-element chunk as
// (x0 x2 .. x14, x1 x3 .. x15); the tail in % 16 stays in order.
template <int R, int TK>
static void mm_tile_bf16(float* y, int ldy, const float* xp, int ldx, const uint16_t* w, int ldw, int in, bool pf) {
  __m256 acc[R][TK];
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) acc[r][t] = _mm256_setzero_ps();
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  // Decode streams weights from DRAM: touch the next row group (contiguous, R*in*2 bytes on) while this one
  // computes, as many bytes per iteration as this iteration consumes; pf for the first tokens of a tile (the rest
  // read these rows from L1). Measured: bf16 batch-1 lm_head 13 -> 18 GB/s on 2 Zen cores.
  const char* next = reinterpret_cast<const char*>(w + static_cast<size_t>(R) * ldw);
  int k = 0;
  for (; k + 16 <= in; k += 16) {
    if (pf)
      for (int l = 0; l < R * 32; l += 64) _mm_prefetch(next + static_cast<size_t>(k) * 2 * R + l, _MM_HINT_T0);
    __m256 xe[TK], xo[TK];
    for (int t = 0; t < TK; t++) {
      xe[t] = _mm256_loadu_ps(xp + t * ldx + k);
      xo[t] = _mm256_loadu_ps(xp + t * ldx + k + 8);
    }
    for (int r = 0; r < R; r++) {
      __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + static_cast<size_t>(r) * ldw + k));
      __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      __m256 wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
      for (int t = 0; t < TK; t++) {
        acc[r][t] = _mm256_fmadd_ps(we, xe[t], acc[r][t]);
        acc[r][t] = _mm256_fmadd_ps(wo, xo[t], acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int t = 0; t < TK; t++) {
      float s = hsum(acc[r][t]);
      for (int kk = k; kk < in; kk++) s += xp[t * ldx + kk] * load1(w + static_cast<size_t>(r) * ldw + kk);
      y[t * ldy + r] += s;
    }
}

using TileBf16Fn = void (*)(float*, int, const float*, int, const uint16_t*, int, int, bool);

static TileBf16Fn tile_bf16_fn(int rn, int tn) {
  static const TileBf16Fn table[8][2] = {
      {mm_tile_bf16<1, 1>, mm_tile_bf16<1, 2>}, {mm_tile_bf16<2, 1>, mm_tile_bf16<2, 2>},
      {mm_tile_bf16<3, 1>, mm_tile_bf16<3, 2>}, {mm_tile_bf16<4, 1>, mm_tile_bf16<4, 2>},
      {mm_tile_bf16<5, 1>, mm_tile_bf16<5, 2>}, {mm_tile_bf16<6, 1>, mm_tile_bf16<6, 2>},
      {mm_tile_bf16<7, 1>, mm_tile_bf16<7, 2>}, {mm_tile_bf16<8, 1>, mm_tile_bf16<8, 2>},
  };
  return table[rn - 1][tn - 1];
}

static void rows_bf16(float* y, const float* xp, const uint16_t* w, int T, int in, int out, int r0, int r1) {
  const int R = T == 1 ? 8 : 4;
  const int TK = T == 1 ? 1 : 2;
  const int TT = 32;  // x tile (TT, in) stays in L2 while the thread's rows stream past it
  for (int t0 = 0; t0 < T; t0 += TT) {
    const int t1 = t0 + TT < T ? t0 + TT : T;
    for (int r = r0; r < r1; r += R) {
      const int rn = r1 - r < R ? r1 - r : R;
      const uint16_t* wr = w + static_cast<size_t>(r) * in;
      for (int t = t0; t < t1; t += TK) {
        const int tn = t1 - t < TK ? t1 - t : TK;
        tile_bf16_fn(rn, tn)(y + static_cast<size_t>(t) * out + r, out, xp + static_cast<size_t>(t) * in, in, wr, in, in, t == t0);
      }
    }
  }
}

void matmul_pack_x_even_odd(float* xp,        // (T, in) packed
                            const float* x,   // (T, in)
                            int T, int in) {
  for (int t = 0; t < T; t++) {
    const float* xr = x + static_cast<size_t>(t) * in;
    float* o = xp + static_cast<size_t>(t) * in;
    int k = 0;
    for (; k + 16 <= in; k += 16)
      for (int j = 0; j < 8; j++) {
        o[k + j] = xr[k + 2 * j];
        o[k + 8 + j] = xr[k + 2 * j + 1];
      }
    for (; k < in; k++) o[k] = xr[k];
  }
}

// For bf16 weights x must be packed by matmul_pack_x_even_odd; for f32 it is plain.
void matmul_rows_avx2(float* y,        // (T, out)
                      const float* x,  // (T, in)
                      const void* w,   // (out, in)
                      WeightType wtype, int T, int in, int out, int r0, int r1) {
  if (wtype == WEIGHT_BF16) rows_bf16(y, x, static_cast<const uint16_t*>(w), T, in, out, r0, r1);
  else rows_impl(y, x, static_cast<const float*>(w), T, in, out, r0, r1);
}
