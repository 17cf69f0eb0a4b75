from __future__ import annotations

import numpy as np
import pytest

from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.fakes import EllipseSegmenter
from albumen.vision.portrait.subject import NoSubjectFound, select_subject
from albumen.vision.segmentation import FaceBox

H, W = 120, 200
LEFT, RIGHT = (0.25, 0.6, 0.12, 0.35), (0.75, 0.6, 0.12, 0.35)


def _face(cx: float, height: float) -> FaceBox:
    return FaceBox(cx - height / 3, 0.3 - height / 2, cx + height / 3, 0.3 + height / 2, 0.9)


def _prob(*ellipses) -> np.ndarray:
    return EllipseSegmenter(ellipses, edge=0.02).segment(np.zeros((H, W, 3), np.uint8))


def _rgb() -> np.ndarray:
    return np.full((H, W, 3), 120, np.uint8)


def test_the_larger_face_wins_without_focus() -> None:
    faces = [_face(0.25, 0.12), _face(0.75, 0.2)]
    subj = select_subject(_prob(LEFT, RIGHT), faces, _rgb(), PortraitConfig())
    assert subj.kind == "person" and subj.face == faces[1]
    assert subj.mask[70, 150] > 0.9 and subj.mask[70, 50] == 0.0
    assert len(subj.others) == 1 and subj.others[0].depth == pytest.approx(1 - 0.12 / 0.2)


def test_focus_point_chooses_the_subject() -> None:
    faces = [_face(0.25, 0.12), _face(0.75, 0.2)]
    subj = select_subject(_prob(LEFT, RIGHT), faces, _rgb(), PortraitConfig(focus=(0.25, 0.7)))
    assert subj.face == faces[0] and subj.mask[70, 50] > 0.9 and subj.mask[70, 150] == 0.0


def test_people_in_the_same_plane_stay_sharp_together() -> None:
    faces = [_face(0.25, 0.19), _face(0.75, 0.2)]
    subj = select_subject(_prob(LEFT, RIGHT), faces, _rgb(), PortraitConfig())
    assert subj.mask[70, 50] > 0.9 and subj.mask[70, 150] > 0.9 and not subj.others


def test_a_confident_faceless_figure_counts_an_unsure_one_does_not() -> None:
    subj = select_subject(_prob(RIGHT), [], _rgb(), PortraitConfig())
    assert subj.kind == "figure" and subj.face is None
    unsure = 0.7 * _prob(RIGHT)
    with pytest.raises(NoSubjectFound, match="no person and no clear subject"):
        select_subject(unsure, [], _rgb(), PortraitConfig())


def test_no_person_falls_back_to_the_salient_object() -> None:
    rgb = np.full((H, W, 3), 120, np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb[(xx - 60) ** 2 + (yy - 60) ** 2 <= 25**2] = (210, 40, 30)
    subj = select_subject(np.zeros((H, W), np.float32), [], rgb, PortraitConfig())
    assert subj.kind == "salient" and subj.mask[60, 60] > 0.5 and subj.mask[60, 150] < 0.5


def test_nothing_to_keep_sharp_is_a_clear_error() -> None:
    with pytest.raises(NoSubjectFound, match="--focus"):
        select_subject(np.zeros((H, W), np.float32), [], _rgb(), PortraitConfig())
    with pytest.raises(NoSubjectFound):
        select_subject(np.zeros((H, W), np.float32), [], _rgb(), PortraitConfig(salient_fallback=False))
