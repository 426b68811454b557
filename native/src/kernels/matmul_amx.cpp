// AMX int8 tiles (Intel since Sapphire Rapids) for the quantized matmuls from amx_min_tokens() tokens on: prefill
// and batched decode of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K. One `tdpbssd` multiplies 16 weight rows
// by 16 tokens over a 32-weight block (16 for Q6_K, whose scales are per 16) into exact int32 sums, the sums the
// AVX-512 kernels form with `vpdpbusd`; AVX-512 then scales each block's sums into f32 accumulators, so results equal
// those kernels' up to the order of the f32 sums. Weights: Q8_0's blocks are tile-loaded where they lie (a row stride
// of the row's bytes); the other types are unpacked per 64-block chunk of 16 rows into int8 + scales, Q4_0 and Q5_0
// here as signed values (q - 8, q - 16: their constant offset costs nothing), the rest by quant_unpack.h, so that only
// Q4_1/Q5_1/Q4_K/Q5_K pay the offset term. Activations arrive packed (amx_pack_activations). Not the threading
// (matmul_amx_driver.cpp). Compiled for AMX and AVX-512 and called only after simd_use_amx(); no STL (see
// matmul_q8_0_avx2.cpp).
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// GCC 12 reads the self-initialized `_mm512_undefined_ps` inside _mm512_cvtepi32_ps as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define QUANT_UNPACK_F16C
#include "matmul_amx.h"
#include "quant_unpack.h"

namespace {

constexpr int NR = 16;   // weight rows per tile (its rows)
constexpr int NT = 16;   // tokens per tile (its int32 columns)
constexpr int KB = 64;   // 32-blocks per unpacked chunk: 16 rows of it (32 KiB int8) stay in L1 across the tokens

// Palette 1's 64-byte tile configuration.
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Tiles 0-1: C (16 weight rows x 16 tokens int32); 4-5: A (16 weight rows x G int8); 6-7: B (G/4 rows x 16 tokens
// x 4 int8).
void load_tile_config(int G) {
  TileConfig c;
  memset(&c, 0, sizeof c);
  c.palette_id = 1;
  for (int t = 0; t < 2; t++) {
    c.rows[t] = NR;
    c.colsb[t] = NT * 4;
  }
  for (int t = 4; t < 6; t++) {
    c.rows[t] = NR;
    c.colsb[t] = static_cast<uint16_t>(G);
    c.rows[t + 2] = static_cast<uint8_t>(G / 4);
    c.colsb[t + 2] = NT * 4;
  }
  _tile_loadconfig(&c);
}

// 16 weight rows of a chunk of kb 32-blocks as the A tiles read them: group gi (G weights) of row i at
// q + i * ldq + (gi / H) * bstride + (gi % H) * G with H = 32 / G; its scale at s[i * si + gi * sg]; the offset of
// 32-block b at m[i * ldm + b] (offset types only).
struct Panel {
  const int8_t* q;
  size_t ldq;
  int bstride;
  const float* s;
  int si, sg;
  const float* m;
  int ldm;
};

// res[i][t] = sum over the chunk of row i . token t for one token group: xb, dx, sx at the chunk's first block.
template <int G, bool MIN>
void panel_tokens(float (*res)[NT], const Panel& p, const int8_t* xb, const float* dx, const float* sx, int kb) {
  constexpr int H = 32 / G;
  alignas(64) int32_t c[2][NR][NT];
  __m512 acc[NR];
  for (int i = 0; i < NR; i++) acc[i] = _mm512_setzero_ps();
  auto post = [&](const int32_t (*cc)[NT], int gi) {
    const int b = gi / H;
    const __m512 d = _mm512_loadu_ps(dx + b * NT);
#pragma GCC unroll 16
    for (int i = 0; i < NR; i++) {
      const __m512 sd = _mm512_mul_ps(_mm512_set1_ps(p.s[i * p.si + gi * p.sg]), d);
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cc[i])), sd, acc[i]);
    }
    if (MIN && gi % H == H - 1) {
      const __m512 sxv = _mm512_loadu_ps(sx + b * NT);
#pragma GCC unroll 16
      for (int i = 0; i < NR; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(p.m[i * p.ldm + b]), sxv, acc[i]);
    }
  };
  auto a_at = [&](int gi) { return p.q + (gi / H) * p.bstride + (gi % H) * G; };
  auto b_at = [&](int gi) { return xb + (gi / H) * 512 + (gi % H) * G * NT; };
  const int ng = kb * H;
  const int lda = static_cast<int>(p.ldq);
  // Two groups per pass, one C tile each: the second group's multiply runs while the first group's sums are scaled.
  // (Four per pass, each pass's sums scaled during the next one's multiplies, ran no faster: the tile stores, 16
  // cycles each, serialize with the multiplies.)
  for (int gi = 0; gi < ng; gi += 2) {
    const bool two = gi + 1 < ng;
    _tile_zero(0);
    _tile_loadd(4, a_at(gi), lda);
    _tile_loadd(6, b_at(gi), NT * 4);
    _tile_dpbssd(0, 4, 6);
    if (two) {
      _tile_zero(1);
      _tile_loadd(5, a_at(gi + 1), lda);
      _tile_loadd(7, b_at(gi + 1), NT * 4);
      _tile_dpbssd(1, 5, 7);
    }
    _tile_stored(0, c[0], NT * 4);
    post(c[0], gi);
    if (two) {
      _tile_stored(1, c[1], NT * 4);
      post(c[1], gi + 1);
    }
  }
  for (int i = 0; i < NR; i++) _mm512_store_ps(res[i], acc[i]);
}

using PanelFn = void (*)(float (*)[NT], const Panel&, const int8_t*, const float*, const float*, int);

// Unpacks rows [r, r + rn) of chunk [b0, b0 + kb) into q (NR, KB * 32), s (NR, KB * 2: one per 16 weights, of which
// the 32-weight types fill the even ones) and m (NR, KB); rows past rn are zero. Returns whether the offset term is
// needed.
bool unpack_panel(int8_t* q, float* s, float* m, const uint8_t* w, WeightType type, size_t row_bytes, int r, int rn,
                  int b0, int kb) {
  const int upb = quant_block_elems(type) / 32;
  const size_t ubytes = quant_block_bytes(type);
  bool has_min = false;
  for (int i = 0; i < rn; i++) {
    const uint8_t* src = w + static_cast<size_t>(r + i) * row_bytes + static_cast<size_t>(b0 / upb) * ubytes;
    int8_t* qi = q + static_cast<size_t>(i) * KB * 32;
    float* si = s + i * KB * 2;
    float* mi = m + i * KB;
    switch (type) {
      case WEIGHT_Q8_0: {
        const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(src);
        for (int b = 0; b < kb; b++) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(qi + b * 32), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b].qs)));
          si[2 * b] = _cvtsh_ss(blk[b].d);
        }
        break;
      }
      case WEIGHT_Q4_0:
      case WEIGHT_Q5_0: {
        // Signed weights, the constant offset folded in: nibble - 8, or nibble + 16 * fifth bit - 16 (the fifth
        // bits of qh spread to bytes by a mask move).
        const bool five = type == WEIGHT_Q5_0;
        const __m256i lo4 = _mm256_set1_epi8(0x0F), off = _mm256_set1_epi8(five ? 16 : 8), bit4 = _mm256_set1_epi8(0x10);
        for (int b = 0; b < kb; b++) {
          const uint8_t* blk = src + b * ubytes;
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + (five ? 6 : 2)));
          __m256i n = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo4);
          if (five) {
            uint32_t qh;
            memcpy(&qh, blk + 2, 4);
            n = _mm256_or_si256(n, _mm256_and_si256(_mm256_movm_epi8(qh), bit4));
          }
          _mm256_store_si256(reinterpret_cast<__m256i*>(qi + b * 32), _mm256_sub_epi8(n, off));
          uint16_t d;
          memcpy(&d, blk, 2);
          si[2 * b] = _cvtsh_ss(d);
        }
        break;
      }
      default:
        has_min = quant_unpack(type, src, kb / upb, qi, si, mi);
    }
  }
  for (int i = rn; i < NR; i++) {
    memset(q + static_cast<size_t>(i) * KB * 32, 0, static_cast<size_t>(kb) * 32);
    memset(s + i * KB * 2, 0, sizeof(float) * kb * 2);
    memset(m + i * KB, 0, sizeof(float) * kb);
  }
  return has_min;
}

}  // namespace

size_t amx_activation_bytes(int T, int in) { return static_cast<size_t>((T + NT - 1) / NT) * (in / 32) * 512; }
size_t amx_activation_scales(int T, int in) { return static_cast<size_t>((T + NT - 1) / NT) * (in / 32) * NT; }

void amx_pack_activations(int8_t* xb,         // (G, nb, 8, 64)
                          float* dx,          // (G, nb, 16)
                          float* sx,          // (G, nb, 16) or null
                          const int8_t* xq,   // (T, in)
                          const float* xd,    // (T, nb)
                          const float* xs,    // (T, nb) or null
                          int T, int in) {
  const int nb = in / 32, groups = (T + NT - 1) / NT;
  for (int g = 0; g < groups; g++)
    for (int b = 0; b < nb; b++) {
      int8_t* dst = xb + (static_cast<size_t>(g) * nb + b) * 512;
      float* d = dx + (static_cast<size_t>(g) * nb + b) * NT;
      float* s = sx != nullptr ? sx + (static_cast<size_t>(g) * nb + b) * NT : nullptr;
      for (int t = 0; t < NT; t++) {
        const int tok = g * NT + t;
        if (tok >= T) {
          for (int k = 0; k < 8; k++) memset(dst + k * 64 + t * 4, 0, 4);
          d[t] = 0.0f;
          if (s != nullptr) s[t] = 0.0f;
          continue;
        }
        const int8_t* src = xq + static_cast<size_t>(tok) * in + b * 32;
        for (int k = 0; k < 8; k++) memcpy(dst + k * 64 + t * 4, src + 4 * k, 4);
        d[t] = xd[static_cast<size_t>(tok) * nb + b];
        if (s != nullptr) s[t] = xs[static_cast<size_t>(tok) * nb + b];
      }
    }
}

void matmul_int8_rows_amx(float* y,                 // (T, out)
                          const AmxActivations& a,
                          const uint8_t* w,         // (out, in / elems) blocks of `type`
                          WeightType type, int out, int r0, int r1) {
  const int T = a.T, in = a.in, nb = in / 32, groups = (T + NT - 1) / NT;
  const size_t row_bytes = weight_bytes(type, 1, in);
  const int G = type == WEIGHT_Q6_K ? 16 : 32;
  // The tile configuration belongs to the thread, and this thread may be one that another AMX user configured once
  // and relies on (ggml's AMX kernels do, on the libuv workers both addons run on: node-llama-cpp beside us died of
  // SIGILL before this): keep theirs and put it back at the end.
  TileConfig saved;
  _tile_storeconfig(&saved);
  load_tile_config(G);
  alignas(64) int8_t q[NR * KB * 32];
  alignas(64) float s[NR * KB * 2], m[NR * KB];
  alignas(64) float res[NR][NT];
  for (int r = r0; r < r1; r += NR) {
    const int rn = r1 - r < NR ? r1 - r : NR;
    for (int b0 = 0; b0 < nb; b0 += KB) {
      const int kb = nb - b0 < KB ? nb - b0 : KB;
      Panel p;
      bool has_min = false;
      if (type == WEIGHT_Q8_0 && rn == NR) {
        // Q8_0 blocks tile-load where they lie: 16 rows of one block at a stride of the row's bytes. Their 16
        // scales per block come from one gather (the f16 in each dword's low half).
        const BlockQ8_0* blk = reinterpret_cast<const BlockQ8_0*>(w) + static_cast<size_t>(r) * nb + b0;
        const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32(static_cast<int>(row_bytes)));
        for (int b = 0; b < kb; b++) {
          const __m512i h = _mm512_i32gather_epi32(rows, &blk[b].d, 1);
          _mm512_store_ps(s + b * NR, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)));
        }
        p = {blk->qs, row_bytes, static_cast<int>(sizeof(BlockQ8_0)), s, 1, NR, m, KB};
      } else {
        has_min = unpack_panel(q, s, m, w, type, row_bytes, r, rn, b0, kb);
        p = {q, static_cast<size_t>(KB) * 32, 32, s, KB * 2, G / 16, m, KB};
      }
      const PanelFn fn = G == 16 ? panel_tokens<16, false> : has_min ? panel_tokens<32, true> : panel_tokens<32, false>;
      const __mmask16 live = static_cast<__mmask16>((1u << rn) - 1);
      const __m512i col = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(NT));
      for (int g = 0; g < groups; g++) {
        const size_t at = static_cast<size_t>(g) * nb + b0;
        const int mt = T - g * NT < NT ? T - g * NT : NT;
        // The group's 16 output rows of y are 16 scattered lines: fetch them while the tiles run.
        for (int t = 0; t < mt; t++) {
          const float* yt = y + static_cast<size_t>(g * NT + t) * out + r;
          _mm_prefetch(reinterpret_cast<const char*>(yt), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(yt + rn - 1), _MM_HINT_T0);
        }
        fn(res, p, a.xb + at * 512, a.dx + at * NT, a.sx != nullptr ? a.sx + at * NT : nullptr, kb);
        // res is (row, token); y wants a token's rows together: column t of res by a gather.
        for (int t = 0; t < mt; t++) {
          float* yt = y + static_cast<size_t>(g * NT + t) * out + r;
          const __m512 v = _mm512_i32gather_ps(col, &res[0][t], 4);
          _mm512_mask_storeu_ps(yt, live, _mm512_add_ps(_mm512_maskz_loadu_ps(live, yt), v));
        }
      }
    }
  }
  if (saved.palette_id != 0) _tile_loadconfig(&saved);
  else _tile_release();
}
