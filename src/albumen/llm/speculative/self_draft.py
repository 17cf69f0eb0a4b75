"""A distilled 4-bit copy of the target as its own draft model (for targets without a smaller sibling: SmolLM2-135M).

The draft is the target's own weights quantized to int4 (groups of 32, the head and token table at int8): 5.7x fewer
bytes per token than the fp32 target, on the int4 decode plan. Quantization moves some of the target's greedy
choices, so the draft is then **distilled** to agree with the target: the integer codes stay fixed and a small set of
float parameters is trained (as PEQA, Kim et al. 2023, trains only the quantization scales): one gain per output row
of every quantized decoder linear (folded into that row's group scales and zeros afterwards, so the draft is still a
plain int4 model on the same kernels) and every RMSNorm weight. The loss is the forward KL of the draft's next-token
distribution from the target's, on the target's own greedy answers to the training prompts (``distill.py data``,
teacher = the target), reply positions only. What is stored (``assets/drafters/<target>-self.safetensors``) is only
those parameters: ~190k numbers for SmolLM2-135M.

    python -m albumen.llm.speculative.distill data --teacher smollm2-135m --dtype float32 --grounded 400 --open 400 \\
        --dir build/speculative/self-draft --minutes 10
    python -m albumen.llm.speculative.self_draft train --target smollm2-135m --data build/speculative/self-draft \\
        --minutes 15 --out assets/drafters/smollm2-135m-self.safetensors

Training runs on a float "shadow" of the draft (the target's architecture with the draft's dequantized weights and
hooks that multiply each linear's output by its gain), which computes what the int4 draft computes up to kernel
rounding. This module knows the engine's model and quantized modules; drafting is ``drafters/model.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albumen.llm.model import RMSNorm, Transformer

__all__ = ["SelfDraftConfig", "apply_gains", "fold_gain", "load_gains", "quantized_copy", "save_gains", "self_draft",
           "train_gains"]

DEFAULT_SCHEME = "int4-g32"


@dataclass(frozen=True)
class SelfDraftConfig:
    """Distillation of the draft's gains and norms; the defaults suit SmolLM2-135M on a few hundred answers."""

    lr: float = 2e-3
    batch_size: int = 4
    seq_len: int = 384
    steps: int = 400  # the cosine horizon; training stops earlier at ``minutes``
    minutes: float = 15.0
    held_out: int = 24  # answers kept aside to measure agreement before and after
    seed: int = 0


def _float_state(target: Transformer) -> dict[str, Tensor]:
    """The target's weights as a plain model's state dict: KV caches left out, and every LoRA / DoRA-wrapped linear
    as its base with the active adapter folded in (what the target computes with that adapter on)."""
    from albumen.llm.adapters.registry import lora_layers

    wrapped = lora_layers(target)
    state: dict[str, Tensor] = {}
    for key, value in target.state_dict().items():
        if "kv_cache" in key:
            continue
        owner = next((n for n in wrapped if key.startswith(n + ".")), None)
        if owner is None:
            state[key] = value
        elif key.startswith(owner + ".base."):  # the adapters' own tensors are folded in below
            state[owner + "." + key[len(owner) + len(".base."):]] = value
    with torch.no_grad():
        for name, layer in wrapped.items():
            if layer.active is not None and not layer.merged:
                w = state[name + ".weight"]
                state[name + ".weight"] = layer.adapters[layer.active].merged_weight(w.float()).to(w.dtype)
    return state


def quantized_copy(target: Transformer, scheme: str = DEFAULT_SCHEME) -> Transformer:
    """A new model with the target's weights (an active LoRA adapter folded in), quantized with ``scheme``; the
    target is not touched."""
    from albumen.llm.quant import QuantConfig, quantize_model, quantized_modules

    if quantized_modules(target):
        raise ValueError("the target is already quantized: a self draft copies a float target")
    dtype = target.model.embed_tokens.weight.dtype
    draft = Transformer(target.args).to(dtype)
    draft.load_state_dict(_float_state(target), strict=False)
    draft.tie_weights()
    draft.eval().requires_grad_(False)
    quantize_model(draft, QuantConfig.from_scheme(scheme))
    return draft


def _decoder_linears(model: nn.Module) -> dict[str, nn.Module]:
    """The decoder layers' projections by name (``model.layers.3.mlp.down_proj``); not the head."""
    return {n: m for n, m in model.named_modules() if ".layers." in n and n.rsplit(".", 1)[-1].endswith("_proj")}


def _norms(model: nn.Module) -> dict[str, RMSNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, RMSNorm)}


def fold_gain(module: nn.Module, gain: Tensor) -> None:
    """Multiply every output row of a quantized linear by ``gain`` (N,): int4 rows w = (q - 8) s + z scale both s and
    z; int8 rows w = q s scale s. Only before the module's kernel layout is built (it is cached)."""
    from albumen.llm.quant.linear import Int4Linear, Int8Linear

    if getattr(module, "_runtime_key", None) is not None:
        raise RuntimeError("fold gains before the first forward (the kernel layout is already built)")
    g = gain.detach().float()
    if isinstance(module, Int4Linear):
        module.scale = (module.scale.float() * g[:, None]).to(module.scale.dtype)
        if module.zero is not None:
            module.zero = (module.zero.float() * g[:, None]).to(module.zero.dtype)
    elif isinstance(module, Int8Linear):
        module.scale = (module.scale.float() * g).to(module.scale.dtype)
    elif isinstance(module, nn.Linear):
        module.weight.data.mul_(g[:, None].to(module.weight.dtype))
    else:
        raise TypeError(f"cannot fold a gain into {type(module).__name__}")


def apply_gains(draft: Transformer, tensors: dict[str, Tensor]) -> int:
    """Fold trained ``<linear>.gain`` rows and set ``<norm>.weight`` values; returns how many tensors were used.
    Names must match the draft (an error names the first that does not)."""
    linears, norms = _decoder_linears(draft), _norms(draft)
    used = 0
    for key, value in tensors.items():
        name, _, kind = key.rpartition(".")
        if kind == "gain" and name in linears:
            fold_gain(linears[name], value)
        elif kind == "weight" and name in norms:
            if norms[name].weight.shape != value.shape:
                raise ValueError(f"{key}: shape {tuple(value.shape)} for {tuple(norms[name].weight.shape)}")
            norms[name].weight.data.copy_(value.to(norms[name].weight.dtype))
        else:
            raise ValueError(f"{key}: no such gain or norm in the draft")
        used += 1
    return used


def save_gains(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(path),
              metadata={"albumen": json.dumps(meta)})


def load_gains(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no trained self-draft gains (train them with "
                                "python -m albumen.llm.speculative.self_draft train)")
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("albumen", "{}"))
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def self_draft(target: Transformer, gains: Path | None = None, scheme: str | None = None) -> Transformer:
    """The target's quantized copy with trained gains folded in (``gains`` None: untrained). The scheme is the one the
    gains were trained for (their header) unless given."""
    tensors, meta = load_gains(gains) if gains is not None else ({}, {})
    draft = quantized_copy(target, scheme or meta.get("scheme", DEFAULT_SCHEME))
    if tensors:
        apply_gains(draft, tensors)
    return draft


class _Shadow:
    """A float, trainable stand-in for the quantized draft: the target's architecture holding the draft's dequantized
    weights, a gain per output row of every decoder linear (a forward hook) and trainable norm weights."""

    def __init__(self, target: Transformer, draft: Transformer) -> None:
        self.model = Transformer(target.args)
        self.model.load_state_dict({k: v.float() for k, v in _float_state(target).items()}, strict=False)
        self.model.tie_weights()
        self.model.float().requires_grad_(False)
        with torch.no_grad():
            shadow_linears = dict(self.model.named_modules())
            for name, module in dict(draft.named_modules()).items():
                if hasattr(module, "dequantize") and name in shadow_linears:
                    shadow_linears[name].weight.copy_(module.dequantize().float())
        self.gains: dict[str, nn.Parameter] = {}
        for name, module in _decoder_linears(self.model).items():
            gain = nn.Parameter(torch.ones(module.out_features))
            self.gains[name] = gain
            module.register_forward_hook(lambda m, i, out, g=gain: out * g)
        self.norms = _norms(self.model)
        for norm in self.norms.values():
            norm.weight.requires_grad_(True)

    def parameters(self) -> list[nn.Parameter]:
        return [*self.gains.values(), *(n.weight for n in self.norms.values())]

    def tensors(self) -> dict[str, Tensor]:
        out = {f"{n}.gain": g.detach().clone() for n, g in self.gains.items()}
        out.update({f"{n}.weight": m.weight.detach().clone() for n, m in self.norms.items()})
        return out


def _batches(seqs: Sequence[tuple[list[int], int]], batch_size: int, seq_len: int,
             rng: random.Random) -> list[tuple[Tensor, Tensor]]:
    """(ids (B, T), mask (B, T - 1) of reply positions) batches from (token ids, reply start) sequences, cut to
    ``seq_len`` and right-padded (padding is masked out)."""
    order = list(range(len(seqs)))
    rng.shuffle(order)
    out = []
    for i in range(0, len(order), batch_size):
        chunk = [seqs[j] for j in order[i:i + batch_size]]
        width = min(seq_len, max(len(ids) for ids, _ in chunk))
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width - 1, dtype=torch.bool)
        for b, (toks, start) in enumerate(chunk):
            toks = toks[:width]
            ids[b, :len(toks)] = torch.tensor(toks)
            mask[b, max(0, start - 1):len(toks) - 1] = True  # positions whose next token is a reply token
        out.append((ids, mask))
    return out


def _kl(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over rows of KL(softmax(teacher) || softmax(student)); (R, V) logits each."""
    return F.kl_div(F.log_softmax(student.float(), -1), F.log_softmax(teacher.float(), -1), log_target=True,
                    reduction="batchmean")


@torch.inference_mode()
def agreement(draft: nn.Module, target: nn.Module, seqs: Sequence[tuple[list[int], int]]) -> float:
    """Share of reply positions where the draft's argmax equals the target's (teacher-forced on the sequences).
    Both models' KV caches are dropped (whole-sequence forwards)."""
    for model in (draft, target):
        model.clear_caches()
    hit = total = 0
    for ids, start in seqs:
        x = torch.tensor([ids])
        a = draft(x)[0, start - 1:-1].argmax(-1)
        b = target(x)[0, start - 1:-1].argmax(-1)
        hit += int((a == b).sum())
        total += int(a.numel())
    return hit / max(1, total)


def train_gains(target: Transformer, draft: Transformer, seqs: Sequence[tuple[list[int], int]],
                cfg: SelfDraftConfig = SelfDraftConfig(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Distil the draft's gains and norms towards the target on ``seqs`` (token ids, index of the first reply token);
    returns {"tensors": ..., "steps", "seconds", "loss_first", "loss_last"}. The draft itself is not modified; the
    target's KV caches are dropped (it runs whole batches)."""
    if not seqs:
        raise ValueError("no training sequences")
    target.clear_caches()
    shadow = _Shadow(target, draft)
    params = shadow.parameters()
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = random.Random(cfg.seed)
    target.eval()
    t0 = time.perf_counter()
    step, losses = 0, []
    batches: list[tuple[Tensor, Tensor]] = []
    while step < cfg.steps and time.perf_counter() - t0 < cfg.minutes * 60:
        if not batches:
            batches = _batches(seqs, cfg.batch_size, cfg.seq_len, rng)
        ids, mask = batches.pop()
        with torch.inference_mode():
            teacher = target(ids)[:, :-1][mask].float()  # (R, V)
        teacher = teacher.clone()  # out of inference mode, for the loss
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        student = shadow.model(ids)[:, :-1][mask]
        loss = _kl(student, teacher)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 10 == 0 or step == 1:
            log(f"step {step}: KL {losses[-1]:.4f} (lr {lr:.2e}, {time.perf_counter() - t0:.0f} s)")
    return {"tensors": shadow.tensors(), "steps": step, "seconds": round(time.perf_counter() - t0, 1),
            "loss_first": losses[0], "loss_last": sum(losses[-10:]) / len(losses[-10:])}


def _sequences(data: Path) -> list[tuple[list[int], int]]:
    from albumen.llm.speculative.distill import _records, _reply

    seqs = []
    for rec in _records(sorted(Path(data).glob("teacher-*.jsonl"))):
        reply = _reply(rec)
        if reply:
            seqs.append((list(rec["prompt_ids"]) + reply, len(rec["prompt_ids"])))
    return seqs


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["train", "eval"])
    p.add_argument("--target", default="smollm2-135m")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--data", default="build/speculative/self-draft", help="teacher-*.jsonl from distill.py data")
    p.add_argument("--scheme", default=DEFAULT_SCHEME)
    p.add_argument("--gains", default=None, help="eval: a gains file (default: none, the untrained copy)")
    p.add_argument("--out", default=None, help="train: where to write the gains (.safetensors)")
    p.add_argument("--minutes", type=float, default=SelfDraftConfig.minutes)
    p.add_argument("--steps", type=int, default=SelfDraftConfig.steps)
    p.add_argument("--lr", type=float, default=SelfDraftConfig.lr)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from albumen.llm.loading import load_model

    seqs = _sequences(Path(args.data))
    if not seqs:
        raise SystemExit(f"{args.data}: no teacher-*.jsonl answers; run distill.py data with the target first")
    rng = random.Random(0)
    rng.shuffle(seqs)
    cfg = SelfDraftConfig(minutes=args.minutes, steps=args.steps, lr=args.lr)
    held, train = seqs[:cfg.held_out], seqs[cfg.held_out:]
    target, _ = load_model(args.target, args.dtype)
    target.requires_grad_(False)
    if args.stage == "eval":
        draft = self_draft(target, Path(args.gains) if args.gains else None, args.scheme)
        print(json.dumps({"held_out_agreement": agreement(draft, target, held), "sequences": len(held)}))
        return
    if not args.out:
        raise SystemExit("train: --out FILE.safetensors")
    draft = quantized_copy(target, args.scheme)
    before = agreement(draft, target, held)
    print(f"{len(train)} training answers ({sum(len(s) - b for s, b in train)} reply tokens), {len(held)} held out; "
          f"agreement before {before:.2%}", flush=True)
    result = train_gains(target, draft, train, cfg, log=lambda line: print(line, flush=True))
    trained = quantized_copy(target, args.scheme)
    apply_gains(trained, result["tensors"])
    after = agreement(trained, target, held)
    meta = {"target": args.target, "dtype": args.dtype, "scheme": args.scheme, "config": asdict(cfg),
            "train_answers": len(train), "train_reply_tokens": sum(len(s) - b for s, b in train),
            "steps": result["steps"], "train_seconds": result["seconds"], "kl_first": result["loss_first"],
            "kl_last": result["loss_last"], "held_out_agreement_before": before, "held_out_agreement_after": after,
            "threads": args.threads}
    save_gains(Path(args.out), result["tensors"], meta)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
