"""Decoding photos for the analyzers: read-only open, EXIF orientation applied, RGB, bounded size.

Every analyzer decodes through ``load_rgb`` so that a bad file raises one clear ``ImageLoadError`` (which the
analyzer turns into an ``error`` payload for that photo, never a failed batch). ``to_model_batch`` turns images into
the normalised (B, 3, S, S) tensors the classifiers want. This module knows nothing about models or the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["ImageLoadError", "center_crop_resize", "load_rgb", "to_model_batch"]


class ImageLoadError(ValueError):
    """A file that cannot be decoded as an image; the message names the file and the reason."""


def load_rgb(path: Path | str, max_side: int | None = None):  # -> PIL.Image.Image
    """Open ``path`` read-only, apply EXIF orientation, convert to RGB, shrink so the longest side <= max_side."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            if max_side:
                im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale, much faster
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{path}: cannot decode image ({exc})") from exc
    if max_side and max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return im


def center_crop_resize(image, size: int):  # PIL in, PIL out
    """Resize the shorter side to ``size`` and crop the centre square (aspect ratio kept, edges trimmed)."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_model_batch(images: Sequence, size: int, mean: float = 0.5, std: float = 0.5):  # -> torch.Tensor
    """PIL images -> float32 tensor (B, 3, size, size) with (x/255 - mean) / std."""
    import torch

    arrs = [np.asarray(center_crop_resize(im, size), dtype=np.float32) / 255.0 for im in images]  # B x (S, S, 3)
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S)
    return (x - mean) / std
