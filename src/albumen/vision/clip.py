"""A user's own CLIP / SigLIP checkpoint as a true joint image-text space (optional; nothing ships one offline).

``ClipImageEmbedder`` loads a checkpoint the user already has, from a local path only, through one of two backends:

- ``"transformers"``: a Hugging Face model directory (``config.json`` + weights + tokenizer files) of any model
  with ``get_image_features`` / ``get_text_features`` (CLIPModel, SiglipModel ...);
- ``"open_clip"``: an open_clip checkpoint file plus its architecture name (e.g. ``ViT-B-32``), when the
  ``open_clip_torch`` package is importable.

It embeds images (``embed_paths``) and texts (``embed``, the ``SupportsEmbed`` seam search uses) into one space named
``clip:<name>``. This module knows the two backends' calling conventions; it knows nothing about the store or search.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from albumen.vision.image_io import ImageLoadError, load_rgb, to_model_batch
from albumen.vision.text_embedding import l2_normalize

__all__ = ["ClipImageEmbedder"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(out: Any) -> Any:
    """transformers >= 5 returns a ModelOutput whose ``pooler_output`` is the projected embedding."""
    return out if hasattr(out, "shape") else out.pooler_output


class ClipImageEmbedder:
    """Image and text vectors from a local CLIP-like checkpoint.

    Args:
        path: a model directory (transformers) or a checkpoint file (open_clip).
        backend: ``"transformers"`` or ``"open_clip"``; default: a directory means transformers, a file open_clip.
        arch: the open_clip architecture name (required for open_clip).
        name: the space suffix; default the directory or file stem.
    """

    version = "1"

    def __init__(self, path: Path | str, backend: str | None = None, arch: str | None = None,
                 name: str | None = None) -> None:
        self.path = Path(path).expanduser()
        self.backend = backend or ("transformers" if self.path.is_dir() else "open_clip")
        if self.backend not in ("transformers", "open_clip"):
            raise ValueError(f"unknown CLIP backend {self.backend!r}: use 'transformers' or 'open_clip'")
        if self.backend == "open_clip" and not arch:
            raise ValueError("an open_clip checkpoint needs its architecture name (arch=, e.g. 'ViT-B-32')")
        self.arch = arch
        label = name or (arch and f"{arch}-{self.path.stem}") or self.path.name
        self.space = f"clip:{label}"
        self.model_id = f"clip-{self.backend}:{label}"
        self.dim = 0
        self._model: Any = None
        self._tokenizer: Any = None
        self._image_size = 224
        self._mean, self._std = _CLIP_MEAN, _CLIP_STD

    def load(self) -> None:
        if self._model is not None:
            return
        if not self.path.exists():
            raise FileNotFoundError(f"CLIP checkpoint {self.path} does not exist")
        if self.backend == "transformers":
            self._load_transformers()
        else:
            self._load_open_clip()
        self._model.eval()

    def _load_transformers(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        vision = getattr(self._model.config, "vision_config", None)
        self._image_size = int(getattr(vision, "image_size", 224))
        self.dim = int(getattr(self._model.config, "projection_dim", 0) or getattr(vision, "hidden_size", 0))
        if "siglip" in str(getattr(self._model.config, "model_type", "")):
            self._mean, self._std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def _load_open_clip(self) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise RuntimeError(
                "the open_clip backend needs `open_clip_torch` (and a torchvision matching this torch); "
                f"it cannot be imported here: {exc}"
            ) from exc
        model, _, preprocess = open_clip.create_model_and_transforms(self.arch, pretrained=str(self.path))
        self._model = model
        self._tokenizer = open_clip.get_tokenizer(self.arch)
        self._image_size = int(model.visual.image_size[0] if isinstance(model.visual.image_size, tuple)
                               else model.visual.image_size)
        self.dim = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") else 0

    def _pixels(self, images: Sequence[Any]) -> Any:
        import torch

        x = to_model_batch(images, self._image_size, mean=0.0, std=1.0)  # (B, 3, S, S) in [0, 1]
        mean = torch.tensor(self._mean).view(1, 3, 1, 1)
        std = torch.tensor(self._std).view(1, 3, 1, 1)
        return (x - mean) / std

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images -> float32 (B, D) unit vectors."""
        import torch

        self.load()
        with torch.inference_mode():
            x = self._pixels(images)
            if self.backend == "transformers":
                feats = _features(self._model.get_image_features(pixel_values=x))
            else:
                feats = self._model.encode_image(x)
        return l2_normalize(feats.float().numpy())

    def embed_paths(self, paths: Sequence[Path]) -> list[np.ndarray | None]:
        """One unit vector per path, ``None`` for a file that does not decode (the batch goes on)."""
        images, where = [], []
        for i, p in enumerate(paths):
            try:
                images.append(load_rgb(p, max_side=2 * self._image_size))
                where.append(i)
            except ImageLoadError:
                continue
        out: list[np.ndarray | None] = [None] * len(paths)
        if images:
            for i, vec in zip(where, self.embed_images(images)):
                out[i] = vec
        return out

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 (N, D) unit vectors in the same space as the images (``SupportsEmbed``)."""
        import torch

        if isinstance(texts, str):
            raise TypeError("embed() takes a list of strings, not a single string")
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            if self.backend == "transformers":
                tok = self._tokenizer(list(texts), padding="max_length" if "siglip" in self.model_id.lower()
                                      else True, truncation=True, return_tensors="pt")
                feats = _features(self._model.get_text_features(**{k: v for k, v in tok.items()
                                                                   if k in ("input_ids", "attention_mask")}))
            else:
                feats = self._model.encode_text(self._tokenizer(list(texts)))
        return l2_normalize(feats.float().numpy())
