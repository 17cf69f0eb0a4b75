"""Fixtures for the library tests: small real-looking photos with chosen EXIF, hostile files, folder snapshots.

Everything is generated into pytest's tmp dirs; nothing is read from or written to the network or the repo.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational


def pattern(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random colour field: distinct seeds give perceptually distinct images."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    return small.resize(size, Image.Resampling.BICUBIC)


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    deg = int(value)
    minutes = int((value - deg) * 60)
    seconds = round(((value - deg) * 60 - minutes) * 60 * 1000)
    return IFDRational(deg, 1), IFDRational(minutes, 1), IFDRational(seconds, 1000)


def build_exif(
    taken: datetime | None = None, offset: str | None = None, gps: tuple[float, float] | None = None,
    make: str | None = None, model: str | None = None, orientation: int = 1,
) -> Image.Exif:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        sub = exif.get_ifd(0x8769)
        sub[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
        if offset:
            sub[0x9011] = offset
    if gps:
        g = exif.get_ifd(0x8825)
        g[1] = "N" if gps[0] >= 0 else "S"
        g[2] = _dms(gps[0])
        g[3] = "E" if gps[1] >= 0 else "W"
        g[4] = _dms(gps[1])
    return exif


def write_photo(path: Path, seed: int = 0, size: tuple[int, int] = (320, 240), fmt: str | None = None,
                image: Image.Image | None = None, **exif_args: Any) -> Path:
    """Write a photo (format from the extension unless ``fmt``) with the given EXIF fields."""
    from albumen.library.extract import register_formats

    register_formats()
    path.parent.mkdir(parents=True, exist_ok=True)
    img = image if image is not None else pattern(seed, size)
    fmt = fmt or {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".heic": "HEIF"}[path.suffix.lower()]
    extra: dict[str, Any] = {"exif": build_exif(**exif_args).tobytes()}
    if fmt in ("JPEG", "WEBP", "HEIF"):
        extra["quality"] = 90
    img.save(path, fmt, **extra)
    return path


def snapshot(folder: Path) -> dict[bytes, tuple[str, int, int]]:
    """Every regular file under ``folder`` (no symlinks followed): sha256, size, mtime_ns."""
    out: dict[bytes, tuple[str, int, int]] = {}
    for dirpath, _, names in os.walk(os.fsencode(folder)):
        for name in names:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if not os.path.isfile(full) or os.path.islink(full):
                continue
            with open(full, "rb") as fh:
                out[full] = (hashlib.sha256(fh.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def png_bomb_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels but carries almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def make_hostile(folder: Path) -> dict[str, Path]:
    """The hostile files of the issue, each in its own honest form. Returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_photo(folder / "good.jpg", seed=1)
    data = good.read_bytes()
    files = {"good": good}
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"] = folder / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.jpg"
    files["text"].write_text("this is a shopping list, not a photo\n")
    files["bomb"] = folder / "bomb.png"
    files["bomb"].write_bytes(png_bomb_header(100_000, 100_000))
    # Garbage EXIF: a valid JPEG whose APP1 Exif segment holds random bytes.
    garbage = b"Exif\x00\x00" + np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    app1 = b"\xff\xe1" + (len(garbage) + 2).to_bytes(2, "big") + garbage
    files["garbage_exif"] = folder / "garbage_exif.jpg"
    files["garbage_exif"].write_bytes(data[:2] + app1 + data[2:])
    loop_dir = folder / "loop"
    loop_dir.mkdir()
    os.symlink("..", loop_dir / "back")  # a folder symlink loop
    files["self_link"] = folder / "self.jpg"
    os.symlink("self.jpg", files["self_link"])  # a file symlink pointing at itself
    files["fifo"] = folder / "pipe.jpg"
    os.mkfifo(files["fifo"])  # unreadable as a photo: opening it for reading would block
    files["dir_named_jpg"] = folder / "album.jpg"
    write_photo(files["dir_named_jpg"] / "inside.jpg", seed=2)  # a folder named like a photo, with a photo in it
    files["non_utf8"] = Path(os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9.jpg")))
    write_photo(files["non_utf8"], seed=3)
    files["emoji"] = folder / "🎂 birthday 🎉.jpg"
    write_photo(files["emoji"], seed=4)
    files["locked"] = write_photo(folder / "locked.jpg", seed=6)
    os.chmod(files["locked"], 0)  # we run as root: the indexer checks the permission bits, not just open()
    files["same_a"] = write_photo(folder / "same_a.jpg", seed=5)
    files["same_b"] = folder / "same_b.jpg"
    files["same_b"].write_bytes(files["same_a"].read_bytes())  # the same file under two names
    return files


@pytest.fixture
def photo_factory() -> Callable[..., Path]:
    return write_photo


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    make_hostile(tmp_path / "hostile")
    return tmp_path / "hostile"


@pytest.fixture
def helpers() -> Any:
    """The helper functions of this conftest, for tests that need more than one fixture's worth."""
    from types import SimpleNamespace

    return SimpleNamespace(
        pattern=pattern, write_photo=write_photo, snapshot=snapshot, make_hostile=make_hostile,
        png_bomb_header=png_bomb_header, build_exif=build_exif,
    )
