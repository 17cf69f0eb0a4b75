"""Choosing the subject: which person (or, failing that, which salient object) stays sharp.

Input is the segmenter's person probability and the detected faces at the working resolution; output is a
``Subject``: a soft mask of what stays sharp, the face that sets the scale (if any), and the other people with the
depth their face size implies. Rules, in order:

1. ``focus`` given: the person blob under (or nearest to) that point; if none is near, the salient object there.
2. otherwise: the person blob with the largest face, weighted towards the centre of the frame.
3. no person blob at all: the salient object (``saliency.salient_subject``), else ``NoSubjectFound``.

Other people whose faces are about the subject's size stand in the same plane and join the subject (group photos
stay sharp). This module knows nothing about blur or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.saliency import salient_subject
from albumen.vision.segmentation import FaceBox

__all__ = ["NoSubjectFound", "OtherPerson", "Subject", "select_subject"]


class NoSubjectFound(ValueError):
    """Neither a person nor a clear salient subject: nothing to keep sharp."""


@dataclass(frozen=True)
class OtherPerson:
    """A person blob that is not the subject, with its depth from face size (None: no face to tell)."""

    mask: np.ndarray  # (h, w) bool
    depth: float | None


@dataclass(frozen=True)
class Subject:
    mask: np.ndarray  # (h, w) float32 in [0, 1]: soft mask of what stays sharp
    kind: str  # "person" (a face confirms it), "figure" (segmented, no face seen) or "salient" (fallback)
    face: FaceBox | None  # the face that sets the scale, in fractions of width/height
    others: list[OtherPerson] = field(default_factory=list)


def _faces_in(labels: np.ndarray, faces: list[FaceBox]) -> dict[int, list[FaceBox]]:
    """Blob label -> faces whose centre lies on that blob (faces off every blob are dropped)."""
    h, w = labels.shape
    found: dict[int, list[FaceBox]] = {}
    for face in faces:
        cx, cy = face.center
        lab = int(labels[min(int(cy * h), h - 1), min(int(cx * w), w - 1)])
        if lab:
            found.setdefault(lab, []).append(face)
    return found


def _pick_blob(labels: np.ndarray, blobs: list[int], faces: dict[int, list[FaceBox]], focus) -> int | None:
    h, w = labels.shape
    if focus is not None:
        fx, fy = min(int(focus[0] * w), w - 1), min(int(focus[1] * h), h - 1)
        if labels[fy, fx] in blobs:
            return int(labels[fy, fx])
        best, best_d = None, 0.1 * float(np.hypot(h, w))  # a blob farther than this is not "at" the focus point
        for lab in blobs:
            ys, xs = np.nonzero(labels == lab)
            d = float(np.sqrt(((ys - fy) ** 2 + (xs - fx) ** 2).min()))
            if d < best_d:
                best, best_d = lab, d
        return best

    def score(lab: int) -> float:
        ys, xs = np.nonzero(labels == lab)
        area = len(ys) / labels.size
        face_h = max((f.height for f in faces.get(lab, [])), default=0.0)
        off_centre = np.hypot(xs.mean() / w - 0.5, ys.mean() / h - 0.5)
        return (area + 10.0 * face_h**2) * (1.0 - off_centre)

    return max(blobs, key=score) if blobs else None


def select_subject(prob: np.ndarray, faces: list[FaceBox], rgb: np.ndarray, config: PortraitConfig) -> Subject:
    """Person probability (h, w), faces and the (h, w, 3) uint8 working image -> the ``Subject``.

    Raises:
        NoSubjectFound: no person and (with ``config.salient_fallback``) no salient object either.
    """
    h, w = prob.shape
    hard = (prob >= config.person_threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    faces_by_blob = _faces_in(labels, faces)
    blobs = []
    for i in range(1, n):
        area = stats[i, cv2.CC_STAT_AREA] / (h * w)
        if area < config.min_subject_fraction:
            continue
        # Selfie segmentation also fires on cats, cups and flowers, less confidently: without a face on it, a blob
        # counts only if the model is sure, and never if it fills the frame (then nothing would be blurred).
        if i not in faces_by_blob and (area > 0.85 or float(prob[labels == i].mean()) < config.faceless_confidence):
            continue
        blobs.append(i)
    chosen = _pick_blob(labels, blobs, faces_by_blob, config.focus)
    if chosen is None:
        mask = salient_subject(rgb, config.focus) if config.salient_fallback else None
        if mask is None:
            where = f" at focus {config.focus[0]:g},{config.focus[1]:g}" if config.focus else ""
            raise NoSubjectFound(f"no person and no clear subject found{where}; try --focus X,Y on the subject")
        return Subject(mask=mask.astype(np.float32), kind="salient", face=None)

    face = max(faces_by_blob.get(chosen, []), key=lambda f: f.height, default=None)
    keep = labels == chosen
    others = []
    for lab in blobs:
        if lab == chosen:
            continue
        their = max(faces_by_blob.get(lab, []), key=lambda f: f.height, default=None)
        depth = None
        if face is not None and their is not None:
            # Same real face size, so distance is inversely proportional to face height: D / s = h_s / h_o.
            depth = abs(1.0 - their.height / face.height)
        if depth is not None and depth < config.same_plane:
            keep |= labels == lab  # same plane as the subject: stays sharp with it
        else:
            others.append(OtherPerson(mask=labels == lab, depth=depth))
    # Soft edges come from the probability itself, limited to the chosen blobs (grown a little to keep the rim).
    grown = cv2.dilate(keep.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    mask = np.where(grown, prob, 0.0).astype(np.float32)
    return Subject(mask=mask, kind="person" if face is not None else "figure", face=face, others=others)
