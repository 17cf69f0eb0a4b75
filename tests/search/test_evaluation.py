"""The labelled query set, relevance from ground truth, and the ranking metrics (checked by hand-computed values)."""

from __future__ import annotations

from datetime import date

import pytest

from albumen.library.sample.sources import CATALOGUE
from albumen.search.evaluation import (
    EVAL_TODAY,
    HELDOUT,
    NEGATIVE_QUERIES,
    QUERIES,
    EvalQuery,
    QueryOutcome,
    Want,
    capped_recall_at_k,
    hit_at_k,
    precision_at_k,
    reciprocal_rank,
    relevant_paths,
    split_of,
    summarize,
)
from albumen.search.query import Vocabulary, parse_query

TRUTH = {
    "home": {"city": "Seattle"},
    "photos": [
        {"path": "a.jpg", "labels": ["cat", "pet"], "people": [], "city": "Seattle",
         "taken_at": "2025-07-01T10:00:00.000-07:00"},
        {"path": "b.jpg", "labels": ["flower", "yellow"], "people": [], "city": "Tokyo",
         "taken_at": "2024-04-05T09:00:00.000+09:00"},
        {"path": "c.jpg", "labels": ["person", "portrait"], "people": ["Grace Hopper"], "city": "Seattle",
         "taken_at": "2024-12-25T19:00:00.000-08:00"},
        {"path": "d.jpg", "labels": ["flower"], "people": [], "city": "Seattle",
         # 23:30 local on 31 Dec is 1 Jan in UTC: the local day must decide
         "taken_at": "2023-12-31T23:30:00.000-08:00"},
    ],
}


@pytest.mark.parametrize(("want", "expected"), [
    (Want(labels_any=("flower",)), {"b.jpg", "d.jpg"}),
    (Want(labels_all=("flower", "yellow")), {"b.jpg"}),
    (Want(people=("Grace Hopper",)), {"c.jpg"}),
    (Want(cities=("Tokyo",)), {"b.jpg"}),
    (Want(years=(2023,)), {"d.jpg"}),
    (Want(months=(12,)), {"c.jpg", "d.jpg"}),
    (Want(days=((12, 25),)), {"c.jpg"}),
    (Want(between=(date(2025, 6, 1), date(2025, 9, 1))), {"a.jpg"}),
    (Want(away=True), {"b.jpg"}),
    (Want(labels_any=("flower",), away=False), {"d.jpg"}),
    (Want(labels_any=("dog",)), set()),
])
def test_relevance_from_ground_truth(want: Want, expected: set[str]) -> None:
    assert relevant_paths(TRUTH, want) == expected


def test_metrics_by_hand() -> None:
    ranked = ["x", "a", "y", "b"]
    rel = {"a", "b", "c"}
    assert hit_at_k(ranked, rel, 1) == 0.0
    assert hit_at_k(ranked, rel, 2) == 1.0
    assert reciprocal_rank(ranked, rel) == pytest.approx(0.5)
    assert reciprocal_rank(["x"], rel) == 0.0
    assert precision_at_k(ranked, rel, 4) == pytest.approx(0.5)
    assert precision_at_k(["a"], rel, 5) == 1.0  # divided by what was returned
    assert precision_at_k([], rel, 5) == 0.0
    assert capped_recall_at_k(ranked, rel, 10) == pytest.approx(2 / 3)
    assert capped_recall_at_k(ranked, {"a"}, 10) == 1.0


def test_summarize_groups_and_negatives() -> None:
    sem = EvalQuery("cat", Want(labels_any=("cat",)))
    fil = EvalQuery("cat in 2025", Want(labels_any=("cat",), years=(2025,)), "filtered")
    outcomes = [QueryOutcome(sem, ("a", "b"), frozenset({"a"})), QueryOutcome(fil, ("b", "c"), frozenset({"a"}))]
    report = summarize(outcomes, negatives=[0, 0, 3, 0], skipped=["nothing"])
    assert {g: report.counts[g] for g in ("all", "semantic", "filtered")} == {"all": 2, "semantic": 1, "filtered": 1}
    assert report.counts[split_of("cat")] == 1 + (split_of("cat in 2025") == split_of("cat"))
    assert report.counts[f"{split_of('cat')}/semantic"] == 1
    assert report.metrics["semantic"]["recall@1"] == 1.0
    assert report.metrics["filtered"]["mrr"] == 0.0
    assert report.metrics["all"]["mrr"] == pytest.approx(0.5)
    assert report.negatives_empty == pytest.approx(0.75)
    assert report.negatives_mean_results == pytest.approx(0.75)
    assert report.skipped == ["nothing"]
    with pytest.raises(ValueError, match="unknown metric"):
        outcomes[0].metric("ndcg")


def test_query_set_refers_to_real_labels_and_parses() -> None:
    """Every label a query wants exists in the source catalogue, and filtered queries really produce filters."""
    labels = {label for s in CATALOGUE for label in s.labels}
    people = {f.person for s in CATALOGUE for f in s.faces}
    vocab = Vocabulary.build(sorted(people), ["Paris", "Tokyo", "Beijing", "Cape Canaveral", "Sydney", "Seattle"])
    for q in QUERIES:
        assert set(q.want.labels_any) <= labels, q.text
        assert set(q.want.labels_all) <= labels, q.text
        assert set(q.want.people) <= people, q.text
        assert set(q.want.sources) <= {s.id for s in CATALOGUE}, q.text
        parsed = parse_query(q.text, vocab, EVAL_TODAY)
        assert parsed.has_filters == (q.kind == "filtered"), q.text
    assert len({q.text for q in QUERIES}) == len(QUERIES)
    negatives = set(NEGATIVE_QUERIES)
    assert not negatives & {q.text for q in QUERIES}


def test_split_is_fixed_and_balanced() -> None:
    """The held-out half is a hash of the text: stable, and neither half is tiny."""
    assert split_of("a cat") == split_of("a cat")
    assert {split_of(q.text) for q in QUERIES} == {"dev", HELDOUT}
    heldout = sum(split_of(q.text) == HELDOUT for q in QUERIES)
    assert 0.35 < heldout / len(QUERIES) < 0.65
    for kind in ("semantic", "filtered"):
        assert {split_of(q.text) for q in QUERIES if q.kind == kind} == {"dev", HELDOUT}


def test_want_sources() -> None:
    photo = {"labels": ["flower"], "source": "mate/Garden", "taken_at": "2024-01-01T10:00:00+00:00"}
    assert Want(sources=("mate/Garden",)).matches(photo, "Seattle")
    assert not Want(sources=("mate/Wood",)).matches(photo, "Seattle")
