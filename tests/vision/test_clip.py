"""Tests for albumen.vision.clip: a user's own checkpoint, exercised with randomly initialised tiny models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from albumen.vision.base import PhotoInput
from albumen.vision.clip import ClipImageEmbedder
from albumen.vision.efficientnet_lite import EfficientNetLite
from albumen.vision.embeddings import MINILM_SPACE, EmbeddingAnalyzer
from albumen.vision.tags import ImageClassifier
from albumen.vision.text_embedding import FakeTextEmbedder

WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "photo", "of", "cat", "dog", "coffee", "beach"]


def _tiny_clip_dir(root: Path) -> Path:
    """A randomly initialised 2-layer CLIPModel plus a word-level tokenizer, saved like a user's checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=24,
    )
    path = root / "my-clip"
    CLIPModel(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_clip_dir(tmp_path_factory.mktemp("clip"))


def test_transformers_checkpoint_embeds_images_and_texts(clip_dir: Path, photos: list[PhotoInput]) -> None:
    clip = ClipImageEmbedder(clip_dir)
    assert clip.backend == "transformers" and clip.space == "clip:my-clip"
    vecs = clip.embed_paths([p.path for p in photos])
    assert vecs[-1] is None  # the broken file
    assert all(v is not None and v.shape == (24,) for v in vecs[:-1])
    texts = clip.embed(["a photo of a cat", "a photo of a dog"])
    assert texts.shape == (2, 24) and clip.dim == 24
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])
    np.testing.assert_allclose(clip.embed(["a photo of a cat"])[0], texts[0], atol=1e-5)  # deterministic


def test_embedding_analyzer_stores_a_second_clip_space(clip_dir: Path, photos: list[PhotoInput]) -> None:
    analyzer = EmbeddingAnalyzer(classifier=ImageClassifier(model=EfficientNetLite()),
                                 text_embedder=FakeTextEmbedder(), clip=ClipImageEmbedder(clip_dir))
    results = analyzer.predict(photos)
    assert set(results[0].vectors) == {MINILM_SPACE, "clip:my-clip"}
    assert results[0].payload["spaces"] == [MINILM_SPACE, "clip:my-clip"]
    assert "clip-transformers:my-clip" in analyzer.model_id  # a new checkpoint re-runs the analyzer


def test_bad_arguments_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="architecture"):
        ClipImageEmbedder(tmp_path / "ckpt.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClipImageEmbedder(tmp_path / "missing", backend="transformers").load()
    with pytest.raises(ValueError, match="backend"):
        ClipImageEmbedder(tmp_path, backend="onnx")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip_torch not importable here")
def test_open_clip_random_checkpoint(tmp_path: Path, photos: list[PhotoInput]) -> None:
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "vitb32.pt")
    clip = ClipImageEmbedder(tmp_path / "vitb32.pt", arch="ViT-B-32")
    vec = clip.embed_paths([photos[0].path])[0]
    assert vec is not None and vec.shape == (512,)
    assert clip.embed(["a cat"]).shape == (1, 512)
