from __future__ import annotations

import numpy as np
import pytest

from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.depth import (
    blur_radius_map,
    depth_map,
    infinity_blur_radius,
    subject_distance_m,
)
from albumen.vision.portrait.subject import OtherPerson, Subject
from albumen.vision.segmentation import FaceBox


def test_subject_distance_from_face_size() -> None:
    # A 0.2 m face filling a fifth of a 24 mm sensor's short side through a 50 mm lens: 50 * 0.2 / (0.2 * 24) m.
    assert subject_distance_m(0.2, 50.0) == pytest.approx(50 * 0.2 / (0.2 * 24))
    assert subject_distance_m(0.1, 50.0) == pytest.approx(2 * subject_distance_m(0.2, 50.0))  # half size, twice away


def test_infinity_blur_follows_the_thin_lens_formula() -> None:
    # c = f^2 / (N (s - f)) on the sensor; radius = c / 2 as a fraction of 24 mm.
    assert infinity_blur_radius(2.0, 50.0, 2.0) == pytest.approx(0.5 * 2500 / (2 * 1950) / 24)
    radii = [infinity_blur_radius(2.0, 85.0, n) for n in (1.4, 2.8, 5.6, 16.0)]
    assert radii == sorted(radii, reverse=True)  # smaller f-number, more blur
    assert radii[0] / radii[1] == pytest.approx(2.0)


def _subject(h: int = 80, w: int = 100, others: list[OtherPerson] | None = None) -> Subject:
    mask = np.zeros((h, w), np.float32)
    mask[30:70, 40:60] = 1.0
    return Subject(mask=mask, kind="person", face=FaceBox(0.42, 0.35, 0.58, 0.5, 0.9), others=others or [])


def test_depth_is_zero_on_the_subject_and_recedes_away_from_it() -> None:
    cfg = PortraitConfig()
    depth = depth_map(_subject(), scale_px=12.0, config=cfg)
    assert float(depth[30:70, 40:60].max()) == 0.0
    row = depth[50, 60:]
    assert row[0] == pytest.approx(cfg.background_depth, abs=0.05)
    assert np.all(np.diff(row) >= 0) and row[-1] > row[1]


def test_other_people_take_the_depth_of_their_face_size() -> None:
    other = np.zeros((80, 100), bool)
    other[5:25, 5:20] = True
    depth = depth_map(_subject(others=[OtherPerson(other, 0.5)]), 12.0, PortraitConfig())
    assert float(depth[10, 10]) == pytest.approx(0.5)


def test_radius_map_scales_with_aperture_and_is_capped() -> None:
    subj = _subject()
    r14, info = blur_radius_map(subj, (80, 100), PortraitConfig(aperture=1.4))
    r8, _ = blur_radius_map(subj, (80, 100), PortraitConfig(aperture=8.0))
    assert r14.max() >= r8.max() > 0 and r14[50, 45] == 0.0
    assert r14.max() <= PortraitConfig().max_blur_fraction * 80 + 1e-4
    assert info["subject_distance_m"] > 0
