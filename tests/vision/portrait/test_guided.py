"""The guided filter against a direct per-window least-squares fit (the definition), plus its edge behaviour."""

from __future__ import annotations

import cv2
import numpy as np

from albumen.vision.portrait.guided import apply_guided_coefficients, guided_coefficients, guided_filter


def _reference(guide: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. by the book: ridge-regress p on I in every window (reflect-padded), then average the fits."""
    h, w = p.shape
    gp = np.pad(guide, ((r, r), (r, r), (0, 0)), mode="symmetric").astype(np.float64)
    pp = np.pad(p, r, mode="symmetric").astype(np.float64)
    a = np.zeros((h, w, 3))
    b = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            win_i = gp[y : y + 2 * r + 1, x : x + 2 * r + 1].reshape(-1, 3)
            win_p = pp[y : y + 2 * r + 1, x : x + 2 * r + 1].reshape(-1)
            mu, pm = win_i.mean(0), win_p.mean()
            cov = (win_i - mu).T @ (win_i - mu) / len(win_p)
            a[y, x] = np.linalg.solve(cov + eps * np.eye(3), (win_i - mu).T @ (win_p - pm) / len(win_p))
            b[y, x] = pm - a[y, x] @ mu
    ka = np.pad(a, ((r, r), (r, r), (0, 0)), mode="symmetric")
    kb = np.pad(b, r, mode="symmetric")
    k = 2 * r + 1
    mean_a = np.stack([[ka[y : y + k, x : x + k].mean((0, 1)) for x in range(w)] for y in range(h)])
    mean_b = np.array([[kb[y : y + k, x : x + k].mean() for x in range(w)] for y in range(h)])
    return (mean_a * guide).sum(-1) + mean_b


def test_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    guide = rng.random((14, 17, 3)).astype(np.float32)
    p = rng.random((14, 17)).astype(np.float32)
    a, b = guided_coefficients(guide, p, r=2, eps=1e-2)
    ours = (a * guide).sum(-1) + b
    np.testing.assert_allclose(ours, _reference(guide, p, 2, 1e-2), atol=2e-4)


def test_snaps_a_blurry_mask_to_the_guide_edge() -> None:
    guide = np.zeros((40, 60, 3), dtype=np.uint8)
    guide[:, 30:] = 220  # a sharp edge at x = 30
    blurry = cv2.GaussianBlur((np.arange(60) >= 30).astype(np.float32)[None].repeat(40, 0), (0, 0), 4.0)
    refined = guided_filter(guide, blurry, r=4, eps=1e-3)
    step_before = float((blurry[:, 30] - blurry[:, 29]).mean())
    step_after = float((refined[:, 30] - refined[:, 29]).mean())
    assert step_after > 0.35 and step_after > 3 * step_before  # a ramp of ~0.1 per pixel became a ~0.4 step
    assert float(np.abs(np.diff(refined[:, 31:], axis=1)).max()) < step_after / 5  # the largest one, at the edge


def test_low_resolution_coefficients_follow_full_resolution_edges() -> None:
    big = np.zeros((200, 300, 3), dtype=np.uint8)
    big[:, 151:] = 230  # an edge that falls between low-resolution pixels
    small = cv2.resize(big, (75, 50), interpolation=cv2.INTER_AREA)
    mask = (np.arange(75) >= 38).astype(np.float32)[None].repeat(50, 0)
    a, b = guided_coefficients(small.astype(np.float32) / 255, mask, r=2, eps=1e-3)
    full = apply_guided_coefficients(a, b, big)
    assert full.shape == (200, 300)
    assert full[:, 148].mean() < 0.1 and full[:, 153].mean() > 0.9  # a full-resolution step, not a 4-pixel ramp
