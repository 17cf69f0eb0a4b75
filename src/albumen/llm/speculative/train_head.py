"""Train the EAGLE-style draft head (drafters/head.py) on the target's own greedy generations, on the CPU.

Resumable stages, each bounded by ``--minutes`` (run again to continue):

1. ``data``: the target answers grounded-story and open-ended prompts (prompts.py, train split) greedily, in batches
   of equal-length prompts; a hook on its last layer records the normed hidden state of every position it fed, so no
   second pass is needed. Each finished batch is one shard file (token ids + fp16 features) in ``--data-dir``.
2. ``text`` (optional): the target reads real text (text_data.py); shards also record its argmax per position.
3. ``train``: teacher-forced: at position j the head reads (f_j, embed(t_{j+1})) and learns f_{j+1} (smooth L1) and
   the token t_{j+2} through the target's LM head restricted to the head's vocabulary (cross-entropy), with a little
   feature noise (EAGLE). The vocabulary is the most frequent generated tokens covering 99.5% of them (at most
   ``--vocab``). Checkpoints every ``--save-every`` steps; the final head goes to ``--out`` as fp16 safetensors with
   the measured data and training seconds in its header.

    python -m albumen.llm.speculative.train_head data --minutes 8
    python -m albumen.llm.speculative.train_head text --minutes 8
    python -m albumen.llm.speculative.train_head train --minutes 8

This module knows the training recipe; it knows the model only through ``albumen.llm.loading.load_model``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from albumen.llm.generate import _prompt_ids
from albumen.llm.model import Transformer
from albumen.llm.speculative.drafters.head import DraftHead, HeadConfig, head_weight, save_head
from albumen.llm.speculative.prompts import grounded_prompts, open_prompts

__all__ = ["TrainConfig", "batched_greedy", "build_vocab", "generate_data", "init_head", "load_shards", "main",
           "train_head"]

DEFAULT_OUT = "assets/drafters/smollm2-135m-head.safetensors"
DEFAULT_DATA = "build/speculative/data"


def batched_greedy(
    model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_ids: Sequence[int],
    deadline: float = math.inf,
) -> list[tuple[list[int], torch.Tensor]]:
    """Greedy continuations of equal-length prompts in one batch, with the target's features.

    Returns per row (tokens, feats): prompt + reply (cut after the first EOS, which is kept), and (len(tokens) - 1, D)
    fp16 normed last hidden states of every position but the last (the positions the model was fed). Past
    ``deadline`` (``time.perf_counter()``) the replies are cut short: still greedy prefixes, still usable.
    """
    bsz, length = len(prompts), len(prompts[0])
    if any(len(p) != length for p in prompts):
        raise ValueError("batched_greedy needs prompts of equal length")
    total = length + max_new_tokens
    model.setup_caches(bsz, total)
    feats = torch.zeros(bsz, total, model.args.dim, dtype=torch.float16)

    def capture(module: torch.nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        feats[:, args[3]] = model.model.norm(out).to(torch.float16)  # (B, T, D) at input_pos

    hook = model.model.layers[-1].register_forward_hook(capture)
    eos = set(eos_ids)
    rows = [list(p) for p in prompts]
    done = [False] * bsz
    try:
        with torch.inference_mode():
            logits = model(torch.tensor(rows), torch.arange(length), last_only=True)[:, -1]  # (B, V)
            for step in range(max_new_tokens):
                nxt = logits.argmax(-1).tolist()
                for i, t in enumerate(nxt):
                    if not done[i]:
                        rows[i].append(t)
                        done[i] = t in eos
                if all(done) or step + 1 == max_new_tokens or time.perf_counter() > deadline:
                    break
                pos = torch.tensor([length + step])
                logits = model(torch.tensor(nxt)[:, None], pos)[:, -1]
    finally:
        hook.remove()
    return [(r, feats[i, : len(r) - 1].clone()) for i, r in enumerate(rows)]


def _prompt_set(facts: Path, n_grounded: int, n_open: int, open_split: str = "train") -> list[str]:
    return grounded_prompts(facts, n_grounded, "train") + open_prompts(n_open, open_split)  # type: ignore[arg-type]


def generate_data(
    model: Transformer, tokenizer: Any, prompts: Sequence[str], data_dir: Path, minutes: float,
    batch_size: int = 16, max_new_tokens: int = 128, log: Any = print,
) -> dict[str, Any]:
    """Run batches until ``minutes`` pass or every prompt is done; shards already written are skipped."""
    data_dir.mkdir(parents=True, exist_ok=True)
    done = {i for s in data_dir.glob("shard-*.pt") for i in torch.load(s)["prompt_index"]}
    encoded = [(i, _prompt_ids(tokenizer, p, chat=True)) for i, p in enumerate(prompts) if i not in done]
    groups: dict[int, list[tuple[int, list[int]]]] = {}
    for i, ids in encoded:
        groups.setdefault(len(ids), []).append((i, ids))
    batches = [g[j : j + batch_size] for g in groups.values() for j in range(0, len(g), batch_size)]
    batches.sort(key=len, reverse=True)  # full batches first: the most tokens per second
    t0 = time.perf_counter()
    made = processed = 0
    for batch in batches:
        if time.perf_counter() - t0 > minutes * 60:
            break
        t_batch = time.perf_counter()
        rows = batched_greedy(model, [ids for _, ids in batch], max_new_tokens, tokenizer.eos_ids,
                              deadline=t0 + minutes * 60)
        seconds = time.perf_counter() - t_batch
        shard = {"prompt_index": [i for i, _ in batch], "prompt_len": [len(ids) for _, ids in batch],
                 "tokens": [r for r, _ in rows], "feats": [f for _, f in rows], "seconds": seconds}
        index = len(list(data_dir.glob("shard-*.pt")))
        torch.save(shard, data_dir / f".shard-{index:05d}.tmp")
        (data_dir / f".shard-{index:05d}.tmp").rename(data_dir / f"shard-{index:05d}.pt")
        new = sum(len(r) - p for (r, _), p in zip(rows, shard["prompt_len"]))
        made += new
        processed += 1
        log(f"batch of {len(batch)}: {new} new tokens in {seconds:.1f}s ({new / seconds:.0f} tok/s)")
    return {"new_tokens": made, "seconds": time.perf_counter() - t0, "remaining": len(batches) - processed}


Seq = tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]


def load_shards(data_dir: Path) -> tuple[list[Seq], float]:
    """[(tokens (L,), feats (L-1, D) fp16, prompt_len, labels (L-1,))], and the seconds the shards took to make.

    ``labels[j]`` is the target's choice after position j: its argmax where the shard recorded it (teacher-forced
    text, text_data.py), else the next token (exact for greedy generations, the text itself inside prompts).
    """
    seqs, seconds = [], 0.0
    for path in sorted([*data_dir.rglob("shard-*.pt"), *data_dir.rglob("text-*.pt")]):  # sub-folders too
        shard = torch.load(path)
        seconds += shard["seconds"]
        nexts = shard.get("next", [None] * len(shard["tokens"]))
        for toks, feats, plen, nxt in zip(shard["tokens"], shard["feats"], shard["prompt_len"], nexts):
            if len(toks) >= 4:
                toks = torch.tensor(toks)
                labels = toks[1:] if nxt is None else nxt.long()
                seqs.append((toks, feats, plen, labels))
    return seqs, seconds


def build_vocab(seqs: Sequence[Seq], max_size: int, coverage: float = 0.995) -> torch.Tensor:
    """The tokens the target chose most often (after the prompts), enough to cover ``coverage`` of its choices (at
    most ``max_size``), sorted: the head's reduced LM head (FR-Spec)."""
    counts = Counter(t for _, _, plen, labels in seqs for t in labels[max(0, plen - 1):].tolist())
    total, kept, chosen = sum(counts.values()), 0, []
    for tok, c in counts.most_common(max_size):
        chosen.append(tok)
        kept += c
        if kept >= coverage * total:
            break
    return torch.tensor(sorted(chosen))


def init_head(target: Transformer, vocab: torch.Tensor, name: str, seed: int = 0) -> DraftHead:
    """A head whose layer starts as a copy of the target's last layer and whose fc passes the features through."""
    torch.manual_seed(seed)
    head = DraftHead(HeadConfig.for_target(target.args, name), vocab)
    head.layer.load_state_dict(target.model.layers[-1].state_dict(), strict=False)
    d = target.args.dim
    with torch.no_grad():
        head.fc.weight.normal_(0, 0.02 / math.sqrt(d))
        head.fc.weight[:, d:] += torch.eye(d)  # cat(emb, feat): start from the feature
        head.fc.bias.zero_()
    return head.float()


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch_size: int = 6
    max_len: int = 256
    lr: float = 1e-3
    warmup: int = 20
    feature_weight: float = 1.0
    token_weight: float = 0.5
    noise: float = 0.05  # uniform feature noise, as in EAGLE
    unroll: int = 2  # draft steps trained per position (the head continuing from its own predictions)
    unroll_weight: float = 0.5  # loss weight of step s + 1 relative to step s
    weight_decay: float = 0.01
    heldout: int = 32
    save_every: int = 25
    seed: int = 0


def _batch(seqs, idx: Sequence[int], vocab_map: torch.Tensor, max_len: int, embed: torch.nn.Module):
    """Padded teacher-forcing tensors for sequences ``idx``: emb (B,T,D), feat_in, feat_out (B,T,D), targets (B,T),
    mask (B,T). Position j reads (f_j, t_{j+1}) and predicts f_{j+1} and t_{j+2}."""
    parts = []
    for i in idx:
        toks, feats, _, labels = seqs[i]
        n = min(len(toks) - 2, max_len)
        start = random.randint(0, len(toks) - 2 - n)
        parts.append((toks[start + 1 : start + 1 + n], feats[start : start + n + 1].float(),
                      labels[start + 1 : start + 1 + n]))
    T = max(len(p[0]) for p in parts)
    B, D = len(parts), parts[0][1].shape[-1]
    ids = torch.zeros(B, T, dtype=torch.long)
    f_in, f_out = torch.zeros(B, T, D), torch.zeros(B, T, D)
    tgt = torch.full((B, T), -100, dtype=torch.long)
    mask = torch.zeros(B, T)
    for b, (inp, f, out) in enumerate(parts):
        n = len(inp)
        ids[b, :n], f_in[b, :n], f_out[b, :n], mask[b, :n] = inp, f[:n], f[1 : n + 1], 1.0
        tgt[b, :n] = vocab_map[out]
    with torch.no_grad():
        emb = embed(ids).float()
    return emb, f_in, f_out, tgt, mask


def _losses(head: DraftHead, lm: torch.Tensor, batch, noise: float, unroll: int = 1
            ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(feature loss, token loss, top-1 accuracy) per unrolled draft step.

    Step 1 reads the target's true features. Step s + 1 reads, at position j, the feature that step s predicted at
    position j - 1 (as the s + 1-th draft token does; HASS / EAGLE-3 "training-time test"), so the head learns to
    continue from its own predictions. Later steps still attend to predicted features at every earlier position,
    which is harsher than drafting (where those are true), never easier.
    """
    emb, f_in, f_out, tgt, mask = batch
    if noise:
        f_in = f_in + (torch.rand_like(f_in) - 0.5) * 2 * noise
    valid = tgt != -100
    out = []
    feats = f_in
    for step in range(unroll):
        pred = head(emb, feats)  # (B, T, D)
        reg = (F.smooth_l1_loss(pred, f_out, reduction="none").mean(-1) * mask).sum() / mask.sum()
        logits = pred @ lm.T  # (B, T, Vd)
        ce = F.cross_entropy(logits.reshape(-1, lm.shape[0]), tgt.reshape(-1), ignore_index=-100)
        acc = (logits.argmax(-1) == tgt)[valid].float().mean()
        out.append((reg, ce, acc))
        feats = torch.cat([f_in[:, :1], pred[:, :-1]], dim=1)  # (B, T, D): position j reads the prediction from j-1
    return out


def train_head(
    target: Transformer, seqs, cfg: TrainConfig, ckpt: Path, minutes: float, name: str, max_vocab: int = 8192,
    log: Any = print,
) -> tuple[DraftHead, dict[str, Any]]:
    """Train (or resume) until ``cfg.steps`` or ``minutes``; returns the head and a summary."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = list(range(len(seqs)))
    random.Random(cfg.seed).shuffle(order)
    held, train = order[: cfg.heldout], order[cfg.heldout :]
    if ckpt.is_file():
        state = torch.load(ckpt)
        vocab = state["vocab"]
        head = DraftHead(HeadConfig(**state["config"]), vocab)
        head.load_state_dict(state["head"])
        step, spent = state["step"], state["train_s"]
    else:
        vocab = build_vocab([seqs[i] for i in train], max_vocab)
        head = init_head(target, vocab, name, cfg.seed)
        state, step, spent = None, 0, 0.0
    vocab_map = torch.full((target.args.vocab_size,), -100, dtype=torch.long)
    vocab_map[vocab] = torch.arange(len(vocab))
    lm = head_weight(target.lm_head)[vocab].detach().float()  # (Vd, D), frozen
    embed = target.model.embed_tokens
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        opt.load_state_dict(state["opt"])

    # The cosine runs to ``horizon``: cfg.steps, or fewer when the time budget will not allow them (estimated after
    # the first steps and kept across resumes), so a time-bound run still ends at a low learning rate.
    horizon = state.get("horizon", cfg.steps) if state is not None else cfg.steps

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / horizon))))

    def save() -> None:
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"head": head.state_dict(), "opt": opt.state_dict(), "step": step, "train_s": spent,
                    "vocab": vocab, "config": head.cfg.__dict__, "horizon": horizon}, tmp)
        tmp.rename(ckpt)

    head.train()
    t0 = time.perf_counter()
    last = t0
    while step < cfg.steps and time.perf_counter() - t0 < minutes * 60:
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        batch = _batch(seqs, random.sample(train, min(cfg.batch_size, len(train))), vocab_map, cfg.max_len, embed)
        steps_out = _losses(head, lm, batch, cfg.noise, cfg.unroll)
        loss = sum(cfg.unroll_weight**i * (cfg.feature_weight * reg + cfg.token_weight * ce)
                   for i, (reg, ce, _) in enumerate(steps_out))
        reg, ce, acc = steps_out[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        step += 1
        now = time.perf_counter()
        spent += now - last
        last = now
        if state is None and step == 10:
            per_step = (now - t0) / 10
            horizon = min(cfg.steps, step + int((minutes * 60 - (now - t0)) / per_step))
        if step % 10 == 0:
            log(f"step {step}: feature {reg.item():.4f} token {ce.item():.3f} top-1 {acc.item():.3f} ({spent:.0f}s)")
        if step % cfg.save_every == 0 or step == cfg.steps:
            save()
    save()
    head.eval()
    with torch.no_grad():
        random.seed(cfg.seed + 1)
        accs = [[r[2].item() for r in _losses(head, lm, _batch(seqs, [i], vocab_map, cfg.max_len, embed), 0.0, 2)]
                for i in held]
    mean = [round(sum(a[s] for a in accs) / max(1, len(accs)), 4) for s in range(2)]
    summary = {"steps": step, "train_s": round(spent, 1), "vocab": len(vocab), "heldout_top1": mean[0],
               "heldout_top1_step2": mean[1],
               "sequences": len(seqs), "done": step >= horizon, "horizon": horizon}
    return head, summary


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["data", "text", "train"])
    p.add_argument("--target", default="smollm2-135m")
    p.add_argument("--facts", default="assets/titles/facts.jsonl")
    p.add_argument("--grounded", type=int, default=640)
    p.add_argument("--open", type=int, default=320)
    p.add_argument("--open-split", choices=["train", "train-extra"], default="train",
                   help="topics of the open-ended prompts (train-extra: a further list, for more data)")
    p.add_argument("--data-dir", default=DEFAULT_DATA)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (on a busy 2-core machine one thread is several times faster than two)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from albumen.llm.loading import load_model

    target, tok = load_model(args.target)
    data_dir = Path(args.data_dir)
    if args.stage == "data":
        prompts = _prompt_set(Path(args.facts), args.grounded, args.open, args.open_split)
        summary = generate_data(target, tok, prompts, data_dir, args.minutes, args.batch_size, args.max_new_tokens,
                                log=lambda line: print(line, flush=True))
        print(json.dumps(summary))
        return
    if args.stage == "text":
        from albumen.llm.speculative.text_data import generate_text_data

        print(json.dumps(generate_text_data(target, tok, data_dir, args.minutes,
                                            log=lambda line: print(line, flush=True))))
        return
    seqs, gen_s = load_shards(data_dir)
    if not seqs:
        raise SystemExit(f"{data_dir}: no data; run the 'data' stage first")
    target.clear_caches()
    head, summary = train_head(target, seqs, TrainConfig(steps=args.steps), data_dir.parent / "head-ckpt.pt",
                               args.minutes, args.target, args.vocab, log=lambda line: print(line, flush=True))
    summary["data_s"] = round(gen_s, 1)
    summary["generated_tokens"] = sum(len(t) - pl for t, _, pl, _ in seqs if pl > 0)
    summary["text_tokens"] = sum(len(t) for t, _, pl, _ in seqs if pl == 0)
    save_head(head, args.out, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
