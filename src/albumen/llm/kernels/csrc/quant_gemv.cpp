// Quantized matrix-vector products for decoding: 4-bit codes (affine int4 or a 16-entry palette) with one scale
// (and zero) per group of g inputs, and int8 per output channel; 1..8 activation rows, weights read once.
//
// How: activations are quantized on the fly to int8 per block of g inputs (llama.cpp's Q8 idea; the weights stay
// exactly what the checkpoint holds), and the products run on VNNI (VPDPBUSD: 64 u8 x s8 products per instruction).
// The weights are stored in a "lane per group" layout made once at load time (quant_gemv.py): a chunk is 16
// consecutive groups of one row, and each 64-byte step holds 4 bytes of each of the 16 groups side by side, so lane
// j of the int32 accumulator sums group j only. The per-group scales then apply as one 16-lane vector per chunk
// (no horizontal sums inside the row). A last chunk of fewer than 16 groups is stored compactly and read with masks.
//
//   int4 (MODE 0):    byte = code[i] | code[i + g/2] << 4, codes in [0, 15]; w = (code - 8) * scale + zero
//   palette (MODE 1): the same nibbles index a 16-entry u8 table (LUT + 128) by VPSHUFB; w = lut[code] * scale + zero
//   int8 (MODE 2):    byte = w + 128 (g = 32 fixed for the activation blocks); w = q * row_scale
// Unsigned weights times signed activations: sum(u * xq) = sum(w * xq) + offset * sum(xq); the offset term is
// removed per group with the activation block sums (offset 8 for int4, 128 for palette / int8).
// Work is split over output rows with at::parallel_for (torch.set_num_threads).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kMaxRows = 8;
constexpr int64_t kLanes = 16;  // groups per chunk
#ifndef QG_PREFETCH
#define QG_PREFETCH 1024  // bytes ahead on each weight row stream (0: hardware prefetch only)
#endif
#ifndef QG_ROWS1
#define QG_ROWS1 4  // output rows per block at M = 1
#endif

// Activations in the kernel layout: int8 codes (M, C, S, 64) and per (m, group) scale, offset correction, float sum.
struct Acts {
  int64_t M = 0, C = 0, S = 0;
  std::vector<int8_t> xq;
  std::vector<float> sx, corr, xsum;  // (M, C * 16), zero-padded past the last group
};

// x (M, K) fp32 -> Acts; group g (K % g == 0, g % 4 == 0); offset: the weights' unsigned offset (8 or 128).
Acts quantize_acts(const float* x, int64_t M, int64_t K, int64_t g, float offset) {
  Acts a;
  const int64_t G = K / g;
  a.M = M;
  a.C = (G + kLanes - 1) / kLanes;
  a.S = g / 4;
  a.xq.assign(M * a.C * a.S * 64, 0);
  a.sx.assign(M * a.C * kLanes, 0.f);
  a.corr.assign(M * a.C * kLanes, 0.f);
  a.xsum.assign(M * a.C * kLanes, 0.f);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t gi = 0; gi < G; ++gi) {
      const float* v = x + m * K + gi * g;
      float amax = 0.f, sum = 0.f;
      for (int64_t i = 0; i < g; ++i) {
        amax = std::max(amax, std::fabs(v[i]));
        sum += v[i];
      }
      const float scale = amax / 127.f;
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      const int64_t c = gi / kLanes, j = gi % kLanes;
      int8_t* dst = a.xq.data() + ((m * a.C + c) * a.S) * 64 + j * 4;
      int32_t qsum = 0;
      for (int64_t i = 0; i < g; ++i) {
        const int32_t q = static_cast<int32_t>(std::nearbyint(v[i] * inv));
        qsum += q;
        dst[(i / 4) * 64 + (i % 4)] = static_cast<int8_t>(q);
      }
      const int64_t at = (m * a.C + c) * kLanes + j;
      a.sx[at] = scale;
      a.corr[at] = offset * static_cast<float>(qsum);
      a.xsum[at] = sum;
    }
  }
  return a;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
constexpr bool kHaveKernel = true;

inline __m512 load_bf16x16(const uint16_t* p, __mmask16 mask) {  // 16 bf16 -> 16 fp32 (masked lanes 0)
  __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

// Output rows [n, n + R) for all M activation rows. MODE 0: int4 affine, 1: palette, 2: int8.
template <int M, int R, int MODE>
inline void block(const Acts& a, const uint8_t* wq, int64_t row_bytes, const uint16_t* scale, const uint16_t* zero,
                  const float* scale8, __m512i lut, int64_t G, int64_t g, float* acc_out, int64_t n) {
  __m512 acc[M][R];
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const int64_t group_bytes = MODE == 2 ? g : g / 2;  // stored bytes per group
  const int64_t steps = group_bytes / 4;              // 64-byte steps per chunk
  for (int64_t c = 0; c < a.C; ++c) {
    const int64_t groups = std::min<int64_t>(kLanes, G - c * kLanes);
    const bool full = groups == kLanes;
    const int64_t stride = 4 * groups;  // bytes per step: 64 for a full chunk
    const __mmask64 bmask = full ? ~0ULL : ((1ULL << stride) - 1);
    const __mmask16 lmask = full ? 0xFFFF : static_cast<__mmask16>((1u << groups) - 1);
    const int64_t base = c * kLanes * group_bytes;
    __m512i dot[M][R];
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < R; ++r) dot[m][r] = _mm512_setzero_si512();
    const int8_t* xc[M];
    for (int m = 0; m < M; ++m) xc[m] = a.xq.data() + (m * a.C + c) * a.S * 64;
    for (int64_t t = 0; t < steps; ++t) {
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = wq + (n + r) * row_bytes + base + t * stride;
        if (QG_PREFETCH) _mm_prefetch(reinterpret_cast<const char*>(p) + QG_PREFETCH, _MM_HINT_T0);
        const __m512i v = full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(bmask, p);
        if constexpr (MODE == 2) {
          for (int m = 0; m < M; ++m)
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], v, _mm512_loadu_si512(xc[m] + t * 64));
        } else {
          __m512i lo = _mm512_and_si512(v, low4);
          __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
          if constexpr (MODE == 1) {
            lo = _mm512_shuffle_epi8(lut, lo);
            hi = _mm512_shuffle_epi8(lut, hi);
          }
          for (int m = 0; m < M; ++m) {
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], lo, _mm512_loadu_si512(xc[m] + t * 64));
            dot[m][r] = _mm512_dpbusd_epi32(dot[m][r], hi, _mm512_loadu_si512(xc[m] + (t + steps) * 64));
          }
        }
      }
    }
    const int64_t at = c * kLanes;
    for (int r = 0; r < R; ++r) {
      __m512 sw = _mm512_set1_ps(1.f), zw = _mm512_setzero_ps();
      if constexpr (MODE != 2) {
        sw = load_bf16x16(scale + (n + r) * G + at, lmask);
        if (zero) zw = load_bf16x16(zero + (n + r) * G + at, lmask);
      }
      for (int m = 0; m < M; ++m) {
        const int64_t am = m * a.C * kLanes + at;
        const __m512 f = _mm512_sub_ps(_mm512_cvtepi32_ps(dot[m][r]), _mm512_loadu_ps(a.corr.data() + am));
        const __m512 s = _mm512_mul_ps(sw, _mm512_loadu_ps(a.sx.data() + am));
        acc[m][r] = _mm512_fmadd_ps(s, f, acc[m][r]);
        if (MODE != 2 && zero) acc[m][r] = _mm512_fmadd_ps(zw, _mm512_loadu_ps(a.xsum.data() + am), acc[m][r]);
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int r = 0; r < R; ++r) {
      float y = _mm512_reduce_add_ps(acc[m][r]);
      if constexpr (MODE == 2) y *= scale8[n + r];
      acc_out[m * R + r] = y;  // (M, R) scratch
    }
}

template <int M, int MODE>
void rows(const Acts& a, const uint8_t* wq, int64_t row_bytes, const uint16_t* scale, const uint16_t* zero,
          const float* scale8, __m512i lut, int64_t G, int64_t g, const float* bias, float* out, int64_t N, int64_t n0,
          int64_t n1) {
  constexpr int R = M <= 1 ? QG_ROWS1 : (M <= 2 ? 2 : 1);
  float tmp[M * R];
  int64_t n = n0;
  for (; n + R <= n1; n += R) {
    block<M, R, MODE>(a, wq, row_bytes, scale, zero, scale8, lut, G, g, tmp, n);
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < R; ++r) out[m * N + n + r] = tmp[m * R + r] + (bias ? bias[n + r] : 0.f);
  }
  for (; n < n1; ++n) {
    float one[M];
    block<M, 1, MODE>(a, wq, row_bytes, scale, zero, scale8, lut, G, g, one, n);
    for (int m = 0; m < M; ++m) out[m * N + n] = one[m] + (bias ? bias[n] : 0.f);
  }
}

template <int MODE>
void run(const Acts& a, const uint8_t* wq, int64_t row_bytes, const uint16_t* scale, const uint16_t* zero,
         const float* scale8, __m512i lut, int64_t G, int64_t g, const float* bias, float* out, int64_t M, int64_t N) {
  const int64_t grain = std::max<int64_t>(16, N / (4 * std::max(1, at::get_num_threads())));
  auto body = [&](auto mc) {
    constexpr int MM = decltype(mc)::value;
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      rows<MM, MODE>(a, wq, row_bytes, scale, zero, scale8, lut, G, g, bias, out, N, n0, n1);
    });
  };
  switch (M) {
    case 1: body(std::integral_constant<int, 1>{}); break;
    case 2: body(std::integral_constant<int, 2>{}); break;
    case 3: body(std::integral_constant<int, 3>{}); break;
    case 4: body(std::integral_constant<int, 4>{}); break;
    case 5: body(std::integral_constant<int, 5>{}); break;
    case 6: body(std::integral_constant<int, 6>{}); break;
    case 7: body(std::integral_constant<int, 7>{}); break;
    default: body(std::integral_constant<int, 8>{}); break;
  }
}
#else
constexpr bool kHaveKernel = false;
#endif

torch::Tensor prepare_x(const torch::Tensor& x, int64_t K) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K, "x must be (M, ", K, "), got ", x.sizes());
  TORCH_CHECK(x.size(0) >= 1 && x.size(0) <= kMaxRows, "1..", kMaxRows, " activation rows, got ", x.size(0));
  return x.to(torch::kFloat32).contiguous();
}

}  // namespace

bool available() { return kHaveKernel; }

// x (M, K) float/bf16; wq (N, K/2) uint8 in the lane layout; scale, zero (N, G) bf16 (zero may be None);
// lut (16,) uint8 = palette + 128 or None (int4); bias (N,) fp32 or None -> (M, N) fp32.
torch::Tensor q4_linear(const torch::Tensor& x, const torch::Tensor& wq, const torch::Tensor& scale,
                        const c10::optional<torch::Tensor>& zero, const c10::optional<torch::Tensor>& lut,
                        int64_t group, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(kHaveKernel, "built without AVX-512 VNNI");
  const int64_t N = wq.size(0), K = wq.size(1) * 2, G = K / group;
  TORCH_CHECK(group % 8 == 0 && K % group == 0, "bad group ", group, " for K ", K);
  TORCH_CHECK(wq.dtype() == torch::kUInt8 && wq.is_contiguous(), "wq must be contiguous uint8");
  TORCH_CHECK(scale.dtype() == torch::kBFloat16 && scale.is_contiguous() && scale.size(0) == N && scale.size(1) == G,
              "scale must be contiguous bf16 (N, G)");
  const bool palette = lut.has_value() && lut->defined();
  const torch::Tensor xf = prepare_x(x, K);
  const int64_t M = xf.size(0);
  Acts a = quantize_acts(xf.data_ptr<float>(), M, K, group, palette ? 128.f : 8.f);
  auto out = torch::empty({M, N}, torch::kFloat32);
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  const uint16_t* zp = nullptr;
  if (zero.has_value() && zero->defined()) {
    TORCH_CHECK(zero->dtype() == torch::kBFloat16 && zero->is_contiguous() && zero->sizes() == scale.sizes(),
                "zero must be contiguous bf16 like scale");
    zp = reinterpret_cast<const uint16_t*>(zero->data_ptr());
  }
  const float* bp = nullptr;
  torch::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = bias->to(torch::kFloat32).contiguous();
    bp = b.data_ptr<float>();
  }
  const uint16_t* sp = reinterpret_cast<const uint16_t*>(scale.data_ptr());
  if (palette) {
    TORCH_CHECK(lut->dtype() == torch::kUInt8 && lut->numel() == 16, "lut must be 16 uint8");
    const torch::Tensor l = lut->contiguous();
    const __m512i lv = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(l.data_ptr())));
    run<1>(a, wq.data_ptr<uint8_t>(), K / 2, sp, zp, nullptr, lv, G, group, bp, out.data_ptr<float>(), M, N);
  } else {
    run<0>(a, wq.data_ptr<uint8_t>(), K / 2, sp, zp, nullptr, _mm512_setzero_si512(), G, group, bp,
           out.data_ptr<float>(), M, N);
  }
#endif
  return out;
}

// x (M, K); wq (N, K) uint8 = int8 weight + 128 in the lane layout (g = 32); scale (N,) fp32 -> (M, N) fp32.
torch::Tensor q8_linear(const torch::Tensor& x, const torch::Tensor& wq, const torch::Tensor& scale,
                        const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(kHaveKernel, "built without AVX-512 VNNI");
  const int64_t N = wq.size(0), K = wq.size(1), group = 32;
  TORCH_CHECK(K % group == 0, "int8 kernel needs K % 32 == 0, got ", K);
  TORCH_CHECK(wq.dtype() == torch::kUInt8 && wq.is_contiguous(), "wq must be contiguous uint8");
  TORCH_CHECK(scale.dtype() == torch::kFloat32 && scale.is_contiguous() && scale.numel() == N, "scale: (N,) fp32");
  const torch::Tensor xf = prepare_x(x, K);
  const int64_t M = xf.size(0);
  Acts a = quantize_acts(xf.data_ptr<float>(), M, K, group, 128.f);
  auto out = torch::empty({M, N}, torch::kFloat32);
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  const float* bp = nullptr;
  torch::Tensor b;
  if (bias.has_value() && bias->defined()) {
    b = bias->to(torch::kFloat32).contiguous();
    bp = b.data_ptr<float>();
  }
  run<2>(a, wq.data_ptr<uint8_t>(), K, nullptr, nullptr, scale.data_ptr<float>(), _mm512_setzero_si512(), K / group,
         group, bp, out.data_ptr<float>(), M, N);
#endif
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available, "whether the build has the AVX-512 VNNI kernels");
  m.def("q4_linear", &q4_linear, "4-bit codes (int4 or palette), group scales: y = x @ W^T (+ bias), 1..8 rows",
        py::arg("x"), py::arg("wq"), py::arg("scale"), py::arg("zero"), py::arg("lut"), py::arg("group"),
        py::arg("bias"));
  m.def("q8_linear", &q8_linear, "int8 per channel: y = x @ W^T (+ bias), 1..8 rows", py::arg("x"), py::arg("wq"),
        py::arg("scale"), py::arg("bias"));
}
