"""Synthetic scenes for Portrait Mode tests: textured subjects on a textured background, with matching fakes."""

from __future__ import annotations

import numpy as np
import pytest

from albumen.vision.portrait.fakes import EllipseSegmenter, FixedFaces
from albumen.vision.segmentation import FaceBox


def ellipse_mask(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (((xx + 0.5) / w - cx) / rx) ** 2 + (((yy + 0.5) / h - cy) / ry) ** 2 <= 1.0


def make_scene(h: int = 160, w: int = 200, ellipses=((0.5, 0.6, 0.22, 0.45),), seed: int = 0) -> np.ndarray:
    """Blue-ish noise background, a warm fine-striped texture inside each ellipse: (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[...] = (40, 90, 160)
    img += rng.normal(0, 45, (h, w, 1))  # high-frequency background texture that blur must remove
    stripes = 60 * np.sign(np.sin(np.arange(w) * 1.3))[None, :, None]  # (1, w, 1) fine vertical stripes
    subject = np.broadcast_to(np.array([200, 120, 80], dtype=np.float32) + stripes, (h, w, 3))
    for cx, cy, rx, ry in ellipses:
        m = ellipse_mask(h, w, cx, cy, rx, ry)
        img[m] = subject[m]
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def scene() -> np.ndarray:
    return make_scene()


@pytest.fixture
def fakes() -> tuple[EllipseSegmenter, FixedFaces]:
    face = FaceBox(0.42, 0.18, 0.58, 0.38, 0.9)
    return EllipseSegmenter(((0.5, 0.6, 0.22, 0.45),), edge=0.02), FixedFaces((face,))
