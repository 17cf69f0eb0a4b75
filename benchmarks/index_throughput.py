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
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
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
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of this process and its (joined) worker processes


@dataclass(frozen=True)
class Figures:
    photos: int
    workers: int
    bound: list[Timing]  # one per round, paired with index[i] (measured next to it)
    index: list[Timing]
    rerun: list[Timing]

    def _median(self, runs: list[Timing]) -> float:
        return statistics.median(t.wall for t in runs)

    @property
    def bound_rate(self) -> float:
        return self.photos / self._median(self.bound)

    @property
    def index_rate(self) -> float:
        return self.photos / self._median(self.index)

    @property
    def ratio(self) -> float:
        """Median over rounds of (index photos/s) / (bound photos/s), each pair measured side by side."""
        return statistics.median(b.wall / i.wall for b, i in zip(self.bound, self.index))

    @property
    def cpu_ratio(self) -> float:
        """The same with CPU seconds: what other jobs on the machine disturb least."""
        return statistics.median(b.cpu / i.cpu for b, i in zip(self.bound, self.index))

    @property
    def speedup(self) -> float:
        return self._median(self.index) / self._median(self.rerun)


def _cpu_now() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


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


def run_bound(paths: list[str], workers: int, scratch: Path) -> Timing:
    """Seconds to decode + thumbnail every file on ``workers`` processes (pool start-up included, as in index)."""
    out = scratch / "bound"
    shutil.rmtree(out, ignore_errors=True)
    # 256 output folders, like the index's thumbnails/<size>/<hh>/ layout.
    jobs = [(p, str(out / f"{i % 256:02x}")) for i, p in enumerate(paths)]
    t, c = time.perf_counter(), _cpu_now()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for _ in pool.map(_bound_one, jobs, chunksize=4):
            pass
    return Timing(time.perf_counter() - t, _cpu_now() - c)


def run_index(root: Path, data: Path, workers: int, expected: int) -> Timing:
    """A first index run into an empty data dir."""
    shutil.rmtree(data, ignore_errors=True)
    t, c = time.perf_counter(), _cpu_now()
    with Store.open(data / "library.sqlite3") as store:
        summary = index_paths(store, [root], IndexSettings(workers=workers))
    timing = Timing(time.perf_counter() - t, _cpu_now() - c)
    if summary.errors or summary.scanned != expected or summary.processed != expected:
        raise SystemExit(f"index of a clean library went wrong: {summary.as_dict()}")
    return timing


def run_rerun(root: Path, data: Path, workers: int) -> Timing:
    t, c = time.perf_counter(), _cpu_now()
    with Store.open(data / "library.sqlite3") as store:
        summary = index_paths(store, [root], IndexSettings(workers=workers))
    timing = Timing(time.perf_counter() - t, _cpu_now() - c)
    if summary.processed or summary.unchanged != summary.scanned:
        raise SystemExit(f"the re-run of an unchanged library did work: {summary.as_dict()}")
    return timing


def measure(root: Path, paths: list[str], workers: int, repeats: int, scratch: Path) -> Figures:
    bound: list[Timing] = []
    index: list[Timing] = []
    rerun: list[Timing] = []
    data = scratch / "data"
    for r in range(repeats):
        order = ("bound", "index") if r % 2 == 0 else ("index", "bound")
        for what in order:
            if what == "bound":
                bound.append(run_bound(paths, workers, scratch))
                t = bound[-1]
            else:
                index.append(run_index(root, data, workers, len(paths)))
                t = index[-1]
            print(f"  round {r + 1}: {what:5} {t.wall:6.2f} s wall, {t.cpu:6.2f} s CPU", flush=True)
        for _ in range(3):  # re-runs of the unchanged library, on the data dir of this round's full run
            rerun.append(run_rerun(root, data, workers))
        print(f"  round {r + 1}: re-run {statistics.median(t.wall for t in rerun[-3:]):.3f} s", flush=True)
    return Figures(len(paths), workers, bound, index, rerun)


def print_table(f: Figures) -> None:
    med = f._median
    rows = [
        ("bound: decode + thumbnails", f"{med(f.bound):.2f}", f"{f.bound_rate:.1f}", "1.00", "1.00", ""),
        ("albumen index (first run)", f"{med(f.index):.2f}", f"{f.index_rate:.1f}", f"{f.ratio:.2f}",
         f"{f.cpu_ratio:.2f}", "target >= 0.80: " + ("met" if f.ratio >= 0.8 else "NOT met")),
        ("albumen index (unchanged re-run)", f"{med(f.rerun):.3f}", f"{f.photos / med(f.rerun):.0f}",
         f"{f.speedup:.0f}x faster", "", "target >= 50x: " + ("met" if f.speedup >= 50 else "NOT met")),
    ]
    head = ("what", "seconds", "photos/s", "ratio", "CPU ratio", "")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{f.photos} photos, {f.workers} worker processes (cores: {len(os.sched_getaffinity(0))}); medians of "
          f"{len(f.bound)} bound / {len(f.index)} index / {len(f.rerun)} re-run timings; ratios are medians of "
          "side-by-side pairs")
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
        args.json.write_text(json.dumps({**asdict(figures), "bound_rate": figures.bound_rate,
                                         "index_rate": figures.index_rate, "ratio": figures.ratio,
                                         "cpu_ratio": figures.cpu_ratio, "speedup": figures.speedup}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
