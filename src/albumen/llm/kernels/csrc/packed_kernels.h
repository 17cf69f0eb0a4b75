// y = x @ W^T (+ bias) for 1..8 activation rows on a packed copy of W, reading the copy once as one stream; bf16 or
// fp32.
//
// Layout: G = ceil(N / 64) groups of 64 output rows, each one contiguous stream (zero padded):
//   bf16: (G, P, 128) with P = ceil(K / 2) pairs of inputs: for group g and pair p, [j][0..1] = W[64 g + j, 2p..2p+1];
//         one VDPBF16PS multiplies 16 outputs' pair by a broadcast activation pair and adds both products into 16
//         fp32 lanes.
//   fp32: (G, K, 64): for group g and input k, [j] = W[64 g + j, k]; one FMA per 16 outputs and broadcast activation.
// Every output is one fp32 lane with a fixed sequence of operations over K, whatever M is: a row computed inside a
// block of M rows equals the row alone, bit for bit (speculative verification relies on it), and no horizontal sums
// remain. The hardware prefetcher runs ahead of the group's single stream (the row-major kernel has R streams). Up to
// 6 rows keep every accumulator in a register (6 x 4 + 4 weights + 1 broadcast of the 32); rows 7..8 run as two sets
// over chunks of the stream small enough to stay in L1 for the second set. Measured one thread (docs/llm.md, "The
// packed kernels"): on Qwen2.5-1.5B's bf16 shapes faster than oneDNN's pre-packed copy at 1..6 rows; on SmolLM2's
// fp32 shapes 1.2-1.3x faster than the row-major kernel at one row.
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace albumen_packed {

inline constexpr int64_t kGroup = 64;     // output rows per group (4 vectors of 16 fp32 lanes)
inline constexpr int64_t kMaxRows = 8;    // activation rows per call
inline constexpr int64_t kChunk = 64;     // steps per chunk when M > 6 (64 x 256 B = 16 KB of weights in L1)
#ifndef ALBUMEN_PACKED_PREFETCH
#define ALBUMEN_PACKED_PREFETCH 2048
#endif
inline constexpr int64_t kPrefetch = ALBUMEN_PACKED_PREFETCH;  // bytes ahead on the group's stream (A/B: 1-2 KB)

// Inputs per step of the stream: a pair for bf16, one for fp32; each step is 64 outputs x that many = 256 bytes.
template <typename T>
constexpr int64_t step_inputs() {
  return std::is_same_v<T, float> ? 1 : 2;
}

inline void check_dtype(const torch::Tensor& t, const char* what) {
  TORCH_CHECK(t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kFloat, "packed: ", what,
              " must be bf16 or fp32");
}

// The pack of W (N, K) as raw elements: each group's stream written front to back (the 64 rows' next step side by
// side, read from 64 row streams that stay in L1).
template <typename E, int64_t W>
inline void pack_groups(const E* src, E* dst, int64_t N, int64_t K, int64_t S, int64_t g0, int64_t g1) {
  for (int64_t g = g0; g < g1; ++g) {
    E* out = dst + g * S * W * kGroup;
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < kGroup; ++j, out += W) {
        const int64_t n = g * kGroup + j;
        for (int64_t i = 0; i < W; ++i) {
          const int64_t k = s * W + i;
          out[i] = (n < N && k < K) ? src[n * K + k] : E(0);
        }
      }
  }
}

// (N, K) weight, bf16 or fp32 -> its packed copy, same dtype: (G, P, 128) bf16 or (G, K, 64) fp32.
inline torch::Tensor pack_weight(const torch::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.device().is_cpu() &&
                  (w.scalar_type() == at::kBFloat16 || w.scalar_type() == at::kFloat),
              "packed.pack: weight must be a 2-D bf16 or fp32 CPU tensor");
  auto wc = w.contiguous();
  const int64_t N = wc.size(0), K = wc.size(1), G = (N + kGroup - 1) / kGroup;
  const bool bf = wc.scalar_type() == at::kBFloat16;
  const int64_t S = bf ? (K + 1) / 2 : K;  // steps of the stream
  auto out = torch::empty({G, S, (bf ? 2 : 1) * kGroup}, wc.options());
  at::parallel_for(0, G, 1, [&](int64_t g0, int64_t g1) {
    if (bf) {
      pack_groups<uint16_t, 2>(reinterpret_cast<const uint16_t*>(wc.data_ptr()),
                               reinterpret_cast<uint16_t*>(out.data_ptr()), N, K, S, g0, g1);
    } else {
      pack_groups<float, 1>(wc.data_ptr<float>(), out.data_ptr<float>(), N, K, S, g0, g1);
    }
  });
  return out;
}

inline void check_pack(const torch::Tensor& pack, int64_t N, int64_t K) {
  const bool bf = pack.scalar_type() == at::kBFloat16;
  const int64_t S = bf ? (K + 1) / 2 : K, W = bf ? 2 : 1;
  TORCH_CHECK(pack.dim() == 3 && (bf || pack.scalar_type() == at::kFloat) && pack.is_contiguous() &&
                  pack.size(0) == (N + kGroup - 1) / kGroup && pack.size(1) == S && pack.size(2) == W * kGroup,
              "packed: the pack has shape ", pack.sizes(), ", not that of a packed (", N, ", ", K, ") weight");
}

// Outputs [n0, n0 + 64) of the M rows into y (M, N), bias added in fp32 before the one rounding (bf16).
template <typename T>
inline void emit(const float* acc, int64_t M, const T* bias, T* y, int64_t N, int64_t n0) {
#if defined(__AVX512F__)
  for (int64_t b = 0; b < kGroup / 16 && n0 + 16 * b < N; ++b) {
    const int64_t n = n0 + 16 * b, left = N - n;
    const __mmask16 mask = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    __m512 bv = _mm512_setzero_ps();
    if (bias) {
      if constexpr (std::is_same_v<T, float>) {
        bv = _mm512_maskz_loadu_ps(mask, bias + n);
      } else {
        __m256i raw = _mm256_maskz_loadu_epi16(mask, reinterpret_cast<const uint16_t*>(bias + n));
        bv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(acc + m * kGroup + 16 * b), bv);
      if constexpr (std::is_same_v<T, float>) {
        _mm512_mask_storeu_ps(y + m * N + n, mask, v);
      } else {
#if defined(__AVX512BF16__)
        // VCVTNEPS2BF16: round to nearest even (denormals flushed)
        __m256bh r = _mm512_cvtneps_pbh(v);
        _mm256_mask_storeu_epi16(reinterpret_cast<uint16_t*>(y + m * N + n), mask, reinterpret_cast<__m256i>(r));
#else
        alignas(64) float tmp[16];
        _mm512_storeu_ps(tmp, v);
        for (int64_t j = 0; j < std::min<int64_t>(16, left); ++j) y[m * N + n + j] = T(tmp[j]);
#endif
      }
    }
  }
#else
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < kGroup && n0 + j < N; ++j) {
      float v = acc[m * kGroup + j] + (bias ? static_cast<float>(bias[n0 + j]) : 0.f);
      y[m * N + n0 + j] = static_cast<T>(v);  // bf16: round to nearest even, as torch does
    }
#endif
}

#if defined(__AVX512F__)
#if defined(__AVX512BF16__)
inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }
#endif

// acc (MM, 64) fp32 in memory += rows x (MM rows, row stride xs in steps) times the group's steps [s0, s1).
template <typename T, int MM>
inline void steps_avx(const T* x, int64_t xs, const T* w, int64_t s0, int64_t s1, float* acc_io, bool fresh) {
  constexpr int64_t W = step_inputs<T>();
  __m512 acc[MM][4];
  for (int m = 0; m < MM; ++m)
    for (int b = 0; b < 4; ++b)
      acc[m][b] = fresh ? _mm512_setzero_ps() : _mm512_loadu_ps(acc_io + m * kGroup + b * 16);
  for (int64_t s = s0; s < s1; ++s) {
    const T* ws = w + s * W * kGroup;
    if (kPrefetch)
      for (int b = 0; b < 4; ++b) _mm_prefetch(reinterpret_cast<const char*>(ws) + kPrefetch + b * 64, _MM_HINT_T0);
    if constexpr (std::is_same_v<T, float>) {
      __m512 wv[4];
      for (int b = 0; b < 4; ++b) wv[b] = _mm512_loadu_ps(ws + b * 16);
      for (int m = 0; m < MM; ++m) {
        __m512 xv = _mm512_set1_ps(x[m * xs + s]);
        for (int b = 0; b < 4; ++b) acc[m][b] = _mm512_fmadd_ps(xv, wv[b], acc[m][b]);
      }
    } else {
#if defined(__AVX512BF16__)
      const uint32_t* xp = reinterpret_cast<const uint32_t*>(x);
      __m512i wv[4];
      for (int b = 0; b < 4; ++b) wv[b] = _mm512_loadu_si512(reinterpret_cast<const uint16_t*>(ws) + b * 32);
      for (int m = 0; m < MM; ++m) {
        __m512i xv = _mm512_set1_epi32(static_cast<int>(xp[m * xs + s]));
        for (int b = 0; b < 4; ++b) acc[m][b] = _mm512_dpbf16_ps(acc[m][b], as_bh(xv), as_bh(wv[b]));
      }
#endif
    }
  }
  for (int m = 0; m < MM; ++m)
    for (int b = 0; b < 4; ++b) _mm512_storeu_ps(acc_io + m * kGroup + b * 16, acc[m][b]);
}

template <typename T, int M>
inline void group_avx(const T* x, int64_t S, const T* w, float* acc) {
  if constexpr (M <= 6) {
    steps_avx<T, M>(x, S, w, 0, S, acc, true);
  } else {
    for (int64_t s0 = 0; s0 < S; s0 += kChunk) {  // the second set re-reads the chunk from L1
      const int64_t s1 = std::min(S, s0 + kChunk);
      steps_avx<T, 4>(x, S, w, s0, s1, acc, s0 == 0);
      steps_avx<T, M - 4>(x + 4 * S * step_inputs<T>(), S, w, s0, s1, acc + 4 * kGroup, s0 == 0);
    }
  }
}
#endif

// Scalar reference (no AVX-512, or bf16 without AVX-512 BF16): the same per-output order (a bf16 pair: odd input
// first, as VDPBF16PS).
template <typename T>
inline void group_scalar(const T* x, int64_t M, int64_t S, const T* w, float* acc) {
  constexpr int64_t W = step_inputs<T>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < kGroup; ++j) {
      float a = 0.f;
      for (int64_t s = 0; s < S; ++s) {
        const T* ws = w + (s * kGroup + j) * W;
        for (int64_t i = W - 1; i >= 0; --i) a += static_cast<float>(x[(m * S + s) * W + i]) * static_cast<float>(ws[i]);
      }
      acc[m * kGroup + j] = a;
    }
}

template <typename T>
inline constexpr bool kVectorPath =
#if defined(__AVX512F__) && defined(__AVX512BF16__)
    true;
#elif defined(__AVX512F__)
    std::is_same_v<T, float>;
#else
    false;
#endif

// y (M, N) = x (M, S * W) @ W^T for groups [g0, g1); x rows padded to whole steps.
template <typename T>
inline void rows_groups(const T* x, int64_t M, int64_t S, const T* pk, const T* bias, T* y, int64_t N, int64_t g0,
                        int64_t g1) {
  alignas(64) float acc[kMaxRows * kGroup];
  constexpr int64_t W = step_inputs<T>();
  for (int64_t g = g0; g < g1; ++g) {
    const T* w = pk + g * S * W * kGroup;
    if constexpr (kVectorPath<T>) {
#if defined(__AVX512F__)
      switch (M) {
        case 1: group_avx<T, 1>(x, S, w, acc); break;
        case 2: group_avx<T, 2>(x, S, w, acc); break;
        case 3: group_avx<T, 3>(x, S, w, acc); break;
        case 4: group_avx<T, 4>(x, S, w, acc); break;
        case 5: group_avx<T, 5>(x, S, w, acc); break;
        case 6: group_avx<T, 6>(x, S, w, acc); break;
        case 7: group_avx<T, 7>(x, S, w, acc); break;
        default: group_avx<T, 8>(x, S, w, acc); break;
      }
#endif
    } else {
      group_scalar<T>(x, M, S, w, acc);
    }
    emit<T>(acc, M, bias, y, N, g * kGroup);
  }
}

// y (M, N) = x (M, K) @ W^T (+ bias) with W packed: raw pointers, M = 1..8; threads over groups.
template <typename T>
inline void packed_gemm(const T* x, int64_t M, int64_t K, const T* pk, int64_t N, const T* bias, T* y) {
  constexpr int64_t W = step_inputs<T>();
  const int64_t S = (K + W - 1) / W, G = (N + kGroup - 1) / kGroup;
  std::vector<T> padded;
  if (K % W) {  // bf16 pairs must not run into the next row: copy the rows with a zero after each
    padded.assign(M * S * W, T(0));
    for (int64_t m = 0; m < M; ++m) std::memcpy(padded.data() + m * S * W, x + m * K, K * sizeof(T));
    x = padded.data();
  }
  const int threads = at::get_num_threads();
  if (threads == 1) {
    rows_groups<T>(x, M, S, pk, bias, y, N, 0, G);
  } else {
    at::parallel_for(0, G, std::max<int64_t>(1, G / (8 * threads)),
                     [&](int64_t g0, int64_t g1) { rows_groups<T>(x, M, S, pk, bias, y, N, g0, g1); });
  }
}

// x (..., K) @ W^T (+ bias) -> (..., N) for 1..8 rows with W's pack (x, pack and bias of one dtype, bf16 or fp32);
// None where it does not apply (the caller then uses another path): autograd needed, another dtype or device, more
// than 8 rows.
inline c10::optional<torch::Tensor> try_packed_linear(const torch::Tensor& x, const torch::Tensor& pack, int64_t N,
                                                      const c10::optional<torch::Tensor>& bias) {
  const auto dt = pack.scalar_type();
  if (x.dim() < 1 || !x.device().is_cpu() || x.scalar_type() != dt) return c10::nullopt;
  if (dt != at::kBFloat16 && dt != at::kFloat) return c10::nullopt;
  const int64_t K = x.size(-1);
  if (K == 0) return c10::nullopt;
  const int64_t M = x.numel() / K;
  if (M < 1 || M > kMaxRows) return c10::nullopt;
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias && (bias->scalar_type() != dt || bias->dim() != 1 || bias->size(0) != N)) return c10::nullopt;
  if (at::GradMode::is_enabled() && (x.requires_grad() || (has_bias && bias->requires_grad()))) return c10::nullopt;
  check_pack(pack, N, K);
  auto xc = x.reshape({M, K}).contiguous();
  auto bc = has_bias ? bias->contiguous() : torch::Tensor();
  auto y = torch::empty({M, N}, xc.options());
  if (dt == at::kFloat) {
    packed_gemm<float>(xc.data_ptr<float>(), M, K, pack.data_ptr<float>(), N, has_bias ? bc.data_ptr<float>() : nullptr,
                       y.data_ptr<float>());
  } else {
    using BF = c10::BFloat16;
    packed_gemm<BF>(xc.data_ptr<BF>(), M, K, pack.data_ptr<BF>(), N, has_bias ? bc.data_ptr<BF>() : nullptr,
                    y.data_ptr<BF>());
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  return y.view(shape);
}

}  // namespace albumen_packed
