"""Real places the sample library's owner lives in and travels to, with the time zone each one keeps.

Coordinates are the city centres (WGS84, degrees; south and west negative); ``timezone`` is an IANA name so that
offsets, daylight saving included, come from ``zoneinfo`` rather than from a table here. This module knows nothing
about photos, files or randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["City", "HOME", "TRIP_CITIES", "city_by_id", "local_offset"]


@dataclass(frozen=True)
class City:
    """A real city: where it is and which clock it keeps."""

    id: str
    name: str
    country: str
    country_code: str
    lat: float
    lon: float
    timezone: str
    radius_km: float = 6.0  # photos are spread within this distance of the centre

    def to_json(self) -> dict[str, object]:
        return {
            "city_id": self.id,
            "city": self.name,
            "country": self.country,
            "country_code": self.country_code,
            "lat": self.lat,
            "lon": self.lon,
            "timezone": self.timezone,
        }


HOME = City("seattle", "Seattle", "United States", "US", 47.6062, -122.3321, "America/Los_Angeles", 8.0)

# Distinct cities on four continents, both hemispheres and both sides of Greenwich, so that GPS reference letters
# (N/S, E/W) and positive/negative UTC offsets are all exercised.
TRIP_CITIES: tuple[City, ...] = (
    City("beijing", "Beijing", "China", "CN", 39.9042, 116.4074, "Asia/Shanghai", 10.0),
    City("cape-canaveral", "Cape Canaveral", "United States", "US", 28.3922, -80.6077, "America/New_York", 4.0),
    City("tokyo", "Tokyo", "Japan", "JP", 35.6762, 139.6503, "Asia/Tokyo", 8.0),
    City("paris", "Paris", "France", "FR", 48.8566, 2.3522, "Europe/Paris", 4.0),
    City("sydney", "Sydney", "Australia", "AU", -33.8688, 151.2093, "Australia/Sydney", 6.0),
)


def city_by_id(city_id: str) -> City:
    for city in (HOME, *TRIP_CITIES):
        if city.id == city_id:
            return city
    raise KeyError(f"unknown city {city_id!r}")


def local_offset(city: City, local_time: datetime) -> str:
    """The UTC offset ``+HH:MM`` that ``city`` keeps at the naive local wall-clock time ``local_time``."""
    aware = local_time.replace(tzinfo=ZoneInfo(city.timezone))
    offset = aware.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
