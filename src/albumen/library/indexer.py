"""The incremental, crash-safe, parallel indexer: ``index_paths(store, roots, settings)``.

A run:
1. takes the data dir's index lock (one indexer per library; the store has a single writer);
2. walks the roots and compares each file's (size, mtime, inode) with what the store knows: unchanged files and
   unchanged known-bad files cost one ``stat`` and nothing else;
3. sends new and changed files to one worker process per core (``extract``: hash, and for unknown content decode,
   EXIF, pHash, thumbnails), committing results in small transactions from this process only;
4. forgets files that are gone from the walked roots, drops photos no file points to, and regroups near duplicates.

Crash safety: thumbnails are renamed into place before the transaction that references them commits, and each
file's rows are written in one transaction, so a SIGKILL at any moment leaves either the whole record or none; a
re-run picks up where the killed one stopped. Moves and renames are found by content hash: the photo keeps its id
(and its analyses) and nothing is decoded again. A worker that dies on a file (a crashing decoder) costs that file
only: the files it was working on are retried one by one and the culprit is recorded as an error.

This module knows nothing about models and never writes inside the photo folders.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from albumen.library import catalog
from albumen.library.extract import ExtractSettings, Extracted, Failed, FileJob, extract
from albumen.library.hashing import NEAR_DUPLICATE_BITS
from albumen.library.scan import ScannedFile, ScanProblem, printable_path, scan
from albumen.library.store import Store
from albumen.library.thumbnails import TMP_SUFFIX

__all__ = ["IndexBusy", "IndexProgress", "IndexSettings", "IndexSummary", "index_paths"]


class IndexBusy(RuntimeError):
    """Another indexer holds this library's lock."""


@dataclass(frozen=True)
class IndexSettings:
    workers: int = 0  # 0 = one per core; 1 = in this process (no pool)
    thumbnail_sizes: tuple[int, ...] = (256, 1024)
    thumbnail_quality: int = 85
    follow_symlinks: bool = True
    max_image_pixels: int = 200_000_000
    near_duplicate_bits: int = NEAR_DUPLICATE_BITS
    commit_every: int = 32  # results per transaction
    retry_errors: bool = False  # re-read files recorded as bad even when unchanged


@dataclass(frozen=True)
class IndexProgress:
    phase: str  # "scan", "index", "finish"
    done: int
    total: int
    new_photos: int
    errors: int


@dataclass
class IndexSummary:
    scanned: int = 0  # image files found on disk
    unchanged: int = 0  # skipped: same size, mtime and inode as last time
    new_photos: int = 0  # decoded now (new content)
    linked: int = 0  # new or changed paths whose content was already known (moves, renames, copies)
    removed_files: int = 0  # paths gone from disk
    removed_photos: int = 0  # photos with no file left
    errors: int = 0  # problems met in this run (new or still there)
    photos: int = 0  # totals after the run
    files: int = 0
    near_duplicate_groups: int = 0
    seconds: float = 0.0
    workers: int = 1
    missing_roots: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.new_photos + self.linked

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "photos_per_second": round(self.processed / self.seconds, 2) if self.seconds else None}


ProgressFn = Callable[[IndexProgress], None]


@contextmanager
def _index_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "index.lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusy(f"another `albumen index` is running on {data_dir}; wait for it to finish") from None
        yield  # the lock dies with the process, even on SIGKILL


def _worker_count(requested: int) -> int:
    return requested if requested > 0 else max(1, len(os.sched_getaffinity(0)))


def _sweep_after_crash(store: Store) -> None:
    """A previous run was killed: remove half-written thumbnails and thumbnails no row points to."""
    folder = store.data_dir / "thumbnails"
    if not folder.exists():
        return
    referenced = {row[0] for row in store.conn.execute("SELECT path FROM thumbnails")}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, store.data_dir)
            if name.endswith(TMP_SUFFIX) or rel not in referenced:
                try:
                    os.unlink(full)
                except FileNotFoundError:
                    pass


def _problem_changed(problem: ScanProblem, bad: dict[bytes, catalog.ErrorRow], known: dict[bytes, catalog.FileRow]) -> bool:
    path_b = os.fsencode(problem.path)
    old = bad.get(path_b)
    return path_b in known or old is None or (old.kind, old.reason) != (problem.kind, problem.reason)


def _under(path_b: bytes, roots_b: Sequence[bytes]) -> bool:
    return any(path_b == r or path_b.startswith(r.rstrip(b"/") + b"/") for r in roots_b)


def _extract_chunk(jobs: Sequence[FileJob], settings: ExtractSettings) -> list[Extracted | Failed]:
    """What a worker runs: a few files per task, so the pool's per-task costs (pickling, futures, wake-ups) stay
    small next to decoding."""
    return [extract(job, settings) for job in jobs]


def _chunk_size(n_jobs: int, workers: int) -> int:
    # Up to 4 files per task, but at least ~8 tasks per worker so both cores stay busy to the end.
    return max(1, min(4, n_jobs // (workers * 8)))


class _Runner:
    """Runs ``extract`` jobs on a process pool (or inline), surviving workers that die."""

    def __init__(self, workers: int, settings: ExtractSettings) -> None:
        self.workers = workers
        self.settings = settings
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        # fork: workers inherit the imported modules, so a pool starts in milliseconds.
        ctx = multiprocessing.get_context("fork") if hasattr(os, "fork") else None
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)

    def run(self, jobs: Sequence[FileJob]) -> Iterator[Extracted | Failed]:
        if self.workers == 1:
            for job in jobs:
                yield extract(job, self.settings)
            return
        size = _chunk_size(len(jobs), self.workers)
        queue = [tuple(jobs[i : i + size]) for i in range(0, len(jobs), size)][::-1]
        window = self.workers * 4
        pending: dict[Future[list[Extracted | Failed]], tuple[FileJob, ...]] = {}
        self._pool = self._new_pool(self.workers)
        try:
            while queue or pending:
                while queue and len(pending) < window:
                    chunk = queue.pop()
                    pending[self._pool.submit(_extract_chunk, chunk, self.settings)] = chunk
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                broken: list[FileJob] = []
                for fut in done:
                    chunk = pending.pop(fut)
                    try:
                        yield from fut.result()
                    except BrokenProcessPool:
                        broken.extend(chunk)
                if broken:
                    # A worker died: every file in flight is retried alone, so only the culprit is lost.
                    for chunk in pending.values():
                        broken.extend(chunk)
                    pending.clear()
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    for job in broken:
                        yield self._isolated(job)
                    self._pool = self._new_pool(self.workers)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _isolated(self, job: FileJob) -> Extracted | Failed:
        with self._new_pool(1) as pool:
            try:
                return pool.submit(extract, job, self.settings).result()
            except BrokenProcessPool:
                return Failed(job, "decoder-crash", "the image decoder crashed on this file (its process died)")


def index_paths(
    store: Store,
    roots: Sequence[Path | str],
    settings: IndexSettings | None = None,
    progress: ProgressFn | None = None,
) -> IndexSummary:
    """Index ``roots`` into ``store`` (see the module docstring). Bad files are recorded, never raised."""
    settings = settings or IndexSettings()
    started = time.perf_counter()
    summary = IndexSummary(workers=_worker_count(settings.workers))
    report = progress or (lambda _p: None)
    with _index_lock(store.data_dir):
        unfinished = store.conn.execute("SELECT COUNT(*) FROM index_runs WHERE finished_at IS NULL").fetchone()[0]
        if unfinished:
            _sweep_after_crash(store)
        with store.write() as conn:
            run_id = conn.execute(
                "INSERT INTO index_runs (started_at, roots) VALUES (?, ?) RETURNING id",
                (catalog.now_iso(), json.dumps([printable_path(os.path.abspath(os.fspath(r))) for r in roots])),
            ).fetchone()[0]
        jobs, seen, walked_roots = _plan(store, roots, settings, summary, report)
        _process(store, jobs, settings, summary, report)
        _finish(store, seen, walked_roots, settings, summary, report)
        summary.seconds = time.perf_counter() - started
        with store.write() as conn:
            conn.execute(
                "UPDATE index_runs SET finished_at = ?, summary = ? WHERE id = ?",
                (catalog.now_iso(), json.dumps(summary.as_dict()), run_id),
            )
            conn.execute("UPDATE index_runs SET finished_at = ? WHERE finished_at IS NULL", (catalog.now_iso(),))
    return summary


def _plan(
    store: Store, roots: Sequence[Path | str], settings: IndexSettings, summary: IndexSummary, report: ProgressFn
) -> tuple[list[FileJob], set[bytes], list[bytes]]:
    """Walk, record walk problems, and list the files that need work."""
    known = catalog.load_files(store.conn)
    bad = catalog.load_errors(store.conn)
    thumbs_gone = not (store.data_dir / "thumbnails").exists()
    jobs: list[FileJob] = []
    seen: set[bytes] = set()
    problems: list[ScanProblem] = []
    missing_roots: set[bytes] = set()
    for item in scan(roots, follow_symlinks=settings.follow_symlinks, exclude=[store.data_dir]):
        if isinstance(item, ScanProblem):
            if item.kind == "missing-root":
                summary.missing_roots.append(printable_path(item.path))
                missing_roots.add(os.fsencode(item.path))
            else:
                problems.append(item)
                seen.add(os.fsencode(item.path))
            continue
        assert isinstance(item, ScannedFile)
        path_b = os.fsencode(item.path)
        seen.add(path_b)
        summary.scanned += 1
        if summary.scanned % 500 == 0:
            report(IndexProgress("scan", summary.scanned, 0, 0, summary.errors))
        row = known.get(path_b)
        if row and (row.size, row.mtime_ns, row.inode) == (item.size, item.mtime_ns, item.inode) and not thumbs_gone:
            summary.unchanged += 1
            continue
        err = bad.get(path_b)
        if err and not settings.retry_errors and (err.size, err.mtime_ns) == (item.size, item.mtime_ns):
            summary.unchanged += 1
            summary.errors += 1
            continue
        jobs.append(FileJob(item.path, item.size, item.mtime_ns, item.inode, force_decode=thumbs_gone))
    # A walk problem is written only when it is new or its reason changed: a re-run stays read-only.
    changed = [p for p in problems if _problem_changed(p, bad, known)]
    summary.errors += len(problems)
    if changed:
        now = catalog.now_iso()
        with store.write() as conn:
            for p in changed:
                catalog.save_error(conn, p.path, p.kind, p.reason, None, None, now)
    walked = [os.fsencode(os.path.abspath(os.fspath(r))) for r in roots]
    return jobs, seen, [r for r in walked if r not in missing_roots]


def _process(
    store: Store, jobs: list[FileJob], settings: IndexSettings, summary: IndexSummary, report: ProgressFn
) -> None:
    if not jobs:
        return
    extract_settings = ExtractSettings(
        data_dir=str(store.data_dir),
        db_path=str(store.db_path) if store.db_path.exists() else None,
        sizes=tuple(settings.thumbnail_sizes),
        quality=settings.thumbnail_quality,
        max_pixels=settings.max_image_pixels,
    )
    runner = _Runner(min(summary.workers, len(jobs)), extract_settings)
    batch: list[Extracted | Failed] = []
    retry: list[FileJob] = []
    done = 0
    report(IndexProgress("index", 0, len(jobs), 0, summary.errors))  # the clock of the rate and ETA starts here

    def flush() -> None:
        now = catalog.now_iso()
        with store.write() as conn:
            for item in batch:
                if isinstance(item, Failed):
                    catalog.save_error(conn, item.job.path, item.kind, item.reason, item.job.size, item.job.mtime_ns, now)
                    summary.errors += 1
                    continue
                saved = catalog.save_extracted(conn, item, now)
                if saved is None:
                    retry.append(FileJob(item.job.path, item.job.size, item.job.mtime_ns, item.job.inode, True))
                elif saved[1]:
                    summary.new_photos += 1
                else:
                    summary.linked += 1
        batch.clear()

    for result in runner.run(jobs):
        batch.append(result)
        done += 1
        if len(batch) >= settings.commit_every:
            flush()
        pending_bad = sum(isinstance(b, Failed) for b in batch)
        report(IndexProgress("index", done, len(jobs), summary.processed + len(batch) - pending_bad,
                             summary.errors + pending_bad))
    flush()
    if retry:  # the content was known when the worker looked but is gone now: decode after all
        for result in _Runner(1, extract_settings).run(retry):
            batch.append(result)
        flush()


def _finish(
    store: Store, seen: set[bytes], walked_roots: list[bytes], settings: IndexSettings, summary: IndexSummary,
    report: ProgressFn,
) -> None:
    """Forget vanished files, drop orphan photos and their thumbnails, regroup near duplicates."""
    report(IndexProgress("finish", 0, 0, summary.new_photos, summary.errors))
    known_paths = [bytes(r[0]) for r in store.conn.execute("SELECT path_bytes FROM files")]
    error_paths = [bytes(r[0]) for r in store.conn.execute("SELECT path_bytes FROM errors")]
    gone = [p for p in known_paths + error_paths if p not in seen and _under(p, walked_roots)]
    stale_thumbs: list[str] = []
    if gone or summary.processed or summary.errors:
        with store.write() as conn:
            summary.removed_files = catalog.delete_paths(conn, gone)
            before = conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
            stale_thumbs = catalog.prune_orphan_photos(conn)
            summary.removed_photos = before - conn.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
            if summary.processed or summary.removed_photos:
                catalog.update_near_groups(conn, settings.near_duplicate_bits)
    still_used = {r[0] for r in store.conn.execute("SELECT path FROM thumbnails")} if stale_thumbs else set()
    for rel in stale_thumbs:
        if rel not in still_used:
            try:
                os.unlink(store.data_dir / rel)
            except FileNotFoundError:
                pass
    summary.photos = store.count_photos()
    summary.files = store.conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    summary.near_duplicate_groups = store.conn.execute(
        "SELECT COUNT(*) FROM (SELECT 1 FROM photos WHERE near_group IS NOT NULL GROUP BY near_group HAVING COUNT(*) > 1)"
    ).fetchone()[0]
