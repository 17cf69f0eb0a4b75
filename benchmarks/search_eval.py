"""Search quality on the sample library's real photos: recall@1/5/10, MRR, precision, and face clustering P/R/F1.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/search_eval.py [--work build/search-eval]
        [--photos 200] [--seed 0] [--json FILE] [--show] [--reuse] [--fit] [--sweep none,p0.1,p0.2,z2]

Steps, all offline:
1. ``albumen sample-library WORK/library`` (skipped when already built: the builder is idempotent);
2. ``albumen --data-dir WORK/data index WORK/library``, which runs the analyzers through ``albumen.vision.pipeline``;
3. people: pairwise precision/recall/F1 of the face clusters the pipeline made (``albumen.people.evaluate``), then
   each cluster is named the way a user would name it, after the ground-truth person most of its faces belong to;
4. every labelled query of ``albumen.search.evaluation`` runs through ``SearchEngine`` (the same code as
   ``albumen search``); relevance comes from ``ground_truth.json``; one query also runs through the real CLI with
   ``--json`` as an end-to-end check;
5. ``--sweep``: the same queries at other relevance cuts ("none" = the ranking alone), side by side;
``--fit`` first fits the calibrated relevance model (``albumen.search.calibration``) on the dev split only and uses it.
Every figure is printed for the dev split (tuned on) and the held-out split (never tuned on) separately.
Figures and their reading: docs/search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from albumen.search.evaluation import (
    EVAL_TODAY,
    NEGATIVE_QUERIES,
    QUERIES,
    EvalReport,
    QueryOutcome,
    relevant_paths,
    split_of,
    summarize,
)

ROOT = Path(__file__).resolve().parents[1]
ALBUMEN = [sys.executable, "-c", "from albumen.cli.main import main; main()"]


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    print(f"  $ albumen {' '.join(args[len(ALBUMEN):])}  ({time.perf_counter() - t:.1f} s, exit {proc.returncode})")
    return proc


def build_and_index(work: Path, photos: int, seed: int) -> dict[str, Any]:
    """Sample library + index (+ the pipeline's analyzers). Returns the index command's JSON."""
    library, data = work / "library", work / "data"
    proc = _run([*ALBUMEN, "sample-library", str(library), "--photos", str(photos), "--seed", str(seed), "--json"])
    if proc.returncode not in (0, 1):
        raise SystemExit(f"sample-library failed:\n{proc.stderr[-2000:]}")
    proc = _run([*ALBUMEN, "--data-dir", str(data), "index", str(library), "--json"])
    if proc.returncode != 0:
        raise SystemExit(f"index failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def relative_paths_by_photo(store: Any, library: Path) -> dict[int, set[str]]:
    """photo id -> every file path of it, relative to the library root with "/" (as in ground_truth.json)."""
    out: dict[int, set[str]] = defaultdict(set)
    for pid, path_bytes in store.conn.execute("SELECT photo_id, path_bytes FROM files"):
        path = Path(os.fsdecode(path_bytes))
        try:
            out[int(pid)].add(path.relative_to(library).as_posix())
        except ValueError:
            continue
    return out


def people_step(store: Any, truth: dict[str, Any], library: Path) -> dict[str, Any]:
    """Score the face clusters (``albumen.people.evaluate``), then name them the way a user would.

    Each person is named after the ground-truth person most of their faces belong to; a second person with the same
    majority is merged into the first (``albumen people merge``). Scores are taken before any naming or merging.
    """
    try:
        from albumen.people.edits import merge_people, name_person
        from albumen.people.evaluate import evaluate_face_clusters
    except ImportError as exc:
        return {"note": f"people clustering not available ({exc}): no person is named"}
    every = evaluate_face_clusters(store, library, truth)
    result: dict[str, Any] = {
        "all_faces": {k: v for k, v in every.items() if k != "people"},
        "hog_detectable": {k: v for k, v in evaluate_face_clusters(store, library, truth, detectable_only=True).items()
                           if k != "people"},
        "spread": every["people"],
    }
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for person, spread in every["people"].items():
        for pid, n in spread.items():
            if pid != "None":
                votes[int(pid)][person] += n
    named: dict[str, int] = {}
    merged = 0
    for pid, counter in sorted(votes.items(), key=lambda kv: -sum(kv[1].values())):
        name = counter.most_common(1)[0][0]
        try:
            if name in named:
                merge_people(store, named[name], [pid])
                merged += 1
            else:
                name_person(store, pid, name)
                named[name] = pid
        except ValueError as exc:  # PeopleError: report it, keep evaluating search
            result.setdefault("naming_errors", []).append(str(exc))
    result["named"] = named
    result["merged_by_user"] = merged
    return result


def run_queries(store: Any, truth: dict[str, Any], paths: dict[int, set[str]], settings: Any,
                embedder: Any = None) -> tuple[EvalReport, list[dict[str, Any]], float]:
    from albumen.places import GeoNamesGeocoder
    from albumen.search.engine import SearchEngine
    from albumen.vision.text_embedding import TextEmbedder

    limit = settings.limit
    engine = SearchEngine.from_store(store, embedder or TextEmbedder(), settings, gazetteer=GeoNamesGeocoder())
    outcomes, skipped, rows, times = [], [], [], []
    for q in QUERIES:
        relevant = relevant_paths(truth, q.want)
        if not relevant:
            skipped.append(q.text)
            continue
        t = time.perf_counter()
        result = engine.search(q.text, today=EVAL_TODAY, limit=limit)
        times.append(time.perf_counter() - t)
        ranked = tuple(_pick(paths.get(h.photo_id, set()), relevant) for h in result.hits)
        o = QueryOutcome(q, ranked, frozenset(relevant))
        outcomes.append(o)
        rows.append({"query": q.text, "kind": q.kind, "split": split_of(q.text), "relevant": len(relevant),
                     "returned": len(ranked),
                     "rr": round(o.metric("mrr"), 3), "p@5": round(o.metric("precision@5"), 3),
                     "threshold": None if result.threshold is None else round(result.threshold, 3)})
    negatives = []
    for text in NEGATIVE_QUERIES:
        result = engine.search(text, today=EVAL_TODAY, limit=limit)
        negatives.append(len(result.hits))
        rows.append({"query": text, "kind": "negative", "relevant": 0, "returned": len(result.hits)})
    return summarize(outcomes, negatives, skipped), rows, statistics.median(times) * 1000 if times else float("nan")


def threshold_sweep(store: Any, truth: dict[str, Any], paths: dict[int, set[str]], settings: Any, embedder: Any,
                    values: str) -> list[tuple[str, EvalReport, list[dict[str, Any]]]]:
    """The same evaluation at other cuts: "pX" = calibrated probability X, "zX" = the min_z rule at X (no relevance
    model), "none" = no threshold at all, so the ranking alone."""
    out = []
    for value in [v.strip() for v in values.split(",") if v.strip()]:
        if value == "none":
            swept = replace(settings, relevance=None, min_z=-1e9, min_score=-1.0)
        elif value.startswith("z"):
            swept = replace(settings, relevance=None, min_z=float(value[1:]))
        else:
            swept = replace(settings, min_probability=float(value.removeprefix("p")))
        report, rows, _ = run_queries(store, truth, paths, swept, embedder)
        out.append((value, report, rows))
    return out


def fit_relevance(store: Any, truth: dict[str, Any], paths: dict[int, set[str]], settings: Any, embedder: Any) -> Any:
    """Fit the calibrated relevance model on the DEV split only (its semantic queries and its negative queries)."""
    from albumen.places import GeoNamesGeocoder
    from albumen.search.calibration import fit_relevance_model, relevance_features
    from albumen.search.engine import SearchEngine

    engine = SearchEngine.from_store(store, embedder, settings, gazetteer=GeoNamesGeocoder())
    ids = [int(i) for i in engine.index.ids]
    texts = [(q.text, relevant_paths(truth, q.want)) for q in QUERIES if q.kind == "semantic"]
    texts += [(t, set()) for t in NEGATIVE_QUERIES]
    features, labels = [], []
    for text, relevant in texts:
        if split_of(text) != "dev" or (not relevant and text not in NEGATIVE_QUERIES):
            continue
        query = engine.parse(text, EVAL_TODAY)
        cosine = engine.index.scores(embedder.embed([query.text])[0])  # (N,)
        keyword = engine.keywords.scores(query.text) if engine.keywords is not None else np.zeros_like(cosine)
        features.append(relevance_features(cosine, keyword, cosine + settings.keyword_weight * keyword))
        labels.append(np.array([bool(paths.get(i, set()) & relevant) for i in ids], dtype=np.float64))
    model = fit_relevance_model(features, labels)
    print(f"relevance model fit on {len(features)} dev queries: {model}")
    return model


def negatives_by_split(rows: list[dict[str, Any]]) -> str:
    out = []
    for split in ("dev", "heldout"):
        n = [r["returned"] for r in rows if r["kind"] == "negative" and split_of(r["query"]) == split]
        out.append(f"{split} {sum(x == 0 for x in n)}/{len(n)} empty, mean {sum(n) / max(len(n), 1):.1f}")
    return "; ".join(out)


def _pick(candidates: set[str], relevant: set[str]) -> str:
    """A photo's path for scoring: a relevant one if any of its files is (copies share a photo), else any."""
    hit = sorted(candidates & relevant)
    return hit[0] if hit else (sorted(candidates)[0] if candidates else "")


def cli_check(work: Path, query: str) -> str:
    proc = _run([*ALBUMEN, "--data-dir", str(work / "data"), "search", query, "--json", "--limit", "3"])
    if proc.returncode != 0:
        return f"FAILED: {proc.stderr.strip()[-300:]}"
    items = json.loads(proc.stdout)
    ok = all(set(i) == {"path", "score"} for i in items)
    return f"{len(items)} results, keys ok: {ok}, first: {items[0] if items else None}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "search-eval")
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--show", action="store_true", help="print every query's row")
    ap.add_argument("--reuse", action="store_true", help="skip building and indexing when WORK/data exists")
    ap.add_argument("--min-z", type=float, default=None, help="override SearchSettings.min_z")
    ap.add_argument("--min-score", type=float, default=None, help="override SearchSettings.min_score")
    ap.add_argument("--keyword-weight", type=float, default=None, help="override SearchSettings.keyword_weight")
    ap.add_argument("--sweep", default="none,p0.1,p0.2,p0.3,p0.5,z2,z3",
                    help="also score these cuts: pX calibrated probability, zX the min_z rule, none = the ranking "
                         "alone; '' to skip")
    ap.add_argument("--fit", action="store_true",
                    help="fit the relevance model on the dev split and use it for this run (prints the constants)")
    ap.add_argument("--min-probability", type=float, default=None, help="override SearchSettings.min_probability")
    args = ap.parse_args()

    from albumen.library.store import Store
    from albumen.search.engine import SearchSettings

    settings = SearchSettings(limit=args.limit)
    if args.min_z is not None:
        settings.min_z = args.min_z
    if args.min_score is not None:
        settings.min_score = args.min_score
    if args.keyword_weight is not None:
        settings.keyword_weight = args.keyword_weight
    if args.min_probability is not None:
        settings.min_probability = args.min_probability
    work = args.work.resolve()
    print(f"sample library {args.photos} photos, seed {args.seed}, work dir {work}")
    reuse = args.reuse and (work / "data" / "library.sqlite3").exists()
    index = {"analyzers": {"ran": True}} if reuse else build_and_index(work, args.photos, args.seed)
    truth = json.loads((work / "library" / "ground_truth.json").read_text())
    store = Store.open(work / "data" / "library.sqlite3")
    try:
        analyzers = index.get("analyzers", {})
        note = "albumen.vision.pipeline (albumen index)" if analyzers.get("ran") else analyzers.get("note", "")
        if not store.get_embeddings("text-minilm")[0]:
            raise SystemExit(f"no photo vectors after `albumen index` ({note}); see `albumen analyze`")
        print(f"analyzers: {note}")
        paths = relative_paths_by_photo(store, work / "library")
        if reuse:  # people were named in the first run
            people = {"note": "reused: see the first run"}
        else:
            people = people_step(store, truth, work / "library")
        print(f"people: {json.dumps(people)}")
        from albumen.vision.text_embedding import TextEmbedder

        embedder = TextEmbedder()
        if args.fit:  # its own embedder, so that the timed queries below embed their text as a user's would
            settings.relevance = fit_relevance(store, truth, paths, settings, TextEmbedder())
        print(f"settings: min_score={settings.min_score} min_probability={settings.min_probability} "
              f"relevance={settings.relevance} limit={settings.limit} keyword_weight={settings.keyword_weight}")
        report, rows, median_ms = run_queries(store, truth, paths, settings, embedder)
        sweep = threshold_sweep(store, truth, paths, settings, embedder, args.sweep)
    finally:
        store.close()
    if args.show:
        for r in rows:
            print("  " + json.dumps(r))
    print(f"\nqueries scored: {report.counts}; skipped (nothing relevant in this library): {report.skipped}")
    header = ["group", *next(iter(report.metrics.values())).keys()]
    print(" ".join(f"{h:>16}" for h in header))
    for group, values in report.metrics.items():
        print(" ".join([f"{group:>16}", *(f"{v:>16.3f}" for v in values.values())]))
    print(f"negative queries returning nothing: {report.negatives_empty:.2f} "
          f"(mean results {report.negatives_mean_results:.1f}; {negatives_by_split(rows)})")
    print(f"median search latency (in-process, {len(rows)} queries): {median_ms:.1f} ms")
    print(f"recall@5 target 0.9: {'met' if report.metrics['all']['recall@5'] >= 0.9 else 'NOT met'}")
    if sweep:
        print("\nthreshold sweep (same vectors, same queries): cut -> all / semantic only / per split / negatives")
        print(f"{'cut':>6} {'recall@1':>9} {'recall@5':>9} {'mrr':>6} {'sem r@5':>8} {'dev r@5':>8} {'dev mrr':>8} "
              f"{'held r@5':>9} {'held mrr':>9}  negatives")
        for cut, r, cut_rows in sweep:
            a, sem = r.metrics["all"], r.metrics.get("semantic", {})
            dev, held = r.metrics.get("dev", {}), r.metrics.get("heldout", {})
            print(f"{cut:>6} {a['recall@1']:>9.3f} {a['recall@5']:>9.3f} {a['mrr']:>6.3f} "
                  f"{sem.get('recall@5', 0):>8.3f} "
                  f"{dev.get('recall@5', 0):>8.3f} {dev.get('mrr', 0):>8.3f} {held.get('recall@5', 0):>9.3f} "
                  f"{held.get('mrr', 0):>9.3f}  {negatives_by_split(cut_rows)}")
    print(f"CLI check `albumen search \"a cat\" --json`: {cli_check(work, 'a cat')}")
    if args.json is not None:
        args.json.write_text(json.dumps({"report": asdict(report), "people": people, "rows": rows,
                                         "sweep": [(cut, asdict(r)) for cut, r, _ in sweep],
                                         "median_ms": median_ms, "analyzers": note}, indent=1, default=str))


if __name__ == "__main__":
    main()
