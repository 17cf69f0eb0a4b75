"""The sample library: a phone-like photo export made from real photos that ship in installed packages, with hostile
files on purpose and a ground truth describing everything in it (see docs/sample-library.md).

Modules: ``sources`` (which real photos exist and what they show), ``places`` (real cities and their clocks),
``plan`` (timeline and layout, pure), ``transforms`` (pixels), ``exif`` (metadata), ``render`` (encode and write),
``hostile`` (broken files), ``truth`` (ground truth JSON), ``build`` (orchestration, parallel, idempotent),
``extras`` (optional Debian wallpapers). Knows nothing about the index or any model.
"""

from __future__ import annotations

from albumen.library.sample.build import BuildReport, SampleConfig, SampleLibraryError, build_sample_library
from albumen.library.sample.truth import GROUND_TRUTH, SCHEMA, load_ground_truth

__all__ = [
    "BuildReport",
    "GROUND_TRUTH",
    "SCHEMA",
    "SampleConfig",
    "SampleLibraryError",
    "build_sample_library",
    "load_ground_truth",
]
