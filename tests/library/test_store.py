"""Store: WAL + migrations on open, analyzer tables, embeddings as float32 BLOBs, one writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from albumen.library.migrations import Migration, applied_migrations
from albumen.library.store import Store, StoreError, blob_to_vector, vector_to_blob


def _add_photo(store: Store, chash: str, *, thumb: str | None = None, path: str = "/photos/a.jpg") -> int:
    with store.write() as conn:
        pid = conn.execute(
            "INSERT INTO photos (content_hash, size, format, width, height, taken_at, latitude, longitude, indexed_at)"
            " VALUES (?, 10, 'JPEG', 4, 3, '2024-05-01T10:00:00+02:00', 48.85, 2.35, 'now') RETURNING id",
            (chash,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO files (path_bytes, path, photo_id, size, mtime_ns, inode, seen_at) VALUES (?,?,?,?,?,?,?)",
            (path.encode(), path, pid, 10, 1, 1, "now"),
        )
        if thumb:
            conn.execute(
                "INSERT INTO thumbnails (photo_id, size, path, width, height) VALUES (?, 256, ?, 4, 3)", (pid, thumb)
            )
    return int(pid)


def test_open_sets_wal_and_records_migrations(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db" / "library.sqlite3")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert set(applied_migrations(store.conn, "library")) == {1, 2}
    store.close()
    with Store.open(tmp_path / "db" / "library.sqlite3") as again:  # reopening applies nothing twice
        assert again.conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 2


def test_other_subsystems_apply_their_own_namespace(tmp_path: Path) -> None:
    extra = [Migration(1, "search index", "CREATE TABLE search_terms (photo_id INTEGER, term TEXT)")]
    with Store.open(tmp_path / "l.db", migrations=[("search", extra)]) as store:
        assert applied_migrations(store.conn, "search") == {1: "search index"}


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "library.sqlite3"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable Albumen database"):
        Store.open(bad)


def test_best_path_prefers_thumbnail_over_original(tmp_path: Path) -> None:
    with Store.open(tmp_path / "l.db") as store:
        a = _add_photo(store, "sha256:a", thumb="thumbnails/256/aa.jpg", path="/photos/a.jpg")
        b = _add_photo(store, "sha256:b", path="/photos/b.jpg")
        recs = {r.photo_id: r for r in store.iter_photos()}
        assert recs[a].path == tmp_path / "thumbnails/256/aa.jpg"
        assert recs[a].original == Path("/photos/a.jpg")
        assert recs[b].path == Path("/photos/b.jpg")
        assert recs[a].taken_at is not None and recs[a].taken_at.utcoffset().total_seconds() == 7200
        assert (recs[a].latitude, recs[a].longitude) == (48.85, 2.35)


def test_photos_needing_follows_model_id_and_version() -> None:
    store = Store.memory()
    a = _add_photo(store, "sha256:a", path="/a.jpg")
    b = _add_photo(store, "sha256:b", path="/b.jpg")
    assert [r.photo_id for r in store.photos_needing("tags", "effnet", "1")] == [a, b]
    assert store.put_analyses("tags", "effnet", "1", [(a, {"labels": ["cat"]})]) == 1
    assert [r.photo_id for r in store.photos_needing("tags", "effnet", "1")] == [b]
    assert [r.photo_id for r in store.photos_needing("tags", "effnet", "2")] == [a, b]
    assert [r.photo_id for r in store.photos_needing("tags", "other", "1")] == [a, b]
    assert [r.photo_id for r in store.photos_needing("faces", "effnet", "1")] == [a, b]
    store.put_analyses("tags", "effnet", "2", [(a, {"labels": ["dog"]})])
    assert store.get_analyses("tags") == {a: {"labels": ["dog"]}}


def test_results_for_deleted_photos_are_dropped() -> None:
    store = Store.memory()
    a = _add_photo(store, "sha256:a")
    assert store.put_analyses("tags", "m", "1", [(a, {}), (999, {})]) == 1
    assert store.put_embeddings("clip", "m", "1", {a: np.ones(3), 999: np.ones(3)}) == 1


def test_bad_payloads_are_refused() -> None:
    store = Store.memory()
    a = _add_photo(store, "sha256:a")
    with pytest.raises(StoreError, match="not plain JSON"):
        store.put_analyses("q", "m", "1", [(a, {"score": float("nan")})])
    with pytest.raises(StoreError, match="NaN"):
        store.put_embeddings("clip", "m", "1", {a: np.array([1.0, np.inf])})
    with pytest.raises(StoreError, match="1-D"):
        store.put_embeddings("clip", "m", "1", {a: np.ones((2, 2))})


def test_embeddings_round_trip_as_float32_blobs() -> None:
    store = Store.memory()
    ids = [_add_photo(store, f"sha256:{i}", path=f"/{i}.jpg") for i in range(3)]
    rng = np.random.default_rng(0)
    vecs = {i: rng.standard_normal(8) for i in reversed(ids)}
    assert store.put_embeddings("clip", "mini", "1", vecs) == 3
    got_ids, matrix = store.get_embeddings("clip")
    assert got_ids == ids and matrix.dtype == np.float32 and matrix.shape == (3, 8)
    np.testing.assert_allclose(matrix, np.stack([vecs[i] for i in ids]).astype(np.float32))
    blob = store.conn.execute("SELECT vector FROM embeddings LIMIT 1").fetchone()[0]
    assert len(blob) == 8 * 4
    np.testing.assert_array_equal(blob_to_vector(vector_to_blob(np.arange(4.0))), np.arange(4, dtype=np.float32))


def test_mixed_dimensions_need_a_model_filter() -> None:
    store = Store.memory()
    a, b = _add_photo(store, "sha256:a", path="/a"), _add_photo(store, "sha256:b", path="/b")
    store.put_embeddings("s", "small", "1", {a: np.ones(2)})
    store.put_embeddings("s", "big", "1", {b: np.ones(5)})
    with pytest.raises(StoreError, match="mixes dimensions"):
        store.get_embeddings("s")
    assert store.get_embeddings("s", model_id="big")[1].shape == (1, 5)
    with pytest.raises(StoreError, match="share a dimension"):
        store.put_embeddings("s", "m", "1", {a: np.ones(2), b: np.ones(3)})


def test_deleting_a_photo_cascades_to_analyzer_tables() -> None:
    store = Store.memory()
    a = _add_photo(store, "sha256:a")
    store.put_analyses("tags", "m", "1", [(a, {"x": 1})])
    store.put_embeddings("clip", "m", "1", {a: np.ones(4)})
    with store.write() as conn:
        person = conn.execute(
            "INSERT INTO people (created_at, updated_at) VALUES ('t', 't') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO faces (photo_id, x, y, w, h, score, model_id, model_version, embedding, person_id)"
            " VALUES (?, 0.1, 0.1, 0.2, 0.2, 0.9, 'dlib', '1', ?, ?)",
            (a, vector_to_blob(np.ones(128)), person),
        )
        conn.execute("DELETE FROM photos WHERE id = ?", (a,))
    for table in ("files", "thumbnails", "analyses", "embeddings", "faces"):
        assert store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0
    assert store.conn.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 1


def test_write_rolls_back_on_error_and_refuses_nesting() -> None:
    store = Store.memory()
    with pytest.raises(RuntimeError):
        with store.write() as conn:
            conn.execute(
                "INSERT INTO people (created_at, updated_at) VALUES ('t', 't')"
            )
            raise RuntimeError("boom")
    assert store.conn.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 0
    with store.write():
        with pytest.raises(StoreError, match="nested"):
            with store.write():
                pass


def test_second_writer_waits_for_the_first(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    first = Store.open(db)
    other = sqlite3.connect(str(db), isolation_level=None, timeout=0.05)
    with first.write():
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    first.close()
