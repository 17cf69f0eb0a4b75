"""Faces into people, in the database: incremental assignment as faces arrive, and the full re-cluster on demand.

``assign_new_faces`` gives every face without a person the nearest person whose centroid is under the threshold, or a
new person (``cluster.assign_incremental``). ``recluster`` starts over from all descriptors and then reconciles the
new clusters with the people the user already knows, so that user edits survive:

1. a face the user pinned (by a merge or a split) keeps its person, whatever the clustering says;
2. in a cluster that holds pinned faces, every other face goes to the person of its nearest pinned face;
3. a cluster without pins takes over the existing person who owns most of its faces (largest overlaps first, named
   people first on ties, each person at most once), so names and the hidden flag follow; the rest become new people;
4. people left without faces are removed unless they have a name.

This module knows the tables and the reconciliation rules; the math is in ``cluster``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

import numpy as np

from albumen.people.cluster import ClusterConfig, assign_incremental, cluster_faces
from albumen.people.faces import FaceRow, load_faces
from albumen.people.schema import ensure_people_schema

__all__ = ["assign_new_faces", "person_centroids", "recluster"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def person_centroids(faces: list[FaceRow]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """``(person_ids, centroids (K, D), counts (K,))`` over the faces that have a person."""
    by_person: dict[int, list[np.ndarray]] = defaultdict(list)
    for f in faces:
        if f.person_id is not None:
            by_person[f.person_id].append(f.embedding)
    ids = sorted(by_person)
    if not ids:
        d = faces[0].embedding.shape[0] if faces else 128
        return [], np.zeros((0, d), dtype=np.float32), np.zeros(0, dtype=np.int64)
    cents = np.stack([np.mean(by_person[i], axis=0) for i in ids]).astype(np.float32)  # (K, D)
    return ids, cents, np.array([len(by_person[i]) for i in ids], dtype=np.int64)


def _new_person(conn: Any) -> int:
    now = _now()
    cur = conn.execute("INSERT INTO people (name, hidden, created_at, updated_at) VALUES (NULL, 0, ?, ?)", (now, now))
    return int(cur.lastrowid)


def assign_new_faces(store: Any, config: ClusterConfig | None = None) -> dict[str, int]:
    """Give each face without a person one (existing or new). Returns ``{"assigned": n, "new_people": k}``."""
    cfg = config or ClusterConfig()
    ensure_people_schema(store)
    faces = load_faces(store)
    new = [f for f in faces if f.person_id is None]
    if not new:
        return {"assigned": 0, "new_people": 0}
    ids, cents, counts = person_centroids(faces)
    labels, cents, _ = assign_incremental(np.stack([f.embedding for f in new]), cents, counts, cfg.threshold)
    with store.write() as conn:
        person_of = {k: pid for k, pid in enumerate(ids)}
        for k in range(len(ids), len(cents)):
            person_of[k] = _new_person(conn)
        conn.executemany("UPDATE faces SET person_id = ? WHERE id = ?",
                         [(person_of[int(lab)], f.face_id) for f, lab in zip(new, labels)])
    return {"assigned": len(new), "new_people": len(cents) - len(ids)}


def _reconcile(faces: list[FaceRow], labels: np.ndarray, named: set[int]) -> dict[int, int]:
    """Face id -> person id after a re-cluster (see the module rules); a negative id is a new person per cluster."""
    clusters: dict[int, list[int]] = defaultdict(list)  # cluster label -> indices into faces
    for i, lab in enumerate(labels):
        clusters[int(lab)].append(i)
    out: dict[int, int] = {}
    unpinned_clusters: list[int] = []
    for lab, members in clusters.items():
        pinned = [i for i in members if faces[i].pinned_to is not None]
        if not pinned:
            unpinned_clusters.append(lab)
            continue
        pinned_emb = np.stack([faces[i].embedding for i in pinned])  # (P, D)
        for i in members:
            if faces[i].pinned_to is not None:
                out[faces[i].face_id] = int(faces[i].pinned_to)
            else:
                nearest = int(np.linalg.norm(pinned_emb - faces[i].embedding, axis=1).argmin())
                out[faces[i].face_id] = int(faces[pinned[nearest]].pinned_to)  # type: ignore[arg-type]
    # Unpinned clusters claim the old person with the largest overlap (named first on ties), each person once.
    claims = []
    for lab in unpinned_clusters:
        overlap = Counter(faces[i].person_id for i in clusters[lab] if faces[i].person_id is not None)
        claims += [(n, pid in named, lab, pid) for pid, n in overlap.items()]
    owner: dict[int, int] = {}
    used: set[int] = set()
    for _, _, lab, pid in sorted(claims, key=lambda c: (-c[0], not c[1], c[2], c[3])):
        if lab not in owner and pid not in used:
            owner[lab], used = pid, used | {pid}
    for lab in unpinned_clusters:
        person = owner.get(lab, -1 - lab)  # negative: a new person for this cluster
        for i in clusters[lab]:
            out[faces[i].face_id] = person
    return out


def recluster(store: Any, config: ClusterConfig | None = None) -> dict[str, int]:
    """Re-cluster every face from scratch, keeping the user's names, hidden flags, merges and splits."""
    cfg = config or ClusterConfig()
    ensure_people_schema(store)
    faces = load_faces(store)
    labels = cluster_faces(np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128)),
                           cfg.recluster_threshold, cfg.linkage)
    named = {int(r[0]) for r in store.conn.execute("SELECT id FROM people WHERE name IS NOT NULL AND trim(name) != ''")}
    plan = _reconcile(faces, labels, named)
    before = {f.face_id: f.person_id for f in faces}
    with store.write() as conn:
        fresh: dict[int, int] = {}
        updates = []
        for face_id, person in plan.items():
            if person < 0:
                if person not in fresh:
                    fresh[person] = _new_person(conn)
                person = fresh[person]
            updates.append((person, face_id))
        conn.executemany("UPDATE faces SET person_id = ? WHERE id = ?", updates)
        removed = conn.execute(
            "DELETE FROM people WHERE (name IS NULL OR trim(name) = '') "
            "AND NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)"
        ).rowcount
    moved = sum(1 for person, face_id in updates if before[face_id] != person)
    return {"faces": len(faces), "clusters": int(len(set(labels.tolist()))), "new_people": len(fresh),
            "removed_people": int(removed), "faces_moved": moved}
