"""Salient-subject fallback for photos without a person: spectral-residual saliency seeds a GrabCut segmentation.

Spectral residual (Hou & Zhang, CVPR 2007): the log amplitude spectrum of natural images is smooth; what sticks out
of it (the residual) marks the unexpected, i.e. salient, parts. The saliency blob seeds GrabCut (OpenCV), which grows
it to the object's real outline from colour statistics. A weak or sprawling result means "no clear subject" and
returns None; the caller turns that into a clear message. Knows nothing about people, blur or files.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["salient_subject", "spectral_residual_saliency"]


def spectral_residual_saliency(rgb: np.ndarray, width: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 saliency in [0, 1], computed on a ``width``-pixel-wide thumbnail."""
    h, w = rgb.shape[:2]
    small_h = max(8, round(h * width / w))
    gray = cv2.cvtColor(cv2.resize(rgb, (width, small_h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    if float(gray.std()) < 1.0:  # flat: nothing stands out (and the residual would be rounding noise)
        return np.zeros((h, w), dtype=np.float32)
    spec = np.fft.fft2(gray.astype(np.float64))  # (h', w')
    log_amp = np.log(np.abs(spec) + 1e-9)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REPLICATE)  # the spectral residual
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2  # back to space, phase kept
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), sigmaX=width / 24)
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(sal.min()), float(sal.max())
    if hi - lo <= 1e-6 * max(abs(hi), 1e-12):
        return np.zeros((h, w), dtype=np.float32)
    return (sal - lo) / (hi - lo)


def salient_subject(
    rgb: np.ndarray,
    focus: tuple[float, float] | None = None,
    *,
    side: int = 200,
    min_fraction: float = 0.01,
    max_fraction: float = 0.6,
    min_contrast: float = 1.8,
    iterations: int = 4,
    seed: int = 0,
) -> np.ndarray | None:
    """The most salient object (or the one under ``focus``) as an (H, W) float32 mask in [0, 1], or None.

    None when GrabCut keeps too little or too much of the frame, or (without a focus point) when saliency inside
    the object is not ``min_contrast`` times the saliency outside: a flat or busy photo has no clear subject.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, side / max(h, w))
    sh, sw = max(16, round(h * scale)), max(16, round(w * scale))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    sal = spectral_residual_saliency(small)  # (sh, sw)
    gc = np.full((sh, sw), cv2.GC_PR_BGD, dtype=np.uint8)
    seeds = sal > max(2.0 * float(sal.mean()), 0.25)
    if seeds.any():  # GrabCut may grow the object anywhere inside the box around the salient spots
        ys, xs = np.nonzero(seeds)
        gc[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = cv2.GC_PR_FGD
    border = max(2, round(0.03 * min(sh, sw)))
    gc[:border], gc[-border:], gc[:, :border], gc[:, -border:] = cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD
    if focus is not None:
        fx, fy = min(int(focus[0] * sw), sw - 1), min(int(focus[1] * sh), sh - 1)
        cv2.circle(gc, (fx, fy), max(2, round(0.03 * min(sh, sw))), int(cv2.GC_FGD), -1)
    if not (gc == cv2.GC_PR_FGD).any() and focus is None:
        return None
    cv2.setRNGSeed(seed)  # GrabCut's k-means initialisation is random
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a degenerate image (one colour) leaves GrabCut nothing to model
        return None
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return None
    if focus is not None:
        keep = labels[fy, fx]
    else:  # the component holding the most saliency
        keep = int(np.argmax(np.bincount(labels.ravel(), weights=sal.ravel(), minlength=n)[1:])) + 1
    obj = labels == keep
    frac = float(obj.mean())
    if keep == 0 or not min_fraction <= frac <= max_fraction:
        return None
    if focus is None and float(sal[obj].mean()) < min_contrast * float(sal[~obj].mean() + 1e-6):
        return None
    mask = cv2.GaussianBlur(obj.astype(np.float32), (0, 0), sigmaX=1.0)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
