"""The analyze pipeline: every enabled analyzer, incrementally, over the library, batched, on every core.

``analyze_library(store, cfg, progress)`` is what ``albumen index`` and ``albumen analyze`` call:

1. for each analyzer, the photos whose stored result is missing or was made by another model id or version
   (``Store.photos_needing``; ``force`` takes every photo);
2. those photos in batches, each batch run through the analyzers in dependency order (``Analyzer.needs``: the
   embeddings analyzer reads the faces and places payloads), in worker processes (one per core, one torch thread
   each) or in this process for small jobs;
3. results written by this process, the single writer: faces rows, then vectors (float32 BLOBs tagged with model id
   and version), then the ``analyses`` row last, so an interrupted run simply redoes the photos it had not finished;
4. new faces assigned to people (``albumen.people.grouping.assign_new_faces``).

A photo that fails (cannot be decoded, an analyzer raises on it, or even crashes a worker) gets an ``error`` payload
for that analyzer and the run goes on; an analyzer that cannot load at all (a missing model) is reported and left for
the next run. This module knows analyzers and the store's API; the models are behind ``albumen.vision.base``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from albumen.vision.base import Analysis, Analyzer, PhotoInput, create_analyzer

__all__ = [
    "AnalyzerFactory",
    "BatchResult",
    "PipelineSettings",
    "ProgressFn",
    "analyze_batch",
    "analyze_library",
    "build_analyzers",
    "run_order",
]

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class PipelineSettings:
    """What to run and how (built from ``AppConfig.vision`` plus the command's flags)."""

    analyzers: tuple[str, ...] = ("tags", "embeddings", "faces", "quality", "places")
    batch_size: int = 16
    workers: int = 0  # 0 = one process per core; 1 = in this process
    force: bool = False  # re-run even where the stored result is current
    face_model: str = "hog+mediapipe"  # see albumen.vision.faces.DETECTORS and docs/vision.md for the measurements
    cache_dir: Path | None = None  # where analyzers keep derived files (label text vectors)
    assign_people: bool = True  # group new faces into people after the run

    @classmethod
    def from_config(cls, cfg: Any, only: Sequence[str] | None = None, force: bool = False) -> PipelineSettings:
        vc = cfg.vision
        names = tuple(vc.analyzers)
        if only:
            unknown = [n for n in only if n not in names]
            if unknown:
                raise ValueError(f"analyzer(s) {', '.join(unknown)} not enabled; enabled: {', '.join(names)}")
            names = tuple(n for n in names if n in only)
        return cls(analyzers=names, batch_size=max(1, int(vc.batch_size)), workers=int(vc.workers), force=force,
                   face_model=vc.face_model, cache_dir=Path(cfg.cache_dir))


# Builds the named analyzers; must be a module-level function so worker processes can rebuild it from a pickle.
AnalyzerFactory = Callable[[Sequence[str], PipelineSettings], "dict[str, Analyzer]"]


def build_analyzers(names: Sequence[str], settings: PipelineSettings) -> dict[str, Analyzer]:
    """The real analyzers (nothing loads until first use); tags and embeddings share one classifier pass."""
    out: dict[str, Analyzer] = {}
    classifier = None
    if "tags" in names or "embeddings" in names:
        from albumen.vision.tags import ImageClassifier

        classifier = ImageClassifier()
    for name in names:
        if name == "tags":
            out[name] = create_analyzer("tags", classifier=classifier)
        elif name == "embeddings":
            out[name] = create_analyzer("embeddings", classifier=classifier, cache_dir=settings.cache_dir)
        elif name == "faces":
            out[name] = create_analyzer("faces", model=settings.face_model)
        else:
            out[name] = create_analyzer(name)
    return out


def run_order(analyzers: Mapping[str, Analyzer]) -> list[str]:
    """Analyzer names with every analyzer after the ones it ``needs`` (among those present); stable otherwise."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"analyzers need each other in a cycle through {name!r}")
        visiting.add(name)
        for dep in analyzers[name].needs:
            if dep in analyzers:
                visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in analyzers:
        visit(name)
    return order


@dataclass
class BatchResult:
    """One batch's outputs per analyzer, the seconds each spent, and analyzers that could not run at all."""

    analyses: dict[str, list[Analysis]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # analyzer -> why it could not load


def _error(photo_id: int, exc: BaseException) -> Analysis:
    return Analysis(photo_id, {"error": f"{type(exc).__name__}: {exc}"})


def _predict_safely(analyzer: Analyzer, batch: Sequence[PhotoInput]) -> list[Analysis]:
    """``analyzer.predict(batch)``; if the batch raises, photo by photo, so one bad photo costs only itself."""
    try:
        out = analyzer.predict(batch)
        if [a.photo_id for a in out] != [p.photo_id for p in batch]:
            raise RuntimeError(f"analyzer {analyzer.name!r} returned results for other photos than it was given")
        return out
    except Exception as exc:  # noqa: BLE001 - isolated below
        if len(batch) == 1:
            return [_error(batch[0].photo_id, exc)]
    results: list[Analysis] = []
    for photo in batch:
        try:
            (one,) = analyzer.predict([photo])
            results.append(one)
        except Exception as exc:  # noqa: BLE001 - this photo's problem, recorded as its result
            results.append(_error(photo.photo_id, exc))
    return results


def analyze_batch(
    analyzers: Mapping[str, Analyzer], photos: Sequence[PhotoInput], wanted: Mapping[int, Sequence[str]]
) -> BatchResult:
    """Run each analyzer (in dependency order) over the photos of the batch that want it.

    ``wanted[photo_id]`` names the analyzers to run on that photo; payloads computed here are added to the context
    of the analyzers that need them.
    """
    result = BatchResult()
    fresh: dict[int, dict[str, Any]] = defaultdict(dict)
    for name in run_order(analyzers):
        analyzer = analyzers[name]
        todo = [replace(p, context={**p.context, **fresh[p.photo_id]}) for p in photos
                if name in wanted.get(p.photo_id, ())]
        if not todo:
            continue
        try:
            analyzer.load()
        except Exception as exc:  # noqa: BLE001 - a missing model stops this analyzer, not the run
            result.failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        start = time.perf_counter()  # compute time only: loading happens once per process
        out = _predict_safely(analyzer, todo)
        result.seconds[name] = time.perf_counter() - start
        result.analyses[name] = out
        for a in out:
            fresh[a.photo_id][name] = a.payload
    return result


# -- worker processes ------------------------------------------------------------------------------------------
# Each worker process builds its analyzers once (models load lazily on the first batch) and keeps them here: state
# private to that worker process, never touched in the parent.
_WORKER_ANALYZERS: dict[str, Analyzer] = {}


def _init_worker(factory: AnalyzerFactory, settings: PipelineSettings) -> None:
    from albumen.quiet import quiet_third_party

    quiet_third_party()
    os.environ["OMP_NUM_THREADS"] = "1"  # one core per worker: the pool itself provides the parallelism
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER_ANALYZERS.update(factory(settings.analyzers, settings))


def _worker_job(photos: list[PhotoInput], wanted: dict[int, tuple[str, ...]]) -> BatchResult:
    if "torch" in sys.modules and sys.modules["torch"].get_num_threads() != 1:
        sys.modules["torch"].set_num_threads(1)
    return analyze_batch(_WORKER_ANALYZERS, photos, wanted)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


Job = tuple[list[PhotoInput], dict[int, tuple[str, ...]]]
_MAX_CRASHES_IN_A_ROW = 3  # more means the workers cannot run at all, not that one photo is bad


def _crashed(job: Job) -> BatchResult:
    """What a job whose worker died gets: an error for each photo and analyzer it wanted."""
    photos, wanted = job
    out = BatchResult()
    for p in photos:
        for name in wanted[p.photo_id]:
            out.analyses.setdefault(name, []).append(
                Analysis(p.photo_id, {"error": "the analyzer crashed its worker process on this photo"}))
    return out


def _run_in_pool(factory: AnalyzerFactory, settings: PipelineSettings, workers: int,
                 jobs: list[Job]) -> Iterator[tuple[Job, BatchResult]]:
    """Jobs on a spawn-started process pool, at most 2 per worker in flight.

    When a worker dies (a crash in native code), every job in flight is suspect: the pool is rebuilt and their photos
    are retried one at a time, each alone in the pool, so only the photo that really kills a worker is lost.
    """
    ctx = multiprocessing.get_context("spawn")  # fork after torch has threads can hang; spawn is always safe

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(factory, settings))

    queue: list[tuple[Job, bool]] = [(j, False) for j in reversed(jobs)]  # a stack: (job, suspect)
    crashes_in_a_row = 0  # workers that died with no job finishing in between
    blamed: list[Job] = []  # photos that crashed a worker alone; stored once a later job proves the pool works
    pool = new_pool()
    try:
        running: dict[Future[BatchResult], tuple[Job, bool]] = {}
        while queue or running:
            while queue and len(running) < 2 * workers:
                if queue[-1][1] and running:
                    break  # a suspect runs alone
                job, suspect = queue.pop()
                running[pool.submit(_worker_job, *job)] = (job, suspect)
                if suspect:
                    break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken: list[tuple[Job, bool]] = []
            for fut in done:
                job, suspect = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    broken.append((job, suspect))
                    continue
                crashes_in_a_row = 0
                for bad in blamed:
                    yield bad, _crashed(bad)
                blamed.clear()
                yield job, result
            if not broken:
                continue
            crashes_in_a_row += 1
            if crashes_in_a_row > _MAX_CRASHES_IN_A_ROW:
                raise RuntimeError(
                    f"analyzer worker processes died {crashes_in_a_row} times in a row without finishing a batch; "
                    "they may not be able to start here (try `--workers 1`)")
            broken += list(running.values())  # everything in flight died with the pool
            running.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            pool = new_pool()
            for job, suspect in broken:
                if suspect:  # it ran alone, so it is the one
                    blamed.append(job)
                    continue
                photos, wanted = job
                queue += [(([p], {p.photo_id: wanted[p.photo_id]}), True) for p in reversed(photos)]
        for bad in blamed:
            yield bad, _crashed(bad)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the library run -------------------------------------------------------------------------------------------
def _write(store: Any, analyzers: Mapping[str, Analyzer], result: BatchResult) -> None:
    """Faces rows, then vectors, then the analyses rows (the marker that a photo is done)."""
    from albumen.people.faces import FaceBox, replace_faces

    for name, items in result.analyses.items():
        an = analyzers[name]
        face_items = [(a.photo_id, [FaceBox(r.x, r.y, r.w, r.h, r.score, r.embedding) for r in a.regions])
                      for a in items if a.regions is not None]
        if face_items:
            replace_faces(store, an.model_id, an.version, face_items)
        spaces: dict[str, dict[int, Any]] = defaultdict(dict)
        for a in items:
            for space, vec in a.vectors.items():
                spaces[space][a.photo_id] = vec
        for space, vecs in spaces.items():
            store.put_embeddings(space, an.model_id, an.version, vecs)
        store.put_analyses(name, an.model_id, an.version, [(a.photo_id, a.payload) for a in items])


def _plan_jobs(store: Any, analyzers: Mapping[str, Analyzer], settings: PipelineSettings) -> tuple[list[Job], dict[str, int]]:
    """Batches of photos with the analyzers each still needs, plus how many photos each analyzer will see."""
    needing: dict[str, set[int]] = {}
    records: dict[int, Any] = {}
    for name, an in analyzers.items():
        recs = list(store.iter_photos()) if settings.force else store.photos_needing(name, an.model_id, an.version)
        needing[name] = {r.photo_id for r in recs}
        records.update({r.photo_id: r for r in recs})
    context_names = {d for an in analyzers.values() for d in an.needs}
    stored = {d: store.get_analyses(d) for d in context_names}
    order = run_order(analyzers)
    jobs: list[Job] = []
    ids = sorted(records)
    for start in range(0, len(ids), settings.batch_size):
        photos, wanted = [], {}
        for pid in ids[start:start + settings.batch_size]:
            r = records[pid]
            context = {d: stored[d][pid] for d in context_names if pid in stored[d]}
            photos.append(PhotoInput(pid, r.path, r.taken_at, r.latitude, r.longitude, context))
            wanted[pid] = tuple(n for n in order if pid in needing[n])
        jobs.append((photos, wanted))
    return jobs, {n: len(s) for n, s in needing.items()}


def analyze_library(
    store: Any,
    cfg: Any,
    progress: ProgressFn | None = None,
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
    settings: PipelineSettings | None = None,
    factory: AnalyzerFactory | None = None,
) -> dict[str, Any]:
    """Run the enabled analyzers over the photos that need them; returns a JSON-able summary.

    Args:
        store: an open ``albumen.library.store.Store``.
        cfg: the ``AppConfig`` (its ``vision`` section and cache dir), unused when ``settings`` is given.
        progress: called as ``progress("analyze", photos_done, photos_total)`` after each batch.
        only: run just these analyzers (names from the config's list).
        force: re-run where the stored result is current too.
        settings: explicit settings instead of ``cfg`` (tests, benchmarks).
        factory: builds the analyzers (default ``build_analyzers``); a module-level function for worker processes.
    """
    settings = settings or PipelineSettings.from_config(cfg, only, force)
    factory = factory or build_analyzers
    started = time.perf_counter()
    analyzers = factory(settings.analyzers, settings)
    jobs, todo = _plan_jobs(store, analyzers, settings)
    total = sum(len(p) for p, _ in jobs)
    workers = settings.workers or _cpu_count()
    workers = max(1, min(workers, len(jobs)))
    summary: dict[str, Any] = {
        "photos": total, "workers": workers, "todo": todo, "analyzed": {n: 0 for n in analyzers},
        "errors": {n: 0 for n in analyzers}, "failed": {}, "analyzer_seconds": {n: 0.0 for n in analyzers},
    }
    if "faces" in analyzers:
        from albumen.people.schema import ensure_people_schema

        ensure_people_schema(store)
    if progress:
        progress("analyze", 0, total)
    results: Iterator[tuple[Job, BatchResult]]
    if workers == 1:
        results = ((job, analyze_batch(analyzers, *job)) for job in jobs)
    else:
        results = _run_in_pool(factory, settings, workers, jobs)
    done = 0
    for job, result in results:
        _write(store, analyzers, result)
        for name, items in result.analyses.items():
            summary["analyzed"][name] += len(items)
            summary["errors"][name] += sum(1 for a in items if "error" in a.payload)
        for name, secs in result.seconds.items():
            summary["analyzer_seconds"][name] += secs
        summary["failed"].update(result.failed)
        done += len(job[0])
        if progress:
            progress("analyze", done, total)
    if "faces" in analyzers and settings.assign_people:
        from albumen.people.grouping import assign_new_faces

        summary["people"] = assign_new_faces(store)
    summary["analyzer_seconds"] = {k: round(v, 3) for k, v in summary["analyzer_seconds"].items()}
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
