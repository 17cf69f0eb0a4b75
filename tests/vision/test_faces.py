"""Tests for albumen.vision.faces: real dlib models on real photos, and the analyzer contract with a fake detector."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from albumen.vision.base import PhotoInput, Region
from albumen.vision.faces import FaceAnalyzer, FaceConfig

HAVE_DLIB = all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models"))


class FakeDetector:
    """One face in the middle of every photo whose width is even; its descriptor encodes the width."""

    def load(self) -> None:
        pass

    def maybe_has_face(self, rgb: np.ndarray) -> bool:
        return True

    def faces(self, rgb: np.ndarray) -> list[Region]:
        if rgb.shape[1] % 2:
            return []
        return [Region(0.25, 0.25, 0.5, 0.5, 1.0, np.full(128, rgb.shape[1], dtype=np.float32))]


def test_analyzer_contract_with_fake_detector(photos: list[PhotoInput]) -> None:
    analyzer = FaceAnalyzer(detector=FakeDetector())
    results = analyzer.predict(photos)
    assert "error" in results[-1].payload and results[-1].regions is None
    for r in results[:-1]:
        assert len(r.payload["faces"]) == len(r.regions or [])
        for face, region in zip(r.payload["faces"], r.regions or []):
            assert face["box"] == [0.25, 0.25, 0.5, 0.5] and region.embedding.shape == (128,)
    assert analyzer.model_id == "dlib-hog-resnet128"
    assert FaceAnalyzer(FaceConfig(prefilter=True), detector=FakeDetector()).model_id.endswith("+mediapipe")


def _grace_hopper() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.mark.skipif(not HAVE_DLIB, reason="dlib / face models not installed")
def test_real_faces_same_and_different_people(photos: list[PhotoInput], tmp_path: Path) -> None:
    from PIL import Image

    astronaut = photos[2].path
    mirrored = tmp_path / "mirrored.jpg"
    Image.open(astronaut).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    batch = [PhotoInput(1, astronaut), PhotoInput(2, mirrored), PhotoInput(3, _grace_hopper()), photos[1]]
    results = FaceAnalyzer().predict(batch)
    counts = [len(r.payload["faces"]) for r in results]
    assert counts == [1, 1, 1, 0]  # one face each; the coffee cup has none
    e = [r.regions[0].embedding for r in results[:3]]  # type: ignore[index]
    assert np.linalg.norm(e[0] - e[1]) < 0.4  # same woman, mirrored
    assert np.linalg.norm(e[0] - e[2]) > 0.6  # two different women
    x, y, w, h = results[0].payload["faces"][0]["box"]
    assert 0 <= x < x + w <= 1 and 0 <= y < y + h <= 1


@pytest.mark.skipif(not HAVE_DLIB or importlib.util.find_spec("mediapipe") is None, reason="mediapipe not installed")
def test_mediapipe_prefilter_keeps_faces_and_skips_empty(photos: list[PhotoInput]) -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    results = FaceAnalyzer(FaceConfig(prefilter=True)).predict([photos[2], photos[1]])
    assert len(results[0].payload["faces"]) == 1 and results[1].payload["faces"] == []


@pytest.mark.skipif(not HAVE_DLIB or importlib.util.find_spec("mediapipe") is None, reason="mediapipe not installed")
def test_hog_plus_mediapipe_finds_the_half_hidden_face_hog_misses(tmp_path: Path) -> None:
    from PIL import Image, ImageOps
    from skimage import data

    cam = Image.fromarray(data.camera()).convert("RGB")
    paths = [tmp_path / "cam.jpg", tmp_path / "cam_mirrored.jpg"]
    cam.save(paths[0])
    ImageOps.mirror(cam).crop((40, 20, 480, 500)).save(paths[1])
    batch = [PhotoInput(i, p) for i, p in enumerate(paths)]
    assert [len(r.payload["faces"]) for r in FaceAnalyzer().predict(batch)] == [0, 0]  # HOG alone misses him
    analyzer = FaceAnalyzer(model="hog+mediapipe")
    results = analyzer.predict(batch)
    assert [len(r.payload["faces"]) for r in results] == [1, 1] and analyzer.model_id == "dlib-hog+mediapipe-resnet128"
    e = [r.regions[0].embedding for r in results]  # type: ignore[index]
    assert np.linalg.norm(e[0] - e[1]) < 0.45  # one man, one descriptor space
    with pytest.raises(ValueError, match="unknown face model"):
        FaceAnalyzer(model="sonar").load()
