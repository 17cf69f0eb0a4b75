"""Vector search latency at 100k photos x 384-d float32: numpy brute force vs the alternatives, side by side.

    flock /tmp/albumen-heavy.lock .venv/bin/python benchmarks/vector_search.py [--n 100000] [--queries 200]

Methods (each answers top-``k`` by cosine over the same unit vectors):
- numpy: ``albumen.search.vector_index.VectorIndex.search`` (what search uses: one einsum pass + argpartition), also
  with a 10% filter mask, and the same with ``matrix @ q`` through numpy's threaded BLAS;
- torch: ``matrix @ q`` + ``torch.topk``;
- faiss-flat: ``IndexFlatIP`` (exact);
- faiss-hnsw: ``IndexHNSWFlat`` (approximate; build time and recall@k against the exact answer reported);
- sqlite-vec: a ``vec0`` table's KNN query (through apsw when this Python's sqlite3 cannot load extensions).
Queries run interleaved (query i through every method, in rotating order) so machine noise hits all methods alike;
the figures are medians and 95th percentiles in ms per query, and each method's ratio to numpy from the same run.
The data are clustered (1000 centres + noise), closer to real photo vectors than uniform noise, for the ANN's sake.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from albumen.search.vector_index import VectorIndex

Search = Callable[[np.ndarray], np.ndarray]  # query (D,) -> ids (k,)


def make_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, d)).astype(np.float32)
    x = centres[rng.integers(0, 1000, n)] + 0.7 * rng.standard_normal((n, d)).astype(np.float32)  # (N, D)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    t = time.perf_counter()
    index = VectorIndex(np.arange(m.shape[0]), m)
    return (lambda q: index.search(q, k)[0]), time.perf_counter() - t


def numpy_blas_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    """``matrix @ q`` through numpy's BLAS (OpenBLAS, threaded) + the same top-k: what VectorIndex did before."""
    from albumen.search.vector_index import top_k

    return (lambda q: top_k(m @ q, k)[0]), 0.0


def numpy_masked_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    index = VectorIndex(np.arange(m.shape[0]), m)
    allowed = np.random.default_rng(1).random(m.shape[0]) < 0.10
    return (lambda q: index.search(q, k, allowed)[0]), 0.0


def torch_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    import torch

    t = time.perf_counter()
    tm = torch.from_numpy(m)

    def search(q: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.topk(tm @ torch.from_numpy(q), k).indices.numpy()

    return search, time.perf_counter() - t


def faiss_flat_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexFlatIP(m.shape[1])
    index.add(m)
    return (lambda q: index.search(q[None, :], k)[1][0]), time.perf_counter() - t


def faiss_hnsw_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(m.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(m)
    index.hnsw.efSearch = 64
    return (lambda q: index.search(q[None, :], k)[1][0]), time.perf_counter() - t


def _sqlite_with_extensions() -> Any:
    """A connection that can load sqlite-vec: the stdlib's when it allows extensions, else apsw's."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    if hasattr(conn, "enable_load_extension"):
        return conn
    conn.close()
    import apsw  # this Python's sqlite3 was built without extension loading

    return apsw.Connection(":memory:")


def sqlite_vec_method(m: np.ndarray, k: int) -> tuple[Search, float]:
    import sqlite_vec

    conn = _sqlite_with_extensions()
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.enable_load_extension(False)
    t = time.perf_counter()
    conn.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{m.shape[1]}] distance_metric=cosine)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO v(rowid, embedding) VALUES (?, ?)", ((i, m[i].tobytes()) for i in range(m.shape[0])))
    conn.execute("COMMIT")
    build = time.perf_counter() - t

    def search(q: np.ndarray) -> np.ndarray:
        rows = conn.execute("SELECT rowid FROM v WHERE embedding MATCH ? AND k = ?", (q.tobytes(), k)).fetchall()
        return np.array([r[0] for r in rows])

    return search, build


METHODS: dict[str, Callable[[np.ndarray, int], tuple[Search, float]]] = {
    "numpy": numpy_method,
    "numpy+10%mask": numpy_masked_method,
    "numpy-blas": numpy_blas_method,
    "torch": torch_method,
    "faiss-flat": faiss_flat_method,
    "faiss-hnsw": faiss_hnsw_method,
    "sqlite-vec": sqlite_vec_method,
}


def synthetic_keywords(n: int, terms_per_photo: int = 15, vocabulary: int = 3000, seed: int = 3) -> Any:
    """A keyword index like a real library's: ~15 weighted terms per photo from a Zipf-distributed vocabulary
    (tags, concepts, attributes), "dog" among the common ones."""
    from albumen.search.keywords import KeywordIndex

    rng = np.random.default_rng(seed)
    words = ["dog", "beach", *(f"w{i}" for i in range(vocabulary - 2))]
    ranks = np.minimum(rng.zipf(1.3, size=(n, terms_per_photo)) - 1, vocabulary - 1)  # (n, t)
    weights = rng.random((n, terms_per_photo)).astype(np.float32)  # (n, t)
    return KeywordIndex([{words[r]: float(w) for r, w in zip(rr, ww)} for rr, ww in zip(ranks, weights)])


def engine_latency(m: np.ndarray, repeats: int = 7) -> list[tuple[str, float, int]]:
    """The whole ``SearchEngine.search`` minus the text model (parse, filters, keyword scores, calibrated threshold,
    top-k) on N photos."""
    from datetime import date, timedelta

    from albumen.search.catalog import PhotoRow, SearchCatalog
    from albumen.search.engine import SearchEngine
    from albumen.vision.text_embedding import FakeTextEmbedder

    rng = np.random.default_rng(2)
    n = m.shape[0]
    days = rng.integers(0, 3650, n)
    rows = [PhotoRow(i, f"/photos/{i}.jpg", date(2016, 1, 1) + timedelta(days=int(days[i])), 47.6 + 0.1 * rng.random(),
                     -122.3, ("Seattle", "Washington", "United States"), "US", ("Anna Berg",) if i % 7 == 0 else ())
            for i in range(n)]
    keywords = synthetic_keywords(n)
    engine = SearchEngine(SearchCatalog(rows), VectorIndex(np.arange(n), m), FakeTextEmbedder(), keywords=keywords)
    out = []
    for q in ("dog on the beach", "dog last summer", "dog with Anna in Seattle", "Anna in 2020"):
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            result = engine.search(q, today=date(2025, 11, 1))
            ts.append((time.perf_counter() - t) * 1000)
        out.append((q, statistics.median(ts), len(result.hits)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--engine-only", action="store_true", help="only time SearchEngine.search (skip the methods)")
    args = ap.parse_args()

    m = make_vectors(args.n, args.dim)
    if args.engine_only:
        print(f"SearchEngine.search on {args.n} photos, text model excluded (parse + filters + keywords + threshold "
              "+ top-k):")
        for q, ms, hits in engine_latency(m):
            print(f"  {q!r:>28}: {ms:6.1f} ms median, {hits} hits")
        return
    queries = make_vectors(args.queries, args.dim, seed=42)
    print(f"{args.n} x {args.dim} float32 ({m.nbytes / 1e6:.0f} MB), {args.queries} queries, top-{args.k}")
    try:
        import torch

        print(f"torch threads: {torch.get_num_threads()}")
    except ImportError:
        pass

    searches: dict[str, Search] = {}
    builds: dict[str, float] = {}
    for name, make in METHODS.items():
        try:
            searches[name], builds[name] = make(m, args.k)
        except Exception as exc:  # a missing optional package is a result, not a crash
            print(f"{name:>14}: not measured ({type(exc).__name__}: {exc})")

    exact = {i: set((m @ q).argsort()[::-1][: args.k].tolist()) for i, q in enumerate(queries)}
    times: dict[str, list[float]] = {name: [] for name in searches}
    recall: dict[str, list[float]] = {name: [] for name in searches}
    names = list(searches)
    for i, q in enumerate(queries):
        for j in range(len(names)):  # rotate the order each query
            name = names[(i + j) % len(names)]
            t = time.perf_counter()
            ids = searches[name](q)
            times[name].append((time.perf_counter() - t) * 1000)
            if name != "numpy+10%mask":
                recall[name].append(len(exact[i] & {int(x) for x in ids}) / args.k)

    base = statistics.median(times["numpy"]) if "numpy" in times else float("nan")
    print(f"{'method':>14} {'median ms':>10} {'p95 ms':>8} {'vs numpy':>9} {'recall@k':>9} {'build s':>8}")
    for name in names:
        ts = sorted(times[name])
        med, p95 = statistics.median(ts), ts[int(0.95 * (len(ts) - 1))]
        rec = f"{statistics.mean(recall[name]):.3f}" if recall[name] else "-"
        print(f"{name:>14} {med:>10.2f} {p95:>8.2f} {med / base:>8.2f}x {rec:>9} {builds[name]:>8.2f}")
    print(f"SearchEngine.search on {args.n} photos, text model excluded (parse + filters + keywords + threshold "
          "+ top-k):")
    for q, ms, hits in engine_latency(m):
        print(f"  {q!r:>28}: {ms:6.1f} ms median, {hits} hits")
    target = 50.0
    if "numpy" in times:
        verdict = "meets" if statistics.median(times["numpy"]) < target else "MISSES"
        print(f"numpy brute force {verdict} the {target:.0f} ms target at {args.n} vectors")


if __name__ == "__main__":
    main()
