from __future__ import annotations

import numpy as np

from albumen.vision.portrait.saliency import salient_subject, spectral_residual_saliency


def _object_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A red disc on a softly lit, slightly noisy grey-green table: (h, w, 3) uint8 and the disc's true mask."""
    rng = np.random.default_rng(seed)
    h, w = 150, 200
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[...] = np.array([110, 125, 105]) + 30 * (xx / w)[..., None]
    img += rng.normal(0, 4, (h, w, 1))
    disc = (xx - 70) ** 2 + (yy - 80) ** 2 <= 30**2
    img[disc] = (200, 40, 35)
    return np.clip(img, 0, 255).astype(np.uint8), disc


def test_saliency_peaks_on_the_object() -> None:
    img, disc = _object_scene()
    sal = spectral_residual_saliency(img)
    assert sal.shape == disc.shape and 0.0 <= sal.min() and sal.max() <= 1.0
    assert sal[disc].mean() > 2 * sal[~disc].mean()


def test_salient_subject_finds_the_object_outline() -> None:
    img, disc = _object_scene()
    mask = salient_subject(img)
    assert mask is not None
    found = mask > 0.5
    iou = (found & disc).sum() / (found | disc).sum()
    assert iou > 0.8


def test_focus_point_picks_the_object_under_it() -> None:
    img, disc = _object_scene()
    mask = salient_subject(img, focus=(70 / 200, 80 / 150))
    assert mask is not None and mask[80, 70] > 0.5


def test_flat_and_noise_images_have_no_subject() -> None:
    assert spectral_residual_saliency(np.full((120, 160, 3), 90, np.uint8)).max() == 0.0
    assert salient_subject(np.full((120, 160, 3), 128, np.uint8)) is None
    noise = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    assert salient_subject(noise) is None
