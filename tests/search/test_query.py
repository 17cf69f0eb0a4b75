from __future__ import annotations

from datetime import date

import pytest

from albumen.search.dates import DateRange
from albumen.search.query import ParsedQuery, Vocabulary, parse_query

TODAY = date(2026, 11, 28)
VOCAB = Vocabulary.build(
    people=["Anna Berg", "Tom", "June"],
    places=["Paris", "France", "Lisbon", "Portugal", "United States", "New York"],
    aliases={"USA": "United States", "US": "United States", "America": "United States", "Atlantis": "Nowhere"},
)


def parse(text: str) -> ParsedQuery:
    return parse_query(text, VOCAB, TODAY)


@pytest.mark.parametrize(
    ("text", "semantic", "people", "places"),
    [
        ("dog on the beach", "dog on the beach", (), ()),
        ("dog on the beach with Anna", "dog on the beach", ("Anna Berg",), ()),
        ("Anna and Tom", "", ("Anna Berg", "Tom"), ()),
        ("photos of Anna Berg", "", ("Anna Berg",), ()),
        ("show me pictures of the sea in Portugal", "sea", (), ("Portugal",)),
        ("sunset in the USA", "sunset", (), ("United States",)),
        ("skyline of new york", "skyline", (), ("New York",)),
        ("photos of June in Paris", "", ("June",), ("Paris",)),
        ("Lisbon or Paris", "", (), ("Lisbon", "Paris")),
        ("pictures of Anna with a cake", "a cake", ("Anna Berg",), ()),
        ("mountains, lakes and forests", "mountains, lakes and forests", (), ()),
    ],
)
def test_people_places_and_semantic_rest(text: str, semantic: str, people: tuple, places: tuple) -> None:
    q = parse(text)
    assert (q.text, q.people, q.places) == (semantic, people, places)


def test_dates_and_people_together() -> None:
    q = parse("Anna and Tom at Christmas")
    assert q.people == ("Anna Berg", "Tom") and q.text == ""
    assert q.dates is not None and q.dates.matches(date(2024, 12, 25)) and not q.dates.matches(date(2024, 7, 1))
    q = parse("dog on the beach with Anna last summer")
    assert q.text == "dog on the beach" and q.people == ("Anna Berg",)
    assert q.dates is not None and q.dates.ranges == (DateRange(date(2026, 6, 1), date(2026, 9, 1)),)


def test_a_known_name_wins_over_a_month() -> None:
    q = parse("June at the lake in 2023")
    assert q.people == ("June",) and q.text == "lake"
    assert q.dates is not None and q.dates.ranges == (DateRange(date(2023, 1, 1), date(2024, 1, 1)),)


def test_short_capital_aliases_do_not_match_ordinary_words() -> None:
    q = parse("us at the beach")
    assert q.places == () and q.text == "us at the beach"


def test_unique_first_names_only() -> None:
    vocab = Vocabulary.build(["Anna Berg", "Anna Lind", "Tom Smith"], [])
    assert parse_query("Anna", vocab, TODAY).people == ()
    assert parse_query("Tom", vocab, TODAY).people == ("Tom Smith",)


def test_articles_and_titles_are_not_first_names() -> None:
    vocab = Vocabulary.build(["The Cameraman", "Dr Watson"], [])
    assert parse_query("the moon", vocab, TODAY).people == ()
    assert parse_query("dr who", vocab, TODAY).people == ()
    assert parse_query("the cameraman at the moon", vocab, TODAY).people == ("The Cameraman",)


def test_home_phrases() -> None:
    assert parse("snow at home").near_home is True and parse("snow at home").text == "snow"
    assert parse("food away from home").near_home is False
    assert parse("food").near_home is None


def test_no_vocabulary_still_parses_dates() -> None:
    q = parse_query("cake in 2021", None, TODAY)
    assert q.text == "cake" and q.dates is not None and q.has_filters


def test_merged_combines_filters() -> None:
    a = parse("dog with Anna in 2026")
    b = ParsedQuery(raw="", text="", people=("Tom",), places=("Paris",),
                    dates=parse("last summer").dates, near_home=True)
    m = a.merged(b)
    assert m.text == "dog" and m.people == ("Anna Berg", "Tom") and m.places == ("Paris",) and m.near_home is True
    assert m.dates is not None and m.dates.ranges == (DateRange(date(2026, 6, 1), date(2026, 9, 1)),)


def test_alias_to_unknown_place_is_ignored() -> None:
    assert parse("Atlantis").places == ()


@pytest.mark.parametrize(("text", "semantic", "places", "near_home"), [
    ("photos from our trip to Paris in 2024", "", ("Paris",), False),
    ("beach on holiday", "beach", (), False),
    ("my vacation", "", (), False),
    ("Christmas holidays", "holidays", (), None),  # a date and a word, not a trip
    ("road trip photos at home", "road photos", (), True),  # "at home" said outright wins
    ("the moon over Paris", "moon", ("Paris",), None),
])
def test_trips_mean_away_from_home(text: str, semantic: str, places: tuple, near_home: bool | None) -> None:
    q = parse(text)
    assert (q.text, q.places, q.near_home) == (semantic, places, near_home)
