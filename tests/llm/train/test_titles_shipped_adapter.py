"""The committed memory-titles adapter: a PEFT folder that loads on the real SmolLM2-135M and writes grounded JSON."""

from __future__ import annotations

import json

import pytest
import torch

from albumen.llm.train.datasets.titles import Facts, assets_dir, find_hallucinations, parse_reply


def test_shipped_titles_adapter_writes_grounded_json(tmp_path):
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.loading import load_model, resolve_folder
    from albumen.llm.train.titles_eval import generate_replies

    adapter = assets_dir().parent / "adapters" / "titles"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8  # PEFT's own config keys
    try:
        folder = resolve_folder("smollm2-135m", tmp_path / "models", install=False)
    except Exception as exc:  # the model wheel is a declared dependency; say so plainly if it is missing
        pytest.fail(f"SmolLM2 is not available: {exc}")
    model, tok = load_model(folder, dtype=torch.bfloat16)  # the base the adapter was trained on, as in the report
    reg = AdapterRegistry(model)
    reg.load("titles", adapter)
    lines = (assets_dir() / "heldout.jsonl").read_text(encoding="utf-8").splitlines()[:1]
    facts = [Facts.from_json(json.loads(line)["facts"]) for line in lines]
    with reg.using("titles"):
        replies = generate_replies(model, tok, facts, max_new_tokens=64)  # room to close the JSON
    for f, raw in zip(facts, replies, strict=True):
        reply = parse_reply(raw)
        assert reply is not None, raw
        assert not find_hallucinations(reply, f), raw
    with torch.no_grad():  # and the bare base is untouched: it does not answer in JSON
        assert parse_reply(generate_replies(model, tok, facts[:1], max_new_tokens=24)[0]) is None
