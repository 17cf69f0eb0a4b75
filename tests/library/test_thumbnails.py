"""Thumbnails: upright for all 8 orientations, never upscaled, transparency flattened, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from albumen.library.thumbnails import (
    TMP_SUFFIX,
    apply_orientation,
    decode_reduced,
    make_thumbnails,
    oriented_size,
    save_atomic,
    thumbnail_relpath,
)

# An upright 40x20 reference: red top-left quadrant, the rest blue.
def _upright() -> Image.Image:
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 10))
    return img


# How a camera stores the upright image for each EXIF orientation (the inverse of what the reader must apply).
_STORE = {
    1: [], 2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180], 4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_comes_out_upright(orientation: int) -> None:
    stored = _upright()
    for op in _STORE[orientation]:
        stored = stored.transpose(op)
    assert oriented_size(*stored.size, orientation) == (40, 20)
    fixed = apply_orientation(stored, orientation)
    assert fixed.size == (40, 20)
    assert fixed.getpixel((2, 2)) == (255, 0, 0) and fixed.getpixel((37, 17)) == (0, 0, 255)
    (size, thumb), = make_thumbnails(stored, orientation, [16])
    assert thumb.size == (16, 8) and thumb.getpixel((1, 1))[0] > 200


def test_sizes_largest_first_and_never_upscaled() -> None:
    img = Image.new("RGB", (600, 300), (10, 20, 30))
    thumbs = make_thumbnails(img, 1, [256, 1024])
    assert [(s, t.size) for s, t in thumbs] == [(1024, (600, 300)), (256, (256, 128))]


def test_transparency_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    (_, thumb), = make_thumbnails(img, 1, [8])
    assert thumb.mode == "RGB" and thumb.getpixel((4, 4)) == (255, 255, 255)
    grey16 = Image.new("I;16", (10, 10), 65535)
    (_, thumb), = make_thumbnails(grey16, 1, [8])
    assert thumb.mode == "RGB" and thumb.getpixel((4, 4))[0] >= 250


def test_jpeg_is_decoded_at_reduced_scale(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(path, quality=80)
    with Image.open(path) as im:
        decoded = decode_reduced(im, 1024)
        assert decoded.size == (2000, 1500)  # 1/2 scale covers a 1024 thumbnail, 1/4 would not


def test_save_atomic_leaves_no_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "t" / thumbnail_relpath("sha256:abcdef", 256)
    save_atomic(Image.new("RGB", (4, 4)), dest, 85)
    assert dest.exists() and dest.parent.name == "ab"

    class Boom(Image.Image):
        def save(self, *a: object, **k: object) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_atomic(Boom(), dest.with_name("other.jpg"), 85)
    assert not any(n.endswith(TMP_SUFFIX) for n in os.listdir(dest.parent))
    assert not dest.with_name("other.jpg").exists()
