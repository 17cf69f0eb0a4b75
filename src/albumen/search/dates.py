"""Dates in free text: "last summer", "in 2023", "at Christmas", "March 2024", "since 2020", "3 weeks ago" ...

``find_dates(text, today)`` finds every date expression in a query by rules and returns the ``DateFilter`` they mean
together with the character spans they used (so the query parser can cut them out of the semantic text). A
``DateFilter`` is a union of half-open day ranges ``[start, end)``; a recurring expression without a year ("at
Christmas", "in summer", "in March") means every year, which is what people mean when they search a whole library.

Rules for the relative words, all against ``today`` (a date, never the clock, so tests are exact):
- "last <season|month|holiday>" is the latest one that has ended by today ("last summer" in November 2026 is
  June-August 2026; in July 2026 it is June-August 2025). "this <...>" is the one of the current year.
- "last week|month|year" are the previous calendar week (Monday first), month and year; "this ..." the current one.
- Seasons are meteorological, northern hemisphere: spring = Mar-May, summer = Jun-Aug, autumn/fall = Sep-Nov,
  winter = Dec-Feb (winter 2023 = December 2023 to February 2024).
- Holidays are windows: Christmas 24-26 Dec, New Year's Eve 31 Dec, New Year 31 Dec-1 Jan, Easter Good Friday to
  Easter Monday, Halloween 31 Oct, Valentine's Day 14 Feb, Thanksgiving (US) Thursday to Sunday.

This module knows calendars and English date phrases; it knows nothing about photos, people or places.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

__all__ = ["DateFilter", "DateRange", "easter_sunday", "find_dates", "parse_date_bound"]

_FIRST_YEAR = 1900  # recurring expressions without a year expand over [_FIRST_YEAR, today.year]


@dataclass(frozen=True)
class DateRange:
    """Days ``start <= day < end``."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty date range {self.start} .. {self.end}")

    def intersect(self, other: DateRange) -> DateRange | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return DateRange(start, end) if start < end else None


@dataclass(frozen=True)
class DateFilter:
    """A union of day ranges, sorted; ``matches(day)`` says whether a day is in any of them."""

    ranges: tuple[DateRange, ...]
    text: str = ""  # the phrase(s) it came from, for display

    def matches(self, day: date) -> bool:
        return any(r.start <= day < r.end for r in self.ranges)

    def matches_ordinals(self, days: np.ndarray) -> np.ndarray:
        """Vectorised ``matches``: int64 (N,) ``date.toordinal()`` values (negative = unknown) -> bool (N,).

        The ranges are merged into sorted disjoint ``[start, end)`` pairs; a day is inside iff the number of boundaries
        at or before it is odd (one binary search per day instead of one comparison per range).
        """
        merged: list[list[int]] = []
        for r in sorted(self.ranges, key=lambda r: r.start):
            a, b = r.start.toordinal(), r.end.toordinal()
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        bounds = np.array(merged, dtype=np.int64).reshape(-1)  # (2R,) s0, e0, s1, e1, ...
        days = np.asarray(days, dtype=np.int64)
        inside = np.searchsorted(bounds, days, side="right") % 2 == 1  # (N,)
        return inside & (days >= 0)

    def intersect(self, other: DateFilter) -> DateFilter:
        pieces = [p for a in self.ranges for b in other.ranges if (p := a.intersect(b)) is not None]
        text = " + ".join(t for t in (self.text, other.text) if t)
        return DateFilter(tuple(sorted(pieces, key=lambda r: r.start)), text)

    @property
    def start(self) -> date | None:
        return self.ranges[0].start if self.ranges else None

    @property
    def end(self) -> date | None:
        return max(r.end for r in self.ranges) if self.ranges else None


def easter_sunday(year: int) -> date:
    """Western Easter Sunday: the anonymous Gregorian computus (Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _month_range(year: int, month: int) -> DateRange:
    end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return DateRange(date(year, month, 1), end)


def _year_range(year: int) -> DateRange:
    return DateRange(date(year, 1, 1), date(year + 1, 1, 1))


def _thanksgiving(year: int) -> DateRange:
    first = date(year, 11, 1)
    thursday = first + timedelta(days=(3 - first.weekday()) % 7 + 21)  # fourth Thursday of November
    return DateRange(thursday, thursday + timedelta(days=4))


# Each recurring period: name -> function(year) -> its range in that year.
_SEASONS: dict[str, Callable[[int], DateRange]] = {
    "spring": lambda y: DateRange(date(y, 3, 1), date(y, 6, 1)),
    "summer": lambda y: DateRange(date(y, 6, 1), date(y, 9, 1)),
    "autumn": lambda y: DateRange(date(y, 9, 1), date(y, 12, 1)),
    "fall": lambda y: DateRange(date(y, 9, 1), date(y, 12, 1)),
    "winter": lambda y: DateRange(date(y, 12, 1), date(y + 1, 3, 1)),
}
_HOLIDAYS: dict[str, Callable[[int], DateRange]] = {
    "christmas": lambda y: DateRange(date(y, 12, 24), date(y, 12, 27)),
    "xmas": lambda y: DateRange(date(y, 12, 24), date(y, 12, 27)),
    "new year's eve": lambda y: DateRange(date(y, 12, 31), date(y + 1, 1, 1)),
    "new years eve": lambda y: DateRange(date(y, 12, 31), date(y + 1, 1, 1)),
    "new year's day": lambda y: DateRange(date(y, 1, 1), date(y, 1, 2)),
    "new year": lambda y: DateRange(date(y - 1, 12, 31), date(y, 1, 2)),
    "easter": lambda y: DateRange(easter_sunday(y) - timedelta(days=2), easter_sunday(y) + timedelta(days=2)),
    "halloween": lambda y: DateRange(date(y, 10, 31), date(y, 11, 1)),
    "valentine's day": lambda y: DateRange(date(y, 2, 14), date(y, 2, 15)),
    "valentines day": lambda y: DateRange(date(y, 2, 14), date(y, 2, 15)),
    "thanksgiving": _thanksgiving,
}
_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9,
    "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_PERIODS: dict[str, Callable[[int], DateRange]] = {
    **_SEASONS,
    **_HOLIDAYS,
    **{name: (lambda y, m=m: _month_range(y, m)) for name, m in _MONTHS.items()},
}


def _alternation(words: Iterable[str]) -> str:
    return "|".join(re.escape(w).replace("'", "'?").replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))


_YEAR = r"(?:19|20)\d{2}"
_PREP = r"(?:(?:in|at|on|during|from|over|around|of)\s+(?:the\s+)?)?"
_PERIOD_NAMES = _alternation(_PERIODS)
# Alone (no year, no last/this), an abbreviation is too often something else ("Jan" is a name): full names only.
_FULL_PERIOD_NAMES = _alternation(k for k in _PERIODS if k not in _MONTHS or len(k) > 3 or k == "may")
_MONTH_NAMES = _alternation(_MONTHS)
_UNIT = r"(?P<unit>day|week|month|year)s?"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("between", re.compile(rf"\bbetween\s+(?P<a>.+?)\s+and\s+(?P<b>{_YEAR}|{_MONTH_NAMES}\s+{_YEAR}|\d{{4}}-\d{{2}}(?:-\d{{2}})?)\b", re.I)),
    ("bound", re.compile(rf"\b(?P<op>since|after|before|until|till)\s+(?P<what>\d{{4}}-\d{{2}}(?:-\d{{2}})?|(?:{_MONTH_NAMES})\s+{_YEAR}|{_YEAR})\b", re.I)),
    ("iso", re.compile(rf"\b{_PREP}(?P<y>{_YEAR})-(?P<m>\d{{2}})(?:-(?P<d>\d{{2}}))?\b", re.I)),
    ("day_month_year", re.compile(rf"\b{_PREP}(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH_NAMES})\.?,?\s+(?P<y>{_YEAR})\b", re.I)),
    ("month_day_year", re.compile(rf"\b{_PREP}(?P<month>{_MONTH_NAMES})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>{_YEAR})\b", re.I)),
    ("ago", re.compile(rf"\b(?P<n>\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten)\s+{_UNIT}\s+ago\b", re.I)),
    ("past_n", re.compile(rf"\b(?:in\s+|over\s+|during\s+)?(?:the\s+)?(?:last|past)\s+(?P<n>\d+|two|three|four|five|six|seven|eight|nine|ten)\s+{_UNIT}\b", re.I)),
    ("relative_period", re.compile(rf"\b{_PREP}(?P<rel>last|this|previous)\s+(?P<name>{_PERIOD_NAMES})(?:'s)?\b", re.I)),
    ("relative_unit", re.compile(rf"\b{_PREP}(?P<rel>last|this|previous)\s+(?P<unit>week|month|year)\b", re.I)),
    ("named_year", re.compile(rf"\b{_PREP}(?P<name>{_PERIOD_NAMES})(?:'s)?\s+(?:of\s+|in\s+)?(?P<y>{_YEAR})\b", re.I)),
    ("day_word", re.compile(r"\b(?P<word>today|yesterday)\b", re.I)),
    ("year", re.compile(rf"\b{_PREP}(?<![\d-])(?P<y>{_YEAR})\b(?!-\d)", re.I)),
    ("named", re.compile(rf"\b{_PREP}(?P<name>{_FULL_PERIOD_NAMES})(?:'s)?\b", re.I)),
]
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10}
# "may" is also a verb: only a month when a year, a preposition or last/this is attached.
_BARE_MAY = re.compile(r"^\s*may\s*$", re.I)


def _key(name: str) -> str:
    """Normalise a matched period name to its dictionary key (apostrophes and spacing vary in queries)."""
    flat = re.sub(r"\s+", " ", name.lower().strip())
    if flat in _PERIODS:
        return flat
    for key in _PERIODS:
        if key.replace("'", "") == flat.replace("'", ""):
            return key
    raise KeyError(name)


def _every_year(fn: Callable[[int], DateRange], today: date) -> tuple[DateRange, ...]:
    return tuple(fn(y) for y in range(_FIRST_YEAR, today.year + 1))


def _last_ended(fn: Callable[[int], DateRange], today: date) -> DateRange:
    """The latest instance of a recurring period that has ended by ``today``."""
    year = today.year + 1
    while fn(year).end > today + timedelta(days=1):
        year -= 1
    return fn(year)


def _this(fn: Callable[[int], DateRange], today: date) -> DateRange:
    """The instance of this year; for winter the one containing today when we are in January/February."""
    previous = fn(today.year - 1)
    return previous if previous.start <= today < previous.end else fn(today.year)


def _unit_range(unit: str, today: date, offset: int) -> DateRange:
    """The calendar week/month/year ``offset`` units before the current one (0 = current)."""
    if unit == "day":
        day = today - timedelta(days=offset)
        return DateRange(day, day + timedelta(days=1))
    if unit == "week":
        monday = today - timedelta(days=today.weekday()) - timedelta(weeks=offset)
        return DateRange(monday, monday + timedelta(days=7))
    if unit == "month":
        index = today.year * 12 + today.month - 1 - offset
        return _month_range(index // 12, index % 12 + 1)
    return _year_range(today.year - offset)


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBER_WORDS[text.lower()]


def parse_date_bound(text: str) -> DateRange:
    """A single absolute date or period: "2023", "2023-05", "2023-05-17", "May 2023"; ValueError otherwise."""
    text = text.strip()
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", text):
        day = date(int(m[1]), int(m[2]), int(m[3]))
        return DateRange(day, day + timedelta(days=1))
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})", text):
        return _month_range(int(m[1]), int(m[2]))
    if m := re.fullmatch(r"\d{4}", text):
        return _year_range(int(text))
    if m := re.fullmatch(rf"({_MONTH_NAMES})\.?\s+(\d{{4}})", text, re.I):
        return _month_range(int(m[2]), _MONTHS[m[1].lower()])
    raise ValueError(f"not a date: {text!r} (use YYYY, YYYY-MM, YYYY-MM-DD or 'Month YYYY')")


def _resolve(kind: str, m: re.Match[str], today: date) -> tuple[DateRange, ...] | None:
    """The ranges one matched expression means, or None when the match is not really a date (e.g. bare "may")."""
    g = m.groupdict()
    if kind == "between":
        try:
            a, b = parse_date_bound(g["a"]), parse_date_bound(g["b"])
        except ValueError:
            return None
        return (DateRange(a.start, b.end),) if a.start < b.end else None
    if kind == "bound":
        bound = parse_date_bound(g["what"])
        op = g["op"].lower()
        if op == "since":
            return (DateRange(bound.start, date.max),)
        if op == "after":
            return (DateRange(bound.end, date.max),)
        return (DateRange(date.min, bound.start if op == "before" else bound.end),)
    if kind == "iso":
        y, mo = int(g["y"]), int(g["m"])
        if g["d"]:
            day = date(y, mo, int(g["d"]))
            return (DateRange(day, day + timedelta(days=1)),)
        return (_month_range(y, mo),)
    if kind in ("day_month_year", "month_day_year"):
        day = date(int(g["y"]), _MONTHS[g["month"].lower().rstrip(".")], int(g["d"]))
        return (DateRange(day, day + timedelta(days=1)),)
    if kind == "ago":
        return (_unit_range(g["unit"].lower(), today, _number(g["n"])),)
    if kind == "past_n":
        n, unit = _number(g["n"]), g["unit"].lower()
        days = {"day": 1, "week": 7, "month": 30, "year": 365}[unit] * n
        return (DateRange(today - timedelta(days=days - 1), today + timedelta(days=1)),)
    if kind == "relative_period":
        fn = _PERIODS[_key(g["name"])]
        return (_this(fn, today) if g["rel"].lower() == "this" else _last_ended(fn, today),)
    if kind == "relative_unit":
        return (_unit_range(g["unit"].lower(), today, 0 if g["rel"].lower() == "this" else 1),)
    if kind == "named_year":
        return (_PERIODS[_key(g["name"])](int(g["y"])),)
    if kind == "day_word":
        return (_unit_range("day", today, 0 if g["word"].lower() == "today" else 1),)
    if kind == "year":
        return (_year_range(int(g["y"])),)
    if kind == "named":
        if _BARE_MAY.match(g["name"]) and not re.match(r"\s*(in|during|of)\b", m.group(0), re.I):
            return None
        return _every_year(_PERIODS[_key(g["name"])], today)
    raise AssertionError(kind)


def find_dates(text: str, today: date) -> tuple[DateFilter | None, list[tuple[int, int]]]:
    """All date expressions in ``text``: their combined filter (intersection) and the spans they cover.

    Patterns are tried most specific first; a character belongs to at most one expression. Returns ``(None, [])``
    when the text has no date in it.
    """
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, DateFilter]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            span = m.span()
            if any(span[0] < b and a < span[1] for a, b in taken):
                continue
            try:
                ranges = _resolve(kind, m, today)
            except (ValueError, OverflowError):  # "2023-13", "31 February 2023": not a real date
                ranges = None
            if not ranges:
                continue
            taken.append(span)
            found.append((span[0], DateFilter(ranges, " ".join(m.group(0).split()))))
    if not found:
        return None, []
    found.sort(key=lambda item: item[0])
    combined = found[0][1]
    for _, extra in found[1:]:
        combined = combined.intersect(extra)
    return combined, sorted(taken)
