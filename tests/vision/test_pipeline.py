"""Tests for albumen.vision.pipeline with fake analyzers over an in-memory store (and one spawned worker pool)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from albumen.library.store import Store
from albumen.vision import fakes
from albumen.vision.pipeline import PipelineSettings, analyze_library, run_order


def add_photo(store: Store, path: Path, *, seed: int = 0, lat: float | None = None) -> int:
    """A photo row + file row pointing at ``path`` (written as a small colour image unless it exists)."""
    if not path.exists():
        rgb = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(path)
    with store.write() as conn:
        pid = conn.execute(
            "INSERT INTO photos (content_hash, size, format, width, height, latitude, longitude, indexed_at) "
            "VALUES (?, 1, 'JPEG', 32, 24, ?, ?, 't') RETURNING id", (f"sha256:{path.name}", lat, lat),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO files (path_bytes, path, photo_id, size, mtime_ns, inode, seen_at) VALUES (?,?,?,1,0,0,'t')",
            (os.fsencode(path), str(path), pid),
        )
    return int(pid)


@pytest.fixture
def library(tmp_path: Path) -> Store:
    """Six photos: two of person 1, one of person 2, a broken file, a 'boom' photo, a plain one."""
    store = Store.memory()
    names = ["p1_a.png", "p1_b.png", "p2_a.png", "plain.png", "boom.png"]
    for i, n in enumerate(names):
        add_photo(store, tmp_path / n, seed=i)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    add_photo(store, bad)
    return store


def settings(*names: str, workers: int = 1, batch: int = 4, force: bool = False) -> PipelineSettings:
    return PipelineSettings(analyzers=names, batch_size=batch, workers=workers, force=force)


def test_run_order_puts_needs_first() -> None:
    an = fakes.fake_factory(["embeddings", "tags", "faces"], None)
    assert run_order(an) == ["faces", "embeddings", "tags"]
    assert run_order(fakes.fake_factory(["embeddings"], None)) == ["embeddings"]  # a need that is absent is fine


def test_results_stored_with_model_id_and_bad_photos_recorded(library: Store) -> None:
    s = settings("tags", "faces", "embeddings", "raising")
    out = analyze_library(library, None, settings=s, factory=fakes.fake_factory)
    assert out["analyzed"] == {"tags": 6, "faces": 6, "embeddings": 6, "raising": 6}
    assert out["errors"]["tags"] == 1 and out["errors"]["raising"] == 1  # the broken file; the boom photo only
    tags = library.get_analyses("tags")
    assert "cannot decode" in tags[6]["error"] and tags[1]["mean"]
    raising = library.get_analyses("raising")
    assert "boom" in raising[5]["error"] and all(raising[i] == {"ok": True} for i in (1, 2, 3, 4, 6))
    ids, mat = library.get_embeddings("fake-colour", "fake-colour", "1")
    assert ids == [1, 2, 3, 4, 5] and mat.shape == (5, 3) and mat.dtype == np.float32
    row = library.conn.execute("SELECT model_id, model_version FROM analyses WHERE analyzer = 'tags' LIMIT 1")
    assert row.fetchone() == ("fake-colour", "1")
    # embeddings ran after faces in the same batch and saw their payloads
    ctx = library.get_analyses("embeddings")
    assert [ctx[i]["faces_seen"] for i in (1, 2, 3, 4)] == [1, 1, 1, 0]
    # faces rows with descriptors, grouped into two people
    assert library.conn.execute("SELECT COUNT(*) FROM faces WHERE embedding IS NOT NULL").fetchone()[0] == 3
    assert out["people"] == {"assigned": 3, "new_people": 2}


def test_second_run_does_nothing_and_a_model_change_reruns_only_that_analyzer(
    library: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings("tags", "faces")
    analyze_library(library, None, settings=s, factory=fakes.fake_factory)
    people_before = library.conn.execute("SELECT id, person_id FROM faces ORDER BY id").fetchall()
    again = analyze_library(library, None, settings=s, factory=fakes.fake_factory)
    assert again["photos"] == 0 and again["analyzed"] == {"tags": 0, "faces": 0}
    monkeypatch.setattr(fakes.FakeColorAnalyzer, "version", "2")
    changed = analyze_library(library, None, settings=s, factory=fakes.fake_factory)
    assert changed["analyzed"] == {"tags": 6, "faces": 0}
    assert {v for (v,) in library.conn.execute("SELECT model_version FROM analyses WHERE analyzer='tags'")} == {"2"}
    forced = analyze_library(library, None, settings=settings("faces", force=True), factory=fakes.fake_factory)
    assert forced["analyzed"] == {"faces": 6}
    # re-detected faces at the same place keep their person
    after = library.conn.execute("SELECT person_id FROM faces ORDER BY id").fetchall()
    assert [p for _, p in people_before] == [p for (p,) in after]


def test_only_and_config_settings(library: Store, tmp_path: Path) -> None:
    from albumen.config import AppConfig

    cfg = AppConfig(data_dir=tmp_path)
    s = PipelineSettings.from_config(cfg, only=["quality"])
    assert s.analyzers == ("quality",) and s.cache_dir == tmp_path / "cache"
    with pytest.raises(ValueError, match="not enabled"):
        PipelineSettings.from_config(cfg, only=["nonsense"])


def test_analyzer_that_cannot_load_is_reported_and_retried_next_time(library: Store) -> None:
    out = analyze_library(library, None, settings=settings("tags", "broken"), factory=fakes.fake_factory)
    assert "model file missing" in out["failed"]["broken"] and out["analyzed"]["tags"] == 6
    assert library.get_analyses("broken") == {}  # nothing stored: the next run tries again
    assert len(library.photos_needing("broken", "fake-broken", "1")) == 6


def test_progress_is_reported_per_batch(library: Store) -> None:
    seen: list[tuple[str, int, int]] = []
    analyze_library(library, None, lambda *a: seen.append(a), settings=settings("tags", batch=4),
                    factory=fakes.fake_factory)
    assert seen == [("analyze", 0, 6), ("analyze", 4, 6), ("analyze", 6, 6)]


def test_worker_pool_matches_in_process_and_survives_a_crashing_photo(tmp_path: Path) -> None:
    def build(root: Path) -> Store:
        root.mkdir()
        store = Store.memory()
        for i, n in enumerate(["p1_a.png", "p1_b.png", "crash.png", "p2_a.png", "p3_a.png", "x.png", "y.png"]):
            add_photo(store, root / n, seed=i)
        return store

    pooled, single = build(tmp_path / "a"), build(tmp_path / "b")
    names = ("tags", "faces", "crashing")
    out = analyze_library(pooled, None, settings=settings(*names, workers=2, batch=2), factory=fakes.fake_factory)
    assert out["workers"] == 2 and out["analyzed"] == {"tags": 7, "faces": 7, "crashing": 7}
    crashed = pooled.get_analyses("crashing")
    assert "crashed" in crashed[3]["error"] and all(crashed[i] == {"ok": True} for i in (1, 2, 4, 5, 6, 7))
    # the photo that shared a batch with the crash was redone and is fine; the crashing photo is marked everywhere
    tags = pooled.get_analyses("tags")
    assert "error" not in tags[4] and "crashed" in tags[3]["error"]
    assert out["people"] == {"assigned": 4, "new_people": 3}
    ref = analyze_library(single, None, settings=settings("tags", "faces"), factory=fakes.fake_factory)
    assert ref["analyzed"] == {"tags": 7, "faces": 7}
    for name in ("tags", "faces"):
        ok = {k: v for k, v in single.get_analyses(name).items() if k != 3}
        assert {k: v for k, v in pooled.get_analyses(name).items() if k != 3} == ok


def test_workers_that_cannot_start_stop_the_run_with_a_clear_error(library: Store) -> None:
    s = settings("tags", "unstartable", workers=2, batch=2)
    with pytest.raises(RuntimeError, match="died .* times in a row.*--workers 1"):
        analyze_library(library, None, settings=s, factory=fakes.fake_factory)
    assert library.get_analyses("unstartable") == {}
