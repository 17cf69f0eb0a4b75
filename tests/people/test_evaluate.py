"""Tests for albumen.people.evaluate: matching stored faces to a sample library's ground truth and scoring people."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from albumen.library.store import Store
from albumen.people.evaluate import evaluate_face_clusters
from albumen.people.faces import FaceBox, replace_faces
from albumen.people.schema import ensure_people_schema


def photo(store: Store, path: Path) -> int:
    with store.write() as conn:
        pid = conn.execute("INSERT INTO photos (content_hash, size, format, width, height, indexed_at) "
                           "VALUES (?, 1, 'JPEG', 100, 100, 't') RETURNING id", (str(path),)).fetchone()[0]
        conn.execute("INSERT INTO files (path_bytes, path, photo_id, size, mtime_ns, inode, seen_at) "
                     "VALUES (?, ?, ?, 1, 0, 0, 't')", (os.fsencode(path), str(path), pid))
    return int(pid)


def face(store: Store, pid: int, box: tuple[float, float, float, float], person: int | None) -> None:
    replace_faces(store, "m", "1", [(pid, [FaceBox(*box, 1.0, np.zeros(128))])])
    if person is not None:
        with store.write() as conn:
            conn.execute("INSERT OR IGNORE INTO people (id, created_at, updated_at) VALUES (?, 't', 't')", (person,))
            conn.execute("UPDATE faces SET person_id = ? WHERE id = (SELECT MAX(id) FROM faces)", (person,))


def entry(path: str, faces: list[tuple[str, tuple[int, int, int, int], bool]]) -> dict[str, Any]:
    return {"path": path, "display_size": [100, 100],
            "faces": [{"person": p, "box": list(b), "hog_detectable": h} for p, b, h in faces]}


def test_scores_detection_and_grouping_together(tmp_path: Path) -> None:
    store = Store.memory()
    ensure_people_schema(store)
    ids = [photo(store, tmp_path / f"{i}.jpg") for i in range(5)]
    ann, tom = ((20, 20, 50, 60), True), ((20, 20, 50, 60), False)
    truth = {"photos": [
        entry("0.jpg", [("Ann", *ann)]),
        entry("1.jpg", [("Ann", *ann)]),
        entry("2.jpg", [("Tom", *tom)]),
        entry("3.jpg", [("Tom", *tom)]),  # missed by the detector
        entry("4.jpg", []),  # a false detection, grouped with Ann
        entry("not-indexed.jpg", [("Ann", *ann)]),
    ]}
    face(store, ids[0], (0.25, 0.25, 0.2, 0.2), 1)
    face(store, ids[1], (0.25, 0.25, 0.2, 0.2), 1)
    face(store, ids[2], (0.25, 0.25, 0.2, 0.2), 2)
    face(store, ids[4], (0.5, 0.5, 0.2, 0.2), 1)
    out = evaluate_face_clusters(store, tmp_path, truth)
    assert (out["photos"], out["true_faces"], out["found"], out["missed"], out["false_detections"]) == (5, 4, 3, 1, 1)
    # pairs put together: Ann-Ann, Ann-fp, Ann-fp = 3, one right; true pairs: Ann-Ann, Tom-Tom = 2, one found
    p = out["pairwise"]
    assert (p["predicted_pairs"], p["true_pairs"]) == (3, 2)
    assert p["precision"] == round(1 / 3, 4) and p["recall"] == 0.5
    assert out["people"] == {"Ann": {"1": 2}, "Tom": {"2": 1}}
    fair = evaluate_face_clusters(store, tmp_path, truth, detectable_only=True)
    # Tom (not HOG-detectable) leaves the score entirely, found or missed; the false detection stays
    assert (fair["true_faces"], fair["found"], fair["missed"], fair["false_detections"]) == (2, 2, 0, 1)
    assert fair["pairwise"]["true_pairs"] == 1 and fair["pairwise"]["predicted_pairs"] == 3
