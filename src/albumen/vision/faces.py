"""Face detection and 128-d identity embeddings with dlib (HOG or CNN detector, ResNet face descriptor).

Model files come from the ``face-recognition-models`` wheel; paths are built by hand (importing the package pulls
``pkg_resources``). Landmarks use the 5-point shape predictor, whose licence allows any use (the 68-point one does
not). Descriptors of the same person are ~0.3-0.5 apart (Euclidean), different people > 0.6.

Payload: ``{"faces": [{"box": [x, y, w, h], "score": s}, ...]}`` with boxes in [0, 1] of the displayed photo; the
descriptors travel as ``Analysis.regions`` (the pipeline writes them to the ``faces`` table). An optional MediaPipe
pre-filter skips dlib on photos where MediaPipe sees no face. This module knows detectors; it knows nothing about
people, clusters or SQLite.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albumen.vision.base import Analysis, Analyzer, PhotoInput, Region
from albumen.vision.image_io import ImageLoadError, load_rgb

__all__ = ["DETECTORS", "FaceAnalyzer", "FaceConfig", "FaceDetector", "dlib_model_paths"]


DETECTORS = ("hog", "cnn", "mediapipe", "hog+mediapipe")


@dataclass
class FaceConfig:
    # "hog" (~0.1-0.3 s a photo), "cnn" (~8 s, finds smaller and turned faces), "mediapipe" (MediaPipe's detector,
    # ~20 ms, finds half-hidden faces HOG misses) or "hog+mediapipe" (HOG's faces plus MediaPipe's that HOG missed);
    # landmarks and the 128-d descriptor are dlib's in every case, so all four share one descriptor space.
    model: str = "hog"
    max_side: int = 1024  # photos are shrunk to this before detection
    upsample: int = 1  # detector upsampling: 1 finds faces down to ~40 px at max_side
    min_score: float = 0.25  # HOG score floor: the detector keeps > 0, but 0-0.25 were mostly not faces here
    num_jitters: int = 1  # descriptor averaging over jittered crops (more = slower, slightly more accurate)
    prefilter: bool = False  # run MediaPipe face detection first and skip dlib when it finds nothing
    prefilter_min_confidence: float = 0.3
    mediapipe_min_confidence: float = 0.6  # MediaPipe detections kept as faces (the "mediapipe" detectors)


def dlib_model_paths() -> dict[str, Path]:
    """The .dat files of the ``face-recognition-models`` wheel: {"shape5", "resnet", "cnn"}."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("dlib face models are not installed: `pip install face-recognition-models==0.3.0`")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    paths = {
        "shape5": root / "shape_predictor_5_face_landmarks.dat",
        "resnet": root / "dlib_face_recognition_resnet_model_v1.dat",
        "cnn": root / "mmod_human_face_detector.dat",
    }
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise RuntimeError(f"dlib face model files missing: {', '.join(missing)}")
    return paths


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union > 0 else 0.0


class FaceDetector:
    """dlib detection + 5-point alignment + ResNet descriptor over one RGB array at a time."""

    def __init__(self, config: FaceConfig) -> None:
        self.config = config
        self._detector: Any = None
        self._shape: Any = None
        self._encoder: Any = None
        self._mp: Any = None

    def load(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise RuntimeError("dlib is not installed: `pip install dlib-bin==20.0.1.post1`") from exc
        if self.config.model not in DETECTORS:
            raise ValueError(f"unknown face model {self.config.model!r}: use one of {', '.join(DETECTORS)}")
        paths = dlib_model_paths()
        if self.config.model == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(str(paths["cnn"]))
        elif self.config.model in ("hog", "hog+mediapipe"):
            self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(paths["shape5"]))
        self._encoder = dlib.face_recognition_model_v1(str(paths["resnet"]))
        uses_mp = "mediapipe" in self.config.model
        if self.config.prefilter or uses_mp:
            os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging, before it loads
            from mediapipe.python.solutions import face_detection

            floor = min(self.config.prefilter_min_confidence if self.config.prefilter else 1.0,
                        self.config.mediapipe_min_confidence if uses_mp else 1.0)
            self._mp = face_detection.FaceDetection(model_selection=1, min_detection_confidence=floor)

    def maybe_has_face(self, rgb: np.ndarray) -> bool:
        """MediaPipe's opinion (True when no pre-filter is configured)."""
        if self._mp is None or not self.config.prefilter:
            return True
        return bool(self._mp.process(rgb).detections)

    def _mediapipe(self, rgb: np.ndarray) -> list[tuple[Any, float]]:
        """MediaPipe's face boxes as dlib rectangles, squared like dlib's own detections, with their confidence."""
        import dlib

        h, w = rgb.shape[:2]
        out = []
        for d in self._mp.process(rgb).detections or []:
            if d.score[0] < self.config.mediapipe_min_confidence:
                continue
            b = d.location_data.relative_bounding_box
            cx, cy = (b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h
            side = max(b.width * w, b.height * h)
            out.append((dlib.rectangle(int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)),
                        float(d.score[0])))
        return out

    def _detect(self, rgb: np.ndarray) -> list[tuple[Any, float]]:
        model = self.config.model
        if model == "cnn":
            found = self._detector(rgb, self.config.upsample)
            return [(d.rect, float(d.confidence)) for d in found if d.confidence >= self.config.min_score]
        if model == "mediapipe":
            return self._mediapipe(rgb)
        rects, scores, _ = self._detector.run(rgb, self.config.upsample, 0.0)
        hog = [(r, float(s)) for r, s in zip(rects, scores) if s >= self.config.min_score]
        if model == "hog+mediapipe":
            boxes = [(r.left(), r.top(), r.width(), r.height()) for r, _ in hog]
            for r, s in self._mediapipe(rgb):
                box = (r.left(), r.top(), r.width(), r.height())
                if all(_iou(box, b) < 0.3 for b in boxes):  # a face HOG missed
                    hog.append((r, s))
        return hog

    def faces(self, rgb: np.ndarray) -> list[Region]:
        """Faces in an RGB uint8 image (H, W, 3), each with a float32 (128,) descriptor, boxes in [0, 1]."""
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb)
        out = []
        for rect, score in self._detect(rgb):
            left, top = max(rect.left(), 0), max(rect.top(), 0)
            right, bottom = min(rect.right(), w - 1), min(rect.bottom(), h - 1)
            if right <= left or bottom <= top:
                continue
            shape = self._shape(rgb, rect)
            desc = np.asarray(self._encoder.compute_face_descriptor(rgb, shape, self.config.num_jitters),
                              dtype=np.float32)  # (128,)
            out.append(Region(left / w, top / h, (right - left) / w, (bottom - top) / h, round(score, 4), desc))
        return out


class FaceAnalyzer(Analyzer):
    """Faces per photo: boxes and scores in the payload, 128-d descriptors as regions."""

    name = "faces"
    model_id = "dlib-hog-resnet128"
    version = "1"

    def __init__(self, config: FaceConfig | None = None, detector: Any = None, model: str | None = None) -> None:
        super().__init__()
        self.config = config or FaceConfig()
        if model is not None:
            self.config.model = model
        self.model_id = f"dlib-{self.config.model}-resnet128" + ("+mediapipe" if self.config.prefilter else "")
        self.detector = detector or FaceDetector(self.config)

    def _load(self) -> None:
        self.detector.load()

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        results = []
        for photo in batch:
            try:
                rgb = np.asarray(load_rgb(photo.path, max_side=self.config.max_side))
            except ImageLoadError as exc:
                results.append(Analysis(photo.photo_id, {"error": str(exc)}))
                continue
            regions = self.detector.faces(rgb) if self.detector.maybe_has_face(rgb) else []
            payload = {"faces": [{"box": [round(r.x, 5), round(r.y, 5), round(r.w, 5), round(r.h, 5)],
                                  "score": r.score} for r in regions]}
            results.append(Analysis(photo.photo_id, payload, regions=regions))
        return results
