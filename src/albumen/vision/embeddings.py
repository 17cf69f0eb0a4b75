"""Text-aligned photo vectors in MiniLM space (no CLIP model ships offline, so we build the joint space ourselves).

A photo's vector is a mix of three unit vectors, all embedded with the same MiniLM text model as the queries:

1. **labels**: the classifier's top-k ImageNet classes, each class's MiniLM embedding weighted by its probability
   (``label_weighted_vector``) - "what is in the picture", with the classifier's uncertainty kept;
2. **concepts**: the friendly concepts (beach, snow, pets, food ...) weighted by their summed probabilities, which
   bridges ImageNet's fine classes ("Samoyed", "seashore") and the words people type ("dog", "beach");
3. **description**: one sentence composed from tags, concepts, pixel attributes and faces (``compose_description``;
   place and time can be added with ``EmbeddingConfig``), e.g. "a blue, yellow photo of beach, sea, with seashore,
   one person".

The mix is stored in the ``text-minilm`` space, so ``TextEmbedder().embed([query])`` searches it directly. A user's
own CLIP/SigLIP checkpoint adds a second, true image-text space (``albumen.vision.clip``). This module knows the
recipe; it knows nothing about SQLite or ranking.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from albumen.vision.base import Analysis, Analyzer, PhotoInput
from albumen.vision.concepts import ImagenetClass, concept_indices, concept_scores, imagenet_classes
from albumen.vision.tags import ImageClassifier
from albumen.vision.text_embedding import SupportsEmbed, TextEmbedder, l2_normalize

__all__ = [
    "MINILM_SPACE",
    "EmbeddingAnalyzer",
    "EmbeddingConfig",
    "cached_text_vectors",
    "class_text",
    "compose_description",
    "label_weighted_vector",
]

MINILM_SPACE = "text-minilm"  # the space name search reads (albumen.search.engine.DEFAULT_SPACE)

_SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring", 6: "summer", 7: "summer",
            8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}
_COUNT_WORDS = {1: "one person", 2: "two people", 3: "three people", 4: "four people"}


@dataclass
class EmbeddingConfig:
    """How the three parts of a photo vector are weighted (each part is a unit vector before mixing)."""

    top_k: int = 10  # ImageNet classes mixed into the label part
    label_weight: float = 1.0
    concept_weight: float = 1.0
    description_weight: float = 0.7
    min_concept_score: float = 0.10  # concepts below this are left out of the description
    # Place and time stay out of the vector by default: search reads them from the query as filters, and in the
    # sentence they only dilute the content (dev split of the search eval: recall@5 0.622 -> 0.649, docs/search.md)
    describe_place: bool = False
    describe_time: bool = False


def class_text(c: ImagenetClass) -> str:
    """How one ImageNet class is phrased for MiniLM: its first two lemmas ("seashore, coast")."""
    return ", ".join(c.names[:2])


def label_weighted_vector(probs: np.ndarray, label_vectors: np.ndarray, top_k: int) -> np.ndarray:
    """Probability-weighted mean of the top-k label embeddings, renormalised.

    Args:
        probs: (C,) class probabilities.
        label_vectors: (C, D) unit embeddings of the class texts.
        top_k: how many of the most probable classes to mix.

    Returns:
        float32 (D,) unit vector (zero if every probability is zero).
    """
    top = np.argsort(-probs)[:top_k]  # (k,)
    mixed = probs[top] @ label_vectors[top]  # (D,)
    return l2_normalize(mixed[None, :])[0]


def cached_text_vectors(embedder: SupportsEmbed, texts: Sequence[str], cache_dir: Path | None) -> np.ndarray:
    """``embedder.embed(texts)``, kept as a .npy under ``cache_dir`` keyed by model id and the texts' hash.

    The 1000 class texts take MiniLM ~10 s on two cores; the cache makes every later run start at once.
    """
    if cache_dir is None:
        return embedder.embed(list(texts))
    digest = hashlib.sha256(("\n".join([embedder.model_id, *texts])).encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir) / f"text-vectors-{digest}.npy"
    if path.exists():
        try:
            cached = np.load(path)
            if cached.shape[0] == len(texts):
                return cached.astype(np.float32)
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed below
    vectors = embedder.embed(list(texts))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")  # worker processes may race to write the same cache
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def _time_phrase(taken_at: datetime) -> str:
    hour = taken_at.hour
    part = "at night" if hour < 5 or hour >= 21 else "in the morning" if hour < 12 else (
        "in the afternoon" if hour < 17 else "in the evening")
    return f"in {_SEASONS[taken_at.month]} {taken_at.year}, {part}"


def compose_description(
    concepts: Mapping[str, float],
    tags: Sequence[str],
    faces: int | None = None,
    place: Mapping[str, Any] | None = None,
    taken_at: datetime | None = None,
    attributes: Sequence[str] = (),
) -> str:
    """One plain sentence about a photo from what the analyzers found (strongest concepts and tags first).

    ``attributes`` are the tags analyzer's pixel attributes: the look ("black and white", colours, "dark") qualifies
    the photo, "texture" is said at the end.
    """
    subject = ", ".join(list(concepts)[:3]) or "a scene"
    look = [a for a in attributes if a != "texture"]
    if look:
        words = [f"{'an' if look[0][0] in 'aeiou' else 'a'} {', '.join(look)} photo of {subject}"]
    else:
        words = [f"a photo of {subject}"]
    if tags:
        words.append("with " + ", ".join(tags[:3]))
    if faces:
        words.append(_COUNT_WORDS.get(faces, "a group of people"))
    if place:
        where = ", ".join(p for p in (place.get("city"), place.get("region"), place.get("country")) if p)
        if where:
            words.append(f"in {where}")
    if taken_at is not None:
        words.append(_time_phrase(taken_at))
    if "texture" in attributes:
        words.append("a texture")
    return ", ".join(words)


class EmbeddingAnalyzer(Analyzer):
    """Photo vectors in the ``text-minilm`` space (and a CLIP space too when ``clip`` is given).

    Reads the ``faces``, ``places`` and ``tags`` payloads of earlier analyzers from ``PhotoInput.context`` when the
    pipeline provides them (``needs``); without them the description simply leaves people, place and the pixel
    attributes out.
    """

    name = "embeddings"
    model_id = "lite0-minilm-labels"
    version = "2"  # 2: no place or time in the description; the tags analyzer's pixel attributes in it
    needs = ("faces", "places", "tags")

    def __init__(
        self,
        classifier: ImageClassifier | None = None,
        text_embedder: SupportsEmbed | None = None,
        config: EmbeddingConfig | None = None,
        clip: Any = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.classifier = classifier or ImageClassifier()
        self.text_embedder: SupportsEmbed = text_embedder or TextEmbedder()
        self.config = config or EmbeddingConfig()
        self.clip = clip  # an albumen.vision.clip.ClipImageEmbedder, or None
        self.cache_dir = cache_dir  # where the label vectors are kept between runs (None: recompute)
        self.model_id = f"lite0+{self.text_embedder.model_id}" + (f"+{clip.model_id}" if clip is not None else "")
        self._classes: list[ImagenetClass] = []
        self._concepts: dict[str, np.ndarray] = {}
        self._label_vectors = np.zeros((0, 0), dtype=np.float32)
        self._concept_vectors = np.zeros((0, 0), dtype=np.float32)

    def _load(self) -> None:
        self._classes = imagenet_classes()
        self._concepts = concept_indices(self._classes)
        texts = [class_text(c) for c in self._classes]
        self._label_vectors = cached_text_vectors(self.text_embedder, texts, self.cache_dir)  # (1000, D)
        self._concept_vectors = cached_text_vectors(self.text_embedder, list(self._concepts), self.cache_dir)  # (K, D)
        self.classifier.load()
        if self.clip is not None:
            self.clip.load()

    def describe(self, probs: np.ndarray, photo: PhotoInput) -> tuple[str, np.ndarray]:
        """The description sentence and the concept scores (K,) for one photo's class probabilities (1000,)."""
        scores = concept_scores(probs[None, :], self._concepts)[0]  # (K,)
        ranked = sorted(zip(self._concepts, scores), key=lambda kv: -kv[1])
        concepts = {k: float(s) for k, s in ranked if s >= self.config.min_concept_score}
        top = np.argsort(-probs)[:3]
        tags = [self._classes[i].name for i in top if probs[i] >= 0.05]
        faces_payload = photo.context.get("faces") or {}
        faces = len(faces_payload.get("faces", [])) if "error" not in faces_payload else None
        place = photo.context.get("places") if self.config.describe_place else None
        taken = photo.taken_at if self.config.describe_time else None
        attributes = (photo.context.get("tags") or {}).get("attributes", ())
        return compose_description(concepts, tags, faces, place, taken, attributes), scores

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        cfg = self.config
        out = self.classifier.classify(batch)
        ok = [p for p in batch if p.photo_id in out.probs]
        described = [self.describe(out.probs[p.photo_id], p) for p in ok]
        desc_vecs = self.text_embedder.embed([d for d, _ in described])  # (B, D)
        clip_vecs = self.clip.embed_paths([p.path for p in ok]) if (self.clip is not None and ok) else None
        results: dict[int, Analysis] = {}
        for i, photo in enumerate(ok):
            probs = out.probs[photo.photo_id]
            labels = label_weighted_vector(probs, self._label_vectors, cfg.top_k)  # (D,)
            concept_part = l2_normalize((described[i][1] @ self._concept_vectors)[None, :])[0]  # (D,)
            mixed = cfg.label_weight * labels + cfg.concept_weight * concept_part + cfg.description_weight * desc_vecs[i]
            vectors = {MINILM_SPACE: l2_normalize(mixed[None, :])[0]}
            payload: dict[str, Any] = {"description": described[i][0], "spaces": [MINILM_SPACE]}
            if clip_vecs is not None:
                if clip_vecs[i] is None:
                    payload["clip_error"] = "image could not be embedded by the CLIP model"
                else:
                    vectors[self.clip.space] = clip_vecs[i]
                    payload["spaces"].append(self.clip.space)
            results[photo.photo_id] = Analysis(photo.photo_id, payload, vectors)
        for pid, reason in out.errors.items():
            results[pid] = Analysis(pid, {"error": reason})
        return [results[p.photo_id] for p in batch]
