"""The full-resolution composite, done only where it matters.

out = keep * photo + (1 - keep) * upsampled background, with keep = a . I + b from guided-filter coefficients fitted
at the working size. Most of a portrait is plainly subject (keep = 1) or plainly background (keep = 0); only tiles
that straddle the outline (or an in-focus ramp) need the per-pixel evaluation. Tiles are classified on the working
grid, with a one-pixel margin because bilinear upsampling mixes neighbouring coefficients. Same result as evaluating
everywhere (``composite_everywhere``, the reference), at a fraction of the memory traffic. Knows nothing about masks.
"""

from __future__ import annotations

import cv2
import numpy as np

from albumen.vision.portrait.guided import apply_guided_coefficients

__all__ = ["composite", "composite_everywhere"]

_FLAT = 1e-3  # |a| summed over channels below this: the guide's detail moves keep by < 0.3%


def composite_everywhere(rgb: np.ndarray, background: np.ndarray, coef_a: np.ndarray, coef_b: np.ndarray) -> np.ndarray:
    """Reference: evaluate keep at every full-resolution pixel. (H, W, 3) uint8 photo, (h, w, 3) uint8 background."""
    big_h, big_w = rgb.shape[:2]
    keep = apply_guided_coefficients(coef_a, coef_b, rgb)  # (H, W)
    if background.shape[:2] != (big_h, big_w):
        background = cv2.resize(background, (big_w, big_h), interpolation=cv2.INTER_LINEAR)
    return cv2.blendLinear(rgb, background, keep, cv2.subtract(1.0, keep))


def _tile_states(keep_low: np.ndarray, coef_a: np.ndarray, tile: int) -> np.ndarray:
    """(ny, nx) int8 per working-size tile: 0 all background, 1 all photo, 2 mixed."""
    flat = np.abs(coef_a).sum(-1) <= _FLAT
    kernel = np.ones((3, 3), np.uint8)
    zero = cv2.erode(((keep_low <= _FLAT) & flat).astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE)
    one = cv2.erode(((keep_low >= 1.0 - _FLAT) & flat).astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE)
    h, w = keep_low.shape
    ny, nx = -(-h // tile), -(-w // tile)
    states = np.full((ny, nx), 2, np.int8)
    pad = ((0, ny * tile - h), (0, nx * tile - w))
    zero_t = np.pad(zero, pad, mode="edge").reshape(ny, tile, nx, tile).all(axis=(1, 3))
    one_t = np.pad(one, pad, mode="edge").reshape(ny, tile, nx, tile).all(axis=(1, 3))
    states[zero_t] = 0
    states[one_t] = 1
    return states


def composite(
    rgb: np.ndarray, background: np.ndarray, coef_a: np.ndarray, coef_b: np.ndarray, keep_low: np.ndarray, tile: int = 16
) -> np.ndarray:
    """The blend at full resolution, per tile of ``tile`` working pixels.

    Args:
        rgb: (H, W, 3) uint8 photo.
        background: (h, w, 3) uint8 blurred background at the working size.
        coef_a, coef_b: (h, w, 3), (h, w) float32 guided coefficients of keep.
        keep_low: (h, w) float32 keep evaluated on the working-size photo.
    """
    big_h, big_w = rgb.shape[:2]
    h, w = coef_b.shape
    if (h, w) == (big_h, big_w):
        return composite_everywhere(rgb, background, coef_a, coef_b)
    out = cv2.resize(background, (big_w, big_h), interpolation=cv2.INTER_LINEAR)  # (H, W, 3), background tiles done
    states = _tile_states(keep_low, coef_a, tile)
    sy, sx = big_h / h, big_w / w
    ones = np.ones((1, 3), np.float32)
    for ty, tx in zip(*np.nonzero(states)):
        y0, y1 = round(ty * tile * sy), min(round((ty + 1) * tile * sy), big_h)
        x0, x1 = round(tx * tile * sx), min(round((tx + 1) * tile * sx), big_w)
        if y1 <= y0 or x1 <= x0:
            continue
        photo = rgb[y0:y1, x0:x1]
        if states[ty, tx] == 1:
            out[y0:y1, x0:x1] = photo
            continue
        # Same sampling as cv2.resize(INTER_LINEAR): full-res pixel centre -> working-grid coordinate.
        map_x = np.broadcast_to(((np.arange(x0, x1) + 0.5) / sx - 0.5).astype(np.float32)[None, :], (y1 - y0, x1 - x0))
        map_y = np.broadcast_to(((np.arange(y0, y1) + 0.5) / sy - 0.5).astype(np.float32)[:, None], (y1 - y0, x1 - x0))
        map_x, map_y = np.ascontiguousarray(map_x), np.ascontiguousarray(map_y)
        a = cv2.remap(coef_a, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # (th, tw, 3)
        b = cv2.remap(coef_b, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # (th, tw)
        keep = cv2.transform(cv2.multiply(a, photo, dtype=cv2.CV_32F, scale=1.0 / 255.0), ones) + b
        np.clip(keep, 0.0, 1.0, out=keep)
        out[y0:y1, x0:x1] = cv2.blendLinear(photo, out[y0:y1, x0:x1], keep, 1.0 - keep)
    return out
