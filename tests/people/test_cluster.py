"""Tests for albumen.people.cluster: incremental assignment, re-cluster, pairwise scores (sklearn as an oracle)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from albumen.people.cluster import assign_incremental, cluster_faces, pairwise_scores
from albumen.vision.fakes import fake_face_vector


def faces_of(people: list[int], per: int = 5) -> tuple[np.ndarray, list[int]]:
    labels = [p for p in people for _ in range(per)]
    emb = np.stack([fake_face_vector(p, seed=i) for i, p in enumerate(labels)])  # (N, 128)
    return emb, labels


def test_fake_geometry_is_like_dlib() -> None:
    emb, labels = faces_of([1, 2])
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    same = d[np.equal.outer(labels, labels) & ~np.eye(len(labels), dtype=bool)]
    diff = d[~np.equal.outer(labels, labels)]
    assert same.max() < 0.25 and diff.min() > 0.6


def test_incremental_grows_clusters_and_opens_new_ones() -> None:
    emb, labels = faces_of([1, 2, 3], per=4)
    order = np.random.default_rng(0).permutation(len(labels))
    got, cents, counts = assign_incremental(emb[order], np.zeros((0, 128)), np.zeros(0), threshold=0.5)
    assert cents.shape == (3, 128) and counts.tolist() == [4, 4, 4]
    truth = [labels[i] for i in order]
    assert pairwise_scores(dict(enumerate(got.tolist())), dict(enumerate(truth))).f1 == 1.0
    # new faces join the existing centroids; a stranger opens a fourth cluster
    more = np.stack([fake_face_vector(2, 99), fake_face_vector(7, 100)])
    again, cents2, counts2 = assign_incremental(more, cents, counts, threshold=0.5)
    assert again[0] == got[truth.index(2)] and again[1] == 3
    assert cents2.shape == (4, 128) and int(counts2.sum()) == 14


def test_recluster_matches_sklearn_and_truth() -> None:
    from sklearn.cluster import AgglomerativeClustering

    emb, labels = faces_of([1, 2, 3, 4], per=6)
    got = cluster_faces(emb, threshold=0.5)
    ref = AgglomerativeClustering(n_clusters=None, distance_threshold=0.5, linkage="average").fit_predict(emb)
    assert pairwise_scores(dict(enumerate(got)), dict(enumerate(ref))).f1 == 1.0
    assert pairwise_scores(dict(enumerate(got)), dict(enumerate(labels))).f1 == 1.0
    assert cluster_faces(np.zeros((0, 128))).shape == (0,) and cluster_faces(emb[:1]).tolist() == [0]


def brute_force(pred: list[int], truth: list[int]) -> tuple[float, float]:
    pairs = list(itertools.combinations(range(len(pred)), 2))
    same_p = {p for p in pairs if pred[p[0]] == pred[p[1]]}
    same_t = {p for p in pairs if truth[p[0]] == truth[p[1]]}
    tp = len(same_p & same_t)
    return (tp / len(same_p) if same_p else 1.0), (tp / len(same_t) if same_t else 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_pairwise_scores_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 4, 30).tolist()
    truth = rng.integers(0, 3, 30).tolist()
    s = pairwise_scores(dict(enumerate(pred)), dict(enumerate(truth)))
    p, r = brute_force(pred, truth)
    assert s.precision == pytest.approx(p) and s.recall == pytest.approx(r)
    assert s.f1 == pytest.approx(2 * p * r / (p + r))


def test_pairwise_scores_edge_cases() -> None:
    all_apart = pairwise_scores({1: "a", 2: "b"}, {1: "x", 2: "x"})
    assert all_apart.precision == 1.0 and all_apart.recall == 0.0 and all_apart.f1 == 0.0
    with pytest.raises(ValueError, match="same items"):
        pairwise_scores({1: "a"}, {2: "a"})
