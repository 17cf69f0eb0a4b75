"""Depth-like falloff: how much blur each pixel gets, from a thin-lens model scaled by the subject's face.

A face is about ``FACE_HEIGHT_M`` tall, so its height in the frame and the focal length give the subject distance s
(similar triangles on a full-frame sensor). A point at distance D then blurs into a disc of diameter

    c = f^2 / (N (s - f)) * (D - s) / D          (thin lens, focused at s, f-number N)

on the sensor. We do not know D per pixel, so ``depth = (D - s) / D`` in [0, 1] is estimated: 0 on the subject,
``background_depth`` right next to it, rising towards 1 (infinity) with the distance from the subject in face heights;
other people take the depth their own face size implies. Knows nothing about colours, kernels or files.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.subject import Subject

__all__ = [
    "FACE_HEIGHT_M",
    "SENSOR_SHORT_MM",
    "blur_radius_map",
    "depth_map",
    "infinity_blur_radius",
    "subject_distance_m",
]

FACE_HEIGHT_M = 0.2  # a face detector's box, brow to chin, on an adult
SENSOR_SHORT_MM = 24.0  # full-frame sensor, short side


def subject_distance_m(face_fraction_of_short_side: float, focal_length_mm: float) -> float:
    """Distance at which a FACE_HEIGHT_M face fills this fraction of the frame's short side."""
    return focal_length_mm * FACE_HEIGHT_M / (max(face_fraction_of_short_side, 1e-3) * SENSOR_SHORT_MM)


def infinity_blur_radius(distance_m: float, focal_length_mm: float, aperture: float) -> float:
    """Blur-disc radius of a point at infinity, as a fraction of the frame's short side (thin lens)."""
    f = focal_length_mm
    s = max(distance_m * 1000.0, 2.0 * f)  # closer than 2f is macro: clamp rather than divide by ~0
    diameter_mm = f * f / (aperture * (s - f))
    return 0.5 * diameter_mm / SENSOR_SHORT_MM


def depth_map(subject: Subject, scale_px: float, config: PortraitConfig) -> np.ndarray:
    """(h, w) float32 depth (D - s) / D in [0, 1]; ``scale_px`` is the subject's face height in working pixels."""
    hard = (subject.mask >= 0.5).astype(np.uint8)
    if not hard.any():
        return np.full(hard.shape, config.background_depth, dtype=np.float32)
    dist = cv2.distanceTransform(1 - hard, cv2.DIST_L2, 3)  # (h, w) pixels to the nearest subject pixel
    reach = config.depth_gain * 3.0 * scale_px  # the background recedes over ~3 face heights
    base = config.background_depth
    depth = np.where(hard > 0, 0.0, base + (1.0 - base) * (1.0 - np.exp(-dist / reach)))
    for other in subject.others:
        if other.depth is not None:
            depth = np.where(other.mask, min(other.depth, 1.0), depth)
    return depth.astype(np.float32)


def blur_radius_map(subject: Subject, shape: tuple[int, int], config: PortraitConfig) -> tuple[np.ndarray, dict]:
    """Per-pixel disc radius in working pixels, and what it was derived from (distance, radius at infinity)."""
    h, w = shape
    short = min(h, w)
    if subject.face is not None:
        face_px = subject.face.height * h
        distance = subject_distance_m(face_px / short, config.focal_length_mm)
    else:
        face_px = 0.12 * short  # a typical portrait face, only used as the falloff's length scale
        distance = config.fallback_distance_m
    r_inf = min(infinity_blur_radius(distance, config.focal_length_mm, config.aperture), config.max_blur_fraction)
    depth = depth_map(subject, face_px, config)
    radius = (r_inf * short) * depth  # (h, w)
    info = {"subject_distance_m": round(distance, 2), "radius_at_infinity_px": round(r_inf * short, 2)}
    if not math.isfinite(float(radius.max())):
        raise ValueError("blur radius is not finite")
    return radius.astype(np.float32), info
