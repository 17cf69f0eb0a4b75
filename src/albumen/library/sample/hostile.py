"""Files that break naive photo indexers, made on purpose, each with the error kind a correct indexer should report.

All live under ``hostile/`` in the library. ``expected_error`` is the kind of failure (not a message), in the
vocabulary of ``albumen errors``: ``truncated``, ``empty``, ``not-an-image``, ``decompression-bomb``, ``symlink-loop``,
``not-a-file`` (a directory or a FIFO named like a photo: opening a FIFO for reading blocks forever, so an indexer must
check the file type before opening) and ``unreadable`` (mode 000: this stops normal users, but root reads through it,
so there both outcomes are acceptable). None means the file is a valid photo that must be indexed: awkward names
(not UTF-8, emoji), duplicate content (a hard link, a copy) or unparseable EXIF around good pixels.

Creation is idempotent: an entry already on disk in the right form is left untouched. This module knows how to make
these files; it knows nothing about the rest of the layout.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from albumen.library.sample.exif import garbage_exif
from albumen.library.sample.render import write_if_changed

__all__ = ["HOSTILE_DIR", "HostileFile", "make_hostile_files", "png_bomb", "jpeg_with_size", "insert_app1"]

HOSTILE_DIR = "hostile"


@dataclass(frozen=True)
class HostileFile:
    path: bytes  # relative to the library root, as raw file-system bytes (one name is deliberately not UTF-8)
    kind: str
    expected_error: str | None
    note: str
    acceptable_errors: tuple[str | None, ...] | None = None  # None: only ``expected_error``
    duplicate_of: str | None = None
    created: bool = True  # False when this file system refused it (then ``note`` says why)

    def to_json(self) -> dict[str, object]:
        name = os.fsdecode(self.path)  # non-UTF-8 bytes become lone surrogates, which json escapes as \udcXX
        return {
            "path": name,
            "path_bytes_hex": self.path.hex(),
            "kind": self.kind,
            "expected_error": self.expected_error,
            "acceptable_errors": list(self.acceptable_errors or (self.expected_error,)),
            "indexable": self.expected_error is None,
            "duplicate_of": self.duplicate_of,
            "created": self.created,
            "note": self.note,
        }


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A well-formed PNG whose header claims ``width`` x ``height`` RGB pixels (30 GB decoded) in a few dozen bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)  # far too little data: a decoder that allocates first has already lost
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF header rewritten to claim ``width`` x ``height`` (at most 65535 each)."""
    i = 2
    while i + 4 <= len(jpeg):
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            # SOF: length(2) precision(1) height(2) width(2) ...
            return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]
        i += 2 + length
    raise ValueError("no SOF marker found")


def insert_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an extra APP1 segment holding ``payload`` right after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _symlink(root: Path, rel: bytes, target: bytes) -> None:
    link = os.path.join(os.fsencode(root), rel)
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)


def make_hostile_files(root: Path, sample: Image.Image, duplicate_source: tuple[str, bytes] | None) -> list[HostileFile]:
    """Create the hostile files under ``root/hostile`` (idempotent) and describe each.

    Args:
        root: the library root.
        sample: a real photo (RGB) to build the image-based cases from.
        duplicate_source: (relative path, bytes) of a library photo to copy under another name, or None.
    """
    base = root / HOSTILE_DIR
    base.mkdir(parents=True, exist_ok=True)
    small = sample.copy()
    small.thumbnail((480, 480))
    good = _jpeg(small)
    # Valid photos under awkward names get distinct bytes (different quality), so only the intended twins are duplicates.
    variants = iter(_jpeg(small, q) for q in range(70, 80))
    out: list[HostileFile] = []

    def regular(name: str | bytes, data: bytes, kind: str, expected: str | None, note: str, **kw: object) -> None:
        rel = os.fsencode(HOSTILE_DIR) + b"/" + (name if isinstance(name, bytes) else name.encode())
        try:
            write_if_changed(Path(os.fsdecode(os.path.join(os.fsencode(root), rel))), data)
            out.append(HostileFile(rel, kind, expected, note, **kw))  # type: ignore[arg-type]
        except OSError as exc:  # e.g. a file system that refuses non-UTF-8 names
            out.append(HostileFile(rel, kind, expected, f"not created here: {exc}", created=False))

    regular("truncated.jpg", good[: len(good) * 2 // 5], "truncated_jpeg", "truncated",
            "a real JPEG cut after 40% of its bytes: the header parses, the pixels do not")
    regular("empty.jpg", b"", "zero_bytes", "empty", "zero-byte file")
    regular("notes.jpg", b"Shopping list:\n- coffee\n- cat food\n", "text_as_jpg", "not-an-image",
            "plain text with a .jpg name")
    regular("bomb.png", png_bomb(), "decompression_bomb_png", "decompression-bomb",
            "PNG header claims 100000 x 100000 pixels (30 GB decoded) in under 100 bytes")
    regular("bomb.jpg", jpeg_with_size(good, 65000, 65000), "decompression_bomb_jpeg", "decompression-bomb",
            "JPEG whose SOF claims 65000 x 65000 pixels; the file is a few KB")
    regular("garbage_exif.jpg", insert_app1(good, garbage_exif()), "garbage_exif", None,
            "pixels decode fine; the APP1 'Exif' block points past its end: index it without EXIF")
    regular(b"caf\xe9_latin1.jpg", next(variants), "non_utf8_name", None,
            "a valid photo whose file name is Latin-1 bytes, not UTF-8 (path_bytes_hex has the exact bytes)")
    regular("\U0001f382 party \U0001f389.jpg", next(variants), "emoji_name", None, "a valid photo with emoji in its name")
    regular("twin.jpg", good, "same_file_two_names", None, "a valid photo; twin_hardlink.jpg is a hard link to it")
    link = base / "twin_hardlink.jpg"
    try:
        if not (link.exists() and os.path.samefile(link, base / "twin.jpg")):
            if link.exists() or link.is_symlink():
                link.unlink()
            os.link(base / "twin.jpg", link)
        out.append(HostileFile(b"hostile/twin_hardlink.jpg", "same_file_two_names", None,
                               "hard link: same inode and bytes as twin.jpg", duplicate_of="hostile/twin.jpg"))
    except OSError as exc:
        out.append(HostileFile(b"hostile/twin_hardlink.jpg", "same_file_two_names", None, f"not created: {exc}", created=False))
    if duplicate_source is not None:
        rel, data = duplicate_source
        regular(f"{Path(rel).stem} copy{Path(rel).suffix}", data, "same_file_two_names", None,
                "a byte-for-byte copy of a library photo under another name", duplicate_of=rel)
    # Symlinks: a directory link back to its parent (an endless walk) and two file links pointing at each other.
    (base / "loop").mkdir(exist_ok=True)
    _symlink(root, b"hostile/loop/again", b"..")
    out.append(HostileFile(b"hostile/loop/again", "symlink_dir_loop", "symlink-loop",
                           "directory symlink to its own parent: following links walks hostile/loop/again/loop/again/..."))
    _symlink(root, b"hostile/cycle_a.jpg", b"cycle_b.jpg")
    _symlink(root, b"hostile/cycle_b.jpg", b"cycle_a.jpg")
    for name in (b"cycle_a.jpg", b"cycle_b.jpg"):
        out.append(HostileFile(b"hostile/" + name, "symlink_file_loop", "symlink-loop", "two symlinks pointing at each other (ELOOP)"))
    # Unreadable: things that are not regular files but look like photos, and a mode-000 file.
    (base / "folder.jpg").mkdir(exist_ok=True)
    out.append(HostileFile(b"hostile/folder.jpg", "directory_named_jpg", "not-a-file", "a directory named like a photo"))
    fifo = base / "pipe.jpg"
    try:
        if not (fifo.exists() and stat.S_ISFIFO(fifo.lstat().st_mode)):
            os.mkfifo(fifo)
        out.append(HostileFile(b"hostile/pipe.jpg", "fifo_named_jpg", "not-a-file",
                               "a named pipe: open() for reading blocks until a writer appears, so check the type first"))
    except OSError as exc:
        out.append(HostileFile(b"hostile/pipe.jpg", "fifo_named_jpg", "not-a-file", f"not created: {exc}", created=False))
    locked = base / "locked.jpg"
    if locked.exists() and not os.access(locked, os.R_OK):
        locked.chmod(0o600)  # a non-root re-run: unlock to compare, lock again below
    regular("locked.jpg", next(variants), "unreadable_mode_000", "unreadable",
            "a valid photo with mode 000: open() fails for normal users; root (CAP_DAC_OVERRIDE) can still read it, "
            "so as root an indexer may index it or refuse it by its permission bits",
            acceptable_errors=("unreadable", None))  # type: ignore[arg-type]
    if locked.exists() and stat.S_IMODE(locked.stat().st_mode) != 0:
        locked.chmod(0)
    return out
