from __future__ import annotations

import numpy as np
import pytest

from albumen.search.vector_index import VectorIndex, top_k


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_matches_a_full_sort() -> None:
    m = unit_rows(500, 32)
    ids = np.arange(1000, 1500)
    index = VectorIndex(ids, m)
    q = unit_rows(1, 32, seed=1)[0]
    got_ids, got_scores = index.search(q, 10)
    expect = np.argsort(-(m @ q), kind="stable")[:10]
    np.testing.assert_array_equal(got_ids, ids[expect])
    np.testing.assert_allclose(got_scores, (m @ q)[expect], rtol=1e-6)
    assert np.all(np.diff(got_scores) <= 0)


def test_a_row_is_its_own_nearest_neighbour() -> None:
    m = unit_rows(200, 16)
    index = VectorIndex(list(range(200)), m)
    for row in (0, 57, 199):
        ids, scores = index.search(m[row], 1)
        assert ids.tolist() == [row] and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_mask_applies_before_top_k() -> None:
    scores = np.array([0.9, 0.8, 0.1, 0.05, 0.7], dtype=np.float32)
    allowed = np.array([False, False, True, True, False])
    rows, got = top_k(scores, 3, allowed)
    assert rows.tolist() == [2, 3] and got.tolist() == pytest.approx([0.1, 0.05])
    rows, _ = top_k(scores, 0)
    assert rows.size == 0
    rows, _ = top_k(scores, 10)
    assert rows.tolist() == [0, 1, 4, 2, 3]


def test_bad_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="ids for"):
        VectorIndex([1, 2], unit_rows(3, 4))
    with pytest.raises(ValueError, match="2-D"):
        VectorIndex([1], np.zeros(4, dtype=np.float32))
    index = VectorIndex([1, 2, 3], unit_rows(3, 4))
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.zeros(5, dtype=np.float32), 1)
    assert index.row_of(2) == 1 and index.row_of(9) is None and len(index) == 3 and index.dim == 4


def test_same_answer_as_faiss_flat() -> None:
    faiss = pytest.importorskip("faiss")
    m = unit_rows(2000, 64, seed=3)
    queries = unit_rows(5, 64, seed=4)
    flat = faiss.IndexFlatIP(64)
    flat.add(m)
    want_scores, want_rows = flat.search(queries, 15)
    index = VectorIndex(np.arange(2000), m)
    for q, rows, scores in zip(queries, want_rows, want_scores):
        got_ids, got_scores = index.search(q, 15)
        np.testing.assert_array_equal(got_ids, rows)
        np.testing.assert_allclose(got_scores, scores, rtol=1e-5, atol=1e-6)
