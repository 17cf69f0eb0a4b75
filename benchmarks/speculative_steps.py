"""Where a speculative step's time goes: the target's verification of 1..k_max+1 rows and one draft token of a draft
model, full vocabulary or restricted to a draft vocabulary, measured side by side (rounds rotate the order; medians).

    HELPER=spec /tmp/albumen-tools/heavy -t 300 -- .venv/bin/python benchmarks/speculative_steps.py \\
        --target qwen2.5-1.5b --draft qwen2.5-0.5b --dtype bfloat16 [--target-dir DIR] [--draft-dir DIR]

``--target-dir`` / ``--draft-dir`` load a saved (e.g. int4) checkpoint folder instead of the preset; with int4
folders ``--int4-plan`` adds the same blocks and draft token through the whole-model plan (quant/plan.py). Prints
milliseconds per call and the ratios to one plain target step (what the draft-length controller weighs).
``--head`` (SmolLM2-135M target) adds the trained head's draft of 1..4 tokens with cold weights: its C++ step
(``HeadPlan``) against module calls, fp32 against bf16.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from albumen.llm.loading import load_model
from albumen.llm.model import Transformer
from albumen.llm.quant.fused import MAX_BLOCK_ROWS, set_max_block_rows
from albumen.llm.quant.plan import quant_decode_plan
from albumen.llm.speculative.drafters.model import restrict_vocab
from albumen.llm.speculative.vocab import load_draft_vocab


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _prefilled(model: Transformer, n: int) -> None:
    model.setup_caches(1, 512)
    with torch.inference_mode():
        model(torch.arange(100, 100 + n)[None], torch.arange(n), last_only=True)


def _module_block(model: Transformer, ids: torch.Tensor, pos: torch.Tensor) -> object:
    """One block with the fused int4 steps limited to one row (quant/fused.py), so the block runs as modules."""
    set_max_block_rows(model, 1)
    try:
        return model(ids, pos)
    finally:
        set_max_block_rows(model, MAX_BLOCK_ROWS)


def run(args: argparse.Namespace) -> dict[str, float]:
    torch.set_num_threads(args.threads)
    target = load_model(args.target_dir or args.target, args.dtype)[0]
    draft = load_model(args.draft_dir or args.draft, args.dtype)[0]
    ctx = 64
    _prefilled(target, ctx)
    _prefilled(draft, ctx)
    vocab = load_draft_vocab(args.vocab) if args.vocab else None
    small = restrict_vocab(draft, vocab) if vocab is not None else None
    full_head = draft.lm_head
    calls: dict[str, Callable[[], object]] = {}
    for t in range(1, args.k_max + 2):
        ids, pos = torch.arange(200, 200 + t)[None], torch.arange(ctx, ctx + t)
        calls[f"verify {t} rows"] = lambda ids=ids, pos=pos: target(ids, pos)
        if args.int4_blocks_ab and t > 1:  # the same block through the module path (before fused int4 blocks)
            calls[f"verify {t} rows (modules)"] = lambda ids=ids, pos=pos: _module_block(target, ids, pos)
    if args.int4_plan:  # the whole-model int4 plan (quant/plan.py): blocks of 1..k+1 rows, one C++ call each
        with torch.inference_mode():
            qplan, dplan = quant_decode_plan(target), quant_decode_plan(draft)
        if qplan is None or dplan is None:
            raise SystemExit("--int4-plan: target and draft must be 4-bit checkpoints (--target-dir / --draft-dir)")
        for t in range(1, args.k_max + 2):
            calls[f"verify {t} rows (int4 plan)"] = lambda t=t: qplan.block_logits(list(range(200, 200 + t)), ctx)
    with torch.inference_mode():
        plan = target.decode_plan() if hasattr(target, "decode_plan") else None
    if plan is not None:  # what plain decoding runs per token where the engine has a single-call plan
        calls["plain step (decode plan)"] = lambda: plan.logits(200, ctx)
        if not args.int4_plan and hasattr(plan, "block_argmax"):  # what greedy verification runs on the plan
            for t in range(2, args.k_max + 2):
                calls[f"verify {t} rows (decode plan)"] = lambda t=t: plan.block_argmax(list(range(200, 200 + t)), ctx)
    one, p = torch.tensor([[300]]), torch.tensor([ctx])

    def draft_step(head: torch.nn.Module) -> Callable[[], object]:
        def step() -> object:
            draft.lm_head = head
            try:
                return draft(one, p)[:, -1].argmax(-1)
            finally:
                draft.lm_head = full_head
        return step

    calls["draft token (full vocab)"] = draft_step(full_head)
    if small is not None:
        calls[f"draft token ({len(vocab)} vocab)"] = draft_step(small)
    calls["draft body (no head)"] = draft_step(torch.nn.Identity())
    if args.int4_plan:
        calls["draft token (int4 plan)"] = lambda: dplan.argmax(300, ctx)
    times: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    with torch.inference_mode():
        for name in names:  # warm-up: packs, kernels
            calls[name]()
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                times[name].append(_time(calls[name]))
    med = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    with torch.inference_mode():  # is row 0 of a block scored as a single row is? (token-identical output needs it)
        ids, pos = torch.arange(200, 200 + args.k_max + 1)[None], torch.arange(ctx, ctx + args.k_max + 1)
        block = target(ids, pos)[0].float()  # (k+1, V)
        single = torch.stack([target(ids[:, i : i + 1], pos[i : i + 1])[0, 0].float() for i in range(len(pos))])
    diff = float((block - single).abs().max())
    same = int((block.argmax(-1) == single.argmax(-1)).sum())
    med["block_vs_single_max_abs_diff"] = diff
    base = med["verify 1 rows"]
    print(f"target {args.target_dir or args.target}, draft {args.draft_dir or args.draft}, {args.dtype}, "
          f"{args.threads} thread(s), {args.repeats} rounds, context {ctx}")
    for name, ts in times.items():
        ms = med[name]
        print(f"{name:28} {ms:8.2f} ms  {ms / base:5.2f}x a plain target step")
    print(f"a block of {len(pos)} rows vs the same rows one at a time: max |logit difference| {diff:.3g}, "
          f"argmax equal in {same}/{len(pos)} rows")
    return med


def head_draft_times(target: Transformer, target_name: str, repeats: int) -> dict[str, float]:
    """The trained head's draft of k = 1..4 tokens (one catch-up row, then k tokens), with its weights cold as after
    a target step (128 MB streamed first): the C++ draft step (HeadPlan) vs module calls, fp32 vs bf16 head."""
    from albumen.llm.sampling import SamplingConfig
    from albumen.llm.speculative.drafters.head import HeadDrafter, load_head
    from albumen.llm.speculative.factory import default_head_path

    prompt = list(range(300, 400))
    flush = torch.zeros(32 * 1024 * 1024)
    cfg = SamplingConfig()
    out: dict[str, float] = {}
    target.setup_caches(1, 512)
    for dtype in (torch.float32, torch.bfloat16):
        for plan in (True, False):
            drafter = HeadDrafter(load_head(default_head_path(target_name))[0], dtype=dtype, plan=plan)
            drafter.start(target, prompt, 512)
            with torch.inference_mode():
                target(torch.tensor([prompt]), torch.arange(len(prompt)), last_only=True)  # features via the hook
                drafter.release()
                drafter.propose(prompt, 1, cfg, None)
                for k in (1, 2, 3, 4):
                    times = []
                    for _ in range(repeats):
                        flush.add_(1.0)
                        drafter._fed = list(prompt)  # the next call catches up one row, as after a 1-token step
                        times.append(_time(lambda: drafter.propose(prompt + [prompt[-1]], k, cfg, None)))
                    name = f"head draft k={k} ({str(dtype).split('.')[-1]}, {'C++ plan' if plan else 'modules'})"
                    out[name] = 1e3 * statistics.median(times)
            drafter.finish()
    for name, ms in out.items():
        print(f"{name:44} {ms:8.3f} ms")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="qwen2.5-1.5b")
    p.add_argument("--draft", default="qwen2.5-0.5b")
    p.add_argument("--target-dir", default=None)
    p.add_argument("--draft-dir", default=None)
    p.add_argument("--vocab", default=None, help="a draft vocabulary file (assets/drafters/*.vocab.json)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--int4-blocks-ab", action="store_true",
                   help="int4 target: also time each block of 2..k+1 rows through the module path")
    p.add_argument("--int4-plan", action="store_true",
                   help="int4 target and draft: also time blocks and a draft token through the whole-model plan")
    p.add_argument("--head", action="store_true",
                   help="also time the trained head's draft (SmolLM2 target): C++ step vs modules, fp32 vs bf16")
    p.add_argument("--k-max", type=int, default=7)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    med = run(args)
    if args.head:
        med |= head_draft_times(load_model(args.target_dir or args.target, args.dtype)[0], args.target, args.repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "ms": med}, indent=1))


if __name__ == "__main__":
    main()
