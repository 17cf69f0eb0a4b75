"""On-device person segmentation and face detection behind two small seams.

``PersonSegmenter.segment(rgb) -> (H, W) probability`` and ``FaceDetector.detect(rgb) -> [FaceBox]``. The real
implementations wrap MediaPipe 0.10.14's legacy solutions (selfie segmentation, face detection); their TFLite models
ship inside that wheel, so nothing is downloaded. MediaPipe is imported lazily, on first use, never at import time.
Tests use the fakes in ``albumen.vision.portrait.fakes``. This module knows nothing about blur or files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "FaceBox",
    "FaceDetector",
    "MediaPipeFaceDetector",
    "MediaPipeSelfieSegmenter",
    "PersonSegmenter",
    "SegmentationUnavailable",
]


class SegmentationUnavailable(RuntimeError):
    """MediaPipe (or its bundled model) cannot be loaded; the message says what to install."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face, in fractions of image width and height (so it survives resizing)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def to_dict(self) -> dict[str, float]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "score": self.score}


class PersonSegmenter(Protocol):
    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 probability that a pixel belongs to a person."""
        ...


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """(H, W, 3) uint8 RGB -> faces, best first."""
        ...


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = getattr(rgb, "shape", type(rgb))
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {got}")
    return np.ascontiguousarray(rgb)


@contextlib.contextmanager
def _quiet_native_logs() -> Iterator[None]:
    """Silence MediaPipe's start-up chatter (TFLite/absl lines written straight to file descriptor 2, protobuf
    deprecation warnings) while a graph starts. Python exceptions still propagate with their messages."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*SymbolDatabase.GetPrototype.*")
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no real stderr (some test runners): nothing to silence
            yield
            return
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_mediapipe() -> Any:
    try:
        import mediapipe as mp  # noqa: PLC0415 - heavy, optional: imported on first use only
    except Exception as exc:  # ImportError, or a protobuf/absl mismatch raised while importing
        raise SegmentationUnavailable(
            f"mediapipe 0.10.14 is needed for Portrait Mode ({exc}); install it with "
            "`pip install --no-deps mediapipe==0.10.14 absl-py attrs flatbuffers 'protobuf<5' opencv-python-headless`"
        ) from exc
    return mp


class MediaPipeSelfieSegmenter:
    """MediaPipe selfie segmentation. ``model=0``: general (256x256 input), ``model=1``: landscape (144x256)."""

    model_id = "mediapipe-selfie-segmentation-0.10.14"

    def __init__(self, model: int = 0) -> None:
        if model not in (0, 1):
            raise ValueError("selfie segmentation model must be 0 (general) or 1 (landscape)")
        self._model = model
        self._solution: Any = None

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        rgb = _check_rgb(rgb)
        if self._solution is None:
            with _quiet_native_logs():  # the graph starts (and logs) on construction and on the first frame
                mp = _import_mediapipe()
                self._solution = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=self._model)
                result = self._solution.process(rgb)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*SymbolDatabase.GetPrototype.*")
                result = self._solution.process(rgb)
        mask = result.segmentation_mask
        if mask is None:  # the graph returns no mask for an empty frame
            return np.zeros(rgb.shape[:2], dtype=np.float32)
        return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None


class MediaPipeFaceDetector:
    """MediaPipe BlazeFace. Tries the full-range model (faces up to ~5 m) and, if it finds none, the short-range one
    (close-ups and selfies), because each misses faces the other finds."""

    model_id = "mediapipe-face-detection-0.10.14"

    def __init__(self, min_confidence: float = 0.5) -> None:
        self._min_confidence = min_confidence
        self._solutions: dict[int, Any] = {}

    def _process(self, model: int, rgb: np.ndarray) -> Any:
        if model not in self._solutions:
            with _quiet_native_logs():  # the graph starts (and logs) on construction and on the first frame
                mp = _import_mediapipe()
                self._solutions[model] = mp.solutions.face_detection.FaceDetection(
                    model_selection=model, min_detection_confidence=self._min_confidence
                )
                return self._solutions[model].process(rgb)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*SymbolDatabase.GetPrototype.*")
            return self._solutions[model].process(rgb)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        rgb = _check_rgb(rgb)
        for model in (1, 0):
            faces = _to_boxes(self._process(model, rgb).detections)
            if faces:
                return sorted(faces, key=lambda f: -f.score)
        return []

    def close(self) -> None:
        for solution in self._solutions.values():
            solution.close()
        self._solutions.clear()


def _to_boxes(detections: Any) -> list[FaceBox]:
    boxes = []
    for det in detections or []:
        rel = det.location_data.relative_bounding_box
        x0, y0 = max(0.0, rel.xmin), max(0.0, rel.ymin)
        x1, y1 = min(1.0, rel.xmin + rel.width), min(1.0, rel.ymin + rel.height)
        if x1 > x0 and y1 > y0:
            boxes.append(FaceBox(float(x0), float(y0), float(x1), float(y1), float(det.score[0])))
    return boxes
