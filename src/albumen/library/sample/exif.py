"""EXIF blocks a phone would write: capture time with its UTC offset, GPS, make/model, orientation.

``build_exif`` returns the bytes Pillow's ``exif=`` argument takes (``Exif\\0\\0`` + a TIFF structure; Pillow strips
the prefix itself for PNG and WebP). ``garbage_exif`` returns an APP1 payload that claims to be EXIF but is not
parseable. This module knows the EXIF tags; it knows nothing about pixels or layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import piexif

__all__ = ["ExifFields", "build_exif", "garbage_exif", "to_dms"]


@dataclass(frozen=True)
class ExifFields:
    """What goes into one file's EXIF."""

    local_time: datetime  # naive wall-clock time; microseconds become SubSecTimeOriginal
    offset: str  # "+HH:MM"
    gps: tuple[float, float, float] | None = None  # (lat, lon, altitude metres)
    make: str | None = None
    model: str | None = None
    orientation: int = 1
    software: str | None = None
    size: tuple[int, int] | None = None  # stored (width, height)
    comment: str | None = None


def to_dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Degrees as EXIF rationals (degrees, minutes, seconds x 10000), sign dropped (the Ref tag carries it)."""
    value = abs(value)
    degrees = int(value)
    minutes_f = (value - degrees) * 60
    minutes = int(minutes_f)
    seconds = round((minutes_f - minutes) * 60 * 10000)
    if seconds >= 60 * 10000:  # rounding carried over
        seconds -= 60 * 10000
        minutes += 1
    if minutes >= 60:
        minutes -= 60
        degrees += 1
    return (degrees, 1), (minutes, 1), (seconds, 10000)


def _rational(x: float, limit: int = 1000) -> tuple[int, int]:
    f = Fraction(x).limit_denominator(limit)
    return f.numerator, f.denominator


def build_exif(fields: ExifFields) -> bytes:
    """EXIF bytes for Pillow's ``save(..., exif=...)`` (JPEG, PNG eXIf, WebP, HEIF)."""
    stamp = fields.local_time.strftime("%Y:%m:%d %H:%M:%S").encode()
    subsec = f"{fields.local_time.microsecond // 1000:03d}".encode()
    zeroth: dict[int, object] = {piexif.ImageIFD.Orientation: fields.orientation, piexif.ImageIFD.DateTime: stamp}
    if fields.make:
        zeroth[piexif.ImageIFD.Make] = fields.make.encode()
    if fields.model:
        zeroth[piexif.ImageIFD.Model] = fields.model.encode()
    if fields.software:
        zeroth[piexif.ImageIFD.Software] = fields.software.encode()
    exif_ifd: dict[int, object] = {
        piexif.ExifIFD.DateTimeOriginal: stamp,
        piexif.ExifIFD.DateTimeDigitized: stamp,
        piexif.ExifIFD.OffsetTimeOriginal: fields.offset.encode(),
        piexif.ExifIFD.OffsetTimeDigitized: fields.offset.encode(),
        piexif.ExifIFD.OffsetTime: fields.offset.encode(),
        piexif.ExifIFD.SubSecTimeOriginal: subsec,
    }
    if fields.size:
        exif_ifd[piexif.ExifIFD.PixelXDimension] = fields.size[0]
        exif_ifd[piexif.ExifIFD.PixelYDimension] = fields.size[1]
    if fields.comment:
        exif_ifd[piexif.ExifIFD.UserComment] = b"ASCII\0\0\0" + fields.comment.encode()
    gps_ifd: dict[int, object] = {}
    if fields.gps is not None:
        lat, lon, alt = fields.gps
        sign = 1 if fields.offset[0] == "+" else -1
        utc = fields.local_time - sign * timedelta(hours=int(fields.offset[1:3]), minutes=int(fields.offset[4:6]))
        utc = utc.replace(tzinfo=timezone.utc)
        gps_ifd = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: to_dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: to_dms(lon),
            piexif.GPSIFD.GPSAltitudeRef: 0,
            piexif.GPSIFD.GPSAltitude: _rational(alt),
            piexif.GPSIFD.GPSTimeStamp: ((utc.hour, 1), (utc.minute, 1), (utc.second, 1)),
            piexif.GPSIFD.GPSDateStamp: utc.strftime("%Y:%m:%d").encode(),
        }
    return piexif.dump({"0th": zeroth, "Exif": exif_ifd, "GPS": gps_ifd, "1st": {}, "thumbnail": None})


def garbage_exif(seed: int = 0) -> bytes:
    """An APP1 payload that starts like EXIF ("Exif\\0\\0", a TIFF byte-order mark) and then points nowhere."""
    import random

    rng = random.Random(seed)
    # byte order, magic 42, then an IFD offset far past the end, then noise
    return b"Exif\x00\x00" + b"II*\x00" + (0x7FFFFFF0).to_bytes(4, "little") + bytes(rng.randrange(256) for _ in range(120))
