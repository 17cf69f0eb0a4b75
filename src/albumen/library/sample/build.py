"""Build (or bring up to date) a sample library in a folder: plan, render in parallel, add hostile files, write the
ground truth.

Re-running with the same arguments rewrites nothing: a file whose recorded spec and bytes still match is skipped
without rendering, and a freshly rendered file is written only if its bytes differ. The builder never touches a file it
did not create: a planned path already taken by someone else's file is left alone and reported; files of an earlier
run that the new plan no longer needs are removed only if they still hold the bytes this tool wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from albumen.library.sample.hostile import make_hostile_files
from albumen.library.sample.plan import MIN_PHOTOS, LibraryPlan, PhotoPlan, plan_library
from albumen.library.sample.render import Rendered, RenderJob, base_size, render_batch
from albumen.library.sample.sources import SourceImage, find_sources
from albumen.library.sample.truth import (
    GROUND_TRUTH,
    file_sha256,
    ground_truth,
    load_ground_truth,
    photo_spec,
    same_file,
    write_json_if_changed,
)

__all__ = ["SampleConfig", "BuildReport", "SampleLibraryError", "build_sample_library", "plan_for"]

Progress = Callable[[int, int], None]


class SampleLibraryError(RuntimeError):
    """The library cannot be built in this folder; the message says why."""


@dataclass(frozen=True)
class SampleConfig:
    """What to build. The same values always give the same library."""

    photos: int = 200
    seed: int = 0
    workers: int = 0  # 0 = one process per core
    hostile: bool = True
    extras_dirs: tuple[Path, ...] | None = None  # where unpacked Debian wallpapers are looked for (None = default)


@dataclass
class BuildReport:
    root: str
    photos: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    hostile: int = 0
    sources: int = 0
    ground_truth_written: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ground_truth": os.path.join(self.root, GROUND_TRUTH)}


def plan_for(config: SampleConfig) -> tuple[LibraryPlan, dict[str, str]]:
    """The plan for ``config`` on this machine and the sha256 of each source used."""
    sources = find_sources(config.extras_dirs)
    sizes = {s.id: base_size(_path(s)) for s in sources}
    digests = {s.id: file_sha256(_path(s)) for s in sources}
    return plan_library(sources, sizes, config.photos, config.seed), digests


def _path(source: SourceImage) -> Path:
    assert source.path is not None
    return source.path


def _jobs(
    root: Path, todo: list[PhotoPlan], sources: dict[str, SourceImage], workers: int, guarded: set[str]
) -> list[RenderJob]:
    """One job per source and chunk: a source is decoded once per job, and chunks keep both cores busy to the end."""
    by_source: dict[str, list[PhotoPlan]] = {}
    for p in todo:
        by_source.setdefault(p.source_id, []).append(p)
    chunk = max(4, min(64, len(todo) // (workers * 6) + 1))
    jobs = []
    for sid, plans in by_source.items():
        for i in range(0, len(plans), chunk):
            part = tuple(plans[i : i + chunk])
            mine = frozenset(p.path for p in part if p.path in guarded)
            jobs.append(RenderJob(str(root), str(_path(sources[sid])), part, mine))
    jobs.sort(key=lambda j: -len(j.photos))  # biggest first: less idle time at the end
    return jobs


def _render(jobs: list[RenderJob], workers: int, total: int, progress: Progress | None) -> list[Rendered]:
    results: list[Rendered] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results += render_batch(job)
            if progress:
                progress(len(results), total)
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(render_batch, job) for job in jobs]
        for fut in as_completed(futures):
            results += fut.result()
            if progress:
                progress(len(results), total)
    return results


def _remove_stale(root: Path, previous: dict[str, Any] | None, keep: set[str], report: BuildReport) -> None:
    """Delete files an earlier run created and this plan no longer has, if they still hold the recorded bytes."""
    if not previous:
        return
    for entry in previous.get("photos", []):
        path = entry.get("path")
        if not isinstance(path, str) or path in keep or ".." in Path(path).parts:
            continue
        target = root / path
        if same_file(target, entry):
            target.unlink()
            report.removed += 1
            parent = target.parent
            while parent != root and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


def build_sample_library(root: Path, config: SampleConfig = SampleConfig(), progress: Progress | None = None) -> BuildReport:
    """Create or update the sample library in ``root`` and return what was done.

    One failing file never stops the build: it is listed in ``report.errors`` and left out of the ground truth.
    """
    start = time.perf_counter()
    if config.photos < MIN_PHOTOS:
        raise SampleLibraryError(f"--photos must be at least {MIN_PHOTOS} (got {config.photos})")
    if root.exists() and not root.is_dir():
        raise SampleLibraryError(f"{root} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    plan, digests = plan_for(config)
    report = BuildReport(str(root), sources=len(plan.sources))
    previous = load_ground_truth(root)
    recorded = {e["path"]: e for e in (previous or {}).get("photos", []) if isinstance(e, dict) and "path" in e}
    specs = {p.path: photo_spec(p, digests[p.source_id]) for p in plan.photos}
    done: dict[str, Rendered] = {}
    todo: list[PhotoPlan] = []
    guarded: set[str] = set()
    for p in plan.photos:
        entry = recorded.get(p.path)
        target = root / p.path
        if entry and entry.get("spec") == specs[p.path] and same_file(target, entry):
            w, h = entry["stored_size"]
            done[p.path] = Rendered(p.path, entry["sha256"], entry["bytes"], w, h, written=False)
        else:
            todo.append(p)
            if os.path.lexists(target) and not (entry and same_file(target, entry)):
                guarded.add(p.path)  # not ours, or changed since: only accepted if it holds exactly our bytes
    workers = config.workers or os.cpu_count() or 1
    by_id = {s.id: s for s in plan.sources}
    for r in _render(_jobs(root, todo, by_id, workers, guarded), workers, len(todo), progress):
        if r.error:
            report.errors.append(f"{r.path}: {r.error}")
        else:
            done[r.path] = r
            report.written += int(r.written)
    report.unchanged = len(done) - report.written
    report.photos = len(done)
    _remove_stale(root, previous, set(specs), report)
    hostile = []
    if config.hostile:
        from PIL import Image

        sample_source = next((s for s in plan.sources if s.id == "skimage/coffee"), plan.sources[0])
        with Image.open(_path(sample_source)) as im:
            sample = im.convert("RGB")
        dup = next((p.path for p in plan.photos if p.format == "JPEG" and p.path in done), None)
        duplicate = (dup, (root / dup).read_bytes()) if dup else None
        try:
            hostile = make_hostile_files(root, sample, duplicate)
        except OSError as exc:
            report.errors.append(f"hostile files: {exc}")
        report.hostile = len(hostile)
    truth = ground_truth(plan, done, specs, digests, hostile, config.photos)
    report.ground_truth_written = write_json_if_changed(root / GROUND_TRUTH, truth)
    report.seconds = round(time.perf_counter() - start, 2)
    return report
