// Python bindings of the dense kernels: y = x @ W^T (+ bias) for 1..8 rows, fp32 or bf16 on the row-major weight
// (dense_kernels.h), and on a packed copy of it (packed_kernels.h).
#include "dense_kernels.h"
#include "packed_kernels.h"

using albumen_dense::linear_2d;
using albumen_dense::try_linear;
using albumen_dense::has_avx512_bf16;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &linear_2d, "y = x @ weight.T (+ bias): x (M <= 8, K), weight (N, K), fp32 or bf16; errors if not",
        py::arg("x"), py::arg("weight"), py::arg("bias") = py::none());
  m.def("try_linear", &try_linear, "x (..., K) @ weight.T (+ bias) -> (..., N), or None where the kernel does not apply",
        py::arg("x"), py::arg("weight"), py::arg("bias") = py::none());
  m.def("has_avx512_bf16", &has_avx512_bf16, "whether the build uses AVX-512 (and VDPBF16PS for bf16)");
  m.def("pack_weight", &albumen_packed::pack_weight,
        "(N, K) weight -> its packed copy: bf16 (ceil(N/64), ceil(K/2), 128), fp32 (ceil(N/64), K, 64)",
        py::arg("weight"));
  m.def("try_packed_linear", &albumen_packed::try_packed_linear,
        "x (..., K) @ W.T (+ bias) -> (..., N) from W's pack (pack_weight), or None where it does not apply",
        py::arg("x"), py::arg("pack"), py::arg("n"), py::arg("bias") = py::none());
}
