"""Exact nearest-neighbour search over unit vectors: one float32 matrix, one matrix-vector product, one partial sort.

Chosen by measurement (``benchmarks/vector_search.py``, figures in ``docs/search.md``): at 100k x 384 float32 a
brute-force product reads 154 MB and takes ~10 ms on one core, well under the 50 ms target, is exact (no recall loss),
needs no build step, and updates by appending rows. FAISS flat and torch give the same answer no faster (the product is
memory-bound); HNSW is faster per query but approximate (recall@20 well below 1 on clustered data), takes ~40 s to
build and adds a dependency we do not need below a few million photos; sqlite-vec's brute force is slower.

Scores are cosine similarities (the inputs are L2-normalised by the embedders). Filters arrive as a boolean mask over
rows, applied before the top-k so that a filter never empties a result that has matches.

This module knows vectors and row ids; it knows nothing about photos, text or the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["VectorIndex", "top_k"]


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and scores of the ``k`` best rows, best first; rows where ``allowed`` is False never appear.

    Args:
        scores: float32 (N,).
        k: how many to return (fewer when fewer rows are allowed).
        allowed: bool (N,) or None for all rows.

    Returns:
        (indices int64 (K,), scores float32 (K,)) with K = min(k, allowed rows).
    """
    if allowed is not None:
        candidates = np.flatnonzero(allowed)  # (M,)
        sub = scores[candidates]  # (M,)
    else:
        candidates = None
        sub = scores
    k = min(int(k), sub.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if k < sub.shape[0]:
        part = np.argpartition(-sub, k - 1)[:k]  # (k,) unordered best
    else:
        part = np.arange(sub.shape[0])
    order = part[np.argsort(-sub[part], kind="stable")]  # (k,) best first
    rows = candidates[order] if candidates is not None else order
    return rows.astype(np.int64), sub[order].astype(np.float32)


class VectorIndex:
    """Photo ids and their unit vectors; ``search`` returns the most similar ids with cosine scores.

    Args:
        ids: one id per row.
        matrix: float32 (N, D); rows should be L2-normalised.
    """

    def __init__(self, ids: Sequence[int], matrix: np.ndarray) -> None:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"the index matrix must be 2-D (N, D), got shape {matrix.shape}")
        if len(ids) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids for {matrix.shape[0]} vectors")
        self.ids = np.asarray(ids, dtype=np.int64)  # (N,)
        self.matrix = matrix  # (N, D)
        self._row_of = {int(i): r for r, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def row_of(self, photo_id: int) -> int | None:
        return self._row_of.get(int(photo_id))

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row to ``query`` (D,): float32 (N,)."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)  # (D,)
        if q.shape[0] != self.dim:
            raise ValueError(f"query has dimension {q.shape[0]}, the index {self.dim}")
        # einsum, not BLAS: OpenBLAS's threaded sgemv wins on idle cores (3.4 vs 5.3 ms at 100k) but on 2 shared cores
        # pays ~8 ms waking its threads even at 3k rows; one plain pass has the better worst case (docs/search.md)
        return np.einsum("nd,d->n", self.matrix, q)  # (N, D) . (D,) -> (N,)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar ``(ids int64 (K,), scores float32 (K,))``, best first, among ``allowed`` rows."""
        rows, scores = top_k(self.scores(query), k, allowed)
        return self.ids[rows], scores
