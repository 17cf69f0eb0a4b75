// QuantDecodePlan: the whole decode step of a model whose projections are 4-bit (int4 or block palettes) in one call,
// batch 1, for 1..8 new tokens: embedding rows (a float, int4 or int8 table), every layer as quant/fused.py's
// int4_decode_step computes it, the final norm and the quantized head (4-bit or int8 layout). Same kernels (the GEMV
// core of quant_kernels.h, the norm / RoPE / attention of decode_kernels.h), same order, same roundings as the fused
// Python step, so the logits are equal bit for bit (tests/llm/kernels/test_quant_plan.py), without the ~25
// Python-issued ops per layer. A row of a block is computed exactly as the row alone (attention per row, causal
// inside the block; the GEMV treats rows independently), so a verification block gives plain decoding's logits.
// Compile with -ffp-contract=off (quant_plan.py), like the decode ops.
#include "decode_kernels.h"
#include "quant_kernels.h"
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using namespace albumen_decode;
using albumen_quant::Acts;
constexpr int64_t kRows = albumen_quant::kMaxRows;  // rows one call takes (speculative verification: k + 1 <= 8)

void check_tensor(const torch::Tensor& t, at::ScalarType dtype, std::vector<int64_t> shape, const char* what) {
  TORCH_CHECK(t.defined() && t.device().is_cpu() && t.is_contiguous(), "QuantDecodePlan: ", what,
              " must be a contiguous CPU tensor");
  TORCH_CHECK(t.scalar_type() == dtype, "QuantDecodePlan: ", what, " has dtype ", t.scalar_type(), ", expected ",
              dtype);
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), "QuantDecodePlan: ", what, " has shape ", t.sizes(),
              ", expected ", at::IntArrayRef(shape));
}

// One product's weight in the GEMV's blocked layout (quant_gemv.py: Q4Layout, or Q8Layout when scale8 is given).
struct QuantWeight {
  torch::Tensor blocks;  // (ceil(n / 4), block_bytes) uint8
  torch::Tensor scale8;  // int8 layout: (4 * ceil(n / 4),) fp32 row scales; undefined for 4-bit codes
  uint8_t lut[16] = {};  // palette + 128 (4-bit palettes), else unused
  bool palette = false;
  int64_t n = 0, k = 0, group = 32;
  bool has_zero = false;

  QuantWeight() = default;
  QuantWeight(torch::Tensor blocks_, int64_t n_, int64_t k_, int64_t group_, bool has_zero_,
              const c10::optional<torch::Tensor>& lut_, const c10::optional<torch::Tensor>& scale8_)
      : blocks(std::move(blocks_)), n(n_), k(k_), group(group_), has_zero(has_zero_) {
    const int64_t nb = (n + albumen_quant::kBlockRows - 1) / albumen_quant::kBlockRows;
    if (scale8_.has_value() && scale8_->defined()) {  // int8 per channel, groups of 32 for the activations
      scale8 = *scale8_;
      TORCH_CHECK(k % 32 == 0, "QuantWeight: int8 layout needs k % 32 == 0");
      group = 32;
      check_tensor(blocks, at::kByte, {nb, albumen_quant::kBlockRows * k}, "int8 blocks");
      check_tensor(scale8, at::kFloat, {nb * albumen_quant::kBlockRows}, "int8 scales");
      return;
    }
    TORCH_CHECK(group % 8 == 0 && k % group == 0, "QuantWeight: bad group ", group, " for k ", k);
    check_tensor(blocks, at::kByte, {nb, albumen_quant::q4_block_bytes(k, group, has_zero)}, "4-bit blocks");
    if (lut_.has_value() && lut_->defined()) {
      check_tensor(*lut_, at::kByte, {16}, "lut");
      std::memcpy(lut, lut_->data_ptr<uint8_t>(), 16);
      palette = true;
    }
  }

  // x (M, k) fp32 -> out (M, n) fp32 (no bias), exactly as quant_gemv's q4_linear / q8_linear compute it.
  void apply(const float* x, int64_t M, float* out, Acts& acts) const {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
    const uint8_t* w = blocks.data_ptr<uint8_t>();
    const int64_t nb = blocks.size(0), bb = blocks.size(1);
    if (scale8.defined()) {
      albumen_quant::quantize_acts(acts, x, M, k, 32, 128.f);
      albumen_quant::run<2>(acts, w, bb, nb, k / 32, 32, false, scale8.data_ptr<float>(), _mm512_setzero_si512(),
                            nullptr, out, M, n);
    } else if (palette) {
      albumen_quant::quantize_acts(acts, x, M, k, group, 128.f);
      const __m512i lv = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
      albumen_quant::run<1>(acts, w, bb, nb, k / group, group, has_zero, nullptr, lv, nullptr, out, M, n);
    } else {
      albumen_quant::quantize_acts(acts, x, M, k, group, 8.f);
      albumen_quant::run<0>(acts, w, bb, nb, k / group, group, has_zero, nullptr, _mm512_setzero_si512(), nullptr,
                            out, M, n);
    }
#else
    TORCH_CHECK(false, "QuantDecodePlan: built without AVX-512 VNNI");
#endif
  }
};

// One decoder layer: norms, q/k/v as one product on concatenated rows (or three), o, gate/up as one product (or
// two), down, and the layer's KV caches (B, n_kv, S, hd), sequence 0 used. Biases: (n,) per q/k/v product or empty.
struct QuantLayer {
  torch::Tensor in_norm, post_norm;
  std::vector<QuantWeight> qkv;
  std::vector<torch::Tensor> qkv_bias;
  QuantWeight o;
  std::vector<QuantWeight> gate_up;
  QuantWeight down;
  torch::Tensor k_cache, v_cache;

  QuantLayer(torch::Tensor in_norm_, torch::Tensor post_norm_, std::vector<QuantWeight> qkv_,
             std::vector<torch::Tensor> qkv_bias_, QuantWeight o_, std::vector<QuantWeight> gate_up_,
             QuantWeight down_, torch::Tensor k_cache_, torch::Tensor v_cache_)
      : in_norm(std::move(in_norm_)), post_norm(std::move(post_norm_)), qkv(std::move(qkv_)),
        qkv_bias(std::move(qkv_bias_)), o(std::move(o_)), gate_up(std::move(gate_up_)), down(std::move(down_)),
        k_cache(std::move(k_cache_)), v_cache(std::move(v_cache_)) {
    TORCH_CHECK(qkv.size() == 1 || qkv.size() == 3, "QuantLayer: q/k/v as 1 or 3 products");
    TORCH_CHECK(qkv_bias.size() == qkv.size(), "QuantLayer: one bias (or an empty tensor) per q/k/v product");
    TORCH_CHECK(gate_up.size() == 1 || gate_up.size() == 2, "QuantLayer: gate/up as 1 or 2 products");
  }
};

class QuantDecodePlan {
 public:
  // embed_kind "dense": embed = [weight (V, D) in the model dtype]; "int4": [codes (V, D/2) uint8 (element 2j in the
  // low nibble), scale (V, G), zero (V, G) or empty; bf16 or fp32] with embed_group; "int8": [q (V, D) int8,
  // scale (V,) fp32]. cos/sin: (S', hd) RoPE tables for every cache position, in the model dtype (which they define).
  QuantDecodePlan(std::string embed_kind, std::vector<torch::Tensor> embed, int64_t embed_group,
                  std::vector<QuantLayer> layers, torch::Tensor norm, QuantWeight head, torch::Tensor cos,
                  torch::Tensor sin, double eps, int64_t n_heads, int64_t n_kv)
      : embed_kind_(std::move(embed_kind)), embed_(std::move(embed)), embed_group_(embed_group),
        layers_(std::move(layers)), norm_(std::move(norm)), head_(std::move(head)), cos_(std::move(cos)),
        sin_(std::move(sin)), eps_(eps), nh_(n_heads), nkv_(n_kv) {
    dt_ = cos_.scalar_type();
    TORCH_CHECK(dt_ == at::kFloat || dt_ == at::kBFloat16, "QuantDecodePlan: fp32 or bf16 only");
    TORCH_CHECK(!layers_.empty(), "QuantDecodePlan: no layers");
    TORCH_CHECK(nh_ > 0 && nkv_ > 0 && nh_ % nkv_ == 0, "QuantDecodePlan: head counts");
    hd_ = cos_.size(1);
    D_ = norm_.size(0);
    V_ = head_.n;
    TORCH_CHECK(hd_ % 2 == 0 && head_.k == D_, "QuantDecodePlan: head dim / head shape");
    check_tensor(norm_, dt_, {D_}, "norm");
    check_tensor(cos_, dt_, {cos_.size(0), hd_}, "cos");
    check_tensor(sin_, dt_, {cos_.size(0), hd_}, "sin");
    check_embedding();
    const int64_t nq = nh_ * hd_, nk = nkv_ * hd_;
    F_ = layers_[0].down.k;
    S_ = layers_[0].k_cache.size(2);
    TORCH_CHECK(cos_.size(0) >= S_, "QuantDecodePlan: RoPE tables shorter than the cache");
    int64_t widest_in = std::max<int64_t>(F_, std::max(nq, D_)), widest_out = V_;
    for (auto& l : layers_) {
      check_tensor(l.in_norm, dt_, {D_}, "input_layernorm");
      check_tensor(l.post_norm, dt_, {D_}, "post_attention_layernorm");
      int64_t rows = 0;
      for (size_t i = 0; i < l.qkv.size(); ++i) {
        TORCH_CHECK(l.qkv[i].k == D_, "QuantDecodePlan: q/k/v input size");
        if (l.qkv_bias[i].numel()) {
          check_tensor(l.qkv_bias[i], at::kFloat, {l.qkv[i].n}, "q/k/v bias (fp32)");
        }
        rows += l.qkv[i].n;
      }
      TORCH_CHECK(rows == nq + 2 * nk, "QuantDecodePlan: q/k/v rows ", rows, ", expected ", nq + 2 * nk);
      if (l.qkv.size() == 3) TORCH_CHECK(l.qkv[0].n == nq && l.qkv[1].n == nk, "QuantDecodePlan: q/k/v rows");
      TORCH_CHECK(l.o.k == nq && l.o.n == D_, "QuantDecodePlan: o_proj shape");
      rows = 0;
      for (auto& w : l.gate_up) {
        TORCH_CHECK(w.k == D_, "QuantDecodePlan: gate/up input size");
        rows += w.n;
      }
      TORCH_CHECK(rows == 2 * F_ && (l.gate_up.size() == 1 || l.gate_up[0].n == F_), "QuantDecodePlan: gate/up rows");
      TORCH_CHECK(l.down.k == F_ && l.down.n == D_, "QuantDecodePlan: down_proj shape");
      for (const auto* c : {&l.k_cache, &l.v_cache}) {
        TORCH_CHECK(c->dim() == 4 && c->size(0) >= 1, "QuantDecodePlan: caches must be (B, n_kv, S, hd)");
        check_tensor(*c, dt_, {c->size(0), nkv_, S_, hd_}, "cache");
      }
      widest_out = std::max(widest_out, std::max(nq + 2 * nk, 2 * F_));
    }
    auto opt = torch::TensorOptions().dtype(dt_);
    x_ = torch::empty({kRows, D_}, opt);
    n_ = torch::empty({kRows, D_}, opt);
    qkv_ = torch::empty({kRows, nq + 2 * nk}, opt);
    qr_ = torch::empty({kRows, nq}, opt);
    att_ = torch::empty({kRows, nq}, opt);
    gu_ = torch::empty({kRows, 2 * F_}, opt);  // gate | up side by side (one product), or gate, then up apart
    up_ = torch::empty({kRows, F_}, opt);
    gate_ = torch::empty({kRows, F_}, opt);
    act_ = torch::empty({kRows, F_}, opt);
    logits_ = torch::empty({kRows, V_}, opt);
    xf_.resize(kRows * widest_in);
    yf_.resize(kRows * widest_out);
    scores_.resize(S_);
    qf_.resize(hd_);
    acc_.resize(hd_);
  }

  // Logits (1, V) for the token after `token` at position `pos` (a new tensor); writes its key and value.
  torch::Tensor logits(int64_t token, int64_t pos) { return block_logits({token}, pos); }

  // argmax of those logits (the first index of the maximum, NaN counting as the maximum, as torch.argmax).
  int64_t argmax(int64_t token, int64_t pos) {
    forward({token}, pos, logits_);
    return argmax_row(0);
  }

  // M = 1..8 tokens at positions pos .. pos+M-1: logits (M, V), row i the logits after tokens[i], equal bit for bit
  // to logits(tokens[i], pos + i) after the rows before it. Writes M keys and values.
  torch::Tensor block_logits(const std::vector<int64_t>& tokens, int64_t pos) {
    auto out = torch::empty({static_cast<int64_t>(tokens.size()), V_}, torch::TensorOptions().dtype(dt_));
    forward(tokens, pos, out);
    return out;
  }

  // The greedy token after each row of that block (M ints).
  std::vector<int64_t> block_argmax(const std::vector<int64_t>& tokens, int64_t pos) {
    forward(tokens, pos, logits_);
    std::vector<int64_t> best(tokens.size());
    for (size_t m = 0; m < tokens.size(); ++m) best[m] = argmax_row(static_cast<int64_t>(m));
    return best;
  }

  // The final normed hidden states (rows, D) of the last call (the head's input). A new tensor.
  torch::Tensor features() const { return n_.narrow(0, 0, rows_).clone(); }

  int64_t max_positions() const { return S_; }

 private:
  void check_embedding() {
    if (embed_kind_ == "dense") {
      TORCH_CHECK(embed_.size() == 1, "QuantDecodePlan: dense embedding = [weight]");
      check_tensor(embed_[0], dt_, {embed_[0].size(0), D_}, "embedding");
    } else if (embed_kind_ == "int4") {
      TORCH_CHECK(embed_.size() == 3 && embed_group_ > 0 && D_ % embed_group_ == 0 && embed_group_ % 2 == 0,
                  "QuantDecodePlan: int4 embedding = [codes, scale, zero or empty] with a group dividing D");
      const int64_t V = embed_[0].size(0), G = D_ / embed_group_;
      check_tensor(embed_[0], at::kByte, {V, D_ / 2}, "int4 embedding codes");
      const at::ScalarType st = embed_[1].scalar_type();
      TORCH_CHECK(st == at::kFloat || st == at::kBFloat16, "QuantDecodePlan: int4 embedding scales: fp32 or bf16");
      check_tensor(embed_[1], st, {V, G}, "int4 embedding scales");
      if (embed_[2].numel()) check_tensor(embed_[2], st, {V, G}, "int4 embedding zeros");
    } else if (embed_kind_ == "int8") {
      TORCH_CHECK(embed_.size() == 2, "QuantDecodePlan: int8 embedding = [q, scale]");
      check_tensor(embed_[0], at::kChar, {embed_[0].size(0), D_}, "int8 embedding");
      check_tensor(embed_[1], at::kFloat, {embed_[0].size(0)}, "int8 embedding scales");
    } else {
      TORCH_CHECK(false, "QuantDecodePlan: embedding kind must be dense, int4 or int8, got ", embed_kind_);
    }
  }

  // The embedding row of `token` in the model dtype, computed as the table's rows() does (fp32), then rounded.
  template <typename T>
  void embed_row(int64_t token, T* x) const {
    TORCH_CHECK(token >= 0 && token < embed_[0].size(0), "QuantDecodePlan: token ", token, " out of range");
    if (embed_kind_ == "dense") {
      std::memcpy(x, embed_[0].data_ptr<T>() + token * D_, D_ * sizeof(T));
    } else if (embed_kind_ == "int4") {
      const uint8_t* c = embed_[0].data_ptr<uint8_t>() + token * (D_ / 2);
      const int64_t G = D_ / embed_group_;
      if (embed_[1].scalar_type() == at::kFloat) {
        int4_row<T, float>(c, embed_[1].data_ptr<float>() + token * G,
                           embed_[2].numel() ? embed_[2].data_ptr<float>() + token * G : nullptr, x);
      } else {
        using BF = c10::BFloat16;
        int4_row<T, BF>(c, embed_[1].data_ptr<BF>() + token * G,
                        embed_[2].numel() ? embed_[2].data_ptr<BF>() + token * G : nullptr, x);
      }
    } else {
      const int8_t* q = embed_[0].data_ptr<int8_t>() + token * D_;
      const float s = embed_[1].data_ptr<float>()[token];
      for (int64_t i = 0; i < D_; ++i) x[i] = static_cast<T>(static_cast<float>(q[i]) * s);
    }
  }

  // (code - 8) * scale (+ zero) in fp32, as Int4Linear.rows computes it, rounded to the model dtype.
  template <typename T, typename S>
  void int4_row(const uint8_t* codes, const S* scale, const S* zero, T* x) const {
    for (int64_t i = 0; i < D_; ++i) {
      const int code = (i % 2) ? codes[i / 2] >> 4 : codes[i / 2] & 0x0F;
      float w = (static_cast<float>(code) - 8.f) * static_cast<float>(scale[i / embed_group_]);
      if (zero) w = w + static_cast<float>(zero[i / embed_group_]);
      x[i] = static_cast<T>(w);
    }
  }

  int64_t argmax_row(int64_t m) const {
    if (dt_ == at::kFloat) return albumen_decode::argmax_of(logits_.data_ptr<float>() + m * V_, V_);
    return albumen_decode::argmax_of(logits_.data_ptr<c10::BFloat16>() + m * V_, V_);
  }

  void forward(const std::vector<int64_t>& tokens, int64_t pos, torch::Tensor& out) {
    const int64_t M = static_cast<int64_t>(tokens.size());
    TORCH_CHECK(M >= 1 && M <= kRows, "QuantDecodePlan: 1..", kRows, " tokens per call, got ", M);
    TORCH_CHECK(pos >= 0 && pos + M <= S_, "QuantDecodePlan: positions ", pos, "..", pos + M - 1,
                " beyond the cache (", S_, ")");
    rows_ = M;
    if (dt_ == at::kFloat) {
      step<float>(tokens.data(), M, pos, out.data_ptr<float>());
    } else {
      step<c10::BFloat16>(tokens.data(), M, pos, out.data_ptr<c10::BFloat16>());
    }
  }

  // The GEMV's fp32 input: the rows themselves (fp32) or their exact fp32 copy (bf16).
  template <typename T>
  const float* as_float(const T* x, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
      return x;
    } else {
      for (int64_t i = 0; i < n; ++i) xf_[i] = static_cast<float>(x[i]);
      return xf_.data();
    }
  }

  // x (M, w.k) in T -> dst rows (stride ld) in T: the product rounded to T, then (+ bias, in T) and (+ residual,
  // in T), each a separately rounded op as in the Python step.
  template <typename T>
  void product(const QuantWeight& w, const T* x, int64_t M, T* dst, int64_t ld, const float* bias = nullptr,
               bool residual = false) {
    const float* xf = as_float(x, M * w.k);
    float* y = yf_.data();
    w.apply(xf, M, y, acts_);
    for (int64_t m = 0; m < M; ++m) {
      T* d = dst + m * ld;
      const float* ym = y + m * w.n;
      for (int64_t i = 0; i < w.n; ++i) {
        T v = static_cast<T>(ym[i]);
        if (bias) v = static_cast<T>(bias[i] + static_cast<float>(v));
        d[i] = residual ? static_cast<T>(static_cast<float>(d[i]) + static_cast<float>(v)) : v;
      }
    }
  }

  template <typename T>
  void step(const int64_t* tokens, int64_t M, int64_t pos, T* out) {
    const int64_t D = D_, hd = hd_, F = F_, S = S_, nq = nh_ * hd_, nk = nkv_ * hd_, groups = nh_ / nkv_;
    const int64_t ldq = nq + 2 * nk;
    T *x = x_.data_ptr<T>(), *n = n_.data_ptr<T>(), *qkv = qkv_.data_ptr<T>(), *qr = qr_.data_ptr<T>();
    T *att = att_.data_ptr<T>(), *act = act_.data_ptr<T>();
    for (int64_t m = 0; m < M; ++m) embed_row<T>(tokens[m], x + m * D);
    for (auto& l : layers_) {
      rms_norm_rows<T>(x, l.in_norm.data_ptr<T>(), n, M, D, eps_);
      int64_t col = 0;  // q | k | v side by side in qkv (M, nq + 2 nk)
      for (size_t i = 0; i < l.qkv.size(); ++i) {
        const float* b = l.qkv_bias[i].numel() ? l.qkv_bias[i].data_ptr<float>() : nullptr;
        product<T>(l.qkv[i], n, M, qkv + col, ldq, b);
        col += l.qkv[i].n;
      }
      T* kc = l.k_cache.data_ptr<T>();  // (B, nkv, S, hd): sequence 0
      T* vc = l.v_cache.data_ptr<T>();
      for (int64_t m = 0; m < M; ++m) {  // RoPE; the M keys (rotated) and values go into the caches
        const T* c = cos_.data_ptr<T>() + (pos + m) * hd;
        const T* s = sin_.data_ptr<T>() + (pos + m) * hd;
        const T* row = qkv + m * ldq;
        for (int64_t h = 0; h < nh_; ++h) rope_row<T>(row + h * hd, 1, c, s, qr + m * nq + h * hd, hd);
        for (int64_t j = 0; j < nkv_; ++j) {
          rope_row<T>(row + nq + j * hd, 1, c, s, kc + (j * S + pos + m) * hd, hd);
          std::memcpy(vc + (j * S + pos + m) * hd, row + nq + nk + j * hd, hd * sizeof(T));
        }
      }
      for (int64_t m = 0; m < M; ++m)  // row m sees positions 0 .. pos + m (causal inside the block)
        for (int64_t h = 0; h < nh_; ++h) {
          const int64_t j = h / groups;
          attend_one_head<T>(qr + m * nq + h * hd, kc + j * S * hd, vc + j * S * hd, hd, hd, pos + m + 1, hd,
                             qf_.data(), scores_.data(), acc_.data(), att + m * nq + h * hd);
        }
      product<T>(l.o, att, M, x, D, nullptr, true);  // h = x + o(attention)
      rms_norm_rows<T>(x, l.post_norm.data_ptr<T>(), n, M, D, eps_);
      // SiLU by ATen on the same views as the Python step (gate: the left half of gate|up, or its own tensor), so
      // its vectorized and tail elements round the same way
      torch::Tensor act_rows = act_.narrow(0, 0, M);
      const T* up;
      int64_t ldu;
      if (l.gate_up.size() == 1) {
        product<T>(l.gate_up[0], n, M, gu_.data_ptr<T>(), 2 * F);  // (M, 2F): gate | up
        at::silu_out(act_rows, gu_.narrow(0, 0, M).narrow(1, 0, F));
        up = gu_.data_ptr<T>() + F;
        ldu = 2 * F;
      } else {
        product<T>(l.gate_up[0], n, M, gate_.data_ptr<T>(), F);
        product<T>(l.gate_up[1], n, M, up_.data_ptr<T>(), F);
        at::silu_out(act_rows, gate_.narrow(0, 0, M));
        up = up_.data_ptr<T>();
        ldu = F;
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t i = 0; i < F; ++i)
          act[m * F + i] = static_cast<T>(static_cast<float>(act[m * F + i]) * static_cast<float>(up[m * ldu + i]));
      product<T>(l.down, act, M, x, D, nullptr, true);  // x = h + down(silu(gate) * up)
    }
    rms_norm_rows<T>(x, norm_.data_ptr<T>(), n, M, D, eps_);
    product<T>(head_, n, M, out, V_);  // (M, V)
  }

  std::string embed_kind_;
  std::vector<torch::Tensor> embed_;
  int64_t embed_group_;
  std::vector<QuantLayer> layers_;
  torch::Tensor norm_;
  QuantWeight head_;
  torch::Tensor cos_, sin_;
  double eps_;
  int64_t nh_, nkv_, D_ = 0, V_ = 0, hd_ = 0, S_ = 0, F_ = 0, rows_ = 0;
  at::ScalarType dt_;
  torch::Tensor x_, n_, qkv_, qr_, att_, gu_, up_, gate_, act_, logits_;
  std::vector<float> xf_, yf_, scores_, qf_, acc_;
  Acts acts_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<QuantWeight>(m, "QuantWeight", "one product's weight in the quantized GEMV's blocked layout")
      .def(py::init<torch::Tensor, int64_t, int64_t, int64_t, bool, const c10::optional<torch::Tensor>&,
                    const c10::optional<torch::Tensor>&>(),
           py::arg("blocks"), py::arg("n"), py::arg("k"), py::arg("group"), py::arg("has_zero"), py::arg("lut"),
           py::arg("scale8"))
      .def_readonly("n", &QuantWeight::n)
      .def_readonly("k", &QuantWeight::k);
  py::class_<QuantLayer>(m, "QuantLayer", "one decoder layer's norms, quantized products and KV caches")
      .def(py::init<torch::Tensor, torch::Tensor, std::vector<QuantWeight>, std::vector<torch::Tensor>, QuantWeight,
                    std::vector<QuantWeight>, QuantWeight, torch::Tensor, torch::Tensor>(),
           py::arg("in_norm"), py::arg("post_norm"), py::arg("qkv"), py::arg("qkv_bias"), py::arg("o"),
           py::arg("gate_up"), py::arg("down"), py::arg("k_cache"), py::arg("v_cache"));
  py::class_<QuantDecodePlan>(m, "QuantDecodePlan", "the whole decode step of a 4-bit model, batch 1, 1..8 rows")
      .def(py::init<std::string, std::vector<torch::Tensor>, int64_t, std::vector<QuantLayer>, torch::Tensor,
                    QuantWeight, torch::Tensor, torch::Tensor, double, int64_t, int64_t>(),
           py::arg("embed_kind"), py::arg("embed"), py::arg("embed_group"), py::arg("layers"), py::arg("norm"),
           py::arg("head"), py::arg("cos"), py::arg("sin"), py::arg("eps"), py::arg("n_heads"), py::arg("n_kv"))
      .def("logits", &QuantDecodePlan::logits, "logits (1, V) after token at pos", py::arg("token"), py::arg("pos"))
      .def("argmax", &QuantDecodePlan::argmax, "the greedy next token after token at pos", py::arg("token"),
           py::arg("pos"))
      .def("block_logits", &QuantDecodePlan::block_logits, "logits (M, V) of M = 1..8 tokens at pos..pos+M-1",
           py::arg("tokens"), py::arg("pos"))
      .def("block_argmax", &QuantDecodePlan::block_argmax, "the greedy token after each of M = 1..8 tokens",
           py::arg("tokens"), py::arg("pos"))
      .def("features", &QuantDecodePlan::features, "the final normed hidden states of the last call's rows")
      .def_property_readonly("max_positions", &QuantDecodePlan::max_positions);
}
