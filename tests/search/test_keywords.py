"""Keyword terms from stored payloads, the inverted index's scores, and their fusion with the cosine in the engine."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from albumen.search.engine import SearchEngine, SearchSettings
from albumen.search.keywords import KeywordIndex, photo_terms, tokenize
from albumen.vision.text_embedding import FakeTextEmbedder
from .conftest import FakePhoto, build_store

TAGS = {"tags": [{"label": "daisy", "synset": "n11939491", "score": 0.8},
                 {"label": "bee", "synset": "x", "score": 0.1}],
        "concepts": {"flowers": 0.8}, "attributes": ["yellow", "black and white"]}


def test_tokenize_drops_filler_and_plurals() -> None:
    assert tokenize("Show me photos of yellow flowers on the grass") == ["yellow", "flower", "grass"]
    assert tokenize("a close-up of glass") == ["closeup", "glass"]
    assert tokenize("the") == []


def test_photo_terms_from_payloads() -> None:
    terms = photo_terms(TAGS, {"blurry": True}, faces=2, lemmas={"n11939491": ("daisy", "Bellis perennis")})
    assert terms["daisy"] == pytest.approx(0.8) and terms["perenni"] == pytest.approx(0.8)  # every lemma
    assert terms["bee"] == pytest.approx(0.1) and terms["flower"] == pytest.approx(0.8)
    assert terms["yellow"] == 1.0 and terms["monochrome"] == 1.0 and terms["black"] == 1.0
    assert terms["blurry"] == 1.0 and terms["person"] == 1.0 and terms["group"] == 1.0
    assert photo_terms({"error": "cannot decode"}) == {}
    assert "person" not in photo_terms(TAGS, None, faces=0)


def test_scores_prefer_rare_terms_the_photo_clearly_has() -> None:
    index = KeywordIndex([{"yellow": 1.0, "flower": 1.0}, {"flower": 1.0}, {"flower": 0.1}, {}])
    s = index.scores("yellow flowers")
    assert s.shape == (4,) and s.dtype == np.float32
    assert s[0] > s[1] > s[2] > s[3] == 0.0
    idf_flower = math.log(1 + 4 / (1 + 3))
    assert s[1] == pytest.approx(idf_flower / 2)  # mean over the query's two terms
    assert s[2] == pytest.approx(idf_flower * 0.2 / 2)  # 0.1 / saturation 0.5
    assert not index.scores("").any() and not index.scores("zebra").any()


def test_engine_adds_keyword_scores_to_the_cosine() -> None:
    """Two photos with the same vector: only the keyword score can tell the yellow one apart."""
    photos = [FakePhoto("red.jpg", "a flower in a garden", "2026-05-01T09:00:00"),
              FakePhoto("yellow.jpg", "a flower in a garden", "2026-05-02T09:00:00"),
              FakePhoto("car.jpg", "a car on a road", "2026-05-03T09:00:00")]
    store = build_store(photos)
    store.put_analyses("tags", "fake", "2", [(1, {"tags": [], "concepts": {}, "attributes": ["red"]}),
                                             (2, {"tags": [], "concepts": {}, "attributes": ["yellow"]})])
    settings = {"min_score": -1.0, "min_z": -1e9, "relevance": None}
    plain = SearchEngine.from_store(store, FakeTextEmbedder(), SearchSettings(keyword_weight=0.0, **settings))
    fused = SearchEngine.from_store(store, FakeTextEmbedder(), SearchSettings(keyword_weight=0.5, **settings))
    assert plain.keywords is None
    a = plain.search("yellow flower", today=date(2026, 6, 1))
    b = fused.search("yellow flower", today=date(2026, 6, 1))
    assert a.hits[0].score == pytest.approx(a.hits[1].score)
    assert b.hits[0].path.endswith("yellow.jpg") and b.hits[0].score > b.hits[1].score + 0.1
    with pytest.raises(ValueError, match="one row per photo vector"):
        SearchEngine(plain.catalog, plain.index, FakeTextEmbedder(), keywords=KeywordIndex([{}]))
    store.close()
