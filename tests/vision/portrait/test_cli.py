"""``albumen portrait`` through typer's runner, with the fake models swapped in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import albumen.vision.portrait as portrait_pkg
from albumen.vision.portrait.mode import PortraitMode
from albumen.cli.main import build_app
from albumen.vision.portrait.fakes import EllipseSegmenter, FixedFaces
from albumen.vision.segmentation import FaceBox

from .conftest import make_scene


class _FakeMode(PortraitMode):
    def __init__(self, config=None, segmenter=None, detector=None) -> None:
        face = FaceBox(0.42, 0.18, 0.58, 0.38, 0.9)
        super().__init__(config, EllipseSegmenter(((0.5, 0.6, 0.22, 0.45),), edge=0.02), FixedFaces((face,)))


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(portrait_pkg, "PortraitMode", _FakeMode)
    runner = CliRunner()
    return lambda *args: runner.invoke(build_app(), ["portrait", *map(str, args)])


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "in.jpg"
    Image.fromarray(make_scene()).save(path)
    return path


def test_writes_the_portrait(run, src: Path, tmp_path: Path) -> None:
    res = run(src, tmp_path / "out.jpg", "--aperture", "2", "--focus", "0.5,0.6")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "out.jpg").exists()


def test_json_report(run, src: Path, tmp_path: Path) -> None:
    res = run(src, tmp_path / "out.png", "--json", "--preset", "dramatic")
    report = json.loads(res.output)
    assert report["subject"] == "person" and report["size"] == [200, 160]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--aperture", "0.9"], "outside f/1.4..f/16"),
        (["--focus", "half"], "focus"),
        (["--preset", "wild"], "choose one of"),
    ],
)
def test_bad_flags_are_clear_errors(run, src: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = run(src, tmp_path / "out.jpg", *args)
    assert res.exit_code == 2 and message in res.output.replace("\n", " ")


def test_out_equal_to_in_is_refused(run, src: Path) -> None:
    before = src.read_bytes()
    res = run(src, src, "--overwrite")
    assert res.exit_code == 2 and "never overwrites" in res.output.replace("\n", " ")
    assert src.read_bytes() == before


def test_no_subject_message(run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class _Empty(PortraitMode):
        def __init__(self, config=None, segmenter=None, detector=None) -> None:
            super().__init__(config, EllipseSegmenter(()), FixedFaces())

    monkeypatch.setattr(portrait_pkg, "PortraitMode", _Empty)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(flat)
    res = run(flat, tmp_path / "out.jpg")
    assert res.exit_code == 2 and "no clear subject" in res.output.replace("\n", " ")
