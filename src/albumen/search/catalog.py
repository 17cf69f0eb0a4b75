"""What search filters on, read once from the store: per photo its path, day, place names and people.

``SearchCatalog.from_store(store)`` reads photos (capture day from the local ``taken_at``), the "places" analyzer's
payloads (city, region, country), and named, visible people through ``faces.person_id``. ``mask(query)`` turns a
``ParsedQuery``'s filters into a boolean row mask; ``vocabulary()`` lists the names a query may use.

Places are matched by name and, when a gazetteer is given, by distance: a photo is "in Sydney" when one of its place
names is Sydney or when it was taken within ``place_radius_km`` of a populated place called Sydney. Reverse geocoding
names the nearest populated place, which for a big city is usually a suburb or a ward (Bagnolet, Musashino, North
Sydney), so names alone would miss most photos of a city.

This module knows the store's tables and the query's filters; it knows nothing about vectors or ranking.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np

from albumen.places import Home, country_aliases, distance_from_home_km, haversine_km, infer_home
from albumen.search.query import ParsedQuery, Vocabulary

__all__ = ["CatalogError", "PhotoRow", "SearchCatalog"]


class CatalogError(ValueError):
    """A filter that names something the library does not have; the message says what exists."""


@dataclass(frozen=True)
class PhotoRow:
    """One photo as search sees it."""

    photo_id: int
    path: str  # an original file (printable form)
    day: date | None
    latitude: float | None = None
    longitude: float | None = None
    places: tuple[str, ...] = ()  # city, region, country ... as stored (display case)
    country_code: str = ""
    people: tuple[str, ...] = ()  # names of the named, visible people in it
    region: str = ""  # admin1 (state, province, prefecture) as stored, "" when unknown


def _day(taken_at: str | None) -> date | None:
    if not taken_at:
        return None
    try:
        return datetime.fromisoformat(taken_at).date()
    except ValueError:
        return None


class SearchCatalog:
    """Rows of ``PhotoRow`` plus the arrays the filters need; row order is photo id order."""

    def __init__(self, rows: Sequence[PhotoRow], home_radius_km: float = 30.0, gazetteer: Any = None,
                 place_radius_km: float = 15.0) -> None:
        self.rows = sorted(rows, key=lambda r: r.photo_id)
        self.photo_ids = np.array([r.photo_id for r in self.rows], dtype=np.int64)  # (N,)
        self._row_of = {r.photo_id: i for i, r in enumerate(self.rows)}
        self.home_radius_km = home_radius_km
        self.gazetteer = gazetteer  # anything with rows_within(coords, radius_km) -> [GeoRow]; None: names only
        self.place_radius_km = place_radius_km
        self._home: Home | None | bool = False  # False = not computed yet
        self._vocabulary: Vocabulary | None = None
        self._centres: dict[str, np.ndarray] | None = None
        self._nearby_names: dict[str, str] = {}  # lower-case -> display, filled with _centres
        # column arrays, so that a filter over 100k photos is a few vector operations, not a Python loop per photo
        self._days = np.array([-1 if r.day is None else r.day.toordinal() for r in self.rows], dtype=np.int64)  # (N,)
        self._lat = np.array([np.nan if r.latitude is None else r.latitude for r in self.rows], dtype=np.float64)
        self._lon = np.array([np.nan if r.longitude is None else r.longitude for r in self.rows], dtype=np.float64)
        self._people_rows = self._rows_by_name(r.people for r in self.rows)
        self._place_rows = self._rows_by_name(r.places for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def row_of(self, photo_id: int) -> int | None:
        return self._row_of.get(int(photo_id))

    # -- reading the store ---------------------------------------------------------------------------------------
    @classmethod
    def from_store(cls, store: Any, home_radius_km: float = 30.0, gazetteer: Any = None,
                   place_radius_km: float = 15.0) -> SearchCatalog:
        """Read every photo with its first file's path, capture day, GPS, place payload and named people."""
        conn = store.conn
        paths: dict[int, str] = {}
        for pid, path_bytes, path in conn.execute("SELECT photo_id, path_bytes, path FROM files ORDER BY id"):
            if int(pid) not in paths:
                paths[int(pid)] = os.fsdecode(path_bytes) if path_bytes is not None else path
        people: dict[int, set[str]] = defaultdict(set)
        for pid, name in conn.execute(
            "SELECT DISTINCT f.photo_id, p.name FROM faces f JOIN people p ON p.id = f.person_id "
            "WHERE p.hidden = 0 AND p.name IS NOT NULL AND trim(p.name) != ''"
        ):
            people[int(pid)].add(str(name))
        places = store.get_analyses("places") if hasattr(store, "get_analyses") else {}
        rows: list[PhotoRow] = []
        for pid, taken_at, lat, lon in conn.execute("SELECT id, taken_at, latitude, longitude FROM photos ORDER BY id"):
            payload = places.get(int(pid), {})
            names = tuple(
                str(payload[k]) for k in ("city", "subregion", "region", "country") if payload.get(k)
            )
            rows.append(PhotoRow(
                photo_id=int(pid),
                path=paths.get(int(pid), ""),
                day=_day(taken_at),
                latitude=lat,
                longitude=lon,
                places=names,
                country_code=str(payload.get("country_code") or ""),
                people=tuple(sorted(people.get(int(pid), ()))),
                region=str(payload.get("region") or ""),
            ))
        return cls(rows, home_radius_km=home_radius_km, gazetteer=gazetteer, place_radius_km=place_radius_km)

    # -- names a query may use -----------------------------------------------------------------------------------
    def people_names(self) -> list[str]:
        return sorted({name for r in self.rows for name in r.people})

    def place_names(self) -> list[str]:
        return sorted({name for r in self.rows for name in r.places})

    @staticmethod
    def _rows_by_name(names_per_row: Iterable[Sequence[str]]) -> dict[str, np.ndarray]:
        """lower-case name -> int64 row indices of the rows that carry it."""
        out: dict[str, list[int]] = defaultdict(list)
        for i, names in enumerate(names_per_row):
            for name in {n.lower() for n in names}:
                out[name].append(i)
        return {k: np.array(v, dtype=np.int64) for k, v in out.items()}

    def _rows_mask(self, index: dict[str, np.ndarray], names: Iterable[str], every: bool) -> np.ndarray:
        """bool (N,): rows carrying every (or any) of ``names``, from a name -> rows index."""
        keep = np.full(len(self.rows), every, dtype=bool)  # (N,)
        for name in names:
            has = np.zeros(len(self.rows), dtype=bool)
            rows = index.get(name.lower())
            if rows is not None:
                has[rows] = True
            keep = keep & has if every else keep | has
        return keep

    def _coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """float64 (N,) latitudes and longitudes, NaN without GPS."""
        return self._lat, self._lon

    def place_centres(self) -> dict[str, np.ndarray]:
        """lower-case place name -> float64 (K, 2) (lat, lon) of the populated places of that name near the photos."""
        if self._centres is None:
            self._centres = {}
            if self.gazetteer is not None:
                coords = {(round(r.latitude, 2), round(r.longitude, 2)) for r in self.rows
                          if r.latitude is not None and r.longitude is not None}  # ~1 km cells: fewer lookups
                found: dict[str, list[tuple[float, float]]] = defaultdict(list)
                for row in self.gazetteer.rows_within(sorted(coords), self.place_radius_km):
                    found[row.city.lower()].append((row.latitude, row.longitude))
                    self._nearby_names.setdefault(row.city.lower(), row.city)
                self._centres = {k: np.array(v, dtype=np.float64) for k, v in found.items()}
        return self._centres

    def nearby_place_names(self) -> list[str]:
        """Names of the populated places within ``place_radius_km`` of some photo (empty without a gazetteer)."""
        self.place_centres()
        return sorted(self._nearby_names.values())

    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is not None:
            return self._vocabulary
        aliases: dict[str, str] = {}
        for r in self.rows:
            if r.country_code and r.places:
                for alias in country_aliases(r.country_code):
                    aliases.setdefault(alias, r.places[-1])  # the country is the last place name
        self._vocabulary = Vocabulary.build(self.people_names(), self.place_names(), aliases,
                                            nearby=self.nearby_place_names())
        return self._vocabulary

    def resolve_person(self, name: str) -> str:
        """A ``--person`` value to a known name (case-insensitive, unique first names too); CatalogError if unknown."""
        aliases = self.vocabulary().people_aliases()
        found = aliases.get(name.strip().lower())
        if found is None:
            known = ", ".join(self.people_names()) or "none yet (name people with `albumen people name`)"
            raise CatalogError(f"no person called {name!r} in this library; named people: {known}")
        return found

    def resolve_place(self, name: str) -> str:
        """A ``--place`` value to a known place name (case-insensitive, country aliases too); CatalogError if unknown."""
        found = self.vocabulary().resolve_place(name)
        if found is None:
            known = self.place_names()
            shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "") if known else "none (no geotagged photos)"
            raise CatalogError(f"no photo was taken in a place called {name!r}; places in this library: {shown}")
        return found

    # -- home ------------------------------------------------------------------------------------------------------
    def home(self) -> Home | None:
        if self._home is False:
            self._home = infer_home(
                (r.latitude, r.longitude, r.day) for r in self.rows if r.latitude is not None and r.longitude is not None
            )
        return self._home  # type: ignore[return-value]

    def distances_from_home_km(self) -> np.ndarray:
        """float64 (N,): each photo's distance from the inferred home; NaN without GPS or without a home."""
        home = self.home()
        lat, lon = self._coordinates()
        if home is None:
            return np.full(len(self.rows), np.nan)
        return distance_from_home_km(home, lat, lon)

    # -- filters ---------------------------------------------------------------------------------------------------
    def mask(self, query: ParsedQuery) -> np.ndarray:
        """bool (N,): rows that pass every filter of ``query`` (all people, any place, the dates, home)."""
        keep = np.ones(len(self.rows), dtype=bool)  # (N,)
        if query.people:
            keep &= self._rows_mask(self._people_rows, query.people, every=True)
        if query.places:
            keep &= self._place_mask(query.places)
        if query.dates is not None:
            keep &= query.dates.matches_ordinals(self._days)
        if query.near_home is not None:
            with np.errstate(invalid="ignore"):
                dist = self.distances_from_home_km()
                near = dist <= self.home_radius_km  # NaN compares False
                far = dist > self.home_radius_km
            keep &= near if query.near_home else far
        return keep

    def _place_mask(self, places: Sequence[str]) -> np.ndarray:
        """bool (N,): photos named after any of ``places`` or taken within ``place_radius_km`` of one of that name."""
        wanted = {p.lower() for p in places}
        by_name = self._rows_mask(self._place_rows, wanted, every=False)  # (N,)
        centres = [c for name in wanted if (c := self.place_centres().get(name)) is not None]
        if not centres:
            return by_name
        lat, lon = self._coordinates()
        points = np.concatenate(centres)  # (K, 2)
        with np.errstate(invalid="ignore"):
            km = haversine_km(lat[:, None], lon[:, None], points[None, :, 0], points[None, :, 1])  # (N, K)
            near = (km <= self.place_radius_km).any(axis=1)  # NaN (no GPS) compares False
        return by_name | near
