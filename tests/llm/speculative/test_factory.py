"""Drafter specs and chains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.adaptive import SpeculativeConfig
from albumen.llm.speculative.decode import SpeculativeStats, speculative_decode
from albumen.llm.speculative.drafters.chain import ChainDrafter
from albumen.llm.speculative.drafters.head import DraftHead, HeadConfig, HeadDrafter, save_head
from albumen.llm.speculative.drafters.lookup import LookupDrafter
from albumen.llm.speculative.drafters.model import ModelDrafter
from albumen.llm.speculative.factory import default_head_path, describe, make_drafter
from albumen.llm.testing import tiny_model

from .conftest import plain_tokens


def test_specs_build_the_right_drafters(tmp_path: Path) -> None:
    target = tiny_model()
    torch.manual_seed(0)
    save_head(DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(260)),
              tmp_path / "h.safetensors")
    assert isinstance(make_drafter("lookup", target), LookupDrafter)
    assert isinstance(make_drafter(f"head:{tmp_path / 'h.safetensors'}", target), HeadDrafter)
    assert isinstance(make_drafter("model:x", target, load=lambda name: tiny_model(seed=1)), ModelDrafter)
    chain = make_drafter(f"lookup+head:{tmp_path / 'h.safetensors'}", target)
    assert isinstance(chain, ChainDrafter) and chain.name == "lookup+head"
    assert chain.drafters[0].cfg.min_ngram == 2
    assert default_head_path("smollm2-135m").name == "smollm2-135m-head.safetensors"
    with pytest.raises(ValueError, match="unknown drafter"):
        make_drafter("nope", target)
    with pytest.raises(ValueError, match="load"):
        make_drafter("model:x", target)


@pytest.mark.parametrize("seed", range(3))
def test_chain_is_exact_and_uses_both(seed: int) -> None:
    target = tiny_model(seed=seed)
    prompt = [7, 8, 9, 7, 8, 9, 40, 41, 42][seed:]
    cfg = SamplingConfig(max_new_tokens=40, ignore_eos=True)
    expected = plain_tokens(target, prompt, cfg)
    torch.manual_seed(seed)
    head = DraftHead(HeadConfig.for_target(target.args, "tiny", intermediate_size=32), torch.arange(260)).eval()
    chain = ChainDrafter([LookupDrafter(), ModelDrafter(tiny_model(seed=seed + 50, dim=32)), HeadDrafter(head)])
    stats = SpeculativeStats()
    got = list(speculative_decode(target, chain, prompt, cfg, SpeculativeConfig(k=3, adaptive=False), stats=stats))
    assert got == expected
    assert "tokens per target step" in describe(stats, 100.0) and "speed-up" in describe(stats, 100.0)


def test_model_specs_choose_the_draft_vocabulary(tmp_path: Path) -> None:
    from albumen.llm.speculative.factory import default_vocab_path
    from albumen.llm.speculative.vocab import save_draft_vocab

    target = tiny_model()
    load = lambda name: tiny_model(seed=1)  # noqa: E731
    assert make_drafter("model:x", target, load=load).vocab is None  # no vocabulary for this family
    save_draft_vocab(tmp_path / "v.json", torch.tensor([3, 1, 2]), {})
    drafter = make_drafter(f"model:x:{tmp_path / 'v.json'}", target, load=load)
    assert drafter.vocab.tolist() == [1, 2, 3]
    assert default_vocab_path("qwen2.5-0.5b") is not None  # the shipped Qwen2.5 vocabulary
    assert make_drafter("model:qwen2.5-0.5b:full", target, load=load).vocab is None
    assert make_drafter("model:qwen2.5-0.5b", target, load=load).vocab.numel() > 30000


def test_model_specs_take_a_confidence_rule(tmp_path: Path) -> None:
    from albumen.llm.speculative.vocab import save_draft_vocab

    target = tiny_model()
    names: list[str] = []

    def load(name: str):  # noqa: ANN202
        names.append(name)
        return tiny_model(seed=1)

    assert make_drafter("model:x:p0.4", target, load=load).min_confidence == 0.4
    assert make_drafter("model:x", target, load=load).min_confidence == 0.0
    full = make_drafter("model:qwen2.5-0.5b:full:p.25", target, load=load)
    assert (full.min_confidence, full.vocab) == (0.25, None)
    save_draft_vocab(tmp_path / "v.json", torch.tensor([3, 1, 2]), {})
    own = make_drafter(f"model:x:{tmp_path / 'v.json'}:p0.5", target, load=load)
    assert own.vocab.tolist() == [1, 2, 3] and own.min_confidence == 0.5
    assert names == ["x", "x", "qwen2.5-0.5b", "x"]  # the rule is not part of the model's name
    chain = make_drafter("lookup+model:x:p0.3", target, load=load)
    assert chain.drafters[1].min_confidence == 0.3 and not chain.drafters[1].keep_unsure
    after = make_drafter("model:x:a0.4", target, load=load)
    assert (after.min_confidence, after.keep_unsure) == (0.4, True)


def test_head_specs_take_a_confidence_rule() -> None:
    from albumen.llm.speculative.factory import default_head_path

    target = tiny_model()
    path = default_head_path("smollm2-135m")
    if not path.is_file():
        pytest.skip("no shipped head")
    assert make_drafter("head:p0.3", target, "smollm2-135m").min_confidence == 0.3
    assert make_drafter(f"head:{path}:p0.6", target).min_confidence == 0.6
    assert make_drafter("head", target, "smollm2-135m").min_confidence == 0.0
    with pytest.raises(ValueError, match="unknown drafter"):
        make_drafter("lookup:p0.3", target)
    with pytest.raises(ValueError, match="not after it"):
        make_drafter("head:a0.3", target, "smollm2-135m")
