"""Batch-1 greedy decoding: Albumen vs transformers ``generate()`` vs llama.cpp, and the memory-bandwidth roofline.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/llm_decode.py [--large] [--dtypes fp32,bf16]
        [--new-tokens 128] [--repeats 3] [--threads 1,2] [--kernels on,off] [--compile] [--layers] [--profile]
        [--json out.json]

One run, one machine, the same prompt (the chat-templated ``BENCH_TEXT``), batch 1, greedy, ``--new-tokens`` new
tokens with EOS ignored. Per model (SmolLM2-135M; with ``--large`` also Qwen2.5-1.5B) and dtype:

- albumen: ``generate_tokens`` on the engine's model loaded from the converted cache, with the C++ kernels
  (``albumen/``: dense kernel, fused decode ops, the whole decode step in one call; with ``--layers`` also one call
  per layer, ``albumen-layers/``) and without them (``albumen-nokern/``: oneDNN,
  bf16 pre-packed), and with ``--compile`` also with the MLP and norms of each layer ``torch.compile``'d and the layer
  run module by module (``albumen-compile/``);
- transformers: ``AutoModelForCausalLM`` built from the same config and assigned *the same tensors* (no copy, so the
  weights and dtype are identical and memory is not doubled), ``generate(do_sample=False, min_new_tokens=N)``;
  time to first token is a separate ``max_new_tokens=1`` call;
- llama.cpp (``llama-cpp-python``, if importable; ``make llama-cpp`` builds it): the same GGUF file, run in its own
  quantized format (Q4_1 / Q4_K_M); a peer on the file, not on the dtype.

Each engine runs with every ``--threads`` count (on a busy machine, one thread avoids OpenMP wake-up stalls in the
many small per-layer ops; on an idle one, two threads read memory faster). Engines alternate within each repeat
(A/B/C, C/B/A, ...) and medians are reported, so machine noise hits all alike; "vs HF" compares like threads.
The roofline, per thread count: the highest read bandwidth measured in the same run with that many threads
(``torch.sum`` over 1 GiB, at the start and next to each model) divided by the bytes one decode step must read (every weight once; the tied embedding once, as the head; plus the KV cache at the mean position).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from albumen.llm.bench import BENCH_TEXT, run_once
from albumen.llm.loading import default_models_dir, load_model, parse_dtype, resolve_folder
from albumen.llm.model import Transformer, use_decode_kernels
from albumen.llm.presets import resolve_preset
from albumen.llm.testing import one_thread

Run = Callable[[], tuple[float, float]]  # one generation -> (ttft_s, decode tokens/s)


@dataclass
class Row:
    model: str
    dtype: str
    engine: str
    ttft: list[float] = field(default_factory=list)
    tps: list[float] = field(default_factory=list)

    @property
    def median_tps(self) -> float:
        return statistics.median(self.tps) if self.tps else 0.0

    @property
    def median_ttft(self) -> float:
        return statistics.median(self.ttft) if self.ttft else 0.0


def read_bandwidth_gbs(threads: int, gib: float = 1.0, repeats: int = 5) -> float:
    """Memory read bandwidth (GB/s) with ``threads`` threads: the median time of summing a tensor far larger than
    the caches."""
    x = torch.ones(int(gib * (1 << 30)) // 4, dtype=torch.float32)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x.sum()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            x.sum()
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return x.numel() * 4 / statistics.median(times) / 1e9


def bytes_per_token(model: Transformer, mean_pos: int) -> int:
    """Bytes one decode step reads: each distinct parameter once (a tied head counts once), plus the KV cache."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    a = model.args
    elem = next(model.parameters()).element_size()
    kv = 2 * a.n_layers * a.n_kv_heads * a.head_dim * mean_pos * elem
    embed_rows = a.vocab_size * a.dim * elem
    untied_embedding = 0 if a.tie_word_embeddings else embed_rows  # the lookup reads one row, not the table
    return total - untied_embedding + kv


def _fmt_bw(bandwidth: dict[int, float]) -> str:
    return ", ".join(f"{bw:.1f} GB/s with {t} thread{'s' if t > 1 else ''}" for t, bw in bandwidth.items())


def albumen_run(model: Transformer, ids: list[int], n: int, kernels: bool = True, compiled: bool = False,
                plan: bool = True) -> Run:
    """Our engine with the dense kernel on or off (``use_decode_kernels``), optionally with compiled layer parts;
    ``plan=False``: one C++ call per layer instead of one per token (``Transformer.decode_plan``)."""

    def run() -> tuple[float, float]:
        # compiled parts run module by module (fused layers would bypass them)
        use_decode_kernels(model, kernels=kernels, fuse_layers=not compiled, fuse_model=plan)
        if compiled:
            compile_layer_parts(model)
        try:
            s = run_once(model, ids, n)
        finally:
            if compiled:
                uncompile_layer_parts(model)
        return s.ttft_s, s.decode_tokens_per_s

    return run


def profile_decode(model: Transformer, ids: list[int], n: int, repeats: int) -> dict[str, float]:
    """Where one greedy decode step's time goes (ms per token, medians; the step's parts measured side by side).

    - ``generate``: ``generate_tokens`` per token after the first (what the table reports), whole-step plan;
    - ``plan``: ``plan.argmax`` called in a plain loop (no generator, no Python bookkeeping);
    - ``forward``: ``model(token, pos)`` + argmax with one C++ call per layer (no plan), and its parts: embedding and
      RoPE lookup, the 30 layer calls, final norm, head, argmax;
    - ``gemv``: only the matrix-vector products of one step (every projection and the head, in model order, through
      the dense kernel from Python) and their read rate: the floor the rest is compared with.
    """
    from albumen.llm.kernels.dense import dense_module

    dense = dense_module()
    now = time.perf_counter
    use_decode_kernels(model)
    run_once(model, ids, 4)  # caches set up, prompt in them
    pos0, tok0 = len(ids), ids[-1]
    parts: dict[str, list[float]] = {}

    def add(key: str, seconds: float) -> None:
        parts.setdefault(key, []).append(seconds * 1e3)

    layers = list(model.model.layers)
    weights = [w for layer in layers for w in (
        layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight,
        layer.self_attn.o_proj.weight, layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight,
        layer.mlp.down_proj.weight)] + [model.lm_head.weight]
    xs = {k: torch.randn(1, k, dtype=weights[0].dtype) for k in {w.shape[1] for w in weights}}
    gemv_bytes = sum(w.numel() * w.element_size() for w in weights)
    for _ in range(repeats):
        add("generate", 1 / run_once(model, ids, n).decode_tokens_per_s)
        with torch.inference_mode():
            plan = model.decode_plan()
            t = now()
            token = tok0
            for i in range(n):
                token = plan.argmax(token, pos0 + i)
            add("plan", (now() - t) / n)
            use_decode_kernels(model, fuse_model=False)
            token = tok0
            for i in range(n):
                ip = torch.tensor([pos0 + i])
                t0 = now()
                x = model.model.embed_tokens(torch.tensor([[token]]))
                cos, sin = model._rope[0][ip], model._rope[1][ip]
                t1 = now()
                for layer in layers:
                    x = layer(x, cos, sin, ip, None, pos0 + i + 1)
                t2 = now()
                h = model.model.norm(x)
                t3 = now()
                logits = model.lm_head(h)[:, -1]
                t4 = now()
                token = int(logits.argmax(-1)[0])
                t5 = now()
                for key, a, b in (("forward", t0, t5), ("embed+rope", t0, t1), ("layers", t1, t2), ("norm", t2, t3),
                                  ("head", t3, t4), ("argmax", t4, t5)):
                    add(key, (b - a))
            use_decode_kernels(model)
            for _ in range(max(2, n // 16)):
                t = now()
                for w in weights:
                    dense.linear(xs[w.shape[1]], w, None)
                add("gemv", now() - t)
    out = {k: statistics.median(v) for k, v in parts.items()}
    out["gemv_gbs"] = gemv_bytes / (out["gemv"] * 1e-3) / 1e9
    return out


def compile_layer_parts(model: Transformer) -> None:
    """``torch.compile`` the parts of each layer with static shapes: the MLP and the two norms.

    Attention is left eager: it slices the cache at a data-dependent length, which would recompile at every position.
    With ``inline_inbuilt_nn_modules`` (torch's default) one compiled graph serves all layers.
    """
    for layer in model.model.layers:
        for part in (layer.mlp, layer.input_layernorm, layer.post_attention_layernorm):
            if "_eager_forward" not in part.__dict__:
                part.__dict__["_eager_forward"] = part.forward
                if "_compiled_forward" not in part.__dict__:  # compiled once, reused by later runs
                    part.__dict__["_compiled_forward"] = torch.compile(part.forward, dynamic=False)
                part.forward = part.__dict__["_compiled_forward"]


def uncompile_layer_parts(model: Transformer) -> None:
    for layer in model.model.layers:
        for part in (layer.mlp, layer.input_layernorm, layer.post_attention_layernorm):
            eager = part.__dict__.pop("_eager_forward", None)
            if eager is not None:
                part.forward = eager


def hf_model_sharing_weights(model: Transformer) -> Any:
    """A transformers model whose parameters *are* the engine's tensors (same weights, same dtype, no copy)."""
    import transformers

    cfg_cls = transformers.Qwen2Config if model.args.arch == "qwen2" else transformers.LlamaConfig
    cfg = cfg_cls(**model.args.to_hf_config())
    dtype = next(model.parameters()).dtype
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    hf.load_state_dict(model.state_dict(), strict=True, assign=True)
    hf.model.rotary_emb = type(hf.model.rotary_emb)(config=hf.config)  # its inv_freq buffer is not in state_dict
    hf.tie_weights()
    left = [n for n, t in list(hf.named_parameters()) + list(hf.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"transformers model has tensors left on the meta device: {left[:3]}")
    return hf.eval()


def hf_run(hf: Any, ids: list[int], n: int) -> Run:
    prompt = torch.tensor([ids])
    mask = torch.ones_like(prompt)

    def gen(k: int) -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            out = hf.generate(prompt, attention_mask=mask, max_new_tokens=k, min_new_tokens=k, do_sample=False,
                              pad_token_id=0)
        assert out.shape[1] == len(ids) + k
        return time.perf_counter() - t

    def run() -> tuple[float, float]:
        ttft = gen(1)
        total = gen(n)
        return ttft, (n - 1) / max(total - ttft, 1e-9)

    return run


def llama_cpp_model(gguf: Path, n_ctx: int, threads: int) -> Any:
    """A llama.cpp model on the GGUF file, or None when llama-cpp-python is not installed (``make llama-cpp``)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    return Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=512,
                 verbose=False)


def llama_cpp_run(llm: Any, ids: list[int], n: int) -> Run:

    def run() -> tuple[float, float]:
        llm.reset()
        t0 = time.perf_counter()
        t1 = t0
        count = 0
        for _token in llm.generate(ids, temp=0.0, top_k=1, reset=True):  # EOS does not stop the raw generator
            count += 1
            if count == 1:
                t1 = time.perf_counter()
            if count == n:
                break
        return t1 - t0, (n - 1) / (time.perf_counter() - t1)

    return run


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch limited to ``threads`` threads inside the block (restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def with_threads(threads: int, run: Run) -> Run:
    """``run`` with torch limited to ``threads`` threads."""

    def limited() -> tuple[float, float]:
        with torch_threads(threads):
            return run()

    return limited


GUIDED_SCHEMA = {
    "type": "object", "required": ["title", "chapters"],
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "chapters": {"type": "array", "minItems": 2, "maxItems": 4, "items": {
            "type": "object", "required": ["name", "mood"],
            "properties": {"name": {"type": "string", "maxLength": 30}, "mood": {"enum": ["happy", "calm", "wild"]}}}},
    },
}
GUIDED_DOC = ('{"title":"A summer in Lisbon with friends","chapters":[{"name":"Trams and tarts","mood":"happy"},'
              '{"name":"Sunset","mood":"calm"}]}')


def guided_overhead(tok: Any) -> dict[str, float]:
    """Guided JSON cost on this vocabulary: building the token index once, and the mask per step (median, max).

    The steps follow a fixed valid document (``GUIDED_DOC``) token by token, so no model runs.
    """
    from albumen.llm.guided import JsonSchemaConstraint, TokenIndex

    t = time.perf_counter()
    index = TokenIndex.from_tokenizer(tok)
    build = time.perf_counter() - t
    constraint = JsonSchemaConstraint(GUIDED_SCHEMA, tok, index=index)
    times = []
    for token in tok.encode(GUIDED_DOC):
        t = time.perf_counter()
        allowed = constraint.allowed()
        times.append(time.perf_counter() - t)
        assert bool(allowed[token]), "the guide refused a token of a valid document"
        constraint.advance(token)
    assert constraint.done
    return {"index_build_s": build, "mask_ms_median": statistics.median(times) * 1000,
            "mask_ms_max": max(times) * 1000, "vocab": tok.vocab_size}


def bench_model(name: str, dtypes: list[str], n: int, repeats: int, models_dir: Path, llama: bool,
                hf: bool, thread_counts: list[int], kernel_modes: list[bool],
                compile_modes: list[bool], layers_too: bool = False) -> tuple[list[Row], dict[str, Any]]:
    folder = resolve_folder(name, models_dir)
    gguf = resolve_preset(name, models_dir)
    rows: list[Row] = []
    info: dict[str, Any] = {"model": name, "gguf": gguf.name}
    for dtype in dtypes:
        model, tok = load_model(folder, parse_dtype(dtype))
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": BENCH_TEXT}]))
        hf_model = hf_model_sharing_weights(model) if hf else None
        llamas = {t: llama_cpp_model(gguf, len(ids) + n + 16, t) for t in thread_counts} if (
            llama and dtype == dtypes[0]) else {}

        def engines(k: int) -> dict[str, Run]:
            runs: dict[str, Run] = {}
            for t in thread_counts:
                for kern in kernel_modes:
                    for comp in compile_modes:
                        label = "albumen" + ("" if kern else "-nokern") + ("-compile" if comp else "")
                        runs[f"{label}/{t}t"] = with_threads(t, albumen_run(model, ids, k, kern, comp))
                    if kern and layers_too:  # the same kernels, one C++ call per layer instead of per token
                        runs[f"albumen-layers/{t}t"] = with_threads(t, albumen_run(model, ids, k, plan=False))
                if hf_model is not None:
                    runs[f"transformers/{t}t"] = with_threads(t, hf_run(hf_model, ids, k))
                if llamas.get(t) is not None:
                    runs[f"llama.cpp/{t}t"] = llama_cpp_run(llamas[t], ids, k)
            return runs

        for run in engines(8).values():  # warm-up: first-touch page faults of mapped weights, allocator, threads
            run()
        runs = engines(n)
        table = {e: Row(name, dtype if not e.startswith("llama.cpp") else "gguf", e) for e in runs}
        for r in range(repeats):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for engine in order:
                ttft, tps = runs[engine]()
                table[engine].ttft.append(ttft)
                table[engine].tps.append(tps)
        rows += table.values()
        use_decode_kernels(model)  # back to the default before measuring what a step reads
        info[f"bytes_per_token_{dtype}"] = bytes_per_token(model, len(ids) + n // 2)
        info["prompt_tokens"] = len(ids)
        with one_thread():  # as the CLI runs it
            info["guided"] = guided_overhead(tok)
        del runs, model, hf_model, llamas
    return rows, info


def print_table(name: str, rows: list[Row], info: dict[str, Any], bandwidth: dict[int, float]) -> list[dict[str, Any]]:
    """Print one model's rows with ratios and roofline; return them as JSON records."""
    records: list[dict[str, Any]] = []
    print(f"\n{name} (prompt {info['prompt_tokens']} tokens, GGUF {info['gguf']}, roofline at {_fmt_bw(bandwidth)})")
    print(f"{'engine/threads':26s} {'dtype':6s} {'decode tok/s':>12s} {'TTFT ms':>8s} {'vs HF':>6s} "
          f"{'roofline':>9s} {'of roofline':>11s}")
    for row in rows:
        threads = row.engine.split("/")[1]
        hf_row = next((r for r in rows if r.engine == f"transformers/{threads}" and r.dtype == row.dtype), None)
        ratio = row.median_tps / hf_row.median_tps if hf_row and hf_row.median_tps else float("nan")
        bpt = info.get(f"bytes_per_token_{row.dtype}")
        roof = bandwidth[int(threads.rstrip("t"))] * 1e9 / bpt if bpt else float("nan")
        print(f"{row.engine:26s} {row.dtype:6s} {row.median_tps:12.1f} {row.median_ttft * 1000:8.0f} "
              f"{ratio:6.2f} {roof:9.1f} {row.median_tps / roof if bpt else float('nan'):11.0%}")
        records.append({"model": name, "engine": row.engine, "dtype": row.dtype,
                        "decode_tokens_per_s": row.median_tps, "ttft_s": row.median_ttft,
                        "vs_transformers": ratio, "roofline_tokens_per_s": roof,
                        "bytes_per_token": bpt, "runs_tps": row.tps, "runs_ttft": row.ttft})
    g = info["guided"]
    print(f"guided JSON on this vocabulary ({g['vocab']} tokens): token index {g['index_build_s']:.2f} s once, "
          f"mask {g['mask_ms_median']:.2f} ms per step (median), {g['mask_ms_max']:.1f} ms (max)", flush=True)
    records.append({"model": name, "engine": "guided", **g})
    return records


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--large", action="store_true", help="also Qwen2.5-1.5B (installs 1.1 GB of packages once)")
    ap.add_argument("--models", default="", help="comma-separated presets instead of the defaults")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default=f"{torch.get_num_threads()},1",
                    help="thread counts to run every engine with (default: all cores, then 1)")
    ap.add_argument("--kernels", default="on,off", help="dense kernel on, off, or both (on,off)")
    ap.add_argument("--compile", action="store_true", help="also run ours with torch.compile'd MLP and norms")
    ap.add_argument("--layers", action="store_true",
                    help="also run ours with one C++ call per layer instead of the whole-step plan")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the table: where one decode step's time goes (profile_decode), per dtype/threads")
    ap.add_argument("--no-llama-cpp", action="store_true")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    names = a.models.split(",") if a.models else ["smollm2-135m"] + (["qwen2.5-1.5b"] if a.large else [])
    dtypes = a.dtypes.split(",")
    models_dir = a.models_dir or default_models_dir()
    thread_counts = [int(t) for t in a.threads.split(",")]
    bandwidth = {t: read_bandwidth_gbs(t) for t in thread_counts}
    print(f"torch {torch.__version__}, read bandwidth {_fmt_bw(bandwidth)}, "
          f"{a.new_tokens} new tokens, median of {a.repeats}", flush=True)
    report: dict[str, Any] = {"bandwidth_gbs": bandwidth, "new_tokens": a.new_tokens, "results": []}
    if a.profile:
        for name in names:
            for dtype in dtypes:
                model, tok = load_model(resolve_folder(name, models_dir), parse_dtype(dtype))
                ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": BENCH_TEXT}]))
                for t in thread_counts:
                    with torch_threads(t):
                        prof = profile_decode(model, ids, a.new_tokens, a.repeats)
                    print(f"{name} {dtype} {t} thread(s), ms per token: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in prof.items() if k != "gemv_gbs") +
                        f"; the GEMVs read {prof['gemv_gbs']:.1f} GB/s", flush=True)
                    report["results"].append({"model": name, "dtype": dtype, "threads": t, "profile_ms": prof})
                    if a.json:
                        a.json.write_text(json.dumps(report, indent=1))
        return
    for name in names:
        for i, dtype in enumerate(dtypes):  # one table per dtype, printed and saved as soon as it is measured
            rows, info = bench_model(name, [dtype], a.new_tokens, a.repeats, models_dir, not a.no_llama_cpp and i == 0,
                                     not a.no_transformers, thread_counts,
                                     [m.strip() == "on" for m in a.kernels.split(",")],
                                     [False, True] if a.compile else [False], a.layers)
            # Re-measured next to each model; the roofline takes the highest figure seen (conservative fractions).
            bandwidth = {t: max(bw, read_bandwidth_gbs(t)) for t, bw in bandwidth.items()}
            report["results"] += print_table(name, rows, info, bandwidth)
            report["bandwidth_gbs"] = bandwidth
            if a.json:
                a.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
