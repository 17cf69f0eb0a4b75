"""The query parser: people, places and dates out of free text into filters, by rules; the rest is what to look for.

``parse_query("dog on the beach with Anna last summer", vocabulary, today)`` gives
``ParsedQuery(text="dog on the beach", people=("Anna",), places=(), dates=<June-August>)``.

Rules, in order (an earlier rule's words are not available to a later one):
1. people: names the library knows (``Vocabulary.people``), whole words, case-insensitive, longest first; a unique
   first name stands for the full name ("Anna" -> "Anna Berg"). "Anna and Tom" needs both in the photo.
2. places: cities, regions and countries the library knows, plus country aliases ("USA", "UK"); any of them matches.
   Places near the photos that no photo is named after ("Sydney" when the photos geocode to its suburbs) count when
   written as a proper noun ("Sydney") or after "in/at/near/from ..." ("beach in sydney").
   "at home" / "away from home" are place filters against the inferred home; "trip", "vacation", "on holiday" mean
   away from home ("our trip to Tokyo" = away from home, in Tokyo).
3. dates: every phrase ``albumen.search.dates`` understands.
4. the rest, minus filler ("photos of", "show me") and connectors left dangling next to a removed phrase ("with",
   "and", "in", "at"), is the semantic text ranked by similarity. Empty text means a filter-only query.

This module knows English query phrasing and the names it is given; it knows nothing about the store, vectors or LLMs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date

from albumen.search.dates import DateFilter, find_dates

__all__ = ["ParsedQuery", "Vocabulary", "parse_query"]

_CONNECTORS = {"with", "and", "&", "in", "at", "from", "of", "on", "during", "near", "by", "around", "to", "the",
               "featuring", "including", "plus", "or", "over", "across", "inside", "outside", ","}
_FILLER_PHRASES = [
    r"show\s+me", r"find(\s+me)?", r"search(\s+for)?", r"look(ing)?\s+for", r"(all\s+)?(my\s+)?(the\s+)?"
    r"(photos?|pictures?|pics?|images?|shots?|snaps?)(\s+(of|from|with|showing))?", r"taken",
]
_FILLER = re.compile(r"^\s*(?:" + "|".join(_FILLER_PHRASES) + r")\b", re.I)
# Words that open a name but never stand for a person alone ("The Cameraman" must not turn "the moon" into a filter).
_NOT_FIRST_NAMES = {"the", "a", "an", "my", "our", "your", "his", "her", "their", "mr", "mrs", "ms", "dr", "miss",
                    "mister", "sir", "lady", "uncle", "aunt", "little", "big", "old", "young", "baby", "st", "saint"}
_HOME = re.compile(r"\b(?P<away>away\s+from\s+home|not\s+at\s+home)\b|\b(?:at|near|around)\s+home\b", re.I)
# "our trip to Tokyo", "my vacation", "on holiday": away from home (the place, if named, is found by the place rule)
# ("holidays" alone is left alone: "Christmas holidays" are often spent at home)
_TRIP = re.compile(r"\b(?:(?:on|during)\s+)?(?:(?:my|our|the|a|this|that)\s+)?(?:trip|vacation|travels?|journey)"
                   r"(?:\s+(?:to|in))?\b|\bon\s+holiday\b", re.I)


@dataclass(frozen=True)
class Vocabulary:
    """The names a query may refer to: people (display names) and places (any spelling -> canonical name)."""

    people: tuple[str, ...] = ()
    places: Mapping[str, str] = field(default_factory=dict)  # lower-case alias -> canonical place name
    # places near the photos that no photo is named after ("Sydney" for photos geocoded to its suburbs): lower-case
    # name -> canonical. Matched as proper nouns only (see ``parse_query``), since many are also words ("Shoreline").
    nearby: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, people: Iterable[str], places: Iterable[str], aliases: Mapping[str, str] | None = None,
              nearby: Iterable[str] = ()) -> Vocabulary:
        canonical = {p.lower(): p for p in places if p}
        for alias, target in (aliases or {}).items():
            if target.lower() in canonical:
                # short all-caps aliases ("US", "UK") match only in capitals, so "us" stays a word
                key = alias if alias.isupper() and len(alias) <= 3 else alias.lower()
                canonical.setdefault(key, canonical[target.lower()])
        near = {n.lower(): n for n in nearby if n and n.lower() not in canonical}
        return cls(tuple(sorted({p for p in people if p and p.strip()})), canonical, near)

    def resolve_place(self, name: str) -> str | None:
        """A typed place name to its canonical form (any case), or None."""
        key = name.strip()
        return self.places.get(key.lower()) or self.places.get(key) or self.nearby.get(key.lower())

    def people_aliases(self) -> dict[str, str]:
        """lower-case alias -> full name: every full name, plus first names that belong to exactly one person.

        A first word that is an article, possessive or title ("The", "My", "Dr") is no first name.
        """
        aliases = {name.lower(): name for name in self.people}
        firsts: dict[str, list[str]] = {}
        for name in self.people:
            parts = name.split()
            if len(parts) > 1 and parts[0].lower().strip(".") not in _NOT_FIRST_NAMES:
                firsts.setdefault(parts[0].lower(), []).append(name)
        for first, names in firsts.items():
            if len(names) == 1 and first not in aliases:
                aliases[first] = names[0]
        return aliases


@dataclass(frozen=True)
class ParsedQuery:
    """What a query asks for: semantic text plus filters (all filters must hold)."""

    raw: str
    text: str  # what to rank by similarity; "" for a filter-only query
    people: tuple[str, ...] = ()  # every one of them must be in the photo
    places: tuple[str, ...] = ()  # the photo must be in one of them
    dates: DateFilter | None = None
    near_home: bool | None = None  # True "at home", False "away from home", None either

    @property
    def has_filters(self) -> bool:
        return bool(self.people or self.places or self.dates or self.near_home is not None)

    def merged(self, other: ParsedQuery) -> ParsedQuery:
        """Filters of both (used to add what a second parser found); ``self.text`` wins when set."""
        dates = self.dates if other.dates is None else (other.dates if self.dates is None else self.dates.intersect(other.dates))
        return replace(
            self,
            text=self.text or other.text,
            people=tuple(dict.fromkeys(self.people + other.people)),
            places=tuple(dict.fromkeys(self.places + other.places)),
            dates=dates,
            near_home=self.near_home if self.near_home is not None else other.near_home,
        )


_LOCATIVE = re.compile(r"\b(?:in|at|near|from|around|to|of)\s+$", re.I)


def _find_names(text: str, aliases: Mapping[str, str], taken: list[tuple[int, int]],
                proper: bool = False) -> list[tuple[int, int, str]]:
    """Whole-word, case-insensitive occurrences of the aliases, longest alias first, outside ``taken`` spans.

    ``proper``: an occurrence counts only if capitalised as a name ("Shoreline") or right after a locative word
    ("in shoreline"), so that place names which are also ordinary words ("the shoreline") stay words.
    """
    found: list[tuple[int, int, str]] = []
    for alias in sorted(aliases, key=len, reverse=True):
        flags = 0 if alias.isupper() else re.I  # see Vocabulary.build: "US" must not match "us"
        pattern = re.compile(r"(?<![\w'])" + re.escape(alias).replace(r"\ ", r"\s+") + r"(?!\w)", flags)
        for m in pattern.finditer(text):
            a, b = m.span()
            if any(a < y and x < b for x, y in taken):
                continue
            if proper and not (m.group(0)[:1].isupper() or _LOCATIVE.search(text[:a])):
                continue
            taken.append((a, b))
            found.append((a, b, aliases[alias]))
    return sorted(found)


def _semantic_rest(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without ``spans``, filler and the connectors that only served the removed phrases."""
    pieces: list[str] = []  # alternating kept text and a removal marker "\0"
    cursor = 0
    for a, b in sorted(spans):
        pieces.append(text[cursor:a])
        pieces.append("\0")
        cursor = max(cursor, b)
    pieces.append(text[cursor:])
    tokens = re.findall(r"\0|[^\s,\0]+|,", "".join(pieces))
    changed = True
    while changed:
        changed = False
        kept = " ".join(t for t in tokens if t != "\0")
        if (m := _FILLER.match(kept)) and m.end() > 0:  # leading "show me photos of"
            drop = len(kept[: m.end()].split())
            for i, tok in enumerate(tokens):
                if drop == 0:
                    break
                if tok != "\0":
                    tokens[i], drop, changed = "\0", drop - 1, True
        for i, tok in enumerate(tokens):
            if tok == "\0" or tok.lower() not in _CONNECTORS:
                continue
            left = tokens[i - 1] if i > 0 else "\0"
            right = tokens[i + 1] if i + 1 < len(tokens) else "\0"
            if left == "\0" or right == "\0":  # dangling next to a removed phrase or at an edge
                tokens[i] = "\0"
                changed = True
    rest = " ".join(t for t in tokens if t != "\0").replace(" ,", ",")
    return re.sub(r"\s+", " ", rest).strip(" ,.;:!?")


def parse_query(raw: str, vocabulary: Vocabulary | None = None, today: date | None = None) -> ParsedQuery:
    """Split a free-text query into semantic text and people/place/date filters (see the module docstring)."""
    vocabulary = vocabulary or Vocabulary()
    today = today or date.today()
    text = " ".join(raw.split())
    taken: list[tuple[int, int]] = []
    people = [name for _, _, name in _find_names(text, vocabulary.people_aliases(), taken)]

    near_home: bool | None = None
    for m in _HOME.finditer(text):
        if not any(m.start() < y and x < m.end() for x, y in taken):
            near_home = m.group("away") is None
            taken.append(m.span())
    for m in _TRIP.finditer(text):
        if not any(m.start() < y and x < m.end() for x, y in taken):
            near_home = False if near_home is None else near_home
            taken.append(m.span())
    places = [name for _, _, name in sorted(_find_names(text, vocabulary.places, taken)
                                            + _find_names(text, vocabulary.nearby, taken, proper=True))]

    masked = "".join(" " if any(a <= i < b for a, b in taken) else ch for i, ch in enumerate(text))
    dates, date_spans = find_dates(masked, today)
    taken.extend(date_spans)
    return ParsedQuery(
        raw=raw,
        text=_semantic_rest(text, taken),
        people=tuple(dict.fromkeys(people)),
        places=tuple(dict.fromkeys(places)),
        dates=dates,
        near_home=near_home,
    )
