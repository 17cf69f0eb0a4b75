"""Distilling a draft model towards its target, end to end on tiny models: teacher answers (sharded, resumable),
LoRA training, merge + quantized export; the exported draft agrees with the teacher more often than before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from albumen.llm.generate import _prompt_ids, generate_tokens
from albumen.llm.loading import load_model
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.distill import (
    examples_from,
    export_student,
    teacher_data,
    teacher_labels,
    train_student,
)
from albumen.llm.testing import save_tiny_folder
from albumen.llm.train.data import IGNORE
from albumen.llm.train.sft import SFTConfig

PROMPTS = [f"story {i} about {w}" for i, w in enumerate(["cats", "dogs", "rain", "sun", "hills", "sea"] * 5)]


def _agreement(student, teacher, tok, prompts) -> float:  # noqa: ANN001
    """How often the student's greedy next token equals the teacher's along the teacher's own greedy answers."""
    same = total = 0
    cfg = SamplingConfig(max_new_tokens=12, ignore_eos=True)
    with torch.inference_mode():
        for p in prompts:
            ids = _prompt_ids(tok, p, chat=True)
            reply = list(generate_tokens(teacher, ids, cfg))
            student.clear_caches()
            pred = student(torch.tensor([ids + reply[:-1]]))[0, len(ids) - 1:].argmax(-1).tolist()
            same += sum(a == b for a, b in zip(pred, reply))
            total += len(reply)
    return same / total


def test_teacher_data_shards_and_resumes(tmp_path: Path) -> None:
    teacher, tok = load_model(save_tiny_folder(tmp_path / "teacher", seed=1))
    a = teacher_data(teacher, tok, PROMPTS, tmp_path / "t-0.jsonl", 5, 8, log=lambda s: None, shard=(0, 2))
    b = teacher_data(teacher, tok, PROMPTS, tmp_path / "t-1.jsonl", 5, 8, log=lambda s: None, shard=(1, 2))
    assert a["answered"] == b["answered"] == len(PROMPTS) // 2 and a["remaining"] == 0
    again = teacher_data(teacher, tok, PROMPTS, tmp_path / "t-0.jsonl", 5, 8, log=lambda s: None, shard=(0, 2))
    assert again["answered"] == 0  # resumed: nothing left
    recs = [json.loads(line) for f in ("t-0.jsonl", "t-1.jsonl") for line in (tmp_path / f).read_text().splitlines()]
    assert sorted(r["index"] for r in recs) == list(range(len(PROMPTS)))
    rec = recs[0]
    assert rec["reply_ids"] == list(generate_tokens(teacher, rec["prompt_ids"], SamplingConfig(max_new_tokens=8),
                                                    tok.eos_ids))
    ex = examples_from([{**rec, "eos": 7}])[0]
    assert ex.input_ids == rec["prompt_ids"] + rec["reply_ids"] + [7]
    assert ex.labels == [IGNORE] * len(rec["prompt_ids"]) + rec["reply_ids"] + [7]
    (tmp_path / "t-0.jsonl").write_text((tmp_path / "t-0.jsonl").read_text() + '{"index": 9, "prom')  # a cut line
    assert teacher_data(teacher, tok, PROMPTS, tmp_path / "t-0.jsonl", 5, 8, log=lambda s: None,
                        shard=(0, 2))["answered"] == 0  # a line cut short by a kill is skipped, not an error


def test_distilled_student_agrees_more_with_its_teacher(tmp_path: Path) -> None:
    teacher, tok = load_model(save_tiny_folder(tmp_path / "teacher", seed=1))
    with torch.no_grad():  # larger logits: a random teacher then writes varied text instead of one repeated byte
        teacher.lm_head.weight.mul_(4.0)
    student_dir = save_tiny_folder(tmp_path / "student", seed=2)
    root = tmp_path / "distill"
    teacher_data(teacher, tok, PROMPTS * 4, root / "teacher-0.jsonl", 5, 16, log=lambda s: None)
    config = SFTConfig(lr=3e-3, epochs=4.0, batch_size=4, seq_len=128, warmup_steps=2, eval_every=15, save_every=0)
    summary = train_student(str(student_dir), [root / "teacher-0.jsonl"], root / "train", 5, config, heldout=4)
    assert summary["complete"] and summary["eval_loss"] < summary["eval_loss_first"]
    out = export_student(str(student_dir), root / "train", tmp_path / "draft-int8", scheme="int8")
    assert (tmp_path / "draft-int8" / "quantization.json").is_file() and out["scheme"] == "int8"
    before = load_model(student_dir)[0]
    after = load_model(tmp_path / "draft-int8")[0]
    held = [f"tale {i} of {w}" for i, w in enumerate(["cats", "rain", "hills"])]
    assert _agreement(after, teacher, tok, held) > _agreement(before, teacher, tok, held) + 0.1


def test_labels_are_the_label_models_choice_after_each_prefix(tmp_path: Path) -> None:
    """The label stage relabels answers with another model's greedy choice after every prefix (resumable, sharded);
    training rows then learn those labels on the same text, and records without labels are left out."""
    teacher, tok = load_model(save_tiny_folder(tmp_path / "teacher", seed=1))
    root = tmp_path / "distill"
    teacher_data(teacher, tok, PROMPTS[:6], root / "teacher-0.jsonl", 5, 8, log=lambda s: None)
    records = [json.loads(line) for line in (root / "teacher-0.jsonl").read_text().splitlines()]
    # the teacher itself as the label model: its labels are its own answers (fp32, greedy)
    same = teacher_labels(teacher, records, root / "self.jsonl", 5, log=lambda s: None)
    assert same["labelled"] == 6 and same["equal_to_answer"] == 1.0
    other, _ = load_model(save_tiny_folder(tmp_path / "other", seed=3))
    a = teacher_labels(other, records, root / "labels-0.jsonl", 5, log=lambda s: None, shard=(0, 2))
    b = teacher_labels(other, records, root / "labels-1.jsonl", 5, log=lambda s: None, shard=(1, 2))
    assert a["labelled"] + b["labelled"] == 6 and a["equal_to_answer"] < 1.0
    assert teacher_labels(other, records, root / "labels-0.jsonl", 5, log=lambda s: None,
                          shard=(0, 2))["labelled"] == 0  # resumed: nothing left
    labels = {json.loads(x)["index"]: json.loads(x)["labels"]
              for f in ("labels-0.jsonl", "labels-1.jsonl") for x in (root / f).read_text().splitlines()}
    rec = records[0]
    reply = rec["reply_ids"] + ([rec["eos"]] if rec.get("eos") is not None else [])
    ids = torch.tensor([rec["prompt_ids"] + reply[:-1]])
    with torch.inference_mode():
        expected = other(ids)[0, len(rec["prompt_ids"]) - 1:].argmax(-1).tolist()
    assert labels[rec["index"]] == expected
    rows = examples_from(records, labels)
    assert len(rows) == 6
    assert rows[0].input_ids == rec["prompt_ids"] + reply
    assert rows[0].labels == [IGNORE] * len(rec["prompt_ids"]) + expected
    assert len(examples_from(records, {rec["index"]: expected})) == 1  # unlabelled records are left out
    with pytest.raises(ValueError, match="labels for"):
        examples_from(records, {rec["index"]: expected[:-1]})
