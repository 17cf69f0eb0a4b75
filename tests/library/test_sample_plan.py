"""Sample library planning: a pure function of (sources, size, seed) that lays out a believable phone export."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from albumen.library.sample.places import HOME, TRIP_CITIES, city_by_id, local_offset
from albumen.library.sample.plan import MIN_PHOTOS, plan_library
from albumen.library.sample.render import base_size
from albumen.library.sample.sources import CATALOGUE, find_sources


@pytest.fixture(scope="module")
def sources():  # only what ships in wheels: the same on every machine
    return find_sources(extras_dirs=())


@pytest.fixture(scope="module")
def sizes(sources):
    return {s.id: base_size(s.path) for s in sources}


@pytest.fixture(scope="module")
def plan(sources, sizes):
    return plan_library(sources, sizes, 300, seed=7)


def test_wheel_sources_are_present_and_offline(sources) -> None:
    ids = {s.id for s in sources}
    # Files inside the installed wheels, no pooch download involved.
    assert {"skimage/astronaut", "skimage/camera", "matplotlib/grace_hopper", "skimage/chelsea", "skimage/coffee",
            "skimage/rocket", "sklearn/china", "sklearn/flower"} <= ids
    assert all(s.path is not None and s.path.is_file() for s in sources)
    assert not any(s.origin == "mate-backgrounds" for s in sources)  # extras_dirs=() excludes the Debian photos


def test_catalogue_faces_lie_inside_their_images(sources, sizes) -> None:
    for s in sources:
        for face in s.faces:
            l, t, r, b = face.box
            w, h = sizes[s.id]
            assert 0 <= l < r <= w and 0 <= t < b <= h, s.id
    people = {p for s in CATALOGUE for p in s.people}
    assert {"Eileen Collins", "Grace Hopper", "The Cameraman"} <= people


def test_plan_is_deterministic_and_seed_dependent(sources, sizes, plan) -> None:
    assert plan_library(sources, sizes, 300, seed=7) == plan
    other = plan_library(sources, sizes, 300, seed=8)
    assert other.photos != plan.photos


def test_exact_count_and_unique_paths(sources, sizes) -> None:
    for n in (MIN_PHOTOS, 97, 300, 12_000):  # --photos scales to 10,000+ for benchmarks
        photos = plan_library(sources, sizes, n, seed=1).photos
        assert len(photos) == n
        assert len({p.path.lower() for p in photos}) == n
    with pytest.raises(ValueError, match="at least"):
        plan_library(sources, sizes, MIN_PHOTOS - 1, seed=1)


def test_layout_spans_three_years_with_phone_names(plan) -> None:
    years = {p.local_time.year for p in plan.photos}
    assert {2023, 2024, 2025} <= years
    for p in plan.photos:
        folder = f"{p.local_time:%Y/%m}"
        if p.kind == "screenshot":
            assert p.path.startswith(f"Screenshots/{folder}/Screenshot_") and p.path.endswith(".png")
            assert p.gps is None and p.format == "PNG" and p.screen_size in {(1170, 2532), (1080, 2400)}
        else:
            assert p.path.startswith(f"DCIM/{folder}/IMG_")
    assert set(Counter(p.format for p in plan.photos)) == {"JPEG", "PNG", "WEBP", "HEIF"}


def test_trips_visit_distinct_real_cities_with_local_offsets(plan) -> None:
    assert len({t.city_id for t in plan.trips}) >= 3
    for trip in plan.trips:
        city = city_by_id(trip.city_id)
        photos = [p for p in plan.photos if p.trip_id == trip.id]
        assert photos, trip.id
        for p in photos:
            assert trip.start <= p.local_time.date() <= trip.end and p.city_id == city.id
            assert p.offset == local_offset(city, p.local_time)
            if p.gps:  # within the city's radius (1 degree of latitude ~ 111 km)
                assert abs(p.gps[0] - city.lat) * 111 <= city.radius_km + 0.1
    home = [p for p in plan.photos if p.trip_id is None]
    assert all(p.city_id == HOME.id for p in home)


def test_place_bound_scenes_only_where_they_are(plan) -> None:
    for p in plan.photos:
        if p.source_id == "sklearn/china":
            assert p.city_id == "beijing"
        if p.source_id == "skimage/rocket":
            assert p.city_id == "cape-canaveral"


def test_birthdays_bursts_and_edited_copies(plan) -> None:
    birthdays = [e for e in plan.events if e.kind == "birthday"]
    assert birthdays and all(e.day.month == 12 and e.day.day == 9 for e in birthdays)
    for e in birthdays:
        shots = [p for p in plan.photos if p.event_id == e.id]
        assert shots and all(p.local_time.date() == e.day for p in shots)
        assert "Grace Hopper" in e.people  # the person whose birthday it is appears
    bursts: dict[str, list] = {}
    for p in plan.photos:
        if p.burst_id:
            bursts.setdefault(p.burst_id, []).append(p)
    assert bursts
    for frames in bursts.values():
        assert len(frames) >= 3 and len({f.source_id for f in frames}) == 1
        span = (max(f.local_time for f in frames) - min(f.local_time for f in frames)).total_seconds()
        assert 0 < span < 5  # seconds apart
    edited = [p for p in plan.photos if p.kind == "edited"]
    assert edited
    by_path = {p.path: p for p in plan.photos}
    for e in edited:
        original = by_path[e.edit_of]
        assert Path(e.path).name == Path(original.path).name.replace("IMG_", "IMG_E")
        assert e.local_time == original.local_time and e.source_id == original.source_id


def test_crops_keep_every_face_and_rotations_exist(plan, sources) -> None:
    faces = {s.id: s.faces for s in sources}
    for p in plan.photos:
        l, t, r, b = p.transform.crop
        for face in faces[p.source_id]:
            fl, ft, fr, fb = face.box
            # burst frames may shift by a few pixels; the face stays (almost) whole
            assert fl >= l - 8 and ft >= t - 8 and fr <= r + 8 and fb <= b + 8, p.path
    orientations = Counter(p.transform.orientation for p in plan.photos)
    assert orientations[6] and set(orientations) <= {1, 3, 6, 8}
    assert all(p.transform.orientation == 1 for p in plan.photos if p.format == "HEIF")


def test_people_have_several_photos_each(plan, sources) -> None:
    by_id = {s.id: s for s in sources}
    counts = Counter(name for p in plan.photos for name in by_id[p.source_id].people)
    assert set(counts) == {"Eileen Collins", "Grace Hopper", "The Cameraman"}
    assert min(counts.values()) >= 5


def test_local_offset_follows_daylight_saving() -> None:
    from datetime import datetime

    assert local_offset(HOME, datetime(2024, 1, 10, 12)) == "-08:00"
    assert local_offset(HOME, datetime(2024, 7, 10, 12)) == "-07:00"
    sydney = next(c for c in TRIP_CITIES if c.id == "sydney")
    assert local_offset(sydney, datetime(2025, 1, 10, 12)) == "+11:00"
