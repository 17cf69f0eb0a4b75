"""Walk photo folders and list the candidate image files, with the problems met on the way.

The walk follows directory symlinks (configurable) but visits each real directory once, so a symlink loop ends the
descent instead of recursing forever; the loop itself is reported. Hidden entries (names starting with ``.``) and the
library's own data dir are skipped. Files are only ``stat``-ed here, never opened: a FIFO named ``x.jpg`` cannot
block the walk. Names are kept as ``str`` with surrogate escapes, so non-UTF-8 names survive untouched
(``os.fsencode(path)`` gives the original bytes back).

This module knows nothing about image formats beyond file extensions, nor about the database.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "ScanProblem", "ScannedFile", "is_image_name", "printable_path", "scan"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".heic", ".heif", ".hif", ".avif", ".tif", ".tiff", ".gif", ".bmp"}
)


@dataclass(frozen=True)
class ScannedFile:
    """A regular file with an image extension, as ``stat`` saw it (symlinks followed)."""

    path: str  # absolute, not resolved: the name the user sees
    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class ScanProblem:
    """A path that looks like a photo (or a root) but cannot be indexed; ``kind`` is short, ``reason`` a sentence."""

    path: str
    kind: str
    reason: str


def printable_path(path: str) -> str:
    """The path as text that any terminal and SQLite accept: undecodable bytes become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _stat_problem(path: str, exc: OSError) -> ScanProblem:
    if exc.errno == errno.ELOOP:
        return ScanProblem(path, "symlink-loop", "the symlink points to itself (or a chain that loops); skipped")
    if exc.errno == errno.ENOENT:
        return ScanProblem(path, "broken-link", "the symlink points to a file that does not exist")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ScanProblem(path, "unreadable", f"permission denied: {exc.strerror}")
    return ScanProblem(path, "unreadable", f"cannot stat the file: {exc.strerror or exc}")


def _file_entry(path: str, st: os.stat_result) -> ScannedFile | ScanProblem:
    if stat.S_ISREG(st.st_mode):
        # root may read anything, so the permission bits are checked too: a file nobody may read stays unread.
        if not st.st_mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH) or not os.access(path, os.R_OK):
            mode = stat.filemode(st.st_mode)
            return ScanProblem(path, "unreadable", f"the file's permissions ({mode}) do not allow reading it; not read")
        return ScannedFile(path, st.st_size, st.st_mtime_ns, st.st_ino)
    if stat.S_ISFIFO(st.st_mode):
        what = "a FIFO (named pipe)"
    elif stat.S_ISSOCK(st.st_mode):
        what = "a socket"
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        what = "a device"
    else:
        what = "not a regular file"
    return ScanProblem(path, "not-a-file", f"the path is {what}, not a photo file; never opened")


def _is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip(os.sep) + os.sep)


def scan(
    roots: Sequence[Path | str],
    *,
    follow_symlinks: bool = True,
    exclude: Sequence[Path | str] = (),
) -> Iterator[ScannedFile | ScanProblem]:
    """Yield every image file under ``roots`` (depth-first, names sorted) and every problem met.

    A root that is a file is yielded itself when it has an image extension. A missing root is a ``ScanProblem`` of
    kind ``missing-root`` (the indexer then keeps what it knew under it instead of deleting it).
    """
    excluded = [os.path.realpath(p) for p in exclude]
    visited: set[tuple[int, int]] = set()
    for root in roots:
        top = os.path.abspath(os.fspath(root))
        try:
            st = os.stat(top)
        except OSError as exc:
            yield ScanProblem(top, "missing-root", f"cannot open the folder to index: {exc.strerror or exc}")
            continue
        if not stat.S_ISDIR(st.st_mode):
            if is_image_name(top):
                yield _file_entry(top, st)
            else:
                yield ScanProblem(top, "not-a-photo", "the path given is a file without an image extension")
            continue
        yield from _walk(top, follow_symlinks, excluded, visited)


def _walk(
    top: str, follow_symlinks: bool, excluded: list[str], visited: set[tuple[int, int]]
) -> Iterator[ScannedFile | ScanProblem]:
    stack = [top]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if any(_is_within(real, ex) for ex in excluded):
            continue
        try:
            st = os.stat(folder)
        except OSError as exc:
            yield _stat_problem(folder, exc)
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            if _is_within(os.path.realpath(os.path.dirname(folder)), real):
                yield ScanProblem(
                    folder, "symlink-loop", f"the folder link leads back to its own ancestor {printable_path(real)}"
                )
            continue  # reached the same folder by another way: its files are already listed
        visited.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield ScanProblem(folder, "unreadable", f"cannot list the folder: {exc.strerror or exc}")
            continue
        subdirs: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir(follow_symlinks=follow_symlinks)
            except OSError as exc:
                yield _stat_problem(entry.path, exc)
                continue
            if is_dir:
                if follow_symlinks or not is_link:
                    subdirs.append(entry.path)
                continue
            if not is_image_name(entry.name) or (is_link and not follow_symlinks):
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                yield _stat_problem(entry.path, exc)
                continue
            yield _file_entry(entry.path, st)
        stack.extend(reversed(subdirs))  # pop() then visits them in name order
