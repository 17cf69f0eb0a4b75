"""Files: EXIF carried over, originals untouched, OUT == IN refused, bad files as clear errors, batch goes on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image

from albumen.vision.portrait import NoSubjectFound, PortraitConfig, PortraitFileError, PortraitMode, read_photo
from albumen.vision.portrait.fakes import EllipseSegmenter, FixedFaces
from albumen.vision.portrait.files import reset_orientation

from .conftest import make_scene


def _exif(orientation: int = 1) -> bytes:
    return piexif.dump(
        {
            "0th": {piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Orientation: orientation},
            "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2021:07:14 18:30:00"},
            "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (24, 1))},
        }
    )


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "IMG_0001.jpg"
    Image.fromarray(make_scene(160, 200)).save(path, exif=_exif(), quality=95)
    return path


@pytest.fixture
def mode() -> PortraitMode:
    return PortraitMode(PortraitConfig(), EllipseSegmenter(((0.5, 0.6, 0.22, 0.45),), edge=0.02), FixedFaces())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writes_a_new_file_with_the_original_exif(photo: Path, mode: PortraitMode, tmp_path: Path) -> None:
    before, mtime = _sha(photo), photo.stat().st_mtime_ns
    out = tmp_path / "portrait.jpg"
    report = mode.process_file(photo, out)
    assert _sha(photo) == before and photo.stat().st_mtime_ns == mtime  # the original is untouched
    got = piexif.load(str(out))
    assert got["0th"][piexif.ImageIFD.Make] == b"Canon"
    assert got["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2021:07:14 18:30:00"
    assert got["GPS"][piexif.GPSIFD.GPSLatitude] == ((48, 1), (51, 1), (24, 1))
    assert report["exif_kept"] and report["size"] == [200, 160]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_rotated_original_is_written_upright_with_orientation_1(tmp_path: Path, mode: PortraitMode) -> None:
    src = tmp_path / "rotated.jpg"
    Image.fromarray(make_scene(200, 160)).save(src, exif=_exif(orientation=6))  # stored sideways, shown upright
    out = tmp_path / "out.png"
    mode.process_file(src, out)
    with Image.open(out) as im:
        assert im.size == (200, 160)
        assert im.getexif()[0x0112] == 1


def test_reset_orientation_changes_only_the_orientation_value() -> None:
    raw = _exif(orientation=8)
    assert raw.startswith(b"Exif\x00\x00")
    fixed = reset_orientation(raw)
    assert len(fixed) == len(raw) and sum(a != b for a, b in zip(raw, fixed)) == 1
    assert piexif.load(fixed)["0th"][piexif.ImageIFD.Orientation] == 1
    assert reset_orientation(b"garbage") == b"garbage"


def test_icc_profile_is_kept(tmp_path: Path, mode: PortraitMode) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.jpg"
    Image.fromarray(make_scene()).save(src, icc_profile=icc)
    out = tmp_path / "icc_out.jpg"
    mode.process_file(src, out)
    with Image.open(out) as im:
        assert im.info["icc_profile"] == icc


def test_refuses_to_write_over_the_original(photo: Path, mode: PortraitMode, tmp_path: Path) -> None:
    before = _sha(photo)
    with pytest.raises(PortraitFileError, match="never overwrites"):
        mode.process_file(photo, photo, overwrite=True)
    link = tmp_path / "link.jpg"
    os.symlink(photo, link)
    with pytest.raises(PortraitFileError, match="never overwrites"):
        mode.process_file(photo, link, overwrite=True)
    (tmp_path / "sub").mkdir()
    with pytest.raises(PortraitFileError, match="never overwrites"):
        mode.process_file(photo, tmp_path / "sub" / ".." / photo.name, overwrite=True)
    assert _sha(photo) == before


def test_existing_output_needs_overwrite(photo: Path, mode: PortraitMode, tmp_path: Path) -> None:
    out = tmp_path / "exists.jpg"
    out.write_bytes(b"keep me")
    with pytest.raises(PortraitFileError, match="--overwrite"):
        mode.process_file(photo, out)
    assert out.read_bytes() == b"keep me"
    mode.process_file(photo, out, overwrite=True)
    assert read_photo(out).rgb.shape == (160, 200, 3)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("broken.jpg", b"\xff\xd8\xff not really a jpeg", "cannot decode"),
        ("empty.jpg", b"", "cannot decode"),
        ("notes.txt", b"hello", "cannot decode"),
    ],
)
def test_bad_inputs_are_clear_errors(tmp_path: Path, mode: PortraitMode, name: str, content: bytes, match: str) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(PortraitFileError, match=match):
        mode.process_file(src, tmp_path / "out.jpg")
    assert not (tmp_path / "out.jpg").exists()


def test_bad_paths_are_clear_errors(photo: Path, mode: PortraitMode, tmp_path: Path) -> None:
    with pytest.raises(PortraitFileError, match="not found"):
        mode.process_file(tmp_path / "missing.jpg", tmp_path / "o.jpg")
    with pytest.raises(PortraitFileError, match="unknown output type"):
        mode.process_file(photo, tmp_path / "o.gif")
    with pytest.raises(PortraitFileError, match="does not exist"):
        mode.process_file(photo, tmp_path / "nowhere" / "o.jpg")
    with pytest.raises(PortraitFileError, match="folder"):
        mode.process_file(tmp_path, tmp_path / "o.jpg")


class _OnlyOnTexture(EllipseSegmenter):
    """A person on textured photos, nobody on flat ones."""

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        return super().segment(rgb) if rgb.std() > 5 else np.zeros(rgb.shape[:2], np.float32)


def test_one_bad_file_does_not_stop_a_batch(photo: Path, tmp_path: Path) -> None:
    mode = PortraitMode(PortraitConfig(), _OnlyOnTexture(((0.5, 0.6, 0.22, 0.45),)), FixedFaces())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((80, 100, 3), 100, np.uint8)).save(flat)
    done, errors = [], []
    for i, src in enumerate([bad, flat, photo]):
        try:
            done.append(mode.process_file(src, tmp_path / f"out{i}.jpg"))
        except (PortraitFileError, NoSubjectFound) as exc:
            errors.append(type(exc).__name__)
    assert errors == ["PortraitFileError", "NoSubjectFound"] and len(done) == 1
    assert (tmp_path / "out2.jpg").exists() and not (tmp_path / "out1.jpg").exists()


def test_heic_input_keeps_its_exif(tmp_path: Path, mode: PortraitMode) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    src = tmp_path / "IMG_0002.heic"
    Image.fromarray(make_scene()).save(src, exif=_exif(), quality=90)
    out = tmp_path / "IMG_0002_portrait.jpg"
    mode.process_file(src, out)
    assert piexif.load(str(out))["GPS"][piexif.GPSIFD.GPSLatitude] == ((48, 1), (51, 1), (24, 1))


@pytest.mark.parametrize("pil_mode,suffix", [("L", ".png"), ("RGBA", ".png"), ("CMYK", ".jpg"), ("P", ".gif")])
def test_other_pixel_modes_are_converted(tmp_path: Path, mode: PortraitMode, pil_mode: str, suffix: str) -> None:
    src = tmp_path / f"in_{pil_mode}{suffix}"
    Image.fromarray(make_scene()).convert(pil_mode).save(src)
    out = tmp_path / f"out_{pil_mode}.jpg"
    mode.process_file(src, out)
    assert read_photo(out).rgb.shape == (160, 200, 3)
