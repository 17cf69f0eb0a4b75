"""Face clustering math: pure functions over (N, 128) dlib descriptors; no SQLite, no images.

- ``cluster_faces``: the full re-cluster, agglomerative clustering with average linkage cut at a Euclidean distance
  threshold (scikit-learn), so the number of people is not fixed in advance and a lone face stays a person of its own.
- ``assign_incremental``: the everyday path as new faces arrive, one face at a time in order: join the nearest
  existing cluster centroid if it is closer than the threshold, else open a new cluster (which later faces may join).
- ``pairwise_scores``: pairwise precision / recall / F1 of a clustering against ground-truth labels, the standard
  measure for face clustering (every pair of items is one decision: same person or not).

dlib's ResNet descriptors put the same person ~0.3-0.5 apart and different people > 0.6 (Euclidean), hence the
default threshold of 0.5 for centroids and clusters alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["ClusterConfig", "PairwiseScores", "assign_incremental", "cluster_faces", "pairwise_scores"]


@dataclass
class ClusterConfig:
    """Distances are Euclidean between dlib 128-d descriptors."""

    threshold: float = 0.5  # join a cluster when the face is closer than this to its centroid
    linkage: str = "average"  # re-cluster linkage: "average", "complete" or "single"
    recluster_threshold: float = 0.5  # where the re-cluster dendrogram is cut


def assign_incremental(
    embeddings: np.ndarray, centroids: np.ndarray, counts: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign faces one by one to the nearest running centroid under ``threshold``, else start a new cluster.

    Args:
        embeddings: (N, D) new faces, in arrival order.
        centroids: (K, D) means of the existing clusters (K may be 0).
        counts: (K,) faces behind each centroid (so a centroid moves as a running mean).
        threshold: largest distance at which a face joins a cluster.

    Returns:
        ``(labels, centroids, counts)``: labels (N,) index the returned centroids (K' >= K, new clusters appended).
    """
    emb = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)  # (N, D)
    old = np.asarray(centroids, dtype=np.float64)
    d = emb.shape[1] if emb.size else (old.shape[1] if old.ndim == 2 else 128)
    k = len(old)
    cents = np.zeros((k + len(emb), d))  # (K + N, D): room for every face opening a cluster
    cents[:k] = old.reshape(k, d)
    cnts = np.zeros(k + len(emb), dtype=np.int64)
    cnts[:k] = np.asarray(counts, dtype=np.int64).reshape(-1)
    labels = np.empty(len(emb), dtype=np.int64)
    for i, x in enumerate(emb):
        dist = np.linalg.norm(cents[:k] - x, axis=1)  # (K,)
        best = int(dist.argmin()) if k else -1
        if k and dist[best] < threshold:
            # running mean: the centroid follows the cluster as it grows
            cnts[best] += 1
            cents[best] += (x - cents[best]) / cnts[best]
            labels[i] = best
        else:
            cents[k], cnts[k], labels[i] = x, 1, k
            k += 1
    return labels, cents[:k].astype(np.float32), cnts[:k]


def cluster_faces(embeddings: np.ndarray, threshold: float = 0.5, linkage: str = "average") -> np.ndarray:
    """Full re-cluster: agglomerative clustering cut at ``threshold`` (Euclidean). Returns labels (N,) from 0.

    Average linkage is robust to the odd outlier face that would chain two people together under single linkage.
    """
    emb = np.asarray(embeddings, dtype=np.float64)  # (N, D)
    if len(emb) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(emb) == 1:
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, linkage=linkage, metric="euclidean"
    )
    return model.fit_predict(emb).astype(np.int64)


@dataclass(frozen=True)
class PairwiseScores:
    precision: float  # of the pairs put together, the share that are the same person
    recall: float  # of the same-person pairs, the share put together
    f1: float
    items: int
    true_pairs: int
    predicted_pairs: int

    def as_dict(self) -> dict[str, float | int]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
                "items": self.items, "true_pairs": self.true_pairs, "predicted_pairs": self.predicted_pairs}


def pairwise_scores(predicted: Mapping[Hashable, Hashable], truth: Mapping[Hashable, Hashable]) -> PairwiseScores:
    """Pairwise precision / recall / F1 of ``predicted`` cluster ids against ``truth`` labels over the same items.

    Counted in O(N) from the contingency table: pairs together in both = sum over cells of C(n, 2). With no pair on
    one side, that side's score is 1.0 by convention (nothing claimed, nothing wrong).
    """
    if set(predicted) != set(truth):
        raise ValueError("predicted and truth must label exactly the same items")

    def c2(n: int) -> int:
        return n * (n - 1) // 2

    both = Counter((predicted[k], truth[k]) for k in truth)
    tp = sum(c2(n) for n in both.values())
    pred_pairs = sum(c2(n) for n in Counter(predicted.values()).values())
    true_pairs = sum(c2(n) for n in Counter(truth.values()).values())
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairwiseScores(precision, recall, f1, len(truth), true_pairs, pred_pairs)
