// Quantized matrix-vector products for decoding (Python entry points): 4-bit codes (affine int4 or a 16-entry
// palette) with group scales, and int8 per output channel; 1..8 activation rows. The layout and the kernel are
// described in quant_kernels.h.
#include "quant_kernels.h"
#include <torch/extension.h>

namespace {

using namespace albumen_quant;

torch::Tensor prepare_x(const torch::Tensor& x, int64_t K) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K, "x must be (M, ", K, "), got ", x.sizes());
  TORCH_CHECK(x.size(0) >= 1 && x.size(0) <= kMaxRows, "1..", kMaxRows, " activation rows, got ", x.size(0));
  return x.to(torch::kFloat32).contiguous();
}

}  // namespace

bool available() { return kHaveKernel; }

// x (M, K) float/bf16; wq (n_blocks, block_bytes) uint8 in the blocked layout for N rows of K inputs, group g;
// lut (16,) uint8 = palette + 128 or None (int4); bias (N,) or None -> (M, N) fp32.
torch::Tensor q4_linear(const torch::Tensor& x, const torch::Tensor& wq, int64_t N, int64_t K, int64_t group,
                        bool has_zero, const c10::optional<torch::Tensor>& lut,
                        const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(kHaveKernel, "built without AVX-512 VNNI");
  TORCH_CHECK(group % 8 == 0 && K % group == 0, "bad group ", group, " for K ", K);
  TORCH_CHECK(wq.dtype() == torch::kUInt8 && wq.is_contiguous() && wq.dim() == 2, "wq must be contiguous 2-D uint8");
  const int64_t G = K / group;
  const int64_t block_bytes = q4_block_bytes(K, group, has_zero);
  TORCH_CHECK(wq.size(0) == (N + kBlockRows - 1) / kBlockRows && wq.size(1) == block_bytes,
              "wq must be (", (N + kBlockRows - 1) / kBlockRows, ", ", block_bytes, ") for N=", N, ", K=", K);
  const bool palette = lut.has_value() && lut->defined();
  const torch::Tensor xf = prepare_x(x, K);
  const int64_t M = xf.size(0);
  Acts a;
  quantize_acts(a, xf.data_ptr<float>(), M, K, group, palette ? 128.f : 8.f);
  auto out = torch::empty({M, N}, torch::kFloat32);
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  const float* bp = nullptr;
  torch::Tensor b;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == N, "bias must have ", N, " entries");
    b = bias->to(torch::kFloat32).contiguous();
    bp = b.data_ptr<float>();
  }
  __m512i lv = _mm512_setzero_si512();
  if (palette) {
    TORCH_CHECK(lut->dtype() == torch::kUInt8 && lut->numel() == 16, "lut must be 16 uint8");
    const torch::Tensor l = lut->contiguous();
    lv = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(l.data_ptr())));
    run<1>(a, wq.data_ptr<uint8_t>(), block_bytes, wq.size(0), G, group, has_zero, nullptr, lv, bp,
           out.data_ptr<float>(), M, N);
  } else {
    run<0>(a, wq.data_ptr<uint8_t>(), block_bytes, wq.size(0), G, group, has_zero, nullptr, lv, bp,
           out.data_ptr<float>(), M, N);
  }
#endif
  return out;
}

// x (M, K); wq (n_blocks, 4 * K) uint8 = int8 weight + 128 in the blocked layout (g = 32); scale (4 * n_blocks,)
// fp32 (padded rows: any value) -> (M, N) fp32.
torch::Tensor q8_linear(const torch::Tensor& x, const torch::Tensor& wq, const torch::Tensor& scale, int64_t N,
                        const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(kHaveKernel, "built without AVX-512 VNNI");
  const int64_t group = 32;
  TORCH_CHECK(wq.dtype() == torch::kUInt8 && wq.is_contiguous() && wq.dim() == 2, "wq must be contiguous 2-D uint8");
  const int64_t K = wq.size(1) / kBlockRows;
  TORCH_CHECK(K % group == 0 && wq.size(0) == (N + kBlockRows - 1) / kBlockRows, "int8 layout does not match N=", N);
  TORCH_CHECK(scale.dtype() == torch::kFloat32 && scale.is_contiguous() && scale.numel() == wq.size(0) * kBlockRows,
              "scale: (", wq.size(0) * kBlockRows, ",) fp32");
  const torch::Tensor xf = prepare_x(x, K);
  const int64_t M = xf.size(0);
  Acts a;
  quantize_acts(a, xf.data_ptr<float>(), M, K, group, 128.f);
  auto out = torch::empty({M, N}, torch::kFloat32);
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  const float* bp = nullptr;
  torch::Tensor b;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == N, "bias must have ", N, " entries");
    b = bias->to(torch::kFloat32).contiguous();
    bp = b.data_ptr<float>();
  }
  run<2>(a, wq.data_ptr<uint8_t>(), wq.size(1), wq.size(0), K / group, group, false, scale.data_ptr<float>(),
         _mm512_setzero_si512(), bp, out.data_ptr<float>(), M, N);
#endif
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available, "whether the build has the AVX-512 VNNI kernels");
  m.def("q4_linear", &q4_linear, "4-bit codes (int4 or palette), group scales: y = x @ W^T (+ bias), 1..8 rows",
        py::arg("x"), py::arg("wq"), py::arg("n"), py::arg("k"), py::arg("group"), py::arg("has_zero"),
        py::arg("lut"), py::arg("bias"));
  m.def("q8_linear", &q8_linear, "int8 per channel: y = x @ W^T (+ bias), 1..8 rows", py::arg("x"), py::arg("wq"),
        py::arg("scale"), py::arg("n"), py::arg("bias"));
}
