"""Speculative decoding vs plain decoding, side by side in one run, on grounded memory stories and open-ended prompts.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/speculative.py [--prompts 4] [--max-new-tokens 96] \\
        [--drafters lookup,head,self] [--json build/bench/speculative.json]
    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/speculative.py --large [--quant int4-g32]

Default: SmolLM2-135M (fp32) as the target, drafters ``lookup``, ``head`` (the trained head in assets/drafters) and
``self`` (the target's distilled 4-bit copy, speculative/self_draft.py).
``--large``: Qwen2.5-1.5B as the target with Qwen2.5-0.5B (``model:qwen2.5-0.5b``) and ``lookup``; ``--quant`` quantizes
target and draft (batch-invariant kernels, see speculative/invariance.py), ``--draft-quant`` only the draft (e.g. a
bf16 target verifying an int4 draft); ``--llama-cpp`` adds llama.cpp's plain decoding of the same GGUF as a peer.
``--k0`` adds each drafter forced to k = 0 (the floor), ``--fixed-k 2,3`` each drafter at fixed draft lengths (no
controller), ``--sets`` picks the prompt sets (to split long runs), ``--head-ab modules,bfloat16`` adds each head
drafter with its draft step as module calls (the C++ ``HeadPlan`` off) or with another compute dtype: A/Bs.

Greedy decoding (so outputs must be token-identical: checked and reported). For every prompt the methods run in a
rotating order (plain, drafter 1, drafter 2, then drafter 1, drafter 2, plain, ...), ``--repeats`` times; a method's
figure is its median decode tokens/s over repeats, and the speed-up is per prompt (method / plain from the same
round), then the median over prompts and the aggregate (total tokens / total decode seconds) per prompt set.
Prompts come from the bench split of speculative/prompts.py (disjoint from the head's training prompts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from albumen.llm.generate import generate
from albumen.llm.loading import load_model
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import speculative_generate
from albumen.llm.speculative.factory import make_drafter
from albumen.llm.speculative.prompts import grounded_prompts, open_prompts

FACTS = Path(__file__).resolve().parents[1] / "assets" / "titles" / "facts.jsonl"


def _weights_bytes(model: torch.nn.Module) -> int:
    seen, total = set(), 0
    for t in [*model.parameters(), *(b for n, b in model.named_buffers() if "kv_cache" not in n)]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def _plain(target, tok, prompt: str, cfg: SamplingConfig) -> dict[str, Any]:
    r = generate(target, tok, prompt, cfg, chat=True)
    return {"ids": r.token_ids, "tok_s": r.stats.decode_tokens_per_s, "new": r.stats.new_tokens,
            "decode_s": r.stats.decode_s}


def _spec(target, tok, drafter, prompt: str, cfg: SamplingConfig, spec: SpeculativeConfig) -> dict[str, Any]:
    r = speculative_generate(target, tok, drafter, prompt, cfg, spec, chat=True)
    s = r.stats
    return {"ids": r.token_ids, "tok_s": s.decode_tokens_per_s, "new": s.new_tokens, "decode_s": s.decode_s,
            "drafted": s.drafted, "accepted": s.accepted, "steps": s.target_steps, "draft_s": s.draft_s,
            "verify_s": s.verify_s, "ttft_s": s.ttft_s, "draft_lengths": s.draft_lengths}


def _llama_cpp_peer(gguf: Path, prompts: list[str], max_new: int, threads: int) -> dict[str, float] | None:
    """llama.cpp's greedy decoding of the same GGUF: median decode tokens/s (first streamed token to the last, as
    ``decode_tokens_per_s`` counts ours) and median end-to-end tokens/s (prompt processing included)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads, verbose=False)
    decode, total = [], []
    for p in prompts:
        t0 = time.perf_counter()
        stamps = [time.perf_counter() for chunk in llm.create_chat_completion(
            [{"role": "user", "content": p}], max_tokens=max_new, temperature=0.0, stream=True)
            if chunk["choices"][0]["delta"].get("content")]
        if len(stamps) > 1:
            decode.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
            total.append(len(stamps) / (stamps[-1] - t0))
    if not decode:
        return None
    return {"decode_tok_s": statistics.median(decode), "end_to_end_tok_s": statistics.median(total)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    target, tok = load_model(args.target, args.dtype)
    load_s = time.perf_counter() - t0
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens, ignore_eos=False)
    spec = SpeculativeConfig(k=args.k)
    loaded: dict[str, Any] = {}

    def load(name: str):  # each drafter gets its own copy: a draft model's KV cache belongs to one drafter
        model = load_model(name, args.dtype)[0]
        loaded[f"{name}#{len(loaded)}"] = model
        return model

    drafters = {name: make_drafter(name, target, args.target, load) for name in args.drafters.split(",")}
    draft_quant = args.draft_quant or args.quant
    for scheme, models in ((args.quant, [target]), (draft_quant, list(loaded.values()))):
        if scheme and scheme != "none":
            from albumen.llm.quant import QuantConfig, quantize_model
            from albumen.llm.speculative.invariance import batch_invariant_kernels

            for m in models:
                quantize_model(m, QuantConfig.from_scheme(scheme))
                batch_invariant_kernels(m)
    sets = {"grounded": grounded_prompts(FACTS, args.prompts, "bench", seed=1),
            "open": open_prompts(args.prompts, "bench", seed=1)}
    sets = {name: sets[name] for name in args.sets.split(",")}
    # A method is a drafter with a draft-length policy; "<drafter>@k0" forces k = 0 (the floor: what speculation costs
    # when it never drafts).
    policies = {name: (d, spec) for name, d in drafters.items()}
    for decay in [float(x) for x in args.decays.split(",") if x]:  # "<drafter>~d<decay>": the controller forgetting
        policies.update({f"{name}~d{decay:g}": (make_drafter(name, target, args.target, load),  # its own costs
                                                SpeculativeConfig(k=args.k, decay=decay)) for name in drafters})
    for variant in [v for v in args.head_ab.split(",") if v]:  # "<drafter>~<variant>": the head run another way
        for name in [n for n in drafters if "head" in n]:
            d = make_drafter(name, target, args.target, load)
            for member in getattr(d, "drafters", [d]):
                if hasattr(member, "use_plan"):
                    if variant == "modules":  # the draft step as Python module calls, not one C++ call (HeadPlan)
                        member.use_plan = False
                    else:  # a compute dtype for the head, e.g. bfloat16 on an fp32 target
                        member.dtype = getattr(torch, variant)
            policies[f"{name}~{variant}"] = (d, spec)
    fixed = ([0] if args.k0 else []) + [int(k) for k in args.fixed_k.split(",") if k]
    for k in fixed:  # "<drafter>@k<k>": a fixed draft length (k = 0: what speculation costs when it never drafts)
        policies.update({f"{name}@k{k}": (d, SpeculativeConfig(k=k, adaptive=False)) for name, d in drafters.items()})
    methods = ["plain", *policies]
    rows: list[dict[str, Any]] = []
    _plain(target, tok, "Hello", SamplingConfig(max_new_tokens=4))  # warm-up
    for drafter, policy in policies.values():  # first use: kernel layouts, restricted heads, draft caches
        _spec(target, tok, drafter, "Tell me about a day at the beach.", SamplingConfig(max_new_tokens=16), policy)
    for set_name, prompts in sets.items():
        for i, prompt in enumerate(prompts):
            runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
            for r in range(args.repeats):
                order = methods[(i + r) % len(methods):] + methods[: (i + r) % len(methods)]
                for m in order:
                    out = _plain(target, tok, prompt, cfg) if m == "plain" else _spec(
                        target, tok, policies[m][0], prompt, cfg, policies[m][1])
                    runs[m].append(out)
            plain_ids = runs["plain"][0]["ids"]
            plain_rate = statistics.median(x["tok_s"] for x in runs["plain"])
            for m in methods:
                rate = statistics.median(x["tok_s"] for x in runs[m])
                last = runs[m][-1]
                rows.append({"set": set_name, "prompt": i, "method": m, "tok_s": rate, "speedup": rate / plain_rate,
                             "new": last["new"], "decode_s": statistics.median(x["decode_s"] for x in runs[m]),
                             "identical": all(x["ids"] == plain_ids for x in runs[m]),
                             "drafted": last.get("drafted", 0), "accepted": last.get("accepted", 0),
                             "steps": last.get("steps", 0), "draft_s": last.get("draft_s", 0.0),
                             "verify_s": last.get("verify_s", 0.0), "draft_lengths": last.get("draft_lengths", [])})
            print(f"{set_name} #{i}: " + ", ".join(
                f"{r['method']} {r['tok_s']:.1f} tok/s ({r['speedup']:.2f}x)" for r in rows[-len(methods):]),
                file=sys.stderr, flush=True)
    summary = []
    for set_name in sets:
        for m in methods:
            sel = [r for r in rows if r["set"] == set_name and r["method"] == m]
            drafted, accepted = sum(r["drafted"] for r in sel), sum(r["accepted"] for r in sel)
            steps = sum(r["steps"] for r in sel)
            summary.append({
                "set": set_name, "method": m,
                "tok_s": sum(r["new"] - 1 for r in sel) / sum(r["decode_s"] for r in sel),
                "median_speedup": statistics.median(r["speedup"] for r in sel),
                "min_speedup": min(r["speedup"] for r in sel),
                "acceptance": accepted / drafted if drafted else None,
                "tokens_per_step": (sum(r["new"] - 1 for r in sel) / steps) if steps else None,
                "identical": all(r["identical"] for r in sel),
                # where a speculative step's time goes: ms per drafted token, ms per verification (target) step
                "draft_ms_per_token": 1e3 * sum(r["draft_s"] for r in sel) / drafted if drafted else None,
                "verify_ms_per_step": 1e3 * sum(r["verify_s"] for r in sel) / steps if steps else None,
            })
    for s in summary:
        plain = next(x for x in summary if x["set"] == s["set"] and x["method"] == "plain")
        s["aggregate_speedup"] = s["tok_s"] / plain["tok_s"]
    result = {
        "target": args.target, "dtype": args.dtype, "quant": args.quant, "draft_quant": draft_quant,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens, "prompts_per_set": args.prompts, "repeats": args.repeats,
        "load_s": round(load_s, 1), "weights_mb": round(_weights_bytes(target) / 1e6, 1),
        "summary": summary, "rows": rows,
    }
    if args.llama_cpp:
        from albumen.llm.presets import resolve_preset
        from albumen.llm.loading import default_models_dir

        gguf = resolve_preset(args.peer or args.target, default_models_dir(), install=False)
        result["llama_cpp_plain"] = _llama_cpp_peer(gguf, [p for ps in sets.values() for p in ps], args.max_new_tokens,
                                                          args.threads)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--large", action="store_true", help="Qwen2.5-1.5B target, Qwen2.5-0.5B drafter")
    p.add_argument("--target", default=None)
    p.add_argument("--drafters", default=None, help="comma-separated specs (default: lookup,head,self or with --large "
                   "model:qwen2.5-0.5b,lookup)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--quant", default=None, help="quantize target and draft model, e.g. int4-g32")
    p.add_argument("--draft-quant", default=None,
                   help="quantize only the draft models (default: as --quant), e.g. a bf16 target with an int4 draft")
    p.add_argument("--prompts", type=int, default=4, help="prompts per set")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--k", type=int, default=4, help="starting draft length (adaptive)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; on the shared 2-core machine one thread is several times faster than two")
    p.add_argument("--llama-cpp", action="store_true")
    p.add_argument("--peer", default=None, help="the preset whose GGUF llama.cpp decodes (default: --target)")
    p.add_argument("--sets", default="grounded,open", help="prompt sets to run (grounded, open)")
    p.add_argument("--k0", action="store_true", help="also run each drafter forced to k = 0 (the speculation floor)")
    p.add_argument("--fixed-k", default="", help="also run each drafter at these fixed draft lengths, e.g. 2,3")
    p.add_argument("--head-ab", default="",
                   help="also run each head drafter as variants: modules (its draft step as module calls, not the "
                        "C++ HeadPlan), or a dtype for the head (bfloat16, float32); comma-separated")
    p.add_argument("--decays", default="",
                   help="also run each drafter (a fresh copy) with these acceptance-rate decays, e.g. 0.9,0.95")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    args.target = args.target or ("qwen2.5-1.5b" if args.large else "smollm2-135m")
    args.drafters = args.drafters or ("model:qwen2.5-0.5b,lookup" if args.large else "lookup,head,self")
    result = run(args)
    quant = "".join(f", {k} {result[k]}" for k in ("quant", "draft_quant") if result[k])
    print(f"target {result['target']} ({result['dtype']}{quant}), "
          f"{result['threads']} threads, {result['prompts_per_set']} prompts/set, {result['max_new_tokens']} new tokens")
    print(f"{'set':9} {'method':22} {'tok/s':>7} {'aggregate':>9} {'median':>7} {'min':>6} {'accept':>7} "
          f"{'tok/step':>8} {'draft ms/tok':>12} {'verify ms':>9} identical")
    for s in result["summary"]:
        acc = f"{s['acceptance']:.0%}" if s["acceptance"] is not None else "-"
        tps = f"{s['tokens_per_step']:.2f}" if s["tokens_per_step"] is not None else "-"
        ms = [f"{s[k]:.1f}" if s.get(k) is not None else "-" for k in ("draft_ms_per_token", "verify_ms_per_step")]
        print(f"{s['set']:9} {s['method']:22} {s['tok_s']:7.1f} {s['aggregate_speedup']:8.2f}x "
              f"{s['median_speedup']:6.2f}x {s['min_speedup']:5.2f}x {acc:>7} {tps:>8} {ms[0]:>12} {ms[1]:>9} "
              f"{s['identical']}")
    if result.get("llama_cpp_plain"):
        peer = result["llama_cpp_plain"]
        print(f"llama.cpp plain decoding of the same GGUF, {result['threads']} threads: {peer['decode_tok_s']:.1f} "
              f"tok/s decode, {peer['end_to_end_tok_s']:.1f} tok/s with the prompt")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
