from __future__ import annotations

from datetime import date, timedelta

import pytest

from albumen.search.dates import DateFilter, DateRange, easter_sunday, find_dates, parse_date_bound

TODAY = date(2026, 11, 28)  # a Saturday


def one_range(text: str, today: date = TODAY) -> DateRange:
    found, spans = find_dates(text, today)
    assert found is not None and spans, text
    assert len(found.ranges) == 1, found
    return found.ranges[0]


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("in 2023", date(2023, 1, 1), date(2024, 1, 1)),
        ("last summer", date(2026, 6, 1), date(2026, 9, 1)),
        ("this winter", date(2026, 12, 1), date(2027, 3, 1)),
        ("winter 2023", date(2023, 12, 1), date(2024, 3, 1)),
        ("christmas 2022", date(2022, 12, 24), date(2022, 12, 27)),
        ("last Christmas", date(2025, 12, 24), date(2025, 12, 27)),
        ("easter 2024", date(2024, 3, 29), date(2024, 4, 2)),
        ("new year's eve 2023", date(2023, 12, 31), date(2024, 1, 1)),
        ("thanksgiving 2025", date(2025, 11, 27), date(2025, 12, 1)),
        ("in May 2021", date(2021, 5, 1), date(2021, 6, 1)),
        ("jan 2020", date(2020, 1, 1), date(2020, 2, 1)),
        ("on 2023-05-17", date(2023, 5, 17), date(2023, 5, 18)),
        ("17 May 2023", date(2023, 5, 17), date(2023, 5, 18)),
        ("May 17th, 2023", date(2023, 5, 17), date(2023, 5, 18)),
        ("between 2019 and 2021", date(2019, 1, 1), date(2022, 1, 1)),
        ("since 2020", date(2020, 1, 1), date.max),
        ("after 2020", date(2021, 1, 1), date.max),
        ("before June 2020", date.min, date(2020, 6, 1)),
        ("until 2020", date.min, date(2021, 1, 1)),
        ("last week", date(2026, 11, 16), date(2026, 11, 23)),
        ("this month", date(2026, 11, 1), date(2026, 12, 1)),
        ("last month", date(2026, 10, 1), date(2026, 11, 1)),
        ("last year", date(2025, 1, 1), date(2026, 1, 1)),
        ("3 weeks ago", date(2026, 11, 2), date(2026, 11, 9)),
        ("two years ago", date(2024, 1, 1), date(2025, 1, 1)),
        ("the past 2 weeks", date(2026, 11, 15), date(2026, 11, 29)),
        ("yesterday", date(2026, 11, 27), date(2026, 11, 28)),
    ],
)
def test_absolute_and_relative_phrases(text: str, start: date, end: date) -> None:
    r = one_range(text)
    assert (r.start, r.end) == (start, end)


def test_last_summer_during_summer_means_the_previous_one() -> None:
    assert one_range("last summer", date(2026, 7, 10)) == DateRange(date(2025, 6, 1), date(2025, 9, 1))


def test_this_winter_in_february_is_the_current_winter() -> None:
    assert one_range("this winter", date(2026, 2, 10)) == DateRange(date(2025, 12, 1), date(2026, 3, 1))


def test_recurring_phrase_without_year_means_every_year() -> None:
    found, _ = find_dates("at Christmas", TODAY)
    assert found is not None
    assert found.matches(date(2019, 12, 25)) and found.matches(date(2025, 12, 24))
    assert not found.matches(date(2025, 12, 28))
    summer, _ = find_dates("in summer", TODAY)
    assert summer is not None and summer.matches(date(2011, 7, 1)) and not summer.matches(date(2011, 9, 1))


def test_spans_cover_the_phrase_and_its_preposition() -> None:
    text = "dog on the beach at Christmas"
    _, spans = find_dates(text, TODAY)
    assert [text[a:b] for a, b in spans] == ["at Christmas"]


def test_two_phrases_intersect() -> None:
    found, spans = find_dates("in summer, during 2023", TODAY)
    assert found is not None and len(spans) == 2
    assert found.ranges == (DateRange(date(2023, 6, 1), date(2023, 9, 1)),)


@pytest.mark.parametrize("text", ["may I see the dog", "photos of Jan", "room 2101", "born in 1823", "2023-13 report",
                                  "dog on the beach"])
def test_non_dates_are_left_alone(text: str) -> None:
    assert find_dates(text, TODAY) == (None, [])


def test_easter_computus_known_dates() -> None:
    assert [easter_sunday(y) for y in (2000, 2019, 2024, 2025, 2038)] == [
        date(2000, 4, 23), date(2019, 4, 21), date(2024, 3, 31), date(2025, 4, 20), date(2038, 4, 25)]


def test_parse_date_bound_and_errors() -> None:
    assert parse_date_bound("2023-05") == DateRange(date(2023, 5, 1), date(2023, 6, 1))
    assert parse_date_bound("March 2024").start == date(2024, 3, 1)
    with pytest.raises(ValueError, match="not a date"):
        parse_date_bound("soon")
    with pytest.raises(ValueError):
        DateRange(date(2020, 1, 2), date(2020, 1, 1))


def test_filter_intersection_keeps_text() -> None:
    a = DateFilter((DateRange(date(2020, 1, 1), date(2021, 1, 1)),), "in 2020")
    b = DateFilter((DateRange(date(2020, 6, 1), date(2020, 9, 1)),), "summer")
    both = a.intersect(b)
    assert both.ranges == (DateRange(date(2020, 6, 1), date(2020, 9, 1)),) and both.text == "in 2020 + summer"


def test_vectorised_matches_equal_the_plain_rule() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(30):
        starts = [date(2020, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 1500, size=int(rng.integers(1, 8)))]
        ranges = tuple(sorted((DateRange(s, s + timedelta(days=int(rng.integers(1, 90)))) for s in starts),
                              key=lambda r: r.start))  # may overlap or touch
        f = DateFilter(ranges)
        days = [date(2019, 12, 1) + timedelta(days=int(d)) for d in rng.integers(0, 1700, size=300)]
        ordinals = np.array([d.toordinal() for d in days] + [-1], dtype=np.int64)
        assert f.matches_ordinals(ordinals).tolist() == [f.matches(d) for d in days] + [False]
