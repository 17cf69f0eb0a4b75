"""Portrait Mode as a product: models + settings in one object, applied to arrays or to files.

``PortraitMode(config, segmenter=None, detector=None)``: omitted seams default to the MediaPipe models, loaded on
first use. ``render(rgb)`` works on pixels; ``process_file(src, dst)`` reads, renders and writes a new file with the
original's EXIF and returns a small report. Tests pass the fakes from ``portrait.fakes``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from albumen.vision.portrait.config import PortraitConfig
from albumen.vision.portrait.files import check_paths, read_photo, write_photo
from albumen.vision.portrait.render import PortraitResult, render_portrait
from albumen.vision.segmentation import FaceDetector, PersonSegmenter

__all__ = ["PortraitMode"]


class PortraitMode:
    def __init__(
        self,
        config: PortraitConfig | None = None,
        segmenter: PersonSegmenter | None = None,
        detector: FaceDetector | None = None,
    ) -> None:
        self.config = config or PortraitConfig()
        self._segmenter = segmenter
        self._detector = detector

    def _seams(self) -> tuple[PersonSegmenter, FaceDetector]:
        if self._segmenter is None or self._detector is None:
            from albumen.vision.segmentation import MediaPipeFaceDetector, MediaPipeSelfieSegmenter

            self._segmenter = self._segmenter or MediaPipeSelfieSegmenter()
            self._detector = self._detector or MediaPipeFaceDetector()
        return self._segmenter, self._detector

    def render(self, rgb: np.ndarray, config: PortraitConfig | None = None) -> PortraitResult:
        segmenter, detector = self._seams()
        return render_portrait(rgb, config or self.config, segmenter, detector)

    def process_file(
        self, src: Path | str, dst: Path | str, config: PortraitConfig | None = None, overwrite: bool = False
    ) -> dict[str, Any]:
        """Render ``src`` into the new file ``dst`` (never ``src`` itself). Raises ``PortraitFileError`` for bad
        paths or files, ``NoSubjectFound`` when there is nothing to keep sharp."""
        fmt = check_paths(src, dst, overwrite)  # before decoding: a wrong OUT fails fast
        t0 = time.perf_counter()
        photo = read_photo(src)
        t1 = time.perf_counter()
        result = self.render(photo.rgb, config)
        t2 = time.perf_counter()
        write_photo(dst, photo, result.image, fmt)
        t3 = time.perf_counter()
        h, w = photo.rgb.shape[:2]
        return {
            "src": str(src),
            "dst": str(dst),
            "size": [w, h],
            "exif_kept": photo.exif is not None,
            **result.info,
            "read_s": round(t1 - t0, 3),
            "render_s": round(t2 - t1, 3),
            "write_s": round(t3 - t2, 3),
        }

    def close(self) -> None:
        for seam in (self._segmenter, self._detector):
            close = getattr(seam, "close", None)
            if close is not None:
                close()
