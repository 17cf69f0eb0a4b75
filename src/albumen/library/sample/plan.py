"""Plan a phone's photo library: the timeline (home days, trips, birthdays, bursts), the folder layout and, for every
file, which real source photo it shows and how that photo is transformed.

The plan is a pure function of (sources, number of photos, seed): no pixels are read or written here, so the same
arguments always give the same plan, and the plan can be checked in tests without touching the disk. What the files
look like is decided here; how pixels are produced lives in ``transforms.py`` and ``render.py``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from albumen.library.sample.places import HOME, City, city_by_id, local_offset
from albumen.library.sample.sources import SourceImage

__all__ = [
    "Transform",
    "PhotoPlan",
    "TripPlan",
    "EventPlan",
    "LibraryPlan",
    "plan_library",
    "MIN_PHOTOS",
    "TIMELINE_START",
    "TIMELINE_END",
]

MIN_PHOTOS = 40
TIMELINE_START = date(2023, 1, 1)
TIMELINE_END = date(2025, 12, 31)

# (city id, first day, last day): one trip per city, spread over the three years.
_TRIPS = (
    ("beijing", date(2023, 5, 12), date(2023, 5, 19)),
    ("cape-canaveral", date(2023, 11, 2), date(2023, 11, 6)),
    ("tokyo", date(2024, 4, 3), date(2024, 4, 10)),
    ("paris", date(2024, 9, 14), date(2024, 9, 20)),
    ("sydney", date(2025, 1, 8), date(2025, 1, 16)),
)
# Grace Hopper was born on 9 December: her birthday is celebrated at home every year.
_BIRTHDAYS = tuple((date(year, 12, 9), "Grace Hopper") for year in (2023, 2024, 2025))
# The owner switched phones in mid-2024: Make/Model and the screenshot size change with it.
_PHONES = (
    (date(2024, 7, 1), ("Apple", "iPhone 12"), (1170, 2532)),
    (date(9999, 1, 1), ("Google", "Pixel 8"), (1080, 2400)),
)
_FORMATS = (("JPEG", 0.80), ("WEBP", 0.08), ("PNG", 0.06), ("HEIF", 0.06))
_EXT = {"JPEG": "JPG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "HEIC"}
_BURST_P, _EDIT_P, _NO_GPS_P = 0.10, 0.07, 0.05


@dataclass(frozen=True)
class Transform:
    """How one file's pixels derive from its source (all coordinates in the source's base pixels, see render.py).

    Order: crop -> flip left/right -> colour -> resize by ``scale`` -> store rotated for ``orientation``.
    """

    crop: tuple[int, int, int, int]  # (left, top, right, bottom)
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    grayscale: bool = False
    scale: float = 1.0
    orientation: int = 1  # EXIF orientation: the stored pixels are rotated so that a viewer applying it shows them upright
    quality: int = 90  # JPEG / WebP / HEIC quality

    def to_json(self) -> dict[str, object]:
        return {
            "crop": list(self.crop),
            "flip": self.flip,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "grayscale": self.grayscale,
            "scale": self.scale,
            "orientation": self.orientation,
            "quality": self.quality,
        }


@dataclass(frozen=True)
class PhotoPlan:
    """One file of the library, fully decided."""

    path: str  # relative, POSIX separators
    kind: str  # "photo" | "edited" | "screenshot"
    format: str  # Pillow format name: JPEG, PNG, WEBP, HEIF
    source_id: str
    transform: Transform
    local_time: datetime  # naive wall-clock time where it was taken
    offset: str  # "+HH:MM" of that place at that time
    city_id: str
    gps: tuple[float, float, float] | None  # (lat, lon, altitude m); None: location services off / screenshot
    make: str | None
    model: str | None
    trip_id: str | None = None
    event_id: str | None = None
    burst_id: str | None = None
    edit_of: str | None = None
    screen_size: tuple[int, int] | None = None  # screenshots only: (width, height)

    @property
    def utc_time(self) -> datetime:
        sign = 1 if self.offset[0] == "+" else -1
        delta = timedelta(hours=int(self.offset[1:3]), minutes=int(self.offset[4:6]))
        return self.local_time - sign * delta


@dataclass(frozen=True)
class TripPlan:
    id: str
    city_id: str
    start: date
    end: date


@dataclass(frozen=True)
class EventPlan:
    id: str
    kind: str
    title: str
    day: date
    city_id: str
    people: tuple[str, ...]
    hero: str | None = None  # whose birthday


@dataclass(frozen=True)
class LibraryPlan:
    seed: int
    photos: tuple[PhotoPlan, ...]
    trips: tuple[TripPlan, ...]
    events: tuple[EventPlan, ...]
    sources: tuple[SourceImage, ...] = field(repr=False)


@dataclass
class _Shot:
    """A photo before numbering: when, where, what; becomes one or more PhotoPlans."""

    when: datetime
    city: City
    source: SourceImage
    trip_id: str | None = None
    event_id: str | None = None
    burst: int = 1  # frames
    edited: bool = False
    screenshot: bool = False


def _phone(day: date) -> tuple[tuple[str, str], tuple[int, int]]:
    for until, make_model, screen in _PHONES:
        if day < until:
            return make_model, screen
    raise AssertionError("unreachable")


def _gps(rng: random.Random, city: City) -> tuple[float, float, float]:
    """A point uniformly spread in a disc of ``city.radius_km`` around the centre (6 decimals, ~0.1 m)."""
    r = city.radius_km * math.sqrt(rng.random())
    theta = rng.uniform(0, 2 * math.pi)
    dlat = r * math.cos(theta) / 111.32
    dlon = r * math.sin(theta) / (111.32 * math.cos(math.radians(city.lat)))
    return round(city.lat + dlat, 6), round(city.lon + dlon, 6), round(rng.uniform(2, 120), 1)


def _sample_transform(rng: random.Random, source: SourceImage, size: tuple[int, int]) -> Transform:
    """A random crop that keeps every face, an occasional mirror, mild colour changes and a rotation tag."""
    w, h = size
    frac = rng.uniform(0.62, 1.0)
    cw, ch = max(16, round(w * frac)), max(16, round(h * frac))
    lo_x, hi_x, lo_y, hi_y = 0, w - cw, 0, h - ch
    if source.faces:  # the crop must contain every face whole: x0 <= left and x0 + cw >= right
        l = min(f.box[0] for f in source.faces)
        t = min(f.box[1] for f in source.faces)
        r = max(f.box[2] for f in source.faces)
        b = max(f.box[3] for f in source.faces)
        cw, ch = min(w, max(cw, r - l)), min(h, max(ch, b - t))
        lo_x, hi_x = max(0, r - cw), min(w - cw, l)
        lo_y, hi_y = max(0, b - ch), min(h - ch, t)
    x0 = rng.randint(lo_x, max(lo_x, hi_x))
    y0 = rng.randint(lo_y, max(lo_y, hi_y))
    gray_source = "black and white" in source.labels
    orientation = rng.choices((1, 6, 8, 3), weights=(84, 10, 4, 2))[0]
    return Transform(
        crop=(x0, y0, x0 + cw, y0 + ch),
        flip=rng.random() < 0.3,
        brightness=round(rng.uniform(0.85, 1.15), 3),
        contrast=round(rng.uniform(0.85, 1.15), 3),
        saturation=1.0 if gray_source else round(rng.uniform(0.75, 1.3), 3),
        grayscale=not gray_source and rng.random() < 0.04,
        scale=round(rng.uniform(0.75, 1.0), 3),
        orientation=orientation,
        quality=rng.randint(80, 95),
    )


def _burst_frame(rng: random.Random, base: Transform, size: tuple[int, int]) -> Transform:
    """The next frame of a burst: the camera moved a few pixels."""
    l, t, r, b = base.crop
    w, h = size
    dx = max(-l, min(w - r, rng.randint(-6, 6)))
    dy = max(-t, min(h - b, rng.randint(-6, 6)))
    return replace(base, crop=(l + dx, t + dy, r + dx, b + dy), brightness=round(base.brightness * rng.uniform(0.97, 1.03), 3))


def _edited(base: Transform) -> Transform:
    """What a phone's photo editor exports: more saturation and contrast, baked upright."""
    return replace(
        base,
        saturation=round(min(1.6, base.saturation * 1.25), 3),
        contrast=round(base.contrast * 1.1, 3),
        orientation=1,
    )


def _times(rng: random.Random, day: date, count: int) -> list[datetime]:
    start = datetime(day.year, day.month, day.day, 7, 30)
    return sorted(start + timedelta(seconds=rng.randint(0, 14 * 3600)) for _ in range(count))


def _split(total: int, weights: list[float], minimum: int) -> list[int]:
    raw = [max(minimum, int(total * w / sum(weights))) for w in weights]
    i = 0
    while sum(raw) < total:
        raw[i % len(raw)] += 1
        i += 1
    return raw


def _shots_for_day(
    rng: random.Random, day: date, city: City, budget: int, pool: list[SourceImage], weights: list[float], **tags: str
) -> list[_Shot]:
    """Shots filling ``budget`` files on ``day``: singles, bursts (several files) and photos with an edited copy."""
    shots: list[_Shot] = []
    times = _times(rng, day, budget)
    used = 0
    while used < budget:
        source = rng.choices(pool, weights=weights)[0]
        left = budget - used
        shot = _Shot(times[len(shots) % len(times)], city, source, **tags)  # type: ignore[arg-type]
        if left >= 3 and rng.random() < _BURST_P:
            shot.burst = rng.randint(3, min(5, left))
        elif left >= 2 and rng.random() < _EDIT_P:
            shot.edited = True
        shots.append(shot)
        used += shot.burst + int(shot.edited)
    return shots


def _pool(sources: tuple[SourceImage, ...], city: City, people_weight: float) -> tuple[list[SourceImage], list[float]]:
    """Sources that can be shot in ``city`` (place-bound scenes only where they are) and how often."""
    pool = [s for s in sources if s.place in (None, city.id)]
    weights = []
    n_people = sum(1 for s in pool if s.faces) or 1
    n_other = sum(1 for s in pool if not s.faces) or 1
    for s in pool:
        w = people_weight / n_people if s.faces else (1 - people_weight) / n_other
        weights.append(w * (4.0 if s.place == city.id else 1.0))
    return pool, weights


def _plan_shots(rng: random.Random, sources: tuple[SourceImage, ...], n: int) -> tuple[list[_Shot], list[TripPlan], list[EventPlan]]:
    n_screens = max(2, round(n * 0.05))
    n_birthday = max(2 * len(_BIRTHDAYS), round(n * 0.10))
    n_trips = max(2 * len(_TRIPS), round(n * 0.35))
    n_home = n - n_screens - n_birthday - n_trips
    trips = [TripPlan(f"trip-{i + 1}", c, s, e) for i, (c, s, e) in enumerate(_TRIPS)]
    events = [
        EventPlan(f"event-{i + 1}", "birthday", f"{who.split()[0]}'s birthday", day, HOME.id, (), who)
        for i, (day, who) in enumerate(_BIRTHDAYS)
    ]
    shots: list[_Shot] = []
    # Trips: photos spread over every day of the trip, more on longer trips.
    for trip, budget in zip(trips, _split(n_trips, [(t.end - t.start).days + 1 for t in trips], 2)):
        city = city_by_id(trip.city_id)
        pool, weights = _pool(sources, city, 0.3)
        days = [trip.start + timedelta(d) for d in range((trip.end - trip.start).days + 1)]
        for day, day_budget in zip(days, _split(budget, [1.0] * len(days), 0)):
            if day_budget:
                shots += _shots_for_day(rng, day, city, day_budget, pool, weights, trip_id=trip.id)
    # Birthdays: mostly the people, at home, all on one evening.
    for event, budget in zip(events, _split(n_birthday, [1.0] * len(events), 2)):
        pool, weights = _pool(tuple(s for s in sources if s.place is None), HOME, 0.7)
        party = _shots_for_day(rng, event.day, HOME, budget, pool, weights, event_id=event.id)
        hero = next((s for s in sources if event.hero in s.people), None)
        if hero is not None:  # the person whose birthday it is is in the first picture of the evening
            party[0].source = hero
        shots += party
    # Everyday life at home on random days outside trips and birthdays.
    busy = {t.start + timedelta(d) for t in trips for d in range((t.end - t.start).days + 1)} | {e.day for e in events}
    span = (TIMELINE_END - TIMELINE_START).days + 1
    free = [TIMELINE_START + timedelta(d) for d in range(span) if TIMELINE_START + timedelta(d) not in busy]
    pool, weights = _pool(sources, HOME, 0.35)
    day_budgets: dict[date, int] = {}
    left = n_home
    while left > 0:  # most days have a photo or two, some a handful (where bursts and edits happen)
        day = free[rng.randrange(len(free))]
        k = min(left, rng.choice((1, 1, 2, 2, 3, 4, 6, 8)))
        day_budgets[day] = day_budgets.get(day, 0) + k
        left -= k
    for day in sorted(day_budgets):
        shots += _shots_for_day(rng, day, HOME, day_budgets[day], pool, weights)
    # Screenshots: documents and simple scenes seen on the phone's screen.
    screen_pool = [s for s in sources if s.screenshot_ok] or [s for s in sources if not s.faces]
    for _ in range(n_screens):
        day = free[rng.randrange(len(free))]
        shots.append(_Shot(_times(rng, day, 1)[0], HOME, rng.choice(screen_pool), screenshot=True))
    return shots, trips, events


def _people_in(event: EventPlan, photos: list[PhotoPlan], by_id: dict[str, SourceImage]) -> EventPlan:
    names = sorted({p for ph in photos if ph.event_id == event.id for p in by_id[ph.source_id].people})
    return replace(event, people=tuple(names))


def plan_library(sources: tuple[SourceImage, ...], sizes: dict[str, tuple[int, int]], n_photos: int, seed: int) -> LibraryPlan:
    """Plan exactly ``n_photos`` files (edited copies and screenshots included; hostile files are extra).

    Args:
        sources: the real photos available (``sources.find_sources``).
        sizes: source id -> (width, height) of its base image (``render.base_size``).
        n_photos: how many files, at least ``MIN_PHOTOS``.
        seed: the same seed and arguments give the same plan.
    """
    if n_photos < MIN_PHOTOS:
        raise ValueError(f"a sample library needs at least {MIN_PHOTOS} photos (asked for {n_photos})")
    rng = random.Random(seed)
    shots, trips, events = _plan_shots(rng, sources, n_photos)
    # Number files like a phone does: one counter in order of capture (UTC), folders by local year/month.
    shots.sort(key=lambda s: (s.when - _offset_delta(s.city, s.when), s.source.id))
    photos: list[PhotoPlan] = []
    counter = 0
    taken: set[str] = set()
    for shot in shots:
        (make, model), screen = _phone(shot.when.date())
        offset = local_offset(shot.city, shot.when)
        counter = counter % 9999 + 1
        folder = f"{shot.when:%Y/%m}"
        if shot.screenshot:
            path = f"Screenshots/{folder}/Screenshot_{shot.when:%Y%m%d-%H%M%S}.png"
            path = _unique(path, taken)
            w, h = sizes[shot.source.id]
            photos.append(PhotoPlan(path, "screenshot", "PNG", shot.source.id, Transform((0, 0, w, h)), shot.when,
                                    offset, shot.city.id, None, None, None, screen_size=screen))
            continue
        fmt = rng.choices([f for f, _ in _FORMATS], weights=[p for _, p in _FORMATS])[0]
        base = _sample_transform(rng, shot.source, sizes[shot.source.id])
        if fmt == "HEIF":
            base = replace(base, orientation=1)  # HEIF carries rotation in its own container boxes, not in EXIF
        gps = None if rng.random() < _NO_GPS_P else _gps(rng, shot.city)
        common = dict(city_id=shot.city.id, make=make, model=model, trip_id=shot.trip_id, event_id=shot.event_id)
        burst_id = f"burst-{counter:04d}-{shot.when:%Y%m%d}" if shot.burst > 1 else None
        frame_t, when = base, shot.when
        for frame in range(shot.burst):
            if frame:
                counter = counter % 9999 + 1
                frame_t = _burst_frame(rng, frame_t, sizes[shot.source.id])
                when = when + timedelta(milliseconds=rng.randint(250, 800))
            name = _unique(f"DCIM/{folder}/IMG_{counter:04d}.{_EXT[fmt]}", taken)
            photos.append(PhotoPlan(name, "photo", fmt, shot.source.id, frame_t, when, offset, gps=gps,
                                    burst_id=burst_id, **common))  # type: ignore[arg-type]
        if shot.edited:
            edited = _unique(f"DCIM/{folder}/IMG_E{counter:04d}.{_EXT[fmt]}", taken)
            photos.append(PhotoPlan(edited, "edited", fmt, shot.source.id, _edited(base), shot.when, offset, gps=gps,
                                    edit_of=photos[-1].path, **common))  # type: ignore[arg-type]
    assert len(photos) == n_photos, (len(photos), n_photos)
    by_id = {s.id: s for s in sources}
    events = [_people_in(e, photos, by_id) for e in events]
    return LibraryPlan(seed, tuple(photos), tuple(trips), tuple(events), sources)


def _offset_delta(city: City, when: datetime) -> timedelta:
    offset = when.replace(tzinfo=ZoneInfo(city.timezone)).utcoffset()
    assert offset is not None
    return offset


def _unique(path: str, taken: set[str]) -> str:
    """The counter wraps after 9999, as on a phone; the rare clash in one month gets a suffix."""
    candidate, n = path, 1
    while candidate.lower() in taken:
        stem, dot, ext = path.rpartition(".")
        candidate = f"{stem}_{n}{dot}{ext}"
        n += 1
    taken.add(candidate.lower())
    return candidate
