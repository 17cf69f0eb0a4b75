"""LoRA training step: Albumen's engine + adapters vs transformers + HF peft, same model, config and batch, one run.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/lora_train.py [--steps 4] [--batch 2] [--seq 256]

Both sides train SmolLM2-135M (fp32, the same weights from the converted cache folder) with LoRA r=8, alpha=16 on all
seven linear projections of every layer, AdamW, on the same seeded random batch: one step = forward, loss,
backward, optimiser step.
- step time: the two models live in this process and take turns (A/B/A/B...), so machine noise hits both; medians
  and the ratio Albumen / peft from the same run.
- peak memory: each side runs its steps again in a fresh subprocess; after one warm-up step (every weight touched,
  optimiser state allocated) the peak resident set is reset (/proc/self/clear_refs), and the peak during the steps
  above the resident set before them is reported, with the resident set itself.
- trainable-parameter share, adapter size on disk (PEFT format), and adapter switch time: activating one of two
  loaded adapters on the 210 wrapped layers (median of 200), plus the merged-switch cost (unmerge + merge).
Prints a JSON object and a few readable lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
R, ALPHA, LR = 8, 16.0, 1e-4


def model_folder() -> Path:
    from albumen.llm.loading import resolve_folder

    return resolve_folder("smollm2-135m")


def batch(vocab: int, b: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (b, t), generator=g)  # (B, T)
    labels = ids.clone()
    labels[:, : t // 2] = -100  # a prompt half without loss, as in SFT
    return ids, labels


def albumen_side(folder: Path) -> tuple[Any, Any, Any]:
    """(model, step function, registry): our Transformer + AdapterRegistry + the trainer's loss (``model_loss``: the
    LM head runs on the labelled positions only)."""
    from albumen.llm.adapters.config import AdapterConfig
    from albumen.llm.adapters.registry import AdapterRegistry, trainable_parameters
    from albumen.llm.train.sft import model_loss
    from albumen.llm.weights.safetensors_io import load_folder

    model = load_folder(folder, torch.float32)
    reg = AdapterRegistry(model)
    torch.manual_seed(0)
    reg.add("bench", AdapterConfig(r=R, alpha=ALPHA, target_modules=tuple(TARGETS)))
    reg.activate("bench")
    params = trainable_parameters(model, "bench")
    opt = torch.optim.AdamW(params, lr=LR)
    model.train()

    def step(ids: torch.Tensor, labels: torch.Tensor) -> float:
        loss_sum, n = model_loss(model, ids, labels)
        loss = loss_sum / n
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return model, step, reg


def peft_side(folder: Path) -> tuple[Any, Any]:
    """(model, step function): transformers LlamaForCausalLM + peft LoRA, its own loss (labels=...)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS, task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)

    def step(ids: torch.Tensor, labels: torch.Tensor) -> float:
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return model, step


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(side: str, steps: int, b: int, t: int) -> None:
    """Run in a subprocess: print {"before_mb", "peak_mb", "train_mb"} for ``side``."""
    folder = model_folder()
    step = albumen_side(folder)[1] if side == "albumen" else peft_side(folder)[1]
    ids, labels = batch(49152, b, t)
    step(ids, labels)  # warm-up: touches every (memory-mapped) weight and allocates the optimiser state
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _status_kb("VmRSS")
    for _ in range(steps):
        step(ids, labels)
    peak = _status_kb("VmHWM")
    print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024, "train_mb": (peak - before) / 1024}))


def measure_memory(side: str, steps: int, b: int, t: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", side, "--steps", str(steps), "--batch", str(b), "--seq", str(t)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def switch_times(reg: Any, model: Any) -> dict[str, float]:
    """Median ms to switch between two loaded adapters, plain and merged."""
    from albumen.llm.adapters.config import AdapterConfig

    reg.add("other", AdapterConfig(r=R, alpha=ALPHA, target_modules=tuple(TARGETS)))
    names = ["bench", "other"]
    plain = []
    for i in range(200):
        t0 = time.perf_counter()
        reg.activate(names[i % 2])
        plain.append((time.perf_counter() - t0) * 1e3)
    merged = []
    with torch.no_grad():
        for i in range(6):
            t0 = time.perf_counter()
            reg.activate(names[i % 2])  # unmerges the previous adapter
            reg.merge()
            merged.append((time.perf_counter() - t0) * 1e3)
    reg.unmerge()
    reg.remove("other")
    return {"switch_ms": statistics.median(plain), "switch_merged_ms": statistics.median(merged),
            "wrapped_layers": len(__import__("albumen.llm.adapters.registry", fromlist=["x"]).lora_layers(model))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4, help="timed steps per side (after one warm-up step each)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--memory-child", choices=["albumen", "peft"], default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    from albumen.llm.train.threads import pick_threads

    pick_threads()  # the same count for both sides (and for the memory subprocesses, each probing again)
    if a.memory_child:
        memory_child(a.memory_child, max(2, a.steps // 2), a.batch, a.seq)
        return
    torch.manual_seed(0)
    folder = model_folder()
    ours, ours_step, reg = albumen_side(folder)
    theirs, peft_step = peft_side(folder)
    ids, labels = batch(ours.args.vocab_size, a.batch, a.seq)
    with torch.no_grad():  # same weights, same adapter init (B = 0): the first losses must agree
        ours.eval()
        theirs.eval()
        from albumen.llm.train.sft import model_loss

        ls, n = model_loss(ours, ids, labels)
        loss_gap = abs(float(ls / n) - float(theirs(input_ids=ids, labels=labels).loss))
        ours.train()
        theirs.train()
    ours_step(ids, labels)  # warm-up
    peft_step(ids, labels)
    times: dict[str, list[float]] = {"albumen": [], "peft": []}
    for i in range(a.steps):
        order = [("albumen", ours_step), ("peft", peft_step)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn(ids, labels)
            times[name].append(time.perf_counter() - t0)
    step_s = {k: statistics.median(v) for k, v in times.items()}
    trainable = sum(v.numel() for v in reg.state_dict("bench").values())
    total = sum(p.numel() for p in ours.parameters())
    with tempfile.TemporaryDirectory() as d:
        reg.save("bench", d)
        size = sum(f.stat().st_size for f in Path(d).iterdir())
    switch = switch_times(reg, ours)
    del ours, theirs
    mem = {side: measure_memory(side, a.steps, a.batch, a.seq) for side in ("albumen", "peft")}
    res = {
        "config": {"model": "smollm2-135m fp32", "r": R, "alpha": ALPHA, "targets": TARGETS, "batch": a.batch,
                   "seq": a.seq, "steps": a.steps, "threads": torch.get_num_threads()},
        "first_loss_gap": loss_gap,
        "step_s": step_s, "step_ratio": step_s["albumen"] / step_s["peft"], "step_s_all": times,
        "memory_mb": mem, "train_memory_ratio": mem["albumen"]["train_mb"] / mem["peft"]["train_mb"],
        "peak_memory_ratio": mem["albumen"]["peak_mb"] / mem["peft"]["peak_mb"],
        "trainable_params": trainable, "trainable_share": trainable / total,
        "adapter_bytes": size, **switch,
    }
    print(json.dumps(res, indent=1))
    print(f"step: albumen {step_s['albumen']:.3f}s, peft {step_s['peft']:.3f}s, ratio {res['step_ratio']:.2f}x")
    print(f"memory during steps: albumen {mem['albumen']['train_mb']:.0f} MB, peft {mem['peft']['train_mb']:.0f} MB, "
          f"ratio {res['train_memory_ratio']:.2f}x; overall peak ratio {res['peak_memory_ratio']:.2f}x")
    print(f"trainable {trainable} ({100 * res['trainable_share']:.2f}%), adapter {size / 1e6:.2f} MB, switch "
          f"{switch['switch_ms']:.3f} ms ({switch['wrapped_layers']} layers), merged switch "
          f"{switch['switch_merged_ms']:.1f} ms")


if __name__ == "__main__":
    main()
