"""Building a sample library end to end: files match the ground truth, re-runs change nothing, same seed gives the
same bytes, other people's files are never touched, and the CLI reports clearly."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from albumen.library.sample import GROUND_TRUTH, SampleConfig, build_sample_library, load_ground_truth
from albumen.library.sample.build import plan_for

CONFIG = SampleConfig(photos=40, seed=3, workers=2, extras_dirs=())


def _tree(root: Path) -> dict[bytes, tuple[int, int, int]]:
    """Every entry under ``root`` (links not followed): inode, mtime, size."""
    out = {}
    for dirpath, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sample") / "lib"
    report = build_sample_library(root, CONFIG)
    assert report.errors == [] and report.photos == 40 and report.written == 40
    truth = load_ground_truth(root)
    assert truth is not None
    return root, truth


def test_every_photo_matches_its_ground_truth(library: tuple[Path, dict]) -> None:
    import hashlib

    import pillow_heif

    pillow_heif.register_heif_opener()
    root, truth = library
    assert truth["counts"]["photos"] == len(truth["photos"]) == 40
    for entry in truth["photos"]:
        data = (root / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
        with Image.open(root / entry["path"]) as im:
            assert im.format == entry["format"]
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)
            taken = datetime.fromisoformat(entry["taken_at"])
            assert sub.get(0x9003) == taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
            assert sub.get(0x9011) == entry["taken_at"][-6:]  # OffsetTimeOriginal
            gps = exif.get_ifd(0x8825)
            if entry["gps"] is None:
                assert not gps
            else:
                lat = sum(float(v) / 60**i for i, v in enumerate(gps[2])) * (1 if gps[1] == "N" else -1)
                lon = sum(float(v) / 60**i for i, v in enumerate(gps[4])) * (1 if gps[3] == "E" else -1)
                assert lat == pytest.approx(entry["gps"]["lat"], abs=1e-6)
                assert lon == pytest.approx(entry["gps"]["lon"], abs=1e-6)
            if entry["camera"]:
                assert exif.get(0x010F) == entry["camera"]["make"] and exif.get(0x0110) == entry["camera"]["model"]
            assert list(im.size) == entry["stored_size"]
            shown = ImageOps.exif_transpose(im) if entry["format"] != "HEIF" else im
            assert list(shown.size) == entry["display_size"]


def test_ground_truth_indexes_are_consistent(library: tuple[Path, dict]) -> None:
    _, truth = library
    paths = {p["path"] for p in truth["photos"]}
    assert set(truth["people"]) == {"Eileen Collins", "Grace Hopper", "The Cameraman"}
    for name, person in truth["people"].items():
        assert person["photos"] and set(person["photos"]) <= paths
        for path in person["photos"]:
            entry = next(p for p in truth["photos"] if p["path"] == path)
            assert name in entry["people"] and "person" in entry["labels"]
            face = next(f for f in entry["faces"] if f["person"] == name)
            l, t, r, b = face["box"]
            assert 0 <= l < r <= entry["display_size"][0] and 0 <= t < b <= entry["display_size"][1]
    assert len(truth["trips"]) >= 3 and len({t["city"] for t in truth["trips"]}) == len(truth["trips"])
    for trip in truth["trips"]:
        for path in trip["photos"]:
            entry = next(p for p in truth["photos"] if p["path"] == path)
            assert entry["city"] == trip["city"] and trip["start"] <= entry["taken_at"][:10] <= trip["end"]
    assert any(e["kind"] == "birthday" and e["photos"] for e in truth["events"])
    for entry in truth["photos"]:
        assert entry["source"] in truth["sources"] and entry["labels"]
        assert set(entry["labels"]) >= set(truth["sources"][entry["source"]]["labels"])
        if entry["edit_of"]:
            assert entry["edit_of"] in paths
    hostile = {h["kind"] for h in truth["hostile"]}
    assert {"truncated_jpeg", "zero_bytes", "text_as_jpg", "decompression_bomb_png", "garbage_exif",
            "symlink_dir_loop", "symlink_file_loop", "fifo_named_jpg", "unreadable_mode_000", "non_utf8_name",
            "emoji_name", "same_file_two_names"} <= hostile
    assert json.loads(json.dumps(truth)) == truth


def test_rerun_rewrites_nothing(library: tuple[Path, dict]) -> None:
    root, _ = library
    before = _tree(root)
    report = build_sample_library(root, CONFIG)
    assert report.written == 0 and report.unchanged == 40 and not report.ground_truth_written
    assert report.errors == [] and report.removed == 0
    assert _tree(root) == before


def test_same_seed_same_bytes(library: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = library
    build_sample_library(tmp_path / "again", SampleConfig(photos=40, seed=3, workers=1, extras_dirs=()))
    assert (tmp_path / "again" / GROUND_TRUTH).read_bytes() == (root / GROUND_TRUTH).read_bytes()
    other = build_sample_library(tmp_path / "other", SampleConfig(photos=40, seed=4, workers=1, extras_dirs=(),
                                                                  hostile=False))
    assert other.photos == 40
    assert load_ground_truth(tmp_path / "other")["photos"] != truth["photos"]  # type: ignore[index]


def test_never_touches_files_it_did_not_create(tmp_path: Path) -> None:
    plan, _ = plan_for(CONFIG)
    root = tmp_path / "lib"
    taken = root / plan.photos[5].path
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"the user's own photo")
    mine = root / "notes.txt"
    mine.write_text("keep me")
    report = build_sample_library(root, CONFIG)
    assert taken.read_bytes() == b"the user's own photo" and mine.read_text() == "keep me"
    assert len(report.errors) == 1 and plan.photos[5].path in report.errors[0] and "untouched" in report.errors[0]
    truth = load_ground_truth(root)
    assert truth is not None and plan.photos[5].path not in {p["path"] for p in truth["photos"]}
    assert report.photos == 39


def test_smaller_rerun_removes_only_its_own_stale_files(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    build_sample_library(root, SampleConfig(photos=50, seed=1, workers=1, extras_dirs=(), hostile=False))
    first = {p["path"] for p in load_ground_truth(root)["photos"]}  # type: ignore[index]
    second_plan, _ = plan_for(SampleConfig(photos=40, seed=1, extras_dirs=()))
    stale = sorted(first - {p.path for p in second_plan.photos})
    assert stale
    edited_by_user = root / stale[0]
    edited_by_user.write_bytes(b"changed by the user")
    report = build_sample_library(root, SampleConfig(photos=40, seed=1, workers=1, extras_dirs=(), hostile=False))
    assert report.removed == len(stale) - 1
    assert edited_by_user.read_bytes() == b"changed by the user"
    assert all(not (root / p).exists() for p in stale[1:])


def test_cli_json_and_clear_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from albumen.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["sample-library", str(tmp_path / "lib"), "--photos", "40", "--seed", "2", "--json",
                                 "--no-hostile"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["photos"] == 40 and report["errors"] == []
    assert Path(report["ground_truth"]).is_file()
    bad = runner.invoke(app, ["sample-library", str(tmp_path / "x"), "--photos", "5"])
    assert bad.exit_code == 2 and "at least" in bad.output
    (tmp_path / "file").write_text("x")
    clash = runner.invoke(app, ["sample-library", str(tmp_path / "file")])
    assert clash.exit_code == 2 and "not a folder" in clash.output


@pytest.mark.slow
def test_hog_finds_the_faces_the_ground_truth_promises(library: tuple[Path, dict]) -> None:
    dlib = pytest.importorskip("dlib")
    import numpy as np
    import pillow_heif

    pillow_heif.register_heif_opener()
    root, truth = library
    detector = dlib.get_frontal_face_detector()
    hits = misses = false = 0
    for entry in truth["photos"]:
        if not entry["faces"] and entry["kind"] == "screenshot":
            continue
        with Image.open(root / entry["path"]) as im:
            pixels = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        # faces shrink to ~70 px after crop and resize: below HOG's 80 px window, so upsample once
        found = [(d.left(), d.top(), d.right(), d.bottom()) for d in detector(pixels, 1)]
        promised = [f["box"] for f in entry["faces"] if f["hog_detectable"]]
        for box in promised:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if any(l <= cx <= r and t <= cy <= b for l, t, r, b in found):
                hits += 1
            else:
                misses += 1
        if not entry["faces"] and entry["kind"] != "screenshot":
            false += len(found)
    assert hits >= 5 and hits >= 0.9 * (hits + misses), (hits, misses)
    assert false <= 1
