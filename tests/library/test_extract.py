"""One file in, one ``Extracted`` or ``Failed`` out: hostile files give clear reasons and never raise."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from albumen.library.extract import ExtractSettings, Extracted, Failed, FileJob, decode_and_thumbnail, extract


def _job(path: Path | str) -> FileJob:
    st = os.stat(path)
    return FileJob(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _settings(tmp_path: Path) -> ExtractSettings:
    return ExtractSettings(data_dir=str(tmp_path / "data"), db_path=None)


@pytest.mark.parametrize(
    "name, kind, words",
    [
        ("truncated", "truncated", "ends early"),
        ("empty", "empty", "0 bytes"),
        ("text", "not-an-image", "text, not an image"),
        ("bomb", "decompression-bomb", "bomb"),
    ],
)
def test_hostile_files_fail_with_a_clear_reason(tmp_path: Path, helpers: Any, name: str, kind: str, words: str) -> None:
    files = helpers.make_hostile(tmp_path / "h")
    result = extract(_job(files[name]), _settings(tmp_path))
    assert isinstance(result, Failed), result
    assert result.kind == kind and words in result.reason


def test_garbage_exif_still_indexes_the_photo(tmp_path: Path, helpers: Any) -> None:
    files = helpers.make_hostile(tmp_path / "h")
    result = extract(_job(files["garbage_exif"]), _settings(tmp_path))
    assert isinstance(result, Extracted) and result.meta is not None and result.meta.taken_at is None


def test_fifo_and_folder_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    settings = _settings(tmp_path)
    for path in (fifo, folder):
        result = extract(FileJob(str(path), 0, 0, 0), settings)
        assert isinstance(result, Failed) and result.kind == "not-a-file"
    missing = extract(FileJob(str(tmp_path / "gone.jpg"), 1, 1, 1), settings)
    assert isinstance(missing, Failed) and missing.kind == "unreadable"


def test_pixel_limit_follows_settings(tmp_path: Path, photo_factory: Any) -> None:
    path = photo_factory(tmp_path / "p.png", size=(300, 200))
    tight = ExtractSettings(data_dir=str(tmp_path / "d"), db_path=None, max_pixels=50_000)
    result = extract(_job(path), tight)
    assert isinstance(result, Failed) and result.kind == "decompression-bomb" and "300x200" in result.reason
    assert Image.MAX_IMAGE_PIXELS != 25_000  # the limit is restored after the file


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".heic"])
def test_every_format_gives_meta_thumbnails_and_hashes(tmp_path: Path, photo_factory: Any, ext: str) -> None:
    path = photo_factory(tmp_path / f"p{ext}", size=(640, 480), taken=datetime(2024, 1, 2, 3, 4, 5), offset="+01:00",
                         gps=(48.8566, 2.3522), make="Google", model="Pixel 8", orientation=8)
    result = extract(_job(path), _settings(tmp_path))
    assert isinstance(result, Extracted) and not result.known
    assert result.content_hash.startswith("sha256:") and len(result.phash or "") == 16
    assert (result.width, result.height) == (480, 640)  # shown upright: orientation 8 turns it a quarter
    assert result.meta is not None and result.meta.tz_offset_min == 60 and result.meta.make == "Google"
    assert result.orientation == 8
    sizes = {t.size: t for t in result.thumbnails}
    assert set(sizes) == {256, 1024}
    with Image.open(tmp_path / "data" / sizes[256].relpath) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (192, 256) == (sizes[256].width, sizes[256].height)


def test_bound_uses_the_same_decode(tmp_path: Path, photo_factory: Any) -> None:
    path = photo_factory(tmp_path / "p.jpg", size=(800, 600), orientation=6)
    pixels = decode_and_thumbnail(str(path), str(tmp_path / "out"), (256, 1024), 85)
    with Image.open(tmp_path / "out" / "256" / "p.jpg.jpg") as im:
        assert im.size == (192, 256)
    assert pixels == 600 * 800 + 192 * 256
