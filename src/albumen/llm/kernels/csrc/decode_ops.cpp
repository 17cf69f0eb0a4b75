// Small fused ops for one decode step, where PyTorch spends more time dispatching than computing:
//   rms_norm(x, weight, eps)      = weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype)   (HF's order of casts)
//   rope(x, cos, sin)             = x * cos + rotate_half(x) * sin                           (HF's "halves" layout)
//   decode_attention(q, k, v)     = softmax(q k^T / sqrt(hd)) v for a single query per head, grouped-query heads
//   decode_layer(...)             = one whole decoder layer for one new token per sequence, from the ops above and
//                                   the dense kernel, in the same order as model.py (so the same results), without
//                                   the ~25 Python module calls per layer that dominate small models
// fp32 or bf16 tensors; arithmetic in fp32. Measured on SmolLM2 decode: ~60 small ATen ops per layer become 3 calls.
#include "dense_kernels.h"
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <cmath>
#include <vector>

namespace {

template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < dim; ++i) {
      float v = static_cast<float>(xr[i]);
      ss += v * v;
    }
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(dim) + eps);
    T* yr = y + r * dim;
    for (int64_t i = 0; i < dim; ++i) {
      T h = static_cast<T>(static_cast<float>(xr[i]) * inv);  // round to the model dtype first, as HF does
      yr[i] = static_cast<T>(static_cast<float>(w[i]) * static_cast<float>(h));
    }
  }
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu(), "rms_norm: CPU tensors only");
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), "rms_norm: x and weight dtypes differ");
  const int64_t dim = x.size(-1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == dim, "rms_norm: weight must be (", dim, ",)");
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  auto y = torch::empty_like(xc);
  const int64_t rows = dim ? xc.numel() / dim : 0;
  if (x.scalar_type() == at::kFloat) {
    rms_norm_rows<float>(xc.data_ptr<float>(), wc.data_ptr<float>(), y.data_ptr<float>(), rows, dim, eps);
  } else if (x.scalar_type() == at::kBFloat16) {
    using BF = c10::BFloat16;
    rms_norm_rows<BF>(xc.data_ptr<BF>(), wc.data_ptr<BF>(), y.data_ptr<BF>(), rows, dim, eps);
  } else {
    TORCH_CHECK(false, "rms_norm: fp32 or bf16 only");
  }
  return y;
}

// q (B, nh, 1, hd); k, v (B, nkv, S, hd) with unit stride along hd (cache slices are fine) -> (B, nh, 1, hd).
template <typename T>
void attention_one_query(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out) {
  const int64_t B = q.size(0), nh = q.size(1), hd = q.size(3), nkv = k.size(1), S = k.size(2);
  const int64_t groups = nh / nkv;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  const T* qp = q.data_ptr<T>();
  const T* kp = k.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const auto qs = q.strides(), ks = k.strides(), vs = v.strides(), os = out.strides();
  std::vector<float> scores(S), acc(hd), qf(hd);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / groups;  // heads h*g .. share KV head g
      const T* qh = qp + b * qs[0] + h * qs[1];
      for (int64_t i = 0; i < hd; ++i) qf[i] = static_cast<float>(qh[i]);
      float mx = -INFINITY;
      for (int64_t s = 0; s < S; ++s) {
        const T* kr = kp + b * ks[0] + g * ks[1] + s * ks[2];
        float dot = 0.f;
#pragma omp simd reduction(+ : dot)
        for (int64_t i = 0; i < hd; ++i) dot += qf[i] * static_cast<float>(kr[i]);
        scores[s] = dot * scale;
        mx = std::max(mx, scores[s]);
      }
      float denom = 0.f;
      for (int64_t s = 0; s < S; ++s) {
        scores[s] = std::exp(scores[s] - mx);
        denom += scores[s];
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t s = 0; s < S; ++s) {
        const T* vr = vp + b * vs[0] + g * vs[1] + s * vs[2];
        const float p = scores[s] / denom;
#pragma omp simd
        for (int64_t i = 0; i < hd; ++i) acc[i] += p * static_cast<float>(vr[i]);
      }
      T* oh = op + b * os[0] + h * os[1];
      for (int64_t i = 0; i < hd; ++i) oh[i] = static_cast<T>(acc[i]);
    }
  }
}

torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "decode_attention: q (B,nh,1,hd), k/v (B,nkv,S,hd)");
  TORCH_CHECK(q.size(2) == 1, "decode_attention: one query per head");
  TORCH_CHECK(k.sizes() == v.sizes() && k.size(0) == q.size(0) && k.size(3) == q.size(3), "decode_attention: shapes");
  TORCH_CHECK(k.size(2) >= 1 && q.size(1) % k.size(1) == 0, "decode_attention: heads must group over KV heads");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && k.scalar_type() == v.scalar_type(), "decode_attention: dtypes");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1, "decode_attention: head dim must be dense");
  auto out = torch::empty({q.size(0), q.size(1), 1, q.size(3)}, q.options());
  if (q.scalar_type() == at::kFloat) {
    attention_one_query<float>(q, k, v, out);
  } else if (q.scalar_type() == at::kBFloat16) {
    attention_one_query<c10::BFloat16>(q, k, v, out);
  } else {
    TORCH_CHECK(false, "decode_attention: fp32 or bf16 only");
  }
  return out;
}

// x (B, h, T, hd) any strides, cos/sin (T, hd) -> x * cos + rotate_half(x) * sin, contiguous, with each product
// rounded to the dtype before the sum (as the PyTorch expression does, so results match exactly).
template <typename T>
void rope_into(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor& out) {
  const int64_t B = x.size(0), H = x.size(1), L = x.size(2), hd = x.size(3), half = hd / 2;
  const auto xs = x.strides();
  const T* xp = x.data_ptr<T>();
  const T* cp = cos.data_ptr<T>();
  const T* sp = sin.data_ptr<T>();
  T* op = out.data_ptr<T>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < L; ++t) {
        const T* xr = xp + b * xs[0] + h * xs[1] + t * xs[2];
        const T* c = cp + t * hd;
        const T* s = sp + t * hd;
        T* o = op + ((b * H + h) * L + t) * hd;
        for (int64_t i = 0; i < hd; ++i) {
          const float rot = i < half ? -static_cast<float>(xr[(i + half) * xs[3]]) : static_cast<float>(xr[(i - half) * xs[3]]);
          const T a = static_cast<T>(static_cast<float>(xr[i * xs[3]]) * static_cast<float>(c[i]));
          const T r = static_cast<T>(static_cast<T>(rot) * static_cast<float>(s[i]));
          o[i] = static_cast<T>(static_cast<float>(a) + static_cast<float>(r));
        }
      }
}

torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rope: x must be (B, h, T, hd) with an even hd");
  TORCH_CHECK(cos.dim() == 2 && cos.size(0) == x.size(2) && cos.size(1) == x.size(3) && cos.sizes() == sin.sizes(),
              "rope: cos and sin must be (T, hd)");
  TORCH_CHECK(x.scalar_type() == cos.scalar_type() && cos.scalar_type() == sin.scalar_type(), "rope: dtypes differ");
  auto c = cos.contiguous(), s = sin.contiguous();
  auto out = torch::empty(x.sizes(), x.options());
  if (x.scalar_type() == at::kFloat) {
    rope_into<float>(x, c, s, out);
  } else if (x.scalar_type() == at::kBFloat16) {
    rope_into<c10::BFloat16>(x, c, s, out);
  } else {
    TORCH_CHECK(false, "rope: fp32 or bf16 only");
  }
  return out;
}

bool usable(const torch::Tensor& w, at::ScalarType dtype, int64_t rows, int64_t cols) {
  return w.defined() && w.scalar_type() == dtype && w.is_contiguous() && w.dim() == 2 && w.size(0) == rows &&
         w.size(1) == cols && w.device().is_cpu();
}

bool usable_bias(const c10::optional<torch::Tensor>& b, at::ScalarType dtype, int64_t n) {
  return !b.has_value() || !b->defined() || (b->scalar_type() == dtype && b->dim() == 1 && b->size(0) == n);
}

// x (B, 1, D) -> (B, 1, D): h = x + o_proj(attn(rope(q), cache)); out = h + down(silu(gate(n)) * up(n)).
// Writes this token's key/value into the caches at `pos`. Returns None where a precondition fails (dtypes, shapes,
// contiguity, more than 8 sequences): the caller then runs the module path, which raises or handles it.
c10::optional<torch::Tensor> decode_layer(
    const torch::Tensor& x, const torch::Tensor& in_norm, const torch::Tensor& post_norm, double eps,
    const torch::Tensor& q_w, const c10::optional<torch::Tensor>& q_b, const torch::Tensor& k_w,
    const c10::optional<torch::Tensor>& k_b, const torch::Tensor& v_w, const c10::optional<torch::Tensor>& v_b,
    const torch::Tensor& o_w, const torch::Tensor& gate_w, const torch::Tensor& up_w, const torch::Tensor& down_w,
    const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor& k_cache, torch::Tensor& v_cache, int64_t pos,
    int64_t n_heads, int64_t n_kv) {
  const auto dt = x.scalar_type();
  if (x.dim() != 3 || x.size(1) != 1 || x.size(0) > albumen_dense::kMaxRows || !x.device().is_cpu()) return c10::nullopt;
  if (dt != at::kFloat && dt != at::kBFloat16) return c10::nullopt;
  const int64_t B = x.size(0), D = x.size(2), hd = cos.size(-1), F = gate_w.size(0);
  if (k_cache.dim() != 4 || k_cache.size(0) < B || k_cache.size(1) != n_kv || k_cache.size(3) != hd ||
      k_cache.sizes() != v_cache.sizes() || k_cache.scalar_type() != dt || v_cache.scalar_type() != dt ||
      pos < 0 || pos >= k_cache.size(2) || cos.scalar_type() != dt || sin.scalar_type() != dt || cos.numel() != hd)
    return c10::nullopt;
  if (!usable(q_w, dt, n_heads * hd, D) || !usable(k_w, dt, n_kv * hd, D) || !usable(v_w, dt, n_kv * hd, D) ||
      !usable(o_w, dt, D, n_heads * hd) || !usable(gate_w, dt, F, D) || !usable(up_w, dt, F, D) ||
      !usable(down_w, dt, D, F) || !usable_bias(q_b, dt, n_heads * hd) || !usable_bias(k_b, dt, n_kv * hd) ||
      !usable_bias(v_b, dt, n_kv * hd) || in_norm.scalar_type() != dt || post_norm.scalar_type() != dt)
    return c10::nullopt;
  using albumen_dense::linear_2d;
  const c10::optional<torch::Tensor> none = c10::nullopt;
  auto x2 = x.reshape({B, D}).contiguous();
  auto h = rms_norm(x2, in_norm, eps);                                                    // (B, D)
  auto q = rope(linear_2d(h, q_w, q_b).view({B, 1, n_heads, hd}).transpose(1, 2), cos.view({1, hd}),
                sin.view({1, hd}));                                                      // (B, nh, 1, hd)
  auto k = rope(linear_2d(h, k_w, k_b).view({B, 1, n_kv, hd}).transpose(1, 2), cos.view({1, hd}),
                sin.view({1, hd}));                                                      // (B, nkv, 1, hd)
  auto v = linear_2d(h, v_w, v_b).view({B, n_kv, hd});                                   // (B, nkv, hd)
  auto kc = k_cache.narrow(0, 0, B), vc = v_cache.narrow(0, 0, B);
  kc.select(2, pos).copy_(k.select(2, 0));
  vc.select(2, pos).copy_(v);
  auto y = decode_attention(q, kc.narrow(2, 0, pos + 1), vc.narrow(2, 0, pos + 1));      // (B, nh, 1, hd)
  auto h1 = x2 + linear_2d(y.view({B, n_heads * hd}), o_w, none);                        // (B, D)
  auto n2 = rms_norm(h1, post_norm, eps);
  auto act = at::silu(linear_2d(n2, gate_w, none)).mul_(linear_2d(n2, up_w, none));      // (B, F)
  return (h1 + linear_2d(act, down_w, none)).view({B, 1, D});
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, "weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype), fp32 or bf16");
  m.def("rope", &rope, "x * cos + rotate_half(x) * sin for x (B, h, T, hd), cos/sin (T, hd)");
  m.def("decode_layer", &decode_layer, "one decoder layer for one new token per sequence, or None if it does not apply");
  m.def("decode_attention", &decode_attention, "softmax(q k^T / sqrt(hd)) v, one query per head, grouped KV heads");
}
