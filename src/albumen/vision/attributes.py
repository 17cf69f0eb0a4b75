"""Scene attributes measured on the pixels: black and white, main colours, dark, texture.

The ImageNet classifier names objects; it has no word for "a black and white photo", "something yellow" or "a close-up
of a texture", and those are what people often type. These are plain pixel statistics, no model:

- **black and white**: mean HSV saturation below ``mono_saturation``;
- **colours**: share of the image whose pixels are clearly coloured (saturation and value above a floor) per hue
  band (red, orange, yellow, green, blue, purple, pink); the strongest bands above ``colour_share`` are named;
- **dark**: mean HSV value below ``dark_value`` (night scenes, the night sky);
- **texture**: the image is busy everywhere and alike from tile to tile (gravel, grass, a brick wall): on a 4 x 4 grid
  the quietest tile still has ``texture_busy`` of the busiest tile's gradient energy and the tiles' mean brightness
  barely varies (``texture_tile_std``).

This module knows pixel arithmetic; it knows nothing about models, the store or search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HUE_BANDS", "AttributeConfig", "colour_shares", "pixel_attributes", "texture_stats"]

# name, start and end hue in degrees (red wraps around 0)
HUE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("red", 345.0, 15.0), ("orange", 15.0, 40.0), ("yellow", 40.0, 70.0), ("green", 70.0, 165.0),
    ("blue", 165.0, 255.0), ("purple", 255.0, 290.0), ("pink", 290.0, 345.0),
)


@dataclass(frozen=True)
class AttributeConfig:
    """Cut-offs for the attributes, set by eye on the sample library's photos (docs/search.md says what that costs)."""

    mono_saturation: float = 0.06  # mean saturation below this: black and white
    dark_value: float = 0.2  # mean HSV value below this: dark
    colourful_saturation: float = 0.25  # a pixel counts as coloured above this saturation ...
    colourful_value: float = 0.2  # ... and this value
    colour_share: float = 0.12  # a colour is named when at least this share of the image has it
    max_colours: int = 2
    texture_busy: float = 0.45  # quietest / busiest tile gradient energy
    texture_tile_std: float = 0.07  # std of the 16 tiles' mean grey level (0-1)
    grid: int = 4


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees, saturation and value in [0, 1], each (H, W), from uint8 RGB (H, W, 3)."""
    x = rgb.astype(np.float32) / 255.0  # (H, W, 3)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(axis=-1), x.min(axis=-1)  # (H, W)
    delta = np.maximum(mx - mn, 1e-6)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    hue = np.where(mx == r, ((g - b) / delta) % 6.0, np.where(mx == g, (b - r) / delta + 2.0, (r - g) / delta + 4.0))
    return hue * 60.0, sat, mx


def colour_shares(rgb: np.ndarray, cfg: AttributeConfig | None = None) -> dict[str, float]:
    """Share of all pixels that are clearly coloured and fall in each hue band (the shares sum to <= 1)."""
    return _shares(*_hsv(rgb), cfg or AttributeConfig())


def _shares(hue: np.ndarray, sat: np.ndarray, val: np.ndarray, cfg: AttributeConfig) -> dict[str, float]:
    coloured = (sat > cfg.colourful_saturation) & (val > cfg.colourful_value)  # (H, W)
    hue = hue[coloured]  # (M,) only the coloured pixels are binned
    counts = np.histogram(hue, bins=np.arange(0.0, 361.0, 5.0))[0]  # (72,) 5-degree bins; every band edge is on one
    out = {}
    for name, start, end in HUE_BANDS:
        lo, hi = int(start // 5), int(end // 5)
        n = counts[lo:].sum() + counts[:hi].sum() if start > end else counts[lo:hi].sum()
        out[name] = float(n) / max(sat.size, 1)
    return out


def texture_stats(gray: np.ndarray, grid: int = 4) -> tuple[float, float]:
    """(quietest / busiest tile gradient energy, std of the tiles' mean level) for a grey image (H, W) in [0, 1]."""
    grad = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]  # (H-1, W-1)
    h, w = grad.shape[0] // grid, grad.shape[1] // grid
    if h < 2 or w < 2:
        return 0.0, 1.0
    energy = grad[: h * grid, : w * grid].reshape(grid, h, grid, w).mean(axis=(1, 3))  # (grid, grid)
    level = gray[: h * grid, : w * grid].reshape(grid, h, grid, w).mean(axis=(1, 3))  # (grid, grid)
    return float(energy.min() / max(float(energy.max()), 1e-6)), float(level.std())


def pixel_attributes(rgb: np.ndarray, cfg: AttributeConfig | None = None) -> list[str]:
    """Attribute words for one image, uint8 RGB (H, W, 3): e.g. ``["black and white", "texture"]``, ``["green"]``."""
    cfg = cfg or AttributeConfig()
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
    hue, sat, val = _hsv(rgb)
    words = []
    mono = float(sat.mean()) < cfg.mono_saturation
    if mono:
        words.append("black and white")
    else:
        shares = _shares(hue, sat, val, cfg)
        ranked = sorted(shares.items(), key=lambda kv: -kv[1])
        words.extend(name for name, share in ranked[: cfg.max_colours] if share >= cfg.colour_share)
    if float(val.mean()) < cfg.dark_value:
        words.append("dark")
    busy, tile_std = texture_stats(rgb.astype(np.float32).mean(axis=-1) / 255.0, cfg.grid)
    if busy >= cfg.texture_busy and tile_std <= cfg.texture_tile_std:
        words.append("texture")
    return words
