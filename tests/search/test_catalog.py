"""Place filters by name and by distance: "Sydney" also means photos geocoded to Sydney's suburbs."""

from __future__ import annotations

from datetime import date

import numpy as np

from albumen.places import GeoNamesGeocoder, GeoRow, haversine_km
from albumen.search.catalog import PhotoRow, SearchCatalog
from albumen.search.query import parse_query

GAZETTEER = GeoNamesGeocoder([
    GeoRow(-33.8679, 151.2073, "Sydney", "New South Wales", "", "AU"),
    GeoRow(-33.8404, 151.2070, "North Sydney", "New South Wales", "", "AU"),
    GeoRow(-33.8730, 151.2430, "Shoreline", "New South Wales", "", "AU"),  # a place that is also a word
    GeoRow(48.8566, 2.3522, "Paris", "Ile-de-France", "Paris", "FR"),
    GeoRow(33.6609, -95.5555, "Paris", "Texas", "Lamar County", "US"),
])


def _rows() -> list[PhotoRow]:
    day = date(2025, 1, 10)
    return [
        PhotoRow(1, "/a.jpg", day, -33.84, 151.21, ("North Sydney", "New South Wales", "Australia"), "AU"),
        PhotoRow(2, "/b.jpg", day, -33.87, 151.20, ("Sydney", "New South Wales", "Australia"), "AU"),
        PhotoRow(3, "/c.jpg", day, 48.86, 2.34, ("Paris", "Ile-de-France", "France"), "FR"),
        PhotoRow(4, "/d.jpg", day, None, None, ()),
        PhotoRow(5, "/e.jpg", day, -34.43, 150.89, ("Wollongong", "New South Wales", "Australia"), "AU"),  # 75 km
    ]


def test_a_city_name_matches_its_suburbs_within_the_radius() -> None:
    catalog = SearchCatalog(_rows(), gazetteer=GAZETTEER, place_radius_km=15)
    vocab = catalog.vocabulary()
    q = parse_query("beach in Sydney", vocab, date(2026, 1, 1))
    assert q.places == ("Sydney",) and q.text == "beach"
    assert catalog.mask(q).tolist() == [True, True, False, False, False]
    # without a gazetteer only the photo geocoded to exactly "Sydney" matches
    plain = SearchCatalog(_rows())
    assert plain.mask(parse_query("beach in Sydney", plain.vocabulary(), date(2026, 1, 1))).tolist() == [
        False, True, False, False, False]


def test_only_places_near_the_photos_join_the_vocabulary() -> None:
    catalog = SearchCatalog(_rows(), gazetteer=GAZETTEER, place_radius_km=15)
    assert catalog.nearby_place_names() == ["North Sydney", "Paris", "Shoreline", "Sydney"]  # not Paris, Texas
    centres = catalog.place_centres()["paris"]
    assert centres.shape == (1, 2) and haversine_km(48.86, 2.34, centres[0, 0], centres[0, 1]) < 2
    assert catalog.resolve_place("shoreline") == "Shoreline"  # a flag value is always a name


def test_nearby_names_that_are_words_need_to_look_like_names() -> None:
    catalog = SearchCatalog(_rows(), gazetteer=GAZETTEER, place_radius_km=15)
    vocab = catalog.vocabulary()
    today = date(2026, 1, 1)
    assert parse_query("walk along the shoreline", vocab, today).places == ()
    assert parse_query("walk in shoreline", vocab, today).places == ("Shoreline",)
    assert parse_query("Shoreline walk", vocab, today).places == ("Shoreline",)
    # a name some photo carries stays case-insensitive anywhere
    assert parse_query("north sydney harbour", vocab, today).places == ("North Sydney",)


def test_place_mask_is_a_union_over_names_and_ignores_photos_without_gps() -> None:
    catalog = SearchCatalog(_rows(), gazetteer=GAZETTEER, place_radius_km=15)
    mask = catalog._place_mask(["Paris", "North Sydney"])
    assert mask.dtype == np.bool_ and mask.tolist() == [True, True, True, False, False]
