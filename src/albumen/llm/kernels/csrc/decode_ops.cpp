// Small fused ops for one decode step, where PyTorch spends more time dispatching than computing:
//   rms_norm(x, weight, eps)      = weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype)   (HF's order of casts)
//   rope(x, cos, sin)             = x * cos + rotate_half(x) * sin                           (HF's "halves" layout)
//   decode_attention(q, k, v)     = softmax(q k^T / sqrt(hd)) v for a single query per head, grouped-query heads
//   decode_layer(...)             = one whole decoder layer for one new token per sequence, from the ops above and
//                                   the dense kernel, in the same order as model.py (so the same results), without
//                                   the ~25 Python module calls per layer that dominate small models
//   DecodePlan(...)               = the whole model step for one token (embedding, every layer, norm, head; logits or
//                                   the greedy token) in one call with preallocated buffers (batch 1)
//   HeadPlan(...)                 = a draft head's greedy draft (catch-up rows, then k tokens) in one call
// fp32 or bf16 tensors; arithmetic in fp32. Measured on SmolLM2 decode: ~60 small ATen ops per layer become 3 calls.
#include "dense_kernels.h"
#include "decode_kernels.h"
#include "packed_kernels.h"
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

using namespace albumen_decode;

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
  const T* qp = q.data_ptr<T>();
  const T* kp = k.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const auto qs = q.strides(), ks = k.strides(), vs = v.strides(), os = out.strides();
  std::vector<float> scores(S), acc(hd), qf(hd);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t g = h / groups;  // heads g*groups .. share KV head g
      attend_one_head<T>(qp + b * qs[0] + h * qs[1], kp + b * ks[0] + g * ks[1], vp + b * vs[0] + g * vs[1], ks[2],
                         vs[2], S, hd, qf.data(), scores.data(), acc.data(), op + b * os[0] + h * os[1]);
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

// x (B, h, T, hd) any strides, cos/sin (T, hd) -> out (B, h, T, hd) contiguous.
template <typename T>
void rope_into(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor& out) {
  const int64_t B = x.size(0), H = x.size(1), L = x.size(2), hd = x.size(3);
  const auto xs = x.strides();
  const T* xp = x.data_ptr<T>();
  const T* cp = cos.data_ptr<T>();
  const T* sp = sin.data_ptr<T>();
  T* op = out.data_ptr<T>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < L; ++t)
        rope_row<T>(xp + b * xs[0] + h * xs[1] + t * xs[2], xs[3], cp + t * hd, sp + t * hd,
                    op + ((b * H + h) * L + t) * hd, hd);
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
// Or a block of T = 2..8 new tokens of one sequence, x (1, T, D) at positions pos-T+1 .. pos with cos/sin (T, hd),
// causal inside the block, each row's attention the single-query call. Writes the keys/values into the caches.
// Returns None where a precondition fails (dtypes, shapes, contiguity, more than 8 rows): the caller then runs the
// module path, which raises or handles it.
c10::optional<torch::Tensor> decode_layer(
    const torch::Tensor& x, const torch::Tensor& in_norm, const torch::Tensor& post_norm, double eps,
    const torch::Tensor& q_w, const c10::optional<torch::Tensor>& q_b, const torch::Tensor& k_w,
    const c10::optional<torch::Tensor>& k_b, const torch::Tensor& v_w, const c10::optional<torch::Tensor>& v_b,
    const torch::Tensor& o_w, const torch::Tensor& gate_w, const torch::Tensor& up_w, const torch::Tensor& down_w,
    const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor& k_cache, torch::Tensor& v_cache, int64_t pos,
    int64_t n_heads, int64_t n_kv) {
  const auto dt = x.scalar_type();
  if (x.dim() != 3 || x.size(0) * x.size(1) > albumen_dense::kMaxRows || !x.device().is_cpu()) return c10::nullopt;
  if (x.size(1) > 1 && x.size(0) != 1) return c10::nullopt;  // a block of new tokens: one sequence
  if (dt != at::kFloat && dt != at::kBFloat16) return c10::nullopt;
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2), hd = cos.size(-1), F = gate_w.size(0);
  const int64_t start = pos - T + 1;  // the block's rows sit at start .. pos
  if (k_cache.dim() != 4 || k_cache.size(0) < B || k_cache.size(1) != n_kv || k_cache.size(3) != hd ||
      k_cache.sizes() != v_cache.sizes() || k_cache.scalar_type() != dt || v_cache.scalar_type() != dt ||
      start < 0 || pos >= k_cache.size(2) || cos.scalar_type() != dt || sin.scalar_type() != dt ||
      cos.numel() != T * hd || sin.numel() != T * hd)
    return c10::nullopt;
  if (!usable(q_w, dt, n_heads * hd, D) || !usable(k_w, dt, n_kv * hd, D) || !usable(v_w, dt, n_kv * hd, D) ||
      !usable(o_w, dt, D, n_heads * hd) || !usable(gate_w, dt, F, D) || !usable(up_w, dt, F, D) ||
      !usable(down_w, dt, D, F) || !usable_bias(q_b, dt, n_heads * hd) || !usable_bias(k_b, dt, n_kv * hd) ||
      !usable_bias(v_b, dt, n_kv * hd) || in_norm.scalar_type() != dt || post_norm.scalar_type() != dt)
    return c10::nullopt;
  using albumen_dense::linear_2d;
  const c10::optional<torch::Tensor> none = c10::nullopt;
  const int64_t R = B * T;
  auto c = cos.reshape({T, hd}), s = sin.reshape({T, hd});
  auto x2 = x.reshape({R, D}).contiguous();
  auto h = rms_norm(x2, in_norm, eps);                                                    // (R, D)
  auto q = rope(linear_2d(h, q_w, q_b).view({B, T, n_heads, hd}).transpose(1, 2), c, s);  // (B, nh, T, hd)
  auto k = rope(linear_2d(h, k_w, k_b).view({B, T, n_kv, hd}).transpose(1, 2), c, s);     // (B, nkv, T, hd)
  auto v = linear_2d(h, v_w, v_b).view({B, T, n_kv, hd}).transpose(1, 2);                 // (B, nkv, T, hd)
  auto kc = k_cache.narrow(0, 0, B), vc = v_cache.narrow(0, 0, B);
  kc.narrow(2, start, T).copy_(k);
  vc.narrow(2, start, T).copy_(v);
  torch::Tensor y;                                                                         // (B, nh, T, hd)
  if (T == 1) {
    y = decode_attention(q, kc.narrow(2, 0, pos + 1), vc.narrow(2, 0, pos + 1));
  } else {  // causal inside the block: row i sees positions 0 .. start+i, each row as a single-query step
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < T; ++i)
      rows.push_back(decode_attention(q.narrow(2, i, 1).contiguous(), kc.narrow(2, 0, start + i + 1),
                                      vc.narrow(2, 0, start + i + 1)));
    y = at::cat(rows, 2);
  }
  auto h1 = x2 + linear_2d(y.transpose(1, 2).reshape({R, n_heads * hd}), o_w, none);      // (R, D)
  auto n2 = rms_norm(h1, post_norm, eps);
  auto act = at::silu(linear_2d(n2, gate_w, none)).mul_(linear_2d(n2, up_w, none));      // (R, F)
  return (h1 + linear_2d(act, down_w, none)).view({B, T, D});
}


// y (M, N) = x (M, K) W (N, K)^T (+ b) with the dense kernel for M = 1..8 rows (W read once), threads over output
// rows (none with one thread). A row's result does not depend on M: each output is one accumulator's fixed sequence
// of FMAs over K, so a row inside a block equals the row alone, bit for bit (speculative verification relies on it).
template <typename T>
void gemm_rows(const T* x, const T* w, const T* b, T* y, int64_t M, int64_t N, int64_t K) {
  albumen_dense::dispatch_m<T>(M, [&](auto m) {
    constexpr int kM = decltype(m)::value;
    auto rows = [&](int64_t n0, int64_t n1) {
      if constexpr (std::is_same_v<T, float>) {
        albumen_dense::dense_f32<kM>(x, w, b, y, N, K, n0, n1);
      } else {
        albumen_dense::dense_bf16<kM>(x, w, b, y, N, K, n0, n1);
      }
    };
    const int threads = at::get_num_threads();
    if (threads == 1) {
      rows(0, N);
    } else {
      at::parallel_for(0, N, std::max<int64_t>(64, N / (8 * threads)), rows);
    }
  });
}

template <typename T>
const T* ptr_or_null(const torch::Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

// The whole single-token decode step of a Llama/Qwen2 model (batch 1) over tensors it holds: embedding row, every
// layer as decode_layer computes it (same kernels, same order, same roundings), final norm, head. Scratch buffers
// are allocated once; a step makes no ATen call except SiLU (kept so results equal the module path exactly).
// The plan shares the model's tensors: in-place weight edits are seen; new caches or swapped modules need a new plan.
class DecodePlan {
 public:
  // layers: per layer, in this order: in_norm, post_norm, q_w, q_b, k_w, k_b, v_w, v_b, o_w, gate_w, up_w, down_w,
  // k_cache, v_cache (a missing bias is an empty tensor). cos/sin: (S, hd) tables for every cache position.
  DecodePlan(torch::Tensor embed, std::vector<std::vector<torch::Tensor>> layers, torch::Tensor norm,
             torch::Tensor head, torch::Tensor cos, torch::Tensor sin, double eps, int64_t n_heads, int64_t n_kv)
      : embed_(std::move(embed)), layers_(std::move(layers)), norm_(std::move(norm)), head_(std::move(head)),
        cos_(std::move(cos)), sin_(std::move(sin)), eps_(eps), nh_(n_heads), nkv_(n_kv) {
    dt_ = embed_.scalar_type();
    TORCH_CHECK(dt_ == at::kFloat || dt_ == at::kBFloat16, "DecodePlan: fp32 or bf16 only");
    TORCH_CHECK(embed_.dim() == 2 && embed_.is_contiguous(), "DecodePlan: embedding must be (V, D) contiguous");
    D_ = embed_.size(1);
    V_ = head_.size(0);
    hd_ = cos_.size(1);
    TORCH_CHECK(nh_ > 0 && nkv_ > 0 && nh_ % nkv_ == 0 && hd_ % 2 == 0, "DecodePlan: head counts");
    TORCH_CHECK(!layers_.empty(), "DecodePlan: no layers");
    check(head_, {V_, D_}, "head");
    check(norm_, {D_}, "norm");
    check(cos_, {cos_.size(0), hd_}, "cos");
    check(sin_, {cos_.size(0), hd_}, "sin");
    S_ = layers_[0][12].size(2);
    F_ = layers_[0][9].size(0);
    TORCH_CHECK(cos_.size(0) >= S_, "DecodePlan: RoPE tables shorter than the cache");
    const int64_t nq = nh_ * hd_, nk = nkv_ * hd_;
    for (auto& l : layers_) {
      TORCH_CHECK(l.size() == 14, "DecodePlan: 14 tensors per layer");
      check(l[0], {D_}, "input_layernorm");
      check(l[1], {D_}, "post_attention_layernorm");
      check(l[2], {nq, D_}, "q_proj");
      check(l[4], {nk, D_}, "k_proj");
      check(l[6], {nk, D_}, "v_proj");
      check(l[8], {D_, nq}, "o_proj");
      check(l[9], {F_, D_}, "gate_proj");
      check(l[10], {F_, D_}, "up_proj");
      check(l[11], {D_, F_}, "down_proj");
      for (int i : {3, 5, 7})
        if (l[i].numel()) check(l[i], {i == 3 ? nq : nk}, "bias");
      for (int i : {12, 13}) {
        TORCH_CHECK(l[i].dim() == 4 && l[i].size(1) == nkv_ && l[i].size(2) == S_ && l[i].size(3) == hd_,
                    "DecodePlan: caches must be (B, n_kv, S, hd)");
        check(l[i], l[i].sizes().vec(), "cache");
      }
    }
    auto opt = embed_.options();
    constexpr int64_t R = albumen_dense::kMaxRows;  // buffers for a block of up to 8 rows
    x_ = torch::empty({R, D_}, opt);
    n_ = torch::empty({R, D_}, opt);
    o_ = torch::empty({R, D_}, opt);
    q_ = torch::empty({R, nq}, opt);
    qr_ = torch::empty({nq}, opt);
    att_ = torch::empty({R, nq}, opt);
    k_ = torch::empty({R, nk}, opt);
    v_ = torch::empty({R, nk}, opt);
    g_ = torch::empty({R, F_}, opt);
    u_ = torch::empty({R, F_}, opt);
    act_ = torch::empty({R, F_}, opt);
    logits_ = torch::empty({R, V_}, opt);
    rows_ = 0;
    scores_.resize(S_);
    qf_.resize(hd_);
    acc_.resize(hd_);
  }

  // Logits (1, V) for the token after `token` at position `pos` (a new tensor).
  torch::Tensor logits(int64_t token, int64_t pos) {
    auto out = torch::empty({1, V_}, embed_.options());
    run(&token, 1, pos, out);
    return out;
  }

  // argmax of those logits (the first index of the maximum, NaN counting as the maximum, as torch.argmax).
  int64_t argmax(int64_t token, int64_t pos) {
    run(&token, 1, pos, logits_);
    return argmax_row(0);
  }

  // A block of M = 1..8 tokens at positions pos .. pos+M-1 (speculative verification): logits (M, V), row i the
  // logits after tokens[i]. Every row sees the cache up to its own position (the block's earlier rows included) and
  // equals, bit for bit, what logits(tokens[i], pos + i) gives after the rows before it. Writes M keys and values.
  torch::Tensor block_logits(const std::vector<int64_t>& tokens, int64_t pos) {
    check_block(tokens);
    const int64_t M = static_cast<int64_t>(tokens.size());
    auto out = torch::empty({M, V_}, embed_.options());
    run(tokens.data(), M, pos, out);
    return out;
  }

  // The greedy token after each row of that block (M ints).
  std::vector<int64_t> block_argmax(const std::vector<int64_t>& tokens, int64_t pos) {
    check_block(tokens);
    const int64_t M = static_cast<int64_t>(tokens.size());
    run(tokens.data(), M, pos, logits_);
    std::vector<int64_t> best(M);
    for (int64_t m = 0; m < M; ++m) best[m] = argmax_row(m);
    return best;
  }

  // A small tree (greedy verification with alternatives): rows 0..c-1 a chain from pos (depths[m] = m), then leaves,
  // each an alternative to chain row d = depths[m] (1 <= d < c): it sees the cache up to pos + d - 1 (the chain rows
  // before d) and sits at position pos + d, but in slot pos + m. Every row equals, bit for bit, the row alone after
  // its own prefix. The greedy token after each row. If a leaf is accepted, move_kv(pos + m, pos + d) puts its
  // key/value where the sequence goes on.
  std::vector<int64_t> tree_argmax(const std::vector<int64_t>& tokens, int64_t pos, const std::vector<int64_t>& depths) {
    check_block(tokens);
    const int64_t M = static_cast<int64_t>(tokens.size());
    TORCH_CHECK(static_cast<int64_t>(depths.size()) == M, "DecodePlan: ", depths.size(), " depths for ", M, " rows");
    int64_t c = 0;
    while (c < M && depths[c] == c) ++c;
    for (int64_t m = c; m < M; ++m)
      TORCH_CHECK(depths[m] >= 1 && depths[m] < c, "DecodePlan: row ", m, " has depth ", depths[m],
                  ": leaves follow the chain (", c, " rows) and replace one of its rows 1..", c - 1);
    depth_ = depths;
    try {
      run(tokens.data(), M, pos, logits_);
    } catch (...) {
      depth_.clear();
      throw;
    }
    depth_.clear();
    std::vector<int64_t> best(M);
    for (int64_t m = 0; m < M; ++m) best[m] = argmax_row(m);
    return best;
  }

  // Copy cache slot src into slot dst in every layer (keys and values): an accepted leaf's entry to where it belongs.
  void move_kv(int64_t src, int64_t dst) {
    TORCH_CHECK(src >= 0 && src < S_ && dst >= 0 && dst < S_, "DecodePlan: slots ", src, ", ", dst, " out of range");
    for (const auto& l : layers_)
      for (int i : {12, 13}) {
        auto cache = l[i].select(0, 0);  // (nkv, S, hd)
        cache.select(1, dst).copy_(cache.select(1, src));
      }
  }

  // The final normed hidden states (rows, D) of the last call's rows (the input of the LM head): what a draft head
  // reads (speculative/drafters/head.py). A new tensor.
  torch::Tensor features() const { return n_.narrow(0, 0, rows_).clone(); }

  int64_t max_positions() const { return S_; }

  // Products on packed copies (kernels/csrc/packed_kernels.h) instead of the row-major weights: per layer the
  // packs of q, k, v, o, gate, up, down (an empty tensor keeps that product on the dense kernel), and the head's.
  // The copies are the model's (model.py makes and caches them); a row is still the same alone or in a block.
  void set_packs(std::vector<std::vector<torch::Tensor>> packs, torch::Tensor head_pack) {
    TORCH_CHECK(packs.size() == layers_.size(), "DecodePlan: ", packs.size(), " pack lists for ", layers_.size(),
                " layers");
    const int64_t nq = nh_ * hd_, nk = nkv_ * hd_;
    const int64_t shapes[7][2] = {{nq, D_}, {nk, D_}, {nk, D_}, {D_, nq}, {F_, D_}, {F_, D_}, {D_, F_}};
    for (auto& l : packs) {
      TORCH_CHECK(l.size() == 7, "DecodePlan: 7 packs per layer (q, k, v, o, gate, up, down)");
      for (int i = 0; i < 7; ++i)
        if (l[i].numel()) check_pack(l[i], shapes[i][0], shapes[i][1]);
    }
    if (head_pack.numel()) check_pack(head_pack, V_, D_);
    packs_ = std::move(packs);
    head_pack_ = std::move(head_pack);
    pack_versions_ = packed_weight_versions();
  }

 protected:
  void check(const torch::Tensor& t, std::vector<int64_t> shape, const char* what) const {
    TORCH_CHECK(t.sizes().vec() == shape, "DecodePlan: ", what, " has shape ", t.sizes(), ", expected ", shape);
    TORCH_CHECK(t.scalar_type() == dt_ && t.is_contiguous() && t.device().is_cpu(), "DecodePlan: ", what,
                " must be a contiguous CPU tensor of the embedding's dtype");
  }

  void check_block(const std::vector<int64_t>& tokens) const {
    TORCH_CHECK(!tokens.empty() && static_cast<int64_t>(tokens.size()) <= albumen_dense::kMaxRows,
                "DecodePlan: a block has 1 to ", albumen_dense::kMaxRows, " tokens, got ", tokens.size());
  }

  void run(const int64_t* tokens, int64_t M, int64_t pos, torch::Tensor& out) {
    for (int64_t m = 0; m < M; ++m)
      TORCH_CHECK(tokens[m] >= 0 && tokens[m] < embed_.size(0), "DecodePlan: token ", tokens[m], " out of range");
    TORCH_CHECK(pos >= 0 && pos + M <= S_, "DecodePlan: positions ", pos, "..", pos + M - 1,
                " are beyond the cache (", S_, " positions)");
    if (!pack_versions_.empty())
      TORCH_CHECK(packed_weight_versions() == pack_versions_,
                  "DecodePlan: a packed weight was edited after the plan was built; build a new plan");
    if (dt_ == at::kFloat) {
      step<float>(tokens, M, pos, out.data_ptr<float>());
    } else {
      step<c10::BFloat16>(tokens, M, pos, out.data_ptr<c10::BFloat16>());
    }
  }

  int64_t argmax_row(int64_t m) const {
    if (dt_ == at::kFloat) return argmax_of(logits_.data_ptr<float>() + m * V_, V_);
    return argmax_of(logits_.data_ptr<c10::BFloat16>() + m * V_, V_);
  }

  // y (M, N) = x (M, K) W^T (+ b): on W's pack when there is one, else the row-major dense kernel on W.
  template <typename T>
  void product(const T* x, const torch::Tensor& w, const torch::Tensor* pack, const T* b, T* y, int64_t M, int64_t N,
               int64_t K) const {
    if (pack != nullptr && pack->numel()) {
      albumen_packed::packed_gemm<T>(x, M, K, pack->data_ptr<T>(), N, b, y);
      return;
    }
    gemm_rows<T>(x, w.data_ptr<T>(), b, y, M, N, K);
  }

  void check_pack(const torch::Tensor& pack, int64_t N, int64_t K) const {
    TORCH_CHECK(pack.scalar_type() == dt_, "DecodePlan: a pack of dtype ", pack.scalar_type(), " for a ", dt_, " model");
    albumen_packed::check_pack(pack, N, K);
  }

  // The version counters of the weights that have packs: a pack is a copy, so an in-place edit of its weight after
  // set_packs must not go unseen (run() refuses; a new plan takes new copies).
  std::vector<int64_t> packed_weight_versions() const {
    auto version = [](const torch::Tensor& t) -> int64_t {
      try {
        return static_cast<int64_t>(t._version());
      } catch (const std::exception&) {  // inference tensors have no version counter
        return -1;
      }
    };
    std::vector<int64_t> out;
    static const int slots[7] = {2, 4, 6, 8, 9, 10, 11};
    for (size_t li = 0; li < packs_.size(); ++li)
      for (int i = 0; i < 7; ++i)
        if (packs_[li][i].numel()) out.push_back(version(layers_[li][slots[i]]));
    if (head_pack_.numel()) out.push_back(version(head_));
    return out;
  }

  const torch::Tensor* pack_of(size_t layer, int slot) const {
    return packs_.empty() ? nullptr : &packs_[layer][slot];
  }

  template <typename T>
  void swap_slots(T* kc, T* vc, int64_t a, int64_t b) const {  // exchange cache slots a and b of every KV head
    const int64_t hd = hd_, S = S_;
    for (int64_t j = 0; j < nkv_; ++j) {
      std::swap_ranges(kc + (j * S + a) * hd, kc + (j * S + a + 1) * hd, kc + (j * S + b) * hd);
      std::swap_ranges(vc + (j * S + a) * hd, vc + (j * S + a + 1) * hd, vc + (j * S + b) * hd);
    }
  }

  template <typename T>
  static void add_into(T* x, const T* y, int64_t n) {  // x += y, rounded to T (as a PyTorch add)
    for (int64_t i = 0; i < n; ++i) x[i] = static_cast<T>(static_cast<float>(x[i]) + static_cast<float>(y[i]));
  }

  // M rows (tokens at pos .. pos+M-1) through every layer: each per-row op is the single-row op (norms, RoPE,
  // attention, SiLU and the adds row by row; the products over all M rows at once, which is row-invariant).
  template <typename T>
  void step(const int64_t* tokens, int64_t M, int64_t pos, T* out) {
    const int64_t D = D_;
    T *x = x_.data_ptr<T>(), *n = n_.data_ptr<T>();
    rows_ = M;
    for (int64_t m = 0; m < M; ++m)
      std::memcpy(x + m * D, embed_.data_ptr<T>() + tokens[m] * D, D * sizeof(T));  // (M, D)
    for (size_t li = 0; li < layers_.size(); ++li) layer_rows<T>(li, M, pos);
    rms_norm_rows<T>(x, norm_.data_ptr<T>(), n, M, D, eps_);
    product<T>(n, head_, &head_pack_, nullptr, out, M, V_, D);  // (M, V)
  }

  // One decoder layer over the M rows in x_ at positions pos .. pos+M-1, in place (x_ <- the layer's output); writes
  // the rows' keys and values into the layer's caches.
  template <typename T>
  void layer_rows(size_t li, int64_t M, int64_t pos) {
    const std::vector<torch::Tensor>& l = layers_[li];
    const int64_t D = D_, hd = hd_, F = F_, S = S_, nq = nh_ * hd_, nk = nkv_ * hd_, groups = nh_ / nkv_;
    T *x = x_.data_ptr<T>(), *n = n_.data_ptr<T>(), *o = o_.data_ptr<T>(), *q = q_.data_ptr<T>();
    T *qr = qr_.data_ptr<T>(), *att = att_.data_ptr<T>(), *k = k_.data_ptr<T>(), *v = v_.data_ptr<T>();
    T *g = g_.data_ptr<T>(), *u = u_.data_ptr<T>(), *act = act_.data_ptr<T>();
    rms_norm_rows<T>(x, l[0].data_ptr<T>(), n, M, D, eps_);
    product<T>(n, l[2], pack_of(li, 0), ptr_or_null<T>(l[3]), q, M, nq, D);  // (M, nh*hd)
    product<T>(n, l[4], pack_of(li, 1), ptr_or_null<T>(l[5]), k, M, nk, D);  // (M, nkv*hd)
    product<T>(n, l[6], pack_of(li, 2), ptr_or_null<T>(l[7]), v, M, nk, D);
    T* kc = l[12].data_ptr<T>();  // (B, nkv, S, hd): sequence 0
    T* vc = l[13].data_ptr<T>();
    // Row m sits in cache slot pos + m at position pos + depth(m): depth(m) = m along a chain; a tree leaf (an
    // alternative to chain row d, tree_argmax) has depth d < m and must not see chain rows d .. m - 1.
    auto depth = [&](int64_t m) { return depth_.empty() ? m : depth_[m]; };
    for (int64_t m = 0; m < M; ++m) {  // this row's key (rotated) and value go into the cache at its slot
      const T* c = cos_.data_ptr<T>() + (pos + depth(m)) * hd;
      const T* s = sin_.data_ptr<T>() + (pos + depth(m)) * hd;
      for (int64_t j = 0; j < nkv_; ++j) {
        rope_row<T>(k + m * nk + j * hd, 1, c, s, kc + (j * S + pos + m) * hd, hd);
        std::memcpy(vc + (j * S + pos + m) * hd, v + m * nk + j * hd, hd * sizeof(T));
      }
    }
    for (int64_t m = 0; m < M; ++m) {  // causal: row m attends to positions 0 .. pos+depth(m)
      const int64_t d = depth(m);
      const T* c = cos_.data_ptr<T>() + (pos + d) * hd;
      const T* s = sin_.data_ptr<T>() + (pos + d) * hd;
      for (int64_t h = 0; h < nh_; ++h) rope_row<T>(q + m * nq + h * hd, 1, c, s, qr + h * hd, hd);
      // A leaf reads slots 0 .. pos+d-1 and its own: its key/value stand in slot pos+d meanwhile (swapped back
      // below), so it attends over one contiguous range exactly as the row alone at pos+d would.
      if (d != m) swap_slots<T>(kc, vc, pos + d, pos + m);
      for (int64_t h = 0; h < nh_; ++h) {
        const int64_t j = h / groups;
        attend_one_head<T>(qr + h * hd, kc + j * S * hd, vc + j * S * hd, hd, hd, pos + d + 1, hd, qf_.data(),
                           scores_.data(), acc_.data(), att + m * nq + h * hd);
      }
      if (d != m) swap_slots<T>(kc, vc, pos + d, pos + m);
    }
    product<T>(att, l[8], pack_of(li, 3), nullptr, o, M, D, nq);
    add_into<T>(x, o, M * D);  // h = x + attention
    rms_norm_rows<T>(x, l[1].data_ptr<T>(), n, M, D, eps_);
    product<T>(n, l[9], pack_of(li, 4), nullptr, g, M, F, D);
    product<T>(n, l[10], pack_of(li, 5), nullptr, u, M, F, D);
    for (int64_t m = 0; m < M; ++m) {  // ATen's SiLU, one row per call (as the module path): equal bit for bit
      auto act_row = act_[m];
      at::silu_out(act_row, g_[m]);
    }
    for (int64_t i = 0; i < M * F; ++i)
      act[i] = static_cast<T>(static_cast<float>(act[i]) * static_cast<float>(u[i]));
    product<T>(act, l[11], pack_of(li, 6), nullptr, o, M, D, F);
    add_into<T>(x, o, M * D);  // x = h + mlp
  }

  std::vector<int64_t> depth_;  // per row of the current call (tree_argmax); empty: a chain
  torch::Tensor embed_;
  std::vector<std::vector<torch::Tensor>> layers_;
  torch::Tensor norm_, head_, cos_, sin_;
  double eps_;
  int64_t nh_, nkv_, D_ = 0, V_ = 0, hd_ = 0, S_ = 0, F_ = 0;
  at::ScalarType dt_;
  torch::Tensor x_, n_, o_, q_, qr_, att_, k_, v_, g_, u_, act_, logits_;
  int64_t rows_ = 0;  // rows of the last call (features())
  std::vector<std::vector<torch::Tensor>> packs_;  // per layer 7 packs, or none at all
  torch::Tensor head_pack_;
  std::vector<int64_t> pack_versions_;
  std::vector<float> scores_, qf_, acc_;
};

// The greedy draft step of an EAGLE-style draft head (speculative/drafters/head.py) in one call: x = fc(cat(embed(t),
// f)) -> one decoder layer (its own cache) -> the predicted next feature, whose argmax over the restricted LM head
// (`lm`, rows = `vocab` ids of the target) is the drafted token. The same kernels and order as the head's module path
// with the fused layer, so the same tokens. The layer is DecodePlan's (one layer, no final norm); `embed` is the
// target's embedding, shared. Greedy only (sampled drafts need q, and run as modules).
class HeadPlan : public DecodePlan {
 public:
  HeadPlan(torch::Tensor embed, std::vector<torch::Tensor> layer, torch::Tensor fc_w, torch::Tensor fc_b,
           torch::Tensor lm, torch::Tensor vocab, torch::Tensor cos, torch::Tensor sin, double eps, int64_t n_heads,
           int64_t n_kv)
      : DecodePlan(embed, {std::move(layer)}, unit_norm(embed), lm, cos, sin, eps, n_heads, n_kv),
        fc_w_(std::move(fc_w)), fc_b_(std::move(fc_b)), vocab_(std::move(vocab)) {
    check(fc_w_, {D_, 2 * D_}, "fc weight");
    check(fc_b_, {D_}, "fc bias");
    TORCH_CHECK(vocab_.scalar_type() == at::kLong && vocab_.dim() == 1 && vocab_.size(0) == V_ &&
                    vocab_.is_contiguous(), "HeadPlan: vocab must be (", V_, ",) int64, one id per LM head row");
    const int64_t* ids = vocab_.data_ptr<int64_t>();
    for (int64_t i = 0; i < V_; ++i)
      TORCH_CHECK(ids[i] >= 0 && ids[i] < embed_.size(0), "HeadPlan: vocab id ", ids[i], " out of range");
    cat_ = torch::empty({albumen_dense::kMaxRows, 2 * D_}, embed_.options());
  }

  // Catch up on T (>= 1) verified positions pos .. pos+T-1 (row j: the token after position pos+j and the target's
  // feature at pos+j; feats (T, D)), then draft k >= 1 tokens greedily; returns the k target ids. Writes the head's
  // cache at pos .. pos+T+k-2. min_confidence > 0: stop before a token whose probability (the softmax of the head's
  // logits at its argmax) is below it, so fewer than k ids (or none) may come back.
  std::vector<int64_t> draft(const std::vector<int64_t>& next_tokens, const torch::Tensor& feats, int64_t pos,
                             int64_t k, double min_confidence) {
    const int64_t T = static_cast<int64_t>(next_tokens.size());
    TORCH_CHECK(T >= 1 && k >= 1, "HeadPlan: at least one verified position and one draft token");
    TORCH_CHECK(feats.dim() == 2 && feats.size(0) == T && feats.size(1) == D_ && feats.scalar_type() == dt_ &&
                    feats.is_contiguous(), "HeadPlan: feats must be (", T, ", ", D_, ") contiguous, the head's dtype");
    TORCH_CHECK(pos >= 0 && pos + T + k - 1 <= S_, "HeadPlan: positions ", pos, "..", pos + T + k - 2,
                " are beyond the cache (", S_, " positions)");
    for (int64_t t : next_tokens)
      TORCH_CHECK(t >= 0 && t < embed_.size(0), "HeadPlan: token ", t, " out of range");
    if (dt_ == at::kFloat) return run_draft<float>(next_tokens, feats.data_ptr<float>(), pos, k, min_confidence);
    return run_draft<c10::BFloat16>(next_tokens, feats.data_ptr<c10::BFloat16>(), pos, k, min_confidence);
  }

 private:
  static torch::Tensor unit_norm(const torch::Tensor& embed) {  // the base's final norm (unused by the head)
    TORCH_CHECK(embed.dim() == 2, "HeadPlan: the embedding must be (V, D)");
    return torch::ones({embed.size(1)}, embed.options());
  }

  // x_ rows 0..M-1 = fc(cat(embed(tokens[m]), feats[m])).
  template <typename T>
  void fuse(const int64_t* tokens, const T* feats, int64_t M) {
    const int64_t D = D_;
    T* c = cat_.data_ptr<T>();
    for (int64_t m = 0; m < M; ++m) {
      std::memcpy(c + m * 2 * D, embed_.data_ptr<T>() + tokens[m] * D, D * sizeof(T));
      std::memcpy(c + m * 2 * D + D, feats + m * D, D * sizeof(T));
    }
    gemm_rows<T>(c, fc_w_.data_ptr<T>(), fc_b_.data_ptr<T>(), x_.data_ptr<T>(), M, D, 2 * D);
  }

  // The softmax probability of logits row 0 at index `best` (its argmax): 1 / sum_j exp(l_j - l_best).
  template <typename T>
  double top_probability(int64_t best) const {
    const T* l = logits_.data_ptr<T>();
    const float top = static_cast<float>(l[best]);
    double sum = 0.0;
    for (int64_t j = 0; j < V_; ++j) sum += std::exp(static_cast<float>(l[j]) - top);
    return 1.0 / sum;
  }

  template <typename T>
  std::vector<int64_t> run_draft(const std::vector<int64_t>& next_tokens, const T* feats, int64_t pos, int64_t k,
                                 double min_confidence) {
    const int64_t nrows = static_cast<int64_t>(next_tokens.size()), D = D_, R = albumen_dense::kMaxRows;
    T* x = x_.data_ptr<T>();
    int64_t last = 0;
    for (int64_t c0 = 0; c0 < nrows; c0 += R) {  // catch-up in blocks of up to 8 rows
      const int64_t M = std::min(R, nrows - c0);
      fuse<T>(next_tokens.data() + c0, feats + c0 * D, M);
      layer_rows<T>(0, M, pos + c0);
      last = M - 1;
    }
    std::vector<T> f(x + last * D, x + (last + 1) * D);  // the predicted feature after the last verified position
    const int64_t* ids = vocab_.data_ptr<int64_t>();
    std::vector<int64_t> drafted;
    for (int64_t i = 0; i < k; ++i) {
      gemm_rows<T>(f.data(), head_.data_ptr<T>(), nullptr, logits_.data_ptr<T>(), 1, V_, D);
      const int64_t best = argmax_row(0);
      if (min_confidence > 0 && top_probability<T>(best) < min_confidence) break;
      const int64_t token = ids[best];
      drafted.push_back(token);
      if (i + 1 == k) break;
      fuse<T>(&token, f.data(), 1);
      layer_rows<T>(0, 1, pos + nrows + i);
      std::memcpy(f.data(), x, D * sizeof(T));
    }
    return drafted;
  }

  torch::Tensor fc_w_, fc_b_, vocab_, cat_;
};
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, "weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype), fp32 or bf16");
  m.def("rope", &rope, "x * cos + rotate_half(x) * sin for x (B, h, T, hd), cos/sin (T, hd)");
  m.def("decode_layer", &decode_layer, "one decoder layer for one new token per sequence, or None if it does not apply");
  m.def("decode_attention", &decode_attention, "softmax(q k^T / sqrt(hd)) v, one query per head, grouped KV heads");
  py::class_<DecodePlan>(m, "DecodePlan", "the whole single-token decode step of a model, batch 1")
      .def(py::init<torch::Tensor, std::vector<std::vector<torch::Tensor>>, torch::Tensor, torch::Tensor,
                    torch::Tensor, torch::Tensor, double, int64_t, int64_t>())
      .def("logits", &DecodePlan::logits, "logits (1, V) after token at pos", py::arg("token"), py::arg("pos"))
      .def("argmax", &DecodePlan::argmax, "the greedy next token after token at pos", py::arg("token"),
           py::arg("pos"))
      .def("block_logits", &DecodePlan::block_logits, "logits (M, V) for a block of 1..8 tokens from pos",
           py::arg("tokens"), py::arg("pos"))
      .def("block_argmax", &DecodePlan::block_argmax, "the greedy token after each row of a block",
           py::arg("tokens"), py::arg("pos"))
      .def("tree_argmax", &DecodePlan::tree_argmax, "the greedy token after each row of a chain plus leaves",
           py::arg("tokens"), py::arg("pos"), py::arg("depths"))
      .def("move_kv", &DecodePlan::move_kv, "copy cache slot src into dst in every layer", py::arg("src"),
           py::arg("dst"))
      .def("features", &DecodePlan::features, "final normed hidden states (rows, D) of the last call")
      .def("set_packs", &DecodePlan::set_packs, "products on packed weight copies: 7 per layer, then the head's",
           py::arg("packs"), py::arg("head_pack"))
      .def_property_readonly("max_positions", &DecodePlan::max_positions);
  py::class_<HeadPlan>(m, "HeadPlan", "the greedy draft step of an EAGLE-style draft head, batch 1")
      .def(py::init<torch::Tensor, std::vector<torch::Tensor>, torch::Tensor, torch::Tensor, torch::Tensor,
                    torch::Tensor, torch::Tensor, torch::Tensor, double, int64_t, int64_t>())
      .def("draft", &HeadPlan::draft, "catch up on verified positions, then k greedy draft tokens (target ids)",
           py::arg("next_tokens"), py::arg("feats"), py::arg("pos"), py::arg("k"), py::arg("min_confidence") = 0.0);
}
