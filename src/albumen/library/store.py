"""The SQLite store: one database file per library, WAL mode, migrations applied on open, one writer.

``Store`` is what every subsystem uses to reach the index:
- ``iter_photos()`` / ``photos_needing()`` give each photo's best decodable path (its largest thumbnail, else an
  original), capture time and GPS;
- ``put_analyses()`` / ``put_embeddings()`` / ``get_embeddings()`` keep analyzer outputs tagged with model id and
  version (embeddings as float32 BLOBs);
- ``conn`` is open for reading with arbitrary SQL and ``write()`` is the one way to change data (a ``BEGIN
  IMMEDIATE`` transaction, so there is a single writer at a time even across processes).

The store knows nothing about models or about how files are scanned and decoded (see ``catalog`` and ``indexer``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from albumen.library.migrations import Migration, apply_migrations
from albumen.library.schema import LIBRARY_MIGRATIONS, LIBRARY_NAMESPACE

__all__ = ["PhotoRecord", "Store", "StoreError", "vector_to_blob", "blob_to_vector"]

_BUSY_TIMEOUT_MS = 30_000


class StoreError(RuntimeError):
    """A store operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class PhotoRecord:
    """One photo as analyzers see it (field names match ``albumen.vision.base.PhotoInput``)."""

    photo_id: int
    path: Path  # best decodable image: largest thumbnail when there is one, else an original
    taken_at: datetime | None
    latitude: float | None
    longitude: float | None
    content_hash: str
    width: int
    height: int
    original: Path | None  # one original file of this photo (read-only!), None if none is known


def vector_to_blob(vector: np.ndarray) -> bytes:
    """A 1-D finite vector as float32 little-endian bytes."""
    arr = np.asarray(vector)
    if arr.ndim != 1 or arr.size == 0:
        raise StoreError(f"an embedding must be a non-empty 1-D vector, got shape {arr.shape}")
    arr = arr.astype("<f4", copy=False)
    if not np.isfinite(arr).all():
        raise StoreError("an embedding contains NaN or infinity")
    return arr.tobytes()


def blob_to_vector(blob: bytes) -> np.ndarray:
    """Inverse of ``vector_to_blob``: a float32 (D,) array in native byte order."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


_PHOTO_SQL = """
SELECT p.id, p.taken_at, p.latitude, p.longitude, p.content_hash, p.width, p.height,
       (SELECT t.path FROM thumbnails t WHERE t.photo_id = p.id ORDER BY t.size DESC LIMIT 1) AS thumb,
       (SELECT f.path_bytes FROM files f WHERE f.photo_id = p.id ORDER BY f.id LIMIT 1) AS original
FROM photos p
"""


class Store:
    """An open library database. Use ``Store.open(path)``; close it (or use ``with``) when done."""

    def __init__(self, conn: sqlite3.Connection, db_path: Path) -> None:
        self.conn = conn
        self.db_path = db_path
        self.data_dir = db_path.parent

    # -- opening -----------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, db_path: Path | str, *, migrations: Sequence[tuple[str, Sequence[Migration]]] = ()) -> Store:
        """Open (creating if needed) the database at ``db_path``: WAL, foreign keys, library migrations applied.

        ``migrations`` lets another subsystem apply its own namespaces on open: ``[("vision", VISION_MIGRATIONS)]``.
        """
        db_path = Path(db_path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the library database {db_path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{db_path}: SQLite refused WAL mode (got {mode!r}); is the data dir on a network disk?")
            # NORMAL in WAL mode survives a killed process (every commit is in the WAL); only a power cut may lose
            # the last transactions, never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            apply_migrations(conn, LIBRARY_NAMESPACE, LIBRARY_MIGRATIONS)
            for namespace, extra in migrations:
                apply_migrations(conn, namespace, extra)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{db_path} is not a usable Albumen database: {exc}") from exc
        except Exception:
            conn.close()
            raise
        return cls(conn, db_path)

    @classmethod
    def memory(cls) -> Store:
        """An in-memory store with the full schema, for tests (thumbnail paths resolve against the cwd)."""
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        apply_migrations(conn, LIBRARY_NAMESPACE, LIBRARY_MIGRATIONS)
        return cls(conn, Path.cwd() / ":memory:")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if the block raises)."""
        if self.conn.in_transaction:
            raise StoreError("store.write() blocks cannot be nested")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- photos for analyzers ----------------------------------------------------------------------------------
    def _record(self, row: Sequence[Any]) -> PhotoRecord:
        pid, taken, lat, lon, chash, width, height, thumb, original = row
        orig_path = Path(os.fsdecode(original)) if original is not None else None
        if thumb is not None:
            best = self.data_dir / thumb
        elif orig_path is not None:
            best = orig_path
        else:
            raise StoreError(f"photo {pid} has neither a thumbnail nor a file")
        return PhotoRecord(
            photo_id=int(pid),
            path=best,
            taken_at=_parse_time(taken),
            latitude=lat,
            longitude=lon,
            content_hash=chash,
            width=int(width),
            height=int(height),
            original=orig_path,
        )

    def iter_photos(self) -> Iterator[PhotoRecord]:
        """Every photo, in id order, with its best decodable path, capture time and GPS."""
        rows = self.conn.execute(_PHOTO_SQL + " ORDER BY p.id").fetchall()
        for row in rows:
            yield self._record(row)

    def get_photo(self, photo_id: int) -> PhotoRecord | None:
        row = self.conn.execute(_PHOTO_SQL + " WHERE p.id = ?", (photo_id,)).fetchone()
        return self._record(row) if row else None

    def count_photos(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0])

    def photos_needing(self, analyzer: str, model_id: str, model_version: str) -> list[PhotoRecord]:
        """Photos with no ``analyzer`` result, or one made by another model id or version."""
        sql = (
            _PHOTO_SQL
            + " LEFT JOIN analyses a ON a.photo_id = p.id AND a.analyzer = ?"
            + " WHERE a.photo_id IS NULL OR a.model_id != ? OR a.model_version != ? ORDER BY p.id"
        )
        rows = self.conn.execute(sql, (analyzer, model_id, str(model_version))).fetchall()
        return [self._record(r) for r in rows]

    # -- analyzer outputs --------------------------------------------------------------------------------------
    def put_analyses(
        self, analyzer: str, model_id: str, model_version: str, items: Iterable[tuple[int, Mapping[str, Any]]]
    ) -> int:
        """Insert or replace ``(photo_id, payload)`` results in one transaction; returns how many were stored.

        Results for photos deleted in the meantime are dropped. Payloads must be JSON-able without NaN.
        """
        rows = []
        for photo_id, payload in items:
            try:
                text = json.dumps(payload, ensure_ascii=False, allow_nan=False, sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{analyzer}: payload of photo {photo_id} is not plain JSON: {exc}") from exc
            rows.append((int(photo_id), analyzer, model_id, str(model_version), text, _now(), int(photo_id)))
        with self.write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO analyses (photo_id, analyzer, model_id, model_version, payload, updated_at) "
                "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM photos WHERE id = ?) "
                "ON CONFLICT (photo_id, analyzer) DO UPDATE SET model_id = excluded.model_id, "
                "model_version = excluded.model_version, payload = excluded.payload, updated_at = excluded.updated_at",
                rows,
            )
            return conn.total_changes - before

    def get_analyses(self, analyzer: str) -> dict[int, dict[str, Any]]:
        """``{photo_id: payload}`` for one analyzer."""
        rows = self.conn.execute("SELECT photo_id, payload FROM analyses WHERE analyzer = ?", (analyzer,))
        return {int(pid): json.loads(payload) for pid, payload in rows}

    def put_embeddings(
        self, space: str, model_id: str, model_version: str, vectors: Mapping[int, np.ndarray]
    ) -> int:
        """Insert or replace one float32 vector per photo in ``space``; all vectors of one call share a dimension."""
        rows = []
        dim: int | None = None
        for photo_id, vector in vectors.items():
            blob = vector_to_blob(vector)
            d = len(blob) // 4
            if dim is not None and d != dim:
                raise StoreError(f"{space}: vectors of one call must share a dimension ({dim} vs {d})")
            dim = d
            rows.append((int(photo_id), space, model_id, str(model_version), d, blob, int(photo_id)))
        with self.write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO embeddings (photo_id, space, model_id, model_version, dim, vector) "
                "SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM photos WHERE id = ?) "
                "ON CONFLICT (photo_id, space) DO UPDATE SET model_id = excluded.model_id, "
                "model_version = excluded.model_version, dim = excluded.dim, vector = excluded.vector",
                rows,
            )
            return conn.total_changes - before

    def get_embeddings(
        self, space: str, model_id: str | None = None, model_version: str | None = None
    ) -> tuple[list[int], np.ndarray]:
        """``(photo_ids, matrix)``: the vectors of ``space`` in photo id order as an (N, D) float32 matrix.

        An empty space gives ``([], zeros((0, 0)))``. Vectors of different dimensions (two models in one space)
        are an error unless filtered by ``model_id`` / ``model_version``.
        """
        sql = "SELECT photo_id, dim, vector FROM embeddings WHERE space = ?"
        args: list[Any] = [space]
        if model_id is not None:
            sql += " AND model_id = ?"
            args.append(model_id)
        if model_version is not None:
            sql += " AND model_version = ?"
            args.append(str(model_version))
        rows = self.conn.execute(sql + " ORDER BY photo_id", args).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = {int(d) for _, d, _ in rows}
        if len(dims) != 1:
            raise StoreError(f"space {space!r} mixes dimensions {sorted(dims)}; filter by model_id")
        d = dims.pop()
        matrix = np.frombuffer(b"".join(v for _, _, v in rows), dtype="<f4").reshape(len(rows), d)  # (N, D)
        return [int(p) for p, _, _ in rows], matrix.astype(np.float32)
