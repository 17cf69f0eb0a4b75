"""This package's own migrations (namespace ``people``): the user's pins, the edits that re-clustering must keep.

A pin says "this face belongs to this person because the user said so" (a merge or a split). Names and the hidden
flag live on ``people`` rows and follow the person id, which re-clustering keeps for the cluster that holds most of
that person's faces.
"""

from __future__ import annotations

from typing import Any

from albumen.library.migrations import Migration, apply_migrations

__all__ = ["PEOPLE_MIGRATIONS", "PEOPLE_NAMESPACE", "ensure_people_schema"]

PEOPLE_NAMESPACE = "people"

_PINS = """
CREATE TABLE face_pins (
    face_id    INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
    person_id  INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    pinned_at  TEXT NOT NULL
);
CREATE INDEX face_pins_person ON face_pins(person_id)
"""

PEOPLE_MIGRATIONS: tuple[Migration, ...] = (Migration(1, "face pins: user edits that survive re-clustering", _PINS),)


def ensure_people_schema(store: Any) -> None:
    """Apply this package's migrations to an open ``albumen.library.store.Store`` (idempotent, cheap)."""
    apply_migrations(store.conn, PEOPLE_NAMESPACE, PEOPLE_MIGRATIONS)
