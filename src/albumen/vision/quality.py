"""Photo quality for curation: BRISQUE (no-reference), sharpness (variance of the Laplacian) and exposure.

All measures are taken on the photo shrunk so its longest side is ``QualityConfig.max_side`` (512 by default), so
they are comparable across cameras and thumbnails. Payload::

    {"brisque": 21.4,            # lower is better, ~0-100 (None when the model files are missing)
     "sharpness": 812.0,         # variance of the Laplacian of the 0-255 grey image; < ~100 looks blurred
     "blurry": false,
     "brightness": 0.46,         # mean luminance in [0, 1]
     "shadows_clipped": 0.01,    # fraction of pixels at or below 2 % luminance
     "highlights_clipped": 0.00, # fraction at or above 98 %
     "exposure": "ok",           # "under", "over" or "ok"
     "score": 0.81}              # one 0-1 number for ranking (higher is better), see ``overall_score``

This module knows image statistics; it knows nothing about SQLite or which photos are shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from albumen.vision.base import Analysis, Analyzer, PhotoInput
from albumen.vision.image_io import ImageLoadError, load_rgb

__all__ = ["QualityAnalyzer", "QualityConfig", "exposure_stats", "laplacian_variance", "overall_score"]


@dataclass
class QualityConfig:
    max_side: int = 512
    blur_threshold: float = 100.0  # Laplacian variance below this = blurry (Pech-Pacheco et al. 2000 style rule)
    under_brightness: float = 0.22
    over_brightness: float = 0.78
    clip_fraction: float = 0.25  # this much of the frame crushed to black (or blown to white) is badly exposed
    use_brisque: bool = True


def laplacian_variance(gray255: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (H, W) in 0-255: low means few sharp edges."""
    g = np.asarray(gray255, dtype=np.float64)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]  # (H-2, W-2)
    return float(lap.var())


def exposure_stats(gray01: np.ndarray, cfg: QualityConfig) -> dict[str, Any]:
    """Brightness, clipped fractions and an under/over/ok verdict for a grey image (H, W) in [0, 1]."""
    mean = float(gray01.mean())
    shadows = float((gray01 <= 0.02).mean())
    highlights = float((gray01 >= 0.98).mean())
    if mean < cfg.under_brightness or shadows > cfg.clip_fraction:
        verdict = "under"
    elif mean > cfg.over_brightness or highlights > cfg.clip_fraction:
        verdict = "over"
    else:
        verdict = "ok"
    return {"brightness": round(mean, 4), "shadows_clipped": round(shadows, 4),
            "highlights_clipped": round(highlights, 4), "exposure": verdict}


def overall_score(brisque: float | None, sharpness: float, exposure: str, blur_threshold: float) -> float:
    """One 0-1 number (higher is better): the mean of a BRISQUE term, a sharpness term and an exposure term.

    BRISQUE 0 -> 1, 100 -> 0; sharpness saturates at 4x the blur threshold (log scale); a bad exposure costs 0.5.
    """
    sharp = float(np.clip(np.log1p(sharpness) / np.log1p(4 * blur_threshold), 0.0, 1.0))
    expo = 1.0 if exposure == "ok" else 0.5
    parts = [sharp, expo]
    if brisque is not None:
        parts.append(float(np.clip(1 - brisque / 100.0, 0.0, 1.0)))
    return round(float(np.mean(parts)), 4)


class QualityAnalyzer(Analyzer):
    """BRISQUE + blur + exposure per photo. Falls back to blur and exposure alone if BRISQUE's files are missing."""

    name = "quality"
    model_id = "brisque-live+laplacian"
    version = "1"

    def __init__(self, config: QualityConfig | None = None, brisque_model: Any = None) -> None:
        super().__init__()
        self.config = config or QualityConfig()
        self._brisque = brisque_model
        self._brisque_error = ""

    def _load(self) -> None:
        if self._brisque is None and self.config.use_brisque:
            from albumen.vision.brisque import BrisqueModel

            try:
                self._brisque = BrisqueModel.from_wheel()
            except (RuntimeError, OSError, ValueError) as exc:
                self._brisque_error = str(exc)  # measured without BRISQUE; the payload says why
        if self._brisque is None:
            self.model_id = "laplacian"

    def measure(self, rgb: np.ndarray) -> dict[str, Any]:
        """The payload for one RGB image (H, W, 3) uint8."""
        gray01 = (rgb[..., :3].astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])) / 255.0  # (H, W)
        sharpness = laplacian_variance(gray01 * 255.0)
        payload: dict[str, Any] = {"sharpness": round(sharpness, 2), "blurry": sharpness < self.config.blur_threshold}
        payload.update(exposure_stats(gray01, self.config))
        brisque = None
        if self._brisque is not None:
            from albumen.vision.brisque import brisque_features

            brisque = round(self._brisque.score(brisque_features(gray01)), 3)
        elif self._brisque_error:
            payload["brisque_error"] = self._brisque_error
        payload["brisque"] = brisque
        payload["score"] = overall_score(brisque, sharpness, payload["exposure"], self.config.blur_threshold)
        return payload

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        results = []
        for photo in batch:
            try:
                rgb = np.asarray(load_rgb(photo.path, max_side=self.config.max_side))
            except ImageLoadError as exc:
                results.append(Analysis(photo.photo_id, {"error": str(exc)}))
                continue
            if min(rgb.shape[:2]) < 16:
                results.append(Analysis(photo.photo_id, {"error": f"{photo.path}: image too small to judge"}))
                continue
            results.append(Analysis(photo.photo_id, self.measure(rgb)))
        return results
