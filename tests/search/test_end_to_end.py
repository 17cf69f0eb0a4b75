"""Folder -> index -> analyze pipeline -> people named -> ``albumen search``: the whole chain on tiny real files.

The models are fakes (face descriptors from the file name, photo vectors = the fake text embedding of the file name's
words); everything else is the real code: EXIF GPS and times, the indexer, the pipeline's writer, the GeoNames places
analyzer (on a toy table), people grouping and naming, the catalog, the parser, the engine and the CLI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

import albumen.vision.text_embedding as text_embedding
from albumen.cli import search as cli_search
from albumen.cli.main import build_app
from albumen.library.indexer import IndexSettings, index_paths
from albumen.library.sample.exif import ExifFields, build_exif
from albumen.library.store import Store
from albumen.places import GeoNamesGeocoder, GeoRow, PlacesAnalyzer
from albumen.search.engine import DEFAULT_SPACE, SearchEngine
from albumen.vision.base import Analysis, Analyzer, PhotoInput, Region
from albumen.vision.fakes import fake_face_vector
from albumen.vision.pipeline import PipelineSettings, analyze_library

TOY_GEONAMES = [
    GeoRow(-33.8679, 151.2073, "Sydney", "New South Wales", "", "AU"),
    GeoRow(-33.8404, 151.2070, "North Sydney", "New South Wales", "", "AU"),
    GeoRow(47.6062, -122.3321, "Seattle", "Washington", "King County", "US"),
]

# name (p<k>_ = person k's face), local time, offset, (lat, lon)
FILES = [
    ("p1_dog_beach_sand.jpg", datetime(2025, 7, 14, 10), "+10:00", (-33.842, 151.210)),  # North Sydney
    ("p1_cat_sofa.jpg", datetime(2025, 2, 2, 20), "-08:00", (47.61, -122.33)),
    ("p1_christmas_tree.jpg", datetime(2024, 12, 25, 18), "-08:00", (47.62, -122.34)),
    ("p2_snow_mountain.jpg", datetime(2024, 1, 20, 12), "-08:00", (47.60, -122.32)),
    ("flowers_garden.jpg", datetime(2025, 5, 1, 9), "-08:00", (47.61, -122.31)),
    ("p2_dog_park.jpg", datetime(2023, 4, 11, 9), "-08:00", (47.63, -122.33)),
]


class NamedFakes:
    """Fake faces and vectors read from each photo's original file name (analyzers see thumbnails, not names)."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names  # photo id -> original file name

    def factory(self, wanted: Sequence[str], settings: Any) -> dict[str, Analyzer]:
        return {"faces": _Faces(self.names), "places": PlacesAnalyzer(GeoNamesGeocoder(TOY_GEONAMES)),
                "embeddings": _Words(self.names)}


class _Faces(Analyzer):
    """One face for ``p<k>_...`` files, with a descriptor near person k's point (like dlib's geometry)."""

    name = "faces"
    model_id = "fake-faces"

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names = names

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        out = []
        for p in batch:
            m = re.match(r"p(\d+)_", self.names[p.photo_id])
            regions = [] if m is None else [Region(0.3, 0.2, 0.2, 0.3, 1.0, fake_face_vector(int(m[1]), p.photo_id))]
            out.append(Analysis(p.photo_id, {"faces": [{"box": [0.3, 0.2, 0.2, 0.3], "score": 1.0}] * len(regions)},
                                regions=regions))
        return out


class _Words(Analyzer):
    """Photo vector = the fake text embedding of the file name's words, in the space search reads."""

    name = "embeddings"
    model_id = "fake-words"
    needs = ("faces", "places")

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names = names

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        embedder = text_embedding.FakeTextEmbedder()
        out = []
        for p in batch:
            words = " ".join(w for w in re.split(r"[_.]", self.names[p.photo_id]) if not re.fullmatch(r"p\d+|jpg", w))
            out.append(Analysis(p.photo_id, {"words": words}, {DEFAULT_SPACE: embedder.embed([words])[0]}))
        return out


def _library(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir()
    for i, (name, when, offset, (lat, lon)) in enumerate(FILES):
        exif = build_exif(ExifFields(local_time=when, offset=offset, gps=(lat, lon, 10.0), size=(64, 48)))
        Image.new("RGB", (64, 48), (40 * i % 255, 90, 160)).save(photos / name, "JPEG", exif=exif)
    return photos


@pytest.fixture
def indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    photos = _library(tmp_path)
    data = tmp_path / "data"
    with Store.open(data / "library.sqlite3") as store:
        index_paths(store, [photos], IndexSettings(workers=1, thumbnail_sizes=(64,)))
        names = {int(pid): Path(path).name for pid, path in store.conn.execute("SELECT photo_id, path FROM files")}
        settings = PipelineSettings(analyzers=("faces", "places", "embeddings"), workers=1)
        summary = analyze_library(store, None, settings=settings, factory=NamedFakes(names).factory)
        assert summary["analyzed"]["embeddings"] == len(FILES), summary
        from albumen.people.edits import list_people, name_person

        # name people the way a user would: by one of their photos
        people = list_people(store)
        assert len(people) == 2  # the pipeline grouped the faces
        for person in people:
            assert person.example_path is not None
            name_person(store, person.person_id, "Anna Berg" if "p1_" in person.example_path else "Tom Smith")
    monkeypatch.setattr(text_embedding, "TextEmbedder", text_embedding.FakeTextEmbedder)
    monkeypatch.setattr(cli_search, "_gazetteer", lambda: GeoNamesGeocoder(TOY_GEONAMES))
    monkeypatch.setenv("ALBUMEN_CONFIG", str(tmp_path / "none.toml"))
    return data


def _names(hits: Any) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_people_places_dates_and_ranking_through_the_store(indexed: Path) -> None:
    with Store.open(indexed / "library.sqlite3") as store:
        engine = SearchEngine.from_store(store, text_embedding.FakeTextEmbedder(),
                                         gazetteer=GeoNamesGeocoder(TOY_GEONAMES))
        today = datetime(2026, 1, 10).date()
        r = engine.search("dog with Anna in Sydney last summer", today=today)
        assert r.query.people == ("Anna Berg",) and r.query.places == ("Sydney",) and r.query.text == "dog"
        assert _names(r.hits) == ["p1_dog_beach_sand.jpg"]  # geocoded to North Sydney, 3 km from Sydney
        r = engine.search("Anna and Tom", today=today)  # nobody has both
        assert r.hits == [] and r.query.people == ("Anna Berg", "Tom Smith")
        r = engine.search("Tom", today=today)  # filter-only: newest first
        assert _names(r.hits) == ["p2_snow_mountain.jpg", "p2_dog_park.jpg"]
        r = engine.search("at Christmas", today=today)
        assert _names(r.hits) == ["p1_christmas_tree.jpg"]
        r = engine.search("dog", today=today)
        assert set(_names(r.hits)) == {"p1_dog_beach_sand.jpg", "p2_dog_park.jpg"}
        assert all(h.score >= r.threshold for h in r.hits)


def test_cli_search_json_on_the_analyzed_library(indexed: Path) -> None:
    app = build_app()
    res = CliRunner().invoke(app, ["--data-dir", str(indexed), "search", "dog", "--person", "tom", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [Path(d["path"]).name for d in data] == ["p2_dog_park.jpg"] and set(data[0]) == {"path", "score"}
    res = CliRunner().invoke(app, ["--data-dir", str(indexed), "search", "beach", "--place", "sydney", "--json"])
    assert res.exit_code == 0, res.output
    assert [Path(d["path"]).name for d in json.loads(res.stdout)] == ["p1_dog_beach_sand.jpg"]
