"""load_model: folders, the dtype copy kept in the cache, quantized folders, and clear errors."""

from __future__ import annotations

from collections.abc import Iterator

from pathlib import Path

import pytest
import torch

from albumen.llm.loading import load_model, parse_dtype, resolve_folder
from albumen.llm.testing import one_thread, save_tiny_folder, tiny_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def _mapped(t: torch.Tensor) -> bool:
    """A view into a whole mapped file (the storage holds every tensor), not a private copy."""
    return t.untyped_storage().nbytes() > t.numel() * t.element_size()


def test_folder_loads_memory_mapped_with_the_same_weights(tmp_path: Path) -> None:
    folder = save_tiny_folder(tmp_path / "m", seed=2)
    model, tok = load_model(folder, models_dir=tmp_path / "models")
    ref = tiny_model(seed=2)
    for (name, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert _mapped(model.model.layers[0].mlp.up_proj.weight)
    assert tok.vocab_size == 260


def test_bf16_copy_is_made_once_inside_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    folder = save_tiny_folder(models / "cache" / "tiny-abc", seed=3)
    model, _ = load_model(folder, "bf16", models_dir=models)
    variant = models / "cache" / "tiny-abc-bfloat16"
    assert (variant / "model.safetensors").is_file() and (variant / "tokenizer.json").is_file()
    w = model.model.layers[1].self_attn.q_proj.weight
    assert w.dtype == torch.bfloat16 and _mapped(w)
    torch.testing.assert_close(w, tiny_model(seed=3).model.layers[1].self_attn.q_proj.weight.to(torch.bfloat16))
    import albumen.llm.weights.cache as cache

    monkeypatch.setattr(cache, "save_folder", lambda *a, **k: pytest.fail("converted again"))
    again, _ = load_model(folder, "bf16", models_dir=models)
    assert again.model.layers[1].self_attn.q_proj.weight.dtype == torch.bfloat16


def test_folders_outside_the_cache_are_cast_in_memory(tmp_path: Path) -> None:
    folder = save_tiny_folder(tmp_path / "user-model")
    model, _ = load_model(folder, torch.bfloat16, models_dir=tmp_path / "models")
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user-model"]  # nothing written next to it


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        resolve_folder(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        resolve_folder(tmp_path / "empty", tmp_path)
    (tmp_path / "x.bin").write_bytes(b"1")
    with pytest.raises(ValueError, match="not a .gguf file"):
        resolve_folder(tmp_path / "x.bin", tmp_path)
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ValueError, match="not a readable GGUF"):
        resolve_folder(tmp_path / "bad.gguf", tmp_path)
    with pytest.raises(ValueError, match="unsupported dtype"):
        parse_dtype("int3")
