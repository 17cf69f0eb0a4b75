"""EXIF: capture time with offset, GPS, camera, orientation; garbage never raises."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from albumen.library.exif import PhotoMeta, parse_exif_datetime, parse_offset, read_meta
from albumen.library.extract import register_formats


@pytest.mark.parametrize(
    "value, expected",
    [("+02:00", 120), ("-05:30", -330), ("+0100", 60), ("Z", None), ("   :  ", None), ("+15:00", None), (None, None),
     (b"+09:00\x00", 540)],
)
def test_parse_offset(value: Any, expected: int | None) -> None:
    tz = parse_offset(value)
    assert (tz.utcoffset(None) // timedelta(minutes=1) if tz else None) == expected


@pytest.mark.parametrize(
    "value, offset, subsec, expected",
    [
        ("2023:07:14 18:30:05", "+02:00", None, datetime(2023, 7, 14, 18, 30, 5, tzinfo=timezone(timedelta(hours=2)))),
        ("2023:07:14 18:30:05", None, "25", datetime(2023, 7, 14, 18, 30, 5, 250000)),
        ("2023-07-14T18:30:05", None, None, datetime(2023, 7, 14, 18, 30, 5)),
        ("0000:00:00 00:00:00", None, None, None),
        ("2023:13:40 99:00:00", None, None, None),
        ("garbage", None, None, None),
        (12345, None, None, None),
    ],
)
def test_parse_exif_datetime(value: Any, offset: Any, subsec: Any, expected: datetime | None) -> None:
    assert parse_exif_datetime(value, offset, subsec) == expected


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".heic"])
def test_round_trip_through_every_format(tmp_path: Path, ext: str, photo_factory: Any) -> None:
    path = photo_factory(
        tmp_path / f"p{ext}", taken=datetime(2022, 12, 31, 23, 59, 58), offset="-03:00",
        gps=(-33.8688, 151.2093), make="Apple", model="iPhone 15", orientation=6 if ext != ".heic" else 1,
    )
    register_formats()
    with Image.open(path) as im:
        meta = read_meta(im.getexif())
    assert meta.taken_at == datetime(2022, 12, 31, 23, 59, 58, tzinfo=timezone(timedelta(hours=-3)))
    assert meta.tz_offset_min == -180
    assert meta.taken_at_utc == datetime(2023, 1, 1, 2, 59, 58, tzinfo=timezone.utc)
    assert meta.latitude == pytest.approx(-33.8688, abs=1e-4) and meta.longitude == pytest.approx(151.2093, abs=1e-4)
    assert (meta.make, meta.model) == ("Apple", "iPhone 15")
    assert meta.orientation == (6 if ext != ".heic" else 1)


def test_no_exif_and_naive_time(tmp_path: Path, photo_factory: Any) -> None:
    plain = photo_factory(tmp_path / "plain.png")
    with Image.open(plain) as im:
        assert read_meta(im.getexif()) == PhotoMeta()
    naive = photo_factory(tmp_path / "naive.jpg", taken=datetime(2021, 5, 1, 9, 0, 0))
    with Image.open(naive) as im:
        meta = read_meta(im.getexif())
    assert meta.taken_at == datetime(2021, 5, 1, 9, 0) and meta.tz_offset_min is None and meta.taken_at_utc is None
    assert read_meta(None) == PhotoMeta()


class _FakeExif(dict):
    """A mapping with ``get_ifd``, holding the nonsense real files contain."""

    def __init__(self, base: dict[int, Any], ifds: dict[int, Any]) -> None:
        super().__init__(base)
        self.ifds = ifds

    def get_ifd(self, tag: int) -> Any:
        value = self.ifds.get(tag, {})
        if isinstance(value, Exception):
            raise value
        return value


def test_garbage_values_are_dropped_not_raised() -> None:
    exif = _FakeExif(
        {0x0112: 42, 0x010F: b"\xff\xfe\x00", 0x0110: 7, 0x0132: "not a date"},
        {
            0x8769: {0x9003: "2020:02:30 10:00:00", 0x9011: "+99:99"},
            0x8825: {1: "N", 2: ((1, 0), (0, 1), (0, 1)), 3: "E", 4: (400.0, 0.0, 0.0), 6: "high"},
        },
    )
    meta = read_meta(exif)
    assert meta.orientation == 1 and meta.taken_at is None and meta.latitude is None and meta.longitude is None
    assert meta.model is None
    broken = _FakeExif({0x0112: 3}, {0x8769: ValueError("bad offset"), 0x8825: KeyError(1)})
    assert read_meta(broken) == PhotoMeta(orientation=3)


def test_gps_hemispheres_and_altitude() -> None:
    exif = _FakeExif({}, {0x8825: {1: "S", 2: (10.0, 30.0, 0.0), 3: "W", 4: (20.0, 15.0, 0.0), 5: 1, 6: 12.5}})
    meta = read_meta(exif)
    assert (meta.latitude, meta.longitude, meta.altitude) == (-10.5, -20.25, -12.5)
