// The quantized matrix-vector product core, shared by quant_gemv.cpp (the Python entry points) and quant_plan.cpp
// (the whole-model int4 decode step): 4-bit codes (affine int4 or a 16-entry palette) with one scale (and zero) per
// group of g inputs, and int8 per output channel; 1..8 activation rows, weights read once.
//
// How: activations are quantized on the fly to int8 per block of g inputs (llama.cpp's Q8 idea; the weights stay
// exactly what the checkpoint holds), and the products run on VNNI (VPDPBUSD: 64 u8 x s8 products per instruction).
// Layout, made once at load time (quant_gemv.py): output rows in blocks of 4; a block is one contiguous run of
// bytes read front to back (one memory stream, which the prefetchers follow: the earlier row-major layout read
// 4 row streams plus 8 scale / zero streams and lost to torch's int4pack). Within a block, chunk after chunk of 16
// consecutive groups: its codes, step by step (4 bytes of each of the 16 groups side by side = 64 bytes per row,
// the 4 rows one after the other), then the 4 rows' 16 bf16 scales, then their 16 bf16 zeros. Lane j of an int32
// accumulator sums group j only, so the group scales apply as one 16-lane vector per chunk (no horizontal sums
// inside the row). A last chunk of fewer than 16 groups is stored compactly and read with masks.
//
//   int4 (MODE 0):    byte = code[i] | code[i + g/2] << 4, codes in [0, 15]; w = (code - 8) * scale + zero
//   palette (MODE 1): the same nibbles index a 16-entry u8 table (LUT + 128) by VPSHUFB; w = lut[code] * scale + zero
//   int8 (MODE 2):    byte = w + 128 (g = 32 fixed for the activation blocks), no scales in the block;
//                     w = q * row_scale
// Unsigned weights times signed activations: sum(u * xq) = sum(w * xq) + offset * sum(xq); the offset term is
// removed per group with the activation block sums (offset 8 for int4, 128 for palette / int8).
// Work is split over blocks with at::parallel_for (torch.set_num_threads).
#pragma once
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace albumen_quant {

constexpr int64_t kMaxRows = 8;
constexpr int64_t kLanes = 16;  // groups per chunk
#ifndef QG_PREFETCH
// Bytes ahead on the block stream (0: hardware prefetch only). 8192: the whole-model int4 plan's Qwen2.5-1.5B step
// 29.96 ms against 37.93 at 1024 and 32.76 at 4096 (1.27x; 12288..32768: 3% slower than 8192), the weights read at
// ~32 GB/s; 1024 was ~40 ns ahead at ~27 GB/s, less than a DRAM access (benchmarks/quantization.py --prefetch-ab).
#define QG_PREFETCH 8192
#endif
constexpr int kBlockRows = 4;  // output rows per block (the layout's and the kernel's)

// Bytes of one 4-row block of the 4-bit layout for K inputs in groups of g (scales, and zeros when has_zero).
inline int64_t q4_block_bytes(int64_t K, int64_t g, bool has_zero) {
  const int64_t G = K / g, full = G / kLanes, rest = G % kLanes;
  const int64_t meta = (has_zero ? 2 : 1) * kBlockRows * 2;  // scale (+ zero) bytes per group of a block
  return full * (kBlockRows * (g / 2) * kLanes + meta * kLanes) + rest * (kBlockRows * (g / 2) + meta);
}

// Activations in the kernel layout: int8 codes (M, C, S, 64) and per (m, group) scale, offset correction, float sum.
struct Acts {
  int64_t M = 0, C = 0, S = 0;
  std::vector<int8_t> xq;
  std::vector<float> sx, corr, xsum;  // (M, C * 16), zero-padded past the last group
};

// x (M, K) fp32 -> a (its buffers reused); group g (K % g == 0, g % 4 == 0); offset: the weights' unsigned offset
// (8 or 128). The 16 groups of a chunk go side by side (element i of every group, then i + 1): each group's sum
// still adds its elements in order (same results), but 16 independent chains replace one long one, whose add
// latency bound the one-group-at-a-time loop (K = 8960: 1.3 -> 0.65 ns per element).
inline void quantize_acts(Acts& a, const float* x, int64_t M, int64_t K, int64_t g, float offset) {
  const int64_t G = K / g;
  a.M = M;
  a.C = (G + kLanes - 1) / kLanes;
  a.S = g / 4;
  a.xq.assign(M * a.C * a.S * 64, 0);
  a.sx.assign(M * a.C * kLanes, 0.f);
  a.corr.assign(M * a.C * kLanes, 0.f);
  a.xsum.assign(M * a.C * kLanes, 0.f);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t c = 0; c < a.C; ++c) {
      const int64_t groups = std::min<int64_t>(kLanes, G - c * kLanes);
      const float* v = x + m * K + c * kLanes * g;  // element i of the chunk's group j at v[j * g + i]
      int8_t* dst = a.xq.data() + ((m * a.C + c) * a.S) * 64;
      const int64_t at = (m * a.C + c) * kLanes;
      float amax[kLanes] = {}, sum[kLanes] = {}, inv[kLanes] = {};
      int32_t qsum[kLanes] = {};
      for (int64_t i = 0; i < g; ++i)
        for (int64_t j = 0; j < groups; ++j) {
          const float e = v[j * g + i];
          amax[j] = std::max(amax[j], std::fabs(e));
          sum[j] += e;
        }
      for (int64_t j = 0; j < groups; ++j) inv[j] = amax[j] > 0.f ? 127.f / amax[j] : 0.f;
      for (int64_t i = 0; i < g; ++i)
        for (int64_t j = 0; j < groups; ++j) {
          const int32_t q = static_cast<int32_t>(std::nearbyint(v[j * g + i] * inv[j]));
          qsum[j] += q;
          dst[(i / 4) * 64 + j * 4 + (i % 4)] = static_cast<int8_t>(q);
        }
      for (int64_t j = 0; j < groups; ++j) {
        a.sx[at + j] = amax[j] / 127.f;
        a.corr[at + j] = offset * static_cast<float>(qsum[j]);
        a.xsum[at + j] = sum[j];
      }
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
constexpr bool kHaveKernel = true;

inline __m512 load_bf16x16(const uint16_t* p, __mmask16 mask) {  // 16 bf16 -> 16 fp32 (masked lanes 0)
  __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

// One block of kBlockRows output rows for activation rows [m0, m0 + MM), reading the block's bytes once, front to
// back. MODE 0: int4 affine, 1: palette, 2: int8 (per-row scales in scale8). out: (MM, kBlockRows) scratch.
// noinline (block_quad too): one standalone copy per instantiation; inlined into run<>'s switch, the one-row
// variant compiled to a loop 1.4x slower in quant_plan.cpp (Qwen2.5-1.5B token: 67 vs 50 ms for 2 rows).
template <int MM, int MODE>
__attribute__((noinline)) void block(const Acts& a, int64_t m0, const uint8_t* p, int64_t G, int64_t g,
                                     bool has_zero, const float* scale8, __m512i lut, float* out) {
  constexpr int R = kBlockRows;
  __m512 acc[MM][R];
  for (int m = 0; m < MM; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const int64_t group_bytes = MODE == 2 ? g : g / 2;  // stored bytes per group
  const int64_t steps = group_bytes / 4;              // 64-byte steps per chunk and row
  for (int64_t c = 0; c < a.C; ++c) {
    const int64_t groups = std::min<int64_t>(kLanes, G - c * kLanes);
    const bool full = groups == kLanes;
    const int64_t stride = 4 * groups;  // bytes per step and row: 64 for a full chunk
    const __mmask64 bmask = full ? ~0ULL : ((1ULL << stride) - 1);
    const __mmask16 lmask = full ? 0xFFFF : static_cast<__mmask16>((1u << groups) - 1);
    __m512i dot[MM][R];
    for (int m = 0; m < MM; ++m)
      for (int r = 0; r < R; ++r) dot[m][r] = _mm512_setzero_si512();
    const int8_t* xc[MM];
    for (int m = 0; m < MM; ++m) xc[m] = a.xq.data() + ((m0 + m) * a.C + c) * a.S * 64;
    for (int64_t t = 0; t < steps; ++t) {
      for (int r = 0; r < R; ++r) {
        if (QG_PREFETCH) _mm_prefetch(reinterpret_cast<const char*>(p) + QG_PREFETCH, _MM_HINT_T0);
        const __m512i v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(bmask, p);
        p += stride;
        if constexpr (MODE == 2) {
          for (int m = 0; m < MM; ++m)
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], v, _mm512_loadu_si512(xc[m] + t * 64));
        } else {
          __m512i lo = _mm512_and_si512(v, low4);
          __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          if constexpr (MODE == 1) {
            lo = _mm512_shuffle_epi8(lut, lo);
            hi = _mm512_shuffle_epi8(lut, hi);
          }
          for (int m = 0; m < MM; ++m) {
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], lo, _mm512_loadu_si512(xc[m] + t * 64));
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], hi, _mm512_loadu_si512(xc[m] + (t + steps) * 64));
          }
        }
      }
    }
    // the chunk's scales (then zeros) follow its codes: R x groups bf16 each
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(p);
    const uint16_t* zc = sc + R * groups;
    if constexpr (MODE != 2) p += (has_zero ? 2 : 1) * R * groups * 2;
    const int64_t at = c * kLanes;
    for (int r = 0; r < R; ++r) {
      __m512 sw = _mm512_set1_ps(1.f), zw = _mm512_setzero_ps();
      if constexpr (MODE != 2) {
        sw = load_bf16x16(sc + r * groups, lmask);
        if (has_zero) zw = load_bf16x16(zc + r * groups, lmask);
      }
      for (int m = 0; m < MM; ++m) {
        const int64_t am = (m0 + m) * a.C * kLanes + at;
        const __m512 f = _mm512_sub_ps(_mm512_cvtepi32_ps(dot[m][r]), _mm512_loadu_ps(a.corr.data() + am));
        const __m512 s = _mm512_mul_ps(sw, _mm512_loadu_ps(a.sx.data() + am));
        acc[m][r] = _mm512_fmadd_ps(s, f, acc[m][r]);
        if (MODE != 2 && has_zero) acc[m][r] = _mm512_fmadd_ps(zw, _mm512_loadu_ps(a.xsum.data() + am), acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MM; ++m)
    for (int r = 0; r < R; ++r) {
      float y = _mm512_reduce_add_ps(acc[m][r]);
      if constexpr (MODE == 2) y *= scale8[r];
      out[m * R + r] = y;
    }
}

// Activation rows [m0, m0 + MM) for MM = 3..4 over one block, like block<> (t outer, the 4 output rows inner), with
// the rows' activation vectors of step t held in registers for all 4 output rows: block<> for 2 rows at a time
// reloads them per output row and re-reads and re-unpacks the block per pair, so 4..8-row products were bound by
// loads (~1.6 per VPDPBUSD). MM x 4 float accumulators do not fit the registers next to MM x 4 int32 dot products:
// they live in L1 (updated once per chunk). Per (activation row, output row) the arithmetic is block<>'s, in the
// same order, so the results are identical.
template <int MM, int MODE>
__attribute__((noinline)) void block_quad(const Acts& a, int64_t m0, const uint8_t* p, int64_t G, int64_t g,
                                          bool has_zero, const float* scale8, __m512i lut, float* out) {
  constexpr int R = kBlockRows;
  alignas(64) float acc[MM][R][kLanes];
  for (int m = 0; m < MM; ++m)
    for (int r = 0; r < R; ++r) _mm512_store_ps(acc[m][r], _mm512_setzero_ps());
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const int64_t group_bytes = MODE == 2 ? g : g / 2;  // stored bytes per group
  const int64_t steps = group_bytes / 4;              // 64-byte steps per chunk and row
  for (int64_t c = 0; c < a.C; ++c) {
    const int64_t groups = std::min<int64_t>(kLanes, G - c * kLanes);
    const bool full = groups == kLanes;
    const int64_t stride = 4 * groups;  // bytes per step and row: 64 for a full chunk
    const __mmask64 bmask = full ? ~0ULL : ((1ULL << stride) - 1);
    const __mmask16 lmask = full ? 0xFFFF : static_cast<__mmask16>((1u << groups) - 1);
    __m512i dot[MM][R];
    for (int m = 0; m < MM; ++m)
      for (int r = 0; r < R; ++r) dot[m][r] = _mm512_setzero_si512();
    const int8_t* xc[MM];
    for (int m = 0; m < MM; ++m) xc[m] = a.xq.data() + ((m0 + m) * a.C + c) * a.S * 64;
    for (int64_t t = 0; t < steps; ++t) {
      __m512i xl[MM], xh[MM];
      for (int m = 0; m < MM; ++m) {
        xl[m] = _mm512_loadu_si512(xc[m] + t * 64);
        if constexpr (MODE != 2) xh[m] = _mm512_loadu_si512(xc[m] + (t + steps) * 64);
      }
      for (int r = 0; r < R; ++r) {
        if (QG_PREFETCH) _mm_prefetch(reinterpret_cast<const char*>(p) + QG_PREFETCH, _MM_HINT_T0);
        const __m512i v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(bmask, p);
        p += stride;
        if constexpr (MODE == 2) {
          for (int m = 0; m < MM; ++m) dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], v, xl[m]);
        } else {
          __m512i lo = _mm512_and_si512(v, low4);
          __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          if constexpr (MODE == 1) {
            lo = _mm512_shuffle_epi8(lut, lo);
            hi = _mm512_shuffle_epi8(lut, hi);
          }
          for (int m = 0; m < MM; ++m) {
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], lo, xl[m]);
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], hi, xh[m]);
          }
        }
      }
    }
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(p);  // the chunk's scales (then zeros)
    const uint16_t* zc = sc + R * groups;
    if constexpr (MODE != 2) p += (has_zero ? 2 : 1) * R * groups * 2;
    const int64_t at = c * kLanes;
    for (int r = 0; r < R; ++r) {
      __m512 sw = _mm512_set1_ps(1.f), zw = _mm512_setzero_ps();
      if constexpr (MODE != 2) {
        sw = load_bf16x16(sc + r * groups, lmask);
        if (has_zero) zw = load_bf16x16(zc + r * groups, lmask);
      }
      for (int m = 0; m < MM; ++m) {
        const int64_t am = (m0 + m) * a.C * kLanes + at;
        const __m512 f = _mm512_sub_ps(_mm512_cvtepi32_ps(dot[m][r]), _mm512_loadu_ps(a.corr.data() + am));
        const __m512 s = _mm512_mul_ps(sw, _mm512_loadu_ps(a.sx.data() + am));
        __m512 acc_mr = _mm512_fmadd_ps(s, f, _mm512_load_ps(acc[m][r]));
        if (MODE != 2 && has_zero) acc_mr = _mm512_fmadd_ps(zw, _mm512_loadu_ps(a.xsum.data() + am), acc_mr);
        _mm512_store_ps(acc[m][r], acc_mr);
      }
    }
  }
  for (int m = 0; m < MM; ++m)
    for (int r = 0; r < R; ++r) {
      float y = _mm512_reduce_add_ps(_mm512_load_ps(acc[m][r]));
      if constexpr (MODE == 2) y *= scale8[r];
      out[m * R + r] = y;
    }
}

#ifndef QG_WIDE
#define QG_WIDE 1  // 0: 3..8 activation rows two at a time through block<> (the A/B switch of the benchmark)
#endif

// All blocks, split over threads; activation rows in fours (block_quad<>) and the last 1..2 by block<> (QG_WIDE=0:
// all in twos).
template <int MODE>
inline void run(const Acts& a, const uint8_t* w, int64_t block_bytes, int64_t n_blocks, int64_t G, int64_t g,
                bool has_zero, const float* scale8, __m512i lut, const float* bias, float* out, int64_t M, int64_t N) {
  constexpr int R = kBlockRows;
  const int64_t grain = std::max<int64_t>(4, n_blocks / (4 * std::max(1, at::get_num_threads())));
  at::parallel_for(0, n_blocks, grain, [&](int64_t b0, int64_t b1) {
    float tmp[4 * R];
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* p = w + b * block_bytes;
      const float* s8 = scale8 ? scale8 + b * R : nullptr;
      for (int64_t m0 = 0; m0 < M;) {
        const int64_t mm = QG_WIDE && M - m0 >= 3 ? std::min<int64_t>(4, M - m0) : std::min<int64_t>(2, M - m0);
        switch (mm) {
          case 4: block_quad<4, MODE>(a, m0, p, G, g, has_zero, s8, lut, tmp); break;
          case 3: block_quad<3, MODE>(a, m0, p, G, g, has_zero, s8, lut, tmp); break;
          case 2: block<2, MODE>(a, m0, p, G, g, has_zero, s8, lut, tmp); break;
          default: block<1, MODE>(a, m0, p, G, g, has_zero, s8, lut, tmp); break;
        }
        for (int64_t m = 0; m < mm; ++m)
          for (int64_t r = 0; r < R && b * R + r < N; ++r)
            out[(m0 + m) * N + b * R + r] = tmp[m * R + r] + (bias ? bias[b * R + r] : 0.f);
        m0 += mm;
      }
    }
  });
}
#else
constexpr bool kHaveKernel = false;
#endif

}  // namespace albumen_quant
