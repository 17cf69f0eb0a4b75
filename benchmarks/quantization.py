"""Quantization and palettization: size, quality and decode speed of every scheme, in one run, with llama.cpp.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/quantization.py [--large] [--schemes a,b,...]
        [--threads 1] [--new-tokens 64] [--repeats 3] [--recover int4-g32,pal3-gc16] [--json out.json]
    .venv/bin/python benchmarks/quantization.py --kernels            # batch-1 matmul per kernel
    .venv/bin/python benchmarks/quantization.py --step-ab FOLDER     # one int4 decode step: kernels x fused/module/plan
    .venv/bin/python benchmarks/quantization.py --rows-ab            # our int4 GEMV at 1..8 rows, two kernels

Per model (SmolLM2-135M; with ``--large`` Qwen2.5-1.5B instead) and per scheme, every variant is quantized from the
float model (the GGUF dequantized to fp32: the "fp32" reference), saved as a quantized checkpoint, and *loaded back
through ``load_model``* (the path every engine command takes). Columns:

- bits/w: stored bits per weight over every matrix (scales, LUTs included; a tied table counted once);
- file MB: the checkpoint's ``model.safetensors``; mem MB: stored tensors + kernel layouts after decoding;
- ppl: perplexity on held-out real text (the last third of gensim's ``lee_background.cor``, 300 news articles, read
  as a file), in ``--windows`` windows of ``--window`` tokens, prefill path (weight-only dequant, exact);
- KL: mean KL(fp32 || variant) per token on the first ``--kl-windows`` of those windows, prefill path;
- KL dec: the same on one window decoded token by token through the KV cache, i.e. the decode kernels' numerics
  (fbgemm's int8 path quantizes activations per token; int4pack runs in bf16);
- tok/s: greedy decode of ``--new-tokens`` tokens after a chat prompt, batch 1, variants interleaved per repeat
  (A/B/C..., then reversed), median; x fp32: its ratio to fp32 measured in the same rounds;
- llama.cpp (``llama-cpp-python``, if importable) on the model's own GGUF (Q4_1 / Q4_K_M) in the same rounds.

``mixed``: per-layer schemes chosen by measured sensitivity (``quant.sensitivity``): by default pal3-b32 everywhere,
pal4-b32 for the layers whose KL per extra bit is highest, up to 4.5 bits/weight (``--mixed LOW,HIGH,BITS``).
``--recover S``: a LoRA adapter (r=16, all projections) distilled on the frozen scheme-S model towards fp32
(``quant.recover``) on the first two thirds of the text; ppl and KL before / after on the same held-out windows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from albumen.llm.bench import BENCH_TEXT, run_once
from albumen.llm.loading import default_models_dir, load_model, resolve_folder
from albumen.llm.presets import resolve_preset
from albumen.llm.quant import (
    LayerScheme,
    QuantConfig,
    model_bits_per_weight,
    parse_scheme,
    quantize_model,
    quantized_modules,
)
from albumen.llm.quant.checkpoint import copy_model_files, save_quantized
from albumen.llm.quant.quality import perplexity_and_kl, token_windows

SMALL_SCHEMES = [
    "fp32", "bf16", "int8", "int4-g32", "int4-g64", "int4-g128", "int4-g32-sym", "int4-g64-sym", "int4-g128-sym",
    "pal2", "pal3", "pal4", "pal2-gc16", "pal3-gc16", "pal4-gc16", "pal4-b32", "pal4-b32-sym", "pal3-b32", "mixed",
    "int4-g32-all",
]
LARGE_SCHEMES = ["fp32", "int8", "int4-g32", "int4-g32-sym", "int4-g32-all", "pal4", "pal4-gc16", "pal4-b32", "mixed"]


@dataclass
class Row:
    scheme: str
    bits: float = 32.0
    file_mb: float = 0.0
    mem_mb: float = 0.0
    quant_s: float = 0.0
    load_s: float = 0.0
    ppl: float = 0.0
    kl: float = 0.0
    kl_decode: float = 0.0
    tps: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median_tps(self) -> float:
        return statistics.median(self.tps) if self.tps else 0.0


def held_out_text() -> str:
    """gensim's bundled Lee corpus (300 real news articles), read as a file without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gensim is not installed: it ships the held-out text (pip install gensim)")
    path = Path(spec.submodule_search_locations[0]) / "test" / "test_data" / "lee_background.cor"
    return path.read_text(encoding="utf-8", errors="replace")


def model_bytes(model: nn.Module) -> int:
    """Distinct parameter / buffer storage plus the kernel layouts the quantized modules have built."""
    seen: set[int] = set()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.numel() and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total + sum(m.runtime_bytes() for m in set(quantized_modules(model).values()))


@torch.no_grad()
def decode_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """(1, T) ids -> (1, T, V) logits computed one token at a time through the KV cache (decode kernels)."""
    model.setup_caches(1, ids.shape[1])
    out = [model(ids[:, t:t + 1], torch.tensor([t])) for t in range(ids.shape[1])]
    model.clear_caches()
    return torch.cat(out, dim=1)


def kl_of(ref: torch.Tensor, logits: torch.Tensor) -> float:
    p = torch.log_softmax(ref.float(), -1)
    return float((p.exp() * (p - torch.log_softmax(logits.float(), -1))).sum(-1).mean())


def mixed_config(folder: Path, calib: list[torch.Tensor], spec: str) -> tuple[QuantConfig, str]:
    """``spec`` = "LOW,HIGH,BITS": every layer at LOW, the most sensitive (KL per extra bit) at HIGH up to BITS."""
    from albumen.llm.quant.sensitivity import mixed_precision_config

    low_name, high_name, bits = spec.split(",")
    model, _ = load_model(folder, torch.float32)
    low, high = parse_scheme(low_name), parse_scheme(high_name)
    cfg, _ = mixed_precision_config(model, calib, low, high, target_bits=float(bits), base=QuantConfig(default=low))
    n_high = sum(1 for s in cfg.overrides.values() if s == high)
    return cfg, f"{n_high}/{len(cfg.overrides)} layers {high_name}, rest {low_name} (budget {bits} bits)"


def with_range_search(cfg: QuantConfig, steps: int) -> QuantConfig:
    """``cfg`` with every int4 scheme's clipping search set to ``steps`` (0: plain round-to-nearest, fastest)."""
    def fix(s: LayerScheme | None) -> LayerScheme | None:
        return replace(s, range_search=steps) if s is not None else None

    return QuantConfig(default=fix(cfg.default), lm_head=fix(cfg.lm_head), embedding=fix(cfg.embedding),
                       overrides={k: fix(v) for k, v in cfg.overrides.items()}, skip=cfg.skip)


def build_variant(scheme: str, folder: Path, out: Path, calib: list[torch.Tensor],
                  range_search: int = 8, mixed: str = "pal3-b32,pal4-b32,4.5") -> tuple[nn.Module, Row]:
    """Quantize, save, load back through ``load_model``; the loaded model and its size figures.

    ``SCHEME@bf16`` loads the SCHEME checkpoint with bf16 float parts: bf16 activations end to end (no casts
    around the bf16 kernels), as ``albumen llm generate --dtype bf16`` does.
    """
    base, _, act = scheme.partition("@")
    dtype = torch.bfloat16 if act == "bf16" else torch.float32
    row = Row(scheme)
    if base == "bf16":
        t = time.perf_counter()
        model, _ = load_model(folder, torch.bfloat16)
        row.load_s = time.perf_counter() - t
        row.bits = model_bits_per_weight(model)
        row.file_mb = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2e6
        row.note = "file: half the fp32 cache"
        return model, row
    dest = out / base
    if not (dest / "model.safetensors").is_file():
        t = time.perf_counter()
        if base == "mixed":
            cfg, row.note = mixed_config(folder, calib, mixed)
        else:
            cfg = QuantConfig.from_scheme(base)
        cfg = with_range_search(cfg, range_search)
        model, _ = load_model(folder, torch.float32)
        result = quantize_model(model, cfg)
        if result.fallbacks:
            kinds = sorted({why.split(":")[0] for why in result.fallbacks.values()})
            row.note += f" {len(result.fallbacks)} fallbacks ({', '.join(kinds)})"
        save_quantized(model, dest, cfg, model.args.to_hf_config())
        copy_model_files(folder, dest)
        row.quant_s = time.perf_counter() - t
        del model
    t = time.perf_counter()
    model, _ = load_model(dest, dtype)
    row.load_s = time.perf_counter() - t
    row.bits = model_bits_per_weight(model)
    row.file_mb = (dest / "model.safetensors").stat().st_size / 1e6
    if act:
        row.note += f" {act} activations"
    return model, row


def llama_cpp_run(gguf: Path, ids: list[int], n: int, threads: int) -> Callable[[], float] | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=len(ids) + n + 16, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)

    def run() -> float:
        llm.reset()
        count, t1 = 0, time.perf_counter()
        for _ in llm.generate(ids, temp=0.0, top_k=1, reset=True):  # EOS does not stop the raw generator
            count += 1
            if count == 1:
                t1 = time.perf_counter()
            if count == n:
                break
        return (n - 1) / (time.perf_counter() - t1)

    return run


def recover_rows(scheme: str, out: Path, teacher: nn.Module, train: list[torch.Tensor], held: list[torch.Tensor],
                 refs: list[torch.Tensor | None], steps: int) -> dict[str, Any]:
    from albumen.llm.quant.recover import RecoveryConfig, recover_with_lora

    student, _ = load_model(out / scheme, torch.float32)
    before = perplexity_and_kl(student, held, refs)
    res = recover_with_lora(student, teacher, train, RecoveryConfig(steps=steps, lr=1e-3, warmup=5))
    after = perplexity_and_kl(student, held, refs)
    adapter_mb = sum(t.numel() * t.element_size() for t in res.registry.state_dict("recovery").values()) / 1e6
    return {"scheme": scheme, "steps": steps, "seconds": round(res.seconds, 1), "adapter_mb": round(adapter_mb, 2),
            "ppl_before": before[0], "ppl_after": after[0], "kl_before": before[1], "kl_after": after[1],
            "loss_first": res.losses[0], "loss_last": res.losses[-1]}


def _cache_file(a: argparse.Namespace, name: str) -> Path:
    return a.out_dir / f"{name}.json"


def load_results(a: argparse.Namespace, name: str) -> dict[str, Any]:
    """The merged results of every phase run so far for ``name`` (empty skeleton if none)."""
    path = _cache_file(a, name)
    if path.is_file():
        return json.loads(path.read_text())
    return {"model": name, "rows": {}, "recovery": [], "quality": {}, "speed": {}}


QUALITY_KEYS = ("scheme", "bits", "file_mb", "quant_s", "load_s", "ppl", "kl", "kl_decode", "note")
SPEED_KEYS = ("tps", "median_tps", "x_fp32", "mem_mb")


def save_results(a: argparse.Namespace, res: dict[str, Any], keys: tuple[str, ...], top: tuple[str, ...]) -> None:
    """Merge this phase's row fields ``keys`` and top-level entries ``top`` into the results file (re-read now, so
    a quality run and a speed run of the same model can overlap without erasing each other's columns)."""
    a.out_dir.mkdir(parents=True, exist_ok=True)
    path = _cache_file(a, res["model"])
    merged = load_results(a, res["model"])
    for scheme, row in res["rows"].items():
        target = merged["rows"].setdefault(scheme, {})
        target.update({k: row[k] for k in keys if k in row and not (row[k] == "" and target.get(k))})
    for key in top:
        merged[key] = res[key]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1))
    tmp.replace(path)


def _setup(name: str, a: argparse.Namespace) -> tuple[Path, Path, Any, nn.Module]:
    models_dir = a.models_dir or default_models_dir()
    folder = resolve_folder(name, models_dir)
    gguf = resolve_preset(name, models_dir)
    fp32, tok = load_model(folder, torch.float32)
    return folder, gguf, tok, fp32


def quality_phase(name: str, schemes: list[str], a: argparse.Namespace) -> dict[str, Any]:
    """Quantize, save, reload and measure size, ppl and KL of each scheme (one variant in memory at a time);
    each row is written to the results file as soon as it is measured, so an interrupted run resumes."""
    res = load_results(a, name)
    folder, gguf, tok, fp32 = _setup(name, a)
    ids = tok.encode(held_out_text())
    cut = 2 * len(ids) // 3
    held = token_windows(ids[cut:], a.window, a.windows)
    train = token_windows(ids[:cut], a.train_window)
    calib = train[:1]
    with torch.no_grad():
        refs: list[torch.Tensor | None] = [fp32(w) if i < a.kl_windows else None for i, w in enumerate(held)]
    dec_window = held[0][:, : a.decode_kl_tokens]
    ref_dec = decode_logits(fp32, dec_window)
    res["quality"] = {"held_out_tokens": sum(w.numel() for w in held), "window": a.window,
                      "kl_tokens": sum(w.numel() for w, r in zip(held, refs) if r is not None),
                      "decode_kl_tokens": dec_window.shape[1], "range_search": a.range_search, "gguf": gguf.name}
    work = a.out_dir / name
    for scheme in schemes:
        old = res["rows"].get(scheme, {})
        if old.get("ppl") and not a.force:
            continue
        t = time.perf_counter()
        model, row = (fp32, Row("fp32", bits=32.0, file_mb=sum(p.stat().st_size for p in folder.glob(
            "*.safetensors")) / 1e6)) if scheme == "fp32" else build_variant(scheme, folder, work, calib,
                                                                    a.range_search, a.mixed)
        row.ppl, row.kl = perplexity_and_kl(model, held, refs)
        row.kl_decode = kl_of(ref_dec, decode_logits(model, dec_window))
        res["rows"][scheme] = {**old, **asdict(row)}
        save_results(a, res, QUALITY_KEYS, ("quality",))
        print(f"  {scheme:15s} bits {row.bits:5.2f}  ppl {row.ppl:8.3f}  KL {row.kl:.4f}  KL dec {row.kl_decode:.4f}"
              f"  ({time.perf_counter() - t:.0f} s) {row.note}", file=sys.stderr, flush=True)
        del model
    done = {c["scheme"] for c in res["recovery"]}
    for s in a.recover.split(","):
        if s and s in res["rows"] and (s not in done or a.force):
            res["recovery"] = [c for c in res["recovery"] if c["scheme"] != s]
            res["recovery"].append(recover_rows(s, work, fp32, train, held, refs, a.recover_steps))
            save_results(a, res, (), ("recovery",))
    return res


def _without_plan(model: nn.Module, prompt: list[int], new_tokens: int) -> float:
    """Decode tok/s with the model's whole-step int4 plan switched off (``Transformer.decode_plan`` then declines)."""
    builder = model.__dict__.pop("_quant_plan")
    try:
        return run_once(model, prompt, new_tokens).decode_tokens_per_s
    finally:
        model.__dict__["_quant_plan"] = builder


def speed_phase(name: str, schemes: list[str], a: argparse.Namespace) -> dict[str, Any]:
    """Decode tok/s of every scheme (checkpoints from the quality phase, quantized now if missing) and llama.cpp
    on the model's GGUF, interleaved per repeat (A/B/C..., then reversed), median; memory after decoding."""
    res = load_results(a, name)
    folder, gguf, tok, fp32 = _setup(name, a)
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": BENCH_TEXT}]))
    models: dict[str, nn.Module] = {"fp32": fp32}
    res["rows"].setdefault("fp32", asdict(Row("fp32")))
    for scheme in schemes:
        if scheme != "fp32":
            models[scheme], row = build_variant(scheme, folder, a.out_dir / name, [], a.range_search)
            res["rows"].setdefault(scheme, asdict(row))
    runs: dict[str, Callable[[], float]] = {
        s: (lambda m=m: run_once(m, prompt, a.new_tokens).decode_tokens_per_s) for s, m in models.items()}
    if a.plan_ab:  # the same 4-bit models without the whole-model plan (quant/plan.py): the fused Python step
        for s, m in models.items():
            if "_quant_plan" in m.__dict__:
                runs[f"{s} (no plan)"] = lambda m=m: _without_plan(m, prompt, a.new_tokens)
    if not a.no_llama_cpp:
        lr = llama_cpp_run(gguf, prompt, a.new_tokens, a.threads)
        if lr is not None:
            key = f"llama.cpp {gguf.stem.split('.')[-1].split('-')[-1]}"  # its own format: Q4_1, q4_k_m
            runs[key] = lr
            res["rows"].setdefault(key, asdict(Row(key, note=gguf.name)))
    tps: dict[str, list[float]] = {s: [] for s in runs}
    for run in runs.values():
        run()  # warm-up: page faults of mapped weights, kernel layouts packed, threads started
    for r in range(a.repeats):
        for s in list(runs) if r % 2 == 0 else list(reversed(runs)):
            tps[s].append(runs[s]())
    base = statistics.median(tps["fp32"])
    for s, values in tps.items():
        print(f"  {s:18s} {statistics.median(values):7.2f} tok/s  x fp32 {statistics.median(values) / base:5.2f}  "
              f"{[round(v, 2) for v in values]}", file=sys.stderr, flush=True)
        row = res["rows"].setdefault(s, asdict(Row(s)))
        row["tps"], row["median_tps"] = values, statistics.median(values)
        row["x_fp32"] = row["median_tps"] / base
        if s in models:
            row["mem_mb"] = model_bytes(models[s]) / 1e6
    res["speed"] = {"threads": a.threads, "new_tokens": a.new_tokens, "repeats": a.repeats,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}
    save_results(a, res, SPEED_KEYS + ("scheme", "note"), ("speed",))  # note: llama.cpp's file name
    return res


def markdown(res: dict[str, Any]) -> str:
    """The merged table of every phase: quality columns from ``--phase quality``, speed from ``--phase speed``."""
    rows = res["rows"]
    fp = rows.get("fp32", {})
    q, sp = res.get("quality", {}), res.get("speed", {})
    lines = [f"### {res['model']} (ppl on {q.get('held_out_tokens', '?')} held-out tokens, KL on "
             f"{q.get('kl_tokens', '?')}, KL dec on {q.get('decode_kl_tokens', '?')}; decode "
             f"{sp.get('threads', '?')} thread(s), {sp.get('new_tokens', '?')} new tokens, median of "
             f"{sp.get('repeats', '?')})", "",
             "| scheme | bits/w | file MB | mem MB | ppl | ppl vs fp32 | KL | KL dec | tok/s | x fp32 | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(rows, key=lambda k: k.startswith("llama.cpp"))
    for key in order:
        r = rows[key]
        speed = f"{r['median_tps']:.1f} | {r['x_fp32']:.2f}" if r.get("median_tps") else " | "
        mem = f"{r['mem_mb']:.0f}" if r.get("mem_mb") else ""
        if r.get("ppl") and fp.get("ppl"):
            lines.append(f"| {key} | {r['bits']:.2f} | {r['file_mb']:.1f} | {mem} | {r['ppl']:.3f} | "
                         f"{(r['ppl'] / fp['ppl'] - 1) * 100:+.2f}% | {r['kl']:.4f} | {r['kl_decode']:.4f} | "
                         f"{speed} | {r['note'].strip()} |")
        else:
            lines.append(f"| {key} | | | {mem} | | | | | {speed} | {r.get('note', '').strip()} |")
    if res.get("recovery"):
        lines += ["", "| LoRA recovery | steps | s | adapter MB | ppl before -> after | KL before -> after |",
                  "|---|---|---|---|---|---|"]
        for c in res["recovery"]:
            lines.append(f"| {c['scheme']} | {c['steps']} | {c['seconds']} | {c['adapter_mb']} | "
                         f"{c['ppl_before']:.3f} -> {c['ppl_after']:.3f} | {c['kl_before']:.4f} -> {c['kl_after']:.4f} |")
    if sp.get("peak_rss_mb"):
        lines.append(f"\npeak RSS of the speed run: {sp['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def kernel_table(shapes: tuple[tuple[int, int], ...] = ((8960, 1536), (1536, 8960), (151936, 1536)),
                 repeats: int = 5) -> str:
    """Batch-1 matmul per kernel on (n, k) weights, cycling copies (>= 64 MB in all) so each comes from DRAM."""
    import torch.nn.functional as F

    from albumen.llm.kernels import quant_gemv
    from albumen.llm.quant import kernels
    from albumen.llm.quant.affine import quantize_int4, quantize_int8

    g = torch.Generator().manual_seed(0)
    own = quant_gemv.quant_gemv_available()
    lines = [f"| weight | kernel (M=1, {torch.get_num_threads()} thread(s)) | ms | x fp32 | GB/s read |",
             "|---|---|---|---|---|"]
    for n, k in shapes:
        copies = max(2, min(8, (64 << 20) // (n * k)))
        ws = [torch.randn(n, k, generator=g) * 0.02 for _ in range(copies)]
        x = torch.randn(1, k, generator=g)
        wb = [w.bfloat16() for w in ws]
        q8 = [quantize_int8(w) for w in ws]
        q4 = [quantize_int4(w, 32, False) for w in ws]
        i8 = [kernels.pack_int8(q, s, "int8pack") for q, s in q8]
        p4 = [kernels.pack_int4(q, s, z, 32) for q, s, z in q4]
        cands: dict[str, tuple[float, Callable[[int], Any]]] = {
            "fp32 F.linear": (4, lambda i: F.linear(x, ws[i])),
            "bf16 F.linear": (2, lambda i: F.linear(x.bfloat16(), wb[i])),
            "int8pack (bf16 act)": (1, lambda i: kernels.int8_linear(x, i8[i])),
            "int4pack g32 asym (bf16 act)": (0.625, lambda i: kernels.int4_linear(x, p4[i])),
        }
        if own:
            o8 = [quant_gemv.pack_q8(q, s) for q, s in q8]
            o4 = [quant_gemv.pack_q4(q, s, z, 32) for q, s, z in q4]
            lut = torch.arange(-120, 136, 16, dtype=torch.int8)  # 16 entries
            ol = [quant_gemv.pack_q4(q, s, z, 32, lut) for q, s, z in q4]
            cands["own q8 VNNI (int8 act/32)"] = (1, lambda i: quant_gemv.q8_linear(x, o8[i]))
            cands["own q4 VNNI g32 asym"] = (0.625, lambda i: quant_gemv.q4_linear(x, o4[i]))
            cands["own 4-bit LUT g32 (pal4-b32)"] = (0.625, lambda i: quant_gemv.q4_linear(x, ol[i]))
        times: dict[str, list[float]] = {c: [] for c in cands}
        for _ in range(repeats):  # interleaved: contention hits every kernel alike
            for name, (_, fn) in cands.items():
                for i in range(copies):
                    fn(i)
                t = time.perf_counter()
                for i in range(copies):
                    fn(i)
                times[name].append((time.perf_counter() - t) / copies)
        base = statistics.median(times["fp32 F.linear"])
        for name, (bpw, _) in cands.items():
            m = statistics.median(times[name])
            lines.append(f"| {n}x{k} | {name} | {m * 1e3:.3f} | {base / m:.1f} | {bpw * n * k / m / 1e9:.1f} |")
    return "\n".join(lines)


def rows_table(shapes: tuple[tuple[int, int], ...] = ((17920, 1536), (1536, 8960)), repeats: int = 7) -> str:
    """Our int4 GEMV (g32 with zeros) at 1..8 activation rows, two ways in the same rounds: activation rows two at a
    time over each weight block (``-DQG_WIDE=0``, the previous kernel) and 3..8 rows in one pass (``block_wide``,
    now). Weights cycled (>= 64 MB) so each comes from DRAM; interleaved, median of ``repeats``."""
    from albumen.llm.kernels import quant_gemv
    from albumen.llm.kernels.build import load_extension
    from albumen.llm.quant.affine import quantize_int4

    src = Path(quant_gemv.__file__).with_name("csrc") / "quant_gemv.cpp"
    pairs = load_extension("albumen_quant_gemv_pairs", [src], extra_cflags=("-ffp-contract=off", "-DQG_WIDE=0"),
                           depends=[src.with_name("quant_kernels.h")])
    wide = quant_gemv.quant_gemv_module()
    if pairs is None or wide is None:
        return "our GEMV is not available here"
    g = torch.Generator().manual_seed(0)
    lines = ["| weight | rows | pairs ms | one pass ms | pairs / one pass | one pass x 1 row |",
             "|---|---|---|---|---|---|"]
    for n, k in shapes:
        copies = max(2, min(8, (64 << 20) // (n * k)))
        ws = [quant_gemv.pack_q4(*quantize_int4(torch.randn(n, k, generator=g) * 0.02, 32, False), 32)
              for _ in range(copies)]
        base = 0.0
        for m in range(1, 9):
            x = torch.randn(m, k, generator=g)
            times: dict[str, list[float]] = {"pairs": [], "wide": []}
            for _ in range(repeats):
                for name, mod in (("pairs", pairs), ("wide", wide)):
                    t = time.perf_counter()
                    for w in ws:
                        mod.q4_linear(x, w.blocks, n, k, 32, True, None, None)
                    times[name].append((time.perf_counter() - t) / copies)
            a, b = statistics.median(times["pairs"]), statistics.median(times["wide"])
            base = base or b
            lines.append(f"| {n}x{k} | {m} | {a * 1e3:.3f} | {b * 1e3:.3f} | {a / b:.2f} | {b / base:.2f} |")
    return "\n".join(lines)


class _Stepper:
    """One model decoding its own greedy continuation one timed token at a time (for per-token interleaving)."""

    def __init__(self, folder: Path, kernel: str, prompt: list[int], tokens: int) -> None:
        from albumen.llm.quant.linear import Int4Linear

        self.model, _ = load_model(folder, torch.float32)
        for m in quantized_modules(self.model).values():
            if isinstance(m, Int4Linear):
                m.kernel = kernel
        self.fused = {id(layer): layer.__dict__.get("_quant_step") for layer in self.model.model.layers}
        self.model.setup_caches(1, len(prompt) + tokens + 8)
        with torch.no_grad():
            logits = self.model(torch.tensor([prompt]), torch.arange(len(prompt)), last_only=True)
        self.next, self.pos = logits[:, -1].argmax(-1, keepdim=True), len(prompt)

    def plan_step(self) -> float:
        """The same next token through the whole-model plan (quant/plan.py), built on first use."""
        from albumen.llm.quant.plan import quant_decode_plan

        self._use_fused(True)  # the plan runs the fused layers' packs
        with torch.no_grad():
            if getattr(self, "plan", None) is None:
                self.plan = quant_decode_plan(self.model)
            t = time.perf_counter()
            token = self.plan.argmax(int(self.next), self.pos)
            self.next, self.pos = torch.tensor([[token]]), self.pos + 1
            return time.perf_counter() - t

    def _use_fused(self, fused: bool) -> None:
        for layer in self.model.model.layers:
            if fused:
                layer.__dict__["_quant_step"] = self.fused[id(layer)]
            else:
                layer.__dict__.pop("_quant_step", None)

    def step(self, fused: bool) -> float:
        self._use_fused(fused)
        with torch.no_grad():
            t = time.perf_counter()
            logits = self.model(self.next, torch.tensor([self.pos]))
            self.next, self.pos = logits[:, -1].argmax(-1, keepdim=True), self.pos + 1
            return time.perf_counter() - t


def prefetch_ab(folder: Path, rounds: int, distances: tuple[int, ...] = (1024, 4096, 8192)) -> str:
    """One decode step of the whole-model plan (``quant/plan.py``) built with each software-prefetch distance of the
    GEMV (``-DQG_PREFETCH``), on one model, interleaved per token (rotating order), median of ``rounds``."""
    from albumen.llm.kernels import quant_plan
    from albumen.llm.kernels.build import load_extension
    from albumen.llm.quant.plan import quant_decode_plan

    src = Path(quant_plan.__file__).with_name("csrc") / "quant_plan.cpp"
    heads = [src.with_name(h) for h in ("quant_kernels.h", "decode_kernels.h")]
    mods = {d: load_extension(f"albumen_quant_plan_pf{d}", [src], extra_cflags=("-ffp-contract=off",
                                                                                f"-DQG_PREFETCH={d}"), depends=heads)
            for d in distances}
    model, tok = load_model(folder, torch.float32)
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": BENCH_TEXT}]))
    model.setup_caches(1, len(prompt) + len(distances) * (rounds + 2) + 8)
    times: dict[int, list[float]] = {d: [] for d in distances}
    with torch.no_grad():
        logits = model(torch.tensor([prompt]), torch.arange(len(prompt)), last_only=True)
        token, pos = int(logits[0, -1].argmax()), len(prompt)
        plans = {d: quant_decode_plan(model, compiled=mods[d]) for d in distances}
        for r in range(rounds + 2):  # two warm-up rounds
            order = distances[r % len(distances):] + distances[:r % len(distances)]
            for d in order:
                t = time.perf_counter()
                token = plans[d].argmax(token, pos)
                if r >= 2:
                    times[d].append(time.perf_counter() - t)
                pos += 1
    base = statistics.median(times[distances[0]])
    lines = [f"### {folder.name}: one plan step per prefetch distance, {torch.get_num_threads()} thread(s), "
             f"median of {rounds}", "", "| QG_PREFETCH bytes | ms/token | tok/s | x first |", "|---|---|---|---|"]
    for d, v in times.items():
        m = statistics.median(v)
        lines.append(f"| {d} | {m * 1e3:.2f} | {1 / m:.2f} | {base / m:.3f} |")
    return "\n".join(lines)


def step_ab(folder: Path, rounds: int) -> str:
    """Decode-step time of one int4 checkpoint three ways in one process, interleaved per token (A B C, C B A, ...):
    A = torch's int4pack + fused layer step, B = our VNNI GEMV + fused step, C = our GEMV, module path, D = our GEMV,
    the whole-model plan (one C++ call per token, ``quant/plan.py``)."""
    _, tok = load_model(folder, torch.float32)
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": BENCH_TEXT}]))
    a, b = _Stepper(folder, "int4pack", prompt, 3 * rounds + 8), _Stepper(folder, "auto", prompt, 3 * rounds + 8)
    cases = {"A int4pack + fused step": lambda: a.step(True), "B own GEMV + fused step": lambda: b.step(True),
             "C own GEMV, module path": lambda: b.step(False), "D own GEMV, whole-model plan": b.plan_step}
    for fn in cases.values():  # warm-up: layouts built, fused packs made
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(rounds):
        for k in list(cases) if r % 2 == 0 else list(reversed(cases)):
            times[k].append(cases[k]())
    base = statistics.median(times["A int4pack + fused step"])
    lines = [f"### {folder.name}: one decode step, {torch.get_num_threads()} thread(s), median of {rounds}", "",
             "| variant | ms/token | tok/s | x A |", "|---|---|---|---|"]
    for k, v in times.items():
        m = statistics.median(v)
        lines.append(f"| {k} | {m * 1e3:.2f} | {1 / m:.2f} | {base / m:.3f} |")
    x = torch.randn(1, 1, b.model.args.dim)
    head = []
    with torch.no_grad():
        for _ in range(7):
            t = time.perf_counter()
            b.model.lm_head(x)
            head.append(time.perf_counter() - t)
    lines.append(f"\nhead ({b.model.lm_head.kernel_name()}): {statistics.median(head) * 1e3:.2f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true", help="Qwen2.5-1.5B instead of SmolLM2-135M")
    ap.add_argument("--model", default="", help="a preset instead of the default")
    ap.add_argument("--schemes", default="", help="comma-separated; default: all for SmolLM2, a subset for --large")
    ap.add_argument("--phase", choices=["all", "quality", "speed", "table"], default="all",
                    help="quality: sizes, ppl, KL (run under bg); speed: tok/s and memory (run under heavy); "
                         "table: print the merged results; all: quality, speed, table in one process")
    ap.add_argument("--out-dir", type=Path, default=Path("build/bench/quant"),
                    help="results (<model>.json, merged across phases) and the quantized checkpoints")
    ap.add_argument("--force", action="store_true", help="re-measure quality rows already in the results")
    ap.add_argument("--threads", type=int, default=1, help="torch and llama.cpp threads (1: stable on shared boxes)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--kl-windows", type=int, default=6)
    ap.add_argument("--decode-kl-tokens", type=int, default=64)
    ap.add_argument("--train-window", type=int, default=128)
    ap.add_argument("--recover", default="int4-g32-sym,pal3-gc16", help="schemes to run LoRA recovery on ('' = none)")
    ap.add_argument("--recover-steps", type=int, default=30)
    ap.add_argument("--mixed", default="pal3-b32,pal4-b32,4.5",
                    help="the 'mixed' scheme: LOW,HIGH,BITS (sensitivity-chosen HIGH layers up to BITS per weight)")
    ap.add_argument("--range-search", type=int, default=8, help="int4 clipping ratios tried per group (0: fastest)")
    ap.add_argument("--no-llama-cpp", action="store_true")
    ap.add_argument("--plan-ab", action="store_true",
                    help="speed: also decode each 4-bit scheme without its whole-model plan, in the same rounds")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also copy the merged results here")
    ap.add_argument("--kernels", action="store_true", help="only the per-kernel matmul table (~20 s)")
    ap.add_argument("--step-ab", type=Path, default=None, metavar="FOLDER",
                    help="only the decode-step A/B (int4pack vs our GEMV, fused vs module path) of an int4 checkpoint")
    ap.add_argument("--rounds", type=int, default=12, help="--step-ab: tokens per variant")
    ap.add_argument("--prefetch-ab", type=Path, default=None, metavar="FOLDER",
                    help="only the whole-model plan's step with the GEMV's prefetch distance 1024 / 4096 / 8192")
    ap.add_argument("--rows-ab", action="store_true",
                    help="only our int4 GEMV at 1..8 rows: rows two at a time vs one pass (~30 s)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.kernels:
        print(kernel_table())
        return
    if a.rows_ab:
        print(rows_table())
        return
    if a.prefetch_ab:
        print(prefetch_ab(a.prefetch_ab, a.rounds))
        return
    if a.step_ab:
        print(step_ab(a.step_ab, a.rounds))
        return
    torch.manual_seed(0)
    name = a.model or ("qwen2.5-1.5b" if a.large else "smollm2-135m")
    schemes = a.schemes.split(",") if a.schemes else (LARGE_SCHEMES if a.large else SMALL_SCHEMES)
    if "fp32" not in schemes:
        schemes = ["fp32", *schemes]
    start = time.perf_counter()
    if a.phase in ("all", "quality"):
        quality_phase(name, schemes, a)
    if a.phase in ("all", "speed"):
        speed_phase(name, schemes, a)
    res = load_results(a, name)
    print(markdown(res))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
