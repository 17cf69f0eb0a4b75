"""Scoring people against a sample library's ground truth: pairwise precision / recall / F1 of the face clusters.

The sample library (``albumen sample-library``) records every face it contains: who it is and its box in the
displayed photo (``ground_truth.json``). ``evaluate_face_clusters`` matches the faces stored in the index to those
boxes photo by photo and scores the people they were grouped into:

- a true face that was found counts with the person id it was given;
- a true face that was missed counts as a cluster of its own (it costs recall: that person's pairs are lost);
- a detection that matches no true face counts as a person of its own in the truth (it costs precision if it was
  grouped with anyone).

So the figure covers detection and grouping together, the way a user experiences them. ``detectable_only`` scores
only the faces the ground truth marks ``hog_detectable`` (fair to the HOG detector). This module reads the store and
the JSON; it knows nothing about how faces were found.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from albumen.people.cluster import pairwise_scores

__all__ = ["evaluate_face_clusters", "truth_faces_by_photo"]


def _photo_ids_by_path(store: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for path_bytes, pid in store.conn.execute("SELECT path_bytes, photo_id FROM files"):
        out[os.path.realpath(os.fsdecode(path_bytes))] = int(pid)
    return out


def truth_faces_by_photo(store: Any, root: Path, truth: dict[str, Any] | None = None,
                         detectable_only: bool = False) -> dict[int, list[tuple[tuple[float, ...], str, bool]]]:
    """``{photo_id: [((x, y, w, h) in [0, 1], person, hog_detectable), ...]}`` for the indexed sample photos.

    Exact duplicates (one photo, several files) are counted once.
    """
    root = Path(root)
    if truth is None:
        truth = json.loads((root / "ground_truth.json").read_text(encoding="utf-8"))
    ids = _photo_ids_by_path(store)
    out: dict[int, list[tuple[tuple[float, ...], str, bool]]] = {}
    for entry in truth["photos"]:
        pid = ids.get(os.path.realpath(root / entry["path"]))
        if pid is None or pid in out:
            continue
        dw, dh = entry["display_size"]
        faces = []
        for f in entry.get("faces", []):
            if detectable_only and not f.get("hog_detectable", True):
                continue
            x0, y0, x1, y1 = f["box"]
            faces.append(((x0 / dw, y0 / dh, (x1 - x0) / dw, (y1 - y0) / dh), f["person"], bool(f.get("hog_detectable", True))))
        out[pid] = faces
    return out


def _overlap(det: tuple[float, ...], gt: tuple[float, ...]) -> float:
    """Share of the detected box inside the true box (true boxes may include hair and chin; detections are tight)."""
    ix = max(0.0, min(det[0] + det[2], gt[0] + gt[2]) - max(det[0], gt[0]))
    iy = max(0.0, min(det[1] + det[3], gt[1] + gt[3]) - max(det[1], gt[1]))
    area = det[2] * det[3]
    return ix * iy / area if area > 0 else 0.0


def evaluate_face_clusters(store: Any, root: Path | str, truth: dict[str, Any] | None = None, *,
                           detectable_only: bool = False, min_overlap: float = 0.5) -> dict[str, Any]:
    """Pairwise precision / recall / F1 of the stored people against the sample library in ``root``.

    Returns a JSON-able dict: ``pairwise`` scores, detection counts (true faces, found, missed, false detections),
    and per true person the people ids their faces went to.
    """
    gt = truth_faces_by_photo(store, Path(root), truth)  # all faces: a found undetectable face is no false alarm
    dets: dict[int, list[tuple[int, tuple[float, ...], int | None]]] = defaultdict(list)
    for fid, pid, x, y, w, h, person in store.conn.execute(
            "SELECT id, photo_id, x, y, w, h, person_id FROM faces ORDER BY id"):
        dets[int(pid)].append((int(fid), (x, y, w, h), None if person is None else int(person)))
    predicted: dict[str, Any] = {}
    actual: dict[str, Any] = {}
    found = missed = false_pos = 0
    spread: dict[str, Counter[Any]] = defaultdict(Counter)
    for pid, faces in gt.items():
        pairs = sorted(((_overlap(d[1], g[0]), di, gi) for di, d in enumerate(dets.get(pid, []))
                        for gi, g in enumerate(faces)), reverse=True)
        used_d: set[int] = set()
        used_g: set[int] = set()
        for ov, di, gi in pairs:
            if ov < min_overlap or di in used_d or gi in used_g:
                continue
            used_d.add(di)
            used_g.add(gi)
            if detectable_only and not faces[gi][2]:
                continue  # left out of a HOG-fair score, found or not
            face_id, _, person = dets[pid][di]
            key = f"face{face_id}"
            predicted[key] = person if person is not None else key
            actual[key] = faces[gi][1]
            spread[faces[gi][1]][person] += 1
            found += 1
        for gi, g in enumerate(faces):
            if gi not in used_g and not (detectable_only and not g[2]):
                key = f"missed{pid}.{gi}"
                predicted[key], actual[key] = key, g[1]
                missed += 1
        for di, d in enumerate(dets.get(pid, [])):
            if di not in used_d:
                key = f"face{d[0]}"
                predicted[key] = d[2] if d[2] is not None else key
                actual[key] = f"not-a-true-face:{key}"
                false_pos += 1
    scores = pairwise_scores(predicted, actual)
    return {
        "pairwise": scores.as_dict(),
        "photos": len(gt),
        "true_faces": found + missed,
        "found": found,
        "missed": missed,
        "false_detections": false_pos,
        "people": {name: {str(k): v for k, v in c.most_common()} for name, c in sorted(spread.items())},
        "detectable_only": detectable_only,
    }
