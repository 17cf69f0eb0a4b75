"""Analyze throughput on the sample library: photos/s per analyzer and in total, one worker vs both cores, side by side.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/analyze_throughput.py \\
        --library build/sample-library --photos 300 [--data build/bench/analyze] [--repeats 1] [--json out.json]

1. builds the sample library in ``--library`` if it has no ground truth yet, and indexes it (``--no-analyze``) into
   ``--data`` once;
2. runs the full analyze pipeline (every analyzer of the default config) from scratch, alternating 1 worker (torch on
   both threads, dlib on one) and one worker per core (A/B/A/B, ``--repeats`` pairs), each on a fresh copy of the
   indexed database, so machine noise hits both alike; reports the medians and their ratio;
3. per analyzer, from the same runs: its compute seconds (``analyzer_seconds``; model loading excluded) in the
   1-worker run, where torch uses both threads, as photos/s, and its worker-seconds summed over both workers in the
   pooled run (more than the 1-worker seconds means the two workers did not get two free cores); tags and embeddings
   share one classifier pass, which tags pays;
4. face clustering on the last run: pairwise precision / recall / F1 against the ground truth, after the incremental
   grouping that ``analyze`` does and after ``people recluster``, for all true faces and for the HOG-detectable ones.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from albumen.config import AppConfig
from albumen.library.store import Store
from albumen.people.cluster import ClusterConfig
from albumen.people.evaluate import evaluate_face_clusters
from albumen.people.grouping import recluster
from albumen.vision.pipeline import PipelineSettings, analyze_library


def prepare(library: Path, photos: int, data: Path) -> Path:
    """The sample library built and indexed; returns the indexed database (no analyzer results)."""
    albumen = [str(Path(sys.executable).parent / "albumen")]
    if not (library / "ground_truth.json").exists():
        subprocess.run([*albumen, "sample-library", str(library), "--photos", str(photos)], check=True,
                       stdout=subprocess.DEVNULL)
    db = data / "library.sqlite3"
    if not db.exists():
        subprocess.run([*albumen, "--data-dir", str(data), "index", str(library), "--no-analyze", "--json"],
                       check=True, stdout=subprocess.DEVNULL)
    return db


def fresh_copy(db: Path, name: str) -> Path:
    """A copy of the indexed database next to it (so thumbnail paths still resolve), via SQLite's backup API."""
    dst = db.parent / name
    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    with sqlite3.connect(db) as src, sqlite3.connect(dst) as out:
        src.backup(out)
    return dst


def run_once(db: Path, workers: int, face_model: str, cache_dir: Path, tag: str) -> dict[str, Any]:
    copy = fresh_copy(db, f"bench-{tag}.sqlite3")
    cfg = AppConfig(data_dir=db.parent)
    s = PipelineSettings(analyzers=tuple(cfg.vision.analyzers), batch_size=cfg.vision.batch_size, workers=workers,
                         face_model=face_model, cache_dir=cache_dir)
    with Store.open(copy) as store:
        t = time.perf_counter()
        summary = analyze_library(store, cfg, settings=s)
        summary["wall"] = time.perf_counter() - t
    summary["db"] = str(copy)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", type=Path, default=Path("build/sample-library"))
    ap.add_argument("--photos", type=int, default=300, help="photos when the library has to be built")
    ap.add_argument("--data", type=Path, default=Path("build/bench/analyze"))
    ap.add_argument("--repeats", type=int, default=1, help="A/B pairs (1 worker, then one per core)")
    ap.add_argument("--face-model", default="hog+mediapipe")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    db = prepare(args.library, args.photos, args.data)
    cache = args.data / "cache"
    # warm the label-vector cache so neither side pays MiniLM's 1000 class texts
    if not any(cache.glob("text-vectors-*.npy")):
        from albumen.vision.embeddings import EmbeddingAnalyzer

        EmbeddingAnalyzer(cache_dir=cache).load()
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for r in range(args.repeats):
        for w in (1, 2):
            runs[w].append(run_once(db, w, args.face_model, cache, f"w{w}-r{r}"))
            s = runs[w][-1]
            print(f"run {r} workers={w}: {s['photos']} photos in {s['wall']:.1f} s "
                  f"= {s['photos'] / s['wall']:.2f} photos/s", flush=True)

    photos = runs[2][-1]["photos"]
    walls = {w: statistics.median(s["wall"] for s in runs[w]) for w in runs}
    print(f"\n{photos} photos, face model {args.face_model}, medians of {args.repeats} run(s)")
    print(f"{'analyzer':<12}{'photos':>8}{'errors':>8}{'s (1 worker)':>14}{'photos/s (1w)':>15}"
          f"{'worker-s (pool)':>17}")
    per: dict[str, dict[str, float]] = {}
    for name in runs[2][-1]["analyzed"]:
        one = statistics.median(s["analyzer_seconds"][name] for s in runs[1])
        two = statistics.median(s["analyzer_seconds"][name] for s in runs[2])
        n = runs[2][-1]["analyzed"][name]
        per[name] = {"photos": n, "errors": runs[2][-1]["errors"][name], "seconds_1w": round(one, 2),
                     "worker_seconds_pool": round(two, 2), "photos_per_s_1w": round(n / one, 2) if one else None}
        rate = f"{n / one:.1f}" if one >= 0.05 else "(instant)"
        print(f"{name:<12}{n:>8}{per[name]['errors']:>8}{one:>14.1f}{rate:>15}{two:>17.1f}")
    total = {w: photos / walls[w] for w in walls}
    print(f"total: 1 worker {total[1]:.2f} photos/s ({walls[1]:.1f} s), {runs[2][-1]['workers']} workers "
          f"{total[2]:.2f} photos/s ({walls[2]:.1f} s); speed-up x{total[2] / total[1]:.2f} (wall time incl. model "
          f"loading)")

    faces: dict[str, Any] = {}
    with Store.open(Path(runs[2][-1]["db"])) as store:
        for only in (False, True):
            faces[f"incremental{'_detectable' if only else ''}"] = evaluate_face_clusters(
                store, args.library, detectable_only=only)
        faces["recluster_run"] = recluster(store, ClusterConfig())
        for only in (False, True):
            faces[f"recluster{'_detectable' if only else ''}"] = evaluate_face_clusters(
                store, args.library, detectable_only=only)
    for key in ("incremental", "incremental_detectable", "recluster", "recluster_detectable"):
        f = faces[key]
        p = f["pairwise"]
        print(f"faces {key:<24} P {p['precision']:.3f}  R {p['recall']:.3f}  F1 {p['f1']:.3f}  "
              f"(true faces {f['true_faces']}, found {f['found']}, missed {f['missed']}, "
              f"false detections {f['false_detections']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"photos": photos, "face_model": args.face_model, "per_analyzer": per,
                                         "total_photos_per_s": total, "wall_s": walls, "faces": faces,
                                         "runs": runs}, indent=1, default=str))


if __name__ == "__main__":
    main()
