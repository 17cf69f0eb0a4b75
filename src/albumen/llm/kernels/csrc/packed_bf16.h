// bf16 y = x @ W^T (+ bias) for 1..8 activation rows on a packed copy of W, reading the copy once as one stream.
//
// Layout: W (N, K) becomes (G, P, 128) bf16 with G = ceil(N / 64) groups of 64 output rows and P = ceil(K / 2)
// pairs of inputs: for group g and pair p, 64 outputs x 2 inputs, [j][0..1] = W[64 g + j, 2 p .. 2 p + 1] (zero
// padded). A group's weights are one contiguous stream, so the hardware prefetcher runs ahead of it; one VDPBF16PS
// multiplies 16 outputs' pair by a broadcast activation pair and adds both products into 16 fp32 lanes, so every
// output is one lane with a fixed sequence of operations over p, whatever M is: a row computed inside a block of M
// rows equals the row alone, bit for bit (speculative verification relies on it), and there is no horizontal sum.
// Rows 7..8 run as two sets of accumulators over chunks of pairs small enough to stay in L1 for the second set.
// Measured on Qwen2.5-1.5B's shapes, one thread (docs/speculative.md, "A packed bf16 kernel"): faster than oneDNN's
// pre-packed copy at 1 to 4 rows, and 4 rows cost ~1.1x one row (the row-major dense kernel: ~1.4x).
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace albumen_packed {

inline constexpr int64_t kGroup = 64;     // output rows per group (4 vectors of 16 fp32 lanes)
inline constexpr int64_t kMaxRows = 8;    // activation rows per call
inline constexpr int64_t kChunk = 64;     // pairs per chunk when M > 6 (64 x 256 B = 16 KB of weights in L1)
#ifndef ALBUMEN_PACKED_PREFETCH
#define ALBUMEN_PACKED_PREFETCH 2048
#endif
inline constexpr int64_t kPrefetch = ALBUMEN_PACKED_PREFETCH;  // bytes ahead on the group's stream (A/B: 1-2 KB)

inline uint16_t bits(c10::BFloat16 v) { return v.x; }

// (N, K) bf16 contiguous -> (G, P, 128) bf16 packed copy.
inline torch::Tensor pack_bf16(const torch::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kBFloat16 && w.device().is_cpu(),
              "packed_bf16.pack: weight must be a 2-D bf16 CPU tensor");
  auto wc = w.contiguous();
  const int64_t N = wc.size(0), K = wc.size(1), G = (N + kGroup - 1) / kGroup, P = (K + 1) / 2;
  auto out = torch::zeros({G, P, 2 * kGroup}, wc.options());
  const auto* src = wc.data_ptr<c10::BFloat16>();
  auto* dst = out.data_ptr<c10::BFloat16>();
  at::parallel_for(0, G, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t j = 0; j < kGroup && g * kGroup + j < N; ++j) {
        const c10::BFloat16* row = src + (g * kGroup + j) * K;
        c10::BFloat16* base = dst + g * P * 2 * kGroup + 2 * j;
        for (int64_t k = 0; k < K; ++k) base[(k / 2) * 2 * kGroup + (k & 1)] = row[k];
      }
  });
  return out;
}

// Outputs [64 g, 64 g + 64) of the M rows into y (M, N), bias added in fp32 before the one rounding to bf16.
// (With AVX-512 BF16, 16 outputs per instruction; VCVTNEPS2BF16 rounds to nearest even and flushes denormals.)
inline void emit(const float* acc, int64_t M, const c10::BFloat16* bias, c10::BFloat16* y, int64_t N, int64_t n0) {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  for (int64_t b = 0; b < kGroup / 16 && n0 + 16 * b < N; ++b) {
    const int64_t n = n0 + 16 * b, left = N - n;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    __m512 bv = _mm512_setzero_ps();
    if (bias) {
      __m256i raw = _mm256_maskz_loadu_epi16(mask, reinterpret_cast<const uint16_t*>(bias + n));
      bv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    }
    for (int64_t m = 0; m < M; ++m) {
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(acc + m * kGroup + 16 * b), bv);
      __m256bh r = _mm512_cvtneps_pbh(v);
      _mm256_mask_storeu_epi16(reinterpret_cast<uint16_t*>(y + m * N + n), mask, reinterpret_cast<__m256i>(r));
    }
  }
#else
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < kGroup && n0 + j < N; ++j) {
      float v = acc[m * kGroup + j] + (bias ? static_cast<float>(bias[n0 + j]) : 0.f);
      y[m * N + n0 + j] = c10::BFloat16(v);  // round to nearest even, as torch does
    }
#endif
}

#if defined(__AVX512F__) && defined(__AVX512BF16__)
inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// acc (MM, 64) fp32 in memory += rows x (MM, pairs as uint32, row stride xs) times the group's pairs [p0, p1).
template <int MM>
inline void pairs_avx(const uint32_t* x, int64_t xs, const uint16_t* w, int64_t p0, int64_t p1, float* acc_io,
                      bool fresh) {
  __m512 acc[MM][4];
  for (int m = 0; m < MM; ++m)
    for (int b = 0; b < 4; ++b)
      acc[m][b] = fresh ? _mm512_setzero_ps() : _mm512_loadu_ps(acc_io + m * kGroup + b * 16);
  for (int64_t p = p0; p < p1; ++p) {
    const uint16_t* wp = w + p * 2 * kGroup;
    if (kPrefetch)
      for (int b = 0; b < 4; ++b) _mm_prefetch(reinterpret_cast<const char*>(wp) + kPrefetch + b * 64, _MM_HINT_T0);
    __m512i wv[4];
    for (int b = 0; b < 4; ++b) wv[b] = _mm512_loadu_si512(wp + b * 32);
    for (int m = 0; m < MM; ++m) {
      __m512i xv = _mm512_set1_epi32(static_cast<int>(x[m * xs + p]));
      for (int b = 0; b < 4; ++b) acc[m][b] = _mm512_dpbf16_ps(acc[m][b], as_bh(xv), as_bh(wv[b]));
    }
  }
  for (int m = 0; m < MM; ++m)
    for (int b = 0; b < 4; ++b) _mm512_storeu_ps(acc_io + m * kGroup + b * 16, acc[m][b]);
}

template <int M>
inline void group_avx(const uint32_t* x, int64_t P, const uint16_t* w, float* acc) {
  if constexpr (M <= 6) {  // M x 4 accumulators + 4 weights + 1 broadcast fit the 32 vector registers
    pairs_avx<M>(x, P, w, 0, P, acc, true);
  } else {
    for (int64_t p0 = 0; p0 < P; p0 += kChunk) {  // the second set re-reads the chunk from L1
      const int64_t p1 = std::min(P, p0 + kChunk);
      pairs_avx<4>(x, P, w, p0, p1, acc, p0 == 0);
      pairs_avx<M - 4>(x + 4 * P, P, w, p0, p1, acc + 4 * kGroup, p0 == 0);
    }
  }
}
#endif

// Scalar reference (no AVX-512 BF16): the same per-output sequence (odd input of the pair first, as VDPBF16PS).
inline void group_scalar(const uint16_t* x, int64_t M, int64_t P, const uint16_t* w, float* acc) {
  auto f = [](uint16_t v) {
    uint32_t u = static_cast<uint32_t>(v) << 16;
    float r;
    std::memcpy(&r, &u, 4);
    return r;
  };
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < kGroup; ++j) {
      float a = 0.f;
      for (int64_t p = 0; p < P; ++p) {
        const uint16_t* wp = w + p * 2 * kGroup + 2 * j;
        a += f(x[m * 2 * P + 2 * p + 1]) * f(wp[1]);
        a += f(x[m * 2 * P + 2 * p]) * f(wp[0]);
      }
      acc[m * kGroup + j] = a;
    }
}

// y (M, N) = x (M, 2P) @ W^T for groups [g0, g1); x rows padded to an even length.
inline void rows_groups(const uint16_t* x, int64_t M, int64_t P, const uint16_t* pk, const c10::BFloat16* bias,
                        c10::BFloat16* y, int64_t N, int64_t g0, int64_t g1) {
  alignas(64) float acc[kMaxRows * kGroup];
  for (int64_t g = g0; g < g1; ++g) {
    const uint16_t* w = pk + g * P * 2 * kGroup;
#if defined(__AVX512F__) && defined(__AVX512BF16__)
    auto xs = reinterpret_cast<const uint32_t*>(x);
    switch (M) {
      case 1: group_avx<1>(xs, P, w, acc); break;
      case 2: group_avx<2>(xs, P, w, acc); break;
      case 3: group_avx<3>(xs, P, w, acc); break;
      case 4: group_avx<4>(xs, P, w, acc); break;
      case 5: group_avx<5>(xs, P, w, acc); break;
      case 6: group_avx<6>(xs, P, w, acc); break;
      case 7: group_avx<7>(xs, P, w, acc); break;
      default: group_avx<8>(xs, P, w, acc); break;
    }
#else
    group_scalar(x, M, P, w, acc);
#endif
    emit(acc, M, bias, y, N, g * kGroup);
  }
}

// y (M, N) = x (M, K) @ W^T (+ bias) with W packed (G, P, 128): raw pointers, M = 1..8; threads over groups.
inline void packed_gemm(const c10::BFloat16* x, int64_t M, int64_t K, const c10::BFloat16* pk, int64_t N,
                        const c10::BFloat16* bias, c10::BFloat16* y) {
  const int64_t P = (K + 1) / 2, G = (N + kGroup - 1) / kGroup;
  const uint16_t* xs = reinterpret_cast<const uint16_t*>(x);
  std::vector<uint16_t> padded;
  if (K % 2) {  // pairs must not run into the next row: copy the rows with a zero after each
    padded.assign(M * 2 * P, 0);
    for (int64_t m = 0; m < M; ++m) std::memcpy(padded.data() + m * 2 * P, xs + m * K, K * sizeof(uint16_t));
    xs = padded.data();
  }
  const auto* w = reinterpret_cast<const uint16_t*>(pk);
  const int threads = at::get_num_threads();
  if (threads == 1) {
    rows_groups(xs, M, P, w, bias, y, N, 0, G);
  } else {
    at::parallel_for(0, G, std::max<int64_t>(1, G / (8 * threads)),
                     [&](int64_t g0, int64_t g1) { rows_groups(xs, M, P, w, bias, y, N, g0, g1); });
  }
}

inline void check_pack(const torch::Tensor& pack, int64_t N, int64_t K) {
  TORCH_CHECK(pack.dim() == 3 && pack.scalar_type() == at::kBFloat16 && pack.is_contiguous() &&
                  pack.size(0) == (N + kGroup - 1) / kGroup && pack.size(1) == (K + 1) / 2 && pack.size(2) == 2 * kGroup,
              "packed_bf16: the pack has shape ", pack.sizes(), ", not that of a packed (", N, ", ", K, ") weight");
}

// x (..., K) bf16 @ W^T (+ bias) -> (..., N) for 1..8 rows with W's pack; None where it does not apply (the caller
// then uses another path): autograd needed, another dtype or device, more than 8 rows.
inline c10::optional<torch::Tensor> try_packed_linear(const torch::Tensor& x, const torch::Tensor& pack, int64_t N,
                                                      const c10::optional<torch::Tensor>& bias) {
  if (x.dim() < 1 || !x.device().is_cpu() || x.scalar_type() != at::kBFloat16) return c10::nullopt;
  const int64_t K = x.size(-1);
  if (K == 0) return c10::nullopt;
  const int64_t M = x.numel() / K;
  if (M < 1 || M > kMaxRows) return c10::nullopt;
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias && (bias->scalar_type() != at::kBFloat16 || bias->dim() != 1 || bias->size(0) != N))
    return c10::nullopt;
  if (at::GradMode::is_enabled() && (x.requires_grad() || (has_bias && bias->requires_grad()))) return c10::nullopt;
  check_pack(pack, N, K);
  auto xc = x.reshape({M, K}).contiguous();
  auto bc = has_bias ? bias->contiguous() : torch::Tensor();
  auto y = torch::empty({M, N}, xc.options());
  packed_gemm(xc.data_ptr<c10::BFloat16>(), M, K, pack.data_ptr<c10::BFloat16>(), N,
              has_bias ? bc.data_ptr<c10::BFloat16>() : nullptr, y.data_ptr<c10::BFloat16>());
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  return y.view(shape);
}

}  // namespace albumen_packed
