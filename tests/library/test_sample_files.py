"""Sample library pieces that touch pixels and bytes: EXIF blocks, transforms, orientation, hostile files."""

from __future__ import annotations

import io
import os
import stat
from datetime import datetime
from pathlib import Path

import piexif
import pytest
from PIL import Image, ImageChops, ImageOps

from albumen.library.sample.exif import ExifFields, build_exif, garbage_exif, to_dms
from albumen.library.sample.hostile import insert_app1, jpeg_with_size, make_hostile_files, png_bomb
from albumen.library.sample.plan import Transform
from albumen.library.sample.render import write_if_changed
from albumen.library.sample.transforms import apply_transform, map_box, output_size, store_for_orientation


def _gradient(w: int = 64, h: int = 48) -> Image.Image:
    img = Image.new("RGB", (w, h))
    img.putdata([(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(h) for x in range(w)])
    return img


def test_exif_round_trip_time_offset_gps_camera_orientation() -> None:
    fields = ExifFields(datetime(2024, 4, 5, 9, 3, 7, 420000), "+09:00", (-33.8688, 151.2093, 12.5), "Apple",
                        "iPhone 12", orientation=6, size=(64, 48))
    data = piexif.load(build_exif(fields))
    assert data["0th"][piexif.ImageIFD.Make] == b"Apple" and data["0th"][piexif.ImageIFD.Orientation] == 6
    assert data["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2024:04:05 09:03:07"
    assert data["Exif"][piexif.ExifIFD.OffsetTimeOriginal] == b"+09:00"
    assert data["Exif"][piexif.ExifIFD.SubSecTimeOriginal] == b"420"
    gps = data["GPS"]
    assert gps[piexif.GPSIFD.GPSLatitudeRef] == b"S" and gps[piexif.GPSIFD.GPSLongitudeRef] == b"E"
    (d, _), (m, _), (s, sd) = gps[piexif.GPSIFD.GPSLatitude]
    assert d + m / 60 + s / sd / 3600 == pytest.approx(33.8688, abs=1e-6)
    assert gps[piexif.GPSIFD.GPSDateStamp] == b"2024:04:05"  # 09:03 at +09:00 is 00:03 UTC the same day
    assert gps[piexif.GPSIFD.GPSTimeStamp][0] == (0, 1)


def test_dms_carries_rounding() -> None:
    assert to_dms(10.999999999) == ((11, 1), (0, 1), (0, 10000))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_every_format_carries_exif_through_pillow(fmt: str) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    exif = build_exif(ExifFields(datetime(2023, 5, 12, 10, 0), "+08:00", (39.9, 116.4, 40.0), "Google", "Pixel 8"))
    out = io.BytesIO()
    _gradient().save(out, fmt, exif=exif)
    with Image.open(io.BytesIO(out.getvalue())) as im:
        read = im.getexif()
        assert read.get(0x010F) == "Google"
        assert read.get_ifd(0x8769).get(0x9011) == "+08:00"  # OffsetTimeOriginal
        assert read.get_ifd(0x8825).get(1) == "N"


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_stored_pixels_show_upright_after_the_tag(orientation: int) -> None:
    upright = _gradient()
    stored = store_for_orientation(upright, orientation)
    out = io.BytesIO()
    stored.save(out, "PNG", exif=build_exif(ExifFields(datetime(2024, 1, 1), "+00:00", orientation=orientation)))
    with Image.open(io.BytesIO(out.getvalue())) as im:
        shown = ImageOps.exif_transpose(im)
        assert ImageChops.difference(shown.convert("RGB"), upright).getbbox() is None
    if orientation in (6, 8):
        assert stored.size == (upright.height, upright.width)


def test_transform_and_face_box_mapping_agree() -> None:
    base = Image.new("RGB", (200, 100), "black")
    base.paste((255, 255, 255), (120, 20, 150, 60))  # a white "face"
    t = Transform(crop=(100, 10, 180, 90), flip=True, scale=0.5)
    out = apply_transform(base, t)
    assert out.size == output_size(t) == (40, 40)
    box = map_box((120, 20, 150, 60), t)
    assert box == (15, 5, 30, 25)
    bbox = out.convert("L").point(lambda v: 255 if v > 128 else 0).getbbox()
    assert bbox is not None and all(abs(a - b) <= 1 for a, b in zip(bbox, box))
    assert map_box((0, 0, 50, 50), t) is None  # cropped away


def test_write_if_changed_leaves_identical_files_alone(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    assert write_if_changed(target, b"abc")
    before = os.stat(target).st_mtime_ns, os.stat(target).st_ino
    assert not write_if_changed(target, b"abc")
    assert (os.stat(target).st_mtime_ns, os.stat(target).st_ino) == before
    assert write_if_changed(target, b"abcd") and target.read_bytes() == b"abcd"
    assert [p.name for p in target.parent.iterdir()] == ["b.bin"]  # no temp files left


def test_bomb_headers_claim_huge_sizes_in_few_bytes() -> None:
    data = png_bomb()
    assert len(data) < 200
    with pytest.raises(Image.DecompressionBombError):  # 10^10 pixels: Pillow refuses on open
        Image.open(io.BytesIO(data))
    jpeg = io.BytesIO()
    _gradient().save(jpeg, "JPEG")
    big = jpeg_with_size(jpeg.getvalue(), 65000, 65000)
    assert len(big) == len(jpeg.getvalue())
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(big))


def test_garbage_exif_keeps_pixels_decodable() -> None:
    jpeg = io.BytesIO()
    _gradient().save(jpeg, "JPEG")
    data = insert_app1(jpeg.getvalue(), garbage_exif())
    with pytest.warns(UserWarning, match="Corrupt EXIF"), Image.open(io.BytesIO(data)) as im:
        im.load()
        assert im.size == (64, 48)
        assert dict(im.getexif()) == {}  # nothing usable in it
    with pytest.raises(Exception):
        piexif.load(data)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_hostile_files_are_what_they_claim(tmp_path: Path) -> None:
    sample = _gradient(320, 240)
    (tmp_path / "DCIM").mkdir()
    (tmp_path / "DCIM" / "IMG_0001.JPG").write_bytes(b"jpeg bytes of a library photo")
    made = make_hostile_files(tmp_path, sample, ("DCIM/IMG_0001.JPG", b"jpeg bytes of a library photo"))
    by_kind: dict[str, list] = {}
    for h in made:
        assert h.created, h.note
        by_kind.setdefault(h.kind, []).append(h)
        assert h.path.startswith(b"hostile/")
    root = os.fsencode(tmp_path)

    def path(h) -> bytes:
        return os.path.join(root, h.path)

    assert os.path.getsize(path(by_kind["zero_bytes"][0])) == 0
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(path(by_kind["text_as_jpg"][0]))
    with Image.open(path(by_kind["truncated_jpeg"][0])) as im, pytest.raises(OSError, match="truncated"):
        im.load()
    for kind in ("decompression_bomb_png", "decompression_bomb_jpeg"):
        assert os.path.getsize(path(by_kind[kind][0])) < 64_000
        with pytest.raises(Image.DecompressionBombError):
            Image.open(path(by_kind[kind][0]))
    for h in by_kind["symlink_file_loop"]:
        with pytest.raises(OSError) as err:
            open(path(h), "rb")
        assert err.value.errno == 40  # ELOOP
    loop = path(by_kind["symlink_dir_loop"][0])
    assert os.path.realpath(loop) == os.path.realpath(os.path.join(root, b"hostile"))
    assert stat.S_ISFIFO(os.lstat(path(by_kind["fifo_named_jpg"][0])).st_mode)
    assert os.path.isdir(path(by_kind["directory_named_jpg"][0]))
    assert stat.S_IMODE(os.stat(path(by_kind["unreadable_mode_000"][0])).st_mode) == 0
    names = {h.path for h in by_kind["non_utf8_name"] + by_kind["emoji_name"]}
    with pytest.raises(UnicodeDecodeError):
        next(iter(n for n in names if b"\xe9" in n)).decode("utf-8")
    for h in by_kind["non_utf8_name"] + by_kind["emoji_name"] + by_kind["garbage_exif"]:
        with Image.open(path(h)) as im:
            im.load()  # valid pixels under awkward names
    twins = by_kind["same_file_two_names"]
    hard = next(h for h in twins if h.path.endswith(b"twin_hardlink.jpg"))
    assert os.path.samefile(path(hard), os.path.join(root, b"hostile/twin.jpg"))
    copy = next(h for h in twins if h.duplicate_of == "DCIM/IMG_0001.JPG")
    assert open(path(copy), "rb").read() == b"jpeg bytes of a library photo"
    # every entry serialises, with the exact bytes of the non-UTF-8 name recoverable
    for h in made:
        entry = h.to_json()
        assert bytes.fromhex(entry["path_bytes_hex"]) == h.path == os.fsencode(entry["path"])


def test_hostile_files_are_idempotent(tmp_path: Path) -> None:
    sample = _gradient(320, 240)
    make_hostile_files(tmp_path, sample, None)
    before = {}
    for dirpath, dirs, files in os.walk(os.fsencode(tmp_path)):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            before[os.path.join(dirpath, name)] = (st.st_ino, st.st_mtime_ns, st.st_mode)
    again = make_hostile_files(tmp_path, sample, None)
    after = {}
    for dirpath, dirs, files in os.walk(os.fsencode(tmp_path)):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            after[os.path.join(dirpath, name)] = (st.st_ino, st.st_mtime_ns, st.st_mode)
    assert after == before and len(again) >= 15
