"""``albumen llm generate --speculative``: same text as plain generation, stats on stderr, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from albumen.cli.main import build_app
from albumen.llm.generate import generate
from albumen.llm.loading import load_model
from albumen.llm.sampling import SamplingConfig
from albumen.llm.speculative.drafters.head import DraftHead, HeadConfig, save_head
from albumen.llm.testing import save_tiny_folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return save_tiny_folder(root / "target", seed=4), save_tiny_folder(root / "draft", seed=5)


def _run(tmp_path: Path, *args: str) -> object:
    return CliRunner().invoke(build_app(), ["--data-dir", str(tmp_path / "data"), "llm", *args])


def test_every_drafter_prints_the_plain_text(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    target, draft = folders
    model, tok = load_model(target)
    expected = generate(model, tok, "Once upon a time", SamplingConfig(max_new_tokens=16), chat=True).text
    torch.manual_seed(0)
    head = DraftHead(HeadConfig.for_target(model.args, "tiny", intermediate_size=32), torch.arange(260))
    save_head(head, tmp_path / "head.safetensors")
    for spec in ("lookup", f"model:{draft}", f"head:{tmp_path / 'head.safetensors'}", "self", "self:a0.5"):
        res = _run(tmp_path, "generate", "--model", str(target), "--max-tokens", "16", "--speculative", spec,
                   "Once upon a time")
        assert res.exit_code == 0, (spec, res.output)
        assert res.stdout == expected + "\n", spec


def test_stats_report_acceptance_and_speed_up(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    res = _run(tmp_path, "generate", "--model", str(folders[0]), "--max-tokens", "12", "--speculative", "lookup",
               "--stats", "hi hi hi")
    assert res.exit_code == 0, res.output
    assert "acceptance" in res.stderr and "tokens per target step" in res.stderr and "speed-up" in res.stderr


@pytest.mark.parametrize("spec,message", [("magic", "unknown drafter"), ("head", "no trained draft head"),
                                          ("head:/nonexistent.safetensors", "no draft head"),
                                          ("self:/nonexistent.safetensors", "no trained self-draft gains")])
def test_bad_specs_fail_clearly(tmp_path: Path, folders: tuple[Path, Path], spec: str, message: str) -> None:
    res = _run(tmp_path, "generate", "--model", str(folders[0]), "--speculative", spec, "hi")
    assert res.exit_code != 0
    assert message in res.output
