"""The fast bokeh path: layered disc blur. The exact per-pixel-radius kernel lives in ``bokeh.py``.

A handful of fixed-radius disc blurs (each one OpenCV ``filter2D``, which switches to a DFT for large kernels) are
computed for radii r_0 = 0 < r_1 < ... < r_K, and every pixel linearly blends the two layers that bracket its own
radius. As in ``bokeh.bokeh_background`` each layer is a normalised convolution over background pixels only, so the
subject's colours never bleed into the blurred background. Works on numpy arrays; knows nothing about masks or faces.
"""

from __future__ import annotations

import cv2
import numpy as np

from albumen.vision.portrait.bokeh import disc_kernel

__all__ = ["layer_radii", "layered_bokeh"]


def layer_radii(max_radius: float, max_layers: int, step: float = 1.5) -> np.ndarray:
    """0 = r_0 < ... < r_K = max_radius, evenly spaced, at most ``max_layers`` blurred layers and ~``step`` apart."""
    k = int(np.clip(np.ceil(max_radius / step), 1, max_layers))
    return np.linspace(0.0, max(max_radius, 0.0), k + 1)


def layered_bokeh(
    lin: np.ndarray,
    background_weight: np.ndarray,
    radius: np.ndarray,
    *,
    bloom_threshold: float = 0.6,
    bloom_gain: float = 4.0,
    max_layers: int = 8,
) -> np.ndarray:
    """Background as a lens renders it, with a per-pixel disc radius approximated by layers.

    B(x) = sum_k hat_k(r(x)) * [disc_{r_k} * (w . boost(I))](x) / [disc_{r_k} * w](x)

    Args:
        lin: (H, W, 3) float32 linear RGB in [0, 1].
        background_weight: (H, W) float32 in [0, 1]; 0 on the subject, 1 on the background.
        radius: (H, W) float32 disc radius in pixels.

    Returns:
        (H, W, 3) float32 linear RGB in [0, 1].
    """
    lin = np.ascontiguousarray(lin, dtype=np.float32)
    w = np.clip(background_weight, 0.0, 1.0).astype(np.float32)
    luma = lin @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # (H, W)
    t = np.clip((luma - bloom_threshold) / max(1.0 - bloom_threshold, 1e-6), 0.0, 1.0)
    # Clipped highlights were far brighter in the scene: boost them so that, spread over a disc, they stay bright.
    boosted = lin * (1.0 + bloom_gain * t * t)[..., None]  # (H, W, 3)
    stack = np.concatenate([boosted * w[..., None], w[..., None]], axis=-1)  # (H, W, 4): weighted colour + weight
    radii = layer_radii(float(radius.max()) if radius.size else 0.0, max_layers)
    out = np.zeros_like(lin)
    for k, rk in enumerate(radii):
        lo = radii[k - 1] if k > 0 else rk - 1.0
        hi = radii[k + 1] if k + 1 < len(radii) else rk + 1.0
        # Hat function: 1 at r_k, falling linearly to 0 at the neighbouring radii (the ends extend flat).
        hat = np.where(radius <= rk, (radius - lo) / (rk - lo), (hi - radius) / (hi - rk))
        if k == 0:
            hat = np.where(radius <= rk, 1.0, hat)
        if k == len(radii) - 1:
            hat = np.where(radius >= rk, 1.0, hat)
        hat = np.clip(hat, 0.0, 1.0).astype(np.float32)
        if not hat.any():
            continue
        if rk < 0.5:
            layer = lin
        else:
            kern = disc_kernel(float(rk)).numpy()
            sums = cv2.filter2D(stack, -1, kern, borderType=cv2.BORDER_CONSTANT)  # (H, W, 4)
            den = sums[..., 3:4]
            layer = np.where(den > 1e-3, sums[..., :3] / np.maximum(den, 1e-6), lin)
        out += hat[..., None] * layer
    return np.clip(out, 0.0, 1.0)
