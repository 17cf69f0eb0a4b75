"""End to end on real photos: `albumen index`, then `albumen analyze` (real dlib faces + quality), then `albumen people`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from albumen.cli.main import build_app

HAVE_DLIB = all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models"))


def _run(data: Path, *args: str) -> Any:
    return CliRunner().invoke(build_app(), ["--data-dir", str(data), *args], catch_exceptions=False)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """Two photos each of Eileen Collins and Grace Hopper (one mirrored / cropped), and a cat."""
    import matplotlib
    from PIL import Image, ImageOps
    from skimage import data

    root = tmp_path / "photos"
    root.mkdir()
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(root / "eileen.jpg", quality=90)
    ImageOps.mirror(astronaut).resize((400, 400)).save(root / "eileen_mirrored.jpg", quality=85)
    grace = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    grace.save(root / "grace.jpg", quality=90)
    w, h = grace.size
    grace.crop((int(w * 0.1), 0, w, int(h * 0.85))).save(root / "grace_crop.jpg", quality=85)
    Image.fromarray(data.chelsea()).save(root / "cat.jpg", quality=90)
    return root


@pytest.mark.skipif(not HAVE_DLIB, reason="dlib / face models not installed")
def test_analyze_then_people_commands(library: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _run(data, "index", str(library), "--no-analyze", "--json", "--workers", "1").exit_code == 0
    res = _run(data, "analyze", "--only", "faces", "--only", "quality", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["analyzed"] == {"faces": 5, "quality": 5} and out["errors"] == {"faces": 0, "quality": 0}
    assert out["people"] == {"assigned": 4, "new_people": 2}

    people = json.loads(_run(data, "people", "list", "--json").stdout)
    assert [(p["photos"], p["faces"]) for p in people] == [(2, 2), (2, 2)]
    eileen = next(p for p in people if "eileen" in p["example_path"])
    assert _run(data, "people", "name", str(eileen["person_id"]), "Eileen Collins").exit_code == 0
    assert json.loads(_run(data, "people", "recluster", "--json").stdout)["faces_moved"] == 0
    named = {p["name"]: p for p in json.loads(_run(data, "people", "list", "--json").stdout)}
    assert named["Eileen Collins"]["person_id"] == eileen["person_id"] and named["Eileen Collins"]["photos"] == 2

    again = json.loads(_run(data, "analyze", "--only", "faces", "--json").stdout)
    assert again["photos"] == 0  # incremental: nothing to do
    bad = _run(data, "people", "name", "999", "x")
    assert bad.exit_code == 2 and "no person with id 999" in bad.output
    unknown = _run(data, "analyze", "--only", "nonsense")
    assert unknown.exit_code == 2 and "not enabled" in unknown.output


def test_analyze_without_a_library_is_a_clear_error(tmp_path: Path) -> None:
    res = _run(tmp_path / "nothing", "analyze")
    assert res.exit_code == 2 and "albumen index" in res.output
