"""The library CLI: index / stats / ls / errors, exit codes, JSON, and originals left byte-identical."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from albumen.cli.main import build_app


def _run(data: Path, *args: str) -> Any:
    result = CliRunner().invoke(build_app(), ["--data-dir", str(data), *args], catch_exceptions=False)
    return result


@pytest.fixture
def lib(tmp_path: Path, photo_factory: Any, helpers: Any) -> Path:
    from datetime import datetime

    root = tmp_path / "lib"
    for i in range(4):
        photo_factory(root / f"IMG_{i}.jpg", seed=i, taken=datetime(2024, 6, 1 + i, 12), offset="+02:00",
                      gps=(41.39, 2.17), make="Apple", model="iPhone 12")
    helpers.make_hostile(root / "hostile")
    return root


def test_index_json_then_stats_ls_errors(lib: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    res = _run(data, "index", str(lib), "--json", "--no-analyze", "--workers", "2")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["new_photos"] == 10 and summary["errors"] == 8 and summary["photos"] == 10
    assert summary["analyzers"] == {"ran": False, "note": "--no-analyze"}
    stats = json.loads(_run(data, "stats", "--json").stdout)
    assert stats["photos"] == 10 and stats["files"] == 11 and stats["duplicate_files"] == 1
    assert stats["with_gps"] == 4 and stats["with_time_zone"] == 4 and stats["cameras"] == {"Apple iPhone 12": 4}
    assert stats["errors"]["symlink-loop"] == 2
    rows = json.loads(_run(data, "ls", "--json", "-n", "3").stdout)
    assert [r["taken_at"] for r in rows] == ["2024-06-01T12:00:00+02:00", "2024-06-02T12:00:00+02:00",
                                             "2024-06-03T12:00:00+02:00"]
    errors = json.loads(_run(data, "errors", "--json", "--kind", "truncated").stdout)
    assert len(errors) == 1 and errors[0]["path"].endswith("truncated.jpg") and "ends early" in errors[0]["reason"]


def test_human_output_and_rerun(lib: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _run(data, "index", str(lib), "--no-analyze", "--workers", "1")
    assert first.exit_code == 0 and "new photos" in first.stdout and "albumen errors" in first.stdout
    again = json.loads(_run(data, "index", str(lib), "--json", "--no-analyze").stdout)
    assert again["new_photos"] + again["linked"] == 0 and again["unchanged"] == again["scanned"]
    for cmd in ("stats", "ls", "errors"):
        res = _run(data, cmd)
        assert res.exit_code == 0 and res.stdout.strip(), cmd


def test_analyzers_are_skipped_with_a_note_when_vision_is_absent(lib: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "albumen.vision.pipeline", None)  # import fails as if the module did not exist
    res = _run(tmp_path / "data", "index", str(lib), "--json")
    out = json.loads(res.stdout)
    assert out["analyzers"]["ran"] is False and "not available" in out["analyzers"]["note"]


def test_analyzers_run_after_indexing_when_present(lib: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import sys
    import types

    calls: list[int] = []

    def analyze_library(store: Any, config: Any, progress: Any) -> dict[str, int]:
        calls.append(store.count_photos())
        progress("tags", 1, 1)
        return {"tags": store.count_photos()}

    monkeypatch.setitem(sys.modules, "albumen.vision.pipeline", types.SimpleNamespace(analyze_library=analyze_library))
    out = json.loads(_run(tmp_path / "data", "index", str(lib), "--json").stdout)
    assert calls == [10] and out["analyzers"] == {"ran": True, "result": {"tags": 10}}
    _run(tmp_path / "data", "index", str(lib), "--json", "--no-analyze")
    assert calls == [10]


def test_queries_before_any_index_say_what_to_do(tmp_path: Path) -> None:
    res = _run(tmp_path / "empty", "stats")
    assert res.exit_code == 2 and "albumen index" in res.output
    assert not (tmp_path / "empty" / "library.sqlite3").exists()


def test_corrupt_database_is_a_clear_error(tmp_path: Path, lib: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "library.sqlite3").write_bytes(b"garbage" * 1000)
    res = _run(data, "index", str(lib))
    assert res.exit_code == 2 and "not a usable Albumen database" in res.output


def test_originals_are_byte_identical_after_every_command(lib: Path, tmp_path: Path, helpers: Any) -> None:
    before = helpers.snapshot(lib)
    assert len(before) > 10
    data = tmp_path / "data"
    for args in (["index", str(lib), "--no-analyze"], ["index", str(lib), "--no-analyze", "--retry-errors"],
                 ["stats"], ["ls"], ["errors"], ["index", str(lib / "IMG_0.jpg"), "--json", "--no-analyze"]):
        assert _run(data, *args).exit_code == 0, args
        assert helpers.snapshot(lib) == before, args
    assert os.stat(lib / "hostile" / "locked.jpg").st_mode & 0o777 == 0


def test_progress_bar_shows_counts_rate_and_eta() -> None:
    import io

    from rich.console import Console

    from albumen.cli.library import _IndexBar
    from albumen.library.indexer import IndexProgress

    out = io.StringIO()
    clock = iter([100.0, 104.0])  # index phase starts at 100 s; 20 of 100 files done 4 s later
    bar = _IndexBar(True, Console(file=out, force_terminal=True, width=160, color_system=None), lambda: next(clock))
    with bar:
        bar(IndexProgress("scan", 500, 0, 0, 1))
        bar(IndexProgress("index", 0, 100, 0, 1))
        bar(IndexProgress("index", 20, 100, 18, 3))
    text = [ln for ln in out.getvalue().splitlines() if "indexing" in ln][-1]  # the final frame
    assert "20/100" in text and "5.0 photos/s" in text and "new 18  errors 3" in text
    assert "ETA 0:00:16" in text  # 80 files left at 5 per second


def test_json_mode_prints_only_json(lib: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(build_app(), ["--data-dir", str(tmp_path / "d"), "index", str(lib), "--json",
                                           "--no-analyze"], catch_exceptions=False)
    assert res.exit_code == 0
    assert json.loads(res.stdout)["workers"] == len(os.sched_getaffinity(0))  # one worker per core by default
