"""Fakes for the two model seams, for tests and for benchmarks that must run without MediaPipe.

``EllipseSegmenter`` says "person" inside given ellipses; ``FixedFaces`` returns fixed boxes. Both satisfy the
``PersonSegmenter`` / ``FaceDetector`` protocols of ``albumen.vision.segmentation`` and know nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from albumen.vision.segmentation import FaceBox

__all__ = ["EllipseSegmenter", "FixedFaces"]


@dataclass
class EllipseSegmenter:
    """Person probability 1 inside each ellipse (cx, cy, rx, ry, in fractions of width/height), soft over ``edge``."""

    ellipses: Sequence[tuple[float, float, float, float]] = ((0.5, 0.6, 0.22, 0.45),)
    edge: float = 0.03
    calls: int = field(default=0, init=False)

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        h, w = rgb.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        yy, xx = (yy + 0.5) / h, (xx + 0.5) / w
        prob = np.zeros((h, w), dtype=np.float32)
        for cx, cy, rx, ry in self.ellipses:
            d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)  # 1 on the rim
            prob = np.maximum(prob, np.clip((1.0 - d) / self.edge + 0.5, 0.0, 1.0))
        return prob


@dataclass
class FixedFaces:
    """Always the same faces, whatever the image."""

    faces: Sequence[FaceBox] = ()
    calls: int = field(default=0, init=False)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        self.calls += 1
        return list(self.faces)
