"""Draft models side by side without a clock: how often each agrees with the target's greedy choices, and the tokens
per target step greedy speculative decoding would make at each fixed draft length (speculative/agreement.py).

    HELPER=agree /tmp/albumen-tools/heavy -t 600 -- .venv/bin/python benchmarks/draft_agreement.py \\
        --target qwen2.5-1.5b --dtype bfloat16 --prompts 8 --max-new-tokens 64 \\
        --drafts qwen2.5-0.5b,build/speculative/quant/qwen2.5-0.5b-int4 [--json build/bench/agreement.json]

The target answers the bench split's grounded and open prompts greedily (the same prompts as
benchmarks/speculative.py; answers are cached in ``--replies`` so later runs only load drafts); each draft then reads
prompt + answer in one causal pass, its argmax restricted to its draft vocabulary plus the prompt's tokens as the
``model:`` drafter does (``NAME:full`` for the whole vocabulary; ``NAME@bfloat16`` for another float dtype), and
``agree[t]`` replays every step exactly. Greedy steps are deterministic given the agreement flags, so two drafts
compare here on exactly the same text, with no timing noise; speed needs the costs: ``--costs`` (plain ms, draft ms
per token, verification ratios for 1..8 rows) turns tokens per step into a predicted speed-up at each k.
``--thresholds`` replays a confidence rule as well: draft (up to ``--k-max``) while the draft's top-1 probability
stays at or above the threshold (teacher-forced: after a wrong draft token the draft is assumed to go on to k).
``--live model:NAME:p0.4,lookup+model:NAME,head:p0.5`` replays real drafters, each on its own text after a miss
(speculative/agreement.replay_drafter): the loop's exact steps for any drafter policy, the target run once per answer
only where a head needs its hidden states.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from albumen.llm.generate import _prompt_ids, generate_tokens
from albumen.llm.loading import load_model
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.agreement import (StepReplay, draft_confidence, greedy_agreement, predicted_speedup,
                                               replay_drafter, simulate_steps, target_features)
from albumen.llm.speculative.factory import default_vocab_path, make_drafter
from albumen.llm.speculative.prompts import grounded_prompts, open_prompts
from albumen.llm.speculative.vocab import load_draft_vocab

FACTS = Path(__file__).resolve().parents[1] / "assets" / "titles" / "facts.jsonl"
# Qwen2.5-1.5B bf16 on the packed copy (docs/speculative.md): one plain step, an int4 0.5B draft token, and the
# verification of 1..8 rows relative to one step.
QWEN_BF16_COSTS = "100,8.5,1,1.08,1.15,1.19,1.26,1.33,1.40,1.48"


def _replies(args: argparse.Namespace, sets: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    key = {"target": args.target, "dtype": args.dtype, "max_new_tokens": args.max_new_tokens}
    cache = Path(args.replies)
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key and all(len(data["sets"].get(s, [])) >= len(p) for s, p in sets.items()):
            return {s: data["sets"][s][: len(p)] for s, p in sets.items()}
    target, tok = load_model(args.target, args.dtype)
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens)
    out: dict[str, list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    for name, prompts in sets.items():
        out[name] = []
        for prompt in prompts:
            ids = _prompt_ids(tok, prompt, chat=True)
            reply = list(generate_tokens(target, ids, cfg, list(tok.eos_ids)))
            out[name].append({"prompt_ids": ids, "reply_ids": reply})
            print(f"target answered {name} #{len(out[name]) - 1}: {len(reply)} tokens "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "sets": out}))
    del target
    return out


def _draft_spec(spec: str, default_dtype: str) -> tuple[str, str, Path | None]:
    full = ":full" in spec
    name, _, dtype = spec.replace(":full", "").partition("@")
    return name, dtype or default_dtype, None if full else default_vocab_path(name)


@torch.inference_mode()
def _agreement(model: Any, rec: dict[str, Any], vocab: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    prompt, reply = rec["prompt_ids"], rec["reply_ids"]
    ids = torch.tensor([prompt + reply[:-1]])
    logits = model(ids)[0, len(prompt) - 1:].float()  # the logits that predict reply[0..]
    allowed = None
    if vocab is not None:
        p = torch.tensor(prompt)
        allowed = torch.unique(torch.cat([vocab, p[p < logits.shape[-1]]]))
    return greedy_agreement(logits, torch.tensor(reply), allowed), draft_confidence(logits, allowed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    sets = {"grounded": grounded_prompts(FACTS, args.prompts, "bench", seed=1),
            "open": open_prompts(args.prompts, "bench", seed=1)}
    replies = _replies(args, sets)
    ks = [int(k) for k in args.ks.split(",")]
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    costs = [float(x) for x in args.costs.split(",")] if args.costs else None
    results = []
    for spec in [s for s in args.drafts.split(",") if s]:  # teacher-forced: one causal pass per reply
        name, dtype, vocab_path = _draft_spec(spec, args.dtype)
        t0 = time.perf_counter()
        model, _ = load_model(name, dtype)
        vocab = load_draft_vocab(vocab_path) if vocab_path is not None else None
        for set_name, recs in replies.items():
            pairs = [_agreement(model, rec, vocab) for rec in recs]
            row: dict[str, Any] = {"draft": spec, "set": set_name,
                                   "agreement": float(torch.cat([a for a, _ in pairs]).float().mean()),
                                   "by_k": {}, "by_threshold": {}}

            def replay(k: int, threshold: float = 0.0) -> dict[str, Any]:
                # reply[0] is the prefill's: steps replay the flags after it
                r = sum((simulate_steps(a[1:], k, c[1:], threshold) for a, c in pairs), StepReplay(0, 0, 0, 0))
                entry = {"tokens_per_step": r.tokens_per_step, "acceptance": r.acceptance if r.drafted else None,
                         "mean_draft": r.drafted / r.steps}
                if costs is not None and k + 2 < len(costs):
                    entry["predicted_speedup"] = predicted_speedup(r, costs[0], costs[1],
                                                                   [costs[0] * x for x in costs[2:]])
                return entry

            row["by_k"] = {k: replay(k) for k in ks}
            row["by_threshold"] = {t: replay(args.k_max, t) for t in thresholds}
            results.append(row)
        print(f"{spec}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        del model
    live = [x for x in args.live.split(",") if x]
    if live:
        target, _ = load_model(args.target, args.dtype)
        cache: dict[str, Any] = {}

        def load(name: str) -> Any:  # replays run one at a time, so the specs of one draft model share a copy
            if name not in cache:
                cache[name] = load_model(name, args.dtype)[0]
            return cache[name]

        feats: dict[tuple[str, int], torch.Tensor] = {}  # the target's features along each answer, for heads

        def features(set_name: str, i: int, rec: dict[str, Any]) -> torch.Tensor:
            if (set_name, i) not in feats:
                feats[set_name, i] = target_features(target, rec["prompt_ids"] + rec["reply_ids"][:-1])
            return feats[set_name, i]

        for spec in live:
            for set_name, recs in replies.items():
                row = {"draft": f"live {spec}", "set": set_name, "by_k": {}}
                for k in [int(x) for x in args.live_ks.split(",")]:
                    drafter = make_drafter(spec, target, args.target, load)
                    t0 = time.perf_counter()
                    r = sum((replay_drafter(drafter, target, rec["prompt_ids"], rec["reply_ids"], k,
                                            features(set_name, i, rec) if "head" in spec else None)
                             for i, rec in enumerate(recs)), StepReplay(0, 0, 0, 0))
                    entry = {"tokens_per_step": r.tokens_per_step, "acceptance": r.acceptance if r.drafted else None,
                             "mean_draft": r.drafted / r.steps, "passes_per_step": sum(r.computed) / r.steps,
                             "draft_ms_per_pass": 1e3 * (time.perf_counter() - t0) / max(1, sum(r.computed))}
                    if costs is not None and k + 2 < len(costs):
                        entry["predicted_speedup"] = predicted_speedup(r, costs[0], costs[1],
                                                                       [costs[0] * x for x in costs[2:]])
                    row["by_k"][k] = entry
                results.append(row)
                print(f"live {spec} {set_name}: " + ", ".join(
                    f"k={k} {e['tokens_per_step']:.2f} tok/step, {e['mean_draft']:.1f} drafted, "
                    f"{e['passes_per_step']:.1f} passes" + (f", {e['predicted_speedup']:.2f}x"
                                                            if "predicted_speedup" in e else "")
                    for k, e in row["by_k"].items()), file=sys.stderr, flush=True)
    return {"target": args.target, "dtype": args.dtype, "prompts_per_set": args.prompts,
            "max_new_tokens": args.max_new_tokens, "reply_tokens": {s: sum(len(r["reply_ids"]) for r in recs)
                                                                   for s, recs in replies.items()},
            "costs": args.costs, "k_max": args.k_max, "thresholds": thresholds, "results": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="qwen2.5-1.5b")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--live", default="", help="drafter specs (as in benchmarks/speculative.py, e.g. "
                   "model:NAME:p0.4) replayed live against the cached replies (speculative/agreement.replay_drafter)")
    p.add_argument("--live-ks", default="3,4,7", help="draft lengths for --live")
    p.add_argument("--drafts", default="", help="comma-separated: preset or checkpoint folder, [:full], [@dtype]")
    p.add_argument("--prompts", type=int, default=8, help="prompts per set (bench split)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--ks", default="1,2,3,4,5,6", help="fixed draft lengths to replay")
    p.add_argument("--thresholds", default="0.3,0.5,0.6,0.7,0.8,0.9",
                   help="also replay a confidence rule: draft up to --k-max tokens while the draft's top-1 "
                        "probability stays at or above the threshold")
    p.add_argument("--k-max", type=int, default=7)
    p.add_argument("--costs", default=QWEN_BF16_COSTS,
                   help="plain ms, draft ms per token, verification of 1..8 rows / one step ('' for none)")
    p.add_argument("--replies", default="build/bench/agreement-replies.json", help="cache of the target's answers")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    result = run(args)
    ks = [int(k) for k in args.ks.split(",")]
    print(f"target {result['target']} ({result['dtype']}), {result['prompts_per_set']} prompts/set, "
          f"reply tokens {result['reply_tokens']}")
    print(f"{'set':9} {'draft':55} {'agree':>6} " + " ".join(f"{'k=' + str(k):>11}" for k in ks))
    for r in [r for r in result["results"] if "agreement" in r]:
        cells = []
        for k in ks:
            e = r["by_k"][k]
            sp = f"/{e['predicted_speedup']:.2f}x" if "predicted_speedup" in e else ""
            cells.append(f"{e['tokens_per_step']:.2f}{sp}".rjust(11))
        print(f"{r['set']:9} {r['draft'][-55:]:55} {r['agreement']:6.1%} " + " ".join(cells))
    print("cells: tokens per target step [/ predicted speed-up with --costs]")
    print(f"\nconfidence rule (k_max {args.k_max}): tokens per step / mean draft length [/ predicted speed-up]")
    print(f"{'set':9} {'draft':55} " + " ".join(f"{'p>=' + str(t):>17}" for t in result["thresholds"]))
    for r in [r for r in result["results"] if "agreement" in r]:
        cells = []
        for t in result["thresholds"]:
            e = r["by_threshold"][t]
            sp = f"/{e['predicted_speedup']:.2f}x" if "predicted_speedup" in e else ""
            cells.append(f"{e['tokens_per_step']:.2f}/{e['mean_draft']:.1f}{sp}".rjust(17))
        print(f"{r['set']:9} {r['draft'][-55:]:55} " + " ".join(cells))
    live = [r for r in result["results"] if "agreement" not in r]
    if live:
        print("\nlive replays: tokens per step / drafted per step / draft passes per step [/ predicted speed-up]")
        for r in live:
            print(f"{r['set']:9} {r['draft'][-55:]:55} " + " ".join(
                f"k={k} {e['tokens_per_step']:.2f}/{e['mean_draft']:.1f}/{e['passes_per_step']:.1f}"
                + (f"/{e['predicted_speedup']:.2f}x" if "predicted_speedup" in e else "")
                for k, e in r["by_k"].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
