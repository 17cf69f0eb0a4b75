"""Produce and write the files of a plan: decode a source once, derive each planned file from it, encode it with its
EXIF in the planned format, and write it only when the bytes on disk differ.

``render_batch`` is the unit of work a process pool runs: one source, many files; it never raises for one bad file
(the error is returned with that file's result). This module knows pixels and encoders; it does not decide the
timeline or the layout (``plan.py``) and does not keep any state between calls.
"""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from albumen.library.sample.exif import ExifFields, build_exif
from albumen.library.sample.plan import PhotoPlan
from albumen.library.sample.transforms import apply_transform, render_screenshot, store_for_orientation, to_base

__all__ = ["RenderJob", "Rendered", "base_size", "encode_photo", "render_batch", "write_if_changed"]


@dataclass(frozen=True)
class RenderJob:
    root: str
    source_path: str
    photos: tuple[PhotoPlan, ...]
    guarded: frozenset[str] = frozenset()  # paths holding files we did not write: compare, never overwrite


@dataclass(frozen=True)
class Rendered:
    path: str
    sha256: str = ""
    bytes: int = 0
    width: int = 0  # stored pixels (before the orientation tag is applied)
    height: int = 0
    written: bool = False
    error: str | None = None


def base_size(path: Path) -> tuple[int, int]:
    """The size of a source's base image (see ``transforms.to_base``) from its header alone."""
    from albumen.library.sample.transforms import MAX_BASE_SIDE

    with Image.open(path) as im:
        w, h = im.size
    if max(w, h) > MAX_BASE_SIDE:
        s = MAX_BASE_SIDE / max(w, h)
        return round(w * s), round(h * s)
    return w, h


def _pixels(plan: PhotoPlan, base: Image.Image) -> Image.Image:
    upright = apply_transform(base, plan.transform)
    if plan.kind == "screenshot":
        assert plan.screen_size is not None
        return render_screenshot(upright, plan.screen_size, plan.local_time, dark=zlib.crc32(plan.path.encode()) % 3 == 0)
    return store_for_orientation(upright, plan.transform.orientation)


def encode_photo(plan: PhotoPlan, base: Image.Image) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes and its stored pixel size."""
    stored = _pixels(plan, base)
    exif = build_exif(
        ExifFields(
            local_time=plan.local_time,
            offset=plan.offset,
            gps=plan.gps,
            make=plan.make,
            model=plan.model,
            orientation=plan.transform.orientation,
            software="Screenshot" if plan.kind == "screenshot" else ("Photos 9.0" if plan.kind == "edited" else None),
            size=stored.size,
            comment="Screenshot" if plan.kind == "screenshot" else None,
        )
    )
    out = io.BytesIO()
    q = plan.transform.quality
    if plan.format == "JPEG":
        stored.save(out, "JPEG", quality=q, exif=exif, subsampling=2)
    elif plan.format == "PNG":
        # level 1: screenshots are large and flat; higher levels cost 5x the time for ~20% smaller files
        stored.save(out, "PNG", exif=exif, compress_level=1 if plan.kind == "screenshot" else 3)
    elif plan.format == "WEBP":
        stored.save(out, "WEBP", quality=q, exif=exif, method=2)
    elif plan.format == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
        # x265's default preset takes ~1.3 s for 0.25 Mpx on these cores; "ultrafast" ~0.25 s, same decoder path.
        stored.save(out, "HEIF", quality=q, exif=exif, enc_params={"preset": "ultrafast"})
    else:
        raise ValueError(f"unsupported format {plan.format!r}")
    return out.getvalue(), stored.size


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless the file already holds exactly these bytes; True when written."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def render_batch(job: RenderJob) -> list[Rendered]:
    """Render every planned file of one source; a failure is reported per file and the batch goes on."""
    try:
        with Image.open(job.source_path) as im:
            base = to_base(im)
    except OSError as exc:
        return [Rendered(p.path, error=f"cannot read source {job.source_path}: {exc}") for p in job.photos]
    results = []
    for plan in job.photos:
        try:
            data, (w, h) = encode_photo(plan, base)
            target = Path(job.root) / plan.path
            if plan.path in job.guarded:
                if not (target.is_file() and not target.is_symlink() and target.read_bytes() == data):
                    raise FileExistsError("already exists and was not written by sample-library; left untouched")
                written = False
            else:
                written = write_if_changed(target, data)
            results.append(Rendered(plan.path, hashlib.sha256(data).hexdigest(), len(data), w, h, written))
        except (OSError, ValueError) as exc:
            results.append(Rendered(plan.path, error=f"{type(exc).__name__}: {exc}"))
    return results
