"""The SFT loop: assistant-only loss, accumulation, cosine schedule, determinism, resume after a SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from albumen.llm.adapters.peft_format import read_adapter
from albumen.llm.train.data import IGNORE, Example
from albumen.llm.train.sft import SFTConfig, causal_lm_loss, cosine_lr, latest_checkpoint

from . import _sft_job as job

JOB = Path(__file__).with_name("_sft_job.py")


def test_loss_counts_assistant_tokens_only():
    torch.manual_seed(0)
    logits = torch.randn(1, 6, 11, requires_grad=True)
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 4, 7, IGNORE]])
    loss, n = causal_lm_loss(logits, labels)
    assert n == 2
    want = torch.nn.functional.cross_entropy(logits[0, 2:4], torch.tensor([4, 7]), reduction="sum")
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert logits.grad[0, [0, 1, 4, 5]].abs().sum() == 0  # prompt and padding positions get no gradient


def test_cosine_schedule():
    lrs = [cosine_lr(s, 20, 1.0, 4, 0.1) for s in range(20)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # monotone decay after warm-up
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)
    assert cosine_lr(12, 20, 1.0, 4, 0.1) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)  # halfway: the mean


def test_accumulation_equals_one_big_batch(tmp_path):
    big = SFTConfig(lr=1e-2, max_steps=2, batch_size=4, grad_accum=1, seq_len=96, warmup_steps=1, save_every=0)
    small = SFTConfig(lr=1e-2, max_steps=2, batch_size=2, grad_accum=2, seq_len=96, warmup_steps=1, save_every=0)
    _, a = job.run(str(tmp_path / "a"), config=big, dropout=0.0)
    _, b = job.run(str(tmp_path / "b"), config=small, dropout=0.0)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_training_learns_is_seeded_and_writes_peft(tmp_path):
    res, first = job.run(str(tmp_path / "a"))
    _, again = job.run(str(tmp_path / "b"))
    assert all(torch.equal(first[k], again[k]) for k in first)  # same seed, same bits
    assert res.steps == job.CONFIG.max_steps
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.eval_loss is not None and "eval_loss" in res.history[3]
    cfg, tensors = read_adapter(tmp_path / "a")  # the final adapter, in PEFT's format
    assert cfg.r == 4 and set(tensors) == set(first)
    hist = json.loads((tmp_path / "a" / "train_history.json").read_text())
    assert [h["step"] for h in hist] == list(range(1, 9))


def test_changed_config_refuses_to_resume(tmp_path):
    job.run(str(tmp_path), stop_after=2)
    other = SFTConfig(**{**job.CONFIG.__dict__, "lr": 1.0})
    with pytest.raises(ValueError, match="another config"):
        job.run(str(tmp_path), config=other)


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    _, want = job.run(str(tmp_path / "full"))
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(JOB), str(killed), "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # died by SIGKILL in step 5, after checkpoint-4
    assert latest_checkpoint(killed).name == "checkpoint-4"
    assert not (killed / "adapter_model.safetensors").exists()
    res, got = job.run(str(killed))  # resumes from step 4 with the saved optimiser and RNG state
    assert res.steps == job.CONFIG.max_steps
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)


def test_empty_training_set_is_a_clear_error(tmp_path):
    from albumen.llm.adapters.config import AdapterConfig
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.testing import tiny_model
    from albumen.llm.train.sft import train_sft

    model = tiny_model()
    reg = AdapterRegistry(model)
    reg.add("x", AdapterConfig(r=2))
    with pytest.raises(ValueError, match="no training examples"):
        train_sft(model, reg, "x", [], job.CONFIG, tmp_path, pad_id=0)
    assert Example([1], [1])  # the dataclass itself accepts a one-token row


def test_time_boxed_chunks_equal_one_run(tmp_path):
    from albumen.llm.adapters.config import AdapterConfig
    from albumen.llm.adapters.registry import AdapterRegistry
    from albumen.llm.testing import tiny_model
    from albumen.llm.train.sft import train_sft

    cfg = SFTConfig(lr=5e-3, max_steps=3, batch_size=4, seq_len=96, warmup_steps=1, save_every=0, seed=1)

    def chunk(out, limit):
        model = tiny_model()
        reg = AdapterRegistry(model)
        torch.manual_seed(1)
        reg.add("t", AdapterConfig(r=2, alpha=4))
        res = train_sft(model, reg, "t", job.examples(), cfg, out, pad_id=0, time_limit_s=limit)
        return res, reg.state_dict("t")

    _, want = chunk(tmp_path / "one", 0.0)
    res, _ = chunk(tmp_path / "chunks", 1e-9)  # out of time after every step: checkpoint and return
    assert res.steps == 1 and latest_checkpoint(tmp_path / "chunks").name == "checkpoint-1"
    chunk(tmp_path / "chunks", 1e-9)
    res, got = chunk(tmp_path / "chunks", 1e-9)
    assert res.steps == 3
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_head_on_labelled_positions_only_equals_full_logits():
    from albumen.llm.testing import tiny_model
    from albumen.llm.train.sft import model_loss

    model = tiny_model()
    ids = torch.randint(0, 260, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :7] = IGNORE
    labels[1, 10:] = IGNORE
    want, n_want = causal_lm_loss(model(ids), labels)
    got, n = model_loss(model, ids, labels)
    assert n == n_want == 5 + 3
    torch.testing.assert_close(got, want)
    assert isinstance(model.lm_head, torch.nn.Linear)  # the head is put back
