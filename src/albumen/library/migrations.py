"""Numbered, named, idempotent SQLite migrations recorded in the database.

Any subsystem can own a *namespace* of migrations (``"library"``, ``"vision"``, ``"search"`` ...). Each applied
migration is recorded in ``schema_migrations(namespace, version, name, applied_at)``; a migration runs at most once
and runs atomically together with its record, so a crash in the middle leaves the database at the previous version.

This module knows nothing about what the migrations create; it only runs and records them.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["Migration", "MigrationError", "apply_migrations", "applied_migrations"]

_NAMESPACE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    namespace  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (namespace, version)
)
"""


class MigrationError(RuntimeError):
    """A migration list or database state that cannot be reconciled; the message says which and why."""


@dataclass(frozen=True)
class Migration:
    """One schema step. ``sql`` may hold several statements; it must not contain BEGIN/COMMIT itself."""

    version: int
    name: str
    sql: str


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _validate(namespace: str, migrations: Sequence[Migration]) -> list[Migration]:
    if not _NAMESPACE_RE.match(namespace):
        raise MigrationError(f"bad migration namespace {namespace!r}: use lowercase letters, digits, '_', '.', '-'")
    ordered = sorted(migrations, key=lambda m: m.version)
    seen: set[int] = set()
    for m in ordered:
        if m.version < 1:
            raise MigrationError(f"{namespace}: migration versions start at 1, got {m.version} ({m.name!r})")
        if m.version in seen:
            raise MigrationError(f"{namespace}: two migrations share version {m.version}")
        if not m.name.strip():
            raise MigrationError(f"{namespace}: migration {m.version} has no name")
        seen.add(m.version)
    return ordered


def applied_migrations(conn: sqlite3.Connection, namespace: str) -> dict[int, str]:
    """``{version: name}`` of the migrations already applied in ``namespace``."""
    conn.execute(_CREATE_TABLE)
    rows = conn.execute(
        "SELECT version, name FROM schema_migrations WHERE namespace = ? ORDER BY version", (namespace,)
    ).fetchall()
    return {int(v): str(n) for v, n in rows}


def apply_migrations(conn: sqlite3.Connection, namespace: str, migrations: Sequence[Migration]) -> list[Migration]:
    """Apply the migrations of ``namespace`` that the database has not seen yet, in version order.

    Each migration and its ``schema_migrations`` row are one transaction. Returns the migrations applied now.
    Raises ``MigrationError`` when the database records a migration under a different name (two branches of
    history) or holds a version newer than any in ``migrations`` (the database comes from a newer Albumen).
    ``conn`` must be in autocommit mode (``isolation_level=None``) with no transaction open.
    """
    ordered = _validate(namespace, migrations)
    if conn.in_transaction:
        raise MigrationError("apply_migrations needs a connection with no open transaction")
    done = applied_migrations(conn, namespace)
    known = {m.version: m.name for m in ordered}
    for version, name in done.items():
        if version not in known:
            raise MigrationError(
                f"{namespace}: the database has migration {version} ({name!r}) that this version of Albumen does "
                "not know; it was written by a newer Albumen"
            )
        if known[version] != name:
            raise MigrationError(
                f"{namespace}: migration {version} is {name!r} in the database but {known[version]!r} here"
            )
    applied: list[Migration] = []
    for m in ordered:
        if m.version in done:
            continue
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # executescript commits any open transaction first, then runs the script; wrapping the script in our own
        # BEGIN/COMMIT makes the schema change and its record atomic.
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{m.sql.strip().rstrip(';')};\n"
            "INSERT INTO schema_migrations (namespace, version, name, applied_at) VALUES "
            f"({_quote(namespace)}, {int(m.version)}, {_quote(m.name)}, {_quote(now)});\n"
            "COMMIT;"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(f"{namespace}: migration {m.version} ({m.name!r}) failed: {exc}") from exc
        applied.append(m)
    return applied
