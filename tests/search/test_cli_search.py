from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import albumen.vision.text_embedding as text_embedding
from albumen.cli import search as cli_search
from albumen.cli.main import build_app
from albumen.library.store import Store

from .conftest import build_store


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(text_embedding, "TextEmbedder", text_embedding.FakeTextEmbedder)
    monkeypatch.setattr(cli_search, "_gazetteer", lambda: None)  # names only: the real table takes ~1 s to load
    monkeypatch.setenv("ALBUMEN_CONFIG", str(tmp_path / "none.toml"))
    with Store.open(tmp_path / "library.sqlite3") as store:
        build_store(store=store)
    return tmp_path


def run(data_dir: Path, *args: str) -> object:
    return CliRunner().invoke(build_app(), ["--data-dir", str(data_dir), *args])


def test_json_output_is_path_and_score(data_dir: Path) -> None:
    res = run(data_dir, "search", "snow covered mountain peak", "--json", "--min-score", "0.3")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data and set(data[0]) == {"path", "score"} and data[0]["path"] == "/photos/snow_peak.jpg"
    assert all(isinstance(d["score"], float) for d in data)


def test_flags_filter(data_dir: Path) -> None:
    res = run(data_dir, "search", "Tom", "--place", "italy", "--after", "2023", "--before", "2024", "--json")
    assert res.exit_code == 0, res.output
    assert [d["path"] for d in json.loads(res.stdout)] == ["/photos/pasta.jpg"]
    res = run(data_dir, "search", "anything", "--person", "anna", "--limit", "1", "--json", "--min-score", "-1")
    assert res.exit_code == 0 and len(json.loads(res.stdout)) <= 1


def test_table_shows_scores_and_parsed_filters(data_dir: Path) -> None:
    res = run(data_dir, "search", "Anna and Tom at Christmas")
    assert res.exit_code == 0, res.output
    assert "people: Anna Berg + Tom" in res.stdout and "xmas_tree.jpg" in res.stdout and "1.000" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--person", "Zoe"), "no person called 'Zoe'"),
        (("--place", "Mars"), "no photo was taken in a place called 'Mars'"),
        (("--after", "soon"), "not a date"),
        (("--after", "2024", "--before", "2023"), "is not before"),
    ],
)
def test_bad_flags_are_clear_errors(data_dir: Path, args: tuple[str, ...], message: str) -> None:
    res = run(data_dir, "search", "dog", *args)
    assert res.exit_code == 2 and message in res.output.replace("\n", " ")


def test_no_library_yet(tmp_path: Path) -> None:
    res = run(tmp_path / "empty", "search", "dog")
    assert res.exit_code == 2 and "albumen index" in res.output


def test_places_command(data_dir: Path) -> None:
    res = run(data_dir, "places", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["home"]["days"] == 4 and data["places"][0] == {"place": "Berlin, Germany", "photos": 4, "km_from_home": 0.0}


def test_places_by_region_groups_cities(data_dir: Path) -> None:
    res = run(data_dir, "places", "--by", "region", "--json")
    assert res.exit_code == 0, res.output
    labels = {p["place"]: p["photos"] for p in json.loads(res.stdout)["places"]}
    assert labels["Berlin, Germany"] == 4 and labels["Valais, Switzerland"] == 1 and labels["Lazio, Italy"] == 1
    res = run(data_dir, "places", "--by", "planet")
    assert res.exit_code == 2 and "--by must be" in res.output
