"""Crash safety: SIGKILL a real `albumen index` at random moments, again and again, while the library changes in
between; after every kill the database is consistent, and after a final run it equals a clean index of the same
files: no duplicate, lost or half-written record."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from albumen.library.indexer import IndexSettings, index_paths
from albumen.library.store import Store
from albumen.library.thumbnails import TMP_SUFFIX

SIZES = (256, 1024)


def _start_index(lib: Path, data: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from albumen.cli.main import main; main()",
           "--data-dir", str(data), "index", str(lib), "--json", "--no-analyze", "--workers", "2"]
    # Its own session: the kill takes the workers down too, like a power cut would.
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _check_consistent(data: Path) -> None:
    """What must hold at ANY moment, even right after a kill."""
    conn = sqlite3.connect(str(data / "library.sqlite3"))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # every file row points to a photo that has every thumbnail, each fully written and decodable
        assert conn.execute("SELECT COUNT(*) FROM files f LEFT JOIN photos p ON p.id = f.photo_id"
                            " WHERE p.id IS NULL").fetchone()[0] == 0
        for pid, n in conn.execute("SELECT p.id, COUNT(t.size) FROM photos p LEFT JOIN thumbnails t"
                                   " ON t.photo_id = p.id GROUP BY p.id"):
            assert n == len(SIZES), f"photo {pid} has {n} thumbnails"
        for (rel,) in conn.execute("SELECT path FROM thumbnails"):
            with Image.open(data / rel) as im:
                im.load()
        dup = conn.execute("SELECT COUNT(*) - COUNT(DISTINCT content_hash) FROM photos").fetchone()[0]
        assert dup == 0
    finally:
        conn.close()


def _content(data: Path) -> dict[str, Any]:
    """The index as a function of the files, independent of ids and timestamps."""
    conn = sqlite3.connect(str(data / "library.sqlite3"))
    try:
        files = dict(conn.execute("SELECT f.path, p.content_hash FROM files f JOIN photos p ON p.id = f.photo_id"))
        photos = sorted(conn.execute("SELECT content_hash, format, width, height, orientation, taken_at, phash,"
                                     " (SELECT COUNT(*) FROM thumbnails t WHERE t.photo_id = photos.id) FROM photos"))
        errors = sorted(conn.execute("SELECT path, kind FROM errors"))
        groups: dict[int, set[str]] = {}
        for chash, group in conn.execute("SELECT content_hash, near_group FROM photos"):
            groups.setdefault(group, set()).add(chash)
        return {"files": files, "photos": photos, "errors": errors,
                "groups": sorted(sorted(g) for g in groups.values())}
    finally:
        conn.close()


def _mutate(lib: Path, rng: random.Random, round_no: int, photo_factory: Any) -> None:
    """Give the next run real work: new photos, a rename, a deletion, an edit."""
    for i in range(6):
        photo_factory(lib / f"round{round_no}" / f"new{i}.jpg", seed=1000 + round_no * 10 + i, size=(900, 700),
                      orientation=rng.choice([1, 3, 6, 8]))
    existing = sorted(p for p in lib.rglob("*.jpg") if p.is_file() and not p.is_symlink())
    victim, renamed, edited = rng.sample(existing, 3)
    victim.unlink()
    renamed.rename(renamed.with_name(f"renamed_{round_no}_{renamed.name}"))
    photo_factory(edited, seed=5000 + round_no, size=(900, 700))


def _runs(db: Path) -> tuple[int, bool] | None:
    """(number of index runs recorded, whether the newest is unfinished), read-only; None if not readable yet."""
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'index_runs'").fetchone():
                return 0, False  # killed before the first migration committed
            row = conn.execute("SELECT COUNT(*), (SELECT finished_at IS NULL FROM index_runs"
                               " ORDER BY id DESC LIMIT 1) FROM index_runs").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:  # locked for a moment, or an empty file not yet a database
        return None
    return int(row[0]), bool(row[1])


def _kill_round(lib: Path, data: Path, rng: random.Random, span: float) -> tuple[str, float | None]:
    """Run `albumen index` once and SIGKILL it at a random moment chosen relative to its observed progress.

    Three runs in four are killed a random time after they recorded their run (mid-run: ``span`` is how long a
    whole run lasted last time it was not killed); one in four a random time after launch, usually while it starts
    or opens and migrates the database. Returns (what happened, the run's measured span when it ended by itself).
    """
    db = data / "library.sqlite3"
    state = _runs(db)
    before = state[0] if state else 0  # None: no database yet (or a file a kill left empty)
    proc = _start_index(lib, data)
    launched = time.monotonic()
    row_seen: float | None = None
    if rng.random() < 0.25:
        deadline = launched + rng.uniform(0.0, 0.8)
    else:
        deadline = launched + 60  # until the run row shows up
        while proc.poll() is None and time.monotonic() < deadline:
            state = _runs(db)
            if state and state[0] > before:
                row_seen = time.monotonic()
                deadline = row_seen + rng.uniform(0.0, 1.2 * span)
                break
            time.sleep(0.005)
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if proc.poll() is not None:
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        return "finished", (time.monotonic() - row_seen) if row_seen is not None else None
    os.killpg(proc.pid, signal.SIGKILL)  # its own session: the workers die too, like a power cut
    proc.wait(timeout=60)
    state = _runs(db)
    mid = state is not None and state[0] > before and state[1]
    return ("killed mid-run" if mid else "killed before the run began"), None


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_the_index(tmp_path: Path, photo_factory: Any, helpers: Any) -> None:
    seed = int(os.environ.get("ALBUMEN_CRASH_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    lib, data = tmp_path / "lib", tmp_path / "data"
    for i in range(36):
        photo_factory(lib / f"day{i % 4}" / f"IMG_{i:04d}.jpg", seed=i, size=(1200, 900), orientation=[1, 6][i % 2])
    for i in range(4):
        photo_factory(lib / "png" / f"shot{i}.png", seed=100 + i, size=(800, 600))
    (lib / "day0" / "copy.jpg").write_bytes((lib / "day0" / "IMG_0000.jpg").read_bytes())
    helpers.make_hostile(lib / "hostile")

    # Keep going until enough kills landed inside a run, however busy the machine is; bounded in rounds and time.
    outcomes: list[str] = []
    span, started = 1.0, time.monotonic()
    for round_no in range(20):
        outcome, ran = _kill_round(lib, data, rng, span)
        outcomes.append(outcome)
        if ran is not None:
            span = max(ran, 0.05)
        if (data / "library.sqlite3").exists():
            _check_consistent(data)
        _mutate(lib, rng, round_no, photo_factory)
        mid_run = outcomes.count("killed mid-run")
        if (mid_run >= 5 and len(outcomes) >= 6) or time.monotonic() - started > 25:
            break
    assert outcomes.count("killed mid-run") >= 3, f"{outcomes} (seed {seed}): the test proved too little"

    final = _start_index(lib, data)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-2000:]
    _check_consistent(data)
    assert not [p for p in (data / "thumbnails").rglob("*") if p.name.endswith(TMP_SUFFIX)]
    conn = sqlite3.connect(str(data / "library.sqlite3"))
    referenced = {r[0] for r in conn.execute("SELECT path FROM thumbnails")}
    assert conn.execute("SELECT COUNT(*) FROM photos p WHERE NOT EXISTS"
                        " (SELECT 1 FROM files f WHERE f.photo_id = p.id)").fetchone()[0] == 0
    conn.close()
    on_disk = {str(p.relative_to(data)) for p in (data / "thumbnails").rglob("*.jpg")}
    assert on_disk == referenced, f"orphan thumbnails: {sorted(on_disk - referenced)[:5]} (seed {seed})"

    clean = tmp_path / "clean"
    with Store.open(clean / "library.sqlite3") as store:
        index_paths(store, [lib], IndexSettings(workers=1))
    assert _content(data) == _content(clean), f"seed {seed}"
