"""Folder walk: image files only, loops end, odd entries are reported without being opened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from albumen.library.scan import ScannedFile, ScanProblem, printable_path, scan


def _split(items: list[Any]) -> tuple[dict[str, ScannedFile], dict[str, ScanProblem]]:
    files = {os.path.basename(i.path): i for i in items if isinstance(i, ScannedFile)}
    problems = {os.path.basename(i.path): i for i in items if isinstance(i, ScanProblem)}
    return files, problems


def test_hostile_folder_is_walked_to_the_end(hostile_dir: Path) -> None:
    files, problems = _split(list(scan([hostile_dir])))
    assert {"good.jpg", "truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png", "garbage_exif.jpg", "inside.jpg",
            "🎂 birthday 🎉.jpg", "same_a.jpg", "same_b.jpg"} <= set(files)
    assert problems["back"].kind == "symlink-loop"
    assert problems["self.jpg"].kind == "symlink-loop"
    assert problems["pipe.jpg"].kind == "not-a-file" and "FIFO" in problems["pipe.jpg"].reason
    assert problems["locked.jpg"].kind == "unreadable" and "----------" in problems["locked.jpg"].reason
    assert "album.jpg" not in files  # a folder named like a photo is walked into, not read


def test_non_utf8_names_survive_as_bytes(hostile_dir: Path) -> None:
    files = [i for i in scan([hostile_dir]) if isinstance(i, ScannedFile)]
    raw = [os.fsencode(f.path) for f in files]
    assert os.path.join(os.fsencode(hostile_dir), b"caf\xe9.jpg") in raw
    weird = next(f for f in files if os.fsencode(f.path).endswith(b"caf\xe9.jpg"))
    assert printable_path(weird.path).endswith("caf\\xe9.jpg")
    assert os.path.exists(weird.path)


def test_only_image_extensions_and_no_hidden_entries(tmp_path: Path, photo_factory: Any) -> None:
    photo_factory(tmp_path / "a.JPG")
    photo_factory(tmp_path / ".hidden" / "b.jpg")
    photo_factory(tmp_path / "._c.jpg")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "clip.mov").write_bytes(b"\0" * 10)
    files, problems = _split(list(scan([tmp_path])))
    assert set(files) == {"a.JPG"} and not problems


def test_excluded_folder_and_broken_link(tmp_path: Path, photo_factory: Any) -> None:
    photo_factory(tmp_path / "lib" / "a.jpg")
    photo_factory(tmp_path / "lib" / "data" / "thumb.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "lib" / "dangling.jpg")
    files, problems = _split(list(scan([tmp_path / "lib"], exclude=[tmp_path / "lib" / "data"])))
    assert set(files) == {"a.jpg"}
    assert problems["dangling.jpg"].kind == "broken-link"


def test_missing_root_file_root_and_symlinked_folder_seen_once(tmp_path: Path, photo_factory: Any) -> None:
    a = photo_factory(tmp_path / "lib" / "real" / "a.jpg")
    os.symlink(tmp_path / "lib" / "real", tmp_path / "lib" / "zz_alias")
    items = list(scan([tmp_path / "missing", a, tmp_path / "lib"]))
    problems = [i for i in items if isinstance(i, ScanProblem)]
    assert [p.kind for p in problems] == ["missing-root"]
    paths = [i.path for i in items if isinstance(i, ScannedFile)]
    assert paths.count(str(a)) == 2  # the file root, then the folder walk; the alias folder adds nothing
    assert len(paths) == 2


def test_symlinks_not_followed_when_disabled(tmp_path: Path, photo_factory: Any) -> None:
    photo_factory(tmp_path / "other" / "x.jpg")
    photo_factory(tmp_path / "lib" / "a.jpg")
    os.symlink(tmp_path / "other", tmp_path / "lib" / "link")
    os.symlink(tmp_path / "other" / "x.jpg", tmp_path / "lib" / "y.jpg")
    files, _ = _split(list(scan([tmp_path / "lib"], follow_symlinks=False)))
    assert set(files) == {"a.jpg"}
    files, _ = _split(list(scan([tmp_path / "lib"], follow_symlinks=True)))
    assert set(files) == {"a.jpg", "x.jpg", "y.jpg"}
