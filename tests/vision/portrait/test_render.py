"""End to end on pixels with the fake segmenter: what stays sharp, what blurs, and how much."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.fakes import EllipseSegmenter, FixedFaces
from albumen.vision.portrait.render import render_portrait, working_size
from albumen.vision.portrait.subject import NoSubjectFound
from albumen.vision.segmentation import FaceBox

from .conftest import ellipse_mask, make_scene


def _detail(img: np.ndarray, where: np.ndarray) -> float:
    """Mean absolute Laplacian (fine detail) of the grey image over ``where``."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[where].mean())


def _inner_outer(h: int, w: int, ell=(0.5, 0.6, 0.22, 0.45)) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, rx, ry = ell
    return ellipse_mask(h, w, cx, cy, rx * 0.8, ry * 0.85), ~ellipse_mask(h, w, cx, cy, rx * 1.4, ry * 1.3)


def test_subject_stays_sharp_and_background_blurs(scene, fakes) -> None:
    out = render_portrait(scene, PortraitConfig(aperture=2.0), *fakes)
    assert out.image.shape == scene.shape and out.image.dtype == np.uint8
    inner, outer = _inner_outer(*scene.shape[:2])
    assert _detail(out.image, inner) > 0.9 * _detail(scene, inner)
    assert _detail(out.image, outer) < 0.5 * _detail(scene, outer)
    assert out.info["subject"] == "person" and set(out.info["timings_s"]) >= {"models", "bokeh", "total"}


def test_smaller_f_number_blurs_more(scene, fakes) -> None:
    _, outer = _inner_outer(*scene.shape[:2])
    renders = [render_portrait(scene, PortraitConfig(aperture=n), *fakes).image for n in (1.4, 2.8, 5.6, 16.0)]
    detail = [_detail(img, outer) for img in renders]
    assert detail == sorted(detail)  # less detail left = more blur, monotonic in the f-number
    assert detail[0] < detail[-1] * 0.8


def test_focus_point_selects_which_person_stays_sharp() -> None:
    left, right = (0.27, 0.6, 0.13, 0.35), (0.73, 0.6, 0.13, 0.35)
    img = make_scene(160, 240, (left, right))
    seg = EllipseSegmenter((left, right), edge=0.02)
    faces = FixedFaces((FaceBox(0.2, 0.3, 0.34, 0.45, 0.9), FaceBox(0.66, 0.35, 0.8, 0.45, 0.9)))
    ins = {k: ellipse_mask(160, 240, e[0], e[1], e[2] * 0.8, e[3] * 0.8) for k, e in (("l", left), ("r", right))}
    on_left = render_portrait(img, PortraitConfig(focus=(0.27, 0.6), aperture=1.4), seg, faces).image
    on_right = render_portrait(img, PortraitConfig(focus=(0.73, 0.6), aperture=1.4), seg, faces).image
    assert _detail(on_left, ins["l"]) > 1.5 * _detail(on_left, ins["r"])
    assert _detail(on_right, ins["r"]) > 1.5 * _detail(on_right, ins["l"])


def test_no_subject_raises(fakes) -> None:
    flat = np.full((100, 140, 3), 90, np.uint8)
    with pytest.raises(NoSubjectFound):
        render_portrait(flat, PortraitConfig(), EllipseSegmenter(()), FixedFaces())


def test_large_image_runs_at_working_size_and_keeps_full_resolution_edges() -> None:
    ell = (0.5, 0.6, 0.22, 0.45)
    big = make_scene(600, 800, (ell,))
    seg = EllipseSegmenter((ell,), edge=0.02)
    out = render_portrait(big, PortraitConfig(work_pixels=40_000), seg, FixedFaces())
    assert out.image.shape == big.shape
    assert out.matte.shape == working_size(600, 800, 40_000) == (173, 231)
    inner, _ = _inner_outer(600, 800, ell)
    # Subject texture (2-pixel stripes, invisible at working size) comes through untouched from the original.
    assert _detail(out.image, inner) > 0.9 * _detail(big, inner)


def test_no_subject_colour_halo_around_the_subject(fakes) -> None:
    """An orange subject on a blue background: the ring just outside it must stay blue (red - blue = -120)."""
    h, w = 160, 200
    img = np.empty((h, w, 3), np.float32)
    img[...] = (40, 90, 160)
    img += np.random.default_rng(0).normal(0, 8, (h, w, 1))
    img[ellipse_mask(h, w, 0.5, 0.6, 0.22, 0.45)] = (210, 120, 60)
    img = np.clip(img, 0, 255).astype(np.uint8)
    out = render_portrait(img, PortraitConfig(aperture=1.4), *fakes)
    outer, inner = (ellipse_mask(h, w, 0.5, 0.6, 0.22 * k, 0.45 * k) for k in (1.12, 1.02))
    ring = outer & ~inner

    def red_minus_blue(x: np.ndarray) -> float:
        return float((x[..., 0].astype(np.float32) - x[..., 2])[ring].mean())

    # The naive way (Gaussian blur of the whole photo under the same mask) smears orange into the ring.
    m = fakes[0].segment(img)[..., None]
    naive = m * img + (1 - m) * cv2.GaussianBlur(img, (0, 0), out.info["radius_at_infinity_px"] / 2)
    assert red_minus_blue(img) == pytest.approx(-120.0)
    assert abs(red_minus_blue(out.image) + 120.0) < 3.0
    assert red_minus_blue(naive) > -105.0  # the check above is one the naive method fails


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.uint8), np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3))])
def test_bad_arrays_are_clear_errors(bad, fakes) -> None:
    with pytest.raises(ValueError, match="expected|too small"):
        render_portrait(bad, PortraitConfig(), *fakes)
