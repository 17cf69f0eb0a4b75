from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from albumen.library.store import Store
from albumen.search.catalog import CatalogError, SearchCatalog
from albumen.search.engine import SearchEngine, SearchSettings
from albumen.search.query import ParsedQuery
from albumen.vision.text_embedding import FakeTextEmbedder

TODAY = date(2026, 11, 28)


def engine_for(store: Store, **settings: object) -> SearchEngine:
    """An engine over the fake library; the cut suits the fake bag-of-words space (the calibrated default is for
    MiniLM), so these tests use the min_z rule."""
    settings = {"min_score": 0.3, "min_z": 1.0, "relevance": None, **settings}
    return SearchEngine.from_store(store, FakeTextEmbedder(), SearchSettings(**settings))  # type: ignore[arg-type]


def names(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.path.rsplit("/", 1)[-1] for h in result.hits]


def test_catalog_reads_paths_days_places_and_visible_named_people(store: Store) -> None:
    cat = SearchCatalog.from_store(store)
    assert len(cat) == 9
    first = cat.rows[0]
    assert first.path == "/photos/dog_beach.jpg" and first.day == date(2026, 7, 14)
    assert first.places == ("Lisbon", "Lisbon", "Portugal") and first.people == ("Anna Berg",)  # Ghost is hidden
    assert cat.people_names() == ["Anna Berg", "Tom"]
    assert "Germany" in cat.place_names()
    assert cat.resolve_person("anna") == "Anna Berg" and cat.resolve_place("portuguese republic") == "Portugal"
    with pytest.raises(CatalogError, match="named people: Anna Berg, Tom"):
        cat.resolve_person("Zoe")
    with pytest.raises(CatalogError, match="places in this library"):
        cat.resolve_place("Mars")


def test_home_is_where_most_days_are(store: Store) -> None:
    home = SearchCatalog.from_store(store).home()
    assert home is not None and home.days == 4
    assert home.latitude == pytest.approx(52.52, abs=0.02) and home.longitude == pytest.approx(13.40, abs=0.02)


def test_semantic_ranking_puts_the_described_photo_first(store: Store) -> None:
    engine = engine_for(store)
    result = engine.search("dog on the beach", today=TODAY)
    assert names(result)[0] == "dog_beach.jpg"
    assert result.threshold is not None and all(h.score >= result.threshold for h in result.hits)
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_threshold_keeps_unrelated_photos_out(store: Store) -> None:
    result = engine_for(store).search("snow covered mountain", today=TODAY)
    assert names(result) == ["snow_peak.jpg"]
    assert engine_for(store).search("quantum chromodynamics lecture", today=TODAY).hits == []


def test_without_threshold_everything_comes_back(store: Store) -> None:
    result = engine_for(store, min_score=-1.0, min_z=-10.0).search("quantum chromodynamics", today=TODAY)
    assert len(result.hits) == 8  # every photo with a vector


def test_filters_from_the_text(store: Store) -> None:
    engine = engine_for(store)
    assert names(engine.search("dog with Anna", today=TODAY)) == ["dog_beach.jpg"]
    assert names(engine.search("Anna and Tom at Christmas", today=TODAY)) == ["xmas_tree.jpg"]
    assert names(engine.search("dog in Germany", today=TODAY)) == ["home_dog.jpg"]
    assert names(engine.search("dog at home", today=TODAY)) == ["home_dog.jpg"]
    assert names(engine.search("dog away from home", today=TODAY)) == ["dog_beach.jpg"]
    assert names(engine.search("dog last summer", today=TODAY)) == ["dog_beach.jpg"]


def test_filter_only_query_lists_matches_newest_first_with_score_one(store: Store) -> None:
    result = engine_for(store).search("Anna and Tom", today=TODAY)
    assert names(result) == ["xmas_tree.jpg", "pasta.jpg"] and {h.score for h in result.hits} == {1.0}
    assert result.threshold is None and result.matched_filters == 2
    assert names(engine_for(store).search("in 2022", today=TODAY)) == ["no_vector.jpg"]


def test_extra_filters_from_flags_combine_with_the_text(store: Store) -> None:
    flags = ParsedQuery(raw="", text="", people=("Tom",))
    assert names(engine_for(store).search("food", extra=flags, today=TODAY)) == ["pasta.jpg"]
    flags = ParsedQuery(raw="", text="", places=("Italy",))
    assert names(engine_for(store).search("Anna", extra=flags, today=TODAY)) == ["pasta.jpg"]


def test_limit_and_empty_query(store: Store) -> None:
    engine = engine_for(store, min_score=-1.0, min_z=-10.0)
    assert len(engine.search("dog", limit=2, today=TODAY).hits) == 2
    empty = engine.search("   ", today=TODAY)
    assert empty.hits == [] and empty.notes


def test_empty_library_says_what_to_do() -> None:
    with Store.memory() as empty:
        result = engine_for(empty).search("dog", today=TODAY)
    assert result.hits == [] and "albumen analyze" in result.notes[0]


def test_to_json_shape(store: Store) -> None:
    hit = engine_for(store).search("dog on the beach", today=TODAY).hits[0]
    assert hit.to_json() == {"path": "/photos/dog_beach.jpg", "score": pytest.approx(hit.score, abs=1e-4)}
    assert isinstance(hit.to_json()["score"], float) and np.isfinite(hit.to_json()["score"])
