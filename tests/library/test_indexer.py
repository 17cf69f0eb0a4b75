"""The indexer in-process: incremental (new, changed, moved, deleted), duplicates, hostile files, worker crashes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from albumen.library import extract as extract_mod
from albumen.library import indexer as indexer_mod
from albumen.library.indexer import IndexBusy, IndexSettings, index_paths
from albumen.library.store import Store

ONE = IndexSettings(workers=1)
TWO = IndexSettings(workers=2)


def _state(store: Store) -> dict[str, Any]:
    """Everything the index knows, minus run bookkeeping and timestamps."""
    q = store.conn.execute
    return {
        "files": sorted(q("SELECT path_bytes, photo_id, size, mtime_ns, inode FROM files").fetchall()),
        "photos": sorted(q("SELECT id, content_hash, format, width, height, orientation, taken_at, tz_offset_min,"
                           " latitude, longitude, make, model, phash, near_group FROM photos").fetchall()),
        "thumbnails": sorted(q("SELECT * FROM thumbnails").fetchall()),
        "errors": sorted(q("SELECT path_bytes, kind, reason, size, mtime_ns FROM errors").fetchall()),
    }


def _paths(store: Store) -> dict[str, int]:
    return {os.path.basename(os.fsdecode(p)): pid for p, pid in store.conn.execute("SELECT path_bytes, photo_id FROM files")}


@pytest.fixture
def lib(tmp_path: Path, photo_factory: Any) -> Path:
    root = tmp_path / "lib"
    for i in range(5):
        photo_factory(root / "2024" / f"img{i}.jpg", seed=10 + i, orientation=6 if i == 0 else 1)
    photo_factory(root / "2024" / "shot.png", seed=20)
    return root


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "data" / "library.sqlite3")
    yield s
    s.close()


def test_first_run_indexes_and_rerun_changes_nothing(lib: Path, store: Store) -> None:
    first = index_paths(store, [lib], TWO)
    assert (first.scanned, first.new_photos, first.errors, first.photos, first.files) == (6, 6, 0, 6, 6)
    before = _state(store)
    thumbs_before = {p: p.stat().st_mtime_ns for p in (store.data_dir / "thumbnails").rglob("*.jpg")}
    assert len(thumbs_before) == 12
    again = index_paths(store, [lib], TWO)
    assert (again.unchanged, again.processed, again.removed_files) == (6, 0, 0)
    assert _state(store) == before
    assert {p: p.stat().st_mtime_ns for p in (store.data_dir / "thumbnails").rglob("*.jpg")} == thumbs_before


def test_records_point_to_upright_thumbnails(lib: Path, store: Store) -> None:
    index_paths(store, [lib], ONE)
    recs = list(store.iter_photos())
    assert len(recs) == 6
    for rec in recs:
        assert rec.path.is_file() and "/thumbnails/1024/" in str(rec.path)
        assert rec.original is not None and rec.original.is_file()
    rotated = store.conn.execute("SELECT width, height, orientation FROM photos WHERE orientation = 6").fetchone()
    assert rotated == (240, 320, 6)


def test_new_changed_touched_and_deleted_files(lib: Path, store: Store, photo_factory: Any) -> None:
    index_paths(store, [lib], ONE)
    ids = _paths(store)
    photo_factory(lib / "2025" / "new.jpg", seed=99)  # new
    photo_factory(lib / "2024" / "img1.jpg", seed=77)  # changed content, same name
    os.utime(lib / "2024" / "img2.jpg", ns=(1, 1_000_000_000))  # touched: same bytes, new mtime
    old_thumb = store.data_dir / store.conn.execute(
        "SELECT path FROM thumbnails WHERE photo_id = ? AND size = 256", (ids["img3.jpg"],)).fetchone()[0]
    (lib / "2024" / "img3.jpg").unlink()  # deleted
    s = index_paths(store, [lib], ONE)
    assert (s.new_photos, s.linked, s.removed_files, s.removed_photos, s.unchanged) == (2, 1, 1, 2, 3)
    now = _paths(store)
    assert "img3.jpg" not in now and not old_thumb.exists()
    assert now["img2.jpg"] == ids["img2.jpg"]  # touched: same photo, not decoded again
    assert now["img1.jpg"] != ids["img1.jpg"]
    assert store.count_photos() == 6


def test_move_and_rename_keep_the_photo_and_its_analyses(lib: Path, store: Store) -> None:
    index_paths(store, [lib], ONE)
    pid = _paths(store)["img4.jpg"]
    store.put_analyses("tags", "m", "1", [(pid, {"labels": ["beach"]})])
    store.put_embeddings("clip", "m", "1", {pid: np.ones(4)})
    (lib / "trips").mkdir()
    os.rename(lib / "2024" / "img4.jpg", lib / "trips" / "renamed.jpg")
    s = index_paths(store, [lib], TWO)
    assert (s.new_photos, s.linked, s.removed_files, s.removed_photos) == (0, 1, 1, 0)
    assert _paths(store)["renamed.jpg"] == pid
    assert store.get_analyses("tags") == {pid: {"labels": ["beach"]}}
    assert store.get_embeddings("clip")[0] == [pid]


def test_exact_duplicates_share_a_photo_until_the_last_copy_goes(lib: Path, store: Store) -> None:
    shutil.copy(lib / "2024" / "img0.jpg", lib / "copy.jpg")
    os.link(lib / "2024" / "img0.jpg", lib / "hardlink.jpg")
    s = index_paths(store, [lib], TWO)
    assert (s.files, s.photos) == (8, 6)
    ids = _paths(store)
    assert ids["copy.jpg"] == ids["hardlink.jpg"] == ids["img0.jpg"]
    (lib / "2024" / "img0.jpg").unlink()
    (lib / "copy.jpg").unlink()
    s = index_paths(store, [lib], ONE)
    assert (s.removed_files, s.removed_photos, s.photos) == (2, 0, 6)
    (lib / "hardlink.jpg").unlink()
    assert index_paths(store, [lib], ONE).removed_photos == 1


def test_hostile_files_are_recorded_and_the_run_goes_on(hostile_dir: Path, store: Store) -> None:
    s = index_paths(store, [hostile_dir], TWO)
    errors = {os.path.basename(os.fsdecode(p)): kind for p, kind in store.conn.execute("SELECT path_bytes, kind FROM errors")}
    assert errors == {
        "truncated.jpg": "truncated", "empty.jpg": "empty", "notes.jpg": "not-an-image", "bomb.png": "decompression-bomb",
        "back": "symlink-loop", "self.jpg": "symlink-loop", "pipe.jpg": "not-a-file", "locked.jpg": "unreadable",
    }
    assert s.errors == len(errors)
    indexed = set(_paths(store))
    assert indexed == {"good.jpg", "garbage_exif.jpg", "inside.jpg", "caf\udce9.jpg", "🎂 birthday 🎉.jpg",
                       "same_a.jpg", "same_b.jpg"}
    assert store.conn.execute("SELECT path FROM files WHERE path LIKE '%caf%'").fetchone()[0].endswith("caf\\xe9.jpg")
    rerun = index_paths(store, [hostile_dir], TWO)  # known-bad, unchanged files are not read again
    assert (rerun.processed, rerun.errors, rerun.unchanged) == (0, len(errors), rerun.scanned)
    (hostile_dir / "notes.jpg").unlink()  # a bad file that is deleted leaves the error list
    index_paths(store, [hostile_dir], ONE)
    assert "notes.jpg" not in {os.path.basename(r[0]) for r in store.conn.execute("SELECT path FROM errors")}


def test_fixed_file_leaves_the_error_list(tmp_path: Path, store: Store, photo_factory: Any) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.jpg").write_text("not yet")
    index_paths(store, [lib], ONE)
    assert store.conn.execute("SELECT kind FROM errors").fetchall() == [("not-an-image",)]
    photo_factory(lib / "a.jpg", seed=1)
    s = index_paths(store, [lib], ONE)
    assert (s.new_photos, s.errors) == (1, 0)
    assert store.conn.execute("SELECT COUNT(*) FROM errors").fetchone()[0] == 0


def test_missing_root_keeps_what_was_indexed(lib: Path, store: Store, tmp_path: Path) -> None:
    index_paths(store, [lib], ONE)
    moved = tmp_path / "unplugged"
    os.rename(lib, moved)
    s = index_paths(store, [lib], ONE)
    assert s.missing_roots == [str(lib)] and s.removed_files == 0 and store.count_photos() == 6


def test_other_roots_are_left_alone(lib: Path, store: Store, tmp_path: Path, photo_factory: Any) -> None:
    other = tmp_path / "other"
    photo_factory(other / "x.jpg", seed=50)
    index_paths(store, [lib, other], ONE)
    s = index_paths(store, [other], ONE)  # indexing one root never forgets another
    assert (s.removed_files, s.photos) == (0, 7)


def test_data_dir_inside_the_library_is_not_indexed(lib: Path, photo_factory: Any) -> None:
    with Store.open(lib / ".albumen" / "library.sqlite3") as inner, Store.open(lib / "data" / "l.sqlite3") as visible:
        assert index_paths(inner, [lib], ONE).files == 6
        assert index_paths(visible, [lib], ONE).files == 6  # its own thumbnails are not photos of the library


def test_lost_thumbnails_are_rebuilt(lib: Path, store: Store) -> None:
    index_paths(store, [lib], ONE)
    shutil.rmtree(store.data_dir / "thumbnails")
    s = index_paths(store, [lib], ONE)
    assert s.processed == 6
    assert all(r.path.is_file() for r in store.iter_photos())


def test_one_indexer_per_library(lib: Path, store: Store) -> None:
    with indexer_mod._index_lock(store.data_dir):
        with pytest.raises(IndexBusy, match="another `albumen index`"):
            index_paths(store, [lib], ONE)


def test_after_a_crash_partial_and_orphan_thumbnails_are_swept(lib: Path, store: Store) -> None:
    index_paths(store, [lib], ONE)
    folder = store.data_dir / "thumbnails" / "256" / "zz"
    folder.mkdir(parents=True)
    (folder / "x.jpg.abc.partial").write_bytes(b"half")
    (folder / "orphan.jpg").write_bytes(b"never committed")
    with store.write() as conn:  # what a killed run leaves behind
        conn.execute("INSERT INTO index_runs (started_at, roots) VALUES ('t', '[]')")
    index_paths(store, [lib], ONE)
    assert not any(folder.iterdir())
    assert all(r.path.is_file() for r in store.iter_photos())
    assert store.conn.execute("SELECT COUNT(*) FROM index_runs WHERE finished_at IS NULL").fetchone()[0] == 0


def _crashing_extract(job: Any, settings: Any) -> Any:
    if job.path.endswith("img2.jpg"):
        os._exit(13)  # a decoder that takes its process down
    return extract_mod.extract(job, settings)


def test_a_worker_that_dies_costs_only_its_file(lib: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer_mod, "extract", _crashing_extract)
    s = index_paths(store, [lib], TWO)
    assert s.new_photos == 5 and s.errors == 1
    assert store.conn.execute("SELECT kind FROM errors").fetchall() == [("decoder-crash",)]


def test_one_and_two_workers_agree(lib: Path, tmp_path: Path, photo_factory: Any) -> None:
    shutil.copy(lib / "2024" / "img1.jpg", lib / "dup.jpg")
    with Store.open(tmp_path / "a" / "l.sqlite3") as a, Store.open(tmp_path / "b" / "l.sqlite3") as b:
        index_paths(a, [lib], ONE)
        index_paths(b, [lib], TWO)
        key = "SELECT f.path, p.content_hash, p.width, p.height, p.taken_at, p.phash FROM files f JOIN photos p ON p.id = f.photo_id"
        assert sorted(a.conn.execute(key).fetchall()) == sorted(b.conn.execute(key).fetchall())
