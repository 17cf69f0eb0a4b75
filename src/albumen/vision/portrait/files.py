"""Reading the original and writing the portrait beside it: EXIF and colour profile carried over, never in place.

``read_photo`` decodes upright RGB (EXIF orientation applied) and keeps the original EXIF block; since the pixels are
now upright, the copy's Orientation tag is patched to 1 *in place* in the raw bytes, so every other tag, maker note
and GPS entry stays byte-identical. ``write_photo`` refuses to write over the input, writes to a temporary file in
the destination folder and renames it, so a crash never leaves half a file. Knows nothing about blur or models.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "OUTPUT_FORMATS",
    "Photo",
    "PortraitFileError",
    "check_paths",
    "read_photo",
    "reset_orientation",
    "write_photo",
]

OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
_ORIENTATION = 0x0112


class PortraitFileError(ValueError):
    """A bad input or output path; the message names the file and the reason."""


@dataclass(frozen=True)
class Photo:
    rgb: np.ndarray  # (H, W, 3) uint8, upright
    exif: bytes | None  # the original EXIF block (Orientation reset to 1), or None
    icc_profile: bytes | None


def reset_orientation(exif: bytes) -> bytes:
    """The same EXIF block with IFD0's Orientation set to 1 (upright); everything else byte-identical.

    Accepts the block with or without the ``Exif\\0\\0`` prefix. A block that cannot be parsed is returned unchanged.
    """
    prefix = 6 if exif.startswith(b"Exif\x00\x00") else 0
    tiff = exif[prefix:]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return exif
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(end + "I", tiff, 4)
    if ifd0 + 2 > len(tiff):
        return exif
    (count,) = struct.unpack_from(end + "H", tiff, ifd0)
    out = bytearray(exif)
    for i in range(count):
        entry = ifd0 + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, typ = struct.unpack_from(end + "HH", tiff, entry)
        if tag == _ORIENTATION and typ == 3:  # SHORT, value stored inline in the entry
            struct.pack_into(end + "H", out, prefix + entry + 8, 1)
    return bytes(out)


def read_photo(path: Path | str) -> Photo:
    """Decode ``path`` read-only to upright RGB, keeping its EXIF and ICC profile."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:  # HEIC/HEIF/AVIF from phones, through pillow-heif when it is installed
        from albumen.library.extract import register_formats

        register_formats()
    except ImportError:
        pass
    path = Path(path)
    if path.is_dir():
        raise PortraitFileError(f"{path}: is a folder, not a photo")
    try:
        with Image.open(path) as im:
            exif = im.info.get("exif")
            icc = im.info.get("icc_profile")
            im.load()
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except FileNotFoundError:
        raise PortraitFileError(f"{path}: file not found") from None
    except PermissionError:
        raise PortraitFileError(f"{path}: permission denied") from None
    except Image.DecompressionBombError as exc:
        raise PortraitFileError(f"{path}: too many pixels to process safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise PortraitFileError(f"{path}: cannot decode image ({exc})") from None
    if isinstance(exif, bytes) and exif:
        exif = reset_orientation(exif)
    else:
        exif = None
    return Photo(rgb=np.ascontiguousarray(rgb), exif=exif, icc_profile=icc if isinstance(icc, bytes) else None)


def check_paths(src: Path | str, dst: Path | str, overwrite: bool = False) -> str:
    """Refuse OUT == IN (also through links), unknown output types and, unless ``overwrite``, an existing OUT.

    Returns the Pillow format name for ``dst``.
    """
    src, dst = Path(src), Path(dst)
    fmt = OUTPUT_FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise PortraitFileError(f"{dst}: unknown output type {dst.suffix!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    same = src.resolve() == dst.resolve()
    if not same and src.exists() and dst.exists():
        same = os.path.samefile(src, dst)
    if same:
        raise PortraitFileError(f"{dst}: OUT is the input photo; Portrait Mode never overwrites an original")
    if dst.exists() and not overwrite:
        raise PortraitFileError(f"{dst}: already exists; pass --overwrite to replace it")
    if not dst.parent.is_dir():
        raise PortraitFileError(f"{dst.parent}: output folder does not exist")
    return fmt


def write_photo(dst: Path | str, photo: Photo, rgb: np.ndarray, fmt: str, quality: int = 95) -> None:
    """Write ``rgb`` to ``dst`` as ``fmt`` with the EXIF and ICC profile of ``photo``, atomically."""
    from PIL import Image

    dst = Path(dst)
    options: dict[str, object] = {}
    if photo.exif:
        options["exif"] = photo.exif
    if photo.icc_profile:
        options["icc_profile"] = photo.icc_profile
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix, dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            Image.fromarray(rgb).save(fh, format=fmt, **options)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
