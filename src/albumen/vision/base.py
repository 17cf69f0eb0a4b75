"""The analyzer seam: every on-device model sits behind ``Analyzer``.

Public ``predict()`` = lazy ``load()`` + one private ``_predict()`` hook over a batch. Results carry the analyzer's
``model_id`` and ``version`` so the store re-runs an analyzer only when its model changes. This module knows nothing
about SQLite or about any particular model.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Analysis", "Analyzer", "PhotoInput", "Region", "ANALYZER_REGISTRY", "create_analyzer"]


@dataclass(frozen=True)
class PhotoInput:
    """What an analyzer may look at for one photo (originals are only ever opened read-only)."""

    photo_id: int
    path: Path  # the best image to decode: a large thumbnail when there is one, else the original
    taken_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    # payloads of the analyzers named in the consuming analyzer's ``needs``, when the pipeline has them
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Region:
    """Something found at a place in a photo (a face): box in [0, 1] of the displayed photo, with its own vector."""

    x: float
    y: float
    w: float
    h: float
    score: float
    embedding: np.ndarray  # float32 (D,)


@dataclass
class Analysis:
    """One analyzer's result for one photo."""

    photo_id: int
    payload: dict[str, Any]  # JSON-able; stored as-is
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # space name -> float32 (D,)
    regions: list[Region] | None = None  # per-region results (faces); None = this analyzer has none


class Analyzer(ABC):
    """Base class: subclasses set ``name``, ``model_id``, ``version`` and implement ``_load`` and ``_predict``."""

    name: str = ""
    model_id: str = ""
    version: str = "1"
    needs: tuple[str, ...] = ()  # analyzers whose payloads this one reads from PhotoInput.context (run first)

    def __init__(self) -> None:
        self._loaded = False

    def load(self) -> None:
        if not self._loaded:
            self._load()
            self._loaded = True

    def predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        """Analyze a batch. A photo that fails yields an Analysis whose payload has an ``error`` key."""
        self.load()
        return self._predict(batch)

    def _load(self) -> None:  # noqa: B027 - optional hook
        """Load weights (called once, lazily)."""

    @abstractmethod
    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]: ...


# name -> "module:Class", imported lazily so that listing analyzers loads no model.
ANALYZER_REGISTRY: dict[str, str] = {
    "tags": "albumen.vision.tags:TagsAnalyzer",
    "embeddings": "albumen.vision.embeddings:EmbeddingAnalyzer",
    "faces": "albumen.vision.faces:FaceAnalyzer",
    "quality": "albumen.vision.quality:QualityAnalyzer",
    "places": "albumen.places:PlacesAnalyzer",
}


def create_analyzer(name: str, **kwargs: Any) -> Analyzer:
    try:
        target = ANALYZER_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown analyzer {name!r}; known: {', '.join(sorted(ANALYZER_REGISTRY))}") from None
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**kwargs)
