"""The indexer's reads and writes of the library tables (files, photos, thumbnails, errors), plus the queries
behind ``albumen stats``, ``ls`` and ``errors``.

Every function takes an open ``sqlite3.Connection``; writers are called inside ``Store.write()`` so that one file's
photo, thumbnails and path row land in the same transaction (all or nothing). This module knows nothing about
decoding or walking folders, and nothing about models.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from albumen.library.extract import Extracted
from albumen.library.hashing import NEAR_DUPLICATE_BITS, group_near_duplicates
from albumen.library.scan import printable_path

__all__ = [
    "ErrorRow",
    "FileRow",
    "delete_paths",
    "library_stats",
    "list_errors",
    "list_photos",
    "load_errors",
    "load_files",
    "now_iso",
    "prune_orphan_photos",
    "save_error",
    "save_extracted",
    "update_near_groups",
]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class FileRow:
    id: int
    size: int
    mtime_ns: int
    inode: int
    photo_id: int


@dataclass(frozen=True)
class ErrorRow:
    kind: str
    reason: str
    size: int | None
    mtime_ns: int | None


def load_files(conn: sqlite3.Connection) -> dict[bytes, FileRow]:
    rows = conn.execute("SELECT path_bytes, id, size, mtime_ns, inode, photo_id FROM files")
    return {bytes(p): FileRow(*rest) for p, *rest in rows}


def load_errors(conn: sqlite3.Connection) -> dict[bytes, ErrorRow]:
    rows = conn.execute("SELECT path_bytes, kind, reason, size, mtime_ns FROM errors")
    return {bytes(p): ErrorRow(*rest) for p, *rest in rows}


def save_extracted(conn: sqlite3.Connection, item: Extracted, now: str) -> tuple[int, bool] | None:
    """Record one file that is a photo: ``(photo_id, created)``; None when ``item.known`` but the photo is gone.

    ``created`` is False when the content was already a photo (a move, a rename or an exact duplicate).
    """
    path_b = os.fsencode(item.job.path)
    row = conn.execute("SELECT id FROM photos WHERE content_hash = ?", (item.content_hash,)).fetchone()
    created = row is None
    if item.known and row is None:
        return None
    if row is not None:
        photo_id = int(row[0])
    else:
        meta = item.meta
        taken = meta.taken_at if meta else None
        utc = meta.taken_at_utc if meta else None
        photo_id = int(
            conn.execute(
                "INSERT INTO photos (content_hash, size, format, width, height, orientation, taken_at, tz_offset_min,"
                " taken_at_utc, latitude, longitude, altitude, make, model, phash, indexed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (
                    item.content_hash, item.job.size, item.format, item.width, item.height, item.orientation,
                    taken.isoformat() if taken else None, meta.tz_offset_min if meta else None,
                    utc.isoformat() if utc else None,
                    meta.latitude if meta else None, meta.longitude if meta else None,
                    meta.altitude if meta else None, meta.make if meta else None, meta.model if meta else None,
                    item.phash, now,
                ),
            ).fetchone()[0]
        )
        conn.executemany(
            "INSERT OR REPLACE INTO thumbnails (photo_id, size, path, width, height) VALUES (?, ?, ?, ?, ?)",
            [(photo_id, t.size, t.relpath, t.width, t.height) for t in item.thumbnails],
        )
    conn.execute(
        "INSERT INTO files (path_bytes, path, photo_id, size, mtime_ns, inode, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (path_bytes) DO UPDATE SET photo_id = excluded.photo_id, size = excluded.size,"
        " mtime_ns = excluded.mtime_ns, inode = excluded.inode, seen_at = excluded.seen_at",
        (path_b, printable_path(item.job.path), photo_id, item.job.size, item.job.mtime_ns, item.job.inode, now),
    )
    conn.execute("DELETE FROM errors WHERE path_bytes = ?", (path_b,))
    return photo_id, created


def save_error(
    conn: sqlite3.Connection, path: str, kind: str, reason: str, size: int | None, mtime_ns: int | None, now: str
) -> None:
    """Record why ``path`` is not indexed (replacing an older reason) and drop any index entry it had."""
    path_b = os.fsencode(path)
    conn.execute(
        "INSERT INTO errors (path_bytes, path, kind, reason, size, mtime_ns, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (path_bytes) DO UPDATE SET kind = excluded.kind, reason = excluded.reason,"
        " size = excluded.size, mtime_ns = excluded.mtime_ns, recorded_at = excluded.recorded_at",
        (path_b, printable_path(path), kind, reason, size, mtime_ns, now),
    )
    conn.execute("DELETE FROM files WHERE path_bytes = ?", (path_b,))


def delete_paths(conn: sqlite3.Connection, paths: Iterable[bytes]) -> int:
    """Forget files (and recorded errors) that are no longer on disk; returns how many file rows went."""
    items = [(p,) for p in paths]
    before = conn.total_changes
    conn.executemany("DELETE FROM files WHERE path_bytes = ?", items)
    removed = conn.total_changes - before
    conn.executemany("DELETE FROM errors WHERE path_bytes = ?", items)
    return removed


def prune_orphan_photos(conn: sqlite3.Connection) -> list[str]:
    """Delete photos that no file points to (cascading to analyzer tables); returns their thumbnail paths."""
    thumbs = [
        r[0]
        for r in conn.execute(
            "SELECT t.path FROM thumbnails t WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.photo_id = t.photo_id)"
        )
    ]
    conn.execute("DELETE FROM photos WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.photo_id = photos.id)")
    return thumbs


def update_near_groups(conn: sqlite3.Connection, max_distance: int = NEAR_DUPLICATE_BITS) -> int:
    """Recompute near-duplicate groups over all photos; returns how many photos changed group."""
    rows = conn.execute("SELECT id, phash, near_group FROM photos WHERE phash IS NOT NULL ORDER BY id").fetchall()
    if not rows:
        return 0
    groups = group_near_duplicates([r[0] for r in rows], [r[1] for r in rows], max_distance)
    changes = [(groups[pid], pid) for pid, _, old in rows if old != groups[pid]]
    conn.executemany("UPDATE photos SET near_group = ? WHERE id = ?", changes)
    return len(changes)


def library_stats(conn: sqlite3.Connection, data_dir: str | None = None) -> dict[str, Any]:
    """Counts for ``albumen stats`` (JSON-able)."""
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    photos = one("SELECT COUNT(*) FROM photos")
    files = one("SELECT COUNT(*) FROM files")
    first, last = conn.execute("SELECT MIN(COALESCE(taken_at_utc, taken_at)), MAX(COALESCE(taken_at_utc, taken_at)) FROM photos").fetchone()
    stats: dict[str, Any] = {
        "photos": photos,
        "files": files,
        "duplicate_files": files - photos,
        "near_duplicate_groups": one(
            "SELECT COUNT(*) FROM (SELECT near_group FROM photos WHERE near_group IS NOT NULL"
            " GROUP BY near_group HAVING COUNT(*) > 1)"
        ),
        "photos_in_near_duplicate_groups": one(
            "SELECT COUNT(*) FROM photos WHERE near_group IN (SELECT near_group FROM photos"
            " GROUP BY near_group HAVING COUNT(*) > 1)"
        ),
        "with_capture_time": one("SELECT COUNT(*) FROM photos WHERE taken_at IS NOT NULL"),
        "with_time_zone": one("SELECT COUNT(*) FROM photos WHERE tz_offset_min IS NOT NULL"),
        "with_gps": one("SELECT COUNT(*) FROM photos WHERE latitude IS NOT NULL"),
        "rotated": one("SELECT COUNT(*) FROM photos WHERE orientation != 1"),
        "first_taken": first,
        "last_taken": last,
        "formats": dict(conn.execute("SELECT format, COUNT(*) FROM photos GROUP BY format ORDER BY 2 DESC").fetchall()),
        "cameras": {
            f"{mk or ''} {md or ''}".strip(): n
            for mk, md, n in conn.execute(
                "SELECT make, model, COUNT(*) FROM photos WHERE make IS NOT NULL OR model IS NOT NULL"
                " GROUP BY make, model ORDER BY 3 DESC LIMIT 10"
            )
        },
        "errors": dict(conn.execute("SELECT kind, COUNT(*) FROM errors GROUP BY kind ORDER BY 2 DESC").fetchall()),
        "analyses": dict(conn.execute("SELECT analyzer, COUNT(*) FROM analyses GROUP BY analyzer").fetchall()),
        "embeddings": dict(conn.execute("SELECT space, COUNT(*) FROM embeddings GROUP BY space").fetchall()),
        "faces": one("SELECT COUNT(*) FROM faces"),
        "people": one("SELECT COUNT(*) FROM people"),
    }
    last_run = conn.execute(
        "SELECT started_at, finished_at, summary FROM index_runs ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if last_run:
        stats["last_index"] = {
            "started_at": last_run[0], "finished_at": last_run[1],
            "summary": json.loads(last_run[2]) if last_run[2] else None,
        }
    if data_dir:
        stats["thumbnail_bytes"] = _folder_bytes(os.path.join(data_dir, "thumbnails"))
    return stats


def _folder_bytes(folder: str) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.path.getsize(os.path.join(dirpath, n))
            except OSError:
                pass
    return total


# Undated photos sort last.
_ORDER = {"taken": "p.taken_at IS NULL, COALESCE(p.taken_at_utc, p.taken_at), p.id", "path": "f.path", "id": "p.id"}


def list_photos(conn: sqlite3.Connection, *, limit: int = 50, offset: int = 0, order: str = "taken") -> list[dict[str, Any]]:
    """One row per photo (its first file), for ``albumen ls``."""
    if order not in _ORDER:
        raise ValueError(f"unknown order {order!r}; use one of {', '.join(_ORDER)}")
    sql = (
        "SELECT p.id, f.path, p.taken_at, p.width, p.height, p.format, p.make, p.model, p.latitude, p.longitude,"
        " p.near_group, (SELECT COUNT(*) FROM files g WHERE g.photo_id = p.id) AS copies"
        " FROM photos p JOIN files f ON f.id = (SELECT MIN(id) FROM files WHERE photo_id = p.id)"
        f" ORDER BY {_ORDER[order]} LIMIT ? OFFSET ?"
    )
    keys = ["id", "path", "taken_at", "width", "height", "format", "make", "model", "latitude", "longitude",
            "near_group", "copies"]
    return [dict(zip(keys, row)) for row in conn.execute(sql, (limit, offset))]


def list_errors(conn: sqlite3.Connection, *, kind: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT path, kind, reason, recorded_at FROM errors"
    args: tuple[Any, ...] = ()
    if kind:
        sql += " WHERE kind = ?"
        args = (kind,)
    keys = ["path", "kind", "reason", "recorded_at"]
    return [dict(zip(keys, row)) for row in conn.execute(sql + " ORDER BY path", args)]
