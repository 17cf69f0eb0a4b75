"""Fake analyzers for tests and demos of the pipeline: no model files, deterministic, importable by worker processes.

- ``FakeColorAnalyzer`` ("tags"): decodes the photo (so bad files fail like real ones), payload = mean colour,
  vector in the ``fake-colour`` space;
- ``FakeFaceAnalyzer`` ("faces"): one face per photo whose file name starts with ``p<k>_``, with a descriptor near
  person k's fixed point (0.1 noise; people are ~1.0 apart), like dlib's geometry;
- ``FakeContextAnalyzer`` ("embeddings"): needs "faces" and records how many faces its context showed;
- ``RaisingAnalyzer`` ("raising"): raises on photos whose name contains "boom";
- ``CrashingAnalyzer`` ("crashing"): kills its process on photos whose name contains "crash" (worker pools only!);
- ``BrokenModelAnalyzer`` ("broken"): its model never loads;
- ``UnstartableAnalyzer`` ("unstartable"): kills any worker process that builds it (a pool that can never run).

``fake_factory`` builds them by name, like ``albumen.vision.pipeline.build_analyzers`` builds the real ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from albumen.vision.base import Analysis, Analyzer, PhotoInput, Region
from albumen.vision.image_io import ImageLoadError, load_rgb

__all__ = [
    "BrokenModelAnalyzer",
    "CrashingAnalyzer",
    "FakeColorAnalyzer",
    "FakeContextAnalyzer",
    "FakeFaceAnalyzer",
    "RaisingAnalyzer",
    "UnstartableAnalyzer",
    "fake_face_vector",
    "fake_factory",
]

_PERSON = re.compile(r"^p(\d+)_")


def fake_face_vector(person: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """A (128,) descriptor of ``person``: a fixed random point (norm ~0.7, like dlib's) plus seeded noise."""
    base = np.random.default_rng(1000 + person).normal(0.0, 0.7 / np.sqrt(128), 128)
    jitter = np.random.default_rng(seed).normal(0.0, noise / np.sqrt(128), 128)
    return (base + jitter).astype(np.float32)


class FakeColorAnalyzer(Analyzer):
    name = "tags"
    model_id = "fake-colour"
    version = "1"

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        out = []
        for p in batch:
            try:
                rgb = np.asarray(load_rgb(p.path, max_side=64), dtype=np.float32) / 255.0  # (H, W, 3)
            except ImageLoadError as exc:
                out.append(Analysis(p.photo_id, {"error": str(exc)}))
                continue
            mean = rgb.reshape(-1, 3).mean(axis=0)  # (3,)
            vec = mean / max(float(np.linalg.norm(mean)), 1e-6)
            out.append(Analysis(p.photo_id, {"mean": [round(float(v), 4) for v in mean]}, {"fake-colour": vec}))
        return out


class FakeFaceAnalyzer(Analyzer):
    name = "faces"
    model_id = "fake-faces"
    version = "1"

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        out = []
        for p in batch:
            m = _PERSON.match(p.path.name)
            regions = [] if m is None else [Region(0.3, 0.2, 0.2, 0.3, 1.0, fake_face_vector(int(m[1]), p.photo_id))]
            payload = {"faces": [{"box": [r.x, r.y, r.w, r.h], "score": r.score} for r in regions]}
            out.append(Analysis(p.photo_id, payload, regions=regions))
        return out


class FakeContextAnalyzer(Analyzer):
    name = "embeddings"
    model_id = "fake-context"
    version = "1"
    needs = ("faces",)

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        out = []
        for p in batch:
            faces = p.context.get("faces")
            seen = None if faces is None else len(faces.get("faces", []))
            out.append(Analysis(p.photo_id, {"faces_seen": seen}))
        return out


class RaisingAnalyzer(Analyzer):
    name = "raising"
    model_id = "fake-raising"
    version = "1"

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        if any("boom" in p.path.name for p in batch):
            raise RuntimeError("boom: this photo breaks the model")
        return [Analysis(p.photo_id, {"ok": True}) for p in batch]


class CrashingAnalyzer(Analyzer):
    name = "crashing"
    model_id = "fake-crashing"
    version = "1"

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:
        if any("crash" in p.path.name for p in batch):
            os._exit(3)  # what a segfault in native code looks like from the outside
        return [Analysis(p.photo_id, {"ok": True}) for p in batch]


class BrokenModelAnalyzer(Analyzer):
    name = "broken"
    model_id = "fake-broken"
    version = "1"

    def _load(self) -> None:
        raise RuntimeError("model file missing: reinstall the model package")

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:  # pragma: no cover - never loads
        return []


class UnstartableAnalyzer(Analyzer):
    name = "unstartable"
    model_id = "fake-unstartable"
    version = "1"

    def __init__(self) -> None:
        super().__init__()
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            os._exit(4)

    def _predict(self, batch: Sequence[PhotoInput]) -> list[Analysis]:  # pragma: no cover - never in a worker
        return [Analysis(p.photo_id, {"ok": True}) for p in batch]


_FAKES: dict[str, type[Analyzer]] = {
    "tags": FakeColorAnalyzer, "faces": FakeFaceAnalyzer, "embeddings": FakeContextAnalyzer,
    "raising": RaisingAnalyzer, "crashing": CrashingAnalyzer, "broken": BrokenModelAnalyzer,
    "unstartable": UnstartableAnalyzer,
}


def fake_factory(names: Sequence[str], settings: Any) -> dict[str, Analyzer]:
    """The fakes for ``names`` (a drop-in for ``build_analyzers``)."""
    unknown = [n for n in names if n not in _FAKES]
    if unknown:
        raise ValueError(f"no fake analyzer called {', '.join(unknown)}")
    return {n: _FAKES[n]() for n in names}
