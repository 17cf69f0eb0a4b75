"""A trained draft head for a target with no smaller sibling (SmolLM2-135M), in the style of EAGLE (Li et al. 2024,
https://arxiv.org/abs/2401.15077): one decoder layer that reads the target's own last hidden state.

At position j the head takes the target's final (normed) hidden state f_j and the embedding of the next token
t_{j+1}, fuses them (``fc``: 2D -> D), runs one causal decoder layer with its own KV cache and predicts f_{j+1}; the
target's LM head turns that into a token. Drafting k tokens is one block over the newly verified positions (true
features) and k - 1 single steps on predicted features. The head reuses the target's embeddings and LM head, so its
own weights are small; the LM head is restricted to the ``vocab`` the head was trained to emit (FR-Spec style), which
makes a draft step a fraction of a target step. Tokens outside it are simply never drafted.

The target's features are captured by a forward hook on its last decoder layer while the target runs as modules (the
prompt's prefill); where the target decodes on its single-call plan, the decoding loop hands them over instead
(``observe``, from ``plan.features()``) and the hook is removed (``release``), which also ends in ``finish``. This module knows nothing about training (train_head.py) or files beyond its own weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from albumen.llm.model import DecoderLayer, ModelArgs, Transformer, rope_cos_sin, use_decode_linears
from albumen.llm.sampling import SamplingConfig, logits_to_probs
from albumen.llm.speculative.drafters.base import Draft, unsure

__all__ = ["DraftHead", "HeadConfig", "HeadDrafter", "head_weight", "load_head", "save_head"]


@dataclass(frozen=True)
class HeadConfig:
    """The head's shape; ``target`` names the model it was trained for (checked on load)."""

    dim: int = 576
    n_heads: int = 9
    n_kv_heads: int = 3
    intermediate_size: int = 1536
    norm_eps: float = 1e-5
    rope_theta: float = 100000.0
    max_seq_len: int = 8192
    target: str = "smollm2-135m"

    @classmethod
    def for_target(cls, args: ModelArgs, target: str, intermediate_size: int | None = None) -> HeadConfig:
        return cls(args.dim, args.n_heads, args.n_kv_heads, intermediate_size or args.intermediate_size,
                   args.norm_eps, args.rope_theta, args.max_seq_len, target)

    def layer_args(self) -> ModelArgs:
        return ModelArgs(vocab_size=1, dim=self.dim, n_layers=1, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                         intermediate_size=self.intermediate_size, norm_eps=self.norm_eps,
                         rope_theta=self.rope_theta, max_seq_len=self.max_seq_len)


class DraftHead(nn.Module):
    """fc(cat(embed(t_{j+1}), f_j)) -> one decoder layer -> predicted f_{j+1}. ``vocab``: the ids it may draft."""

    def __init__(self, cfg: HeadConfig, vocab: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.args = cfg.layer_args()
        self.fc = nn.Linear(2 * cfg.dim, cfg.dim, bias=True)
        self.layer = DecoderLayer(self.args)
        self.register_buffer("vocab", vocab.to(torch.long).clone(), persistent=True)  # (Vd,) target ids

    def forward(self, emb: torch.Tensor, feat: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted next features (B, T, D) from token embeddings and features, both (B, T, D).

        With the layer's cache set up, ``input_pos`` (T,) says where to write, as in the engine's ``Transformer``.
        """
        x = self.fc(torch.cat([emb, feat.to(emb.dtype)], dim=-1))  # (B, T, D)
        seqlen = x.shape[1]
        mask, kv_len = None, 0
        if self.layer.self_attn.kv_cache is not None:
            if input_pos is None:
                raise ValueError("the head's cache is set up: pass input_pos")
            kv_len = int(input_pos[-1]) + 1
            if seqlen > 1:
                mask = torch.arange(kv_len)[None, :] <= input_pos[:, None]  # (T, S)
        positions = input_pos if input_pos is not None else torch.arange(seqlen)
        cos, sin = rope_cos_sin(positions, self.args.head_dim, self.args.rope_theta, x.dtype)  # (T, hd)
        return self.layer(x, cos, sin, input_pos if kv_len else None, mask, kv_len)

    def setup_cache(self, max_seq_len: int, dtype: torch.dtype) -> None:
        from albumen.llm.kv_cache import KVCache

        attn = self.layer.self_attn
        if attn.kv_cache is None or attn.kv_cache.max_seq_len < max_seq_len or attn.kv_cache.k_cache.dtype != dtype:
            attn.kv_cache = KVCache(1, max_seq_len, self.args.n_kv_heads, self.args.head_dim, dtype)

    def clear_cache(self) -> None:
        self.layer.self_attn.kv_cache = None


def head_weight(lm_head: nn.Module) -> torch.Tensor:
    """The float (V, D) weight of a target's LM head, plain, quantized (dequantized) or wrapped by an adapter."""
    base = getattr(lm_head, "base", None)
    if isinstance(base, nn.Module) and not hasattr(lm_head, "dequantize"):
        return head_weight(base)  # a LoRA wrapper: drafts only need the base head
    if hasattr(lm_head, "dequantize"):
        return lm_head.dequantize().float()
    weight = getattr(lm_head, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return weight
    raise TypeError(f"cannot read a weight from the LM head {type(lm_head).__name__}")


def save_head(head: DraftHead, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Weights as fp16 safetensors plus the config (and ``meta``, e.g. training time) in the header."""
    from safetensors.torch import save_file

    tensors = {k: (v.half() if v.is_floating_point() else v.to(torch.int32)).contiguous()
               for k, v in head.state_dict().items() if "kv_cache" not in k}
    header = {"config": json.dumps(asdict(head.cfg)), "meta": json.dumps(meta or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)


def load_head(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[DraftHead, dict[str, Any]]:
    """(head, meta) from ``save_head``'s file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no draft head there (train one with python -m "
                                "albumen.llm.speculative.train_head)")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "config" not in header:
        raise ValueError(f"{path}: not a draft head file (no config in the header)")
    head = DraftHead(HeadConfig(**json.loads(header["config"])), tensors["vocab"])
    head.load_state_dict({k: (v.to(dtype) if v.is_floating_point() else v.long()) for k, v in tensors.items()})
    return head.to(dtype).eval(), json.loads(header.get("meta", "{}"))


class HeadDrafter:
    """Drafts with a ``DraftHead`` on the target's hidden states."""

    name = "head"

    def __init__(self, head: DraftHead, cost: float = 0.08, dtype: torch.dtype | None = None,
                 plan: bool = True, min_confidence: float = 0.0) -> None:
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence}")
        self.head = head.eval()
        # Stop a draft before a token whose probability under the head (top-1 of its restricted softmax) is below
        # this; like the draft length, it steers speed only.
        self.min_confidence = min_confidence
        self.passes = 0  # head forward passes so far (one per drafted or confidence-stopped token)
        self.cost = cost
        self.dtype = dtype  # the head's compute dtype; None: the target's. Drafts only steer speed, never output.
        self.use_plan = plan  # greedy drafts in one C++ call (HeadPlan) where the kernels are built
        self._plan: Any = None
        self._plan_key: tuple[Any, ...] = ()
        self._rope: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._target: Transformer | None = None
        self._hook: Any = None
        self._feats = torch.empty(0)
        self._lm = nn.Linear(1, 1, bias=False)  # (D -> Vd): the LM head rows the head may draft
        self._lm_key: tuple[Any, ...] = ()
        self._fed: list[int] = []  # the tokens the head's true-feature cache entries were computed from

    def start(self, target: Transformer, prompt_ids: Sequence[int], max_seq_len: int) -> None:
        if target.args.dim != self.head.cfg.dim:
            raise ValueError(f"the head was trained for width {self.head.cfg.dim} ({self.head.cfg.target}); "
                             f"the target has {target.args.dim}")
        dtype = self.dtype or target.model.norm.weight.dtype
        self.head.to(dtype)
        use_decode_linears(self.head, pack=False)  # one-row products on the engine's row-major kernels (model.py)
        self.head.setup_cache(max_seq_len, dtype)
        weight = head_weight(target.lm_head)
        key = (id(target.lm_head), weight.data_ptr(), dtype)
        if key != self._lm_key:
            self._lm = nn.Linear(target.args.dim, len(self.head.vocab), bias=False, dtype=dtype)
            self._lm.weight = nn.Parameter(weight[self.head.vocab].to(dtype).contiguous(), requires_grad=False)
            use_decode_linears(self._lm, pack=False)  # the C++ head step reads row-major weights
            self._lm_key = key
        self._feats = torch.zeros(max_seq_len, target.args.dim, dtype=dtype)
        self._fed = []
        self._target = target
        self._plan = self._head_plan(target, dtype) if self.use_plan else None
        self._hook = target.model.layers[-1].register_forward_hook(self._capture)

    def _head_plan(self, target: Transformer, dtype: torch.dtype) -> Any:
        """The C++ greedy draft step over the head's own tensors (``HeadPlan``), or None where it does not apply
        (kernels off, another dtype, a linear not on the row-major dense kernel). Same kernels and order as the module path."""
        layer, attn, mlp = self.head.layer, self.head.layer.self_attn, self.head.layer.mlp
        ops = layer.__dict__.get("_decode_ops")
        if ops is None or not hasattr(ops, "HeadPlan") or dtype not in (torch.float32, torch.bfloat16):
            return None
        linears = (self.head.fc, self._lm, attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj,
                   mlp.up_proj, mlp.down_proj)
        if (any(m.__dict__.get("_dense_kernel") is None or m.__dict__.get("_packed") for m in linears)
                or self.head.fc.bias is None):
            return None  # the plan reads row-major weights on the dense kernel
        embed = target.model.embed_tokens
        if type(embed) is not nn.Embedding or embed.weight.dim() != 2 or not embed.weight.is_floating_point():
            return None  # a quantized or adapted embedding runs as its module
        cache = attn.kv_cache
        key = (cache.k_cache.data_ptr(), self._lm.weight.data_ptr(), self.head.fc.weight.data_ptr(), dtype)
        if key == self._plan_key and self._plan is not None:
            return self._plan
        size = (cache.max_seq_len, dtype)
        if size not in self._rope:
            self._rope = {size: rope_cos_sin(torch.arange(cache.max_seq_len), self.head.args.head_dim,
                                             self.head.args.rope_theta, dtype)}
        none = torch.empty(0, dtype=dtype)
        tensors = [layer.input_layernorm.weight, layer.post_attention_layernorm.weight, attn.q_proj.weight,
                   attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias, attn.v_proj.weight, attn.v_proj.bias,
                   attn.o_proj.weight, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight,
                   cache.k_cache, cache.v_cache]
        tensors = [none if t is None else t.detach() for t in tensors]
        if layer.input_layernorm.eps != layer.post_attention_layernorm.eps:
            return None
        cos, sin = self._rope[size]
        self._plan = ops.HeadPlan(embed.weight.detach().to(dtype).contiguous(), tensors,
                                  self.head.fc.weight.detach(), self.head.fc.bias.detach(), self._lm.weight.detach(),
                                  self.head.vocab, cos, sin, layer.input_layernorm.eps, self.head.args.n_heads,
                                  self.head.args.n_kv_heads)
        self._plan_key = key
        return self._plan

    def finish(self) -> None:
        self.release()

    def release(self) -> bool:
        """Stop watching the target (its features are no longer needed this sequence); True if a hook was removed.
        The hook keeps the engine off its single-call decode plan, so plain steps run faster without it."""
        if self._hook is None:
            return False
        self._hook.remove()
        self._hook = None
        return True

    def observe(self, pos: int, feats: torch.Tensor) -> None:
        """The target's normed last hidden states (T, D) for positions pos .. pos+T-1, handed over by a decoding loop
        that runs the target on its decode plan (``plan.features()``) instead of modules the hook could watch."""
        if self._target is None or pos < 0 or pos + feats.shape[0] > self._feats.shape[0]:
            return
        self._feats[pos:pos + feats.shape[0]] = feats.to(self._feats.dtype)

    def _capture(self, module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        """Store the target's normed last hidden states by position (args: x, cos, sin, input_pos, ...)."""
        input_pos = args[3]
        if input_pos is None or self._target is None or out.shape[0] != 1:
            return
        self._feats[input_pos] = self._target.model.norm(out[0]).to(self._feats.dtype)  # (T, D)

    def _logits(self, small: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits (1, V) with -inf outside the head's vocab, from the head's logits (1, Vd)."""
        assert self._target is not None
        full = torch.full((1, self._target.args.vocab_size), float("-inf"), dtype=torch.float32)
        return full.index_copy_(1, self.head.vocab, small.float())

    def propose(self, tokens: Sequence[int], k: int, cfg: SamplingConfig, generator: torch.Generator | None) -> Draft:
        if k <= 0 or self._target is None:
            return Draft([])
        tokens = list(tokens)
        last = len(tokens) - 1  # features are known for positions 0..last-1 (the last token is not verified yet)
        if last < 1 or last + k > self._feats.shape[0]:
            return Draft([])
        # Head entry j reads (f_j, t_{j+1}): it is still valid while tokens[:j+2] are unchanged.
        same = 0
        while same < min(len(self._fed), len(tokens)) and self._fed[same] == tokens[same]:
            same += 1
        start = max(0, min(same - 1, last - 1))  # always run at least one true-feature position
        if cfg.greedy and self._plan is not None:  # the same drafts in one C++ call
            drafted = self._plan.draft(tokens[start + 1 : last + 1], self._feats[start:last], start, k,
                                       self.min_confidence)
            self.passes += len(drafted) + (1 if len(drafted) < k else 0)  # a stopped draft paid one more pass
            self._fed = tokens
            return Draft(list(drafted))
        embed = self._target.model.embed_tokens
        pos = torch.arange(start, last)
        ids = torch.tensor([tokens[start + 1 : last + 1]])  # (1, T): t_{j+1} for j in pos
        dtype = self._feats.dtype
        feat = self.head(embed(ids).to(dtype), self._feats[pos][None], pos)[:, -1]  # (1, D) predicted f_last
        self._fed = tokens  # entries 0..last-1 now hold true features
        drafted: list[int] = []
        probs: list[torch.Tensor] = []
        for i in range(k):
            self.passes += 1
            small = self._lm(feat)  # (1, Vd)
            if unsure(small, self.min_confidence):
                break
            if cfg.greedy:  # greedy verification never reads q: skip the full-vocabulary distribution
                token = int(self.head.vocab[int(small.argmax(-1))])
            else:
                q = logits_to_probs(self._logits(small), cfg)  # (1, V)
                token = int(torch.multinomial(q, 1, generator=generator))
                probs.append(q[0])
            drafted.append(token)
            if i + 1 < k:
                p = torch.tensor([last + i])
                feat = self.head(embed(torch.tensor([[token]])).to(dtype), feat[None], p)[:, -1]
        return Draft(drafted, torch.stack(probs) if probs else None)
