"""Keyword scores: the query's words matched against the words the analyzers gave each photo.

Dense MiniLM similarity blurs one decisive word in a sentence: in "black and white photo" or "yellow flower" the
colour barely moves the vector, and a photo vector built from ImageNet classes has no colour at all. So each photo
also gets a small bag of weighted terms:

- the lemmas of its top ImageNet tags, weighted by probability, and its concepts, weighted by score ("tags" payload);
- its pixel attributes ("black and white", colours, "dark", "texture": ``albumen.vision.attributes``) and whether it
  is blurry ("quality" payload), each with the words people use for it (``ATTRIBUTE_TERMS``);
- "person" / "people" when faces were found ("faces" payload).

``KeywordIndex.scores(text)`` is, per photo, the mean over the query's terms of ``idf(term) * min(1, weight /
saturation)``: a rare term that the photo clearly has counts most, and the mean keeps long and short queries on one
scale. The engine adds it to the cosine with a weight (``SearchSettings.keyword_weight``). This module knows
payloads and words; it knows nothing about vectors, SQLite or ranking.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ATTRIBUTE_TERMS", "STOP_WORDS", "KeywordIndex", "photo_terms", "tokenize"]

# attribute (as the analyzers store it) -> the words a query may use for it
ATTRIBUTE_TERMS: dict[str, tuple[str, ...]] = {
    "black and white": ("black", "white", "monochrome", "grayscale", "greyscale", "mono"),
    "dark": ("dark", "night", "dim"),
    "texture": ("texture", "pattern", "closeup"),
    "blurry": ("blurry", "blurred", "blur", "unsharp", "unfocused"),
    "red": ("red",), "orange": ("orange",), "yellow": ("yellow",), "green": ("green",), "blue": ("blue",),
    "purple": ("purple", "violet"), "pink": ("pink",),
    "person": ("person", "people", "someone", "face"),
    "people": ("people", "group"),
}

STOP_WORDS = frozenset(
    "a an the of on in at with and or to for from my our your his her their some something any this that these those "
    "photo photos picture pictures image images shot shots show me find full by under over up near".split()
)

_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case words minus stop words, with a crude plural strip ("flowers" -> "flower", "glass" stays)."""
    out = []
    for word in _WORD.findall(text.lower().replace("close-up", "closeup").replace("close up", "closeup")):
        if word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def photo_terms(
    tags: Mapping[str, Any] | None,
    quality: Mapping[str, Any] | None = None,
    faces: int = 0,
    lemmas: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, float]:
    """term -> weight in [0, 1] for one photo, from its stored payloads.

    Args:
        tags: the "tags" payload (``tags``, ``concepts``, ``attributes``); None or an error payload gives no terms.
        quality: the "quality" payload (its ``blurry`` flag).
        faces: faces found in the photo.
        lemmas: synset -> every lemma of the class (``ImagenetClass.names``); without it only the stored label is used.
    """
    terms: dict[str, float] = {}

    def add(text: str, weight: float) -> None:
        for t in tokenize(text):
            terms[t] = max(terms.get(t, 0.0), float(weight))

    if tags and "error" not in tags:
        for tag in tags.get("tags", ()):
            names = (lemmas or {}).get(str(tag.get("synset", "")), ()) or (str(tag.get("label", "")),)
            for name in names:
                add(name, tag.get("score", 0.0))
        for concept, score in (tags.get("concepts") or {}).items():
            add(concept, score)
        for attribute in tags.get("attributes", ()):
            add(" ".join(ATTRIBUTE_TERMS.get(attribute, (attribute,))), 1.0)
    if quality and quality.get("blurry"):
        add(" ".join(ATTRIBUTE_TERMS["blurry"]), 1.0)
    if faces >= 1:
        add(" ".join(ATTRIBUTE_TERMS["person"]), 1.0)
    if faces >= 2:
        add(" ".join(ATTRIBUTE_TERMS["people"]), 1.0)
    return terms


class KeywordIndex:
    """An inverted index over photos' weighted terms; rows follow the order of ``terms_per_photo``.

    Args:
        terms_per_photo: one ``{term: weight}`` per photo (``photo_terms``).
        saturation: a weight at or above this counts fully (a tag at probability 0.5 is as good as certain).
    """

    def __init__(self, terms_per_photo: Sequence[Mapping[str, float]], saturation: float = 0.5) -> None:
        rows: dict[str, list[int]] = defaultdict(list)
        weights: dict[str, list[float]] = defaultdict(list)
        for i, terms in enumerate(terms_per_photo):
            for term, w in terms.items():
                if w > 0:
                    rows[term].append(i)
                    weights[term].append(min(1.0, w / saturation))
        self.n = len(terms_per_photo)
        self._postings = {t: (np.asarray(rows[t], dtype=np.int64), np.asarray(weights[t], dtype=np.float32))
                          for t in rows}
        # BM25-style idf, always > 0: a term every photo has still counts a little
        self._idf = {t: math.log(1.0 + self.n / (1.0 + len(rows))) for t, (rows, _) in self._postings.items()}

    def __len__(self) -> int:
        return self.n

    def scores(self, text: str) -> np.ndarray:
        """float32 (N,): mean over the query's terms of idf * saturated weight (0 for a photo without them)."""
        out = np.zeros(self.n, dtype=np.float32)  # (N,)
        terms = tokenize(text)
        for term in terms:
            if term in self._postings:
                rows, w = self._postings[term]
                out[rows] += self._idf[term] * w
        return out / len(terms) if terms else out
