"""Tests for albumen.people (faces, grouping, edits): people grow incrementally and user edits survive re-clustering."""

from __future__ import annotations

import os

import numpy as np
import pytest

from albumen.library.store import Store
from albumen.people.cluster import ClusterConfig
from albumen.people.edits import (
    PeopleError,
    hide_person,
    list_people,
    merge_people,
    name_person,
    person_faces,
    resolve_person,
    split_person,
)
from albumen.people.faces import FaceBox, replace_faces
from albumen.people.grouping import assign_new_faces, recluster
from albumen.people.schema import ensure_people_schema
from albumen.vision.fakes import fake_face_vector


def new_store() -> Store:
    store = Store.memory()
    ensure_people_schema(store)
    return store


def add_photos(store: Store, people: list[int], start: int = 0) -> dict[int, int]:
    """One photo per entry with one face of that person; returns {face_id: person}."""
    out = {}
    for k, person in enumerate(people, start):
        with store.write() as conn:
            pid = conn.execute(
                "INSERT INTO photos (content_hash, size, format, width, height, indexed_at) "
                "VALUES (?, 1, 'JPEG', 10, 10, 't') RETURNING id", (f"h{k}",)).fetchone()[0]
            conn.execute("INSERT INTO files (path_bytes, path, photo_id, size, mtime_ns, inode, seen_at) "
                         "VALUES (?, ?, ?, 1, 0, 0, 't')", (os.fsencode(f"/p/{k}.jpg"), f"/p/{k}.jpg", pid))
        (fid,) = replace_faces(store, "fake", "1", [(pid, [FaceBox(0.1, 0.1, 0.3, 0.3, 1.0,
                                                                     fake_face_vector(person, seed=k))])])
        out[fid] = person
    return out


def people_of(store: Store) -> dict[int, int]:
    return {int(f): int(p) for f, p in store.conn.execute("SELECT id, person_id FROM faces")}


def groups(store: Store) -> set[frozenset[int]]:
    by: dict[int, set[int]] = {}
    for f, p in people_of(store).items():
        by.setdefault(p, set()).add(f)
    return {frozenset(v) for v in by.values()}


def truth_groups(truth: dict[int, int]) -> set[frozenset[int]]:
    by: dict[int, set[int]] = {}
    for f, p in truth.items():
        by.setdefault(p, set()).add(f)
    return {frozenset(v) for v in by.values()}


def test_people_grow_incrementally_as_faces_arrive() -> None:
    store = new_store()
    truth = add_photos(store, [1, 1, 2, 2, 3])
    assert assign_new_faces(store) == {"assigned": 5, "new_people": 3}
    assert groups(store) == truth_groups(truth)
    before = people_of(store)
    truth.update(add_photos(store, [2, 3, 4], start=10))
    assert assign_new_faces(store) == {"assigned": 3, "new_people": 1}
    after = people_of(store)
    assert all(after[f] == p for f, p in before.items())  # nobody already grouped moves
    assert groups(store) == truth_groups(truth)
    assert assign_new_faces(store) == {"assigned": 0, "new_people": 0}


def test_recluster_fixes_a_too_loose_incremental_grouping_and_keeps_the_name() -> None:
    store = new_store()
    truth = add_photos(store, [1, 1, 1, 2, 2])
    assign_new_faces(store, ClusterConfig(threshold=5.0))  # far too loose: everyone in one person
    (only,) = {p for p in people_of(store).values()}
    name_person(store, only, "Anna")
    out = recluster(store)
    assert out["clusters"] == 2 and out["new_people"] == 1
    assert groups(store) == truth_groups(truth)
    anna = resolve_person(store, "anna")
    assert anna == only and sorted(f for f, p in people_of(store).items() if p == anna) == [1, 2, 3]


def test_user_edits_survive_reclustering() -> None:
    store = new_store()
    truth = add_photos(store, [1, 1, 1, 2, 2, 3, 3, 4, 4, 4])
    assign_new_faces(store)
    pid = {p: people_of(store)[next(f for f, q in truth.items() if q == p)] for p in (1, 2, 3, 4)}
    name_person(store, pid[1], "Anna Berg")
    hide_person(store, pid[2])
    merge_people(store, pid[3], [pid[4]])  # the user says 3 and 4 are one person (the model disagrees)
    faces_of_1 = [f for f, q in truth.items() if q == 1]
    twin = split_person(store, pid[1], [faces_of_1[-1]], name="Anna's twin")  # and 1's last face is someone else
    before = people_of(store)
    out = recluster(store)
    assert out["faces_moved"] == 0 and out["new_people"] == 0
    assert people_of(store) == before
    assert resolve_person(store, "Anna") == pid[1] and resolve_person(store, "anna's twin") == twin
    visible = {p.person_id for p in list_people(store)}
    assert pid[2] not in visible and pid[2] in {p.person_id for p in list_people(store, include_hidden=True)}
    assert len({before[f] for f, q in truth.items() if q in (3, 4)}) == 1
    # a new face of person 4 arriving later still joins the merged person
    new = add_photos(store, [4], start=50)
    assign_new_faces(store)
    assert people_of(store)[next(iter(new))] == pid[3]


def test_reanalysis_keeps_person_and_pin_of_a_face_found_again() -> None:
    store = new_store()
    truth = add_photos(store, [1, 1, 2])
    assign_new_faces(store)
    merge_people(store, people_of(store)[1], [people_of(store)[3]])  # pins every face
    person = people_of(store)[1]
    photo = store.conn.execute("SELECT photo_id FROM faces WHERE id = 3").fetchone()[0]
    new_ids = replace_faces(store, "fake", "2", [(photo, [
        FaceBox(0.11, 0.1, 0.3, 0.3, 1.0, fake_face_vector(2, 7)),  # the same face, a pixel off
        FaceBox(0.7, 0.7, 0.2, 0.2, 0.5, fake_face_vector(5, 8)),  # a face the old model missed
    ])])
    rows = dict(store.conn.execute("SELECT id, person_id FROM faces WHERE photo_id = ?", (photo,)).fetchall())
    assert rows[new_ids[0]] == person and rows[new_ids[1]] is None
    pinned = {r["face_id"] for r in person_faces(store, person) if r["pinned"]}
    assert new_ids[0] in pinned and len(truth) == 3


def test_edit_errors_are_clear() -> None:
    store = new_store()
    add_photos(store, [1, 1, 2])
    assign_new_faces(store)
    a, b = sorted(set(people_of(store).values()))
    name_person(store, a, "Tom")
    with pytest.raises(PeopleError, match="no person called 'Zed'"):
        resolve_person(store, "Zed")
    with pytest.raises(PeopleError, match="no person with id 999"):
        resolve_person(store, 999)
    with pytest.raises(PeopleError, match="already called 'Tom'"):
        name_person(store, b, "tom")
    with pytest.raises(PeopleError, match="into itself"):
        merge_people(store, a, [a])
    foreign = next(f for f, p in people_of(store).items() if p == b)
    with pytest.raises(PeopleError, match="do not belong"):
        split_person(store, a, [foreign])
    with pytest.raises(PeopleError, match="every face"):
        split_person(store, b, [foreign])
    name_person(store, a, "")  # clearing a name is allowed
    assert [p.name for p in list_people(store)] == [None, None]


def test_list_people_counts() -> None:
    store = new_store()
    add_photos(store, [1, 1, 1, 2])
    assign_new_faces(store)
    people = list_people(store)
    assert [(p.photos, p.faces) for p in people] == [(3, 3), (1, 1)]
    assert people[0].example_path is not None and people[0].example_path.startswith("/p/")
    assert np.isfinite(people[0].person_id)


def test_people_whose_photos_are_gone_leave_the_list_unless_named() -> None:
    store = new_store()
    add_photos(store, [1, 2])
    assign_new_faces(store)
    a, b = sorted(set(people_of(store).values()))
    name_person(store, b, "Kept")
    with store.write() as conn:
        conn.execute("DELETE FROM photos")  # faces go with their photos
    assert [(p.person_id, p.name, p.faces) for p in list_people(store)] == [(b, "Kept", 0)]
    assert recluster(store)["removed_people"] == 1
