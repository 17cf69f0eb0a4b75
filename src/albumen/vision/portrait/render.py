"""Portrait Mode end to end on pixels: segment, choose the subject, refine edges, blur by depth, composite.

Everything that needs thought runs on a reduced "working" copy (~``config.work_pixels``); only three cheap steps
touch full resolution: evaluating the guided-filter matte against the full-size photo (so hair and shoulders follow
full-resolution edges), upsampling the blurred background, and the final blend. Knows nothing about files or EXIF.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from albumen.vision.portrait.composite import composite
from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.depth import blur_radius_map
from albumen.vision.portrait.guided import apply_guided_coefficients, guided_coefficients
from albumen.vision.portrait.layered import layered_bokeh
from albumen.vision.portrait.subject import Subject, select_subject
from albumen.vision.segmentation import FaceDetector, PersonSegmenter

__all__ = ["PortraitResult", "render_portrait", "working_size"]

_GAMMA = 2.2  # blur averages light, so it runs on (approximately) linear values


@dataclass
class PortraitResult:
    image: np.ndarray  # (H, W, 3) uint8, same size as the input
    matte: np.ndarray  # (h, w) float32 refined subject matte at the working resolution
    radius: np.ndarray  # (h, w) float32 blur radius in working pixels
    subject: Subject
    info: dict = field(default_factory=dict)  # subject distance, radius at infinity, timings (s)


def working_size(h: int, w: int, work_pixels: int) -> tuple[int, int]:
    """(h, w) scaled down (never up) to about ``work_pixels`` pixels."""
    scale = min(1.0, math.sqrt(work_pixels / (h * w)))
    return max(1, round(h * scale)), max(1, round(w * scale))


def render_portrait(
    rgb: np.ndarray, config: PortraitConfig, segmenter: PersonSegmenter, detector: FaceDetector
) -> PortraitResult:
    """(H, W, 3) uint8 RGB -> the portrait. Raises ``NoSubjectFound`` when there is nothing to keep sharp."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', type(rgb))}")
    if min(rgb.shape[:2]) < 16:
        raise ValueError(f"image of {rgb.shape[1]}x{rgb.shape[0]} pixels is too small for Portrait Mode")
    t = {"start": time.perf_counter()}
    big_h, big_w = rgb.shape[:2]
    h, w = working_size(big_h, big_w, config.work_pixels)
    work = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (big_h, big_w) else rgb
    t["resize"] = time.perf_counter()

    prob = segmenter.segment(work)  # (h, w)
    faces = detector.detect(work)
    t["models"] = time.perf_counter()
    subject = select_subject(prob, faces, work, config)
    t["subject"] = time.perf_counter()

    guide = work.astype(np.float32) / 255.0  # (h, w, 3)
    coef_a, coef_b = guided_coefficients(guide, subject.mask, config.guided_radius, config.guided_eps)
    matte = apply_guided_coefficients(coef_a, coef_b, work)  # (h, w)
    radius, info = blur_radius_map(subject, (h, w), config)
    t["matte_depth"] = time.perf_counter()

    lin = guide**_GAMMA  # (h, w, 3)
    background = layered_bokeh(
        lin,
        (1.0 - matte) ** 2,  # squared: half-subject rim pixels barely feed the background average
        radius,
        bloom_threshold=config.bloom_threshold,
        bloom_gain=config.bloom_gain,
        max_layers=config.max_layers,
    )
    background_u8 = (background ** (1.0 / _GAMMA) * 255.0 + 0.5).astype(np.uint8)  # (h, w, 3)
    # Pixels whose disc is under ~1 working pixel are in focus: show the original there too.
    in_focus = np.clip(2.0 - 2.0 * radius, 0.0, 1.0).astype(np.float32)  # (h, w)
    t["bokeh"] = time.perf_counter()

    # Weight of the original pixel: keep = m + f (1 - m) with the matte m = a . I + b, so keep = a' . I + b' with
    # a' = a (1 - f), b' = b (1 - f) + f: one guided-filter evaluation at full resolution gives it directly.
    out_of_focus = 1.0 - in_focus
    keep_a = np.ascontiguousarray(coef_a * out_of_focus[..., None], dtype=np.float32)  # (h, w, 3)
    keep_b = np.ascontiguousarray(coef_b * out_of_focus + in_focus, dtype=np.float32)  # (h, w)
    out = composite(rgb, background_u8, keep_a, keep_b, apply_guided_coefficients(keep_a, keep_b, work))
    t["composite"] = time.perf_counter()

    steps = list(t)
    info["timings_s"] = {b: round(t[b] - t[a], 4) for a, b in zip(steps[:-1], steps[1:])}
    info["timings_s"]["total"] = round(t[steps[-1]] - t["start"], 4)
    info.update(subject=subject.kind, faces=len(faces), working_size=[w, h])
    return PortraitResult(image=out, matte=matte, radius=radius, subject=subject, info=info)
