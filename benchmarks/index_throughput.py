"""Indexing throughput of `albumen index` beside its bound, and the speed of an incremental re-run, in ONE run.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/index_throughput.py [--photos 2000] [--repeats 3]

What is measured, on the same files, on all cores (one worker process per core):
- bound: only decoding + thumbnailing every photo (``extract.decode_and_thumbnail``: the indexer's own reduced
  decode and thumbnail code, both sizes written as JPEG), on a process pool; no hashing, EXIF, pHash or database;
- index: a full first ``index_paths`` run into a fresh data dir (walk, hashes, EXIF, pHash, thumbnails, SQLite
  writes through the single writer, near-duplicate grouping), timed end to end;
- ratio = index photos/s / bound photos/s (target >= 0.8);
- rerun: ``index_paths`` again on the unchanged library with the same data dir; speed-up = first run / re-run
  seconds (target >= 50x).
Bound and index alternate (A/B/A/B...) and medians are reported, so machine noise hits both alike. The page cache
is warmed first (every file read once), so neither side pays for a cold disk.

The sample library (``albumen sample-library``, no hostile files: only photos are timed) is built once and cached
under ``build/bench/``; a later run reuses it (the builder rewrites nothing when it is up to date).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from albumen.library.extract import decode_and_thumbnail
from albumen.library.indexer import IndexSettings, index_paths
from albumen.library.sample import SampleConfig, build_sample_library
from albumen.library.sample.hostile import HOSTILE_DIR
from albumen.library.scan import ScannedFile, scan
from albumen.library.store import Store

REPO = Path(__file__).resolve().parent.parent

SIZES = IndexSettings().thumbnail_sizes
QUALITY = IndexSettings().thumbnail_quality


@dataclass(frozen=True)
class Figures:
    photos: int
    workers: int
    bound_s: list[float]
    index_s: list[float]
    rerun_s: list[float]

    @property
    def bound_rate(self) -> float:
        return self.photos / statistics.median(self.bound_s)

    @property
    def index_rate(self) -> float:
        return self.photos / statistics.median(self.index_s)

    @property
    def ratio(self) -> float:
        return self.index_rate / self.bound_rate

    @property
    def speedup(self) -> float:
        return statistics.median(self.index_s) / statistics.median(self.rerun_s)


def ensure_library(root: Path, photos: int, cached: bool) -> list[str]:
    """Build (or reuse) the sample library; return its photo paths."""
    hostile = root / HOSTILE_DIR
    if hostile.exists():  # only photos are timed
        if not cached:
            raise SystemExit(f"{root} has a {HOSTILE_DIR}/ folder; build it with --no-hostile")
        shutil.rmtree(hostile)
    t = time.perf_counter()
    report = build_sample_library(root, SampleConfig(photos=photos, hostile=False))
    if report.errors:
        raise SystemExit(f"sample library has errors: {report.errors[:3]}")
    print(f"library {root}: {report.photos} photos ({report.written} rendered now) in {time.perf_counter() - t:.1f} s",
          flush=True)
    return sorted(item.path for item in scan([root]) if isinstance(item, ScannedFile))


def warm_cache(paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            total += len(fh.read())
    return total


def _bound_one(args: tuple[str, str]) -> int:
    path, out = args
    return decode_and_thumbnail(path, out, SIZES, QUALITY)


def run_bound(paths: list[str], workers: int, scratch: Path) -> float:
    """Seconds to decode + thumbnail every file on ``workers`` processes (pool start-up included, as in index)."""
    out = scratch / "bound"
    shutil.rmtree(out, ignore_errors=True)
    # 256 output folders, like the index's thumbnails/<size>/<hh>/ layout.
    jobs = [(p, str(out / f"{i % 256:02x}")) for i, p in enumerate(paths)]
    t = time.perf_counter()
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for _ in pool.map(_bound_one, jobs, chunksize=4):
            pass
    return time.perf_counter() - t


def run_index(root: Path, data: Path, workers: int) -> tuple[float, int]:
    shutil.rmtree(data, ignore_errors=True)
    t = time.perf_counter()
    with Store.open(data / "library.sqlite3") as store:
        summary = index_paths(store, [root], IndexSettings(workers=workers))
    seconds = time.perf_counter() - t
    if summary.errors:
        raise SystemExit(f"index met {summary.errors} errors on a clean library")
    return seconds, summary.new_photos


def run_rerun(root: Path, data: Path, workers: int) -> float:
    t = time.perf_counter()
    with Store.open(data / "library.sqlite3") as store:
        summary = index_paths(store, [root], IndexSettings(workers=workers))
    seconds = time.perf_counter() - t
    assert summary.processed == 0 and summary.unchanged == summary.scanned, summary
    return seconds


def measure(root: Path, paths: list[str], workers: int, repeats: int, scratch: Path) -> Figures:
    bound_s: list[float] = []
    index_s: list[float] = []
    rerun_s: list[float] = []
    data = scratch / "data"
    for r in range(repeats):
        order = ("bound", "index") if r % 2 == 0 else ("index", "bound")
        for what in order:
            if what == "bound":
                bound_s.append(run_bound(paths, workers, scratch))
                print(f"  round {r + 1}: bound {bound_s[-1]:.2f} s", flush=True)
            else:
                seconds, new = run_index(root, data, workers)
                if new != len(set(_hashes(data))):
                    raise SystemExit("index photo count does not match its database")
                index_s.append(seconds)
                print(f"  round {r + 1}: index {seconds:.2f} s ({new} new photos)", flush=True)
                for _ in range(3):  # the re-run right after the full run, on the same data dir
                    rerun_s.append(run_rerun(root, data, workers))
                print(f"  round {r + 1}: re-run {statistics.median(rerun_s[-3:]):.3f} s", flush=True)
    return Figures(len(paths), workers, bound_s, index_s, rerun_s)


def _hashes(data: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(str(data / "library.sqlite3"))
    try:
        return [r[0] for r in conn.execute("SELECT content_hash FROM photos")]
    finally:
        conn.close()


def print_table(f: Figures) -> None:
    med = statistics.median
    rows = [
        ("bound: decode + thumbnails", f"{med(f.bound_s):.2f}", f"{f.bound_rate:.1f}", "1.00", ""),
        ("albumen index (first run)", f"{med(f.index_s):.2f}", f"{f.index_rate:.1f}", f"{f.ratio:.2f}",
         "target >= 0.80: " + ("met" if f.ratio >= 0.8 else "NOT met")),
        ("albumen index (unchanged re-run)", f"{med(f.rerun_s):.3f}", f"{f.photos / med(f.rerun_s):.0f}",
         f"{f.speedup:.0f}x faster", "target >= 50x: " + ("met" if f.speedup >= 50 else "NOT met")),
    ]
    head = ("what", "seconds", "photos/s", "ratio", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(5)]
    print(f"\n{f.photos} photos, {f.workers} worker processes (cores: {len(os.sched_getaffinity(0))}), medians of "
          f"{len(f.bound_s)} bound / {len(f.index_s)} index / {len(f.rerun_s)} re-run timings")
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--library", type=Path, default=None, help="default: build/bench/library-<photos>")
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core (what `albumen index` uses)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of bound + index (alternating order)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    root = args.library or REPO / "build" / "bench" / f"library-{args.photos}"
    workers = args.workers or len(os.sched_getaffinity(0))
    paths = ensure_library(root, args.photos, cached=args.library is None)
    print(f"warming the page cache: {warm_cache(paths) / 2**20:.0f} MiB in {len(paths)} files", flush=True)
    with tempfile.TemporaryDirectory(prefix="albumen-bench-", dir=REPO / "build" / "bench") as tmp:
        figures = measure(root, paths, workers, args.repeats, Path(tmp))
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps({**figures.__dict__, "bound_rate": figures.bound_rate,
                                         "index_rate": figures.index_rate, "ratio": figures.ratio,
                                         "speedup": figures.speedup}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
