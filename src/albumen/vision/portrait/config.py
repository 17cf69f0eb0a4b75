"""Portrait Mode settings: one typed dataclass, a few named presets, and the checks that give clear errors.

This module knows nothing about images; every other portrait module reads its numbers from ``PortraitConfig``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["APERTURE_RANGE", "PORTRAIT_PRESETS", "PortraitConfig", "parse_focus"]

APERTURE_RANGE = (1.4, 16.0)  # f-numbers a user may ask for


@dataclass(frozen=True)
class PortraitConfig:
    """How Portrait Mode renders. Lengths in "working" pixels refer to the reduced image the masks live on."""

    aperture: float = 2.8  # f-number: smaller = wider aperture = more blur
    focal_length_mm: float = 85.0  # full-frame equivalent; with the face size it sets how strong the blur is
    focus: tuple[float, float] | None = None  # (x, y) in [0, 1] of width/height: which subject to keep sharp
    work_pixels: int = 250_000  # masks, edge refinement and bokeh run at about this many pixels
    max_blur_fraction: float = 0.04  # cap on the disc radius, as a fraction of the image's short side
    depth_gain: float = 1.0  # how fast the scene recedes: distance from the subject, in face heights, per depth unit
    background_depth: float = 0.5  # depth right behind the subject: (D - s) / D, 0 = subject plane, 1 = infinity
    fallback_distance_m: float = 1.5  # subject distance when no face gives the scale
    same_plane: float = 0.15  # other people whose depth is below this stay sharp with the subject
    max_layers: int = 8  # blurred layers of the fast bokeh path
    salient_fallback: bool = True  # no person: look for a salient subject instead of giving up
    person_threshold: float = 0.5  # segmentation probability that counts as "person"
    min_subject_fraction: float = 0.004  # smaller person blobs are noise
    faceless_confidence: float = 0.9  # mean probability a person blob with no face on it needs to count
    guided_radius: int = 4  # edge refinement window (working pixels)
    guided_eps: float = 1e-3  # edge refinement regulariser: smaller follows image edges more tightly
    bloom_threshold: float = 0.8  # linear luminance (sRGB ~0.9) where near-clipped highlights start to bloom
    bloom_gain: float = 4.0  # how much brighter a clipped highlight is treated before blurring
    strips: int = 7  # rectangles per bokeh disc

    def __post_init__(self) -> None:
        lo, hi = APERTURE_RANGE
        if not lo <= self.aperture <= hi:
            raise ValueError(f"aperture f/{self.aperture:g} is outside f/{lo:g}..f/{hi:g}")
        if self.focus is not None:
            x, y = self.focus
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"focus {self.focus} must be fractions of width and height in [0, 1]")
        if self.work_pixels < 4096:
            raise ValueError("work_pixels must be at least 4096")
        if self.focal_length_mm <= 0 or self.max_blur_fraction <= 0 or self.depth_gain <= 0:
            raise ValueError("focal_length_mm, max_blur_fraction and depth_gain must be positive")
        if not 0.0 <= self.background_depth <= 1.0 or not 0.0 <= self.same_plane < 1.0:
            raise ValueError("background_depth must be in [0, 1] and same_plane in [0, 1)")
        if self.max_layers < 1 or self.fallback_distance_m <= 0:
            raise ValueError("max_layers must be >= 1 and fallback_distance_m > 0")
        if self.strips < 1 or self.guided_radius < 1 or self.guided_eps <= 0:
            raise ValueError("strips and guided_radius must be >= 1 and guided_eps > 0")

    def replace(self, **changes: object) -> PortraitConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


PORTRAIT_PRESETS: dict[str, PortraitConfig] = {
    "natural": PortraitConfig(aperture=2.8),
    "dramatic": PortraitConfig(aperture=1.4, focal_length_mm=105.0),
    "subtle": PortraitConfig(aperture=5.6),
}


def parse_focus(text: str) -> tuple[float, float]:
    """'0.4,0.3' -> (0.4, 0.3); a clear ValueError for anything else."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"focus {text!r} must be X,Y (fractions of width and height, e.g. 0.5,0.35)")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"focus {text!r} must be two numbers, e.g. 0.5,0.35") from None
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise ValueError(f"focus {text!r} must be fractions in [0, 1] of width and height")
    return x, y
