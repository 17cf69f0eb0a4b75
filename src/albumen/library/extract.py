"""Everything the indexer learns from one file, computed in a worker process: ``extract(job, settings)``.

One read of the bytes gives the content hash; if the store already has that content with its thumbnails (a moved,
renamed or duplicated file) nothing is decoded. Otherwise the image is decoded once at reduced scale, and EXIF,
dimensions, orientation, the perceptual hash and the thumbnails all come from that one decode.

Originals are opened read-only with ``O_NONBLOCK`` (a FIFO that replaced a photo cannot block a worker) and never
written. Every failure becomes a ``Failed`` with a short ``kind`` and a sentence for people; nothing raises out of
``extract``. This module reads the store (read-only, to spot known content) but never writes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from PIL import Image, UnidentifiedImageError

from albumen.library.exif import PhotoMeta, read_meta
from albumen.library.hashing import content_hash, perceptual_hash
from albumen.library.scan import printable_path
from albumen.library.thumbnails import (
    Thumbnail,
    decode_reduced,
    make_thumbnails,
    oriented_size,
    save_atomic,
    write_thumbnails,
)

__all__ = [
    "ExtractSettings",
    "Extracted",
    "Failed",
    "FileJob",
    "decode_and_thumbnail",
    "extract",
    "open_image",
    "register_formats",
]

_SELF_ORIENTING = {"HEIF", "AVIF"}  # libheif applies the rotation itself; EXIF then says 1


@dataclass(frozen=True)
class ExtractSettings:
    data_dir: str
    db_path: str | None  # read-only lookups of known content; None = always decode
    sizes: tuple[int, ...] = (256, 1024)
    quality: int = 85
    max_pixels: int = 200_000_000
    max_bytes: int = 1 << 30


@dataclass(frozen=True)
class FileJob:
    path: str
    size: int
    mtime_ns: int
    inode: int
    force_decode: bool = False


@dataclass(frozen=True)
class Extracted:
    """A file that is a photo. ``known`` means the store already had this content: only the hash was computed."""

    job: FileJob  # size / mtime / inode as read by the worker
    content_hash: str
    known: bool
    format: str = ""
    width: int = 0  # displayed (upright) size of the original
    height: int = 0
    orientation: int = 1
    meta: PhotoMeta | None = None
    phash: str | None = None
    thumbnails: tuple[Thumbnail, ...] = ()


@dataclass(frozen=True)
class Failed:
    job: FileJob
    kind: str
    reason: str


def register_formats() -> None:
    """Teach Pillow HEIC/HEIF/AVIF (pillow-heif), decoding with one thread: the indexer runs one worker per core."""
    if "HEIF" in Image.OPEN:
        return
    import pillow_heif

    pillow_heif.options.DECODE_THREADS = 1
    pillow_heif.register_heif_opener()


@contextlib.contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    # Pillow refuses images over 2 x MAX_IMAGE_PIXELS while opening and warns over 1x; we silence the warning and
    # refuse at 1x ourselves, with the declared size in the message.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": handled by read_meta
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def open_image(path: str) -> Image.Image:
    register_formats()
    return Image.open(path)


def _read_original(job: FileJob, max_bytes: int) -> tuple[FileJob, bytes] | Failed:
    try:
        fd = os.open(job.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        return Failed(job, "not-a-file", "the path is a folder, not a photo file")
    except OSError as exc:
        return Failed(job, "unreadable", f"cannot open the file: {exc.strerror or exc}")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, socket or device)"
        return Failed(job, "not-a-file", f"the path is {what}, not a photo file; not read")
    with os.fdopen(fd, "rb") as fh:
        seen = FileJob(job.path, st.st_size, st.st_mtime_ns, st.st_ino, job.force_decode)
        if st.st_size == 0:
            return Failed(seen, "empty", "the file is empty (0 bytes)")
        if st.st_size > max_bytes:
            return Failed(seen, "too-large", f"the file is {st.st_size / 2**20:.0f} MiB, over the {max_bytes >> 20} MiB limit")
        try:
            data = fh.read()
        except OSError as exc:
            return Failed(seen, "unreadable", f"reading the file failed: {exc.strerror or exc}")
    return seen, data


def _known(settings: ExtractSettings, chash: str) -> bool:
    """Does the store already hold this content with all its thumbnails on disk?"""
    if settings.db_path is None or not os.path.exists(settings.db_path):
        return False
    uri = f"file:{quote(settings.db_path)}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=10)
        try:
            rows = conn.execute(
                "SELECT t.size, t.path FROM photos p JOIN thumbnails t ON t.photo_id = p.id WHERE p.content_hash = ?",
                (chash,),
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    have = {int(size): rel for size, rel in rows}
    return all(s in have and os.path.exists(os.path.join(settings.data_dir, have[s])) for s in settings.sizes)


def _describe_unknown(data: bytes) -> str:
    head = data[:64]
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "the file is text, not an image"
    return f"not a recognised image format (it starts with {head[:8].hex(' ')})"


def _decode(job: FileJob, data: bytes, chash: str, settings: ExtractSettings) -> Extracted | Failed:
    import io

    register_formats()
    with _pixel_limit(settings.max_pixels):
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            declared = f"{int(found.group(1)) / 1e6:,.0f} megapixels" if found else "a huge size"
            return Failed(job, "decompression-bomb",
                          f"likely a decompression bomb: declares {declared}, over the {settings.max_pixels / 1e6:.0f} MP"
                          " limit; not decoded")
        except UnidentifiedImageError:
            return Failed(job, "not-an-image", _describe_unknown(data))
        with image:
            fmt = image.format or "unknown"
            w, h = image.size
            if w * h > settings.max_pixels:
                return Failed(
                    job, "decompression-bomb",
                    f"likely a decompression bomb: declares {w}x{h} = {w * h / 1e6:,.0f} megapixels, over the"
                    f" {settings.max_pixels / 1e6:.0f} MP limit; not decoded",
                )
            try:
                exif = image.getexif()
            except Exception:  # noqa: BLE001 - garbage EXIF must not cost the photo
                exif = None
            meta = read_meta(exif)
            if fmt in _SELF_ORIENTING:
                orientation = int(image.info.get("original_orientation") or 1)
                to_apply, (dw, dh) = 1, (w, h)
            else:
                orientation = to_apply = meta.orientation
                dw, dh = oriented_size(w, h, orientation)
            try:
                decoded = decode_reduced(image, max(settings.sizes))
                thumbs = make_thumbnails(decoded, to_apply, settings.sizes)
            except (OSError, SyntaxError, EOFError, ValueError) as exc:
                text = str(exc)
                if "truncated" in text or "broken data stream" in text or isinstance(exc, EOFError):
                    return Failed(job, "truncated", f"the image data ends early ({text or 'unexpected end'})")
                return Failed(job, "corrupt", f"the {fmt} data cannot be decoded: {text}")
    if meta.orientation != orientation:
        meta = PhotoMeta(meta.taken_at, meta.latitude, meta.longitude, meta.altitude, meta.make, meta.model, orientation)
    written = write_thumbnails(Path(settings.data_dir), chash, thumbs, settings.quality)
    phash = perceptual_hash(thumbs[-1][1])
    return Extracted(job, chash, False, fmt, dw, dh, orientation, meta, phash, tuple(written))


def extract(job: FileJob, settings: ExtractSettings) -> Extracted | Failed:
    """Hash, and unless the content is already known, decode + EXIF + pHash + thumbnails. Never raises."""
    try:
        read = _read_original(job, settings.max_bytes)
        if isinstance(read, Failed):
            return read
        seen, data = read
        chash = content_hash(data)
        if not job.force_decode and _known(settings, chash):
            return Extracted(seen, chash, True)
        return _decode(seen, data, chash, settings)
    except MemoryError:
        return Failed(job, "too-large", "not enough memory to decode this image")
    except Exception as exc:  # noqa: BLE001 - one bad file never stops a batch
        return Failed(job, "internal-error", f"unexpected {type(exc).__name__} on {printable_path(job.path)}: {exc}")


def decode_and_thumbnail(path: str, out_dir: str, sizes: Sequence[int], quality: int) -> int:
    """Only decode + thumbnail (the benchmark's bound), with the indexer's own functions. Returns pixels written."""
    with open_image(path) as image:
        if image.format in _SELF_ORIENTING:
            orientation = 1
        else:
            orientation = int(image.getexif().get(0x0112, 1) or 1)
        thumbs = make_thumbnails(decode_reduced(image, max(sizes)), orientation, sizes)
    name = os.path.basename(path)
    total = 0
    for size, img in thumbs:
        save_atomic(img, Path(out_dir) / str(size) / (name + ".jpg"), quality)
        total += img.width * img.height
    return total
