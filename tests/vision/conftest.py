"""Fixtures for the vision tests: real photos from scikit-image written to disk, plus a broken file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from albumen.vision.base import PhotoInput


def write_skimage_photo(tmp: Path, name: str, max_side: int = 320) -> Path:
    from PIL import Image
    from skimage import data

    arr = getattr(data, name)()
    im = Image.fromarray(arr).convert("RGB")
    im.thumbnail((max_side, max_side))
    path = tmp / f"{name}.jpg"
    im.save(path, quality=92)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> list[PhotoInput]:
    """chelsea (a cat), coffee (espresso), astronaut (a face), plus a file that is not an image."""
    out = [PhotoInput(i + 1, write_skimage_photo(tmp_path, n)) for i, n in enumerate(["chelsea", "coffee", "astronaut"])]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out.append(PhotoInput(99, bad))
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
