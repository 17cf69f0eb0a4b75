"""The decoder: a Llama-family transformer (Llama / SmolLM2, Qwen2 with q/k/v biases) in plain PyTorch.

The module tree mirrors Hugging Face transformers' ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` exactly, so a
``state_dict`` from HF safetensors (and PEFT adapter keys) maps 1:1::

    model.embed_tokens.weight
    model.layers.{i}.self_attn.{q,k,v,o}_proj.weight   (+ .bias on q/k/v when ``attention_bias``)
    model.layers.{i}.mlp.{gate,up,down}_proj.weight
    model.layers.{i}.{input,post_attention}_layernorm.weight
    model.norm.weight
    lm_head.weight                                      (the same tensor as embed_tokens when tied)

Every projection, ``lm_head`` included, is a plain ``nn.Linear`` called as a module (``self.q_proj(x)``), so that
quantization and LoRA can swap modules by name. Nothing caches weights elsewhere.

Two ways to run it:

* inference: ``model.setup_caches(B, S)`` once, then ``model(input_ids, input_pos)``; keys/values are written into a
  static cache at ``input_pos``, so rolling back is just decoding again from an earlier position (see kv_cache.py);
* training: with no caches set up, ``model(input_ids)`` is an ordinary causal forward that autograd can follow.

This module knows nothing about files, tokenizers or sampling.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from albumen.llm.kernels.build import kernels_enabled
from albumen.llm.kernels.decode_ops import decode_ops_module
from albumen.llm.kernels.dense import dense_module
from albumen.llm.kv_cache import KVCache

__all__ = [
    "ModelArgs",
    "RMSNorm",
    "Transformer",
    "apply_rope",
    "grouped_attention",
    "rope_cos_sin",
    "use_decode_kernels",
    "use_decode_linears",
]


@dataclass(frozen=True)
class ModelArgs:
    """Architecture hyper-parameters. ``ModelArgs.from_name`` gives the named presets."""

    vocab_size: int = 49152
    dim: int = 576
    n_layers: int = 30
    n_heads: int = 9
    n_kv_heads: int = 3
    intermediate_size: int = 1536
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 2048  # the model's context length
    tie_word_embeddings: bool = True
    attention_bias: bool = False  # Qwen2: biases on q/k/v
    head_dim: int = 0  # 0 = dim // n_heads
    arch: str = "llama"  # "llama" or "qwen2": which HF class the keys and config.json follow

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            if self.dim % self.n_heads:
                raise ValueError(f"dim {self.dim} is not a multiple of n_heads {self.n_heads}")
            object.__setattr__(self, "head_dim", self.dim // self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    @classmethod
    def from_name(cls, name: str) -> ModelArgs:
        """The architecture of a named preset (``smollm2-135m``, ``qwen2.5-0.5b``, ``qwen2.5-1.5b``, ...)."""
        key = name.lower()
        if key not in _PRESETS:
            raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_PRESETS))}")
        return _PRESETS[key]

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> ModelArgs:
        """Read a Hugging Face ``config.json`` (Llama or Qwen2)."""
        model_type = cfg.get("model_type", "llama")
        if model_type not in ("llama", "qwen2"):
            raise ValueError(f"unsupported model_type {model_type!r} (supported: llama, qwen2)")
        if cfg.get("rope_scaling"):
            raise ValueError(f"rope_scaling {cfg['rope_scaling']!r} is not supported yet")
        n_heads = cfg["num_attention_heads"]
        return cls(
            vocab_size=cfg["vocab_size"],
            dim=cfg["hidden_size"],
            n_layers=cfg["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
            intermediate_size=cfg["intermediate_size"],
            norm_eps=cfg.get("rms_norm_eps", 1e-6),
            rope_theta=float(cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
            max_seq_len=cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // n_heads,
            arch=model_type,
        )

    def to_hf_config(self) -> dict[str, Any]:
        """A Hugging Face ``config.json`` for these weights (used by the cache and by the transformers oracle)."""
        cfg: dict[str, Any] = {
            "architectures": ["Qwen2ForCausalLM" if self.arch == "qwen2" else "LlamaForCausalLM"],
            "model_type": self.arch,
            "vocab_size": self.vocab_size,
            "hidden_size": self.dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "intermediate_size": self.intermediate_size,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_seq_len,
            "tie_word_embeddings": self.tie_word_embeddings,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
        }
        if self.arch == "llama":
            cfg.update(attention_bias=self.attention_bias, mlp_bias=False)
        return cfg

    def replace(self, **changes: Any) -> ModelArgs:
        return dataclasses.replace(self, **changes)


_PRESETS: dict[str, ModelArgs] = {
    "smollm2-135m": ModelArgs(
        vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, intermediate_size=1536,
        norm_eps=1e-5, rope_theta=100000.0, max_seq_len=8192, tie_word_embeddings=True,
    ),
    "smollm2-360m": ModelArgs(
        vocab_size=49152, dim=960, n_layers=32, n_heads=15, n_kv_heads=5, intermediate_size=2560,
        norm_eps=1e-5, rope_theta=100000.0, max_seq_len=8192, tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b": ModelArgs(
        vocab_size=151936, dim=896, n_layers=24, n_heads=14, n_kv_heads=2, intermediate_size=4864,
        norm_eps=1e-6, rope_theta=1000000.0, max_seq_len=32768, tie_word_embeddings=True,
        attention_bias=True, arch="qwen2",
    ),
    "qwen2.5-1.5b": ModelArgs(
        vocab_size=151936, dim=1536, n_layers=28, n_heads=12, n_kv_heads=2, intermediate_size=8960,
        norm_eps=1e-6, rope_theta=1000000.0, max_seq_len=32768, tie_word_embeddings=True,
        attention_bias=True, arch="qwen2",
    ),
}


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in fp32 and cast back (as HF does)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = self.__dict__.get("_decode_ops")  # set by use_decode_kernels: one C++ call, same result
        if ops is not None and x.dtype is self.weight.dtype and not (
                torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            return ops.rms_norm(x, self.weight, self.eps)
        h = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for ``positions`` (T,) -> two (T, head_dim) tensors, computed in fp32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (B, nh, T, hd) by position; halves layout ("rotate_half"), as in HF Llama/Qwen2."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def grouped_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention of a few queries over cached keys, grouped-query style, without copying K/V per head.

    Measured on CPU: for one query over a short cache this is far faster than SDPA's flash kernel, which dominated
    decode time. Softmax is computed in fp32, as HF's eager attention does.

    Args:
        q: (B, nh, T, hd) queries; heads h*g .. h*g+g-1 share KV head h (g = nh // nkv).
        k, v: (B, nkv, S, hd) cached keys and values.
        mask: (T, S) bool, True where a query may attend; None when every key is visible.
    Returns:
        (B, nh, T, hd)
    """
    bsz, n_heads, seqlen, head_dim = q.shape
    n_kv = k.shape[1]
    groups = n_heads // n_kv
    qg = q.reshape(bsz, n_kv, groups * seqlen, head_dim)  # (B, nkv, g*T, hd)
    scores = (qg @ k.transpose(-1, -2)).float() * head_dim**-0.5  # (B, nkv, g*T, S)
    if mask is not None:
        scores = scores.view(bsz, n_kv, groups, seqlen, -1).masked_fill(~mask, float("-inf"))
        scores = scores.view(bsz, n_kv, groups * seqlen, -1)
    probs = scores.softmax(-1).to(v.dtype)
    return (probs @ v).view(bsz, n_heads, seqlen, head_dim)  # (B, nh, T, hd)


def _mkldnn_packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _weight_key(w: torch.Tensor) -> tuple[int, int]:
    """Identifies a weight's storage and contents: a copy made from it is stale once either changes."""
    try:
        return (w.data_ptr(), w._version)
    except RuntimeError:  # inference tensors have no version counter
        return (w.data_ptr(), -1)


def packed_weight(module: nn.Linear, kernel: Any) -> torch.Tensor:
    """``module``'s weight in the packed kernel's layout (``kernels/csrc/packed_kernels.h``), made on first use and
    again when the weight changes (another tensor, or an in-place edit such as a LoRA merge): one extra copy."""
    w = module.weight
    key = _weight_key(w)
    pack = module.__dict__.get("_weight_pack")
    if pack is None or pack[0] != key:
        pack = (key, kernel.pack_weight(w.detach()))
        module.__dict__["_weight_pack"] = pack
    return pack[1]


def _decode_rows(x: torch.Tensor, w: torch.Tensor) -> bool:
    """1..8 rows in the weight's dtype at inference: the calls the packed copies serve."""
    return (x.dtype is w.dtype and x.numel() <= 8 * x.shape[-1]
            and (not torch.is_grad_enabled() or not (w.requires_grad or x.requires_grad)))


def _decode_linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``nn.Linear.forward``, except for 1..8 rows at inference, where a faster CPU kernel computes the same product.

    1. With the C++ kernels (``albumen.llm.kernels.dense``), when they handle the call (fp32 or bf16, x in the
       weight's dtype, at most 8 rows, no autograd): weights the packing rule picks (``_packed``, see
       ``packed_rule``) on their packed copy (``packed_weight``: one contiguous stream per 64 outputs, one fp32 lane
       per output), the others on the row-major dense kernel. Both stream the weight once at memory bandwidth, and a
       row's result does not depend on how many rows come with it (speculative verification relies on it). Measured
       in ``benchmarks/llm_decode.py`` and ``benchmarks/llm_packed_ab.py`` (docs/llm.md, "The packed kernels").
    2. Otherwise (kernels off), 1..8 bf16 rows: oneDNN with the weight pre-packed for batch 1 (plain ``F.linear``
       reorders the bf16 weight on every call; the packed copy reads 1.65x faster), made on first use and redone when
       the weight changes.
    3. Otherwise ``F.linear``.
    """
    w = self.weight
    kernel = self.__dict__.get("_dense_kernel")
    if kernel is not None:
        if self.__dict__.get("_packed") and _decode_rows(x, w) and w.dtype in (torch.float32, torch.bfloat16):
            y = kernel.try_packed_linear(x, packed_weight(self, kernel), w.shape[0], self.bias)
        else:
            y = kernel.try_linear(x, w, self.bias)  # (..., N), or None where the kernel does not apply
        if y is not None:
            return y
    elif x.dtype is torch.bfloat16 and _decode_rows(x, w) and _mkldnn_packing_available():
        key = _weight_key(w)
        pack = self.__dict__.get("_decode_pack")
        if pack is None or pack[0] != key:
            pack = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1))
            self.__dict__["_decode_pack"] = pack
        return torch.ops.mkldnn._linear_pointwise(x, pack[1], self.bias, "none", [], "")
    return F.linear(x, w, self.bias)


# Weights with at least this many elements and rows of at least this many inputs run on a packed copy (the packed
# kernels, with the C++ kernels on). Measured one thread (docs/llm.md, "The packed kernels"): bf16 on Qwen2.5-1.5B's
# shapes faster than the row-major dense kernel and than oneDNN's pre-packed copy at 1..6 rows (8960x1536, one row:
# 0.74-0.83 ms vs 0.77-0.79 oneDNN, 0.91-0.96 dense); fp32 on SmolLM2's shapes 1.2-1.3x faster than the row-major
# kernel at one row (576x1536: 0.096 vs 0.121 ms; the 49152x576 head 3.1 vs 4.0 ms); whole models 1.09-1.18x faster
# plain decoding (SmolLM2 bf16 and fp32, Qwen2.5-1.5B bf16), blocks of 2..6 rows far cheaper. A pack is a second copy
# of the weight; tiny matrices keep the row-major kernel.
PACKED_MIN_NUMEL = 64 * 1024
PACKED_MIN_IN = 256
# The packs of one model may take at most this many bytes (they are second copies): a larger model decodes on the
# row-major kernel instead of running out of memory (Qwen2.5-1.5B bf16 packs ~3 GB; a 7B bf16 model would pack 14).
PACKED_MAX_BYTES = 6 * 1024**3


def packed_rule(weight: torch.Tensor) -> bool:
    """Whether a linear with this weight decodes on a packed copy (with the C++ kernels on): fp32 or bf16, at least
    ``PACKED_MIN_NUMEL`` elements in rows of at least ``PACKED_MIN_IN``."""
    return (weight.dtype in (torch.float32, torch.bfloat16) and weight.dim() == 2
            and weight.numel() >= PACKED_MIN_NUMEL and weight.shape[1] >= PACKED_MIN_IN)


def use_decode_kernels(model: nn.Module, kernels: bool | None = None, fuse_layers: bool = True,
                       fuse_model: bool = True, pack: bool = True) -> int:
    """Route every plain ``nn.Linear`` of ``model`` through ``_decode_linear_forward``; returns how many.

    The modules stay ``nn.Linear`` with the same parameters and keys (quantization and LoRA still find and swap
    them); only the instance's ``forward`` changes. ``kernels`` (default: unless ``ALBUMEN_KERNELS=0``) chooses the
    C++ kernels: the dense kernels for the linears (with ``pack``, the packed kernel for the weights ``packed_rule``
    picks, on a copy made on first use, unless those copies would exceed ``PACKED_MAX_BYTES``; the draft head's C++
    step reads row-major weights and passes False), and fused RMSNorm and single-query attention
    (``albumen.llm.kernels.decode_ops``); without them, bf16 rows go to the pre-packed oneDNN copy and norms and
    attention stay in PyTorch. Copies a new choice no longer uses are dropped. With ``fuse_layers`` a decoder layer decoding one
    token runs as one C++ call (``DecoderLayer._fused_step``, for layers without packed weights); with ``fuse_model``
    too, ``Transformer.decode_plan`` runs the whole step as one call (``generate`` uses it). Calling again switches
    the choice.
    """
    use_kernel = kernels_enabled() if kernels is None else kernels
    kernel = dense_module() if use_kernel else None
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    if pack and sum(m.weight.numel() * m.weight.element_size() for m in linears
                    if packed_rule(m.weight)) > PACKED_MAX_BYTES:
        pack = False  # the copies would not fit the budget: every linear stays on the row-major kernel
    ops = decode_ops_module() if use_kernel else None
    count = 0
    if isinstance(model, Transformer):
        model.__dict__["_fuse_model"] = fuse_layers and fuse_model
    for module in model.modules():
        if isinstance(module, (RMSNorm, Attention)):
            module.__dict__["_decode_ops"] = ops
        elif isinstance(module, DecoderLayer):
            module.__dict__["_decode_ops"] = ops if fuse_layers else None
        if type(module) is not nn.Linear:
            continue
        if "forward" not in module.__dict__:
            module.forward = types.MethodType(_decode_linear_forward, module)
        elif getattr(module.forward, "__func__", None) is not _decode_linear_forward:
            continue  # someone else's forward: leave it alone
        module.__dict__["_dense_kernel"] = kernel
        module.__dict__["_packed"] = pack and kernel is not None and packed_rule(module.weight)
        if not module.__dict__["_packed"]:
            module.__dict__.pop("_weight_pack", None)  # a copy this choice no longer reads: free its memory
        if kernel is not None:
            module.__dict__.pop("_decode_pack", None)  # oneDNN's copy serves only with the kernels off
        count += 1
    return count


use_decode_linears = use_decode_kernels  # the earlier name (speculative drafters call it)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        bias = args.attention_bias
        self.q_proj = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=bias)
        self.k_proj = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=bias)
        self.v_proj = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=bias)
        self.o_proj = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        input_pos: torch.Tensor | None,
        mask: torch.Tensor | None,
        kv_len: int,
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        q = self.q_proj(x).view(bsz, seqlen, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        ops = self.__dict__.get("_decode_ops")  # set by use_decode_kernels: C++ ops, same results
        if ops is not None and torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            ops = None  # training (LoRA included): autograd needs the PyTorch ops
        if ops is not None:
            q, k = ops.rope(q, cos, sin), ops.rope(k, cos, sin)
        else:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_cache is not None and input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, nkv, S, hd)
            k, v = k[:, :, :kv_len], v[:, :, :kv_len]  # only positions that can be attended to
            if ops is not None and seqlen == 1:
                y = ops.decode_attention(q, k, v)  # (B, nh, 1, hd)
            else:
                y = grouped_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=seqlen > 1, enable_gqa=self.n_heads != self.n_kv_heads)
        y = y.transpose(1, 2).reshape(bsz, seqlen, self.n_heads * self.head_dim)  # (B, T, nh*hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(args.dim, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.dim, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.self_attn = Attention(args)
        self.mlp = MLP(args)
        self.input_layernorm = RMSNorm(args.dim, args.norm_eps)
        self.post_attention_layernorm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, input_pos: torch.Tensor | None,
                mask: torch.Tensor | None, kv_len: int) -> torch.Tensor:
        ops = self.__dict__.get("_decode_ops")  # set by use_decode_kernels
        # One new token per sequence, or a block of 2..8 consecutive new tokens of one sequence (speculative
        # verification, a draft head's catch-up): one C++ call (int4 layers: quant/fused.py).
        if ops is not None and input_pos is not None and not torch.is_grad_enabled() and (
                x.shape[1] == 1 or (x.shape[0] * x.shape[1] <= 8 and int(input_pos[-1]) - int(input_pos[0]) ==
                                    x.shape[1] - 1)):
            y = self._fused_step(ops, x, cos, sin, kv_len - 1)
            if y is not None:
                return y
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, input_pos, mask, kv_len)
        return h + self.mlp(self.post_attention_layernorm(h))

    def _fused_step(self, ops: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pos: int
                    ) -> torch.Tensor | None:
        """The whole layer for one new token (or a block of 2..8) in one C++ call (same ops, same order), or None to take
        the module path.

        Only while every part is the plain module this class built (no LoRA or quantized swap, no hooks): those must
        run as modules. A small model spends more time in ~25 Python module calls per layer than in its arithmetic.
        """
        quant_step = self.__dict__.get("_quant_step")  # albumen.llm.quant.fused: the same step on int4 weights
        if quant_step is not None:
            return quant_step(ops, x, cos, sin, pos)
        attn, mlp = self.self_attn, self.mlp
        parts = (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        if attn.kv_cache is None or any(type(p) is not nn.Linear or p.__dict__.get("_dense_kernel") is None
                                        or p.__dict__.get("_packed") for p in parts):
            return None  # a swapped module, kernels off, or a packed weight (the whole-step plan takes those)
        if any(m._forward_hooks or m._forward_pre_hooks for m in (self.input_layernorm, self.post_attention_layernorm,
                                                                  attn, mlp, *parts)):
            return None
        return ops.decode_layer(
            x, self.input_layernorm.weight, self.post_attention_layernorm.weight, self.input_layernorm.eps,
            attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias, attn.v_proj.weight,
            attn.v_proj.bias, attn.o_proj.weight, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight,
            cos, sin, attn.kv_cache.k_cache, attn.kv_cache.v_cache, pos, attn.n_heads, attn.n_kv_heads)


class DecoderStack(nn.Module):
    """HF's inner ``model``: embeddings, layers and the final norm (no head)."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        # Passing the weight skips nn.Embedding's random init (slow to set up on the meta device used for loading).
        self.embed_tokens = nn.Embedding(args.vocab_size, args.dim, _weight=torch.empty(args.vocab_size, args.dim))
        self.layers = nn.ModuleList(DecoderLayer(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)


class Transformer(nn.Module):
    """A causal LM whose ``state_dict`` keys equal HF ``LlamaForCausalLM`` / ``Qwen2ForCausalLM``."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.model = DecoderStack(args)
        self.lm_head = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.tie_weights()
        self.max_batch_size = -1
        self.max_seq_len = -1
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.no_grad()
    def init_weights(self, seed: int = 0, std: float = 0.02) -> Transformer:
        """Random weights for training from scratch (the constructor leaves the embeddings uninitialized)."""
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        return self

    def tie_weights(self) -> None:
        """Share ``lm_head.weight`` with the embeddings when the architecture ties them."""
        if self.args.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def setup_caches(self, max_batch_size: int, max_seq_len: int, dtype: torch.dtype | None = None) -> None:
        """Preallocate a static KV cache in every layer (idempotent for the same or smaller sizes)."""
        dtype = dtype or self.model.embed_tokens.weight.dtype
        if max_seq_len > self.args.max_seq_len:
            raise ValueError(f"max_seq_len {max_seq_len} exceeds the model's context length {self.args.max_seq_len}")
        first = self.model.layers[0].self_attn.kv_cache
        if (first is not None and max_batch_size <= self.max_batch_size and max_seq_len <= self.max_seq_len
                and first.k_cache.dtype == dtype):
            return  # a larger cache costs nothing: attention only reads positions up to input_pos[-1]
        device = self.model.embed_tokens.weight.device
        if device.type == "cpu":
            use_decode_kernels(self)
        for layer in self.model.layers:
            cache = KVCache(max_batch_size, max_seq_len, self.args.n_kv_heads, self.args.head_dim, dtype)
            layer.self_attn.kv_cache = cache.to(device)
        self.max_batch_size, self.max_seq_len = max_batch_size, max_seq_len
        # RoPE tables for every cache position, so a decode step indexes instead of recomputing them.
        positions = torch.arange(max_seq_len, device=device)
        self._rope = rope_cos_sin(positions, self.args.head_dim, self.args.rope_theta, dtype)  # 2 x (S, hd)

    def clear_caches(self) -> None:
        """Drop the KV caches: the model goes back to the plain (training) forward."""
        for layer in self.model.layers:
            layer.self_attn.kv_cache = None
        self.max_batch_size = self.max_seq_len = -1
        self._rope = None

    @property
    def has_caches(self) -> bool:
        return self.model.layers[0].self_attn.kv_cache is not None

    def decode_plan(self) -> Any | None:
        """The whole single-token decode step (batch 1) as one C++ object, or None where it does not apply.

        ``plan.logits(token, pos)`` gives the (1, V) logits after ``token`` at ``pos`` and writes its key/value into
        the caches, exactly as ``self(tensor([[token]]), tensor([pos]))[:, -1]`` does with the fused layers (same
        kernels, same order); ``plan.argmax(token, pos)`` returns the greedy next token without a logits tensor.
        It removes the per-token Python of ``forward`` (~30 module calls and their checks). It applies only while
        the model is the plain one ``use_decode_kernels`` set up (fused layers, every projection an ``nn.Linear``
        on the dense kernel, no hooks or patched forwards: LoRA, quantized or packed modules decline) with caches.
        The plan shares the model's tensors, so in-place weight edits reach it; build a new one after
        ``setup_caches`` or any module swap (``generate`` builds one per call).
        """
        if not self.has_caches or self._rope is None or not self.__dict__.get("_fuse_model", True):
            return None
        quant_plan = self.__dict__.get("_quant_plan")  # albumen.llm.quant.plan: the same step on 4-bit weights
        if quant_plan is not None:
            return quant_plan(self)
        layers = list(self.model.layers)
        ops = layers[0].__dict__.get("_decode_ops")
        dtype = self.model.embed_tokens.weight.dtype
        if ops is None or not hasattr(ops, "DecodePlan") or dtype not in (torch.float32, torch.bfloat16):
            return None
        if self.model.embed_tokens.weight.device.type != "cpu" or self._rope[0].dtype is not dtype:
            return None
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return None  # the plan bypasses autograd; generate runs under inference_mode
        plain = {DecoderLayer, Attention, MLP, RMSNorm, DecoderStack, Transformer, nn.Embedding, nn.ModuleList, KVCache}
        for module in self.modules():
            if module._forward_hooks or module._forward_pre_hooks:
                return None
            if type(module) is nn.Linear:
                if (module.__dict__.get("_dense_kernel") is None
                        or getattr(module.__dict__.get("forward"), "__func__", None) is not _decode_linear_forward):
                    return None  # kernels off, or someone else's forward
            elif type(module) not in plain or "forward" in module.__dict__:
                return None  # a swapped (LoRA, quantized) or patched module must run as a module
        if any(layer.__dict__.get("_decode_ops") is not ops for layer in layers):
            return None  # fuse_layers=False: the layers run module by module on purpose

        def layer_tensors(layer: DecoderLayer) -> list[torch.Tensor]:
            a, m = layer.self_attn, layer.mlp
            none = torch.empty(0, dtype=dtype)
            bias = [none if p.bias is None else p.bias.detach() for p in (a.q_proj, a.k_proj, a.v_proj)]
            return [layer.input_layernorm.weight.detach(), layer.post_attention_layernorm.weight.detach(),
                    a.q_proj.weight.detach(), bias[0], a.k_proj.weight.detach(), bias[1], a.v_proj.weight.detach(),
                    bias[2], a.o_proj.weight.detach(), m.gate_proj.weight.detach(), m.up_proj.weight.detach(),
                    m.down_proj.weight.detach(), a.kv_cache.k_cache, a.kv_cache.v_cache]

        tensors = [layer_tensors(layer) for layer in layers]
        tensors.append([self.model.embed_tokens.weight, self.model.norm.weight, self.lm_head.weight])
        if any(not t.is_contiguous() or t.dtype is not dtype for ts in tensors for t in ts):
            return None
        tensors.pop()
        eps = {layer.input_layernorm.eps for layer in layers} | {layer.post_attention_layernorm.eps for layer in layers}
        if eps != {self.model.norm.eps} or self.lm_head.bias is not None:
            return None
        plan = ops.DecodePlan(self.model.embed_tokens.weight.detach(), tensors, self.model.norm.weight.detach(),
                              self.lm_head.weight.detach(), self._rope[0], self._rope[1], self.model.norm.eps,
                              self.args.n_heads, self.args.n_kv_heads)
        if any(m.__dict__.get("_packed") for m in self.modules() if type(m) is nn.Linear):
            none = torch.empty(0, dtype=dtype)

            def pack(m: nn.Linear) -> torch.Tensor:  # the copy _decode_linear_forward uses (made here if new)
                return packed_weight(m, m.__dict__["_dense_kernel"]) if m.__dict__.get("_packed") else none

            plan.set_packs([[pack(p) for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                                               layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj,
                                               layer.mlp.down_proj)] for layer in layers], pack(self.lm_head))
        return plan

    def forward(
        self, input_ids: torch.Tensor, input_pos: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (B, T, V) for ``input_ids`` (B, T) at positions ``input_pos`` (T,); (B, 1, V) with ``last_only``.

        With caches set up, ``input_pos`` is required and keys/values are written there; each token attends to every
        cached position up to its own. Without caches, the forward is causal over ``input_ids`` alone (positions
        default to 0..T-1) and differentiable.
        """
        bsz, seqlen = input_ids.shape
        x = self.model.embed_tokens(input_ids)  # (B, T, D)
        mask: torch.Tensor | None = None
        kv_len = 0
        if self.has_caches:
            if input_pos is None:
                raise ValueError("caches are set up: pass input_pos (T,), or call clear_caches() to train")
            if input_pos.shape != (seqlen,):
                raise ValueError(f"input_pos must have shape ({seqlen},), got {tuple(input_pos.shape)}")
            kv_len = int(input_pos[-1]) + 1
            if kv_len > self.max_seq_len:
                raise ValueError(f"position {kv_len - 1} is beyond the cache ({self.max_seq_len} positions)")
            if seqlen > 1:  # a block of queries: each sees cached keys up to its own position
                key_pos = torch.arange(kv_len, device=input_ids.device)
                mask = key_pos[None, :] <= input_pos[:, None]  # (T, S)
        if self._rope is not None and input_pos is not None and self._rope[0].dtype == x.dtype:
            cos, sin = self._rope[0][input_pos], self._rope[1][input_pos]  # (T, hd)
        else:
            positions = input_pos if input_pos is not None else torch.arange(seqlen, device=input_ids.device)
            cos, sin = rope_cos_sin(positions, self.args.head_dim, self.args.rope_theta, x.dtype)  # (T, hd)
        for layer in self.model.layers:
            x = layer(x, cos, sin, input_pos, mask, kv_len)
        if last_only:  # prefill needs only the last position: skip the head's (T-1) x V product
            x = x[:, -1:]
        return self.lm_head(self.model.norm(x))  # (B, T, V)
