"""Face rows in the library database: written by the analyze pipeline, read by grouping and edits.

``replace_faces`` swaps a photo's faces for a fresh detection result. A face found again at (almost) the same place
keeps its person and its pin, so re-analysing a photo (a new face model, ``--force``) does not undo the user's work.
This module knows boxes and rows; it knows nothing about clustering or detectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from albumen.library.store import blob_to_vector, vector_to_blob

__all__ = ["FaceBox", "FaceRow", "box_iou", "load_faces", "replace_faces"]

_CARRY_IOU = 0.5  # a new face this much on top of an old one is the same face


@dataclass(frozen=True)
class FaceBox:
    """One detected face to store: box in [0, 1] of the displayed photo, score, descriptor (D,) or None."""

    x: float
    y: float
    w: float
    h: float
    score: float
    embedding: np.ndarray | None


@dataclass(frozen=True)
class FaceRow:
    face_id: int
    photo_id: int
    person_id: int | None
    pinned_to: int | None  # the person a user pinned this face to, if any
    embedding: np.ndarray  # float32 (D,)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def replace_faces(
    store: Any, model_id: str, model_version: str, items: Sequence[tuple[int, Sequence[FaceBox]]]
) -> list[int]:
    """Replace the faces of each ``(photo_id, faces)`` in one transaction; returns the new face ids.

    Each new face takes the person (and pin) of the old face of the same photo it overlaps most, if IoU >= 0.5.
    Photos deleted from the library in the meantime are skipped.
    """
    new_ids: list[int] = []
    with store.write() as conn:
        for photo_id, faces in items:
            if conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo_id,)).fetchone() is None:
                continue
            old = conn.execute(
                "SELECT f.x, f.y, f.w, f.h, f.person_id, p.person_id FROM faces f "
                "LEFT JOIN face_pins p ON p.face_id = f.id WHERE f.photo_id = ?", (photo_id,)
            ).fetchall()
            conn.execute("DELETE FROM faces WHERE photo_id = ?", (photo_id,))
            taken: set[int] = set()
            for face in faces:
                box = (face.x, face.y, face.w, face.h)
                best, best_iou = -1, _CARRY_IOU
                for i, row in enumerate(old):
                    iou = box_iou(box, row[:4])
                    if i not in taken and iou >= best_iou:
                        best, best_iou = i, iou
                person, pin = (old[best][4], old[best][5]) if best >= 0 else (None, None)
                if best >= 0:
                    taken.add(best)
                blob = vector_to_blob(face.embedding) if face.embedding is not None else None
                cur = conn.execute(
                    "INSERT INTO faces (photo_id, x, y, w, h, score, model_id, model_version, embedding, person_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (photo_id, *box, face.score, model_id, str(model_version), blob, person),
                )
                face_id = int(cur.lastrowid)
                new_ids.append(face_id)
                if pin is not None:
                    conn.execute("INSERT INTO face_pins (face_id, person_id, pinned_at) VALUES (?, ?, ?)",
                                 (face_id, pin, _now()))
    return new_ids


def load_faces(store: Any, where: str = "", args: Sequence[Any] = ()) -> list[FaceRow]:
    """Faces that have a descriptor, in id order, optionally filtered by an SQL condition on ``f``."""
    sql = ("SELECT f.id, f.photo_id, f.person_id, p.person_id, f.embedding FROM faces f "
           "LEFT JOIN face_pins p ON p.face_id = f.id WHERE f.embedding IS NOT NULL")
    if where:
        sql += f" AND ({where})"
    rows = store.conn.execute(sql + " ORDER BY f.id", tuple(args)).fetchall()
    return [FaceRow(int(fid), int(pid), None if per is None else int(per), None if pin is None else int(pin),
                    blob_to_vector(blob)) for fid, pid, per, pin, blob in rows]
