"""Portrait Mode: subject-aware, lens-like background blur.

Pipeline (``render.render_portrait``): person mask (``albumen.vision.segmentation``) -> subject choice
(``subject``; salient-object fallback in ``saliency``) -> guided-filter edge refinement at full resolution
(``guided``) -> depth-like blur radius from face size and thin-lens optics (``depth``) -> disc bokeh with highlight
bloom (``layered``, exact reference in ``bokeh``) -> composite. ``mode.PortraitMode`` wraps it for files
(``files``: EXIF kept, originals never overwritten).
"""

from albumen.vision.portrait.config import APERTURE_RANGE, PORTRAIT_PRESETS, PortraitConfig, parse_focus
from albumen.vision.portrait.files import Photo, PortraitFileError, read_photo
from albumen.vision.portrait.mode import PortraitMode
from albumen.vision.portrait.render import PortraitResult, render_portrait
from albumen.vision.portrait.subject import NoSubjectFound, Subject

__all__ = [
    "APERTURE_RANGE",
    "NoSubjectFound",
    "PORTRAIT_PRESETS",
    "Photo",
    "PortraitConfig",
    "PortraitFileError",
    "PortraitMode",
    "PortraitResult",
    "Subject",
    "parse_focus",
    "read_photo",
    "render_portrait",
]
