"""The calibrated relevance model: its features, a deterministic fit, and the shipped default's direction."""

from __future__ import annotations

import numpy as np
import pytest

from albumen.search.calibration import DEFAULT_RELEVANCE, FEATURES, fit_relevance_model, relevance_features


def test_features_by_hand() -> None:
    cosine = np.array([0.1, 0.2, 0.3, 0.8], dtype=np.float32)
    keyword = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    fused = cosine + 0.1 * keyword
    f = relevance_features(cosine, keyword, fused)
    assert f.shape == (4, len(FEATURES)) and f.dtype == np.float32
    np.testing.assert_allclose(f[:, 0], cosine)
    np.testing.assert_allclose(f[:, 2], keyword)
    np.testing.assert_allclose(f[:, 3], fused - 0.9, atol=1e-6)  # gap to the best
    median, mad = 0.25, 0.1  # median of (0.1, 0.2, 0.3, 0.9); MAD = median(|x - 0.25|) = median(.15, .05, .05, .65)
    np.testing.assert_allclose(f[:, 1], (fused - median) / (1.4826 * mad), rtol=1e-4)


def _query(rng: np.random.Generator, n_relevant: int, n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    cosine = rng.normal(0.2, 0.05, n).astype(np.float32)
    labels = np.zeros(n)
    labels[:n_relevant] = 1.0
    cosine[:n_relevant] += 0.3  # relevant photos score higher
    return relevance_features(cosine, np.zeros(n, np.float32), cosine), labels


def test_fit_separates_relevant_photos_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    data = [_query(rng, k) for k in (1, 3, 10, 0, 5)]
    model = fit_relevance_model([f for f, _ in data], [y for _, y in data])
    assert model == fit_relevance_model([f for f, _ in data], [y for _, y in data])
    f, y = _query(np.random.default_rng(1), 4)
    p = model.probability(f)
    assert p.shape == (50,) and p[y == 1].min() > p[y == 0].max()
    assert model.weights[0] > 0  # a higher cosine means more likely relevant
    with pytest.raises(ValueError, match="one label array per feature array"):
        fit_relevance_model([f], [])


def test_default_model_rises_with_every_score() -> None:
    base = np.array([[0.3, 0.5, 0.0, -0.2]], dtype=np.float32)
    p0 = DEFAULT_RELEVANCE.probability(base)[0]
    for i in range(len(FEATURES)):
        up = base.copy()
        up[0, i] += 0.5
        assert DEFAULT_RELEVANCE.probability(up)[0] > p0, FEATURES[i]
