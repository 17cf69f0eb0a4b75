// Dense y = x @ W^T (+ bias) for a few activation rows (M = 1..8), fp32 or bf16, reading W exactly once.
//
// Batch-1 decoding is bound by reading the weights: every W element is used M times at most, so the kernel streams
// W row by row at memory bandwidth and keeps all M activation rows hot in cache. Work is split over output rows with
// at::parallel_for (torch's OpenMP pool, torch.set_num_threads). Each task takes R output rows at a time, so R weight
// streams run side by side (hiding load latency) and M*R accumulators live in registers.
//   fp32: 16 lanes per step, FMA.   bf16: 32 lanes per step, VDPBF16PS (pairs of bf16 products summed in fp32).
// Ragged K is handled with masked loads. Without AVX-512 a plain scalar loop gives the same results.
#pragma once
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <cstdint>
#include <cstring>
#include <vector>

namespace albumen_dense {

inline constexpr int64_t kMaxRows = 8;  // speculative verification uses M = k + 1 <= 8

inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// out[m, n] for n in [n0, n1): scalar reference path (no AVX-512, or a build without it).
template <typename T>
void rows_scalar(const T* x, const T* w, const T* bias, T* out, int64_t M, int64_t N, int64_t K, int64_t n0,
                 int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t m = 0; m < M; ++m) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<float>(x[m * K + k]) * static_cast<float>(w[n * K + k]);
      if (bias) acc += static_cast<float>(bias[n]);
      out[m * N + n] = static_cast<T>(acc);
    }
  }
}

#if defined(__AVX512F__)
#ifndef ALBUMEN_DENSE_PREFETCH
#define ALBUMEN_DENSE_PREFETCH 512
#endif
#ifndef ALBUMEN_DENSE_ROWS
#define ALBUMEN_DENSE_ROWS 8
#endif
// Tile and prefetch for one activation row, from A/B runs of all SmolLM2 products (docs/llm.md): 8 weight rows side
// by side (fp32 1.05-1.08x over 4: more independent streams in flight); fp32 prefetches each stream 512 bytes ahead;
// bf16 instead prefetches the whole next block of rows while the block fits in kNextBlockBytes (1.07-1.09x).
inline constexpr int64_t kPrefetch = ALBUMEN_DENSE_PREFETCH;  // bytes ahead on each weight stream (0: none)
#ifndef ALBUMEN_DENSE_NEXT_BLOCK_BYTES
#define ALBUMEN_DENSE_NEXT_BLOCK_BYTES 32768
#endif
inline constexpr int64_t kNextBlockBytes = ALBUMEN_DENSE_NEXT_BLOCK_BYTES;  // 0: never

// Each step of the loop over K prefetches R cache lines of the next block of R rows (contiguous in W), in address
// order: by the end of a block the next one is on its way in whole, so its R streams do not start cold.
inline void prefetch_next_block(const void* next, int64_t step, int64_t R) {
  const char* p = static_cast<const char*>(next) + step * R * 64;
  for (int64_t j = 0; j < R; ++j) _mm_prefetch(p + j * 64, _MM_HINT_T0);
}

// R rows of W starting at n, all M activation rows, fp32.
template <int M, int R>
inline void block_f32(const float* x, const float* w, const float* bias, float* out, int64_t N, int64_t K, int64_t n) {
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  const float* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (n + r) * K;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) {
      if (kPrefetch) _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k) + kPrefetch, _MM_HINT_T0);
      wv[r] = _mm512_loadu_ps(wr[r] + k);
    }
    for (int m = 0; m < M; ++m) {
      __m512 xv = _mm512_loadu_ps(x + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
    }
  }
  if (k < K) {
    __mmask16 mask = static_cast<__mmask16>((1u << (K - k)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_ps(mask, wr[r] + k);
    for (int m = 0; m < M; ++m) {
      __m512 xv = _mm512_maskz_loadu_ps(mask, x + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r)
      out[m * N + n + r] = _mm512_reduce_add_ps(acc[m][r]) + (bias ? bias[n + r] : 0.f);
}

#if defined(__AVX512BF16__)
inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// R rows of W starting at n, all M activation rows, bf16 in, fp32 accumulate, bf16 out. NextBlock: prefetch the
// next block instead of each stream ahead.
template <int M, int R, bool NextBlock = false>
inline void block_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* bias, c10::BFloat16* out, int64_t N,
                       int64_t K, int64_t n) {
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  const uint16_t* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (n + r) * K;
  int64_t k = 0;
  const uint16_t* next = w + (n + R) * K;
  for (; k + 32 <= K; k += 32) {
    if (NextBlock) prefetch_next_block(next, k / 32, R);
    __m512i wv[R];
    for (int r = 0; r < R; ++r) {
      if (kPrefetch && !NextBlock) _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k) + kPrefetch, _MM_HINT_T0);
      wv[r] = _mm512_loadu_si512(wr[r] + k);
    }
    for (int m = 0; m < M; ++m) {
      __m512i xv = _mm512_loadu_si512(x + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_dpbf16_ps(acc[m][r], as_bh(xv), as_bh(wv[r]));
    }
  }
  if (k < K) {
    __mmask32 mask = static_cast<__mmask32>((K - k) >= 32 ? 0xffffffffu : ((1u << (K - k)) - 1));
    __m512i wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi16(mask, wr[r] + k);
    for (int m = 0; m < M; ++m) {
      __m512i xv = _mm512_maskz_loadu_epi16(mask, x + m * K + k);
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_dpbf16_ps(acc[m][r], as_bh(xv), as_bh(wv[r]));
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) {
      float v = _mm512_reduce_add_ps(acc[m][r]) + (bias ? bf16_to_float(bias[n + r]) : 0.f);
      out[m * N + n + r] = c10::BFloat16(v);  // round to nearest even, as torch does
    }
}
#endif  // __AVX512BF16__

// Rows [n0, n1) for a compile-time M: blocks of R rows, then single rows.
template <int M, typename Block1, typename BlockR>
inline void run_rows(int64_t n0, int64_t n1, int64_t R, Block1 one, BlockR many) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) many(n);
  for (; n < n1; ++n) one(n);
}
#endif  // __AVX512F__

// Weight rows per block for M activation rows: as many weight streams as the 32 vector registers allow (M*R
// accumulators + R weights + 1 activation; M = 3 with R = 8 spills one and is still the fastest). A sweep of R for
// every M on this machine (one thread; SmolLM2's 49152x576 head, Qwen's 8960x1536, 120 cold 1536x576 matrices;
// procedure in docs/llm.md) measured the earlier choice (R = 4 for M <= 4, else 2) 1.1-1.6x slower for fp32 and up to
// 1.6x for bf16: a block of 8 bf16 rows now costs ~1.6x one row instead of ~2.7x. The per-output accumulation order
// does not depend on R, so results are unchanged.
template <int M>
constexpr int rows_per_block() {
  return M == 1 ? ALBUMEN_DENSE_ROWS : M <= 3 ? 8 : M == 4 ? 6 : M <= 6 ? 5 : 3;
}

template <int M>
void dense_f32(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t K, int64_t n0, int64_t n1) {
#if defined(__AVX512F__)
  constexpr int R = rows_per_block<M>();
  run_rows<M>(n0, n1, R, [&](int64_t n) { block_f32<M, 1>(x, w, b, y, N, K, n); },
              [&](int64_t n) { block_f32<M, R>(x, w, b, y, N, K, n); });
#else
  rows_scalar<float>(x, w, b, y, M, N, K, n0, n1);
#endif
}

template <int M>
void dense_bf16(const c10::BFloat16* x, const c10::BFloat16* w, const c10::BFloat16* b, c10::BFloat16* y, int64_t N,
                int64_t K, int64_t n0, int64_t n1) {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  constexpr int R = rows_per_block<M>();
  auto xs = reinterpret_cast<const uint16_t*>(x);
  auto ws = reinterpret_cast<const uint16_t*>(w);
  auto bs = reinterpret_cast<const uint16_t*>(b);
  if (M == 1 && R * K * 2 <= kNextBlockBytes) {
    run_rows<M>(n0, n1, R, [&](int64_t n) { block_bf16<M, 1>(xs, ws, bs, y, N, K, n); },
                [&](int64_t n) { block_bf16<M, R, true>(xs, ws, bs, y, N, K, n); });
  } else {
    run_rows<M>(n0, n1, R, [&](int64_t n) { block_bf16<M, 1>(xs, ws, bs, y, N, K, n); },
                [&](int64_t n) { block_bf16<M, R>(xs, ws, bs, y, N, K, n); });
  }
#else
  rows_scalar<c10::BFloat16>(x, w, b, y, M, N, K, n0, n1);
#endif
}

template <typename T, typename Fn>
void dispatch_m(int64_t M, Fn&& fn) {
  switch (M) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 3: fn(std::integral_constant<int, 3>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 5: fn(std::integral_constant<int, 5>{}); break;
    case 6: fn(std::integral_constant<int, 6>{}); break;
    case 7: fn(std::integral_constant<int, 7>{}); break;
    default: fn(std::integral_constant<int, 8>{}); break;
  }
}

// x (M, K) contiguous, weight (N, K) contiguous, bias (N,) or None; all the same dtype (fp32 or bf16) -> (M, N).
inline torch::Tensor linear_2d(const torch::Tensor& x, const torch::Tensor& weight, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2, "dense.linear: x must be (M, K) and weight (N, K)");
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu(), "dense.linear: CPU tensors only");
  TORCH_CHECK(x.is_contiguous() && weight.is_contiguous(), "dense.linear: x and weight must be contiguous");
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), "dense.linear: x and weight dtypes differ");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, "dense.linear: fp32 or bf16 only");
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  TORCH_CHECK(M >= 1 && M <= kMaxRows, "dense.linear: 1 to 8 rows, got ", M);
  TORCH_CHECK(weight.size(1) == K, "dense.linear: x has ", K, " columns, weight has ", weight.size(1));
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == N && bias->is_contiguous(), "dense.linear: bias must be (N,)");
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "dense.linear: bias dtype differs");
  }
  auto y = torch::empty({M, N}, x.options());
  // Grain: at least 64 output rows per task so a split never costs more than it saves.
  const int64_t grain = std::max<int64_t>(64, N / (8 * at::get_num_threads()));
  if (x.scalar_type() == at::kFloat) {
    const float *xp = x.data_ptr<float>(), *wp = weight.data_ptr<float>();
    const float* bp = has_bias ? bias->data_ptr<float>() : nullptr;
    float* yp = y.data_ptr<float>();
    dispatch_m<float>(M, [&](auto m) {
      at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) { dense_f32<decltype(m)::value>(xp, wp, bp, yp, N, K, n0, n1); });
    });
  } else {
    using BF = c10::BFloat16;
    const BF *xp = x.data_ptr<BF>(), *wp = weight.data_ptr<BF>();
    const BF* bp = has_bias ? bias->data_ptr<BF>() : nullptr;
    BF* yp = y.data_ptr<BF>();
    dispatch_m<BF>(M, [&](auto m) {
      at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) { dense_bf16<decltype(m)::value>(xp, wp, bp, yp, N, K, n0, n1); });
    });
  }
  return y;
}

// The decoder's hot path: x (..., K) -> (..., N), or None when the kernel does not apply (the caller then uses
// F.linear): autograd needed, another device or dtype, a non-contiguous weight, more than 8 rows. Checking here
// instead of in Python saves ~6 us per call (211 calls per SmolLM2 token).
inline c10::optional<torch::Tensor> try_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                        const c10::optional<torch::Tensor>& bias) {
  const bool has_bias = bias.has_value() && bias->defined();
  const auto dtype = weight.scalar_type();
  if (x.dim() < 1 || weight.dim() != 2 || !x.device().is_cpu() || !weight.device().is_cpu()) return c10::nullopt;
  if ((dtype != at::kFloat && dtype != at::kBFloat16) || x.scalar_type() != dtype) return c10::nullopt;
  if (has_bias && (bias->scalar_type() != dtype || !bias->device().is_cpu() || bias->dim() != 1)) return c10::nullopt;
  const int64_t K = x.size(-1);
  if (K == 0 || weight.size(1) != K || !weight.is_contiguous()) return c10::nullopt;
  const int64_t M = x.numel() / K;
  if (M < 1 || M > kMaxRows) return c10::nullopt;
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || weight.requires_grad() || (has_bias && bias->requires_grad())))
    return c10::nullopt;
  c10::optional<torch::Tensor> b = c10::nullopt;
  if (has_bias) b = bias->contiguous();
  auto y = linear_2d(x.reshape({M, K}).contiguous(), weight, b);  // (M, N)
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = weight.size(0);
  return y.view(shape);  // (..., N)
}

inline bool has_avx512_bf16() {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

}  // namespace albumen_dense

