"""Building a drafter from a short spec (what ``albumen llm generate --speculative`` takes) and describing a run.

Specs: ``lookup`` (prompt n-grams), ``head`` (the trained head for the target, from ``assets/drafters``),
``head:PATH`` (a head file), ``model:NAME`` (a smaller model with the same tokenizer, loaded through ``load``; its
LM head restricted to the draft vocabulary in ``assets/drafters`` for its tokenizer family when there is one, see
vocab.py), ``model:NAME:full`` (the whole vocabulary), ``model:NAME:PATH.json`` (another draft vocabulary), ``self`` (the
target's own weights at 4 bits with the gains distilled for it in ``assets/drafters``, self_draft.py; ``self:untrained``
without them, ``self:PATH.safetensors`` other gains; ``:full`` / ``:VOCAB.json`` as for ``model``), any of
these with ``:pP`` (e.g. ``:p0.4``: a draft stops before a token whose draft probability is below P; ``:aP`` after
it; ``:sP`` after it, with the draft's second choice there as a tree leaf; model drafts only), and chains
such as ``lookup+head`` (the first drafter with a proposal wins).
This module knows drafter names and where trained heads live; loading models is the caller's ``load`` callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from albumen.llm.model import Transformer
from albumen.llm.speculative.decode import SpeculativeStats
from albumen.llm.speculative.drafters.base import Drafter

__all__ = ["default_head_path", "default_self_gains_path", "default_vocab_path", "describe", "make_drafter"]

_HEADS = {"smollm2-135m": "smollm2-135m-head.safetensors"}
# draft vocabularies by tokenizer family (preset name prefix)
_VOCABS = {"qwen2.5": "qwen2.5.vocab.json", "smollm2": "smollm2.vocab.json"}
_SELF_GAINS = "{}-self.safetensors"  # distilled gains of a target's quantized self draft, by preset name


def drafters_dir() -> Path:
    """``assets/drafters`` at the repository root."""
    return Path(__file__).resolve().parents[4] / "assets" / "drafters"


def default_head_path(target_name: str) -> Path:
    """The trained head for a target preset name (``smollm2-135m``)."""
    key = Path(str(target_name)).name.lower()
    if key not in _HEADS:
        raise ValueError(f"no trained draft head for {target_name!r} (heads exist for: {', '.join(_HEADS)}); "
                         "pass head:PATH, or use lookup / model:NAME")
    return drafters_dir() / _HEADS[key]


def default_self_gains_path(target_name: str) -> Path | None:
    """The distilled self-draft gains for a target preset name (``smollm2-135m``), or None where none were trained."""
    path = drafters_dir() / _SELF_GAINS.format(Path(str(target_name)).name.lower())
    return path if path.is_file() else None


def default_vocab_path(draft_name: str) -> Path | None:
    """The draft vocabulary for a draft model's preset name (``qwen2.5-0.5b`` -> the Qwen2.5 one), or None."""
    key = Path(str(draft_name)).name.lower()
    for prefix, file in _VOCABS.items():
        if key.startswith(prefix) and (drafters_dir() / file).is_file():
            return drafters_dir() / file
    return None


def make_drafter(
    spec: str, target: Transformer, target_name: str = "", load: Callable[[str], Transformer] | None = None
) -> Drafter:
    """A drafter for ``target`` from ``spec``; errors name the accepted forms. ``a+b`` chains drafters (first
    non-empty proposal wins); a lookup inside a chain needs a 2-token match, so that the next drafter gets the rest."""
    if "+" in spec:
        from albumen.llm.speculative.drafters.chain import ChainDrafter
        from albumen.llm.speculative.drafters.lookup import LookupConfig, LookupDrafter

        parts = [p.strip() for p in spec.split("+")]
        return ChainDrafter([LookupDrafter(LookupConfig(min_ngram=2)) if p.lower() == "lookup"
                             else make_drafter(p, target, target_name, load) for p in parts])
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    arg, confidence, rule = _confidence_rule(arg)
    keep_unsure, alternative = rule in ("a", "s"), rule == "s"
    if kind == "lookup" and not arg and not confidence:
        from albumen.llm.speculative.drafters.lookup import LookupDrafter

        return LookupDrafter()
    if kind == "head":
        from albumen.llm.speculative.drafters.head import HeadDrafter, load_head

        if keep_unsure:
            raise ValueError(f"{spec!r}: a head stops before a doubted token (head:pP), not after it (:aP, :sP)")
        path = Path(arg) if arg else default_head_path(target_name)
        head, _ = load_head(path)
        return HeadDrafter(head, min_confidence=confidence)
    if kind == "model" and arg:
        if load is None:
            raise ValueError("model:NAME needs a way to load the draft model")
        from albumen.llm.speculative.drafters.model import ModelDrafter
        from albumen.llm.speculative.vocab import load_draft_vocab

        name, _, option = arg.rpartition(":") if arg.endswith((":full", ".json")) else (arg, "", "")
        vocab_path = None if option == "full" else Path(option) if option else default_vocab_path(name)
        vocab = load_draft_vocab(vocab_path) if vocab_path is not None else None
        return ModelDrafter(load(name), name=f"model:{arg}", vocab=vocab, min_confidence=confidence,
                            keep_unsure=keep_unsure, alternative=alternative)
    if kind == "self":
        return _self_drafter(spec, arg, target, target_name, confidence, keep_unsure, alternative)
    raise ValueError(f"unknown drafter {spec!r}; use lookup, head[:PATH][:pP], model:NAME[:full|:VOCAB.json][:pP|:aP|:sP], "
                     "self[:untrained|:GAINS.safetensors][:full|:VOCAB.json][:pP|:aP|:sP] or a chain like lookup+head")


def _self_drafter(spec: str, arg: str, target: Transformer, target_name: str, confidence: float,
                  keep_unsure: bool, alternative: bool) -> Drafter:
    """``self[...]``: the target's quantized copy (self_draft.py) drafting through a ``ModelDrafter``."""
    from albumen.llm.speculative.drafters.model import ModelDrafter
    from albumen.llm.speculative.self_draft import self_draft
    from albumen.llm.speculative.vocab import load_draft_vocab

    gains, vocab_path, trained = default_self_gains_path(target_name), default_vocab_path(target_name), True
    for option in [o for o in arg.split(":") if o]:
        if option == "untrained":
            gains, trained = None, False
        elif option.endswith(".safetensors"):
            gains = Path(option)
        elif option == "full":
            vocab_path = None
        elif option.endswith(".json"):
            vocab_path = Path(option)
        else:
            raise ValueError(f"{spec!r}: unknown option {option!r} (untrained, GAINS.safetensors, full, VOCAB.json, "
                             "pP, aP, sP)")
    label = "self" + (f":{arg}" if arg else "") + (" (untrained)" if gains is None and trained else "")
    vocab = load_draft_vocab(vocab_path) if vocab_path is not None else None
    return ModelDrafter(self_draft(target, gains), name=label,
                        vocab=vocab, min_confidence=confidence, keep_unsure=keep_unsure, alternative=alternative)


def _confidence_rule(arg: str) -> tuple[str, float, str]:
    """(the rest, P, rule) for an argument ending in ``pP`` (``p0.4``: stop drafts before a token the draft doubts),
    ``aP`` (stop after it: the doubted token is still proposed) or ``sP`` (as ``a``, and the draft's second choice
    for that token goes along as a tree leaf, greedy only), else (arg, 0.0, "")."""
    rest, _, last = arg.rpartition(":")
    if re.fullmatch(r"[pas](0?\.\d+)", last):
        return rest, float(last[1:]), last[0]
    return arg, 0.0, ""


def describe(stats: SpeculativeStats, plain_tokens_per_s: float | None = None) -> str:
    """One line: acceptance rate, tokens per target step, speed, and the speed-up over plain decoding if measured."""
    line = (f"acceptance {stats.acceptance_rate:.0%} ({stats.accepted}/{stats.drafted} drafted), "
            f"{stats.tokens_per_step:.2f} tokens per target step, {stats.target_steps} target steps, "
            f"decode {stats.decode_tokens_per_s:.1f} tokens/s")
    if plain_tokens_per_s:
        line += (f", plain {plain_tokens_per_s:.1f} tokens/s, "
                 f"speed-up {stats.decode_tokens_per_s / plain_tokens_per_s:.2f}x")
    return line
