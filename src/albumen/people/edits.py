"""What a user does with people: list, name, merge, split, hide. Every edit is one transaction.

Merges and splits pin the faces involved (``face_pins``), so a later re-cluster keeps them; names and the hidden flag
live on the person row and follow it (see ``grouping``). A person is referred to by id or by name
(case-insensitive; a unique first name is enough). This module knows the tables; it knows nothing about clustering.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from albumen.people.schema import ensure_people_schema

__all__ = [
    "PeopleError",
    "Person",
    "hide_person",
    "list_people",
    "merge_people",
    "name_person",
    "person_faces",
    "resolve_person",
    "split_person",
]


class PeopleError(ValueError):
    """An edit that cannot be done; the message says why."""


@dataclass(frozen=True)
class Person:
    person_id: int
    name: str | None
    hidden: bool
    faces: int
    photos: int
    pinned_faces: int
    example_path: str | None  # one photo this person is in

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def list_people(store: Any, include_hidden: bool = False) -> list[Person]:
    """People with their face and photo counts, most photos first (unnamed ones too, unless they have no faces)."""
    ensure_people_schema(store)
    rows = store.conn.execute(
        "SELECT p.id, p.name, p.hidden, COUNT(f.id), COUNT(DISTINCT f.photo_id), "
        "(SELECT COUNT(*) FROM face_pins fp WHERE fp.person_id = p.id), "
        "(SELECT fl.path_bytes FROM faces f2 JOIN files fl ON fl.photo_id = f2.photo_id "
        " WHERE f2.person_id = p.id ORDER BY f2.score DESC, fl.id LIMIT 1) "
        "FROM people p LEFT JOIN faces f ON f.person_id = p.id "
        + ("" if include_hidden else "WHERE p.hidden = 0 ")
        + "GROUP BY p.id HAVING COUNT(f.id) > 0 OR p.name IS NOT NULL "  # unnamed and faceless: photos deleted
        + "ORDER BY COUNT(DISTINCT f.photo_id) DESC, p.id"
    ).fetchall()
    return [Person(int(i), n, bool(h), int(nf), int(np_), int(pins), os.fsdecode(ex) if ex is not None else None)
            for i, n, h, nf, np_, pins, ex in rows]


def resolve_person(store: Any, ref: str | int) -> int:
    """A person id from an id or a name (case-insensitive; a unique first name is enough)."""
    text = str(ref).strip()
    if text.isdigit():
        if store.conn.execute("SELECT 1 FROM people WHERE id = ?", (int(text),)).fetchone():
            return int(text)
        raise PeopleError(f"no person with id {text}; see `albumen people list`")
    rows = store.conn.execute("SELECT id, name FROM people WHERE name IS NOT NULL").fetchall()
    exact = [int(i) for i, n in rows if n.strip().lower() == text.lower()]
    first = [int(i) for i, n in rows if n.strip().lower().split(" ")[0] == text.lower()]
    for found in (exact, first):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise PeopleError(f"{text!r} names several people (ids {', '.join(map(str, found))}); use an id")
    raise PeopleError(f"no person called {text!r}; see `albumen people list`")


def name_person(store: Any, ref: str | int, name: str) -> int:
    """Give a person a name (an empty name clears it). Two people may not share a name: merge them instead."""
    ensure_people_schema(store)
    pid = resolve_person(store, ref)
    clean = " ".join(name.split())
    if len(clean) > 100:
        raise PeopleError("a name is at most 100 characters")
    if clean:
        other = store.conn.execute(
            "SELECT id, name FROM people WHERE lower(name) = lower(?) AND id != ?", (clean, pid)).fetchone()
        if other:
            raise PeopleError(f"person {other[0]} is already called {other[1]!r}; merge them with "
                              f"`albumen people merge {other[0]} {pid}`")
    with store.write() as conn:
        conn.execute("UPDATE people SET name = ?, updated_at = ? WHERE id = ?", (clean or None, _now(), pid))
    return pid


def hide_person(store: Any, ref: str | int, hidden: bool = True) -> int:
    """Hide a person from lists and search (their faces stay theirs, so they do not come back as someone new)."""
    ensure_people_schema(store)
    pid = resolve_person(store, ref)
    with store.write() as conn:
        conn.execute("UPDATE people SET hidden = ?, updated_at = ? WHERE id = ?", (int(hidden), _now(), pid))
    return pid


def _pin(conn: Any, person_id: int) -> None:
    conn.execute(
        "INSERT INTO face_pins (face_id, person_id, pinned_at) SELECT id, person_id, ? FROM faces "
        "WHERE person_id = ? ON CONFLICT (face_id) DO UPDATE SET person_id = excluded.person_id",
        (_now(), person_id),
    )


def merge_people(store: Any, target_ref: str | int, source_refs: Sequence[str | int]) -> int:
    """Move every face of the sources to the target, pin them all, delete the sources. Returns the target id.

    The target keeps its name; if it has none it takes the first source's name.
    """
    ensure_people_schema(store)
    target = resolve_person(store, target_ref)
    sources = [resolve_person(store, r) for r in source_refs]
    if not sources:
        raise PeopleError("name at least one person to merge into the target")
    if target in sources:
        raise PeopleError(f"cannot merge person {target} into itself")
    with store.write() as conn:
        (name,) = conn.execute("SELECT name FROM people WHERE id = ?", (target,)).fetchone()
        for src in sources:
            (src_name,) = conn.execute("SELECT name FROM people WHERE id = ?", (src,)).fetchone()
            if not name and src_name:
                name = src_name
            conn.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (target, src))
            conn.execute("DELETE FROM people WHERE id = ?", (src,))
        conn.execute("UPDATE people SET name = ?, updated_at = ? WHERE id = ?", (name, _now(), target))
        _pin(conn, target)
    return target


def split_person(store: Any, ref: str | int, face_ids: Sequence[int], name: str | None = None) -> int:
    """Move ``face_ids`` of a person to a new person (optionally named); pin both sides. Returns the new id."""
    ensure_people_schema(store)
    pid = resolve_person(store, ref)
    wanted = sorted({int(f) for f in face_ids})
    if not wanted:
        raise PeopleError("name the faces to split off (see `albumen people faces PERSON`)")
    owned = {int(r[0]) for r in store.conn.execute("SELECT id FROM faces WHERE person_id = ?", (pid,))}
    stray = [f for f in wanted if f not in owned]
    if stray:
        raise PeopleError(f"face(s) {', '.join(map(str, stray))} do not belong to person {pid}")
    if len(wanted) == len(owned):
        raise PeopleError("that is every face of this person; rename the person instead")
    clean = " ".join((name or "").split()) or None
    if clean and store.conn.execute("SELECT 1 FROM people WHERE lower(name) = lower(?)", (clean,)).fetchone():
        raise PeopleError(f"someone is already called {clean!r}")
    with store.write() as conn:
        now = _now()
        new = int(conn.execute("INSERT INTO people (name, hidden, created_at, updated_at) VALUES (?, 0, ?, ?)",
                               (clean, now, now)).lastrowid)
        conn.executemany("UPDATE faces SET person_id = ? WHERE id = ?", [(new, f) for f in wanted])
        _pin(conn, new)
        _pin(conn, pid)
    return new


def person_faces(store: Any, ref: str | int) -> list[dict[str, Any]]:
    """The faces of one person (id, photo, box, score, pinned) for choosing what to split."""
    ensure_people_schema(store)
    pid = resolve_person(store, ref)
    rows = store.conn.execute(
        "SELECT f.id, f.photo_id, f.x, f.y, f.w, f.h, f.score, fp.face_id IS NOT NULL, "
        "(SELECT fl.path_bytes FROM files fl WHERE fl.photo_id = f.photo_id ORDER BY fl.id LIMIT 1) "
        "FROM faces f LEFT JOIN face_pins fp ON fp.face_id = f.id WHERE f.person_id = ? ORDER BY f.id", (pid,)
    ).fetchall()
    return [{"face_id": int(i), "photo_id": int(p), "box": [round(v, 4) for v in (x, y, w, h)], "score": s,
             "pinned": bool(pin), "path": os.fsdecode(path) if path is not None else None}
            for i, p, x, y, w, h, s, pin, path in rows]
