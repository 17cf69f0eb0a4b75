// The engine's per-token decode arithmetic, shared by every C++ step that must give the same results as the module
// path bit for bit (decode_ops.cpp: the ops, the fused layer, DecodePlan; other extensions may include it too):
//   rms_norm_rows   weight * (x.float() * rsqrt(mean(x^2) + eps)).to(dtype), HF's order of casts
//   attend_one_head softmax(q k^T / sqrt(hd)) v for one query head over S cached rows, softmax in fp32
//   rope_row        x * cos + rotate_half(x) * sin for one row (HF's "halves" layout)
//   argmax_of       the greedy pick over one row of logits, as torch.argmax
// Compile with -ffp-contract=off (as decode_ops.py does): the rounding of each product must not depend on inlining.
#pragma once
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace albumen_decode {


// noipa (like attend_one_head and rope_row): one compiled copy, not inlined or cloned per call site, so that every
// caller gets the same vectorized reduction order and hence bit-identical results.
template <typename T>
__attribute__((noipa)) void rms_norm_rows(const T* x, const T* w, T* y, int64_t rows, int64_t dim, float eps) {
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

#if defined(__AVX512F__)
// 16 floats from 16 fp32 or bf16 values.
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const c10::BFloat16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// exp(x) for x <= 0 (softmax after subtracting the maximum), Cephes' expf polynomial (~1 ulp), 2^n by scalef
// (exact underflow to 0 for very negative x).
inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}

// attend_one_head for hd = 16 * NV: the query and the output accumulators live in registers, the softmax's exp runs
// 16 scores at a time, and the output is divided by the sum once at the end. benchmarks/llm_attention.py: 2.4-3.7x
// faster than the plain loop below (docs/llm.md).
template <int NV, typename T>
void attend_one_head_avx512(const T* qh, const T* k, const T* v, int64_t ks, int64_t vs, int64_t S, float* scores,
                            T* out) {
  const float scale = 1.f / std::sqrt(static_cast<float>(16 * NV));
  __m512 q[NV], acc[NV];
  for (int j = 0; j < NV; ++j) {
    q[j] = load16(qh + 16 * j);
    acc[j] = _mm512_setzero_ps();
  }
  float mx = -INFINITY;
  for (int64_t s = 0; s < S; ++s) {
    const T* kr = k + s * ks;
    __m512 d = _mm512_mul_ps(q[0], load16(kr));
    for (int j = 1; j < NV; ++j) d = _mm512_fmadd_ps(q[j], load16(kr + 16 * j), d);
    scores[s] = _mm512_reduce_add_ps(d) * scale;
    mx = std::max(mx, scores[s]);
  }
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512 sum = _mm512_setzero_ps();
  int64_t s = 0;
  for (; s + 16 <= S; s += 16) {
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(scores + s), vmx));
    _mm512_storeu_ps(scores + s, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (s < S) {
    const __mmask16 m = static_cast<__mmask16>((1u << (S - s)) - 1);
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + s), vmx));
    _mm512_mask_storeu_ps(scores + s, m, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
  }
  for (s = 0; s < S; ++s) {
    const T* vr = v + s * vs;
    const __m512 p = _mm512_set1_ps(scores[s]);
    for (int j = 0; j < NV; ++j) acc[j] = _mm512_fmadd_ps(p, load16(vr + 16 * j), acc[j]);
  }
  const __m512 denom = _mm512_set1_ps(_mm512_reduce_add_ps(sum));
  for (int j = 0; j < NV; ++j) {
    const __m512 o = _mm512_div_ps(acc[j], denom);
    if constexpr (std::is_same_v<T, float>) {
      _mm512_storeu_ps(out + 16 * j, o);
    } else {
      alignas(64) float tmp[16];
      _mm512_store_ps(tmp, o);
      for (int i = 0; i < 16; ++i) out[16 * j + i] = static_cast<T>(tmp[i]);  // round to nearest even
    }
  }
}
#endif  // __AVX512F__

// One query head over S cached rows (key s at k + s * ks, value s at v + s * vs), softmax in fp32.
// qf, acc: hd floats of scratch; scores: S floats of scratch.
template <typename T>
__attribute__((noipa)) void attend_one_head(const T* qh, const T* k, const T* v, int64_t ks, int64_t vs, int64_t S,
                                             int64_t hd, float* qf, float* scores, float* acc, T* out) {
#if defined(__AVX512F__) && !defined(ALBUMEN_ATTENTION_LOOP)  // the macro: the plain loop, for A/B runs
  switch (hd) {  // 64: SmolLM2, Qwen2.5-0.5B; 128: Qwen2.5-1.5B; other sizes take the loop below
    case 32: return attend_one_head_avx512<2, T>(qh, k, v, ks, vs, S, scores, out);
    case 64: return attend_one_head_avx512<4, T>(qh, k, v, ks, vs, S, scores, out);
    case 128: return attend_one_head_avx512<8, T>(qh, k, v, ks, vs, S, scores, out);
    default: break;
  }
#endif
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  for (int64_t i = 0; i < hd; ++i) qf[i] = static_cast<float>(qh[i]);
  float mx = -INFINITY;
  for (int64_t s = 0; s < S; ++s) {
    const T* kr = k + s * ks;
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
  std::fill(acc, acc + hd, 0.f);
  for (int64_t s = 0; s < S; ++s) {
    const T* vr = v + s * vs;
    const float p = scores[s] / denom;
#pragma omp simd
    for (int64_t i = 0; i < hd; ++i) acc[i] += p * static_cast<float>(vr[i]);
  }
  for (int64_t i = 0; i < hd; ++i) out[i] = static_cast<T>(acc[i]);
}

// One row of hd values (element i at xr[i * xs]) -> x * cos + rotate_half(x) * sin, each product rounded to the
// dtype before the sum (as the PyTorch expression does, so results match exactly).
template <typename T>
__attribute__((noipa)) void rope_row(const T* xr, int64_t xs, const T* c, const T* s, T* o, int64_t hd) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < hd; ++i) {
    const float rot = i < half ? -static_cast<float>(xr[(i + half) * xs]) : static_cast<float>(xr[(i - half) * xs]);
    const T a = static_cast<T>(static_cast<float>(xr[i * xs]) * static_cast<float>(c[i]));
    const T r = static_cast<T>(static_cast<T>(rot) * static_cast<float>(s[i]));
    o[i] = static_cast<T>(static_cast<float>(a) + static_cast<float>(r));
  }
}

// The first index of the maximum of l[0..n), NaN counting as the maximum (as torch.argmax).
template <typename T>
int64_t argmax_of(const T* l, int64_t n) {
  int64_t best = 0;
  float bv = static_cast<float>(l[0]);
  if (std::isnan(bv)) return 0;
  for (int64_t i = 1; i < n; ++i) {
    const float v = static_cast<float>(l[i]);
    if (std::isnan(v)) return i;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

}  // namespace albumen_decode
