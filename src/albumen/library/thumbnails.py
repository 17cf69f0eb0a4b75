"""Decode a photo once at reduced scale and make upright JPEG thumbnails in a couple of sizes.

``decode_reduced`` asks the decoder for the smallest scale that still covers the largest thumbnail (JPEG DCT
scaling: 1/2, 1/4, 1/8), which is most of the speed. ``make_thumbnails`` applies the EXIF orientation after resizing
(cheaper than rotating the full image), flattens transparency on white, and derives each smaller size from the
previous one. ``save_atomic`` writes to a temporary name and renames, so a killed process never leaves a
half-written thumbnail under its final name.

Thumbnails live in the data dir, named after the content hash: ``thumbnails/<size>/<hh>/<hash>.jpg``. This module
knows nothing about the database or about which decoders are registered (see ``extract``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

__all__ = [
    "Thumbnail",
    "apply_orientation",
    "decode_reduced",
    "make_thumbnails",
    "oriented_size",
    "save_atomic",
    "thumbnail_relpath",
    "write_thumbnails",
    "TMP_SUFFIX",
]

TMP_SUFFIX = ".partial"

_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


@dataclass(frozen=True)
class Thumbnail:
    size: int  # requested longest side
    relpath: str  # relative to the data dir
    width: int
    height: int


def thumbnail_relpath(content_hash: str, size: int) -> str:
    digest = content_hash.split(":", 1)[-1]
    return f"thumbnails/{size}/{digest[:2]}/{digest}.jpg"


def apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """Turn a stored image upright according to EXIF orientation 1..8."""
    for op in _TRANSPOSE.get(orientation, ()):
        image = image.transpose(op)
    return image


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode_reduced(image: Image.Image, longest: int) -> Image.Image:
    """Load ``image`` (opened, not yet loaded) at the smallest decoder scale whose longest side is >= ``longest``."""
    w, h = image.size
    scale = longest / max(w, h)
    if scale < 1.0 and image.format == "JPEG":
        # draft() keeps both sides >= the requested box, so request the thumbnail's exact box.
        image.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
    image.load()
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def make_thumbnails(image: Image.Image, orientation: int, sizes: Sequence[int]) -> list[tuple[int, Image.Image]]:
    """Upright RGB thumbnails, largest first: ``[(size, image), ...]``; never upscaled."""
    current = _to_rgb(image)
    out: list[tuple[int, Image.Image]] = []
    for size in sorted(set(sizes), reverse=True):
        w, h = current.size
        if max(w, h) > size:
            ratio = size / max(w, h)
            target = (max(1, round(w * ratio)), max(1, round(h * ratio)))
            current = current.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
        out.append((size, current))
    return [(size, apply_orientation(img, orientation)) for size, img in out]


def save_atomic(image: Image.Image, dest: Path, quality: int) -> None:
    """Write ``image`` as JPEG to ``dest`` via a temporary file in the same folder and a rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=TMP_SUFFIX, dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, "JPEG", quality=quality, optimize=False, progressive=False)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_thumbnails(
    data_dir: Path, content_hash: str, thumbs: Sequence[tuple[int, Image.Image]], quality: int
) -> list[Thumbnail]:
    written = []
    for size, img in thumbs:
        rel = thumbnail_relpath(content_hash, size)
        save_atomic(img, data_dir / rel, quality)
        written.append(Thumbnail(size, rel, img.width, img.height))
    return written
