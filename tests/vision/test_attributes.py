"""Pixel attributes on synthetic images whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from albumen.vision.attributes import AttributeConfig, colour_shares, pixel_attributes, texture_stats


def _solid(rgb: tuple[int, int, int], size: int = 64) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size, size, 3)).copy()


def test_flat_grey_is_black_and_white_and_not_texture() -> None:
    assert pixel_attributes(_solid((128, 128, 128))) == ["black and white"]


@pytest.mark.parametrize(("rgb", "name"), [
    ((230, 30, 30), "red"), ((240, 140, 20), "orange"), ((240, 220, 20), "yellow"), ((30, 200, 40), "green"),
    ((30, 60, 220), "blue"), ((150, 40, 220), "purple"), ((230, 40, 150), "pink"),
])
def test_a_solid_colour_is_named(rgb: tuple[int, int, int], name: str) -> None:
    assert pixel_attributes(_solid(rgb)) == [name]
    assert colour_shares(_solid(rgb))[name] == pytest.approx(1.0)


def test_two_colours_strongest_first_and_small_ones_left_out() -> None:
    img = _solid((30, 200, 40), 100)  # green
    img[:, :40] = (240, 220, 20)  # 40% yellow
    img[:5, :] = (30, 60, 220)  # 5% blue: under colour_share
    assert pixel_attributes(img) == ["green", "yellow"]


def test_dark_image() -> None:
    assert "dark" in pixel_attributes(_solid((20, 20, 25)))
    assert "dark" not in pixel_attributes(_solid((200, 200, 200)))


def test_noise_is_texture_but_a_single_edge_is_not() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(128, 128, 1), dtype=np.uint8).repeat(3, axis=2)
    assert pixel_attributes(noise) == ["black and white", "texture"]
    edge = _solid((128, 128, 128), 128)
    edge[:, 64:] = 255
    busy, tile_std = texture_stats(edge.mean(axis=-1) / 255.0)
    assert busy == 0.0 and tile_std > AttributeConfig().texture_tile_std
    assert "texture" not in pixel_attributes(edge)


def test_bad_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"RGB image \(H, W, 3\)"):
        pixel_attributes(np.zeros((10, 10), dtype=np.uint8))
