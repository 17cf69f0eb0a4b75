"""The relevance cut as a calibrated probability: p(relevant | a photo's scores for this query).

A fixed outlier rule ("beat the library's median by z robust std") fails both ways: a subject a quarter of the library
shows (grass, flowers, people) is no outlier, and an unanswerable query still has outliers. So search asks a small
logistic model instead, over four features of each photo's score for the query (``relevance_features``):

- ``cosine``: the photo vector's cosine with the query vector;
- ``z``: the fused score (cosine + keyword) against the library's background for this query, (s - median) / (1.4826
  MAD);
- ``keyword``: the keyword score (``albumen.search.keywords``);
- ``gap``: the fused score minus the best fused score in the library (how far behind the best match it is).

``fit_relevance_model`` fits it by weighted logistic regression (each query weighs the same, whatever the library
size) on labelled queries; ``benchmarks/search_eval.py --fit`` fits it on the eval's dev split only and prints the
constants that ``DEFAULT_RELEVANCE`` holds. This module knows the features and the fit; it runs no model and opens no
store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_RELEVANCE", "FEATURES", "RelevanceModel", "fit_relevance_model", "relevance_features"]

FEATURES = ("cosine", "z", "keyword", "gap")


def relevance_features(cosine: np.ndarray, keyword: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """Features (N, 4) of every photo for one query, from its cosine (N,), keyword (N,) and fused (N,) scores."""
    median = float(np.median(fused))
    robust_std = max(1.4826 * float(np.median(np.abs(fused - median))), 1e-6)  # MAD scaled to a normal's std
    z = (fused - median) / robust_std  # (N,)
    gap = fused - float(fused.max()) if fused.size else fused  # (N,)
    return np.stack([cosine, z, keyword, gap], axis=1).astype(np.float32)  # (N, 4)


@dataclass(frozen=True)
class RelevanceModel:
    """p = sigmoid(weights . (features - mean) / scale + bias), features in ``FEATURES`` order."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def probability(self, features: np.ndarray) -> np.ndarray:
        """(N, 4) features -> (N,) probabilities."""
        scale = np.maximum(np.asarray(self.scale, dtype=np.float32), 1e-6)
        x = (features - np.asarray(self.mean, dtype=np.float32)) / scale  # (N, 4)
        logits = x @ np.asarray(self.weights, dtype=np.float32) + self.bias  # (N,)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def fit_relevance_model(
    features: Sequence[np.ndarray], labels: Sequence[np.ndarray], l2: float = 1e-3, steps: int = 3000, lr: float = 1.0,
) -> RelevanceModel:
    """Weighted logistic regression by full-batch gradient descent (deterministic).

    Args:
        features: per query, (N_q, 4) features of every photo (``relevance_features``).
        labels: per query, (N_q,) 1.0 for a relevant photo, 0.0 otherwise (all 0 for a query nothing answers).
        l2: ridge penalty on the weights (not the bias).
    """
    if not features or len(features) != len(labels):
        raise ValueError("need one label array per feature array, and at least one query")
    x = np.concatenate(features).astype(np.float64)  # (M, 4)
    y = np.concatenate(labels).astype(np.float64)  # (M,)
    w = np.concatenate([np.full(len(f), 1.0 / max(len(f), 1)) for f in features])  # (M,) each query weighs 1
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    z = np.c_[(x - mean) / scale, np.ones(len(x))]  # (M, 5) with the bias column
    beta = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        grad = z.T @ (w * (p - y)) / w.sum() + l2 * np.r_[beta[:-1], 0.0]
        beta -= lr * grad
    def short(values: np.ndarray) -> tuple[float, ...]:  # 5 significant digits: printable constants, same answers
        return tuple(float(f"{v:.5g}") for v in values)

    return RelevanceModel(short(mean), short(scale), short(beta[:-1]), short(beta[-1:])[0])


# Fit on the search eval's dev split (benchmarks/search_eval.py --fit; keyword_weight 0.1, the text-minilm space of
# embeddings v2): held-out queries never touched these numbers.
DEFAULT_RELEVANCE = RelevanceModel(
    mean=(0.29987, 0.097523, 0.04675, -0.25531), scale=(0.12295, 1.494, 0.25526, 0.17756),
    weights=(0.47336, 0.28031, 0.33984, 0.9883), bias=-3.556,
)
