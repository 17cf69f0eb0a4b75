"""Read what a photo says about itself: capture time (with its UTC offset), GPS, camera, orientation.

Works on the ``Image.Exif`` that Pillow (and pillow-heif for HEIC) exposes for JPEG, PNG (eXIf), WebP and HEIC.
EXIF written by cameras and apps is often wrong or garbage; every field is parsed on its own and a field that makes
no sense is dropped (``None``) rather than failing the photo. Nothing here opens files or decodes pixels.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["PhotoMeta", "read_meta", "parse_exif_datetime", "parse_offset"]

# EXIF tag numbers (EXIF 2.32 / TIFF 6.0).
_MAKE, _MODEL, _ORIENTATION, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME, _OFFSET_TIME_ORIGINAL, _OFFSET_TIME_DIGITIZED = 0x9010, 0x9011, 0x9012
_SUBSEC_ORIGINAL = 0x9291
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON, _GPS_ALT_REF, _GPS_ALT = 1, 2, 3, 4, 5, 6

_DT_RE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


@dataclass(frozen=True)
class PhotoMeta:
    """Metadata of one photo; every field is ``None`` when the file does not say (or says nonsense)."""

    taken_at: datetime | None = None  # local wall-clock time; timezone-aware when the offset is known
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    make: str | None = None
    model: str | None = None
    orientation: int = 1  # EXIF 1..8; 1 = as stored

    @property
    def tz_offset_min(self) -> int | None:
        if self.taken_at is None or self.taken_at.utcoffset() is None:
            return None
        return int(self.taken_at.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]

    @property
    def taken_at_utc(self) -> datetime | None:
        if self.taken_at is None or self.taken_at.tzinfo is None:
            return None
        return self.taken_at.astimezone(timezone.utc)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def parse_offset(value: Any) -> timezone | None:
    """``"+02:00"`` -> UTC+2; anything else (missing, ``"   :  "``, out of range) -> None."""
    text = _text(value)
    m = _OFFSET_RE.match(text or "")
    if not m:
        return None
    sign, hours, minutes = m.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) >= 60:
        return None
    return timezone(-delta if sign == "-" else delta)


def parse_exif_datetime(value: Any, offset: Any = None, subsec: Any = None) -> datetime | None:
    """EXIF ``"YYYY:MM:DD HH:MM:SS"`` (+ optional OffsetTime and SubSecTime) -> datetime, or None if invalid."""
    m = _DT_RE.match(_text(value) or "")
    if not m:
        return None
    try:
        dt = datetime(*(int(g) for g in m.groups()))
    except ValueError:  # "0000:00:00 00:00:00", month 13 ...
        return None
    sub = _text(subsec)
    if sub and sub.isdigit():
        dt = dt.replace(microsecond=int((sub + "000000")[:6]))
    tz = parse_offset(offset)
    return dt.replace(tzinfo=tz) if tz else dt


def _ratio(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:  # (numerator, denominator) from old-style readers
        num, den = value
        return float(num) / float(den)
    return float(value)  # IFDRational, int, float


def _dms(value: Any, ref: Any, positive: str, limit: float) -> float | None:
    try:
        if isinstance(value, (tuple, list)) and len(value) == 3:
            deg, minutes, seconds = (_ratio(v) for v in value)
            result = deg + minutes / 60.0 + seconds / 3600.0
        else:
            result = _ratio(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(result) or not -limit <= result <= limit:
        return None
    negative = "S" if positive == "N" else "W"
    return -result if (_text(ref) or positive).upper().startswith(negative) else result


def _gps(gps: dict[int, Any]) -> tuple[float | None, float | None, float | None]:
    lat = _dms(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "N", 90.0)
    lon = _dms(gps.get(_GPS_LON), gps.get(_GPS_LON_REF), "E", 180.0)
    if lat is None or lon is None:
        return None, None, None
    alt: float | None = None
    try:
        if gps.get(_GPS_ALT) is not None:
            alt = _ratio(gps[_GPS_ALT])
            ref = gps.get(_GPS_ALT_REF)
            if ref in (1, b"\x01"):
                alt = -alt
            if not math.isfinite(alt):
                alt = None
    except (TypeError, ValueError, ZeroDivisionError):
        alt = None
    return lat, lon, alt


def _sub_ifd(exif: Any, tag: int) -> dict[int, Any]:
    try:
        ifd = exif.get_ifd(tag)
        return dict(ifd) if ifd else {}
    except Exception:  # noqa: BLE001 - a corrupt sub-IFD offset raises anything from struct.error to KeyError
        return {}


def read_meta(exif: Any) -> PhotoMeta:
    """Parse an ``Image.Exif`` (or any mapping of tag -> value with ``get_ifd``) into ``PhotoMeta``.

    Capture time: DateTimeOriginal with OffsetTimeOriginal, else DateTimeDigitized, else DateTime; the offset tags
    fall back to OffsetTime. Never raises on bad values.
    """
    if exif is None:
        return PhotoMeta()
    try:
        base = dict(exif)
    except Exception:  # noqa: BLE001
        return PhotoMeta()
    sub = _sub_ifd(exif, _EXIF_IFD)
    fallback_offset = sub.get(_OFFSET_TIME)
    taken = (
        parse_exif_datetime(
            sub.get(_DATETIME_ORIGINAL), sub.get(_OFFSET_TIME_ORIGINAL) or fallback_offset, sub.get(_SUBSEC_ORIGINAL)
        )
        or parse_exif_datetime(sub.get(_DATETIME_DIGITIZED), sub.get(_OFFSET_TIME_DIGITIZED) or fallback_offset)
        or parse_exif_datetime(base.get(_DATETIME), fallback_offset)
    )
    lat, lon, alt = _gps(_sub_ifd(exif, _GPS_IFD))
    orientation = base.get(_ORIENTATION, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    return PhotoMeta(
        taken_at=taken,
        latitude=lat,
        longitude=lon,
        altitude=alt,
        make=_text(base.get(_MAKE)),
        model=_text(base.get(_MODEL)),
        orientation=orientation,
    )
