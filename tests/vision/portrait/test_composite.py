"""The tiled full-resolution composite against evaluating every pixel (the reference)."""

from __future__ import annotations

import cv2
import numpy as np

from albumen.vision.portrait.composite import _tile_states, composite, composite_everywhere
from albumen.vision.portrait.guided import apply_guided_coefficients, guided_coefficients

from .conftest import make_scene


def _setup(big_h: int = 600, big_w: int = 800, small: tuple[int, int] = (150, 200)):
    ell = (0.5, 0.6, 0.22, 0.45)
    rgb = make_scene(big_h, big_w, (ell,))
    work = cv2.resize(rgb, small[::-1], interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0 : small[0], 0 : small[1]]
    mask = ((((xx + 0.5) / small[1] - 0.5) / 0.22) ** 2 + (((yy + 0.5) / small[0] - 0.6) / 0.45) ** 2 <= 1).astype(
        np.float32
    )
    a, b = guided_coefficients(work.astype(np.float32) / 255, mask, r=3, eps=1e-3)
    background = cv2.GaussianBlur(work, (0, 0), 3)
    return rgb, work, background, a, b


def test_tiled_composite_equals_the_reference() -> None:
    rgb, work, background, a, b = _setup()
    keep_low = apply_guided_coefficients(a, b, work)
    states = _tile_states(keep_low, a, 16)
    assert (states == 0).any() and (states == 2).any()  # the test exercises both shortcuts and the mixed path
    ours = composite(rgb, background, a, b, keep_low, tile=16)
    ref = composite_everywhere(rgb, background, a, b)
    diff = np.abs(ours.astype(np.int16) - ref)
    assert diff.max() <= 2 and diff.mean() < 0.05


def test_odd_sizes_and_small_tiles() -> None:
    rgb, work, background, a, b = _setup(457, 611, (97, 131))
    keep_low = apply_guided_coefficients(a, b, work)
    ours = composite(rgb, background, a, b, keep_low, tile=5)
    ref = composite_everywhere(rgb, background, a, b)
    assert np.abs(ours.astype(np.int16) - ref).max() <= 2
