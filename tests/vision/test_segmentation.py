"""The real MediaPipe seams on real photos (bundled TFLite models, offline), and the shared input checks."""

from __future__ import annotations

import numpy as np
import pytest

from albumen.vision.portrait.fakes import EllipseSegmenter, FixedFaces
from albumen.vision.segmentation import FaceBox, MediaPipeFaceDetector, MediaPipeSelfieSegmenter


def test_facebox_geometry() -> None:
    box = FaceBox(0.2, 0.1, 0.4, 0.5, 0.9)
    assert box.center == pytest.approx((0.3, 0.3)) and box.height == pytest.approx(0.4)
    assert box.to_dict()["score"] == 0.9


def test_fakes_follow_the_protocols() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    prob = EllipseSegmenter().segment(rgb)
    assert prob.shape == (40, 60) and prob.dtype == np.float32 and prob.max() == 1.0 and prob.min() == 0.0
    assert FixedFaces((FaceBox(0, 0, 1, 1, 1.0),)).detect(rgb)[0].score == 1.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "photo.jpg"])
def test_bad_input_is_a_clear_error(bad) -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        MediaPipeSelfieSegmenter().segment(bad)


def test_selfie_segmentation_and_faces_on_real_portraits() -> None:
    pytest.importorskip("mediapipe")
    from skimage import data

    seg, faces = MediaPipeSelfieSegmenter(), MediaPipeFaceDetector()
    try:
        astronaut = data.astronaut()  # (512, 512, 3)
        prob = seg.segment(astronaut)
        found = faces.detect(astronaut)
        assert prob.shape == (512, 512) and 0.0 <= prob.min() and prob.max() <= 1.0
        assert len(found) == 1 and 0.3 < found[0].center[0] < 0.55 and 0.15 < found[0].center[1] < 0.35
        cx, cy = found[0].center
        assert prob[int(cy * 512), int(cx * 512)] > 0.9  # the face is on the person mask
        assert prob[20, 480] < 0.1  # the sky behind the shuttle is not
        assert faces.detect(data.coffee()) == []
    finally:
        seg.close()
        faces.close()
