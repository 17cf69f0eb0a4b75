"""Ranking: parse the query, filter by people/places/dates, rank by semantic similarity, cut at a relevance threshold.

``SearchEngine.search("dog on the beach with Anna last summer")``:
1. parse (rules, optionally merged with an LLM's guided JSON; see ``albumen.search.llm_parser``);
2. filter: a boolean row mask from the catalog (all people, any place, the date ranges, at/away from home);
3. rank: cosine similarity between the query vector (the semantic text embedded in the same space as the photos) and
   every photo vector, plus ``keyword_weight`` times the keyword score (``albumen.search.keywords``: the query's
   words against each photo's tags, concepts, pixel attributes and faces), which keeps a decisive word ("yellow",
   "black and white", "blurry") from being blurred away in the sentence vector;
4. threshold: a photo is relevant only if its score beats an absolute floor (``min_score``) and a calibrated
   probability of relevance reaches ``min_probability`` (``albumen.search.calibration``: a logistic model over the
   photo's cosine, keyword score, its z against the library's background for this query and its gap to the best
   match, fit on the eval's dev split). That is what keeps "everything matches" out: MiniLM gives unrelated pairs
   cosines of 0.1-0.3, and which level means "related" differs per query. With ``relevance=None`` the older rule is
   used: beat the query's background over the whole library by ``min_z`` robust std (``median + min_z * 1.4826 *
   MAD``), which cuts subjects that a quarter of the library shows, since those are no outliers.
A query with no semantic text left ("Anna in 2023") is filter-only: every match, newest first, score 1.0.

This module knows the pipeline's order and the threshold rule; the parts (parser, catalog, index, embedder) are seams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from albumen.search.calibration import DEFAULT_RELEVANCE, RelevanceModel, relevance_features
from albumen.search.catalog import SearchCatalog
from albumen.search.keywords import KeywordIndex, photo_terms
from albumen.search.query import ParsedQuery, Vocabulary, parse_query
from albumen.search.vector_index import VectorIndex, top_k

__all__ = ["DEFAULT_SPACE", "SearchEngine", "SearchHit", "SearchResult", "SearchSettings", "keyword_index_from_store"]

# The embeddings "space" the vision analyzers store photo vectors under (MiniLM, 384-d).
DEFAULT_SPACE = "text-minilm"

QueryParser = Callable[[str, Vocabulary, date], ParsedQuery]


@dataclass
class SearchSettings:
    """How search ranks and cuts. The defaults are calibrated on the sample library (docs/search.md)."""

    limit: int = 20
    min_score: float = 0.2  # absolute floor on the score
    # the calibrated relevance model and the probability a hit needs (0.2: chosen on the eval's dev split, where it
    # kept recall@5 and cut the results of unanswerable queries; docs/search.md); None = the min_z rule below. The
    # default was fit in the text-minilm space with keyword_weight 0.1: another space (a CLIP checkpoint's) needs its
    # own fit, or None
    relevance: RelevanceModel | None = DEFAULT_RELEVANCE
    min_probability: float = 0.2
    # without a relevance model: a hit must beat the library's typical score for this query by this many robust std
    min_z: float = 2.0
    home_radius_km: float = 30.0
    place_radius_km: float = 15.0  # "in Sydney": within this distance of a populated place called Sydney
    space: str = DEFAULT_SPACE
    query_template: str = "{}"  # how the semantic text is phrased before embedding
    # weight of the keyword score next to the cosine; fit on the eval's dev split only (docs/search.md), 0 = off
    keyword_weight: float = 0.1


@dataclass(frozen=True)
class SearchHit:
    photo_id: int
    path: str
    score: float
    day: date | None = None
    places: tuple[str, ...] = ()
    people: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "score": round(float(self.score), 4)}


@dataclass
class SearchResult:
    query: ParsedQuery
    hits: list[SearchHit]
    matched_filters: int  # photos passing the filters (all of them when there are none)
    # the lowest score that counted as relevant (above the best score when none did); None for filter-only queries
    threshold: float | None = None
    notes: list[str] = field(default_factory=list)


class SearchEngine:
    """Search over one library.

    Args:
        catalog: per-photo metadata for the filters.
        index: photo vectors (None or empty: only filter-only queries can answer).
        embedder: anything with ``embed(list[str]) -> (N, D)`` unit vectors in the index's space.
        settings: limits and thresholds.
        parser: ``(raw, vocabulary, today) -> ParsedQuery``; the rule-based parser by default.
        keywords: keyword index whose rows follow ``index.ids`` (None: cosine only).
    """

    def __init__(
        self,
        catalog: SearchCatalog,
        index: VectorIndex | None,
        embedder: Any,
        settings: SearchSettings | None = None,
        parser: QueryParser | None = None,
        keywords: KeywordIndex | None = None,
    ) -> None:
        if keywords is not None and (index is None or len(keywords) != len(index)):
            raise ValueError("the keyword index must have one row per photo vector, in the same order")
        self.catalog = catalog
        self.index = index
        self.keywords = keywords
        self.embedder = embedder
        self.settings = settings or SearchSettings()
        self.parser: QueryParser = parser or parse_query
        self._catalog_rows = self._align_index()

    @classmethod
    def from_store(
        cls, store: Any, embedder: Any, settings: SearchSettings | None = None, parser: QueryParser | None = None,
        gazetteer: Any = None,
    ) -> SearchEngine:
        """Everything from the library's store; ``gazetteer`` (a ``GeoNamesGeocoder``) lets place names match nearby
        photos, not only the ones geocoded to exactly that name."""
        settings = settings or SearchSettings()
        catalog = SearchCatalog.from_store(store, home_radius_km=settings.home_radius_km, gazetteer=gazetteer,
                                           place_radius_km=settings.place_radius_km)
        ids, matrix = store.get_embeddings(settings.space)
        index = VectorIndex(ids, matrix) if ids else None
        keywords = keyword_index_from_store(store, ids) if index is not None and settings.keyword_weight else None
        return cls(catalog, index, embedder, settings, parser, keywords)

    def _align_index(self) -> np.ndarray:
        """For each index row, its catalog row (-1 if the photo is gone): int64 (N_index,)."""
        if self.index is None:
            return np.zeros(0, dtype=np.int64)
        return np.array([-1 if (r := self.catalog.row_of(int(i))) is None else r for i in self.index.ids],
                        dtype=np.int64)

    def parse(self, raw: str, today: date | None = None) -> ParsedQuery:
        return self.parser(raw, self.catalog.vocabulary(), today or date.today())

    def search(self, raw: str, extra: ParsedQuery | None = None, today: date | None = None,
               limit: int | None = None) -> SearchResult:
        """Run one query; ``extra`` carries filters given outside the text (CLI flags), combined with the text's."""
        query = self.parse(raw, today)
        if extra is not None:
            query = query.merged(extra)
        limit = self.settings.limit if limit is None else limit
        mask = self.catalog.mask(query)  # (N_catalog,)
        matched = int(mask.sum())
        if not query.text:
            return self._filter_only(query, mask, matched, limit)
        if self.index is None or len(self.index) == 0:
            return SearchResult(query, [], matched, None,
                                [f"no photo vectors in space {self.settings.space!r} yet: run `albumen analyze`"])
        qvec = self.embedder.embed([self.settings.query_template.format(query.text)])[0]  # (D,)
        cosine = self.index.scores(qvec)  # (N_index,)
        keyword = np.zeros_like(cosine)
        if self.keywords is not None and self.settings.keyword_weight:
            keyword = self.keywords.scores(query.text)  # (N_index,)
        scores = cosine + self.settings.keyword_weight * keyword  # (N_index,)
        relevant = self._relevant(cosine, keyword, scores)  # (N_index,) bool
        threshold = float(scores[relevant].min()) if relevant.any() else float(scores.max()) + 1e-6
        rows = self._catalog_rows
        allowed = (rows >= 0) & relevant  # (N_index,)
        allowed[rows >= 0] &= mask[rows[rows >= 0]]
        picked, picked_scores = top_k(scores, limit, allowed)
        hits = [self._hit(int(rows[i]), float(s)) for i, s in zip(picked, picked_scores)]
        return SearchResult(query, hits, matched, threshold)

    def _relevant(self, cosine: np.ndarray, keyword: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Which photos count as relevant to this query at all (before filters and the limit): bool (N,)."""
        s = self.settings
        if s.relevance is None:
            return scores >= self._threshold(scores)
        probability = s.relevance.probability(relevance_features(cosine, keyword, scores))  # (N,)
        return (scores >= s.min_score) & (probability >= s.min_probability)

    def _threshold(self, scores: np.ndarray) -> float:
        """The relevance cut for one query: max(absolute floor, median + min_z * robust std over the whole library)."""
        s = self.settings
        if scores.shape[0] < 2:
            return s.min_score
        median = float(np.median(scores))
        robust_std = 1.4826 * float(np.median(np.abs(scores - median)))  # MAD scaled to a normal's std
        return max(s.min_score, median + s.min_z * robust_std)

    def _filter_only(self, query: ParsedQuery, mask: np.ndarray, matched: int, limit: int) -> SearchResult:
        notes = [] if query.has_filters else ["empty query: say what to look for, or give a person, place or date"]
        if not query.has_filters:
            return SearchResult(query, [], 0, None, notes)
        rows = np.flatnonzero(mask)
        # newest first; undated last
        ordered = sorted(rows, key=lambda r: (self.catalog.rows[r].day is None, -(self.catalog.rows[r].day or date.min).toordinal()))
        return SearchResult(query, [self._hit(int(r), 1.0) for r in ordered[:limit]], matched, None, notes)

    def _hit(self, row: int, score: float) -> SearchHit:
        r = self.catalog.rows[row]
        return SearchHit(r.photo_id, r.path, score, r.day, r.places, r.people)


def keyword_index_from_store(store: Any, ids: Any) -> KeywordIndex:
    """Keyword terms of the photos ``ids`` (in that order) from the stored tags, quality and faces payloads."""
    from albumen.vision.concepts import imagenet_classes

    lemmas = {c.synset: c.names for c in imagenet_classes()}
    tags, quality, faces = (store.get_analyses(n) for n in ("tags", "quality", "faces"))
    terms = []
    for pid in ids:
        f = faces.get(int(pid)) or {}
        n_faces = len(f.get("faces", ())) if "error" not in f else 0
        terms.append(photo_terms(tags.get(int(pid)), quality.get(int(pid)), n_faces, lemmas))
    return KeywordIndex(terms)
