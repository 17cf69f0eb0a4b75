"""Titles report metrics: word F1, ROUGE-L, valid-JSON / hallucination / agreement rates."""

from __future__ import annotations

import json

import pytest

from albumen.llm.train.datasets.titles import Facts, Place
from albumen.llm.train.titles_eval import evaluate_replies, rouge_l_f1, word_f1

FACTS = Facts("x1", "trip", "2023-07-02", "2023-07-05", (Place("Porto", "Porto", "Portugal"),), ("Ana",),
              ("beach", "sunset"), 40)


def _reply(title: str, subtitle: str) -> str:
    return json.dumps({"title": title, "subtitle": subtitle})


def test_word_f1_and_rouge_l():
    assert word_f1("Summer in Porto", "summer in porto") == 1.0
    assert word_f1("a b c d", "a b x y") == pytest.approx(0.5)
    assert rouge_l_f1("a b c d", "a x c d") == pytest.approx(0.75)  # LCS a c d: p = r = 3/4
    assert rouge_l_f1("a b c", "c b a") == pytest.approx(1 / 3)  # order matters for ROUGE-L, not for word F1
    assert word_f1("a b c", "c b a") == 1.0
    assert word_f1("", "x") == 0.0 and rouge_l_f1("", "") == 1.0


def test_rates():
    facts = [FACTS] * 4
    raws = [
        _reply("Porto with Ana", "A sunny trip to Portugal"),  # valid, grounded
        _reply("Lisbon with Ana", "Days by the sea"),  # valid, Lisbon is not in the facts
        "not json at all",
        _reply("Porto sunsets", "Beach days in July"),
    ]
    teacher = [_reply("Porto with Ana", "A sunny trip to Portugal")] * 3 + ["garbage"]
    s = evaluate_replies(facts, raws, teacher)
    assert s.n == 4 and s.valid_json == 0.75
    assert s.hallucinated == pytest.approx(1 / 3)
    assert s.exact_title == pytest.approx(0.5)  # compared where both are valid: replies 1 and 2
    assert s.agreement_word_f1 is not None and 0.5 < s.agreement_word_f1 < 1.0
    assert evaluate_replies(facts, raws).agreement_rouge_l is None  # no teacher: no agreement


def test_no_valid_reply_gives_no_hallucination_rate_and_flags_are_listed():
    assert evaluate_replies([FACTS], ["plain text"]).hallucinated is None  # not 0.0: there was nothing to check
    s = evaluate_replies([FACTS, FACTS], [_reply("Lisbon with Ana", "x"), _reply("Porto", "x")])
    assert s.hallucinated == 0.5 and s.flagged == {"x1": ["Lisbon"]}


def test_report_command_end_to_end_on_a_tiny_model(tmp_path):
    """The one report command on a tiny model folder: JSON + Markdown with every row, ids and side-by-side."""
    import torch

    from albumen.llm.adapters.config import AdapterConfig
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.testing import save_tiny_folder, tiny_model
    from albumen.llm.train.datasets.titles import sample_facts
    from albumen.llm.train.titles_eval import main

    folder = save_tiny_folder(tmp_path / "tiny")
    model = tiny_model()
    reg = AdapterRegistry(model)
    torch.manual_seed(0)  # LoRA A's init
    reg.add("titles", AdapterConfig(r=2, alpha=4, target_modules=("q_proj", "v_proj")))
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    reg.save("titles", tmp_path / "adapter")
    facts = sample_facts(3, seed=7)
    held = tmp_path / "heldout.jsonl"
    held.write_text("".join(json.dumps({"facts": f.to_json(), "teacher": _reply(f"{f.kind} in {f.places[0].city}",
                                                                                 "x")}) + "\n" for f in facts))
    report = main(["--model", str(folder), "--adapter", str(tmp_path / "adapter"), "--heldout", str(held),
                   "--examples", "2", "--dtype", "float32", "--out", str(tmp_path / "r.json"),
                   "--markdown", str(tmp_path / "r.md")])
    assert report["heldout_ids"] == [f.id for f in facts]
    assert report["teacher"]["valid_json"] == 1.0 and report["teacher"]["hallucinated"] == 0.0
    for key in ("base", "base_prefixed", "adapter_scores"):
        assert report[key]["n"] == 3
    assert all(ex["base_prefixed"].startswith('{"title": "') for ex in report["examples"])
    assert json.loads((tmp_path / "r.json").read_text())["heldout"] == 3
    md = (tmp_path / "r.md").read_text()
    assert md.count("\n| ") == 4 and "SmolLM2-135M + titles adapter" in md and md.count("  - teacher: ") == 2


@pytest.mark.parametrize(
    ("title", "subtitle", "flagged"),
    [
        ("Porto with Ana", "Summer memories in Portugal, July 2023", []),  # all grounded or common words
        ("Ana's Porto Trip", "New Year's Eve at the beach", []),  # possessives and "Eve" are not people
        ("Porto with John", "Sunset days", ["John"]),  # a person from Faker's lists, not from names.txt
        ("Porto and Lisbon", "With Ana", ["Lisbon"]),  # a GeoNames place the facts do not have
    ],
)
def test_hallucination_check(title, subtitle, flagged):
    from albumen.llm.train.datasets.titles import TitleReply, find_hallucinations

    assert find_hallucinations(TitleReply(title, subtitle), FACTS) == flagged
